//! The one error path from Rust to Python: every `CoreError` becomes an
//! exception under `DataError` (itself a `ValueError`).

use datacore::CoreError;
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

create_exception!(_native, DataError, PyValueError, "Base class of every error raised by the native data core.");
create_exception!(_native, InvalidInputError, DataError, "An input item or argument is not acceptable (type, encoding or range).");
create_exception!(_native, TokenizerError, DataError, "A tokenizer.json is missing, unreadable or invalid.");
create_exception!(_native, CorruptFileError, DataError, "A file written by the data core failed its format or checksum check.");
create_exception!(_native, DataIOError, DataError, "Reading or writing a file failed.");

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("DataError", py.get_type::<DataError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("TokenizerError", py.get_type::<TokenizerError>())?;
    m.add("CorruptFileError", py.get_type::<CorruptFileError>())?;
    m.add("DataIOError", py.get_type::<DataIOError>())?;
    Ok(())
}

/// Converts a core error into the matching Python exception.
pub fn to_py(err: CoreError) -> PyErr {
    let msg = err.to_string();
    match err {
        CoreError::InvalidArgument(_) => InvalidInputError::new_err(msg),
        CoreError::Tokenizer(_) => TokenizerError::new_err(msg),
        CoreError::Corrupt { .. } => CorruptFileError::new_err(msg),
        CoreError::Io { .. } => DataIOError::new_err(msg),
    }
}

pub fn invalid(msg: impl Into<String>) -> PyErr {
    InvalidInputError::new_err(msg.into())
}

/// `?`-friendly conversion for core results.
pub trait IntoPyResult<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for datacore::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
