//! `FormatConvertKernel(format, *, stage="format_convert")`: not fusable, stateless.

use pyo3::prelude::*;

use super::array::{read, to_array};
use super::error::IntoPyResult;
use crate::dsp::format::{FormatConvert, OwnedSamples, SampleFormat, Samples};
use crate::dsp::{catch_panic, EngineError};

/// Converts blocks between PyAV sample formats (`fltp`, `flt`, `s16p`, `s16`) to `format`.
#[pyclass(frozen, module = "stream._engine")]
pub struct FormatConvertKernel {
    name: String,
    inner: FormatConvert,
}

#[pymethods]
impl FormatConvertKernel {
    #[new]
    #[pyo3(
        signature = (format, *, stage = String::from("format_convert")),
        text_signature = "(format, *, stage='format_convert')"
    )]
    fn new(py: Python<'_>, format: &Bound<'_, PyAny>, stage: String) -> PyResult<Self> {
        let inner = match format.extract::<String>() {
            Ok(name) => FormatConvert::new(&name),
            Err(_) => Err(EngineError::config(format!(
                "format must be one of {}, got {}",
                SampleFormat::NAMES,
                format.repr()?
            ))),
        };
        let inner = inner.map_err(|e| e.at(&stage)).py_err(py)?;
        Ok(Self { name: stage, inner })
    }

    /// Converts `samples`, laid out and typed as `src_format` says, to this kernel's format.
    fn process<'py>(
        &self,
        py: Python<'py>,
        samples: &Bound<'py, PyAny>,
        src_format: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let at = |e: EngineError| e.at(&self.name);
        // Not a str, or not a format's name: shown as Python's repr shows it (as the twin does).
        let from = src_format
            .extract::<String>()
            .ok()
            .and_then(|name| SampleFormat::parse(&name))
            .ok_or_else(|| {
                EngineError::config(format!(
                    "format must be one of {}, got {}",
                    SampleFormat::NAMES,
                    src_format
                        .repr()
                        .map(|r| r.to_string())
                        .unwrap_or_else(|_| "?".to_owned())
                ))
            })
            .map_err(at)
            .py_err(py)?;
        let expected = format!("a 2-D {} array for {}", from.dtype(), from.name());
        let kernel = &self.inner;
        let (converted, channels, frames) = if from.is_float() {
            let rows = read::<f32>(samples, &expected).map_err(at).py_err(py)?;
            let (channels, frames) = from.dims(rows.rows, rows.cols);
            let src = Samples::F32(rows.data());
            let out = py.detach(|| catch_panic(|| kernel.convert(src, from, channels, frames)));
            (out, channels, frames)
        } else {
            let rows = read::<i16>(samples, &expected).map_err(at).py_err(py)?;
            let (channels, frames) = from.dims(rows.rows, rows.cols);
            let src = Samples::I16(rows.data());
            let out = py.detach(|| catch_panic(|| kernel.convert(src, from, channels, frames)));
            (out, channels, frames)
        };
        let to = self.inner.format();
        let (rows, cols) = if to.is_planar() {
            (channels, frames)
        } else {
            (frames, channels)
        };
        Ok(match converted.map_err(at).py_err(py)? {
            OwnedSamples::F32(v) => to_array(py, rows, cols, v).into_any(),
            OwnedSamples::I16(v) => to_array(py, rows, cols, v).into_any(),
        })
    }

    /// The output sample format.
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
            "<FormatConvertKernel format={:?} stage={:?}>",
            self.format(),
            self.name
        )
    }
}
