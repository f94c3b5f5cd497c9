//! `EnergyVADKernel(threshold_db=-40.0, hysteresis_db=6.0, min_speech_ms=100.0,
//! min_silence_ms=300.0, frame_ms=10.0, *, stage="energy_vad")`: the state machine only; the
//! node turns its decisions into events and gated frames.

use pyo3::prelude::*;

use super::args;
use super::array::read_checked_audio;
use super::cell::{KernelCell, Reset};
use super::error::IntoPyResult;
use crate::dsp::energy_vad::{Decision, EnergyVad, VadSettings};

impl Reset for EnergyVad {
    fn reset(&mut self) {
        EnergyVad::reset(self);
    }
}

/// `(kind, sample, confirmed)` as Python sees a decision.
pub(super) type PyDecision = (&'static str, u64, u64);

pub(super) fn to_py(decisions: Vec<Decision>) -> Vec<PyDecision> {
    decisions
        .into_iter()
        .map(|d| (d.kind(), d.sample, d.confirmed))
        .collect()
}

/// Speech/non-speech decisions from analysis-frame energy, with hysteresis and minimum
/// durations.
#[pyclass(frozen, module = "stream._engine")]
pub struct EnergyVADKernel {
    cell: KernelCell<EnergyVad>,
}

#[pymethods]
impl EnergyVADKernel {
    #[new]
    #[pyo3(
        signature = (
            threshold_db = None,
            hysteresis_db = None,
            min_speech_ms = None,
            min_silence_ms = None,
            frame_ms = None,
            *,
            stage = String::from("energy_vad"),
        ),
        text_signature = "(threshold_db=-40.0, hysteresis_db=6.0, min_speech_ms=100.0, \
                          min_silence_ms=300.0, frame_ms=10.0, *, stage='energy_vad')"
    )]
    fn new(
        py: Python<'_>,
        threshold_db: Option<&Bound<'_, PyAny>>,
        hysteresis_db: Option<&Bound<'_, PyAny>>,
        min_speech_ms: Option<&Bound<'_, PyAny>>,
        min_silence_ms: Option<&Bound<'_, PyAny>>,
        frame_ms: Option<&Bound<'_, PyAny>>,
        stage: String,
    ) -> PyResult<Self> {
        let vad = (|| {
            let get = |name: &str, obj, default: f64| {
                args::opt_float(name, obj).map(|v| v.unwrap_or(default))
            };
            EnergyVad::new(VadSettings {
                threshold_db: get("threshold_db", threshold_db, -40.0)?,
                hysteresis_db: get("hysteresis_db", hysteresis_db, 6.0)?,
                min_speech_ms: get("min_speech_ms", min_speech_ms, 100.0)?,
                min_silence_ms: get("min_silence_ms", min_silence_ms, 300.0)?,
                frame_ms: get("frame_ms", frame_ms, 10.0)?,
            })
        })()
        .map_err(|e| e.at(&stage))
        .py_err(py)?;
        Ok(Self {
            cell: KernelCell::new(stage, vad),
        })
    }

    /// Analyzes one `(channels, samples)` float32 block at `sample_rate` Hz; returns the
    /// decisions it completed, as `(kind, sample, confirmed)`.
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

    #[getter]
    fn threshold_db(&self, py: Python<'_>) -> f64 {
        self.cell.with(py, |v| v.settings().threshold_db)
    }

    #[getter]
    fn hysteresis_db(&self, py: Python<'_>) -> f64 {
        self.cell.with(py, |v| v.settings().hysteresis_db)
    }

    #[getter]
    fn min_speech_ms(&self, py: Python<'_>) -> f64 {
        self.cell.with(py, |v| v.settings().min_speech_ms)
    }

    #[getter]
    fn min_silence_ms(&self, py: Python<'_>) -> f64 {
        self.cell.with(py, |v| v.settings().min_silence_ms)
    }

    #[getter]
    fn frame_ms(&self, py: Python<'_>) -> f64 {
        self.cell.with(py, |v| v.settings().frame_ms)
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

    /// Samples of the stream in complete analysis frames.
    #[getter]
    fn analyzed_samples(&self, py: Python<'_>) -> u64 {
        self.cell.with(py, |v| v.analyzed_samples())
    }

    /// The analysis frame length in samples of the current stream (None before its first block).
    #[getter]
    fn frame_samples(&self, py: Python<'_>) -> Option<usize> {
        self.cell.with(py, |v| v.frame_samples())
    }

    /// The stage name errors carry.
    #[getter]
    fn stage(&self) -> &str {
        self.cell.name()
    }

    fn __repr__(&self) -> String {
        format!("<EnergyVADKernel stage={:?}>", self.cell.name())
    }
}
