//! Numpy arrays in and out: inputs are read in place (copied only when not C-contiguous),
//! outputs hand their `Vec` to numpy without a copy.

use numpy::ndarray::Array2;
use numpy::{
    Element, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::dsp::{check_block, Block, BlockRef, EngineError};

/// A 2-D numpy array of `T`, readable as a row-major slice.
pub struct Rows<'py, T: Element> {
    array: PyReadonlyArray2<'py, T>,
    pub rows: usize,
    pub cols: usize,
}

impl<T: Element> Rows<'_, T> {
    pub fn data(&self) -> &[T] {
        // `Rows::read` made the array C-contiguous and aligned, so this cannot fail.
        self.array.as_slice().expect("C-contiguous array")
    }
}

impl<'py> Rows<'py, f32> {
    /// The planar block `(channels, samples)` this array holds.
    pub fn block(&self) -> BlockRef<'_> {
        BlockRef::new(self.rows, self.cols, self.data())
    }
}

/// `"{dtype} with {ndim} dimension(s)"`; things without a dtype show their type name and
/// things without `ndim` count as 0 dimensions (as the Python twins print them).
fn describe(obj: &Bound<'_, PyAny>) -> String {
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        return format!("{} with {} dimension(s)", a.dtype(), a.ndim());
    }
    let dtype = match obj.getattr("dtype") {
        Ok(d) => d.str().map(|s| s.to_string()).ok(),
        Err(_) => obj.get_type().name().map(|n| n.to_string()).ok(),
    };
    let ndim = obj
        .getattr("ndim")
        .and_then(|n| n.extract::<i64>())
        .unwrap_or(0);
    format!(
        "{} with {ndim} dimension(s)",
        dtype.as_deref().unwrap_or("object")
    )
}

/// Reads `obj` as a 2-D array of `T`; anything else is a `FormatError` saying `expected`
/// (for example `"a float32 array of shape (channels, samples)"`).
pub fn read<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    expected: &str,
) -> Result<Rows<'py, T>, EngineError> {
    let mismatch = || EngineError::format(format!("expected {expected}, got {}", describe(obj)));
    let array = obj.cast::<PyArray2<T>>().map_err(|_| mismatch())?;
    let (rows, cols) = (array.shape()[0], array.shape()[1]);
    let borrow = |a: &Bound<'py, PyArray2<T>>| {
        a.try_readonly()
            .map_err(|e| EngineError::format(format!("cannot read the input array: {e}")))
    };
    if array.is_c_contiguous() {
        let readonly = borrow(array)?;
        if readonly.as_slice().is_ok() {
            return Ok(Rows {
                array: readonly,
                rows,
                cols,
            });
        }
    }
    // Strided, unaligned or Fortran-ordered: read a fresh C-ordered copy (numpy allocates it
    // aligned).
    let copy = array
        .call_method1("copy", ("C",))
        .map_err(|e| EngineError::format(e.to_string()))?
        .cast_into::<PyArray2<T>>()
        .map_err(|_| mismatch())?;
    Ok(Rows {
        array: borrow(&copy)?,
        rows,
        cols,
    })
}

pub const PLANAR_F32: &str = "a float32 array of shape (channels, samples)";

/// Reads an audio block: `float32`, `(channels, samples)`.
pub fn read_block<'py>(obj: &Bound<'py, PyAny>) -> Result<Rows<'py, f32>, EngineError> {
    read::<f32>(obj, PLANAR_F32)
}

/// A kernel's `process(samples, sample_rate)` arguments, read as the contract orders its checks
/// (`docs/kernels.md`): check 1 (dtype and rank), then the block's check 2 before the rate's int
/// type. The rate's range (check 3) and check 4 are `dsp::check_block`'s, left to the caller.
pub fn read_audio<'py>(
    samples: &Bound<'py, PyAny>,
    sample_rate: &Bound<'py, PyAny>,
) -> Result<(Rows<'py, f32>, i64), EngineError> {
    let input = read_block(samples)?;
    let rate = super::args::sample_rate(input.block(), sample_rate)?;
    Ok((input, rate))
}

/// A kernel's `process(samples, sample_rate)` arguments with every check of the contract done
/// (checks 1 to 4), for kernels that are not fused (`Kernel` and `Chain` leave checks 3 and 4 to
/// the stage that reads the input).
pub fn read_checked_audio<'py>(
    samples: &Bound<'py, PyAny>,
    sample_rate: &Bound<'py, PyAny>,
) -> Result<(Rows<'py, f32>, u32), EngineError> {
    let (input, rate) = read_audio(samples, sample_rate)?;
    check_block(input.block(), rate)?;
    Ok((input, rate as u32)) // checked above
}

/// A `(rows, cols)` numpy array owning `data` (no copy).
pub fn to_array<'py, T: Element>(
    py: Python<'py>,
    rows: usize,
    cols: usize,
    data: Vec<T>,
) -> Bound<'py, PyArray2<T>> {
    let array = Array2::from_shape_vec((rows, cols), data).expect("data matches its shape");
    PyArray2::from_owned_array(py, array)
}

/// Output blocks as a list of `(channels, samples)` float32 arrays.
pub fn to_list<'py>(py: Python<'py>, blocks: Vec<Block>) -> Vec<Bound<'py, PyAny>> {
    blocks
        .into_iter()
        .map(|b| to_array(py, b.channels, b.frames, b.data).into_any())
        .collect()
}
