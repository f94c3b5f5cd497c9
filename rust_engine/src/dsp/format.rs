//! Sample format conversion between PyAV's `fltp`, `flt`, `s16p` and `s16` (`FormatConvertKernel`).

use super::{check_dims, EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFormat {
    /// float32, `(channels, samples)`.
    Fltp,
    /// float32, `(samples, channels)`.
    Flt,
    /// int16, `(channels, samples)`.
    S16p,
    /// int16, `(samples, channels)`.
    S16,
}

impl SampleFormat {
    /// The names, as Python prints the list of them.
    pub const NAMES: &'static str = "['fltp', 'flt', 's16p', 's16']";

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "fltp" => Some(Self::Fltp),
            "flt" => Some(Self::Flt),
            "s16p" => Some(Self::S16p),
            "s16" => Some(Self::S16),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fltp => "fltp",
            Self::Flt => "flt",
            Self::S16p => "s16p",
            Self::S16 => "s16",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Self::Fltp | Self::Flt)
    }

    pub fn is_planar(self) -> bool {
        matches!(self, Self::Fltp | Self::S16p)
    }

    /// The numpy dtype name of this format.
    pub fn dtype(self) -> &'static str {
        if self.is_float() {
            "float32"
        } else {
            "int16"
        }
    }

    /// The array shape of this format, for messages.
    pub fn layout(self) -> &'static str {
        if self.is_planar() {
            "(channels, samples)"
        } else {
            "(samples, channels)"
        }
    }

    /// `(channels, samples)` from an array shape `(rows, cols)` in this format.
    pub fn dims(self, rows: usize, cols: usize) -> (usize, usize) {
        if self.is_planar() {
            (rows, cols)
        } else {
            (cols, rows)
        }
    }
}

/// Borrowed samples in some format's layout.
#[derive(Debug, Clone, Copy)]
pub enum Samples<'a> {
    F32(&'a [f32]),
    I16(&'a [i16]),
}

/// Converted samples, in the target format's layout.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedSamples {
    F32(Vec<f32>),
    I16(Vec<i16>),
}

/// float -> int16: `clip(rint(x * 32768), -32768, 32767)`, round half to even.
pub fn f32_to_s16(x: f32) -> i16 {
    (x * 32768.0).round_ties_even().clamp(-32768.0, 32767.0) as i16
}

/// int16 -> float: `x / 32768` (exact).
pub fn s16_to_f32(x: i16) -> f32 {
    x as f32 / 32768.0
}

/// Reorders between planar and interleaved layouts; `planar_in` says which `src` is.
fn relayout<T: Copy>(src: &[T], channels: usize, frames: usize, planar_in: bool) -> Vec<T> {
    let mut out = Vec::with_capacity(src.len());
    if planar_in {
        for i in 0..frames {
            out.extend((0..channels).map(|c| src[c * frames + i]));
        }
    } else {
        for c in 0..channels {
            out.extend((0..frames).map(|i| src[i * channels + c]));
        }
    }
    out
}

#[derive(Debug, Clone)]
pub struct FormatConvert {
    format: SampleFormat,
}

impl FormatConvert {
    pub fn new(format: &str) -> Result<Self> {
        match SampleFormat::parse(format) {
            Some(format) => Ok(Self { format }),
            None => Err(EngineError::config(format!(
                "format must be one of {}, got '{format}'",
                SampleFormat::NAMES
            ))),
        }
    }

    pub fn format(&self) -> SampleFormat {
        self.format
    }

    /// Converts `src` (in format `from`, `channels` x `frames`) to this kernel's format.
    /// The caller has matched the dtype to `from`.
    pub fn convert(
        &self,
        src: Samples<'_>,
        from: SampleFormat,
        channels: usize,
        frames: usize,
    ) -> Result<OwnedSamples> {
        check_dims(channels, frames)?;
        let to = self.format;
        let same_layout = from.is_planar() == to.is_planar();
        Ok(match src {
            Samples::F32(x) => {
                check_finite_layout(x, channels, frames, from.is_planar())?;
                let x = if same_layout {
                    x.to_vec()
                } else {
                    relayout(x, channels, frames, from.is_planar())
                };
                if to.is_float() {
                    OwnedSamples::F32(x)
                } else {
                    OwnedSamples::I16(x.into_iter().map(f32_to_s16).collect())
                }
            }
            Samples::I16(x) => {
                let x = if same_layout {
                    x.to_vec()
                } else {
                    relayout(x, channels, frames, from.is_planar())
                };
                if to.is_float() {
                    OwnedSamples::F32(x.into_iter().map(s16_to_f32).collect())
                } else {
                    OwnedSamples::I16(x)
                }
            }
        })
    }
}

