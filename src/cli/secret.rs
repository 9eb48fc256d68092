//! `rotor secret …`: create (plain, or on a target through its family), get, put, list,
//! describe, versions, stage, delete, restore.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use clap::{Args, Subcommand};
use rotators::{Options, Origin, Registry, SecretKind, SecretType, SecretValue, Source, SubType};
use serde_json::json;

use super::options::{require_target, Redacted};
use super::output::{
    describe_text, join_stages, read_value, table, versions_table, write_value, Output,
};
use crate::clock::format_ms;
use crate::error::{Error, Result};
use crate::model::{
    parse_duration, RotationPolicy, RotationSchedule, SecretName, Stage, Tag, VersionId,
};
use crate::store::{DeleteMode, NewSecret, PutValue, Selector, Store, DEFAULT_RECOVERY_DAYS};

/// Arguments of `rotor secret create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(value_parser = SecretName::parse)]
    name: SecretName,
    /// Generic, Rds, PolarDB, Redis, RAMCredentials or ECS.
    #[arg(long = "type")]
    secret_type: SecretType,
    /// DoubleUsers or SingleUser (Rds, Redis), Password or SSHKey (ECS).
    #[arg(long)]
    sub_type: Option<SubType>,
    #[command(flatten)]
    value: ValueSource,
    /// The first version's id (default v1).
    #[arg(long)]
    version_id: Option<VersionId>,
    /// A tag KEY=VALUE (repeatable, at most 20).
    #[arg(long = "tag")]
    tags: Vec<Tag>,
    #[arg(long, default_value = "")]
    description: String,
    /// The master key that protects the secret (default: the key named `default`).
    #[arg(long)]
    key: Option<String>,
    /// The target its credentials live on: its family creates them (create mode, see the
    /// target options) or adopts those given with --value / --value-file (import mode).
    #[arg(long)]
    target: Option<String>,
    /// Turn on automatic rotation at this interval (the first rotation is one interval away).
    #[arg(long, value_parser = parse_duration)]
    rotation_interval: Option<Duration>,
    /// The options rotator families declared for this command, read by the family.
    #[arg(skip)]
    pub options: Options,
}

/// Where a new value comes from: `--value`, or `--value-file` (a file, or `-` for stdin).
#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct ValueSource {
    /// The value as text (visible to other local users in the process list; prefer --value-file).
    #[arg(long)]
    pub value: Option<Redacted>,
    /// Read the value from a file, or from standard input with `-`.
    #[arg(long)]
    pub value_file: Option<PathBuf>,
}

impl ValueSource {
    fn given(&self) -> bool {
        self.value.is_some() || self.value_file.is_some()
    }
}

