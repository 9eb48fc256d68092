//! Scheduling: when a secret is looked at next — the next rotation its schedule plans, the
//! backoff before a retry — and whether a secret can rotate on a schedule at all.

use std::time::Duration;

use rotators::Registry;

use super::{Engine, RotationState};
use crate::error::{Error, Result};
use crate::model::{Planned, SecretName};

impl Engine {
    /// The delay before retry `attempts`: base × 2^(attempts−1), capped, the upper half jittered.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
        let full = self
            .config
            .backoff_base
            .saturating_mul(factor)
            .min(self.config.backoff_cap);
        let half = full / 2;
        half + Duration::from_millis(rand::random_range(0..=half.as_millis() as u64))
    }

    /// The next rotation the secret's schedule plans from now.
    pub(super) fn plan_next(&self, state: &RotationState) -> Option<Planned> {
        let schedule = state.schedule.as_ref()?;
        schedule.plan(state.jitter, self.store.clock().now())
    }
}

/// Refuses a rotation schedule on a secret that cannot rotate: a kind no rotator in this build
/// serves, or a kind a family serves without a target of that family (an account imported
/// with `--value` alone: nothing to change its password on).
pub fn check_can_rotate(
    registry: &Registry,
    name: &SecretName,
    kind: rotators::SecretKind,
    target: Option<&str>,
) -> Result<()> {
    if kind.ty == rotators::SecretType::Generic {
        return Ok(()); // refused with its own reason by the schedule's bounds check
    }
    if registry.get(kind).is_none() {
        return Err(Error::invalid(format!(
            "secret '{name}': no rotator for {kind} secrets in this build, so it cannot rotate on a schedule"
        )));
    }
    if registry.rotates_on_target(kind) && target.is_none() {
        return Err(Error::invalid(format!(
            "secret '{name}' has no target, so it cannot rotate: {kind} secrets rotate on a target \
             (rotor secret create {name} --target T …); leave out the schedule to store it as it is"
        )));
    }
    Ok(())
}
