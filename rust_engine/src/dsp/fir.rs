//! The resampler's inner loop: polyphase FIR dot products, several outputs at a time.
//!
//! Eight outputs are computed per pass, each with one accumulator, so eight independent FMA
//! chains keep the FMA units busy. When the eight share a phase (always for `L == 1`; for
//! `L > 1`, outputs `t, t + L, ..` whose windows are `M` input samples apart) each tap vector is
//! loaded once for all eight, which keeps the loop bound by FMAs rather than loads.
//!
//! The arithmetic is written once, generic over a small [`Vector`] trait with two backends: a
//! portable `[f32; 8]` (the compiler maps it to whatever SIMD the baseline target has) and AVX2 +
//! FMA, picked at run time with `is_x86_feature_detected!`. Wheels stay portable: nothing is
//! compiled for `target-cpu=native`.

/// f32 lanes per vector; taps per phase are padded to a multiple of this.
pub const LANES: usize = 8;

/// Where the outputs of one block sit in a channel's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Walk {
    /// Buffer index of the first output's window, and its phase.
    pub start: usize,
    pub phase: usize,
    /// Per output: the window start advances by `step` (+1 when the phase wraps past `l`) and
    /// the phase by `phase_step`.
    pub step: usize,
    pub phase_step: usize,
    /// Interpolation and decimation factors: outputs `l` apart are `m` input samples apart.
    pub l: usize,
    pub m: usize,
}

impl Walk {
    #[inline(always)]
    fn advance(&mut self) {
        self.start += self.step;
        self.phase += self.phase_step;
        if self.phase >= self.l {
            self.phase -= self.l;
            self.start += 1;
        }
    }
}

/// Eight f32 lanes.
trait Vector: Copy {
    fn zero() -> Self;
    /// # Safety
    /// `p` must be valid for reading `LANES` floats (no alignment needed), and the backend's CPU
    /// features must be present.
    unsafe fn load(p: *const f32) -> Self;
    /// `a * b + c`.
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// The sum of the lanes.
    fn sum(self) -> f32;
}

#[derive(Clone, Copy)]
struct Portable([f32; LANES]);

impl Vector for Portable {
    #[inline(always)]
    fn zero() -> Self {
        Portable([0.0; LANES])
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees `LANES` readable floats; `read_unaligned` needs no
        // alignment.
        Portable(unsafe { p.cast::<[f32; LANES]>().read_unaligned() })
    }

    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        Portable(std::array::from_fn(|i| self.0[i] * b.0[i] + c.0[i]))
    }

    #[inline(always)]
    fn sum(self) -> f32 {
        let v = self.0;
        ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
    }
}

/// `R` dot products, `out[r] = taps[r] . windows[r]`, each with a single accumulator: `R`
/// independent FMA chains hide the FMA latency, and every output's arithmetic is the same
/// whatever `R` and its neighbours are, so the output does not depend on how a stream is split.
/// When all outputs share one phase (`SHARED`), each tap vector is loaded once for all `R`.
///
/// Panics unless every tap slice and window is exactly `kp` long, a multiple of `LANES`.
#[inline(always)]
fn dots<V: Vector, const R: usize, const SHARED: bool>(
    kp: usize,
    taps: [&[f32]; R],
    windows: [&[f32]; R],
) -> [f32; R] {
    assert!(kp.is_multiple_of(LANES));
    assert!(taps.iter().chain(&windows).all(|s| s.len() == kp));
    let tp = taps.map(|t| t.as_ptr());
    let wp = windows.map(|w| w.as_ptr());
    let mut acc = [V::zero(); R];
    // SAFETY: every load reads LANES floats at an offset `j` with `j + LANES <= kp`, inside slices
    // of length `kp` (asserted above). `V::load`'s CPU features are the caller's contract (see
    // `Fir::run`).
    unsafe {
        for j in (0..kp).step_by(LANES) {
            if SHARED {
                let t = V::load(tp[0].add(j));
                for r in 0..R {
                    acc[r] = t.mul_add(V::load(wp[r].add(j)), acc[r]);
                }
            } else {
                for r in 0..R {
                    acc[r] = V::load(tp[r].add(j)).mul_add(V::load(wp[r].add(j)), acc[r]);
                }
            }
        }
    }
    // Plain loops, not `array::map`: library generics are not always inlined, and code that
    // lands in a function compiled without AVX cannot inline the intrinsics of `V`.
    let mut out = [0.0; R];
    for r in 0..R {
        out[r] = acc[r].sum();
    }
    out
}

/// Outputs `t..` in groups of `8 L` while whole groups fit: for each phase, the 8 outputs
/// `q, q + L, .., q + 7 L` of the group share their taps and have windows `M` apart. Returns the
/// next output index.
#[inline(always)]
fn phase_groups<V: Vector>(
    taps: &[f32],
    kp: usize,
    buf: &[f32],
    walk: &mut Walk,
    out: &mut [f32],
    mut t: usize,
) -> usize {
    const R: usize = 8;
    let (l, m) = (walk.l, walk.m);
    while t + R * l <= out.len() {
        for q in 0..l {
            let (s, p) = (walk.start, walk.phase);
            let phase = &taps[p * kp..(p + 1) * kp];
            let windows: [&[f32]; R] = std::array::from_fn(|r| &buf[s + r * m..s + r * m + kp]);
            let y = dots::<V, R, true>(kp, [phase; R], windows);
            for (r, v) in y.into_iter().enumerate() {
                out[t + q + r * l] = v;
            }
            walk.advance();
        }
        // `walk` is at output `t + l`; skip the outputs the group already computed.
        walk.start += (R - 1) * m;
        t += R * l;
    }
    t
}

