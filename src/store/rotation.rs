//! The rotation engine's persistence: leases on due secrets, the per-secret rotation job (its
//! step and pending version), promotion, failures and rescheduling.
//!
//! Every write that advances a rotation checks that its claim still holds the secret's lease
//! (`lease_token`, see [`super::leases`]), so a claim whose lease expired and passed to another
//! cannot move the job behind the new holder's back; it gets [`Error::Lease`] and stops. `next_rotation_at` is when a
//! worker should next look at a secret: the scheduled rotation, a retry after backoff, or a job
//! to resume; the due query reads it through its index, so its cost follows the number due.

use std::time::Duration;

use rotators::{SecretKind, SecretValue, VersionValue};
use sqlx::{AnyConnection, Row};

use super::audit::Entry;
use super::calls::Sealing;
use super::jobs::{JobRecord, Lease};
use super::leases::check_lease;
use super::looks::Looks;
use super::rows::{move_current, not_found, prune, set_stage, SecretRow, SECRET_COLS, SECRET_FROM};
use super::{Backend, Store};
use crate::error::{Error, Result};
use crate::model::{Planned, RotationSchedule, SecretName, Stage, VersionId};

/// What the store holds of a secret's rotation, values decrypted: the engine builds its
/// rotation state from it.
#[derive(Debug)]
pub struct RotationRecord {
    /// The kind of value the secret holds.
    pub kind: SecretKind,
    /// Its automatic rotation schedule, if rotation is on.
    pub schedule: Option<RotationSchedule>,
    /// Random jitter added to each scheduled rotation time, if set.
    pub jitter: Option<Duration>,
    /// A cron window's end: no new rotation starts after it.
    pub deadline_at: Option<i64>,
    /// What is planned between rotations: the next one, a follow-up, a check.
    pub looks: Looks,
    /// The target its credentials live on, if any.
    pub target: Option<String>,
    /// Rotator settings stored with the secret (JSON; `Null` when none).
    pub settings: serde_json::Value,
    /// The rotation job in flight, if any.
    pub job: Option<JobRecord>,
    /// The `ACSCurrent` version with its value.
    pub current: Option<VersionValue>,
    /// The `ACSPrevious` version with its value.
    pub previous: Option<VersionValue>,
    /// The `ACSPending` version with its value.
    pub pending: Option<VersionValue>,
    /// What [`Store::store_pending`] seals the next version with.
    pub sealing: Sealing,
}

impl Store {
    /// Reads a claimed secret's rotation state; fails with [`Error::Lease`] if the lease is gone.
    pub async fn load_rotation(&self, claim: &Lease) -> Result<RotationRecord> {
        self.load_state(true, claim).await
    }

    /// Reads a secret's rotation state without holding its lease, to look, not to change.
    pub async fn load_rotation_unleased(&self, claim: &Lease) -> Result<RotationRecord> {
        self.load_state(false, claim).await
    }

    async fn load_state(&self, leased: bool, claim: &Lease) -> Result<RotationRecord> {
        // One statement: the secret's row (with its job) once per staged version, up to three.
        let rows = sqlx::query(&format!(
            "SELECT {SECRET_COLS}, st.stage AS staged_as, v.version_id AS staged_version, \
                    v.ciphertext AS staged_ciphertext \
             FROM {SECRET_FROM} \
             LEFT JOIN version_stages st ON st.secret_id = s.id \
                  AND st.stage IN ('ACSCurrent', 'ACSPrevious', 'ACSPending') \
             LEFT JOIN versions v ON v.secret_id = st.secret_id AND v.version_id = st.version_id \
             WHERE s.id = $1"
        ))
        .bind(claim.secret_id)
        .fetch_all(&self.pool)
        .await?;
        let row = SecretRow::from_row(rows.first().ok_or_else(|| not_found(&claim.name))?)?;
        if leased {
            check_lease(&row, claim)?;
        }
        let data_key = self.data_key(&row).await?;
        let (mut current, mut previous, mut pending) = (None, None, None);
        for r in &rows {
            let Some(version_id) = r.try_get::<Option<String>, _>("staged_version")? else {
                continue;
            };
            let version_id = VersionId::parse(&version_id)?;
            let value = self.open_value(
                &row,
                &data_key,
                &version_id,
                &r.try_get::<Vec<u8>, _>("staged_ciphertext")?,
            )?;
            let slot = match r.try_get::<String, _>("staged_as")?.parse()? {
                Stage::Current => &mut current,
                Stage::Previous => &mut previous,
                _ => &mut pending,
            };
            *slot = Some(VersionValue {
                version_id: version_id.to_string(),
                value,
            });
        }
        let looks = Looks::of(&row);
        let sealing = Sealing::of(&row);
        Ok(RotationRecord {
            sealing,
            kind: row.kind,
            schedule: row.rotation,
            jitter: row.jitter,
            deadline_at: row.deadline_at,
            looks,
            target: row.target,
            settings: match &row.settings {
                Some(text) => serde_json::from_str(text).map_err(|e| {
                    Error::config(format!("secret '{}' has malformed settings: {e}", row.name))
                })?,
                None => serde_json::Value::Null,
            },
            job: row.job,
            current,
            previous,
            pending,
        })
    }

