//! The `rotor` command line: argument definitions (clap) and what each command prints.
//!
//! Human output by default, `--json` for scripts. Errors are one line on stderr, prefixed
//! `rotor: `, with the exit code of their kind ([`crate::error::exit`]). Values are printed only
//! by `secret get`, the command whose job that is.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use clap::{Args, Parser, Subcommand};
use rotors::account::{check_identifier, Account, PasswordPolicy};
use rotors::{Registry, SecretKind, SecretType, SecretValue};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::accounts::{AccountSource, DbSecretSpec};
use crate::clock::{format_ms, Clock};
use crate::crypto::KeyMaterial;
use crate::engine::{Engine, EngineConfig, Outcome};
use crate::error::{Error, Result};
use crate::model::{
    parse_duration, RotationPolicy, RotationSchedule, SecretName, Stage, Tag, VersionId,
};
use crate::store::{
    admin_secret_name, Backend, DeleteMode, NewSecret, OpenMode, PutValue, SecretInfo, Selector,
    Store, StoreConfig, TargetKind, VersionInfo, DEFAULT_RECOVERY_DAYS,
};
use crate::worker::WorkerConfig;

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
    Worker(EngineArgs),
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

/// How rotations run (worker and one-shot runs).
#[derive(Clone, Debug, Args)]
pub struct EngineArgs {
    /// Rotations in flight at once.
    #[arg(long, env = "ROTOR_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,
    /// Rotations in flight at once on one target.
    #[arg(long, env = "ROTOR_PER_TARGET", default_value_t = 2)]
    pub per_target: usize,
    /// How long a claimed secret stays this process's without a heartbeat.
    #[arg(long, env = "ROTOR_LEASE", default_value = "30s", value_parser = duration_arg)]
    pub lease: Duration,
    /// How often an idle worker looks for due secrets.
    #[arg(long, env = "ROTOR_POLL", default_value = "500ms", value_parser = duration_arg)]
    pub poll: Duration,
    /// On shutdown, how long in-flight steps may take to finish.
    #[arg(long, env = "ROTOR_DRAIN_TIMEOUT", default_value = "30s", value_parser = duration_arg)]
    pub drain_timeout: Duration,
    /// Attempts per rotation cycle before the secret is marked failed.
    #[arg(long, env = "ROTOR_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt (with jitter) up to --backoff-cap.
    #[arg(long, env = "ROTOR_BACKOFF_BASE", default_value = "30s", value_parser = duration_arg)]
    pub backoff_base: Duration,
    #[arg(long, env = "ROTOR_BACKOFF_CAP", default_value = "1h", value_parser = duration_arg)]
    pub backoff_cap: Duration,
    /// A rotator step that runs longer fails (and is retried).
    #[arg(long, env = "ROTOR_STEP_TIMEOUT", default_value = "5m", value_parser = duration_arg)]
    pub step_timeout: Duration,
    /// Extra tries of the test step, for changes that take a moment to propagate.
    #[arg(long, env = "ROTOR_TEST_RETRIES", default_value_t = 3)]
    pub test_retries: u32,
    #[arg(long, env = "ROTOR_TEST_RETRY_DELAY", default_value = "1s", value_parser = duration_arg)]
    pub test_retry_delay: Duration,
}

impl EngineArgs {
    fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            lease: self.lease,
            max_attempts: self.max_attempts.max(1),
            backoff_base: self.backoff_base,
            backoff_cap: self.backoff_cap,
            step_timeout: self.step_timeout,
            test_retries: self.test_retries,
            test_retry_delay: self.test_retry_delay,
            ..EngineConfig::default()
        }
    }

    fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.concurrency.max(1),
            per_target: self.per_target.max(1),
            poll: self.poll,
            drain_timeout: self.drain_timeout,
        }
    }
}

