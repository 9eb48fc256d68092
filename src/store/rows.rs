//! A secret's row and its versions as stored: the row reader shared by every store module, the
//! data key and value decryption, and the version and stage helpers that the put path and the
//! rotation path both write through.

use std::time::Duration;

use rotators::{SecretKind, SecretType, SecretValue, SubType};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::jobs::{JobRecord, Lease};
use super::types::{RotationFailure, RotationStatus};
use super::{opt_text, SecretInfo, Store, KEEP_UNSTAGED};
use crate::clock::format_ms;
use crate::crypto::{self, KeyMaterial};
use crate::error::{Error, Result};
use crate::model::{RotationSchedule, SecretName, Stage, Tag, VersionId};

/// Columns of a secret row, read by [`SecretRow::from_row`]; the table is aliased `s`, its key `k`.
pub(super) const SECRET_COLS: &str = "s.id, s.uid, s.name, s.secret_type, s.sub_type, s.description, \
    s.key_id, k.name AS key_name, s.wrapped_data_key, s.version_seq, s.created_at, s.updated_at, \
    s.rotation_enabled, s.rotation_interval_s, s.rotation_cron, s.rotation_window_s, \
    s.rotation_jitter_s, s.next_rotation_at, s.rotation_deadline_at, s.last_rotation_at, \
    s.planned_delete_at, s.target, s.settings, s.lease_owner, s.lease_expires_at, \
    s.failure_reason, s.failure_attempts, s.failure_at, s.followup_at, s.followup_next_at, \
    s.followup_attempts, s.verify_at, s.lease_token, \
    j.step AS job_step, j.version_id AS job_version_id, j.attempts AS job_attempts, j.last_error AS job_last_error, \
    j.create_mark AS job_create_mark, j.pending_on_target AS job_pending_on_target";
pub(super) const SECRET_FROM: &str = "secrets s JOIN master_keys k ON k.id = s.key_id \
    LEFT JOIN rotation_jobs j ON j.secret_id = s.id";

/// A secret's row as stored, with its rotation job if one is in flight.
pub(super) struct SecretRow {
    pub(super) id: i64,
    pub(super) uid: String,
    pub(super) name: SecretName,
    pub(super) kind: SecretKind,
    description: String,
    pub(super) key_id: i64,
    key_name: String,
    pub(super) wrapped_data_key: Vec<u8>,
    pub(super) version_seq: i64,
    created_at: i64,
    updated_at: i64,
    pub(super) rotation: Option<RotationSchedule>,
    pub(super) jitter: Option<Duration>,
    pub(super) next_rotation_at: Option<i64>,
    pub(super) deadline_at: Option<i64>,
    pub(super) followup_at: Option<i64>,
    /// The next rotation while an earlier look (a follow-up or a check) waits.
    pub(super) followup_next_at: Option<i64>,
    pub(super) followup_attempts: u32,
    /// When to check that `ACSCurrent` still logs in, after a takeover.
    pub(super) verify_at: Option<i64>,
    last_rotation_at: Option<i64>,
    pub(super) planned_delete_at: Option<i64>,
    pub(super) target: Option<String>,
    pub(super) settings: Option<String>,
    pub(super) lease_owner: Option<String>,
    pub(super) lease_expires_at: Option<i64>,
    /// The token of the claim holding the lease.
    pub(super) lease_token: Option<String>,
    failure: Option<RotationFailure>,
    pub(super) job: Option<JobRecord>,
}

