//! AccessKeys of the KMS-compatible API: an id, a name, the secret sealed by the master key
//! (bound to the key id), a policy, enabled or not. The secret is returned once, at creation.

use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use sqlx::Row;
use zeroize::Zeroizing;

use super::audit::Entry;
use super::{is_unique_violation, Store};
use crate::clock::format_ms;
use crate::error::{Error, Result};
use crate::policy::Policy;

/// An access key as listed (never its secret).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKeyInfo {
    /// The key's id.
    pub access_key_id: String,
    /// Its name.
    #[serde(rename = "AccessKeyName")]
    pub name: String,
    /// `Enabled` or `Disabled`.
    pub status: &'static str,
    /// The rules of its policy, as text.
    pub policy: Vec<String>,
    /// When it was created (RFC 3339).
    pub create_time: String,
}

/// What the API needs to check a request signed with a key.
pub struct AccessKeyAuth {
    /// The key's secret, decrypted, to check signatures with.
    pub secret: Zeroizing<String>,
    /// False when the key is disabled.
    pub enabled: bool,
    /// What the key may do.
    pub policy: Policy,
}

fn aad(key_id: &str) -> Vec<u8> {
    format!("rotor/access-key/{key_id}").into_bytes()
}

fn check_name(name: &str) -> Result<()> {
    crate::model::check_key_name(name)
        .map_err(|e| Error::invalid(e.to_string().replace("key name", "access key name")))
}

impl Store {
    /// Creates a key; returns it and its secret (shown once).
    pub async fn create_access_key(
        &self,
        name: &str,
        policy: &Policy,
    ) -> Result<(AccessKeyInfo, Zeroizing<String>)> {
        check_name(name)?;
        let mut rng = rand::rng();
        let key_id = format!("RTAK{}", Alphanumeric.sample_string(&mut rng, 20));
        let secret = Zeroizing::new(Alphanumeric.sample_string(&mut rng, 30));
        let sealed = self.master.seal(secret.as_bytes(), &aad(&key_id));
        let policy_json = serde_json::to_string(policy).expect("a policy serialises");
        let now = self.clock.now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO access_keys (key_id, name, sealed, policy, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 1, $5, $5)",
        )
        .bind(&key_id)
        .bind(name)
        .bind(sealed)
        .bind(&policy_json)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::exists(format!("access key '{name}' already exists"))
            } else {
                e.into()
            }
        })?;
        let detail = format!("access key {key_id} ({name})");
        self.audit(
            &mut tx,
            Entry::new("access_key.create", None).detail(&detail),
        )
        .await?;
        tx.commit().await?;
        let info = AccessKeyInfo {
            access_key_id: key_id,
            name: name.to_owned(),
            status: "Enabled",
            policy: policy.0.iter().map(ToString::to_string).collect(),
            create_time: format_ms(now),
        };
        Ok((info, secret))
    }

    /// Lists the access keys by name (never their secrets).
    pub async fn list_access_keys(&self) -> Result<Vec<AccessKeyInfo>> {
        let rows = sqlx::query(
            "SELECT key_id, name, policy, enabled, created_at FROM access_keys ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let policy: Policy = serde_json::from_str(&r.try_get::<String, _>("policy")?)
                    .map_err(|e| {
                        Error::config(format!("an access key's policy is unreadable: {e}"))
                    })?;
                Ok(AccessKeyInfo {
                    access_key_id: r.try_get("key_id")?,
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

    /// Enables or disables a key (by name or id).
    pub async fn set_access_key_enabled(&self, key: &str, enabled: bool) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE access_keys SET enabled = $1, updated_at = $2 WHERE name = $3 OR key_id = $3",
        )
        .bind(i64::from(enabled))
        .bind(self.clock.now_ms())
        .bind(key)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!("no access key '{key}'")));
        }
        let action = if enabled {
            "access_key.enable"
        } else {
            "access_key.disable"
        };
        let detail = format!("access key {key}");
        self.audit(&mut tx, Entry::new(action, None).detail(&detail))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a key (by name or id).
    pub async fn delete_access_key(&self, key: &str) -> Result<()> {
        self.delete_principal(
            "DELETE FROM access_keys WHERE name = $1 OR key_id = $1",
            key,
            "access key",
            "access_key.delete",
        )
        .await
    }

    /// Deletes the one principal (an AccessKey, a console user) `delete` (SQL taking `key` as
    /// `$1`) removes, audited as `action`, or says there is no `what` of that name.
    pub(super) async fn delete_principal(
        &self,
        delete: &str,
        key: &str,
        what: &str,
        action: &str,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(delete).bind(key).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!("no {what} '{key}'")));
        }
        let detail = format!("{what} {key}");
        self.audit(&mut tx, Entry::new(action, None).detail(&detail))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The secret, state and policy of key `key_id`, for checking a signature; `None` if no
    /// such key.
    pub async fn access_key_auth(&self, key_id: &str) -> Result<Option<AccessKeyAuth>> {
        let Some(row) =
            sqlx::query("SELECT sealed, policy, enabled FROM access_keys WHERE key_id = $1")
                .bind(key_id)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let sealed: Vec<u8> = row.try_get("sealed")?;
        let secret = self
            .master
            .open(&sealed, &aad(key_id))
            .ok_or_else(|| Error::Crypto(format!("access key {key_id} does not decrypt")))?;
        let secret = Zeroizing::new(
            String::from_utf8(secret.to_vec())
                .map_err(|_| Error::Crypto(format!("access key {key_id} is not text")))?,
        );
        let policy: Policy = serde_json::from_str(&row.try_get::<String, _>("policy")?)
            .map_err(|e| Error::config(format!("an access key's policy is unreadable: {e}")))?;
        Ok(Some(AccessKeyAuth {
            secret,
            enabled: row.try_get::<i64, _>("enabled")? != 0,
            policy,
        }))
    }
}
