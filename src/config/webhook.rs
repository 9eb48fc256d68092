//! `[[webhook]]`: where notifications go, which events each hears and how they are signed.
//! [`crate::notify`] sends them.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One `[[webhook]]`: where events go and how they are signed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where events are posted.
    pub url: String,
    /// Which events it hears; all of them when empty.
    #[serde(default)]
    pub events: Vec<Event>,
    /// The HMAC-SHA256 signing secret (then the file holding this setting must be private), …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// … or the file holding it (owner-only, like the master key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// Give up on an event after this many attempts.
    #[serde(default = "webhook_attempts")]
    pub max_attempts: u32,
    /// One delivery attempt's limit.
    #[serde(default = "webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// For `secret_due_soon`: how long before its rotation a secret is announced.
    #[serde(default = "webhook_due_soon", with = "humantime_serde")]
    pub due_soon: Duration,
}

fn webhook_attempts() -> u32 {
    8
}
fn webhook_timeout() -> Duration {
    Duration::from_secs(10)
}
fn webhook_due_soon() -> Duration {
    Duration::from_secs(86_400)
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &crate::redact::webhook_url(&self.url))
            .field("events", &self.events)
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .field("secret_file", &self.secret_file)
            .finish_non_exhaustive()
    }
}

/// What a webhook can ask to hear about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// An attempt failed (it is retried, or the secret is marked failed).
    RotationFailed,
    /// A new version was promoted to `ACSCurrent`.
    RotationSucceeded,
    /// The cycle gave up: the secret is marked failed (its current credential untouched or put
    /// back, unless `TargetHoldsPending` says otherwise).
    SecretFailed,
    /// The secret's next rotation is within the webhook's `due_soon`.
    SecretDueSoon,
    /// A drift check found the target refusing a credential the secret must take.
    SecretDrifted,
}

impl Event {
    /// The event's name (`rotation_failed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Event::RotationFailed => "rotation_failed",
            Event::RotationSucceeded => "rotation_succeeded",
            Event::SecretFailed => "secret_failed",
            Event::SecretDueSoon => "secret_due_soon",
            Event::SecretDrifted => "secret_drifted",
        }
    }
}
