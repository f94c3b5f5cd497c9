//! `G711Kernel(law="mulaw", *, stage="g711")`: not fusable (codes are not audio), stateless.

use pyo3::prelude::*;

use super::array::{read, read_checked_audio, to_array};
use super::error::IntoPyResult;
use crate::dsp::g711::{Law, G711};
use crate::dsp::{catch_panic, EngineError};

/// What `decode` takes.
const CODES: &str = "a uint8 array of shape (channels, samples)";

/// G.711 `law` (mulaw or alaw): `encode` float32 blocks to uint8 codes, `decode` them back.
#[pyclass(frozen, module = "stream._engine")]
pub struct G711Kernel {
    name: String,
    inner: G711,
}

#[pymethods]
impl G711Kernel {
    #[new]
    // The law arrives as an object so a wrong type is a ConfigError showing its repr, as the
    // twin's check shows it; the text signature shows the real default.
    #[pyo3(
        signature = (law = None, *, stage = String::from("g711")),
        text_signature = "(law='mulaw', *, stage='g711')"
    )]
    fn new(py: Python<'_>, law: Option<&Bound<'_, PyAny>>, stage: String) -> PyResult<Self> {
        let inner = match law {
            None => G711::new("mulaw"),
            Some(obj) => match obj.extract::<String>().ok().and_then(|s| Law::parse(&s)) {
                Some(law) => G711::new(law.name()),
                None => Err(EngineError::config(format!(
                    "law must be one of {}, got {}",
                    Law::NAMES,
                    obj.repr()?
                ))),
            },
        };
        let inner = inner.map_err(|e| e.at(&stage)).py_err(py)?;
        Ok(Self { name: stage, inner })
    }

    /// uint8 codes, `(channels, samples)`, of a float32 `(channels, samples)` block.
    fn encode<'py>(
        &self,
        py: Python<'py>,
        samples: &Bound<'py, PyAny>,
        sample_rate: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let at = |e: EngineError| e.at(&self.name);
        let (input, _) = read_checked_audio(samples, sample_rate)
            .map_err(at)
            .py_err(py)?;
        let block = input.block();
        let kernel = &self.inner;
        let codes = py.detach(|| catch_panic(|| Ok(kernel.encode(block))));
        let codes = codes.map_err(at).py_err(py)?;
        Ok(to_array(py, block.channels, block.frames, codes).into_any())
    }

    /// float32 samples, `(channels, samples)`, of uint8 codes `(channels, samples)`.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        codes: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let at = |e: EngineError| e.at(&self.name);
        let rows = read::<u8>(codes, CODES).map_err(at).py_err(py)?;
        let (channels, frames) = (rows.rows, rows.cols);
        let data = rows.data();
        let kernel = &self.inner;
        let out = py.detach(|| catch_panic(|| kernel.decode(data, channels, frames)));
        let out = out.map_err(at).py_err(py)?;
        Ok(to_array(py, channels, frames, out).into_any())
    }

    /// Nothing to drop: the codec keeps no state.
    fn reset(&self) {}

    /// Nothing to emit: the codec keeps no state.
    fn flush(&self) -> Vec<Py<PyAny>> {
        Vec::new()
    }

    /// The companding law, `"mulaw"` or `"alaw"`.
    #[getter]
    fn law(&self) -> &'static str {
        self.inner.law().name()
    }

    /// The stage name errors carry.
    #[getter]
    fn stage(&self) -> &str {
        &self.name
    }

    fn __repr__(&self) -> String {
        format!(
            "<G711Kernel law={:?} stage={:?}>",
            self.inner.law().name(),
            self.name
        )
    }
}
