//! Targets: the database servers (and later hosts and cloud endpoints) that rotor changes
//! credentials on. A target keeps its address; its admin account is a `SingleUser` secret of
//! its own, `acs/target/NAME/admin`, rotatable like any other.

use rotors::{SecretKind, SecretType, SubType, TargetContext};
use serde::Serialize;
use sqlx::Row;

use super::{is_unique_violation, NewSecret, Selector, Store};
use crate::error::{Error, Result};
use crate::model::SecretName;

/// What a target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Postgres,
    Mysql,
    Redis,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Postgres => "postgres",
            TargetKind::Mysql => "mysql",
            TargetKind::Redis => "redis",
        }
    }

    /// URL schemes a target of this kind accepts.
    fn schemes(self) -> &'static [&'static str] {
        match self {
            TargetKind::Postgres => &["postgres://", "postgresql://"],
            TargetKind::Mysql => &["mysql://", "mariadb://"],
            TargetKind::Redis => &["redis://", "rediss://"],
        }
    }

    /// The secret kind that holds this target's admin account.
    fn admin_kind(self) -> SecretKind {
        let ty = match self {
            TargetKind::Redis => SecretType::Redis,
            _ => SecretType::Rds,
        };
        SecretKind {
            ty,
            sub: Some(SubType::SingleUser),
        }
    }
}

impl std::str::FromStr for TargetKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Ok(TargetKind::Postgres),
            "mysql" | "mariadb" => Ok(TargetKind::Mysql),
            "redis" => Ok(TargetKind::Redis),
            _ => Err(Error::invalid(format!(
                "unknown target kind '{s}' (expected postgres, mysql or redis)"
            ))),
        }
    }
}

/// A target as `target list` shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetInfo {
    pub name: String,
    pub kind: TargetKind,
    pub url: String,
    pub admin_secret: String,
}

/// The name of a target's admin secret.
pub fn admin_secret_name(target: &str) -> String {
    format!("acs/target/{target}/admin")
}

impl Store {
    /// Adds a target and stores its admin account as a secret, together.
    pub async fn add_target(
        &self,
        name: &str,
        kind: TargetKind,
        url: &str,
        admin: rotors::SecretValue,
    ) -> Result<TargetInfo> {
        crate::model::check_key_name(name)
            .map_err(|e| Error::invalid(e.to_string().replace("key name", "target name")))?;
        if !kind.schemes().iter().any(|s| url.starts_with(s)) {
            return Err(Error::invalid(format!(
                "target URL must start with {} for a {} target",
                kind.schemes().join(" or "),
                kind.as_str()
            )));
        }
        let authority = url
            .split("://")
            .nth(1)
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default();
        if authority.contains('@') {
            return Err(Error::invalid(
                "put no account in the target URL: give it with --admin-user and --admin-password-stdin",
            ));
        }
        let admin_name = SecretName::parse_any(&admin_secret_name(name))?;
        let mut new = NewSecret::new(admin_name.clone(), kind.admin_kind(), admin);
        new.target = Some(name.to_owned());
        new.description = format!("admin account of target {name}");
        // The target row first, so the admin secret names an existing target; if the secret
        // cannot be stored, the row goes again.
        sqlx::query("INSERT INTO targets (name, kind, url, admin_secret, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(name)
            .bind(kind.as_str())
            .bind(url)
            .bind(admin_name.as_str())
            .bind(self.clock.now_ms())
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("target '{name}' already exists"))
                } else {
                    e.into()
                }
            })?;
        if let Err(e) = self.create_secret(new).await {
            let _ = sqlx::query("DELETE FROM targets WHERE name = $1")
                .bind(name)
                .execute(&self.pool)
                .await;
            return Err(e);
        }
        self.target(name).await
    }

    /// All targets, by name.
    pub async fn list_targets(&self) -> Result<Vec<TargetInfo>> {
        sqlx::query("SELECT name, kind, url, admin_secret FROM targets ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(target_from_row)
            .collect()
    }

    /// One target.
    pub async fn target(&self, name: &str) -> Result<TargetInfo> {
        let row = sqlx::query("SELECT name, kind, url, admin_secret FROM targets WHERE name = $1")
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

    /// What a rotator sees of a target: its address and its admin account's current value.
    pub async fn target_context(&self, name: &str) -> Result<TargetContext> {
        let target = self.target(name).await?;
        let admin = self
            .get_value(
                &SecretName::parse_any(&target.admin_secret)?,
                &Selector::default(),
            )
            .await?;
        Ok(TargetContext {
            name: target.name.clone(),
            config: serde_json::json!({"Kind": target.kind.as_str(), "Url": target.url}),
            admin: Some(admin.value),
        })
    }
}

fn target_from_row(row: &sqlx::any::AnyRow) -> Result<TargetInfo> {
    Ok(TargetInfo {
        name: row.try_get("name")?,
        kind: row.try_get::<String, _>("kind")?.parse()?,
        url: row.try_get("url")?,
        admin_secret: row.try_get("admin_secret")?,
    })
}
