//! `StageCell`: the state of a kernel that is not a fusable `Kernel` (level meter, VAD, mixer),
//! behind a `Mutex` as `Kernel` keeps its stage: a stream call takes it without waiting (a second
//! concurrent call fails with the "busy" `RuntimeError`) and runs with the GIL released inside
//! the panic guard; a panic resets the state, so nothing half-updated is seen afterwards.

use std::sync::{Mutex, PoisonError, TryLockError};

use pyo3::prelude::*;

use super::error::IntoPyResult;
use crate::dsp::{catch_panic, EngineError, ErrorKind, Result};

/// Stream state that a panic can leave half-updated, and so must be able to drop.
pub trait Resettable: Send {
    fn reset(&mut self);
}

pub struct StageCell<T> {
    name: String,
    inner: Mutex<T>,
}

impl<T: Resettable> StageCell<T> {
    pub fn new(name: String, value: T) -> Self {
        Self {
            name,
            inner: Mutex::new(value),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a stream call with the GIL released; errors (panics included) name the stage.
    pub fn run<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut T) -> Result<R> + Send,
    ) -> PyResult<R> {
        let mut guard = match self.inner.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(EngineError::busy(
                    "kernel is busy in another call (a kernel runs one stream at a time)",
                )
                .at(&self.name))
                .py_err(py)
            }
        };
        let state = &mut *guard;
        let result = py.detach(|| {
            let result = catch_panic(|| f(state));
            if matches!(&result, Err(e) if e.kind == ErrorKind::Engine) {
                let _ = catch_panic(|| {
                    state.reset();
                    Ok(())
                });
            }
            result
        });
        result.map_err(|e| e.at(&self.name)).py_err(py)
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
