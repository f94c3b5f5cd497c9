//! The panic guard: a Rust panic inside a kernel becomes an `ErrorKind::Engine` error (never an
//! abort), and the state it may have left half-updated is dropped.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{EngineError, ErrorKind, Result};

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "unknown panic payload"
    }
}

/// Runs `f`, turning a panic into an `ErrorKind::Engine` error (stage not set).
///
/// `AssertUnwindSafe`: callers that keep state across calls run `f` through [`guarded`], which
/// drops that state after a panic, so no half-updated state is observed afterwards.
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(EngineError::engine(format!(
            "internal error (Rust panic: {})",
            panic_message(payload.as_ref())
        )))
    })
}

/// Runs `f` on `state` inside [`catch_panic`]; after a panic, `reset` drops the stream state (so
/// the stream restarts rather than continue from a half-updated state). Bad input (any other
/// error) leaves the state as it was.
pub fn guarded<S: ?Sized, T>(
    state: &mut S,
    reset: impl FnOnce(&mut S),
    f: impl FnOnce(&mut S) -> Result<T>,
) -> Result<T> {
    let result = catch_panic(|| f(state));
    if matches!(&result, Err(e) if e.kind == ErrorKind::Engine) {
        // If the reset itself panics, the state is beyond repair: report the original error.
        let _ = catch_panic(|| {
            reset(state);
            Ok(())
        });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_engine_errors() {
        let e = catch_panic::<()>(|| panic!("boom {}", 42)).unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::Engine, "internal error (Rust panic: boom 42)")
        );
        assert_eq!(catch_panic(|| Ok(3)).unwrap(), 3);
    }

    #[test]
    fn a_panic_resets_the_state_and_bad_input_does_not() {
        let reset = |s: &mut Vec<u8>| s.clear();
        let mut state = vec![1, 2];
        let e = guarded(&mut state, reset, |s| -> Result<()> {
            s.push(3);
            panic!("half-way")
        })
        .unwrap_err();
        assert_eq!((e.kind, state.len()), (ErrorKind::Engine, 0));
        let mut state = vec![1, 2];
        guarded(&mut state, reset, |_| -> Result<()> {
            Err(EngineError::format("bad"))
        })
        .unwrap_err();
        assert_eq!(state, [1, 2]);
    }
}