/// `rotor secret` subcommands.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create a secret with its first version; with --target, create or import its credentials.
    Create(Box<CreateArgs>),
    /// Print a version's value (ACSCurrent unless told otherwise).
    Get {
        /// The secret's name.
        name: SecretName,
        /// The stage of the version to print.
        #[arg(long, conflicts_with = "version_id")]
        stage: Option<Stage>,
        /// The id of the version to print.
        #[arg(long)]
        version_id: Option<VersionId>,
    },
    /// Store a new version; it becomes ACSCurrent unless stages are given.
    Put {
        /// The secret's name.
        name: SecretName,
        /// The new value.
        #[command(flatten)]
        value: ValueSource,
        /// An id for the new version.
        #[arg(long)]
        version_id: Option<VersionId>,
        /// A stage for the new version (repeatable): ACSCurrent or, on Generic secrets, a custom one.
        #[arg(long = "stage")]
        stages: Vec<Stage>,
    },
    /// List secrets, optionally only those with all the given tags.
    List {
        /// Only secrets with this tag (KEY=VALUE, repeatable).
        #[arg(long = "tag")]
        tags: Vec<Tag>,
        /// Include secrets scheduled for deletion.
        #[arg(long)]
        include_deleted: bool,
    },
    /// Show a secret's metadata.
    Describe {
        /// The secret's name.
        name: SecretName,
    },
    /// List a secret's versions and their stages.
    Versions {
        /// The secret's name.
        name: SecretName,
    },
    /// Move a stage to a version and/or remove it from one.
    Stage {
        /// The secret's name.
        name: SecretName,
        /// The stage to move or remove.
        #[arg(long)]
        stage: Stage,
        /// The version to move the stage to.
        #[arg(long)]
        move_to: Option<VersionId>,
        /// The version to remove the stage from.
        #[arg(long)]
        remove_from: Option<VersionId>,
    },
    /// Schedule a secret's deletion (restorable during the recovery window), or delete it now.
    Delete {
        /// The secret's name.
        name: SecretName,
        /// Days before the secret is deleted for good (7–30, default 30).
        #[arg(long, conflicts_with = "force")]
        recovery_days: Option<u32>,
        /// Delete now, with every version; cannot be undone.
        #[arg(long)]
        force: bool,
        /// With --force: first drop from the target the accounts rotor created for the secret
        /// (create mode; imported accounts are never dropped).
        #[arg(long)]
        drop_accounts: bool,
    },
    /// Cancel a scheduled deletion.
    Restore {
        /// The secret's name.
        name: SecretName,
    },
    /// Check that the secret's current credential (and a dual account's previous one) still
    /// logs in on its target (drift): exit 0, 6 when the target refuses one, 7 when the target
    /// cannot be reached.
    Verify {
        /// The secret's name.
        name: SecretName,
    },
    /// Adopt a managed secret's credential changed outside rotor: it becomes ACSCurrent once
    /// it logs in on the secret's target.
    Import {
        /// The secret's name.
        name: SecretName,
        /// The credential changed outside rotor.
        #[command(flatten)]
        value: ValueSource,
    },
    /// Move ACSCurrent back to the ACSPrevious version, after its credential logs in.
    Rollback {
        /// The secret's name.
        name: SecretName,
    },
}

pub async fn run(
    store: &Store,
    registry: &Registry,
    cmd: SecretCommand,
    out: &Output,
) -> Result<()> {
    match cmd {
        SecretCommand::Create(args) => create(store, registry, *args, out).await?,
        SecretCommand::Get {
            name,
            stage,
            version_id,
        } => {
            let selector = match (stage, version_id) {
                (_, Some(v)) => Selector::Version(v),
                (Some(s), None) => Selector::Stage(s),
                (None, None) => Selector::default(),
            };
            let version = store.get_value(&name, &selector).await?;
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
                version_id,
                stages,
            };
            let done = store.put_value(&name, put).await?;
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
            let info = store.describe(&name).await?;
            let drift = store.drift(&name).await?;
            let mut who = match out.json {
                true => Vec::new(),
                false => super::output::who(store, registry, &info).await,
            };
            if let Some(d) = &drift {
                who.push(("Drift", format!("{} (since {})", d.reason, d.since_time)));
            }
            let mut json = serde_json::to_value(&info).expect("serialisable output");
            if let Some(d) = &drift {
                json["Drift"] = serde_json::to_value(d).expect("serialisable output");
            }
            if let Some(at) = store.next_drift_check(&name).await? {
                json["NextDriftCheckTime"] = format_ms(at).into();
            }
            out.print(&json, || describe_text(&info, who));
        }
        SecretCommand::Versions { name } => {
            let versions = store.versions(&name).await?;
            out.print(&versions, || versions_table(&versions));
        }
        SecretCommand::Stage {
            name,
            stage,
            move_to,
            remove_from,
        } => {
            let versions = store
                .update_stage(&name, &stage, move_to.as_ref(), remove_from.as_ref())
                .await?;
            out.print(&versions, || versions_table(&versions));
        }
        SecretCommand::Delete {
            name,
            recovery_days,
            force,
            drop_accounts,
        } => {
            let mode = if force {
                DeleteMode::Force
            } else {
                DeleteMode::RecoveryWindow(recovery_days.unwrap_or(DEFAULT_RECOVERY_DAYS))
            };
            let done =
                crate::targets::delete_secret(store, registry, &name, mode, drop_accounts).await?;
            out.print(
                json!({
                    "SecretName": name,
                    "PlannedDeleteTime": done.planned.map(format_ms),
                    "TargetName": done.target,
                    "LeftOnTarget": done.left,
                    "DroppedFromTarget": done.dropped,
                    "CreatedByRotor": done.left_origin.and_then(|o| match o {
                        Origin::Created => Some(true),
                        Origin::Imported => Some(false),
                        Origin::Unknown => None,
                    }),
                }),
                || deletion_text(&name, &done),
            );
        }
        SecretCommand::Verify { .. } => unreachable!("rotor secret verify runs in cli::verify"),
        SecretCommand::Restore { name } => {
            let info = store.restore(&name).await?;
            out.print(&info, || format!("secret '{}' restored", info.name));
        }
        SecretCommand::Import { name, value } => {
            let done =
                crate::targets::reimport(store, registry, &name, read_value(&value)?).await?;
            out.print(&done, || {
                format!(
                    "secret '{}': the credential logs in; stored as version {} (ACSCurrent)",
                    done.secret_name, done.version_id
                )
            });
        }
        SecretCommand::Rollback { name } => {
            let versions = crate::targets::rollback(store, registry, &name).await?;
            out.print(&versions, || {
                let current = versions
                    .iter()
                    .find(|v| v.version_stages.contains(&Stage::Current))
                    .map(|v| v.version_id.to_string())
                    .unwrap_or_default();
                format!(
                    "secret '{name}' rolled back: version {current} is ACSCurrent again\n{}",
                    versions_table(&versions)
                )
            });
        }
    }
    Ok(())
}

