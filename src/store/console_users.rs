//! Users of the web console: a name, an argon2id password hash (made and checked by
//! `crate::console::password`; the store keeps only the PHC string), the same `ACTION:PATTERN`
//! policy an AccessKey carries, enabled or not. Also the console's own audit records — logins,
//! logouts and values revealed — which are written whether or not reads are audited.

use serde::Serialize;
use sqlx::Row;

use super::audit::Entry;
use super::{is_unique_violation, Store};
use crate::clock::format_ms;
use crate::error::{Error, Result};
use crate::policy::Policy;

/// A console user as listed (never the password hash).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConsoleUserInfo {
    /// The user's name.
    #[serde(rename = "ConsoleUserName")]
    pub name: String,
    /// `Enabled` or `Disabled`.
    pub status: &'static str,
    /// The rules of its policy, as text.
    pub policy: Vec<String>,
    /// When it was created (RFC 3339).
    pub create_time: String,
}

/// What a login needs to know of a user.
pub struct ConsoleLogin {
    /// The argon2id PHC string to check the password against.
    pub password_hash: String,
    /// False when the user is disabled.
    pub enabled: bool,
    /// What the user may do.
    pub policy: Policy,
}

fn check_name(name: &str) -> Result<()> {
    crate::model::check_key_name(name)
        .map_err(|e| Error::invalid(e.to_string().replace("key name", "console user name")))
}

fn policy_of(text: &str) -> Result<Policy> {
    serde_json::from_str(text)
        .map_err(|e| Error::config(format!("a console user's policy is unreadable: {e}")))
}

impl Store {
    /// Creates a console user with an argon2id `password_hash` (a PHC string) and `policy`.
    pub async fn create_console_user(
        &self,
        name: &str,
        password_hash: &str,
        policy: &Policy,
    ) -> Result<ConsoleUserInfo> {
        check_name(name)?;
        if !password_hash.starts_with("$argon2id$") {
            return Err(Error::invalid(
                "a console password must be hashed with argon2id",
            ));
        }
        let policy_json = serde_json::to_string(policy).expect("a policy serialises");
        let now = self.clock.now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO console_users (name, password_hash, policy, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, 1, $4, $4)",
        )
        .bind(name)
        .bind(password_hash)
        .bind(&policy_json)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::exists(format!("console user '{name}' already exists"))
            } else {
                e.into()
            }
        })?;
        let detail = format!("console user {name}");
        self.audit(
            &mut tx,
            Entry::new("console_user.create", None).detail(&detail),
        )
        .await?;
        tx.commit().await?;
        Ok(ConsoleUserInfo {
            name: name.to_owned(),
            status: "Enabled",
            policy: policy.0.iter().map(ToString::to_string).collect(),
            create_time: format_ms(now),
        })
    }

    /// Lists the console users by name (never their password hashes).
    pub async fn list_console_users(&self) -> Result<Vec<ConsoleUserInfo>> {
        let rows = sqlx::query(
            "SELECT name, policy, enabled, created_at FROM console_users ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let policy = policy_of(&r.try_get::<String, _>("policy")?)?;
                Ok(ConsoleUserInfo {
                    name: r.try_get("name")?,
                    status: if r.try_get::<i64, _>("enabled")? != 0 {
                        "Enabled"
                    } else {
                        "Disabled"
                    },
                    policy: policy.0.iter().map(ToString::to_string).collect(),
                    create_time: format_ms(r.try_get("created_at")?),
                })
            })
            .collect()
    }

    /// Deletes a console user; its sessions end at their next request.
    pub async fn delete_console_user(&self, name: &str) -> Result<()> {
        self.delete_principal(
            "DELETE FROM console_users WHERE name = $1",
            name,
            "console user",
            "console_user.delete",
        )
        .await
    }

    /// The password hash, state and policy of console user `name`; `None` if no such user.
    pub async fn console_login(&self, name: &str) -> Result<Option<ConsoleLogin>> {
        let Some(row) =
            sqlx::query("SELECT password_hash, policy, enabled FROM console_users WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        Ok(Some(ConsoleLogin {
            password_hash: row.try_get("password_hash")?,
            enabled: row.try_get::<i64, _>("enabled")? != 0,
            policy: policy_of(&row.try_get::<String, _>("policy")?)?,
        }))
    }

    /// Records what the console did that changes nothing in the store — a login (`outcome`
    /// `ok` or `failed`), a logout, a value revealed (`secret.reveal`, with its version) — as
    /// this handle's actor (`console:USER`). Always written: a revealed value is audited even
    /// when reads are not.
    pub async fn record_console_event(
        &self,
        action: &str,
        secret: Option<&str>,
        version: Option<&str>,
        outcome: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        let mut entry = Entry::new(action, secret).outcome(outcome);
        if let Some(v) = version {
            entry = entry.version(v);
        }
        if let Some(d) = detail {
            entry = entry.detail(d);
        }
        let mut conn = self.pool.acquire().await?;
        self.audit(&mut conn, entry).await
    }
}
