//! The SQLite store's few-round-trip writes of a rotation. SQLite runs in this process, but
//! every statement is a round trip to sqlx's SQLite worker thread (two thread wake-ups), which
//! cost more than most of the statements; so the writes that need no answer between them go
//! as one query of several statements, each with its parameters numbered in one list (sqlx
//! binds `$N` by number in every statement of a query). Each does what the
//! statement-by-statement path in [`super::rotation`] does — the same rows, records and
//! refusals, in the same transaction, under SQLite's one write lock (taken at `BEGIN
//! IMMEDIATE`, so nothing changes between a check and the writes after it). PostgreSQL's
//! counterparts, one round trip each, are in [`super::calls`].

use super::jobs::Lease;
use super::looks::{Looks, LOOKS_PROMOTED_SQL};
use super::rotation::{not_at_step, on_behalf, promotion_records, PENDING_DETAIL, PENDING_JOB_SQL};
use super::rows::prune_sql;
use super::{Store, WriteTx};
use crate::error::Result;
use crate::model::{SecretName, VersionId};

/// The step record's move ([`Store::advance_job`]) and its audit record: parameters `$1` the
/// step it goes on with, `$2` now, `$3` the secret, `$4` the step done, `$5` the lease token,
/// `$6` the actor, `$7` the action, `$8` the secret's name, `$9` the detail. Two rows changed
/// when the job was at `$4` under the lease, none otherwise.
pub(super) const ADVANCE_SQL: &str =
    "UPDATE rotation_jobs SET step = $1, updated_at = $2, pending_on_target = 0 \
     WHERE secret_id = $3 AND step = $4 \
       AND EXISTS (SELECT 1 FROM secrets WHERE id = $3 AND lease_token = $5); \
     INSERT INTO audit_log (at, actor, action, secret, version, outcome, detail) \
     SELECT $2, $6, $7, $8, version_id, 'ok', $9 FROM rotation_jobs \
     WHERE secret_id = $3 AND changes() = 1";

/// The step record's query (`sql`: [`ADVANCE_SQL`], or PostgreSQL's one statement) with its
/// parameters: the job moves from `from` to `to` at `now` under `claim`'s lease.
pub(super) fn advance_query<'q>(
    sql: &'q str,
    claim: &'q Lease,
    (from, to): (&'q str, &'q str),
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let (actor, detail) = on_behalf(claim, None);
    sqlx::query(sql)
        .bind(to)
        .bind(now)
        .bind(claim.secret_id)
        .bind(from)
        .bind(claim.token.as_str())
        .bind(actor)
        .bind(format!("rotation.{from}"))
        .bind(claim.name.as_str())
        .bind(detail)
}

impl Store {
    /// [`advance_job`](Store::advance_job) on SQLite: the move and its record in one query.
    pub(super) async fn advance_job_batch(
        &self,
        claim: &Lease,
        from: &str,
        to: &str,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let moved = advance_query(ADVANCE_SQL, claim, (from, to), self.clock.now_ms())
            .execute(&mut *tx)
            .await?;
        if moved.rows_affected() != 2 {
            return Err(not_at_step(&claim.name, from));
        }
        tx.commit().await
    }

    /// The end of [`store_pending`](Store::store_pending) on SQLite, after the version is
    /// added: its `ACSPending` stage, the job moved from `from` to `to` (or made at `to`) and
    /// the record, in one query; false (the caller's transaction to roll back) when the job
    /// was at another step.
    pub(super) async fn pending_batch(
        &self,
        tx: &mut WriteTx,
        claim: &Lease,
        (secret_id, name): (i64, &SecretName),
        version: &VersionId,
        (from, to): (&str, &str),
        now: i64,
    ) -> Result<bool> {
        let (actor, detail) = on_behalf(claim, Some(PENDING_DETAIL));
        let done = sqlx::query(&format!(
            "INSERT INTO version_stages (secret_id, stage, version_id) VALUES ($3, 'ACSPending', $1) \
             ON CONFLICT (secret_id, stage) DO UPDATE SET version_id = excluded.version_id; \
             {PENDING_JOB_SQL}; \
             INSERT INTO audit_log (at, actor, action, secret, version, outcome, detail) \
             VALUES ($2, $6, 'rotation.create', $7, $1, 'ok', $8)"
        ))
        .bind(version.as_str())
        .bind(now)
        .bind(secret_id)
        .bind(to)
        .bind(from)
        .bind(&actor)
        .bind(name.as_str())
        .bind(detail)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 3)
    }

    /// [`promote_complete`](Store::promote_complete) on SQLite: the step record's move first
    /// (it checks the lease and the step, and gives the job's version for its record), then
    /// the promotion, the end of the job, the looks and the three records in one query.
    pub(super) async fn promote_complete_batch(
        &self,
        claim: &Lease,
        (tested, finish): (&str, &str),
        version: &VersionId,
        looks: Looks,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let tested_version = self.advance_row(&mut tx, claim, tested, finish).await?;
        let (actor, [tested_detail, promote_detail, finish_detail]) = promotion_records(claim);
        // $1–$9 as LOOKS_PROMOTED_SQL numbers them ($7 the secret, $9 now), then $10 on.
        let sql = format!(
            "INSERT INTO version_stages (secret_id, stage, version_id) \
             SELECT secret_id, 'ACSPrevious', version_id FROM version_stages \
             WHERE secret_id = $7 AND stage = 'ACSCurrent' AND version_id <> $10 \
             ON CONFLICT (secret_id, stage) DO UPDATE SET version_id = excluded.version_id; \
             INSERT INTO version_stages (secret_id, stage, version_id) VALUES ($7, 'ACSCurrent', $10) \
             ON CONFLICT (secret_id, stage) DO UPDATE SET version_id = excluded.version_id; \
             DELETE FROM version_stages WHERE secret_id = $7 AND stage = 'ACSPending' AND version_id = $10; \
             {}; \
             DELETE FROM rotation_jobs WHERE secret_id = $7; \
             {LOOKS_PROMOTED_SQL}; \
             INSERT INTO audit_log (at, actor, action, secret, version, outcome, detail) VALUES \
                 ($9, $11, $12, $13, $14, 'ok', $15), \
                 ($9, $11, 'rotation.promote', $13, $10, 'ok', $16), \
                 ($9, $11, 'rotation.finish', $13, NULL, 'ok', $17)",
            prune_sql("$7")
        );
        looks
            .bind_columns(sqlx::query(&sql))
            .bind(claim.secret_id)
            .bind(&claim.token)
            .bind(self.clock.now_ms())
            .bind(version.as_str())
            .bind(&actor)
            .bind(format!("rotation.{tested}"))
            .bind(claim.name.as_str())
            .bind(tested_version)
            .bind(tested_detail)
            .bind(promote_detail)
            .bind(finish_detail)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
}
