//! Targets: the servers, hosts and cloud endpoints that rotor changes credentials on. A target
//! keeps its kind (as its family names it), address and the family's settings; its admin
//! credential, if it has one, is a secret of its own, `acs/target/NAME/admin`, rotatable like
//! any other. The
//! store knows no kind: families validate what is stored here.

use rotators::{NewTarget, TargetContext};
use serde::Serialize;
use sqlx::Row;

use super::audit::Entry;
use super::{is_unique_violation, opt_text, NewSecret, Selector, Store};
use crate::error::{Error, Result};
use crate::model::SecretName;

/// A target as `target list` shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetInfo {
    /// The target's name.
    #[serde(rename = "TargetName")]
    pub name: String,
    /// Its kind (the rotator family that serves it).
    #[serde(rename = "TargetKind")]
    pub kind: String,
    /// Its address.
    #[serde(rename = "TargetUrl")]
    pub url: String,
    /// The secret holding its admin credential, if it has one.
    #[serde(rename = "AdminSecretName")]
    pub admin_secret: Option<String>,
    /// Settings its family stored with it (JSON; `Null` when none); not in the listing.
    #[serde(skip)]
    pub config: serde_json::Value,
}

/// The name of a target's admin secret.
pub fn admin_secret_name(target: &str) -> String {
    format!("acs/target/{target}/admin")
}

impl Store {
    /// Adds a target and stores its admin credential as a secret, in one transaction.
    pub async fn add_target(&self, name: &str, target: NewTarget) -> Result<TargetInfo> {
        crate::model::check_key_name(name)
            .map_err(|e| Error::invalid(e.to_string().replace("key name", "target name")))?;
        let admin = match target.admin {
            Some(admin) => {
                let admin_name = SecretName::parse_any(&admin_secret_name(name))?;
                let mut secret = NewSecret::new(admin_name, admin.kind, admin.value);
                secret.target = Some(name.to_owned());
                secret.description = format!("admin account of target {name}");
                secret.settings = (!admin.settings.is_null()).then_some(admin.settings);
                Some(secret)
            }
            None => None,
        };
        let admin_name = admin.as_ref().map(|a| a.name.as_str().to_owned());
        let config = (!target.config.is_null()).then(|| target.config.to_string());

        let mut tx = self.begin_write().await?;
        // The target row first, so that the admin secret names an existing target.
        sqlx::query(
            "INSERT INTO targets (name, kind, url, config, admin_secret, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(name)
        .bind(target.kind)
        .bind(&target.url)
        .bind(&config)
        .bind(&admin_name)
        .bind(self.clock.now_ms())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::exists(format!("target '{name}' already exists"))
            } else {
                e.into()
            }
        })?;
        if let Some(admin) = admin {
            self.insert_secret(&mut tx, admin).await?;
        }
        let detail = format!("target {name}, kind {}", target.kind);
        let entry = Entry::new("target.add", admin_name.as_deref()).detail(&detail);
        self.audit(&mut tx, entry).await?;
        tx.commit().await?;
        self.target(name).await
    }

    /// Changes a target's address and settings (`target update`); its admin secret and the
    /// secrets on it stay as they are.
    pub async fn update_target(
        &self,
        name: &str,
        url: &str,
        config: &serde_json::Value,
    ) -> Result<TargetInfo> {
        let info = self.target(name).await?;
        let config = (!config.is_null()).then(|| config.to_string());
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE targets SET url = $1, config = $2 WHERE name = $3")
            .bind(url)
            .bind(&config)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(Error::not_found(format!(
                "target '{name}' does not exist (see: rotor target list)"
            )));
        }
        let detail = format!("target {name}, url {}", crate::redact::target_url(url));
        let entry = Entry::new("target.update", info.admin_secret.as_deref()).detail(&detail);
        self.audit(&mut tx, entry).await?;
        tx.commit().await?;
        self.target(name).await
    }

    /// Removes a target and its admin secret, in one transaction; refused while any other
    /// secret rotates on it.
    pub async fn remove_target(&self, name: &str) -> Result<TargetInfo> {
        let info = self.target(name).await?;
        let mut tx = self.begin_write().await?;
        // Locked on PostgreSQL, so no secret comes to use it while it goes.
        sqlx::query(&format!(
            "SELECT 1 AS one FROM targets WHERE name = $1{}",
            self.backend.lock_row()
        ))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let admin = info.admin_secret.clone().unwrap_or_default();
        let users: Vec<String> =
            sqlx::query("SELECT name FROM secrets WHERE target = $1 AND name <> $2 ORDER BY name")
                .bind(name)
                .bind(&admin)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("name"))
                .collect::<std::result::Result<_, _>>()?;
        if !users.is_empty() {
            const SHOWN: usize = 10;
            let more = users.len().saturating_sub(SHOWN);
            let mut list = users[..users.len().min(SHOWN)].join(", ");
            if more > 0 {
                list.push_str(&format!(" and {more} more"));
            }
            return Err(Error::conflict(format!(
                "target '{name}' is used by {} secret(s): {list}; delete them first (rotor secret delete NAME --force)",
                users.len()
            )));
        }
        sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(&admin)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM targets WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let detail = format!("target {name}");
        let entry = Entry::new("target.remove", info.admin_secret.as_deref()).detail(&detail);
        self.audit(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(info)
    }

    /// The secrets whose credentials live on target `name` (its admin secret among them), by
    /// name.
    pub async fn secrets_on_target(&self, name: &str) -> Result<Vec<SecretName>> {
        sqlx::query("SELECT name FROM secrets WHERE target = $1 ORDER BY name")
            .bind(name)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| SecretName::parse_any(r.try_get::<String, _>("name")?.as_str()))
            .collect()
    }

    /// All targets, by name.
    pub async fn list_targets(&self) -> Result<Vec<TargetInfo>> {
        sqlx::query("SELECT name, kind, url, config, admin_secret FROM targets ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(target_from_row)
            .collect()
    }

    /// One target.
    pub async fn target(&self, name: &str) -> Result<TargetInfo> {
        let row = sqlx::query(
            "SELECT name, kind, url, config, admin_secret FROM targets WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            Error::not_found(format!(
                "target '{name}' does not exist (see: rotor target list)"
            ))
        })?;
        target_from_row(&row)
    }

    /// What a rotator sees of a target: its kind, address, settings and its admin credential's
    /// current value.
    pub async fn target_context(&self, name: &str) -> Result<TargetContext> {
        let target = self.target(name).await?;
        let admin = match &target.admin_secret {
            Some(secret) => Some(
                self.get_value(&SecretName::parse_any(secret)?, &Selector::default())
                    .await?
                    .value,
            ),
            None => None,
        };
        Ok(TargetContext {
            name: target.name,
            kind: target.kind,
            url: target.url,
            config: target.config,
            admin,
        })
    }
}

fn target_from_row(row: &sqlx::any::AnyRow) -> Result<TargetInfo> {
    let name: String = row.try_get("name")?;
    let config = match opt_text(row, "config")? {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| Error::config(format!("target '{name}' has malformed settings: {e}")))?,
        None => serde_json::Value::Null,
    };
    Ok(TargetInfo {
        kind: row.try_get("kind")?,
        url: row.try_get("url")?,
        admin_secret: opt_text(row, "admin_secret")?,
        config,
        name,
    })
}
