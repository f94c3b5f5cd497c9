//! Several stages run as one call per block (`Chain`).
//!
//! The stages are borrowed for the call: their state lives in the objects that own them (the
//! Python kernels), so a kernel keeps its stream whether it runs alone or inside a chain.

use super::{check_block, check_rate, Block, BlockRef, NamedStage, Output, Result, Stage};

/// The buffers a chain keeps between calls: the blocks between two stages, and spare buffers to
/// build the next stage's blocks in (those of blocks already passed on), so a steady stream
/// allocates only the blocks that leave the chain.
#[derive(Debug, Default)]
pub struct Buffers {
    /// The blocks entering the next stage (after the last stage: the chain's output).
    current: Output,
    /// Where the next stage puts its blocks.
    next: Output,
}

impl Buffers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a call: blocks left over from a failed call become spares, all of them in `current`.
    fn start(&mut self) {
        self.current.recycle();
        self.next.recycle();
        self.next.lend_spares(&mut self.current);
    }
}

/// Checks `input` once (checks 2 to 4, errors naming the first stage), then runs it through every
/// stage in order: the stages after the first get blocks the engine made, which need no check.
/// Pass-through stages are expected to be left out by the caller; an empty `stages` returns a
/// copy of the input.
pub fn process(
    stages: &mut [&mut NamedStage],
    input: BlockRef<'_>,
    sample_rate: i64,
    buffers: &mut Buffers,
) -> Result<Vec<Block>> {
    let Some((first, rest)) = stages.split_first_mut() else {
        return Ok(vec![Block::new(
            input.channels,
            input.frames,
            input.data.to_vec(),
        )]);
    };
    check_block(input, sample_rate).map_err(|e| e.at(&first.name))?;
    let rate = sample_rate as u32; // checked above
    buffers.start();
    first.run(input, rate, &mut buffers.current)?;
    push_through(rest, buffers, first.kind.output_rate(rate))?;
    Ok(buffers.current.take_blocks())
}

/// Feeds the blocks in `buffers.current` (at `rate`) through `stages`; leaves the last stage's
/// blocks there.
fn push_through(
    stages: &mut [&mut NamedStage],
    buffers: &mut Buffers,
    mut rate: u32,
) -> Result<()> {
    for stage in stages {
        if buffers.current.is_empty() {
            break;
        }
        buffers.current.lend_spares(&mut buffers.next);
        for b in buffers.current.iter().filter(|b| b.frames > 0) {
            stage.run(b.as_ref(), rate, &mut buffers.next)?;
        }
        buffers.current.recycle();
        std::mem::swap(&mut buffers.current, &mut buffers.next);
        rate = stage.kind.output_rate(rate);
    }
    Ok(())
}

/// Flushes stage 1 and pushes its tail through stages 2.., then flushes stage 2, and so on.
pub fn flush(stages: &mut [&mut NamedStage], buffers: &mut Buffers) -> Result<Vec<Block>> {
    let mut out = Vec::new();
    for i in 0..stages.len() {
        let (head, rest) = stages.split_at_mut(i + 1);
        let stage = &mut head[i];
        let rate = stage.kind.stream_output_rate();
        buffers.start();
        stage.flush(&mut buffers.current)?;
        if let Some(rate) = rate {
            push_through(rest, buffers, rate)?;
            out.append(&mut buffers.current);
        }
    }
    Ok(out)
}

/// Drops every stage's stream state.
pub fn reset(stages: &mut [&mut NamedStage]) -> Result<()> {
    // Reset every stage even if one fails; report the first failure.
    let mut result = Ok(());
    for stage in stages {
        let r = stage.reset();
        if result.is_ok() {
            result = r;
        }
    }
    result
}

