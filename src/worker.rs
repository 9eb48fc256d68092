//! The background worker: runs until its shutdown token is cancelled (SIGINT or SIGTERM for the
//! binary). Today it keeps the store tidy — secrets whose recovery window has ended are purged;
//! the rotation scheduler and executor join it with the rotation engine.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::store::Store;

/// How often the worker purges secrets whose recovery window has ended.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Runs the worker until `shutdown` is cancelled.
pub async fn run(store: Store, shutdown: CancellationToken) -> Result<()> {
    tracing::info!(store = store.backend().name(), "worker started");
    let mut purge = tokio::time::interval(PURGE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = purge.tick() => match store.purge_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(secrets = n, "purged secrets whose recovery window ended"),
                Err(e) => tracing::warn!(error = %e, "purge of deleted secrets failed"),
            },
        }
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
    token.cancel();
}