impl SecretRow {
    pub(super) fn from_row(row: &AnyRow) -> Result<Self> {
        let corrupt =
            |what: String| Error::config(format!("store holds an unreadable secret row: {what}"));
        let name: String = row.try_get("name")?;
        let ty: SecretType = row
            .try_get::<String, _>("secret_type")?
            .parse()
            .map_err(|e| corrupt(format!("{e}")))?;
        let sub: Option<SubType> = opt_text(row, "sub_type")?
            .map(|s| s.parse())
            .transpose()
            .map_err(|e| corrupt(format!("{e}")))?;
        let rotation = if row.try_get::<i64, _>("rotation_enabled")? != 0 {
            let window = row.try_get::<Option<i64>, _>("rotation_window_s")?;
            match (
                row.try_get::<Option<i64>, _>("rotation_interval_s")?,
                opt_text(row, "rotation_cron")?,
            ) {
                (Some(secs), _) => {
                    Some(RotationSchedule::Interval(Duration::from_secs(secs as u64)))
                }
                (None, Some(expression)) => Some(RotationSchedule::Cron {
                    expression,
                    window: window.map(|w| Duration::from_secs(w as u64)),
                }),
                (None, None) => None,
            }
        } else {
            None
        };
        let secs = |col: &str| -> Result<Option<Duration>> {
            Ok(row
                .try_get::<Option<i64>, _>(col)?
                .map(|s| Duration::from_secs(s as u64)))
        };
        let failure = match opt_text(row, "failure_reason")? {
            Some(reason) => Some(RotationFailure {
                reason,
                attempts: row
                    .try_get::<Option<i64>, _>("failure_attempts")?
                    .unwrap_or(0) as u32,
                at: row.try_get::<Option<i64>, _>("failure_at")?.unwrap_or(0),
            }),
            None => None,
        };
        let job = match opt_text(row, "job_step")? {
            Some(step) => Some(JobRecord {
                step,
                version_id: opt_text(row, "job_version_id")?
                    .map(|v| VersionId::parse(&v))
                    .transpose()?,
                attempts: row.try_get::<Option<i64>, _>("job_attempts")?.unwrap_or(0) as u32,
                last_error: opt_text(row, "job_last_error")?,
                create_mark: row.try_get::<Option<i64>, _>("job_create_mark")?,
                pending_on_target: row
                    .try_get::<Option<i64>, _>("job_pending_on_target")?
                    .unwrap_or(0)
                    != 0,
            }),
            None => None,
        };
        Ok(SecretRow {
            jitter: secs("rotation_jitter_s")?,
            deadline_at: row.try_get("rotation_deadline_at")?,
            followup_at: row.try_get("followup_at")?,
            followup_next_at: row.try_get("followup_next_at")?,
            followup_attempts: row
                .try_get::<Option<i64>, _>("followup_attempts")?
                .unwrap_or(0) as u32,
            verify_at: row.try_get("verify_at")?,
            target: opt_text(row, "target")?,
            settings: opt_text(row, "settings")?,
            lease_owner: opt_text(row, "lease_owner")?,
            lease_expires_at: row.try_get("lease_expires_at")?,
            lease_token: opt_text(row, "lease_token")?,
            failure,
            job,
            id: row.try_get("id")?,
            uid: row.try_get("uid")?,
            name: SecretName::parse_any(&name).map_err(|e| corrupt(e.to_string()))?,
            kind: SecretKind { ty, sub },
            description: row.try_get("description")?,
            key_id: row.try_get("key_id")?,
            key_name: row.try_get("key_name")?,
            wrapped_data_key: row.try_get("wrapped_data_key")?,
            version_seq: row.try_get("version_seq")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            rotation,
            next_rotation_at: row.try_get("next_rotation_at")?,
            last_rotation_at: row.try_get("last_rotation_at")?,
            planned_delete_at: row.try_get("planned_delete_at")?,
        })
    }

    /// Refuses changes and reads of a secret scheduled for deletion.
    pub(super) fn ensure_live(&self) -> Result<()> {
        match self.planned_delete_at {
            Some(at) => Err(Error::delete_window(format!(
                "secret '{}' is scheduled for deletion at {}; restore it first (rotor secret restore {})",
                self.name,
                format_ms(at),
                self.name
            ))),
            None => Ok(()),
        }
    }

    /// The secret named without a lease: a read-only look at its rotation state (a dry run,
    /// what a deletion leaves on the target).
    pub(super) fn unleased(self) -> Lease {
        Lease {
            secret_id: self.id,
            name: self.name,
            target: self.target,
            owner: String::new(),
            token: String::new(),
            taken_from: None,
            requested_by: None,
            asked_at: tokio::time::Instant::now(),
        }
    }

    /// Refuses a change that must not run beside a rotation: the secret's lease is live, held
    /// by a process that is not known to be gone ([`Error::InProgress`]).
    pub(super) fn ensure_not_rotating(&self, now: i64) -> Result<()> {
        if let (Some(other), Some(until)) = (&self.lease_owner, self.lease_expires_at) {
            if until >= now && !super::jobs::owner_is_dead_here(other) {
                return Err(Error::InProgress(format!(
                    "secret '{}' is being rotated by {other} (lease until {}); try again once it is done",
                    self.name,
                    format_ms(until)
                )));
            }
        }
        Ok(())
    }

