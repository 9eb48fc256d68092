//! The plain settings the engine, the worker and the API are built with, and their defaults.
//! They live here, not with the code they configure, so that configuration depends on nothing
//! it configures: [`crate::engine`], [`crate::worker`] and [`crate::api`] import them from here.

use std::net::SocketAddr;
use std::time::Duration;

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
    /// The longest retry delay.
    pub backoff_cap: Duration,
    /// A rotator step that takes longer fails (retryable).
    pub step_timeout: Duration,
    /// Extra tries of the `test` step, for changes that take a moment to propagate.
    pub test_retries: u32,
    /// The pause between tries of the `test` step.
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

/// How the worker schedules rotations.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Rotations in flight at once, in all.
    pub concurrency: usize,
    /// Rotations in flight at once on one target.
    pub per_target: usize,
    /// How often to look for due secrets when idle (bounds the pick-up delay).
    pub poll: Duration,
    /// How long in-flight steps may take to finish on shutdown.
    pub drain_timeout: Duration,
    /// Count due and failed secrets for the metrics gauges (when metrics are served).
    pub metrics: bool,
    /// Prune audit records older than this (with the purge of deleted secrets).
    pub audit_retention: Option<Duration>,
}

impl WorkerConfig {
    /// The defaults, in one place (the CLI shows them in `--help`).
    pub const DEFAULTS: WorkerConfig = WorkerConfig {
        concurrency: 16,
        per_target: 2,
        poll: Duration::from_millis(500),
        drain_timeout: Duration::from_secs(30),
        metrics: false,
        audit_retention: None,
    };
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig::DEFAULTS
    }
}

/// Connections open at once unless configured (`api.max_connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Where and how the API listens.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Plain HTTP (loopback addresses only).
    pub plain_http: bool,
    /// Names the server certificate is also valid for.
    pub hostnames: Vec<String>,
    /// Connections served at once; more are answered `503 ServiceUnavailable` and closed.
    pub max_connections: usize,
}
