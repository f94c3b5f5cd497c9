//! `ChannelMixKernel(channels, *, stage="channel_mix")`.

use pyo3::prelude::*;

use super::args;
use super::error::IntoPyResult;
use super::kernel::Kernel;
use crate::dsp::ChannelMix;

/// Converts to `channels` channels: copy, duplicate a mono channel, or average to mono.
#[pyclass(extends = Kernel, frozen, module = "stream._engine")]
pub struct ChannelMixKernel;

#[pymethods]
impl ChannelMixKernel {
    #[new]
    #[pyo3(
        signature = (channels, *, stage = String::from("channel_mix")),
        text_signature = "(channels, *, stage='channel_mix')"
    )]
    fn new(
        py: Python<'_>,
        channels: &Bound<'_, PyAny>,
        stage: String,
    ) -> PyResult<PyClassInitializer<Self>> {
        let m = args::int("channels", channels)
            .and_then(ChannelMix::new)
            .map_err(|e| e.at(&stage))
            .py_err(py)?;
        Ok(PyClassInitializer::from(Kernel::new(stage, m)).add_subclass(Self))
    }

    /// The output channel count.
    #[getter]
    fn channels(slf: PyRef<'_, Self>, py: Python<'_>) -> usize {
        slf.as_super().with(py, |m: &mut ChannelMix| m.channels())
    }
}
