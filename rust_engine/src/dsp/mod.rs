//! Pure audio kernels: planar `f32` blocks in, planar `f32` blocks out.
//!
//! Nothing in `dsp` knows about Python. Each kernel implements [`Stage`]; [`StageKind`] is the
//! closed set of fusable stages, so a [`chain`] can hold them without boxing. The contract
//! every kernel follows (input checks, error messages, streaming rules) is `docs/kernels.md`.
//!
//! The engine's parts, one module each: `error` (the error type), `block` (blocks and the output
//! they go to), `check` (the input checks), `panic` (the panic guard), `pynum` (Python's numeric
//! conventions), `stage` (the stage contract and the fusable set), `chain` (stages run as one
//! call); then one module per kernel.

mod block;
mod check;
mod error;
mod panic;
mod pynum;
mod stage;
#[cfg(test)]
pub(crate) mod testutil;

pub mod aec3;
pub mod chain;
pub mod channel_mix;
pub mod denoise;
pub mod design;
pub mod echo_cancel;
pub mod echo_delay;
pub mod energy_vad;
pub mod fir;
pub mod format;
pub mod g711;
pub mod gain;
pub mod kalman_aec;
mod kalman_lags;
pub mod level_meter;
pub mod mixer;
pub mod rebuffer;
pub mod reference;
pub mod resample;
#[cfg(feature = "silero")]
pub mod silero_vad;
pub mod video;
pub mod voice;

pub use block::{Block, BlockRef, Output};
pub use channel_mix::ChannelMix;
pub use check::{
    all_finite, check_block, check_dims, check_finite, check_rate, check_shape, MAX_CHANNELS,
    MAX_SAMPLE_RATE,
};
pub use denoise::Denoise;
pub use error::{EngineError, ErrorKind, Result};
pub use gain::Gain;
pub use panic::{catch_panic, guarded};
pub use pynum::py_float;
pub(crate) use pynum::round_half_even;
pub use rebuffer::Rebuffer;
pub use resample::Resample;
pub use stage::{NamedStage, PassThrough, Stage, StageKind, StageVariant};
pub use voice::{AutoGain, HighPass, NoiseSuppress};
