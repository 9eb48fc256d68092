//! Secrets, versions and stages: create, put, get, describe, list, stage moves, rotation
//! settings, deletion and restore.
//!
//! Invariants kept here: a stage is on at most one version (the table's key); `ACSCurrent` is on
//! exactly one version from creation on; moving `ACSCurrent` makes the old current
//! `ACSPrevious`; at most [`KEEP_UNSTAGED`] unstaged versions survive a write. Each write runs
//! in one transaction that first takes the secret's write lock.

use std::collections::HashMap;

use rotators::{SecretKind, SecretType, SecretValue};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use subtle::ConstantTimeEq;

use super::audit::Entry;
use super::rows::{
    insert_version, move_current, not_found, prune, set_stage, stage_holder, stages_of, touch,
    SecretRow, SECRET_COLS, SECRET_FROM,
};
use super::schedule::RotationColumns;
use super::{
    is_unique_violation, opt_text, DeleteMode, PutOutcome, SecretInfo, SecretVersion, Store,
    VersionInfo,
};
use crate::clock::format_ms;
use crate::crypto::{self, KeyMaterial};
use crate::error::{Error, Result};
use crate::model::{
    check_description, check_tags, Planned, RotationPolicy, SecretName, Stage, Tag, VersionId,
};

/// Unstaged versions kept per secret; older ones are pruned.
pub const KEEP_UNSTAGED: i64 = 10;
/// Days a deleted secret can be restored, unless told otherwise.
pub const DEFAULT_RECOVERY_DAYS: u32 = 30;
/// The recovery windows allowed, in days: the one rule for the CLI and the API.
pub const RECOVERY_DAYS: std::ops::RangeInclusive<u32> = 7..=30;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// A secret to create, with its first version.
#[derive(Debug)]
pub struct NewSecret {
    pub name: SecretName,
    pub kind: SecretKind,
    pub value: SecretValue,
    /// The first version's id; `v1` when `None`.
    pub version_id: Option<VersionId>,
    pub tags: Vec<Tag>,
    pub description: String,
    /// The CMK that protects the secret; the default key when `None`.
    pub key: Option<String>,
    /// The target its credentials live on.
    pub target: Option<String>,
    /// Rotator settings (account pair, database, privilege, password rules).
    pub settings: Option<serde_json::Value>,
    /// Automatic rotation, set in the same transaction.
    pub rotation: Option<RotationPolicy>,
    /// A second value stored first as `ACSPrevious` (`v1`, the current one becoming `v2`): the
    /// partner account of a dual-account secret.
    pub previous: Option<SecretValue>,
}

impl NewSecret {
    /// A secret with one value and nothing else set.
    pub fn new(name: SecretName, kind: SecretKind, value: SecretValue) -> Self {
        NewSecret {
            name,
            kind,
            value,
            version_id: None,
            tags: vec![],
            description: String::new(),
            key: None,
            target: None,
            settings: None,
            rotation: None,
            previous: None,
        }
    }
}

/// A new version for an existing secret.
#[derive(Debug)]
pub struct PutValue {
    pub value: SecretValue,
    /// The version's id; generated (`v<n>`) when `None`.
    pub version_id: Option<VersionId>,
    /// Stages to put on the new version; `[ACSCurrent]` when empty.
    pub stages: Vec<Stage>,
}

/// Which version to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Stage(Stage),
    Version(VersionId),
}

impl Default for Selector {
    fn default() -> Self {
        Selector::Stage(Stage::Current)
    }
}

