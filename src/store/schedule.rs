//! Rotation settings on a secret: checking a policy against the secret kind's bounds, planning
//! its first rotation, and writing it — for `rotation set` and for `secret create` (in the
//! creating transaction).

use rotators::SecretKind;
use sqlx::{AnyConnection, Row};

use super::audit::Entry;
use super::{SecretInfo, Store};
use crate::error::{Error, Result};
use crate::model::{Planned, RotationPolicy, RotationSchedule, SecretName};

impl Store {
    /// Sets (or, with `None`, disables) a secret's automatic rotation; it takes effect at once.
    /// The first rotation is one schedule step away unless `rotate_now` asks for one now. A
    /// rotation in flight keeps its timing and finishes; the new policy applies after it —
    /// except that `rotate_now` resumes a failed or retrying job at once, and is refused
    /// ([`Error::InProgress`]) while the secret is being rotated.
    pub async fn set_rotation(
        &self,
        name: &SecretName,
        policy: Option<RotationPolicy>,
    ) -> Result<SecretInfo> {
        let mut tx = self.begin_write().await?;
        let row = self.secret_row(&mut tx, name, true).await?;
        row.ensure_live()?;
        let now = self.clock.now();
        let columns = match &policy {
            Some(p) => RotationColumns::new(p, row.kind, now)
                .map_err(|e| Error::invalid(format!("secret '{name}': {e}")))?,
            None => RotationColumns::default(),
        };
        let rotate_now = policy.as_ref().is_some_and(|p| p.rotate_now);
        let leased = row
            .lease_expires_at
            .is_some_and(|until| until >= now.timestamp_millis());
        if rotate_now && leased && row.job.is_some() {
            return Err(Error::InProgress(format!(
                "secret '{name}' is being rotated right now: --rotate-now has nothing to start; \
                 see rotor secret describe {name}"
            )));
        }
        // A rotation in flight keeps its timing — unless it failed or waits for a retry and
        // --rotate-now asks for it now: the job is then resumed at once.
        let keep = row
            .job
            .as_ref()
            .filter(|_| !rotate_now)
            .map(|_| (row.next_rotation_at, row.deadline_at));
        // Between rotations, a pending follow-up or check after a takeover is the earlier look:
        // the rotation then waits in `followup_next_at` (`rotation::Looks`). The new plan must
        // go there too, or a worker keeps the old one (a `--rotate-now` while a follow-up is
        // pending would never rotate).
        let earlier = [row.followup_at, row.verify_at].into_iter().flatten().min();
        columns
            .write(&mut tx, row.id, keep, earlier, now.timestamp_millis())
            .await?;
        let detail = match &policy {
            Some(p) => p.schedule.summary(),
            None => "disabled".to_string(),
        };
        self.audit(
            &mut tx,
            Entry::new("rotation.policy", Some(name.as_str())).detail(&detail),
        )
        .await?;
        tx.commit().await?;
        self.describe(name).await
    }
}

impl Store {
    /// The secrets due now (oldest due first, at most `limit`), without claiming them: for a
    /// dry run over everything due, which changes nothing.
    pub async fn due_names(&self, limit: usize) -> Result<Vec<SecretName>> {
        let rows = sqlx::query(
            "SELECT name FROM secrets WHERE next_rotation_at <= $1 \
             ORDER BY next_rotation_at LIMIT $2",
        )
        .bind(self.clock.now_ms())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| SecretName::parse_any(&r.try_get::<String, _>("name")?))
            .collect()
    }
}

/// A rotation policy as the secret row stores it, with its first planned rotation.
#[derive(Default)]
pub(super) struct RotationColumns {
    enabled: i64,
    interval: Option<i64>,
    cron: Option<String>,
    window: Option<i64>,
    jitter: Option<i64>,
    planned: Option<Planned>,
}

impl RotationColumns {
    /// Checks `policy` against `kind`'s bounds and plans its first rotation from `now`: one
    /// schedule step away, unless it asks to rotate now.
    pub(super) fn new(
        policy: &RotationPolicy,
        kind: SecretKind,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Self> {
        policy.schedule.check_for(kind, now)?;
        if let Some(j) = policy.jitter {
            policy.schedule.check_jitter(j)?;
        }
        let planned = if policy.rotate_now {
            Some(Planned {
                at: now,
                deadline: None,
            })
        } else {
            policy.schedule.plan(policy.jitter, now)
        };
        let (interval, cron, window) = match &policy.schedule {
            RotationSchedule::Interval(d) => (Some(d.as_secs() as i64), None, None),
            RotationSchedule::Cron { expression, window } => (
                None,
                Some(expression.clone()),
                window.map(|w| w.as_secs() as i64),
            ),
        };
        Ok(RotationColumns {
            enabled: 1,
            interval,
            cron,
            window,
            jitter: policy.jitter.map(|j| j.as_secs() as i64),
            planned,
        })
    }

    /// Writes the policy to secret `id`; `keep` holds the next rotation and deadline of a
    /// rotation in flight, which keep their timing. Otherwise, with a follow-up or check
    /// pending at `earlier`, the planned rotation waits in `followup_next_at` and
    /// `next_rotation_at` is the earlier of the two (as `rotation::Looks` reads them).
    pub(super) async fn write(
        &self,
        conn: &mut AnyConnection,
        id: i64,
        keep: Option<(Option<i64>, Option<i64>)>,
        earlier: Option<i64>,
        now: i64,
    ) -> Result<()> {
        let planned = self.planned.map(|p| p.at.timestamp_millis());
        let (next, deadline) = keep.unwrap_or((
            planned,
            self.planned
                .and_then(|p| p.deadline)
                .map(|d| d.timestamp_millis()),
        ));
        // (next_rotation_at, followup_next_at, whether to write the latter)
        let (next, waiting, looks) = match (keep, earlier) {
            (None, Some(e)) => (Some(next.map_or(e, |n| n.min(e))), planned, 1i64),
            (None, None) => (next, None, 1),
            (Some(_), _) => (next, None, 0),
        };
        sqlx::query(
            "UPDATE secrets SET rotation_enabled = $1, rotation_interval_s = $2, rotation_cron = $3, \
                                rotation_window_s = $4, rotation_jitter_s = $5, next_rotation_at = $6, \
                                rotation_deadline_at = $7, updated_at = $8, \
                                followup_next_at = CASE WHEN $10 = 1 THEN $11 ELSE followup_next_at END \
             WHERE id = $9",
        )
        .bind(self.enabled)
        .bind(self.interval)
        .bind(&self.cron)
        .bind(self.window)
        .bind(self.jitter)
        .bind(next)
        .bind(deadline)
        .bind(now)
        .bind(id)
        .bind(looks)
        .bind(waiting)
        .execute(conn)
        .await?;
        Ok(())
    }
}
