//! The engine's one error type: what went wrong (`ErrorKind`, which maps to a class of
//! `stream.errors`), the stage it belongs to, and the message.

use std::fmt;

/// Which class of `stream.errors` an error maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad settings (`ConfigError`).
    Config,
    /// Bad input data (`FormatError`).
    Format,
    /// The engine failed internally, e.g. a caught panic (`EngineError`).
    Engine,
    /// The kernel is running in another call (`RuntimeError`).
    Busy,
    /// Something the kernel needs at run time is missing, e.g. a model file
    /// (`BackendUnavailable`).
    Unavailable,
}

/// An error of a kernel. `stage` is filled in by whoever knows the stage's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineError {
    pub kind: ErrorKind,
    pub stage: String,
    pub message: String,
}

impl EngineError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            stage: String::new(),
            message: message.into(),
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub fn format(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Format, message)
    }

    pub fn engine(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Engine, message)
    }

    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Busy, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// Names the stage the error belongs to (kept if already set by an inner stage).
    pub fn at(mut self, stage: &str) -> Self {
        if self.stage.is_empty() {
            self.stage = stage.to_owned();
        }
        self
    }
}

impl fmt::Display for EngineError {
    /// `"{stage}: {message}"`, the message the Python exception carries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.stage.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.stage, self.message)
        }
    }
}

impl std::error::Error for EngineError {}

pub type Result<T> = std::result::Result<T, EngineError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_stage_named_is_kept() {
        let e = EngineError::format("bad").at("inner").at("outer");
        assert_eq!(
            (e.kind, e.to_string()),
            (ErrorKind::Format, "inner: bad".into())
        );
        assert_eq!(EngineError::busy("later").to_string(), "later");
    }
}
