//! The `stream._engine` extension module: thin bindings over `crate::dsp`.
//!
//! Each binding checks dtype and layout with the GIL held, then releases it for the work.

mod aec3;
mod args;
mod array;
mod cell;
mod chain;
mod channel_mix;
mod denoise;
mod echo_cancel;
mod echo_delay;
mod energy_vad;
mod error;
mod format;
mod g711;
mod gain;
mod kalman_aec;
mod kernel;
mod level_meter;
mod mixer;
mod pair;
mod rebuffer;
mod resample;
mod rtc;
#[cfg(feature = "silero")]
mod silero_vad;
mod video;
mod voice;

use pyo3::prelude::*;

use crate::dsp::{catch_panic, EngineError};
use error::IntoPyResult;

/// Panics on purpose (inside the engine's panic guard) so tests can prove a Rust panic surfaces
/// as `stream.errors.EngineError`.
#[pyfunction]
fn selftest_panic(py: Python<'_>, message: String) -> PyResult<()> {
    py.detach(|| catch_panic(|| -> Result<(), EngineError> { panic!("{message}") }))
        .map_err(|e| e.at("selftest"))
        .py_err(py)
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<kernel::Kernel>()?;
    m.add_class::<kernel::PassThroughKernel>()?;
    m.add_class::<gain::GainKernel>()?;
    m.add_class::<channel_mix::ChannelMixKernel>()?;
    m.add_class::<resample::ResampleKernel>()?;
    m.add_class::<rebuffer::RebufferKernel>()?;
    m.add_class::<format::FormatConvertKernel>()?;
    m.add_class::<g711::G711Kernel>()?;
    m.add_class::<chain::Chain>()?;
    m.add_class::<level_meter::LevelMeterKernel>()?;
    m.add_class::<energy_vad::EnergyVADKernel>()?;
    m.add_class::<mixer::MixKernel>()?;
    m.add_class::<denoise::DenoiseKernel>()?;
    m.add_class::<echo_cancel::EchoCancelKernel>()?;
    m.add_class::<aec3::Aec3Kernel>()?;
    m.add_class::<kalman_aec::KalmanAecKernel>()?;
    m.add_class::<echo_delay::DelayEstimator>()?;
    m.add_class::<voice::HighPassKernel>()?;
    m.add_class::<voice::NoiseSuppressKernel>()?;
    m.add_class::<voice::AutoGainKernel>()?;
    // Only with the cargo feature `silero` (tract is slow to build); the Python side falls back
    // to the twin, saying so, when the class is absent.
    #[cfg(feature = "silero")]
    m.add_class::<silero_vad::SileroVADKernel>()?;
    m.add_class::<video::ResizeKernel>()?;
    m.add_class::<video::ColorConvertKernel>()?;
    m.add_class::<video::GrayscaleKernel>()?;
    m.add_class::<video::FrameRateKernel>()?;
    m.add_class::<rtc::RtpAudioLeg>()?;
    m.add_class::<rtc::SocketRelay>()?;
    m.add_function(wrap_pyfunction!(selftest_panic, m)?)?;
    Ok(())
}
