//! The failures that are not the operator's input, each with its exit
//! code (the README's table). Every other error is a bad command line,
//! config file, keys file or setting: exit 2. Here, apart from `cli/` and
//! `commands/`, so both can say which kind a failure is.

use std::process::ExitCode;

/// A run that ended in failure, with the exit code that says which kind
/// (the README lists them).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The job source gave up, or no pool (or the node) ever answered: 1.
    #[error("{0}")]
    Source(String),
    /// Every device failed, or none could be opened: 3.
    #[error("{0}")]
    Devices(String),
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Source(_) => ExitCode::from(1),
            Failure::Devices(_) => ExitCode::from(3),
        }
    }
}
