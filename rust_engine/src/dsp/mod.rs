//! Pure audio kernels: planar `f32` blocks in, planar `f32` blocks out.
//!
//! Nothing in `dsp` knows about Python. Each kernel implements [`Stage`]; [`StageKind`] is the
//! closed set of fusable stages, so a [`chain::Chain`] can hold them without boxing. The contract
//! every kernel follows (input checks, error messages, streaming rules) is `docs/kernels.md`.

pub mod chain;
pub mod channel_mix;
pub mod denoise;
pub mod design;
pub mod echo_cancel;
pub mod energy_vad;
pub mod fir;
pub mod format;
pub mod gain;
pub mod level_meter;
pub mod mixer;
pub mod rebuffer;
pub mod resample;
#[cfg(feature = "silero")]
pub mod silero_vad;
pub mod video;

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use channel_mix::ChannelMix;
pub use denoise::Denoise;
pub use gain::Gain;
pub use rebuffer::Rebuffer;
pub use resample::Resample;

/// Which class of `stream.errors` an error maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad settings (`ConfigError`).
    Config,
    /// Bad input data (`FormatError`).
    Format,
    /// The engine failed internally, e.g. a caught panic (`EngineError`).
    Engine,
    /// The kernel is running in another call (`RuntimeError`).
    Busy,
    /// Something the kernel needs at run time is missing, e.g. a model file
    /// (`BackendUnavailable`).
    Unavailable,
}

/// An error of a kernel. `stage` is filled in by whoever knows the stage's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineError {
    pub kind: ErrorKind,
    pub stage: String,
    pub message: String,
}

impl EngineError {
    pub fn config(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Config,
            stage: String::new(),
            message: message.into(),
        }
    }

    pub fn format(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Format,
            stage: String::new(),
            message: message.into(),
        }
    }

    pub fn engine(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Engine,
            stage: String::new(),
            message: message.into(),
        }
    }

    pub fn busy(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Busy,
            stage: String::new(),
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Unavailable,
            stage: String::new(),
            message: message.into(),
        }
    }

    /// Names the stage the error belongs to (kept if already set by an inner stage).
    pub fn at(mut self, stage: &str) -> Self {
        if self.stage.is_empty() {
            self.stage = stage.to_owned();
        }
        self
    }
}

impl fmt::Display for EngineError {
    /// `"{stage}: {message}"`, the message the Python exception carries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.stage.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.stage, self.message)
        }
    }
}

impl std::error::Error for EngineError {}

pub type Result<T> = std::result::Result<T, EngineError>;

/// A borrowed planar block: `channels` rows of `frames` samples, row-major in `data`.
#[derive(Debug, Clone, Copy)]
pub struct BlockRef<'a> {
    pub channels: usize,
    pub frames: usize,
    pub data: &'a [f32],
}

impl<'a> BlockRef<'a> {
    /// Panics if `data.len() != channels * frames` (a bug in the caller, not bad input).
    pub fn new(channels: usize, frames: usize, data: &'a [f32]) -> Self {
        assert_eq!(
            data.len(),
            channels * frames,
            "block data does not match its shape"
        );
        Self {
            channels,
            frames,
            data,
        }
    }

    /// Samples of channel `c`.
    pub fn channel(&self, c: usize) -> &'a [f32] {
        &self.data[c * self.frames..(c + 1) * self.frames]
    }
}

/// An owned planar block, what kernels emit.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub channels: usize,
    pub frames: usize,
    pub data: Vec<f32>,
}

impl Block {
    pub fn new(channels: usize, frames: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            channels * frames,
            "block data does not match its shape"
        );
        Self {
            channels,
            frames,
            data,
        }
    }

    pub fn as_ref(&self) -> BlockRef<'_> {
        BlockRef {
            channels: self.channels,
            frames: self.frames,
            data: &self.data,
        }
    }
}

/// Most channels a block may have (`stream.frames.MAX_CHANNELS`: what a channel-layout mask
/// can name).
pub const MAX_CHANNELS: usize = 64;

/// Highest sample rate in Hz (`stream.frames.MAX_SAMPLE_RATE`: 16 x 48 kHz).
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// Common input checks 2 to 4 of `docs/kernels.md` (check 1, dtype and rank, is the binding's).
pub fn check_block(block: BlockRef<'_>, sample_rate: i64) -> Result<()> {
    check_shape(block)?;
    check_rate(sample_rate)?;
    check_finite(block)
}

