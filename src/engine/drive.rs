//! Driving one claimed secret through the four steps, saving progress after every step so
//! that a crash at any instant resumes where it stopped.
//!
//! `create` → the new value is stored as `ACSPending` (with the job recorded at `set`) in one
//! transaction, before the target changes; `set` and `test` run on the target and are recorded
//! as done (`set`'s record is written while `test` runs: it orders nothing, since `set` may
//! always run again); `finish` promotes the pending version in one transaction, then lets the
//! rotator clean up, then completes the job and schedules the next rotation. Every step may run
//! twice: on resume, a pending version that is already `ACSCurrent` is not promoted again. The
//! order of the steps is [`Step::next`]'s; the store guards each write against the step named
//! here.

use std::sync::Arc;

use rotators::{RotateError, RotationContext, Rotator, SecretValue, VersionValue};
use tokio_util::sync::CancellationToken;

use super::{lease, Claim, Engine, Job, Outcome, RotationState, Step};
use crate::error::{Error, Result};
use crate::model::VersionId;
use crate::notify::Event;

/// A step's record on its way to the store.
type Recording<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>>;

impl Engine {
    pub(super) async fn drive(
        &self,
        claim: &Claim,
        manual: bool,
        stop: &CancellationToken,
        keeper: &lease::Keeper,
    ) -> Result<Outcome> {
        // The job's record and its target's context are read at once: the claim names the
        // target (the record's is used, read again should it differ).
        let (record, target) = tokio::join!(self.store.load_rotation(claim), async {
            match claim.target.as_deref() {
                Some(name) => Some((name, self.store.target_context(name).await)),
                None => None,
            }
        });
        let mut state = RotationState::new(claim.clone(), record?)?;
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
            state.looks.verify = Some(state.looks.verify.map_or(at, |v| v.max(at)));
        }
        let rotator = match self.rotator(&state) {
            Ok(r) => r,
            Err(e) => {
                return self
                    .fail(&state, Step::Create, RotateError::fatal(e.to_string()))
                    .await
            }
        };
        if let Err(e) = self.attach_target(&mut state, target).await {
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

        // `set` done, recorded while `test` runs (see below).
        let mut recording: Option<Recording<'_>> = None;
        loop {
            let step = state.step();
            if stop.is_cancelled() {
                if let Some(record) = recording.take() {
                    record.await?;
                }
                tracing::info!(%step, "stopping between steps");
                return Ok(Outcome::Interrupted { step });
            }
            if recording.is_some() {
                // No store answer has said the lease still holds since `set` ended (one
                // stopped for longer than the lease, say): no step starts on it.
                keeper.ensure_time(claim)?;
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
            let mut mark = None;
            if step == Step::Create && rotator.creates_on_target() {
                // Stored before the target makes anything, so that a crash before the store
                // write leaves a trace the next attempt finds.
                let made = self.store.mark_create(claim, Step::FIRST.as_str()).await?;
                cx.create_mark = Some(made.at);
                mark = Some(made);
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
                    // An attempt that returned (not one cut off) left nothing behind, unless
                    // it says it may have (`Unsettled`): its own create mark goes, so a key
                    // made later is never taken for its own. A mark an earlier attempt left
                    // (cut off, or unsettled) stays: this one may have failed before it
                    // reached the key that attempt may have made.
                    if made.is_err()
                        && mark.is_some()
                        && returned.load(std::sync::atomic::Ordering::SeqCst)
                    {
                        let unsettled = matches!(made, Err(RotateError::Unsettled(_)));
                        if mark.is_some_and(|m| !m.inherited) && !unsettled {
                            self.store.end_create_attempt(claim).await?;
                        }
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
                _ => {
                    let recorded = async {
                        match recording.take() {
                            Some(record) => record.await,
                            None => Ok(()),
                        }
                    };
                    match state.pending_value() {
                        Ok(pending) => {
                            let (recorded, tested) = tokio::join!(
                                recorded,
                                self.on_target(
                                    claim,
                                    keeper,
                                    self.test_with_retries(rotator.as_ref(), &cx, pending),
                                )
                            );
                            recorded?;
                            tested?.map(|()| None)
                        }
                        Err(e) => {
                            recorded.await?;
                            Err(e)
                        }
                    }
                }
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
                        .store_pending(claim, &state.sealing, &value, step.as_str(), next.as_str())
                        .await?;
                    state.pending = Some(Arc::new(VersionValue {
                        version_id: version_id.to_string(),
                        value,
                    }));
                    state.set_job(next, Some(version_id));
                }
                // The step before `finish` passed: recorded with the promotion in one
                // commit, since nothing touches the target between them.
                (_, _) if next == Step::Finish => {
                    let version_id = state.job_version()?;
                    if rotator.finish_is_noop() {
                        // No clean-up after promotion: the job ends in the same commit.
                        state.promote_pending();
                        let followup = self.followup_at(rotator.as_ref(), &state.context(false));
                        self.store
                            .promote_complete(
                                claim,
                                (step.as_str(), next.as_str()),
                                &version_id,
                                self.plan_next(&state),
                                followup,
                                state.looks.verify,
                            )
                            .await?;
                        tracing::info!(
                            %step,
                            attempt,
                            duration_ms = elapsed.as_millis() as u64,
                            "step done"
                        );
                        tracing::info!(version = %version_id, "promoted to ACSCurrent");
                        return Ok(self.concluded(&state, version_id));
                    }
                    self.store
                        .promote_tested(claim, step.as_str(), next.as_str(), &version_id)
                        .await?;
                    state.set_job(next, None);
                    state.promote_pending();
                    tracing::info!(version = %version_id, "promoted to ACSCurrent");
                }
                // `set` passed: its record and `test` go together. Nothing orders them: a
                // crash before the record resumes at `set` (which may always run again, as
                // after a crash during it), one after it at `test`; the promotion waits for
                // both.
                (Step::Set, _) => {
                    recording = Some(Box::pin(self.store.advance_job(
                        claim,
                        step.as_str(),
                        next.as_str(),
                    )));
                    state.set_job(next, None);
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
        let version_id = state.job_version()?;
        let already = state
            .current
            .as_ref()
            .is_some_and(|c| c.version_id == version_id.as_str());
        if !already {
            // A job that reached `finish` before `test` and the promotion were one commit.
            self.store.promote(&claim, &version_id).await?;
            state.promote_pending();
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
        let followup = self.followup_at(rotator, &cx);
        self.store
            .complete_job(&claim, self.plan_next(state), followup, state.looks.verify)
            .await?;
        Ok(self.concluded(state, version_id))
    }

    /// When the rotator's follow-up is due, if it asks for one after this promotion.
    fn followup_at(&self, rotator: &dyn Rotator, cx: &RotationContext) -> Option<i64> {
        rotator
            .followup_after(cx)
            .map(|d| self.store.clock().now_ms() + d.as_millis() as i64)
    }

    /// A rotation whose job ended: logged, counted, announced.
    fn concluded(&self, state: &RotationState, version_id: VersionId) -> Outcome {
        tracing::info!(version = %version_id, "rotation complete");
        crate::telemetry::rotation(state.kind.ty.as_str(), self.family_of(state), "rotated");
        self.notify(state, Event::RotationSucceeded, |n| {
            n.version_id = Some(version_id.to_string())
        });
        Outcome::Rotated { version_id }
    }

    pub(super) async fn test_with_retries(
        &self,
        rotator: &dyn Rotator,
        cx: &RotationContext,
        pending: &SecretValue,
    ) -> Result<(), RotateError> {
        self.with_retries("test", || rotator.test(cx, pending))
            .await
    }

    /// Runs `call` (timed) again while it fails retryably, up to `test_retries` more times,
    /// `test_retry_delay` apart: a target slow to apply a change, or briefly out of reach.
    pub(super) async fn with_retries<F, Fut>(&self, what: &str, call: F) -> Result<(), RotateError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), RotateError>>,
    {
        let mut tries = 0;
        loop {
            match self.timed(call()).await {
                Err(RotateError::Retryable(msg)) if tries < self.config.test_retries => {
                    tries += 1;
                    tracing::debug!(tries, error = %msg, "{what} failed; retrying");
                    tokio::time::sleep(self.config.test_retry_delay).await;
                }
                other => return other,
            }
        }
    }

    /// Runs a rotator's call on the target (already [`timed`](Self::timed)): only with enough
    /// of the lease left, and dropped (with its connections) as soon as the lease is lost.
    pub(super) async fn on_target<T>(
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

    pub(super) async fn timed<T>(
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
}
