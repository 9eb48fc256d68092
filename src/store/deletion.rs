//! Deleting secrets: scheduled after a recovery window or forced, restored before the window
//! ends, purged after it; and what `secret delete` needs to say what stays on the target.

use sqlx::Row;

use super::audit::Entry;
use super::secrets::{check_user_writable, RECOVERY_DAYS};
use super::{DeleteMode, SecretInfo, Store};
use crate::clock::format_ms;
use crate::error::{Error, Result};
use crate::model::{Planned, SecretName};

const DAY_MS: i64 = 24 * 3600 * 1000;

impl Store {
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
        // A rotation in flight would go on changing the target for a secret no longer stored.
        row.ensure_not_rotating(self.clock.now_ms())?;
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
                    return Err(Error::delete_window(format!(
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
        row.ensure_not_rotating(self.clock.now_ms())?;
        self.load_rotation_unleased(&row.unleased()).await
    }

    /// Cancels a scheduled deletion.
    pub async fn restore(&self, name: &SecretName) -> Result<SecretInfo> {
        let mut tx = self.begin_write().await?;
        let row = self.secret_row(&mut tx, name, true).await?;
        let now = self.clock.now_ms();
        match row.planned_delete_at {
            None => {
                return Err(Error::delete_window(format!(
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