    /// True when a checked import may end the last rotation cycle: it failed in `create` or
    /// `set`, before its new credential surely reached the target, or in `test` leaving the
    /// pending credential on the target in place of the current one — also while that cycle
    /// waits to retry (the failure's reason recommends the import).
    pub(super) fn failed_importable(&self) -> bool {
        // The one place the store reads a step's meaning: the import's guard, checked in the
        // import's own transaction.
        self.job.as_ref().is_some_and(|job| {
            let importable = matches!(job.step.as_str(), "create" | "set")
                || (job.step == "test" && job.pending_on_target);
            (self.failure.is_some() && importable)
                || (job.attempts > 0 && job.step == "test" && job.pending_on_target)
        })
    }

    pub(super) fn info(self, tags: Vec<Tag>) -> SecretInfo {
        let status = match (&self.failure, &self.job) {
            (Some(_), _) => RotationStatus::Failed,
            (None, Some(job)) if job.attempts > 0 => RotationStatus::Retrying,
            (None, Some(_)) => RotationStatus::Rotating,
            (None, None) => RotationStatus::Idle,
        };
        SecretInfo {
            rotation_jitter: self.jitter,
            rotation_status: status,
            rotation_step: self.job.as_ref().map(|j| j.step.clone()),
            rotation_attempts: self.job.as_ref().map_or(0, |j| j.attempts),
            rotation_error: self.job.as_ref().and_then(|j| j.last_error.clone()),
            rotation_failure: self.failure,
            target_holds_pending: self.job.as_ref().is_some_and(|j| j.pending_on_target),
            target: self.target,
            settings: self
                .settings
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            name: self.name,
            kind: self.kind,
            description: self.description,
            key_name: self.key_name,
            tags,
            created_at: self.created_at,
            updated_at: self.updated_at,
            planned_delete_at: self.planned_delete_at,
            rotation: self.rotation,
            next_rotation_at: self.next_rotation_at,
            last_rotation_at: self.last_rotation_at,
        }
    }
}

enum RowKey<'a> {
    Name(&'a str),
    Id(i64),
}

pub(super) fn not_found(name: &SecretName) -> Error {
    Error::not_found(format!("secret '{name}' does not exist"))
}

impl Store {
    /// Reads a secret's row by name; with `lock`, holds it for the rest of the transaction.
    pub(super) async fn secret_row(
        &self,
        conn: &mut AnyConnection,
        name: &SecretName,
        lock: bool,
    ) -> Result<SecretRow> {
        self.read_row(conn, "s.name = $1", RowKey::Name(name.as_str()), name, lock)
            .await
    }

    /// Reads a claimed secret's row by id (a claim survives nothing but its row).
    pub(super) async fn claimed_row(
        &self,
        conn: &mut AnyConnection,
        claim: &Lease,
        lock: bool,
    ) -> Result<SecretRow> {
        self.read_row(
            conn,
            "s.id = $1",
            RowKey::Id(claim.secret_id),
            &claim.name,
            lock,
        )
        .await
    }

    async fn read_row(
        &self,
        conn: &mut AnyConnection,
        filter: &str,
        key: RowKey<'_>,
        name: &SecretName,
        lock: bool,
    ) -> Result<SecretRow> {
        let sql = format!(
            "SELECT {SECRET_COLS} FROM {SECRET_FROM} WHERE {filter}{}",
            if lock { self.backend.for_update() } else { "" }
        );
        let query = sqlx::query(&sql);
        let query = match key {
            RowKey::Name(n) => query.bind(n),
            RowKey::Id(id) => query.bind(id),
        };
        let row = query
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| not_found(name))?;
        SecretRow::from_row(&row)
    }

    /// Unwraps a secret's data key with its CMK.
    pub(super) async fn data_key(&self, row: &SecretRow) -> Result<KeyMaterial> {
        self.unwrap_data_key(row.key_id, &row.wrapped_data_key, &row.uid, &row.name)
            .await
    }

    /// Unwraps the data key `wrapped` of the secret `uid`/`name` with CMK `key_id`.
    pub(super) async fn unwrap_data_key(
        &self,
        key_id: i64,
        wrapped: &[u8],
        uid: &str,
        name: &SecretName,
    ) -> Result<KeyMaterial> {
        let cmk = self.cmk(key_id).await?;
        cmk.material
            .unwrap_key(wrapped, &crypto::aad_data_key(uid, name.as_str()))
            .ok_or_else(|| {
                Error::Crypto(format!(
                    "the data key of secret '{name}' does not decrypt: it belongs to another secret or was altered"
                ))
            })
    }

    pub(super) fn open_value(
        &self,
        row: &SecretRow,
        dk: &KeyMaterial,
        version: &VersionId,
        sealed: &[u8],
    ) -> Result<SecretValue> {
        let aad = crypto::aad_value(&row.uid, row.name.as_str(), version.as_str());
        open_sealed(dk, sealed, &aad, &row.name, version)
    }
}

