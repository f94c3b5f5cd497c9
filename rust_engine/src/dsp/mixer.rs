//! The sum of several inputs with per-input gains (`MixKernel`).
//!
//! `out[c][i] = sum_k float32(g_k) * m_k(x_k)[c][i]`, accumulated in `f32` in input order from
//! zero, where `m_k` maps input `k`'s channels to the output's as `ChannelMixKernel` does (same
//! count: as is; mono: to every channel; several to mono: their `f32` sum times
//! `float32(1 / C)`). The output is not clipped: it is float, and a limiter or a gain belongs
//! after the mix if the sum can exceed full scale. Absent inputs (`None`) add nothing.

use super::gain::{db_to_linear, MAX_GAIN_DB};
use super::{all_finite, py_float, BlockRef, EngineError, Result};

/// The most inputs a mix takes.
pub const MAX_INPUTS: usize = 256;
/// The most output channels.
pub const MAX_CHANNELS: usize = 64;

/// A count argument: the int given, or how to show what was given instead (not an int).
pub type Count = std::result::Result<i64, String>;

/// As `GainKernel`: a gain whose linear value is not a finite float32 is refused.
fn check_gain_db(index: usize, gain_db: f64) -> Result<()> {
    if gain_db.is_finite() && gain_db <= MAX_GAIN_DB {
        return Ok(());
    }
    Err(EngineError::config(format!(
        "gains_db[{index}] must be finite and at most {}, got {}",
        py_float(MAX_GAIN_DB),
        py_float(gain_db)
    )))
}

#[derive(Debug, Clone)]
pub struct Mix {
    gains_db: Vec<f64>,
    gains: Vec<f32>,
}

impl Mix {
    pub fn new(gains_db: &[f64]) -> Result<Self> {
        if gains_db.is_empty() || gains_db.len() > MAX_INPUTS {
            return Err(EngineError::config(format!(
                "gains_db needs one gain per input, 1 to {MAX_INPUTS} of them, got {}",
                gains_db.len()
            )));
        }
        for (i, &g) in gains_db.iter().enumerate() {
            check_gain_db(i, g)?;
        }
        Ok(Self {
            gains_db: gains_db.to_vec(),
            gains: gains_db.iter().map(|&g| db_to_linear(g) as f32).collect(),
        })
    }

    pub fn inputs(&self) -> usize {
        self.gains.len()
    }

    pub fn gains_db(&self) -> &[f64] {
        &self.gains_db
    }

    /// Sets input `index`'s gain; it applies from the next mix on (no ramp).
    pub fn set_gain_db(&mut self, index: i64, gain_db: f64) -> Result<()> {
        let i = usize::try_from(index)
            .ok()
            .filter(|&i| i < self.gains.len())
            .ok_or_else(|| {
                EngineError::config(format!(
                    "input index {index} out of range for {} inputs",
                    self.gains.len()
                ))
            })?;
        check_gain_db(i, gain_db)?;
        self.gains_db[i] = gain_db;
        self.gains[i] = db_to_linear(gain_db) as f32;
        Ok(())
    }

    /// Checks a call's arguments: one block per input, `channels` in 1..=64, `samples >= 1`.
    /// A count the caller could not read as an int is `Err(shown)`: invalid, shown as given.
    pub fn check_call(
        &self,
        blocks: usize,
        channels: Count,
        samples: Count,
    ) -> Result<(usize, usize)> {
        if blocks != self.gains.len() {
            return Err(EngineError::format(format!(
                "expected {} blocks (one per input), got {blocks}",
                self.gains.len(),
            )));
        }
        let read = |count: Count, ok: &dyn Fn(usize) -> bool, what: &str| {
            let shown = match &count {
                Ok(v) => v.to_string(),
                Err(shown) => shown.clone(),
            };
            count
                .ok()
                .and_then(|v| usize::try_from(v).ok())
                .filter(|&v| ok(v))
                .ok_or_else(|| EngineError::format(format!("invalid {what} count {shown}")))
        };
        let channels = read(channels, &|c| (1..=MAX_CHANNELS).contains(&c), "channel")?;
        let samples = read(samples, &|n| n >= 1, "sample")?;
        Ok((channels, samples))
    }

