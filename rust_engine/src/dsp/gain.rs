//! Gain in dB with a linear ramp on changes (`GainKernel`).

use super::{py_float, round_half_even, Block, BlockRef, EngineError, Output, Result, Stage};

/// A ramp from `from` to `to` over `len` samples; `done` samples of it are processed.
#[derive(Debug, Clone, Copy)]
struct Ramp {
    from: f64,
    to: f64,
    len: u64,
    done: u64,
}

impl Ramp {
    /// Gain of ramp sample `k` (1-based), the contract's formula, evaluated in float64.
    fn at(&self, k: u64) -> f64 {
        self.from + (self.to - self.from) * k as f64 / self.len as f64
    }
}

#[derive(Debug, Clone)]
pub struct Gain {
    gain_db: f64,
    ramp_ms: f64,
    /// Linear target gain, `10 ** (gain_db / 20)`.
    target: f64,
    ramp: Option<Ramp>,
    /// Rate of the last block seen in this stream (ramp lengths are counted in it).
    last_rate: Option<u32>,
}

/// Largest gain in dB: `10 ** (770 / 20)` is about 3e38, near float32's largest value.
pub const MAX_GAIN_DB: f64 = 770.0;

pub fn db_to_linear(gain_db: f64) -> f64 {
    10f64.powf(gain_db / 20.0)
}

/// A gain whose linear value is not a finite float32 could only produce infinities.
fn check_gain_db(gain_db: f64) -> Result<()> {
    if gain_db.is_finite() && gain_db <= MAX_GAIN_DB {
        return Ok(());
    }
    Err(EngineError::config(format!(
        "gain_db must be finite and at most {}, got {}",
        py_float(MAX_GAIN_DB),
        py_float(gain_db)
    )))
}

impl Gain {
    pub fn new(gain_db: f64, ramp_ms: f64) -> Result<Self> {
        check_gain_db(gain_db)?;
        if !(ramp_ms.is_finite() && ramp_ms >= 0.0) {
            return Err(EngineError::config(format!(
                "ramp_ms must be a finite number >= 0, got {}",
                py_float(ramp_ms)
            )));
        }
        Ok(Self {
            gain_db,
            ramp_ms,
            target: db_to_linear(gain_db),
            ramp: None,
            last_rate: None,
        })
    }

    pub fn gain_db(&self) -> f64 {
        self.gain_db
    }

    pub fn ramp_ms(&self) -> f64 {
        self.ramp_ms
    }

    /// The gain the last processed sample had (the start of a new ramp).
    fn current(&self) -> f64 {
        match self.ramp {
            Some(r) if r.done > 0 => r.at(r.done),
            Some(r) => r.from,
            None => self.target,
        }
    }

    /// Sets a new gain; ramps to it over `round(ramp_ms * rate / 1000)` samples.
    pub fn set_gain_db(&mut self, gain_db: f64) -> Result<()> {
        check_gain_db(gain_db)?;
        let from = self.current();
        let to = db_to_linear(gain_db);
        self.gain_db = gain_db;
        self.target = to;
        let len = match self.last_rate {
            Some(rate) => round_half_even(self.ramp_ms * rate as f64 / 1000.0) as u64,
            None => 0,
        };
        self.ramp = (len > 0).then_some(Ramp {
            from,
            to,
            len,
            done: 0,
        });
        Ok(())
    }

    fn end_ramp(&mut self) {
        self.ramp = None;
    }
}

impl Stage for Gain {
    fn process(&mut self, input: BlockRef<'_>, sample_rate: u32, out: &mut Output) -> Result<()> {
        self.last_rate = Some(sample_rate);
        let n = input.frames;
        let mut data = out.buffer(input.data.len());
        // Frames still inside the ramp in this block, and their per-sample gains.
        let ramped = match self.ramp {
            Some(r) => ((r.len - r.done) as usize).min(n),
            None => 0,
        };
        let steady = self.target as f32;
        if ramped == 0 {
            data.extend(input.data.iter().map(|&x| x * steady));
        } else {
            let r = self.ramp.expect("ramped > 0 implies a ramp");
            let gains: Vec<f32> = (1..=ramped as u64)
                .map(|k| r.at(r.done + k) as f32)
                .collect();
            for c in 0..input.channels {
                let x = input.channel(c);
                data.extend(x[..ramped].iter().zip(&gains).map(|(&x, &g)| x * g));
                data.extend(x[ramped..].iter().map(|&x| x * steady));
            }
            let done = r.done + ramped as u64;
            self.ramp = (done < r.len).then_some(Ramp { done, ..r });
        }
        // A gain above 1 can take a finite sample past float32's range. Later stages of a fused
        // chain do not check their input again, so the stage that overflowed says so here.
        if steady > 1.0 || ramped > 0 {
            if let Some(i) = data.iter().position(|x| !x.is_finite()) {
                return Err(EngineError::format(format!(
                    "output overflows float32 at channel {}, index {}: lower gain_db or the \
                     input level",
                    i / n,
                    i % n
                )));
            }
        }
        out.push(Block::new(input.channels, n, data));
        Ok(())
    }

