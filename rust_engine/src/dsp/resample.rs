//! Streaming rational polyphase resampler (`ResampleKernel`).
//!
//! Output `n` of the stream is `y[n] = sum_k h[p + k L] x[i - k]` with `u = n M`, `i = u / L`,
//! `p = u % L`. Each phase's taps are stored reversed (and zero-padded in front to a multiple of
//! [`LANES`]), so an output is one contiguous dot product of the phase's taps with the input
//! window `x[i - Kp + 1 ..= i]`. Per channel we keep the window's history in front of the new
//! block in one buffer, so the window never wraps.

use std::sync::Arc;

use super::design::Design;
use super::fir::{Fir, Walk, LANES};
use super::{round_half_even, Block, BlockRef, EngineError, Output, Result, Stage};

/// The polyphase filter of one rate pair, ready to run.
#[derive(Debug)]
struct Filter {
    in_rate: u32,
    l: usize,
    m: u64,
    /// Taps per phase, padded: `K` rounded up to a multiple of [`LANES`].
    kp: usize,
    /// `l` phases of `kp` taps: phase `p` reversed, `taps[p * kp + kp - 1 - k] = h[p + k L]`.
    taps: Vec<f32>,
    /// Filter delay in seconds, `c / L / in_rate`.
    delay_seconds: f64,
    fir: Fir,
}

impl Filter {
    fn new(in_rate: u32, out_rate: u32) -> Result<Self> {
        let d = Design::new(in_rate, out_rate)?;
        let l = d.l as usize;
        let kp = d.k.div_ceil(LANES) * LANES;
        let mut taps = vec![0.0f32; l * kp];
        for p in 0..l {
            let phase = &mut taps[p * kp..(p + 1) * kp];
            for k in 0..d.k {
                phase[kp - 1 - k] = d.h[p + k * l] as f32;
            }
        }
        Ok(Self {
            in_rate,
            l,
            m: d.m,
            kp,
            taps,
            delay_seconds: d.centre() / d.l as f64 / in_rate as f64,
            fir: Fir::detect(),
        })
    }
}

/// Stream state of the polyphase path.
#[derive(Debug)]
struct Poly {
    filter: Arc<Filter>,
    /// Input samples kept in front of each new block: `kp - 1` for the window plus `extra` for
    /// outputs that the rounding rule defers to the next block.
    hist: usize,
    extra: usize,
    /// Per channel: `hist` samples of history, then the current block.
    bufs: Vec<Vec<f32>>,
    /// Input samples consumed (`T`) and outputs emitted so far.
    consumed: u64,
    emitted: u64,
}

impl Poly {
    fn new(filter: Arc<Filter>, channels: usize) -> Self {
        // A pending output `n >= count(T)` has `n M > T L - M / 2`, so `i >= T - ceil(M / 2L)`.
        let extra = (filter.m as usize).div_ceil(2 * filter.l);
        let hist = filter.kp - 1 + extra;
        Self {
            filter,
            hist,
            extra,
            bufs: vec![vec![0.0; hist]; channels],
            consumed: 0,
            emitted: 0,
        }
    }

    /// Outputs due after `t` input samples: `floor((2 T L + M) / (2 M))`.
    fn due(&self, t: u64) -> u64 {
        let (l, m) = (self.filter.l as u128, self.filter.m as u128);
        ((2 * t as u128 * l + m) / (2 * m)) as u64
    }

    fn process(&mut self, input: BlockRef<'_>, output: &mut Output) -> Option<Block> {
        let f = &*self.filter;
        let (b, hist) = (input.frames, self.hist);
        for (c, buf) in self.bufs.iter_mut().enumerate() {
            if buf.len() < hist + b {
                buf.resize(hist + b, 0.0);
            }
            buf[hist..hist + b].copy_from_slice(input.channel(c));
        }
        let t = self.consumed;
        let n_out = (self.due(t + b as u64) - self.emitted) as usize;
        let block = (n_out > 0).then(|| {
            // Position of the first output: absolute input index `i`, phase `p`.
            let u = self.emitted as u128 * f.m as u128;
            let (i, p) = ((u / f.l as u128) as u64, (u % f.l as u128) as usize);
            // Its window starts at buffer index `i - T + extra` (buffer index 0 is `T - hist`).
            let start = (i + self.extra as u64 - t) as usize;
            let walk = Walk {
                start,
                phase: p,
                step: (f.m / f.l as u64) as usize,
                phase_step: (f.m % f.l as u64) as usize,
                l: f.l,
                m: f.m as usize,
            };
            let mut data = output.zeros(self.bufs.len() * n_out);
            for (buf, out) in self.bufs.iter().zip(data.chunks_exact_mut(n_out)) {
                f.fir.run(&f.taps, f.kp, &buf[..hist + b], walk, out);
            }
            Block::new(self.bufs.len(), n_out, data)
        });
        for buf in &mut self.bufs {
            buf.copy_within(b..b + hist, 0);
        }
        self.consumed = t + b as u64;
        self.emitted += n_out as u64;
        block
    }
}

