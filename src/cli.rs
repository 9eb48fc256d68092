//! The `rotor` command line: argument definitions (clap) and what each command prints.
//!
//! Human output by default, `--json` for scripts. Errors are one line on stderr, prefixed
//! `rotor: `, with the exit code of their kind ([`crate::error::exit`]). Values are printed only
//! by `secret get`, the command whose job that is.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use base64::Engine as _;
use clap::{Args, Parser, Subcommand};
use rotors::{SecretKind, SecretValue};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::clock::{format_ms, Clock};
use crate::crypto::KeyMaterial;
use crate::error::{Error, Result};
use crate::model::{parse_duration, RotationSchedule, SecretName, Stage, Tag, VersionId};
use crate::store::{
    DeleteMode, NewSecret, OpenMode, PutValue, SecretInfo, Selector, Store, StoreConfig,
    VersionInfo, DEFAULT_RECOVERY_DAYS,
};

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
    Worker,
    /// Manage secrets and their versions.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Configure automatic rotation.
    #[command(subcommand)]
    Rotation(RotationCommand),
    /// Manage the master keys (CMKs) that protect secrets.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ValueSource {
    /// The value as text (visible to other local users in the process list; prefer --value-file).
    #[arg(long)]
    value: Option<String>,
    /// Read the value from a file, or from standard input with `-`.
    #[arg(long)]
    value_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create a secret with its first version.
    Create {
        name: String,
        /// Generic, Rds, PolarDB, Redis, RAMCredentials or ECS.
        #[arg(long = "type")]
        secret_type: String,
        /// DoubleUsers or SingleUser (Rds), Password or SSHKey (ECS).
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
    },
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
    })
}

/// Runs one command to completion.
pub async fn run(cli: Cli) -> Result<()> {
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
        Command::Worker => {
            let store = Store::open(&config, OpenMode::Init).await?;
            let shutdown = CancellationToken::new();
            tokio::spawn(crate::worker::cancel_on_signal(shutdown.clone()));
            crate::worker::run(store.clone(), shutdown).await?;
            store.close().await;
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
            let info = store.set_rotation(&name, schedule).await?;
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

async fn secret_command(store: &Store, cmd: SecretCommand, out: &Output) -> Result<()> {
    match cmd {
        SecretCommand::Create {
            name,
            secret_type,
            sub_type,
            value,
            version_id,
            tags,
            description,
            key,
        } => {
            let ty = secret_type
                .parse()
                .map_err(|e: rotors::KindError| Error::invalid(e.to_string()))?;
            let sub = sub_type
                .map(|s| s.parse())
                .transpose()
                .map_err(|e: rotors::KindError| Error::invalid(e.to_string()))?;
            let kind = SecretKind::new(ty, sub).map_err(|e| Error::invalid(e.to_string()))?;
            let new = NewSecret {
                name: SecretName::parse(&name)?,
                kind,
                value: read_value(&value)?,
                version_id: version_id.as_deref().map(VersionId::parse).transpose()?,
                tags: tags
                    .iter()
                    .map(|t| Tag::parse_pair(t))
                    .collect::<Result<_>>()?,
                description,
                key,
            };
            let done = store.create_secret(new).await?;
            out.print(&done, || {
                format!(
                    "created secret '{}' ({kind}); version {} is ACSCurrent",
                    done.secret_name, done.version_id
                )
            });
        }
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
        (Some(text), _) => Ok(SecretValue::from(text.as_str())),
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
