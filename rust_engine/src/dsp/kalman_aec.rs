//! The Kalman echo canceller (`KalmanAecKernel`, `EchoCancel(algorithm="kalman")`): ours.
//!
//! [`KalmanAec`] is one stream's canceller, block by block; [`KalmanAecKernel`] frames a stream
//! into its blocks. They are the twins of `media_nodes/audio/kalman_aec.py` (`KalmanAec`, the
//! spec: its docstring says why each part is there) and `kalman_kernel.py` (`KalmanAecKernel`):
//! the same arithmetic in f64, operation for operation and in the same order, so the twins differ
//! by the FFT's rounding only (numpy's pocketfft here, `realfft` there), which the adaptive
//! filters carry on.
//!
//! Three parts: a partitioned-block frequency-domain Kalman filter (overlap-save, FFT of two
//! blocks, one partition per block of far-end history, diagonal state covariance `P`); a shadow
//! filter adapted by normalised LMS, copied over when it does clearly better (the path changed)
//! and reset from the Kalman filter when it diverges (double talk); a residual-echo suppressor
//! (weighted overlap-add, square-root Hann windows of two blocks) whose residual is what `P` says
//! of the filter's error times the far end's power plus a fixed fraction of the echo estimate's.
//! Each partition is kept causal by a constraint applied to one partition per block in turn.
//!
//! Streaming: near and far are cut into stream-aligned blocks ([`block_samples`]: 2 ms up to
//! 16 kHz, 4 ms above); each call emits one block holding every whole `frame_ms` frame completed,
//! so the output does not depend on how the input is split. The output lags the near-end input
//! by one block (the overlap-add): [`KalmanAecKernel::latency_samples`]. Every buffer of the
//! canceller is allocated when the stream starts; a block allocates nothing.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::kalman_lags::{self as lags, Ring, Split};
use super::reference::{check_pair, far_mono, PairFormat, PairStage};
use super::{py_float, round_half_even, Block, BlockRef, EngineError, Result};

type C64 = Complex<f64>;

/// The sample rates the canceller runs at.
pub const RATES: [u32; 4] = [8000, 16000, 32000, 48000];
/// `filter_ms` and `frame_ms` bounds (EchoCancel's).
pub const FILTER_MS: (f64, f64) = (10.0, 2000.0);
pub const FRAME_MS: (f64, f64) = (2.0, 100.0);

/// Samples per block at `rate`: 2 ms up to 16 kHz, 4 ms above (measured: 4 ms converges slower
/// at 16 kHz; 2 ms leaves more echo in double talk at 48 kHz).
pub fn block_samples(rate: u32) -> usize {
    if rate <= 16000 {
        rate as usize / 500
    } else {
        rate as usize / 250
    }
}

/// Kalman: starting state variance per millisecond of block (a partition holds that much of the
/// echo path), and the Markov factor per millisecond (squared, per block: `a2`).
pub const P0_PER_MS: f64 = 0.025;
pub const A2_PER_MS: f64 = 0.99975;
/// Shadow NLMS step, its error's smoothing per block, the ratio under which it is copied over,
/// and the ratio over which it is reset from the Kalman filter.
pub const SHADOW_STEP: f64 = 0.8;
pub const SHADOW_SMOOTH: f64 = 0.95;
pub const SHADOW_WINS: f64 = 0.5;
pub const SHADOW_LOST: f64 = 8.0;
/// Both filters are emptied when the Kalman filter's error, smoothed over some 50 blocks
/// ([`DIVERGED_SMOOTH`]), holds this many times the microphone's energy: it adds an echo that is
/// not there (learnt from a near-end talker who happened to match the far end, with no echo at
/// all, e.g. headphones). Over fewer blocks a filter still converging trips it where the echo
/// pauses.
pub const DIVERGED: f64 = 8.0;
pub const DIVERGED_SMOOTH: f64 = 0.98;
/// Suppressor: weight of the Kalman residual, fraction of the echo estimate's power always
/// counted as residual (-30 dB), smoothing of the powers, the gain's floor (-40 dB).
pub const RESIDUAL_WEIGHT: f64 = 0.25;
pub const ECHO_LEAK: f64 = 1e-3;
pub const POWER_SMOOTH: f64 = 0.6;
pub const GAIN_FLOOR: f64 = 0.01;

/// The FFT of two blocks, both ways, with its work buffers: `time` is the real side (the
/// forward transform's input, destroyed by it; the inverse's output, scaled as numpy's `irfft`).
struct Fft {
    forward: Arc<dyn RealToComplex<f64>>,
    inverse: Arc<dyn ComplexToReal<f64>>,
    time: Vec<f64>,
    /// The inverse's input (destroyed by it).
    spec: Vec<C64>,
    scratch: Vec<C64>,
    /// numpy's `irfft` divides by the length; `realfft` does not.
    scale: f64,
}

