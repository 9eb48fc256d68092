//! Drift checks: do a managed secret's credentials still log in on its target? `ACSCurrent`
//! always, and `ACSPrevious` where its rotator promises it still logs in until the next
//! rotation (dual accounts). The family's own dry-run checks (`Rotator::check`,
//! `Rotator::check_previous`: a login, changing nothing) tell three answers apart: it works,
//! the target refused it (a fatal error: the credential or the admin was changed behind
//! rotor's back — drift), or the target could not be reached (a retryable error: not drift).

use rotators::RotateError;

use super::{Claim, Engine, RotationState};
use crate::error::{Error, Result};
use crate::model::SecretName;

/// What a drift check found for one credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The credential logs in and the target answers.
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

    fn of(checked: std::result::Result<(), RotateError>) -> Verdict {
        match checked {
            Ok(()) => Verdict::Works,
            Err(RotateError::Fatal(m)) => Verdict::Drift(m),
            Err(RotateError::Retryable(m) | RotateError::Unsettled(m)) => Verdict::Unreachable(m),
        }
    }
}

/// What a drift check found for a secret: each stage checked, with its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Findings {
    /// `ACSCurrent`'s verdict.
    pub current: Verdict,
    /// `ACSPrevious`'s, when its rotator promises it still logs in and the target was
    /// reached; `None`: not checked.
    pub previous: Option<Verdict>,
}

impl Findings {
    /// Each stage checked, by label, with its verdict.
    pub fn stages(&self) -> Vec<(&'static str, &Verdict)> {
        std::iter::once(("ACSCurrent", &self.current))
            .chain(self.previous.as_ref().map(|v| ("ACSPrevious", v)))
            .collect()
    }

    /// The secret's verdict: drift when a stage drifted, else unreachable when one could not
    /// be checked, else works.
    pub fn verdict(&self) -> &'static str {
        let stages = self.stages();
        let any = |f: fn(&Verdict) -> bool| stages.iter().any(|(_, v)| f(v));
        if any(|v| matches!(v, Verdict::Drift(_))) {
            "Drift"
        } else if any(|v| matches!(v, Verdict::Unreachable(_))) {
            "Unreachable"
        } else {
            "Works"
        }
    }

    /// True when every stage checked logs in.
    pub fn works(&self) -> bool {
        self.verdict() == "Works"
    }

    /// The stages that drifted (`ACSCurrent`, `ACSPrevious`) and one reason naming each, or
    /// `None` when none did.
    pub fn drift(&self) -> Option<(Vec<&'static str>, String)> {
        let drifted: Vec<(&'static str, &str)> = self
            .stages()
            .into_iter()
            .filter_map(|(stage, v)| match v {
                Verdict::Drift(m) => Some((stage, m.as_str())),
                _ => None,
            })
            .collect();
        if drifted.is_empty() {
            return None;
        }
        let reason = drifted
            .iter()
            .map(|(stage, m)| format!("{stage}: {m}"))
            .collect::<Vec<_>>()
            .join("; ");
        Some((drifted.into_iter().map(|(s, _)| s).collect(), reason))
    }

    /// The reason a stage could not be checked, if one could not.
    pub fn unreachable(&self) -> Option<&str> {
        self.stages().into_iter().find_map(|(_, v)| match v {
            Verdict::Unreachable(m) => Some(m.as_str()),
            _ => None,
        })
    }

    /// One line for people: what drifted, what could not be reached, or what logs in.
    pub fn detail(&self) -> String {
        if let Some((_, reason)) = self.drift() {
            return reason;
        }
        if let Some(m) = self.unreachable() {
            return m.to_owned();
        }
        match self.previous {
            Some(_) => "ACSCurrent and ACSPrevious log in".to_owned(),
            None => "the current credential logs in".to_owned(),
        }
    }
}

impl Engine {
    /// Checks `name`'s `ACSCurrent` credential on its target, and its `ACSPrevious` one where
    /// it must still log in, changing nothing and claiming no lease. `ACSPrevious` is not
    /// checked on a target that could not be reached for `ACSCurrent`. An error is a secret
    /// that cannot be checked (no target, no rotator).
    pub async fn check_drift(&self, name: &SecretName) -> Result<Findings> {
        let claim = Claim::granted(self.store.claim_for_reading(name).await?);
        let record = self.store.load_rotation_unleased(&claim).await?;
        let mut state = RotationState::new(claim, record)?;
        if state.target.is_none() {
            return Err(Error::invalid(format!(
                "secret '{name}' has no target: there is no credential to verify"
            )));
        }
        let rotator = self.rotator(&state)?;
        self.attach_target(&mut state, None).await?;
        let cx = state.context(false);
        let current = Verdict::of(self.timed(rotator.check(&cx)).await);
        if matches!(current, Verdict::Unreachable(_)) {
            return Ok(Findings {
                current,
                previous: None,
            });
        }
        let previous = match self.timed(rotator.check_previous(&cx)).await {
            Ok(false) => None,
            Ok(true) => Some(Verdict::Works),
            Err(e) => Some(Verdict::of(Err(e))),
        };
        Ok(Findings { current, previous })
    }
}
