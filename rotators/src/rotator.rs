//! The Rotator contract: four idempotent steps the engine drives, the context a rotator sees,
//! the error that says whether to retry, and the registry that picks a rotator for a secret.
//!
//! The engine owns the state machine and persistence; a rotator only changes credentials on its
//! target. Every step may run more than once (after a crash, or when a lease passes to another
//! worker), so each must be safe to repeat: `set` does nothing if the pending credential already
//! works, `finish` (clean-up after promotion) tolerates what is already gone.

use std::sync::Arc;

use async_trait::async_trait;

use crate::kind::SecretKind;
use crate::value::SecretValue;

/// One stored version handed to a rotator.
#[derive(Clone, Debug)]
pub struct VersionValue {
    /// The version's id.
    pub version_id: String,
    /// The version's value.
    pub value: SecretValue,
}

/// The target a secret's credentials live on, with its admin credential.
#[derive(Clone, Debug)]
pub struct TargetContext {
    /// The target's name.
    pub name: String,
    /// The canonical kind name its family declared (`postgres`, `mysql`, `redis`, …).
    pub kind: String,
    /// Its address, never carrying a credential.
    pub url: String,
    /// The family's own settings for the target, as it validated them at `target add`.
    pub config: serde_json::Value,
    /// The admin credential's current value (itself a secret in the store).
    pub admin: Option<SecretValue>,
}

impl TargetContext {
    /// The admin credential, or a fatal error naming the target.
    pub fn admin(&self) -> Result<&SecretValue, RotateError> {
        self.admin.as_ref().ok_or_else(|| {
            RotateError::fatal(format!("target '{}' has no admin credential", self.name))
        })
    }
}

/// What a rotator knows about the secret it rotates. No store, no jobs, no clock.
///
/// The engine decrypts a secret's versions and its target's admin credential once per run and
/// shares them with every step's context (`Arc`): building a context copies no secret value.
#[derive(Clone, Debug)]
pub struct RotationContext {
    /// The name of the secret being rotated.
    pub secret_name: String,
    /// The secret's kind.
    pub kind: SecretKind,
    /// Rotator settings stored with the secret (e.g. password length), as JSON.
    pub settings: Arc<serde_json::Value>,
    /// The `ACSCurrent` version, if there is one.
    pub current: Option<Arc<VersionValue>>,
    /// The `ACSPrevious` version, if there is one.
    pub previous: Option<Arc<VersionValue>>,
    /// The version being rotated to, once `create` has stored it.
    pub pending: Option<Arc<VersionValue>>,
    /// The target the secret's credentials live on, if it names one.
    pub target: Option<Arc<TargetContext>>,
    /// The step may have run before (the job was resumed after a crash or a lost lease): it
    /// must check what is already done. False when the engine reached the step itself just now.
    pub resumed: bool,
    /// For a rotator that [creates on its target](Rotator::creates_on_target), in `create`:
    /// when this attempt — or an earlier one that never ended (a crash, a lost lease, a step
    /// timeout) — began creating a credential (ms since the epoch, rotor's clock), stored before
    /// the call. A credential made at or after it that no version holds is such an attempt's.
    /// An attempt that returns clears it, so `create` must not return (even with an error)
    /// leaving a credential of its own behind.
    pub create_mark: Option<i64>,
}

impl RotationContext {
    /// The secret's target, or a fatal error naming the secret.
    pub fn require_target(&self) -> Result<&TargetContext, RotateError> {
        self.target.as_deref().ok_or_else(|| {
            RotateError::fatal(format!(
                "secret '{}' names no target to rotate on",
                self.secret_name
            ))
        })
    }
}

/// A step's failure. Messages name the secret's account or target, never a credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RotateError {
    /// Worth trying again later: the target is down, busy, or slow to apply a change.
    #[error("{0}")]
    Retryable(String),
    /// Will not get better by waiting: wrong configuration, missing privileges, a mismatch.
    #[error("{0}")]
    Fatal(String),
    /// Worth trying again, and `create` may have left a credential on the target that it could
    /// not remove (the answer to the call that makes it lost, then the clean-up failed too):
    /// the engine keeps the attempt's create mark, so that the next attempt knows that
    /// credential for this secret's and removes it.
    #[error("{0}")]
    Unsettled(String),
}

impl RotateError {
    /// A failure worth retrying later.
    pub fn retryable(msg: impl Into<String>) -> Self {
        RotateError::Retryable(msg.into())
    }

    /// A failure that waiting will not fix.
    pub fn fatal(msg: impl Into<String>) -> Self {
        RotateError::Fatal(msg.into())
    }

    /// A failure worth retrying that may have left a credential behind
    /// ([`RotateError::Unsettled`]).
    pub fn unsettled(msg: impl Into<String>) -> Self {
        RotateError::Unsettled(msg.into())
    }