impl Fft {
    fn new(len: usize) -> Self {
        let mut planner = RealFftPlanner::<f64>::new();
        let forward = planner.plan_fft_forward(len);
        let inverse = planner.plan_fft_inverse(len);
        let scratch = forward.get_scratch_len().max(inverse.get_scratch_len());
        Self {
            time: vec![0.0; len],
            spec: vec![C64::default(); len / 2 + 1],
            scratch: vec![C64::default(); scratch],
            scale: 1.0 / len as f64,
            forward,
            inverse,
        }
    }

    /// `out = rfft(self.time)`; `self.time` is left scrambled.
    fn rfft(&mut self, out: &mut [C64]) {
        self.forward
            .process_with_scratch(&mut self.time, out, &mut self.scratch)
            .expect("buffers sized at construction");
    }

    /// `self.time = irfft(spec)`, the imaginary parts of DC and Nyquist ignored (as numpy does).
    fn irfft(&mut self, spec: &[C64]) {
        self.spec.copy_from_slice(spec);
        let last = self.spec.len() - 1;
        self.spec[0].im = 0.0;
        self.spec[last].im = 0.0;
        self.inverse
            .process_with_scratch(&mut self.spec, &mut self.time, &mut self.scratch)
            .expect("buffers sized at construction");
        let scale = self.scale;
        self.time.iter_mut().for_each(|v| *v *= scale);
    }
}

/// One stream's canceller: [`process`](Self::process) takes `block` samples of each end and
/// writes `block` samples of output, `block` samples behind the input.
pub struct KalmanAec {
    block: usize,
    bins: usize,
    parts: usize,
    a2: f64,
    p0: f64,
    fft: Fft,
    /// Ring of far-end spectra (`parts` slots of `bins`); their powers are recomputed where
    /// read (cheaper than reading them from memory: the filters outgrow the cache).
    x_hist: Split,
    /// Ring slot of the newest spectrum.
    head: usize,
    /// Kalman filter, shadow filter and state variance, by lag (`parts` rows of `bins`).
    w: Split,
    ws: Split,
    p: Vec<f64>,
    x_time: Vec<f64>,
    psi: Vec<f64>,
    x_pow: Vec<f64>,
    err_main: f64,
    err_shadow: f64,
    /// The lag constrained next.
    turn: usize,
    copies: u64,
    /// The Kalman filter's error and the microphone's energy per block, [`DIVERGED_SMOOTH`].
    err_slow: f64,
    near_slow: f64,
    resets: u64,
    window: Vec<f64>,
    e_time: Vec<f64>,
    y_time: Vec<f64>,
    overlap: Vec<f64>,
    phi_e: Vec<f64>,
    phi_r: Vec<f64>,
    // Per-block work, allocated once: the errors, their spectra, the echo estimate, and
    // per-bin sums: the far end's power over lags (then the shadow's step normaliser), the
    // Kalman gain's denominator, and the misfit the suppressor reads.
    e: Vec<f64>,
    es: Vec<f64>,
    echo: Vec<f64>,
    e_f: Vec<C64>,
    es_f: Vec<C64>,
    /// `e_f`, `es_f` split; both filters' echo estimates as spectra.
    e_split: Split,
    es_split: Split,
    acc: Split,
    acc2: Split,
    spec: Vec<C64>,
    spec2: Vec<C64>,
    norm: Vec<f64>,
    sums: Vec<f64>,
    misfit: Vec<f64>,
}

impl std::fmt::Debug for KalmanAec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KalmanAec")
            .field("block", &self.block)
            .field("parts", &self.parts)
            .finish()
    }
}

/// Partitions (blocks of far-end history) that model `filter_ms` of echo path at `rate`.
pub fn parts_for(filter_ms: f64, rate: u32) -> usize {
    let n = block_samples(rate);
    ((filter_ms * f64::from(rate) / 1000.0 / n as f64).ceil() as usize).max(1)
}

impl KalmanAec {
    /// A canceller at `rate` modelling `filter_ms` of echo path (at least one partition).
    pub fn new(rate: u32, filter_ms: f64) -> Self {
        let n = block_samples(rate);
        let fft = 2 * n;
        let bins = n + 1;
        let parts = parts_for(filter_ms, rate);
        let block_ms = 1000.0 * n as f64 / f64::from(rate);
        let a2 = A2_PER_MS.powf(block_ms);
        let p0 = P0_PER_MS * block_ms;
        let cells = parts * bins;
        let window = (0..fft)
            .map(|k| {
                let t = 2.0 * std::f64::consts::PI * k as f64 / fft as f64;
                (0.5 - 0.5 * t.cos()).sqrt()
            })
            .collect();
        Self {
            block: n,
            bins,
            parts,
            a2,
            p0,
            fft: Fft::new(fft),
            x_hist: Split::zeros(cells),
            head: 0,
            w: Split::zeros(cells),
            ws: Split::zeros(cells),
            p: vec![p0; cells],
            x_time: vec![0.0; fft],
            psi: vec![0.0; bins],
            x_pow: vec![0.0; bins],
            err_main: 0.0,
            err_shadow: 0.0,
            turn: 0,
            copies: 0,
            err_slow: 0.0,
            near_slow: 0.0,
            resets: 0,
            window,
            e_time: vec![0.0; fft],
            y_time: vec![0.0; fft],
            overlap: vec![0.0; n],
            phi_e: vec![0.0; bins],
            phi_r: vec![0.0; bins],
            e: vec![0.0; n],
            es: vec![0.0; n],
            echo: vec![0.0; n],
            e_f: vec![C64::default(); bins],
            es_f: vec![C64::default(); bins],
            e_split: Split::zeros(bins),
            es_split: Split::zeros(bins),
            acc: Split::zeros(bins),
            acc2: Split::zeros(bins),
            spec: vec![C64::default(); bins],
            spec2: vec![C64::default(); bins],
            norm: vec![0.0; bins],
            sums: vec![0.0; bins],
            misfit: vec![0.0; bins],
        }
    }