fn duration_arg(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e} (examples: 30s, 5m, 1h)"))
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The secret to rotate now.
    #[arg(required_unless_present = "due", conflicts_with = "due")]
    pub name: Option<String>,
    /// Make one pass over every secret that is due, then exit.
    #[arg(long)]
    pub due: bool,
    /// Check that the current credential works and the target answers; change nothing.
    #[arg(long, requires = "name")]
    pub dry_run: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    name: String,
    /// Generic, Rds, PolarDB, Redis, RAMCredentials or ECS.
    #[arg(long = "type")]
    secret_type: String,
    /// DoubleUsers or SingleUser (Rds, Redis), Password or SSHKey (ECS).
    #[arg(long)]
    sub_type: Option<String>,
    #[command(flatten)]
    value: ValueSource,
    /// The first version's id (default v1).
    #[arg(long)]
    version_id: Option<String>,
    /// A tag KEY=VALUE (repeatable, at most 20).
    #[arg(long = "tag")]
    tags: Vec<String>,
    #[arg(long, default_value = "")]
    description: String,
    /// The master key that protects the secret (default: the key named `default`).
    #[arg(long)]
    key: Option<String>,
    /// The target the accounts live on (database secrets).
    #[arg(long)]
    target: Option<String>,
    /// Create mode: the account to create (and `ACCOUNT_clone` for dual accounts).
    #[arg(long, requires = "target", conflicts_with_all = ["value", "value_file"])]
    account: Option<String>,
    /// The database the accounts work in.
    #[arg(long, requires = "target")]
    database: Option<String>,
    /// Create mode: ReadWrite (default), ReadOnly, DDLOnly or DMLOnly.
    #[arg(long, requires = "account")]
    privilege: Option<String>,
    /// Length of generated passwords (16–128).
    #[arg(long, requires = "target", default_value_t = rotors::account::DEFAULT_PASSWORD_LENGTH)]
    password_length: usize,
    /// Characters generated passwords must not use (: / @ " ' \\ and space never are).
    #[arg(long, requires = "target", default_value = "")]
    exclude_chars: String,
    /// Turn on automatic rotation at this interval (the first rotation is one interval away).
    #[arg(long)]
    rotation_interval: Option<String>,
}

#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct ValueSource {
    /// The value as text (visible to other local users in the process list; prefer --value-file).
    #[arg(long)]
    value: Option<Redacted>,
    /// Read the value from a file, or from standard input with `-`.
    #[arg(long)]
    value_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create a secret with its first version; with --target, create or import database accounts.
    Create(Box<CreateArgs>),
    /// Print a version's value (ACSCurrent unless told otherwise).
    Get {
        name: String,
        #[arg(long, conflicts_with = "version_id")]
        stage: Option<String>,
        #[arg(long)]
        version_id: Option<String>,
    },
    /// Store a new version; it becomes ACSCurrent unless stages are given.
    Put {
        name: String,
        #[command(flatten)]
        value: ValueSource,
        #[arg(long)]
        version_id: Option<String>,
        /// A stage for the new version (repeatable): ACSCurrent or, on Generic secrets, a custom one.
        #[arg(long = "stage")]
        stages: Vec<String>,
    },
    /// List secrets, optionally only those with all the given tags.
    List {
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Include secrets scheduled for deletion.
        #[arg(long)]
        include_deleted: bool,
    },
    /// Show a secret's metadata.
    Describe { name: String },
    /// List a secret's versions and their stages.
    Versions { name: String },
    /// Move a stage to a version and/or remove it from one.
    Stage {
        name: String,
        #[arg(long)]
        stage: String,
        #[arg(long)]
        move_to: Option<String>,
        #[arg(long)]
        remove_from: Option<String>,
    },
    /// Schedule a secret's deletion (restorable during the recovery window), or delete it now.
    Delete {
        name: String,
        /// Days before the secret is deleted for good (7–30, default 30).
        #[arg(long, conflicts_with = "force")]
        recovery_days: Option<u32>,
        /// Delete now, with every version; cannot be undone.
        #[arg(long)]
        force: bool,
    },
    /// Cancel a scheduled deletion.
    Restore { name: String },
}

