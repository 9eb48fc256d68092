//! The rotation engine: it owns the rotation state machine — the [`Step`]s, the [`Job`] in
//! flight, the [`Claim`] it runs under — and drives a [`Rotator`] for one claimed secret.
//!
//! - `job`: steps, their order, the job and the rotation state (what the store holds, read
//!   into the engine's types);
//! - `drive`: the four steps, saving progress after each;
//! - `failure`: a failed attempt, backed off and retried, or the cycle failed; the put-back of
//!   a credential replaced in place;
//! - `between`: the follow-up and the check after a takeover, run between rotations;
//! - `schedule`: the next look, the backoff, whether a secret can rotate;
//! - `lease`: claims, keeping their lease while a rotation runs, and giving it back.
//!
//! Failures are retried with exponential backoff and jitter; after `max_attempts` (or a fatal
//! error) the cycle fails with its reason on the secret, the current credential untouched, and
//! the next cycle or a manual rotation resumes the same job — a stale pending version never
//! blocks rotation.

mod between;
mod drift;
mod drive;
mod failure;
mod job;
mod lease;
mod schedule;

pub use drift::{Findings, Verdict};
pub(crate) use job::RotationState;
pub use job::{Job, Step};
pub use lease::{release, still_held, Claim, Held};
pub use schedule::check_can_rotate;

use std::sync::Arc;

use rotators::{Registry, Rotator};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::model::{SecretName, VersionId};
use crate::notify::{Event, Notice, Notifier};
use crate::store::Store;

pub use crate::config::EngineConfig;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            owner: crate::store::owner_name(),
            ..EngineConfig::DEFAULTS
        }
    }
}

/// How one run of [`Engine::rotate`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The pending version was promoted to `ACSCurrent`.
    Rotated {
        /// The version now `ACSCurrent`.
        version_id: VersionId,
    },
    /// An attempt failed; the job waits for its retry at `next_at`.
    Retrying {
        /// What went wrong.
        error: String,
        /// Failed attempts in this cycle so far.
        attempts: u32,
        /// When the next attempt is due (ms since the epoch).
        next_at: i64,
    },
    /// The cycle failed. `untouched`: the current credential logs in as before (or was put
    /// back); otherwise the target holds the pending credential (the error says how to recover).
    Failed {
        /// What went wrong.
        error: String,
        /// Attempts the cycle made.
        attempts: u32,
        /// The current credential logs in as before, or was put back.
        untouched: bool,
    },
    /// A cron window passed before the rotation could start; it waits for the next one.
    MissedWindow {
        /// When the next rotation is due (ms since the epoch), if one is scheduled.
        next_at: Option<i64>,
    },
    /// Stopped between steps on shutdown; whoever claims the secret next resumes it.
    Interrupted {
        /// The step the job runs when it resumes.
        step: Step,
    },
    /// The lease passed to another worker, which resumes the job.
    LeaseLost,
    /// The last rotation's follow-up ran. `error`: it failed; it runs again at `retry_at`
    /// (backing off like a rotation, never past the next rotation's turn), or, without one, it
    /// was given up and the failure is shown on the secret.
    FollowedUp {
        /// Why the follow-up failed, if it did.
        error: Option<String>,
        /// When the failed follow-up runs again (ms since the epoch).
        retry_at: Option<i64>,
    },
    /// After a takeover, `ACSCurrent` was checked once the previous holder's last write could
    /// have landed: it logged in, or was set again (`repaired`); `error`: it could not be.
    Verified {
        /// `ACSCurrent` did not log in and was set on the target again.
        repaired: bool,
        /// Why `ACSCurrent` could not be checked or set again, if so.
        error: Option<String>,
    },
}

/// Drives rotators for claimed secrets.
pub struct Engine {
    store: Store,
    registry: Registry,
    config: EngineConfig,
    /// Webhooks to tell of outcomes (queued, never waited for).
    notifier: Option<Notifier>,
}

impl Engine {
    /// An engine over `store` that runs the rotators of `registry` with `config`.
    pub fn new(store: Store, registry: Registry, config: EngineConfig) -> Self {
        Engine {
            store,
            registry,
            config,
            notifier: None,
        }
    }

    /// Tells `notifier`'s webhooks of rotations that succeed or fail.
    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// The webhooks told of rotation outcomes, if any.
    pub fn notifier(&self) -> Option<&Notifier> {
        self.notifier.as_ref()
    }

    fn notify(&self, state: &RotationState, event: Event, fill: impl FnOnce(&mut Notice)) {
        if let Some(n) = &self.notifier {
            let mut notice = Notice::new(event, state.claim.name.as_str(), state.kind.ty.as_str());
            fill(&mut notice);
            n.send(notice);
        }
    }

