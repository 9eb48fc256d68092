//! Reading secrets and moving their stages: get (decrypted or sealed), describe, list,
//! versions, stage moves and rollback.
//!
//! Invariants kept here: a stage is on at most one version (the table's key); moving
//! `ACSCurrent` makes the old current `ACSPrevious`; `ACSCurrent` can only be moved, never
//! removed; `ACSPending` is the engine's.

use std::collections::HashMap;

use rotators::{SecretKind, SecretType};
use sqlx::Row;

use super::audit::Entry;
use super::rows::{
    move_current, not_found, prune, set_stage, stage_holder, stages_of, touch, SecretRow,
    SECRET_COLS, SECRET_FROM,
};
use super::secrets::{
    check_user_stage, check_user_writable, rotation_in_flight, tag_from_row, Selector,
};
use super::{opt_text, SecretInfo, SecretVersion, Store, VersionInfo};
use crate::crypto::{self, KeyMaterial};
use crate::error::{Error, Result};
use crate::model::{SecretName, Stage, Tag, VersionId};

impl Store {
    /// Reads and decrypts one version (by default the `ACSCurrent` one).
    pub async fn get_value(&self, name: &SecretName, selector: &Selector) -> Result<SecretVersion> {
        let sealed = self.get_sealed(name, selector).await?;
        let version = sealed.open()?;
        self.audit_read(version.name.as_str(), version.version_id.as_str())
            .await?;
        Ok(version)
    }