    /// Samples per block.
    pub fn block(&self) -> usize {
        self.block
    }

    /// Partitions (blocks of echo path) of each filter.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// Times the shadow filter was copied over the Kalman filter.
    pub fn copies(&self) -> u64 {
        self.copies
    }

    /// Times both filters were emptied because the Kalman filter added energy ([`DIVERGED`]).
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// The far-end fed from now on is `m` blocks older (`m` < 0: newer) than so far: the bulk
    /// delay before the canceller moved. The filters, `P` and the far-end history move by `m`
    /// lags so the echo path learnt carries over; lags with no history start empty (`P` at its
    /// start). Needs `0 < |m| < parts`.
    pub fn shift(&mut self, m: isize) {
        let (parts, bins, k) = (self.parts, self.bins, m.unsigned_abs());
        assert!(k > 0 && k < parts);
        let (keep, gone) = ((parts - k) * bins, k * bins);
        let p0 = self.p0;
        let cells = parts * bins;
        let (from, to, emptied) = if m > 0 {
            (gone..cells, 0, keep..cells)
        } else {
            (0..keep, gone, 0..gone)
        };
        for filter in [&mut self.w, &mut self.ws] {
            filter.copy_within(from.clone(), to);
            filter.fill_zero(emptied.clone());
        }
        self.p.copy_within(from, to);
        self.p[emptied].fill(p0);
        self.rewind(m);
    }

    /// The far-end fed from now on continues `m` blocks before where it stopped (`m` < 0: after
    /// it), the echo path as it was: the far-end history is re-labelled so each lag keeps its
    /// far-end time; lags with no far-end of the new alignment are emptied, the filters stay
    /// (a playout buffer that stretched or skipped the near-end).
    pub fn rewind(&mut self, m: isize) {
        let (parts, bins, k) = (self.parts, self.bins, m.unsigned_abs());
        if k == 0 {
            return;
        }
        if k >= parts {
            self.x_hist.fill_zero(0..parts * bins);
            self.x_time.fill(0.0);
            return;
        }
        // Ring: lag l lives in slot (head - l) mod parts. Moving the head by m re-labels every
        // slot; the k slots that wrap around hold no far-end of the new alignment.
        let stale: Vec<usize> = if m > 0 {
            let newest = self.slots().take(k).collect();
            self.head = (self.head + parts - k) % parts;
            newest
        } else {
            self.head = (self.head + k) % parts;
            self.slots().take(k).collect()
        };
        for s in stale {
            self.x_hist.fill_zero(s * bins..(s + 1) * bins);
        }
        if m > 0 {
            self.x_hist.store(self.head * bins, &mut self.spec);
            self.fft.irfft(&self.spec);
            self.x_time.copy_from_slice(&self.fft.time);
        } else {
            self.x_time.fill(0.0);
        }
    }

    /// Models `parts` lags from now on: the first `min(parts, self.parts)` keep their filters,
    /// `P` and far-end history; lags added start empty (`P` at its start).
    pub fn resize(&mut self, parts: usize) {
        assert!(parts >= 1);
        let bins = self.bins;
        let cells = parts * bins;
        // The ring re-laid with the newest spectrum in slot 0: lag l in slot (parts - l) % parts.
        let mut x_hist = Split::zeros(cells);
        for (l, s) in self.slots().take(parts).enumerate() {
            let (to, from) = (((parts - l) % parts) * bins, s * bins);
            x_hist.re[to..to + bins].copy_from_slice(&self.x_hist.re[from..from + bins]);
            x_hist.im[to..to + bins].copy_from_slice(&self.x_hist.im[from..from + bins]);
        }
        self.x_hist = x_hist;
        self.head = 0;
        self.w.resize(cells);
        self.ws.resize(cells);
        self.p.resize(cells, self.p0);
        self.parts = parts;
        self.turn %= parts;
    }

    /// A block of far-end with no near-end (a playout buffer dropped it): into the far-end
    /// history only; nothing adapts, nothing comes out.
    pub fn advance(&mut self, far: &[f64]) {
        let n = self.block;
        assert!(far.len() == n);
        self.x_time.copy_within(n.., 0);
        self.x_time[n..].copy_from_slice(far);
        self.head = (self.head + 1) % self.parts;
        self.fft.time.copy_from_slice(&self.x_time);
        self.fft.rfft(&mut self.spec);
        self.x_hist.load(self.head * self.bins, &self.spec);
    }

