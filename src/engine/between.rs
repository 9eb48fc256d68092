//! Work a worker does on a secret between rotations: the last rotation's follow-up, and the
//! check after a takeover.
//!
//! A **follow-up** (`Rotator::followup`, e.g. disabling the previous RAM key after its grace)
//! retries with backoff like a rotation; a fatal error, or `max_attempts` failures, gives it up
//! and shows the failure on the secret (`describe`, metrics, a `secret_failed` webhook). It
//! never holds up the next rotation: when both are due, the rotation runs (and plans its own
//! follow-up).
//!
//! A **check after a takeover**: a claim that took over a lease its holder stopped renewing
//! cannot stop that holder's last target write, which may land late (a stalled process resumed,
//! a proxy holding a command). Once the holder's step timeout has passed, the worker checks that
//! `ACSCurrent` still logs in and, if not, sets it again — the same idempotent `set`, aimed as if
//! rotating from `ACSPrevious` to it — then tests it. A check that cannot reach the target is
//! tried again (as a test is), then planned again after the retry backoff's first delay: only
//! a refusal is taken for a credential that no longer logs in.

use rotators::{RotateError, Rotator};

use super::{lease::Keeper, Engine, Outcome, RotationState};
use crate::error::Result;
use crate::notify::Event;

impl Engine {
    /// Runs the check or the follow-up that is due, if any; `None`: go on with the rotation.
    pub(super) async fn between(
        &self,
        state: &RotationState,
        rotator: &dyn Rotator,
        keeper: &Keeper,
    ) -> Result<Option<Outcome>> {
        let now = self.store.clock().now_ms();
        let looks = state.looks;
        if looks.verify.is_some_and(|at| at <= now) {
            return self.verify(state, rotator, keeper).await.map(Some);
        }
        let rotation_due = looks.rotation.is_some_and(|at| at <= now);
        if looks.followup.is_some_and(|at| at <= now) && !rotation_due {
            return self.followup(state, rotator, keeper).await.map(Some);
        }
        if !rotation_due && looks.next().is_some_and(|at| at > now) {
            // Claimed early (the plan changed meanwhile): nothing to do yet.
            self.store
                .settle(&state.claim, &looks, ("rotation.look", "early", None), None)
                .await?;
            return Ok(Some(Outcome::MissedWindow {
                next_at: looks.next(),
            }));
        }
        Ok(None)
    }

    async fn followup(
        &self,
        state: &RotationState,
        rotator: &dyn Rotator,
        keeper: &Keeper,
    ) -> Result<Outcome> {
        let claim = &state.claim;
        let mut looks = state.looks;
        let attempts = looks.followup_attempts + 1;
        tracing::info!(attempt = attempts, "follow-up starts");
        let cx = state.context(false);
        let ran = self
            .on_target(claim, keeper, self.timed(rotator.followup(&cx)))
            .await?;
        let e = match ran {
            Ok(()) => {
                looks.followup = None;
                looks.followup_attempts = 0;
                self.store
                    .settle(claim, &looks, ("rotation.followup", "ok", None), None)
                    .await?;
                tracing::info!("follow-up done");
                return Ok(Outcome::FollowedUp {
                    error: None,
                    retry_at: None,
                });
            }
            Err(e) => e,
        };
        let error = format!("follow-up failed: {e}");
        let detail = format!("attempt {attempts}: {e}");
        if e.is_retryable() && attempts < self.config.max_attempts {
            let at = self.store.clock().now_ms() + self.backoff(attempts).as_millis() as i64;
            tracing::warn!(attempts, error = %e, retry_at = %crate::clock::format_ms(at), "follow-up failed; will retry");
            looks.followup = Some(at);
            looks.followup_attempts = attempts;
            self.store
                .settle(
                    claim,
                    &looks,
                    ("rotation.followup", "retrying", Some(&detail)),
                    None,
                )
                .await?;
            return Ok(Outcome::FollowedUp {
                error: Some(error),
                retry_at: Some(at),
            });
        }
        tracing::error!(attempts, error = %e, "follow-up failed; giving it up");
        looks.followup = None;
        looks.followup_attempts = 0;
        self.store
            .settle(
                claim,
                &looks,
                ("rotation.followup", "failed", Some(&detail)),
                Some((&error, attempts)),
            )
            .await?;
        crate::telemetry::rotation(
            state.kind.ty.as_str(),
            self.family_of(state),
            "followup_failed",
        );
        self.notify(state, Event::SecretFailed, |n| {
            n.error = Some(error.clone());
            n.attempts = Some(attempts);
        });
        Ok(Outcome::FollowedUp {
            error: Some(error),
            retry_at: None,
        })
    }

