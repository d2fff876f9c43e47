//! The core crate's error type.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CoreError {
    /// A job path that could escape its dataset root.
    #[error("{0}")]
    UnsafePath(String),
    /// A malformed bus message or one of an unknown version.
    #[error("{0}")]
    Protocol(String),
}
