//! Levels in dBFS, per block and over a sliding window (`LevelMeterKernel`).
//!
//! The contract is `docs/stages-audio.md`: per block, the RMS and peak of every sample of every
//! channel; over the window, the same of the last `W = round(window_ms * rate / 1000)` sample
//! instants (fewer at the start of a stream). The window's sum of squares is kept as per-chunk
//! sums of fixed, stream-aligned chunks of [`CHUNK`] samples plus the per-sample values of the
//! partial chunks at both ends, so each block costs `O(block + W / CHUNK + CHUNK)` and the result
//! depends only on the samples, never on how the stream was split into blocks. Nothing is ever
//! subtracted from a running sum, so silence after a loud passage reads as silence, not as the
//! rounding residue of the loud part.

use std::collections::VecDeque;

use super::{py_float, round_half_even, BlockRef, EngineError, Result};

/// Linear levels below this read as [`FLOOR_DB`].
pub const FLOOR: f64 = 1e-10;
/// The level of silence: `20 * log10(FLOOR)`.
pub const FLOOR_DB: f64 = -200.0;
/// The longest window: one minute (the window's samples are held in memory).
pub const MAX_WINDOW_MS: f64 = 60_000.0;
/// Samples per chunk of the window's partial sums.
const CHUNK: u64 = 256;

/// `20 * log10(max(value, 1e-10))`: dBFS of a linear amplitude, -200 for silence.
pub fn to_db(value: f64) -> f64 {
    20.0 * value.max(FLOOR).log10()
}

/// The four readings of one block, in dBFS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    pub rms_db: f64,
    pub peak_db: f64,
    pub window_rms_db: f64,
    pub window_peak_db: f64,
}

/// Sum with four accumulators (the order is fixed, so the result is too), so it vectorizes.
fn sum(values: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let mut quads = values.chunks_exact(4);
    for q in &mut quads {
        for (a, v) in acc.iter_mut().zip(q) {
            *a += v;
        }
    }
    let tail: f64 = quads.remainder().iter().sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

fn max(values: &[f32]) -> f32 {
    values.iter().fold(0.0f32, |m, &v| m.max(v))
}

#[derive(Debug)]
struct Stream {
    rate: u32,
    channels: usize,
    /// Window length `W` in samples.
    window: usize,
    /// Samples seen since the stream started.
    seen: u64,
    /// Per sample instant, the sum over channels of `x^2`, and the max over channels of `|x|`,
    /// for the last `W` instants: instant `j` lives at `j % W`.
    energy: Vec<f64>,
    peak: Vec<f32>,
    /// Sum and max of each complete chunk still (partly) in the window, oldest first; the first
    /// one is chunk number `first_chunk` (it covers instants `first_chunk * CHUNK ..`).
    chunks: VecDeque<(f64, f32)>,
    first_chunk: u64,
    /// Scratch: this block's per-instant energy and peak.
    block_energy: Vec<f64>,
    block_peak: Vec<f32>,
}

impl Stream {
    fn new(rate: u32, channels: usize, window: usize) -> Self {
        Self {
            rate,
            channels,
            window,
            seen: 0,
            energy: vec![0.0; window],
            peak: vec![0.0; window],
            chunks: VecDeque::new(),
            first_chunk: 0,
            block_energy: Vec::new(),
            block_peak: Vec::new(),
        }
    }

    /// Whether the window keeps chunk sums (else it is summed sample by sample).
    fn chunked(&self) -> bool {
        self.window as u64 > 2 * CHUNK
    }

    /// The ring positions of instants `start..end` (at most `W` of them, all still held).
    fn ring(&self, start: u64, end: u64) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let w = self.window as u64;
        let a = (start % w) as usize;
        let len = (end - start) as usize;
        if a + len <= self.window {
            (a..a + len, 0..0)
        } else {
            (a..self.window, 0..a + len - self.window)
        }
    }

    fn ring_sum(&self, start: u64, end: u64) -> (f64, f32) {
        let (r1, r2) = self.ring(start, end);
        (
            sum(&self.energy[r1.clone()]) + sum(&self.energy[r2.clone()]),
            max(&self.peak[r1]).max(max(&self.peak[r2])),
        )
    }

    /// Takes in one block's per-instant values (already in `block_energy` / `block_peak`).
    fn push(&mut self) {
        let n = self.block_energy.len();
        let w = self.window;
        // Only the last W instants of a long block matter.
        let skip = n.saturating_sub(w);
        let mut j = self.seen + skip as u64;
        let mut i = skip;
        while i < n {
            let at = (j % w as u64) as usize;
            let take = (w - at).min(n - i);
            self.energy[at..at + take].copy_from_slice(&self.block_energy[i..i + take]);
            self.peak[at..at + take].copy_from_slice(&self.block_peak[i..i + take]);
            i += take;
            j += take as u64;
        }
        let before = self.seen;
        self.seen += n as u64;
        if self.chunked() {
            // Chunks completed by this block, summed from the ring in a fixed order. Those that
            // already left the window (a block longer than W) are skipped.
            let oldest = self.seen.saturating_sub(w as u64);
            let done = self.seen / CHUNK;
            let mut c = (before / CHUNK).max(oldest.div_ceil(CHUNK));
            if self.first_chunk + self.chunks.len() as u64 != c {
                // Chunks were skipped: everything held is older than the window.
                self.chunks.clear();
                self.first_chunk = c;
            }
            while c < done {
                let s = self.ring_sum(c * CHUNK, (c + 1) * CHUNK);
                self.chunks.push_back(s);
                c += 1;
            }
        }
    }

    /// Sum of squares and peak over the window ending now, and the number of instants in it.
    fn window_levels(&mut self) -> (f64, f32, u64) {
        let t = self.seen;
        let len = t.min(self.window as u64);
        let a = t - len;
        if !self.chunked() {
            let (s, p) = self.ring_sum(a, t);
            return (s, p, len);
        }
        let head_end = a.div_ceil(CHUNK) * CHUNK;
        let tail_start = t / CHUNK * CHUNK;
        while self.first_chunk * CHUNK < head_end && !self.chunks.is_empty() {
            self.chunks.pop_front();
            self.first_chunk += 1;
        }
        let (mut s, mut p) = self.ring_sum(a, head_end);
        for &(cs, cp) in &self.chunks {
            s += cs;
            p = p.max(cp);
        }
        let (ts, tp) = self.ring_sum(tail_start, t);
        (s + ts, p.max(tp), len)
    }
}

