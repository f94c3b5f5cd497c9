//! `DelayEstimator`: the bulk delay of an echo path, found from the signals (GCC-PHAT), for
//! `EchoCancel(delay_ms="auto")`. The twin of `media_nodes/audio/echo_delay.py` (its docstring
//! says the method), operation for operation in float32 as numpy does it; the FFT is `realfft`'s
//! where the twin's is pocketfft's, so the correlation differs by the FFTs' rounding: the same
//! delay (the peak's index) and a ratio within 1e-3 relative on the echo scenes.
//!
//! Positions are absolute sample positions on the near-end's clock (negative ones too: the node
//! writes the reference from `max_delay` before the stream's start). Every estimate correlates
//! the whole window anew: a 4 s window and 1 s of delays at 8 kHz are three 131 072-point FFTs,
//! the node's largest cost after the canceller with `"auto"` (numpy takes about 3x as long).

use realfft::num_complex::Complex;
use realfft::RealFftPlanner;

use super::{BlockRef, EngineError, Result};

/// About the rate the estimator works at (an integer fraction of the stream's).
pub const EST_RATE: u32 = 8000;
/// The least near-end audio an estimate looks at, in seconds.
pub const EST_MIN_S: f64 = 0.5;
/// Quieter than this (-60 dBFS RMS) on either side: no estimate.
pub const SILENT: f64 = 1e-3;
/// Both ends of both signals are faded over this, in seconds.
pub const EST_TAPER_S: f64 = 0.05;

/// Mono samples by absolute position over the last `size`; positions never written (gaps,
/// before the first write) read as silence.
#[derive(Debug, Clone)]
struct Ring {
    buf: Vec<f32>,
    first: Option<i64>,
    end: i64,
}

impl Ring {
    fn new(size: usize) -> Self {
        Self {
            buf: vec![0.0; size],
            first: None,
            end: 0,
        }
    }

    fn size(&self) -> i64 {
        self.buf.len() as i64
    }

    fn write(&mut self, pos: i64, x: &[f32]) {
        let (mut pos, mut x) = (pos, x);
        let size = self.size();
        let n = x.len() as i64;
        match self.first {
            Some(_) if pos <= self.end + size && pos + n >= self.end - size => {
                if pos > self.end {
                    // a gap: silence
                    for p in self.end..pos {
                        let at = p.rem_euclid(size) as usize;
                        self.buf[at] = 0.0;
                    }
                }
            }
            _ => {
                // the first audio, or a jump: start over
                self.buf.fill(0.0);
                self.first = Some(pos);
            }
        }
        if n > size {
            x = &x[(n - size) as usize..];
            pos += n - size;
        }
        let at = pos.rem_euclid(size) as usize;
        let first = x.len().min(self.buf.len() - at);
        self.buf[at..at + first].copy_from_slice(&x[..first]);
        self.buf[..x.len() - first].copy_from_slice(&x[first..]);
        self.end = self.end.max(pos + x.len() as i64);
        self.first = self.first.map(|f| f.min(pos));
    }

    /// Samples `[a, b)` into `out` (length `b - a`).
    fn read(&self, a: i64, b: i64, out: &mut Vec<f32>) {
        out.clear();
        out.resize((b - a) as usize, 0.0);
        let Some(first) = self.first else { return };
        let size = self.size();
        let (lo, hi) = (a.max(first).max(self.end - size), b.min(self.end));
        if hi > lo {
            let at = lo.rem_euclid(size) as usize;
            let len = (hi - lo) as usize;
            let part = len.min(self.buf.len() - at);
            let o = (lo - a) as usize;
            out[o..o + part].copy_from_slice(&self.buf[at..at + part]);
            out[o + part..o + len].copy_from_slice(&self.buf[..len - part]);
        }
    }
}

/// The bulk delay of an echo path: where the near-end best matches the reference.
pub struct DelayEstimator {
    rate: u32,
    step: usize,
    window: i64,
    lag: i64,
    max_delay: i64,
    size: i64,
    near: Ring,
    far: Ring,
    fade: Vec<f32>,
    planner: RealFftPlanner<f32>,
    // Work buffers, kept so an estimate allocates nothing once the window is full.
    mono: Vec<f32>,
    read: Vec<f32>,
    near_d: Vec<f32>,
    far_d: Vec<f32>,
    spec: Vec<Complex<f32>>,
    spec_far: Vec<Complex<f32>>,
    corr: Vec<f32>,
    scratch: Vec<Complex<f32>>,
}

