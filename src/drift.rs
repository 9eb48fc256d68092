//! The worker's drift checks (`[worker] verify_interval`, `on_drift`): every secret with a target
//! has its `ACSCurrent` credential checked on its target once per interval, each at its own
//! time within it (the store spreads and claims them). A refusal is drift: recorded on the
//! secret (`describe` shows `Drift: … since …`), audited (`secret.drift`), counted
//! (`rotor_secrets_drifted`) and announced (webhook `secret_drifted`); with `on_drift =
//! "rotate"` the secret is rotated at once, then checked again. A target that cannot be reached
//! is not drift: the check comes round again.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::OnDrift;
use crate::engine::{Engine, Outcome, Verdict};
use crate::model::SecretName;
use crate::notify::{Event, Notice};
use crate::store::DriftChange;

/// Secrets checked per round.
const PER_ROUND: usize = 16;

/// How the worker checks for drift.
#[derive(Clone, Copy, Debug)]
pub struct DriftConfig {
    /// Each secret is checked once per interval.
    pub interval: Duration,
    /// What a drifted secret gets.
    pub on_drift: OnDrift,
}

/// Checks due secrets until `shutdown`: a round every tenth of the interval (between 200 ms
/// and 5 s).
pub async fn watch(engine: Arc<Engine>, config: DriftConfig, shutdown: CancellationToken) {
    let tick = (config.interval / 10).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let store = engine
        .store()
        .with_actor(&format!("worker:{}", engine.config().owner));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let names = match store.claim_drift_checks(config.interval, PER_ROUND).await {
            Ok(names) => names,
            Err(e) => {
                crate::telemetry::store_error();
                tracing::warn!(error = %e, "planning drift checks failed");
                continue;
            }
        };
        for name in names {
            if shutdown.is_cancelled() {
                return;
            }
            check(&engine, &store, &name, config.on_drift, &shutdown).await;
        }
        if let Ok(n) = store.count_drifted().await {
            metrics::gauge!("rotor_secrets_drifted").set(n as f64);
        }
    }
}

/// One secret's check, recorded; a new drift is announced and, with `rotate`, every drift
/// found is repaired.
async fn check(
    engine: &Engine,
    store: &crate::store::Store,
    name: &SecretName,
    on_drift: OnDrift,
    shutdown: &CancellationToken,
) {
    let reason = match engine.check_drift(name).await {
        Ok(Verdict::Works) => None,
        Ok(Verdict::Drift(reason)) => Some(reason),
        Ok(Verdict::Unreachable(e)) => {
            tracing::info!(secret = %name, "drift check: the target cannot be reached (not drift): {e}");
            return;
        }
        Err(e) => {
            tracing::debug!(secret = %name, "drift check skipped: {e}");
            return;
        }
    };
    let change = match store.record_drift_check(name, reason.as_deref()).await {
        Ok(change) => change,
        Err(e) => {
            crate::telemetry::store_error();
            tracing::warn!(secret = %name, error = %e, "recording a drift check failed");
            return;
        }
    };
    if let (Some(_), OnDrift::Rotate) = (&reason, on_drift) {
        if change == DriftChange::Started {
            announce(engine, store, name, reason.as_deref().unwrap_or_default()).await;
        }
        repair(engine, store, name, shutdown).await;
        return;
    }
    match (change, reason) {
        (DriftChange::Started, Some(reason)) => {
            announce(engine, store, name, &reason).await;
        }
        (DriftChange::Resolved, _) => {
            tracing::info!(secret = %name, "drift resolved: the current credential logs in again");
        }
        _ => {}
    }
}

/// A new drift: logged, and announced to the webhooks that want `secret_drifted`.
async fn announce(engine: &Engine, store: &crate::store::Store, name: &SecretName, reason: &str) {
    tracing::warn!(secret = %name, "drift: the target refuses the current credential: {reason}");
    if let Some(notifier) = engine.notifier() {
        let ty = store
            .describe(name)
            .await
            .map(|i| i.kind.ty.as_str().to_owned())
            .unwrap_or_default();
        let mut notice = Notice::new(Event::SecretDrifted, name.as_str(), &ty);
        notice.error = Some(reason.to_owned());
        notifier.send(notice);
    }
}

/// `on_drift = "rotate"`: rotates the secret now (the admin sets a new credential), then checks
/// it again so that the drift is cleared at once.
async fn repair(
    engine: &Engine,
    store: &crate::store::Store,
    name: &SecretName,
    shutdown: &CancellationToken,
) {
    match engine.rotate_now(name, shutdown).await {
        Ok(Outcome::Rotated { version_id }) => {
            tracing::info!(secret = %name, version = %version_id, "drift repaired by a rotation");
            if let Ok(Verdict::Works) = engine.check_drift(name).await {
                let _ = store.record_drift_check(name, None).await;
            }
        }
        Ok(other) => {
            tracing::warn!(secret = %name, "the rotation after drift did not complete: {other:?}")
        }
        Err(e) => tracing::warn!(secret = %name, "the rotation after drift failed: {e}"),
    }
}
