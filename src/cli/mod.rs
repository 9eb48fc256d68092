//! The `rotor` command line: the global options, the command tree, and the one path every
//! command takes — parse (clap, into the model types), open the store, run, close, and turn an
//! error into one line on stderr with its exit code ([`crate::error::exit`]).
//!
//! One file per command group; each parses and prints, and leaves the rules to the engine, the
//! store and the rotator families. Options a family declares reach it through [`options`]
//! without the CLI knowing what they mean. Values are printed only by `secret get`.

mod agent;
mod api;
mod audit;
mod console;
mod key;
mod options;
mod output;
mod rotate;
mod secret;
mod target;
mod usage;
mod verify;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use rotators::Registry;
use serde_json::json;

use crate::clock::{format_ms, Clock};
pub use crate::config::LogFormat;
use crate::config::{self, CommandLine, Config};
use crate::crypto::KeyMaterial;
use crate::error::{Error, Result};
use crate::model::{parse_duration, RotationPolicy, RotationSchedule, SecretName};
use crate::store::{OpenMode, Store, StoreConfig};

pub use self::key::KeyCommand;
pub use self::options::Redacted;
use self::output::{table, Output};
pub use self::rotate::{EngineArgs, RotateArgs};
pub use self::secret::{CreateArgs, SecretCommand, ValueSource};
pub use self::target::TargetCommand;

/// rotor: a secrets store and rotation engine worker.
#[derive(Debug, Parser)]
#[command(name = "rotor", version, about, propagate_version = true)]
pub struct Cli {
    /// Directory holding the embedded store and the master key file.
    #[arg(
        long,
        global = true,
        env = "ROTOR_DATA_DIR",
        default_value = "./rotor-data"
    )]
    pub data_dir: PathBuf,
    /// Shared store URL (postgres://user@host/db); the embedded SQLite store when absent.
    #[arg(
        long = "store",
        global = true,
        env = "ROTOR_STORE",
        hide_env_values = true
    )]
    pub store: Option<String>,
    /// How long opening the store may wait for a connection.
    #[arg(long, global = true, env = "ROTOR_STORE_CONNECT_TIMEOUT", default_value_t = crate::store::DEFAULT_CONNECT_TIMEOUT.into(), value_parser = rotate::duration_arg)]
    pub store_connect_timeout: humantime::Duration,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format on stderr.
    #[arg(long, global = true, env = "ROTOR_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// What is logged on stderr, as filter directives (`debug`, `rotor=debug,info`); also
    /// ROTOR_LOG or log.level. Default: `warn`, and `info` for worker and serve.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// The configuration file (TOML); DATA_DIR/rotor.toml is read when present. For `rotor
    /// agent`, the agent's own file (ROTOR_AGENT_CONFIG; ROTOR_CONFIG is not read).
    #[arg(long, global = true, env = "ROTOR_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Settings given as flags, for the configuration's top layer (filled in by [`parse`]).
    #[arg(skip)]
    pub flags: CommandLine,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The `rotor` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data directory, the store and the master key file.
    Init,
    /// Run the background worker until SIGINT or SIGTERM.
    Worker(rotate::WorkerArgs),
    /// Rotate now: one secret, or everything due; or check one without changing it.
    Rotate(RotateArgs),
    /// Manage secrets and their versions.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Configure automatic rotation.
    #[command(subcommand)]
    Rotation(RotationCommand),
    /// Manage the master keys (CMKs) that protect secrets.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage the servers rotor rotates credentials on.
    #[command(subcommand)]
    Target(TargetCommand),
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Read the audit log.
    Audit(audit::AuditArgs),
    /// Serve the KMS-compatible API (and metrics) without rotating.
    Serve(rotate::WorkerArgs),
    /// Print the API's CA certificate (PEM), for clients to pin.
    Ca,
    /// Manage the API's AccessKeys and their policies.
    #[command(subcommand, name = "access-key")]
    AccessKey(api::AccessKeyCommand),
    /// Manage the web console's users and their policies.
    #[command(subcommand, name = "console-user")]
    ConsoleUser(console::ConsoleUserCommand),
    /// Keep files, a program's environment and a local cache endpoint in step with rotations,
    /// through the API (on an application host; --config names the agent's own file).
    Agent(agent::AgentArgs),
    /// Check that managed secrets' current credentials (and dual accounts' previous ones) still
    /// log in on their targets (drift).
    Verify(verify::VerifyArgs),
}

