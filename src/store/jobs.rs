//! The rotation job's types, shared by the store (which persists them) and the engine (which
//! moves them): the [`Step`] a job runs next, the [`Job`] itself, and the [`Claim`] a worker
//! holds on a secret while it rotates it.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::model::{SecretName, VersionId};

/// The step a rotation job runs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Create,
    Set,
    Test,
    Finish,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Set => "set",
            Step::Test => "test",
            Step::Finish => "finish",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Step {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "create" => Step::Create,
            "set" => Step::Set,
            "test" => Step::Test,
            "finish" => Step::Finish,
            other => return Err(Error::invalid(format!("unknown rotation step '{other}'"))),
        })
    }
}

/// A secret whose lease this worker holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub secret_id: i64,
    pub name: SecretName,
    /// The target it rotates on, for per-target concurrency limits.
    pub target: Option<String>,
}

/// A rotation in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The step to run next.
    pub step: Step,
    /// The `ACSPending` version, once `create` has stored it.
    pub version_id: Option<VersionId>,
    /// Failed attempts in this cycle.
    pub attempts: u32,
    pub last_error: Option<String>,
}
