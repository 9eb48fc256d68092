//! `rotor target add | update | list | check | remove`: generic over rotator families; what a kind needs
//! (its URL schemes, admin credential, checks) comes from the family that serves it.

use clap::Subcommand;
use rotators::{Options, Registry};
use serde_json::json;

use super::output::{table, Output};
use crate::error::Result;
use crate::store::Store;

/// `rotor target` subcommands.
#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// Add a target; its admin credential is stored as a secret of its own.
    Add {
        /// The target's name.
        name: String,
        /// The target's kind (the rotator families of this build list theirs below).
        #[arg(long)]
        kind: String,
        /// Address and options, without an account (SCHEME://HOST[:PORT][/…]; the kind's schemes;
        /// a cloud kind defaults to its public endpoint).
        #[arg(long)]
        url: Option<String>,
        /// Store it without logging in as the admin first (for a target that is down now).
        #[arg(long)]
        no_check: bool,
        /// The options rotator families declared for this command, read by the family.
        #[arg(skip)]
        options: Options,
    },
    /// Change a target's address, TLS settings or pinned host key; its admin secret and the
    /// secrets on it stay as they are.
    Update {
        /// The target's name.
        name: String,
        /// The new address (same form as for target add).
        #[arg(long)]
        url: Option<String>,
        /// Store the change without checking the target with it first.
        #[arg(long)]
        no_check: bool,
        /// The target options that may change (the families refuse the others).
        #[arg(skip)]
        options: Options,
    },
    /// List targets.
    List,
    /// Check that the admin logs in and may do what rotations need.
    Check {
        /// The target's name.
        name: String,
    },
    /// Remove a target and its admin secret; refused while secrets use it.
    Remove {
        /// The target's name.
        name: String,
    },
}

pub async fn run(
    store: &Store,
    registry: &Registry,
    cmd: TargetCommand,
    out: &Output,
) -> Result<()> {
    match cmd {
        TargetCommand::Add {
            name,
            kind,
            url,
            no_check,
            options,
        } => {
            let (info, notes) = crate::targets::add_target(
                store,
                registry,
                &name,
                &kind,
                url.as_deref(),
                &options,
                !no_check,
            )
            .await?;
            for note in &notes {
                super::output::note(note);
            }
            out.print(&info, || match &info.admin_secret {
                Some(admin) => format!(
                    "added target '{}' ({}); admin account stored as secret '{admin}'",
                    info.name, info.kind
                ),
                None => format!(
                    "added target '{}' ({}), without an admin account",
                    info.name, info.kind
                ),
            });
        }
        TargetCommand::Update {
            name,
            url,
            no_check,
            options,
        } => {
            let (mut info, notes) = crate::targets::update_target(
                store,
                registry,
                &name,
                url.as_deref(),
                &options,
                !no_check,
            )
            .await?;
            for note in &notes {
                super::output::note(note);
            }
            info.url = crate::redact::target_url(&info.url);
            out.print(&info, || {
                format!(
                    "updated target '{}' ({}): {}",
                    info.name, info.kind, info.url
                )
            });
        }
        TargetCommand::List => {
            let mut targets = store.list_targets().await?;
            for t in &mut targets {
                t.url = crate::redact::target_url(&t.url);
            }
            out.print(&targets, || {
                table(
                    &["TARGET", "KIND", "URL", "ADMIN SECRET"],
                    targets
                        .iter()
                        .map(|t| {
                            vec![
                                t.name.clone(),
                                t.kind.clone(),
                                t.url.clone(),
                                t.admin_secret.clone().unwrap_or_else(|| "-".into()),
                            ]
                        })
                        .collect(),
                )
            });
        }
        TargetCommand::Check { name } => {
            let report = crate::targets::check_target(store, registry, &name).await?;
            let admin = store.target(&name).await?.admin_secret;
            out.print(
                json!({"TargetName": name, "AdminSecretName": admin, "Ok": true, "Report": report}),
                || match &admin {
                    Some(admin) => format!("target '{name}': the admin account ({admin}) {report}"),
                    None => format!("target '{name}': the admin account {report}"),
                },
            );
        }
        TargetCommand::Remove { name } => {
            let info = store.remove_target(&name).await?;
            out.print(&info, || match &info.admin_secret {
                Some(admin) => format!(
                    "removed target '{}' and its admin secret '{admin}'",
                    info.name
                ),
                None => format!("removed target '{}'", info.name),
            });
        }
    }
    Ok(())
}