/// `rotor config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print every effective setting and where it came from
    /// (never secret material); worker flags given here show their effect.
    Check(rotate::WorkerArgs),
}

/// `rotor rotation` subcommands.
#[derive(Debug, Subcommand)]
pub enum RotationCommand {
    /// Set or disable a secret's automatic rotation.
    #[command(group = clap::ArgGroup::new("schedule").required(true))]
    Set {
        /// The secret's name.
        name: SecretName,
        /// Rotate every interval (e.g. 7d, 12h).
        #[arg(long, group = "schedule", value_parser = parse_duration)]
        interval: Option<std::time::Duration>,
        /// Rotate at cron times (minute hour day-of-month month day-of-week), UTC.
        #[arg(long, group = "schedule")]
        cron: Option<String>,
        /// With --cron: how long after a fire time a rotation may still start.
        #[arg(long, requires = "cron", value_parser = parse_duration)]
        window: Option<std::time::Duration>,
        /// Start each rotation up to this much later, at random, to spread secrets out.
        #[arg(long, conflicts_with = "disable", value_parser = parse_duration)]
        jitter: Option<std::time::Duration>,
        /// Rotate once now rather than at the first scheduled time.
        #[arg(long, conflicts_with = "disable")]
        rotate_now: bool,
        /// Turn automatic rotation off.
        #[arg(long, group = "schedule")]
        disable: bool,
    },
}

/// Builds the store configuration from the settings and the environment.
pub fn store_config(settings: &Config) -> Result<StoreConfig> {
    let master_key = match std::env::var("ROTOR_MASTER_KEY") {
        Ok(text) => Some(KeyMaterial::from_base64(&text).ok_or_else(|| {
            Error::config("ROTOR_MASTER_KEY does not hold a base64-encoded 32-byte key")
        })?),
        Err(_) => None,
    };
    Ok(StoreConfig {
        data_dir: settings.data_dir.clone(),
        url: settings.store.url.clone(),
        master_key,
        key_file: settings.master_key.file.clone(),
        clock: Clock::system(),
        connect_timeout: settings.store.connect_timeout,
        audit_reads: settings.audit.reads,
        actor: actor(),
    })
}

/// Parses the command line, with the options of `registry`'s families added to the commands
/// they belong to and read back into [`rotators::Options`].
pub fn parse(registry: &Registry, args: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
    let command = options::add_family_options(Cli::command(), registry);
    let matches = command.try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    options::collect(&mut cli, &matches, registry)?;
    if let Command::Agent(_) = cli.command {
        cli.config = agent::config_path(cli.config.take(), &matches);
    }
    cli.flags = flags(&cli, &matches);
    Ok(cli)
}

/// The settings given as flags on the command line (not by environment or default), for the
/// configuration's top layer.
fn flags(cli: &Cli, matches: &clap::ArgMatches) -> CommandLine {
    use clap::parser::ValueSource;
    let mut flags = CommandLine::default();
    // Global flags may be given after the subcommand: clap records them on the deepest one.
    let mut m = matches;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    let given = |id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
    if given("data_dir") {
        flags.set("data_dir", &cli.data_dir);
    }
    if given("store") {
        flags.set("store.url", &cli.store);
    }
    if given("store_connect_timeout") {
        flags.set(
            "store.connect_timeout",
            cli.store_connect_timeout.to_string(),
        );
    }
    if given("log_format") {
        flags.set("log.format", cli.log_format);
    }
    if given("log_level") {
        flags.set("log.level", &cli.log_level);
    }
    match &cli.command {
        Command::Worker(args)
        | Command::Serve(args)
        | Command::Config(ConfigCommand::Check(args)) => {
            args.engine.flags(m, &mut flags);
            args.api.flags(m, &mut flags);
            if given("metrics_listen") {
                // `serve` has its own setting: a worker and a server may share a configuration.
                let key = match &cli.command {
                    Command::Serve(_) => "server.metrics_listen",
                    _ => "worker.metrics_listen",
                };
                flags.set(key, args.metrics_listen);
            }
        }
        Command::Rotate(args) => args.engine.flags(m, &mut flags),
        _ => {}
    }
    flags
}

