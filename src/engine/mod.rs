//! The rotation engine: the four-step state machine that drives a [`Rotator`] for one claimed
//! secret, saving progress after every step so that a crash at any instant resumes where it
//! stopped.
//!
//! `create` → the new value is stored as `ACSPending` (with the job recorded at `set`) in one
//! transaction, before the target changes; `set` and `test` run on the target and are recorded
//! as done; `finish` promotes the pending version in one transaction, then lets the rotator clean
//! up, then completes the job and schedules the next rotation. Every step may run twice: on
//! resume, a pending version that is already `ACSCurrent` is not promoted again. Failures are
//! retried with exponential backoff and jitter; after `max_attempts` (or a fatal error) the cycle
//! fails with its reason on the secret, the current credential untouched, and the next cycle or
//! a manual rotation resumes the same job — a stale pending version never blocks rotation.

mod between;
mod failure;
mod job;
mod lease;

pub(crate) use job::RotationState;
pub use job::{Job, Step};
pub use lease::{release, still_held, Claim, Held};

use std::sync::Arc;
use std::time::Duration;

use rotators::{Registry, RotateError, RotationContext, Rotator, SecretValue, VersionValue};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::model::{Planned, SecretName, VersionId};
use crate::notify::{Event, Notice, Notifier};
use crate::store::Store;

/// How the engine runs rotations.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This process's name in leases.
    pub owner: String,
    /// How long a claim lasts without a heartbeat; a dead worker's secrets are taken over after it.
    pub lease: Duration,
    /// Attempts per cycle before the secret is marked failed.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter, up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A rotator step that takes longer fails (retryable).
    pub step_timeout: Duration,
    /// Extra tries of the `test` step, for changes that take a moment to propagate.
    pub test_retries: u32,
    pub test_retry_delay: Duration,
}

