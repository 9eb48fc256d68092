//! Nonces: each `SignatureNonce` is accepted once, across every server sharing the store.
//!
//! The store's `api_nonces` table is the record ([`Recorder`]): a nonce is accepted only after
//! an insert of it has committed (a durable commit: `synchronous_commit` stays on, so a crash
//! cannot forget a nonce a client was answered for), and refused (`SignatureNonceUsed`) when the
//! insert conflicts with a row any server wrote. Concurrent requests' nonces go to the store
//! together: one task gathers what arrived while the previous statements ran and records up to
//! [`MAX_NONCE_BATCH`] in one statement (a few statements in flight at once), so a request
//! waits for about one round trip and the store sees one commit per batch, not per request.
//! More requests waiting than [`MAX_WAITING`] are throttled (`Rejected.Throttling`, 429), never
//! let through unchecked; if the store fails, the request is refused. Rows are pruned once a
//! request signed then would fail the timestamp check (plus [`PRUNE_SKEW`] for servers whose
//! clocks differ).
//!
//! In front of it, each server keeps a bounded local cache ([`Nonces`]) as a fast first check:
//! a nonce this server saw lately is refused without a round trip, and one batch never holds a
//! nonce twice. The cache holds 65,536 nonces as 64-bit keyed hashes (SipHash with a
//! per-process random key; about 2 MB, taken at start); when full, the oldest goes — the store
//! still remembers it, so nothing is refused for being old or let through for being forgotten.

use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::ApiError;
use crate::store::{NonceKey, Store, MAX_NONCE_BATCH};

/// Nonces this server remembers locally.
pub const DEFAULT_CAPACITY: usize = 65_536;
/// The longest nonce kept (longer ones are refused).
const MAX_NONCE: usize = 128;
/// Requests waiting for their nonce to be recorded, at most.
pub const MAX_WAITING: usize = 16_384;
/// Record statements running at once (each holds one store connection).
const IN_FLIGHT: usize = 4;
/// How often old nonces are pruned from the store.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Rows are kept this much longer than the signature window, for servers whose clocks differ.
pub const PRUNE_SKEW: Duration = Duration::from_secs(60);

/// Refuses a nonce that is empty or too long to be kept.
pub fn check_length(nonce: &str) -> Result<(), ApiError> {
    if nonce.is_empty() || nonce.len() > MAX_NONCE {
        return Err(ApiError::invalid(format!(
            "SignatureNonce must be 1 to {MAX_NONCE} characters."
        )));
    }
    Ok(())
}

/// `SignatureNonceUsed`: the nonce was seen already.
pub fn used() -> ApiError {
    ApiError::new(
        400,
        "SignatureNonceUsed",
        "Specified signature nonce was used already.",
    )
}

/// This server's recent nonces, bounded.
pub struct Nonces {
    hasher: RandomState,
    seen: HashSet<u64>,
    /// (signed timestamp, nonce hash), in arrival order.
    order: VecDeque<(i64, u64)>,
    capacity: usize,
}

impl Nonces {
    /// A cache for `capacity` nonces, taking its whole memory now (the tables are filled once
    /// and emptied, so their pages are resident from the start): the server's memory does not
    /// grow with the requests it serves.
    pub fn new(capacity: usize) -> Nonces {
        let capacity = capacity.max(1);
        // Room for twice the entries: with removals leaving tombstones, a table more than half
        // full would double itself when it runs out of free slots; at most half full, it
        // cleans up in place.
        let mut seen = HashSet::with_capacity(2 * capacity);
        let mut order = VecDeque::with_capacity(capacity);
        for i in 0..2 * capacity as u64 {
            seen.insert(i);
        }
        for i in 0..capacity as u64 {
            order.push_back((0, i));
        }
        seen.clear();
        order.clear();
        Nonces {
            hasher: RandomState::new(),
            seen,
            order,
            capacity,
        }
    }

    /// Notes `nonce` of a request signed at `timestamp` (Unix seconds), or refuses it if this
    /// server saw it within the window.
    pub fn check(
        &mut self,
        nonce: &str,
        timestamp: i64,
        now: i64,
        window: i64,
    ) -> Result<(), ApiError> {
        check_length(nonce)?;
        // Entries older than the window cannot be replayed anyway.
        while let Some((at, _)) = self.order.front() {
            if *at >= now - window {
                break;
            }
            let (_, old) = self.order.pop_front().expect("front exists");
            self.seen.remove(&old);
        }
        let hash = self.hasher.hash_one(nonce);
        if !self.seen.insert(hash) {
            return Err(used());
        }
        if self.order.len() >= self.capacity {
            // The store still holds what this cache forgets.
            let (_, old) = self.order.pop_front().expect("full");
            self.seen.remove(&old);
        }
        self.order.push_back((timestamp, hash));
        Ok(())
    }

