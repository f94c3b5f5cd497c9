//! Picture scaling (`ResizeKernel`) on the `fast_image_resize` crate.
//!
//! Convolution resampling as Pillow does it: the filter widens by the scale factor when
//! shrinking (so downscaling averages instead of aliasing), weights are quantized to `i16` and
//! summed in `i32`, the vertical pass runs first and rounds to `u8`, then the horizontal pass.
//! 4:2:0 pictures are scaled plane by plane (Y, then chroma at half the size). The Python twin
//! recomputes the same integer weights, so both agree to a level (`docs/stages-video.md`).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::{Picture, PictureRef, PixelFormat};
use crate::dsp::{EngineError, Result};

/// Largest output width or height.
pub const MAX_SIDE: i64 = 16384;

/// The resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// The source pixel under each output pixel's centre.
    Nearest,
    /// Triangle filter, support 1 (widened when shrinking).
    Bilinear,
    /// Catmull-Rom cubic, support 2.
    Bicubic,
    /// Lanczos, 3 lobes.
    Lanczos,
}

impl Quality {
    pub const NAMES: &'static str = "['nearest', 'bilinear', 'bicubic', 'lanczos']";

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "nearest" => Some(Self::Nearest),
            "bilinear" => Some(Self::Bilinear),
            "bicubic" => Some(Self::Bicubic),
            "lanczos" => Some(Self::Lanczos),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Nearest => "nearest",
            Self::Bilinear => "bilinear",
            Self::Bicubic => "bicubic",
            Self::Lanczos => "lanczos",
        }
    }

    fn algorithm(self) -> ResizeAlg {
        match self {
            Self::Nearest => ResizeAlg::Nearest,
            Self::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
            Self::Bicubic => ResizeAlg::Convolution(FilterType::CatmullRom),
            Self::Lanczos => ResizeAlg::Convolution(FilterType::Lanczos3),
        }
    }
}

/// Scales pictures to `width` x `height`, keeping their pixel format.
#[derive(Debug, Clone)]
pub struct Resize {
    width: usize,
    height: usize,
    quality: Quality,
}

fn check_side(name: &str, value: i64) -> Result<usize> {
    if (1..=MAX_SIDE).contains(&value) {
        Ok(value as usize)
    } else {
        Err(EngineError::config(format!(
            "{name} must be an int from 1 to {MAX_SIDE}, got {value}"
        )))
    }
}

/// A plane size as the crate takes it.
fn side(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| EngineError::format(format!("picture side {n} is too large")))
}

/// Scales one plane of `pixel_type` pixels from `src` into `dst`.
#[allow(clippy::too_many_arguments)]
fn plane(
    resizer: &mut Resizer,
    options: &ResizeOptions,
    pixel_type: PixelType,
    src: &[u8],
    (sw, sh): (usize, usize),
    dst: &mut [u8],
    (dw, dh): (usize, usize),
) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| EngineError::engine(format!("resize failed: {e}"));
    let src = ImageRef::new(side(sw)?, side(sh)?, src, pixel_type).map_err(|e| failed(&e))?;
    let mut dst =
        Image::from_slice_u8(side(dw)?, side(dh)?, dst, pixel_type).map_err(|e| failed(&e))?;
    resizer
        .resize(&src, &mut dst, options)
        .map_err(|e| failed(&e))
}

