//! `KalmanAecKernel(filter_ms=200.0, frame_ms=20.0, *, stage="echo_cancel")`.

use pyo3::prelude::*;

use super::args;
use super::array::read_block;
use super::cell::{KernelCell, Reset};
use super::error::IntoPyResult;
use super::pair;
use crate::dsp::kalman_aec::KalmanAecKernel as Kalman;

impl Reset for Kalman {
    fn reset(&mut self) {
        Kalman::reset(self);
    }
}

/// Our frequency-domain Kalman echo canceller: the far-end's echo out of a mono near-end.
#[pyclass(frozen, module = "stream._engine")]
pub struct KalmanAecKernel {
    cell: KernelCell<Kalman>,
}

#[pymethods]
impl KalmanAecKernel {
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
            .and_then(|(f, n)| Kalman::new(f.unwrap_or(200.0), n.unwrap_or(20.0)))
            .map_err(|e| e.at(&stage))
            .py_err(py)?;
        Ok(Self {
            cell: KernelCell::new(stage, kernel),
        })
    }

    /// Removes the echo of `far` (`(C, n)` float32, averaged to mono) from `near` (`(1, n)`
    /// float32) at 8, 16, 32 or 48 kHz; returns zero or one mono block of whole frames, one
    /// canceller block behind the input.
    fn process<'py>(
        &self,
        py: Python<'py>,
        near: &Bound<'py, PyAny>,
        far: &Bound<'py, PyAny>,
        sample_rate: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        pair::process(&self.cell, py, near, far, sample_rate)
    }

    /// End of stream: the samples not yet emitted (the last block zero-padded for the
    /// canceller), then a reset.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        pair::flush(&self.cell, py)
    }

    /// Carries the adapted filters over a move of the bulk delay: the far-end fed from now on
    /// is `samples` later (negative: earlier) behind the near-end. Rounds to whole canceller
    /// blocks; returns the samples shifted by, 0 when it cannot (then flush).
    fn shift_far(&self, py: Python<'_>, samples: i64) -> PyResult<i64> {
        self.cell.run(py, |k| Ok(k.shift_far(samples)))
    }

    /// Far-end audio (`(C, n)` float32, averaged) played while the near-end was dropped (a
    /// playout buffer's skip): into the far-end history in whole blocks, no output, no
    /// adaptation. Returns the samples taken: 0 with no stream or between blocks.
    fn advance_far(&self, py: Python<'_>, far: &Bound<'_, PyAny>) -> PyResult<usize> {
        let far = self.cell.py(py, read_block(far))?;
        let fb = far.block();
        self.cell.run(py, |k| Ok(k.advance_far(fb)))
    }

    /// The far-end fed from now on continues `samples` before where it stopped (negative:
    /// after), the echo path as it was; whole blocks; returns the samples moved by.
    fn rewind_far(&self, py: Python<'_>, samples: i64) -> PyResult<i64> {
        self.cell.run(py, |k| Ok(k.rewind_far(samples)))
    }

    /// Models `filter_ms` of echo path from now on (and in later streams): a running stream keeps
    /// what it learnt of the lags both lengths cover; lags added start empty.
    fn set_filter_ms(&self, py: Python<'_>, filter_ms: &Bound<'_, PyAny>) -> PyResult<()> {
        let ms = self.cell.py(py, args::float("filter_ms", filter_ms))?;
        self.cell.run(py, |k| k.set_filter_ms(ms))
    }

    /// Drops the stream state, the adapted filters included.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.cell.run(py, |k| {
            k.reset();
            Ok(())
        })
    }

    /// Length of the echo path the filters model, in milliseconds.
    #[getter]
    fn filter_ms(&self, py: Python<'_>) -> f64 {
        self.cell.with(py, |k| k.filter_ms())
    }

    /// Length of an emitted frame, in milliseconds.
    #[getter]
    fn frame_ms(&self, py: Python<'_>) -> f64 {
        self.cell.with(py, |k| k.frame_ms())
    }

    /// Samples per emitted frame in the current stream (None before its first block).
    #[getter]
    fn frame_samples(&self, py: Python<'_>) -> Option<usize> {
        self.cell.with(py, |k| k.frame_samples())
    }

    /// Samples taken but not yet emitted.
    #[getter]
    fn pending_samples(&self, py: Python<'_>) -> usize {
        self.cell.with(py, |k| k.pending_samples())
    }

    /// Delay of the output behind the near-end input, in samples: one canceller block (0 before
    /// the first block).
    #[getter]
    fn latency_samples(&self, py: Python<'_>) -> usize {
        self.cell.with(py, |k| k.latency_samples())
    }

    /// The stage name errors carry.
    #[getter]
    fn stage(&self) -> &str {
        self.cell.name()
    }

    fn __repr__(&self) -> String {
        format!("<KalmanAecKernel stage={:?}>", self.cell.name())
    }
}
