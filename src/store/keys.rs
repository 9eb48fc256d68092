//! Named master keys (CMKs): created with `rotor key create`, wrapped by the installation's
//! master key, unwrapped into memory when the store opens.

use sqlx::Row;

use super::audit::Entry;
use super::{is_unique_violation, Cmk, KeyInfo, Store};
use crate::crypto::{self, KeyMaterial};
use crate::error::{Error, Result};
use crate::model::check_key_name;

impl Store {
    /// Unwraps every CMK into the in-memory cache.
    pub(super) async fn load_cmks(&self) -> Result<()> {
        let rows = sqlx::query("SELECT id, name, wrapped_material FROM master_keys")
            .fetch_all(&self.pool)
            .await?;
        let mut loaded = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let name: String = row.try_get("name")?;
            let wrapped: Vec<u8> = row.try_get("wrapped_material")?;
            let material = self
                .master
                .unwrap_key(&wrapped, &crypto::aad_cmk(&name))
                .ok_or_else(|| {
                    Error::Crypto(format!(
                        "master key '{name}' does not decrypt: its stored material was altered"
                    ))
                })?;
            loaded.push((id, Cmk { name, material }));
        }
        self.cmks
            .write()
            .expect("cmk cache poisoned")
            .extend(loaded);
        Ok(())
    }

    /// The id of the CMK called `name`, if it exists.
    pub(super) fn cmk_id(&self, name: &str) -> Option<i64> {
        let cmks = self.cmks.read().expect("cmk cache poisoned");
        cmks.iter().find(|(_, k)| k.name == name).map(|(id, _)| *id)
    }

    /// The CMK with this id.
    pub(super) async fn cmk(&self, id: i64) -> Result<Cmk> {
        if let Some(cmk) = self.cmks.read().expect("cmk cache poisoned").get(&id) {
            return Ok(cmk.clone());
        }
        // Created by another process since this one opened the store.
        self.load_cmks().await?;
        self.cmks
            .read()
            .expect("cmk cache poisoned")
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("master key #{id} does not exist")))
    }

    /// Resolves a CMK name to its id, looking in the store if the cache does not know it.
    pub(super) async fn resolve_key(&self, name: &str) -> Result<i64> {
        if let Some(id) = self.cmk_id(name) {
            return Ok(id);
        }
        self.load_cmks().await?;
        self.cmk_id(name).ok_or_else(|| {
            Error::not_found(format!("key '{name}' does not exist (see: rotor key list)"))
        })
    }

    /// Creates a new CMK.
    pub async fn create_key(&self, name: &str) -> Result<KeyInfo> {
        check_key_name(name)?;
        let material = KeyMaterial::generate();
        let wrapped = self.master.wrap(&material, &crypto::aad_cmk(name));
        let now = self.clock.now_ms();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO master_keys (name, wrapped_material, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(wrapped)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::exists(format!("key '{name}' already exists"))
            } else {
                e.into()
            }
        })?;
        let id: i64 = row.try_get("id")?;
        let detail = format!("key {name}");
        self.audit(&mut tx, Entry::new("key.create", None).detail(&detail))
            .await?;
        tx.commit().await?;
        self.cmks.write().expect("cmk cache poisoned").insert(
            id,
            Cmk {
                name: name.to_owned(),
                material,
            },
        );
        Ok(KeyInfo {
            key_id: name.to_owned(),
            creation_date: now,
            secret_count: 0,
        })
    }

    /// Creates a CMK unless one with this name exists (another process may create it first).
    pub(super) async fn create_key_if_missing(&self, name: &str) -> Result<()> {
        match self.create_key(name).await {
            Ok(_) => Ok(()),
            Err(Error::Conflict(_)) => self.load_cmks().await,
            Err(e) => Err(e),
        }
    }

    /// Lists CMKs with the number of secrets each protects.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let rows = sqlx::query(
            "SELECT k.name, k.created_at, \
                    (SELECT COUNT(*) FROM secrets s WHERE s.key_id = k.id) AS secret_count \
             FROM master_keys k ORDER BY k.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyInfo {
                    key_id: row.try_get("name")?,
                    creation_date: row.try_get("created_at")?,
                    secret_count: row.try_get("secret_count")?,
                })
            })
            .collect()
    }
}
