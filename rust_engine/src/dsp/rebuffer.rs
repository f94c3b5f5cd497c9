//! Fixed-size blocks from arbitrary ones (`RebufferKernel`).

use super::{py_float, round_half_even, Block, BlockRef, EngineError, Output, Result, Stage};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Size {
    Samples(usize),
    FrameMs(f64),
}

#[derive(Debug)]
struct Stream {
    rate: u32,
    channels: usize,
    block: usize,
    /// Per channel, the samples of the block being filled (`< block` of them between calls).
    pending: Vec<Vec<f32>>,
}

impl Stream {
    fn take_block(&mut self, out: &mut Output) -> Block {
        let n = self.pending[0].len();
        let mut data = out.buffer(self.channels * n);
        for ch in &mut self.pending {
            data.extend_from_slice(ch);
            ch.clear();
        }
        Block::new(self.channels, n, data)
    }
}

#[derive(Debug)]
pub struct Rebuffer {
    size: Size,
    pad_final: bool,
    stream: Option<Stream>,
}

impl Rebuffer {
    pub fn new(samples: Option<i64>, frame_ms: Option<f64>, pad_final: bool) -> Result<Self> {
        let size = match (samples, frame_ms) {
            (Some(n), None) if n >= 1 => match usize::try_from(n) {
                Ok(n) => Size::Samples(n),
                Err(_) => return Err(EngineError::config(format!("samples is too large: {n}"))),
            },
            (Some(n), None) => {
                return Err(EngineError::config(format!(
                    "samples must be an int >= 1, got {n}"
                )))
            }
            (None, Some(ms)) if ms.is_finite() && ms > 0.0 => Size::FrameMs(ms),
            (None, Some(ms)) => {
                return Err(EngineError::config(format!(
                    "frame_ms must be > 0, got {}",
                    py_float(ms)
                )))
            }
            _ => {
                return Err(EngineError::config(
                    "give exactly one of samples or frame_ms".to_owned(),
                ))
            }
        };
        Ok(Self {
            size,
            pad_final,
            stream: None,
        })
    }

    pub fn samples(&self) -> Option<usize> {
        match self.size {
            Size::Samples(n) => Some(n),
            Size::FrameMs(_) => None,
        }
    }

    pub fn frame_ms(&self) -> Option<f64> {
        match self.size {
            Size::Samples(_) => None,
            Size::FrameMs(ms) => Some(ms),
        }
    }

    pub fn pad_final(&self) -> bool {
        self.pad_final
    }

    /// Block size for a stream at `rate`: `samples`, or `round(rate * frame_ms / 1000)` (>= 1).
    pub fn block_size(&self, rate: u32) -> usize {
        match self.size {
            Size::Samples(n) => n,
            Size::FrameMs(ms) => (round_half_even(rate as f64 * ms / 1000.0) as usize).max(1),
        }
    }
}

impl Stage for Rebuffer {
    fn process(&mut self, input: BlockRef<'_>, sample_rate: u32, out: &mut Output) -> Result<()> {
        let block = self.block_size(sample_rate);
        let s = self.stream.get_or_insert_with(|| Stream {
            rate: sample_rate,
            channels: input.channels,
            block,
            pending: vec![Vec::with_capacity(block.min(1 << 16)); input.channels],
        });
        if sample_rate != s.rate {
            return Err(EngineError::format(format!(
                "sample rate changed mid-stream from {} to {sample_rate} Hz",
                s.rate
            )));
        }
        if input.channels != s.channels {
            return Err(EngineError::format(format!(
                "channel count changed mid-stream from {} to {}",
                s.channels, input.channels
            )));
        }
        let mut pos = 0;
        while pos < input.frames {
            let take = (s.block - s.pending[0].len()).min(input.frames - pos);
            for (c, ch) in s.pending.iter_mut().enumerate() {
                ch.extend_from_slice(&input.channel(c)[pos..pos + take]);
            }
            pos += take;
            if s.pending[0].len() == s.block {
                let block = s.take_block(out);
                out.push(block);
            }
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut Output) -> Result<()> {
        if let Some(mut s) = self.stream.take() {
            if !s.pending[0].is_empty() {
                if self.pad_final {
                    for ch in &mut s.pending {
                        ch.resize(s.block, 0.0);
                    }
                }
                let block = s.take_block(out);
                out.push(block);
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.stream = None;
    }

    fn output_rate(&self, input_rate: u32) -> u32 {
        input_rate
    }

    fn stream_output_rate(&self) -> Option<u32> {
        self.stream.as_ref().map(|s| s.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run_split, Lcg};
    use super::*;

    #[test]
    fn emits_full_blocks_then_short_tail() {
        let x: Vec<f32> = (0..25).map(|v| v as f32).collect();
        let mut r = Rebuffer::new(Some(10), None, false).unwrap();
        let (y, lens) = run_split(&mut r, 1, std::slice::from_ref(&x), 8000, &[3, 7, 11]);
        assert_eq!(lens, [10, 10, 5]);
        assert_eq!(y[0], x);
    }

    #[test]
    fn pads_final_block_with_zeros() {
        let x: Vec<Vec<f32>> = vec![(0..12).map(|v| v as f32).collect(), vec![1.0; 12]];
        let mut r = Rebuffer::new(Some(5), None, true).unwrap();
        let (y, lens) = run_split(&mut r, 2, &x, 8000, &[12]);
        assert_eq!(lens, [5, 5, 5]);
        assert_eq!(y[0][10..], [10.0, 11.0, 0.0, 0.0, 0.0]);
        assert_eq!(y[1][10..], [1.0, 1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn exact_multiple_has_no_tail_and_invariant_to_splits() {
        let mut rng = Lcg(1);
        let x = vec![(0..960).map(|_| rng.next_f32()).collect::<Vec<_>>()];
        let mut r = Rebuffer::new(None, Some(20.0), true).unwrap();
        let (whole, lens) = run_split(&mut r, 1, &x, 16000, &[960]);
        assert_eq!(lens, [320; 3]);
        let (split, lens2) = run_split(&mut r, 1, &x, 16000, &[1, 100, 333]);
        assert_eq!((whole, lens), (split, lens2));
    }

    #[test]
    fn frame_ms_rounds_half_even_and_at_least_one() {
        let r = Rebuffer::new(None, Some(0.5), false).unwrap();
        assert_eq!(r.block_size(5000), 2); // 2.5 -> 2
        assert_eq!(r.block_size(7000), 4); // 3.5 -> 4
        assert_eq!(r.block_size(1000), 1); // 0.5 -> 0 -> 1
    }

    #[test]
    fn validates_settings_and_stream() {
        assert!(Rebuffer::new(None, None, false).is_err());
        assert!(Rebuffer::new(Some(10), Some(10.0), false).is_err());
        assert!(Rebuffer::new(Some(0), None, false).is_err());
        assert!(Rebuffer::new(None, Some(f64::NAN), false).is_err());
        let mut r = Rebuffer::new(Some(4), None, false).unwrap();
        r.process(BlockRef::new(1, 2, &[0.0; 2]), 8000, &mut Output::new())
            .unwrap();
        let e = r
            .process(BlockRef::new(1, 2, &[0.0; 2]), 16000, &mut Output::new())
            .unwrap_err();
        assert_eq!(
            e.message,
            "sample rate changed mid-stream from 8000 to 16000 Hz"
        );
        r.reset();
        let mut out = Output::new();
        r.flush(&mut out).unwrap();
        assert!(out.is_empty());
        r.process(BlockRef::new(2, 2, &[0.0; 4]), 16000, &mut Output::new())
            .unwrap();
    }
}
