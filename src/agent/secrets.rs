//! What the agent knows of each secret it watches, and how it stays current: every `poll`
//! (less a random quarter, so agents started together drift apart) it asks which version is
//! `ACSCurrent` — `ListSecretVersionIds`, no value decrypted — and reads the value only when
//! that version changed. An API that cannot be reached keeps every last good value and is
//! retried with backoff; a refusal for one secret (a policy without it, a deleted secret) is
//! logged when it changes and keeps that secret's last value too.
//!
//! Users of the values ([`super::render`], [`super::exec`], [`super::cache`]) hold a
//! [`Snapshot`] and are woken through [`Watcher::subscribe`] when one changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::client::{CallError, Client, Fetched};

/// Every secret's last good version, by name.
pub type Snapshot = Arc<BTreeMap<String, Arc<Fetched>>>;

/// The most secrets watched for the cache endpoint alone (beyond those templates and exec
/// mode use): past it, the one asked for least recently is dropped.
pub const MAX_CACHED: usize = 128;

/// The secrets an agent watches, polled by [`Watcher::run`].
pub struct Watcher {
    client: Client,
    poll: Duration,
    /// The secrets templates and exec mode use: watched for as long as the agent runs.
    names: Mutex<BTreeSet<String>>,
    /// The secrets the cache endpoint was asked for and could read, with when each was last
    /// asked for: watched while among the [`MAX_CACHED`] most recent and readable.
    cached: Mutex<HashMap<String, Instant>>,
    /// One pass or fetch at a time, so that snapshots are never written from two places.
    pass: tokio::sync::Mutex<()>,
    tx: watch::Sender<Snapshot>,
    /// When each secret's version was last confirmed with the API (for the cache's TTL).
    checked: Mutex<HashMap<String, Instant>>,
    /// The last refusal logged per secret, to log each once.
    refusals: Mutex<HashMap<String, String>>,
    /// Whether the key may call `ListSecretVersionIds`; without it every poll reads the value.
    may_list: AtomicBool,
}

impl Watcher {
    /// A watcher of no secret yet.
    pub fn new(client: Client, poll: Duration) -> Arc<Watcher> {
        Arc::new(Watcher {
            client,
            poll,
            names: Mutex::default(),
            cached: Mutex::default(),
            pass: tokio::sync::Mutex::new(()),
            tx: watch::Sender::new(Arc::default()),
            checked: Mutex::default(),
            refusals: Mutex::default(),
            may_list: AtomicBool::new(true),
        })
    }

