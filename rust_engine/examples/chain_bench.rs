//! The fused chain's cost per block without Python: `cargo run --release --example chain_bench`.
//!
//! Measures what the engine's own structure adds (stage dispatch, input checks, buffers) on the
//! chains `benchmarks/engine_bench.py` times through Python: 1, 5 and 10 gains, and the real
//! chain (ChannelMix(1) > Gain > Resample(16k) > Gain > Rebuffer(512), stereo in), 20 ms blocks
//! at 48 kHz. Prints the best of several runs in nanoseconds per block.

use std::hint::black_box;
use std::time::Instant;

use _engine::dsp::{chain, BlockRef, ChannelMix, Gain, NamedStage, Rebuffer, Resample, StageKind};

const RATE: i64 = 48_000;
const FRAME: usize = 960;
const BLOCKS: usize = 2_000;
const REPEATS: usize = 15;

fn gains(n: usize) -> Vec<NamedStage> {
    (0..n)
        .map(|i| {
            NamedStage::new(
                format!("gain{i}"),
                StageKind::Gain(Gain::new(-1.0, 5.0).unwrap()),
            )
        })
        .collect()
}

fn real() -> Vec<NamedStage> {
    vec![
        NamedStage::new("mix", StageKind::ChannelMix(ChannelMix::new(1).unwrap())),
        NamedStage::new("gain", StageKind::Gain(Gain::new(-3.0, 5.0).unwrap())),
        NamedStage::new(
            "resample",
            StageKind::Resample(Resample::new(16_000).unwrap()),
        ),
        NamedStage::new("gain2", StageKind::Gain(Gain::new(2.0, 5.0).unwrap())),
        NamedStage::new(
            "rebuffer",
            StageKind::Rebuffer(Rebuffer::new(Some(512), None, false).unwrap()),
        ),
    ]
}

/// Best-of-`REPEATS` nanoseconds per block through a fresh chain.
fn time(make: impl Fn() -> Vec<NamedStage>, channels: usize) -> f64 {
    let signal: Vec<f32> = (0..channels * FRAME)
        .map(|i| ((i as f32) * 0.01).sin() * 0.5)
        .collect();
    let mut best = f64::INFINITY;
    for _ in 0..REPEATS {
        let mut stages = make();
        let mut refs: Vec<&mut NamedStage> = stages.iter_mut().collect();
        let mut buffers = chain::Buffers::new();
        let t0 = Instant::now();
        for _ in 0..BLOCKS {
            let out = chain::process(
                &mut refs,
                BlockRef::new(channels, FRAME, &signal),
                RATE,
                &mut buffers,
            )
            .unwrap();
            black_box(out);
        }
        best = best.min(t0.elapsed().as_secs_f64());
    }
    best / BLOCKS as f64 * 1e9
}

fn main() {
    for n in [1, 5, 10] {
        println!("gain x{n:<2}  {:8.0} ns/block", time(|| gains(n), 1));
    }
    println!("real chain {:8.0} ns/block", time(real, 2));
}
