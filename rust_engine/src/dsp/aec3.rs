//! AEC3 echo cancellation (`Aec3Kernel`): WebRTC's acoustic echo canceller, from `sonora`.
//!
//! `sonora` is a pure-Rust port of WebRTC's audio processing module; this kernel runs its AEC3
//! (delay estimator, adaptive linear filters, residual echo suppressor, comfort noise) and the
//! high-pass filter AEC3 expects, with the module's defaults, as every browser does. The Python
//! twin (`media_nodes/audio/aec3_kernel.py`) runs WebRTC's own C++ through `livekit`'s
//! `AudioProcessingModule`, configured the same way: different code of one algorithm, so the
//! twins agree in measured echo reduction and level (tests/audio/test_aec3.py), not sample for
//! sample.
//!
//! Streaming: the module takes 10 ms sub-frames. Each completed sub-frame runs render (the far
//! end, its channels averaged to mono) then capture (the near end), as a live peer calls it; each
//! call emits one block holding every whole `frame_ms` frame completed, so the output does not
//! depend on how the input is split. The rates are the module's native ones (8, 16, 32 and
//! 48 kHz; it splits 32 and 48 kHz into bands itself, and like the C++ module processes at most
//! 32 kHz internally, so nothing above 16 kHz comes out at 48 kHz). The output carries the
//! module's own delay ([`latency_samples`], 8-11 ms) behind the near-end input.
//!
//! AEC3 finds the echo path's bulk delay itself (0-300 ms tested here, C++ and the port stop
//! just under 500 ms). `sonora` 0.2.0's `statistics().delay_ms` is not that estimate (it reads
//! 12 ms whatever the delay), so the kernel does not expose it.

use sonora::config::{EchoCanceller, HighPassFilter};
use sonora::{AudioProcessing, Config, StreamConfig};

use super::reference::{check_pair, PairFormat, PairStage};
use super::{py_float, Block, BlockRef, EngineError, Result};

/// The sample rates the module runs natively.
pub const RATES: [u32; 4] = [8000, 16000, 32000, 48000];
/// `frame_ms`: a whole number of 10 ms sub-frames, from one to ten.
pub const FRAME_MS: (f64, f64) = (10.0, 100.0);
/// The module's sub-frame, in milliseconds.
pub const SUB_FRAME_MS: u32 = 10;

/// `sonora`'s errors, mapped once. The kernel checks every format before the module sees it, so
/// one reaching here is the engine's failure, not the caller's input.
impl From<sonora::Error> for EngineError {
    fn from(e: sonora::Error) -> Self {
        EngineError::engine(format!("AEC3 rejected a sub-frame: {e}"))
    }
}

struct Stream {
    rate: u32,
    far_channels: usize,
    /// Samples per 10 ms sub-frame.
    sub: usize,
    /// Samples per emitted frame (a whole number of sub-frames).
    frame: usize,
    apm: Box<AudioProcessing>,
    near: Vec<f32>,
    far: Vec<f32>,
    /// Samples of the sub-frame being filled.
    fill: usize,
    /// The module writes the render signal back (unchanged); kept to avoid an allocation.
    render_out: Vec<f32>,
    /// Processed samples of the frame being completed.
    done: Vec<f32>,
}

/// `Aec3Kernel(frame_ms=20.0)`; see the module docs.
pub struct Aec3 {
    frame_ms: f64,
    stream: Option<Stream>,
}

impl std::fmt::Debug for Aec3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aec3")
            .field("frame_ms", &self.frame_ms)
            .finish()
    }
}

/// The module's configuration: AEC3 with its defaults and the high-pass filter (full band),
/// as livekit's `AudioProcessingModule(echo_cancellation=True, high_pass_filter=True)` sets it.
fn config() -> Config {
    Config {
        echo_canceller: Some(EchoCanceller::default()),
        high_pass_filter: Some(HighPassFilter::default()),
        ..Config::default()
    }
}

/// The delay of the output behind the near-end input, in samples, at `rate` (the module's
/// block framing, band split and suppression filter; `latency_is_what_is_declared` measures it,
/// and the Python twin's test finds the C++ module's to be the same).
pub fn latency_samples(rate: u32) -> usize {
    match rate {
        8000 => 88,
        16000 => 128,
        32000 => 260,
        _ => 430,
    }
}

