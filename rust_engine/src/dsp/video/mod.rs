//! Pure video kernels: `u8` pictures laid out as PyAV's `to_ndarray` lays them out.
//!
//! Nothing here knows about Python. A picture is one contiguous buffer: `rgb24`/`bgr24`
//! `(height, width, 3)`, `gray` `(height, width)`, `yuv420p` the Y plane then the U and V planes
//! (each `(height / 2, width / 2)`), `nv12` the Y plane then one interleaved UV plane. The
//! contract (checks, messages, formulas, tolerances) is `docs/stages-video.md`.

pub mod color;
pub mod frame_rate;
pub mod resize;

pub use color::ColorConvert;
pub use frame_rate::FrameRate;
pub use resize::{Quality, Resize};

use super::{EngineError, Result};

/// The pixel formats the video stages take, named as PyAV names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Rgb24,
    Bgr24,
    Gray,
    Yuv420p,
    Nv12,
}

impl PixelFormat {
    /// The names, as Python prints the list of them.
    pub const NAMES: &'static str = "['rgb24', 'bgr24', 'gray', 'yuv420p', 'nv12']";

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "rgb24" => Some(Self::Rgb24),
            "bgr24" => Some(Self::Bgr24),
            "gray" => Some(Self::Gray),
            "yuv420p" => Some(Self::Yuv420p),
            "nv12" => Some(Self::Nv12),
            _ => None,
        }
    }

    /// The `FormatError` of a source format that is none of these; `shown` is its Python repr.
    pub fn unsupported(shown: &str) -> EngineError {
        EngineError::format(format!(
            "unsupported pixel format {shown}; supported: {}",
            Self::NAMES
        ))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Rgb24 => "rgb24",
            Self::Bgr24 => "bgr24",
            Self::Gray => "gray",
            Self::Yuv420p => "yuv420p",
            Self::Nv12 => "nv12",
        }
    }

    /// The array shape, as the messages print it.
    pub fn layout(self) -> &'static str {
        match self {
            Self::Rgb24 | Self::Bgr24 => "(height, width, 3)",
            Self::Gray => "(height, width)",
            Self::Yuv420p | Self::Nv12 => "(height * 3 // 2, width)",
        }
    }

    /// Dimensions of the array.
    pub fn ndim(self) -> usize {
        match self {
            Self::Rgb24 | Self::Bgr24 => 3,
            _ => 2,
        }
    }

    /// 4:2:0 chroma: width and height must be even.
    pub fn is_yuv(self) -> bool {
        matches!(self, Self::Yuv420p | Self::Nv12)
    }

    /// The array shape of a `width` x `height` picture.
    pub fn shape(self, width: usize, height: usize) -> Vec<usize> {
        match self {
            Self::Rgb24 | Self::Bgr24 => vec![height, width, 3],
            Self::Gray => vec![height, width],
            Self::Yuv420p | Self::Nv12 => vec![height * 3 / 2, width],
        }
    }

    /// Bytes of a `width` x `height` picture.
    pub fn len(self, width: usize, height: usize) -> usize {
        self.shape(width, height).iter().product()
    }

    /// The expected-array phrase of the messages.
    pub fn expected(self) -> String {
        format!(
            "a uint8 array of shape {} for {}",
            self.layout(),
            self.name()
        )
    }

    /// `(width, height)` of an array of this format's rank, after checks 2 to 4 of the contract
    /// (the binding did check 1, dtype and rank).
    pub fn dims(self, shape: &[usize]) -> Result<(usize, usize)> {
        let bad_shape = || {
            EngineError::format(format!(
                "expected {}, got shape {}",
                self.expected(),
                py_shape(shape)
            ))
        };
        if shape.len() != self.ndim() {
            return Err(bad_shape());
        }
        let (width, height) = match self {
            Self::Rgb24 | Self::Bgr24 if shape[2] != 3 => return Err(bad_shape()),
            Self::Yuv420p | Self::Nv12 if !shape[0].is_multiple_of(3) => return Err(bad_shape()),
            Self::Yuv420p | Self::Nv12 => (shape[1], shape[0] / 3 * 2),
            _ => (shape[1], shape[0]),
        };
        if width == 0 || height == 0 {
            return Err(EngineError::format(format!(
                "empty picture ({width}x{height})"
            )));
        }
        if self.is_yuv() && (!width.is_multiple_of(2) || !height.is_multiple_of(2)) {
            return Err(EngineError::format(format!(
                "{} needs an even width and height, got {width}x{height}",
                self.name()
            )));
        }
        Ok((width, height))
    }
}

/// A shape as Python prints a tuple: `(2, 3)`, `(4,)`.
pub fn py_shape(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

/// A borrowed picture whose buffer matches its format and size.
#[derive(Debug, Clone, Copy)]
pub struct PictureRef<'a> {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    pub data: &'a [u8],
}

impl<'a> PictureRef<'a> {
    /// Checks the array `shape` (see [`PixelFormat::dims`]) and wraps `data`; a buffer whose
    /// length does not match the shape is a bug in the caller (panics).
    pub fn new(format: PixelFormat, shape: &[usize], data: &'a [u8]) -> Result<Self> {
        let (width, height) = format.dims(shape)?;
        assert_eq!(
            data.len(),
            format.len(width, height),
            "picture data does not match its shape"
        );
        Ok(Self {
            format,
            width,
            height,
            data,
        })
    }

    /// The planes of a 4:2:0 picture: Y, then U and V (yuv420p) or UV (nv12, `v` empty).
    fn planes(&self) -> (&'a [u8], &'a [u8], &'a [u8]) {
        let luma = self.width * self.height;
        let chroma = luma / 4;
        let (y, rest) = self.data.split_at(luma);
        match self.format {
            PixelFormat::Yuv420p => (y, &rest[..chroma], &rest[chroma..]),
            _ => (y, rest, &[]),
        }
    }
}

/// An owned picture, what the kernels emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Picture {
    pub fn as_ref(&self) -> PictureRef<'_> {
        PictureRef {
            format: self.format,
            width: self.width,
            height: self.height,
            data: &self.data,
        }
    }

    /// The numpy shape of this picture.
    pub fn shape(&self) -> Vec<usize> {
        self.format.shape(self.width, self.height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_checks_follow_the_contract() {
        let f = PixelFormat::Yuv420p;
        assert_eq!(f.dims(&[6, 4]).unwrap(), (4, 4));
        assert_eq!(
            f.dims(&[5, 4]).unwrap_err().message,
            "expected a uint8 array of shape (height * 3 // 2, width) for yuv420p, got shape (5, 4)"
        );
        assert_eq!(
            f.dims(&[6, 3]).unwrap_err().message,
            "yuv420p needs an even width and height, got 3x4"
        );
        assert_eq!(f.dims(&[0, 4]).unwrap_err().message, "empty picture (4x0)");
        assert_eq!(
            PixelFormat::Rgb24.dims(&[2, 2, 4]).unwrap_err().message,
            "expected a uint8 array of shape (height, width, 3) for rgb24, got shape (2, 2, 4)"
        );
        assert_eq!(PixelFormat::Gray.dims(&[3, 5]).unwrap(), (5, 3));
        assert_eq!(PixelFormat::Nv12.shape(4, 2), vec![3, 4]);
        assert_eq!(PixelFormat::Bgr24.len(4, 2), 24);
        assert_eq!(
            PixelFormat::unsupported("'rgba'").message,
            "unsupported pixel format 'rgba'; supported: ['rgb24', 'bgr24', 'gray', 'yuv420p', 'nv12']"
        );
        assert_eq!(py_shape(&[7]), "(7,)");
    }
}