impl Resize {
    /// `width` and `height` in 1..=[`MAX_SIDE`], `quality` one of [`Quality::NAMES`]; else
    /// `ConfigError`.
    pub fn new(width: i64, height: i64, quality: &str) -> Result<Self> {
        let width = check_side("width", width)?;
        let height = check_side("height", height)?;
        let quality = Quality::parse(quality).ok_or_else(|| {
            EngineError::config(format!(
                "quality must be one of {}, got '{quality}'",
                Quality::NAMES
            ))
        })?;
        Ok(Self {
            width,
            height,
            quality,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn quality(&self) -> Quality {
        self.quality
    }

    /// `src` (already checked) scaled to this kernel's size; a 4:2:0 picture needs an even
    /// target size (`FormatError`).
    pub fn process(&self, src: PictureRef<'_>) -> Result<Picture> {
        let format = src.format;
        let (w, h) = (self.width, self.height);
        if format.is_yuv() && (!w.is_multiple_of(2) || !h.is_multiple_of(2)) {
            return Err(EngineError::format(format!(
                "cannot resize {} to {w}x{h}: 4:2:0 needs an even width and height",
                format.name()
            )));
        }
        let mut out = vec![0u8; format.len(w, h)];
        // A fresh resizer per call keeps the kernel stateless (and shareable between threads);
        // its scratch buffer is one allocation per frame, small next to the work.
        let mut resizer = Resizer::new();
        // Alpha handling would treat nv12's V as an alpha channel.
        let options = ResizeOptions::new()
            .resize_alg(self.quality.algorithm())
            .use_alpha(false);
        let (sw, sh) = (src.width, src.height);
        let mut run = |pt: PixelType, s: &[u8], ss: (usize, usize), d: &mut [u8], ds| {
            plane(&mut resizer, &options, pt, s, ss, d, ds)
        };
        match format {
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => {
                run(PixelType::U8x3, src.data, (sw, sh), &mut out, (w, h))?
            }
            PixelFormat::Gray => run(PixelType::U8, src.data, (sw, sh), &mut out, (w, h))?,
            PixelFormat::Yuv420p | PixelFormat::Nv12 => {
                let (y, u, v) = src.planes();
                let (sc, dc) = ((sw / 2, sh / 2), (w / 2, h / 2));
                let (y_out, chroma_out) = out.split_at_mut(w * h);
                run(PixelType::U8, y, (sw, sh), y_out, (w, h))?;
                if format == PixelFormat::Yuv420p {
                    let (u_out, v_out) = chroma_out.split_at_mut(dc.0 * dc.1);
                    run(PixelType::U8, u, sc, u_out, dc)?;
                    run(PixelType::U8, v, sc, v_out, dc)?;
                } else {
                    run(PixelType::U8x2, u, sc, chroma_out, dc)?;
                }
            }
        }
        Ok(Picture {
            format,
            width: w,
            height: h,
            data: out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::testutil::Lcg;

    fn picture(format: PixelFormat, w: usize, h: usize, f: impl FnMut(usize) -> u8) -> Picture {
        Picture {
            format,
            width: w,
            height: h,
            data: (0..format.len(w, h)).map(f).collect(),
        }
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(
            Resize::new(0, 4, "bilinear").unwrap_err().message,
            "width must be an int from 1 to 16384, got 0"
        );
        assert_eq!(
            Resize::new(4, 16385, "bilinear").unwrap_err().message,
            "height must be an int from 1 to 16384, got 16385"
        );
        assert_eq!(
            Resize::new(4, 4, "area").unwrap_err().message,
            "quality must be one of ['nearest', 'bilinear', 'bicubic', 'lanczos'], got 'area'"
        );
    }

    #[test]
    fn every_format_gets_the_right_size_and_flat_stays_flat() {
        for q in ["nearest", "bilinear", "bicubic", "lanczos"] {
            let r = Resize::new(10, 6, q).unwrap();
            for format in [
                PixelFormat::Rgb24,
                PixelFormat::Bgr24,
                PixelFormat::Gray,
                PixelFormat::Yuv420p,
                PixelFormat::Nv12,
            ] {
                let src = picture(format, 32, 18, |_| 77);
                let out = r.process(src.as_ref()).unwrap();
                assert_eq!((out.width, out.height), (10, 6));
                assert_eq!(out.data.len(), format.len(10, 6));
                assert!(out.data.iter().all(|&v| v == 77), "{q} {format:?}");
            }
        }
    }

    #[test]
    fn same_size_copies_and_nearest_picks_centres() {
        let mut lcg = Lcg(3);
        let src = picture(PixelFormat::Gray, 8, 4, |_| lcg.next_u32() as u8);
        let same = Resize::new(8, 4, "lanczos").unwrap();
        assert_eq!(same.process(src.as_ref()).unwrap(), src);
        // Halving: output x takes input floor((x + 0.5) * 2) = 2x + 1.
        let out = Resize::new(4, 2, "nearest")
            .unwrap()
            .process(src.as_ref())
            .unwrap();
        for y in 0..2 {
            for x in 0..4 {
                assert_eq!(out.data[y * 4 + x], src.data[(2 * y + 1) * 8 + 2 * x + 1]);
            }
        }
    }

    #[test]
    fn bilinear_halving_averages_pairs() {
        // A 2x downscale with the triangle filter widened to 2 weighs 1/8, 3/8, 3/8, 1/8; at the
        // edges the weights inside the picture are renormalized (80 * 1/7 and 80 * 6/7).
        let src = picture(PixelFormat::Gray, 8, 1, |i| [0, 0, 80, 80, 0, 0, 80, 80][i]);
        let out = Resize::new(4, 1, "bilinear")
            .unwrap()
            .process(src.as_ref())
            .unwrap();
        assert_eq!(out.data, vec![11, 60, 20, 69]);
    }

    #[test]
    fn odd_yuv_targets_are_format_errors() {
        let src = picture(PixelFormat::Nv12, 4, 4, |_| 0);
        let err = Resize::new(3, 2, "bilinear")
            .unwrap()
            .process(src.as_ref())
            .unwrap_err();
        assert_eq!(
            err.message,
            "cannot resize nv12 to 3x2: 4:2:0 needs an even width and height"
        );
    }
}