    /// A receiver woken whenever a value changes.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.tx.subscribe()
    }

    /// The values now.
    pub fn snapshot(&self) -> Snapshot {
        self.tx.borrow().clone()
    }

    /// When `name`'s version was last confirmed with the API.
    pub fn checked_at(&self, name: &str) -> Option<Instant> {
        self.checked.lock().expect("checked map").get(name).copied()
    }

    /// Watches `names` too, from the next pass on.
    pub fn watch(&self, names: &BTreeSet<String>) {
        self.names
            .lock()
            .expect("names")
            .extend(names.iter().cloned());
    }

    /// Watches `names` too; those without a value yet are read now. Errors name what could
    /// not be read (the values that could are kept).
    pub async fn ensure(&self, names: &BTreeSet<String>) -> Result<(), CallError> {
        let missing: Vec<String> = {
            let mut watched = self.names.lock().expect("names");
            watched.extend(names.iter().cloned());
            let have = self.snapshot();
            names
                .iter()
                .filter(|n| !have.contains_key(*n))
                .cloned()
                .collect()
        };
        let mut first_error = None;
        for name in missing {
            if let Err(e) = self.fetch(&name).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Reads `name`'s `ACSCurrent` value now.
    pub async fn fetch(&self, name: &str) -> Result<Arc<Fetched>, CallError> {
        let _pass = self.pass.lock().await;
        self.fetch_now(name).await
    }

    /// Reads `name`'s `ACSCurrent` value now for the cache endpoint: watched from now on if it
    /// could be read (the least recently asked for dropped past [`MAX_CACHED`]), no longer
    /// watched if the API refused it.
    pub async fn fetch_cached(&self, name: &str) -> Result<Arc<Fetched>, CallError> {
        let _pass = self.pass.lock().await;
        let result = self.fetch_now(name).await;
        match &result {
            Ok(_) => {
                let evicted = {
                    let mut cached = self.cached.lock().expect("cached");
                    cached.insert(name.to_owned(), Instant::now());
                    let oldest = (cached.len() > MAX_CACHED)
                        .then(|| cached.iter().min_by_key(|(_, at)| **at))
                        .flatten()
                        .map(|(n, _)| n.clone());
                    oldest.inspect(|n| {
                        cached.remove(n);
                    })
                };
                if let Some(n) = evicted {
                    self.drop_unwatched(&n);
                }
            }
            Err(CallError::Refused { .. }) => {
                self.cached.lock().expect("cached").remove(name);
                self.drop_unwatched(name);
            }
            Err(CallError::Unreachable(_)) => {}
        }
        result
    }

    /// Notes that the cache endpoint served `name` (it stays among the most recent).
    pub fn used(&self, name: &str) {
        if let Some(at) = self.cached.lock().expect("cached").get_mut(name) {
            *at = Instant::now();
        }
    }

    /// Forgets `name`'s value unless something still watches it (called under `pass`).
    fn drop_unwatched(&self, name: &str) {
        if self.names.lock().expect("names").contains(name)
            || self.cached.lock().expect("cached").contains_key(name)
        {
            return;
        }
        self.checked.lock().expect("checked map").remove(name);
        self.refusals.lock().expect("refusals").remove(name);
        if self.snapshot().contains_key(name) {
            let mut next = BTreeMap::clone(&self.snapshot());
            next.remove(name);
            self.tx.send_replace(Arc::new(next));
        }
    }

    async fn fetch_now(&self, name: &str) -> Result<Arc<Fetched>, CallError> {
        let fetched = Arc::new(
            self.client
                .get_value(name, None)
                .await
                .inspect_err(|e| self.note(name, e))?,
        );
        self.store(fetched.clone());
        Ok(fetched)
    }

    /// One pass over every watched secret. `Err` when the API could not be reached (the pass
    /// stops there; the values stay).
    pub async fn refresh(&self) -> Result<(), CallError> {
        let _pass = self.pass.lock().await;
        let mut names: BTreeSet<String> = self.names.lock().expect("names").clone();
        names.extend(self.cached.lock().expect("cached").keys().cloned());
        for name in names {
            match self.refresh_one(&name).await {
                Ok(()) => {
                    self.refusals.lock().expect("refusals").remove(&name);
                }
                Err(e @ CallError::Unreachable(_)) => return Err(e),
                Err(e) => {
                    self.note(&name, &e);
                    // A secret only the cache endpoint asked for is not asked for again.
                    self.cached.lock().expect("cached").remove(&name);
                    self.drop_unwatched(&name);
                }
            }
        }
        Ok(())
    }

    async fn refresh_one(&self, name: &str) -> Result<(), CallError> {
        let have = self.snapshot().get(name).map(|f| f.version_id.clone());
        if self.may_list.load(Ordering::Relaxed) {
            match self.client.current_version(name).await {
                Ok(current) if Some(&current) == have.as_ref() => {
                    self.confirmed(name);
                    return Ok(());
                }
                Ok(current) => {
                    let fetched = self.client.get_value(name, Some(&current)).await?;
                    self.store(Arc::new(fetched));
                    return Ok(());
                }
                Err(CallError::Refused { code, .. }) if code == "Forbidden.NoPermission" => {
                    tracing::info!(
                        secret = %name,
                        "the AccessKey may not call ListSecretVersionIds: every poll reads the value"
                    );
                    self.may_list.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let fetched = self.client.get_value(name, None).await?;
        if Some(&fetched.version_id) == have.as_ref() {
            self.confirmed(name);
        } else {
            self.store(Arc::new(fetched));
        }
        Ok(())
    }

    fn confirmed(&self, name: &str) {
        self.checked
            .lock()
            .expect("checked map")
            .insert(name.to_owned(), Instant::now());
    }

    fn store(&self, fetched: Arc<Fetched>) {
        self.confirmed(&fetched.name);
        let changed = self
            .snapshot()
            .get(&fetched.name)
            .is_none_or(|old| old.version_id != fetched.version_id);
        if changed {
            tracing::info!(secret = %fetched.name, version = %fetched.version_id, "new version");
            let mut next = BTreeMap::clone(&self.snapshot());
            next.insert(fetched.name.clone(), fetched);
            self.tx.send_replace(Arc::new(next));
        }
    }

    /// Logs a refusal once per secret and message.
    fn note(&self, name: &str, e: &CallError) {
        let text = e.to_string();
        let mut seen = self.refusals.lock().expect("refusals");
        if seen.get(name) != Some(&text) {
            tracing::warn!(secret = %name, "{text}; its last good value stays in place");
            seen.insert(name.to_owned(), text);
        }
    }

    /// Polls until `cancel`: every `poll` less up to a quarter at random; after a pass that
    /// could not reach the API, again after a backoff (from 1 s, doubling, up to four polls).
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let wait = if failures == 0 {
                jittered(self.poll)
            } else {
                backoff(self.poll, failures)
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match self.refresh().await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!("rotor's API answers again");
                    }
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(
                            "{e}; the last good values stay in place, retrying with backoff"
                        );
                    } else {
                        tracing::debug!(failures, "{e}");
                    }
                }
            }
        }
    }
}

/// `poll` less up to a quarter of it, at random.
pub fn jittered(poll: Duration) -> Duration {
    let quarter = poll.as_millis() as u64 / 4;
    poll - Duration::from_millis(rand::random_range(0..=quarter))
}

/// The wait after `failures` passes in a row could not reach the API: 1 s doubling, at most
/// four polls (and at least 1 s), half of it at random.
pub fn backoff(poll: Duration, failures: u32) -> Duration {
    let cap = (poll * 4).max(Duration::from_secs(1));
    let wait = Duration::from_secs(1)
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(cap);
    let half = wait / 2;
    half + Duration::from_millis(rand::random_range(0..=half.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_stay_within_the_interval_and_backoff_within_its_cap() {
        let poll = Duration::from_secs(30);
        for _ in 0..100 {
            let w = jittered(poll);
            assert!(w <= poll && w >= poll * 3 / 4, "{w:?}");
        }
        assert!(backoff(poll, 1) <= Duration::from_secs(1));
        assert!(backoff(poll, 30) <= Duration::from_secs(120));
        assert!(backoff(poll, 30) >= Duration::from_secs(60));
        assert!(backoff(Duration::from_millis(200), 30) <= Duration::from_secs(1));
    }
}
