//! The rest of a voice front end, from WebRTC's audio processing module (`sonora`): the
//! high-pass filter (`HighPassKernel`), noise suppression (`NoiseSuppressKernel`) and AGC2's
//! adaptive digital gain with its limiter (`AutoGainKernel`), one stage each.
//!
//! Each stage runs the module with only its own component on, configured as `livekit`'s
//! `AudioProcessingModule` configures it (the Python twins, `media_nodes/audio/voice_kernels.py`,
//! run WebRTC's C++ through it): the filter full band; noise suppression at the module's default
//! level (`Moderate`, about 12 dB); AGC2 with the adaptive digital controller at its defaults
//! (5 dB headroom, at most 50 dB of gain starting at 15 dB, 6 dB/s, output noise at most
//! -50 dBFS) and the limiter, no input volume controller and no fixed gain. Different code of one
//! algorithm, so the twins agree in measured level, not sample for sample.
//!
//! Streaming: the module takes 10 ms sub-frames at 8, 16, 32 or 48 kHz, one module per channel
//! (channels are processed independently: AGC2 finds a gain per channel). Each call emits one
//! block holding every sub-frame completed, so the output does not depend on how the input is
//! split; `flush` runs the partial sub-frame zero-padded and emits the samples it held, so the
//! count of samples out equals the count in. The output is delayed by the module's own
//! latency ([`latency_samples`]: none for the filter and the gain, the band split's and the
//! suppressor's for noise suppression).

use sonora::config::{AdaptiveDigital, GainController2, HighPassFilter, NoiseSuppression};
use sonora::{AudioProcessing, Config, StreamConfig};

use super::{Block, BlockRef, EngineError, Output, Result, Stage};

/// The sample rates the module runs natively.
pub const RATES: [u32; 4] = [8000, 16000, 32000, 48000];

/// Which component of the module a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    HighPass,
    NoiseSuppress,
    AutoGain,
}

impl Component {
    /// The module's configuration with only this component on, as livekit sets it.
    fn config(self) -> Config {
        let mut config = Config::default();
        match self {
            Component::HighPass => config.high_pass_filter = Some(HighPassFilter::default()),
            Component::NoiseSuppress => {
                config.noise_suppression = Some(NoiseSuppression::default());
            }
            Component::AutoGain => {
                config.gain_controller2 = Some(GainController2 {
                    adaptive_digital: Some(AdaptiveDigital::default()),
                    ..GainController2::default()
                });
            }
        }
        config
    }
}

/// The delay of `component`'s output behind its input, in samples, at `rate` (measured on both
/// twins: `latency_is_what_is_declared` here, tests/audio/test_voice.py for the C++ module).
pub fn latency_samples(component: Component, rate: u32) -> usize {
    // The module resamples 8 kHz up to 16 kHz and 48 kHz down to its 32 kHz processing rate
    // where a component needs it; the suppressor adds its overlap-add (and the band split).
    match (component, rate) {
        (Component::NoiseSuppress, 8000) => 72,
        (Component::NoiseSuppress, 16000) => 96,
        (Component::NoiseSuppress, 32000) => 195,
        (Component::NoiseSuppress, _) => 334,
        (Component::HighPass, 8000) | (Component::AutoGain, 8000) => 24,
        (Component::HighPass, 32000) => 3,
        (Component::HighPass, 48000) => 46,
        _ => 0,
    }
}

struct Channel {
    apm: Box<AudioProcessing>,
    /// The sub-frame being filled.
    input: Vec<f32>,
}

struct Stream {
    rate: u32,
    /// Samples per 10 ms sub-frame.
    sub: usize,
    chans: Vec<Channel>,
    /// Samples of the sub-frame being filled (the same in every channel).
    fill: usize,
}

/// One component of the module, streaming; see the module docs.
pub struct Voice {
    component: Component,
    stream: Option<Stream>,
}

impl std::fmt::Debug for Voice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Voice")
            .field("component", &self.component)
            .field("streaming", &self.stream.is_some())
            .finish()
    }
}

/// `sonora`'s errors on a sub-frame: every format is checked before the module sees it, so one
/// reaching here is the engine's failure, not the caller's input.
fn module_error(e: sonora::Error) -> EngineError {
    EngineError::engine(format!(
        "the audio processing module rejected a sub-frame: {e}"
    ))
}

impl Voice {
    pub fn new(component: Component) -> Self {
        Self {
            component,
            stream: None,
        }
    }

    pub fn component(&self) -> Component {
        self.component
    }

    /// Samples per channel taken but not yet emitted (the sub-frame being filled).
    pub fn pending_samples(&self) -> usize {
        self.stream.as_ref().map_or(0, |s| s.fill)
    }

    /// Samples per 10 ms sub-frame in the current stream (`None` before its first block).
    pub fn frame_samples(&self) -> Option<usize> {
        self.stream.as_ref().map(|s| s.sub)
    }

    /// The output's delay behind the input, in samples (0 before the first block).
    pub fn latency_samples(&self) -> usize {
        self.stream
            .as_ref()
            .map_or(0, |s| latency_samples(self.component, s.rate))
    }