impl EngineConfig {
    /// The defaults, in one place (the CLI shows them in `--help`); `owner` is filled in by
    /// [`Default`], per process.
    pub const DEFAULTS: EngineConfig = EngineConfig {
        owner: String::new(),
        lease: Duration::from_secs(30),
        max_attempts: 5,
        backoff_base: Duration::from_secs(30),
        backoff_cap: Duration::from_secs(3600),
        step_timeout: Duration::from_secs(300),
        test_retries: 3,
        test_retry_delay: Duration::from_secs(1),
    };
}

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
    Rotated { version_id: VersionId },
    /// An attempt failed; the job waits for its retry at `next_at`.
    Retrying {
        error: String,
        attempts: u32,
        next_at: i64,
    },
    /// The cycle failed. `untouched`: the current credential logs in as before (or was put
    /// back); otherwise the target holds the pending credential (the error says how to recover).
    Failed {
        error: String,
        attempts: u32,
        untouched: bool,
    },
    /// A cron window passed before the rotation could start; it waits for the next one.
    MissedWindow { next_at: Option<i64> },
    /// Stopped between steps on shutdown; whoever claims the secret next resumes it.
    Interrupted { step: Step },
    /// The lease passed to another worker, which resumes the job.
    LeaseLost,
    /// The last rotation's follow-up ran. `error`: it failed; it runs again at `retry_at`
    /// (backing off like a rotation, never past the next rotation's turn), or, without one, it
    /// was given up and the failure is shown on the secret.
    FollowedUp {
        error: Option<String>,
        retry_at: Option<i64>,
    },
    /// After a takeover, `ACSCurrent` was checked once the previous holder's last write could
    /// have landed: it logged in, or was set again (`repaired`); `error`: it could not be.
    Verified {
        repaired: bool,
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

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The rotators and families this engine drives.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

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
        let keeper = lease::Keeper::start(self.store.clone(), claim.clone(), self.config.lease);
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
        let held = Held::new(self.store.clone(), claim);
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
        self.attach_target(&mut state).await?;
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

    /// Loads the secret's target (address and admin credential) into its state.
    async fn attach_target(&self, state: &mut RotationState) -> Result<()> {
        if let Some(target) = &state.target {
            state.target_context = Some(Arc::new(self.store.target_context(target).await?));
        }
        Ok(())
    }

    async fn drive(
        &self,
        claim: &Claim,
        manual: bool,
        stop: &CancellationToken,
        keeper: &lease::Keeper,
    ) -> Result<Outcome> {
        let record = self.store.load_rotation(claim).await?;
        let mut state = RotationState::new(claim.clone(), record)?;
        let writing = state
            .job
            .as_ref()
            .is_some_and(|j| matches!(j.step, Step::Set | Step::Finish));
        if claim.taken_from.is_some() && writing {
            // The previous holder may have been in `set` or in `finish`'s clean-up: its write
            // may still land, until its step timeout has passed (ours is assumed: the holder's
            // is not known); then ACSCurrent is checked, and set again if that write undid it.
            // `create` and `test` change nothing on the target a later rotation relies on.
            let at = self.store.clock().now_ms() + self.config.step_timeout.as_millis() as i64;
            self.store.plan_verify(claim, at).await?;
            state.looks.verify = Some(state.looks.verify.map_or(at, |v| v.min(at)));
        }
        let rotator = match self.rotator(&state) {
            Ok(r) => r,
            Err(e) => {
                return self
                    .fail(&state, Step::Create, RotateError::fatal(e.to_string()))
                    .await
            }
        };
        if let Err(e) = self.attach_target(&mut state).await {
            let step = state.step();
            // A store hiccup passes; a target that is gone or unreadable does not.
            let e = match e {
                Error::Store(_) => RotateError::retryable(e.to_string()),
                other => RotateError::fatal(other.to_string()),
            };
            return self.fail(&state, step, e).await;
        }
        // Between rotations, a worker runs what is due first: a check after a takeover, or a
        // follow-up (unless the next rotation is due too: a follow-up never holds one up).
        if state.job.is_none() && !manual {
            if let Some(outcome) = self.between(&state, rotator.as_ref(), keeper).await? {
                return Ok(outcome);
            }
        }
        // A job found in the store may have run part of its current step already.
        let mut resumed = state.job.is_some();
        if state.job.is_none() {
            let now = self.store.clock().now_ms();
            if let Some(deadline) = state.deadline_at.filter(|d| !manual && now > *d) {
                let next = self.plan_next(&state);
                tracing::info!(deadline = %crate::clock::format_ms(deadline), "rotation window missed; waiting for the next one");
                self.store.reschedule(claim, next).await?;
                return Ok(Outcome::MissedWindow {
                    next_at: next.map(|p| p.at.timestamp_millis()),
                });
            }
            // The job row appears with the pending version (create touches nothing outside
            // the store), or with a failed attempt.
            state.job = Some(Job::start());
        }

        loop {
            let step = state.step();
            if stop.is_cancelled() {
                tracing::info!(%step, "stopping between steps");
                return Ok(Outcome::Interrupted { step });
            }
            let attempt = state.job.as_ref().map_or(0, |j| j.attempts) + 1;
            tracing::info!(%step, attempt, "step starts");
            if step == Step::Finish {
                return self
                    .finish(rotator.as_ref(), &mut state, resumed, keeper)
                    .await;
            }
            // The rotator's part of the step...
            let mut cx = state.context(resumed);
            if step == Step::Create && rotator.creates_on_target() {
                // Stored before the target makes anything, so that a crash before the store
                // write leaves a trace the next attempt finds.
                cx.create_mark = Some(self.store.mark_create(claim, Step::FIRST.as_str()).await?);
            }
            let started = std::time::Instant::now();
            let ran: Result<Option<SecretValue>, RotateError> = match step {
                Step::Create => {
                    let returned = std::sync::atomic::AtomicBool::new(false);
                    let made = self
                        .on_target(
                            claim,
                            keeper,
                            self.timed(async {
                                let made = rotator.create(&cx).await;
                                returned.store(true, std::sync::atomic::Ordering::SeqCst);
                                made
                            }),
                        )
                        .await?;
                    // An attempt that returned (not one cut off) left nothing behind: its
                    // create mark goes, so a key made later is never taken for its own.
                    if made.is_err()
                        && cx.create_mark.is_some()
                        && returned.load(std::sync::atomic::Ordering::SeqCst)
                    {
                        self.store.end_create_attempt(claim).await?;
                        // It may have deleted ACSPrevious's credential to make room: then the
                        // stage goes too, so the stages say what is true.
                        if let Some(previous) = state.previous.as_ref() {
                            let gone = self
                                .on_target(claim, keeper, self.timed(rotator.previous_gone(&cx)))
                                .await;
                            if let Ok(Ok(true)) = gone {
                                self.store
                                    .drop_previous(claim, &previous.version_id)
                                    .await?;
                                state.previous = None;
                            }
                        }
                    }
                    made.map(Some)
                }
                Step::Set => match state.pending_value() {
                    Ok(pending) => self
                        .on_target(claim, keeper, self.timed(rotator.set(&cx, pending)))
                        .await?
                        .map(|()| None),
                    Err(e) => Err(e),
                },
                _ => match state.pending_value() {
                    Ok(pending) => self
                        .on_target(
                            claim,
                            keeper,
                            self.test_with_retries(rotator.as_ref(), &cx, pending),
                        )
                        .await?
                        .map(|()| None),
                    Err(e) => Err(e),
                },
            };
            let elapsed = started.elapsed();
            crate::telemetry::step(step.as_str(), self.family_of(&state), elapsed);
            let created = match ran {
                Ok(created) => created,
                Err(e) => {
                    // A rotation that replaced the one credential in place puts it back.
                    let restored = match step {
                        Step::Set | Step::Test if self.replaces_current(&state) => {
                            Some(self.put_back(&state, rotator.as_ref(), keeper).await?)
                        }
                        _ => None,
                    };
                    return self.fail_with(&state, step, e, restored).await;
                }
            };
            // ...then the engine saves that it is done, and the job goes on with the next step.
            let next = step.next().unwrap_or(Step::Finish);
            match (step, created) {
                (Step::Create, Some(value)) => {
                    let version_id = self
                        .store
                        .store_pending(claim, &value, step.as_str(), next.as_str())
                        .await?;
                    state.pending = Some(Arc::new(VersionValue {
                        version_id: version_id.to_string(),
                        value,
                    }));
                    state.set_job(next, Some(version_id));
                }
                _ => {
                    self.store
                        .advance_job(claim, step.as_str(), next.as_str())
                        .await?;
                    state.set_job(next, None);
                }
            }
            tracing::info!(
                %step,
                attempt,
                duration_ms = elapsed.as_millis() as u64,
                "step done"
            );
            resumed = false;
        }
    }

    /// Promotes (unless a previous run already did), cleans up, completes the job.
    async fn finish(
        &self,
        rotator: &dyn Rotator,
        state: &mut RotationState,
        resumed: bool,
        keeper: &lease::Keeper,
    ) -> Result<Outcome> {
        let claim = state.claim.clone();
        let version_id = state
            .job
            .as_ref()
            .and_then(|j| j.version_id.clone())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "secret '{}': rotation job at finish has no version",
                    claim.name
                ))
            })?;
        let already = state
            .current
            .as_ref()
            .is_some_and(|c| c.version_id == version_id.as_str());
        if !already {
            self.store.promote(&claim, &version_id).await?;
            let promoted = state.pending.take();
            state.previous = state.current.take();
            state.current = promoted;
            tracing::info!(version = %version_id, "promoted to ACSCurrent");
        }
        let cx = state.context(resumed);
        let promoted = match state.current.clone() {
            Some(c) => c,
            None => {
                return self
                    .fail(
                        state,
                        Step::Finish,
                        RotateError::fatal("the promoted version is missing"),
                    )
                    .await
            }
        };
        if let Err(e) = self
            .on_target(
                &claim,
                keeper,
                self.timed(rotator.finish(&cx, &promoted.value)),
            )
            .await?
        {
            return self.fail(state, Step::Finish, e).await;
        }
        let followup = rotator
            .followup_after(&cx)
            .map(|d| self.store.clock().now_ms() + d.as_millis() as i64);
        self.store
            .complete_job(&claim, self.plan_next(state), followup, state.looks.verify)
            .await?;
        tracing::info!(version = %version_id, "rotation complete");
        crate::telemetry::rotation(state.kind.ty.as_str(), self.family_of(state), "rotated");
        self.notify(state, Event::RotationSucceeded, |n| {
            n.version_id = Some(version_id.to_string())
        });
        Ok(Outcome::Rotated { version_id })
    }

    async fn test_with_retries(
        &self,
        rotator: &dyn Rotator,
        cx: &RotationContext,
        pending: &SecretValue,
    ) -> Result<(), RotateError> {
        let mut tries = 0;
        loop {
            match self.timed(rotator.test(cx, pending)).await {
                Err(RotateError::Retryable(msg)) if tries < self.config.test_retries => {
                    tries += 1;
                    tracing::debug!(tries, error = %msg, "test failed; retrying for propagation");
                    tokio::time::sleep(self.config.test_retry_delay).await;
                }
                other => return other,
            }
        }
    }

    /// Runs a rotator's call on the target (already [`timed`](Self::timed)): only with enough
    /// of the lease left, and dropped (with its connections) as soon as the lease is lost.
    async fn on_target<T>(
        &self,
        claim: &Claim,
        keeper: &lease::Keeper,
        fut: impl std::future::Future<Output = Result<T, RotateError>>,
    ) -> Result<Result<T, RotateError>> {
        keeper.ensure_time(claim)?;
        tokio::select! {
            biased;
            _ = keeper.lost().cancelled() => Err(Error::Lease(format!(
                "secret '{}': the lease could not be kept; the step in flight was stopped",
                claim.name
            ))),
            ran = fut => Ok(ran),
        }
    }

    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, RotateError>>,
    ) -> Result<T, RotateError> {
        tokio::time::timeout(self.config.step_timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(RotateError::retryable(format!(
                    "timed out after {}",
                    crate::model::fmt_duration(self.config.step_timeout)
                )))
            })
    }

    /// The family a secret's target belongs to, for metrics (`none` without a target).
    fn family_of(&self, state: &RotationState) -> &'static str {
        state
            .target_context
            .as_ref()
            .and_then(|t| self.registry.target_kind(&t.kind))
            .map_or("none", |(f, _)| f.name())
    }

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

    fn plan_next(&self, state: &RotationState) -> Option<Planned> {
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
