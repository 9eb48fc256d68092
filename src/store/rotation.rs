//! The rotation engine's persistence: leases on due secrets, the per-secret rotation job (its
//! step and pending version), promotion, failures and rescheduling.
//!
//! Every write that advances a rotation checks that the caller still holds the secret's lease
//! (`lease_owner`), so a worker whose lease expired and passed to another cannot move the job
//! behind the new owner's back; it gets [`Error::Lease`] and stops. `next_rotation_at` is when a
//! worker should next look at a secret: the scheduled rotation, a retry after backoff, or a job
//! to resume; the due query reads it through its index, so its cost follows the number due.

use std::time::Duration;

use rotators::{SecretKind, SecretValue, VersionValue};
use sqlx::{AnyConnection, Row};

use super::audit::Entry;
use super::jobs::{Claim, Job, Step};
use super::rows::{move_current, prune, set_stage, SecretRow};
use super::Store;
use crate::clock::format_ms;
use crate::error::{Error, Result};
use crate::model::{Planned, RotationSchedule, SecretName, Stage, VersionId};

/// Everything the engine needs to run a claimed secret's rotation, values decrypted.
#[derive(Debug)]
pub struct RotationState {
    pub claim: Claim,
    pub kind: SecretKind,
    pub schedule: Option<RotationSchedule>,
    pub jitter: Option<Duration>,
    pub next_rotation_at: Option<i64>,
    /// A cron window's end: no new rotation starts after it.
    pub deadline_at: Option<i64>,
    /// When the last rotation's follow-up is due (`Rotator::followup_after`).
    pub followup_at: Option<i64>,
    pub target: Option<String>,
    /// Rotator settings stored with the secret (JSON; `Null` when none).
    pub settings: serde_json::Value,
    /// The target's address and admin credential, attached by the engine before the steps run.
    pub target_context: Option<rotators::TargetContext>,
    pub job: Option<Job>,
    pub current: Option<VersionValue>,
    pub previous: Option<VersionValue>,
    pub pending: Option<VersionValue>,
}

