//! The video kernels: `ResizeKernel`, `ColorConvertKernel`, `GrayscaleKernel` (stateless, one
//! picture in, one out) and `FrameRateKernel` (timestamps only). Pixels are read in place when
//! C-contiguous; the work runs with the GIL released and a panic guard.

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{
    PyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyFloat;

use super::args;
use super::cell::{KernelCell, Reset};
use super::error::IntoPyResult;
use crate::dsp::video::frame_rate::fps_out_of_range;
use crate::dsp::video::{
    ColorConvert, FrameRate, Picture, PictureRef, PixelFormat, Quality, Resize,
};
use crate::dsp::{catch_panic, EngineError};

/// `repr(obj)`, for messages.
fn repr(obj: &Bound<'_, PyAny>) -> String {
    obj.repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

/// `"{dtype} with {ndim} dimension(s)"`, as the Python twins print what they got.
fn describe(obj: &Bound<'_, PyAny>) -> String {
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        return format!("{} with {} dimension(s)", a.dtype(), a.ndim());
    }
    let name = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_owned());
    format!("{name} with 0 dimension(s)")
}

/// The source format named by `obj`; anything else is a `FormatError`.
fn source_format(obj: &Bound<'_, PyAny>) -> Result<PixelFormat, EngineError> {
    obj.extract::<String>()
        .ok()
        .and_then(|name| PixelFormat::parse(&name))
        .ok_or_else(|| PixelFormat::unsupported(&repr(obj)))
}

/// A picture array, borrowed read-only (a C-ordered copy when the input is strided).
struct Pixels<'py> {
    array: PyReadonlyArrayDyn<'py, u8>,
    format: PixelFormat,
    shape: Vec<usize>,
}

impl Pixels<'_> {
    fn picture(&self) -> Result<PictureRef<'_>, EngineError> {
        let data = self.array.as_slice().expect("C-contiguous array");
        PictureRef::new(self.format, &self.shape, data)
    }
}

/// Checks 1 to 4 of the contract: dtype and rank here, then shape, size and evenness.
fn read_pixels<'py>(
    obj: &Bound<'py, PyAny>,
    format: PixelFormat,
) -> Result<Pixels<'py>, EngineError> {
    let mismatch = || {
        EngineError::format(format!(
            "expected {}, got {}",
            format.expected(),
            describe(obj)
        ))
    };
    let array = obj.cast::<PyArrayDyn<u8>>().map_err(|_| mismatch())?;
    if array.ndim() != format.ndim() {
        return Err(mismatch());
    }
    let shape = array.shape().to_vec();
    format.dims(&shape)?;
    let borrow = |a: &Bound<'py, PyArrayDyn<u8>>| {
        a.try_readonly()
            .map_err(|e| EngineError::format(format!("cannot read the input array: {e}")))
    };
    let readonly = if array.is_c_contiguous() {
        borrow(array)?
    } else {
        let copy = array
            .call_method1("copy", ("C",))
            .map_err(|e| EngineError::format(e.to_string()))?
            .cast_into::<PyArrayDyn<u8>>()
            .map_err(|_| mismatch())?;
        borrow(&copy)?
    };
    Ok(Pixels {
        array: readonly,
        format,
        shape,
    })
}

/// A numpy array owning the picture's buffer (no copy).
fn to_array(py: Python<'_>, picture: Picture) -> Bound<'_, PyAny> {
    let shape = picture.shape();
    let array = ArrayD::from_shape_vec(IxDyn(&shape), picture.data).expect("data matches shape");
    PyArray::from_owned_array(py, array).into_any()
}

/// Reads `pixels` as `src_format` and runs `f` on it with the GIL released; errors name `stage`.
fn run_picture<'py>(
    py: Python<'py>,
    stage: &str,
    pixels: &Bound<'py, PyAny>,
    src_format: &Bound<'py, PyAny>,
    f: impl FnOnce(PictureRef<'_>) -> Result<Picture, EngineError> + Send,
) -> PyResult<Bound<'py, PyAny>> {
    let at = |e: EngineError| e.at(stage);
    let format = source_format(src_format).map_err(at).py_err(py)?;
    let input = read_pixels(pixels, format).map_err(at).py_err(py)?;
    let picture = input.picture().map_err(at).py_err(py)?;
    let out = py.detach(|| catch_panic(|| f(picture)));
    Ok(to_array(py, out.map_err(at).py_err(py)?))
}

/// `ResizeKernel(width, height, quality="bilinear", *, stage="resize")`.
#[pyclass(frozen, module = "stream._engine")]
pub struct ResizeKernel {
    name: String,
    inner: Resize,
}

