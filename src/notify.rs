//! Webhook notifications: rotation failed or succeeded, a secret marked failed, a secret due
//! soon — sent as JSON to every `[[webhook]]` that asks for the event, signed with HMAC-SHA256.
//!
//! The engine only queues a notice (a bounded channel; when it is full the notice is dropped
//! and logged), so a delivery never blocks or fails a rotation. Each delivery runs on its own
//! task: a connection error, a timeout, a 429 or a 5xx is retried with exponential backoff and
//! jitter (1 s doubling to 5 min) up to the webhook's `max_attempts`; another 4xx ends it.
//!
//! Notices about one secret reach each webhook in the order they happened: a delivery waits
//! for the previous one about the same secret to end (delivered or given up).
//!
//! Each request carries `X-Rotor-Event`, `X-Rotor-Delivery` (the same on every retry),
//! `X-Rotor-Timestamp` (Unix seconds of this attempt) and `X-Rotor-Signature: v1=HEX`, the
//! HMAC-SHA256 of `TIMESTAMP.BODY` under the webhook's secret. A receiver recomputes it over the
//! raw body, compares in constant time and refuses old timestamps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use zeroize::Zeroizing;

pub use crate::config::Event;
use crate::config::WebhookSettings;
use crate::error::{Error, Result};

/// Notices waiting for the dispatcher; more are dropped (and logged).
const QUEUE: usize = 1024;
/// Deliveries in flight at once.
const IN_FLIGHT: usize = 64;
/// The largest webhook secret file read.
const MAX_KEY_FILE: u64 = 4096;
/// The longest wait between two attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// One event about one secret: names, kinds and reasons, never a value.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Notice {
    /// What happened.
    pub event: Event,
    /// The secret's name.
    #[serde(rename = "SecretName")]
    pub secret: String,
    /// The secret's type.
    pub secret_type: String,
    /// The version concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Attempts made, for failures and retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// When the secret rotates next (`secret_due_soon`), or retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_date: Option<String>,
    /// `true` when a failed rotation that replaces the one credential in place could not put
    /// `ACSCurrent` back: the target holds the pending credential (`VersionId`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_holds_pending: Option<bool>,
    /// When it happened.
    pub time: String,
}

impl Notice {
    /// A notice of `event` about `secret` of `secret_type`, stamped now, with nothing else set.
    pub fn new(event: Event, secret: &str, secret_type: &str) -> Notice {
        Notice {
            event,
            secret: secret.to_owned(),
            secret_type: secret_type.to_owned(),
            version_id: None,
            error: None,
            attempts: None,
            next_rotation_date: None,
            target_holds_pending: None,
            time: crate::clock::format_ms(chrono::Utc::now().timestamp_millis()),
        }
    }
}

/// A webhook ready to send: its settings and its signing key.
struct Hook {
    settings: WebhookSettings,
    key: Zeroizing<Vec<u8>>,
}

impl Hook {
    fn wants(&self, event: Event) -> bool {
        self.settings.events.is_empty() || self.settings.events.contains(&event)
    }

    /// Whether a secret rotating `ahead` from now is within this webhook's `due_soon`.
    fn due_soon(&self, ahead: Duration) -> bool {
        self.wants(Event::SecretDueSoon) && ahead <= self.settings.due_soon
    }
}

/// The sending side: cheap to clone; queues notices for the dispatcher task.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Notice>,
    hooks: Arc<Vec<Hook>>,
}

/// The dispatcher task, to wait for on shutdown.
pub struct Dispatcher {
    task: tokio::task::JoinHandle<()>,
}