/// Opens version `version` of secret `name`, sealed under `dk` with associated data `aad`.
pub(super) fn open_sealed(
    dk: &KeyMaterial,
    sealed: &[u8],
    aad: &[u8],
    name: &SecretName,
    version: &VersionId,
) -> Result<SecretValue> {
    let plain = dk.open(sealed, aad).ok_or_else(|| {
        Error::Crypto(format!(
            "version '{version}' of secret '{name}' does not decrypt: its ciphertext belongs to another secret or version, or was altered"
        ))
    })?;
    Ok(SecretValue::new(plain.to_vec()))
}

pub(super) async fn insert_version(
    conn: &mut AnyConnection,
    secret_id: i64,
    version_id: &VersionId,
    seq: i64,
    sealed: &[u8],
    value: &SecretValue,
    now: i64,
) -> Result<()> {
    insert_version_as(conn, secret_id, version_id, seq, sealed, value, now, "").await?;
    Ok(())
}

/// [`insert_version`] with `on_conflict` after its VALUES: whether a row went in.
#[allow(clippy::too_many_arguments)]
async fn insert_version_as(
    conn: &mut AnyConnection,
    secret_id: i64,
    version_id: &VersionId,
    seq: i64,
    sealed: &[u8],
    value: &SecretValue,
    now: i64,
    on_conflict: &str,
) -> Result<bool> {
    let data_type = data_type(value);
    let done = sqlx::query(&format!(
        "INSERT INTO versions (secret_id, version_id, seq, ciphertext, data_type, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6){on_conflict}"
    ))
    .bind(secret_id)
    .bind(version_id.as_str())
    .bind(seq)
    .bind(sealed)
    .bind(data_type)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How a version's value is stored: `text` (UTF-8) or `binary`.
pub(super) fn data_type(value: &SecretValue) -> &'static str {
    if value.as_text().is_some() {
        "text"
    } else {
        "binary"
    }
}

/// `v<seq>`, or the next free `v<n>` after it when a user already took that id.
pub(super) async fn next_free_version_id(
    conn: &mut AnyConnection,
    secret_id: i64,
    seq: i64,
) -> Result<VersionId> {
    let taken: Vec<String> = sqlx::query("SELECT version_id FROM versions WHERE secret_id = $1")
        .bind(secret_id)
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| r.try_get("version_id"))
        .collect::<Result<_, _>>()?;
    let mut n = seq;
    loop {
        let id = VersionId::numbered(n);
        if !taken.iter().any(|t| t == id.as_str()) {
            return Ok(id);
        }
        n += 1;
    }
}

pub(super) async fn stage_holder(
    conn: &mut AnyConnection,
    secret_id: i64,
    stage: &Stage,
) -> Result<Option<VersionId>> {
    let row =
        sqlx::query("SELECT version_id FROM version_stages WHERE secret_id = $1 AND stage = $2")
            .bind(secret_id)
            .bind(stage.as_str())
            .fetch_optional(conn)
            .await?;
    row.map(|r| VersionId::parse(&r.try_get::<String, _>("version_id")?))
        .transpose()
}

pub(super) async fn stages_of(
    conn: &mut AnyConnection,
    secret_id: i64,
    version_id: &VersionId,
) -> Result<Vec<Stage>> {
    let mut stages =
        sqlx::query("SELECT stage FROM version_stages WHERE secret_id = $1 AND version_id = $2")
            .bind(secret_id)
            .bind(version_id.as_str())
            .fetch_all(conn)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("stage")?.parse())
            .collect::<Result<Vec<Stage>>>()?;
    stages.sort();
    Ok(stages)
}

