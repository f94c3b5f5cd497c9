//! `SileroVADKernel(model_path, threshold=0.5, neg_threshold=None, min_speech_ms=250.0,
//! min_silence_ms=100.0, *, stage="silero_vad")`: the Silero model on tract with EnergyVAD's
//! state machine (built with the cargo feature `silero` only); the node turns its decisions into
//! events and gated frames.

use std::path::PathBuf;

use pyo3::prelude::*;

use super::args;
use super::array::read_checked_audio;
use super::cell::{KernelCell, Reset};
use super::energy_vad::{to_py, PyDecision};
use super::error::IntoPyResult;
use crate::dsp::silero_vad::{SileroModel, SileroSettings, SileroVad, RATE, WINDOW};
use crate::dsp::{catch_panic, EngineError};

impl Reset for SileroVad {
    fn reset(&mut self) {
        SileroVad::reset(self);
    }
}

/// Speech/non-speech decisions from the Silero VAD model over 512-sample windows of 16 kHz mono.
#[pyclass(frozen, module = "stream._engine")]
pub struct SileroVADKernel {
    cell: KernelCell<SileroVad>,
    model_path: String,
}

#[pymethods]
impl SileroVADKernel {
    #[new]
    #[pyo3(
        signature = (
            model_path,
            threshold = None,
            neg_threshold = None,
            min_speech_ms = None,
            min_silence_ms = None,
            *,
            stage = String::from("silero_vad"),
        ),
        text_signature = "(model_path, threshold=0.5, neg_threshold=None, min_speech_ms=250.0, \
                          min_silence_ms=100.0, *, stage='silero_vad')"
    )]
    fn new(
        py: Python<'_>,
        model_path: &Bound<'_, PyAny>,
        threshold: Option<&Bound<'_, PyAny>>,
        neg_threshold: Option<&Bound<'_, PyAny>>,
        min_speech_ms: Option<&Bound<'_, PyAny>>,
        min_silence_ms: Option<&Bound<'_, PyAny>>,
        stage: String,
    ) -> PyResult<Self> {
        let at = |e: EngineError| e.at(&stage);
        let settings = (|| {
            let get = |name: &str, obj, default: f64| {
                args::opt_float(name, obj).map(|v| v.unwrap_or(default))
            };
            SileroSettings {
                threshold: get("threshold", threshold, 0.5)?,
                neg_threshold: args::opt_float("neg_threshold", neg_threshold)?,
                min_speech_ms: get("min_speech_ms", min_speech_ms, 250.0)?,
                min_silence_ms: get("min_silence_ms", min_silence_ms, 100.0)?,
            }
            .check()
        })()
        .map_err(at)
        .py_err(py)?;
        let path: PathBuf = model_path
            .extract()
            .map_err(|_| {
                let shown = model_path
                    .repr()
                    .map_or_else(|_| "?".into(), |r| r.to_string());
                EngineError::config(format!("model_path must be a path, got {shown}"))
            })
            .map_err(at)
            .py_err(py)?;
        // Parsing and optimizing the graph takes tens of milliseconds: without the GIL.
        let model = py
            .detach(|| catch_panic(|| SileroModel::from_path(&path)))
            .map_err(at)
            .py_err(py)?;
        let vad = SileroVad::new(model, settings).map_err(at).py_err(py)?;
        Ok(Self {
            cell: KernelCell::new(stage, vad),
            model_path: path.to_string_lossy().into_owned(),
        })
    }

    /// Analyzes one `(1, samples)` float32 block at 16000 Hz; returns the decisions it
    /// completed, as `(kind, sample, confirmed)`.
    fn process(
        &self,
        py: Python<'_>,
        samples: &Bound<'_, PyAny>,
        sample_rate: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<PyDecision>> {
        let (input, rate) = self.cell.py(py, read_checked_audio(samples, sample_rate))?;
        let block = input.block();
        let out = self.cell.run(py, |v| {
            let mut out = Vec::new();
            v.process(block, rate, &mut out)?;
            Ok(out)
        })?;
        Ok(to_py(out))
    }

    /// Ends the stream: speech still on ends; then the stream state is dropped.
    fn flush(&self, py: Python<'_>) -> PyResult<Vec<PyDecision>> {
        let out = self.cell.run(py, |v| {
            let mut out = Vec::new();
            v.flush(&mut out);
            Ok(out)
        })?;
        Ok(to_py(out))
    }

    /// Drops the stream state without deciding anything.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.cell.run(py, |v| {
            v.reset();
            Ok(())
        })
    }

    /// The model file, as given.
    #[getter]
    fn model_path(&self) -> &str {
        &self.model_path
    }

    #[getter]
    fn threshold(&self, py: Python<'_>) -> f64 {
        self.cell.with(py, |v| v.settings().threshold)
    }

    /// The quiet threshold (resolved: never None).
    #[getter]
    fn neg_threshold(&self, py: Python<'_>) -> f64 {
        self.cell
            .with(py, |v| v.settings().neg_threshold.unwrap_or_default())
    }

    #[getter]
    fn min_speech_ms(&self, py: Python<'_>) -> f64 {
        self.cell.with(py, |v| v.settings().min_speech_ms)
    }

    #[getter]
    fn min_silence_ms(&self, py: Python<'_>) -> f64 {
        self.cell.with(py, |v| v.settings().min_silence_ms)
    }

    /// One model window in milliseconds (32.0).
    #[getter]
    fn frame_ms(&self) -> f64 {
        WINDOW as f64 * 1000.0 / RATE as f64
    }

    /// `"silence"`, `"maybe_speech"`, `"speech"` or `"maybe_silence"`.
    #[getter]
    fn state(&self, py: Python<'_>) -> &'static str {
        self.cell.with(py, |v| v.state().name())
    }

    /// Whether speech is on (confirmed, its end not yet confirmed).
    #[getter]
    fn speaking(&self, py: Python<'_>) -> bool {
        self.cell.with(py, |v| v.state().speaking())
    }

    /// Where the unconfirmed run began (a candidate start or end), or None.
    #[getter]
    fn pending_sample(&self, py: Python<'_>) -> Option<u64> {
        self.cell.with(py, |v| v.state().pending_sample())
    }

    /// Samples of the stream in complete windows.
    #[getter]
    fn analyzed_samples(&self, py: Python<'_>) -> u64 {
        self.cell.with(py, |v| v.analyzed_samples())
    }

    /// 512 once a stream is under way, else None.
    #[getter]
    fn frame_samples(&self, py: Python<'_>) -> Option<usize> {
        self.cell.with(py, |v| v.frame_samples())
    }

    /// The speech probability of the last complete window (None before the first).
    #[getter]
    fn probability(&self, py: Python<'_>) -> Option<f64> {
        self.cell.with(py, |v| v.probability().map(f64::from))
    }

    /// The stage name errors carry.
    #[getter]
    fn stage(&self) -> &str {
        self.cell.name()
    }

    fn __repr__(&self) -> String {
        format!("<SileroVADKernel stage={:?}>", self.cell.name())
    }
}