/// Check 2: at least one channel and one sample, at most [`MAX_CHANNELS`] channels.
pub fn check_shape(block: BlockRef<'_>) -> Result<()> {
    check_dims(block.channels, block.frames)
}

/// Check 2 on a block's dimensions.
pub fn check_dims(channels: usize, frames: usize) -> Result<()> {
    if channels == 0 || frames == 0 {
        return Err(EngineError::format(format!(
            "empty frame ({channels} channels, {frames} samples)"
        )));
    }
    if channels > MAX_CHANNELS {
        return Err(EngineError::format(format!(
            "too many channels ({channels}; at most {MAX_CHANNELS})"
        )));
    }
    Ok(())
}

/// Check 3: `sample_rate` in 1..=[`MAX_SAMPLE_RATE`].
pub fn check_rate(sample_rate: i64) -> Result<u32> {
    match u32::try_from(sample_rate) {
        Ok(rate) if (1..=MAX_SAMPLE_RATE).contains(&rate) => Ok(rate),
        _ => Err(EngineError::format(format!(
            "invalid sample rate {sample_rate}"
        ))),
    }
}

/// The first NaN or infinity in planar order is a `FormatError`.
pub fn check_finite(block: BlockRef<'_>) -> Result<()> {
    if all_finite(block.data) {
        return Ok(());
    }
    let at = block.data.iter().position(|x| !x.is_finite()).unwrap_or(0);
    Err(EngineError::format(format!(
        "non-finite sample at channel {}, index {}",
        at / block.frames,
        at % block.frames
    )))
}

/// Whether no sample is NaN or infinite, without branching per sample so it vectorizes: a float
/// is non-finite when its exponent bits are all ones, and adding one exponent step to those bits
/// then carries into the sign bit.
pub fn all_finite(data: &[f32]) -> bool {
    const EXP: u32 = 0x7f80_0000;
    const STEP: u32 = 0x0080_0000;
    let flags = data
        .iter()
        .fold(0u32, |acc, x| acc | (x.to_bits() & EXP).wrapping_add(STEP));
    flags & 0x8000_0000 == 0
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "unknown panic payload"
    }
}

/// Runs `f`, turning a panic into an `ErrorKind::Engine` error (stage not set).
///
/// `AssertUnwindSafe`: callers drop the state `f` touched after a panic (see
/// [`NamedStage::process`]), so no half-updated state is observed afterwards.
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(EngineError::engine(format!(
            "internal error (Rust panic: {})",
            panic_message(payload.as_ref())
        )))
    })
}

/// A float as Python's `repr` shows it (`nan`, `inf`, `-inf`, `5.0`), for messages.
pub fn py_float(x: f64) -> String {
    if x.is_nan() {
        "nan".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{x:?}")
    }
}

/// Python's `round()` on a float: ties to even.
pub(crate) fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

/// A streaming kernel. `process` is called with blocks that passed [`check_block`].
pub trait Stage {
    /// Appends zero or more output blocks to `out`.
    fn process(
        &mut self,
        input: BlockRef<'_>,
        sample_rate: u32,
        out: &mut Vec<Block>,
    ) -> Result<()>;
    /// End of stream: appends any tail to `out`, then resets the stream state.
    fn flush(&mut self, out: &mut Vec<Block>) -> Result<()>;
    /// Drops the stream state without emitting.
    fn reset(&mut self);
    /// The rate of the blocks emitted for blocks at `input_rate`.
    fn output_rate(&self, input_rate: u32) -> u32;
    /// The rate of the blocks emitted in the current stream, if one is under way (read before
    /// `flush` to know the rate of its tail).
    fn stream_output_rate(&self) -> Option<u32>;
}

/// The fusable stages.
#[derive(Debug)]
pub enum StageKind {
    PassThrough,
    Gain(Gain),
    ChannelMix(ChannelMix),
    Resample(Resample),
    Rebuffer(Rebuffer),
    Denoise(Denoise),
}

impl StageKind {
    pub fn is_pass_through(&self) -> bool {
        matches!(self, StageKind::PassThrough)
    }
}

