//! What the tool exits with, and the one line it says when it fails.

use std::fmt;

/// The exit codes (the crate docs and `--help` list them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Done.
    Ok = 0,
    /// A usage or configuration error: bad arguments, an invalid URL, a
    /// name a cluster cannot hold.
    Usage = 1,
    /// The store cannot be reached, or answered with an error.
    Store = 2,
    /// No circuit of that name in the store.
    NotFound = 3,
    /// The change was not confirmed.
    Refused = 4,
}

impl Exit {
    /// The process exit code.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }
}

/// A failure of the command: printed as `lasier: <message>` on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CliError {
    /// The exit code it ends with.
    pub(crate) exit: Exit,
    /// One line, without credentials.
    pub(crate) message: String,
}

impl CliError {
    /// A failure ending with `exit`.
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    /// A usage or configuration error.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::store::one_line(&self.message))
    }
}
