//! The background worker: claims due secrets and runs their rotations with a global and a
//! per-target concurrency limit, and purges expired deletions. Each claim's lease is renewed by
//! the engine while its rotation runs, and given back by the worker when the rotation leaves it
//! held — one claim at a time, never the process's others (an API rotation in the same process
//! keeps its own).
//!
//! Shutdown (the token is cancelled, by SIGINT/SIGTERM in the binary): it stops claiming, asks
//! in-flight rotations to stop after their current step, waits up to the drain timeout, aborts
//! what is left (each job's progress is saved after every step), releases the leases of the
//! claims it holds so another worker resumes at once, and returns. [`run_due`] is the one-shot variant behind
//! `rotor rotate --due`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::engine::{release, still_held, Claim, Engine, Outcome};
use crate::error::Result;
use crate::model::SecretName;
use crate::store::Store;

/// How often the worker purges secrets whose recovery window has ended.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// How often a worker with `secret_due_soon` webhooks looks for secrets due soon.
const DUE_SOON_EVERY: Duration = Duration::from_secs(30);
/// How often a worker that serves metrics counts due and failed secrets.
const GAUGES_EVERY: Duration = Duration::from_secs(5);

pub use crate::config::WorkerConfig;

/// One finished rotation task: the secret and how it ended.
pub type Finished = (SecretName, Result<Outcome>);

/// Runs the worker until `shutdown` is cancelled.
pub async fn run(
    engine: Arc<Engine>,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let store = engine.store().clone();
    let owner = engine.config().owner.clone();
    let lease = engine.config().lease;
    tracing::info!(owner = %owner, store = store.backend().name(), concurrency = config.concurrency, "worker started");
    let mut held = Claims::default();
    let stop_steps = CancellationToken::new();
    let global = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let gates = Gates::new(config.per_target);
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    let mut purge = tokio::time::interval(PURGE_EVERY);
    let mut gauges = tokio::time::interval(GAUGES_EVERY);
    let mut due_soon = tokio::time::interval(DUE_SOON_EVERY);
    let mut announced = crate::notify::DueSoon::default();
    let notifier = engine.notifier().cloned();

    loop {
        while let Some(done) = tasks.try_join_next() {
            held.end(&store, done).await;
        }
        let free = global.available_permits();
        let mut full_batch = false;
        if free > 0 && !shutdown.is_cancelled() {
            match store
                .claim_due_except(&owner, lease, free, &gates.busy())
                .await
            {
                Ok(claims) => {
                    full_batch = claims.len() == free;
                    for claim in claims.into_iter().map(Claim::granted) {
                        let permit = global
                            .clone()
                            .try_acquire_owned()
                            .expect("a permit per free slot");
                        held.start(&claim);
                        spawn_rotation(
                            &mut tasks,
                            &engine,
                            &gates,
                            &stop_steps,
                            claim,
                            Some(permit),
                        );
                    }
                }
                Err(e) => {
                    crate::telemetry::store_error();
                    tracing::warn!(error = %e, "claiming due secrets failed")
                }
            }
        }
        if full_batch {
            continue; // more may be due right now
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(config.poll) => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                held.end(&store, done).await;
            }
            _ = gauges.tick(), if config.metrics => crate::telemetry::count_secrets(&store).await,
            _ = due_soon.tick(), if notifier.is_some() => {
                if let Some(n) = &notifier {
                    announced.check(n, &store).await;
                }
            }
            _ = purge.tick() => purge_old(&store, config.audit_retention).await,
        }
    }

    tracing::info!(
        in_flight = tasks.len(),
        "stopping: in-flight rotations finish their current step"
    );
    stop_steps.cancel();
    let drained = tokio::time::timeout(config.drain_timeout, async {
        while let Some(done) = tasks.join_next().await {
            held.end(&store, done).await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            aborted = tasks.len(),
            "drain timeout: aborting steps still running"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let released = held.release_all(&store).await;
    tracing::info!(released, "worker stopped");
    Ok(())
}

/// Purges secrets whose recovery window ended and audit records past their retention.
async fn purge_old(store: &Store, audit_retention: Option<Duration>) {
    match store.purge_expired().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(secrets = n, "purged secrets whose recovery window ended"),
        Err(e) => tracing::warn!(error = %e, "purge of deleted secrets failed"),
    }
    if let Some(retention) = audit_retention {
        match store.prune_audit(retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "pruned audit records past their retention"),
            Err(e) => tracing::warn!(error = %e, "pruning the audit log failed"),
        }
    }
}

