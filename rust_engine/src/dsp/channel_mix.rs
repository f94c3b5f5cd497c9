//! Channel count conversion: copy, mono to N (duplicate), N to mono (average).

use super::{Block, BlockRef, EngineError, Output, Result, Stage};

pub const MAX_CHANNELS: i64 = 64;

#[derive(Debug, Clone)]
pub struct ChannelMix {
    channels: usize,
}

impl ChannelMix {
    pub fn new(channels: i64) -> Result<Self> {
        if !(1..=MAX_CHANNELS).contains(&channels) {
            return Err(EngineError::config(format!(
                "channels must be an int in 1..={MAX_CHANNELS}, got {channels}"
            )));
        }
        Ok(Self {
            channels: channels as usize,
        })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }
}

impl Stage for ChannelMix {
    fn process(&mut self, input: BlockRef<'_>, _rate: u32, out: &mut Output) -> Result<()> {
        let (c_in, c_out, n) = (input.channels, self.channels, input.frames);
        let mut data = out.buffer(c_out * n);
        if c_in == c_out {
            data.extend_from_slice(input.data);
        } else if c_in == 1 {
            for _ in 0..c_out {
                data.extend_from_slice(input.data);
            }
        } else if c_out == 1 {
            // Sum in float32 channel by channel, then scale by float32(1 / C).
            let acc = &mut data;
            acc.extend_from_slice(input.channel(0));
            for c in 1..c_in {
                acc.iter_mut()
                    .zip(input.channel(c))
                    .for_each(|(a, &x)| *a += x);
            }
            let scale = (1.0 / c_in as f64) as f32;
            acc.iter_mut().for_each(|a| *a *= scale);
        } else {
            return Err(EngineError::format(format!(
                "cannot mix {c_in} channels to {c_out}; supported: mono to any, any to mono, or the same count"
            )));
        }
        out.push(Block::new(c_out, n, data));
        Ok(())
    }

    fn flush(&mut self, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    fn reset(&mut self) {}

    fn output_rate(&self, input_rate: u32) -> u32 {
        input_rate
    }

    fn stream_output_rate(&self) -> Option<u32> {
        None // stateless: never emits on flush
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(to: i64, channels: usize, data: &[f32]) -> Result<Block> {
        let mut out = Output::new();
        ChannelMix::new(to)?.process(
            BlockRef::new(channels, data.len() / channels, data),
            8000,
            &mut out,
        )?;
        Ok(out.pop().unwrap())
    }

    #[test]
    fn copies_duplicates_and_averages() {
        assert_eq!(
            mix(2, 2, &[1.0, 2.0, 3.0, 4.0]).unwrap().data,
            [1.0, 2.0, 3.0, 4.0]
        );
        let up = mix(3, 1, &[1.0, 2.0]).unwrap();
        assert_eq!((up.channels, up.frames), (3, 2));
        assert_eq!(up.data, [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
        let down = mix(1, 3, &[1.0, 0.0, 2.0, 0.0, 0.0, 3.0]).unwrap();
        let third = (1.0f64 / 3.0) as f32;
        assert_eq!(down.data, [3.0 * third, 3.0 * third]);
    }

    #[test]
    fn rejects_bad_settings_and_layouts() {
        assert_eq!(
            ChannelMix::new(0).unwrap_err().kind,
            super::super::ErrorKind::Config
        );
        assert!(ChannelMix::new(65).is_err());
        let e = mix(2, 3, &[0.0; 6]).unwrap_err();
        assert_eq!(e.kind, super::super::ErrorKind::Format);
        assert!(e.message.starts_with("cannot mix 3 channels to 2; "));
    }
}