#[derive(Debug, Subcommand)]
pub enum RotationCommand {
    /// Set or disable a secret's automatic rotation.
    Set {
        name: String,
        /// Rotate every interval (e.g. 7d, 12h).
        #[arg(long, group = "schedule")]
        interval: Option<String>,
        /// Rotate at cron times (minute hour day-of-month month day-of-week), UTC.
        #[arg(long, group = "schedule")]
        cron: Option<String>,
        /// With --cron: how long after a fire time a rotation may still start.
        #[arg(long, requires = "cron")]
        window: Option<String>,
        /// Start each rotation up to this much later, at random, to spread secrets out.
        #[arg(long, conflicts_with = "disable")]
        jitter: Option<String>,
        /// Rotate once now rather than at the first scheduled time.
        #[arg(long, conflicts_with = "disable")]
        rotate_now: bool,
        /// Turn automatic rotation off.
        #[arg(long, group = "schedule")]
        disable: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// Add a target; its admin account is stored as a secret of its own.
    Add {
        name: String,
        /// postgres, mysql or redis.
        #[arg(long)]
        kind: String,
        /// Address and options, without an account (e.g. postgres://db.internal:5432/postgres).
        #[arg(long)]
        url: String,
        #[arg(long)]
        admin_user: String,
        /// Read the admin password from standard input (empty for none).
        #[arg(long, conflicts_with = "admin_password")]
        admin_password_stdin: bool,
        /// The admin password (visible in the process list; prefer --admin-password-stdin).
        #[arg(long)]
        admin_password: Option<Redacted>,
    },
    /// List targets.
    List,
    /// Check that the admin logs in and may manage accounts.
    Check { name: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a master key.
    Create { name: String },
    /// List master keys (never their material).
    List,
}

/// A secret given on the command line: kept out of `Debug` (the parsed arguments are `Debug`).
#[derive(Clone)]
pub struct Redacted(Zeroizing<String>);

impl std::str::FromStr for Redacted {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(Redacted(Zeroizing::new(s.to_owned())))
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
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
    })
}