/// Outputs `t..` in runs of `R` consecutive outputs while whole runs fit; returns the next index.
#[inline(always)]
fn runs<V: Vector, const R: usize>(
    taps: &[f32],
    kp: usize,
    buf: &[f32],
    walk: &mut Walk,
    out: &mut [f32],
    mut t: usize,
) -> usize {
    while t + R <= out.len() {
        let mut pos = [(0, 0); R];
        for p in &mut pos {
            *p = (walk.start, walk.phase);
            walk.advance();
        }
        let windows = pos.map(|(s, _)| &buf[s..s + kp]);
        let y = if walk.l == 1 {
            dots::<V, R, true>(kp, [&taps[..kp]; R], windows)
        } else {
            dots::<V, R, false>(kp, pos.map(|(_, p)| &taps[p * kp..(p + 1) * kp]), windows)
        };
        out[t..t + R].copy_from_slice(&y);
        t += R;
    }
    t
}

/// Fills `out` with successive outputs of one channel.
#[inline(always)]
fn run_channel<V: Vector>(taps: &[f32], kp: usize, buf: &[f32], walk: Walk, out: &mut [f32]) {
    let mut walk = walk;
    let mut t = 0;
    if walk.l > 1 {
        t = phase_groups::<V>(taps, kp, buf, &mut walk, out, t);
    }
    t = runs::<V, 8>(taps, kp, buf, &mut walk, out, t);
    t = runs::<V, 4>(taps, kp, buf, &mut walk, out, t);
    runs::<V, 1>(taps, kp, buf, &mut walk, out, t);
}

/// Which backend this CPU runs, chosen once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fir {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Fir {
    /// The fastest backend this CPU supports (`REMOTEMEDIA_NO_SIMD` set forces the portable one).
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::env::var_os("REMOTEMEDIA_NO_SIMD").is_none()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
        {
            return Fir::Avx2Fma;
        }
        Fir::Portable
    }

    /// Fills `out` with successive outputs of one channel: output `t` is the dot product of
    /// phase `p_t`'s `kp` taps (`taps[p * kp..]`) with `buf[s_t..s_t + kp]`, `(s_t, p_t)` walking
    /// from `walk`. Panics if a window runs past `buf`.
    pub fn run(self, taps: &[f32], kp: usize, buf: &[f32], walk: Walk, out: &mut [f32]) {
        match self {
            Fir::Portable => run_channel::<Portable>(taps, kp, buf, walk, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2Fma` is only chosen after detecting AVX2 and FMA on this CPU.
            Fir::Avx2Fma => unsafe { avx2::run(taps, kp, buf, walk, out) },
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{run_channel, Vector, Walk};

    #[derive(Clone, Copy)]
    pub(super) struct Avx2(__m256);

    // These wrappers are only instantiated inside `run` below (compiled with AVX2 + FMA), where
    // `inline(always)` places the intrinsics in a context that has the features.
    impl Vector for Avx2 {
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: AVX is present wherever this backend runs (see `Fir::detect`).
            Avx2(unsafe { _mm256_setzero_ps() })
        }

        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: 8 readable floats at `p` (the caller's contract); unaligned load.
            Avx2(unsafe { _mm256_loadu_ps(p) })
        }

        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            // SAFETY: FMA is present wherever this backend runs.
            Avx2(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
        }

        #[inline(always)]
        fn sum(self) -> f32 {
            // SAFETY: AVX is present wherever this backend runs.
            unsafe {
                let s = _mm_add_ps(
                    _mm256_castps256_ps128(self.0),
                    _mm256_extractf128_ps(self.0, 1),
                );
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
                _mm_cvtss_f32(s)
            }
        }
    }

    /// The whole output loop compiled for AVX2 + FMA.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run(taps: &[f32], kp: usize, buf: &[f32], walk: Walk, out: &mut [f32]) {
        run_channel::<Avx2>(taps, kp, buf, walk, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::testutil::Lcg;

    /// Plain float64 reference of `Fir::run`.
    fn reference(taps: &[f32], kp: usize, buf: &[f32], walk: Walk, n: usize) -> Vec<f64> {
        let mut w = walk;
        (0..n)
            .map(|_| {
                let t = &taps[w.phase * kp..(w.phase + 1) * kp];
                let y = t
                    .iter()
                    .zip(&buf[w.start..])
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                w.advance();
                y
            })
            .collect()
    }

    #[test]
    fn backends_match_reference_for_every_grouping() {
        let mut rng = Lcg(9);
        // (l, m, kp, outputs): single phase, many phases, groups that do and do not fit.
        for &(l, m, kp, n) in &[
            (1, 3, 192, 320),
            (1, 2, 8, 37),
            (3, 2, 24, 50),
            (160, 147, 64, 480),
        ] {
            let taps: Vec<f32> = (0..l * kp).map(|_| rng.next_f32()).collect();
            let buf: Vec<f32> = (0..kp + n * m / l + m + 2)
                .map(|_| rng.next_f32())
                .collect();
            let walk = Walk {
                start: 1,
                phase: 0,
                step: m / l,
                phase_step: m % l,
                l,
                m,
            };
            let want = reference(&taps, kp, &buf, walk, n);
            for fir in [Fir::Portable, Fir::detect()] {
                let mut out = vec![f32::NAN; n];
                fir.run(&taps, kp, &buf, walk, &mut out);
                for (t, (&got, &w)) in out.iter().zip(&want).enumerate() {
                    assert!(
                        (got as f64 - w).abs() < 1e-4,
                        "{fir:?} l={l} m={m} t={t}: {got} vs {w}"
                    );
                }
            }
        }
    }
}