    /// Stores a rotator's new credential as the `ACSPending` version and moves the job from
    /// step `from` to `to` (creating its row at `to`), in one transaction — before anything on
    /// the target changes. `sealing` is the rotation's load's ([`RotationRecord::sealing`]).
    pub async fn store_pending(
        &self,
        claim: &Lease,
        sealing: &Sealing,
        value: &SecretValue,
        from: &str,
        to: &str,
    ) -> Result<VersionId> {
        if self.backend == Backend::Postgres {
            if let Some(id) = self
                .store_pending_call(claim, sealing, value, from, to)
                .await?
            {
                return Ok(id);
            }
        }
        let mut tx = self.begin_write().await?;
        let row = self.claimed_row(&mut tx, claim, true).await?;
        check_lease(&row, claim)?;
        check_new_value(row.kind, &row.name, value)?;
        let data_key = self.data_key(&row).await?;
        let now = self.clock.now_ms();
        let version_id = self
            .add_version(&mut tx, &row, &data_key, None, value, now)
            .await?;
        if self.backend == Backend::Sqlite {
            let claimed = (row.id, &row.name);
            if !self
                .pending_batch(&mut tx, claim, claimed, &version_id, (from, to), now)
                .await?
            {
                return Err(job_moved_on(&row.name));
            }
            tx.commit().await?;
            return Ok(version_id);
        }
        set_stage(&mut tx, row.id, &Stage::Pending, &version_id).await?;
        let moved = sqlx::query(PENDING_JOB_SQL)
            .bind(version_id.as_str())
            .bind(now)
            .bind(row.id)
            .bind(to)
            .bind(from)
            .execute(&mut *tx)
            .await?;
        if moved.rows_affected() != 1 {
            return Err(job_moved_on(&row.name));
        }
        let entry = Entry::new("rotation.create", Some(row.name.as_str()))
            .version(version_id.as_str())
            .detail(PENDING_DETAIL);
        self.audit_rotation(&mut tx, claim, entry).await?;
        tx.commit().await?;
        Ok(version_id)
    }