#[derive(Debug)]
struct Stream {
    in_rate: u32,
    channels: usize,
    /// `None` when `in == out`: blocks are copied.
    poly: Option<Poly>,
}

#[derive(Debug)]
pub struct Resample {
    out_rate: u32,
    /// The filter of the last input rate seen, kept across streams (designing one is the slow
    /// part of starting a stream).
    filter: Option<Arc<Filter>>,
    stream: Option<Stream>,
}

pub const MIN_RATE: i64 = 1000;
pub const MAX_RATE: i64 = 384_000;

impl Resample {
    pub fn new(sample_rate: i64) -> Result<Self> {
        if !(MIN_RATE..=MAX_RATE).contains(&sample_rate) {
            return Err(EngineError::config(format!(
                "sample_rate must be an int in {MIN_RATE}..={MAX_RATE} Hz, got {sample_rate}"
            )));
        }
        Ok(Self {
            out_rate: sample_rate as u32,
            filter: None,
            stream: None,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.out_rate
    }

    /// The stream's input rate, once a block was seen.
    pub fn input_rate(&self) -> Option<u32> {
        self.stream.as_ref().map(|s| s.in_rate)
    }

    /// Filter delay in seconds, `c / L / in_rate` (0 before a block or when in == out).
    pub fn latency_seconds(&self) -> f64 {
        match &self.stream {
            Some(Stream { poly: Some(p), .. }) => p.filter.delay_seconds,
            _ => 0.0,
        }
    }

    /// Filter delay in output samples, `round(latency_seconds * sample_rate)` (half to even).
    pub fn latency_samples(&self) -> u64 {
        round_half_even(self.latency_seconds() * self.out_rate as f64) as u64
    }

    fn start_stream(&mut self, in_rate: u32, channels: usize) -> Result<Stream> {
        if in_rate == self.out_rate {
            return Ok(Stream {
                in_rate,
                channels,
                poly: None,
            });
        }
        let filter = match &self.filter {
            Some(f) if f.in_rate == in_rate => Arc::clone(f),
            _ => {
                let f = Arc::new(Filter::new(in_rate, self.out_rate)?);
                self.filter = Some(Arc::clone(&f));
                f
            }
        };
        Ok(Stream {
            in_rate,
            channels,
            poly: Some(Poly::new(filter, channels)),
        })
    }
}

impl Stage for Resample {
    fn process(&mut self, input: BlockRef<'_>, sample_rate: u32, out: &mut Output) -> Result<()> {
        let stream = match self.stream.take() {
            Some(s) => s,
            None => self.start_stream(sample_rate, input.channels)?,
        };
        let stream = self.stream.insert(stream);
        if sample_rate != stream.in_rate {
            return Err(EngineError::format(format!(
                "sample rate changed mid-stream from {} to {sample_rate} Hz",
                stream.in_rate
            )));
        }
        if input.channels != stream.channels {
            return Err(EngineError::format(format!(
                "channel count changed mid-stream from {} to {}",
                stream.channels, input.channels
            )));
        }
        match &mut stream.poly {
            None => {
                let copy = out.copy_of(input);
                out.push(copy);
            }
            Some(poly) => {
                if let Some(block) = poly.process(input, out) {
                    out.push(block);
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self, _out: &mut Output) -> Result<()> {
        // The rounding rule already emitted every output due; the filter tail is not emitted.
        self.reset();
        Ok(())
    }

    fn reset(&mut self) {
        self.stream = None;
    }

    fn output_rate(&self, _input_rate: u32) -> u32 {
        self.out_rate
    }

    fn stream_output_rate(&self) -> Option<u32> {
        self.stream.as_ref().map(|_| self.out_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run_split, Lcg};
    use super::*;
    use std::f64::consts::PI;

    fn tone(freq: f64, rate: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|j| (0.5 * (2.0 * PI * freq * j as f64 / rate).sin()) as f32)
            .collect()
    }

    #[test]
    fn output_count_follows_rounding_rule_for_any_split() {
        for &(fin, fout) in &[
            (48000u32, 16000u32),
            (44100, 48000),
            (16000, 48000),
            (8000, 11025),
        ] {
            let d = Design::new(fin, fout).unwrap();
            let (l, m) = (d.l as u128, d.m as u128);
            let mut r = Resample::new(fout as i64).unwrap();
            let mut rng = Lcg(fin as u64);
            let mut t = 0u128;
            let mut total = 0u128;
            for _ in 0..200 {
                let n = 1 + (rng.next_u32() % 700) as usize;
                let x = vec![0.1f32; n];
                let mut out = Output::new();
                r.process(BlockRef::new(1, n, &x), fin, &mut out).unwrap();
                t += n as u128;
                total += out.iter().map(|b| b.frames as u128).sum::<u128>();
                assert!(out.iter().all(|b| b.frames > 0), "no empty blocks");
                assert_eq!(total, (2 * t * l + m) / (2 * m), "{fin}->{fout} after {t}");
            }
        }
    }

    #[test]
    fn chunking_invariance_is_exact() {
        let mut rng = Lcg(7);
        let x: Vec<Vec<f32>> = (0..2)
            .map(|_| (0..5000).map(|_| rng.next_f32()).collect())
            .collect();
        for &(fin, fout) in &[
            (48000u32, 16000u32),
            (44100, 48000),
            (16000, 44100),
            (384000, 1000),
            (44100, 8000),
        ] {
            let mut r = Resample::new(fout as i64).unwrap();
            let (whole, _) = run_split(&mut r, 2, &x, fin, &[5000]);
            for sizes in [&[1usize][..], &[7, 960, 3], &[441, 1, 1, 2000]] {
                let (split, _) = run_split(&mut r, 2, &x, fin, sizes);
                assert_eq!(whole, split, "{fin}->{fout} split {sizes:?}");
            }
        }
    }

    #[test]
    fn matches_direct_formula() {
        // The contract's sum, evaluated naively in float64 from the prototype.
        let (fin, fout) = (44100u32, 48000u32);
        let d = Design::new(fin, fout).unwrap();
        let mut rng = Lcg(3);
        let x: Vec<f32> = (0..3000).map(|_| rng.next_f32()).collect();
        let mut r = Resample::new(fout as i64).unwrap();
        let (y, _) = run_split(&mut r, 1, std::slice::from_ref(&x), fin, &[500]);
        let (l, m, k) = (d.l as usize, d.m as usize, d.k);
        for (n, &got) in y[0].iter().enumerate() {
            let (i, p) = (n * m / l, n * m % l);
            let want: f64 = (0..k)
                .filter(|&kk| kk <= i)
                .map(|kk| (d.h[p + kk * l] as f32) as f64 * x[i - kk] as f64)
                .sum();
            assert!((got as f64 - want).abs() < 2e-6, "n={n}: {got} vs {want}");
        }
    }

    #[test]
    fn identity_when_rates_match() {
        let mut r = Resample::new(48000).unwrap();
        let x = [0.25f32, -0.5, 1.0];
        let mut out = Output::new();
        r.process(BlockRef::new(1, 3, &x), 48000, &mut out).unwrap();
        assert_eq!(out[0].data, x);
        assert_eq!(r.latency_samples(), 0);
        assert_eq!(r.input_rate(), Some(48000));
    }

    /// SNR of `y` against the ideal sine delayed by the filter, skipping the start-up.
    fn snr_db(y: &[f32], freq: f64, r: &Resample, fout: f64, skip: usize) -> f64 {
        let delay = r.latency_seconds() * fout;
        let (mut sig, mut err) = (0.0, 0.0);
        for (n, &v) in y.iter().enumerate().skip(skip) {
            let ideal = 0.5 * (2.0 * PI * freq * (n as f64 - delay) / fout).sin();
            sig += ideal * ideal;
            err += (v as f64 - ideal).powi(2);
        }
        10.0 * (sig / err).log10()
    }

    #[test]
    fn tone_quality_48k_to_16k() {
        let (fin, fout) = (48000u32, 16000u32);
        for freq in [1000.0, 5000.0] {
            let mut r = Resample::new(fout as i64).unwrap();
            let x = tone(freq, fin as f64, 48000);
            let mut out = Output::new();
            for chunk in x.chunks(960) {
                r.process(BlockRef::new(1, chunk.len(), chunk), fin, &mut out)
                    .unwrap();
            }
            let y: Vec<f32> = out.iter().flat_map(|b| b.data.iter().copied()).collect();
            let k = r.filter.as_ref().unwrap().kp;
            let snr = snr_db(&y, freq, &r, fout as f64, 2 * k);
            eprintln!("48k->16k, {freq} Hz tone: SNR {snr:.1} dB");
            assert!(snr >= 85.0, "{freq} Hz: SNR {snr:.1} dB");
        }
        // 13 kHz is above the output Nyquist: it must be >= 80 dB below its input level.
        let mut r = Resample::new(fout as i64).unwrap();
        let x = tone(13000.0, fin as f64, 48000);
        let mut out = Output::new();
        r.process(BlockRef::new(1, x.len(), &x), fin, &mut out)
            .unwrap();
        let y = &out[0].data[2 * r.filter.as_ref().unwrap().kp..];
        let rms = |v: &[f32]| {
            (v.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        let atten = 20.0 * (rms(&x) / rms(y)).log10();
        eprintln!("48k->16k, 13 kHz tone: {atten:.1} dB below its input level");
        assert!(atten >= 80.0, "13 kHz attenuated by {atten:.1} dB only");
    }

    #[test]
    fn mid_stream_changes_and_latency() {
        let mut r = Resample::new(16000).unwrap();
        assert_eq!((r.input_rate(), r.latency_samples()), (None, 0));
        let x = [0.0f32; 20];
        r.process(BlockRef::new(1, 20, &x), 48000, &mut Output::new())
            .unwrap();
        // c = 95 input samples = 31.67 output samples.
        assert_eq!(r.latency_samples(), 32);
        assert!((r.latency_seconds() - 95.0 / 48000.0).abs() < 1e-12);
        let e = r
            .process(BlockRef::new(1, 20, &x), 44100, &mut Output::new())
            .unwrap_err();
        assert_eq!(
            e.message,
            "sample rate changed mid-stream from 48000 to 44100 Hz"
        );
        let e = r
            .process(BlockRef::new(2, 10, &x), 48000, &mut Output::new())
            .unwrap_err();
        assert_eq!(e.message, "channel count changed mid-stream from 1 to 2");
        let mut out = Output::new();
        r.flush(&mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(r.input_rate(), None);
        assert_eq!(
            Resample::new(999).unwrap_err().kind,
            super::super::ErrorKind::Config
        );
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// `cargo test --release -- --ignored --nocapture bench_48k_to_16k`: per-frame cost of the
    /// kernel alone (no Python), 20 ms mono frames.
    #[test]
    #[ignore]
    fn bench_48k_to_16k() {
        let mut r = Resample::new(16000).unwrap();
        let x: Vec<f32> = (0..960).map(|i| ((i as f32) * 0.01).sin() * 0.5).collect();
        let mut out = Output::new();
        for _ in 0..1000 {
            r.process(BlockRef::new(1, 960, &x), 48000, &mut out)
                .unwrap();
            out.clear();
        }
        let mut best = f64::MAX;
        for _ in 0..20 {
            let t0 = std::time::Instant::now();
            for _ in 0..1000 {
                r.process(BlockRef::new(1, 960, &x), 48000, &mut out)
                    .unwrap();
                out.clear();
            }
            best = best.min(t0.elapsed().as_secs_f64() / 1000.0 * 1e6);
        }
        eprintln!("48k->16k kernel: {best:.2} us per 960-sample frame");
    }
}