/// What `secret delete` prints: what happened to the secret, and what stays on (or was dropped
/// from) its target.
fn deletion_text(name: &SecretName, done: &crate::targets::Deletion) -> String {
    let mut text = match done.planned {
        Some(at) => format!(
            "secret '{name}' will be deleted at {}; until then: rotor secret restore {name}",
            format_ms(at)
        ),
        None => format!("secret '{name}' deleted"),
    };
    let target = done.target.as_deref().unwrap_or_default();
    if !done.dropped.is_empty() {
        text.push_str(&format!(
            "\ndropped from target '{target}': {}",
            done.dropped.join(", ")
        ));
    } else if done.left.is_empty() {
        if done.target.is_some() {
            text.push_str(&format!("\nits credentials stay on target '{target}'"));
        }
    } else {
        let why = match done.left_origin {
            Some(Origin::Created) => format!(
                "rotor created them; to drop them with the secret: rotor secret delete {name} --force --drop-accounts"
            ),
            Some(Origin::Imported) => "imported: rotor never drops them".to_owned(),
            _ => "made before rotor recorded who created accounts: rotor does not drop them".to_owned(),
        };
        text.push_str(&format!(
            "\nleft on target '{target}': {} ({why})",
            done.left.join(", ")
        ));
    }
    text
}

/// `rotor secret create`: a plain secret, or one whose credentials live on a target (created
/// or imported by the target's family).
async fn create(store: &Store, registry: &Registry, args: CreateArgs, out: &Output) -> Result<()> {
    let kind = SecretKind::new(args.secret_type, args.sub_type)
        .map_err(|e| Error::invalid(e.to_string()))?;
    require_target(&args.options, args.target.as_deref())?;
    let source = match (&args.target, args.value.given()) {
        (Some(_), false) => Source::Create,
        _ => Source::Import(read_value(&args.value)?),
    };
    let value = match &source {
        Source::Import(value) if args.target.is_none() => value.clone(),
        _ => SecretValue::new(vec![]),
    };
    let mut new = NewSecret::new(args.name, kind, value);
    new.version_id = args.version_id;
    new.tags = args.tags;
    new.description = args.description;
    new.key = args.key;
    if args.rotation_interval.is_some() {
        crate::engine::check_can_rotate(registry, &new.name, kind, args.target.as_deref())?;
    }
    new.rotation = args.rotation_interval.map(|interval| RotationPolicy {
        schedule: RotationSchedule::Interval(interval),
        jitter: None,
        rotate_now: false,
    });
    let done = match &args.target {
        Some(target) => {
            crate::targets::create_secret(store, registry, new, target, source, &args.options)
                .await?
        }
        None => store.create_secret(new).await?,
    };
    out.print(&done, || {
        format!(
            "created secret '{}' ({kind}); version {} is ACSCurrent",
            done.secret_name, done.version_id
        )
    });
    Ok(())
}