impl Store {
    /// Creates a secret and its first version, which becomes `ACSCurrent`.
    /// Creates a secret and its first version, which becomes `ACSCurrent`, with its rotation
    /// settings if given — in one transaction.
    pub async fn create_secret(&self, new: NewSecret) -> Result<PutOutcome> {
        let mut tx = self.begin_write().await?;
        let done = self.insert_secret(&mut tx, new).await?;
        let entry = Entry::new("secret.create", Some(done.secret_name.as_str()))
            .version(done.version_id.as_str());
        self.audit(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// [`create_secret`](Self::create_secret) inside the caller's write transaction.
    pub(super) async fn insert_secret(
        &self,
        tx: &mut AnyConnection,
        new: NewSecret,
    ) -> Result<PutOutcome> {
        let name = &new.name;
        for value in std::iter::once(&new.value).chain(&new.previous) {
            rotators::value::validate(new.kind, value.expose())
                .map_err(|e| Error::invalid(format!("secret '{name}': {e}")))?;
        }
        check_tags(&new.tags)?;
        check_description(&new.description)?;
        let key_id = self
            .resolve_key(new.key.as_deref().unwrap_or(super::DEFAULT_KEY))
            .await?;
        let cmk = self.cmk(key_id).await?;
        let first_seq: i64 = if new.previous.is_some() { 2 } else { 1 };
        let version_id = new
            .version_id
            .clone()
            .unwrap_or_else(|| VersionId::numbered(first_seq));
        let previous_id = VersionId::numbered(1);
        if new.previous.is_some() && version_id == previous_id {
            return Err(Error::invalid(format!(
                "secret '{name}': version id {previous_id} holds the previous value; choose another"
            )));
        }
        let uid = crypto::random_id();
        let data_key = KeyMaterial::generate();
        let wrapped = cmk
            .material
            .wrap(&data_key, &crypto::aad_data_key(&uid, name.as_str()));
        let sealed = data_key.seal(
            new.value.expose(),
            &crypto::aad_value(&uid, name.as_str(), version_id.as_str()),
        );
        let sealed_previous = new.previous.as_ref().map(|v| {
            data_key.seal(
                v.expose(),
                &crypto::aad_value(&uid, name.as_str(), previous_id.as_str()),
            )
        });
        let settings = new.settings.as_ref().map(|v| v.to_string());
        let now = self.clock.now_ms();
        let rotation = new
            .rotation
            .as_ref()
            .map(|p| RotationColumns::new(p, new.kind, self.clock.now()))
            .transpose()
            .map_err(|e| Error::invalid(format!("secret '{name}': {e}")))?;

        if let Some(target) = &new.target {
            // Shared-locked on PostgreSQL, so `target remove` cannot pass it by meanwhile.
            let sql = format!(
                "SELECT 1 AS one FROM targets WHERE name = $1{}",
                self.backend.share_row()
            );
            let found = sqlx::query(&sql)
                .bind(target)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Err(Error::not_found(format!(
                    "target '{target}' does not exist (see: rotor target list)"
                )));
            }
        }
        // A secret whose recovery window has ended is gone, even if no purge has run yet.
        sqlx::query("DELETE FROM secrets WHERE name = $1 AND planned_delete_at <= $2")
            .bind(name.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if let Some(row) = sqlx::query("SELECT planned_delete_at FROM secrets WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?
        {
            return Err(match row.try_get::<Option<i64>, _>("planned_delete_at")? {
                Some(at) => Error::conflict(format!(
                    "secret '{name}' already exists and is scheduled for deletion at {}; restore it or delete it with --force first",
                    format_ms(at)
                )),
                None => Error::conflict(format!("secret '{name}' already exists")),
            });
        }
        let inserted = sqlx::query(
            "INSERT INTO secrets (uid, name, secret_type, sub_type, description, key_id, wrapped_data_key, \
                                  version_seq, created_at, updated_at, target, settings) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $9, $8, $8, $10, $11) RETURNING id",
        )
        .bind(&uid)
        .bind(name.as_str())
        .bind(new.kind.ty.as_str())
        .bind(new.kind.sub.map(|s| s.as_str()))
        .bind(&new.description)
        .bind(key_id)
        .bind(wrapped)
        .bind(now)
        .bind(first_seq)
        .bind(&new.target)
        .bind(&settings)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::conflict(format!("secret '{name}' already exists"))
            } else {
                e.into()
            }
        })?;
        let id: i64 = inserted.try_get("id")?;
        if let (Some(previous), Some(sealed_previous)) = (&new.previous, &sealed_previous) {
            insert_version(
                &mut *tx,
                id,
                &previous_id,
                1,
                sealed_previous,
                previous,
                now,
            )
            .await?;
            set_stage(&mut *tx, id, &Stage::Previous, &previous_id).await?;
        }
        insert_version(
            &mut *tx,
            id,
            &version_id,
            first_seq,
            &sealed,
            &new.value,
            now,
        )
        .await?;
        set_stage(&mut *tx, id, &Stage::Current, &version_id).await?;
        for tag in &new.tags {
            sqlx::query(
                "INSERT INTO secret_tags (secret_id, tag_key, tag_value) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(&tag.tag_key)
            .bind(&tag.tag_value)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(rotation) = rotation {
            rotation.write(&mut *tx, id, None, None, now).await?;
        }
        Ok(PutOutcome {
            secret_name: name.clone(),
            version_id,
            version_stages: vec![Stage::Current],
            created: true,
        })
    }

    /// Stores a new version. Without stages it becomes `ACSCurrent` and the old current becomes
    /// `ACSPrevious`. The same version id with the same data again is a no-op; with other data,
    /// a conflict.
    pub async fn put_value(&self, name: &SecretName, put: PutValue) -> Result<PutOutcome> {
        self.put(name, put, None).await
    }

    /// Stores a credential checked on the secret's target (`rotor secret import`) as the new
    /// `ACSCurrent`: the one way besides rotation and rollback that a managed secret's value
    /// changes. Refused while a rotation is in flight — except one that *failed* in `create` or
    /// `set` (the credential it could not rotate was changed outside rotor), which the import
    /// ends in the same transaction, planning the next rotation at `next`.
    pub async fn import_value(
        &self,
        name: &SecretName,
        value: SecretValue,
        next: Option<Planned>,
    ) -> Result<PutOutcome> {
        let put = PutValue {
            value,
            version_id: None,
            stages: vec![],
        };
        self.put(name, put, Some(next)).await
    }

    /// `import`: `Some(next)` for a checked import (see [`import_value`](Self::import_value)).
    async fn put(
        &self,
        name: &SecretName,
        put: PutValue,
        import: Option<Option<Planned>>,
    ) -> Result<PutOutcome> {
        let checked = import.is_some();
        if !checked {
            // A checked import (the family logged in with it) may replace even rotor's own.
            check_user_writable(name)?;
        }
        let mut stages = if put.stages.is_empty() {
            vec![Stage::Current]
        } else {
            put.stages
        };
        stages.sort();
        stages.dedup();

        let mut tx = self.begin_write().await?;
        let row = self.secret_row(&mut tx, name, true).await?;
        row.ensure_live()?;
        for stage in &stages {
            check_user_stage(&row, stage)?;
            if *stage == Stage::Previous {
                return Err(Error::invalid(
                    "a new version cannot be put as ACSPrevious: ACSPrevious follows ACSCurrent",
                ));
            }
        }
        rotators::value::validate(row.kind, put.value.expose())
            .map_err(|e| Error::invalid(format!("secret '{name}': {e}")))?;
        if row.kind.ty != SecretType::Generic && !checked {
            return Err(Error::invalid(format!(
                "secret '{name}' is {}: its value changes only through rotation (rotor rotate {name}), a checked re-import (rotor secret import {name} --value-file F) or a checked rollback (rotor secret rollback {name})",
                row.kind
            )));
        }
        if let (Some(next), Some(_)) = (import, &row.job) {
            self.end_failed_job(&mut tx, &row, next).await?;
        }
        let data_key = self.data_key(&row).await?;

        if let Some(id) = &put.version_id {
            if let Some(existing) = sqlx::query(
                "SELECT ciphertext FROM versions WHERE secret_id = $1 AND version_id = $2",
            )
            .bind(row.id)
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            {
                let stored = self.open_value(
                    &row,
                    &data_key,
                    id,
                    &existing.try_get::<Vec<u8>, _>("ciphertext")?,
                )?;
                let same = stored.len() == put.value.len()
                    && bool::from(stored.expose().ct_eq(put.value.expose()));
                if !same {
                    return Err(Error::conflict(format!(
                        "version '{id}' of secret '{name}' already exists with other data; choose another version id"
                    )));
                }
                let version_stages = stages_of(&mut tx, row.id, id).await?;
                return Ok(PutOutcome {
                    secret_name: name.clone(),
                    version_id: id.clone(),
                    version_stages,
                    created: false,
                });
            }
        }

        let now = self.clock.now_ms();
        let version_id = self
            .add_version(&mut tx, &row, &data_key, put.version_id, &put.value, now)
            .await?;
        for stage in &stages {
            match stage {
                Stage::Current => move_current(&mut tx, row.id, &version_id).await?,
                other => set_stage(&mut tx, row.id, other, &version_id).await?,
            }
        }
        prune(&mut tx, row.id).await?;
        let action = if checked {
            "secret.import"
        } else {
            "secret.put"
        };
        let stage_list = stages
            .iter()
            .map(Stage::as_str)
            .collect::<Vec<_>>()
            .join(",");
        let entry = Entry::new(action, Some(name.as_str()))
            .version(version_id.as_str())
            .detail(&stage_list);
        self.audit(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(PutOutcome {
            secret_name: name.clone(),
            version_id,
            version_stages: stages,
            created: true,
        })
    }

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

    /// Deletes a secret: scheduled after a recovery window (7–30 days), or at once with
    /// [`DeleteMode::Force`]. Returns the planned deletion time, if scheduled.
    pub async fn delete(&self, name: &SecretName, mode: DeleteMode) -> Result<Option<i64>> {
        check_user_writable(name)?;
        if let DeleteMode::RecoveryWindow(days) = mode {
            if !RECOVERY_DAYS.contains(&days) {
                return Err(Error::invalid(format!(
                    "recovery window must be {} to {} days (got {days})",
                    RECOVERY_DAYS.start(),
                    RECOVERY_DAYS.end()
                )));
            }
        }
        let mut tx = self.begin_write().await?;
        let row = self.secret_row(&mut tx, name, true).await?;
        let planned = match mode {
            DeleteMode::Force => {
                sqlx::query("DELETE FROM secrets WHERE id = $1")
                    .bind(row.id)
                    .execute(&mut *tx)
                    .await?;
                None
            }
            DeleteMode::RecoveryWindow(days) => {
                if let Some(at) = row.planned_delete_at {
                    return Err(Error::conflict(format!(
                        "secret '{name}' is already scheduled for deletion at {}",
                        format_ms(at)
                    )));
                }
                let now = self.clock.now_ms();
                let at = now + i64::from(days) * DAY_MS;
                // A secret awaiting deletion is never due: its schedule resumes on restore.
                sqlx::query(
                    "UPDATE secrets SET planned_delete_at = $1, updated_at = $2, \
                            next_rotation_at = NULL, rotation_deadline_at = NULL WHERE id = $3",
                )
                .bind(at)
                .bind(now)
                .bind(row.id)
                .execute(&mut *tx)
                .await?;
                Some(at)
            }
        };
        let detail = match planned {
            Some(at) => format!("scheduled for {}", format_ms(at)),
            None => "forced, at once".to_string(),
        };
        let entry = Entry::new("secret.delete", Some(name.as_str())).detail(&detail);
        self.audit(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(planned)
    }

    /// A secret's target, settings and values as `secret delete` needs them to say (or remove)
    /// what its credentials are on the target, also while its deletion is scheduled.
    pub async fn deletion_view(&self, name: &SecretName) -> Result<super::RotationRecord> {
        check_user_writable(name)?;
        let mut conn = self.pool.acquire().await?;
        let row = self.secret_row(&mut conn, name, false).await?;
        drop(conn);
        let claim = super::Lease {
            secret_id: row.id,
            name: row.name,
            target: row.target,
            owner: String::new(),
            token: String::new(),
            taken_from: None,
            requested_by: None,
        };
        self.load_rotation_unleased(&claim).await
    }

    /// Cancels a scheduled deletion.
    pub async fn restore(&self, name: &SecretName) -> Result<SecretInfo> {
        let mut tx = self.begin_write().await?;
        let row = self.secret_row(&mut tx, name, true).await?;
        let now = self.clock.now_ms();
        match row.planned_delete_at {
            None => {
                return Err(Error::conflict(format!(
                    "secret '{name}' is not scheduled for deletion"
                )))
            }
            Some(at) if at <= now => {
                return Err(Error::not_found(format!(
                    "secret '{name}' was deleted at {}: its recovery window has ended",
                    format_ms(at)
                )))
            }
            Some(_) => {}
        }
        // A rotation in flight resumes at once; otherwise the schedule plans the next one.
        let planned = match (&row.job, &row.rotation) {
            (Some(_), _) => Some(Planned {
                at: self.clock.now(),
                deadline: None,
            }),
            (None, Some(schedule)) => schedule.plan(row.jitter, self.clock.now()),
            (None, None) => None,
        };
        sqlx::query(
            "UPDATE secrets SET planned_delete_at = NULL, updated_at = $1, next_rotation_at = $2, \
                    rotation_deadline_at = $3 WHERE id = $4",
        )
        .bind(now)
        .bind(planned.map(|p| p.at.timestamp_millis()))
        .bind(
            planned
                .and_then(|p| p.deadline)
                .map(|d| d.timestamp_millis()),
        )
        .bind(row.id)
        .execute(&mut *tx)
        .await?;
        self.audit(&mut tx, Entry::new("secret.restore", Some(name.as_str())))
            .await?;
        tx.commit().await?;
        self.describe(name).await
    }

    /// Deletes the secrets whose recovery window has ended; returns how many.
    pub async fn purge_expired(&self) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let names: Vec<String> =
            sqlx::query("SELECT name FROM secrets WHERE planned_delete_at <= $1")
                .bind(self.clock.now_ms())
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("name"))
                .collect::<std::result::Result<_, _>>()?;
        if names.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query("DELETE FROM secrets WHERE planned_delete_at <= $1")
            .bind(self.clock.now_ms())
            .execute(&mut *tx)
            .await?;
        for name in &names {
            let entry =
                Entry::new("secret.purge", Some(name.as_str())).detail("recovery window ended");
            self.audit(&mut tx, entry).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

/// A version as stored, sealed, with the data key that opens it. Never shows the key.
#[derive(Clone)]
pub struct SealedVersion {
    pub name: SecretName,
    pub kind: SecretKind,
    pub version_id: VersionId,
    pub stages: Vec<Stage>,
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

/// The refusal of a change that must wait for the rotation in flight.
pub fn rotation_in_flight(name: &SecretName) -> Error {
    Error::conflict(format!(
        "secret '{name}' is being rotated; wait for the rotation to finish (rotor secret describe {name})"
    ))
}

/// Secrets rotor keeps itself (`acs/…`: a target's admin credential) change only through
/// rotation or their target, never by a user's put, stage move or delete.
fn check_user_writable(name: &SecretName) -> Result<()> {
    let Some(rest) = name.as_str().strip_prefix("acs/") else {
        return Ok(());
    };
    let how = match rest
        .strip_prefix("target/")
        .and_then(|r| r.strip_suffix("/admin"))
    {
        Some(target) => format!(
            "rotate it with `rotor rotate {name}`, or remove its target with `rotor target remove {target}`"
        ),
        None => format!("rotate it with `rotor rotate {name}`"),
    };
    Err(Error::invalid(format!(
        "secret '{name}' is managed by rotor and cannot be changed by hand: {how}"
    )))
}

/// Stage rules for users: `ACSPending` is the engine's, `ACSPrevious` follows `ACSCurrent` (it
/// may be moved or removed, not put), custom stages only on generic secrets.
fn check_user_stage(row: &SecretRow, stage: &Stage) -> Result<()> {
    match stage {
        Stage::Pending => Err(Error::invalid(
            "stage ACSPending is managed by the rotation engine and cannot be set by hand",
        )),
        Stage::Custom(s) if row.kind.ty != SecretType::Generic => Err(Error::invalid(format!(
            "custom stage '{s}' is only allowed on Generic secrets; '{}' is {}",
            row.name, row.kind.ty
        ))),
        _ => Ok(()),
    }
}

fn tag_from_row(row: &AnyRow) -> Result<Tag> {
    Ok(Tag {
        tag_key: row.try_get("tag_key")?,
        tag_value: row.try_get("tag_value")?,
    })
}