#[pymethods]
impl ResizeKernel {
    #[new]
    #[pyo3(
        signature = (width, height, quality = None, *, stage = String::from("resize")),
        text_signature = "(width, height, quality='bilinear', *, stage='resize')"
    )]
    fn new(
        py: Python<'_>,
        width: &Bound<'_, PyAny>,
        height: &Bound<'_, PyAny>,
        quality: Option<&Bound<'_, PyAny>>,
        stage: String,
    ) -> PyResult<Self> {
        let inner = (|| {
            let width = args::int("width", width)?;
            let height = args::int("height", height)?;
            let quality = match quality.filter(|q| !q.is_none()) {
                None => "bilinear".to_owned(),
                Some(q) => q.extract::<String>().map_err(|_| {
                    EngineError::config(format!(
                        "quality must be one of {}, got {}",
                        Quality::NAMES,
                        repr(q)
                    ))
                })?,
            };
            Resize::new(width, height, &quality)
        })()
        .map_err(|e| e.at(&stage))
        .py_err(py)?;
        Ok(Self { name: stage, inner })
    }

    /// Scales `pixels` (laid out as `format` says) to `width` x `height`, same format.
    fn process<'py>(
        &self,
        py: Python<'py>,
        pixels: &Bound<'py, PyAny>,
        format: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kernel = &self.inner;
        run_picture(py, &self.name, pixels, format, |p| kernel.process(p))
    }

    /// The output width in pixels.
    #[getter]
    fn width(&self) -> usize {
        self.inner.width()
    }

    /// The output height in pixels.
    #[getter]
    fn height(&self) -> usize {
        self.inner.height()
    }

    /// The filter: nearest, bilinear, bicubic or lanczos.
    #[getter]
    fn quality(&self) -> &'static str {
        self.inner.quality().name()
    }

    /// The stage name errors carry.
    #[getter]
    fn stage(&self) -> &str {
        &self.name
    }

    fn __repr__(&self) -> String {
        format!(
            "<ResizeKernel {}x{} quality={:?} stage={:?}>",
            self.inner.width(),
            self.inner.height(),
            self.quality(),
            self.name
        )
    }
}

/// `ColorConvertKernel(format, *, stage="color_convert")`.
#[pyclass(frozen, module = "stream._engine")]
pub struct ColorConvertKernel {
    name: String,
    inner: ColorConvert,
}

#[pymethods]
impl ColorConvertKernel {
    #[new]
    #[pyo3(
        signature = (format, *, stage = String::from("color_convert")),
        text_signature = "(format, *, stage='color_convert')"
    )]
    fn new(py: Python<'_>, format: &Bound<'_, PyAny>, stage: String) -> PyResult<Self> {
        let inner = match format.extract::<String>() {
            Ok(name) if PixelFormat::parse(&name).is_some() => ColorConvert::new(&name),
            _ => Err(EngineError::config(format!(
                "format must be one of {}, got {}",
                PixelFormat::NAMES,
                repr(format)
            ))),
        };
        let inner = inner.map_err(|e| e.at(&stage)).py_err(py)?;
        Ok(Self { name: stage, inner })
    }

    /// Converts `pixels`, laid out as `src_format` says, to this kernel's format.
    fn process<'py>(
        &self,
        py: Python<'py>,
        pixels: &Bound<'py, PyAny>,
        src_format: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kernel = &self.inner;
        run_picture(py, &self.name, pixels, src_format, |p| kernel.convert(p))
    }

    /// The output pixel format.
    #[getter]
    fn format(&self) -> &'static str {
        self.inner.format().name()
    }

    /// The stage name errors carry.
    #[getter]
    fn stage(&self) -> &str {
        &self.name
    }

    fn __repr__(&self) -> String {
        format!(
            "<ColorConvertKernel format={:?} stage={:?}>",
            self.format(),
            self.name
        )
    }
}

/// `GrayscaleKernel(*, stage="grayscale")`: full-range luma of any supported format.
#[pyclass(frozen, module = "stream._engine")]
pub struct GrayscaleKernel {
    name: String,
    inner: ColorConvert,
}

#[pymethods]
impl GrayscaleKernel {
    #[new]
    #[pyo3(
        signature = (*, stage = String::from("grayscale")),
        text_signature = "(*, stage='grayscale')"
    )]
    fn new(stage: String) -> Self {
        Self {
            name: stage,
            inner: ColorConvert::gray(),
        }
    }

    /// The gray picture of `pixels`, laid out as `src_format` says.
    fn process<'py>(
        &self,
        py: Python<'py>,
        pixels: &Bound<'py, PyAny>,
        src_format: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kernel = &self.inner;
        run_picture(py, &self.name, pixels, src_format, |p| kernel.convert(p))
    }

    /// The output pixel format, `gray`.
    #[getter]
    fn format(&self) -> &'static str {
        "gray"
    }

    /// The stage name errors carry.
    #[getter]
    fn stage(&self) -> &str {
        &self.name
    }

    fn __repr__(&self) -> String {
        format!("<GrayscaleKernel stage={:?}>", self.name)
    }
}

