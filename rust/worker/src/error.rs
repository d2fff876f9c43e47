//! The worker's error tree. Permanent errors (bad input: the job can never
//! succeed) dead-letter a job at once; transient ones retry it with backoff;
//! `BusUnavailable` is waited out with reconnects; `BusAccessDenied` stops
//! the worker.

use embedfleet_core::CoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum WorkerError {
    /// An input file is unreadable, corrupt, or lacks the expected column.
    /// The message is `"<relative path>: <problem>"`.
    #[error("{0}")]
    BadInput(String),
    /// A job path escapes its dataset root.
    #[error("{0}")]
    UnsafePath(String),
    /// A malformed bus message.
    #[error("{0}")]
    Protocol(String),
    /// The job asks for a model this worker does not hold.
    #[error("{0}")]
    ModelMismatch(String),
    /// A fault that may pass (I/O hiccup, model runtime error): retry later.
    #[error("{0}")]
    Transient(String),
    /// The memory ceiling cannot hold this part; another worker may.
    #[error("{0}")]
    PartTooLarge(String),
    /// Redis cannot be reached right now.
    #[error("{0}")]
    BusUnavailable(String),
    /// Redis refused this worker: wrong password (WRONGPASS), none given
    /// (NOAUTH), an ACL user without a command or key it needs (NOPERM).
    /// No fault of a job and no outage: the worker stops with
    /// `EXIT_ACCESS_DENIED`. The text names Redis with the password masked.
    #[error("{0}")]
    BusAccessDenied(String),
    /// Another worker took the job over.
    #[error("{0}")]
    LeaseLost(String),
    /// Bad flags or set-up (exit status 2).
    #[error("{0}")]
    Usage(String),
}

impl WorkerError {
    /// `"<path>: <problem>"` for a bad input file.
    pub fn bad_input(path: &str, problem: impl std::fmt::Display) -> Self {
        WorkerError::BadInput(format!("{path}: {problem}"))
    }

    /// Retrying cannot help: dead-letter the job at once.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            WorkerError::BadInput(_)
                | WorkerError::UnsafePath(_)
                | WorkerError::Protocol(_)
                | WorkerError::ModelMismatch(_)
        )
    }
}

impl From<CoreError> for WorkerError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::UnsafePath(m) => WorkerError::UnsafePath(m),
            CoreError::Protocol(m) => WorkerError::Protocol(m),
            e @ CoreError::InvalidMessage { .. } => WorkerError::Protocol(e.to_string()),
        }
    }
}

pub type Result<T, E = WorkerError> = std::result::Result<T, E>;
