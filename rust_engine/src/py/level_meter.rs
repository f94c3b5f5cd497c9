//! `LevelMeterKernel(window_ms=300.0, *, stage="level_meter")`: not fusable (it measures, the
//! node passes the audio on and builds the events).

use pyo3::prelude::*;

use super::args;
use super::array::read_checked_audio;
use super::cell::{KernelCell, Reset};
use super::error::IntoPyResult;
use crate::dsp::level_meter::{LevelMeter, Levels};

impl Reset for LevelMeter {
    fn reset(&mut self) {
        LevelMeter::reset(self);
    }
}

/// RMS and peak in dBFS of each block and of a sliding window of `window_ms`.
#[pyclass(frozen, module = "stream._engine")]
pub struct LevelMeterKernel {
    cell: KernelCell<LevelMeter>,
}

#[pymethods]
impl LevelMeterKernel {
    #[new]
    #[pyo3(
        signature = (window_ms = None, *, stage = String::from("level_meter")),
        text_signature = "(window_ms=300.0, *, stage='level_meter')"
    )]
    fn new(py: Python<'_>, window_ms: Option<&Bound<'_, PyAny>>, stage: String) -> PyResult<Self> {
        let meter = args::opt_float("window_ms", window_ms)
            .and_then(|w| LevelMeter::new(w.unwrap_or(300.0)))
            .map_err(|e| e.at(&stage))
            .py_err(py)?;
        Ok(Self {
            cell: KernelCell::new(stage, meter),
        })
    }

    /// Measures one `(channels, samples)` float32 block at `sample_rate` Hz:
    /// `(rms_db, peak_db, window_rms_db, window_peak_db)`.
    fn process(
        &self,
        py: Python<'_>,
        samples: &Bound<'_, PyAny>,
        sample_rate: &Bound<'_, PyAny>,
    ) -> PyResult<(f64, f64, f64, f64)> {
        let (input, rate) = self.cell.py(py, read_checked_audio(samples, sample_rate))?;
        let block = input.block();
        let l: Levels = self.cell.run(py, |m| m.process(block, rate))?;
        Ok((l.rms_db, l.peak_db, l.window_rms_db, l.window_peak_db))
    }

    /// Drops the stream state: the next block starts a new stream and an empty window.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.cell.run(py, |m| {
            m.reset();
            Ok(())
        })
    }

    /// The window length in milliseconds.
    #[getter]
    fn window_ms(&self, py: Python<'_>) -> f64 {
        self.cell.with(py, |m| m.window_ms())
    }

    /// The window length in samples of the current stream (None before its first block).
    #[getter]
    fn window_samples(&self, py: Python<'_>) -> Option<usize> {
        self.cell.with(py, |m| m.stream_window())
    }

    /// The stage name errors carry.
    #[getter]
    fn stage(&self) -> &str {
        self.cell.name()
    }

    fn __repr__(&self) -> String {
        format!("<LevelMeterKernel stage={:?}>", self.cell.name())
    }
}
