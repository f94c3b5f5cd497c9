//! What the stages that take a near-end block and a far-end (reference) block share: the input
//! checks in the contract's order and the far end's mix-down. `EchoCancel`'s kernels (Speex's MDF
//! in `echo_cancel`, AEC3 in `aec3`) use them.

use super::{check_block, BlockRef, EngineError, Result};

/// The rate and far-end channel count a stream started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairFormat {
    pub rate: u32,
    pub far_channels: usize,
}

/// Checks a call's blocks in the contract's order: near (checks 2 to 4), far (the same), near
/// mono, far as long as near, the rate (`rate_problem`: the kernel's own words for a rate it
/// cannot run at), then no change from the stream's `started` format. Returns the rate.
pub fn check_pair(
    near: BlockRef<'_>,
    far: BlockRef<'_>,
    sample_rate: i64,
    rate_problem: impl Fn(u32) -> Option<String>,
    started: Option<PairFormat>,
) -> Result<u32> {
    let side = |side: &str, e: EngineError| EngineError {
        message: format!("{side}: {}", e.message),
        ..e
    };
    check_block(near, sample_rate).map_err(|e| side("near", e))?;
    check_block(far, sample_rate).map_err(|e| side("far", e))?;
    let rate = sample_rate as u32; // checked above
    if near.channels != 1 {
        return Err(EngineError::format(format!(
            "near: echo cancellation takes mono near-end audio, got {} channels; \
             put ChannelMix(1) before it",
            near.channels
        )));
    }
    if far.frames != near.frames {
        return Err(EngineError::format(format!(
            "far: {} samples, expected {} (one far-end block per near-end block)",
            far.frames, near.frames
        )));
    }
    if let Some(problem) = rate_problem(rate) {
        return Err(EngineError::format(problem));
    }
    if let Some(s) = started {
        if rate != s.rate {
            return Err(EngineError::format(format!(
                "sample rate changed mid-stream from {} to {rate} Hz",
                s.rate
            )));
        }
        if far.channels != s.far_channels {
            return Err(EngineError::format(format!(
                "far: channel count changed mid-stream from {} to {}",
                s.far_channels, far.channels
            )));
        }
    }
    Ok(rate)
}

/// Far-end sample `i` mixed down to mono: the channels' float32 sum, in channel order, times
/// float32(1 / C) (what both twins compute).
#[inline]
pub fn far_mono(far: BlockRef<'_>, i: usize) -> f32 {
    let mut f = far.channel(0)[i];
    if far.channels > 1 {
        for c in 1..far.channels {
            f += far.channel(c)[i];
        }
        f *= 1.0 / far.channels as f32;
    }
    f
}

/// A stage that takes a near-end block and a far-end one (the bindings drive them alike).
pub trait PairStage {
    /// The near end with the far end's echo removed: the whole frames completed, or `None`.
    fn process_pair(
        &mut self,
        near: BlockRef<'_>,
        far: BlockRef<'_>,
        sample_rate: i64,
    ) -> Result<Option<super::Block>>;
    /// End of stream: what is held, then the stream state is dropped.
    fn flush_pair(&mut self) -> Result<Option<super::Block>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fussy(rate: u32) -> Option<String> {
        (rate != 16000).then(|| format!("runs at 16000 Hz, got {rate} Hz"))
    }

    fn check(
        near: (usize, usize),
        far: (usize, usize),
        rate: i64,
        started: Option<PairFormat>,
    ) -> std::result::Result<u32, String> {
        let a = vec![0.0f32; near.0 * near.1];
        let b = vec![0.0f32; far.0 * far.1];
        check_pair(
            BlockRef::new(near.0, near.1, &a),
            BlockRef::new(far.0, far.1, &b),
            rate,
            fussy,
            started,
        )
        .map_err(|e| e.message)
    }

    #[test]
    fn inputs_are_checked_in_order() {
        let e = check((2, 160), (1, 160), 16000, None).unwrap_err();
        assert!(e.starts_with("near: echo cancellation takes mono"), "{e}");
        // the rate reads as the near end's, before the far end's problems
        assert_eq!(
            check((1, 320), (2, 160), 0, None).unwrap_err(),
            "near: invalid sample rate 0"
        );
        assert_eq!(
            check((1, 320), (1, 160), 16000, None).unwrap_err(),
            "far: 160 samples, expected 320 (one far-end block per near-end block)"
        );
        assert_eq!(
            check((1, 320), (1, 320), 8000, None).unwrap_err(),
            "runs at 16000 Hz, got 8000 Hz"
        );
        assert_eq!(check((1, 320), (2, 320), 16000, None), Ok(16000));
        let started = Some(PairFormat {
            rate: 16000,
            far_channels: 1,
        });
        assert_eq!(
            check((1, 320), (2, 320), 16000, started).unwrap_err(),
            "far: channel count changed mid-stream from 1 to 2"
        );
        let started = Some(PairFormat {
            rate: 8000,
            far_channels: 1,
        });
        let e = check((1, 320), (1, 320), 16000, started).unwrap_err();
        assert_eq!(e, "sample rate changed mid-stream from 8000 to 16000 Hz");
    }

    #[test]
    fn the_far_end_is_averaged_in_channel_order() {
        let far = [1.0f32, 2.0, 3.0, 5.0, 7.0, 9.0];
        let block = BlockRef::new(3, 2, &far);
        assert_eq!(far_mono(block, 0), (1.0f32 + 3.0 + 7.0) * (1.0 / 3.0));
        assert_eq!(far_mono(BlockRef::new(1, 2, &far[..2]), 1), 2.0);
    }
}