impl Stage for StageKind {
    fn process(
        &mut self,
        input: BlockRef<'_>,
        sample_rate: u32,
        out: &mut Vec<Block>,
    ) -> Result<()> {
        match self {
            StageKind::PassThrough => {
                out.push(Block::new(
                    input.channels,
                    input.frames,
                    input.data.to_vec(),
                ));
                Ok(())
            }
            StageKind::Gain(s) => s.process(input, sample_rate, out),
            StageKind::ChannelMix(s) => s.process(input, sample_rate, out),
            StageKind::Resample(s) => s.process(input, sample_rate, out),
            StageKind::Rebuffer(s) => s.process(input, sample_rate, out),
            StageKind::Denoise(s) => s.process(input, sample_rate, out),
        }
    }

    fn flush(&mut self, out: &mut Vec<Block>) -> Result<()> {
        match self {
            StageKind::PassThrough => Ok(()),
            StageKind::Gain(s) => s.flush(out),
            StageKind::ChannelMix(s) => s.flush(out),
            StageKind::Resample(s) => s.flush(out),
            StageKind::Rebuffer(s) => s.flush(out),
            StageKind::Denoise(s) => s.flush(out),
        }
    }

    fn reset(&mut self) {
        match self {
            StageKind::PassThrough => {}
            StageKind::Gain(s) => s.reset(),
            StageKind::ChannelMix(s) => s.reset(),
            StageKind::Resample(s) => s.reset(),
            StageKind::Rebuffer(s) => s.reset(),
            StageKind::Denoise(s) => s.reset(),
        }
    }

    fn output_rate(&self, input_rate: u32) -> u32 {
        match self {
            StageKind::PassThrough => input_rate,
            StageKind::Gain(s) => s.output_rate(input_rate),
            StageKind::ChannelMix(s) => s.output_rate(input_rate),
            StageKind::Resample(s) => s.output_rate(input_rate),
            StageKind::Rebuffer(s) => s.output_rate(input_rate),
            StageKind::Denoise(s) => s.output_rate(input_rate),
        }
    }

    fn stream_output_rate(&self) -> Option<u32> {
        match self {
            StageKind::PassThrough => None,
            StageKind::Gain(s) => s.stream_output_rate(),
            StageKind::ChannelMix(s) => s.stream_output_rate(),
            StageKind::Resample(s) => s.stream_output_rate(),
            StageKind::Rebuffer(s) => s.stream_output_rate(),
            StageKind::Denoise(s) => s.stream_output_rate(),
        }
    }
}

/// A stage with the name its errors carry.
#[derive(Debug)]
pub struct NamedStage {
    pub name: String,
    pub kind: StageKind,
}

impl NamedStage {
    pub fn new(name: impl Into<String>, kind: StageKind) -> Self {
        Self {
            name: name.into(),
            kind,
        }
    }