impl Store {
    /// Leases up to `limit` due secrets, oldest due first, skipping those another worker holds.
    pub async fn claim_due(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Claim>> {
        self.claim_due_except(owner, lease, limit, &[]).await
    }

    /// [`claim_due`](Self::claim_due), passing over secrets on `busy` targets (those at their
    /// concurrency limit in this worker), so that waiting for a target never holds a slot.
    pub async fn claim_due_except(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        busy: &[String],
    ) -> Result<Vec<Claim>> {
        let now = self.clock.now_ms();
        let skip_busy = if busy.is_empty() {
            String::new()
        } else {
            let slots: Vec<String> = (0..busy.len()).map(|i| format!("${}", i + 5)).collect();
            format!(
                " AND (target IS NULL OR target NOT IN ({}))",
                slots.join(", ")
            )
        };
        let sql = format!(
            "UPDATE secrets SET lease_owner = $1, lease_expires_at = $2, lease_taken_from = lease_owner \
             WHERE id IN (SELECT id FROM secrets \
                          WHERE next_rotation_at <= $3 \
                            AND (lease_expires_at IS NULL OR lease_expires_at < $3){skip_busy} \
                          ORDER BY next_rotation_at LIMIT $4{}) \
             RETURNING id, name, target, lease_taken_from",
            self.backend.skip_locked()
        );
        let mut query = sqlx::query(&sql)
            .bind(owner)
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .bind(limit as i64);
        for target in busy {
            query = query.bind(target);
        }
        let mut tx = self.begin_write().await?;
        let rows = query.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let claim = Claim {
                    secret_id: r.try_get("id")?,
                    name: SecretName::parse_any(&r.try_get::<String, _>("name")?)?,
                    target: r.try_get("target")?,
                };
                let from: Option<String> = r.try_get("lease_taken_from")?;
                if let Some(from) = from.filter(|f| f != owner) {
                    tracing::warn!(secret = %claim.name, previous = %from, "took over an expired lease: its holder stopped renewing it");
                    crate::telemetry::lease_takeover();
                }
                Ok(claim)
            })
            .collect()
    }

    /// Leases one secret for a manual rotation: due at once (so a worker resumes it if this
    /// process dies), and a failed job gets its attempts back.
    pub async fn claim_now(
        &self,
        owner: &str,
        name: &SecretName,
        lease: Duration,
    ) -> Result<Claim> {
        let now = self.clock.now_ms();
        let mut tx = self.begin_write().await?;
        let row = self.secret_row(&mut tx, name, true).await?;
        row.ensure_live()?;
        if let (Some(other), Some(until)) = (&row.lease_owner, row.lease_expires_at) {
            // A one-shot run killed on this host leaves a lease nobody renews: take it over.
            if other != owner && until >= now && !super::jobs::owner_is_dead_here(other) {
                return Err(Error::conflict(format!(
                    "secret '{name}' is being rotated by worker {other} (lease until {}); try again later",
                    format_ms(until)
                )));
            }
        }
        sqlx::query(
            "UPDATE secrets SET lease_owner = $1, lease_expires_at = $2, \
                    next_rotation_at = CASE WHEN next_rotation_at IS NULL OR next_rotation_at > $3 \
                                            THEN $3 ELSE next_rotation_at END \
             WHERE id = $4",
        )
        .bind(owner)
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .bind(row.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE rotation_jobs SET attempts = 0 WHERE secret_id = $1")
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Claim {
            secret_id: row.id,
            name: row.name,
            target: row.target,
        })
    }

    /// Extends every lease `owner` holds; returns how many.
    pub async fn renew_leases(&self, owner: &str, lease: Duration) -> Result<u64> {
        let done = sqlx::query("UPDATE secrets SET lease_expires_at = $1 WHERE lease_owner = $2")
            .bind(self.clock.now_ms() + lease.as_millis() as i64)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Gives up every lease `owner` holds (a worker shutting down); returns how many.
    pub async fn release_leases(&self, owner: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE secrets SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Names a secret for a read-only look at its rotation state (a dry run).
    pub async fn claim_for_reading(&self, name: &SecretName) -> Result<Claim> {
        let mut conn = self.pool.acquire().await?;
        let row = self.secret_row(&mut conn, name, false).await?;
        row.ensure_live()?;
        Ok(Claim {
            secret_id: row.id,
            name: row.name,
            target: row.target,
        })
    }

    /// Reads a claimed secret's rotation state; fails with [`Error::Lease`] if the lease is gone.
    pub async fn load_rotation(&self, owner: &str, claim: &Claim) -> Result<RotationState> {
        self.load_state(Some(owner), claim).await
    }

    /// Reads a secret's rotation state without holding its lease, to look, not to change.
    pub async fn load_rotation_unleased(&self, claim: &Claim) -> Result<RotationState> {
        self.load_state(None, claim).await
    }

    async fn load_state(&self, owner: Option<&str>, claim: &Claim) -> Result<RotationState> {
        let mut conn = self.pool.acquire().await?;
        let row = self.claimed_row(&mut conn, claim, false).await?;
        if let Some(owner) = owner {
            check_lease(&row, owner)?;
        }
        let staged = sqlx::query(
            "SELECT st.stage, v.version_id, v.ciphertext FROM version_stages st \
             JOIN versions v ON v.secret_id = st.secret_id AND v.version_id = st.version_id \
             WHERE st.secret_id = $1 AND st.stage IN ('ACSCurrent', 'ACSPrevious', 'ACSPending')",
        )
        .bind(row.id)
        .fetch_all(&mut *conn)
        .await?;
        let data_key = self.data_key(&row).await?;
        let (mut current, mut previous, mut pending) = (None, None, None);
        for r in staged {
            let version_id = VersionId::parse(&r.try_get::<String, _>("version_id")?)?;
            let value = self.open_value(
                &row,
                &data_key,
                &version_id,
                &r.try_get::<Vec<u8>, _>("ciphertext")?,
            )?;
            let slot = match r.try_get::<String, _>("stage")?.parse()? {
                Stage::Current => &mut current,
                Stage::Previous => &mut previous,
                _ => &mut pending,
            };
            *slot = Some(VersionValue {
                version_id: version_id.to_string(),
                value,
            });
        }
        Ok(RotationState {
            claim: claim.clone(),
            kind: row.kind,
            schedule: row.rotation,
            jitter: row.jitter,
            next_rotation_at: row.next_rotation_at,
            deadline_at: row.deadline_at,
            followup_at: row.followup_at,
            target: row.target,
            settings: match &row.settings {
                Some(text) => serde_json::from_str(text).map_err(|e| {
                    Error::config(format!("secret '{}' has malformed settings: {e}", row.name))
                })?,
                None => serde_json::Value::Null,
            },
            target_context: None,
            job: row.job,
            current,
            previous,
            pending,
        })
    }

    /// Stores a rotator's new credential as the `ACSPending` version and records the job at
    /// `set` (creating its row), in one transaction — before anything on the target changes.
    pub async fn store_pending(
        &self,
        owner: &str,
        claim: &Claim,
        value: &SecretValue,
    ) -> Result<VersionId> {
        let mut tx = self.begin_write().await?;
        let row = self.claimed_row(&mut tx, claim, true).await?;
        check_lease(&row, owner)?;
        rotators::value::validate(row.kind, value.expose()).map_err(|e| {
            Error::invalid(format!(
                "secret '{}': the rotator's new value is malformed: {e}",
                row.name
            ))
        })?;
        let data_key = self.data_key(&row).await?;
        let now = self.clock.now_ms();
        let version_id = self
            .add_version(&mut tx, &row, &data_key, None, value, now)
            .await?;
        set_stage(&mut tx, row.id, &Stage::Pending, &version_id).await?;
        let moved = sqlx::query(
            "INSERT INTO rotation_jobs (secret_id, step, version_id, attempts, started_at, updated_at) \
             VALUES ($3, 'set', $1, 0, $2, $2) \
             ON CONFLICT (secret_id) DO UPDATE SET step = 'set', version_id = excluded.version_id, \
                                                   updated_at = excluded.updated_at \
             WHERE rotation_jobs.step = 'create'",
        )
        .bind(version_id.as_str())
        .bind(now)
        .bind(row.id)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Err(Error::Lease(format!(
                "the rotation job of secret '{}' moved on without this worker",
                row.name
            )));
        }
        let entry = Entry::new("rotation.create", Some(row.name.as_str()))
            .version(version_id.as_str())
            .detail("new credential stored as ACSPending");
        self.audit_as(&mut tx, &worker(owner), entry).await?;
        tx.commit().await?;
        Ok(version_id)
    }

    /// Records, before a rotator whose target makes the credential is called, when the job
    /// began creating one: the first such time is kept across attempts and returned.
    pub async fn mark_create(&self, owner: &str, claim: &Claim) -> Result<i64> {
        let now = self.clock.now_ms();
        let mut tx = self.begin_write().await?;
        let row = self.claimed_row(&mut tx, claim, true).await?;
        check_lease(&row, owner)?;
        sqlx::query(
            "INSERT INTO rotation_jobs (secret_id, step, attempts, started_at, updated_at, create_mark) \
             VALUES ($1, 'create', 0, $2, $2, $2) \
             ON CONFLICT (secret_id) DO UPDATE SET \
                 create_mark = COALESCE(rotation_jobs.create_mark, excluded.create_mark)",
        )
        .bind(row.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mark: Option<i64> =
            sqlx::query("SELECT create_mark FROM rotation_jobs WHERE secret_id = $1")
                .bind(row.id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("create_mark")?;
        tx.commit().await?;
        Ok(mark.unwrap_or(now))
    }

    /// Records that step `from` is done and the job goes on with `to`.
    pub async fn advance_job(
        &self,
        owner: &str,
        claim: &Claim,
        from: Step,
        to: Step,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE rotation_jobs SET step = $1, updated_at = $2 \
             WHERE secret_id = $3 AND step = $4 \
               AND EXISTS (SELECT 1 FROM secrets WHERE id = $3 AND lease_owner = $5)",
        )
        .bind(to.as_str())
        .bind(self.clock.now_ms())
        .bind(claim.secret_id)
        .bind(from.as_str())
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(Error::Lease(format!(
                "secret '{}': the rotation job is no longer at step {from} under this worker",
                claim.name
            )));
        }
        let action = format!("rotation.{from}");
        let version: Option<String> =
            sqlx::query("SELECT version_id FROM rotation_jobs WHERE secret_id = $1")
                .bind(claim.secret_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("version_id")?;
        let mut entry = Entry::new(&action, Some(claim.name.as_str()));
        if let Some(v) = &version {
            entry = entry.version(v);
        }
        self.audit_as(&mut tx, &worker(owner), entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Promotes the pending version in one transaction: it becomes `ACSCurrent`, the old current
    /// `ACSPrevious`, `ACSPending` goes, the last rotation time is set and a failure cleared.
    /// Harmless to repeat. The job stays (at `finish`) until [`complete_job`](Self::complete_job).
    pub async fn promote(&self, owner: &str, claim: &Claim, version: &VersionId) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let row = self.claimed_row(&mut tx, claim, true).await?;
        check_lease(&row, owner)?;
        let now = self.clock.now_ms();
        move_current(&mut tx, row.id, version).await?;
        sqlx::query("DELETE FROM version_stages WHERE secret_id = $1 AND stage = 'ACSPending' AND version_id = $2")
            .bind(row.id)
            .bind(version.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE secrets SET last_rotation_at = $1, updated_at = $1, failure_reason = NULL, \
                    failure_attempts = NULL, failure_at = NULL \
             WHERE id = $2",
        )
        .bind(now)
        .bind(row.id)
        .execute(&mut *tx)
        .await?;
        prune(&mut tx, row.id).await?;
        let entry = Entry::new("rotation.promote", Some(row.name.as_str()))
            .version(version.as_str())
            .detail("ACSPending promoted to ACSCurrent");
        self.audit_as(&mut tx, &worker(owner), entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends a rotation: deletes the job, schedules the next rotation (and the rotator's
    /// follow-up at `followup`, if it comes first) and gives up the lease.
    pub async fn complete_job(
        &self,
        owner: &str,
        claim: &Claim,
        next: Option<Planned>,
        followup: Option<i64>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM rotation_jobs WHERE secret_id = $1")
            .bind(claim.secret_id)
            .execute(&mut *tx)
            .await?;
        let next_at = next.map(|p| p.at.timestamp_millis());
        let followup = followup.filter(|f| next_at.is_none_or(|n| *f < n));
        sqlx::query("UPDATE secrets SET followup_at = $1, followup_next_at = $2 WHERE id = $3")
            .bind(followup)
            .bind(followup.and(next_at))
            .bind(claim.secret_id)
            .execute(&mut *tx)
            .await?;
        // The follow-up first, when there is one; the next rotation waits in followup_next_at.
        let look = match followup {
            Some(at) => Some(Planned {
                at: chrono::DateTime::from_timestamp_millis(at).unwrap_or_default(),
                deadline: next.and_then(|p| p.deadline),
            }),
            None => next,
        };
        self.reschedule_in(&mut tx, owner, claim, look).await?;
        let entry =
            Entry::new("rotation.finish", Some(claim.name.as_str())).detail("rotation complete");
        self.audit_as(&mut tx, &worker(owner), entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends a follow-up: the next rotation's time comes back and the lease goes; with
    /// `retry_at`, the follow-up failed and runs again then.
    pub async fn complete_followup(
        &self,
        owner: &str,
        claim: &Claim,
        retry_at: Option<i64>,
    ) -> Result<()> {
        let sql = if retry_at.is_some() {
            "UPDATE secrets SET followup_at = $1, next_rotation_at = $1, \
                    lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $2 AND lease_owner = $3"
        } else {
            "UPDATE secrets SET next_rotation_at = followup_next_at, followup_at = $1, \
                    followup_next_at = NULL, lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $2 AND lease_owner = $3"
        };
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(sql)
            .bind(retry_at)
            .bind(claim.secret_id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(lease_lost(&claim.name));
        }
        let entry = Entry::new("rotation.followup", Some(claim.name.as_str()))
            .outcome(if retry_at.is_some() { "retrying" } else { "ok" });
        self.audit_as(&mut tx, &worker(owner), entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends a failed rotation cycle without completing it, before a checked re-import replaces
    /// the credential it could not rotate: the job and the `ACSPending` stage go (the pending
    /// version stays, unstaged, until pruned), the failure is cleared, the next rotation is
    /// planned at `next` and the lease released — one transaction.
    pub async fn abandon_failed_job(
        &self,
        owner: &str,
        claim: &Claim,
        next: Option<Planned>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM rotation_jobs WHERE secret_id = $1")
            .bind(claim.secret_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM version_stages WHERE secret_id = $1 AND stage = 'ACSPending'")
            .bind(claim.secret_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE secrets SET failure_reason = NULL, failure_attempts = NULL, failure_at = NULL \
             WHERE id = $1",
        )
        .bind(claim.secret_id)
        .execute(&mut *tx)
        .await?;
        self.reschedule_in(&mut tx, owner, claim, next).await?;
        let entry = Entry::new("rotation.abandon", Some(claim.name.as_str()))
            .detail("failed cycle ended by a checked re-import");
        self.audit(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Schedules the next look at a secret and gives up its lease, leaving any job in place
    /// (a missed cron window, or a job to retry later).
    pub async fn reschedule(
        &self,
        owner: &str,
        claim: &Claim,
        next: Option<Planned>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        self.reschedule_in(&mut tx, owner, claim, next).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn reschedule_in(
        &self,
        conn: &mut AnyConnection,
        owner: &str,
        claim: &Claim,
        next: Option<Planned>,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE secrets SET next_rotation_at = $1, rotation_deadline_at = $2, \
                    lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $3 AND lease_owner = $4",
        )
        .bind(next.map(|p| p.at.timestamp_millis()))
        .bind(next.and_then(|p| p.deadline).map(|d| d.timestamp_millis()))
        .bind(claim.secret_id)
        .bind(owner)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != 1 {
            return Err(lease_lost(&claim.name));
        }
        Ok(())
    }

    /// Records a failed attempt: the job keeps its step and counts the attempt; the secret is
    /// looked at again at `next` (a backoff retry, or the next cycle). With `failed`, the cycle
    /// is over: the reason and attempt count are kept on the secret until a rotation succeeds,
    /// and the job's attempts start again from zero for the next cycle.
    pub async fn record_failure(
        &self,
        owner: &str,
        claim: &Claim,
        error: &str,
        attempts: u32,
        failed: bool,
        next: Option<Planned>,
    ) -> Result<()> {
        let now = self.clock.now_ms();
        let mut tx = self.begin_write().await?;
        // A failure in `create` may come before the job row exists: it starts the row.
        sqlx::query(
            "INSERT INTO rotation_jobs (secret_id, step, attempts, last_error, started_at, updated_at) \
             VALUES ($4, 'create', $1, $2, $3, $3) \
             ON CONFLICT (secret_id) DO UPDATE SET attempts = excluded.attempts, \
                                                   last_error = excluded.last_error, \
                                                   updated_at = excluded.updated_at",
        )
            .bind(if failed { 0 } else { i64::from(attempts) })
            .bind(error)
            .bind(now)
            .bind(claim.secret_id)
            .execute(&mut *tx)
            .await?;
        if failed {
            sqlx::query("UPDATE secrets SET failure_reason = $1, failure_attempts = $2, failure_at = $3 WHERE id = $4")
                .bind(error)
                .bind(i64::from(attempts))
                .bind(now)
                .bind(claim.secret_id)
                .execute(&mut *tx)
                .await?;
        }
        self.reschedule_in(&mut tx, owner, claim, next).await?;
        let step: String = sqlx::query("SELECT step FROM rotation_jobs WHERE secret_id = $1")
            .bind(claim.secret_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("step")?;
        let action = format!("rotation.{step}");
        let detail = format!("attempt {attempts}: {error}");
        let entry = Entry::new(&action, Some(claim.name.as_str()))
            .outcome(if failed { "failed" } else { "retrying" })
            .detail(&detail);
        self.audit_as(&mut tx, &worker(owner), entry).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A rotation's actor in the audit log.
fn worker(owner: &str) -> String {
    format!("worker:{owner}")
}

fn check_lease(row: &SecretRow, owner: &str) -> Result<()> {
    match &row.lease_owner {
        Some(o) if o == owner => Ok(()),
        _ => Err(lease_lost(&row.name)),
    }
}

fn lease_lost(name: &SecretName) -> Error {
    Error::Lease(format!(
        "secret '{name}': this worker no longer holds its lease"
    ))
}
