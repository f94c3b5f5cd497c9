//! The calls the bindings of near/far stages share (`EchoCancelKernel`, `Aec3Kernel`): read both
//! blocks (errors say which side), the rate as the near end's, run on the cell, list the output.

use pyo3::prelude::*;

use super::args;
use super::array::{read_block, to_list};
use super::cell::{KernelCell, Reset};
use super::error::IntoPyResult;
use crate::dsp::reference::PairStage;
use crate::dsp::EngineError;

/// `process(near, far, sample_rate)` of a near/far stage.
pub fn process<'py, K: PairStage + Reset>(
    cell: &KernelCell<K>,
    py: Python<'py>,
    near: &Bound<'py, PyAny>,
    far: &Bound<'py, PyAny>,
    sample_rate: &Bound<'py, PyAny>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let name = cell.name();
    let side =
        |s: &str, e: EngineError| EngineError::format(format!("{s}: {}", e.message)).at(name);
    let near = read_block(near).map_err(|e| side("near", e)).py_err(py)?;
    let far = read_block(far).map_err(|e| side("far", e)).py_err(py)?;
    let (nb, fb) = (near.block(), far.block());
    // The near-end's checks come first, so a bad rate reads as the near-end's.
    let sample_rate = args::sample_rate(nb, sample_rate)
        .map_err(|e| side("near", e))
        .py_err(py)?;
    let out = cell.run(py, |k| k.process_pair(nb, fb, sample_rate))?;
    Ok(to_list(py, out.into_iter().collect()))
}

/// `flush()` of a near/far stage: what it holds, then a reset.
pub fn flush<'py, K: PairStage + Reset>(
    cell: &KernelCell<K>,
    py: Python<'py>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let out = cell.run(py, |k| k.flush_pair())?;
    Ok(to_list(py, out.into_iter().collect()))
}
