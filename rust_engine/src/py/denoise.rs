//! `DenoiseKernel(mix=0.0, *, stage="denoise")`.

use pyo3::prelude::*;

use super::args;
use super::error::IntoPyResult;
use super::kernel::Kernel;
use crate::dsp::denoise::{FRAME, LATENCY_SAMPLES};
use crate::dsp::Denoise;

/// RNNoise noise suppression at 48 kHz (nnnoiseless); output lags by `latency_samples`.
#[pyclass(extends = Kernel, frozen, module = "stream._engine")]
pub struct DenoiseKernel;

fn denoise<T: Send>(
    slf: &PyRef<'_, DenoiseKernel>,
    py: Python<'_>,
    f: impl FnOnce(&Denoise) -> T + Send,
) -> T {
    slf.as_super().with(py, |d: &mut Denoise| f(d))
}

#[pymethods]
impl DenoiseKernel {
    #[new]
    #[pyo3(
        signature = (mix = None, *, stage = String::from("denoise")),
        text_signature = "(mix=0.0, *, stage='denoise')"
    )]
    fn new(
        py: Python<'_>,
        mix: Option<&Bound<'_, PyAny>>,
        stage: String,
    ) -> PyResult<PyClassInitializer<Self>> {
        let d = args::opt_float("mix", mix)
            .and_then(|m| Denoise::new(m.unwrap_or(0.0)))
            .map_err(|e| e.at(&stage))
            .py_err(py)?;
        Ok(PyClassInitializer::from(Kernel::new(stage, d)).add_subclass(Self))
    }

    /// Fraction of the (latency-aligned) dry signal kept, 0..1.
    #[getter]
    fn mix(slf: PyRef<'_, Self>, py: Python<'_>) -> f64 {
        denoise(&slf, py, |d| d.mix())
    }

    /// Delay of the denoised signal in samples (one RNNoise frame).
    #[getter]
    fn latency_samples(&self) -> usize {
        LATENCY_SAMPLES
    }

    /// Samples per RNNoise frame (480 at 48 kHz).
    #[getter]
    fn frame_samples(&self) -> usize {
        FRAME
    }

    /// Samples per channel buffered towards the next frame.
    #[getter]
    fn pending_samples(slf: PyRef<'_, Self>, py: Python<'_>) -> usize {
        denoise(&slf, py, |d| d.pending_samples())
    }

    /// RNNoise's speech probability for the last complete frame, one per channel (empty before).
    #[getter]
    fn vad_probability(slf: PyRef<'_, Self>, py: Python<'_>) -> Vec<f32> {
        denoise(&slf, py, |d| d.vad_probability())
    }
}