/// One pass over everything due: rotates it (with the same limits as the worker) and returns
/// how each rotation ended (`on_done` hears of each as it ends). Secrets that become due again
/// during the pass wait for the next.
pub async fn run_due(
    engine: Arc<Engine>,
    config: &WorkerConfig,
    stop: &CancellationToken,
    on_done: &(dyn Fn(&Finished) + Sync),
) -> Result<Vec<Finished>> {
    let store = engine.store().clone();
    let owner = engine.config().owner.clone();
    let mut held = Claims::default();
    let gates = Gates::new(config.per_target);
    let mut seen = HashSet::new();
    let mut results = Vec::new();
    let outcome = async {
        while !stop.is_cancelled() {
            let claims = store
                .claim_due(&owner, engine.config().lease, config.concurrency.max(1))
                .await?;
            let mut fresh = Vec::new();
            for claim in claims.into_iter().map(Claim::granted) {
                if seen.insert(claim.secret_id) {
                    fresh.push(claim);
                } else {
                    // Due again during this pass: it waits for the next, unclaimed.
                    release(&store, &claim).await;
                }
            }
            if fresh.is_empty() {
                break;
            }
            let mut tasks = JoinSet::new();
            for claim in fresh {
                held.start(&claim);
                spawn_rotation(&mut tasks, &engine, &gates, stop, claim, None);
            }
            while let Some(done) = tasks.join_next().await {
                if let Ok(finished) = &done {
                    on_done(finished);
                }
                if let Some(finished) = held.end(&store, done).await {
                    results.push(finished);
                }
            }
        }
        Ok::<_, crate::Error>(())
    }
    .await;
    held.release_all(&store).await;
    outcome.map(|_| results)
}

fn spawn_rotation(
    tasks: &mut JoinSet<Finished>,
    engine: &Arc<Engine>,
    gates: &Gates,
    stop: &CancellationToken,
    claim: Claim,
    permit: Option<OwnedSemaphorePermit>,
) {
    let (engine, gates, stop) = (engine.clone(), gates.clone(), stop.clone());
    tasks.spawn(async move {
        let _permit = permit;
        let _gate = gates.enter(claim.target.as_deref()).await;
        let outcome = engine.rotate(&claim, false, &stop).await;
        (claim.name.clone(), outcome)
    });
}

/// The claims a worker's rotation tasks hold, by secret.
#[derive(Default)]
struct Claims(HashMap<SecretName, Claim>);

impl Claims {
    fn start(&mut self, claim: &Claim) {
        self.0.insert(claim.name.clone(), claim.clone());
    }

    /// A rotation task ended: logs how, and gives its lease back if the rotation left it held.
    async fn end(
        &mut self,
        store: &Store,
        done: std::result::Result<Finished, tokio::task::JoinError>,
    ) -> Option<Finished> {
        match done {
            Ok((name, result)) => {
                match &result {
                    Ok(outcome) => tracing::debug!(secret = %name, ?outcome, "rotation task ended"),
                    Err(e) => tracing::warn!(secret = %name, error = %e, "rotation task failed"),
                }
                if let Some(claim) = self.0.remove(&name) {
                    if still_held(&result) {
                        release(store, &claim).await;
                    }
                }
                Some((name, result))
            }
            Err(e) => {
                if !e.is_cancelled() {
                    tracing::error!(error = %e, "rotation task panicked");
                }
                None
            }
        }
    }

    /// Gives back the leases of claims whose tasks never reported (aborted or panicked).
    async fn release_all(&mut self, store: &Store) -> usize {
        let left: Vec<Claim> = self.0.drain().map(|(_, c)| c).collect();
        for claim in &left {
            release(store, claim).await;
        }
        left.len()
    }
}

/// Per-target concurrency limits.
#[derive(Clone)]
struct Gates {
    per_target: usize,
    targets: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl Gates {
    fn new(per_target: usize) -> Self {
        Gates {
            per_target: per_target.max(1),
            targets: Arc::default(),
        }
    }

    /// Targets with no free slot right now: the worker claims nothing more for them.
    fn busy(&self) -> Vec<String> {
        let targets = self.targets.lock().expect("gates poisoned");
        targets
            .iter()
            .filter(|(_, gate)| gate.available_permits() == 0)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Waits for a slot on `target`; secrets without a target pass freely.
    async fn enter(&self, target: Option<&str>) -> Option<OwnedSemaphorePermit> {
        let target = target?;
        let gate = {
            let mut targets = self.targets.lock().expect("gates poisoned");
            targets
                .entry(target.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_target)))
                .clone()
        };
        gate.acquire_owned().await.ok()
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    // The handlers are installed here, before the caller goes on: a signal that arrives while
    // the worker starts is caught, never the default action (which would kill the process).
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutdown signal received");
            token.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
        token.cancel();
    });
}
