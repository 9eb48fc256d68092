//! Writing secrets: create, put and import of a version, and the rules every user write
//! follows (rotor's own `acs/…` secrets, stages a user may set). Reads and stage moves are in
//! `versions`, deletion and restore in `deletion`.
//!
//! Invariants kept here: a stage is on at most one version (the table's key); `ACSCurrent` is on
//! exactly one version from creation on; moving `ACSCurrent` makes the old current
//! `ACSPrevious`; at most [`KEEP_UNSTAGED`] unstaged versions survive a write. Each write runs
//! in one transaction that first takes the secret's write lock.

use rotators::{SecretKind, SecretType, SecretValue};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use subtle::ConstantTimeEq;

use super::audit::Entry;
use super::rows::{insert_version, move_current, prune, set_stage, stages_of, SecretRow};
use super::schedule::RotationColumns;
use super::{is_unique_violation, PutOutcome, Store};
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

/// A secret to create, with its first version.
#[derive(Debug)]
pub struct NewSecret {
    /// The secret's name.
    pub name: SecretName,
    /// The kind of value it holds.
    pub kind: SecretKind,
    /// The first version's value.
    pub value: SecretValue,
    /// The first version's id; `v1` when `None`.
    pub version_id: Option<VersionId>,
    /// Its tags.
    pub tags: Vec<Tag>,
    /// Free-text description.
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
    /// The new version's value.
    pub value: SecretValue,
    /// The version's id; generated (`v<n>`) when `None`.
    pub version_id: Option<VersionId>,
    /// Stages to put on the new version; `[ACSCurrent]` when empty.
    pub stages: Vec<Stage>,
}

/// Which version to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The version that carries this stage.
    Stage(Stage),
    /// The version with this id.
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
                Some(at) => Error::delete_window(format!(
                    "secret '{name}' already exists and is scheduled for deletion at {}; restore it or delete it with --force first",
                    format_ms(at)
                )),
                None => Error::exists(format!("secret '{name}' already exists")),
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
                Error::exists(format!("secret '{name}' already exists"))
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
                    return Err(Error::exists(format!(
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
}

/// The refusal of a change that must wait for the rotation in flight.
pub fn rotation_in_flight(name: &SecretName) -> Error {
    Error::conflict(format!(
        "secret '{name}' is being rotated; wait for the rotation to finish (rotor secret describe {name})"
    ))
}

/// Secrets rotor keeps itself (`acs/…`: a target's admin credential) change only through
/// rotation or their target, never by a user's put, stage move or delete.
pub(super) fn check_user_writable(name: &SecretName) -> Result<()> {
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
pub(super) fn check_user_stage(row: &SecretRow, stage: &Stage) -> Result<()> {
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

pub(super) fn tag_from_row(row: &AnyRow) -> Result<Tag> {
    Ok(Tag {
        tag_key: row.try_get("tag_key")?,
        tag_value: row.try_get("tag_value")?,
    })
}
