//! The rotation state machine's vocabulary: the [`Step`] a job runs next and the order of
//! steps, the [`Job`] in flight, and the [`RotationState`] the engine drives one claimed secret
//! with. The store persists jobs as plain records ([`JobRecord`]) and guards each write in SQL
//! against the step the engine names; which step follows which is decided here alone.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rotators::{RotationContext, SecretKind, SecretValue, TargetContext, VersionValue};

use super::lease::Claim;
use crate::error::{Error, Result};
use crate::model::{RotationSchedule, VersionId};
use crate::store::{JobRecord, Looks, RotationRecord};

/// The step a rotation job runs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Make the new credential and store it as the `ACSPending` version.
    Create,
    /// Apply the pending credential to the target.
    Set,
    /// Log in with the pending credential on the target.
    Test,
    /// Promote the pending version to `ACSCurrent`, then the rotator's clean-up.
    Finish,
}

impl Step {
    /// The first step of a rotation.
    pub const FIRST: Step = Step::Create;

    /// The step after this one (`None` after `finish`).
    pub fn next(self) -> Option<Step> {
        match self {
            Step::Create => Some(Step::Set),
            Step::Set => Some(Step::Test),
            Step::Test => Some(Step::Finish),
            Step::Finish => None,
        }
    }

    /// The step a job whose current credential was put back on the target runs again: the
    /// pending credential is set anew.
    pub const AFTER_PUT_BACK: Step = Step::Set;

    /// The step's name, as stored and shown (`create`, `set`, `test`, `finish`).
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

/// A rotation in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The step to run next.
    pub step: Step,
    /// The `ACSPending` version, once `create` has stored it.
    pub version_id: Option<VersionId>,
    /// Failed attempts in this cycle.
    pub attempts: u32,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// When the job first began creating a credential on its target (ms since the epoch), for
    /// rotators whose target makes the credential (`Rotator::creates_on_target`).
    pub create_mark: Option<i64>,
    /// A failed attempt left the `ACSPending` credential on the target and `ACSCurrent` could
    /// not be put back (a rotation that replaces its one credential in place).
    pub pending_on_target: bool,
}

impl Job {
    /// A job about to run its first step (its row appears with the pending version, or with a
    /// failed attempt).
    pub fn start() -> Job {
        Job {
            step: Step::FIRST,
            version_id: None,
            attempts: 0,
            last_error: None,
            create_mark: None,
            pending_on_target: false,
        }
    }

    /// Whether a checked import may end this job once it failed: in `create` or `set`, or in
    /// `test` with the pending credential left on the target. (The store checks the same again
    /// in the import's own transaction.)
    pub fn importable(&self) -> bool {
        matches!(self.step, Step::Create | Step::Set)
            || (self.step == Step::Test && self.pending_on_target)
    }

    /// Reads a stored job; a step this build does not know is an unreadable store.
    pub fn from_record(record: JobRecord) -> Result<Job> {
        Ok(Job {
            step: record.step.parse().map_err(|e: Error| {
                Error::config(format!("store holds an unreadable secret row: {e}"))
            })?,
            version_id: record.version_id,
            attempts: record.attempts,
            last_error: record.last_error,
            create_mark: record.create_mark,
            pending_on_target: record.pending_on_target,
        })
    }
}

/// Everything the engine needs to run a claimed secret's rotation, values decrypted. Built
/// once per run from the store's record; each step's [`RotationContext`] shares its values
/// (`Arc`) rather than copying them.
#[derive(Debug)]
pub(crate) struct RotationState {
    pub claim: Claim,
    pub kind: SecretKind,
    pub schedule: Option<RotationSchedule>,
    pub jitter: Option<std::time::Duration>,
    /// A cron window's end: no new rotation starts after it.
    pub deadline_at: Option<i64>,
    /// What is planned between rotations: the next one, a follow-up, a check.
    pub looks: Looks,
    pub target: Option<String>,
    /// Rotator settings stored with the secret (JSON; `Null` when none).
    pub settings: Arc<serde_json::Value>,
    /// The target's address and admin credential, attached before the steps run.
    pub target_context: Option<Arc<TargetContext>>,
    pub job: Option<Job>,
    pub current: Option<Arc<VersionValue>>,
    pub previous: Option<Arc<VersionValue>>,
    pub pending: Option<Arc<VersionValue>>,
    /// What the store seals the new version with (from the load).
    pub sealing: crate::store::Sealing,
}

impl RotationState {
    pub fn new(claim: Claim, record: RotationRecord) -> Result<RotationState> {
        let RotationRecord {
            kind,
            schedule,
            jitter,
            deadline_at,
            looks,
            target,
            settings,
            job,
            current,
            previous,
            pending,
            sealing,
        } = record;
        Ok(RotationState {
            claim,
            kind,
            schedule,
            jitter,
            deadline_at,
            looks,
            target,
            settings: Arc::new(settings),
            target_context: None,
            job: job.map(Job::from_record).transpose()?,
            current: current.map(Arc::new),
            previous: previous.map(Arc::new),
            pending: pending.map(Arc::new),
            sealing,
        })
    }

    /// The step the job runs next (`create` before it has a row).
    pub fn step(&self) -> Step {
        self.job.as_ref().map_or(Step::FIRST, |j| j.step)
    }

    /// Moves the job to `step` (and records its pending version, once there is one).
    pub fn set_job(&mut self, step: Step, version_id: Option<VersionId>) {
        if let Some(job) = self.job.as_mut() {
            job.step = step;
            if version_id.is_some() {
                job.version_id = version_id;
            }
        }
    }

    /// The job's pending version, which a job past `create` always has.
    pub fn job_version(&self) -> Result<VersionId> {
        self.job
            .as_ref()
            .and_then(|j| j.version_id.clone())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "secret '{}': rotation job at {} has no version",
                    self.claim.name,
                    self.step()
                ))
            })
    }

    /// What the store's promotion did, in memory: the pending version becomes current and the
    /// current one previous.
    pub fn promote_pending(&mut self) {
        let promoted = self.pending.take();
        self.previous = self.current.take();
        self.current = promoted;
    }

    /// The pending version's value, which `set` and `test` apply.
    pub fn pending_value(&self) -> std::result::Result<&SecretValue, rotators::RotateError> {
        self.pending
            .as_ref()
            .map(|p| &p.value)
            .ok_or_else(|| rotators::RotateError::fatal("the job's ACSPending version is missing"))
    }

    /// What the rotator sees of it.
    pub fn context(&self, resumed: bool) -> RotationContext {
        RotationContext {
            secret_name: self.claim.name.to_string(),
            kind: self.kind,
            settings: self.settings.clone(),
            current: self.current.clone(),
            previous: self.previous.clone(),
            pending: self.pending.clone(),
            target: self.target_context.clone(),
            resumed,
            create_mark: self.job.as_ref().and_then(|j| j.create_mark),
        }
    }
}
