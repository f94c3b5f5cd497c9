//! Energy voice activity detection with hysteresis and minimum durations (`EnergyVADKernel`).
//!
//! The stream is cut into analysis frames of `F = round(frame_ms * rate / 1000)` samples counted
//! from its first sample, whatever the input blocks are; each frame's mean square `E` (over every
//! channel) drives a four-state machine. Sums run sample by sample in `f64`, in a fixed order, and
//! the thresholds are compared as linear energies, so the Python twin reproduces every decision
//! exactly (`docs/stages-audio.md`).

use super::{py_float, round_half_even, BlockRef, EngineError, Result};

/// What the detector is doing, between analysis frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Silence,
    /// Loud frames began at `onset`, not yet for `min_speech_ms`.
    MaybeSpeech {
        onset: u64,
    },
    Speech,
    /// Quiet frames began at `onset`, not yet for `min_silence_ms`.
    MaybeSilence {
        onset: u64,
    },
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Silence => "silence",
            State::MaybeSpeech { .. } => "maybe_speech",
            State::Speech => "speech",
            State::MaybeSilence { .. } => "maybe_silence",
        }
    }

    /// Whether speech is on (confirmed, its end not yet confirmed).
    pub fn speaking(self) -> bool {
        matches!(self, State::Speech | State::MaybeSilence { .. })
    }

    /// Where the unconfirmed run began (a candidate start or end), if there is one.
    pub fn pending_sample(self) -> Option<u64> {
        match self {
            State::MaybeSpeech { onset } | State::MaybeSilence { onset } => Some(onset),
            State::Silence | State::Speech => None,
        }
    }
}

/// A decision: speech started (or ended) at `sample`, known once `confirmed` samples were seen.
/// Both count from the stream's first sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub start: bool,
    pub sample: u64,
    pub confirmed: u64,
}

impl Decision {
    pub fn kind(&self) -> &'static str {
        if self.start {
            "speech_start"
        } else {
            "speech_end"
        }
    }
}

/// The validated settings, in milliseconds and dB as given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadSettings {
    pub threshold_db: f64,
    pub hysteresis_db: f64,
    pub min_speech_ms: f64,
    pub min_silence_ms: f64,
    pub frame_ms: f64,
}

/// The longest duration setting: one hour.
const MAX_MS: f64 = 3_600_000.0;

impl VadSettings {
    pub fn check(self) -> Result<Self> {
        let bad = |name: &str, what: &str, v: f64| {
            Err(EngineError::config(format!(
                "{name} must be {what}, got {}",
                py_float(v)
            )))
        };
        if !(self.threshold_db.is_finite() && (-200.0..=0.0).contains(&self.threshold_db)) {
            return bad("threshold_db", "a number in [-200, 0]", self.threshold_db);
        }
        if !(self.hysteresis_db.is_finite() && (0.0..=200.0).contains(&self.hysteresis_db)) {
            return bad("hysteresis_db", "a number in [0, 200]", self.hysteresis_db);
        }
        for (name, v) in [
            ("min_speech_ms", self.min_speech_ms),
            ("min_silence_ms", self.min_silence_ms),
        ] {
            if !(v.is_finite() && (0.0..=MAX_MS).contains(&v)) {
                return bad(name, "a number in [0, 3600000]", v);
            }
        }
        if !(self.frame_ms.is_finite() && self.frame_ms > 0.0 && self.frame_ms <= 1000.0) {
            return bad("frame_ms", "a number in (0, 1000]", self.frame_ms);
        }
        Ok(self)
    }
}

/// `round(ms * rate / 1000)` samples.
pub fn ms_to_samples(ms: f64, rate: u32) -> u64 {
    round_half_even(ms * rate as f64 / 1000.0) as u64
}

/// The four-state machine of `docs/stages-audio.md` over a stream's analysis frames, with the
/// stream position it needs; how a frame is judged loud or quiet is the detector's (energy here,
/// the Silero model in `silero_vad`).
#[derive(Debug, Clone)]
pub struct Decider {
    min_speech: u64,
    min_silence: u64,
    /// Samples in complete analysis frames.
    analyzed: u64,
    seen: u64,
    state: State,
}

