//! A failed attempt: counted, backed off and retried, or the cycle failed — with its reason on
//! the secret, in the audit log, the metrics and the webhooks.
//!
//! A rotation whose `set` replaces the one credential in place (a single account, a host
//! password: its family says the previous credential does not stay valid) first tries to put
//! `ACSCurrent` back when `set` or `test` fails — the same idempotent `set`, aimed as a
//! rotation from the pending version to the current one, as the repair after a takeover uses
//! ([`Engine::set_aimed`]). The reason says whether it is back; if not, after a failed `test`
//! the job records that the target holds the pending credential (`describe`, the audit record
//! and the webhook say so) and `rotor rotate` or a checked import recovers it.

use std::sync::Arc;

use rotators::{RotateError, Rotator, VersionValue};

use super::{lease, Engine, Outcome, RotationState, Step};
use crate::error::Result;
use crate::model::Planned;
use crate::notify::Event;
use crate::store::FailedAttempt;

/// Whether `ACSCurrent` was put back after a failed single-account `set` or `test`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PutBack {
    Done,
    /// `ACSCurrent` was set again, but logging in with it still failed (why): the account may be
    /// locked or limited on the target. The target holds `ACSCurrent` as far as rotor knows.
    Unconfirmed(String),
    /// It could not be set again: why.
    Failed(String),
}

impl Engine {
    /// Counts a failed attempt: back off and retry, or fail the cycle.
    pub(super) async fn fail(
        &self,
        state: &RotationState,
        step: Step,
        e: RotateError,
    ) -> Result<Outcome> {
        self.fail_with(state, step, e, None).await
    }

    /// [`fail`](Self::fail), after a rotation that replaces its one credential in place tried
    /// to put `ACSCurrent` back (`restored`): the reason, the log, the audit record and the
    /// webhooks say whether it is back, or that the target holds the pending credential.
    pub(super) async fn fail_with(
        &self,
        state: &RotationState,
        step: Step,
        e: RotateError,
        restored: Option<PutBack>,
    ) -> Result<Outcome> {
        let attempts = state.job.as_ref().map_or(0, |j| j.attempts) + 1;
        let name = &state.claim.name;
        let version = state.job.as_ref().and_then(|j| j.version_id.clone());
        let pending = version
            .as_ref()
            .map_or("ACSPending".into(), |v| v.to_string());
        // `restored` for the store: put back (the job sets again next time), or surely not
        // (the target holds the pending credential: `set` had succeeded).
        let (error, untouched, restored) = match (&restored, step) {
            (None, _) => (format!("{step} step failed: {e}"), true, None),
            (Some(PutBack::Done), Step::Test) => (
                format!(
                    "{step} step failed: {e}; the current credential was put back on the target \
                     and logs in"
                ),
                true,
                Some(true),
            ),
            (Some(PutBack::Done), _) => (
                format!("{step} step failed: {e}; the current credential logs in on the target"),
                true,
                Some(true),
            ),
            (Some(PutBack::Unconfirmed(why)), _) => (
                format!(
                    "{step} step failed: {e}; the current credential was set back on the target, \
                     but logging in with it failed too ({why}): the account may be locked or \
                     limited there; the next attempt sets it again"
                ),
                false,
                Some(true),
            ),
            (Some(PutBack::Failed(why)), Step::Test) => (
                format!(
                    "{step} step failed: {e}; putting the current credential back failed ({why}): \
                     the target holds the pending credential (version {pending}), not ACSCurrent; \
                     recover with rotor rotate {name}, or rotor secret import {name} with a \
                     credential that logs in"
                ),
                false,
                Some(false),
            ),
            // A `set` that failed may or may not have changed the password.
            (Some(PutBack::Failed(why)), _) => (
                format!(
                    "{step} step failed: {e}; the current credential could not be confirmed or \
                     put back ({why}): the target may hold the pending credential (version \
                     {pending}), or the credential was changed outside rotor; recover with rotor \
                     rotate {name} once the target answers, or rotor secret import {name} with a \
                     credential that logs in"
                ),
                false,
                None,
            ),
        };
        let holds_pending = restored == Some(false);
        let now = self.store.clock().now();
        if e.is_retryable() && attempts < self.config.max_attempts {
            let at = now + chrono::Duration::from_std(self.backoff(attempts)).unwrap_or_default();
            tracing::warn!(%step, attempts, error = %e, retry_at = %at, "attempt failed; will retry");
            let next = Planned { at, deadline: None };
            let attempt = FailedAttempt {
                step: step.as_str(),
                error: &error,
                attempts,
                failed: false,
                next: Some(next),
                restored,
                back_to: Step::AFTER_PUT_BACK.as_str(),
            };
            self.store.record_failure(&state.claim, &attempt).await?;
            crate::telemetry::rotation(state.kind.ty.as_str(), self.family_of(state), "retrying");
            self.notify(state, Event::RotationFailed, |n| {
                n.error = Some(error.clone());
                n.attempts = Some(attempts);
                n.version_id = version.as_ref().map(|v| v.to_string());
                n.next_rotation_date = Some(crate::clock::format_ms(at.timestamp_millis()));
                n.target_holds_pending = holds_pending.then_some(true);
            });
            Ok(Outcome::Retrying {
                error,
                attempts,
                next_at: at.timestamp_millis(),
            })
        } else {
            match (restored, untouched) {
                (None, true) => {
                    tracing::error!(%step, attempts, error = %e, "rotation failed; the current credential is untouched")
                }
                (Some(true), _) => {
                    tracing::error!(%step, attempts, error = %e, "rotation failed; the current credential logs in on the target (put back)")
                }
                _ => {
                    tracing::error!(%step, attempts, error = %error, "rotation failed; the target holds (or may hold) the pending credential, not ACSCurrent")
                }
            }
            let next = self.plan_next(state);
            let attempt = FailedAttempt {
                step: step.as_str(),
                error: &error,
                attempts,
                failed: true,
                next,
                restored,
                back_to: Step::AFTER_PUT_BACK.as_str(),
            };
            self.store.record_failure(&state.claim, &attempt).await?;
            crate::telemetry::rotation(state.kind.ty.as_str(), self.family_of(state), "failed");
            for event in [Event::RotationFailed, Event::SecretFailed] {
                self.notify(state, event, |n| {
                    n.error = Some(error.clone());
                    n.attempts = Some(attempts);
                    n.version_id = version.as_ref().map(|v| v.to_string());
                    n.target_holds_pending = holds_pending.then_some(true);
                });
            }
            Ok(Outcome::Failed {
                error,
                attempts,
                untouched,
            })
        }
    }

