//! `RebufferKernel(samples=None, frame_ms=None, pad_final=False, *, stage="rebuffer")`.

use pyo3::prelude::*;

use super::args;
use super::error::IntoPyResult;
use super::kernel::Kernel;
use crate::dsp::Rebuffer;

/// Re-cuts the stream into blocks of `samples` (or `frame_ms`) samples.
#[pyclass(extends = Kernel, frozen, module = "stream._engine")]
pub struct RebufferKernel;

#[pymethods]
impl RebufferKernel {
    #[new]
    #[pyo3(
        signature = (samples = None, frame_ms = None, pad_final = None, *, stage = String::from("rebuffer")),
        text_signature = "(samples=None, frame_ms=None, pad_final=False, *, stage='rebuffer')"
    )]
    fn new(
        py: Python<'_>,
        samples: Option<&Bound<'_, PyAny>>,
        frame_ms: Option<&Bound<'_, PyAny>>,
        pad_final: Option<&Bound<'_, PyAny>>,
        stage: String,
    ) -> PyResult<PyClassInitializer<Self>> {
        let r = (|| {
            let samples = args::opt_int("samples", samples)?;
            let frame_ms = args::opt_float("frame_ms", frame_ms)?;
            Rebuffer::new(
                samples,
                frame_ms,
                args::opt_bool("pad_final", pad_final)?.unwrap_or(false),
            )
        })()
        .map_err(|e| e.at(&stage))
        .py_err(py)?;
        Ok(PyClassInitializer::from(Kernel::new(stage, r)).add_subclass(Self))
    }

    /// The block size in samples, if given as `samples`.
    #[getter]
    fn samples(slf: PyRef<'_, Self>, py: Python<'_>) -> Option<usize> {
        rebuffer(&slf, py, Rebuffer::samples)
    }

    /// The block duration in milliseconds, if given as `frame_ms`.
    #[getter]
    fn frame_ms(slf: PyRef<'_, Self>, py: Python<'_>) -> Option<f64> {
        rebuffer(&slf, py, Rebuffer::frame_ms)
    }

    /// Whether the last block of a stream is zero-padded to the full size.
    #[getter]
    fn pad_final(slf: PyRef<'_, Self>, py: Python<'_>) -> bool {
        rebuffer(&slf, py, Rebuffer::pad_final)
    }
}

fn rebuffer<T: Send>(
    slf: &PyRef<'_, RebufferKernel>,
    py: Python<'_>,
    f: impl FnOnce(&Rebuffer) -> T + Send,
) -> T {
    slf.as_super().with(py, |r: &mut Rebuffer| f(r))
}