/// The `rotor` binary's whole life: parse, log, run with `registry`'s rotators, and turn an
/// error into one line on stderr and its exit code. Test builds call it with rotators of their own.
pub fn main_with(registry: Registry) {
    let cli = Cli::try_parse().unwrap_or_else(|e| usage_error(e));
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs one command to completion.
pub async fn run(cli: Cli, registry: Registry) -> Result<()> {
    let config = store_config(&cli)?;
    let out = Output { json: cli.json };
    match cli.command {
        Command::Init => {
            let existed =
                config.url.is_some() || config.data_dir.join(crate::store::DB_FILE).exists();
            let store = Store::open(&config, OpenMode::Init).await?;
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
            store.close().await;
        }
        Command::Worker(args) => {
            let store = Store::open(&config, OpenMode::Init).await?;
            let _lock = match store.backend() {
                Backend::Sqlite => Some(lock_sqlite_worker(&config)?),
                Backend::Postgres => None,
            };
            let shutdown = CancellationToken::new();
            tokio::spawn(crate::worker::cancel_on_signal(shutdown.clone()));
            let engine = Arc::new(Engine::new(store.clone(), registry, args.engine_config()));
            crate::worker::run(engine, args.worker_config(), shutdown).await?;
            store.close().await;
        }
        Command::Rotate(args) => {
            let store = Store::open(&config, OpenMode::Existing).await?;
            let result = rotate_command(&store, registry, &args, &out).await;
            store.close().await;
            result?;
        }
        Command::Secret(cmd) => {
            let store = Store::open(&config, OpenMode::Existing).await?;
            secret_command(&store, cmd, &out).await?;
            store.close().await;
        }
        Command::Rotation(RotationCommand::Set {
            name,
            interval,
            cron,
            window,
            jitter,
            rotate_now,
            disable,
        }) => {
            let store = Store::open(&config, OpenMode::Existing).await?;
            let name = SecretName::parse_any(&name)?;
            let schedule = match (interval, cron, disable) {
                (Some(i), _, _) => Some(RotationSchedule::Interval(parse_duration(&i)?)),
                (_, Some(c), _) => Some(RotationSchedule::cron(
                    &c,
                    window.as_deref().map(parse_duration).transpose()?,
                )?),
                (_, _, true) => None,
                _ => {
                    return Err(Error::invalid(
                        "give one of --interval, --cron or --disable",
                    ))
                }
            };
            let policy = match schedule {
                Some(schedule) => Some(RotationPolicy {
                    schedule,
                    jitter: jitter.as_deref().map(parse_duration).transpose()?,
                    rotate_now,
                }),
                None => None,
            };
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
            store.close().await;
        }
        Command::Target(cmd) => {
            let store = Store::open(&config, OpenMode::Existing).await?;
            let result = target_command(&store, cmd, &out).await;
            store.close().await;
            result?;
        }
        Command::Key(cmd) => {
            let store = Store::open(&config, OpenMode::Existing).await?;
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
            store.close().await;
        }
    }
    Ok(())
}

/// `rotor secret create`: a plain secret, or database accounts created or imported on a target.
async fn create_secret_command(store: &Store, args: CreateArgs, out: &Output) -> Result<()> {
    let ty: SecretType = args
        .secret_type
        .parse()
        .map_err(|e: rotors::KindError| Error::invalid(e.to_string()))?;
    let sub = args
        .sub_type
        .as_deref()
        .map(|s| s.parse())
        .transpose()
        .map_err(|e: rotors::KindError| Error::invalid(e.to_string()))?;
    let kind = SecretKind::new(ty, sub).map_err(|e| Error::invalid(e.to_string()))?;
    let name = SecretName::parse(&args.name)?;
    let has_value = args.value.value.is_some() || args.value.value_file.is_some();
    let (mut new, to_create) = match &args.target {
        None => (
            NewSecret::new(name.clone(), kind, read_value(&args.value)?),
            None,
        ),
        Some(target) => {
            let source = match (&args.account, has_value) {
                (Some(_), true) => {
                    return Err(Error::invalid(
                        "give --account to create accounts or --value to import them, not both",
                    ))
                }
                (Some(account), false) => AccountSource::Create(account.clone()),
                (None, true) => AccountSource::Import(read_value(&args.value)?),
                (None, false) => return Err(Error::invalid(
                    "give --account to create accounts, or --value / --value-file to import them",
                )),
            };
            let spec = DbSecretSpec {
                name: name.clone(),
                kind,
                target: target.clone(),
                source,
                database: args.database.clone(),
                privilege: args
                    .privilege
                    .as_deref()
                    .map(|p| p.parse())
                    .transpose()
                    .map_err(Error::invalid)?,
                password: PasswordPolicy {
                    length: args.password_length,
                    exclude: args.exclude_chars.clone(),
                },
            };
            let (new, to_create) = crate::accounts::prepare(store, spec).await?;
            (new, Some(to_create))
        }
    };
    new.version_id = args
        .version_id
        .as_deref()
        .map(VersionId::parse)
        .transpose()?;
    new.tags = args
        .tags
        .iter()
        .map(|t| Tag::parse_pair(t))
        .collect::<Result<_>>()?;
    new.description = args.description.clone();
    new.key = args.key.clone();
    let rotation = args
        .rotation_interval
        .as_deref()
        .map(|i| parse_duration(i).map(RotationSchedule::Interval))
        .transpose()?;
    if let Some(schedule) = &rotation {
        schedule.check_for(kind, store.clock().now())?;
    }
    let done = match to_create {
        Some(to_create) => crate::accounts::create(store, new, to_create).await?,
        None => store.create_secret(new).await?,
    };
    if let Some(schedule) = rotation {
        let policy = RotationPolicy {
            schedule,
            jitter: None,
            rotate_now: false,
        };
        store.set_rotation(&name, Some(policy)).await?;
    }
    out.print(&done, || {
        format!(
            "created secret '{}' ({kind}); version {} is ACSCurrent",
            done.secret_name, done.version_id
        )
    });
    Ok(())
}

/// `rotor target add | list | check`.
async fn target_command(store: &Store, cmd: TargetCommand, out: &Output) -> Result<()> {
    match cmd {
        TargetCommand::Add {
            name,
            kind,
            url,
            admin_user,
            admin_password_stdin,
            admin_password,
        } => {
            let kind: TargetKind = kind.parse()?;
            let password = match (admin_password_stdin, admin_password) {
                (true, _) => {
                    let mut buf = Zeroizing::new(String::new());
                    std::io::stdin().read_to_string(&mut buf).map_err(|e| {
                        Error::invalid(format!(
                            "cannot read the admin password from standard input: {e}"
                        ))
                    })?;
                    Zeroizing::new(buf.trim_end_matches(['\n', '\r']).to_owned())
                }
                (false, Some(p)) => p.0,
                (false, None) => {
                    return Err(Error::invalid(
                        "give --admin-password-stdin or --admin-password",
                    ))
                }
            };
            check_identifier("admin user", &admin_user, 128)
                .or_else(|e| {
                    // Some servers' admins have other characters (e.g. root@%): refuse only quotes and spaces.
                    if admin_user.chars().any(|c| "\"'` ;\\".contains(c)) {
                        Err(e)
                    } else {
                        Ok(())
                    }
                })
                .map_err(Error::invalid)?;
            let admin = Account::new(&admin_user, &password).to_value();
            let info = store.add_target(&name, kind, &url, admin).await?;
            out.print(&info, || {
                format!(
                    "added target '{}' ({}); admin account stored as secret '{}'",
                    info.name,
                    kind.as_str(),
                    info.admin_secret
                )
            });
        }
        TargetCommand::List => {
            let targets = store.list_targets().await?;
            out.print(&targets, || {
                table(
                    &["TARGET", "KIND", "URL", "ADMIN SECRET"],
                    targets
                        .iter()
                        .map(|t| {
                            vec![
                                t.name.clone(),
                                t.kind.as_str().into(),
                                t.url.clone(),
                                t.admin_secret.clone(),
                            ]
                        })
                        .collect(),
                )
            });
        }
        TargetCommand::Check { name } => {
            let db = crate::accounts::database_for(store, &name).await?;
            let tcx = store.target_context(&name).await?;
            db.check_admin(&tcx)
                .await
                .map_err(crate::accounts::target_error)?;
            let admin = admin_secret_name(&name);
            out.print(json!({"Target": name, "AdminCanManageAccounts": true}), || {
                format!("target '{name}': the admin account ({admin}) logs in and may manage accounts")
            });
        }
    }
    Ok(())
}

/// `rotor rotate`: one secret now, a pass over everything due, or a dry run.
async fn rotate_command(
    store: &Store,
    registry: Registry,
    args: &RotateArgs,
    out: &Output,
) -> Result<()> {
    let engine = Arc::new(Engine::new(
        store.clone(),
        registry,
        args.engine.engine_config(),
    ));
    let stop = CancellationToken::new();
    tokio::spawn(crate::worker::cancel_on_signal(stop.clone()));
    if args.due {
        let results = crate::worker::run_due(engine, &args.engine.worker_config(), &stop).await?;
        let rotated = results
            .iter()
            .filter(|(_, r)| matches!(r, Ok(Outcome::Rotated { .. })))
            .count();
        let failed = results
            .iter()
            .filter(|(_, r)| {
                !matches!(
                    r,
                    Ok(Outcome::Rotated { .. }) | Ok(Outcome::MissedWindow { .. })
                )
            })
            .count();
        let rows: Vec<serde_json::Value> = results
            .iter()
            .map(|(name, r)| outcome_json(name, r))
            .collect();
        out.print(&rows, || {
            let mut lines: Vec<String> = results
                .iter()
                .map(|(name, r)| outcome_line(name, r))
                .collect();
            lines.push(format!(
                "{} due, {rotated} rotated, {failed} not rotated",
                results.len()
            ));
            lines.join("\n")
        });
        if failed > 0 {
            return Err(Error::Rotation(format!(
                "{failed} of {} due rotations did not complete",
                results.len()
            )));
        }
        return Ok(());
    }
    let name = SecretName::parse_any(args.name.as_deref().unwrap_or_default())?;
    if args.dry_run {
        engine.dry_run(&name).await?;
        out.print(json!({"SecretName": name, "DryRun": "ok"}), || {
            format!("secret '{name}': the current credential works and the target answers")
        });
        return Ok(());
    }
    let info = store.describe(&name).await?;
    if info.kind.ty == rotors::SecretType::Generic {
        return Err(Error::invalid(format!(
            "secret '{name}' is Generic: it does not rotate; put a new version instead"
        )));
    }
    let claim = store
        .claim_now(&engine.config().owner, &name, engine.config().lease)
        .await?;
    let result = engine.rotate(&claim, true, &stop).await;
    store.release_leases(&engine.config().owner).await?;
    match result? {
        Outcome::Rotated { version_id } => {
            out.print(
                json!({"SecretName": name, "Outcome": "Rotated", "VersionId": version_id}),
                || format!("secret '{name}' rotated: version {version_id} is ACSCurrent"),
            );
            Ok(())
        }
        other => Err(Error::Rotation(outcome_line(&name, &Ok(other)))),
    }
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
        Ok(Outcome::Failed { error, attempts }) => {
            format!("rotation of secret '{name}' failed after {attempts} attempt(s): {error}")
        }
        Ok(Outcome::MissedWindow { .. }) => {
            format!("secret '{name}': rotation window missed; waiting for the next")
        }
        Ok(Outcome::Interrupted { step }) => {
            format!("rotation of secret '{name}' interrupted before its {step} step")
        }
        Ok(Outcome::LeaseLost) => format!("rotation of secret '{name}' passed to another worker"),
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
        Err(_) => ("Error", None),
    };
    json!({"SecretName": name, "Outcome": outcome, "VersionId": version, "Message": outcome_line(name, result)})
}

