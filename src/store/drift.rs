//! Drift state: when each secret with a target is next checked (`drift_check_at`, spread over the
//! interval so that thousands of secrets do not arrive at once; claimed by moving it, so two
//! workers never check one secret in the same round), and since when its target refuses the
//! current credential (`drift_since`, `drift_reason`). A change of drift state is audited
//! (`secret.drift`, outcome `drift` or `resolved`) in its own transaction.

use std::time::Duration;

use sqlx::Row;

use super::audit::Entry;
use super::Store;
use crate::error::Result;
use crate::model::SecretName;

/// The most secrets planned or claimed in one call.
const BATCH: i64 = 1000;

/// What recording a check changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriftChange {
    /// The secret was fine and now drifted.
    Started,
    /// The secret had drifted and now logs in again.
    Resolved,
    /// No change.
    Same,
}

/// A secret's drift, as `describe` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Drift {
    /// Since when (ms since the epoch).
    #[serde(skip)]
    pub since: i64,
    /// The same, as text.
    pub since_time: String,
    /// The target's refusal.
    pub reason: String,
}

fn spread(interval: Duration) -> i64 {
    rand::random_range(0..=interval.as_millis().max(1) as i64)
}

impl Store {
    /// Plans the first check of secrets never planned (between one and two intervals from now,
    /// at random: a secret just created or imported was just proven to log in), then claims up
    /// to `limit` whose check is due: each one's next check moves `interval` on (±10 %), so
    /// another worker does not take it too.
    pub async fn claim_drift_checks(
        &self,
        interval: Duration,
        limit: usize,
    ) -> Result<Vec<SecretName>> {
        let now = self.clock.now_ms();
        let unplanned = sqlx::query(
            "SELECT id FROM secrets WHERE target IS NOT NULL AND drift_check_at IS NULL LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?;
        for row in unplanned {
            let id: i64 = row.try_get("id")?;
            sqlx::query(
                "UPDATE secrets SET drift_check_at = $1 WHERE id = $2 AND drift_check_at IS NULL",
            )
            .bind(now + interval.as_millis() as i64 + spread(interval))
            .bind(id)
            .execute(&self.pool)
            .await?;
        }
        let due = sqlx::query(
            "SELECT id, name, drift_check_at FROM secrets WHERE drift_check_at <= $1 \
             AND target IS NOT NULL AND planned_delete_at IS NULL ORDER BY drift_check_at LIMIT $2",
        )
        .bind(now)
        .bind(limit.min(BATCH as usize) as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::new();
        for row in due {
            let (id, at): (i64, i64) = (row.try_get("id")?, row.try_get("drift_check_at")?);
            let tenth = interval.as_millis() as i64 / 10;
            let next = now + interval.as_millis() as i64 - tenth + spread(interval / 5);
            let done = sqlx::query(
                "UPDATE secrets SET drift_check_at = $1 WHERE id = $2 AND drift_check_at = $3",
            )
            .bind(next)
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 1 {
                claimed.push(SecretName::parse_any(&row.try_get::<String, _>("name")?)?);
            }
        }
        Ok(claimed)
    }

    /// Records a check of `name`: `refused` is the target's refusal (drift), `None` a login
    /// that worked. A change is audited as `secret.drift`.
    pub async fn record_drift_check(
        &self,
        name: &SecretName,
        refused: Option<&str>,
    ) -> Result<DriftChange> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT drift_since FROM secrets WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(DriftChange::Same);
        };
        let was: Option<i64> = row.try_get("drift_since")?;
        let change = match (was, refused) {
            (None, Some(reason)) => {
                sqlx::query(
                    "UPDATE secrets SET drift_since = $1, drift_reason = $2 WHERE name = $3",
                )
                .bind(self.clock.now_ms())
                .bind(reason)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
                self.audit(
                    &mut tx,
                    Entry::new("secret.drift", Some(name.as_str()))
                        .outcome("drift")
                        .detail(reason),
                )
                .await?;
                DriftChange::Started
            }
            (Some(_), None) => {
                sqlx::query(
                    "UPDATE secrets SET drift_since = NULL, drift_reason = NULL WHERE name = $1",
                )
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
                self.audit(
                    &mut tx,
                    Entry::new("secret.drift", Some(name.as_str()))
                        .outcome("resolved")
                        .detail("the current credential logs in again"),
                )
                .await?;
                DriftChange::Resolved
            }
            _ => DriftChange::Same,
        };
        tx.commit().await?;
        Ok(change)
    }

    /// `name`'s drift, if its target refuses its current credential.
    pub async fn drift(&self, name: &SecretName) -> Result<Option<Drift>> {
        let row = sqlx::query("SELECT drift_since, drift_reason FROM secrets WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let since: Option<i64> = row.try_get("drift_since")?;
        let reason: Option<String> = row.try_get("drift_reason")?;
        Ok(since.map(|since| Drift {
            since,
            since_time: crate::clock::format_ms(since),
            reason: reason.unwrap_or_default(),
        }))
    }

    /// How many secrets have drifted (the `rotor_secrets_drifted` gauge).
    pub async fn count_drifted(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM secrets WHERE drift_since IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}
