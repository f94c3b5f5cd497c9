//! `KernelCell`: the one way a kernel with state is used from Python.
//!
//! The state sits behind a `Mutex` (the binding classes are `frozen`). A stream call
//! (`process`, `flush`, `reset`, or a `Chain` holding the kernel) takes it without waiting and
//! fails with the "busy" `RuntimeError` if another call has it; it runs with the GIL released
//! inside the panic guard, and a panic drops the stream state, so nothing half-updated is seen
//! afterwards. Errors, panics included, name the stage and become `stream.errors` exceptions.
//! Settings and properties wait for the state with the GIL released, so turning a knob from
//! another thread while a stream call runs just works.
//!
//! A new kernel's binding is a thin wrapper: a `#[pyclass(frozen)]` holding a `KernelCell` of
//! its `dsp` state, whose methods read their arguments and call [`KernelCell::run`] or
//! [`KernelCell::with`].

use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use pyo3::prelude::*;

use super::error::IntoPyResult;
use crate::dsp::{guarded, EngineError, Result};

/// Stream state that a panic can leave half-updated, and so must be able to drop.
pub trait Reset: Send {
    fn reset(&mut self);
}

/// What a busy kernel says.
const BUSY: &str = "kernel is busy in another call (a kernel runs one stream at a time)";
/// What a busy fusable kernel says: it can also be busy in a chain.
const BUSY_FUSABLE: &str =
    "kernel is busy in another call (a kernel runs one stream, in one chain, at a time)";

/// A kernel's state, its stage name, and the rules for using it from Python (see the module).
pub struct KernelCell<T> {
    name: String,
    busy: &'static str,
    inner: Mutex<T>,
}

impl<T: Reset> KernelCell<T> {
    pub fn new(name: String, state: T) -> Self {
        Self {
            name,
            busy: BUSY,
            inner: Mutex::new(state),
        }
    }

    /// A cell for a kernel a `Chain` can hold (its busy error says so).
    pub fn fusable(name: String, state: T) -> Self {
        Self {
            busy: BUSY_FUSABLE,
            ..Self::new(name, state)
        }
    }

    /// The stage name errors carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Names `err` after this kernel's stage (unless an inner stage already named it).
    pub fn at(&self, err: EngineError) -> EngineError {
        err.at(&self.name)
    }

    /// `result` as a Python result, its error named after this kernel's stage.
    pub fn py<R>(&self, py: Python<'_>, result: Result<R>) -> PyResult<R> {
        result.map_err(|e| self.at(e)).py_err(py)
    }

    /// Takes the state for a stream call, without waiting: a busy error if another call has it.
    pub fn take(&self) -> Result<MutexGuard<'_, T>> {
        match self.inner.try_lock() {
            Ok(guard) => Ok(guard),
            // Panics are caught inside the lock, so poisoning means a panic in our glue; the
            // state itself is still consistent (every call on it is guarded).
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(EngineError::busy(self.busy).at(&self.name)),
        }
    }

    /// Takes the state, waiting while a settings call has it: for a thread that holds no GIL
    /// (the holder never waits for that thread, so this cannot deadlock).
    pub fn take_waiting(&self) -> MutexGuard<'_, T> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A stream call: takes the state without waiting and runs `f` on it with the GIL released,
    /// inside the panic guard.
    pub fn run<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut T) -> Result<R> + Send,
    ) -> PyResult<R> {
        let mut state = self.take().py_err(py)?;
        let state = &mut *state;
        let result = py.detach(|| guarded(state, <T as Reset>::reset, f));
        self.py(py, result)
    }

    /// A stream call too short to be worth releasing the GIL for (a few arithmetic operations):
    /// as [`KernelCell::run`], with the GIL held.
    pub fn run_held<R>(&self, py: Python<'_>, f: impl FnOnce(&mut T) -> Result<R>) -> PyResult<R> {
        let mut state = self.take().py_err(py)?;
        let result = guarded(&mut *state, <T as Reset>::reset, f);
        self.py(py, result)
    }

    /// Reads or sets something, waiting (GIL released) if a stream call holds the state.
    pub fn with<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut T) -> R + Send) -> R {
        match self.inner.try_lock() {
            Ok(mut guard) => f(&mut guard),
            Err(TryLockError::Poisoned(p)) => f(&mut p.into_inner()),
            Err(TryLockError::WouldBlock) => {
                py.detach(|| f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner)))
            }
        }
    }
}