/// The embedded store serves one worker: a second one on the same data directory refuses.
fn lock_sqlite_worker(config: &StoreConfig) -> Result<std::fs::File> {
    let path = config.data_dir.join("worker.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::config(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::conflict(format!(
            "another rotor worker is already running on the SQLite store in {}; the embedded store serves one worker (use --store postgres://… for several)",
            config.data_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::config(format!("cannot lock {}: {e}", path.display()))),
    }
}

async fn secret_command(store: &Store, cmd: SecretCommand, out: &Output) -> Result<()> {
    match cmd {
        SecretCommand::Create(args) => create_secret_command(store, *args, out).await?,
        SecretCommand::Get {
            name,
            stage,
            version_id,
        } => {
            let selector = match (stage, version_id) {
                (_, Some(v)) => Selector::Version(VersionId::parse(&v)?),
                (Some(s), None) => Selector::Stage(s.parse()?),
                (None, None) => Selector::default(),
            };
            let version = store
                .get_value(&SecretName::parse_any(&name)?, &selector)
                .await?;
            if out.json {
                let (data, data_type) = match version.value.as_text() {
                    Some(text) => (text.to_owned(), "text"),
                    None => (
                        base64::engine::general_purpose::STANDARD.encode(version.value.expose()),
                        "binary",
                    ),
                };
                out.print(
                    json!({
                        "SecretName": version.name,
                        "SecretType": version.kind.ty.as_str(),
                        "VersionId": version.version_id,
                        "VersionStages": version.stages.iter().map(Stage::as_str).collect::<Vec<_>>(),
                        "SecretData": data,
                        "SecretDataType": data_type,
                        "CreateTime": format_ms(version.created_at),
                    }),
                    String::new,
                );
            } else {
                write_value(&version.value)?;
            }
        }
        SecretCommand::Put {
            name,
            value,
            version_id,
            stages,
        } => {
            let put = PutValue {
                value: read_value(&value)?,
                version_id: version_id.as_deref().map(VersionId::parse).transpose()?,
                stages: stages.iter().map(|s| s.parse()).collect::<Result<_>>()?,
            };
            let done = store.put_value(&SecretName::parse_any(&name)?, put).await?;
            out.print(&done, || {
                let stages = join_stages(&done.version_stages);
                if done.created {
                    format!(
                        "secret '{}': stored version {} ({stages})",
                        done.secret_name, done.version_id
                    )
                } else {
                    format!(
                        "secret '{}': version {} already holds this value; nothing changed",
                        done.secret_name, done.version_id
                    )
                }
            });
        }
        SecretCommand::List {
            tags,
            include_deleted,
        } => {
            let tags: Vec<Tag> = tags
                .iter()
                .map(|t| Tag::parse_pair(t))
                .collect::<Result<_>>()?;
            let secrets = store.list(&tags, include_deleted).await?;
            out.print(&secrets, || {
                table(
                    &["NAME", "TYPE", "ROTATION", "NEXT ROTATION", "STATE"],
                    secrets
                        .iter()
                        .map(|s| {
                            vec![
                                s.name.to_string(),
                                s.kind.to_string(),
                                s.rotation_summary(),
                                s.next_rotation_at
                                    .map(format_ms)
                                    .unwrap_or_else(|| "-".into()),
                                match s.planned_delete_at {
                                    Some(at) => format!("deleting at {}", format_ms(at)),
                                    None => "active".into(),
                                },
                            ]
                        })
                        .collect(),
                )
            });
        }
        SecretCommand::Describe { name } => {
            let info = store.describe(&SecretName::parse_any(&name)?).await?;
            out.print(&info, || describe_text(&info));
        }
        SecretCommand::Versions { name } => {
            let versions = store.versions(&SecretName::parse_any(&name)?).await?;
            out.print(&versions, || versions_table(&versions));
        }
        SecretCommand::Stage {
            name,
            stage,
            move_to,
            remove_from,
        } => {
            let move_to = move_to.as_deref().map(VersionId::parse).transpose()?;
            let remove_from = remove_from.as_deref().map(VersionId::parse).transpose()?;
            let versions = store
                .update_stage(
                    &SecretName::parse_any(&name)?,
                    &stage.parse()?,
                    move_to.as_ref(),
                    remove_from.as_ref(),
                )
                .await?;
            out.print(&versions, || versions_table(&versions));
        }
        SecretCommand::Delete {
            name,
            recovery_days,
            force,
        } => {
            let name = SecretName::parse_any(&name)?;
            let mode = if force {
                DeleteMode::Force
            } else {
                DeleteMode::RecoveryWindow(recovery_days.unwrap_or(DEFAULT_RECOVERY_DAYS))
            };
            let planned = store.delete(&name, mode).await?;
            out.print(
                json!({"SecretName": name, "PlannedDeleteTime": planned.map(format_ms)}),
                || match planned {
                    Some(at) => format!(
                        "secret '{name}' will be deleted at {}; until then: rotor secret restore {name}",
                        format_ms(at)
                    ),
                    None => format!("secret '{name}' deleted"),
                },
            );
        }
        SecretCommand::Restore { name } => {
            let info = store.restore(&SecretName::parse_any(&name)?).await?;
            out.print(&info, || format!("secret '{}' restored", info.name));
        }
    }
    Ok(())
}

