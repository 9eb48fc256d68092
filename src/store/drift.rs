//! Drift state: when each secret with a target is next checked (`drift_check_at`, spread over the
//! interval so that thousands of secrets do not arrive at once; claimed by moving it, so two
//! workers never check one secret in the same round), and since when its target refuses a
//! credential it must take (`drift_since`), which stages (`drift_stages`: `ACSCurrent`,
//! `ACSPrevious`) and why (`drift_reason`). A change of drift state is audited
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
    /// The secret had drifted and now other stages drift.
    Changed,
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
    /// The stages whose credential the target refuses (`ACSCurrent`, `ACSPrevious`).
    pub stages: Vec<String>,
    /// The target's refusal, each stage's named.
    pub reason: String,
}

/// A drift found by a check: the stages refused and the target's refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal<'a> {
    /// The stages whose credential the target refuses.
    pub stages: &'a [&'a str],
    /// Why, each stage's named (never a value).
    pub reason: &'a str,
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

    /// Records a check of `name`: `refused` is the target's refusal (drift), `None` logins
    /// that worked. A change — drift starts, other stages drift, drift ends — is audited as
    /// `secret.drift`; other stages keep the time the drift started.
    pub async fn record_drift_check(
        &self,
        name: &SecretName,
        refused: Option<Refusal<'_>>,
    ) -> Result<DriftChange> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT drift_since, drift_stages FROM secrets WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(DriftChange::Same);
        };
        let was: Option<i64> = row.try_get("drift_since")?;
        let was_stages: Option<String> = row.try_get("drift_stages")?;
        let change = match (was, refused) {
            (None, Some(_)) => DriftChange::Started,
            (Some(_), Some(r)) if was_stages.as_deref() != Some(&*r.stages.join(" ")) => {
                DriftChange::Changed
            }
            (Some(_), None) => DriftChange::Resolved,
            _ => DriftChange::Same,
        };
        match (change, refused) {
            (DriftChange::Started | DriftChange::Changed, Some(r)) => {
                sqlx::query(
                    "UPDATE secrets SET drift_since = COALESCE(drift_since, $1), \
                     drift_stages = $2, drift_reason = $3 WHERE name = $4",
                )
                .bind(self.clock.now_ms())
                .bind(r.stages.join(" "))
                .bind(r.reason)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
                self.audit(
                    &mut tx,
                    Entry::new("secret.drift", Some(name.as_str()))
                        .outcome("drift")
                        .detail(r.reason),
                )
                .await?;
            }
            (DriftChange::Resolved, _) => {
                sqlx::query(
                    "UPDATE secrets SET drift_since = NULL, drift_stages = NULL, \
                     drift_reason = NULL WHERE name = $1",
                )
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
                self.audit(
                    &mut tx,
                    Entry::new("secret.drift", Some(name.as_str()))
                        .outcome("resolved")
                        .detail("the credentials log in again"),
                )
                .await?;
            }
            _ => {}
        }
        tx.commit().await?;
        Ok(change)
    }

    /// `name`'s drift, if its target refuses a credential it must take.
    pub async fn drift(&self, name: &SecretName) -> Result<Option<Drift>> {
        let row = sqlx::query(
            "SELECT drift_since, drift_stages, drift_reason FROM secrets WHERE name = $1",
        )
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let since: Option<i64> = row.try_get("drift_since")?;
        let stages: Option<String> = row.try_get("drift_stages")?;
        let reason: Option<String> = row.try_get("drift_reason")?;
        Ok(since.map(|since| Drift {
            since,
            since_time: crate::clock::format_ms(since),
            // A drift recorded before stages were (0014) was of ACSCurrent.
            stages: stages
                .as_deref()
                .unwrap_or("ACSCurrent")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            reason: reason.unwrap_or_default(),
        }))
    }

    /// When a worker next checks `name` for drift (ms since the epoch), once one has planned it.
    pub async fn next_drift_check(&self, name: &SecretName) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT drift_check_at FROM secrets WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get("drift_check_at")?,
            None => None,
        })
    }

    /// How many secrets have drifted (the `rotor_secrets_drifted` gauge).
    pub async fn count_drifted(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM secrets WHERE drift_since IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}