/// Who runs this command, for the audit log: the OS user (by uid, not the environment).
fn actor() -> String {
    #[cfg(unix)]
    {
        // SAFETY: getuid cannot fail; getpwuid_r writes only into the buffers given.
        let uid = unsafe { libc::getuid() };
        let mut buf = vec![0u8; 4096];
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc == 0 && !found.is_null() {
            // SAFETY: pw_name points into `buf`, NUL-terminated, while `buf` lives.
            let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
            return format!("cli:{}", name.to_string_lossy());
        }
        format!("cli:uid {uid}")
    }
    #[cfg(not(unix))]
    {
        "cli".into()
    }
}

/// The `rotor` binary's whole life: parse, log, run with `registry`'s families and rotators,
/// and turn an error into one line on stderr and its exit code (under `--json`, also
/// `{"Code","Message"}` on stdout). Test builds call it with rotators of their own.
pub fn main_with(registry: Registry) {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let json = asks_for_json(&args);
    let cli = parse(&registry, args).unwrap_or_else(|e| usage::usage_error(e, json));
    if let Command::Agent(_) = cli.command {
        // The agent opens no store and reads no rotor.toml: --config is its own file.
        agent::main(cli)
    }
    let loaded = match config::load(cli.config.as_deref(), &cli.flags) {
        Ok(loaded) => loaded,
        Err(e) => fail(
            json,
            crate::error::code::CONFIGURATION,
            &e.to_string(),
            crate::error::exit::INVALID,
        ),
    };
    init_tracing(loaded.config.log.format, &log_level(&cli.command, &loaded));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match runtime.block_on(run(cli, loaded, registry)) {
        Err(e) => fail(json, e.code(), &e.to_string(), e.exit_code()),
        Ok(()) if output::stdout_failed() => std::process::exit(crate::error::exit::FAILURE),
        Ok(()) => {}
    }
}