/// Reads `--value` or `--value-file` (`-` for standard input).
fn read_value(source: &ValueSource) -> Result<SecretValue> {
    match (&source.value, &source.value_file) {
        (Some(text), _) => Ok(SecretValue::from(text.0.as_str())),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map_err(|e| {
                Error::invalid(format!("cannot read the value from standard input: {e}"))
            })?;
            Ok(SecretValue::new(buf))
        }
        (None, Some(path)) => std::fs::read(path)
            .map(SecretValue::new)
            .map_err(|e| Error::invalid(format!("cannot read value file {}: {e}", path.display()))),
        (None, None) => Err(Error::invalid("give --value or --value-file")),
    }
}

/// Writes a value to stdout byte for byte; a newline follows only on a terminal.
fn write_value(value: &SecretValue) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    let write = |out: &mut std::io::StdoutLock| -> std::io::Result<()> {
        out.write_all(value.expose())?;
        if out.is_terminal() {
            out.write_all(b"\n")?;
        }
        out.flush()
    };
    write(&mut stdout).map_err(|e| Error::config(format!("cannot write to standard output: {e}")))
}

/// Prints JSON or human text.
struct Output {
    json: bool,
}

impl Output {
    fn print<T: serde::Serialize>(&self, value: T, human: impl FnOnce() -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).expect("serialisable output")
            );
        } else {
            let text = human();
            if !text.is_empty() {
                println!("{text}");
            }
        }
    }
}

