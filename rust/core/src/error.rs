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
    /// A job message no worker can read; the text is its dead-letter reason,
    /// `what` one of the stable categories of `wire.rs`.
    #[error("{}: {what}: {detail}", crate::constants::INVALID_MESSAGE)]
    InvalidMessage { what: String, detail: String },
}
