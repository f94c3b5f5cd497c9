//! RNNoise noise suppression at 48 kHz on nnnoiseless (`DenoiseKernel`).
//!
//! RNNoise works on 480-sample frames (10 ms at 48 kHz) of samples in the int16 range. Input of
//! any size is gathered into stream-aligned frames, one model state per channel; each complete
//! frame yields 480 output samples at once. RNNoise's overlap-add puts the denoised copy of input
//! frame `k` in the output of frame `k + 1`, so the output is the denoised input delayed by
//! [`LATENCY_SAMPLES`]; the count of samples out always equals the count in (after `flush`).

use std::sync::OnceLock;

use nnnoiseless::{DenoiseState, RnnModel};

use super::{py_float, Block, BlockRef, EngineError, Output, Result, Stage};

/// Samples per RNNoise frame (10 ms at 48 kHz).
pub const FRAME: usize = DenoiseState::FRAME_SIZE;
/// The only rate RNNoise runs at.
pub const RATE: u32 = 48_000;
/// Delay of the denoised signal, in samples (RNNoise's one-frame overlap-add).
pub const LATENCY_SAMPLES: usize = FRAME;
/// Float audio full scale in RNNoise's int16 units.
const SCALE: f32 = 32768.0;

/// The model weights, parsed once and shared by every channel of every kernel.
fn model() -> &'static RnnModel {
    static MODEL: OnceLock<RnnModel> = OnceLock::new();
    MODEL.get_or_init(RnnModel::default)
}

struct Channel {
    state: Box<DenoiseState<'static>>,
    /// Input of the frame being filled, scaled to int16 units (`< FRAME` samples between calls).
    pending: Vec<f32>,
    /// The previous complete input frame (unscaled): the dry signal aligned with the next output.
    dry: Vec<f32>,
}

struct Stream {
    channels: usize,
    chans: Vec<Channel>,
}

/// Noise suppression; `mix` is the fraction of the (latency-aligned) dry signal kept.
pub struct Denoise {
    mix: f32,
    mix_f64: f64,
    stream: Option<Stream>,
    /// Speech probability of the last frame, per channel (empty before the first frame).
    vad: Vec<f32>,
}

impl std::fmt::Debug for Denoise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Denoise")
            .field("mix", &self.mix_f64)
            .field("streaming", &self.stream.is_some())
            .finish()
    }
}

impl Denoise {
    pub fn new(mix: f64) -> Result<Self> {
        if !(mix.is_finite() && (0.0..=1.0).contains(&mix)) {
            return Err(EngineError::config(format!(
                "mix must be a number in [0, 1], got {}",
                py_float(mix)
            )));
        }
        Ok(Self {
            mix: mix as f32,
            mix_f64: mix,
            stream: None,
            vad: Vec::new(),
        })
    }

    pub fn mix(&self) -> f64 {
        self.mix_f64
    }

    /// Speech probability (0..1) RNNoise gave the last complete frame, per channel.
    pub fn vad_probability(&self) -> Vec<f32> {
        self.vad.clone()
    }

    /// Samples buffered towards the next frame (per channel).
    pub fn pending_samples(&self) -> usize {
        self.stream.as_ref().map_or(0, |s| s.chans[0].pending.len())
    }

    fn start(channels: usize) -> Stream {
        let chans = (0..channels)
            .map(|_| Channel {
                state: DenoiseState::with_model(model()),
                pending: Vec::with_capacity(FRAME),
                dry: vec![0.0; FRAME],
            })
            .collect();
        Stream { channels, chans }
    }

    /// Runs one full frame of channel `ch`, writing `FRAME` output samples to `out`.
    fn run_frame(mix: f32, ch: &mut Channel, out: &mut [f32]) -> f32 {
        let mut wet = [0.0f32; FRAME];
        let vad = ch.state.process_frame(&mut wet, &ch.pending);
        let wet_gain = 1.0 - mix;
        for ((o, w), d) in out.iter_mut().zip(&wet).zip(&ch.dry) {
            *o = (w / SCALE) * wet_gain + d * mix;
        }
        for (d, p) in ch.dry.iter_mut().zip(&ch.pending) {
            *d = p / SCALE;
        }
        ch.pending.clear();
        vad
    }
}

impl Stage for Denoise {
    fn process(&mut self, input: BlockRef<'_>, sample_rate: u32, out: &mut Output) -> Result<()> {
        if sample_rate != RATE {
            return Err(EngineError::format(format!(
                "RNNoise runs at 48000 Hz, got {sample_rate} Hz; put Resample(48000) before it"
            )));
        }
        let s = self
            .stream
            .get_or_insert_with(|| Self::start(input.channels));
        if input.channels != s.channels {
            return Err(EngineError::format(format!(
                "channel count changed mid-stream from {} to {}",
                s.channels, input.channels
            )));
        }
        let pending = s.chans[0].pending.len();
        let frames = (pending + input.frames) / FRAME;
        let n = frames * FRAME;
        let mut data = if n > 0 {
            out.zeros(s.channels * n)
        } else {
            Vec::new()
        };
        let mix = self.mix;
        if frames > 0 {
            self.vad.clear();
        }
        for (c, ch) in s.chans.iter_mut().enumerate() {
            let x = input.channel(c);
            let row = &mut data[c * n..(c + 1) * n];
            let mut pos = 0;
            let mut vad = 0.0;
            for f in 0..frames {
                let take = FRAME - ch.pending.len();
                ch.pending
                    .extend(x[pos..pos + take].iter().map(|v| v * SCALE));
                pos += take;
                vad = Self::run_frame(mix, ch, &mut row[f * FRAME..(f + 1) * FRAME]);
            }
            ch.pending.extend(x[pos..].iter().map(|v| v * SCALE));
            if frames > 0 {
                self.vad.push(vad);
            }
        }
        if frames > 0 {
            out.push(Block::new(s.channels, n, data));
        }
        Ok(())
    }