    /// True for a failure worth retrying: [`RotateError::Retryable`] or
    /// [`RotateError::Unsettled`].
    pub fn is_retryable(&self) -> bool {
        matches!(self, RotateError::Retryable(_) | RotateError::Unsettled(_))
    }

    /// The same kind of failure with `f` applied to its message.
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            RotateError::Retryable(m) => RotateError::Retryable(f(m)),
            RotateError::Fatal(m) => RotateError::Fatal(f(m)),
            RotateError::Unsettled(m) => RotateError::Unsettled(f(m)),
        }
    }

    /// Withholds a message that quotes any of `secrets` ([`withhold_if_quoting`]): servers
    /// sometimes echo part of the statement that failed (a MySQL syntax error, a Redis ACL
    /// modifier), and a statement that sets a password contains it.
    ///
    /// [`withhold_if_quoting`]: crate::value::withhold_if_quoting
    pub fn scrub(self, secrets: &[&str]) -> Self {
        self.map_message(|msg| crate::value::withhold_if_quoting(msg, secrets))
    }
}

/// The four steps of a rotation. The engine saves its progress after each one.
#[async_trait]
pub trait Rotator: Send + Sync {
    /// Makes the new credential. The engine stores it as `ACSPending` before anything on the
    /// target changes.
    async fn create(&self, cx: &RotationContext) -> Result<SecretValue, RotateError>;

    /// Applies the pending credential to the target. Must check it is aimed at the right
    /// account first, and do nothing if the pending credential already works.
    async fn set(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError>;

    /// Logs in with the pending credential through the target's own protocol.
    async fn test(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError>;

    /// Clean-up that is safe only after promotion (e.g. removing a key that is no longer current
    /// or previous). `promoted` is the new `ACSCurrent`.
    async fn finish(
        &self,
        _cx: &RotationContext,
        _promoted: &SecretValue,
    ) -> Result<(), RotateError> {
        Ok(())
    }

    /// Whether [`finish`](Self::finish) does nothing for this rotator (it is not overridden):
    /// the engine then records the promotion and the end of the job in one commit. A rotator
    /// with clean-up to do after promotion must leave this `false`, so that the promotion is
    /// durable before its clean-up starts.
    fn finish_is_noop(&self) -> bool {
        false
    }

    /// After a rotation is promoted: how long until [`followup`](Self::followup) should run,
    /// e.g. a grace period before the previous credential is disabled. `None`: nothing to do.
    fn followup_after(&self, _cx: &RotationContext) -> Option<std::time::Duration> {
        None
    }

    /// Runs once the time from [`followup_after`](Self::followup_after) has passed (by a
    /// worker), with the secret's versions as they are then. Must tolerate what is already
    /// done or gone.
    async fn followup(&self, _cx: &RotationContext) -> Result<(), RotateError> {
        Ok(())
    }

    /// True when `create` makes the credential on the target itself (the RAM API's
    /// CreateAccessKey), so that a crash before the store write could leave one nobody holds:
    /// the engine then stores a create mark first and passes it as
    /// [`RotationContext::create_mark`]. An attempt that returns an error clears its own mark,
    /// unless the error is [`RotateError::Unsettled`].
    fn creates_on_target(&self) -> bool {
        false
    }

    /// For a rotator that [creates on its target](Self::creates_on_target), after `create`
    /// returned an error: whether the `ACSPrevious` credential is gone from the target (`create`
    /// deletes it to make room within the target's limit). The engine then takes `ACSPrevious`
    /// off that version, so that the stages say what is true. An error changes nothing.
    async fn previous_gone(&self, _cx: &RotationContext) -> Result<bool, RotateError> {
        Ok(false)
    }

    /// A dry run: checks that the current credential works and the target answers, changing
    /// nothing.
    async fn check(&self, _cx: &RotationContext) -> Result<(), RotateError> {
        Ok(())
    }

    /// A dry run of the `ACSPrevious` credential, for a rotator that promises it still logs in
    /// until the next rotation (dual accounts): `Ok(true)` when it does, `Ok(false)` when
    /// nothing is promised (no previous version, or a kind whose previous credential is
    /// replaced in place). A refusal is fatal, a target that cannot be reached retryable, as
    /// for [`check`](Self::check). Changes nothing.
    async fn check_previous(&self, _cx: &RotationContext) -> Result<bool, RotateError> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_echoed_passwords() {
        let e =
            RotateError::fatal("ERR Error in ACL SETUSER modifier '>Hunter2-Pass': Syntax error");
        let clean = e.scrub(&["Hunter2-Pass", ""]).to_string();
        assert!(!clean.contains("Hunter2-Pass"), "{clean}");
        assert!(clean.contains("[REDACTED]"));
        // A short password inside a known message is not told by where a marker sits.
        let e = RotateError::fatal("password authentication failed for user \"app\"");
        let clean = e.scrub(&["failed"]).to_string();
        assert!(!clean.contains("failed"), "{clean}");
        assert!(!clean.contains("authentication"), "{clean}");
    }
}