/// The first non-finite sample in planar order (channel by channel), whatever the layout.
fn check_finite_layout(x: &[f32], channels: usize, frames: usize, planar: bool) -> Result<()> {
    if super::all_finite(x) {
        return Ok(());
    }
    let at = |c: usize, i: usize| {
        if planar {
            x[c * frames + i]
        } else {
            x[i * channels + c]
        }
    };
    for c in 0..channels {
        for i in 0..frames {
            if !at(c, i).is_finite() {
                return Err(EngineError::format(format!(
                    "non-finite sample at channel {c}, index {i}"
                )));
            }
        }
    }
    unreachable!("a non-finite sample was seen above")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_to_int_rounds_half_even_and_clips() {
        assert_eq!(f32_to_s16(1.0), 32767);
        assert_eq!(f32_to_s16(-1.0), -32768);
        assert_eq!(f32_to_s16(-2.0), -32768);
        assert_eq!(f32_to_s16(0.5 / 32768.0), 0);
        assert_eq!(f32_to_s16(1.5 / 32768.0), 2);
        assert_eq!(f32_to_s16(-2.5 / 32768.0), -2);
        assert_eq!(f32_to_s16(0.3), 9830); // 9830.4
        assert_eq!(s16_to_f32(-32768), -1.0);
        assert_eq!(s16_to_f32(16384), 0.5);
    }

    #[test]
    fn converts_between_layouts() {
        // 2 channels x 3 samples, planar.
        let planar = [1.0f32, 2.0, 3.0, -1.0, -2.0, -3.0];
        let inter = [1.0f32, -1.0, 2.0, -2.0, 3.0, -3.0];
        let to_flt = FormatConvert::new("flt").unwrap();
        assert_eq!(
            to_flt
                .convert(Samples::F32(&planar), SampleFormat::Fltp, 2, 3)
                .unwrap(),
            OwnedSamples::F32(inter.to_vec())
        );
        let to_fltp = FormatConvert::new("fltp").unwrap();
        assert_eq!(
            to_fltp
                .convert(Samples::F32(&inter), SampleFormat::Flt, 2, 3)
                .unwrap(),
            OwnedSamples::F32(planar.to_vec())
        );
        let s16 = [1i16, -1, 2, -2, 3, -3];
        let to_s16p = FormatConvert::new("s16p").unwrap();
        assert_eq!(
            to_s16p
                .convert(Samples::I16(&s16), SampleFormat::S16, 2, 3)
                .unwrap(),
            OwnedSamples::I16(vec![1, 2, 3, -1, -2, -3])
        );
        let back = to_fltp
            .convert(Samples::I16(&s16), SampleFormat::S16, 2, 3)
            .unwrap();
        let want: Vec<f32> = [1, 2, 3, -1, -2, -3]
            .iter()
            .map(|&v| v as f32 / 32768.0)
            .collect();
        assert_eq!(back, OwnedSamples::F32(want));
    }

    #[test]
    fn reports_first_non_finite_in_planar_order() {
        // Interleaved (3 samples, 2 channels): the NaN at (i=0, c=1) comes after inf at (i=2, c=0).
        let inter = [0.0f32, f32::NAN, 0.0, 0.0, f32::INFINITY, 0.0];
        let e = FormatConvert::new("s16")
            .unwrap()
            .convert(Samples::F32(&inter), SampleFormat::Flt, 2, 3)
            .unwrap_err();
        assert_eq!(e.message, "non-finite sample at channel 0, index 2");
        assert!(FormatConvert::new("s32").is_err());
        let e =
            FormatConvert::new("s16")
                .unwrap()
                .convert(Samples::F32(&[]), SampleFormat::Flt, 2, 0);
        assert_eq!(
            e.unwrap_err().message,
            "empty frame (2 channels, 0 samples)"
        );
    }
}
