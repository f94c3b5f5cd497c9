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