    fn start(&self, rate: u32, channels: usize) -> Stream {
        let mono = StreamConfig::new(rate, 1);
        let sub = mono.num_frames();
        let chans = (0..channels)
            .map(|_| Channel {
                apm: Box::new(
                    AudioProcessing::builder()
                        .config(self.component.config())
                        .capture_config(mono)
                        .render_config(mono)
                        .build(),
                ),
                input: vec![0.0; sub],
            })
            .collect();
        Stream {
            rate,
            sub,
            chans,
            fill: 0,
        }
    }
}

impl Stream {
    /// Runs the full sub-frame of every channel, appending `sub` samples to each row of `rows`
    /// (row `c` is `rows[c * stride..]`, written at `at`).
    fn run(&mut self, rows: &mut [f32], stride: usize, at: usize) -> Result<()> {
        let sub = self.sub;
        for (c, ch) in self.chans.iter_mut().enumerate() {
            let dst = &mut rows[c * stride + at..c * stride + at + sub];
            ch.apm
                .process_capture_f32(&[&ch.input], &mut [dst])
                .map_err(module_error)?;
        }
        Ok(())
    }
}

impl Stage for Voice {
    fn process(&mut self, input: BlockRef<'_>, sample_rate: u32, out: &mut Output) -> Result<()> {
        if !RATES.contains(&sample_rate) {
            return Err(EngineError::format(format!(
                "the WebRTC audio processing module runs at 8000, 16000, 32000 or 48000 Hz, \
                 got {sample_rate} Hz; put Resample before it"
            )));
        }
        if let Some(s) = &self.stream {
            if s.rate != sample_rate {
                return Err(EngineError::format(format!(
                    "sample rate changed mid-stream from {} to {} Hz",
                    s.rate, sample_rate
                )));
            }
            if s.chans.len() != input.channels {
                return Err(EngineError::format(format!(
                    "channel count changed mid-stream from {} to {}",
                    s.chans.len(),
                    input.channels
                )));
            }
        } else {
            self.stream = Some(self.start(sample_rate, input.channels));
        }
        let s = self.stream.as_mut().expect("started above");
        let subs = (s.fill + input.frames) / s.sub;
        let n = subs * s.sub;
        let mut data = if n > 0 {
            out.zeros(input.channels * n)
        } else {
            Vec::new()
        };
        let mut pos = 0;
        for k in 0..subs {
            let take = s.sub - s.fill;
            for (c, ch) in s.chans.iter_mut().enumerate() {
                ch.input[s.fill..].copy_from_slice(&input.channel(c)[pos..pos + take]);
            }
            pos += take;
            s.fill = 0;
            s.run(&mut data, n, k * s.sub)?;
        }
        let rest = input.frames - pos;
        for (c, ch) in s.chans.iter_mut().enumerate() {
            ch.input[s.fill..s.fill + rest].copy_from_slice(&input.channel(c)[pos..]);
        }
        s.fill += rest;
        if n > 0 {
            out.push(Block::new(input.channels, n, data));
        }
        Ok(())
    }

