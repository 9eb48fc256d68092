//! The `rotor` command line: the global options, the command tree, and the one path every
//! command takes — parse (clap, into the model types), open the store, run, close, and turn an
//! error into one line on stderr with its exit code ([`crate::error::exit`]).
//!
//! One file per command group; each parses and prints, and leaves the rules to the engine, the
//! store and the rotator families. Options a family declares reach it through [`options`]
//! without the CLI knowing what they mean. Values are printed only by `secret get`.

mod options;
mod output;
mod rotate;
mod secret;
mod target;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use rotators::Registry;
use serde_json::json;

use crate::clock::{format_ms, Clock};
use crate::crypto::KeyMaterial;
use crate::error::{Error, Result};
use crate::model::{parse_duration, RotationPolicy, RotationSchedule, SecretName};
use crate::store::{OpenMode, Store, StoreConfig};

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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

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
}

#[derive(Debug, Subcommand)]
pub enum RotationCommand {
    /// Set or disable a secret's automatic rotation.
    Set {
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

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a master key.
    Create { name: String },
    /// List master keys (never their material).
    List,
}

/// Builds the store configuration from the global options and the environment.
pub fn store_config(cli: &Cli) -> Result<StoreConfig> {
    let master_key = match std::env::var("ROTOR_MASTER_KEY") {
        Ok(text) => Some(KeyMaterial::from_base64(&text).ok_or_else(|| {
            Error::config("ROTOR_MASTER_KEY does not hold a base64-encoded 32-byte key")
        })?),
        Err(_) => None,
    };
    Ok(StoreConfig {
        data_dir: cli.data_dir.clone(),
        url: cli.store.clone(),
        master_key,
        clock: Clock::system(),
        connect_timeout: *cli.store_connect_timeout,
    })
}

/// Parses the command line, with the options of `registry`'s families added to the commands
/// they belong to and read back into [`rotators::Options`].
pub fn parse(registry: &Registry, args: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
    let command = options::add_family_options(Cli::command(), registry);
    let matches = command.try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    options::collect(&mut cli, &matches, registry)?;
    Ok(cli)
}

/// The `rotor` binary's whole life: parse, log, run with `registry`'s families and rotators,
/// and turn an error into one line on stderr and its exit code. Test builds call it with
/// rotators of their own.
pub fn main_with(registry: Registry) {
    let cli = parse(&registry, std::env::args_os().collect()).unwrap_or_else(|e| usage_error(e));
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    if let Err(e) = runtime.block_on(run(cli, registry)) {
        eprintln!("rotor: {e}");
        std::process::exit(e.exit_code());
    }
}

/// Help and version print as clap prints them; a usage error becomes one line and exit code 2,
/// like every other invalid input.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    eprintln!(
        "rotor: {} (see: rotor --help)",
        first.trim_start_matches("error: ")
    );
    std::process::exit(crate::error::exit::INVALID)
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROTOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colour only for a person at a terminal, and never under NO_COLOR (https://no-color.org).
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs one command to completion: opens the store (creating it for `init` and `worker`), runs
/// the command, and closes the store whatever the outcome.
pub async fn run(cli: Cli, registry: Registry) -> Result<()> {
    let config = store_config(&cli)?;
    let out = Output { json: cli.json };
    let mode = match cli.command {
        Command::Init | Command::Worker(_) => OpenMode::Init,
        _ => OpenMode::Existing,
    };
    let existed = config.url.is_some() || config.data_dir.join(crate::store::DB_FILE).exists();
    let store = Store::open(&config, mode).await?;
    let result = match cli.command {
        Command::Init => {
            init(&store, &config, existed, &out);
            Ok(())
        }
        Command::Worker(args) => rotate::worker(&store, registry, &args).await,
        Command::Rotate(args) => rotate::rotate(&store, registry, &args, &out).await,
        Command::Secret(cmd) => secret::run(&store, &registry, cmd, &out).await,
        Command::Rotation(cmd) => rotation(&store, cmd, &out).await,
        Command::Target(cmd) => target::run(&store, &registry, cmd, &out).await,
        Command::Key(cmd) => key(&store, cmd, &out).await,
    };
    store.close().await;
    result
}

/// `rotor init`: says where the store and its master key are.
fn init(store: &Store, config: &StoreConfig, existed: bool, out: &Output) {
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
        json!({"DataDir": config.data_dir, "Store": store.backend().name(), "MasterKey": key}),
        || {
            let verb = if existed { "ready" } else { "initialised" };
            format!("rotor {verb}: store {location}, master key {key}")
        },
    );
}

/// `rotor rotation set`.
async fn rotation(store: &Store, cmd: RotationCommand, out: &Output) -> Result<()> {
    let RotationCommand::Set {
        name,
        interval,
        cron,
        window,
        jitter,
        rotate_now,
        disable,
    } = cmd;
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

/// `rotor key create | list`.
async fn key(store: &Store, cmd: KeyCommand, out: &Output) -> Result<()> {
    match cmd {
        KeyCommand::Create { name } => {
            let key = store.create_key(&name).await?;
            out.print(&key, || format!("created key '{}'", key.key_id));
        }
        KeyCommand::List => {
            let keys = store.list_keys().await?;
            out.print(&keys, || {
                table(
                    &["KEY", "CREATED", "SECRETS"],
                    keys.iter()
                        .map(|k| {
                            vec![
                                k.key_id.clone(),
                                format_ms(k.creation_date),
                                k.secret_count.to_string(),
                            ]
                        })
                        .collect(),
                )
            });
        }
    }
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
