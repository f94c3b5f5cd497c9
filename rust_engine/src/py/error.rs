//! The one place where kernel errors and panics become Python exceptions.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

use crate::dsp::{EngineError, ErrorKind};

/// `stream.errors`' classes, imported on first use (the module imports us, not the reverse).
struct ErrorClasses {
    config: Py<PyType>,
    format: Py<PyType>,
    engine: Py<PyType>,
    unavailable: Py<PyType>,
}

static CLASSES: PyOnceLock<ErrorClasses> = PyOnceLock::new();

fn classes(py: Python<'_>) -> PyResult<&ErrorClasses> {
    CLASSES.get_or_try_init(py, || {
        let m = py.import("stream.errors")?;
        let get = |name: &str| -> PyResult<Py<PyType>> {
            Ok(m.getattr(name)?.cast_into::<PyType>()?.unbind())
        };
        Ok(ErrorClasses {
            config: get("ConfigError")?,
            format: get("FormatError")?,
            engine: get("EngineError")?,
            unavailable: get("BackendUnavailable")?,
        })
    })
}

/// Converts a kernel error into the matching `stream.errors` exception, built as
/// `Class(message, stage=stage)`: the class owns the `"{stage}: "` prefix of the text and keeps
/// `message` and `stage` apart, as the Python twins build it. Falls back to `ValueError` (config,
/// format) or `RuntimeError` (engine, unavailable) when `stream.errors` cannot be imported, with
/// the text `"{stage}: {message}"` and attribute `stage` set by hand. A busy kernel
/// (used by two calls at once, a caller's bug rather than bad data or an engine failure) is a
/// `RuntimeError`.
pub fn to_pyerr(py: Python<'_>, err: EngineError) -> PyErr {
    let message = err.to_string(); // "{stage}: {message}", for the fallbacks
    let class = |c: &ErrorClasses| match err.kind {
        ErrorKind::Config => Some(c.config.clone_ref(py)),
        ErrorKind::Format => Some(c.format.clone_ref(py)),
        ErrorKind::Engine => Some(c.engine.clone_ref(py)),
        ErrorKind::Unavailable => Some(c.unavailable.clone_ref(py)),
        ErrorKind::Busy => None,
    };
    let exc = classes(py)
        .ok()
        .and_then(class)
        .and_then(|cls| {
            let kwargs = PyDict::new(py);
            if !err.stage.is_empty() {
                kwargs.set_item("stage", err.stage.as_str()).ok()?;
            }
            cls.bind(py)
                .call((err.message.as_str(),), Some(&kwargs))
                .ok()
        })
        .unwrap_or_else(|| {
            let fallback = match err.kind {
                ErrorKind::Config | ErrorKind::Format => PyValueError::new_err(message),
                ErrorKind::Engine | ErrorKind::Busy | ErrorKind::Unavailable => {
                    PyRuntimeError::new_err(message)
                }
            };
            let exc = fallback.into_value(py).into_bound(py).into_any();
            if !err.stage.is_empty() {
                // Setting an attribute on an exception instance cannot fail short of memory
                // exhaustion; the exception is still worth raising without it.
                let _ = exc.setattr("stage", err.stage.as_str());
            }
            exc
        });
    PyErr::from_value(exc)
}

/// `Result<T, EngineError>` -> `PyResult<T>`.
pub trait IntoPyResult<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, EngineError> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_pyerr(py, e))
    }
}
