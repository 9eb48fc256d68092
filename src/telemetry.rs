//! Metrics and health: what `rotor worker --metrics-listen ADDR` (and `rotor serve
//! --metrics-listen ADDR`) serves. Every counter is exported from the start, at zero.
//!
//! - `/metrics`: Prometheus text exposition (the `metrics` facade, rendered by
//!   `metrics-exporter-prometheus`): rotations by secret type, family and result, step
//!   durations, secrets due and failed, lease takeovers, store errors. Labels carry kinds and
//!   results, never a secret's name or value.
//! - `/healthz`: 200 while the process runs.
//! - `/readyz`: 200 when the store answers (the master key was unlocked at start), 503 with
//!   the reason otherwise.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::store::Store;

/// Seconds buckets for step durations.
const STEP_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Seconds buckets for API requests.
const API_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's metrics recorder (once) and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "rotor_step_duration_seconds".into(),
                    ),
                    &STEP_BUCKETS,
                )
                .expect("buckets are not empty")
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "rotor_api_request_duration_seconds".into(),
                    ),
                    &API_BUCKETS,
                )
                .expect("buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // A second recorder (tests in one process) keeps the first.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            // Exported at zero from the start: a counter that appears only when it first moves
            // cannot be alerted on (`increase()` misses the first event).
            metrics::counter!("rotor_lease_takeovers_total").increment(0);
            metrics::counter!("rotor_store_errors_total").increment(0);
            metrics::gauge!("rotor_secrets_due").set(0.0);
            metrics::gauge!("rotor_secrets_failed").set(0.0);
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "rotor_rotations_total",
        "Rotation cycles ended, by secret type, family and result"
    );
    metrics::describe_histogram!(
        "rotor_step_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of rotator steps, by step and family"
    );
    metrics::describe_gauge!(
        "rotor_secrets_due",
        "Secrets due for rotation, as the worker last counted"
    );
    metrics::describe_gauge!(
        "rotor_secrets_failed",
        "Secrets whose last rotation cycle failed"
    );
    metrics::describe_counter!(
        "rotor_api_requests_total",
        "API requests, by action and result code (OK or the KMS error code)"
    );
    metrics::describe_histogram!(
        "rotor_api_request_duration_seconds",
        metrics::Unit::Seconds,
        "API request durations, by action"
    );
    metrics::describe_counter!(
        "rotor_lease_takeovers_total",
        "Claims that took over another worker's expired lease"
    );
    metrics::describe_counter!(
        "rotor_store_errors_total",
        "Store operations of the worker that failed"
    );
}

/// A rotation cycle ended with `result` (`rotated`, `retrying`, `failed`, …).
pub fn rotation(ty: &str, family: &str, result: &'static str) {
    metrics::counter!("rotor_rotations_total", "type" => ty.to_owned(), "family" => family.to_owned(), "result" => result)
        .increment(1);
}

/// The results `rotor_rotations_total` is exported with at zero (the README's three; the rare
/// ones appear when they first happen).
const ROTATION_RESULTS: [&str; 3] = ["rotated", "retrying", "failed"];

/// Exports `rotor_rotations_total` at zero for every secret type and family `registry` rotates,
/// so that its series exist before the first rotation ends.
pub fn zero_rotations(registry: &rotators::Registry) {
    for family in registry.families() {
        let mut types: Vec<&'static str> = family
            .rotators()
            .iter()
            .map(|(kind, _)| kind.ty.as_str())
            .collect();
        types.sort_unstable();
        types.dedup();
        for ty in types {
            for result in ROTATION_RESULTS {
                metrics::counter!("rotor_rotations_total", "type" => ty, "family" => family.name(), "result" => result)
                    .increment(0);
            }
        }
    }
}

/// Exports `rotor_api_requests_total{code="OK"}` at zero for each of `actions`, when the API
/// starts (the error codes appear as they happen).
pub fn zero_api(actions: &[&'static str]) {
    for action in actions {
        metrics::counter!("rotor_api_requests_total", "action" => *action, "code" => "OK")
            .increment(0);
    }
}

/// A rotator step took `elapsed`.
pub fn step(step: &'static str, family: &str, elapsed: Duration) {
    metrics::histogram!("rotor_step_duration_seconds", "step" => step, "family" => family.to_owned())
        .record(elapsed.as_secs_f64());
}

/// An API request ended with `code` (`OK` or the KMS error code).
pub fn api_request(action: &'static str, code: &'static str, elapsed: Duration) {
    metrics::counter!("rotor_api_requests_total", "action" => action, "code" => code).increment(1);
    metrics::histogram!("rotor_api_request_duration_seconds", "action" => action)
        .record(elapsed.as_secs_f64());
}

/// A claim took over another worker's expired lease.
pub fn lease_takeover() {
    metrics::counter!("rotor_lease_takeovers_total").increment(1);
}

/// A store operation failed (counts `rotor_store_errors_total`).
pub fn store_error() {
    metrics::counter!("rotor_store_errors_total").increment(1);
}

/// Counts due and failed secrets for the gauges.
pub async fn count_secrets(store: &Store) {
    match store.count_due_and_failed().await {
        Ok((due, failed)) => {
            metrics::gauge!("rotor_secrets_due").set(due as f64);
            metrics::gauge!("rotor_secrets_failed").set(failed as f64);
        }
        Err(e) => {
            store_error();
            tracing::warn!(error = %e, "counting due secrets failed");
        }
    }
}

#[derive(Clone)]
struct Served {
    handle: PrometheusHandle,
    store: Store,
}

async fn render(State(s): State<Served>) -> String {
    s.handle.render()
}

async fn ready(State(s): State<Served>) -> (StatusCode, String) {
    match tokio::time::timeout(Duration::from_secs(5), s.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".into()),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unreachable: {e}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "store did not answer within 5s\n".into(),
        ),
    }
}

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` until `stop`.
pub async fn serve(addr: SocketAddr, store: Store, stop: CancellationToken) -> Result<()> {
    let handle = install();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::config(format!("cannot listen on {addr} for metrics: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::config(e.to_string()))?;
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Served { handle, store });
    tracing::info!(listen = %local, "serving /metrics, /healthz and /readyz");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(())
}
