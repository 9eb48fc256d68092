//! Keeping a claim's lease while its rotation runs, and giving it back.
//!
//! [`Keeper`] renews one claim's lease every third of its length while the engine drives it —
//! whoever started the rotation (worker, `rotor rotate`, the API). When the lease can no longer
//! be held (the store says another claim has it, or renewals fail until only a sixth of the
//! lease is left), it cancels [`Keeper::lost`]: the step in flight is dropped with its target
//! connections, and no new target operation starts ([`Keeper::ensure_time`] refuses one within
//! the last third of the lease). [`Held`] gives a claim's lease back when a rotation started on
//! request ends without having done so itself, or is dropped half-way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Outcome;
use crate::error::{Error, Result};
use crate::store::{Lease, Store};

/// One claim of one secret: the lease the store granted, under a token of its own (not the
/// process's), so that every job write names the claim it belongs to. A claim that lost its
/// lease fails its next write; a second claim of the same secret, in this process or another,
/// is never granted while the lease lives. The store's writes take it as the [`Lease`] it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim(Lease);

impl Claim {
    /// A lease the store has just granted. A lease taken over from a holder that stopped
    /// renewing it (or a process on this host that is gone) is logged and counted.
    pub fn granted(lease: Lease) -> Claim {
        if let Some(from) = &lease.taken_from {
            tracing::warn!(secret = %lease.name, previous = %from, "took over a lease its holder no longer keeps (it stopped renewing it, or its process on this host is gone)");
            crate::telemetry::lease_takeover();
        }
        Claim(lease)
    }

    /// The store's lease record.
    pub fn lease(&self) -> &Lease {
        &self.0
    }
}

impl std::ops::Deref for Claim {
    type Target = Lease;
    fn deref(&self) -> &Lease {
        &self.0
    }
}

/// Renews one claim's lease until dropped.
pub(crate) struct Keeper {
    lost: CancellationToken,
    /// Until when the lease is surely ours (renewed at, plus its length), on this process's
    /// monotonic clock: it runs on while the process is stopped.
    fresh_until: Arc<Mutex<Instant>>,
    margin: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl Keeper {
    /// Starts renewing `claim`, which the store has granted for `lease`. The lease runs from
    /// when the claim was asked for (its expiry was computed then), not from the answer: a
    /// grant that came late (the store restarting, a lock, a wait for a per-target slot) may
    /// be expired already, and another claim — of this process too — may take it over. Such a
    /// claim is renewed before anything runs: if it is still this claim's, it is again for a
    /// whole lease; if not, the keeper stops the rotation before its first step.
    pub(crate) async fn start(store: Store, claim: Claim, lease: Duration) -> Keeper {
        let lost = CancellationToken::new();
        let margin = lease / 3;
        let mut until = claim.asked_at + lease;
        if Instant::now() + margin >= until {
            let asked = Instant::now();
            if let Ok(Ok(true)) =
                tokio::time::timeout(margin, store.renew_claim(&claim, lease)).await
            {
                until = asked + lease;
            }
        }
        let fresh_until = Arc::new(Mutex::new(until));
        let task = {
            let (lost, fresh_until) = (lost.clone(), fresh_until.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(margin.max(Duration::from_millis(10)));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    let until = *fresh_until.lock().expect("lease clock");
                    tokio::select! {
                        _ = tick.tick() => {}
                        // Half a margin before the end: one failed renewal is survived,
                        // and the step is dropped well before another claim may start.
                        _ = tokio::time::sleep_until(until - margin / 2) => {
                            tracing::warn!(secret = %claim.name, "the lease could not be renewed in time; stopping the rotation before it runs out");
                            lost.cancel();
                            return;
                        }
                    }
                    let asked = Instant::now();
                    match tokio::time::timeout(margin, store.renew_claim(&claim, lease)).await {
                        Ok(Ok(true)) => *fresh_until.lock().expect("lease clock") = asked + lease,
                        Ok(Ok(false)) => {
                            tracing::warn!(secret = %claim.name, "the lease passed to another claim; stopping the rotation");
                            lost.cancel();
                            return;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(secret = %claim.name, error = %e, "renewing the lease failed; trying again")
                        }
                        Err(_) => {
                            tracing::warn!(secret = %claim.name, "renewing the lease timed out; trying again")
                        }
                    }
                }
            })
        };
        Keeper {
            lost,
            fresh_until,
            margin,
            task,
        }
    }

    /// Cancelled once the lease can no longer be held.
    pub(crate) fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Refuses to start a target operation unless more than a third of the lease is left.
    pub(crate) fn ensure_time(&self, claim: &Claim) -> Result<()> {
        let until = *self.fresh_until.lock().expect("lease clock");
        if self.lost.is_cancelled() || Instant::now() + self.margin >= until {
            return Err(Error::Lease(format!(
                "secret '{}': the lease is running out; no target operation starts now",
                claim.name
            )));
        }
        Ok(())
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A claim taken on request (`rotor rotate NAME`, the API's `RotateSecret`): its lease is given
/// back when the rotation leaves it held (stopped between steps, or an error), or when the
/// request is dropped half-way.
pub struct Held {
    store: Store,
    claim: Option<Claim>,
}

impl Held {
    /// Holds `claim`, taken on `store`, until [`Held::end`].
    pub fn new(store: Store, claim: Claim) -> Held {
        Held {
            store,
            claim: Some(claim),
        }
    }

    /// The claim held.
    pub fn claim(&self) -> &Claim {
        self.claim.as_ref().expect("held until ended")
    }

    /// Ends the claim after its rotation returned `result`.
    pub async fn end(mut self, result: &Result<Outcome>) {
        if let Some(claim) = self.claim.take() {
            if still_held(result) {
                release(&self.store, &claim).await;
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let store = self.store.clone();
                runtime.spawn(async move { release(&store, &claim).await });
            }
        }
    }
}

/// True when a rotation that returned `result` left its claim's lease in place (every other
/// ending gives it up in the store write that ends it).
pub fn still_held(result: &Result<Outcome>) -> bool {
    matches!(result, Ok(Outcome::Interrupted { .. }) | Err(_))
}

/// Gives `claim`'s lease back, logging (not failing) when the store cannot.
pub async fn release(store: &Store, claim: &Claim) {
    if let Err(e) = store.release_claim(claim).await {
        tracing::warn!(secret = %claim.name, error = %e, "giving the lease back failed; it expires on its own");
    }
}
