//! Constructor arguments: a value of the wrong type is a `ConfigError`, like a bad value.
//! Per-call arguments (a block's sample rate, the mixer's counts) are read by `index`: one that
//! is not an int is a `FormatError`, like an int out of range, never a `TypeError`.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt};

use crate::dsp::{check_shape, BlockRef, EngineError};

fn wrong(name: &str, what: &str, obj: &Bound<'_, PyAny>) -> EngineError {
    let shown = obj
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    EngineError::config(format!("{name} must be {what}, got {shown}"))
}

/// An int (anything with `__index__`, not a float and not a bool: `True` is not a count).
pub fn int(name: &str, obj: &Bound<'_, PyAny>) -> Result<i64, EngineError> {
    if is_bool(obj) {
        return Err(wrong(name, "an int", obj));
    }
    obj.extract::<i64>().map_err(|_| wrong(name, "an int", obj))
}

/// A real number (int or float, not a bool).
pub fn float(name: &str, obj: &Bound<'_, PyAny>) -> Result<f64, EngineError> {
    if is_bool(obj) {
        return Err(wrong(name, "a number", obj));
    }
    obj.extract::<f64>()
        .map_err(|_| wrong(name, "a number", obj))
}

fn is_bool(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyBool>() || is_numpy_bool(obj)
}

/// `None` or an int.
pub fn opt_int(name: &str, obj: Option<&Bound<'_, PyAny>>) -> Result<Option<i64>, EngineError> {
    obj.filter(|o| !o.is_none())
        .map(|o| int(name, o))
        .transpose()
}

/// `None` or a real number.
pub fn opt_float(name: &str, obj: Option<&Bound<'_, PyAny>>) -> Result<Option<f64>, EngineError> {
    obj.filter(|o| !o.is_none())
        .map(|o| float(name, o))
        .transpose()
}

/// `None` or anything with a truth value.
pub fn opt_bool(name: &str, obj: Option<&Bound<'_, PyAny>>) -> Result<Option<bool>, EngineError> {
    obj.filter(|o| !o.is_none())
        .map(|o| o.is_truthy().map_err(|_| wrong(name, "a bool", o)))
        .transpose()
}

/// An int argument as `stream.frames.as_int` reads it: anything with `__index__` but a bool.
/// `Err` holds how to show what was given, as the Python twins show it: the number, for an int
/// too big for an `i64`; else its `repr` (a float, a bool, a string...).
pub fn index(obj: &Bound<'_, PyAny>) -> Result<i64, String> {
    let shown = || {
        obj.repr()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| "?".to_owned())
    };
    if obj.is_instance_of::<PyBool>() || is_numpy_bool(obj) {
        return Err(shown());
    }
    if let Ok(v) = obj.extract::<i64>() {
        return Ok(v);
    }
    // Too big for an i64 (or no `__index__`): show the int it stands for, if it is one.
    let py = obj.py();
    let as_int = py
        .import("operator")
        .and_then(|m| m.getattr("index"))
        .and_then(|f| f.call1((obj,)));
    match as_int {
        Ok(v) => Err(v.str().map(|s| s.to_string()).unwrap_or_else(|_| shown())),
        Err(_) => Err(shown()),
    }
}

/// numpy's bool scalar, which some numpy versions let pass as an int (`__index__`).
fn is_numpy_bool(obj: &Bound<'_, PyAny>) -> bool {
    if obj.is_instance_of::<PyInt>() {
        return false;
    }
    let ty = obj.get_type();
    let module = ty.module().map(|m| m.to_string()).unwrap_or_default();
    let name = ty.name().map(|n| n.to_string()).unwrap_or_default();
    module == "numpy" && (name == "bool" || name == "bool_")
}

/// A block's `sample_rate` argument, read after the block's check 2 so the checks keep the
/// contract's order (docs/kernels.md); its range is check 3, `check_rate`'s.
pub fn sample_rate(block: BlockRef<'_>, obj: &Bound<'_, PyAny>) -> Result<i64, EngineError> {
    check_shape(block)?;
    rate(obj)
}

/// A sample rate argument that is not an int is an invalid sample rate (`FormatError`).
pub fn rate(obj: &Bound<'_, PyAny>) -> Result<i64, EngineError> {
    index(obj).map_err(|shown| EngineError::format(format!("invalid sample rate {shown}")))
}