/// `fractions.Fraction(num, den)`.
fn fraction<'py>(py: Python<'py>, num: i64, den: i64) -> PyResult<Bound<'py, PyAny>> {
    py.import("fractions")?
        .getattr("Fraction")?
        .call1((num, den))
}

/// `fps` as a fraction in lowest terms: an int, a `Fraction`, a `'num/den'` string, or a float
/// (taken as the nearest fraction with a denominator up to 1001, so 29.97 is 2997/100).
fn parse_fps(fps: &Bound<'_, PyAny>) -> Result<(i64, i64), EngineError> {
    let bad = || {
        EngineError::config(format!(
            "fps must be a number (an int, float, Fraction or 'num/den' string), got {}",
            repr(fps)
        ))
    };
    let py = fps.py();
    let value = py
        .import("fractions")
        .and_then(|m| m.getattr("Fraction"))
        .and_then(|cls| {
            let f = cls.call1((fps,))?;
            if fps.is_instance_of::<PyFloat>() {
                f.call_method1("limit_denominator", (1001,))
            } else {
                Ok(f)
            }
        })
        .map_err(|_| bad())?;
    let term = |name: &str| value.getattr(name).and_then(|v| v.extract::<i64>());
    match (term("numerator"), term("denominator")) {
        (Ok(num), Ok(den)) => Ok((num, den)),
        // Terms beyond int64 are out of range anyway.
        _ => Err(fps_out_of_range(&value.to_string())),
    }
}

/// `(numerator, denominator)` of a time base (a `Fraction`, or an int).
fn parse_time_base(tb: &Bound<'_, PyAny>) -> Result<(i64, i64), EngineError> {
    let term = |name: &str| tb.getattr(name).and_then(|v| v.extract::<i64>());
    match (term("numerator"), term("denominator")) {
        (Ok(num), Ok(den)) => Ok((num, den)),
        _ => Err(EngineError::format(format!(
            "time_base must be a Fraction with int64 terms, got {}",
            repr(tb)
        ))),
    }
}

impl Reset for FrameRate {
    fn reset(&mut self) {
        FrameRate::reset(self);
    }
}

/// `FrameRateKernel(fps, *, stage="frame_rate")`: which input frame fills which output slot.
/// Its calls are a few integer operations, so they keep the GIL (`KernelCell::run_held`).
#[pyclass(frozen, module = "stream._engine")]
pub struct FrameRateKernel {
    fps: (i64, i64),
    cell: KernelCell<FrameRate>,
}

#[pymethods]
impl FrameRateKernel {
    #[new]
    #[pyo3(
        signature = (fps, *, stage = String::from("frame_rate")),
        text_signature = "(fps, *, stage='frame_rate')"
    )]
    fn new(py: Python<'_>, fps: &Bound<'_, PyAny>, stage: String) -> PyResult<Self> {
        let inner = parse_fps(fps)
            .and_then(|(num, den)| FrameRate::new(num, den))
            .map_err(|e| e.at(&stage))
            .py_err(py)?;
        Ok(Self {
            fps: inner.fps(),
            cell: KernelCell::new(stage, inner),
        })
    }

    /// Registers an input frame at `pts * time_base` seconds; returns `(start, count)`: the
    /// previously registered frame fills output pts `start .. start + count`.
    fn process(
        &self,
        py: Python<'_>,
        pts: &Bound<'_, PyAny>,
        time_base: &Bound<'_, PyAny>,
    ) -> PyResult<(i64, i64)> {
        let parsed = (|| -> Result<_, EngineError> {
            let pts = pts.extract::<i64>().map_err(|_| {
                EngineError::format(format!(
                    "pts must be an int in the int64 range, got {}",
                    repr(pts)
                ))
            })?;
            Ok((pts, parse_time_base(time_base)?))
        })();
        let (pts, (num, den)) = self.cell.py(py, parsed)?;
        self.cell.run_held(py, |fr| fr.process(pts, num, den))
    }

    /// End of stream: `(start, count)` for the last frame, then resets.
    fn flush(&self, py: Python<'_>) -> PyResult<(i64, i64)> {
        self.cell.run_held(py, |fr| Ok(fr.flush()))
    }

    /// Drops the stream state.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.cell.run_held(py, |fr| {
            fr.reset();
            Ok(())
        })
    }

    /// The output frame rate, a `Fraction`.
    #[getter]
    fn fps<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        fraction(py, self.fps.0, self.fps.1)
    }

    /// The output time base, `1 / fps`.
    #[getter]
    fn time_base<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        fraction(py, self.fps.1, self.fps.0)
    }

    /// The stage name errors carry.
    #[getter]
    fn stage(&self) -> &str {
        self.cell.name()
    }

    fn __repr__(&self) -> String {
        let fps = if self.fps.1 == 1 {
            self.fps.0.to_string()
        } else {
            format!("{}/{}", self.fps.0, self.fps.1)
        };
        format!("<FrameRateKernel fps={fps} stage={:?}>", self.cell.name())
    }
}