fn join_stages(stages: &[Stage]) -> String {
    if stages.is_empty() {
        "no stages".into()
    } else {
        stages
            .iter()
            .map(Stage::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn versions_table(versions: &[VersionInfo]) -> String {
    table(
        &["VERSION", "STAGES", "CREATED"],
        versions
            .iter()
            .map(|v| {
                vec![
                    v.version_id.to_string(),
                    join_stages(&v.version_stages),
                    format_ms(v.create_time),
                ]
            })
            .collect(),
    )
}

fn describe_text(info: &SecretInfo) -> String {
    let mut lines = vec![
        ("Name", info.name.to_string()),
        ("Type", info.kind.to_string()),
        ("Description", info.description.clone()),
        ("Key", info.key_name.clone()),
        ("Created", format_ms(info.created_at)),
        ("Updated", format_ms(info.updated_at)),
        ("Rotation", info.rotation_summary()),
    ];
    if let Some(next) = info.next_rotation_at {
        lines.push(("Next rotation", format_ms(next)));
    }
    if let Some(last) = info.last_rotation_at {
        lines.push(("Last rotation", format_ms(last)));
    }
    let status = match (&info.rotation_failure, &info.rotation_error) {
        (Some(f), _) => format!(
            "{:?} after {} attempt(s): {}",
            info.rotation_status, f.attempts, f.reason
        ),
        (None, Some(e)) => format!(
            "{:?} (attempt {}): {e}",
            info.rotation_status, info.rotation_attempts
        ),
        (None, None) => format!("{:?}", info.rotation_status),
    };
    lines.push(("Status", status));
    if let Some(step) = info.rotation_step {
        lines.push(("Next step", step.to_string()));
    }
    if let Some(at) = info.planned_delete_at {
        lines.push(("Deletion", format!("scheduled at {}", format_ms(at))));
    }
    let tags = info
        .tags
        .iter()
        .map(|t| format!("{}={}", t.tag_key, t.tag_value))
        .collect::<Vec<_>>()
        .join(", ");
    lines.push(("Tags", tags));
    lines
        .iter()
        .map(|(k, v)| format!("{:<14}{v}", format!("{k}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A plain text table with a header row.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    std::iter::once(line(header.iter().map(|h| h.to_string()).collect()))
        .chain(rows.into_iter().map(line))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_arguments_never_show_secrets_in_debug() {
        let cli = Cli::try_parse_from([
            "rotor",
            "secret",
            "create",
            "x",
            "--type",
            "Generic",
            "--value",
            "Hunter2-Value",
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("Hunter2"), "{cli:?}");
        let cli = Cli::try_parse_from([
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
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("Hunter2"), "{cli:?}");
    }
}
