//! RemoteMedia's native engine: pure audio kernels (`dsp`) and, with the `python` feature, the
//! `stream._engine` extension module that exposes them (`py`).

pub mod dsp;
pub mod rtc;

#[cfg(feature = "python")]
mod py;
