//! The audit log: one append-only record per change, written inside the change's own
//! transaction (so a rolled-back write leaves none), and — when configured — per value read.
//! Records hold who, what, which secret and version, and how it ended; never a value.

use std::time::Duration;

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::Store;
use crate::clock::format_ms;
use crate::error::Result;

/// The most records one query returns.
pub const MAX_RECORDS: i64 = 10_000;

/// One audit record.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuditRecord {
    /// The record's id, in the order records were written.
    pub id: i64,
    /// ms since the epoch.
    #[serde(skip)]
    pub at_ms: i64,
    /// `2026-11-28T10:00:00.123Z`.
    pub time: String,
    /// Who acted (a CLI user, a worker, an API key, …).
    pub actor: String,
    /// What was done (`rotation.set`, …).
    pub action: String,
    /// The secret it was about, if any.
    #[serde(rename = "SecretName")]
    pub secret: Option<String>,
    /// The version it was about, if any.
    #[serde(rename = "VersionId")]
    pub version: Option<String>,
    /// How it ended (`ok`, `failed`, …).
    pub outcome: String,
    /// More about it, if anything (never a secret value).
    pub detail: Option<String>,
}

/// Which records `rotor audit` shows, oldest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only records about this secret.
    pub secret: Option<String>,
    /// Only records at or after this time (ms since the epoch).
    pub since: Option<i64>,
    /// An action (`rotation.set`), or a group of them (`rotation`).
    pub action: Option<String>,
    /// At most this many, the newest (capped at [`MAX_RECORDS`]).
    pub limit: Option<i64>,
    /// Only records older than this record id: the next page back (the newest `limit` of them).
    pub before: Option<i64>,
    /// Only records newer than this record id: the page before, towards the present (the
    /// oldest `limit` of them).
    pub after: Option<i64>,
}

/// What one record says; the store adds the time and the actor.
pub(super) struct Entry<'a> {
    pub action: &'a str,
    pub secret: Option<&'a str>,
    pub version: Option<&'a str>,
    pub outcome: &'a str,
    pub detail: Option<&'a str>,
}

impl<'a> Entry<'a> {
    pub fn new(action: &'a str, secret: Option<&'a str>) -> Self {
        Entry {
            action,
            secret,
            version: None,
            outcome: "ok",
            detail: None,
        }
    }

    pub fn version(mut self, version: &'a str) -> Self {
        self.version = Some(version);
        self
    }

    pub fn outcome(mut self, outcome: &'a str) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn detail(mut self, detail: &'a str) -> Self {
        self.detail = Some(detail);
        self
    }
}

impl Store {
    /// This handle acting for `actor` in the audit log (a worker, an API key).
    pub fn with_actor(&self, actor: &str) -> Store {
        let mut store = self.clone();
        store.actor = actor.into();
        store
    }

    /// Who this handle acts for in the audit log (`cli:USER`, `api:KEY`, …).
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Writes `entry` inside the caller's transaction, as this handle's actor.
    pub(super) async fn audit(&self, conn: &mut AnyConnection, entry: Entry<'_>) -> Result<()> {
        let actor = self.actor.clone();
        self.audit_as(conn, &actor, entry).await
    }

    /// Writes `entry` inside the caller's transaction for a rotation run by `owner`.
    pub(super) async fn audit_as(
        &self,
        conn: &mut AnyConnection,
        actor: &str,
        entry: Entry<'_>,
    ) -> Result<()> {
        self.audit_many(conn, &[(actor, entry)]).await
    }

    /// Writes several records inside the caller's transaction in one statement, in order
    /// (their ids follow the order given), each with its actor.
    pub(super) async fn audit_many(
        &self,
        conn: &mut AnyConnection,
        records: &[(&str, Entry<'_>)],
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut sql = String::from(
            "INSERT INTO audit_log (at, actor, action, secret, version, outcome, detail) VALUES ",
        );
        for i in 0..records.len() {
            let b = i * 7;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7
            ));
        }
        let now = self.clock.now_ms();
        let mut query = sqlx::query(&sql);
        for (actor, entry) in records {
            query = query
                .bind(now)
                .bind(*actor)
                .bind(entry.action)
                .bind(entry.secret)
                .bind(entry.version)
                .bind(entry.outcome)
                .bind(entry.detail);
        }
        query.execute(&mut *conn).await?;
        Ok(())
    }

    /// Records a read of a secret's value, when reads are audited.
    pub(super) async fn audit_read(&self, secret: &str, version: &str) -> Result<()> {
        if !self.audit_reads {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await?;
        self.audit(
            &mut conn,
            Entry::new("secret.read", Some(secret)).version(version),
        )
        .await
    }

    /// The records `query` selects, oldest first.
    pub async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let limit = query.limit.unwrap_or(MAX_RECORDS).clamp(1, MAX_RECORDS);
        let (exact, group) = match &query.action {
            Some(a) if a.contains('.') => (Some(a.clone()), None),
            Some(a) => (None, Some(format!("{a}."))),
            None => (None, None),
        };
        // Newest first, unless paging towards the present from `after`.
        let order = if query.after.is_some() { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT id, at, actor, action, secret, version, outcome, detail FROM audit_log \
             WHERE ($1 IS NULL OR secret = $1) AND ($2 IS NULL OR at >= $2) \
               AND ($3 IS NULL OR action = $3) \
               AND ($4 IS NULL OR substr(action, 1, length($4)) = $4) \
               AND ($6 IS NULL OR id < $6) AND ($7 IS NULL OR id > $7) \
             ORDER BY id {order} LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(query.secret.as_deref())
            .bind(query.since)
            .bind(exact.as_deref())
            .bind(group.as_deref())
            .bind(limit)
            .bind(query.before)
            .bind(query.after)
            .fetch_all(&self.pool)
            .await?;
        let mut records = rows
            .iter()
            .map(|row| {
                let at: i64 = row.try_get("at")?;
                Ok(AuditRecord {
                    id: row.try_get("id")?,
                    at_ms: at,
                    time: format_ms(at),
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    secret: row.try_get("secret")?,
                    version: row.try_get("version")?,
                    outcome: row.try_get("outcome")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if query.after.is_none() {
            records.reverse();
        }
        Ok(records)
    }

    /// Deletes records older than `retention` (the worker's pruning); returns how many.
    pub async fn prune_audit(&self, retention: Duration) -> Result<u64> {
        let cutoff = self.clock.now_ms() - retention.as_millis() as i64;
        let done = sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
