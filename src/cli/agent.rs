//! `rotor agent [--once]` and `rotor agent exec --env VAR=SECRET[#FIELD] -- CMD ARGS`: the
//! agent on an application host (see [`crate::agent`]). It opens no store and reads no
//! `rotor.toml`: `--config` (or `ROTOR_AGENT_CONFIG`, never `ROTOR_CONFIG`) names the agent's
//! own file (`[agent]`, `[[template]]`, `[cache]`), and the `ROTOR_AGENT_…` variables give its
//! connection settings.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use super::{Cli, Command};
use crate::agent::exec::{parse_signal, EnvSpec, ExecSpec};
use crate::model::parse_duration;

/// `rotor agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Render every template once, then exit (for init containers and deploy scripts).
    #[arg(long)]
    pub once: bool,
    /// Run a program with secrets in its environment instead.
    #[command(subcommand)]
    pub mode: Option<AgentMode>,
}

/// `rotor agent` subcommands.
#[derive(Debug, Subcommand)]
pub enum AgentMode {
    /// Run CMD with variables from secrets; restart it when a value changes.
    Exec(ExecArgs),
}

/// `rotor agent exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// VAR=SECRET[#FIELD]: the variable gets the value's JSON field, or the whole value.
    #[arg(long = "env", value_name = "VAR=SECRET[#FIELD]", required = true)]
    pub env: Vec<EnvSpec>,
    /// The signal that stops the program before a restart.
    #[arg(long, default_value = "SIGTERM", value_parser = parse_signal)]
    pub signal: i32,
    /// How long the program may take to stop before SIGKILL.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub grace: std::time::Duration,
    /// The program and its arguments (after --).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// The agent's own file: `--config` given on the command line, else `ROTOR_AGENT_CONFIG`.
/// `ROTOR_CONFIG` names rotor's configuration: exported for rotor on the same host, it must not
/// be read as the agent's file.
pub(super) fn config_path(parsed: Option<PathBuf>, matches: &clap::ArgMatches) -> Option<PathBuf> {
    use clap::parser::ValueSource;
    // A global flag given after the subcommand is recorded on the deepest one.
    let mut m = matches;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    match m.value_source("config") {
        Some(ValueSource::CommandLine) => parsed,
        _ => std::env::var_os("ROTOR_AGENT_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
    }
}

/// Runs `rotor agent …` to its end and exits with its code: 0, the program's own code in exec
/// mode, or the error's.
pub(super) fn main(cli: Cli) -> ! {
    let Command::Agent(args) = cli.command else {
        unreachable!("called for rotor agent only")
    };
    let level = cli
        .log_level
        .clone()
        .or_else(|| std::env::var("ROTOR_LOG").ok())
        .unwrap_or_else(|| "info".into());
    super::init_tracing(cli.log_format, &level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let (config, json) = (cli.config, cli.json);
    let result = runtime.block_on(async move {
        let settings = crate::agent::settings(config.as_deref())?;
        let cancel = CancellationToken::new();
        crate::agent::cancel_on_signal(cancel.clone());
        match args.mode {
            None => crate::agent::run(settings, args.once, cancel)
                .await
                .map(|()| 0),
            Some(AgentMode::Exec(e)) => {
                let spec = ExecSpec {
                    env: e.env,
                    command: e.command,
                    signal: e.signal,
                    grace: e.grace,
                };
                crate::agent::exec(settings, spec, cancel).await
            }
        }
    });
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => super::fail(json, e.code(), &e.to_string(), e.exit_code()),
    }
}
