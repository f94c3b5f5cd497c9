//! The common input checks 2 to 4 of `docs/kernels.md` (check 1, dtype and rank, is the
//! binding's), with the contract's messages.

use super::{BlockRef, EngineError, Result};

/// Most channels a block may have (`stream.frames.MAX_CHANNELS`: what a channel-layout mask
/// can name).
pub const MAX_CHANNELS: usize = 64;

/// Highest sample rate in Hz (`stream.frames.MAX_SAMPLE_RATE`: 16 x 48 kHz).
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// Checks 2 to 4, in order.
pub fn check_block(block: BlockRef<'_>, sample_rate: i64) -> Result<()> {
    check_shape(block)?;
    check_rate(sample_rate)?;
    check_finite(block)
}

/// Check 2: at least one channel and one sample, at most [`MAX_CHANNELS`] channels.
pub fn check_shape(block: BlockRef<'_>) -> Result<()> {
    check_dims(block.channels, block.frames)
}

/// Check 2 on a block's dimensions.
pub fn check_dims(channels: usize, frames: usize) -> Result<()> {
    if channels == 0 || frames == 0 {
        return Err(EngineError::format(format!(
            "empty frame ({channels} channels, {frames} samples)"
        )));
    }
    if channels > MAX_CHANNELS {
        return Err(EngineError::format(format!(
            "too many channels ({channels}; at most {MAX_CHANNELS})"
        )));
    }
    Ok(())
}

/// Check 3: `sample_rate` in 1..=[`MAX_SAMPLE_RATE`].
pub fn check_rate(sample_rate: i64) -> Result<u32> {
    match u32::try_from(sample_rate) {
        Ok(rate) if (1..=MAX_SAMPLE_RATE).contains(&rate) => Ok(rate),
        _ => Err(EngineError::format(format!(
            "invalid sample rate {sample_rate}"
        ))),
    }
}

/// Check 4: the first NaN or infinity in planar order is a `FormatError`.
pub fn check_finite(block: BlockRef<'_>) -> Result<()> {
    if all_finite(block.data) {
        return Ok(());
    }
    let at = block.data.iter().position(|x| !x.is_finite()).unwrap_or(0);
    Err(EngineError::format(format!(
        "non-finite sample at channel {}, index {}",
        at / block.frames,
        at % block.frames
    )))
}

/// Whether no sample is NaN or infinite, without branching per sample so it vectorizes: a float
/// is non-finite when its exponent bits are all ones, and adding one exponent step to those bits
/// then carries into the sign bit.
pub fn all_finite(data: &[f32]) -> bool {
    const EXP: u32 = 0x7f80_0000;
    const STEP: u32 = 0x0080_0000;
    let flags = data
        .iter()
        .fold(0u32, |acc, x| acc | (x.to_bits() & EXP).wrapping_add(STEP));
    flags & 0x8000_0000 == 0
}

#[cfg(test)]
mod tests {
    use super::super::ErrorKind;
    use super::*;

    #[test]
    fn checks_in_order_with_contract_messages() {
        let empty = BlockRef::new(2, 0, &[]);
        assert_eq!(
            check_block(empty, 0).unwrap_err().message,
            "empty frame (2 channels, 0 samples)"
        );
        let data = [0.0, 1.0, f32::NAN, f32::INFINITY];
        let b = BlockRef::new(2, 2, &data);
        assert_eq!(
            check_block(b, 0).unwrap_err().message,
            "invalid sample rate 0"
        );
        assert_eq!(
            check_block(b, -5).unwrap_err().message,
            "invalid sample rate -5"
        );
        assert_eq!(
            check_block(b, 768_001).unwrap_err().message,
            "invalid sample rate 768001"
        );
        assert!(check_rate(768_000).is_ok() && check_rate(1).is_ok());
        let wide = vec![0.0; 65];
        assert_eq!(
            check_block(BlockRef::new(65, 1, &wide), 0)
                .unwrap_err()
                .message,
            "too many channels (65; at most 64)"
        );
        assert!(check_shape(BlockRef::new(64, 1, &wide[..64])).is_ok());
        let e = check_block(b, 48000).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Format);
        assert_eq!(e.message, "non-finite sample at channel 1, index 0");
        assert_eq!(
            e.at("gain").to_string(),
            "gain: non-finite sample at channel 1, index 0"
        );
    }

    #[test]
    fn finite_scan_catches_every_non_finite() {
        assert!(all_finite(&[
            0.0,
            -0.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            1e-45
        ]));
        for bad in [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut v = vec![1.0f32; 37];
            v[29] = bad;
            assert!(!all_finite(&v));
        }
    }
}
