//! The API's shared nonce record (`api_nonces`): every server on a store inserts the nonces it
//! accepts here, so a signed request is accepted once across all of them. A nonce is recorded
//! by a committed insert before its request is answered; one that conflicts is a replay. On
//! PostgreSQL the insert does not wait for its WAL flush (see `record_nonces`).

use std::collections::HashSet;

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::Store;
use crate::error::Result;

/// A nonce as the record keeps it: the first 16 bytes of its SHA-256. Nonces are not secret;
/// hashing keeps rows small and of one size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NonceKey([u8; 16]);

impl NonceKey {
    /// The key of `nonce`: the first 16 bytes of its SHA-256.
    pub fn of(nonce: &str) -> NonceKey {
        let digest = Sha256::digest(nonce.as_bytes());
        let mut key = [0; 16];
        key.copy_from_slice(&digest[..16]);
        NonceKey(key)
    }
}

/// Statement sizes: a batch is padded (with a repeat of its last row, which the conflict clause
/// skips) to the next of these, so a connection prepares a handful of statements, not one per
/// batch length.
const SIZES: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];
/// The most nonces one statement records.
pub const MAX_NONCE_BATCH: usize = 256;

impl Store {
    /// Records `nonces` (key, signed time in ms) in one committed statement; returns, in order,
    /// whether each was new. A key given twice is new only the first time.
    pub async fn record_nonces(&self, nonces: &[(NonceKey, i64)]) -> Result<Vec<bool>> {
        let mut fresh = vec![false; nonces.len()];
        for chunk in (0..nonces.len())
            .collect::<Vec<_>>()
            .chunks(MAX_NONCE_BATCH)
        {
            let size = *SIZES
                .iter()
                .find(|s| **s >= chunk.len())
                .expect("chunks fit the largest size");
            let values = (0..size)
                .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO api_nonces (nonce, signed_at) VALUES {values} \
                 ON CONFLICT DO NOTHING RETURNING nonce"
            );
            let mut query = sqlx::query(&sql);
            for i in 0..size {
                let (key, at) = nonces[chunk[i.min(chunk.len() - 1)]];
                query = query.bind(key.0.to_vec()).bind(at);
            }
            let mut tx = self.pool.begin().await?;
            if self.backend == super::Backend::Postgres {
                // Committed without waiting for the WAL flush: other servers see the row as
                // soon as it commits, which is what replay protection across servers needs;
                // only a PostgreSQL crash (not a restart) can forget the last moment's nonces
                // (up to 3 × wal_writer_delay, 600 ms by default), and each server's own cache
                // still refuses them. Waiting for the flush would cost every request a disk
                // write.
                sqlx::query("SET LOCAL synchronous_commit = off")
                    .execute(&mut *tx)
                    .await?;
            }
            let rows = query.fetch_all(&mut *tx).await?;
            tx.commit().await?;
            let inserted: HashSet<Vec<u8>> = rows
                .iter()
                .map(|row| row.try_get::<Vec<u8>, _>("nonce"))
                .collect::<std::result::Result<_, _>>()?;
            // Inserted rows are new; within the chunk, only a key's first occurrence is.
            let mut claimed = HashSet::new();
            for &i in chunk {
                let key = nonces[i].0;
                fresh[i] = inserted.contains(key.0.as_slice()) && claimed.insert(key);
            }
        }
        Ok(fresh)
    }

    /// Deletes nonces signed before `before_ms` (requests signed then are refused by the
    /// timestamp check anyway); returns how many went.
    pub async fn prune_nonces(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM api_nonces WHERE signed_at < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
