//! Helpers for the kernels' tests (compiled for `cargo test` only).

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
