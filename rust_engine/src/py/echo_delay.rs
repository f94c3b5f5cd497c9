//! `DelayEstimator(sample_rate, max_delay_ms=1000.0, window_s=4.0, lag_s=0.1, *,
//! stage="echo_cancel")`: `EchoCancel(delay_ms="auto")`'s bulk delay estimator on the engine.

use pyo3::prelude::*;

use super::args;
use super::array::read_block;
use super::cell::{KernelCell, Reset};
use super::error::IntoPyResult;
use crate::dsp::echo_delay::DelayEstimator as Estimator;
use crate::dsp::EngineError;

impl Reset for Estimator {
    fn reset(&mut self) {
        Estimator::reset(self);
    }
}

/// The bulk delay of an echo path, found from the signals (GCC-PHAT); see
/// `media_nodes.audio.echo_delay.DelayEstimator`, its twin.
#[pyclass(frozen, module = "stream._engine")]
pub struct DelayEstimator {
    cell: KernelCell<Estimator>,
}

#[pymethods]
impl DelayEstimator {
    #[new]
    #[pyo3(
        signature = (sample_rate, max_delay_ms = None, window_s = None, lag_s = None, *, stage = String::from("echo_cancel")),
        text_signature = "(sample_rate, max_delay_ms=1000.0, window_s=4.0, lag_s=0.1, *, stage='echo_cancel')"
    )]
    fn new(
        py: Python<'_>,
        sample_rate: &Bound<'_, PyAny>,
        max_delay_ms: Option<&Bound<'_, PyAny>>,
        window_s: Option<&Bound<'_, PyAny>>,
        lag_s: Option<&Bound<'_, PyAny>>,
        stage: String,
    ) -> PyResult<Self> {
        let build = || {
            let rate = args::rate(sample_rate)?;
            let rate = u32::try_from(rate)
                .map_err(|_| EngineError::config(format!("sample_rate out of range: {rate}")))?;
            Estimator::new(
                rate,
                args::opt_float("max_delay_ms", max_delay_ms)?.unwrap_or(1000.0),
                args::opt_float("window_s", window_s)?.unwrap_or(4.0),
                args::opt_float("lag_s", lag_s)?.unwrap_or(0.1),
            )
        };
        let estimator = build().map_err(|e| e.at(&stage)).py_err(py)?;
        Ok(Self {
            cell: KernelCell::new(stage, estimator),
        })
    }

    /// Near-end audio (`(C, n)` float32, channels averaged) at absolute sample position `pos`.
    fn add_near(&self, py: Python<'_>, pos: i64, samples: &Bound<'_, PyAny>) -> PyResult<()> {
        let x = self.cell.py(py, read_block(samples))?;
        let block = x.block();
        self.cell.run_held(py, |e| {
            e.add_near(pos, block);
            Ok(())
        })
    }

    /// Reference audio at `pos` on the near-end's clock, delay 0.
    fn add_far(&self, py: Python<'_>, pos: i64, samples: &Bound<'_, PyAny>) -> PyResult<()> {
        let x = self.cell.py(py, read_block(samples))?;
        let block = x.block();
        self.cell.run(py, |e| {
            e.add_far(pos, block);
            Ok(())
        })
    }

    /// `(delay_ms, ratio)` from the window ending `lag` samples before `at` (the peak over the
    /// mean magnitude: about 5 for uncorrelated signals), or None when either side is silent or
    /// under half a second of near-end was seen.
    fn estimate(&self, py: Python<'_>, at: i64) -> PyResult<Option<(f64, f64)>> {
        self.cell.run(py, |e| Ok(e.estimate(at)))
    }

    /// The stream's sample rate.
    #[getter]
    fn sample_rate(&self, py: Python<'_>) -> u32 {
        self.cell.with(py, |e| e.rate())
    }

    /// Samples between the newest near-end and the end of what an estimate reads.
    #[getter]
    fn lag(&self, py: Python<'_>) -> i64 {
        self.cell.with(py, |e| e.lag())
    }

    /// The longest delay looked for, in samples.
    #[getter]
    fn max_delay(&self, py: Python<'_>) -> i64 {
        self.cell.with(py, |e| e.max_delay())
    }

    /// Samples of each signal kept.
    #[getter]
    fn size(&self, py: Python<'_>) -> i64 {
        self.cell.with(py, |e| e.size())
    }

    /// The stage name errors carry.
    #[getter]
    fn stage(&self) -> &str {
        self.cell.name()
    }

    fn __repr__(&self) -> String {
        format!("<DelayEstimator stage={:?}>", self.cell.name())
    }
}