impl Decider {
    /// A stream's start, with the minimum durations in samples.
    pub fn new(min_speech: u64, min_silence: u64) -> Self {
        Self {
            min_speech,
            min_silence,
            analyzed: 0,
            seen: 0,
            state: State::Silence,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Samples in complete analysis frames.
    pub fn analyzed_samples(&self) -> u64 {
        self.analyzed
    }

    /// Counts `n` more input samples (the end of stream `finish` reports).
    pub fn saw(&mut self, n: u64) {
        self.seen += n;
    }

    /// The next analysis frame, `frame` samples long, was `loud` (at least the start threshold)
    /// or `quiet` (below the end threshold), or neither (between them); appends the decision it
    /// completed, if any.
    pub fn frame(&mut self, frame: u64, loud: bool, quiet: bool, out: &mut Vec<Decision>) {
        let from = self.analyzed;
        self.analyzed += frame;
        let end = self.analyzed;
        self.state = match self.state {
            State::Silence if loud => self.confirm_start(from, end, out),
            State::Silence => State::Silence,
            State::MaybeSpeech { .. } if quiet => State::Silence,
            State::MaybeSpeech { onset } => self.confirm_start(onset, end, out),
            State::Speech if quiet => self.confirm_end(from, end, out),
            State::Speech => State::Speech,
            State::MaybeSilence { .. } if !quiet => State::Speech,
            State::MaybeSilence { onset } => self.confirm_end(onset, end, out),
        };
    }

    fn confirm_start(&self, onset: u64, end: u64, out: &mut Vec<Decision>) -> State {
        if end - onset >= self.min_speech {
            out.push(Decision {
                start: true,
                sample: onset,
                confirmed: end,
            });
            State::Speech
        } else {
            State::MaybeSpeech { onset }
        }
    }

    fn confirm_end(&self, onset: u64, end: u64, out: &mut Vec<Decision>) -> State {
        if end - onset >= self.min_silence {
            out.push(Decision {
                start: false,
                sample: onset,
                confirmed: end,
            });
            State::Silence
        } else {
            State::MaybeSilence { onset }
        }
    }

    /// End of stream: speech still on ends (at the quiet run's start, or at the stream's end).
    pub fn finish(self, out: &mut Vec<Decision>) {
        let sample = match self.state {
            State::Speech => self.seen,
            State::MaybeSilence { onset } => onset,
            State::Silence | State::MaybeSpeech { .. } => return,
        };
        out.push(Decision {
            start: false,
            sample,
            confirmed: self.seen,
        });
    }
}

#[derive(Debug)]
struct Stream {
    rate: u32,
    channels: usize,
    frame: usize,
    /// Per channel, the running sum of squares of the analysis frame being filled.
    acc: Vec<f64>,
    /// Samples of the current analysis frame seen so far (`< frame` between calls).
    filled: usize,
    decider: Decider,
}

/// The state machine of `docs/stages-audio.md` (`EnergyVADKernel`).
#[derive(Debug)]
pub struct EnergyVad {
    settings: VadSettings,
    /// `10^(threshold_db / 10)`: a frame at least this loud is loud.
    start_energy: f64,
    /// `10^((threshold_db - hysteresis_db) / 10)`: a frame below this is quiet.
    end_energy: f64,
    stream: Option<Stream>,
}

impl EnergyVad {
    pub fn new(settings: VadSettings) -> Result<Self> {
        let s = settings.check()?;
        Ok(Self {
            settings: s,
            start_energy: 10f64.powf(s.threshold_db / 10.0),
            end_energy: 10f64.powf((s.threshold_db - s.hysteresis_db) / 10.0),
            stream: None,
        })
    }

    pub fn settings(&self) -> VadSettings {
        self.settings
    }

    pub fn state(&self) -> State {
        self.stream
            .as_ref()
            .map_or(State::Silence, |s| s.decider.state())
    }

    /// Samples in complete analysis frames of the current stream.
    pub fn analyzed_samples(&self) -> u64 {
        self.stream
            .as_ref()
            .map_or(0, |s| s.decider.analyzed_samples())
    }

    /// The analysis frame length `F` of the current stream, if one is under way.
    pub fn frame_samples(&self) -> Option<usize> {
        self.stream.as_ref().map(|s| s.frame)
    }

    /// Analyzes a block that passed [`super::check_block`]; appends the decisions it made.
    pub fn process(
        &mut self,
        input: BlockRef<'_>,
        sample_rate: u32,
        out: &mut Vec<Decision>,
    ) -> Result<()> {
        let settings = self.settings;
        let s = self.stream.get_or_insert_with(|| Stream {
            rate: sample_rate,
            channels: input.channels,
            frame: (ms_to_samples(settings.frame_ms, sample_rate) as usize).max(1),
            acc: vec![0.0; input.channels],
            filled: 0,
            decider: Decider::new(
                ms_to_samples(settings.min_speech_ms, sample_rate),
                ms_to_samples(settings.min_silence_ms, sample_rate),
            ),
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
        let (start_energy, end_energy) = (self.start_energy, self.end_energy);
        let mut pos = 0;
        while pos < input.frames {
            let take = (s.frame - s.filled).min(input.frames - pos);
            for (c, acc) in s.acc.iter_mut().enumerate() {
                // One sample at a time, in order: the sum must not depend on block boundaries.
                let mut a = *acc;
                for &v in &input.channel(c)[pos..pos + take] {
                    let v = v as f64;
                    a += v * v;
                }
                *acc = a;
            }
            pos += take;
            s.filled += take;
            if s.filled == s.frame {
                let mut total = 0.0;
                for a in &mut s.acc {
                    total += *a;
                    *a = 0.0;
                }
                let energy = total / (s.channels * s.frame) as f64;
                s.filled = 0;
                let (loud, quiet) = (energy >= start_energy, energy < end_energy);
                s.decider.frame(s.frame as u64, loud, quiet, out);
            }
        }
        s.decider.saw(input.frames as u64);
        Ok(())
    }

    /// End of stream: speech still on ends (at the quiet run's start, or at the stream's end);
    /// then the stream state is dropped.
    pub fn flush(&mut self, out: &mut Vec<Decision>) {
        if let Some(s) = self.stream.take() {
            s.decider.finish(out);
        }
    }

    pub fn reset(&mut self) {
        self.stream = None;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Lcg;
    use super::*;

    fn vad(min_speech_ms: f64, min_silence_ms: f64) -> EnergyVad {
        EnergyVad::new(VadSettings {
            threshold_db: -40.0,
            hysteresis_db: 6.0,
            min_speech_ms,
            min_silence_ms,
            frame_ms: 10.0,
        })
        .unwrap()
    }

    /// Runs `x` (mono, 1 kHz so one analysis frame is 10 samples) in blocks of `sizes`.
    fn run(v: &mut EnergyVad, x: &[f32], sizes: &[usize]) -> Vec<Decision> {
        let mut out = Vec::new();
        let (mut pos, mut k) = (0, 0);
        while pos < x.len() {
            let n = sizes[k % sizes.len()].min(x.len() - pos);
            k += 1;
            v.process(BlockRef::new(1, n, &x[pos..pos + n]), 1000, &mut out)
                .unwrap();
            pos += n;
        }
        v.flush(&mut out);
        out
    }

    /// Constant-amplitude stretches: (amplitude, samples).
    fn signal(parts: &[(f32, usize)]) -> Vec<f32> {
        parts
            .iter()
            .flat_map(|&(a, n)| (0..n).map(move |i| if i % 2 == 0 { a } else { -a }))
            .collect()
    }

    fn d(start: bool, sample: u64, confirmed: u64) -> Decision {
        Decision {
            start,
            sample,
            confirmed,
        }
    }

    #[test]
    fn start_and_end_carry_when_speech_began_and_ended() {
        // -20 dB speech from 100 to 400, -60 dB around it; min speech 50, min silence 100.
        let x = signal(&[(0.001, 100), (0.1, 300), (0.001, 300)]);
        let got = run(&mut vad(50.0, 100.0), &x, &[7]);
        assert_eq!(got, [d(true, 100, 150), d(false, 400, 500)]);
    }

    #[test]
    fn short_bursts_and_short_gaps_are_ignored() {
        // A 30-sample click (< 50), then speech with a 50-sample gap (< 100) inside it.
        let x = signal(&[
            (0.0, 100),
            (0.1, 30),
            (0.0, 100),
            (0.1, 100),
            (0.0, 50),
            (0.1, 100),
            (0.0, 200),
        ]);
        let got = run(&mut vad(50.0, 100.0), &x, &[13, 1, 64]);
        assert_eq!(got, [d(true, 230, 280), d(false, 480, 580)]);
    }

    #[test]
    fn hysteresis_keeps_speech_between_the_thresholds() {
        // -43 dB is below the start threshold (-40) but above the end threshold (-46).
        let between = 10f32.powf(-43.0 / 20.0);
        let x = signal(&[(0.0, 50), (0.1, 100), (between, 300), (0.0, 200)]);
        let got = run(&mut vad(0.0, 0.0), &x, &[100]);
        assert_eq!(got, [d(true, 50, 60), d(false, 450, 460)]);
        // Never starts from between the thresholds.
        assert!(run(&mut vad(0.0, 0.0), &signal(&[(between, 500)]), &[100]).is_empty());
    }

    #[test]
    fn flush_ends_speech_at_the_stream_end_or_the_quiet_run() {
        let x = signal(&[(0.1, 205)]);
        assert_eq!(
            run(&mut vad(0.0, 100.0), &x, &[64]),
            [d(true, 0, 10), d(false, 205, 205)]
        );
        let x = signal(&[(0.1, 100), (0.0, 55)]);
        assert_eq!(
            run(&mut vad(0.0, 100.0), &x, &[64]),
            [d(true, 0, 10), d(false, 100, 155)]
        );
    }

    #[test]
    fn decisions_do_not_depend_on_the_split() {
        let mut rng = Lcg(3);
        let mut x = Vec::new();
        for k in 0..40 {
            let amp = [0.0005, 0.02, 0.2, 0.008][k % 4] * (1.0 + 0.5 * rng.next_f32());
            x.extend((0..(37 + (rng.next_u32() % 200) as usize)).map(|_| amp * rng.next_f32()));
        }
        let whole = run(&mut vad(20.0, 40.0), &x, &[x.len()]);
        assert!(whole.len() >= 4);
        for sizes in [&[1usize][..], &[3, 97, 10], &[333]] {
            assert_eq!(run(&mut vad(20.0, 40.0), &x, sizes), whole);
        }
    }

    #[test]
    fn validates_settings_and_stream() {
        let ok = VadSettings {
            threshold_db: -40.0,
            hysteresis_db: 6.0,
            min_speech_ms: 100.0,
            min_silence_ms: 300.0,
            frame_ms: 10.0,
        };
        assert!(EnergyVad::new(ok).is_ok());
        for bad in [
            VadSettings {
                threshold_db: 1.0,
                ..ok
            },
            VadSettings {
                hysteresis_db: -1.0,
                ..ok
            },
            VadSettings {
                min_speech_ms: f64::NAN,
                ..ok
            },
            VadSettings {
                min_silence_ms: -5.0,
                ..ok
            },
            VadSettings {
                frame_ms: 0.0,
                ..ok
            },
        ] {
            assert!(EnergyVad::new(bad).is_err(), "{bad:?}");
        }
        let mut v = EnergyVad::new(ok).unwrap();
        v.process(BlockRef::new(1, 2, &[0.0; 2]), 8000, &mut Vec::new())
            .unwrap();
        let e = v
            .process(BlockRef::new(2, 1, &[0.0; 2]), 8000, &mut Vec::new())
            .unwrap_err();
        assert_eq!(e.message, "channel count changed mid-stream from 1 to 2");
    }
}
