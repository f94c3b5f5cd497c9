//! Constant frame rate by timestamp (`FrameRateKernel`): which input frame each output slot
//! shows. Pure timing, exact rational arithmetic; the node holds the frames themselves.
//!
//! Output slot `k` is at `k / fps` seconds and shows the latest input frame (in arrival order)
//! whose time, in output periods and rounded half up, is at most `k`: slot(t) =
//! `floor(t * fps + 1/2)`. So an input jittering by less than half an output period still lands
//! in its own slot, and 30 fps in, 30 fps out is the identity.

use crate::dsp::{EngineError, Result};

/// Largest numerator or denominator of `fps`.
pub const MAX_FPS_TERM: i64 = 1 << 20;
/// Highest frame rate.
pub const MAX_FPS: i64 = 1000;
/// Largest numerator or denominator of a time base (PyAV's are C ints).
pub const MAX_TIME_BASE_TERM: i64 = i32::MAX as i64;
/// Output pts stay strictly inside +-2^62, so counts and differences fit an i64.
pub const MAX_SLOT: i128 = 1 << 62;

/// A time base as Python prints a Fraction: `1/30`, or `2` when the denominator is 1.
fn fraction(num: i64, den: i64) -> String {
    if den == 1 {
        num.to_string()
    } else {
        format!("{num}/{den}")
    }
}

/// The `ConfigError` of an fps outside the range; `shown` is the fraction as Python prints it.
pub fn fps_out_of_range(shown: &str) -> EngineError {
    EngineError::config(format!(
        "fps must be above 0 and at most {MAX_FPS}, with numerator and denominator at most \
         {MAX_FPS_TERM}, got {shown}"
    ))
}

#[derive(Debug, Clone, Copy)]
struct Stream {
    time_base: (i64, i64),
    /// Positions are `n / denom` output periods, `n = pts * tb_num * fps_num`.
    denom: i128,
    /// Position of the stream's first frame.
    first: i128,
    /// Position of the held (latest) frame.
    last: i128,
    /// Frames registered in this stream.
    frames: i128,
    /// The next output slot to fill.
    next: i128,
}

/// Decides, per input timestamp, how many output frames the previous input fills.
#[derive(Debug, Clone)]
pub struct FrameRate {
    num: i64,
    den: i64,
    stream: Option<Stream>,
}

impl FrameRate {
    /// `fps = num / den`, in lowest terms: both in 1..=2^20 and at most 1000 fps, else
    /// `ConfigError`.
    pub fn new(num: i64, den: i64) -> Result<Self> {
        let terms_ok = (1..=MAX_FPS_TERM).contains(&num) && (1..=MAX_FPS_TERM).contains(&den);
        if !terms_ok || num > MAX_FPS * den {
            return Err(fps_out_of_range(&fraction(num, den)));
        }
        Ok(Self {
            num,
            den,
            stream: None,
        })
    }

    /// `(numerator, denominator)` of the output rate.
    pub fn fps(&self) -> (i64, i64) {
        (self.num, self.den)
    }

    /// floor(n / d + 1/2): the slot of position `n / d`.
    fn slot(n: i128, d: i128) -> i128 {
        (2 * n + d).div_euclid(2 * d)
    }

    fn check_slot(slot: i128, pts: i64) -> Result<i128> {
        if slot.abs() < MAX_SLOT {
            Ok(slot)
        } else {
            Err(EngineError::format(format!(
                "pts {pts} is out of range: its output pts is beyond +-2**62"
            )))
        }
    }

    /// Registers an input frame at `pts * tb_num / tb_den` seconds. Returns `(start, count)`:
    /// the previously registered frame fills output slots `start .. start + count` (`count` is
    /// 0 on a stream's first frame and when the new frame lands in an already filled slot).
    pub fn process(&mut self, pts: i64, tb_num: i64, tb_den: i64) -> Result<(i64, i64)> {
        let tb_ok = |x: i64| (1..=MAX_TIME_BASE_TERM).contains(&x);
        if !tb_ok(tb_num) || !tb_ok(tb_den) {
            return Err(EngineError::format(format!(
                "invalid time base {}: numerator and denominator must be in 1..={MAX_TIME_BASE_TERM}",
                fraction(tb_num, tb_den)
            )));
        }
        let denom = tb_den as i128 * self.den as i128;
        let pos = pts as i128 * tb_num as i128 * self.num as i128;
        let slot = Self::check_slot(Self::slot(pos, denom), pts)?;
        let Some(s) = self.stream.as_mut() else {
            self.stream = Some(Stream {
                time_base: (tb_num, tb_den),
                denom,
                first: pos,
                last: pos,
                frames: 1,
                next: slot,
            });
            return Ok((slot as i64, 0));
        };
        if s.time_base != (tb_num, tb_den) {
            return Err(EngineError::format(format!(
                "time base changed mid-stream from {} to {}",
                fraction(s.time_base.0, s.time_base.1),
                fraction(tb_num, tb_den)
            )));
        }
        let start = s.next;
        let count = (slot - start).max(0);
        s.next += count;
        s.frames += 1;
        s.last = pos;
        Ok((start as i64, count as i64))
    }