    /// Pads the partial frame with zeros, runs it and emits as many samples as it held.
    fn flush(&mut self, out: &mut Output) -> Result<()> {
        if let Some(mut s) = self.stream.take() {
            let n = s.chans[0].pending.len();
            if n > 0 {
                let mut data = out.zeros(s.channels * n);
                let mix = self.mix;
                for (c, ch) in s.chans.iter_mut().enumerate() {
                    ch.pending.resize(FRAME, 0.0);
                    let mut frame = [0.0f32; FRAME];
                    Self::run_frame(mix, ch, &mut frame);
                    data[c * n..(c + 1) * n].copy_from_slice(&frame[..n]);
                }
                out.push(Block::new(s.channels, n, data));
            }
        }
        self.reset();
        Ok(())
    }

    fn reset(&mut self) {
        self.stream = None;
        self.vad.clear();
    }

    fn output_rate(&self, input_rate: u32) -> u32 {
        input_rate
    }

    fn stream_output_rate(&self) -> Option<u32> {
        self.stream.as_ref().map(|_| RATE)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run_split, Lcg};
    use super::*;

    /// A speech-like test signal: a 200 Hz harmonic tone in 4 Hz bursts, plus white noise.
    fn noisy(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = Lcg(seed);
        let mut clean = Vec::with_capacity(n);
        let mut mixed = Vec::with_capacity(n);
        for i in 0..n {
            let t = i as f32 / RATE as f32;
            let env = (std::f32::consts::PI * 4.0 * t).sin().max(0.0);
            let mut s = 0.0;
            for h in 1..=10 {
                s += (2.0 * std::f32::consts::PI * 200.0 * h as f32 * t).sin() / h as f32;
            }
            let c = 0.15 * env * s;
            clean.push(c);
            mixed.push(c + 0.05 * rng.next_f32());
        }
        (clean, mixed)
    }

    fn snr_db(clean: &[f32], test: &[f32]) -> f64 {
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for (c, t) in clean.iter().zip(test) {
            num += (*c as f64).powi(2);
            den += (*t as f64 - *c as f64).powi(2);
        }
        10.0 * (num / den).log10()
    }

    #[test]
    fn same_count_out_as_in_and_split_invariant() {
        let (_, x) = noisy(48_000 + 123, 1);
        let mut d = Denoise::new(0.0).unwrap();
        let (whole, lens) = run_split(&mut d, 1, std::slice::from_ref(&x), RATE, &[x.len()]);
        assert_eq!(whole[0].len(), x.len());
        assert_eq!(lens, vec![48_000, 123]);
        for sizes in [&[1usize][..], &[7, 480, 13], &[960, 479, 481]] {
            let (split, _) = run_split(&mut d, 1, std::slice::from_ref(&x), RATE, sizes);
            assert_eq!(split, whole, "{sizes:?}");
        }
    }

    #[test]
    fn improves_snr_on_noisy_tones() {
        let (clean, x) = noisy(3 * 48_000, 2);
        let mut d = Denoise::new(0.0).unwrap();
        let (y, _) = run_split(&mut d, 1, std::slice::from_ref(&x), RATE, &[960]);
        let skip = 48_000 / 2; // the model settles
        let end = x.len() - LATENCY_SAMPLES;
        let before = snr_db(&clean[skip..end], &x[skip..end]);
        let after = snr_db(&clean[skip..end], &y[0][skip + LATENCY_SAMPLES..]);
        assert!(
            after > before + 3.0,
            "before {before:.1} dB, after {after:.1} dB"
        );
    }

    #[test]
    fn mix_one_is_the_delayed_input() {
        let (_, x) = noisy(4800, 3);
        let mut d = Denoise::new(1.0).unwrap();
        let (y, _) = run_split(&mut d, 1, std::slice::from_ref(&x), RATE, &[333]);
        assert!(y[0][..LATENCY_SAMPLES].iter().all(|v| *v == 0.0));
        assert_eq!(&y[0][LATENCY_SAMPLES..], &x[..x.len() - LATENCY_SAMPLES]);
    }

    #[test]
    fn channels_are_independent_and_rate_is_checked() {
        let (_, a) = noisy(2400, 4);
        let (_, b) = noisy(2400, 5);
        let mut d = Denoise::new(0.0).unwrap();
        let (two, _) = run_split(&mut d, 2, &[a.clone(), b.clone()], RATE, &[480]);
        let (one, _) = run_split(&mut d, 1, std::slice::from_ref(&b), RATE, &[480]);
        assert_eq!(two[1], one[0]);
        let e = d
            .process(BlockRef::new(1, 4, &[0.0; 4]), 16_000, &mut Output::new())
            .unwrap_err();
        assert!(e.message.contains("Resample(48000)"), "{}", e.message);
        d.process(BlockRef::new(1, 4, &[0.0; 4]), RATE, &mut Output::new())
            .unwrap();
        let e = d
            .process(BlockRef::new(2, 4, &[0.0; 8]), RATE, &mut Output::new())
            .unwrap_err();
        assert_eq!(e.message, "channel count changed mid-stream from 1 to 2");
        assert!(Denoise::new(1.5).is_err() && Denoise::new(f64::NAN).is_err());
    }
}