    fn flush(&mut self, _out: &mut Output) -> Result<()> {
        self.reset();
        Ok(())
    }

    /// Ends any ramp at its target and forgets the stream's rate (a gain set before the next
    /// stream's first block jumps).
    fn reset(&mut self) {
        self.end_ramp();
        self.last_rate = None;
    }

    fn output_rate(&self, input_rate: u32) -> u32 {
        input_rate
    }

    fn stream_output_rate(&self) -> Option<u32> {
        self.last_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(g: &mut Gain, x: &[f32], rate: u32) -> Vec<f32> {
        let mut out = Output::new();
        g.process(BlockRef::new(1, x.len(), x), rate, &mut out)
            .unwrap();
        out.pop().unwrap().data
    }

    #[test]
    fn steady_gain_is_f32_product() {
        let mut g = Gain::new(-6.0, 5.0).unwrap();
        let y = run(&mut g, &[1.0, -0.5, 0.25], 48000);
        let lin = db_to_linear(-6.0) as f32;
        assert_eq!(y, vec![lin, -0.5 * lin, 0.25 * lin]);
    }

    #[test]
    fn set_before_first_block_jumps() {
        let mut g = Gain::new(0.0, 5.0).unwrap();
        g.set_gain_db(20.0).unwrap();
        assert_eq!(run(&mut g, &[1.0; 4], 1000), vec![10.0; 4]);
    }

    #[test]
    fn ramp_follows_formula_across_blocks() {
        // 4 ms at 1 kHz: R = 4 samples.
        let mut g = Gain::new(0.0, 4.0).unwrap();
        run(&mut g, &[1.0], 1000);
        g.set_gain_db(20.0).unwrap();
        let a = run(&mut g, &[1.0; 3], 1000);
        let b = run(&mut g, &[1.0; 3], 1000);
        let want: Vec<f32> = (1..=4)
            .map(|k| (1.0 + 9.0 * k as f64 / 4.0) as f32)
            .collect();
        assert_eq!(a, want[..3]);
        assert_eq!(b, vec![want[3], 10.0, 10.0]);
    }

    #[test]
    fn ramp_applies_to_every_channel_alike() {
        let mut g = Gain::new(0.0, 2.0).unwrap();
        run(&mut g, &[1.0], 1000);
        g.set_gain_db(-20.0).unwrap();
        let mut out = Output::new();
        g.process(
            BlockRef::new(2, 3, &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]),
            1000,
            &mut out,
        )
        .unwrap();
        let y = &out[0].data;
        let g1 = (1.0 + (0.1 - 1.0) * 1.0 / 2.0) as f32;
        assert_eq!(y[..3], [g1, 0.1, 0.1]);
        assert_eq!(y[3..], [2.0 * g1, 0.2, 0.2]);
    }

    #[test]
    fn ramp_during_ramp_starts_from_last_sample_gain() {
        let mut g = Gain::new(0.0, 4.0).unwrap();
        run(&mut g, &[1.0], 1000);
        g.set_gain_db(20.0).unwrap(); // 1 -> 10 over 4
        run(&mut g, &[1.0; 2], 1000); // last sample gain 5.5
        g.set_gain_db(0.0).unwrap(); // 5.5 -> 1 over 4
        let y = run(&mut g, &[1.0], 1000);
        assert_eq!(y, vec![(5.5 + (1.0 - 5.5) * 1.0 / 4.0) as f32]);
    }

    #[test]
    fn zero_ramp_jumps_and_flush_ends_ramp() {
        let mut g = Gain::new(0.0, 0.0).unwrap();
        run(&mut g, &[1.0], 48000);
        g.set_gain_db(20.0).unwrap();
        assert_eq!(run(&mut g, &[1.0], 48000), vec![10.0]);

        let mut g = Gain::new(0.0, 100.0).unwrap();
        run(&mut g, &[1.0], 48000);
        g.set_gain_db(20.0).unwrap();
        let mut out = Output::new();
        g.flush(&mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(run(&mut g, &[1.0], 48000), vec![10.0]);
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(Gain::new(f64::NAN, 5.0).is_err());
        assert!(Gain::new(800.0, 5.0).is_err());
        assert!(Gain::new(770.0, 5.0).is_ok_and(|g| (g.target as f32).is_finite()));
        assert!(Gain::new(-1e6, 5.0).is_ok());
        assert!(Gain::new(0.0, -1.0).is_err());
        assert!(Gain::new(0.0, f64::INFINITY).is_err());
        assert!(Gain::new(0.0, 0.0)
            .unwrap()
            .set_gain_db(f64::INFINITY)
            .is_err());
    }
}