    /// Forgets `nonce` again (its request was refused before the store could record it, so
    /// the client may send it again).
    pub fn forget(&mut self, nonce: &str) {
        self.seen.remove(&self.hasher.hash_one(nonce));
    }

    /// Nonces remembered now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// One request waiting for its nonce to be recorded: the answer is whether it was new, or
/// `None` if the store failed.
struct Waiting {
    key: NonceKey,
    signed_at_ms: i64,
    answer: oneshot::Sender<Option<bool>>,
}

/// Records nonces in the store, batching concurrent requests. Cheap to clone; the task behind
/// it ends when the last clone is dropped.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Waiting>,
}

impl Recorder {
    /// Starts the recording task (and the pruning of old rows, every [`PRUNE_EVERY`]).
    pub fn start(store: Store, window: Duration) -> Recorder {
        let (queue, waiting) = mpsc::channel(MAX_WAITING);
        tokio::spawn(record(store, window, waiting));
        Recorder { queue }
    }

    /// Records `nonce` of a request signed at `timestamp` (Unix seconds): `true` once it is in
    /// the store and was not there before, `false` if it was (a replay).
    pub async fn record(&self, nonce: &str, timestamp: i64) -> Result<bool, ApiError> {
        let (answer, answered) = oneshot::channel();
        let waiting = Waiting {
            key: NonceKey::of(nonce),
            signed_at_ms: timestamp.saturating_mul(1000),
            answer,
        };
        if self.queue.try_send(waiting).is_err() {
            return Err(ApiError::new(
                429,
                "Rejected.Throttling",
                "Too many requests waiting for their nonces to be checked; retry.",
            ));
        }
        match answered.await {
            Ok(Some(fresh)) => Ok(fresh),
            Ok(None) | Err(_) => Err(ApiError::new(
                500,
                "InternalFailure",
                "The request's nonce could not be checked; see rotor's log.",
            )),
        }
    }
}

/// The recording task: gathers waiting nonces, records each batch in one statement (up to
/// [`IN_FLIGHT`] at once), and prunes old rows on a timer.
async fn record(store: Store, window: Duration, mut waiting: mpsc::Receiver<Waiting>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // A free slot first: what arrives while every slot is busy joins the next batch.
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let first = tokio::select! {
            next = waiting.recv() => match next {
                Some(w) => w,
                None => break,
            },
            _ = prune.tick() => {
                let before = chrono::Utc::now().timestamp_millis()
                    - (window + PRUNE_SKEW).as_millis() as i64;
                let store = store.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = store.prune_nonces(before).await {
                        tracing::warn!(error = %e, "pruning old API nonces failed");
                    }
                });
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_NONCE_BATCH {
            match waiting.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let rows: Vec<_> = batch.iter().map(|w| (w.key, w.signed_at_ms)).collect();
            let fresh = match store.record_nonces(&rows).await {
                Ok(fresh) => fresh.into_iter().map(Some).collect(),
                Err(e) => {
                    tracing::error!(error = %e, "recording API nonces in the store failed");
                    vec![None; batch.len()]
                }
            };
            for (w, fresh) in batch.into_iter().zip(fresh) {
                let _ = w.answer.send(fresh);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_is_refused_and_memory_stays_bounded() {
        let mut n = Nonces::new(100);
        n.check("a", 1000, 1000, 900).unwrap();
        assert_eq!(
            n.check("a", 1000, 1000, 900).unwrap_err().code,
            "SignatureNonceUsed"
        );
        for i in 0..10_000 {
            n.check(&format!("n{i}"), 1001 + i / 50, 1001 + i / 50, 900)
                .unwrap();
        }
        assert_eq!(n.len(), 100);
        // Older than what the cache holds: left to the store, not refused here.
        n.check("fresh", 1001, 1200, 900).unwrap();
        assert!(n.check("", 1200, 1200, 900).is_err());
        assert!(n.check(&"x".repeat(129), 1200, 1200, 900).is_err());
        // Entries older than the window leave.
        n.check("later", 3000, 3000, 900).unwrap();
        assert_eq!(n.len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn never_more_than_capacity_and_never_a_repeat(
            nonces in proptest::collection::vec(("[a-z]{1,3}", 0i64..50), 1..400)
        ) {
            let mut n = Nonces::new(32);
            let mut accepted = std::collections::HashSet::new();
            for (nonce, at) in nonces {
                if n.check(&nonce, 1000 + at, 1050, 900).is_ok() {
                    // Accepted twice only if the first acceptance left the cache.
                    proptest::prop_assert!(accepted.insert(nonce.clone()) || n.len() == 32);
                }
                proptest::prop_assert!(n.len() <= 32);
            }
        }
    }
}
