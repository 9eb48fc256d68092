//! What the store hands back: metadata views shaped like the cloud KMS responses (PascalCase
//! field names when serialised), and the one type that carries a plaintext value.

use std::time::Duration;

use rotators::{SecretKind, SecretValue};
use serde::Serialize;

use crate::clock::format_ms;
use crate::model::{RotationSchedule, SecretName, Stage, Tag, VersionId};

/// A secret's metadata, as `describe` and `list` show it.
#[derive(Clone, Debug)]
pub struct SecretInfo {
    /// The secret's name.
    pub name: SecretName,
    /// The kind of value it holds (type and optional sub-type).
    pub kind: SecretKind,
    /// Free-text description given at create or update.
    pub description: String,
    /// Name of the master key that encrypts its versions.
    pub key_name: String,
    /// Its tags.
    pub tags: Vec<Tag>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// When it was last updated, in milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// When a scheduled deletion takes effect (ms since the epoch), if one is scheduled.
    pub planned_delete_at: Option<i64>,
    /// The automatic rotation schedule; `None` when rotation is disabled.
    pub rotation: Option<RotationSchedule>,
    /// Random jitter added to each scheduled rotation time, if set.
    pub rotation_jitter: Option<Duration>,
    /// When the next scheduled rotation is due (ms since the epoch).
    pub next_rotation_at: Option<i64>,
    /// When the last rotation finished (ms since the epoch).
    pub last_rotation_at: Option<i64>,
    /// Where its rotation stands.
    pub rotation_status: RotationStatus,
    /// The step a rotation in flight runs next.
    pub rotation_step: Option<String>,
    /// Failed attempts of the rotation in flight.
    pub rotation_attempts: u32,
    /// The last error of the rotation in flight.
    pub rotation_error: Option<String>,
    /// Set when the last rotation cycle failed, until a rotation succeeds.
    pub rotation_failure: Option<RotationFailure>,
    /// The failed rotation left its `ACSPending` credential on the target, and `ACSCurrent`
    /// could not be put back: the target accepts the pending one, not the current one.
    pub target_holds_pending: bool,
    /// Name of the target its rotations update, if it has one.
    pub target: Option<String>,
    /// What its target's family stored beside it (account pair, database, RAM user, password
    /// rules; never a credential), for the family to describe; not in the JSON form.
    pub settings: Option<serde_json::Value>,
}

/// Where a secret's rotation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RotationStatus {
    /// No rotation in flight.
    Idle,
    /// A rotation in flight, no failure yet.
    Rotating,
    /// A rotation in flight that failed and waits for its next attempt.
    Retrying,
    /// The last cycle ran out of attempts (or hit a fatal error); the current credential is
    /// untouched or was put back (unless `target_holds_pending`), and the next cycle or a
    /// manual rotate tries again.
    Failed,
}

/// Why the last rotation cycle failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationFailure {
    /// The error that ended the cycle.
    pub reason: String,
    /// How many attempts the cycle made.
    pub attempts: u32,
    /// When the cycle failed (ms since the epoch).
    #[serde(serialize_with = "ser_time")]
    pub at: i64,
}

/// The KMS-shaped JSON form of [`SecretInfo`].
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SecretInfoJson<'a> {
    secret_name: &'a str,
    secret_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_type: Option<&'a str>,
    description: &'a str,
    encryption_key_id: &'a str,
    create_time: String,
    update_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    planned_delete_time: Option<String>,
    tags: &'a [Tag],
    automatic_rotation: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_cron: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_window: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_rotation_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_rotation_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_jitter: Option<String>,
    rotation_status: RotationStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_step: Option<&'a str>,
    #[serde(skip_serializing_if = "is_zero")]
    rotation_attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_failure: Option<&'a RotationFailure>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    target_holds_pending: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_name: Option<&'a str>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Serialize for SecretInfo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (interval, cron, window) = match &self.rotation {
            None => (None, None, None),
            Some(RotationSchedule::Interval(d)) => (Some(format!("{}s", d.as_secs())), None, None),
            Some(RotationSchedule::Cron { expression, window }) => (
                None,
                Some(expression.as_str()),
                window.map(|w| format!("{}s", w.as_secs())),
            ),
        };
        SecretInfoJson {
            secret_name: self.name.as_str(),
            secret_type: self.kind.ty.as_str(),
            sub_type: self.kind.sub.map(|s| s.as_str()),
            description: &self.description,
            encryption_key_id: &self.key_name,
            create_time: format_ms(self.created_at),
            update_time: format_ms(self.updated_at),
            planned_delete_time: self.planned_delete_at.map(format_ms),
            tags: &self.tags,
            automatic_rotation: if self.rotation.is_some() {
                "Enabled"
            } else {
                "Disabled"
            },
            rotation_interval: interval,
            rotation_cron: cron,
            rotation_window: window,
            next_rotation_date: self.next_rotation_at.map(format_ms),
            last_rotation_date: self.last_rotation_at.map(format_ms),
            rotation_jitter: self.rotation_jitter.map(|j| format!("{}s", j.as_secs())),
            rotation_status: self.rotation_status,
            rotation_step: self.rotation_step.as_deref(),
            rotation_attempts: self.rotation_attempts,
            rotation_error: self.rotation_error.as_deref(),
            rotation_failure: self.rotation_failure.as_ref(),
            target_holds_pending: self.target_holds_pending,
            target_name: self.target.as_deref(),
        }
        .serialize(s)
    }
}

impl SecretInfo {
    /// A short human description of the rotation policy.
    pub fn rotation_summary(&self) -> String {
        self.rotation
            .as_ref()
            .map_or_else(|| "disabled".into(), RotationSchedule::summary)
    }
}

/// One version's metadata (never its value).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionInfo {
    /// The version's id.
    pub version_id: VersionId,
    /// The stage labels attached to it.
    #[serde(serialize_with = "ser_stages")]
    pub version_stages: Vec<Stage>,
    /// When it was created (ms since the epoch).
    #[serde(serialize_with = "ser_time")]
    pub create_time: i64,
}

/// A version with its decrypted value, as `get` returns it.
#[derive(Debug)]
pub struct SecretVersion {
    /// The secret's name.
    pub name: SecretName,
    /// The kind of value the secret holds.
    pub kind: SecretKind,
    /// The version's id.
    pub version_id: VersionId,
    /// The stage labels attached to the version.
    pub stages: Vec<Stage>,
    /// When the version was created (ms since the epoch).
    pub created_at: i64,
    /// The decrypted value.
    pub value: SecretValue,
}

/// What a put did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutOutcome {
    /// The secret written to.
    pub secret_name: SecretName,
    /// The id of the version written (or found already stored).
    pub version_id: VersionId,
    /// The stage labels the version carries after the put.
    #[serde(serialize_with = "ser_stages")]
    pub version_stages: Vec<Stage>,
    /// False when the same version id with the same data was already stored.
    pub created: bool,
}

/// A master key's metadata (never its material).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyInfo {
    /// The key's name.
    pub key_id: String,
    /// When the key was created (ms since the epoch).
    #[serde(serialize_with = "ser_time")]
    pub creation_date: i64,
    /// How many secrets it encrypts.
    pub secret_count: i64,
}

/// How to delete a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteMode {
    /// Schedule deletion after this many days (7–30), restorable until then.
    RecoveryWindow(u32),
    /// Delete now, with every version.
    Force,
}

fn ser_stages<S: serde::Serializer>(stages: &[Stage], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(stages.iter().map(Stage::as_str))
}

fn ser_time<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ms(*ms))
}

impl Serialize for SecretName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for VersionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
