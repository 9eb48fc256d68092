//! `rotor worker` and `rotor rotate`: the engine's settings as flags (their defaults are the
//! config structs' own), the worker process, and one-shot runs with what they print.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use rotators::Registry;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::output::Output;
use crate::clock::format_ms;
use crate::config::{CommandLine, Config};
use crate::engine::{Engine, EngineConfig, Outcome};
use crate::error::{Error, Result};
use crate::model::SecretName;
use crate::notify::{Dispatcher, Notifier};
use crate::store::Store;
use crate::worker::WorkerConfig;

/// How rotations run (worker and one-shot runs). Defaults come from [`EngineConfig::DEFAULTS`]
/// and [`WorkerConfig::DEFAULTS`]; a flag given on the command line overrides the configuration
/// file and the environment (`[worker]`, `ROTOR_…`), which override the defaults.
#[derive(Clone, Debug, Args)]
pub struct EngineArgs {
    /// Rotations in flight at once.
    #[arg(long, env = "ROTOR_CONCURRENCY", default_value_t = WorkerConfig::DEFAULTS.concurrency)]
    pub concurrency: usize,
    /// Rotations in flight at once on one target.
    #[arg(long, env = "ROTOR_PER_TARGET", default_value_t = WorkerConfig::DEFAULTS.per_target)]
    pub per_target: usize,
    /// How long a claimed secret stays this process's without a heartbeat.
    #[arg(long, env = "ROTOR_LEASE", default_value_t = shown(EngineConfig::DEFAULTS.lease), value_parser = duration_arg)]
    pub lease: humantime::Duration,
    /// How often an idle worker looks for due secrets.
    #[arg(long, env = "ROTOR_POLL", default_value_t = shown(WorkerConfig::DEFAULTS.poll), value_parser = duration_arg)]
    pub poll: humantime::Duration,
    /// On shutdown, how long in-flight steps may take to finish.
    #[arg(long, env = "ROTOR_DRAIN_TIMEOUT", default_value_t = shown(WorkerConfig::DEFAULTS.drain_timeout), value_parser = duration_arg)]
    pub drain_timeout: humantime::Duration,
    /// Attempts per rotation cycle before the secret is marked failed.
    #[arg(long, env = "ROTOR_MAX_ATTEMPTS", default_value_t = EngineConfig::DEFAULTS.max_attempts)]
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt (with jitter) up to --backoff-cap.
    #[arg(long, env = "ROTOR_BACKOFF_BASE", default_value_t = shown(EngineConfig::DEFAULTS.backoff_base), value_parser = duration_arg)]
    pub backoff_base: humantime::Duration,
    /// The longest retry delay.
    #[arg(long, env = "ROTOR_BACKOFF_CAP", default_value_t = shown(EngineConfig::DEFAULTS.backoff_cap), value_parser = duration_arg)]
    pub backoff_cap: humantime::Duration,
    /// A rotator step that runs longer fails (and is retried).
    #[arg(long, env = "ROTOR_STEP_TIMEOUT", default_value_t = shown(EngineConfig::DEFAULTS.step_timeout), value_parser = duration_arg)]
    pub step_timeout: humantime::Duration,
    /// Extra tries of the test step, for changes that take a moment to propagate.
    #[arg(long, env = "ROTOR_TEST_RETRIES", default_value_t = EngineConfig::DEFAULTS.test_retries)]
    pub test_retries: u32,
    /// The pause between tries of the test step.
    #[arg(long, env = "ROTOR_TEST_RETRY_DELAY", default_value_t = shown(EngineConfig::DEFAULTS.test_retry_delay), value_parser = duration_arg)]
    pub test_retry_delay: humantime::Duration,
}

impl EngineArgs {
    /// The flags given on the command line, as configuration (over the file and environment).
    pub fn flags(&self, m: &clap::ArgMatches, flags: &mut CommandLine) {
        let given = |id: &str| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        let d = |d: &humantime::Duration| d.to_string();
        for (id, value) in [
            ("concurrency", self.concurrency.to_string()),
            ("per_target", self.per_target.to_string()),
            ("max_attempts", self.max_attempts.to_string()),
            ("test_retries", self.test_retries.to_string()),
        ] {
            if given(id) {
                flags.set(
                    &format!("worker.{id}"),
                    value.parse::<u64>().unwrap_or_default(),
                );
            }
        }
        for (id, value) in [
            ("lease", &self.lease),
            ("poll", &self.poll),
            ("drain_timeout", &self.drain_timeout),
            ("backoff_base", &self.backoff_base),
            ("backoff_cap", &self.backoff_cap),
            ("step_timeout", &self.step_timeout),
            ("test_retry_delay", &self.test_retry_delay),
        ] {
            if given(id) {
                flags.set(&format!("worker.{id}"), d(value));
            }
        }
    }
}

