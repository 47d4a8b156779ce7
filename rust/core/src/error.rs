//! The one error type of the core; the binding layer maps each variant to a
//! Python exception class under a single base class.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CoreError {
    /// A caller passed a value outside its documented range.
    #[error("{0}")]
    InvalidArgument(String),
    /// A tokenizer file is missing, unreadable or not a valid `tokenizer.json`.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A file written by this crate failed its format or checksum checks.
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, CoreError>;

impl CoreError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        CoreError::InvalidArgument(msg.into())
    }

    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        CoreError::Io { path: path.display().to_string(), source }
    }
}