impl Aec3 {
    pub fn new(frame_ms: f64) -> Result<Self> {
        let (lo, hi) = FRAME_MS;
        let whole = (frame_ms / f64::from(SUB_FRAME_MS)).fract() == 0.0;
        if !(frame_ms.is_finite() && (lo..=hi).contains(&frame_ms) && whole) {
            return Err(EngineError::config(format!(
                "frame_ms must be a multiple of 10.0 in [{}, {}], got {}",
                py_float(lo),
                py_float(hi),
                py_float(frame_ms)
            )));
        }
        Ok(Self {
            frame_ms,
            stream: None,
        })
    }

    pub fn frame_ms(&self) -> f64 {
        self.frame_ms
    }

    /// Samples per emitted frame in the current stream (`None` before its first block).
    pub fn frame_samples(&self) -> Option<usize> {
        self.stream.as_ref().map(|s| s.frame)
    }

    /// Samples taken but not yet emitted (the sub-frame being filled and the frame's processed
    /// sub-frames).
    pub fn pending_samples(&self) -> usize {
        self.stream.as_ref().map_or(0, |s| s.fill + s.done.len())
    }

    /// The output's delay behind the near-end input, in samples (0 before the first block).
    pub fn latency_samples(&self) -> usize {
        self.stream.as_ref().map_or(0, |s| latency_samples(s.rate))
    }