/// A default duration as `--help` shows it (`30s`, `5m`, `1h`).
fn shown(d: Duration) -> humantime::Duration {
    d.into()
}

pub fn duration_arg(s: &str) -> std::result::Result<humantime::Duration, String> {
    humantime::parse_duration(s.trim())
        .map(Into::into)
        .map_err(|e| format!("{e} (examples: 30s, 5m, 1h)"))
}

/// Arguments of `rotor rotate`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true))]
pub struct RotateArgs {
    /// The secret to rotate now.
    #[arg(group = "what")]
    pub name: Option<SecretName>,
    /// Make one pass over every secret that is due, then exit.
    #[arg(long, group = "what")]
    pub due: bool,
    /// Check that the current credential works and the target answers; change nothing. With
    /// --due: check every due secret.
    #[arg(long)]
    pub dry_run: bool,
    /// Rotation limits and backoff.
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub api: super::api::ApiArgs,
    /// Serve Prometheus /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9464);
    /// the worker's is `worker.metrics_listen` (ROTOR_METRICS_LISTEN), `serve`'s
    /// `server.metrics_listen` (ROTOR_SERVER_METRICS_LISTEN).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// How long a finished command waits for its webhook deliveries.
pub(super) const WEBHOOK_GRACE: Duration = Duration::from_secs(10);

/// The engine with the configured settings and webhooks — the one place it is built, for
/// `worker`, `rotate`, `serve` and the API beside a worker; the dispatcher is finished with
/// [`finish_webhooks`] once the engine is dropped.
pub(super) fn engine(
    store: &Store,
    registry: Registry,
    settings: &Config,
) -> Result<(Arc<Engine>, Option<Dispatcher>)> {
    let mut engine = Engine::new(store.clone(), registry, settings.worker.engine_config());
    let mut dispatcher = None;
    if let Some((notifier, d)) = Notifier::start(&settings.webhooks)? {
        engine = engine.with_notifier(notifier);
        dispatcher = Some(d);
    }
    Ok((Arc::new(engine), dispatcher))
}

pub(super) async fn finish_webhooks(dispatcher: Option<Dispatcher>, grace: Duration) {
    if let Some(d) = dispatcher {
        d.finish(grace).await;
    }
}

/// `rotor worker`: rotates due secrets until SIGINT/SIGTERM, then drains and exits.
pub async fn worker(store: &Store, registry: Registry, settings: &Config) -> Result<()> {
    let _lock = store.lock_single_worker()?;
    let shutdown = CancellationToken::new();
    crate::worker::cancel_on_signal(shutdown.clone());
    let mut config = settings.worker.worker_config();
    config.audit_retention = Some(settings.audit.retention);
    if let Some(addr) = settings.worker.metrics_listen {
        crate::telemetry::serve(addr, store.clone(), shutdown.clone()).await?;
        crate::telemetry::zero_rotations(&registry);
        if settings.api.listen.is_some() {
            // Before the API starts: a scrape between the two already sees its series.
            crate::telemetry::zero_api(&crate::policy::Action::names());
        }
        config.metrics = true;
    }
    let (engine, dispatcher) = engine(store, registry, settings)?;
    if settings.api.listen.is_some() && !settings.api.plain_http {
        // The worker initialises what is missing (like the store): the API's CA too.
        crate::store::create_data_dir(&settings.data_dir)?;
        crate::api::tls::ensure_ca(&settings.data_dir)?;
    }
    let api = super::api::start(store, engine.clone(), settings, shutdown.clone()).await?;
    let drift = (!settings.worker.verify_interval.is_zero()).then(|| {
        let config = crate::drift::DriftConfig {
            interval: settings.worker.verify_interval,
            on_drift: settings.worker.on_drift,
        };
        tokio::spawn(crate::drift::watch(
            engine.clone(),
            config,
            shutdown.clone(),
        ))
    });
    let result = crate::worker::run(engine, config, shutdown).await;
    if let Some(drift) = drift {
        let _ = drift.await;
    }
    if let Some(api) = api {
        api.stopped().await;
    }
    finish_webhooks(dispatcher, settings.worker.drain_timeout.min(WEBHOOK_GRACE)).await;
    result
}

/// `rotor rotate`: one secret now, a pass over everything due, or a dry run.
pub async fn rotate(
    store: &Store,
    registry: Registry,
    args: &RotateArgs,
    settings: &Config,
    out: &Output,
) -> Result<()> {
    let (engine, dispatcher) = engine(store, registry, settings)?;
    let result = rotate_with(store, engine, args, settings, out).await;
    finish_webhooks(dispatcher, WEBHOOK_GRACE).await;
    result
}

async fn rotate_with(
    store: &Store,
    engine: Arc<Engine>,
    args: &RotateArgs,
    settings: &Config,
    out: &Output,
) -> Result<()> {
    let stop = CancellationToken::new();
    crate::worker::cancel_on_signal(stop.clone());
    if args.due && args.dry_run {
        return due_dry_run(store, &engine, out).await;
    }
    if args.due {
        return due(store, engine, &settings.worker.worker_config(), &stop, out).await;
    }
    let Some(name) = &args.name else {
        return Err(Error::invalid("give a secret NAME or --due"));
    };
    if args.dry_run {
        engine.dry_run(name).await?;
        out.print(json!({"SecretName": name, "DryRun": "ok"}), || {
            format!("secret '{name}': the current credential works and the target answers")
        });
        return Ok(());
    }
    match engine.rotate_now(name, &stop).await? {
        Outcome::Rotated { version_id } => {
            out.print(
                json!({"SecretName": name, "Outcome": "Rotated", "VersionId": version_id}),
                || format!("secret '{name}' rotated: version {version_id} is ACSCurrent"),
            );
            Ok(())
        }
        other => Err(Error::Rotation(outcome_line(name, &Ok(other)))),
    }
}

/// How a `--due` pass sorts an outcome.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tally {
    Rotated,
    Failed,
    /// Not rotated by design: a missed cron window, or only the last rotation's follow-up.
    Skipped,
}