/// Puts `stage` on `version_id`, taking it from whichever version had it.
pub(super) async fn set_stage(
    conn: &mut AnyConnection,
    secret_id: i64,
    stage: &Stage,
    version_id: &VersionId,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO version_stages (secret_id, stage, version_id) VALUES ($1, $2, $3) \
         ON CONFLICT (secret_id, stage) DO UPDATE SET version_id = excluded.version_id",
    )
    .bind(secret_id)
    .bind(stage.as_str())
    .bind(version_id.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves `ACSCurrent` to `to`; the version that had it becomes `ACSPrevious` (unless it is
/// `to`: then nothing changes). Two statements, no read.
pub(super) async fn move_current(
    conn: &mut AnyConnection,
    secret_id: i64,
    to: &VersionId,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO version_stages (secret_id, stage, version_id) \
         SELECT secret_id, 'ACSPrevious', version_id FROM version_stages \
         WHERE secret_id = $1 AND stage = 'ACSCurrent' AND version_id <> $2 \
         ON CONFLICT (secret_id, stage) DO UPDATE SET version_id = excluded.version_id",
    )
    .bind(secret_id)
    .bind(to.as_str())
    .execute(&mut *conn)
    .await?;
    set_stage(conn, secret_id, &Stage::Current, to).await
}

pub(super) async fn touch(conn: &mut AnyConnection, secret_id: i64, now: i64) -> Result<()> {
    sqlx::query("UPDATE secrets SET updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(secret_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes unstaged versions beyond the newest [`KEEP_UNSTAGED`].
pub(super) async fn prune(conn: &mut AnyConnection, secret_id: i64) -> Result<()> {
    sqlx::query(&prune_sql("$1"))
        .bind(secret_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// [`prune`]'s statement, for the secret whose id is parameter `secret` (`$1`, say).
pub(super) fn prune_sql(secret: &str) -> String {
    format!(
        "DELETE FROM versions WHERE secret_id = {secret} \
           AND NOT EXISTS (SELECT 1 FROM version_stages st \
                           WHERE st.secret_id = versions.secret_id AND st.version_id = versions.version_id) \
           AND seq <= (SELECT v.seq FROM versions v \
                       WHERE v.secret_id = {secret} \
                         AND NOT EXISTS (SELECT 1 FROM version_stages st \
                                         WHERE st.secret_id = v.secret_id AND st.version_id = v.version_id) \
                       ORDER BY v.seq DESC LIMIT 1 OFFSET {KEEP_UNSTAGED})"
    )
}

impl Store {
    /// Seals `value` as the secret's next version (`version_id`, or the next free `v<n>`),
    /// inserts it and advances the secret's version counter. Stages are the caller's to set.
    pub(super) async fn add_version(
        &self,
        conn: &mut AnyConnection,
        row: &SecretRow,
        data_key: &KeyMaterial,
        version_id: Option<VersionId>,
        value: &SecretValue,
        now: i64,
    ) -> Result<VersionId> {
        let seq = row.version_seq + 1;
        let seal = |id: &VersionId| {
            data_key.seal(
                value.expose(),
                &crypto::aad_value(&row.uid, row.name.as_str(), id.as_str()),
            )
        };
        let version_id = match version_id {
            Some(id) => {
                insert_version(&mut *conn, row.id, &id, seq, &seal(&id), value, now).await?;
                id
            }
            None => {
                // `v<seq>` is free unless a user took it: tried first, in one statement.
                let id = VersionId::numbered(seq);
                let sealed = seal(&id);
                let if_free = " ON CONFLICT (secret_id, version_id) DO NOTHING";
                if insert_version_as(&mut *conn, row.id, &id, seq, &sealed, value, now, if_free)
                    .await?
                {
                    id
                } else {
                    let id = next_free_version_id(&mut *conn, row.id, seq).await?;
                    insert_version(&mut *conn, row.id, &id, seq, &seal(&id), value, now).await?;
                    id
                }
            }
        };
        sqlx::query("UPDATE secrets SET version_seq = $1, updated_at = $2 WHERE id = $3")
            .bind(seq)
            .bind(now)
            .bind(row.id)
            .execute(&mut *conn)
            .await?;
        Ok(version_id)
    }
}
