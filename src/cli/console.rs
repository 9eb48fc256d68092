//! `rotor console-user`: the web console's users — created with the same `ACTION:PATTERN` rules
//! as AccessKeys and a password read from standard input (hashed with argon2id; the password
//! itself is never stored, printed or logged), listed, deleted.

use std::io::Read;

use clap::Subcommand;
use serde_json::json;
use zeroize::Zeroizing;

use super::output::{table, Output};
use crate::console::password;
use crate::error::{Error, Result};
use crate::policy::{Policy, Rule};
use crate::store::Store;

/// `rotor console-user` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConsoleUserCommand {
    /// Create a console user; its password (12 to 1024 characters) is read from standard input.
    Create {
        /// The user's name (letters, digits and _ - . /).
        name: String,
        /// ACTION:PATTERN, e.g. DescribeSecret:app/* (repeatable; '*:*' for an administrator).
        #[arg(long = "allow", required = true, value_name = "ACTION:PATTERN")]
        allow: Vec<Rule>,
    },
    /// List console users (never their password hashes).
    List,
    /// Delete a console user; its sessions end at their next request.
    Delete {
        /// The user's name.
        name: String,
    },
}

/// Reads the password: standard input, bounded, one trailing newline removed.
fn read_password() -> Result<Zeroizing<String>> {
    let limit = (password::MAX_LENGTH * 4 + 2) as u64;
    let mut buf = Zeroizing::new(Vec::new());
    std::io::stdin()
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| {
            Error::invalid(format!("cannot read the password from standard input: {e}"))
        })?;
    if buf.len() as u64 > limit {
        return Err(Error::invalid(format!(
            "a console password must be {} to {} characters",
            password::MIN_LENGTH,
            password::MAX_LENGTH
        )));
    }
    let text = std::str::from_utf8(&buf)
        .map_err(|_| Error::invalid("the password on standard input is not UTF-8 text"))?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(Zeroizing::new(text.to_owned()))
}

/// Runs a `rotor console-user` command.
pub async fn run(store: &Store, cmd: ConsoleUserCommand, out: &Output) -> Result<()> {
    match cmd {
        ConsoleUserCommand::Create { name, allow } => {
            let policy = Policy::new(allow)?;
            let hash = password::hash(read_password()?).await?;
            let info = store.create_console_user(&name, &hash, &policy).await?;
            out.print(&info, || {
                format!(
                    "created console user '{}' ({})",
                    info.name,
                    info.policy.join(" ")
                )
            });
        }
        ConsoleUserCommand::List => {
            let users = store.list_console_users().await?;
            out.print(&users, || {
                table(
                    &["NAME", "STATUS", "CREATED", "POLICY"],
                    users
                        .iter()
                        .map(|u| {
                            vec![
                                u.name.clone(),
                                u.status.to_owned(),
                                u.create_time.clone(),
                                u.policy.join(" "),
                            ]
                        })
                        .collect(),
                )
            });
        }
        ConsoleUserCommand::Delete { name } => {
            store.delete_console_user(&name).await?;
            out.print(json!({"ConsoleUserName": name, "Deleted": true}), || {
                format!("console user '{name}' deleted")
            });
        }
    }
    Ok(())
}