/// Whether the command line asks for `--json` (read before clap, so that a usage error can
/// answer in JSON too).
fn asks_for_json(args: &[std::ffi::OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

/// Ends the process after a failure: `rotor: MESSAGE` on stderr, under `--json` also
/// `{"Code","Message"}` on stdout (unless the command printed its own result), and the exit
/// code of its kind.
pub(super) fn fail(json: bool, code: &str, message: &str, exit: i32) -> ! {
    output::note(message);
    // A command that already printed its result (a due pass's summary) keeps stdout one document.
    if json && !output::stdout_used() {
        let body = json!({"Code": code, "Message": message});
        output::print_line(&serde_json::to_string_pretty(&body).expect("serialisable output"));
    }
    std::process::exit(exit)
}

/// One-shot commands log warnings and errors only — what they did is what they print; the
/// worker and the server, which run for long, log at `info`. A level set anywhere (the
/// configuration file, `ROTOR_LOG`, `--log-level`) wins.
fn log_level(command: &Command, loaded: &config::Loaded) -> String {
    match command {
        _ if loaded.source("log.level") != "default" => loaded.config.log.level.clone(),
        Command::Worker(_) | Command::Serve(_) => loaded.config.log.level.clone(),
        _ => ONE_SHOT_LOG_LEVEL.to_owned(),
    }
}

/// The log level of one-shot commands (see [`log_level`]).
pub const ONE_SHOT_LOG_LEVEL: &str = "warn";

fn init_tracing(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|e| {
        output::note(&format!(
            "log.level '{level}' is not a filter ({e}); logging at info"
        ));
        tracing_subscriber::EnvFilter::new("info,sqlx=warn")
    });
    // Colour only for a person at a terminal, and never under NO_COLOR (https://no-color.org).
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // A closed stderr drops log lines: it must not panic a task (a worker's signal handler
    // that panics never stops the worker).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .log_internal_errors(false)
        .with_writer(|| output::QuietStderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs one command to completion: opens the store (creating it for `init` and `worker`), runs
/// the command, and closes the store whatever the outcome.
pub async fn run(cli: Cli, loaded: config::Loaded, registry: Registry) -> Result<()> {
    let out = Output { json: cli.json };
    if let Command::Config(ConfigCommand::Check(_)) = cli.command {
        config_check(&loaded, &out);
        return Ok(());
    }
    if let Command::Ca = cli.command {
        return api::ca(&loaded.config);
    }
    let settings = &loaded.config;
    let config = store_config(settings)?;
    let mode = match cli.command {
        Command::Init | Command::Worker(_) => OpenMode::Init,
        _ => OpenMode::Existing,
    };
    let existed = config.url.is_some() || config.data_dir.join(crate::store::DB_FILE).exists();
    let store = Store::open(&config, mode).await?;
    let result = match cli.command {
        Command::Init => init(&store, &config, existed, &out),
        Command::Worker(_) => rotate::worker(&store, registry, settings).await,
        Command::Rotate(args) => rotate::rotate(&store, registry, &args, settings, &out).await,
        Command::Secret(SecretCommand::Verify { name }) => {
            verify::run(&store, registry, settings, Some(vec![name]), &out).await
        }
        Command::Secret(cmd) => secret::run(&store, &registry, cmd, &out).await,
        Command::Verify(args) => {
            verify::run(&store, registry, settings, args.name.map(|n| vec![n]), &out).await
        }
        Command::Rotation(cmd) => rotation(&store, &registry, cmd, &out).await,
        Command::Target(cmd) => target::run(&store, &registry, cmd, &out).await,
        Command::Key(cmd) => key::run(&store, cmd, &out).await,
        Command::Audit(args) => audit::run(&store, &args, &out).await,
        Command::Serve(_) => api::serve(&store, registry, settings).await,
        Command::AccessKey(cmd) => api::access_key(&store, cmd, &out).await,
        Command::ConsoleUser(cmd) => console::run(&store, cmd, &out).await,
        Command::Config(_) | Command::Ca | Command::Agent(_) => {
            unreachable!("these run without a store")
        }
    };
    store.close().await;
    result
}

/// `rotor config check`: the effective settings, each with where it came from.
fn config_check(loaded: &config::Loaded, out: &Output) {
    let rows = loaded.effective();
    let file = loaded
        .file
        .as_ref()
        .map_or_else(|| "none".to_string(), |f| f.display().to_string());
    out.print(
        json!({
            "File": loaded.file,
            "Settings": rows.iter().map(|(k, v, s)| json!({"Key": k, "Value": v, "Source": s})).collect::<Vec<_>>(),
        }),
        || {
            let mut text = format!("configuration OK (file: {file})\n");
            text.push_str(&table(
                &["SETTING", "VALUE", "FROM"],
                rows.iter()
                    .map(|(k, v, s)| vec![k.clone(), v.clone(), s.clone()])
                    .collect(),
            ));
            text
        },
    );
}

/// `rotor init`: says where the store and its master key are.
fn init(store: &Store, config: &StoreConfig, existed: bool, out: &Output) -> Result<()> {
    // The API's certificate authority lives in the data directory, whatever the store.
    crate::store::create_data_dir(&config.data_dir)?;
    crate::api::tls::ensure_ca(&config.data_dir)?;
    let ca = config.data_dir.join(crate::api::tls::CA_CERT);
    let location = match &config.url {
        Some(_) => "PostgreSQL".to_string(),
        None => config
            .data_dir
            .join(crate::store::DB_FILE)
            .display()
            .to_string(),
    };
    let key = if config.master_key.is_some() {
        "from ROTOR_MASTER_KEY".to_string()
    } else {
        config.key_file().display().to_string()
    };
    out.print(
        json!({"DataDir": config.data_dir, "Store": store.backend().name(), "MasterKey": key, "ApiCa": ca}),
        || {
            let verb = if existed { "ready" } else { "initialised" };
            format!("rotor {verb}: store {location}, master key {key}")
        },
    );
    Ok(())
}

/// `rotor rotation set`.
async fn rotation(
    store: &Store,
    registry: &Registry,
    cmd: RotationCommand,
    out: &Output,
) -> Result<()> {
    let RotationCommand::Set {
        name,
        interval,
        cron,
        window,
        jitter,
        rotate_now,
        disable,
    } = cmd;
    if window.is_some() && cron.is_none() {
        return Err(Error::invalid(
            "--window belongs to --cron: an interval has no fire times to start within",
        ));
    }
    let schedule = match (interval, cron, disable) {
        (Some(i), _, _) => Some(RotationSchedule::Interval(i)),
        (_, Some(c), _) => Some(RotationSchedule::cron(&c, window)?),
        (_, _, true) => None,
        _ => {
            return Err(Error::invalid(
                "give one of --interval, --cron or --disable",
            ))
        }
    };
    let policy = schedule.map(|schedule| RotationPolicy {
        schedule,
        jitter,
        rotate_now,
    });
    if let Some(p) = &policy {
        // A schedule that breaks the type's bounds says so first; a valid one on a secret that
        // cannot rotate is refused.
        let info = store.describe(&name).await?;
        p.schedule
            .check_for(info.kind, chrono::Utc::now())
            .map_err(|e| Error::invalid(format!("secret '{name}': {e}")))?;
        crate::engine::check_can_rotate(registry, &name, info.kind, info.target.as_deref())?;
    }
    let info = store.set_rotation(&name, policy).await?;
    out.print(&info, || match info.next_rotation_at {
        Some(next) => format!(
            "secret '{}' rotates {}; next rotation at {}",
            info.name,
            info.rotation_summary(),
            format_ms(next)
        ),
        None => format!("secret '{}': automatic rotation disabled", info.name),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Cli {
        parse(
            &crate::builtin_rotators(),
            args.iter().map(Into::into).collect(),
        )
        .unwrap()
    }

    #[test]
    fn parsed_arguments_never_show_secrets_in_debug() {
        let cli = parse_args(&[
            "rotor",
            "secret",
            "create",
            "x",
            "--type",
            "Generic",
            "--value",
            "Hunter2-Value",
        ]);
        assert!(!format!("{cli:?}").contains("Hunter2"), "{cli:?}");
        let cli = parse_args(&[
            "rotor",
            "target",
            "add",
            "t",
            "--kind",
            "postgres",
            "--url",
            "postgres://h/db",
            "--admin-user",
            "a",
            "--admin-password",
            "Hunter2-Admin",
        ]);
        assert!(!format!("{cli:?}").contains("Hunter2"), "{cli:?}");
        assert!(format!("{cli:?}").contains("admin-user"), "{cli:?}");
    }

    fn help(path: &[&str]) -> String {
        let mut cmd = options::add_family_options(Cli::command(), &crate::builtin_rotators());
        let mut sub = &mut cmd;
        for name in path {
            sub = sub.find_subcommand_mut(name).unwrap();
        }
        sub.render_long_help().to_string()
    }

    #[test]
    fn help_shows_family_options_and_the_config_defaults() {
        let create = help(&["secret", "create"]);
        for option in [
            "--account",
            "--database",
            "--privilege",
            "--password-length",
            "--exclude-chars",
        ] {
            assert!(create.contains(option), "{option} in {create}");
        }
        let add = help(&["target", "add"]);
        for option in [
            "postgres (postgres:// postgresql://)",
            "--admin-user",
            "--admin-password-stdin",
            "--admin-password",
        ] {
            assert!(add.contains(option), "{option} in {add}");
        }
        let worker = help(&["worker"]);
        for default in [
            "[default: 30s]",
            "[default: 500ms]",
            "[default: 1h]",
            "[default: 5m]",
            "[default: 16]",
        ] {
            assert!(worker.contains(default), "{default} in {worker}");
        }
    }
}
