//! Acoustic echo cancellation (`EchoCancelKernel`): Speex's MDF canceller from libspeexdsp.
//!
//! The near-end (microphone) signal minus an adaptive estimate of the echo of the far-end
//! (loudspeaker) signal. The estimate is Speex's multidelay block frequency-domain adaptive filter
//! (MDF, Valin 2007) with its adaptive step size, which keeps learning through double talk without
//! diverging. The filter is libspeexdsp's own code (Debian's `libspeexdsp1`), loaded at run time
//! with `dlopen` so the engine imports without it: the Python twin calls the same library through
//! ctypes, and the two backends give the same samples.
//!
//! Streaming: samples go to Speex as int16 (`clip(rint(x * 32768))`, its only interface) in
//! stream-aligned frames of `N = round(frame_ms * rate / 1000)` samples; each call emits one
//! block holding every frame it completed, so the output does not depend on how the input is
//! split. The output sample `i` is the near-end sample `i` with the echo removed (no delay of
//! its own); up to `N - 1` samples wait in the frame buffer.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use super::reference::{check_pair, far_mono, PairFormat, PairStage};
use super::{py_float, Block, BlockRef, EngineError, Result};

/// `SPEEX_ECHO_SET_SAMPLING_RATE` of `speex/speex_echo.h`.
const SET_SAMPLING_RATE: c_int = 24;
/// Rates the canceller takes (Speex is tuned for speech rates; above 96 kHz a 200 ms filter is
/// tens of thousands of taps for no audible gain).
pub const MIN_RATE: u32 = 8000;
pub const MAX_RATE: u32 = 96000;
pub const FILTER_MS: (f64, f64) = (10.0, 2000.0);
pub const FRAME_MS: (f64, f64) = (2.0, 100.0);
/// The shared library, as Debian's `libspeexdsp1` installs it.
pub const LIBRARY: &str = "libspeexdsp.so.1";

type Init = unsafe extern "C" fn(c_int, c_int) -> *mut c_void;
type Destroy = unsafe extern "C" fn(*mut c_void);
type Cancel = unsafe extern "C" fn(*mut c_void, *const i16, *const i16, *mut i16);
type Ctl = unsafe extern "C" fn(*mut c_void, c_int, *mut c_void) -> c_int;

/// The five functions used, from a library that is never unloaded (it lives in a static).
struct Speex {
    _lib: libloading::Library,
    init: Init,
    destroy: Destroy,
    cancel: Cancel,
    ctl: Ctl,
}

static SPEEX: OnceLock<std::result::Result<Speex, String>> = OnceLock::new();

fn load() -> std::result::Result<Speex, String> {
    // SAFETY: loading libspeexdsp runs no initialisers with preconditions; the symbols are
    // declared with the C signatures of speex_echo.h (stable since speexdsp 1.2).
    unsafe {
        let lib = libloading::Library::new(LIBRARY).map_err(|e| e.to_string())?;
        let init = *lib
            .get::<Init>(b"speex_echo_state_init\0")
            .map_err(|e| e.to_string())?;
        let destroy = *lib
            .get::<Destroy>(b"speex_echo_state_destroy\0")
            .map_err(|e| e.to_string())?;
        let cancel = *lib
            .get::<Cancel>(b"speex_echo_cancellation\0")
            .map_err(|e| e.to_string())?;
        let ctl = *lib
            .get::<Ctl>(b"speex_echo_ctl\0")
            .map_err(|e| e.to_string())?;
        Ok(Speex {
            _lib: lib,
            init,
            destroy,
            cancel,
            ctl,
        })
    }
}

fn speex() -> std::result::Result<&'static Speex, &'static str> {
    SPEEX.get_or_init(load).as_ref().map_err(String::as_str)
}

/// Why libspeexdsp cannot be used, if it cannot (checked once, at a kernel's construction).
pub fn library_error() -> Option<String> {
    speex().err().map(|e| {
        format!("echo cancellation needs libspeexdsp ({LIBRARY}: {e}); install libspeexdsp1")
    })
}

/// One Speex echo canceller state.
struct State(*mut c_void);

// SAFETY: a Speex state is plain heap memory used by one call at a time (the kernel is `&mut`
// for every call); it has no thread affinity.
unsafe impl Send for State {}

impl Drop for State {
    fn drop(&mut self) {
        if let Ok(s) = speex() {
            // SAFETY: the pointer came from speex_echo_state_init and is destroyed once.
            unsafe { (s.destroy)(self.0) }
        }
    }
}

struct Stream {
    rate: u32,
    far_channels: usize,
    frame: usize,
    state: State,
    near: Vec<i16>,
    far: Vec<i16>,
    fill: usize,
    out: Vec<i16>,
}

/// `EchoCancelKernel(filter_ms=200.0, frame_ms=20.0)`; see `docs/stages-audio.md`.
pub struct EchoCancel {
    filter_ms: f64,
    frame_ms: f64,
    stream: Option<Stream>,
}