/// Everything that did not complete counts as failed (and makes the pass exit 6): a failed or
/// retrying attempt, a rotation interrupted or passed to another worker, a failed follow-up.
fn tally(result: &Result<Outcome>) -> Tally {
    match result {
        Ok(Outcome::Rotated { .. }) => Tally::Rotated,
        Ok(
            Outcome::MissedWindow { .. }
            | Outcome::FollowedUp { error: None, .. }
            | Outcome::Verified { error: None, .. },
        ) => Tally::Skipped,
        _ => Tally::Failed,
    }
}

/// `rotor rotate --due`: a progress bar on a terminal (stderr), then a table of what each
/// secret did and the counts; `--json` one object with both.
async fn due(
    store: &Store,
    engine: Arc<Engine>,
    config: &WorkerConfig,
    stop: &CancellationToken,
    out: &Output,
) -> Result<()> {
    let (expected, _) = store.count_due_and_failed().await?;
    let bar = if out.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::with_draw_target(
            Some(expected.max(0) as u64),
            indicatif::ProgressDrawTarget::stderr(),
        )
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} rotated or tried  {msg}")
            .expect("a valid template"),
    );
    let on_done = |(name, result): &(SecretName, Result<Outcome>)| {
        bar.inc(1);
        if tally(result) == Tally::Failed {
            bar.set_message(format!("last failure: {name}"));
        }
    };
    let results = crate::worker::run_due(engine, config, stop, &on_done).await?;
    bar.finish_and_clear();
    let count = |t: Tally| results.iter().filter(|(_, r)| tally(r) == t).count();
    let (rotated, failed, skipped) = (
        count(Tally::Rotated),
        count(Tally::Failed),
        count(Tally::Skipped),
    );
    let rows: Vec<serde_json::Value> = results
        .iter()
        .map(|(name, r)| outcome_json(name, r))
        .collect();
    let summary = json!({
        "Due": results.len(),
        "Rotated": rotated,
        "Failed": failed,
        "Skipped": skipped,
        "Results": rows,
    });
    out.print(&summary, || {
        let mut text = String::new();
        if !results.is_empty() {
            text = super::output::table(
                &["SECRET", "OUTCOME", "DETAIL"],
                results
                    .iter()
                    .map(|(name, r)| {
                        let json = outcome_json(name, r);
                        vec![
                            name.to_string(),
                            json["Outcome"].as_str().unwrap_or_default().to_owned(),
                            outcome_line(name, r),
                        ]
                    })
                    .collect(),
            );
            text.push('\n');
        }
        text.push_str(&format!(
            "{} due, {rotated} rotated, {} not rotated ({failed} failed, {skipped} skipped)",
            results.len(),
            failed + skipped
        ));
        text
    });
    if failed > 0 {
        return Err(Error::Rotation(format!(
            "{failed} of {} due rotations did not complete",
            results.len()
        )));
    }
    Ok(())
}

/// The most due secrets one `--due --dry-run` checks.
const DRY_RUN_LIMIT: usize = 100_000;