    /// Ring slots by lag (0: the newest spectrum).
    fn slots(&self) -> impl Iterator<Item = usize> + use<> {
        let (head, parts) = (self.head, self.parts);
        (0..parts).map(move |l| (head + parts - l) % parts)
    }

    /// One block: `near` and `far` (`block` samples each) in, `block` samples of output (the
    /// near end `block` samples ago, its echo removed) out.
    ///
    /// The per-lag work (most of the cost) runs in three passes over the filters, each fusing
    /// loops the Python twin runs one after another; every per-bin sum still adds its lags in
    /// lag order, so the results are the same to the bit.
    pub fn process(&mut self, near: &[f64], far: &[f64], out: &mut [f64]) {
        let n = self.block;
        assert!(near.len() == n && out.len() == n);
        self.advance(far);
        lags::outputs(
            self.ring(),
            &self.x_hist,
            &self.w,
            &self.ws,
            &mut self.acc,
            &mut self.acc2,
            &mut self.norm,
        );
        self.acc.store(0, &mut self.spec);
        self.acc2.store(0, &mut self.spec2);
        self.error(false, near);
        self.error(true, near);
        if self.shadow(near) {
            // Both filters emptied: the echo estimate is nothing, the error the near end.
            self.spec.fill(C64::default());
            self.error(false, near);
        }
        for (psi, e) in self.psi.iter_mut().zip(&self.e_f) {
            *psi = 0.5 * *psi + 0.5 * (e.re * e.re + e.im * e.im);
        }
        for (s, psi) in self.sums.iter_mut().zip(&self.psi) {
            *s = *s + psi + 1e-12;
        }
        self.e_split.load(0, &self.e_f);
        let markov = (self.a2, 1.0 - self.a2);
        lags::update(
            self.ring(),
            &self.x_hist,
            &mut self.w,
            &mut self.p,
            &self.sums,
            &self.e_split,
            markov,
            &mut self.misfit,
        );
        self.constrain();
        self.suppress(out);
    }

    /// The far-end ring's layout now.
    fn ring(&self) -> Ring {
        Ring {
            head: self.head,
            parts: self.parts,
            bins: self.bins,
        }
    }

    /// The error of the Kalman filter (`e`, `e_f`, `echo`; its estimate in `spec`) or of the
    /// shadow's (`es`, `es_f`; `spec2`): the near end minus the filter's echo estimate, and the
    /// error's spectrum with the block zero-padded in front.
    fn error(&mut self, shadow: bool, near: &[f64]) {
        let n = self.block;
        self.fft
            .irfft(if shadow { &self.spec2 } else { &self.spec });
        let (e, e_f) = if shadow {
            (&mut self.es, &mut self.es_f)
        } else {
            self.echo.copy_from_slice(&self.fft.time[n..]);
            (&mut self.e, &mut self.e_f)
        };
        for ((e, x), y) in e.iter_mut().zip(near).zip(&self.fft.time[n..]) {
            *e = x - y;
        }
        self.fft.time[..n].fill(0.0);
        self.fft.time[n..].copy_from_slice(e);
        self.fft.rfft(e_f);
    }

    /// Second pass: adapts the shadow filter; copies it over the Kalman filter when it does
    /// clearly better, resets it from the Kalman filter when it diverges, and empties both when
    /// the Kalman filter adds energy ([`DIVERGED`]); `sums` gets the misfit (the sum over lags of
    /// the far end's power times `P`: what `P` says of the echo estimate's error). True when the
    /// filters were emptied.
    fn shadow(&mut self, near: &[f64]) -> bool {
        let bins = self.bins;
        for (xp, power) in self.x_pow.iter_mut().zip(&self.norm) {
            *xp = (0.9 * *xp + 0.1 * power).max(*power);
        }
        let mean = self.x_pow.iter().sum::<f64>() / bins as f64;
        let (floor, tiny) = (0.01 * mean, 1e-6 * self.fft.time.len() as f64);
        // numpy divides a complex by a real as Smith's method does: times the reciprocal.
        for (m, xp) in self.norm.iter_mut().zip(&self.x_pow) {
            *m = 1.0 / (xp + floor + tiny);
        }
        // What to do after the step depends on the errors before it: decided first, so the step
        // and the misfit share a pass (a copy raises `P`, so it takes a pass of its own).
        let k = SHADOW_SMOOTH;
        let dot = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>();
        self.err_main = k * self.err_main + (1.0 - k) * dot(&self.e);
        self.err_shadow = k * self.err_shadow + (1.0 - k) * dot(&self.es);
        let copy = self.err_shadow < SHADOW_WINS * self.err_main && self.err_main > 1e-7;
        let lost = !copy && self.err_shadow > SHADOW_LOST * self.err_main;
        if copy {
            self.err_main = self.err_shadow;
            self.copies += 1;
        } else if lost {
            self.err_shadow = self.err_main;
        }
        let q = DIVERGED_SMOOTH;
        self.err_slow = q * self.err_slow + (1.0 - q) * dot(&self.e);
        self.near_slow = q * self.near_slow + (1.0 - q) * dot(near);
        let emptied = self.err_slow > DIVERGED * self.near_slow && self.near_slow > 1e-7;
        if emptied {
            self.err_main = self.near_slow;
            self.err_shadow = self.near_slow;
            self.err_slow = self.near_slow;
            self.resets += 1;
        }
        self.es_split.load(0, &self.es_f);
        lags::shadow_step(
            self.ring(),
            &self.x_hist,
            &mut self.ws,
            &self.p,
            SHADOW_STEP,
            &self.es_split,
            &self.norm,
            &mut self.sums,
        );
        if copy {
            self.w.copy_from(&self.ws);
            let p0 = self.p0;
            self.p.iter_mut().for_each(|p| *p = p.max(p0));
            lags::misfit(self.ring(), &self.x_hist, &self.p, &mut self.sums);
        } else if lost {
            self.ws.copy_from(&self.w);
        }
        if emptied {
            self.w.zero();
            self.ws.zero();
        }
        emptied
    }