/// The rate the chain emits for input at `input_rate`.
pub fn output_rate(stages: &[&NamedStage], input_rate: i64) -> Result<u32> {
    let rate = check_rate(input_rate)?;
    Ok(stages.iter().fold(rate, |r, s| s.kind.output_rate(r)))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Lcg;
    use super::super::{ChannelMix, ErrorKind, Gain, Rebuffer, Resample};
    use super::*;

    fn stages() -> Vec<NamedStage> {
        vec![
            NamedStage::new("mix", ChannelMix::new(1).unwrap()),
            NamedStage::new("gain", Gain::new(-6.0, 5.0).unwrap()),
            NamedStage::new("resample", Resample::new(16000).unwrap()),
            NamedStage::new("rebuffer", Rebuffer::new(None, Some(20.0), true).unwrap()),
        ]
    }

    fn concat(blocks: &[Block]) -> (Vec<f32>, Vec<usize>) {
        let data = blocks.iter().flat_map(|b| b.data.iter().copied()).collect();
        (data, blocks.iter().map(|b| b.frames).collect())
    }

    #[test]
    fn chain_equals_stages_run_one_by_one() {
        let mut rng = Lcg(5);
        let x: Vec<f32> = (0..2 * 4410).map(|_| rng.next_f32()).collect();
        // Fused.
        let mut a = stages();
        let mut refs: Vec<&mut NamedStage> = a.iter_mut().collect();
        let mut buffers = Buffers::new();
        let mut fused = Vec::new();
        for chunk in 0..10 {
            let frame: Vec<f32> = (0..2)
                .flat_map(|c| x[c * 4410 + chunk * 441..c * 4410 + (chunk + 1) * 441].to_vec())
                .collect();
            fused.extend(
                process(
                    &mut refs,
                    BlockRef::new(2, 441, &frame),
                    44100,
                    &mut buffers,
                )
                .unwrap(),
            );
        }
        fused.extend(flush(&mut refs, &mut buffers).unwrap());
        // One stage at a time over the whole signal.
        let mut b = stages();
        let mut blocks = vec![Block::new(2, 4410, x.clone())];
        let mut rate = 44100;
        for s in &mut b {
            let mut next = Output::new();
            for blk in &blocks {
                s.process(blk.as_ref(), rate as i64, &mut next).unwrap();
            }
            rate = s.kind.output_rate(rate);
            s.flush(&mut next).unwrap();
            blocks = next.into_blocks();
        }
        let (fa, la) = concat(&fused);
        let (fb, lb) = concat(&blocks);
        assert_eq!(la, lb);
        assert_eq!(la, [320; 5]); // 1600 resampled samples (and 0 padding) in 20 ms blocks
        assert_eq!(fa, fb);
        assert_eq!(
            output_rate(&a.iter().collect::<Vec<_>>(), 44100).unwrap(),
            16000
        );
    }

    #[test]
    fn errors_name_the_failing_stage() {
        let mut a = stages();
        let mut refs: Vec<&mut NamedStage> = a.iter_mut().collect();
        let mut buffers = Buffers::new();
        process(
            &mut refs,
            BlockRef::new(1, 4, &[0.0; 4]),
            48000,
            &mut buffers,
        )
        .unwrap();
        let e = process(
            &mut refs,
            BlockRef::new(1, 4, &[0.0; 4]),
            44100,
            &mut buffers,
        )
        .unwrap_err();
        assert_eq!((e.kind, e.stage.as_str()), (ErrorKind::Format, "resample"));
        assert_eq!(
            e.to_string(),
            "resample: sample rate changed mid-stream from 48000 to 44100 Hz"
        );
        let e = process(
            &mut refs,
            BlockRef::new(1, 1, &[f32::NAN]),
            48000,
            &mut buffers,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "mix: non-finite sample at channel 0, index 0"
        );
    }

    #[test]
    fn a_steady_stream_reuses_the_buffers_between_stages() {
        let mut a: Vec<NamedStage> = (0..4)
            .map(|i| NamedStage::new(format!("g{i}"), Gain::new(-1.0, 0.0).unwrap()))
            .collect();
        let mut refs: Vec<&mut NamedStage> = a.iter_mut().collect();
        let mut buffers = Buffers::new();
        let x = [0.5f32; 64];
        for _ in 0..4 {
            let out = process(&mut refs, BlockRef::new(1, 64, &x), 8000, &mut buffers).unwrap();
            assert_eq!(out.len(), 1);
            // Blocks passed on inside the chain leave their buffers as spares for the next
            // call: one is all a steady stream of one block per call needs.
            assert_eq!(buffers.current.spares() + buffers.next.spares(), 1);
            let expected = 0.5 * (10f64.powf(-1.0 / 20.0) as f32).powi(4);
            assert!((out[0].data[0] - expected).abs() < 1e-6);
        }
    }
}
