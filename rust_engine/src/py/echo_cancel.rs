//! `EchoCancelKernel(filter_ms=200.0, frame_ms=20.0, *, stage="echo_cancel")`.

use pyo3::prelude::*;

use super::args;
use super::cell::{KernelCell, Reset};
use super::error::IntoPyResult;
use super::pair;
use crate::dsp::echo_cancel::{library_error, EchoCancel};
use crate::dsp::EngineError;

impl Reset for EchoCancel {
    fn reset(&mut self) {
        EchoCancel::reset(self);
    }
}

/// Speex MDF echo cancellation of a far-end (loudspeaker) signal in a mono near-end one.
#[pyclass(frozen, module = "stream._engine")]
pub struct EchoCancelKernel {
    cell: KernelCell<EchoCancel>,
}

#[pymethods]
impl EchoCancelKernel {
    #[new]
    #[pyo3(
        signature = (filter_ms = None, frame_ms = None, *, stage = String::from("echo_cancel")),
        text_signature = "(filter_ms=200.0, frame_ms=20.0, *, stage='echo_cancel')"
    )]
    fn new(
        py: Python<'_>,
        filter_ms: Option<&Bound<'_, PyAny>>,
        frame_ms: Option<&Bound<'_, PyAny>>,
        stage: String,
    ) -> PyResult<Self> {
        let kernel = args::opt_float("filter_ms", filter_ms)
            .and_then(|f| Ok((f, args::opt_float("frame_ms", frame_ms)?)))
            .and_then(|(f, n)| EchoCancel::new(f.unwrap_or(200.0), n.unwrap_or(20.0)))
            .map_err(|e| e.at(&stage))
            .py_err(py)?;
        if let Some(why) = library_error() {
            return Err(EngineError::unavailable(why).at(&stage)).py_err(py);
        }
        Ok(Self {
            cell: KernelCell::new(stage, kernel),
        })
    }

    /// Removes the echo of `far` (`(C, n)` float32, averaged to mono) from `near` (`(1, n)`
    /// float32); returns zero or one mono block of whole frames.
    fn process<'py>(
        &self,
        py: Python<'py>,
        near: &Bound<'py, PyAny>,
        far: &Bound<'py, PyAny>,
        sample_rate: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        pair::process(&self.cell, py, near, far, sample_rate)
    }

    /// End of stream: the partial frame's samples (zero-padded for Speex), then a reset.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        pair::flush(&self.cell, py)
    }

    /// Drops the stream state, the adapted filter included.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.cell.run(py, |k| {
            k.reset();
            Ok(())
        })
    }

    /// Length of the echo path the filter models, in milliseconds.
    #[getter]
    fn filter_ms(&self, py: Python<'_>) -> f64 {
        self.cell.with(py, |k| k.filter_ms())
    }

    /// Length of a Speex frame, in milliseconds.
    #[getter]
    fn frame_ms(&self, py: Python<'_>) -> f64 {
        self.cell.with(py, |k| k.frame_ms())
    }

    /// Samples per frame in the current stream (None before its first block).
    #[getter]
    fn frame_samples(&self, py: Python<'_>) -> Option<usize> {
        self.cell.with(py, |k| k.frame_samples())
    }

    /// Filter taps in the current stream (None before its first block).
    #[getter]
    fn filter_samples(&self, py: Python<'_>) -> Option<usize> {
        self.cell.with(py, |k| k.filter_samples())
    }

    /// Samples buffered towards the next frame.
    #[getter]
    fn pending_samples(&self, py: Python<'_>) -> usize {
        self.cell.with(py, |k| k.pending_samples())
    }

    /// Delay of the output behind the near-end input, in samples: none (frame buffering aside).
    #[getter]
    fn latency_samples(&self) -> usize {
        0
    }

    /// The stage name errors carry.
    #[getter]
    fn stage(&self) -> &str {
        self.cell.name()
    }

    fn __repr__(&self) -> String {
        format!("<EchoCancelKernel stage={:?}>", self.cell.name())
    }
}