    /// Checks a call's blocks in the contract's order (near: checks 2 to 4, far: the same; then
    /// near mono, far length, the rate, mid-stream changes).
    fn check(&self, near: BlockRef<'_>, far: BlockRef<'_>, sample_rate: i64) -> Result<u32> {
        check_pair(
            near,
            far,
            sample_rate,
            |rate| {
                (!RATES.contains(&rate)).then(|| {
                    format!(
                        "AEC3 runs at 8000, 16000, 32000 or 48000 Hz, got {rate} Hz; \
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

    fn start(&mut self, rate: u32, far_channels: usize) {
        let mono = StreamConfig::new(rate, 1);
        let apm = AudioProcessing::builder()
            .config(config())
            .capture_config(mono)
            .render_config(mono)
            .build();
        let sub = mono.num_frames();
        let frame = sub * (self.frame_ms as usize / SUB_FRAME_MS as usize);
        self.stream = Some(Stream {
            rate,
            far_channels,
            sub,
            frame,
            apm: Box::new(apm),
            near: vec![0.0; sub],
            far: vec![0.0; sub],
            fill: 0,
            render_out: vec![0.0; sub],
            done: Vec::with_capacity(frame),
        });
    }

    /// Cancels the echo of `far` (`C` channels, averaged) in `near` (mono), both `samples` long
    /// at `sample_rate`; returns the whole frames completed, as one mono block, or `None`.
    pub fn process(
        &mut self,
        near: BlockRef<'_>,
        far: BlockRef<'_>,
        sample_rate: i64,
    ) -> Result<Option<Block>> {
        let rate = self.check(near, far, sample_rate)?;
        if self.stream.is_none() {
            self.start(rate, far.channels);
        }
        let s = self.stream.as_mut().expect("started above");
        let mut out = Vec::new();
        let scale = 1.0 / far.channels as f32;
        let x = near.channel(0);
        let mut pos = 0;
        while pos < x.len() {
            let take = (s.sub - s.fill).min(x.len() - pos);
            s.near[s.fill..s.fill + take].copy_from_slice(&x[pos..pos + take]);
            let dst = &mut s.far[s.fill..s.fill + take];
            dst.copy_from_slice(&far.channel(0)[pos..pos + take]);
            if far.channels > 1 {
                // The channels' float32 sum, in channel order, times float32(1 / C).
                for c in 1..far.channels {
                    for (d, v) in dst.iter_mut().zip(&far.channel(c)[pos..pos + take]) {
                        *d += v;
                    }
                }
                dst.iter_mut().for_each(|d| *d *= scale);
            }
            s.fill += take;
            pos += take;
            if s.fill == s.sub {
                s.run_sub_frame()?;
                s.fill = 0;
                if s.done.len() == s.frame {
                    out.extend_from_slice(&s.done);
                    s.done.clear();
                }
            }
        }
        Ok((!out.is_empty()).then(|| Block::new(1, out.len(), out)))
    }

    /// End of stream: the frame's processed sub-frames and the partial sub-frame (zero-padded
    /// for the module, cut to the samples it held); then the stream state is dropped.
    pub fn flush(&mut self) -> Result<Option<Block>> {
        let mut tail = None;
        if let Some(s) = self.stream.as_mut() {
            let held = s.fill;
            if held > 0 {
                s.near[held..].fill(0.0);
                s.far[held..].fill(0.0);
                s.run_sub_frame()?;
                let keep = s.done.len() - s.sub + held;
                s.done.truncate(keep);
            }
            if !s.done.is_empty() {
                let data = std::mem::take(&mut s.done);
                tail = Some(Block::new(1, data.len(), data));
            }
        }
        self.reset();
        Ok(tail)
    }

    /// Drops the stream state (the adapted filters and the delay found too).
    pub fn reset(&mut self) {
        self.stream = None;
    }
}

impl Stream {
    /// One 10 ms sub-frame: render (the far end) then capture (the near end); the cancelled
    /// near end goes to `done`.
    fn run_sub_frame(&mut self) -> Result<()> {
        self.apm
            .process_render_f32(&[&self.far], &mut [&mut self.render_out])?;
        let at = self.done.len();
        self.done.resize(at + self.sub, 0.0);
        self.apm
            .process_capture_f32(&[&self.near], &mut [&mut self.done[at..]])?;
        Ok(())
    }
}

impl PairStage for Aec3 {
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
    use super::super::testutil::{echo_scene, power, run_pair, Lcg};
    use super::*;

    fn run(k: &mut Aec3, near: &[f32], far: &[f32], rate: u32, step: usize) -> Vec<f32> {
        run_pair(k, near, far, rate, step, |k| k.frame_samples())
    }

    fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
        a.iter().zip(b).map(|(x, y)| x + y).collect()
    }

    #[test]
    fn settings_are_checked() {
        for bad in [5.0, 15.0, 110.0, f64::NAN, f64::INFINITY] {
            let e = Aec3::new(bad).unwrap_err();
            assert_eq!(e.kind, super::super::ErrorKind::Config);
            assert_eq!(
                e.message,
                format!(
                    "frame_ms must be a multiple of 10.0 in [10.0, 100.0], got {}",
                    py_float(bad)
                )
            );
        }
        assert_eq!(Aec3::new(30.0).unwrap().frame_ms(), 30.0);
    }

    #[test]
    fn its_rates_and_the_stream_format_are_checked() {
        // the shared checks and their order: dsp/reference.rs
        let mut k = Aec3::new(20.0).unwrap();
        let a = [0.0f32; 320];
        let e = k
            .process(BlockRef::new(1, 320, &a), BlockRef::new(1, 320, &a), 44100)
            .unwrap_err();
        assert_eq!(
            e.message,
            "AEC3 runs at 8000, 16000, 32000 or 48000 Hz, got 44100 Hz; put Resample before it"
        );
        k.process(BlockRef::new(1, 320, &a), BlockRef::new(1, 320, &a), 16000)
            .unwrap();
        let e = k
            .process(BlockRef::new(1, 320, &a), BlockRef::new(1, 320, &a), 8000)
            .unwrap_err();
        assert_eq!(
            e.message,
            "sample rate changed mid-stream from 16000 to 8000 Hz"
        );
        let b = [0.0f32; 640];
        let e = k
            .process(BlockRef::new(1, 320, &a), BlockRef::new(2, 320, &b), 16000)
            .unwrap_err();
        assert_eq!(
            e.message,
            "far: channel count changed mid-stream from 1 to 2"
        );
    }

    #[test]
    fn whole_frames_per_call_and_the_tail_on_flush() {
        let mut k = Aec3::new(20.0).unwrap();
        let x = vec![0.0f32; 500];
        let out = k
            .process(BlockRef::new(1, 500, &x), BlockRef::new(1, 500, &x), 16000)
            .unwrap()
            .unwrap();
        assert_eq!(out.frames, 320);
        assert_eq!(k.pending_samples(), 180);
        assert_eq!(k.frame_samples(), Some(320));
        assert_eq!(k.latency_samples(), 128);
        assert_eq!(k.flush().unwrap().unwrap().frames, 180);
        assert_eq!(k.frame_samples(), None);
        assert_eq!(k.pending_samples(), 0);
        let out = k
            .process(
                BlockRef::new(1, 10, &x[..10]),
                BlockRef::new(1, 10, &x[..10]),
                16000,
            )
            .unwrap();
        assert!(out.is_none());
    }

    #[test]
    fn latency_is_what_is_declared() {
        // A near-end alone (no far end): the output is the input, high-passed, `latency` later.
        for rate in RATES {
            let mut k = Aec3::new(10.0).unwrap();
            let n = rate as usize;
            let mut g = Lcg(3);
            let near: Vec<f32> = (0..n).map(|_| 0.1 * g.next_f32()).collect();
            let zeros = vec![0.0f32; n];
            let out = run(&mut k, &near, &zeros, rate, 480);
            let lag = (0..rate as usize / 50)
                .max_by(|&a, &b| {
                    let c = |l: usize| {
                        near[..n - l]
                            .iter()
                            .zip(&out[l..])
                            .map(|(x, y)| f64::from(x * y))
                            .sum::<f64>()
                    };
                    c(a).total_cmp(&c(b))
                })
                .unwrap();
            assert_eq!(lag, latency_samples(rate), "at {rate} Hz");
        }
    }

    #[test]
    fn cancels_an_echo_and_ignores_splits() {
        for rate in [16000, 48000] {
            let (echo, far, noise) = echo_scene(rate, 8.0, 40);
            let mic = add(&echo, &noise);
            let mut k = Aec3::new(20.0).unwrap();
            let out = run(&mut k, &mic, &far, rate, rate as usize / 50);
            assert_eq!(out.len(), mic.len());
            let tail = mic.len() - 3 * rate as usize;
            let erle = 10.0 * (power(&echo[tail..]) / power(&out[tail..])).log10();
            assert!(erle > 35.0, "ERLE {erle} dB at {rate} Hz");
            let mut k2 = Aec3::new(20.0).unwrap();
            assert_eq!(run(&mut k2, &mic, &far, rate, 997), out);
        }
    }

    #[test]
    fn finds_a_bulk_delay_and_mixes_a_stereo_far_end() {
        let rate = 16000;
        let (echo, far, noise) = echo_scene(rate, 6.0, 300);
        let mic = add(&echo, &noise);
        // Far end as two channels whose mean is `far`.
        let mut k = Aec3::new(20.0).unwrap();
        let step = 320;
        let mut out = Vec::new();
        for (a, b) in mic.chunks(step).zip(far.chunks(step)) {
            let mut stereo: Vec<f32> = b.iter().map(|v| 1.5 * v).collect();
            stereo.extend(b.iter().map(|v| 0.5 * v));
            let nb = BlockRef::new(1, a.len(), a);
            let fb = BlockRef::new(2, b.len(), &stereo);
            if let Some(blk) = k.process(nb, fb, i64::from(rate)).unwrap() {
                out.extend(blk.data);
            }
        }
        let tail = mic.len() - 2 * rate as usize;
        let erle = 10.0 * (power(&echo[tail..]) / power(&out[tail..])).log10();
        assert!(erle > 35.0, "ERLE {erle} dB");
    }

    #[test]
    fn reset_starts_over() {
        let rate = 16000;
        let (echo, far, _) = echo_scene(rate, 2.0, 20);
        let mut k = Aec3::new(20.0).unwrap();
        let a = run(&mut k, &echo, &far, rate, 320);
        let x = [0.1f32; 100];
        k.process(BlockRef::new(1, 100, &x), BlockRef::new(1, 100, &x), 8000)
            .unwrap();
        k.reset();
        assert_eq!(k.pending_samples(), 0);
        assert_eq!(run(&mut k, &echo, &far, rate, 320), a);
    }
}
