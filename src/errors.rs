//! One error type for the whole tool, and the exit code each kind maps to.
//!
//! Every message a user sees names what failed, on which resource, and what to do.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit codes of the command-line contract.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const DRIFT: i32 = 3;
    pub const LOCKED: i32 = 4;
    /// Interrupted (Ctrl-C, SIGTERM) after stopping cleanly, as shells count 128 + SIGINT.
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: flags, config file, validation. Nothing was sent to AWS.
    #[error("{0}")]
    Usage(String),

    /// The state file cannot be used (unreadable, foreign, another stack/region/account).
    #[error("state file {path}: {message}")]
    State { path: String, message: String },

    /// Another run holds the stack's lock.
    #[error("{0}")]
    Locked(String),

    /// An AWS call failed.
    #[error("{0}")]
    Aws(AwsFailure),

    /// The data plane (token endpoint, the API) failed or answered badly.
    #[error("{0}")]
    Http(String),

    /// The run was interrupted and stopped cleanly (see `interrupt`).
    #[error("interrupted")]
    Interrupted,

    /// A local I/O failure that is not the user's input (writing the state file...).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage(message.into())
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::State { .. } => exit::USAGE,
            Error::Locked(_) => exit::LOCKED,
            Error::Interrupted => exit::INTERRUPTED,
            Error::Aws(_) | Error::Http(_) | Error::Io { .. } => exit::FAILURE,
        }
    }
}

/// An AWS request that failed: which operation, on which resource, why, and what to do.
#[derive(Debug)]
pub struct AwsFailure {
    /// What we were doing, e.g. "creating Lambda function m2m-api-handler".
    pub doing: String,
    /// The operation name, e.g. "CreateFunction".
    pub operation: &'static str,
    /// AWS's error code, when it gave one.
    pub code: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed ({}", self.doing, self.operation)?;
        if let Some(code) = &self.code {
            write!(f, ": {code}")?;
        }
        write!(f, "): {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, ". {hint}")?;
        }
        Ok(())
    }
}