/// RMS and peak levels per block and over a sliding window.
#[derive(Debug)]
pub struct LevelMeter {
    window_ms: f64,
    stream: Option<Stream>,
}

impl LevelMeter {
    pub fn new(window_ms: f64) -> Result<Self> {
        if !(window_ms.is_finite() && window_ms > 0.0 && window_ms <= MAX_WINDOW_MS) {
            return Err(EngineError::config(format!(
                "window_ms must be a number in (0, 60000], got {}",
                py_float(window_ms)
            )));
        }
        Ok(Self {
            window_ms,
            stream: None,
        })
    }

    pub fn window_ms(&self) -> f64 {
        self.window_ms
    }

    /// `W = round(window_ms * rate / 1000)`, at least 1.
    pub fn window_samples(&self, rate: u32) -> usize {
        let w = round_half_even(self.window_ms * rate as f64 / 1000.0);
        // Saturating float-to-int cast; a window longer than memory fails in the allocation.
        (w as usize).max(1)
    }

    /// The window length of the current stream, if one is under way.
    pub fn stream_window(&self) -> Option<usize> {
        self.stream.as_ref().map(|s| s.window)
    }

    /// Measures a block that passed [`super::check_block`]; errors on a rate or channel change.
    pub fn process(&mut self, input: BlockRef<'_>, sample_rate: u32) -> Result<Levels> {
        let window = self.window_samples(sample_rate);
        let s = self
            .stream
            .get_or_insert_with(|| Stream::new(sample_rate, input.channels, window));
        if sample_rate != s.rate {
            return Err(EngineError::format(format!(
                "sample rate changed mid-stream from {} to {sample_rate} Hz",
                s.rate
            )));
        }
        if input.channels != s.channels {
            return Err(EngineError::format(format!(
                "channel count changed mid-stream from {} to {}",
                s.channels, input.channels
            )));
        }
        let n = input.frames;
        s.block_energy.clear();
        s.block_energy.resize(n, 0.0);
        s.block_peak.clear();
        s.block_peak.resize(n, 0.0);
        for c in 0..input.channels {
            let x = input.channel(c);
            for ((e, p), &v) in s.block_energy.iter_mut().zip(&mut s.block_peak).zip(x) {
                let v64 = v as f64;
                *e += v64 * v64;
                *p = p.max(v.abs());
            }
        }
        let block_sum = sum(&s.block_energy);
        let block_peak = max(&s.block_peak);
        s.push();
        let (w_sum, w_peak, w_len) = s.window_levels();
        let ch = s.channels as f64;
        Ok(Levels {
            rms_db: to_db((block_sum / (ch * n as f64)).sqrt()),
            peak_db: to_db(block_peak as f64),
            window_rms_db: to_db((w_sum / (ch * w_len as f64)).sqrt()),
            window_peak_db: to_db(w_peak as f64),
        })
    }