    /// Zero the second half of one lag's impulse response in both filters, in turn.
    fn constrain(&mut self) {
        let (n, bins) = (self.block, self.bins);
        let at = self.turn * bins;
        for filter in [&mut self.w, &mut self.ws] {
            filter.store(at, &mut self.spec);
            self.fft.irfft(&self.spec);
            self.fft.time[n..].fill(0.0);
            self.fft.rfft(&mut self.spec);
            filter.load(at, &self.spec);
        }
        self.turn = (self.turn + 1) % self.parts;
    }

    /// The residual-echo suppressor (weighted overlap-add) on the error, `self.misfit` holding
    /// the misfit; writes the output block.
    fn suppress(&mut self, out: &mut [f64]) {
        let n = self.block;
        self.e_time.copy_within(n.., 0);
        self.e_time[n..].copy_from_slice(&self.e);
        self.y_time.copy_within(n.., 0);
        self.y_time[n..].copy_from_slice(&self.echo);
        let windowed = |fft: &mut Fft, x: &[f64], win: &[f64], out: &mut [C64]| {
            for ((t, x), w) in fft.time.iter_mut().zip(x).zip(win) {
                *t = x * w;
            }
            fft.rfft(out);
        };
        windowed(&mut self.fft, &self.e_time, &self.window, &mut self.spec);
        windowed(&mut self.fft, &self.y_time, &self.window, &mut self.spec2);
        let k = POWER_SMOOTH;
        for b in 0..self.bins {
            let (e_w, y_w) = (self.spec[b], self.spec2[b]);
            let residual =
                ECHO_LEAK * (y_w.re * y_w.re + y_w.im * y_w.im) + RESIDUAL_WEIGHT * self.misfit[b];
            self.phi_e[b] = k * self.phi_e[b] + (1.0 - k) * (e_w.re * e_w.re + e_w.im * e_w.im);
            self.phi_r[b] = (k * self.phi_r[b] + (1.0 - k) * residual).max(residual);
            let g = (1.0 - self.phi_r[b] / self.phi_e[b].max(1e-20)).clamp(GAIN_FLOOR, 1.0);
            self.spec[b] = e_w.scale(g);
        }
        self.fft.irfft(&self.spec);
        for (t, w) in self.fft.time.iter_mut().zip(&self.window) {
            *t *= w;
        }
        for ((y, o), t) in out.iter_mut().zip(&self.overlap).zip(&self.fft.time[..n]) {
            *y = o + t;
        }
        self.overlap.copy_from_slice(&self.fft.time[n..]);
    }
}

struct Stream {
    rate: u32,
    far_channels: usize,
    /// Samples per emitted frame.
    frame: usize,
    aec: KalmanAec,
    near: Vec<f64>,
    far: Vec<f64>,
    /// Samples of the block being filled.
    fill: usize,
    out: Vec<f64>,
    /// Output not yet emitted (less than a frame between calls).
    done: Vec<f32>,
}

impl Stream {
    fn run(&mut self) {
        self.aec.process(&self.near, &self.far, &mut self.out);
        self.done.extend(self.out.iter().map(|&v| v as f32));
    }
}

/// `KalmanAecKernel(filter_ms=200.0, frame_ms=20.0)`; see the module docs.
pub struct KalmanAecKernel {
    filter_ms: f64,
    frame_ms: f64,
    stream: Option<Stream>,
}

impl std::fmt::Debug for KalmanAecKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KalmanAecKernel")
            .field("filter_ms", &self.filter_ms)
            .field("frame_ms", &self.frame_ms)
            .finish()
    }
}

/// `v` if finite and in `[lo, hi]`, else the settings' words.
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

impl KalmanAecKernel {
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

    /// Samples per emitted frame in the current stream (`None` before its first block).
    pub fn frame_samples(&self) -> Option<usize> {
        self.stream.as_ref().map(|s| s.frame)
    }