    /// The slot of the stream's end: the last frame's time plus the stream's mean frame
    /// interval `(last - first) / (frames - 1)`, or plus one output period when the stream has
    /// one frame or does not advance. Exact: `floor((2 last + 2 q + d + 2 r / m) / 2d)` with
    /// `m = frames - 1` and `last - first = q m + r`, without forming the huge common
    /// denominator.
    fn end_slot(s: &Stream) -> i128 {
        let d = s.denom;
        if s.frames < 2 || s.last <= s.first {
            return Self::slot(s.last + d, d);
        }
        let m = s.frames - 1;
        let (q, r) = ((s.last - s.first) / m, (s.last - s.first) % m);
        let a = 2 * s.last + 2 * q + d;
        let (whole, rest) = (a.div_euclid(2 * d), a.rem_euclid(2 * d));
        // The fraction 2r/m (< 2) carries into the next slot iff rest + 2r/m >= 2d.
        whole + i128::from(2 * r >= (2 * d - rest) * m)
    }

    /// End of stream: the last frame fills the slots up to the stream's end (see `end_slot`).
    /// Returns `(start, count)` as `process` does, then resets.
    pub fn flush(&mut self) -> (i64, i64) {
        let Some(s) = self.stream.take() else {
            return (0, 0);
        };
        // The end can pass the range by one mean interval; clamp rather than fail at the end.
        let end = Self::end_slot(&s).min(MAX_SLOT - 1);
        (s.next as i64, (end - s.next).max(0) as i64)
    }

    /// Drops the stream state.
    pub fn reset(&mut self) {
        self.stream = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output pts -> input index, for frames at `pts[i]` in time base `tb`.
    fn schedule(fps: (i64, i64), pts: &[i64], tb: (i64, i64)) -> Vec<(i64, usize)> {
        let mut fr = FrameRate::new(fps.0, fps.1).unwrap();
        let mut out = Vec::new();
        for (i, &p) in pts.iter().enumerate() {
            let (start, count) = fr.process(p, tb.0, tb.1).unwrap();
            out.extend((start..start + count).map(|k| (k, i.wrapping_sub(1))));
        }
        let (start, count) = fr.flush();
        out.extend((start..start + count).map(|k| (k, pts.len() - 1)));
        out
    }

    #[test]
    fn thirty_to_fifteen_keeps_even_frames() {
        let pts: Vec<i64> = (0..30).collect();
        let out = schedule((15, 1), &pts, (1, 30));
        let expected: Vec<(i64, usize)> = (0..15).map(|k| (k, 2 * k as usize)).collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn twenty_four_to_thirty_repeats_every_fourth() {
        let pts: Vec<i64> = (0..24).collect();
        let out = schedule((30, 1), &pts, (1, 24));
        assert_eq!(out.len(), 30);
        assert!(out.iter().enumerate().all(|(k, &(p, _))| p == k as i64));
        let shown: Vec<usize> = out.iter().map(|&(_, i)| i).take(10).collect();
        assert_eq!(shown, vec![0, 1, 1, 2, 3, 4, 5, 5, 6, 7]);
    }

    #[test]
    fn same_rate_with_jitter_is_the_identity() {
        // 30 fps in a 90 kHz time base, each frame up to 40% of a period late or early.
        let pts: Vec<i64> = (0..60)
            .map(|i| i * 3000 + [0, 1200, -1200, 500][i as usize % 4])
            .collect();
        let out = schedule((30, 1), &pts, (1, 90000));
        let expected: Vec<(i64, usize)> = (0..60).map(|k| (k, k as usize)).collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn output_starts_at_the_first_frame_slot() {
        // First frame at 1.0 s: output pts 30 at 30 fps; one frame fills one period.
        assert_eq!(schedule((30, 1), &[1000], (1, 1000)), vec![(30, 0)]);
        // NTSC: 30000/1001 in, 15 out.
        let pts: Vec<i64> = (0..10).map(|i| i * 1001).collect();
        let out = schedule((15, 1), &pts, (1, 30000));
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn errors() {
        assert!(FrameRate::new(0, 1).is_err());
        assert!(FrameRate::new(1001, 1).is_err());
        assert!(FrameRate::new(1 << 21, 3 << 20).is_err());
        let mut fr = FrameRate::new(30, 1).unwrap();
        assert_eq!(
            fr.process(0, 0, 1).unwrap_err().message,
            "invalid time base 0: numerator and denominator must be in 1..=2147483647"
        );
        fr.process(0, 1, 30).unwrap();
        assert_eq!(
            fr.process(1, 1, 90000).unwrap_err().message,
            "time base changed mid-stream from 1/30 to 1/90000"
        );
        fr.reset();
        assert_eq!(
            fr.process(i64::MAX, 1, 1).unwrap_err().message,
            "pts 9223372036854775807 is out of range: its output pts is beyond +-2**62"
        );
        assert_eq!(fr.flush(), (0, 0));
    }
}
