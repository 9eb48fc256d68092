//! `rotor agent`: keeps an application host in step with rotations, through rotor's
//! KMS-compatible API (never the store). It reads secrets with an AccessKey that needs only
//! `GetSecretValue` (and, for cheap polls, `ListSecretVersionIds`) on them, trusting only the
//! installation's CA, and keeps three kinds of consumer current:
//!
//! - files rendered from `[[template]]`s ([`render`]: [`template`] renders, [`write`] writes
//!   atomically, [`reload`] runs the command after a change);
//! - a program's environment ([`exec`]: `rotor agent exec`, restarted with the new values);
//! - a local cache endpoint on loopback ([`cache`]), for applications that ask at run time.
//!
//! [`secrets`] polls (by version id, with jitter, backing off while the API is unreachable and
//! keeping the last good values); [`client`] signs the calls; [`settings`] reads `[agent]` and
//! the `ROTOR_AGENT_…` variables.

pub mod cache;
pub mod client;
pub mod exec;
pub mod reload;
pub mod render;
pub mod secrets;
pub mod settings;
pub mod template;
pub mod write;

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
pub use settings::Settings;

/// Reads the settings and checks every template's syntax.
pub fn settings(path: Option<&Path>) -> Result<Settings> {
    let settings = settings::load(path)?;
    for t in &settings.templates {
        template::check(&t.label, &t.text).map_err(Error::invalid)?;
    }
    Ok(settings)
}

/// `rotor agent`: renders the templates and serves the cache endpoint, following rotations
/// until `cancel`; with `once`, renders every template one time and returns (an error when one
/// could not be written).
pub async fn run(settings: Settings, once: bool, cancel: CancellationToken) -> Result<()> {
    let client = client::Client::new(&settings)?;
    let watcher = secrets::Watcher::new(client, settings.poll);
    if once {
        let done = render::pass(&watcher, &settings.templates).await;
        if done.failed > 0 || done.commands_failed > 0 {
            return Err(Error::Target(format!(
                "{} of {} templates could not be written, {} commands failed (see the log)",
                done.failed,
                settings.templates.len(),
                done.commands_failed
            )));
        }
        return Ok(());
    }
    if settings.templates.is_empty() && settings.cache.is_none() {
        return Err(Error::invalid(
            "nothing to do: the agent's configuration has no [[template]] and no [cache]",
        ));
    }
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(watcher.clone().run(cancel.clone()));
    if let Some(spec) = &settings.cache {
        let server = cache::Server::bind(spec, watcher.clone()).await?;
        tasks.spawn(server.serve(cancel.clone()));
    }
    tasks.spawn(render::follow(
        watcher.clone(),
        settings.templates,
        cancel.clone(),
    ));
    cancel.cancelled().await;
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// The signals that stop the agent: the two that ask a process to stop (INT, TERM) and every
/// other one whose default action would kill it (HUP, QUIT, USR1, USR2, ALRM) — caught, so
/// that in exec mode the program is stopped the same way (its signal, then `SIGKILL` after the
/// grace), never left running without the agent.
const STOP_SIGNALS: [i32; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
];

/// Cancels `token` on the first of [`STOP_SIGNALS`]. The handlers are installed before this
/// returns, so a signal that arrives while the agent starts is caught.
pub fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    for &number in &STOP_SIGNALS {
        let mut stream = signal(SignalKind::from_raw(number)).expect("signal handler installs");
        let token = token.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stream.recv() => {
                    tracing::info!(signal = number, "stop signal received");
                    token.cancel();
                }
                _ = token.cancelled() => {}
            }
        });
    }
}

/// `rotor agent exec`: runs `command` with `env` from secrets, restarting it when one changes.
/// Returns the program's exit code once it exits on its own or after `cancel`.
pub async fn exec(
    settings: Settings,
    spec: exec::ExecSpec,
    cancel: CancellationToken,
) -> Result<i32> {
    let client = client::Client::new(&settings)?;
    let watcher = secrets::Watcher::new(client, settings.poll);
    let poller = tokio::spawn(watcher.clone().run(cancel.clone()));
    let code = exec::run(Arc::clone(&watcher), spec, cancel.clone()).await;
    cancel.cancel();
    let _ = poller.await;
    code
}
