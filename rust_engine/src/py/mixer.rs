//! `MixKernel(gains_db, *, stage="mixer")`: the sum of the `Mixer` node's aligned inputs.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use super::args;
use super::array::{read_block, to_array, Rows};
use super::cell::{KernelCell, Reset};
use super::error::IntoPyResult;
use crate::dsp::mixer::Mix;
use crate::dsp::{BlockRef, EngineError};

impl Reset for Mix {
    fn reset(&mut self) {} // no stream state: gains are settings
}

/// Sums one block per input, each times its gain, into a `(channels, samples)` float32 block.
#[pyclass(frozen, module = "stream._engine")]
pub struct MixKernel {
    cell: KernelCell<Mix>,
}

fn gains(obj: &Bound<'_, PyAny>) -> Result<Vec<f64>, EngineError> {
    let not_a_sequence = || {
        let shown = obj
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| "?".to_owned());
        EngineError::config(format!(
            "gains_db must be a sequence of numbers, got {shown}"
        ))
    };
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(not_a_sequence()); // iterable, but of characters, not gains
    }
    let items = obj.try_iter().map_err(|_| not_a_sequence())?;
    items
        .enumerate()
        .map(|(i, item)| {
            let item = item.map_err(|_| not_a_sequence())?;
            args::float(&format!("gains_db[{i}]"), &item)
        })
        .collect()
}

#[pymethods]
impl MixKernel {
    #[new]
    #[pyo3(
        signature = (gains_db, *, stage = String::from("mixer")),
        text_signature = "(gains_db, *, stage='mixer')"
    )]
    fn new(py: Python<'_>, gains_db: &Bound<'_, PyAny>, stage: String) -> PyResult<Self> {
        let mix = gains(gains_db)
            .and_then(|g| Mix::new(&g))
            .map_err(|e| e.at(&stage))
            .py_err(py)?;
        Ok(Self {
            cell: KernelCell::new(stage, mix),
        })
    }

    /// Mixes `blocks` (one per input: a `(channels_k, samples)` float32 array, or None for an
    /// input with nothing to add) into a new `(channels, samples)` float32 array.
    fn process<'py>(
        &self,
        py: Python<'py>,
        blocks: &Bound<'py, PyAny>,
        channels: &Bound<'py, PyAny>,
        samples: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let name = self.cell.name();
        let items: Vec<Bound<'py, PyAny>> = blocks.try_iter()?.collect::<PyResult<_>>()?;
        let count = items.len();
        let (channels, samples) = (args::index(channels), args::index(samples));
        let (channels, samples) = self
            .cell
            .with(py, |m| m.check_call(count, channels, samples))
            .map_err(|e| e.at(name))
            .py_err(py)?;
        let rows: Vec<Option<Rows<'py, f32>>> = items
            .iter()
            .enumerate()
            .map(|(k, item)| {
                if item.is_none() {
                    return Ok(None);
                }
                read_block(item)
                    .map(Some)
                    .map_err(|e| EngineError::format(format!("input {k}: {}", e.message)).at(name))
            })
            .collect::<Result<_, _>>()
            .py_err(py)?;
        let refs: Vec<Option<BlockRef<'_>>> =
            rows.iter().map(|r| r.as_ref().map(|r| r.block())).collect();
        let data = self.cell.run(py, |m| {
            m.check_blocks(&refs, channels, samples)?;
            Ok(m.mix(&refs, channels, samples))
        })?;
        Ok(to_array(py, channels, samples, data).into_any())
    }

    /// Sets input `index`'s gain in dB; it applies from the next call (no ramp).
    fn set_gain_db(&self, py: Python<'_>, index: i64, gain_db: &Bound<'_, PyAny>) -> PyResult<()> {
        let name = self.cell.name();
        let gain_db = args::float("gain_db", gain_db)
            .map_err(|e| e.at(name))
            .py_err(py)?;
        self.cell
            .with(py, |m| m.set_gain_db(index, gain_db))
            .map_err(|e| e.at(name))
            .py_err(py)
    }

    /// The gains in dB, one per input.
    #[getter]
    fn gains_db(&self, py: Python<'_>) -> Vec<f64> {
        self.cell.with(py, |m| m.gains_db().to_vec())
    }

    /// The number of inputs.
    #[getter]
    fn inputs(&self, py: Python<'_>) -> usize {
        self.cell.with(py, |m| m.inputs())
    }

    /// Does nothing (the mix keeps no stream state); here so every kernel can be reset.
    fn reset(&self) {}

    /// The stage name errors carry.
    #[getter]
    fn stage(&self) -> &str {
        self.cell.name()
    }

    fn __repr__(&self) -> String {
        format!("<MixKernel stage={:?}>", self.cell.name())
    }
}
