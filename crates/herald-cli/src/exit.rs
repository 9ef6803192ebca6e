//! Exit statuses and the one-line error a failed command prints.
//!
//! 0: success · 1: an unexpected fault · 2: bad input (nothing was done) ·
//! 3: a recipient failed permanently · 4: retries exhausted or deadline hit.

use std::process::ExitCode;

/// Bad input: the command did nothing.
pub(crate) const BAD_INPUT: u8 = 2;
/// At least one recipient was refused for good.
pub(crate) const PERMANENT_FAILURE: u8 = 3;
/// Transient failures outlasted the retry policy or the deadline.
pub(crate) const RETRIES_EXHAUSTED: u8 = 4;

/// Why a command stopped.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The user's input is wrong; the message names the field or flag.
    Input(String),
    /// Anything else.
    Fault(anyhow::Error),
}

impl Failure {
    pub(crate) fn input(message: impl std::fmt::Display) -> Self {
        Self::Input(message.to_string())
    }

    /// Prints the error on one line to stderr and gives the exit status.
    pub(crate) fn report(self) -> ExitCode {
        match self {
            Self::Input(message) => {
                eprintln!("error: {message}");
                ExitCode::from(BAD_INPUT)
            }
            Self::Fault(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self::Fault(error)
    }
}
