//! Helpers for the kernels' tests (compiled for `cargo test` only).

use super::reference::PairStage;
use super::{BlockRef, Output, Stage};

/// Feeds `signal` (planar, `channels` rows) to `stage` in blocks of the given sizes (cycled),
/// then flushes; returns the concatenated output per channel and the block lengths.
pub fn run_split<S: Stage>(
    stage: &mut S,
    channels: usize,
    signal: &[Vec<f32>],
    rate: u32,
    sizes: &[usize],
) -> (Vec<Vec<f32>>, Vec<usize>) {
    let total = signal[0].len();
    let mut outs = Output::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < total {
        let n = sizes[i % sizes.len()].min(total - pos);
        i += 1;
        let mut data = Vec::with_capacity(channels * n);
        for ch in signal.iter().take(channels) {
            data.extend_from_slice(&ch[pos..pos + n]);
        }
        stage
            .process(BlockRef::new(channels, n, &data), rate, &mut outs)
            .unwrap();
        pos += n;
    }
    stage.flush(&mut outs).unwrap();
    let mut joined = vec![Vec::new(); outs.first().map_or(channels, |b| b.channels)];
    let mut lens = Vec::new();
    for b in outs.iter() {
        lens.push(b.frames);
        for (c, row) in joined.iter_mut().enumerate() {
            row.extend_from_slice(&b.data[c * b.frames..(c + 1) * b.frames]);
        }
    }
    (joined, lens)
}

/// A tiny deterministic generator, so tests need no crates.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    /// Uniform in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() as f64 / (1u64 << 31) as f64 - 1.0) as f32
    }
}

/// A synthetic echo path for the echo cancellers' tests: a speech-like far end (noise bursts of
/// 400 ms at varying level, 100 ms pauses, low-passed once) through a decaying 60 ms room after
/// `delay_ms`, and white noise at -90 dBFS. Returns (echo, far, noise).
pub fn echo_scene(rate: u32, seconds: f64, delay_ms: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut g = Lcg(7);
    let n = (f64::from(rate) * seconds) as usize;
    let mut far = vec![0.0f32; n];
    let burst = rate as usize / 2;
    let mut prev = 0.0f32;
    for (i, v) in far.iter_mut().enumerate() {
        let on = i % burst < burst * 4 / 5;
        let level = 0.05 + 0.1 * ((i / burst) % 3) as f32;
        let white = if on { level * g.next_f32() } else { 0.0 };
        prev = 0.6 * prev + 0.4 * white;
        *v = prev;
    }
    let delay = rate as usize * delay_ms / 1000;
    let len = rate as usize * 60 / 1000;
    let mut h = vec![0.0f32; delay + len];
    for (k, tap) in h[delay..].iter_mut().enumerate() {
        *tap = 0.3 * g.next_f32() * (-(k as f32) / (0.01 * rate as f32)).exp();
    }
    let noise: Vec<f32> = (0..n).map(|_| 3e-5 * g.next_f32()).collect();
    let echo = (0..n)
        .map(|i| {
            (0..h.len().min(i + 1))
                .map(|k| h[k] * far[i - k])
                .sum::<f32>()
        })
        .collect();
    (echo, far, noise)
}

/// Feeds a near/far stage `near` and `far` (mono) in blocks of `step`, then flushes; returns
/// the output. Every block `process` returns must be whole frames of `frame(k)` samples (when
/// it says).
pub fn run_pair<K: PairStage>(
    k: &mut K,
    near: &[f32],
    far: &[f32],
    rate: u32,
    step: usize,
    frame: impl Fn(&K) -> Option<usize>,
) -> Vec<f32> {
    let mut out = Vec::new();
    for (a, b) in near.chunks(step).zip(far.chunks(step)) {
        let nb = BlockRef::new(1, a.len(), a);
        let fb = BlockRef::new(1, b.len(), b);
        if let Some(blk) = k.process_pair(nb, fb, i64::from(rate)).unwrap() {
            if let Some(n) = frame(k) {
                assert_eq!(
                    blk.frames % n,
                    0,
                    "a block of {} by frames of {n}",
                    blk.frames
                );
            }
            out.extend(blk.data);
        }
    }
    if let Some(blk) = k.flush_pair().unwrap() {
        out.extend(blk.data);
    }
    out
}

/// Energy of `x`.
pub fn power(x: &[f32]) -> f64 {
    x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>()
}