    /// Whether `set` replaces the secret's one credential in place (a single account, a host
    /// password — its family says the previous one does not stay valid), so that a failure
    /// after it leaves `ACSCurrent` refused until it is put back.
    pub(super) fn replaces_current(&self, state: &RotationState) -> bool {
        state
            .target_context
            .as_ref()
            .and_then(|t| self.registry.target_kind(&t.kind))
            .is_some_and(|(family, _)| !family.previous_stays_valid(state.kind))
    }

    /// After a failed `set` or `test` of a rotation that replaces its one credential: sets
    /// `ACSCurrent` again, aimed as a rotation from the pending version to it (the same
    /// idempotent `set`: nothing changes if `ACSCurrent` still logs in), then tests it.
    pub(super) async fn put_back(
        &self,
        state: &RotationState,
        rotator: &dyn Rotator,
        keeper: &lease::Keeper,
    ) -> Result<PutBack> {
        let Some(current) = state.current.clone() else {
            return Ok(PutBack::Failed(
                "the secret has no ACSCurrent version".into(),
            ));
        };
        let from = state.pending.clone().or_else(|| state.current.clone());
        tracing::warn!("putting the current credential back on the target");
        let done = self
            .set_aimed(state, rotator, keeper, from, current)
            .await?;
        Ok(match done {
            Ok(()) => {
                tracing::warn!("the current credential is back on the target and logs in");
                PutBack::Done
            }
            Err(Aimed::Test(e)) => PutBack::Unconfirmed(e.to_string()),
            Err(Aimed::Set(e)) => PutBack::Failed(e.to_string()),
        })
    }

    /// Sets `to` on the target as a rotation from `from` would (`resumed`: nothing changes if
    /// `to` already logs in), then tests it — the repair after a takeover and the put-back
    /// after a failed single-account rotation.
    pub(super) async fn set_aimed(
        &self,
        state: &RotationState,
        rotator: &dyn Rotator,
        keeper: &lease::Keeper,
        from: Option<Arc<VersionValue>>,
        to: Arc<VersionValue>,
    ) -> Result<Result<(), Aimed>> {
        let claim = &state.claim;
        let mut cx = state.context(true);
        cx.current = from;
        cx.pending = Some(to.clone());
        let value = &to.value;
        match self
            .on_target(claim, keeper, self.timed(rotator.set(&cx, value)))
            .await?
        {
            Ok(()) => Ok(self
                .on_target(claim, keeper, self.test_with_retries(rotator, &cx, value))
                .await?
                .map_err(Aimed::Test)),
            Err(e) => Ok(Err(Aimed::Set(e))),
        }
    }
}

/// Which half of an aimed set failed: the `set` itself, or the login that tests it.
#[derive(Debug)]
pub(super) enum Aimed {
    Set(RotateError),
    Test(RotateError),
}

impl std::fmt::Display for Aimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Aimed::Set(e) => write!(f, "{e}"),
            Aimed::Test(e) => write!(f, "set, but the login failed: {e}"),
        }
    }
}