    async fn verify(
        &self,
        state: &RotationState,
        rotator: &dyn Rotator,
        keeper: &Keeper,
    ) -> Result<Outcome> {
        let claim = &state.claim;
        let mut looks = state.looks;
        looks.verify = None;
        // A check that could not reach the target (a retryable error) proves nothing either
        // way: tried again as a test is, then planned for later — never answered by setting
        // ACSCurrent again and calling that a repair. A refusal is fatal (`Rotator::check`).
        let cx = state.context(false);
        let checked = self
            .on_target(
                claim,
                keeper,
                self.with_retries("check after the takeover", || rotator.check(&cx)),
            )
            .await?;
        if let Err(e @ RotateError::Retryable(_)) = &checked {
            let at = self.store.clock().now_ms() + self.backoff(1).as_millis() as i64;
            let error = format!(
                "ACSCurrent could not be checked after the takeover: {e}; checked again at {}",
                crate::clock::format_ms(at)
            );
            tracing::warn!(error = %e, retry_at = %crate::clock::format_ms(at), "the check after the takeover could not reach the target; will retry");
            looks.verify = Some(at);
            self.store
                .settle(
                    claim,
                    &looks,
                    ("rotation.verify", "retrying", Some(&error)),
                    None,
                )
                .await?;
            return Ok(Outcome::Verified {
                repaired: false,
                error: Some(error),
            });
        }
        let Err(e) = checked else {
            tracing::info!("ACSCurrent logs in after the takeover");
            self.store
                .settle(
                    claim,
                    &looks,
                    ("rotation.verify", "ok", Some("ACSCurrent logs in")),
                    None,
                )
                .await?;
            return Ok(Outcome::Verified {
                repaired: false,
                error: None,
            });
        };
        tracing::warn!(error = %e, "ACSCurrent does not log in after a takeover (a late write of the previous holder?); setting it again");
        // Aimed as a rotation from ACSPrevious to ACSCurrent would be.
        let repaired = match state.current.clone() {
            None => Err(super::failure::Aimed::Set(RotateError::fatal(
                "the secret has no ACSCurrent version",
            ))),
            Some(current) => {
                let from = state.previous.clone().or_else(|| state.current.clone());
                self.set_aimed(state, rotator, keeper, from, current)
                    .await?
            }
        };
        match repaired {
            Ok(()) => {
                tracing::warn!("ACSCurrent set again and logs in");
                self.store
                    .settle(
                        claim,
                        &looks,
                        (
                            "rotation.verify",
                            "repaired",
                            Some(&format!("ACSCurrent did not log in ({e}); set again")),
                        ),
                        None,
                    )
                    .await?;
                crate::telemetry::rotation(
                    state.kind.ty.as_str(),
                    self.family_of(state),
                    "repaired",
                );
                Ok(Outcome::Verified {
                    repaired: true,
                    error: None,
                })
            }
            Err(again) => {
                let error = format!(
                    "ACSCurrent does not log in ({e}) and setting it again failed: {again}"
                );
                tracing::error!(%error, "ACSCurrent could not be repaired");
                self.store
                    .settle(
                        claim,
                        &looks,
                        ("rotation.verify", "failed", Some(&error)),
                        Some((&error, 1)),
                    )
                    .await?;
                crate::telemetry::rotation(state.kind.ty.as_str(), self.family_of(state), "failed");
                self.notify(state, Event::SecretFailed, |n| {
                    n.error = Some(error.clone())
                });
                Ok(Outcome::Verified {
                    repaired: false,
                    error: Some(error),
                })
            }
        }
    }
}