impl DelayEstimator {
    /// An estimator for a stream at `rate` Hz looking for delays up to `max_delay_ms` in the
    /// last `window_s` of near-end, `lag_s` behind the newest.
    pub fn new(rate: u32, max_delay_ms: f64, window_s: f64, lag_s: f64) -> Result<Self> {
        if rate == 0 || rate > 384_000 {
            return Err(EngineError::config(format!(
                "sample_rate must be 1 to 384000 Hz, got {rate}"
            )));
        }
        for (name, v, hi) in [
            ("max_delay_ms", max_delay_ms, 10_000.0),
            ("window_s", window_s, 60.0),
            ("lag_s", lag_s, 10.0),
        ] {
            if !(v.is_finite() && (0.0..=hi).contains(&v)) {
                return Err(EngineError::config(format!(
                    "{name} must be 0 to {hi}, got {v}"
                )));
            }
        }
        let r = f64::from(rate);
        let step = (rate / EST_RATE).max(1) as usize;
        let window = (window_s * r).round() as i64;
        let lag = (lag_s * r).round() as i64;
        let max_delay = (max_delay_ms * r / 1000.0).round() as i64;
        let size = window + max_delay + lag + 2 * i64::from(rate);
        let k = ((EST_TAPER_S * r / step as f64).round() as usize).max(1);
        let fade = (0..k)
            .map(|i| {
                let t = (std::f64::consts::PI * (i as f64 + 0.5) / k as f64).cos();
                (0.5 - 0.5 * t) as f32
            })
            .collect();
        Ok(Self {
            rate,
            step,
            window,
            lag,
            max_delay,
            size,
            near: Ring::new(size as usize),
            far: Ring::new(size as usize),
            fade,
            planner: RealFftPlanner::new(),
            mono: Vec::new(),
            read: Vec::new(),
            near_d: Vec::new(),
            far_d: Vec::new(),
            spec: Vec::new(),
            spec_far: Vec::new(),
            corr: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Forgets both signals (the settings stay).
    pub fn reset(&mut self) {
        self.near = Ring::new(self.size as usize);
        self.far = Ring::new(self.size as usize);
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Samples of near-end between the newest and the end of what an estimate reads.
    pub fn lag(&self) -> i64 {
        self.lag
    }

    /// The longest delay looked for, in samples.
    pub fn max_delay(&self) -> i64 {
        self.max_delay
    }

    /// Samples each ring keeps.
    pub fn size(&self) -> i64 {
        self.size
    }

    /// Near-end audio at `pos` (channels averaged).
    pub fn add_near(&mut self, pos: i64, x: BlockRef<'_>) {
        self.near.write(pos, mono(x, &mut self.mono));
    }

    /// Reference audio at `pos` on the near-end's clock, delay 0 (channels averaged).
    pub fn add_far(&mut self, pos: i64, x: BlockRef<'_>) {
        self.far.write(pos, mono(x, &mut self.mono));
    }

    /// `(delay_ms, ratio)` from the window ending `lag` before `at`, or None (too little
    /// near-end, or either side silent).
    pub fn estimate(&mut self, at: i64) -> Option<(f64, f64)> {
        let end = at - self.lag;
        let q = self.step as i64;
        let mut start = (end - self.window).max(self.near.first.unwrap_or(end));
        start = end - (end - start).div_euclid(q) * q;
        if end - start < (EST_MIN_S * f64::from(self.rate)).round() as i64 {
            return None;
        }
        self.near.read(start, end, &mut self.read);
        if rms(&self.read) < SILENT {
            return None;
        }
        decimate(&self.read, self.step, &mut self.near_d);
        self.far.read(start - self.max_delay, end, &mut self.read);
        if rms(&self.read[self.max_delay as usize..]) < SILENT {
            return None;
        }
        decimate(&self.read, self.step, &mut self.far_d);
        fade(&mut self.near_d, &self.fade);
        fade(&mut self.far_d, &self.fade);
        let size = (self.near_d.len() + self.far_d.len()).next_power_of_two();
        // The planner keeps the plans it made: a window of the same length plans nothing.
        let forward = self.planner.plan_fft_forward(size);
        let inverse = self.planner.plan_fft_inverse(size);
        let bins = size / 2 + 1;
        self.spec.resize(bins, Complex::default());
        self.spec_far.resize(bins, Complex::default());
        self.corr.resize(size, 0.0);
        let need = forward.get_scratch_len().max(inverse.get_scratch_len());
        self.scratch.resize(need, Complex::default());
        for (signal, spec) in [
            (&self.near_d, &mut self.spec),
            (&self.far_d, &mut self.spec_far),
        ] {
            self.corr[..signal.len()].copy_from_slice(signal);
            self.corr[signal.len()..].fill(0.0);
            forward
                .process_with_scratch(&mut self.corr, spec, &mut self.scratch)
                .expect("buffers sized for the plan");
        }
        for (c, f) in self.spec.iter_mut().zip(&self.spec_far) {
            let x = *c * f.conj();
            *c = x / (x.norm() + 1e-12);
        }
        // A real signal's spectrum: the imaginary parts at 0 and Nyquist are zero (realfft
        // checks; numpy ignores them).
        self.spec[0].im = 0.0;
        self.spec[bins - 1].im = 0.0;
        inverse
            .process_with_scratch(&mut self.spec, &mut self.corr, &mut self.scratch)
            .expect("buffers sized for the plan");
        // near[i] matches far[i + offset - lag] at lag (decimated samples), offset =
        // max_delay / q: lags 0..offset are corr[size - offset..] then corr[0]. (realfft does
        // not divide by the length as numpy's irfft does; the peak and the ratio do not care.)
        let offset = (self.max_delay / q) as usize;
        let values = self.corr[size - offset..]
            .iter()
            .chain(&self.corr[..1])
            .copied();
        let (mut best, mut peak, mut total) = (0, f32::NEG_INFINITY, 0.0f64);
        for (i, v) in values.enumerate() {
            if v > peak {
                (best, peak) = (i, v);
            }
            total += f64::from(v.abs());
        }
        let mean = (total / (offset + 1) as f64).max(1e-30);
        Some((
            (best as i64 * q) as f64 * 1000.0 / f64::from(self.rate),
            f64::from(peak) / mean,
        ))
    }
}

/// `x` as mono: its one channel, or its channels averaged into `out` (as numpy's `mean(axis=0)`
/// in float32: summed in channel order, divided by the count, where `reference::far_mono`
/// multiplies by the reciprocal as the cancellers' twins do).
fn mono<'a>(x: BlockRef<'a>, out: &'a mut Vec<f32>) -> &'a [f32] {
    if x.channels == 1 {
        return x.channel(0);
    }
    out.clear();
    out.extend_from_slice(x.channel(0));
    for c in 1..x.channels {
        for (o, v) in out.iter_mut().zip(x.channel(c)) {
            *o += v;
        }
    }
    let n = x.channels as f32;
    out.iter_mut().for_each(|o| *o /= n);
    out
}

/// The mean of each `q` samples (a tail short of `q` dropped), summed in order.
fn decimate(x: &[f32], q: usize, out: &mut Vec<f32>) {
    out.clear();
    if q == 1 {
        out.extend_from_slice(x);
        return;
    }
    let d = q as f32;
    out.extend(x.chunks_exact(q).map(|c| {
        let mut s = c[0] + c[1];
        for v in &c[2..] {
            s += v;
        }
        s / d
    }));
}

/// Faded in and out over `fade`'s length (at most half of `x`), in place.
fn fade(x: &mut [f32], fade: &[f32]) {
    let k = fade.len().min(x.len() / 2);
    let n = x.len();
    for i in 0..k {
        x[i] *= fade[i];
        x[n - 1 - i] *= fade[i];
    }
}

fn rms(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let s: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    (s / x.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = super::super::testutil::Lcg(seed);
        (0..n).map(|_| 0.2 * rng.next_f32()).collect()
    }

    #[test]
    fn finds_the_delay_at_every_rate() {
        for rate in [8000u32, 16000, 44100, 48000] {
            let d = (0.237 * f64::from(rate)) as usize;
            let far = noise(rate as usize * 3, 1);
            let near: Vec<f32> = (0..far.len())
                .map(|i| if i >= d { 0.5 * far[i - d] } else { 0.0 })
                .collect();
            let mut e = DelayEstimator::new(rate, 1000.0, 4.0, 0.1).unwrap();
            let n = far.len();
            e.add_near(0, BlockRef::new(1, n, &near));
            e.add_far(
                -e.max_delay(),
                BlockRef::new(
                    1,
                    e.max_delay() as usize,
                    &vec![0.0; e.max_delay() as usize],
                ),
            );
            e.add_far(0, BlockRef::new(1, n, &far));
            let (ms, ratio) = e.estimate(n as i64).expect("an estimate");
            assert!((ms - 237.0).abs() <= 1.0, "{rate}: {ms} ms");
            assert!(ratio > 50.0, "{rate}: ratio {ratio}");
        }
    }

    #[test]
    fn silence_and_short_windows_give_none() {
        let mut e = DelayEstimator::new(16000, 1000.0, 4.0, 0.1).unwrap();
        assert_eq!(e.estimate(16000), None); // nothing written
        let x = noise(16000 * 2, 3);
        e.add_near(0, BlockRef::new(1, x.len(), &x));
        e.add_far(0, BlockRef::new(1, x.len(), &vec![0.0; x.len()]));
        assert_eq!(e.estimate(32000), None); // a silent reference
        e.add_far(0, BlockRef::new(1, x.len(), &x));
        assert_eq!(e.estimate(9000), None); // under half a second of near-end
        assert!(e.estimate(32000).is_some());
    }

    #[test]
    fn ring_keeps_the_last_size_samples_and_zeroes_gaps() {
        let mut r = Ring::new(8);
        let mut out = Vec::new();
        r.write(-3, &[1.0, 2.0, 3.0]);
        r.write(2, &[4.0]); // a gap at 0..2
        r.read(-4, 3, &mut out);
        assert_eq!(out, [0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 4.0]);
        r.write(3, &(0..10).map(|v| v as f32).collect::<Vec<_>>()); // longer than the ring
        r.read(4, 14, &mut out);
        assert_eq!(out, [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 0.0]);
        r.write(1000, &[7.0]); // a jump: start over
        r.read(998, 1001, &mut out);
        assert_eq!(out, [0.0, 0.0, 7.0]);
    }
}
