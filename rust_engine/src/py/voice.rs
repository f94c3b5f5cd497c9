//! `HighPassKernel(*, stage="high_pass")`, `NoiseSuppressKernel(*, stage="noise_suppress")`,
//! `AutoGainKernel(*, stage="auto_gain")`: WebRTC's high-pass filter, noise suppressor and
//! AGC2, one component of the audio processing module each (`crate::dsp::voice`).

use pyo3::prelude::*;

use super::kernel::Kernel;
use crate::dsp::voice::{AutoGain, HighPass, NoiseSuppress, Voice};
use crate::dsp::StageVariant;

/// Reads the subclass's stage (a `S`, one component of the module).
fn voice<S, T>(kernel: &Kernel, py: Python<'_>, f: impl FnOnce(&Voice) -> T + Send) -> T
where
    S: StageVariant + std::ops::Deref<Target = Voice>,
    T: Send,
{
    kernel.with(py, |s: &mut S| f(s))
}

/// Declares one component's class: no settings, and the same read-only properties.
macro_rules! voice_class {
    ($(#[$doc:meta])* $class:ident, $stage:ty, $name:literal, $sig:literal) => {
        $(#[$doc])*
        #[pyclass(extends = Kernel, frozen, module = "stream._engine")]
        pub struct $class;

        #[pymethods]
        impl $class {
            #[new]
            #[pyo3(signature = (*, stage = String::from($name)), text_signature = $sig)]
            fn new(stage: String) -> PyClassInitializer<Self> {
                PyClassInitializer::from(Kernel::new(stage, <$stage>::new())).add_subclass(Self)
            }

            /// Delay of the output behind the input in samples (0 before the first block).
            #[getter]
            fn latency_samples(slf: PyRef<'_, Self>, py: Python<'_>) -> usize {
                voice::<$stage, _>(slf.as_super(), py, |v| v.latency_samples())
            }

            /// Samples per 10 ms sub-frame of the stream (None before its first block).
            #[getter]
            fn frame_samples(slf: PyRef<'_, Self>, py: Python<'_>) -> Option<usize> {
                voice::<$stage, _>(slf.as_super(), py, |v| v.frame_samples())
            }

            /// Samples per channel buffered towards the next sub-frame.
            #[getter]
            fn pending_samples(slf: PyRef<'_, Self>, py: Python<'_>) -> usize {
                voice::<$stage, _>(slf.as_super(), py, |v| v.pending_samples())
            }
        }
    };
}

voice_class!(
    /// WebRTC's high-pass filter (full band), 8/16/32/48 kHz, channels independent.
    HighPassKernel,
    HighPass,
    "high_pass",
    "(*, stage='high_pass')"
);
voice_class!(
    /// WebRTC's noise suppressor at its default level, 8/16/32/48 kHz, channels independent.
    NoiseSuppressKernel,
    NoiseSuppress,
    "noise_suppress",
    "(*, stage='noise_suppress')"
);
voice_class!(
    /// AGC2: adaptive digital gain and limiter, 8/16/32/48 kHz, channels independent.
    AutoGainKernel,
    AutoGain,
    "auto_gain",
    "(*, stage='auto_gain')"
);
