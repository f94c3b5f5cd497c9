//! The resampler's prototype low-pass filter, exactly as `docs/kernels.md` specifies it.
//!
//! Everything is computed in float64 in the same order of operations as the Python twin, so both
//! backends store the same float32 taps.

use std::f64::consts::PI;

use super::{EngineError, Result};

/// Largest interpolation factor `L` the resampler takes.
pub const MAX_L: u64 = 1024;
/// Stopband attenuation in dB.
pub const ATTENUATION_DB: f64 = 90.0;
/// Largest prototype length `N = K * L` we agree to build (64 MiB of float32 taps); only
/// absurd rate pairs (input rates far beyond 384 kHz into a low output rate) hit it.
pub const MAX_TAPS: usize = 1 << 24;

pub fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Modified Bessel function of the first kind, order 0, by its power series (converges fast for
/// the Kaiser window's arguments, `|x| <= beta ~ 9`; relative error near 1 ulp).
pub fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut k = 1.0;
    while term > sum * 1e-17 {
        term *= q / (k * k);
        sum += term;
        k += 1.0;
    }
    sum
}

/// `np.kaiser(n, beta)`.
pub fn kaiser(n: usize, beta: f64) -> Vec<f64> {
    if n == 1 {
        return vec![1.0];
    }
    let alpha = (n as f64 - 1.0) / 2.0;
    let denom = bessel_i0(beta);
    (0..n)
        .map(|j| {
            let r = (j as f64 - alpha) / alpha;
            bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / denom
        })
        .collect()
}

/// `np.sinc(x)`.
pub fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let y = PI * x;
        y.sin() / y
    }
}

/// A rational resampling filter for one rate pair.
#[derive(Debug, Clone)]
pub struct Design {
    pub in_rate: u32,
    pub out_rate: u32,
    /// Interpolation factor `out / g`.
    pub l: u64,
    /// Decimation factor `in / g`.
    pub m: u64,
    /// Taps per phase.
    pub k: usize,
    /// The prototype, `N = K * L` taps, already scaled to a DC gain of `L`.
    pub h: Vec<f64>,
}

impl Design {
    /// Reduces the rate pair; `L > MAX_L` is a `FormatError`.
    pub fn factors(in_rate: u32, out_rate: u32) -> Result<(u64, u64)> {
        let g = gcd(in_rate as u64, out_rate as u64);
        let (l, m) = (out_rate as u64 / g, in_rate as u64 / g);
        if l > MAX_L {
            return Err(EngineError::format(format!(
                "unsupported rate pair {in_rate} -> {out_rate} Hz ({l} phases)"
            )));
        }
        Ok((l, m))
    }

    pub fn new(in_rate: u32, out_rate: u32) -> Result<Self> {
        let (l, m) = Self::factors(in_rate, out_rate)?;
        let low = in_rate.min(out_rate) as f64;
        let nyq = low / 2.0;
        let df = 0.18 * nyq;
        let fc = nyq - df / 2.0;
        let a = ATTENUATION_DB;
        let beta = 0.1102 * (a - 8.7);
        let r = in_rate as f64 * l as f64;
        let n_est = (a - 7.95) / (2.285 * 2.0 * PI * df / r);
        let k = (n_est / l as f64).ceil().max(1.0) as usize;
        let n = k.checked_mul(l as usize).filter(|&n| n <= MAX_TAPS).ok_or_else(|| {
            EngineError::format(format!(
                "unsupported rate pair {in_rate} -> {out_rate} Hz (filter of {k} x {l} taps is too long)"
            ))
        })?;
        let c = (n as f64 - 1.0) / 2.0;
        let window = kaiser(n, beta);
        let mut h: Vec<f64> = window
            .iter()
            .enumerate()
            .map(|(j, w)| sinc(2.0 * fc * (j as f64 - c) / r) * w)
            .collect();
        let sum: f64 = h.iter().sum();
        let scale = l as f64 / sum;
        h.iter_mut().for_each(|v| *v *= scale);
        Ok(Self {
            in_rate,
            out_rate,
            l,
            m,
            k,
            h,
        })
    }

    /// The prototype's centre `c = (N - 1) / 2`, in upsampled samples.
    pub fn centre(&self) -> f64 {
        (self.h.len() as f64 - 1.0) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bessel_matches_reference_values() {
        // scipy.special.i0
        assert!((bessel_i0(0.0) - 1.0).abs() < 1e-16);
        assert!((bessel_i0(1.0) - 1.2660658777520082).abs() < 1e-15);
        // numpy.i0(8.95926), the Kaiser beta for 90 dB.
        let x = 8.959_26_f64;
        let want = 1052.3909367761769;
        assert!(
            (bessel_i0(x) - want).abs() / want < 1e-14,
            "i0({x}) = {}",
            bessel_i0(x)
        );
    }

    #[test]
    fn sizes_for_common_pairs() {
        let d = Design::new(48000, 16000).unwrap();
        assert_eq!((d.l, d.m, d.k, d.h.len()), (1, 3, 191, 191));
        let d = Design::new(44100, 48000).unwrap();
        assert_eq!((d.l, d.m), (160, 147));
        assert_eq!(d.h.len(), d.k * 160);
        // Each phase of the polyphase filter has a DC gain near 1.
        for p in 0..d.l as usize {
            let s: f64 = d.h[p..].iter().step_by(d.l as usize).sum();
            assert!((s - 1.0).abs() < 1e-3, "phase {p} sums to {s}");
        }
    }

    #[test]
    fn rejects_large_interpolation_factor() {
        let e = Design::new(44100, 44101).unwrap_err();
        assert_eq!(e.kind, super::super::ErrorKind::Format);
        assert!(
            e.message
                .starts_with("unsupported rate pair 44100 -> 44101 Hz"),
            "{}",
            e.message
        );
    }
}