    /// The store the engine reads and writes.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The rotators and families this engine drives.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The engine's limits and backoff.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Runs (or resumes) the rotation of a claimed secret until it is promoted, fails, or `stop`
    /// asks it to stop between steps. `manual` rotations ignore cron windows.
    pub async fn rotate(
        &self,
        claim: &Claim,
        manual: bool,
        stop: &CancellationToken,
    ) -> Result<Outcome> {
        let span = tracing::info_span!("rotation", secret = %claim.name);
        let keeper =
            lease::Keeper::start(self.store.clone(), claim.clone(), self.config.lease).await;
        let driven = self
            .drive(claim, manual, stop, &keeper)
            .instrument(span)
            .await;
        drop(keeper);
        match driven {
            Err(Error::Lease(reason)) => {
                tracing::warn!(secret = %claim.name, %reason, "lease lost; the new holder resumes the rotation");
                Ok(Outcome::LeaseLost)
            }
            other => other,
        }
    }

    /// Rotates one secret now (a manual rotation, which ignores cron windows): claims it, runs
    /// or resumes its rotation, and gives up that claim's lease. A failed secret gets its
    /// attempts back. A secret being rotated by any other claim is refused
    /// ([`Error::InProgress`]). The audit log names the store handle's actor (`cli:USER`) as
    /// who asked, with this process's lease in the detail.
    pub async fn rotate_now(&self, name: &SecretName, stop: &CancellationToken) -> Result<Outcome> {
        self.rotate_now_for(name, self.store.actor(), stop).await
    }

    /// [`rotate_now`](Self::rotate_now) asked for by `actor` (an API call's `api:KEY`).
    pub async fn rotate_now_for(
        &self,
        name: &SecretName,
        actor: &str,
        stop: &CancellationToken,
    ) -> Result<Outcome> {
        let held = self.claim_now_for(name, actor).await?;
        self.rotate_held(held, stop).await
    }

    /// The first half of [`rotate_now_for`](Self::rotate_now_for): the manual rotation's claim,
    /// taken now, so that a caller learns at once whether another driver is rotating the secret
    /// ([`Error::InProgress`]) before it runs the steps with [`rotate_held`](Self::rotate_held)
    /// (the console's rotate now, which answers the loser of a race at once).
    pub async fn claim_now_for(&self, name: &SecretName, actor: &str) -> Result<Held> {
        let info = self.store.describe(name).await?;
        if info.kind.ty == rotators::SecretType::Generic {
            return Err(Error::invalid(format!(
                "secret '{name}' is Generic: it does not rotate; put a new version instead"
            )));
        }
        let claim = Claim::granted(
            self.store
                .with_actor(actor)
                .claim_now(&self.config.owner, name, self.config.lease)
                .await?,
        );
        Ok(Held::new(self.store.clone(), claim))
    }

    /// The second half of [`rotate_now_for`](Self::rotate_now_for): runs or resumes the
    /// rotation under `held`, then gives up its lease.
    pub async fn rotate_held(&self, held: Held, stop: &CancellationToken) -> Result<Outcome> {
        let result = self.rotate(held.claim(), true, stop).await;
        held.end(&result).await;
        result
    }

    /// Checks that the current credential works and the target answers, changing nothing. A
    /// target that refuses the credential or cannot be reached is [`Error::Target`].
    pub async fn dry_run(&self, name: &SecretName) -> Result<()> {
        let claim = Claim::granted(self.store.claim_for_reading(name).await?);
        let record = self.store.load_rotation_unleased(&claim).await?;
        let mut state = RotationState::new(claim, record)?;
        let rotator = self.rotator(&state)?;
        self.attach_target(&mut state, None).await?;
        self.timed(rotator.check(&state.context(false)))
            .await
            .map_err(|e| Error::Target(format!("secret '{name}': dry run failed: {e}")))
    }

    fn rotator(&self, state: &RotationState) -> Result<Arc<dyn Rotator>> {
        self.registry.get(state.kind).ok_or_else(|| {
            Error::invalid(format!(
                "secret '{}': no rotator for {} secrets in this build",
                state.claim.name, state.kind
            ))
        })
    }

    /// Loads the secret's target (address and admin credential) into its state, unless
    /// `read` holds it already (read for the target of that name).
    async fn attach_target(
        &self,
        state: &mut RotationState,
        read: Option<(&str, Result<rotators::TargetContext>)>,
    ) -> Result<()> {
        if let Some(target) = &state.target {
            let context = match read {
                Some((name, context)) if name == target => context?,
                _ => self.store.target_context(target).await?,
            };
            state.target_context = Some(Arc::new(context));
        }
        Ok(())
    }

    /// The family a secret's target belongs to, for metrics (`none` without a target).
    fn family_of(&self, state: &RotationState) -> &'static str {
        state
            .target_context
            .as_ref()
            .and_then(|t| self.registry.target_kind(&t.kind))
            .map_or("none", |(f, _)| f.name())
    }
}