    /// Runs the partial sub-frame zero-padded and emits as many samples as it held.
    fn flush(&mut self, out: &mut Output) -> Result<()> {
        if let Some(mut s) = self.stream.take() {
            let held = s.fill;
            if held > 0 {
                for ch in s.chans.iter_mut() {
                    ch.input[held..].fill(0.0);
                }
                let channels = s.chans.len();
                let mut full = vec![0.0; channels * s.sub];
                s.run(&mut full, s.sub, 0)?;
                let mut data = out.zeros(channels * held);
                for c in 0..channels {
                    data[c * held..(c + 1) * held]
                        .copy_from_slice(&full[c * s.sub..c * s.sub + held]);
                }
                out.push(Block::new(channels, held, data));
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

/// Declares a stage type for one component: a `Voice` the [`StageKind`](super::StageKind)
/// tells apart by type.
macro_rules! voice_stage {
    ($(#[$doc:meta])* $name:ident, $component:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(pub Voice);

        impl $name {
            pub fn new() -> Self {
                Self(Voice::new($component))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::ops::Deref for $name {
            type Target = Voice;
            fn deref(&self) -> &Voice {
                &self.0
            }
        }

        impl Stage for $name {
            fn process(
                &mut self,
                input: BlockRef<'_>,
                sample_rate: u32,
                out: &mut Output,
            ) -> Result<()> {
                self.0.process(input, sample_rate, out)
            }
            fn flush(&mut self, out: &mut Output) -> Result<()> {
                self.0.flush(out)
            }
            fn reset(&mut self) {
                self.0.reset()
            }
            fn output_rate(&self, input_rate: u32) -> u32 {
                self.0.output_rate(input_rate)
            }
            fn stream_output_rate(&self) -> Option<u32> {
                self.0.stream_output_rate()
            }
        }
    };
}

voice_stage!(
    /// WebRTC's high-pass filter (`HighPassKernel`).
    HighPass,
    Component::HighPass
);
voice_stage!(
    /// WebRTC's noise suppressor at its default level (`NoiseSuppressKernel`).
    NoiseSuppress,
    Component::NoiseSuppress
);
voice_stage!(
    /// AGC2: adaptive digital gain and limiter (`AutoGainKernel`).
    AutoGain,
    Component::AutoGain
);

#[cfg(test)]
mod tests {
    use super::super::testutil::{run_split, Lcg};
    use super::*;

    fn tone(rate: u32, hz: f32, amp: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| amp * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    fn db(x: &[f32]) -> f64 {
        let p = x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len() as f64;
        10.0 * (p + 1e-20).log10()
    }

    #[test]
    fn high_pass_removes_hum_and_passes_speech_band() {
        for rate in RATES {
            let n = rate as usize * 2;
            let half = n / 2;
            let mut hp = HighPass::new();
            let (hum, _) = run_split(&mut hp, 1, &[tone(rate, 50.0, 0.3, n)], rate, &[n]);
            let (k, _) = run_split(&mut hp, 1, &[tone(rate, 1000.0, 0.3, n)], rate, &[n]);
            let hum_db = db(&hum[0][half..]) - db(&tone(rate, 50.0, 0.3, n)[half..]);
            let k_db = db(&k[0][half..]) - db(&tone(rate, 1000.0, 0.3, n)[half..]);
            assert!(hum_db < -20.0, "{rate}: hum {hum_db:.1} dB");
            assert!(k_db.abs() < 1.0, "{rate}: 1 kHz {k_db:.1} dB");
        }
    }

    #[test]
    fn same_count_out_as_in_and_split_invariant() {
        let rate = 16000;
        let mut g = Lcg(3);
        let x: Vec<f32> = (0..rate as usize + 77)
            .map(|_| 0.1 * g.next_f32())
            .collect();
        for mut stage in [
            Voice::new(Component::HighPass),
            Voice::new(Component::NoiseSuppress),
            Voice::new(Component::AutoGain),
        ] {
            let (whole, lens) =
                run_split(&mut stage, 1, std::slice::from_ref(&x), rate, &[x.len()]);
            assert_eq!(whole[0].len(), x.len());
            assert_eq!(lens, vec![16000, 77]);
            for sizes in [&[1usize][..], &[7, 160, 13], &[320, 159, 161]] {
                let (split, _) = run_split(&mut stage, 1, std::slice::from_ref(&x), rate, sizes);
                assert_eq!(split, whole, "{:?} {sizes:?}", stage.component());
            }
        }
    }

    #[test]
    fn channels_are_independent_and_format_is_checked() {
        let rate = 48000;
        let a = tone(rate, 50.0, 0.3, 4800);
        let b = tone(rate, 700.0, 0.2, 4800);
        let mut hp = NoiseSuppress::new();
        let (two, _) = run_split(&mut hp, 2, &[a.clone(), b.clone()], rate, &[480]);
        let (one, _) = run_split(&mut hp, 1, std::slice::from_ref(&b), rate, &[480]);
        assert_eq!(two[1], one[0]);
        let mut v = AutoGain::new();
        let e = v
            .process(BlockRef::new(1, 4, &[0.0; 4]), 44100, &mut Output::new())
            .unwrap_err();
        assert!(
            e.message.contains("put Resample before it"),
            "{}",
            e.message
        );
        v.process(BlockRef::new(1, 4, &[0.0; 4]), rate, &mut Output::new())
            .unwrap();
        let e = v
            .process(BlockRef::new(2, 4, &[0.0; 8]), rate, &mut Output::new())
            .unwrap_err();
        assert_eq!(e.message, "channel count changed mid-stream from 1 to 2");
        let e = v
            .process(BlockRef::new(1, 4, &[0.0; 4]), 16000, &mut Output::new())
            .unwrap_err();
        assert_eq!(
            e.message,
            "sample rate changed mid-stream from 48000 to 16000 Hz"
        );
    }

    #[test]
    fn auto_gain_starts_at_its_initial_gain_and_keeps_a_stationary_tone_under_its_noise_ceiling() {
        // A -43 dBFS tone (0.4 s on, 0.1 s off) is stationary, so AGC2 takes it for noise: from
        // its initial 15 dB the gain falls at 6 dB/s until the "noise" is under -50 dBFS, to
        // 0 dB (the C++ module does the same: tests/audio/test_voice.py has the speech cases).
        let rate = 16000;
        let n = rate as usize * 6;
        let x: Vec<f32> = tone(rate, 300.0, 0.0141, n)
            .into_iter()
            .enumerate()
            .map(|(i, v)| if i % 8000 < 6400 { v } else { 0.0 })
            .collect();
        let mut agc = AutoGain::new();
        let (y, _) = run_split(&mut agc, 1, std::slice::from_ref(&x), rate, &[320]);
        let first = db(&y[0][..8000]) - db(&x[..8000]);
        let last = db(&y[0][n - 16000..]) - db(&x[n - 16000..]);
        assert!(first > 13.0, "first 0.5 s: {first:.1} dB");
        assert!(last.abs() < 0.5, "last second: {last:.1} dB");
    }
}
