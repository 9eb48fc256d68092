//! Between and after rotations: what a worker plans to look at next (`Looks`: the next
//! rotation, a follow-up, a check), settling a follow-up or a check, rescheduling, and failed
//! attempts (`FailedAttempt`). Every write here checks the claim's lease like
//! [`super::rotation`]'s, and gives the lease up when the secret is settled.

use sqlx::{AnyConnection, Row};

use super::audit::Entry;
use super::jobs::Lease;
use super::leases::{check_lease, lease_lost};
use super::Store;
use crate::error::Result;
use crate::model::Planned;

/// The looks of a rotation that just promoted its version ([`Looks::columns`] as `$1`–`$6`),
/// the lease given up (secret `$7`, token `$8`), the rotation time `$9` set, a failure cleared.
pub(super) const LOOKS_PROMOTED_SQL: &str =
    "UPDATE secrets SET next_rotation_at = $1, rotation_deadline_at = $2, \
            followup_at = $3, followup_attempts = $4, followup_next_at = $5, verify_at = $6, \
            lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL, \
            last_rotation_at = $9, updated_at = $9, failure_reason = NULL, \
            failure_attempts = NULL, failure_at = NULL \
     WHERE id = $7 AND lease_token = $8";

impl Store {
    /// Writes what is planned next (after a follow-up or a check ran) and gives up the lease,
    /// with an audit record of what ran (`action`, `outcome`, `detail`); with `failure`, the
    /// secret shows it (`describe`, metrics) until a rotation succeeds.
    pub async fn settle(
        &self,
        claim: &Lease,
        looks: &Looks,
        record: (&str, &str, Option<&str>),
        failure: Option<(&str, u32)>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let row = self.claimed_row(&mut tx, claim, true).await?;
        check_lease(&row, claim)?;
        if let Some((reason, attempts)) = failure {
            sqlx::query(
                "UPDATE secrets SET failure_reason = $1, failure_attempts = $2, failure_at = $3 \
                 WHERE id = $4",
            )
            .bind(reason)
            .bind(i64::from(attempts))
            .bind(self.clock.now_ms())
            .bind(claim.secret_id)
            .execute(&mut *tx)
            .await?;
        }
        self.write_looks(&mut tx, claim, looks).await?;
        let (action, outcome, detail) = record;
        let mut entry = Entry::new(action, Some(claim.name.as_str())).outcome(outcome);
        if let Some(d) = detail {
            entry = entry.detail(d);
        }
        self.audit_rotation(&mut tx, claim, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records when to check that `ACSCurrent` still logs in (after a takeover: once the
    /// previous holder's step timeout has passed). The later of two pending checks stays: the
    /// one check then comes after the write of every holder taken over could have landed.
    pub async fn plan_verify(&self, claim: &Lease, at: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE secrets SET verify_at = CASE WHEN verify_at IS NOT NULL AND verify_at > $1 \
                                                 THEN verify_at ELSE $1 END \
             WHERE id = $2 AND lease_token = $3",
        )
        .bind(at)
        .bind(claim.secret_id)
        .bind(&claim.token)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() != 1 {
            return Err(lease_lost(&claim.name));
        }
        Ok(())
    }

    /// Writes the planned looks: `next_rotation_at` is the earliest, the rotation waits in
    /// `followup_next_at` while an earlier look is pending; the lease is released.
    pub(super) async fn write_looks(
        &self,
        conn: &mut AnyConnection,
        claim: &Lease,
        looks: &Looks,
    ) -> Result<()> {
        let sql = "UPDATE secrets SET next_rotation_at = $1, rotation_deadline_at = $2, \
                    followup_at = $3, followup_attempts = $4, followup_next_at = $5, verify_at = $6, \
                    lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL \
             WHERE id = $7 AND lease_token = $8";
        let query = looks
            .bind_columns(sqlx::query(sql))
            .bind(claim.secret_id)
            .bind(&claim.token);
        let done = query.execute(&mut *conn).await?;
        if done.rows_affected() != 1 {
            return Err(lease_lost(&claim.name));
        }
        Ok(())
    }

    /// Schedules the next look at a secret and gives up its lease, leaving any job in place
    /// (a missed cron window, or a job to retry later).
    pub async fn reschedule(&self, claim: &Lease, next: Option<Planned>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        self.reschedule_in(&mut tx, claim, next).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn reschedule_in(
        &self,
        conn: &mut AnyConnection,
        claim: &Lease,
        next: Option<Planned>,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE secrets SET next_rotation_at = $1, rotation_deadline_at = $2, \
                    lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL \
             WHERE id = $3 AND lease_token = $4",
        )
        .bind(next.map(|p| p.at.timestamp_millis()))
        .bind(next.and_then(|p| p.deadline).map(|d| d.timestamp_millis()))
        .bind(claim.secret_id)
        .bind(&claim.token)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != 1 {
            return Err(lease_lost(&claim.name));
        }
        Ok(())
    }

    /// Ends a rotation cycle that failed before its new credential surely reached the target
    /// (in `create` or `set`), or that left it on the target in place of the current one (a
    /// single account's `test` failed and the current one could not be put back), inside a
    /// checked re-import's transaction — the imported credential was proven to log in: the job
    /// and the `ACSPending` stage go (the pending version stays, unstaged, until pruned), the
    /// failure is cleared and the next rotation planned at `next`. Anything else in flight —
    /// running, retrying, leased, or failed later with the current credential working —
    /// refuses.
    pub(super) async fn end_failed_job(
        &self,
        tx: &mut AnyConnection,
        row: &super::rows::SecretRow,
        next: Option<Planned>,
    ) -> Result<()> {
        let leased = row
            .lease_expires_at
            .is_some_and(|until| until >= self.clock.now_ms());
        if leased || !row.failed_importable() {
            return Err(super::secrets::rotation_in_flight(&row.name));
        }
        for sql in [
            "DELETE FROM rotation_jobs WHERE secret_id = $1",
            "DELETE FROM version_stages WHERE secret_id = $1 AND stage = 'ACSPending'",
        ] {
            sqlx::query(sql).bind(row.id).execute(&mut *tx).await?;
        }
        // A follow-up or a check still pending keeps its place before the next rotation.
        let looks = Looks {
            rotation: next.map(|p| p.at.timestamp_millis()),
            deadline: next.and_then(|p| p.deadline).map(|d| d.timestamp_millis()),
            ..Looks::of(row)
        };
        let earlier = looks.followup.is_some() || looks.verify.is_some();
        sqlx::query(
            "UPDATE secrets SET failure_reason = NULL, failure_attempts = NULL, failure_at = NULL, \
                    next_rotation_at = $1, rotation_deadline_at = $2, followup_next_at = $3, \
                    lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL \
             WHERE id = $4",
        )
        .bind(looks.next())
        .bind(looks.deadline)
        .bind(if earlier { looks.rotation } else { None })
        .bind(row.id)
        .execute(&mut *tx)
        .await?;
        let entry = Entry::new("rotation.abandon", Some(row.name.as_str()))
            .detail("failed cycle ended by a checked re-import");
        self.audit(&mut *tx, entry).await
    }

    /// Records a failed attempt: the job keeps its step and counts the attempt; the secret is
    /// looked at again at `next` (a backoff retry, or the next cycle). See [`FailedAttempt`].
    pub async fn record_failure(&self, claim: &Lease, attempt: &FailedAttempt<'_>) -> Result<()> {
        let FailedAttempt {
            step: failed_step,
            error,
            attempts,
            failed,
            next,
            restored,
            back_to,
        } = *attempt;
        let now = self.clock.now_ms();
        let mut tx = self.begin_write().await?;
        // A failure in `create` may come before the job row exists: it starts the row.
        sqlx::query(
            "INSERT INTO rotation_jobs (secret_id, step, attempts, last_error, started_at, updated_at) \
             VALUES ($4, $5, $1, $2, $3, $3) \
             ON CONFLICT (secret_id) DO UPDATE SET attempts = excluded.attempts, \
                                                   last_error = excluded.last_error, \
                                                   updated_at = excluded.updated_at",
        )
            .bind(if failed { 0 } else { i64::from(attempts) })
            .bind(error)
            .bind(now)
            .bind(claim.secret_id)
            .bind(failed_step)
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
        let step: String = sqlx::query("SELECT step FROM rotation_jobs WHERE secret_id = $1")
            .bind(claim.secret_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("step")?;
        if let Some(restored) = restored {
            // Put back: the job sets its pending credential again on its next attempt. Not put
            // back: the target holds the pending credential, and says so until the job ends.
            sqlx::query(
                "UPDATE rotation_jobs SET step = CASE WHEN $1 = 1 THEN $4 ELSE step END, \
                        pending_on_target = $2 WHERE secret_id = $3",
            )
            .bind(i64::from(restored))
            .bind(i64::from(!restored))
            .bind(claim.secret_id)
            .bind(back_to)
            .execute(&mut *tx)
            .await?;
        }
        self.reschedule_in(&mut tx, claim, next).await?;
        let action = format!("rotation.{step}");
        let detail = format!("attempt {attempts}: {error}");
        let entry = Entry::new(&action, Some(claim.name.as_str()))
            .outcome(if failed { "failed" } else { "retrying" })
            .detail(&detail);
        self.audit_rotation(&mut tx, claim, entry).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A failed attempt, as [`Store::record_failure`] records it.
#[derive(Clone, Copy, Debug)]
pub struct FailedAttempt<'a> {
    /// The step that failed; a job row this failure starts (a `create` that failed before
    /// storing anything) begins at it.
    pub step: &'a str,
    /// The error message (one line, no secret value).
    pub error: &'a str,
    /// Failed attempts in this cycle, this one included.
    pub attempts: u32,
    /// The cycle is over: the reason and attempt count are kept on the secret until a rotation
    /// succeeds, and the job's attempts start again from zero for the next cycle.
    pub failed: bool,
    /// When to look at the secret again.
    pub next: Option<Planned>,
    /// For a rotation that replaces its one credential in place and failed after `set`:
    /// whether `ACSCurrent` was put back on the target (the job goes back to `back_to`) or not
    /// (the job records that the target holds the pending credential).
    pub restored: Option<bool>,
    /// The step a job whose credential was put back runs again.
    pub back_to: &'a str,
}

/// What is planned for a secret between rotations, in ms since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Looks {
    /// The next scheduled rotation (`None`: rotation is off).
    pub rotation: Option<i64>,
    /// Its cron window's end.
    pub deadline: Option<i64>,
    /// The last rotation's follow-up, with its failed attempts so far.
    pub followup: Option<i64>,
    /// Failed attempts of the follow-up so far.
    pub followup_attempts: u32,
    /// The check that `ACSCurrent` still logs in, after a takeover.
    pub verify: Option<i64>,
}

impl Looks {
    pub(super) fn of(row: &super::rows::SecretRow) -> Looks {
        let earlier = row.followup_at.is_some() || row.verify_at.is_some();
        Looks {
            rotation: if earlier {
                row.followup_next_at
            } else {
                row.next_rotation_at
            },
            deadline: row.deadline_at,
            followup: row.followup_at,
            followup_attempts: row.followup_attempts,
            verify: row.verify_at,
        }
    }

    /// The columns of the secret's row that hold them, in this order: `next_rotation_at`
    /// (the earliest look), `rotation_deadline_at`, `followup_at`, `followup_attempts`,
    /// `followup_next_at` (the rotation, while an earlier look is pending), `verify_at`.
    pub(super) fn columns(&self) -> [Option<i64>; 6] {
        let earlier = self.followup.is_some() || self.verify.is_some();
        [
            self.next(),
            self.deadline,
            self.followup,
            (self.followup_attempts > 0).then_some(i64::from(self.followup_attempts)),
            if earlier { self.rotation } else { None },
            self.verify,
        ]
    }

    /// `query` with [`columns`](Self::columns) bound as its next six parameters.
    pub(super) fn bind_columns<'q>(
        &self,
        mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for column in self.columns() {
            query = query.bind(column);
        }
        query
    }

    /// When a worker should next look at the secret: the earliest of the three.
    pub fn next(&self) -> Option<i64> {
        [self.rotation, self.followup, self.verify]
            .into_iter()
            .flatten()
            .min()
    }
}
