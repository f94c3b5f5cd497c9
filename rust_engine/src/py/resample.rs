//! `ResampleKernel(sample_rate, *, stage="resample")`.

use pyo3::prelude::*;

use super::args;
use super::error::IntoPyResult;
use super::kernel::Kernel;
use crate::dsp::Resample;

/// Streaming polyphase resampler to `sample_rate` Hz; the input rate comes from the first block.
#[pyclass(extends = Kernel, frozen, module = "stream._engine")]
pub struct ResampleKernel;

fn resample<T: Send>(
    slf: &PyRef<'_, ResampleKernel>,
    py: Python<'_>,
    f: impl FnOnce(&Resample) -> T + Send,
) -> T {
    slf.as_super().with(py, |r: &mut Resample| f(r))
}

#[pymethods]
impl ResampleKernel {
    #[new]
    #[pyo3(
        signature = (sample_rate, *, stage = String::from("resample")),
        text_signature = "(sample_rate, *, stage='resample')"
    )]
    fn new(
        py: Python<'_>,
        sample_rate: &Bound<'_, PyAny>,
        stage: String,
    ) -> PyResult<PyClassInitializer<Self>> {
        let r = args::int("sample_rate", sample_rate)
            .and_then(Resample::new)
            .map_err(|e| e.at(&stage))
            .py_err(py)?;
        Ok(PyClassInitializer::from(Kernel::new(stage, r)).add_subclass(Self))
    }

    /// The output rate in Hz.
    #[getter]
    fn sample_rate(slf: PyRef<'_, Self>, py: Python<'_>) -> u32 {
        resample(&slf, py, |r| r.sample_rate())
    }

    /// The stream's input rate in Hz, `None` before its first block.
    #[getter]
    fn input_rate(slf: PyRef<'_, Self>, py: Python<'_>) -> Option<u32> {
        resample(&slf, py, |r| r.input_rate())
    }

    /// The filter delay in output samples, rounded (0 before the first block or when in == out).
    #[getter]
    fn latency_samples(slf: PyRef<'_, Self>, py: Python<'_>) -> u64 {
        resample(&slf, py, |r| r.latency_samples())
    }

    /// The filter delay in seconds.
    #[getter]
    fn latency_seconds(slf: PyRef<'_, Self>, py: Python<'_>) -> f64 {
        resample(&slf, py, |r| r.latency_seconds())
    }
}
