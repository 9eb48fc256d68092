//! Leases: which claim may drive a secret's rotation now.
//!
//! A lease belongs to one claim of one secret, under a token of its own: `lease_owner`
//! names the process (for the audit log, `describe` and dead-process takeover), `lease_token`
//! the claim. Every job write checks the token ([`check_lease`]), so a claim whose lease
//! expired and passed to another, or a second claim in the same process, cannot move the job.
//! A live lease is never granted again, to anyone — this process included: `claim_now` on a
//! secret being rotated is a conflict ([`Error::InProgress`]). Renewal and release name the
//! claim, never the process, so one claim ending cannot drop another's lease.

use std::time::Duration;

use sqlx::Row;

use super::jobs::Lease;
use super::rows::SecretRow;
use super::{Backend, Store};
use crate::error::{Error, Result};
use crate::model::SecretName;

impl Store {
    /// Leases up to `limit` due secrets, oldest due first, skipping those another claim holds.
    pub async fn claim_due(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Lease>> {
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
    ) -> Result<Vec<Lease>> {
        let asked_at = tokio::time::Instant::now();
        let now = self.clock.now_ms();
        let skip_busy = if busy.is_empty() {
            String::new()
        } else {
            let slots: Vec<String> = (0..busy.len()).map(|i| format!("${}", i + 6)).collect();
            format!(
                " AND (target IS NULL OR target NOT IN ({}))",
                slots.join(", ")
            )
        };
        // One statement claims the batch; each row's token is the batch's random prefix and
        // the row's id, so every claim has its own.
        let sql = format!(
            "UPDATE secrets SET lease_owner = $1, lease_expires_at = $2, \
                    lease_token = $5 || CAST(id AS TEXT), lease_taken_from = lease_owner \
             WHERE id IN (SELECT id FROM secrets \
                          WHERE next_rotation_at <= $3 \
                            AND (lease_expires_at IS NULL OR lease_expires_at < $3){skip_busy} \
                          ORDER BY next_rotation_at LIMIT $4{}) \
             RETURNING id, name, target, lease_taken_from, lease_token",
            self.backend.skip_locked()
        );
        let prefix = format!("{}:", crate::crypto::random_id());
        let mut query = sqlx::query(&sql)
            .bind(owner)
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .bind(limit as i64)
            .bind(&prefix);
        for target in busy {
            query = query.bind(target);
        }
        let rows = if self.backend == Backend::Postgres {
            // One statement is atomic on its own there: no BEGIN and COMMIT round trips.
            query.fetch_all(&self.pool).await?
        } else {
            let mut tx = self.begin_write().await?;
            let rows = query.fetch_all(&mut *tx).await?;
            tx.commit().await?;
            rows
        };
        rows.iter()
            .map(|r| {
                let claim = Lease {
                    secret_id: r.try_get("id")?,
                    name: SecretName::parse_any(&r.try_get::<String, _>("name")?)?,
                    target: r.try_get("target")?,
                    owner: owner.to_owned(),
                    token: r.try_get("lease_token")?,
                    taken_from: r.try_get("lease_taken_from")?,
                    requested_by: None,
                    asked_at,
                };
                Ok(claim)
            })
            .collect()
    }

    /// Leases one secret for a manual rotation: due at once (so a worker resumes it if this
    /// process dies), and a failed job gets its attempts back. A secret whose lease is live —
    /// whoever holds it, this process too — is refused ([`Error::InProgress`]), unless its
    /// holder is a process on this host that is gone.
    pub async fn claim_now(
        &self,
        owner: &str,
        name: &SecretName,
        lease: Duration,
    ) -> Result<Lease> {
        let asked_at = tokio::time::Instant::now();
        let now = self.clock.now_ms();
        let mut tx = self.begin_write().await?;
        let row = self.secret_row(&mut tx, name, true).await?;
        row.ensure_live()?;
        // A one-shot run killed on this host leaves a lease nobody renews: it is taken over.
        row.ensure_not_rotating(now)?;
        let token = format!("{}:{}", crate::crypto::random_id(), row.id);
        sqlx::query(
            "UPDATE secrets SET lease_owner = $1, lease_expires_at = $2, lease_token = $5, \
                    lease_taken_from = lease_owner, \
                    next_rotation_at = CASE WHEN next_rotation_at IS NULL OR next_rotation_at > $3 \
                                            THEN $3 ELSE next_rotation_at END \
             WHERE id = $4",
        )
        .bind(owner)
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .bind(row.id)
        .bind(&token)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE rotation_jobs SET attempts = 0 WHERE secret_id = $1")
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Lease {
            secret_id: row.id,
            name: row.name,
            target: row.target,
            owner: owner.to_owned(),
            token,
            taken_from: row.lease_owner,
            requested_by: Some(self.actor().to_owned()),
            asked_at,
        })
    }

    /// Extends `claim`'s lease to `lease` from now; false when the claim no longer holds it
    /// (it expired and passed to another, or the job ended).
    pub async fn renew_claim(&self, claim: &Lease, lease: Duration) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE secrets SET lease_expires_at = $1 WHERE id = $2 AND lease_token = $3",
        )
        .bind(self.clock.now_ms() + lease.as_millis() as i64)
        .bind(claim.secret_id)
        .bind(&claim.token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives up `claim`'s lease, and nothing else; false when it held none any more.
    pub async fn release_claim(&self, claim: &Lease) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE secrets SET lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL \
             WHERE id = $1 AND lease_token = $2",
        )
        .bind(claim.secret_id)
        .bind(&claim.token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives up every lease `owner` holds — an operator's or a test's sweep, never a running
    /// process's (which releases its own claims); returns how many.
    pub async fn release_leases(&self, owner: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE secrets SET lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL \
             WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Names a secret for a read-only look at its rotation state (a dry run): no lease.
    pub async fn claim_for_reading(&self, name: &SecretName) -> Result<Lease> {
        let mut conn = self.pool.acquire().await?;
        let row = self.secret_row(&mut conn, name, false).await?;
        row.ensure_live()?;
        Ok(row.unleased())
    }

    /// [`claim_for_reading`](Self::claim_for_reading), a secret scheduled for deletion too
    /// (it may still be restored): with whether it is.
    pub async fn claim_for_reading_any(&self, name: &SecretName) -> Result<(Lease, bool)> {
        let mut conn = self.pool.acquire().await?;
        let row = self.secret_row(&mut conn, name, false).await?;
        let scheduled = row.planned_delete_at.is_some();
        Ok((row.unleased(), scheduled))
    }
}

/// Refuses a write by a claim that no longer holds the secret's lease.
pub(super) fn check_lease(row: &SecretRow, claim: &Lease) -> Result<()> {
    match &row.lease_token {
        Some(t) if !claim.token.is_empty() && *t == claim.token => Ok(()),
        _ => Err(lease_lost(&row.name)),
    }
}

pub(super) fn lease_lost(name: &SecretName) -> Error {
    Error::Lease(format!(
        "secret '{name}': this rotation no longer holds its lease"
    ))
}