    /// Drops the stream state (the window restarts empty).
    pub fn reset(&mut self) {
        self.stream = None;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Lcg;
    use super::*;

    fn levels(m: &mut LevelMeter, channels: usize, x: &[f32], rate: u32) -> Levels {
        m.process(BlockRef::new(channels, x.len() / channels, x), rate)
            .unwrap()
    }

    /// The window's levels straight from the definition.
    fn reference(x: &[f32], end: usize, window: usize) -> (f64, f64) {
        let start = end.saturating_sub(window);
        let seg = &x[start..end];
        let ms = seg.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / seg.len() as f64;
        let peak = seg.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        (to_db(ms.sqrt()), to_db(peak as f64))
    }

    #[test]
    fn full_scale_sine_reads_minus_3_rms_and_0_peak() {
        let rate = 48000;
        let x: Vec<f32> = (0..4800)
            .map(|i| (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / rate as f64).sin() as f32)
            .collect();
        let mut m = LevelMeter::new(100.0).unwrap();
        let l = levels(&mut m, 1, &x, rate);
        assert!((l.rms_db + 3.0103).abs() < 1e-3, "{l:?}");
        assert!(l.peak_db.abs() < 1e-6, "{l:?}");
        assert!((l.rms_db - l.window_rms_db).abs() < 1e-12);
    }

    #[test]
    fn silence_reads_the_floor_even_after_a_loud_passage() {
        let mut m = LevelMeter::new(10.0).unwrap(); // 480 samples at 48 kHz: chunked
        levels(&mut m, 1, &vec![0.9; 4800], 48000);
        let l = levels(&mut m, 1, &vec![0.0; 480], 48000);
        assert_eq!(l.window_rms_db, FLOOR_DB);
        assert_eq!(l.window_peak_db, FLOOR_DB);
        assert_eq!(l.rms_db, FLOOR_DB);
    }

    #[test]
    fn window_matches_definition_and_any_split() {
        let mut rng = Lcg(7);
        let x: Vec<f32> = (0..20000).map(|_| rng.next_f32() * 0.5).collect();
        for window_ms in [0.02, 5.0, 10.7, 300.0] {
            let mut whole = LevelMeter::new(window_ms).unwrap();
            let w = whole.window_samples(48000);
            let mut split = LevelMeter::new(window_ms).unwrap();
            let sizes = [1usize, 960, 37, 256, 5000, 3, 511];
            let mut pos = 0;
            let mut k = 0;
            while pos < x.len() {
                let n = sizes[k % sizes.len()].min(x.len() - pos);
                k += 1;
                let a = levels(&mut split, 1, &x[pos..pos + n], 48000);
                // The same end point reached in one block from the stream's start.
                whole.reset();
                let b = levels(&mut whole, 1, &x[..pos + n], 48000);
                assert_eq!(a.window_peak_db, b.window_peak_db);
                assert!((a.window_rms_db - b.window_rms_db).abs() < 1e-9);
                let (rms, peak) = reference(&x, pos + n, w);
                assert!((a.window_rms_db - rms).abs() < 1e-9, "{window_ms} {pos}");
                assert_eq!(a.window_peak_db, peak);
                pos += n;
            }
        }
    }

    #[test]
    fn channels_count_together() {
        let mut m = LevelMeter::new(300.0).unwrap();
        // Channel 0 silent, channel 1 at 0.5: mean square 0.125.
        let x = [0.0, 0.0, 0.0, 0.5, -0.5, 0.5];
        let l = levels(&mut m, 2, &x, 8000);
        assert!((l.rms_db - to_db(0.125f64.sqrt())).abs() < 1e-12);
        assert!((l.peak_db - to_db(0.5)).abs() < 1e-12);
    }

    #[test]
    fn rejects_bad_settings_and_format_changes() {
        assert!(LevelMeter::new(0.0).is_err());
        assert!(LevelMeter::new(f64::NAN).is_err());
        let mut m = LevelMeter::new(50.0).unwrap();
        levels(&mut m, 1, &[0.1; 4], 8000);
        let e = m
            .process(BlockRef::new(1, 4, &[0.1; 4]), 16000)
            .unwrap_err();
        assert_eq!(
            e.message,
            "sample rate changed mid-stream from 8000 to 16000 Hz"
        );
        let e = m.process(BlockRef::new(2, 2, &[0.1; 4]), 8000).unwrap_err();
        assert_eq!(e.message, "channel count changed mid-stream from 1 to 2");
        m.reset();
        levels(&mut m, 2, &[0.1; 4], 16000);
    }
}