    /// Reads one version still sealed, with the data key that opens it (for a caller that
    /// keeps versions for a moment and decrypts on every use, like the API). Not audited:
    /// the caller records the read ([`Store::record_read`]).
    pub async fn get_sealed(
        &self,
        name: &SecretName,
        selector: &Selector,
    ) -> Result<SealedVersion> {
        let mut conn = self.pool.acquire().await?;
        let (join, key) = match selector {
            Selector::Stage(stage) => (
                "LEFT JOIN version_stages st ON st.secret_id = s.id AND st.stage = $2 \
                 LEFT JOIN versions v ON v.secret_id = s.id AND v.version_id = st.version_id",
                stage.as_str(),
            ),
            Selector::Version(id) => (
                "LEFT JOIN versions v ON v.secret_id = s.id AND v.version_id = $2",
                id.as_str(),
            ),
        };
        let sql = format!(
            "SELECT {SECRET_COLS}, v.version_id AS v_id, v.ciphertext AS v_ciphertext, v.created_at AS v_created_at \
             FROM {SECRET_FROM} {join} WHERE s.name = $1"
        );
        let found = sqlx::query(&sql)
            .bind(name.as_str())
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| not_found(name))?;
        let row = SecretRow::from_row(&found)?;
        row.ensure_live()?;
        let Some(version) = opt_text(&found, "v_id")? else {
            return Err(Error::not_found(match selector {
                Selector::Stage(stage) => {
                    format!("secret '{name}' has no version with stage {stage}")
                }
                Selector::Version(id) => format!("secret '{name}' has no version '{id}'"),
            }));
        };
        let version_id = VersionId::parse(&version)?;
        let sealed: Vec<u8> = found.try_get("v_ciphertext")?;
        let created_at: i64 = found.try_get("v_created_at")?;
        let stages = stages_of(&mut conn, row.id, &version_id).await?;
        let data_key = self.data_key(&row).await?;
        let aad = crypto::aad_value(&row.uid, row.name.as_str(), version_id.as_str());
        Ok(SealedVersion {
            name: row.name,
            kind: row.kind,
            version_id,
            stages,
            created_at,
            sealed,
            data_key,
            aad,
        })
    }

    /// Records a read of `version` of `secret` in the audit log, when reads are audited.
    pub async fn record_read(&self, secret: &str, version: &str) -> Result<()> {
        self.audit_read(secret, version).await
    }

    /// A secret's metadata, including one scheduled for deletion.
    pub async fn describe(&self, name: &SecretName) -> Result<SecretInfo> {
        let mut conn = self.pool.acquire().await?;
        let row = self.secret_row(&mut conn, name, false).await?;
        let tags = sqlx::query(
            "SELECT tag_key, tag_value FROM secret_tags WHERE secret_id = $1 ORDER BY tag_key",
        )
        .bind(row.id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(tag_from_row)
        .collect::<Result<_>>()?;
        Ok(row.info(tags))
    }

    /// Lists secrets carrying all of `tags`, by name; those scheduled for deletion only when asked.
    pub async fn list(&self, tags: &[Tag], include_deleted: bool) -> Result<Vec<SecretInfo>> {
        let mut filter = String::new();
        if !include_deleted {
            filter.push_str(" AND s.planned_delete_at IS NULL");
        }
        for i in 0..tags.len() {
            filter.push_str(&format!(
                " AND s.id IN (SELECT secret_id FROM secret_tags WHERE tag_key = ${} AND tag_value = ${})",
                2 * i + 1,
                2 * i + 2
            ));
        }
        let sql =
            format!("SELECT {SECRET_COLS} FROM {SECRET_FROM} WHERE 1 = 1{filter} ORDER BY s.name");
        let mut query = sqlx::query(&sql);
        for tag in tags {
            query = query.bind(&tag.tag_key).bind(&tag.tag_value);
        }
        let mut conn = self.pool.acquire().await?;
        let rows = query.fetch_all(&mut *conn).await?;
        let mut all_tags: HashMap<i64, Vec<Tag>> = HashMap::new();
        for row in sqlx::query(
            "SELECT secret_id, tag_key, tag_value FROM secret_tags ORDER BY secret_id, tag_key",
        )
        .fetch_all(&mut *conn)
        .await?
        {
            all_tags
                .entry(row.try_get("secret_id")?)
                .or_default()
                .push(tag_from_row(&row)?);
        }
        rows.iter()
            .map(|row| {
                let row = SecretRow::from_row(row)?;
                let tags = all_tags.remove(&row.id).unwrap_or_default();
                Ok(row.info(tags))
            })
            .collect()
    }

    /// A secret's versions, newest first, with their stages.
    pub async fn versions(&self, name: &SecretName) -> Result<Vec<VersionInfo>> {
        let mut conn = self.pool.acquire().await?;
        let row = self.secret_row(&mut conn, name, false).await?;
        let mut stages: HashMap<String, Vec<Stage>> = HashMap::new();
        for r in sqlx::query("SELECT stage, version_id FROM version_stages WHERE secret_id = $1")
            .bind(row.id)
            .fetch_all(&mut *conn)
            .await?
        {
            let stage: String = r.try_get("stage")?;
            stages
                .entry(r.try_get("version_id")?)
                .or_default()
                .push(stage.parse()?);
        }
        sqlx::query(
            "SELECT version_id, created_at FROM versions WHERE secret_id = $1 ORDER BY seq DESC",
        )
        .bind(row.id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            let id: String = r.try_get("version_id")?;
            let mut version_stages = stages.remove(&id).unwrap_or_default();
            version_stages.sort();
            Ok(VersionInfo {
                version_id: VersionId::parse(&id)?,
                version_stages,
                create_time: r.try_get("created_at")?,
            })
        })
        .collect()
    }

    /// Moves a stage to a version and/or removes it from one (KMS `UpdateSecretVersionStage`).
    /// `remove_from`, when given, must be the version that holds the stage now. Moving
    /// `ACSCurrent` makes the old current `ACSPrevious`; `ACSCurrent` can only be moved.
    pub async fn update_stage(
        &self,
        name: &SecretName,
        stage: &Stage,
        move_to: Option<&VersionId>,
        remove_from: Option<&VersionId>,
    ) -> Result<Vec<VersionInfo>> {
        check_user_writable(name)?;
        if move_to.is_none() && remove_from.is_none() {
            return Err(Error::invalid(
                "give a version to move the stage to, or one to remove it from",
            ));
        }
        if *stage == Stage::Current && move_to.is_none() {
            return Err(Error::invalid(format!(
                "ACSCurrent cannot be removed from secret '{name}'; move it to another version instead"
            )));
        }
        let mut tx = self.begin_write().await?;
        let row = self.secret_row(&mut tx, name, true).await?;
        row.ensure_live()?;
        check_user_stage(&row, stage)?;
        // A managed secret's ACSCurrent is what its target holds: it moves only by rotation, a
        // checked import or a checked rollback, never by hand.
        if matches!(stage, Stage::Current | Stage::Previous) && row.kind.ty != SecretType::Generic {
            return Err(Error::invalid(format!(
                "{stage} of secret '{name}' ({}) moves only with its credential on the target: rotor rotate, rotor secret import (checked by logging in) or rotor secret rollback {name}",
                row.kind.ty
            )));
        }
        for id in move_to.into_iter().chain(remove_from) {
            let exists = sqlx::query(
                "SELECT 1 AS one FROM versions WHERE secret_id = $1 AND version_id = $2",
            )
            .bind(row.id)
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                return Err(Error::not_found(format!(
                    "secret '{name}' has no version '{id}'"
                )));
            }
        }
        let holder = stage_holder(&mut tx, row.id, stage).await?;
        if let Some(from) = remove_from {
            if holder.as_ref() != Some(from) {
                return Err(Error::conflict(match &holder {
                    Some(h) => format!(
                        "stage {stage} of secret '{name}' is on version '{h}', not '{from}'"
                    ),
                    None => format!("stage {stage} of secret '{name}' is not on any version"),
                }));
            }
        }
        match (stage, move_to) {
            (Stage::Current, Some(to)) => move_current(&mut tx, row.id, to).await?,
            (_, Some(to)) => set_stage(&mut tx, row.id, stage, to).await?,
            (_, None) => {
                sqlx::query("DELETE FROM version_stages WHERE secret_id = $1 AND stage = $2")
                    .bind(row.id)
                    .bind(stage.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        touch(&mut tx, row.id, self.clock.now_ms()).await?;
        prune(&mut tx, row.id).await?;
        let detail = match (move_to, remove_from) {
            (Some(to), Some(from)) => format!("{stage} moved from {from} to {to}"),
            (Some(to), None) => format!("{stage} moved to {to}"),
            (None, Some(from)) => format!("{stage} removed from {from}"),
            (None, None) => unreachable!("checked above"),
        };
        let mut entry = Entry::new("secret.stage", Some(name.as_str())).detail(&detail);
        if let Some(to) = move_to.or(remove_from) {
            entry = entry.version(to.as_str());
        }
        self.audit(&mut tx, entry).await?;
        tx.commit().await?;
        self.versions(name).await
    }

    /// Moves `ACSCurrent` back to the `ACSPrevious` version, which must be `to` (with `from`
    /// still current: what the caller checked); `from` becomes `ACSPrevious`. Refused while a
    /// rotation is in flight.
    pub async fn rollback(
        &self,
        name: &SecretName,
        from: &VersionId,
        to: &VersionId,
    ) -> Result<Vec<VersionInfo>> {
        let mut tx = self.begin_write().await?;
        let row = self.secret_row(&mut tx, name, true).await?;
        row.ensure_live()?;
        if row.job.is_some() {
            return Err(rotation_in_flight(name));
        }
        let current = stage_holder(&mut tx, row.id, &Stage::Current).await?;
        let previous = stage_holder(&mut tx, row.id, &Stage::Previous).await?;
        if current.as_ref() != Some(from) || previous.as_ref() != Some(to) {
            return Err(Error::conflict(format!(
                "secret '{name}' changed while its previous credential was checked; try again"
            )));
        }
        move_current(&mut tx, row.id, to).await?;
        touch(&mut tx, row.id, self.clock.now_ms()).await?;
        let detail = format!("ACSCurrent moved back from {from}");
        let entry = Entry::new("secret.rollback", Some(name.as_str()))
            .version(to.as_str())
            .detail(&detail);
        self.audit(&mut tx, entry).await?;
        tx.commit().await?;
        self.versions(name).await
    }
}

/// A version as stored, sealed, with the data key that opens it. Never shows the key.
#[derive(Clone)]
pub struct SealedVersion {
    /// The secret's name.
    pub name: SecretName,
    /// The kind of value the secret holds.
    pub kind: SecretKind,
    /// The version's id.
    pub version_id: VersionId,
    /// The stage labels attached to it.
    pub stages: Vec<Stage>,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
    sealed: Vec<u8>,
    data_key: KeyMaterial,
    aad: Vec<u8>,
}

impl std::fmt::Debug for SealedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedVersion")
            .field("name", &self.name)
            .field("version_id", &self.version_id)
            .finish_non_exhaustive()
    }
}

impl SealedVersion {
    /// Decrypts the value.
    pub fn open(&self) -> Result<SecretVersion> {
        let value = super::rows::open_sealed(
            &self.data_key,
            &self.sealed,
            &self.aad,
            &self.name,
            &self.version_id,
        )?;
        Ok(SecretVersion {
            name: self.name.clone(),
            kind: self.kind,
            version_id: self.version_id.clone(),
            stages: self.stages.clone(),
            created_at: self.created_at,
            value,
        })
    }
}
