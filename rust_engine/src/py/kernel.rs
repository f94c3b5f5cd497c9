//! `Kernel`, the base class of the fusable kernels: a [`KernelCell`] holding one named stage.
//! Its subclasses only construct the stage and read or set its settings ([`Kernel::with`]).

use std::sync::MutexGuard;

use pyo3::prelude::*;

use super::array::{read_audio, to_list};
use super::cell::{KernelCell, Reset};
use super::error::IntoPyResult;
use crate::dsp::{
    check_block, EngineError, NamedStage, Output, PassThrough, Stage, StageKind, StageVariant,
};

impl Reset for NamedStage {
    fn reset(&mut self) {
        Stage::reset(&mut self.kind);
    }
}

/// Base class of the kernels a `Chain` can fuse.
#[pyclass(subclass, frozen, module = "stream._engine")]
pub struct Kernel {
    pass_through: bool,
    cell: KernelCell<NamedStage>,
}

impl Kernel {
    pub(crate) fn new(stage: String, kind: impl Into<StageKind>) -> Self {
        let kind = kind.into();
        Self {
            pass_through: kind.is_pass_through(),
            cell: KernelCell::fusable(stage.clone(), NamedStage::new(stage, kind)),
        }
    }

    pub(crate) fn name(&self) -> &str {
        self.cell.name()
    }

    pub(crate) fn is_pass_through(&self) -> bool {
        self.pass_through
    }

    /// Takes the stage for a stream call (a chain's), without waiting.
    pub(crate) fn take(&self) -> Result<MutexGuard<'_, NamedStage>, EngineError> {
        self.cell.take()
    }

    /// Takes the stage, waiting while a settings call has it (a thread without the GIL).
    pub(crate) fn take_waiting(&self) -> MutexGuard<'_, NamedStage> {
        self.cell.take_waiting()
    }

    /// Runs `f` on the stage, waiting (GIL released) if another call holds it.
    pub(crate) fn with_stage<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut NamedStage) -> T + Send,
    ) -> T {
        self.cell.with(py, f)
    }

    /// Runs `f` on the subclass's stage, a `S` (waiting for it if busy): how a subclass reads
    /// and sets its settings.
    pub(crate) fn with<S: StageVariant, T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut S) -> T + Send,
    ) -> T {
        self.cell.with(py, |stage| {
            let kind = stage.kind.get_mut::<S>();
            f(kind.expect("a kernel holds the stage its class was built with"))
        })
    }

    /// `result` as a Python result, its error named after the stage.
    pub(crate) fn py<T>(&self, py: Python<'_>, result: Result<T, EngineError>) -> PyResult<T> {
        self.cell.py(py, result)
    }
}

#[pymethods]
impl Kernel {
    /// Processes one `(channels, samples)` float32 block at `sample_rate` Hz.
    fn process<'py>(
        &self,
        py: Python<'py>,
        samples: &Bound<'py, PyAny>,
        sample_rate: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let (input, sample_rate) = self.py(py, read_audio(samples, sample_rate))?;
        let block = input.block();
        if self.pass_through {
            // Checked like every kernel, then the same object back.
            self.py(py, check_block(block, sample_rate))?;
            return Ok(vec![samples.clone()]);
        }
        let blocks = self.cell.run(py, |stage| {
            let mut out = Output::new();
            stage.process(block, sample_rate, &mut out)?;
            Ok(out.into_blocks())
        })?;
        Ok(to_list(py, blocks))
    }

    /// Ends the stream: returns any tail, then resets the stream state.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let blocks = self.cell.run(py, |stage| {
            let mut out = Output::new();
            stage.flush(&mut out)?;
            Ok(out.into_blocks())
        })?;
        Ok(to_list(py, blocks))
    }

    /// Drops the stream state without emitting.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.cell.run(py, |stage| stage.reset())
    }

    /// The sample rate of the blocks emitted for input at `input_rate` Hz.
    fn output_rate(&self, py: Python<'_>, input_rate: &Bound<'_, PyAny>) -> PyResult<u32> {
        let input_rate = self.py(py, super::args::rate(input_rate))?;
        let rate = self.cell.with(py, |stage| stage.output_rate(input_rate));
        rate.py_err(py)
    }

    /// The stage name errors carry.
    #[getter]
    fn stage(&self) -> &str {
        self.name()
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let class = slf.get_type().name()?;
        Ok(format!("<{class} stage={:?}>", slf.get().name()))
    }
}

/// `PassThroughKernel(*, stage="passthrough")`: returns its input array unchanged.
#[pyclass(extends = Kernel, frozen, module = "stream._engine")]
pub struct PassThroughKernel;

#[pymethods]
impl PassThroughKernel {
    #[new]
    #[pyo3(
        signature = (*, stage = String::from("passthrough")),
        text_signature = "(*, stage='passthrough')"
    )]
    fn new(stage: String) -> PyClassInitializer<Self> {
        PyClassInitializer::from(Kernel::new(stage, PassThrough)).add_subclass(Self)
    }
}
