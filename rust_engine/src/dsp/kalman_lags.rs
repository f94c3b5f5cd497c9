//! The Kalman echo canceller's per-lag passes ([`super::kalman_aec`]): most of its cost, one
//! loop over every lag and bin of the filters per block (a 600 ms filter at 48 kHz holds 29 000
//! cells, 250 blocks a second).
//!
//! The complex arrays are kept split ([`Split`]: real parts, imaginary parts), so the loops run
//! on plain f64 lanes the compiler vectorises without shuffles, and each pass is compiled for
//! AVX2 and AVX-512 as well as the baseline, chosen at run time (`multiversion`). The arithmetic
//! is `num_complex`'s, operation for operation (`(a+ib)(c+id) = (ac-bd) + i(ad+bc)`), and
//! every per-bin sum adds its lags in lag order: Rust never fuses a multiply and an add on its
//! own, so every CPU gives the same bits, and the Python twin's (numpy's) within its FFT's
//! rounding.

use std::ops::Range;

use multiversion::multiversion;
use realfft::num_complex::Complex;

type C64 = Complex<f64>;

/// Complex values in split layout: `re[i] + i·im[i]`.
#[derive(Clone, Debug, Default)]
pub struct Split {
    pub re: Vec<f64>,
    pub im: Vec<f64>,
}

impl Split {
    pub fn zeros(n: usize) -> Self {
        Self {
            re: vec![0.0; n],
            im: vec![0.0; n],
        }
    }

    pub fn fill_zero(&mut self, at: Range<usize>) {
        self.re[at.clone()].fill(0.0);
        self.im[at].fill(0.0);
    }

    pub fn zero(&mut self) {
        self.re.fill(0.0);
        self.im.fill(0.0);
    }

    /// `slice::copy_within` on both parts.
    pub fn copy_within(&mut self, from: Range<usize>, to: usize) {
        self.re.copy_within(from.clone(), to);
        self.im.copy_within(from, to);
    }

    /// Length `n`, zeros added at the end.
    pub fn resize(&mut self, n: usize) {
        self.re.resize(n, 0.0);
        self.im.resize(n, 0.0);
    }

    pub fn copy_from(&mut self, other: &Split) {
        self.re.copy_from_slice(&other.re);
        self.im.copy_from_slice(&other.im);
    }

    /// Values `at..at + spec.len()` from `spec`.
    pub fn load(&mut self, at: usize, spec: &[C64]) {
        for (i, c) in spec.iter().enumerate() {
            self.re[at + i] = c.re;
            self.im[at + i] = c.im;
        }
    }

    /// Values `at..at + spec.len()` into `spec`.
    pub fn store(&self, at: usize, spec: &mut [C64]) {
        for (i, c) in spec.iter_mut().enumerate() {
            *c = C64::new(self.re[at + i], self.im[at + i]);
        }
    }
}

/// The far-end spectra by lag: ring slot of lag `l` is `(head + parts - l) % parts`.
#[derive(Clone, Copy)]
pub struct Ring {
    pub head: usize,
    pub parts: usize,
    pub bins: usize,
}

impl Ring {
    /// Cells of lag `l`'s spectrum in the ring.
    #[inline(always)]
    fn row(self, l: usize) -> Range<usize> {
        let s = (self.head + self.parts - l) % self.parts;
        s * self.bins..(s + 1) * self.bins
    }
}

/// Both filters' echo estimates as spectra (`acc = Σ w·x`, `acc2 = Σ ws·x` over lags) and the
/// far end's power over lags (`power = Σ |x|²`), all starting from zero.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn outputs(
    ring: Ring,
    x: &Split,
    w: &Split,
    ws: &Split,
    acc: &mut Split,
    acc2: &mut Split,
    power: &mut [f64],
) {
    let bins = ring.bins;
    acc.zero();
    acc2.zero();
    power.fill(0.0);
    for l in 0..ring.parts {
        let r = ring.row(l);
        let (xr, xi) = (&x.re[r.clone()], &x.im[r]);
        let c = l * bins..(l + 1) * bins;
        let (wr, wi) = (&w.re[c.clone()], &w.im[c.clone()]);
        let (sr, si) = (&ws.re[c.clone()], &ws.im[c]);
        let (ar, ai) = (&mut acc.re[..bins], &mut acc.im[..bins]);
        let (br, bi) = (&mut acc2.re[..bins], &mut acc2.im[..bins]);
        let power = &mut power[..bins];
        for k in 0..bins {
            ar[k] += wr[k] * xr[k] - wi[k] * xi[k];
            ai[k] += wr[k] * xi[k] + wi[k] * xr[k];
            br[k] += sr[k] * xr[k] - si[k] * xi[k];
            bi[k] += sr[k] * xi[k] + si[k] * xr[k];
            power[k] += xr[k] * xr[k] + xi[k] * xi[k];
        }
    }
}

