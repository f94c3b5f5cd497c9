//! Several stages run as one call per block (`Chain`).
//!
//! The stages are borrowed for the call: their state lives in the objects that own them (the
//! Python kernels), so a kernel keeps its stream whether it runs alone or inside a chain.

use super::{Block, BlockRef, NamedStage, Result, Stage};

/// Runs `input` through every stage in order. Pass-through stages are expected to be left out
/// by the caller; an empty `stages` returns a copy of the input.
pub fn process(
    stages: &mut [&mut NamedStage],
    input: BlockRef<'_>,
    sample_rate: i64,
) -> Result<Vec<Block>> {
    let Some((first, rest)) = stages.split_first_mut() else {
        return Ok(vec![Block::new(
            input.channels,
            input.frames,
            input.data.to_vec(),
        )]);
    };
    let mut blocks = Vec::new();
    first.process(input, sample_rate, &mut blocks)?;
    // `first.process` validated the rate.
    let rate = first.kind.output_rate(sample_rate as u32);
    push_through(rest, blocks, rate)
}

/// Feeds `blocks` (at `rate`) through `stages`.
fn push_through(
    stages: &mut [&mut NamedStage],
    mut blocks: Vec<Block>,
    mut rate: u32,
) -> Result<Vec<Block>> {
    for stage in stages {
        if blocks.is_empty() {
            break;
        }
        let mut next = Vec::with_capacity(blocks.len());
        for b in blocks.iter().filter(|b| b.frames > 0) {
            stage.process(b.as_ref(), rate as i64, &mut next)?;
        }
        rate = stage.kind.output_rate(rate);
        blocks = next;
    }
    Ok(blocks)
}

/// Flushes stage 1 and pushes its tail through stages 2.., then flushes stage 2, and so on.
pub fn flush(stages: &mut [&mut NamedStage]) -> Result<Vec<Block>> {
    let mut out = Vec::new();
    for i in 0..stages.len() {
        let (head, rest) = stages.split_at_mut(i + 1);
        let stage = &mut head[i];
        let rate = stage.kind.stream_output_rate();
        let mut tail = Vec::new();
        stage.flush(&mut tail)?;
        if let (Some(rate), false) = (rate, tail.is_empty()) {
            out.extend(push_through(rest, tail, rate)?);
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
    let rate = super::check_rate(input_rate)?;
    Ok(stages.iter().fold(rate, |r, s| s.kind.output_rate(r)))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Lcg;
    use super::super::{ChannelMix, ErrorKind, Gain, Rebuffer, Resample, StageKind};
    use super::*;

    fn stages() -> Vec<NamedStage> {
        vec![
            NamedStage::new("mix", StageKind::ChannelMix(ChannelMix::new(1).unwrap())),
            NamedStage::new("gain", StageKind::Gain(Gain::new(-6.0, 5.0).unwrap())),
            NamedStage::new(
                "resample",
                StageKind::Resample(Resample::new(16000).unwrap()),
            ),
            NamedStage::new(
                "rebuffer",
                StageKind::Rebuffer(Rebuffer::new(None, Some(20.0), true).unwrap()),
            ),
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
        let mut fused = Vec::new();
        for chunk in 0..10 {
            let frame: Vec<f32> = (0..2)
                .flat_map(|c| x[c * 4410 + chunk * 441..c * 4410 + (chunk + 1) * 441].to_vec())
                .collect();
            fused.extend(process(&mut refs, BlockRef::new(2, 441, &frame), 44100).unwrap());
        }
        fused.extend(flush(&mut refs).unwrap());
        // One stage at a time over the whole signal.
        let mut b = stages();
        let mut blocks = vec![Block::new(2, 4410, x.clone())];
        let mut rate = 44100;
        for s in &mut b {
            let mut next = Vec::new();
            for blk in &blocks {
                s.process(blk.as_ref(), rate as i64, &mut next).unwrap();
            }
            rate = s.kind.output_rate(rate);
            s.flush(&mut next).unwrap();
            blocks = next;
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
        process(&mut refs, BlockRef::new(1, 4, &[0.0; 4]), 48000).unwrap();
        let e = process(&mut refs, BlockRef::new(1, 4, &[0.0; 4]), 44100).unwrap_err();
        assert_eq!((e.kind, e.stage.as_str()), (ErrorKind::Format, "resample"));
        assert_eq!(
            e.to_string(),
            "resample: sample rate changed mid-stream from 48000 to 44100 Hz"
        );
        let e = process(&mut refs, BlockRef::new(1, 1, &[f32::NAN]), 48000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "mix: non-finite sample at channel 0, index 0"
        );
    }
}