    /// Samples taken but not yet emitted (the block being filled and the output held).
    pub fn pending_samples(&self) -> usize {
        self.stream.as_ref().map_or(0, |s| s.fill + s.done.len())
    }

    /// The output's delay behind the near-end input, in samples: one block (0 before the first
    /// block of a stream).
    pub fn latency_samples(&self) -> usize {
        self.stream.as_ref().map_or(0, |s| s.aec.block())
    }

    /// Checks a call's blocks in the contract's order (dsp/reference.rs).
    fn check(&self, near: BlockRef<'_>, far: BlockRef<'_>, sample_rate: i64) -> Result<u32> {
        check_pair(
            near,
            far,
            sample_rate,
            |rate| {
                (!RATES.contains(&rate)).then(|| {
                    format!(
                        "the Kalman canceller runs at 8000, 16000, 32000 or 48000 Hz, got \
                         {rate} Hz; put Resample before it"
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
        let aec = KalmanAec::new(rate, self.filter_ms);
        let n = aec.block();
        let frame = (round_half_even(self.frame_ms * f64::from(rate) / 1000.0) as usize).max(1);
        self.stream = Some(Stream {
            rate,
            far_channels,
            frame,
            aec,
            near: vec![0.0; n],
            far: vec![0.0; n],
            fill: 0,
            out: vec![0.0; n],
            done: Vec::with_capacity(frame + n),
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
        let size = s.near.len();
        let x = near.channel(0);
        for (i, &v) in x.iter().enumerate() {
            s.near[s.fill] = f64::from(v);
            s.far[s.fill] = f64::from(far_mono(far, i));
            s.fill += 1;
            if s.fill == size {
                s.run();
                s.fill = 0;
            }
        }
        let cut = s.done.len() - s.done.len() % s.frame;
        if cut == 0 {
            return Ok(None);
        }
        let data = s.done[..cut].to_vec();
        s.done.drain(..cut);
        Ok(Some(Block::new(1, cut, data)))
    }

    /// Carries the adapted filters over a move of the bulk delay: the far-end fed from now on is
    /// `samples` later (negative: earlier) behind the near-end than so far. Rounds to whole
    /// canceller blocks and returns the samples shifted by; 0 when it cannot (no stream yet,
    /// less than half a block, or a move as long as the filter): flush then.
    pub fn shift_far(&mut self, samples: i64) -> i64 {
        let Some(s) = self.stream.as_mut() else {
            return 0;
        };
        let block = s.aec.block() as i64;
        let m = super::round_half_even(samples as f64 / block as f64) as i64;
        if m == 0 || m.unsigned_abs() as usize >= s.aec.parts() {
            return 0;
        }
        s.aec.shift(m as isize);
        m * block
    }

    /// Far-end audio played while the near-end was dropped (a playout buffer's skip): into the
    /// far-end history in whole blocks (channels averaged), no output, no adaptation. Returns
    /// the samples taken: 0 with no stream or between blocks (then [`Self::rewind_far`]).
    pub fn advance_far(&mut self, far: BlockRef<'_>) -> usize {
        let Some(s) = self.stream.as_mut() else {
            return 0;
        };
        if s.fill != 0 {
            return 0;
        }
        let n = s.aec.block();
        let whole = far.frames / n;
        for b in 0..whole {
            for (i, v) in s.far.iter_mut().enumerate() {
                *v = f64::from(far_mono(far, b * n + i));
            }
            s.aec.advance(&s.far);
        }
        whole * n
    }

    /// The far-end fed from now on continues `samples` before where it stopped (negative:
    /// after), with the echo path as it was (the near-end's clock moved against its media): the
    /// far-end history is re-labelled, the filters stay. Rounds to whole canceller blocks;
    /// returns the samples moved by (0: no stream yet, or less than half a block).
    pub fn rewind_far(&mut self, samples: i64) -> i64 {
        let Some(s) = self.stream.as_mut() else {
            return 0;
        };
        let block = s.aec.block() as i64;
        let m = super::round_half_even(samples as f64 / block as f64) as i64;
        s.aec.rewind(m as isize);
        m * block
    }

    /// Models `filter_ms` of echo path from now on (and in later streams): a running stream
    /// keeps what it learnt of the lags both lengths cover; lags added start empty.
    pub fn set_filter_ms(&mut self, filter_ms: f64) -> Result<()> {
        self.filter_ms = check_range("filter_ms", filter_ms, FILTER_MS)?;
        if let Some(s) = self.stream.as_mut() {
            s.aec.resize(parts_for(self.filter_ms, s.rate));
        }
        Ok(())
    }

    /// End of stream: the output held and the partial block (zero-padded for the canceller, its
    /// output cut to the samples it held); then the stream state is dropped.
    pub fn flush(&mut self) -> Result<Option<Block>> {
        let mut tail = None;
        if let Some(s) = self.stream.as_mut() {
            let held = s.fill;
            if held > 0 {
                s.near[held..].fill(0.0);
                s.far[held..].fill(0.0);
                s.run();
                let keep = s.done.len() - (s.near.len() - held);
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

    /// Drops the stream state (the adapted filters too).
    pub fn reset(&mut self) {
        self.stream = None;
    }
}

impl PairStage for KalmanAecKernel {
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
    use super::super::testutil::{echo_scene, power, run_pair};
    use super::super::ErrorKind;
    use super::*;

    fn run(k: &mut KalmanAecKernel, near: &[f32], far: &[f32], rate: u32, step: usize) -> Vec<f32> {
        run_pair(k, near, far, rate, step, |k| k.frame_samples())
    }

    #[test]
    fn a_move_of_the_bulk_delay_keeps_what_the_filter_learnt() {
        let rate = 16000;
        let (echo, far, noise) = echo_scene(rate, 6.0, 100);
        let near: Vec<f32> = echo.iter().zip(&noise).map(|(e, n)| e + n).collect();
        let (at, moved) = (4 * rate as usize, 1280); // at 4 s the bulk delay grows by 80 ms
        let mut k = KalmanAecKernel::new(200.0, 20.0).unwrap();
        assert_eq!(k.shift_far(1280), 0, "no stream yet");
        let mut out = Vec::new();
        for i in (0..near.len()).step_by(320) {
            if i == at {
                assert_eq!(k.shift_far(200 * 32), 0, "as long as the filter");
                assert_eq!(k.shift_far(moved as i64 + 7), moved as i64, "whole blocks");
            }
            let f: Vec<f32> = (i..i + 320)
                .map(|j| if j < at { far[j] } else { far[j - moved] })
                .collect();
            let nb = BlockRef::new(1, 320, &near[i..i + 320]);
            if let Some(blk) = k.process(nb, BlockRef::new(1, 320, &f), 16000).unwrap() {
                out.extend(blk.data);
            }
        }
        // Output sample p is near-end sample p - 32 (one block); the half second after the move.
        let (a, b) = (at + 32 + 160, at + 32 + 8000);
        let left: Vec<f32> = (a..b).map(|p| out[p] - noise[p - 32]).collect();
        let erle = 10.0 * (power(&echo[a - 32..b - 32]) / power(&left)).log10();
        // Measured 53 dB; without the shift (the filter re-adapting from 100 ms to 20 ms) 19.
        assert!(erle >= 35.0, "{erle:.1} dB right after the move");
    }

    #[test]
    fn a_filter_that_adds_energy_is_emptied() {
        // No echo: the far end and the microphone are independent noises. A filter that learnt
        // a path anyway (here: set to one) adds the far end to the output until the guard
        // empties both filters; then the output is the microphone again.
        let (rate, n) = (16000, 32);
        let mut rng = super::super::testutil::Lcg(7);
        let mut aec = KalmanAec::new(rate, 20.0);
        for w in [&mut aec.w, &mut aec.ws] {
            w.re.fill(0.5);
            w.im.fill(0.0);
        }
        let (mut mic_pow, mut out_pow) = (0.0, 0.0);
        let mut out = vec![0.0; n];
        for b in 0..1000 {
            let far: Vec<f64> = (0..n).map(|_| 0.3 * f64::from(rng.next_f32())).collect();
            let mic: Vec<f64> = (0..n).map(|_| 0.01 * f64::from(rng.next_f32())).collect();
            aec.process(&mic, &far, &mut out);
            if b >= 500 {
                mic_pow += mic.iter().map(|v| v * v).sum::<f64>();
                out_pow += out.iter().map(|v| v * v).sum::<f64>();
            }
        }
        assert!(aec.resets() >= 1, "{}", aec.resets());
        assert!(out_pow <= 1.25 * mic_pow, "{out_pow} {mic_pow}");
    }

    #[test]
    fn blocks_and_partitions() {
        assert_eq!(RATES.map(block_samples), [16, 32, 128, 192]);
        let aec = KalmanAec::new(16000, 200.0);
        assert_eq!((aec.block(), aec.parts()), (32, 100));
        assert_eq!(KalmanAec::new(48000, 200.0).parts(), 50);
        assert_eq!(KalmanAec::new(8000, 1.0).parts(), 1);
    }

    #[test]
    fn settings_are_checked() {
        let e = KalmanAecKernel::new(5.0, 20.0).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Config);
        assert_eq!(
            e.message,
            "filter_ms must be a number in [10.0, 2000.0], got 5.0"
        );
        let e = KalmanAecKernel::new(200.0, f64::NAN).unwrap_err();
        assert_eq!(
            e.message,
            "frame_ms must be a number in [2.0, 100.0], got nan"
        );
        let k = KalmanAecKernel::new(150.0, 10.0).unwrap();
        assert_eq!((k.filter_ms(), k.frame_ms()), (150.0, 10.0));
    }

    #[test]
    fn its_rates_and_the_stream_format_are_checked() {
        // the shared checks and their order: dsp/reference.rs
        let mut k = KalmanAecKernel::new(200.0, 20.0).unwrap();
        let a = [0.0f32; 320];
        let e = k
            .process(BlockRef::new(1, 320, &a), BlockRef::new(1, 320, &a), 44100)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Format);
        assert_eq!(
            e.message,
            "the Kalman canceller runs at 8000, 16000, 32000 or 48000 Hz, got 44100 Hz; \
             put Resample before it"
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
    }

    #[test]
    fn whole_frames_per_call_and_the_tail_on_flush() {
        let mut k = KalmanAecKernel::new(200.0, 10.0).unwrap();
        let x = vec![0.1f32; 250];
        let b = || BlockRef::new(1, 250, &x);
        let mut total = 0;
        for _ in 0..5 {
            if let Some(out) = k.process(b(), b(), 16000).unwrap() {
                assert_eq!(out.frames % 160, 0);
                total += out.frames;
            }
        }
        assert_eq!(k.frame_samples(), Some(160));
        assert_eq!(k.latency_samples(), 32);
        assert_eq!(k.pending_samples(), 5 * 250 - total);
        total += k.flush().unwrap().map_or(0, |t| t.frames);
        assert_eq!(total, 5 * 250);
        assert_eq!((k.pending_samples(), k.frame_samples()), (0, None));
        assert_eq!(k.latency_samples(), 0);
    }

    #[test]
    fn output_length_is_input_length_after_flush() {
        for (rate, len) in [(8000, 1), (16000, 31), (32000, 4097), (48000, 9600)] {
            let mut k = KalmanAecKernel::new(100.0, 20.0).unwrap();
            let x = vec![0.01f32; len];
            assert_eq!(run(&mut k, &x, &x, rate, 700).len(), len, "at {rate} Hz");
        }
    }

    #[test]
    fn cancels_an_echo() {
        for rate in [16000, 48000] {
            let (echo, far, noise) = echo_scene(rate, 4.0, 20);
            let mic: Vec<f32> = echo.iter().zip(&noise).map(|(a, b)| a + b).collect();
            let mut k = KalmanAecKernel::new(200.0, 20.0).unwrap();
            let out = run(&mut k, &mic, &far, rate, rate as usize / 50);
            assert_eq!(out.len(), mic.len());
            // the last 2 s, the output shifted back by its one block of latency
            let lat = block_samples(rate);
            let tail = mic.len() - 2 * rate as usize;
            let left = &out[tail + lat..];
            let erle = 10.0 * (power(&echo[tail..mic.len() - lat]) / power(left)).log10();
            assert!(erle > 20.0, "ERLE {erle} dB at {rate} Hz");
        }
    }

    #[test]
    fn the_output_does_not_depend_on_the_split() {
        let rate = 16000;
        let (echo, far, noise) = echo_scene(rate, 1.0, 20);
        let mic: Vec<f32> = echo.iter().zip(&noise).map(|(a, b)| a + b).collect();
        let mut k = KalmanAecKernel::new(200.0, 20.0).unwrap();
        let whole = run(&mut k, &mic, &far, rate, 320);
        assert_eq!(whole.len(), mic.len());
        for step in [1, 7, 997] {
            let mut k = KalmanAecKernel::new(200.0, 20.0).unwrap();
            assert_eq!(
                run(&mut k, &mic, &far, rate, step),
                whole,
                "in steps of {step}"
            );
        }
    }

    #[test]
    fn a_stereo_far_end_is_averaged() {
        let rate = 16000;
        let (echo, far, _) = echo_scene(rate, 1.0, 10);
        let mut mono = KalmanAecKernel::new(200.0, 20.0).unwrap();
        let a = run(&mut mono, &echo, &far, rate, 320);
        let mut k = KalmanAecKernel::new(200.0, 20.0).unwrap();
        let mut b = Vec::new();
        for (x, f) in echo.chunks(320).zip(far.chunks(320)) {
            // two channels whose float32 mean is exactly `f` (1.5 f + 0.5 f = 2 f)
            let mut stereo: Vec<f32> = f.iter().map(|v| 1.5 * v).collect();
            stereo.extend(f.iter().map(|v| 0.5 * v));
            let fb = BlockRef::new(2, f.len(), &stereo);
            if let Some(blk) = k.process(BlockRef::new(1, x.len(), x), fb, 16000).unwrap() {
                b.extend(blk.data);
            }
        }
        b.extend(k.flush().unwrap().map_or(Vec::new(), |t| t.data));
        assert_eq!(a, b);
    }

    #[test]
    fn reset_starts_over() {
        let rate = 16000;
        let (echo, far, _) = echo_scene(rate, 1.0, 20);
        let mut k = KalmanAecKernel::new(200.0, 20.0).unwrap();
        let a = run(&mut k, &echo, &far, rate, 320);
        let x = [0.1f32; 100];
        k.process(BlockRef::new(1, 100, &x), BlockRef::new(1, 100, &x), 8000)
            .unwrap();
        k.reset();
        assert_eq!(k.pending_samples(), 0);
        assert_eq!(run(&mut k, &echo, &far, rate, 320), a);
    }
}