/// The shadow filter's NLMS step, `ws += (conj(x)·step)·e·norm` (`e`: the shadow's error
/// spectrum, `norm`: the far end's inverse power per bin), and the misfit `Σ |x|²·p` over lags
/// into `misfit` (from zero).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
#[allow(clippy::too_many_arguments)]
pub fn shadow_step(
    ring: Ring,
    x: &Split,
    ws: &mut Split,
    p: &[f64],
    step: f64,
    e: &Split,
    norm: &[f64],
    misfit: &mut [f64],
) {
    let bins = ring.bins;
    misfit.fill(0.0);
    let (er, ei, norm) = (&e.re[..bins], &e.im[..bins], &norm[..bins]);
    for l in 0..ring.parts {
        let r = ring.row(l);
        let (xr, xi) = (&x.re[r.clone()], &x.im[r]);
        let c = l * bins..(l + 1) * bins;
        let (sr, si) = (&mut ws.re[c.clone()], &mut ws.im[c.clone()]);
        let p = &p[c];
        let misfit = &mut misfit[..bins];
        for k in 0..bins {
            let (ar, ai) = (xr[k] * step, -xi[k] * step);
            let (tr, ti) = (ar * er[k] - ai * ei[k], ar * ei[k] + ai * er[k]);
            sr[k] += tr * norm[k];
            si[k] += ti * norm[k];
            misfit[k] += (xr[k] * xr[k] + xi[k] * xi[k]) * p[k];
        }
    }
}

/// The misfit alone: `Σ |x|²·p` over lags into `misfit` (from zero).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn misfit(ring: Ring, x: &Split, p: &[f64], misfit: &mut [f64]) {
    let bins = ring.bins;
    misfit.fill(0.0);
    for l in 0..ring.parts {
        let r = ring.row(l);
        let (xr, xi) = (&x.re[r.clone()], &x.im[r]);
        let p = &p[l * bins..(l + 1) * bins];
        let misfit = &mut misfit[..bins];
        for k in 0..bins {
            misfit[k] += (xr[k] * xr[k] + xi[k] * xi[k]) * p[k];
        }
    }
}