impl std::fmt::Debug for EchoCancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoCancel")
            .field("filter_ms", &self.filter_ms)
            .field("frame_ms", &self.frame_ms)
            .finish()
    }
}

fn check_range(name: &str, v: f64, (lo, hi): (f64, f64)) -> Result<f64> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        return Ok(v);
    }
    Err(EngineError::config(format!(
        "{name} must be a number in [{}, {}], got {}",
        py_float(lo),
        py_float(hi),
        py_float(v)
    )))
}

/// `clip(rint(x * 32768), -32768, 32767)`, rounding half to even (as `FormatConvertKernel`).
fn to_i16(x: f32) -> i16 {
    (x * 32768.0).round_ties_even().clamp(-32768.0, 32767.0) as i16
}

/// Samples at `rate` in `ms` milliseconds, rounded half to even, at least 1.
fn samples(ms: f64, rate: u32) -> usize {
    (super::round_half_even(ms * f64::from(rate) / 1000.0) as usize).max(1)
}

impl EchoCancel {
    pub fn new(filter_ms: f64, frame_ms: f64) -> Result<Self> {
        Ok(Self {
            filter_ms: check_range("filter_ms", filter_ms, FILTER_MS)?,
            frame_ms: check_range("frame_ms", frame_ms, FRAME_MS)?,
            stream: None,
        })
    }

    pub fn filter_ms(&self) -> f64 {
        self.filter_ms
    }

    pub fn frame_ms(&self) -> f64 {
        self.frame_ms
    }

    /// Samples per Speex frame in the current stream (`None` before its first block).
    pub fn frame_samples(&self) -> Option<usize> {
        self.stream.as_ref().map(|s| s.frame)
    }

    /// Filter length in samples in the current stream (`None` before its first block).
    pub fn filter_samples(&self) -> Option<usize> {
        self.stream
            .as_ref()
            .map(|s| samples(self.filter_ms, s.rate))
    }

    /// Samples waiting for their frame to complete.
    pub fn pending_samples(&self) -> usize {
        self.stream.as_ref().map_or(0, |s| s.fill)
    }

    /// Checks a call's blocks (near: checks 1 to 4 done by [`check_block`] here, then mono; far
    /// the same, then its length), in the contract's order.
    fn check(&self, near: BlockRef<'_>, far: BlockRef<'_>, sample_rate: i64) -> Result<u32> {
        check_pair(
            near,
            far,
            sample_rate,
            |rate| {
                (!(MIN_RATE..=MAX_RATE).contains(&rate)).then(|| {
                    format!(
                        "echo cancellation runs at {MIN_RATE} to {MAX_RATE} Hz, got {rate} Hz; \
                         put Resample before it"
                    )
                })
            },
            self.stream.as_ref().map(|s| PairFormat {
                rate: s.rate,
                far_channels: s.far_channels,
            }),
        )
    }

    fn start(&mut self, rate: u32, far_channels: usize) -> Result<()> {
        let lib = speex().map_err(|_| {
            EngineError::engine(library_error().unwrap_or_else(|| "libspeexdsp".into()))
        })?;
        let frame = samples(self.frame_ms, rate);
        let filter = samples(self.filter_ms, rate);
        // SAFETY: plain C constructor; a null result is checked.
        let ptr = unsafe { (lib.init)(frame as c_int, filter as c_int) };
        if ptr.is_null() {
            return Err(EngineError::engine("speex_echo_state_init failed"));
        }
        let state = State(ptr);
        let mut r: c_int = rate as c_int;
        // SAFETY: SET_SAMPLING_RATE reads one int through the pointer.
        unsafe { (lib.ctl)(state.0, SET_SAMPLING_RATE, (&mut r as *mut c_int).cast()) };
        self.stream = Some(Stream {
            rate,
            far_channels,
            frame,
            state,
            near: vec![0; frame],
            far: vec![0; frame],
            fill: 0,
            out: vec![0; frame],
        });
        Ok(())
    }

    /// Cancels the echo of `far` in `near` (both `samples` long, at `sample_rate`); returns the
    /// frames completed, as one mono block, or `None`.
    pub fn process(
        &mut self,
        near: BlockRef<'_>,
        far: BlockRef<'_>,
        sample_rate: i64,
    ) -> Result<Option<Block>> {
        let rate = self.check(near, far, sample_rate)?;
        if self.stream.is_none() {
            self.start(rate, far.channels)?;
        }
        let s = self.stream.as_mut().expect("started above");
        let lib = speex().map_err(|e| EngineError::engine(e.to_owned()))?;
        let frames = (s.fill + near.frames) / s.frame;
        let mut out = Vec::with_capacity(frames * s.frame);
        let x = near.channel(0);
        for (i, &xi) in x.iter().enumerate() {
            let f = far_mono(far, i);
            s.near[s.fill] = to_i16(xi);
            s.far[s.fill] = to_i16(f);
            s.fill += 1;
            if s.fill == s.frame {
                // SAFETY: three buffers of `frame` samples, the state from init.
                unsafe {
                    (lib.cancel)(
                        s.state.0,
                        s.near.as_ptr(),
                        s.far.as_ptr(),
                        s.out.as_mut_ptr(),
                    )
                };
                out.extend(s.out.iter().map(|&v| f32::from(v) / 32768.0));
                s.fill = 0;
            }
        }
        Ok((!out.is_empty()).then(|| Block::new(1, out.len(), out)))
    }

