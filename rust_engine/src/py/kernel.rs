//! `Kernel`, the base class of the fusable kernels: it owns one named stage and runs it.
//!
//! The stage sits behind a `Mutex` (the class is `frozen`): a call that runs the stream
//! (`process`, `flush`, `reset`, or a `Chain` holding the kernel) takes it without waiting and
//! fails clearly if another call has it; settings and properties wait for it with the GIL
//! released, so turning a gain knob from another thread while a chain runs just works.

use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use pyo3::prelude::*;

use super::args;
use super::array::{read_block, to_list};
use super::error::IntoPyResult;
use crate::dsp::{catch_panic, check_block, EngineError, NamedStage, StageKind};

/// Base class of the kernels a `Chain` can fuse.
#[pyclass(subclass, frozen, module = "stream._engine")]
pub struct Kernel {
    name: String,
    pass_through: bool,
    inner: Mutex<NamedStage>,
}

impl Kernel {
    pub(crate) fn new(stage: String, kind: StageKind) -> Self {
        Self {
            name: stage.clone(),
            pass_through: kind.is_pass_through(),
            inner: Mutex::new(NamedStage::new(stage, kind)),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn is_pass_through(&self) -> bool {
        self.pass_through
    }

    /// Takes the stage for a stream call, without waiting.
    pub(crate) fn try_lock(&self) -> Result<MutexGuard<'_, NamedStage>, EngineError> {
        match self.inner.try_lock() {
            Ok(guard) => Ok(guard),
            // Panics are caught inside the lock, so poisoning means a panic in our glue; the
            // stage state itself is still consistent (every stage call is guarded).
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(EngineError::busy(
                "kernel is busy in another call (a kernel runs one stream, in one chain, at a time)",
            )
            .at(&self.name)),
        }
    }

    /// Runs `f` on the stage, waiting (GIL released) if another call holds it.
    pub(crate) fn with_stage<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut NamedStage) -> T + Send,
    ) -> T {
        match self.inner.try_lock() {
            Ok(mut guard) => f(&mut guard),
            Err(TryLockError::Poisoned(p)) => f(&mut p.into_inner()),
            Err(TryLockError::WouldBlock) => {
                py.detach(|| f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner)))
            }
        }
    }

    /// Runs a stream call on the stage with the GIL released; a panic is an `EngineError`.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut NamedStage) -> Result<T, EngineError> + Send,
    ) -> PyResult<T> {
        let mut stage = self.try_lock().py_err(py)?;
        let stage = &mut *stage;
        let result = py.detach(|| catch_panic(|| f(stage)));
        result.map_err(|e| e.at(&self.name)).py_err(py)
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
        let input = read_block(samples)
            .map_err(|e| e.at(&self.name))
            .py_err(py)?;
        let block = input.block();
        let sample_rate = args::sample_rate(block, sample_rate)
            .map_err(|e| e.at(&self.name))
            .py_err(py)?;
        if self.pass_through {
            // Checked like every kernel, then the same object back.
            check_block(block, sample_rate)
                .map_err(|e| e.at(&self.name))
                .py_err(py)?;
            return Ok(vec![samples.clone()]);
        }
        let blocks = self.run(py, |stage| {
            let mut out = Vec::new();
            stage.process(block, sample_rate, &mut out)?;
            Ok(out)
        })?;
        Ok(to_list(py, blocks))
    }

    /// Ends the stream: returns any tail, then resets the stream state.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let blocks = self.run(py, |stage| {
            let mut out = Vec::new();
            stage.flush(&mut out)?;
            Ok(out)
        })?;
        Ok(to_list(py, blocks))
    }

    /// Drops the stream state without emitting.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |stage| stage.reset())
    }

    /// The sample rate of the blocks emitted for input at `input_rate` Hz.
    fn output_rate(&self, py: Python<'_>, input_rate: &Bound<'_, PyAny>) -> PyResult<u32> {
        let input_rate = args::rate(input_rate)
            .map_err(|e| e.at(&self.name))
            .py_err(py)?;
        self.with_stage(py, |stage| stage.output_rate(input_rate))
            .py_err(py)
    }

    /// The stage name errors carry.
    #[getter]
    fn stage(&self) -> &str {
        &self.name
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let class = slf.get_type().name()?;
        Ok(format!("<{class} stage={:?}>", slf.get().name))
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
        PyClassInitializer::from(Kernel::new(stage, StageKind::PassThrough)).add_subclass(Self)
    }
}

/// Runs `f` on the stage of a subclass instance (waiting for it if busy).
pub(crate) fn with_kind<T: Send>(
    kernel: &Kernel,
    py: Python<'_>,
    f: impl FnOnce(&mut StageKind) -> T + Send,
) -> T {
    kernel.with_stage(py, |stage| f(&mut stage.kind))
}