impl Notifier {
    /// Reads the webhooks' secrets and starts the dispatcher; `None` without webhooks.
    pub fn start(webhooks: &[WebhookSettings]) -> Result<Option<(Notifier, Dispatcher)>> {
        if webhooks.is_empty() {
            return Ok(None);
        }
        let hooks = webhooks
            .iter()
            .map(|settings| {
                Ok(Hook {
                    key: signing_key(settings)?,
                    settings: settings.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let hooks = Arc::new(hooks);
        let client = reqwest::Client::builder()
            .user_agent(concat!("rotor/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::config(format!("webhook client: {e}")))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(dispatch(rx, hooks.clone(), client));
        Ok(Some((Notifier { tx, hooks }, Dispatcher { task })))
    }

    /// Queues `notice` for every webhook that wants it; never waits.
    pub fn send(&self, notice: Notice) {
        if !self.hooks.iter().any(|h| h.wants(notice.event)) {
            return;
        }
        if let Err(e) = self.tx.try_send(notice) {
            let notice = match e {
                mpsc::error::TrySendError::Full(n) | mpsc::error::TrySendError::Closed(n) => n,
            };
            tracing::warn!(event = notice.event.as_str(), secret = %notice.secret, "webhook queue full; notice dropped");
        }
    }

    /// The longest `due_soon` of the webhooks that want `secret_due_soon`.
    pub fn due_soon_window(&self) -> Option<Duration> {
        self.hooks
            .iter()
            .filter(|h| h.wants(Event::SecretDueSoon))
            .map(|h| h.settings.due_soon)
            .max()
    }
}

impl Dispatcher {
    /// Lets queued and retrying deliveries finish for up to `grace` once every [`Notifier`] is
    /// dropped, then abandons the rest (logged).
    pub async fn finish(self, grace: Duration) {
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!("webhook deliveries still pending at exit were abandoned");
            task.abort();
        }
    }
}

fn signing_key(settings: &WebhookSettings) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(secret) = &settings.secret {
        return Ok(Zeroizing::new(secret.as_bytes().to_vec()));
    }
    let path = settings
        .secret_file
        .as_ref()
        .ok_or_else(|| Error::config("a webhook has no signing secret"))?;
    let text = crate::files::read_checked(
        path,
        "webhook secret file",
        crate::files::Kind::Private,
        MAX_KEY_FILE,
    )?;
    let end = text
        .iter()
        .rposition(|b| !matches!(b, b'\n' | b'\r'))
        .map_or(0, |i| i + 1);
    let key = text[..end].to_vec();
    if key.len() < 16 {
        return Err(Error::config(format!(
            "webhook secret file {} holds fewer than 16 bytes",
            path.display()
        )));
    }
    Ok(Zeroizing::new(key))
}

/// `v1=HEX(HMAC-SHA256(key, TIMESTAMP "." BODY))`.
pub fn signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

async fn dispatch(mut rx: mpsc::Receiver<Notice>, hooks: Arc<Vec<Hook>>, client: reqwest::Client) {
    let mut deliveries = JoinSet::new();
    // Per webhook and secret, the last delivery's "done" signal: the next notice about that
    // secret waits for it, so a receiver hears one secret's events in the order they happened
    // (`secret_failed` after the last `rotation_failed`), while secrets go on in parallel.
    let mut last: HashMap<(usize, String), oneshot::Receiver<()>> = HashMap::new();
    while let Some(notice) = rx.recv().await {
        let body: Arc<[u8]> = serde_json::to_vec(&notice)
            .expect("a notice serialises")
            .into();
        for (index, hook) in hooks.iter().enumerate() {
            if !hook.wants(notice.event) {
                continue;
            }
            while deliveries.len() >= IN_FLIGHT {
                deliveries.join_next().await;
            }
            let (done, next) = oneshot::channel();
            let after = last.insert((index, notice.secret.clone()), next);
            let delivery = Delivery {
                id: crate::crypto::random_id(),
                event: notice.event,
                secret: notice.secret.clone(),
                body: body.clone(),
            };
            let (client, hooks) = (client.clone(), hooks.clone());
            deliveries.spawn(async move {
                if let Some(after) = after {
                    // Sent or dropped, the earlier delivery has ended either way.
                    let _ = after.await;
                }
                deliver(client, hooks, index, delivery).await;
                let _ = done.send(());
            });
        }
        while deliveries.try_join_next().is_some() {}
        // Forget the secrets whose last delivery has ended.
        last.retain(|_, rx| matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
    }
    while deliveries.join_next().await.is_some() {}
}

struct Delivery {
    id: String,
    event: Event,
    secret: String,
    body: Arc<[u8]>,
}

/// Sends one notice to one webhook, retrying until it is taken, refused for good, or out of
/// attempts.
async fn deliver(client: reqwest::Client, hooks: Arc<Vec<Hook>>, index: usize, d: Delivery) {
    let hook = &hooks[index];
    let s = &hook.settings;
    let url = crate::redact::webhook_url(&s.url);
    for attempt in 1..=s.max_attempts {
        let timestamp = chrono::Utc::now().timestamp();
        let sent = client
            .post(&s.url)
            .timeout(s.timeout)
            .header("Content-Type", "application/json")
            .header("X-Rotor-Event", d.event.as_str())
            .header("X-Rotor-Delivery", &d.id)
            .header("X-Rotor-Timestamp", timestamp.to_string())
            .header(
                "X-Rotor-Signature",
                signature(&hook.key, timestamp, &d.body),
            )
            .body(d.body.to_vec())
            .send()
            .await;
        let retry = match sent {
            Ok(r) if r.status().is_success() => {
                tracing::debug!(%url, event = d.event.as_str(), secret = %d.secret, attempt, "webhook delivered");
                return;
            }
            Ok(r) => {
                let status = r.status();
                let retry =
                    status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408;
                tracing::warn!(%url, event = d.event.as_str(), secret = %d.secret, attempt, %status, "webhook refused the notice");
                retry
            }
            Err(e) => {
                tracing::warn!(%url, event = d.event.as_str(), secret = %d.secret, attempt, error = describe(&e), "webhook delivery failed");
                true
            }
        };
        if !retry {
            return;
        }
        if attempt < s.max_attempts {
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
    tracing::error!(%url, event = d.event.as_str(), secret = %d.secret, attempts = s.max_attempts, "webhook notice given up");
}

/// What went wrong, without reqwest's text (which names the URL, and a URL may carry a token).
fn describe(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    }
}

/// 1 s × 2^(attempt−1), capped, the upper half jittered.
fn backoff(attempt: u32) -> Duration {
    let full = Duration::from_secs(1)
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(BACKOFF_CAP);
    let half = full / 2;
    half + Duration::from_millis(rand::random_range(0..=half.as_millis() as u64))
}

/// Announces secrets whose rotation comes within a webhook's `due_soon`, once per scheduled
/// time (the worker calls it now and then).
#[derive(Default)]
pub struct DueSoon {
    announced: std::collections::HashSet<(String, i64)>,
}

impl DueSoon {
    /// Sends `secret_due_soon` for secrets whose rotation comes within a webhook's window and was not yet announced.
    pub async fn check(&mut self, notifier: &Notifier, store: &crate::store::Store) {
        let Some(window) = notifier.due_soon_window() else {
            return;
        };
        let now = store.clock().now_ms();
        let due = match store.rotating_within(window).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "listing secrets due soon failed");
                return;
            }
        };
        self.announced.retain(|(_, at)| *at > now);
        for (name, ty, at) in due {
            if !self.announced.insert((name.clone(), at)) {
                continue;
            }
            let ahead = Duration::from_millis(at.saturating_sub(now).max(0) as u64);
            if !notifier.hooks.iter().any(|h| h.due_soon(ahead)) {
                self.announced.remove(&(name, at));
                continue;
            }
            let mut notice = Notice::new(Event::SecretDueSoon, &name, &ty);
            notice.next_rotation_date = Some(crate::clock::format_ms(at));
            notifier.send(notice);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(key, b'1700000000.' + body, sha256).
        assert_eq!(
            signature(
                b"rotor-webhook-test-key",
                1_700_000_000,
                br#"{"Event":"secret_failed"}"#
            ),
            "v1=b828998c0f5bb7df25793cc29a3eb43d81c1f4518131dad8c7f3835d6617eaf5"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        for attempt in 1..20 {
            let d = backoff(attempt);
            assert!(d <= BACKOFF_CAP, "{attempt}: {d:?}");
        }
        assert!(backoff(1) <= Duration::from_secs(1));
        assert!(backoff(3) >= Duration::from_secs(2));
    }

    #[test]
    fn notices_serialise_without_empty_fields() {
        let n = Notice::new(Event::SecretFailed, "db/app", "Rds");
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(json["Event"], "secret_failed");
        assert_eq!(json["SecretName"], "db/app");
        assert!(json.get("Error").is_none());
    }
}
