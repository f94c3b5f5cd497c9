//! `GainKernel(gain_db=0.0, ramp_ms=5.0, *, stage="gain")`.

use pyo3::prelude::*;

use super::args;
use super::error::IntoPyResult;
use super::kernel::Kernel;
use crate::dsp::Gain;

/// Gain in dB; changing `gain_db` ramps linearly over `ramp_ms`.
#[pyclass(extends = Kernel, frozen, module = "stream._engine")]
pub struct GainKernel;

#[pymethods]
impl GainKernel {
    #[new]
    // Settings arrive as objects so a wrong type is a ConfigError too; the text signature shows
    // the real defaults.
    #[pyo3(
        signature = (gain_db = None, ramp_ms = None, *, stage = String::from("gain")),
        text_signature = "(gain_db=0.0, ramp_ms=5.0, *, stage='gain')"
    )]
    fn new(
        py: Python<'_>,
        gain_db: Option<&Bound<'_, PyAny>>,
        ramp_ms: Option<&Bound<'_, PyAny>>,
        stage: String,
    ) -> PyResult<PyClassInitializer<Self>> {
        let g = (|| {
            let gain_db = args::opt_float("gain_db", gain_db)?.unwrap_or(0.0);
            let ramp_ms = args::opt_float("ramp_ms", ramp_ms)?.unwrap_or(5.0);
            Gain::new(gain_db, ramp_ms)
        })()
        .map_err(|e| e.at(&stage))
        .py_err(py)?;
        Ok(PyClassInitializer::from(Kernel::new(stage, g)).add_subclass(Self))
    }

    /// The target gain in dB; setting it starts a ramp from the current gain.
    #[getter]
    fn gain_db(slf: PyRef<'_, Self>, py: Python<'_>) -> f64 {
        slf.as_super().with(py, |g: &mut Gain| g.gain_db())
    }

    /// The ramp length in milliseconds.
    #[getter]
    fn ramp_ms(slf: PyRef<'_, Self>, py: Python<'_>) -> f64 {
        slf.as_super().with(py, |g: &mut Gain| g.ramp_ms())
    }

    #[setter]
    fn set_gain_db(slf: PyRef<'_, Self>, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let kernel: &Kernel = slf.as_super();
        let value = kernel.py(py, args::float("gain_db", value))?;
        let set = kernel.with(py, |g: &mut Gain| g.set_gain_db(value));
        kernel.py(py, set)
    }
}