    /// End of stream: the partial frame, zero-padded, run, and cut to the samples it held; then
    /// the stream state is dropped.
    pub fn flush(&mut self) -> Result<Option<Block>> {
        let mut tail = None;
        if let Some(s) = self.stream.as_mut() {
            if s.fill > 0 {
                let lib = speex().map_err(|e| EngineError::engine(e.to_owned()))?;
                s.near[s.fill..].fill(0);
                s.far[s.fill..].fill(0);
                // SAFETY: as in `process`.
                unsafe {
                    (lib.cancel)(
                        s.state.0,
                        s.near.as_ptr(),
                        s.far.as_ptr(),
                        s.out.as_mut_ptr(),
                    )
                };
                let data: Vec<f32> = s.out[..s.fill]
                    .iter()
                    .map(|&v| f32::from(v) / 32768.0)
                    .collect();
                tail = Some(Block::new(1, data.len(), data));
            }
        }
        self.reset();
        Ok(tail)
    }

    /// Drops the stream state (the adapted filter too).
    pub fn reset(&mut self) {
        self.stream = None;
    }
}

impl PairStage for EchoCancel {
    fn process_pair(
        &mut self,
        near: BlockRef<'_>,
        far: BlockRef<'_>,
        sample_rate: i64,
    ) -> Result<Option<Block>> {
        self.process(near, far, sample_rate)
    }

    fn flush_pair(&mut self) -> Result<Option<Block>> {
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run_pair, Lcg};
    use super::*;

    fn have_speex() -> bool {
        library_error().is_none()
    }

    /// A synthetic echo path: far-end noise through a decaying 60 ms response after 5 ms.
    fn echo_scene(rate: u32, seconds: f64) -> (Vec<f32>, Vec<f32>) {
        let mut g = Lcg(7);
        let n = (f64::from(rate) * seconds) as usize;
        let far: Vec<f32> = (0..n).map(|_| 0.1 * g.next_f32()).collect();
        let delay = rate as usize / 200;
        let len = rate as usize * 60 / 1000;
        let mut h = vec![0.0f32; delay + len];
        for (k, tap) in h[delay..].iter_mut().enumerate() {
            *tap = 0.3 * g.next_f32() * (-(k as f32) / (0.01 * rate as f32)).exp();
        }
        let near = (0..n)
            .map(|i| {
                (0..h.len().min(i + 1))
                    .map(|k| h[k] * far[i - k])
                    .sum::<f32>()
            })
            .collect();
        (near, far)
    }

    fn run(k: &mut EchoCancel, near: &[f32], far: &[f32], rate: u32, step: usize) -> Vec<f32> {
        run_pair(k, near, far, rate, step, |_| None)
    }

    #[test]
    fn settings_are_checked() {
        let e = EchoCancel::new(5.0, 20.0).unwrap_err();
        assert_eq!(
            e.message,
            "filter_ms must be a number in [10.0, 2000.0], got 5.0"
        );
        let e = EchoCancel::new(200.0, f64::NAN).unwrap_err();
        assert_eq!(
            e.message,
            "frame_ms must be a number in [2.0, 100.0], got nan"
        );
    }

    #[test]
    fn its_rates_are_checked() {
        // the shared checks and their order: dsp/reference.rs
        if !have_speex() {
            return;
        }
        let mut k = EchoCancel::new(200.0, 20.0).unwrap();
        let a = [0.0f32; 320];
        let e = k
            .process(BlockRef::new(1, 320, &a), BlockRef::new(1, 320, &a), 4000)
            .unwrap_err();
        assert!(
            e.message
                .starts_with("echo cancellation runs at 8000 to 96000 Hz"),
            "{e}"
        );
    }

    #[test]
    fn cancels_a_linear_echo_and_ignores_splits() {
        if !have_speex() {
            return;
        }
        let rate = 16000;
        let (near, far) = echo_scene(rate, 6.0);
        let mut k = EchoCancel::new(100.0, 20.0).unwrap();
        let out = run(&mut k, &near, &far, rate, 320);
        assert_eq!(out.len(), near.len());
        let tail = near.len() - rate as usize;
        let p = |x: &[f32]| x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>();
        let erle = 10.0 * (p(&near[tail..]) / p(&out[tail..])).log10();
        assert!(erle > 20.0, "ERLE {erle} dB");
        let mut k2 = EchoCancel::new(100.0, 20.0).unwrap();
        assert_eq!(run(&mut k2, &near, &far, rate, 997), out);
        assert_eq!(k2.pending_samples(), 0);
        assert_eq!(k2.frame_samples(), None);
    }
}