    /// Checks every present block (after [`Mix::check_call`]), in the contract's order.
    pub fn check_blocks(
        &self,
        blocks: &[Option<BlockRef<'_>>],
        channels: usize,
        samples: usize,
    ) -> Result<()> {
        for (k, b) in blocks.iter().enumerate() {
            let Some(b) = b else { continue };
            let at = |msg: String| EngineError::format(format!("input {k}: {msg}"));
            if b.channels == 0 || b.frames == 0 {
                return Err(at(format!(
                    "empty frame ({} channels, {} samples)",
                    b.channels, b.frames
                )));
            }
            if b.frames != samples {
                return Err(at(format!("{} samples, expected {samples}", b.frames)));
            }
            if !(b.channels == channels || b.channels == 1 || channels == 1) {
                return Err(at(format!(
                    "cannot mix {} channels to {channels}; supported: mono to any, any to \
                     mono, or the same count",
                    b.channels
                )));
            }
            if !all_finite(b.data) {
                let i = b.data.iter().position(|x| !x.is_finite()).unwrap_or(0);
                return Err(at(format!(
                    "non-finite sample at channel {}, index {}",
                    i / b.frames,
                    i % b.frames
                )));
            }
        }
        Ok(())
    }

    /// Both checks, for callers holding every block already.
    pub fn check(
        &self,
        blocks: &[Option<BlockRef<'_>>],
        channels: i64,
        samples: i64,
    ) -> Result<(usize, usize)> {
        let (channels, samples) = self.check_call(blocks.len(), Ok(channels), Ok(samples))?;
        self.check_blocks(blocks, channels, samples)?;
        Ok((channels, samples))
    }

    /// Mixes checked blocks into a `channels x samples` planar buffer.
    pub fn mix(
        &self,
        blocks: &[Option<BlockRef<'_>>],
        channels: usize,
        samples: usize,
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; channels * samples];
        let mut down = Vec::new();
        for (b, &g) in blocks.iter().zip(&self.gains) {
            let Some(b) = b else { continue };
            if b.channels == channels || b.channels == 1 {
                for (c, row) in out.chunks_exact_mut(samples).enumerate() {
                    let x = b.channel(if b.channels == 1 { 0 } else { c });
                    for (o, &v) in row.iter_mut().zip(x) {
                        *o += g * v;
                    }
                }
            } else {
                // Several channels to mono: their f32 sum, channel by channel, times 1/C.
                down.clear();
                down.extend_from_slice(b.channel(0));
                for c in 1..b.channels {
                    for (d, &v) in down.iter_mut().zip(b.channel(c)) {
                        *d += v;
                    }
                }
                let scale = (1.0 / b.channels as f64) as f32;
                for (o, &d) in out.iter_mut().zip(&down) {
                    *o += g * (d * scale);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(channels: usize, data: &[f32]) -> Option<BlockRef<'_>> {
        Some(BlockRef::new(channels, data.len() / channels, data))
    }

    #[test]
    fn sums_with_gains_in_input_order() {
        let m = Mix::new(&[0.0, -6.0, 20.0]).unwrap();
        let a = [1.0f32, -1.0, 0.5];
        let b = [0.25f32, 0.25, 0.25];
        let blocks = [block(1, &a), block(1, &b), None];
        assert_eq!(m.check(&blocks, 1, 3).unwrap(), (1, 3));
        let g = db_to_linear(-6.0) as f32;
        let want: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| 0.0 + x + g * y).collect();
        assert_eq!(m.mix(&blocks, 1, 3), want);
    }

    #[test]
    fn maps_channels_and_does_not_clip() {
        let m = Mix::new(&[0.0, 0.0]).unwrap();
        let mono = [0.9f32, 0.9];
        let stereo = [0.5f32, 0.5, -0.5, -0.5];
        let out = m.mix(&[block(1, &mono), block(2, &stereo)], 2, 2);
        let (hi, lo) = (0.9f32 + 0.5, 0.9f32 - 0.5);
        assert_eq!(out, [hi, hi, lo, lo]);
        assert!(hi > 1.0); // no clipping
        let out = m.mix(&[block(1, &mono), block(2, &stereo)], 1, 2);
        assert_eq!(out, [0.9, 0.9]);
        assert!(m.mix(&[None, None], 3, 4).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn checks_arguments_and_blocks() {
        let m = Mix::new(&[0.0, 0.0]).unwrap();
        let x = [0.0f32; 4];
        let msg = |b: &[Option<BlockRef<'_>>], c, n| m.check(b, c, n).unwrap_err().message;
        assert_eq!(
            msg(&[None], 1, 4),
            "expected 2 blocks (one per input), got 1"
        );
        assert_eq!(msg(&[None, None], 0, 4), "invalid channel count 0");
        assert_eq!(msg(&[None, None], 1, 0), "invalid sample count 0");
        let call = |c: Count, n: Count| m.check_call(2, c, n).unwrap_err().message;
        assert_eq!(call(Err("2.0".into()), Ok(4)), "invalid channel count 2.0");
        assert_eq!(call(Ok(1), Err("True".into())), "invalid sample count True");
        assert_eq!(
            msg(&[None, block(1, &x)], 1, 3),
            "input 1: 4 samples, expected 3"
        );
        assert!(msg(&[block(2, &x), None], 3, 2).starts_with("input 0: cannot mix 2 channels to 3"));
        let bad = [0.0, 1.0, f32::NAN, 0.0];
        assert_eq!(
            msg(&[None, block(2, &bad)], 2, 2),
            "input 1: non-finite sample at channel 1, index 0"
        );
    }

    #[test]
    fn validates_gains() {
        assert!(Mix::new(&[]).is_err());
        assert!(Mix::new(&[f64::NAN]).is_err());
        assert!(Mix::new(&[800.0]).is_err());
        let mut m = Mix::new(&[0.0]).unwrap();
        assert!(m.set_gain_db(1, 0.0).is_err());
        assert!(m.set_gain_db(-1, 0.0).is_err());
        m.set_gain_db(0, -20.0).unwrap();
        assert_eq!(m.gains_db(), [-20.0]);
    }
}
