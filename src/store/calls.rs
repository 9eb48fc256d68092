//! The PostgreSQL store's one-round-trip writes of a rotation: the step record (one statement),
//! the new version stored as `ACSPending` — sealed here from what the rotation's load read
//! ([`Sealing`]), no row read again — and the promotion with the end of the job (the server
//! functions of migration `0015_rotation_calls`). Each does what the statement-by-statement
//! path in [`super::rotation`] does — the same rows, records and refusals, in one transaction —
//! so a crash still leaves all of it or none; a round trip to the store's server costs more
//! than the statement it carries (a rotation sent 23 statements, now 8). SQLite's
//! counterparts are in [`super::batches`].

use rotators::{SecretKind, SecretValue};

use super::batches::advance_query;
use super::jobs::Lease;
use super::leases::lease_lost;
use super::looks::Looks;
use super::rotation::{
    check_new_value, job_moved_on, not_at_step, on_behalf, promotion_records, PENDING_DETAIL,
};
use super::rows::{data_type, not_found};
use super::{Store, KEEP_UNSTAGED};
use crate::crypto;
use crate::error::{Error, Result};
use crate::model::{SecretName, VersionId};

/// What sealing a secret's next version needs from its row, as the rotation's load read it
/// ([`RotationRecord::sealing`](super::RotationRecord)): handed back to
/// [`store_pending`](Store::store_pending), which on PostgreSQL then reads no row — the server
/// function checks the counter and name it was sealed for still hold.
#[derive(Clone)]
pub struct Sealing {
    pub(super) uid: String,
    pub(super) name: SecretName,
    pub(super) kind: SecretKind,
    pub(super) version_seq: i64,
    pub(super) key_id: i64,
    pub(super) wrapped_data_key: Vec<u8>,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealing")
            .field("name", &self.name.as_str())
            .field("version_seq", &self.version_seq)
            .finish_non_exhaustive()
    }
}

impl Sealing {
    pub(super) fn of(row: &super::rows::SecretRow) -> Sealing {
        Sealing {
            uid: row.uid.clone(),
            name: row.name.clone(),
            kind: row.kind,
            version_seq: row.version_seq,
            key_id: row.key_id,
            wrapped_data_key: row.wrapped_data_key.clone(),
        }
    }
}

/// A refusal the server functions raise (SQLSTATE `RT001`): `lease` or `step`.
fn refusal(e: sqlx::Error, name: &SecretName, step: impl FnOnce() -> Error) -> Error {
    if let sqlx::Error::Database(db) = &e {
        if db.code().as_deref() == Some("RT001") {
            return match db.message() {
                "step" => step(),
                _ => lease_lost(name),
            };
        }
    }
    e.into()
}

impl Store {
    /// [`store_pending`](Store::store_pending) in one call: the value sealed here for
    /// `v<seq + 1>` (the secret's row read without a lock: only the lease holder moves its
    /// counter), the writes made by `rotor_store_pending` under the row's lock. `None` when
    /// the row changed under the seal or a user took that version id: nothing was written,
    /// and the caller takes the statement-by-statement path.
    pub(super) async fn store_pending_call(
        &self,
        claim: &Lease,
        row: &Sealing,
        value: &SecretValue,
        from: &str,
        to: &str,
    ) -> Result<Option<VersionId>> {
        check_new_value(row.kind, &row.name, value)?;
        let data_key = self
            .unwrap_data_key(row.key_id, &row.wrapped_data_key, &row.uid, &row.name)
            .await?;
        let seq = row.version_seq + 1;
        let version_id = VersionId::numbered(seq);
        let sealed = data_key.seal(
            value.expose(),
            &crypto::aad_value(&row.uid, row.name.as_str(), version_id.as_str()),
        );
        let (actor, detail) = on_behalf(claim, Some(PENDING_DETAIL));
        let answer: String = sqlx::query_scalar(
            "SELECT rotor_store_pending($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(claim.secret_id)
        .bind(&claim.token)
        .bind(row.name.as_str())
        .bind(seq)
        .bind(version_id.as_str())
        .bind(sealed)
        .bind(data_type(value))
        .bind(self.clock.now_ms())
        .bind(from)
        .bind(to)
        .bind(actor)
        .bind(detail)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| refusal(e, &row.name, || job_moved_on(&row.name)))?;
        match answer.as_str() {
            "ok" => Ok(Some(version_id)),
            "gone" => Err(not_found(&claim.name)),
            _ => Ok(None),
        }
    }

    /// [`promote_complete`](Store::promote_complete) in one call of `rotor_promote_complete`.
    pub(super) async fn promote_complete_call(
        &self,
        claim: &Lease,
        (tested, finish): (&str, &str),
        version: &VersionId,
        looks: Looks,
    ) -> Result<()> {
        let (actor, [tested_detail, promote_detail, finish_detail]) = promotion_records(claim);
        let call = sqlx::query(
            "SELECT rotor_promote_complete($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                                           $13, $14, $15, $16, $17, $18)",
        )
        .bind(claim.secret_id)
        .bind(&claim.token)
        .bind(claim.name.as_str())
        .bind(tested)
        .bind(finish)
        .bind(version.as_str())
        .bind(KEEP_UNSTAGED)
        .bind(self.clock.now_ms());
        looks
            .bind_columns(call)
            .bind(actor)
            .bind(tested_detail)
            .bind(promote_detail)
            .bind(finish_detail)
            .execute(&self.pool)
            .await
            .map_err(|e| refusal(e, &claim.name, || not_at_step(&claim.name, tested)))?;
        Ok(())
    }

    /// [`advance_job`](Store::advance_job) on PostgreSQL: the move and its record in one
    /// statement (atomic on its own: no transaction to open and commit around it).
    pub(super) async fn advance_job_statement(
        &self,
        claim: &Lease,
        from: &str,
        to: &str,
    ) -> Result<()> {
        let moved = advance_query(
            "WITH moved AS ( \
                 UPDATE rotation_jobs SET step = $1, updated_at = $2, pending_on_target = 0 \
                 WHERE secret_id = $3 AND step = $4 \
                   AND EXISTS (SELECT 1 FROM secrets WHERE id = $3 AND lease_token = $5) \
                 RETURNING version_id) \
             INSERT INTO audit_log (at, actor, action, secret, version, outcome, detail) \
             SELECT $2, $6, $7, $8, version_id, 'ok', $9 FROM moved",
            claim,
            (from, to),
            self.clock.now_ms(),
        )
        .execute(&self.pool)
        .await?;
        if moved.rows_affected() != 1 {
            return Err(not_at_step(&claim.name, from));
        }
        Ok(())
    }
}
