//! Constructor arguments: a value of the wrong type is a `ConfigError`, like a bad value.

use pyo3::prelude::*;

use crate::dsp::EngineError;

fn wrong(name: &str, what: &str, obj: &Bound<'_, PyAny>) -> EngineError {
    let shown = obj
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    EngineError::config(format!("{name} must be {what}, got {shown}"))
}

/// An int (anything with `__index__`, not a float).
pub fn int(name: &str, obj: &Bound<'_, PyAny>) -> Result<i64, EngineError> {
    obj.extract::<i64>().map_err(|_| wrong(name, "an int", obj))
}

/// A real number (int or float).
pub fn float(name: &str, obj: &Bound<'_, PyAny>) -> Result<f64, EngineError> {
    obj.extract::<f64>()
        .map_err(|_| wrong(name, "a number", obj))
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