/// The Kalman update: per lag and bin the gain `p / sums`, `w += (conj(x)·gain)·e`, and
/// `p = a2·(1 - gain·|x|²/2)·p + leak·|w|²`; then the updated `P`'s misfit into `misfit`
/// (from zero).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
#[allow(clippy::too_many_arguments)]
pub fn update(
    ring: Ring,
    x: &Split,
    w: &mut Split,
    p: &mut [f64],
    sums: &[f64],
    e: &Split,
    (a2, leak): (f64, f64),
    misfit: &mut [f64],
) {
    let bins = ring.bins;
    misfit.fill(0.0);
    let (er, ei, sums) = (&e.re[..bins], &e.im[..bins], &sums[..bins]);
    for l in 0..ring.parts {
        let r = ring.row(l);
        let (xr, xi) = (&x.re[r.clone()], &x.im[r]);
        let c = l * bins..(l + 1) * bins;
        let (wr, wi) = (&mut w.re[c.clone()], &mut w.im[c.clone()]);
        let p = &mut p[c];
        let misfit = &mut misfit[..bins];
        for k in 0..bins {
            let x2 = xr[k] * xr[k] + xi[k] * xi[k];
            let gain = p[k] / sums[k];
            let (ar, ai) = (xr[k] * gain, -xi[k] * gain);
            wr[k] += ar * er[k] - ai * ei[k];
            wi[k] += ar * ei[k] + ai * er[k];
            let w2 = wr[k] * wr[k] + wi[k] * wi[k];
            p[k] = a2 * (1.0 - 0.5 * gain * x2) * p[k] + leak * w2;
            misfit[k] += x2 * p[k];
        }
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // parallel arrays indexed by lag and bin, as the passes
mod tests {
    //! Each pass, run on whatever vector unit this CPU has, against the plain `num_complex`
    //! arithmetic it replaced (one complex per cell, lags in order): the same bits, so no
    //! fused multiply-add or reordering entered the compiled versions.
    use super::super::testutil::Lcg;
    use super::*;

    const PARTS: usize = 5;
    const BINS: usize = 37; // not a multiple of any vector width: the tails run too

    fn values(rng: &mut Lcg, n: usize) -> Vec<f64> {
        // Full mantissas (an f32 alone would make many products exact).
        (0..n)
            .map(|_| 0.7 * f64::from(rng.next_f32()) + 1.234_567e-8 * f64::from(rng.next_f32()))
            .collect()
    }

    fn split(rng: &mut Lcg, n: usize) -> Split {
        Split {
            re: values(rng, n),
            im: values(rng, n),
        }
    }

    fn complex(s: &Split, i: usize) -> C64 {
        C64::new(s.re[i], s.im[i])
    }

    fn same(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits()
    }

    fn same_split(a: &Split, b: &[C64]) {
        for (i, c) in b.iter().enumerate() {
            assert!(same(a.re[i], c.re) && same(a.im[i], c.im), "cell {i}");
        }
    }

    struct Case {
        ring: Ring,
        x: Split,
        w: Split,
        ws: Split,
        p: Vec<f64>,
        e: Split,
        norm: Vec<f64>,
        sums: Vec<f64>,
    }

    fn case(seed: u64) -> Case {
        let mut rng = Lcg(seed);
        let n = PARTS * BINS;
        let positive = |rng: &mut Lcg, n| -> Vec<f64> {
            values(rng, n).iter().map(|v| v.abs() + 0.1).collect()
        };
        Case {
            ring: Ring {
                head: 3,
                parts: PARTS,
                bins: BINS,
            },
            x: split(&mut rng, n),
            w: split(&mut rng, n),
            ws: split(&mut rng, n),
            p: positive(&mut rng, n),
            e: split(&mut rng, BINS),
            norm: positive(&mut rng, BINS),
            sums: positive(&mut rng, BINS),
        }
    }

    /// Lag `l`'s far-end spectrum, bin `k`.
    fn x_at(c: &Case, l: usize, k: usize) -> C64 {
        complex(&c.x, c.ring.row(l).start + k)
    }

    #[test]
    fn outputs_as_complex_arithmetic() {
        let c = case(11);
        let (mut acc, mut acc2) = (Split::zeros(BINS), Split::zeros(BINS));
        let mut power = vec![0.0; BINS];
        outputs(c.ring, &c.x, &c.w, &c.ws, &mut acc, &mut acc2, &mut power);
        let mut want = (vec![C64::default(); BINS], vec![C64::default(); BINS]);
        let mut want_power = vec![0.0; BINS];
        for l in 0..PARTS {
            for k in 0..BINS {
                let x = x_at(&c, l, k);
                want.0[k] += complex(&c.w, l * BINS + k) * x;
                want.1[k] += complex(&c.ws, l * BINS + k) * x;
                want_power[k] += x.norm_sqr();
            }
        }
        same_split(&acc, &want.0);
        same_split(&acc2, &want.1);
        assert!(power.iter().zip(&want_power).all(|(a, b)| same(*a, *b)));
    }

    #[test]
    fn shadow_step_and_misfit_as_complex_arithmetic() {
        let mut c = case(12);
        let step = 0.37;
        let mut want_ws: Vec<C64> = (0..PARTS * BINS).map(|i| complex(&c.ws, i)).collect();
        let mut want_misfit = vec![0.0; BINS];
        for l in 0..PARTS {
            for k in 0..BINS {
                let (x, i) = (x_at(&c, l, k), l * BINS + k);
                want_ws[i] += (x.conj() * step) * complex(&c.e, k) * c.norm[k];
                want_misfit[k] += x.norm_sqr() * c.p[i];
            }
        }
        let (mut got, mut alone) = (vec![0.0; BINS], vec![0.0; BINS]);
        misfit(c.ring, &c.x, &c.p, &mut alone);
        shadow_step(c.ring, &c.x, &mut c.ws, &c.p, step, &c.e, &c.norm, &mut got);
        same_split(&c.ws, &want_ws);
        assert!(got.iter().zip(&want_misfit).all(|(a, b)| same(*a, *b)));
        assert!(alone.iter().zip(&want_misfit).all(|(a, b)| same(*a, *b)));
    }

    #[test]
    fn update_as_complex_arithmetic() {
        let mut c = case(13);
        let (a2, leak) = (0.9987, 0.0013);
        let mut want_w: Vec<C64> = (0..PARTS * BINS).map(|i| complex(&c.w, i)).collect();
        let mut want_p = c.p.clone();
        let mut want_misfit = vec![0.0; BINS];
        for l in 0..PARTS {
            for k in 0..BINS {
                let (x, i) = (x_at(&c, l, k), l * BINS + k);
                let x2 = x.norm_sqr();
                let gain = want_p[i] / c.sums[k];
                want_w[i] += (x.conj() * gain) * complex(&c.e, k);
                want_p[i] = a2 * (1.0 - 0.5 * gain * x2) * want_p[i] + leak * want_w[i].norm_sqr();
                want_misfit[k] += x2 * want_p[i];
            }
        }
        let mut got = vec![0.0; BINS];
        update(
            c.ring,
            &c.x,
            &mut c.w,
            &mut c.p,
            &c.sums,
            &c.e,
            (a2, leak),
            &mut got,
        );
        same_split(&c.w, &want_w);
        assert!(c.p.iter().zip(&want_p).all(|(a, b)| same(*a, *b)));
        assert!(got.iter().zip(&want_misfit).all(|(a, b)| same(*a, *b)));
    }
}