    /// Records, before a rotator whose target makes the credential is called, when this
    /// attempt began creating one, and returns the mark it works with: a mark still there is
    /// an attempt's that never ended (a crash, a lost lease, a step timeout: its credential may
    /// exist, so the window starts there; `inherited`); otherwise the new one. An attempt that
    /// returns clears its own mark ([`end_create_attempt`](Self::end_create_attempt)), so a mark
    /// never outlives the attempts it covers; an inherited one stays until a new credential is
    /// stored, since the attempt that returned may not have reached the one it covers.
    /// A job row this starts begins at `step` (the engine's first).
    pub async fn mark_create(&self, claim: &Lease, step: &str) -> Result<CreateMark> {
        let now = self.clock.now_ms();
        let mut tx = self.begin_write().await?;
        let row = self.claimed_row(&mut tx, claim, true).await?;
        check_lease(&row, claim)?;
        sqlx::query(
            "INSERT INTO rotation_jobs (secret_id, step, attempts, started_at, updated_at, create_mark) \
             VALUES ($1, $3, 0, $2, $2, $2) \
             ON CONFLICT (secret_id) DO UPDATE SET \
                 create_mark = COALESCE(rotation_jobs.create_mark, excluded.create_mark)",
        )
        .bind(row.id)
        .bind(now)
        .bind(step)
        .execute(&mut *tx)
        .await?;
        let mark: Option<i64> =
            sqlx::query("SELECT create_mark FROM rotation_jobs WHERE secret_id = $1")
                .bind(row.id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("create_mark")?;
        tx.commit().await?;
        let at = mark.unwrap_or(now);
        Ok(CreateMark {
            at,
            inherited: at != now,
        })
    }

    /// The `create` of a rotator whose target makes the credential returned (with an error):
    /// that attempt left nothing on the target, so its create mark goes and the next attempt
    /// marks afresh.
    pub async fn end_create_attempt(&self, claim: &Lease) -> Result<()> {
        sqlx::query(
            "UPDATE rotation_jobs SET create_mark = NULL \
             WHERE secret_id = $1 AND EXISTS (SELECT 1 FROM secrets WHERE id = $1 AND lease_token = $2)",
        )
        .bind(claim.secret_id)
        .bind(&claim.token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A failed `create` deleted the `ACSPrevious` credential from the target (to make room
    /// within its limit): the stage leaves `version`, so that no stage names a credential that
    /// no longer works. Harmless if it already left.
    pub async fn drop_previous(&self, claim: &Lease, version: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let row = self.claimed_row(&mut tx, claim, true).await?;
        check_lease(&row, claim)?;
        let gone = sqlx::query(
            "DELETE FROM version_stages WHERE secret_id = $1 AND stage = 'ACSPrevious' AND version_id = $2",
        )
        .bind(row.id)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        if gone.rows_affected() == 1 {
            let entry = Entry::new("rotation.create", Some(row.name.as_str()))
                .version(version)
                .detail("ACSPrevious removed: its credential was deleted from the target to make room, and the new one was not made");
            self.audit_as(&mut tx, &worker(&claim.owner), entry).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that step `from` is done and the job goes on with `to` (the engine's order);
    /// refused unless the job is at `from` under this claim's lease.
    pub async fn advance_job(&self, claim: &Lease, from: &str, to: &str) -> Result<()> {
        match self.backend {
            Backend::Postgres => self.advance_job_statement(claim, from, to).await,
            Backend::Sqlite => self.advance_job_batch(claim, from, to).await,
        }
    }

    async fn advance_in(
        &self,
        conn: &mut AnyConnection,
        claim: &Lease,
        from: &str,
        to: &str,
    ) -> Result<()> {
        let version = self.advance_row(conn, claim, from, to).await?;
        let action = format!("rotation.{from}");
        self.audit_rotation(conn, claim, step_entry(&action, claim, version.as_deref()))
            .await
    }

    /// Moves the job from `from` to `to` under this claim's lease; the job's version, if any.
    pub(super) async fn advance_row(
        &self,
        conn: &mut AnyConnection,
        claim: &Lease,
        from: &str,
        to: &str,
    ) -> Result<Option<String>> {
        let moved = sqlx::query(
            "UPDATE rotation_jobs SET step = $1, updated_at = $2, pending_on_target = 0 \
             WHERE secret_id = $3 AND step = $4 \
               AND EXISTS (SELECT 1 FROM secrets WHERE id = $3 AND lease_token = $5) \
             RETURNING version_id",
        )
        .bind(to)
        .bind(self.clock.now_ms())
        .bind(claim.secret_id)
        .bind(from)
        .bind(&claim.token)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(moved) = moved else {
            return Err(not_at_step(&claim.name, from));
        };
        Ok(moved.try_get("version_id")?)
    }

    /// Promotes the pending version in one transaction: it becomes `ACSCurrent`, the old current
    /// `ACSPrevious`, `ACSPending` goes, the last rotation time is set and a failure cleared.
    /// Harmless to repeat. The job stays (at `finish`) until [`complete_job`](Self::complete_job).
    pub async fn promote(&self, claim: &Lease, version: &VersionId) -> Result<()> {
        let mut tx = self.begin_write().await?;
        self.promote_in(&mut tx, claim, version).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that step `tested` (the last before `finish`) is done, moves the job to
    /// `finish` and promotes the pending version, in one transaction: nothing happens on the
    /// target between the two, so they need no durable boundary between them. A crash before
    /// the commit resumes at `tested`; after it, at `finish` with the version promoted.
    pub async fn promote_tested(
        &self,
        claim: &Lease,
        tested: &str,
        finish: &str,
        version: &VersionId,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        self.advance_in(&mut tx, claim, tested, finish).await?;
        self.promote_in(&mut tx, claim, version).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn promote_in(
        &self,
        conn: &mut AnyConnection,
        claim: &Lease,
        version: &VersionId,
    ) -> Result<()> {
        let id = self.promote_stages(&mut *conn, claim, version).await?;
        sqlx::query(
            "UPDATE secrets SET last_rotation_at = $1, updated_at = $1, failure_reason = NULL, \
                    failure_attempts = NULL, failure_at = NULL \
             WHERE id = $2",
        )
        .bind(self.clock.now_ms())
        .bind(id)
        .execute(&mut *conn)
        .await?;
        self.audit_rotation(conn, claim, promote_entry(claim, version))
            .await
    }

    /// The stages of a promotion, under the locked row's lease: `version` becomes
    /// `ACSCurrent`, the old current `ACSPrevious`, `ACSPending` goes, old versions are pruned.
    /// The secret's times and failure are the caller's to write. Returns the secret's id.
    async fn promote_stages(
        &self,
        conn: &mut AnyConnection,
        claim: &Lease,
        version: &VersionId,
    ) -> Result<i64> {
        let row = self.claimed_row(&mut *conn, claim, true).await?;
        check_lease(&row, claim)?;
        move_current(&mut *conn, row.id, version).await?;
        sqlx::query("DELETE FROM version_stages WHERE secret_id = $1 AND stage = 'ACSPending' AND version_id = $2")
            .bind(row.id)
            .bind(version.as_str())
            .execute(&mut *conn)
            .await?;
        prune(&mut *conn, row.id).await?;
        Ok(row.id)
    }

    /// Ends a rotation: deletes the job, schedules the next rotation (and the rotator's
    /// follow-up at `followup`, if it comes first) and gives up the lease. A pending check
    /// after a takeover (`verify`, as the claim loaded or planned it: only the lease holder
    /// writes it) stays: the next look is the earliest of the three. The lease is checked by
    /// the final write, which rolls everything back without it.
    pub async fn complete_job(
        &self,
        claim: &Lease,
        next: Option<Planned>,
        followup: Option<i64>,
        verify: Option<i64>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        self.complete_in(&mut tx, claim, next, followup, verify)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`promote_tested`](Self::promote_tested) and [`complete_job`](Self::complete_job) in one
    /// transaction, for a rotator with nothing to clean up after promotion: the last step
    /// passed, the pending version is `ACSCurrent`, the job is gone, the next look planned and
    /// the lease given up — or, before the commit, nothing of it (the job resumes at `tested`).
    pub async fn promote_complete(
        &self,
        claim: &Lease,
        (tested, finish): (&str, &str),
        version: &VersionId,
        next: Option<Planned>,
        followup: Option<i64>,
        verify: Option<i64>,
    ) -> Result<()> {
        // The same writes as the three apart, with the secret's row updated once and the
        // three records in one statement.
        let looks = ended_looks(next, followup, verify);
        let steps = (tested, finish);
        match self.backend {
            Backend::Postgres => {
                self.promote_complete_call(claim, steps, version, looks)
                    .await
            }
            Backend::Sqlite => {
                self.promote_complete_batch(claim, steps, version, looks)
                    .await
            }
        }
    }

    async fn complete_in(
        &self,
        conn: &mut AnyConnection,
        claim: &Lease,
        next: Option<Planned>,
        followup: Option<i64>,
        verify: Option<i64>,
    ) -> Result<()> {
        sqlx::query("DELETE FROM rotation_jobs WHERE secret_id = $1")
            .bind(claim.secret_id)
            .execute(&mut *conn)
            .await?;
        let looks = ended_looks(next, followup, verify);
        self.write_looks(&mut *conn, claim, &looks).await?;
        self.audit_rotation(conn, claim, finish_entry(claim)).await
    }
}

/// What a job that ended leaves planned: the next rotation (with its window's end), the
/// rotator's follow-up if it comes first, and a pending check.
pub(super) fn ended_looks(
    next: Option<Planned>,
    followup: Option<i64>,
    verify: Option<i64>,
) -> Looks {
    let next_at = next.map(|p| p.at.timestamp_millis());
    Looks {
        rotation: next_at,
        deadline: next.and_then(|p| p.deadline).map(|d| d.timestamp_millis()),
        followup: followup.filter(|f| next_at.is_none_or(|n| *f < n)),
        followup_attempts: 0,
        verify,
    }
}

/// The job moved from step `$5` to `$4` with its pending version `$1` at `$2` (secret `$3`),
/// or made at `$4`; no row changed when it is at another step.
pub(super) const PENDING_JOB_SQL: &str =
    "INSERT INTO rotation_jobs (secret_id, step, version_id, attempts, started_at, updated_at) \
     VALUES ($3, $4, $1, 0, $2, $2) \
     ON CONFLICT (secret_id) DO UPDATE SET step = excluded.step, version_id = excluded.version_id, \
                                           updated_at = excluded.updated_at, create_mark = NULL \
     WHERE rotation_jobs.step = $5";

/// When an attempt at a credential its target makes began (see [`Store::mark_create`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateMark {
    /// The window's start (ms since the epoch): keys made since may be an attempt's of this job.
    pub at: i64,
    /// An earlier attempt's mark that never ended, not this attempt's own.
    pub inherited: bool,
}

/// The lease holder of a rotation, as the audit log names it.
pub(super) fn worker(owner: &str) -> String {
    format!("worker:{owner}")
}

impl Store {
    /// Writes a rotation's record: a worker's rotation is `worker:OWNER`; one taken on request
    /// names who asked (`cli:USER`, `api:KEY`), with the lease holder in the detail.
    pub(super) async fn audit_rotation(
        &self,
        conn: &mut AnyConnection,
        claim: &Lease,
        entry: Entry<'_>,
    ) -> Result<()> {
        let (actor, detail) = on_behalf(claim, entry.detail);
        let entry = Entry {
            detail: detail.as_deref(),
            ..entry
        };
        self.audit_many(conn, &[(actor.as_str(), entry)]).await
    }
}

/// A rotator's new value that is not what the secret's kind holds.
pub(super) fn check_new_value(
    kind: SecretKind,
    name: &SecretName,
    value: &SecretValue,
) -> Result<()> {
    rotators::value::validate(kind, value.expose()).map_err(|e| {
        Error::invalid(format!(
            "secret '{name}': the rotator's new value is malformed: {e}"
        ))
    })
}

/// `store_pending` found the job at another step than the one it left.
pub(super) fn job_moved_on(name: &SecretName) -> Error {
    Error::Lease(format!(
        "the rotation job of secret '{name}' moved on without this worker"
    ))
}

/// A step record found the job no longer at `from` under this claim.
pub(super) fn not_at_step(name: &SecretName, from: &str) -> Error {
    Error::Lease(format!(
        "secret '{name}': the rotation job is no longer at step {from} under this claim"
    ))
}

/// Who a rotation's record names and its detail: a worker's rotation is `worker:OWNER` with
/// `detail` as it is; one taken on request names who asked, the lease holder in the detail.
pub(super) fn on_behalf(claim: &Lease, detail: Option<&str>) -> (String, Option<String>) {
    let lease = worker(&claim.owner);
    match &claim.requested_by {
        None => (lease, detail.map(str::to_owned)),
        Some(asked) => {
            let detail = match detail {
                Some(d) => format!("{d}; lease {lease}"),
                None => format!("lease {lease}"),
            };
            (asked.clone(), Some(detail))
        }
    }
}

/// The details of a rotation's records: the new version stored, promoted, the job ended.
pub(super) const PENDING_DETAIL: &str = "new credential stored as ACSPending";
const PROMOTED_DETAIL: &str = "ACSPending promoted to ACSCurrent";
const FINISHED_DETAIL: &str = "rotation complete";

/// Who the three records of a promotion that ends the job name, and their details: the
/// step that passed, the promotion, the end of the rotation.
pub(super) fn promotion_records(claim: &Lease) -> (String, [Option<String>; 3]) {
    let (actor, tested) = on_behalf(claim, None);
    let (_, promoted) = on_behalf(claim, Some(PROMOTED_DETAIL));
    let (_, finished) = on_behalf(claim, Some(FINISHED_DETAIL));
    (actor, [tested, promoted, finished])
}

/// The record of a step that passed (`rotation.STEP`), with the job's version.
fn step_entry<'a>(action: &'a str, claim: &'a Lease, version: Option<&'a str>) -> Entry<'a> {
    let entry = Entry::new(action, Some(claim.name.as_str()));
    match version {
        Some(v) => entry.version(v),
        None => entry,
    }
}

fn promote_entry<'a>(claim: &'a Lease, version: &'a VersionId) -> Entry<'a> {
    Entry::new("rotation.promote", Some(claim.name.as_str()))
        .version(version.as_str())
        .detail(PROMOTED_DETAIL)
}

fn finish_entry(claim: &Lease) -> Entry<'_> {
    Entry::new("rotation.finish", Some(claim.name.as_str())).detail(FINISHED_DETAIL)
}
