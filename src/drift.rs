//! The worker's drift checks (`[worker] verify_interval`, `on_drift`): every secret with a target
//! has its `ACSCurrent` credential — and `ACSPrevious`, where it must still log in (dual
//! accounts) — checked on its target once per interval, each at its own time within it (the
//! store spreads and claims them). A refusal is drift: recorded on the secret with the stages
//! refused (`describe` shows `Drift: ACSPrevious: … since …`), audited (`secret.drift`), counted
//! (`rotor_secrets_drifted`) and announced (webhook `secret_drifted`); with `on_drift =
//! "rotate"` the secret is rotated at once, then checked again. A target that cannot be reached
//! is not drift: the check comes round again.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::OnDrift;
use crate::engine::{Engine, Outcome};
use crate::model::SecretName;
use crate::notify::{Event, Notice};
use crate::store::{DriftChange, Refusal};

/// Secrets checked per round.
const PER_ROUND: usize = 16;

/// Rotations `on_drift = "rotate"` runs for one drift: a dual account's drifted `ACSCurrent`
/// takes two (see [`repair`]).
const MAX_REPAIRS: usize = 2;

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
    let findings = match engine.check_drift(name).await {
        Ok(findings) => findings,
        Err(e) => {
            tracing::debug!(secret = %name, "drift check skipped: {e}");
            return;
        }
    };
    let drift = findings.drift();
    if drift.is_none() {
        if let Some(e) = findings.unreachable() {
            tracing::info!(secret = %name, "drift check: the target cannot be reached (not drift): {e}");
            return;
        }
    }
    let refused = drift
        .as_ref()
        .map(|(stages, reason)| Refusal { stages, reason });
    let change = match store.record_drift_check(name, refused).await {
        Ok(change) => change,
        Err(e) => {
            crate::telemetry::store_error();
            tracing::warn!(secret = %name, error = %e, "recording a drift check failed");
            return;
        }
    };
    match (change, &drift) {
        (DriftChange::Started | DriftChange::Changed, Some((_, reason))) => {
            announce(engine, store, name, reason).await;
        }
        (DriftChange::Resolved, _) => {
            tracing::info!(secret = %name, "drift resolved: the credentials log in again");
        }
        _ => {}
    }
    if let (Some(_), OnDrift::Rotate) = (&drift, on_drift) {
        repair(engine, store, name, shutdown).await;
    }
}

/// A new drift: logged, and announced to the webhooks that want `secret_drifted`.
async fn announce(engine: &Engine, store: &crate::store::Store, name: &SecretName, reason: &str) {
    tracing::warn!(secret = %name, "drift: the target refuses a credential: {reason}");
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
/// it again so that the drift is cleared at once. A rotation makes a new `ACSPrevious` (the
/// credential that was current), so a drifted `ACSPrevious` is repaired by one; a drifted
/// `ACSCurrent` of a dual account becomes `ACSPrevious` by that rotation and is repaired by a
/// second one (its account then gets a new password and becomes current).
async fn repair(
    engine: &Engine,
    store: &crate::store::Store,
    name: &SecretName,
    shutdown: &CancellationToken,
) {
    for _ in 0..MAX_REPAIRS {
        match engine.rotate_now(name, shutdown).await {
            Ok(Outcome::Rotated { version_id }) => {
                tracing::info!(secret = %name, version = %version_id, "drift repaired by a rotation");
            }
            Ok(other) => {
                tracing::warn!(secret = %name, "the rotation after drift did not complete: {other:?}");
                return;
            }
            Err(e) => {
                tracing::warn!(secret = %name, "the rotation after drift failed: {e}");
                return;
            }
        }
        match engine.check_drift(name).await {
            Ok(findings) if findings.works() => {
                let _ = store.record_drift_check(name, None).await;
                return;
            }
            // Only the credential that was current before the rotation is refused: the
            // next rotation resets it.
            Ok(findings)
                if findings
                    .drift()
                    .is_some_and(|(stages, _)| stages == ["ACSPrevious"]) => {}
            _ => return,
        }
    }
}