    /// Runs `f` on the stage; a panic becomes an error and drops the stream state.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut StageKind) -> Result<T>) -> Result<T> {
        let result = catch_panic(|| f(&mut self.kind));
        if matches!(&result, Err(e) if e.kind == ErrorKind::Engine) {
            // A panic may have left the state half-updated; the stream restarts. If the reset
            // itself panics, the stage is beyond repair: report the original error anyway.
            let _ = catch_panic(|| {
                self.kind.reset();
                Ok(())
            });
        }
        result.map_err(|e| e.at(&self.name))
    }

    /// Checks `input` (checks 2 to 4), then runs the stage; errors (panics included) name the
    /// stage.
    pub fn process(
        &mut self,
        input: BlockRef<'_>,
        sample_rate: i64,
        out: &mut Vec<Block>,
    ) -> Result<()> {
        check_block(input, sample_rate).map_err(|e| e.at(&self.name))?;
        let rate = sample_rate as u32; // checked above
        self.guarded(|kind| kind.process(input, rate, out))
    }

    pub fn flush(&mut self, out: &mut Vec<Block>) -> Result<()> {
        self.guarded(|kind| kind.flush(out))
    }

    pub fn reset(&mut self) -> Result<()> {
        self.guarded(|kind| {
            kind.reset();
            Ok(())
        })
    }

    pub fn output_rate(&self, input_rate: i64) -> Result<u32> {
        let rate = check_rate(input_rate).map_err(|e| e.at(&self.name))?;
        Ok(self.kind.output_rate(rate))
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// Feeds `signal` (planar, `channels` rows) to `stage` in blocks of the given sizes (cycled),
    /// then flushes; returns the concatenated output per channel and the block lengths.
    pub fn run_split<S: Stage>(
        stage: &mut S,
        channels: usize,
        signal: &[Vec<f32>],
        rate: u32,
        sizes: &[usize],
    ) -> (Vec<Vec<f32>>, Vec<usize>) {
        let total = signal[0].len();
        let mut outs = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < total {
            let n = sizes[i % sizes.len()].min(total - pos);
            i += 1;
            let mut data = Vec::with_capacity(channels * n);
            for ch in signal.iter().take(channels) {
                data.extend_from_slice(&ch[pos..pos + n]);
            }
            stage
                .process(BlockRef::new(channels, n, &data), rate, &mut outs)
                .unwrap();
            pos += n;
        }
        stage.flush(&mut outs).unwrap();
        let mut joined = vec![Vec::new(); outs.first().map_or(channels, |b| b.channels)];
        let mut lens = Vec::new();
        for b in &outs {
            lens.push(b.frames);
            for (c, row) in joined.iter_mut().enumerate() {
                row.extend_from_slice(&b.data[c * b.frames..(c + 1) * b.frames]);
            }
        }
        (joined, lens)
    }

    /// A tiny deterministic generator, so tests need no crates.
    pub struct Lcg(pub u64);

    impl Lcg {
        pub fn next_u32(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }

        /// Uniform in [-1, 1).
        pub fn next_f32(&mut self) -> f32 {
            (self.next_u32() as f64 / (1u64 << 31) as f64 - 1.0) as f32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_in_order_with_contract_messages() {
        let empty = BlockRef::new(2, 0, &[]);
        assert_eq!(
            check_block(empty, 0).unwrap_err().message,
            "empty frame (2 channels, 0 samples)"
        );
        let data = [0.0, 1.0, f32::NAN, f32::INFINITY];
        let b = BlockRef::new(2, 2, &data);
        assert_eq!(
            check_block(b, 0).unwrap_err().message,
            "invalid sample rate 0"
        );
        assert_eq!(
            check_block(b, -5).unwrap_err().message,
            "invalid sample rate -5"
        );
        assert_eq!(
            check_block(b, 768_001).unwrap_err().message,
            "invalid sample rate 768001"
        );
        assert!(check_rate(768_000).is_ok() && check_rate(1).is_ok());
        let wide = vec![0.0; 65];
        assert_eq!(
            check_block(BlockRef::new(65, 1, &wide), 0)
                .unwrap_err()
                .message,
            "too many channels (65; at most 64)"
        );
        assert!(check_shape(BlockRef::new(64, 1, &wide[..64])).is_ok());
        let e = check_block(b, 48000).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Format);
        assert_eq!(e.message, "non-finite sample at channel 1, index 0");
        assert_eq!(
            e.at("gain").to_string(),
            "gain: non-finite sample at channel 1, index 0"
        );
    }

    #[test]
    fn named_stage_prefixes_errors() {
        let mut s = NamedStage::new("mix", StageKind::ChannelMix(ChannelMix::new(2).unwrap()));
        let data = [0.0; 9];
        let e = s
            .process(BlockRef::new(3, 3, &data), 8000, &mut Vec::new())
            .unwrap_err();
        assert!(
            e.to_string().starts_with("mix: cannot mix 3 channels to 2"),
            "{e}"
        );
        assert_eq!(
            s.output_rate(0).unwrap_err().to_string(),
            "mix: invalid sample rate 0"
        );
    }

    #[test]
    fn panics_become_engine_errors() {
        let e = catch_panic::<()>(|| panic!("boom {}", 42)).unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::Engine, "internal error (Rust panic: boom 42)")
        );
        assert_eq!(catch_panic(|| Ok(3)).unwrap(), 3);
    }

    #[test]
    fn finite_scan_catches_every_non_finite() {
        assert!(all_finite(&[
            0.0,
            -0.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            1e-45
        ]));
        for bad in [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut v = vec![1.0f32; 37];
            v[29] = bad;
            assert!(!all_finite(&v));
        }
    }

    #[test]
    fn python_round_is_half_even() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(-0.5), -0.0);
    }
}