/// `rotor rotate --due --dry-run`: checks every due secret as `rotate NAME --dry-run` does,
/// claiming none and changing nothing; a table of what each check found, then the counts.
async fn due_dry_run(store: &Store, engine: &Engine, out: &Output) -> Result<()> {
    let names = store.due_names(DRY_RUN_LIMIT).await?;
    let mut rows = Vec::new();
    let mut failed = 0;
    for name in &names {
        let (outcome, message) = match engine.dry_run(name).await {
            Ok(()) => (
                "Checked",
                format!("secret '{name}': the current credential works and the target answers"),
            ),
            Err(e) => {
                failed += 1;
                ("Failed", e.to_string())
            }
        };
        rows.push((name, outcome, message));
    }
    let json_rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|(name, outcome, message)| {
            json!({"SecretName": name, "Outcome": outcome, "Message": message})
        })
        .collect();
    let summary = json!({
        "DryRun": true,
        "Due": names.len(),
        "Checked": names.len() - failed,
        "Failed": failed,
        "Results": json_rows,
    });
    out.print(&summary, || {
        let mut text = String::new();
        if !rows.is_empty() {
            text = super::output::table(
                &["SECRET", "CHECK", "DETAIL"],
                rows.iter()
                    .map(|(name, outcome, message)| {
                        vec![name.to_string(), outcome.to_string(), message.clone()]
                    })
                    .collect(),
            );
            text.push('\n');
        }
        text.push_str(&format!(
            "{} due, {} checked and working, {failed} failed; nothing was changed",
            names.len(),
            names.len() - failed
        ));
        text
    });
    if failed > 0 {
        return Err(Error::Target(format!(
            "{failed} of {} due secrets failed the dry run",
            names.len()
        )));
    }
    Ok(())
}

fn outcome_line(name: &SecretName, result: &Result<Outcome>) -> String {
    match result {
        Ok(Outcome::Rotated { version_id }) => {
            format!("secret '{name}' rotated: version {version_id} is ACSCurrent")
        }
        Ok(Outcome::Retrying {
            error,
            attempts,
            next_at,
        }) => format!(
            "rotation of secret '{name}' failed (attempt {attempts}): {error}; retrying at {}",
            format_ms(*next_at)
        ),
        Ok(Outcome::Failed {
            error, attempts, ..
        }) => {
            format!("rotation of secret '{name}' failed after {attempts} attempt(s): {error}")
        }
        Ok(Outcome::MissedWindow { .. }) => {
            format!("secret '{name}': rotation window missed; waiting for the next")
        }
        Ok(Outcome::Interrupted { step }) => {
            format!("rotation of secret '{name}' interrupted before its {step} step")
        }
        Ok(Outcome::LeaseLost) => format!("rotation of secret '{name}' passed to another worker"),
        Ok(Outcome::FollowedUp { error: None, .. }) => {
            format!("secret '{name}': the last rotation's follow-up ran")
        }
        Ok(Outcome::FollowedUp {
            error: Some(e),
            retry_at: Some(at),
        }) => format!(
            "secret '{name}': the last rotation's {e}; it runs again at {}",
            format_ms(*at)
        ),
        Ok(Outcome::FollowedUp {
            error: Some(e),
            retry_at: None,
        }) => format!("secret '{name}': the last rotation's {e}; given up"),
        Ok(Outcome::Verified {
            repaired,
            error: None,
        }) => format!(
            "secret '{name}': ACSCurrent checked after a takeover{}",
            if *repaired {
                ": set again, it logs in"
            } else {
                ": it logs in"
            }
        ),
        Ok(Outcome::Verified { error: Some(e), .. }) => format!("secret '{name}': {e}"),
        Err(e) => format!("rotation of secret '{name}' failed: {e}"),
    }
}

fn outcome_json(name: &SecretName, result: &Result<Outcome>) -> serde_json::Value {
    let (outcome, version) = match result {
        Ok(Outcome::Rotated { version_id }) => ("Rotated", Some(version_id.to_string())),
        Ok(Outcome::Retrying { .. }) => ("Retrying", None),
        Ok(Outcome::Failed { .. }) => ("Failed", None),
        Ok(Outcome::MissedWindow { .. }) => ("MissedWindow", None),
        Ok(Outcome::Interrupted { .. }) => ("Interrupted", None),
        Ok(Outcome::LeaseLost) => ("LeaseLost", None),
        Ok(Outcome::FollowedUp { error: None, .. }) => ("FollowedUp", None),
        Ok(Outcome::FollowedUp { error: Some(_), .. }) => ("FollowUpFailed", None),
        Ok(Outcome::Verified { error: None, .. }) => ("Verified", None),
        Ok(Outcome::Verified { error: Some(_), .. }) => ("VerifyFailed", None),
        Err(_) => ("Error", None),
    };
    json!({"SecretName": name, "Outcome": outcome, "VersionId": version, "Message": outcome_line(name, result)})
}
