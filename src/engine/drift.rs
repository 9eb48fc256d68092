//! Drift checks: does a managed secret's `ACSCurrent` credential still log in on its target?
//! The family's own dry-run check (`Rotator::check`: a login with the current credential and
//! the target's admin, changing nothing) tells three answers apart: it works, the target
//! refused it (a fatal error: the credential or the admin was changed behind rotor's back —
//! drift), or the target could not be reached (a retryable error: not drift).

use rotators::RotateError;

use super::{Claim, Engine, RotationState};
use crate::error::{Error, Result};
use crate::model::SecretName;

/// What a drift check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The current credential logs in and the target answers.
    Works,
    /// The target refused: the reason (never a value).
    Drift(String),
    /// The target could not be reached: the reason.
    Unreachable(String),
}

impl Verdict {
    /// `Works`, `Drift` or `Unreachable`, for `--json`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Works => "Works",
            Verdict::Drift(_) => "Drift",
            Verdict::Unreachable(_) => "Unreachable",
        }
    }
}

impl Engine {
    /// Checks `name`'s `ACSCurrent` credential on its target, changing nothing and claiming no
    /// lease. An error is a secret that cannot be checked (no target, no rotator).
    pub async fn check_drift(&self, name: &SecretName) -> Result<Verdict> {
        let claim = Claim::granted(self.store.claim_for_reading(name).await?);
        let record = self.store.load_rotation_unleased(&claim).await?;
        let mut state = RotationState::new(claim, record)?;
        if state.target.is_none() {
            return Err(Error::invalid(format!(
                "secret '{name}' has no target: there is no credential to verify"
            )));
        }
        let rotator = self.rotator(&state)?;
        self.attach_target(&mut state).await?;
        Ok(
            match self.timed(rotator.check(&state.context(false))).await {
                Ok(()) => Verdict::Works,
                Err(RotateError::Fatal(m)) => Verdict::Drift(m),
                Err(RotateError::Retryable(m)) => Verdict::Unreachable(m),
            },
        )
    }
}
