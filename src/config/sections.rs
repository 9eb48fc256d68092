//! The file's sections (`[store]`, `[worker]`, `[log]`, `[api]`, …) as plain typed structs with
//! their defaults, and how `[worker]` becomes the engine's and the worker's settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::runtime::{ApiSettings, EngineConfig, WorkerConfig, DEFAULT_MAX_CONNECTIONS};

/// `[store]`: where secrets are kept.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `postgres://…` for a shared store; the embedded SQLite store in the data directory when
    /// absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How long to wait for a store connection before giving up.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: None,
            connect_timeout: crate::store::DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// The URL's password never shows.
impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &self.url.as_deref().map(crate::redact::store_url))
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Where the master key comes from: `ROTOR_MASTER_KEY` when set, else this file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MasterKeySettings {
    /// The key file; `DATA_DIR/master.key` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// Rotations: the worker's and one-shot runs' limits and backoff.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Rotations in flight at once, in all.
    pub concurrency: usize,
    /// Rotations in flight at once on one target.
    pub per_target: usize,
    /// How often to look for due secrets when idle.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
    /// How long in-flight steps may take to finish on shutdown.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How long a claim on a secret lasts without a heartbeat.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Attempts per rotation cycle before the secret is marked failed.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter, up to `backoff_cap`.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// The longest retry delay.
    #[serde(with = "humantime_serde")]
    pub backoff_cap: Duration,
    /// A rotator step that takes longer fails (retryable).
    #[serde(with = "humantime_serde")]
    pub step_timeout: Duration,
    /// Extra tries of the `test` step, for changes that take a moment to propagate.
    pub test_retries: u32,
    /// The pause between tries of the `test` step.
    #[serde(with = "humantime_serde")]
    pub test_retry_delay: Duration,
    /// Serve `/metrics`, `/healthz` and `/readyz` here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Check each managed secret's current credential (and a dual account's previous one) on
    /// its target this often (drift); `0s`: never.
    #[serde(with = "humantime_serde")]
    pub verify_interval: Duration,
    /// What a drifted secret gets: `report`, or `rotate` at once.
    pub on_drift: OnDrift,
}

/// What the worker does with a secret whose target refuses a credential it must take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDrift {
    /// Record, audit, count and announce it.
    #[default]
    Report,
    /// The same, then rotate the secret at once (twice for a dual account whose drifted
    /// current credential the first rotation made its previous one).
    Rotate,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        let (e, w) = (EngineConfig::DEFAULTS, WorkerConfig::DEFAULTS);
        WorkerSettings {
            concurrency: w.concurrency,
            per_target: w.per_target,
            poll: w.poll,
            drain_timeout: w.drain_timeout,
            lease: e.lease,
            max_attempts: e.max_attempts,
            backoff_base: e.backoff_base,
            backoff_cap: e.backoff_cap,
            step_timeout: e.step_timeout,
            test_retries: e.test_retries,
            test_retry_delay: e.test_retry_delay,
            metrics_listen: None,
            verify_interval: Duration::from_secs(3600),
            on_drift: OnDrift::Report,
        }
    }
}

impl WorkerSettings {
    /// The engine's settings from this section (the owner name is the process default).
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            lease: self.lease,
            max_attempts: self.max_attempts,
            backoff_base: self.backoff_base,
            backoff_cap: self.backoff_cap,
            step_timeout: self.step_timeout,
            test_retries: self.test_retries,
            test_retry_delay: self.test_retry_delay,
            ..EngineConfig::default()
        }
    }

    /// The worker's settings from this section (metrics and audit retention are set elsewhere).
    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.concurrency,
            per_target: self.per_target,
            poll: self.poll,
            drain_timeout: self.drain_timeout,
            metrics: false,
            audit_retention: None,
        }
    }
}

/// `rotor serve`: its own settings, so that a worker and a server sharing one configuration on
/// one host do not collide.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Serve `/metrics`, `/healthz` and `/readyz` here (the worker's is `worker.metrics_listen`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: the log format and level.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (for people) or `json` (one object per line).
    pub format: LogFormat,
    /// Which events are logged, as `tracing` filter directives (`info`, `rotor=debug,info`).
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info,sqlx=warn".into(),
        }
    }
}

/// The KMS-compatible API (`rotor serve`, `rotor worker`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve the API here; off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Plain HTTP instead of HTTPS (loopback addresses only).
    pub plain_http: bool,
    /// More names for the server certificate (besides localhost, 127.0.0.1 and ::1).
    pub hostnames: Vec<String>,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: None,
            plain_http: false,
            hostnames: vec![],
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl ApiConfig {
    /// The server's settings, or `None` when the API is off (no `listen` address).
    pub fn settings(&self) -> Option<ApiSettings> {
        self.listen.map(|listen| ApiSettings {
            listen,
            plain_http: self.plain_http,
            hostnames: self.hostnames.clone(),
            max_connections: self.max_connections,
        })
    }
}

/// `[audit]`: what the audit log records and how long it keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Record every read of a secret value too.
    pub reads: bool,
    /// Records older than this are pruned by the worker.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            reads: false,
            retention: Duration::from_secs(365 * 86_400),
        }
    }
}
