//! `rotor key create | list`: the named master keys (CMKs); their material is never shown.

use clap::Subcommand;

use super::output::{table, Output};
use crate::clock::format_ms;
use crate::error::Result;
use crate::store::Store;

/// `rotor key` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a master key.
    Create {
        /// The key's name.
        name: String,
    },
    /// List master keys (never their material).
    List,
}

/// `rotor key create | list`.
pub(super) async fn run(store: &Store, cmd: KeyCommand, out: &Output) -> Result<()> {
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
