//! The secret store: one abstraction over two sqlx backends, the embedded SQLite default and a
//! shared PostgreSQL.
//!
//! Both backends run the same SQL through sqlx's `Any` driver (`$N` placeholders work on both);
//! where they differ — write transactions and row locks — [`Backend`] says how (one statement is
//! PostgreSQL's own: a passed step and its record in one `WITH`, see `advance_job`). Every value is
//! sealed by [`crate::crypto`] before it reaches SQL, and writes that belong together (a new
//! version and its stage moves) commit in one transaction: on SQLite `BEGIN IMMEDIATE` takes the
//! write lock up front, on PostgreSQL the secret's row is locked `FOR UPDATE`.

mod access_keys;
mod audit;
mod batches;
mod calls;
mod console_users;
mod deletion;
mod drift;
mod jobs;
mod keys;
mod leases;
mod looks;
mod migrate;
mod nonces;
mod open;
mod paging;
mod rotation;
mod rows;
mod schedule;
mod secrets;
mod targets;
mod types;
mod versions;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::clock::Clock;
use crate::crypto::{self, KeyMaterial};
use crate::error::{Error, Result};
use crate::files;

pub use access_keys::{AccessKeyAuth, AccessKeyInfo};
pub use audit::{AuditQuery, AuditRecord, MAX_RECORDS as MAX_AUDIT_RECORDS};
pub use calls::Sealing;
pub use console_users::{ConsoleLogin, ConsoleUserInfo};
pub use drift::{Drift, DriftChange, Refusal};
pub use jobs::{owner_is_dead_here, owner_name, JobRecord, Lease};
pub use looks::{FailedAttempt, Looks};
pub use nonces::{NonceKey, MAX_NONCE_BATCH};
pub(crate) use open::create_data_dir;
use open::{connect, describe_location, initialise, load_master_key, resolve_url};
pub use paging::PageQuery;
pub use rotation::{CreateMark, RotationRecord};
pub use secrets::{
    rotation_in_flight, NewSecret, PutValue, Selector, DEFAULT_RECOVERY_DAYS, KEEP_UNSTAGED,
    RECOVERY_DAYS,
};
pub use targets::{admin_secret_name, TargetInfo};
pub use types::{
    DeleteMode, KeyInfo, PutOutcome, RotationFailure, RotationStatus, SecretInfo, SecretVersion,
    VersionInfo,
};
pub use versions::SealedVersion;

/// The name of the master key `rotor init` creates and secrets use unless told otherwise.
pub const DEFAULT_KEY: &str = "default";
/// File names inside the data directory.
pub const DB_FILE: &str = "rotor.db";
/// The master key file's name, unless the configuration names another file.
pub const KEY_FILE: &str = "master.key";

/// Where the store lives and where its master key comes from.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Holds the SQLite database and the master key file.
    pub data_dir: PathBuf,
    /// `postgres://…` for a shared PostgreSQL store; `None` for SQLite in `data_dir`.
    pub url: Option<String>,
    /// Master key given directly (from `ROTOR_MASTER_KEY`) instead of the key file.
    pub master_key: Option<KeyMaterial>,
    /// The master key file, when not `DATA_DIR/master.key`.
    pub key_file: Option<PathBuf>,
    /// The clock the store stamps times with.
    pub clock: Clock,
    /// How long opening the store may wait for a connection.
    pub connect_timeout: Duration,
    /// Record reads of secret values in the audit log too.
    pub audit_reads: bool,
    /// Who changes the store through it, for the audit log (`cli:USER`; rotations record their
    /// worker).
    pub actor: String,
}

/// The default for [`StoreConfig::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl StoreConfig {
    /// The configuration of a store in `data_dir`, with every other setting at its default.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            url: None,
            master_key: None,
            key_file: None,
            clock: Clock::system(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            audit_reads: false,
            actor: "library".into(),
        }
    }

    /// The master key file: the one configured, else `master.key` in the data directory.
    pub fn key_file(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join(KEY_FILE))
    }
}

/// Whether opening may create what is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the data directory, store, key file and default key if they do not exist.
    Init,
    /// Refuse a store that `rotor init` has not prepared.
    Existing,
}

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite database in the data directory.
    Sqlite,
    /// A shared PostgreSQL database.
    Postgres,
}

impl Backend {
    /// The statement that opens a write transaction.
    fn begin_write(self) -> &'static str {
        match self {
            // Take the write lock at once: a deferred transaction that reads first and writes
            // later fails with SQLITE_BUSY instead of waiting when another process writes.
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }

    /// The suffix that locks the selected secret row (table alias `s`, not the joined key row)
    /// for the rest of a write transaction.
    fn for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE OF s",
        }
    }

    /// The suffix that makes a due query pass over rows another worker has locked.
    fn skip_locked(self) -> &'static str {
        match self {
            // One writer at a time: nothing to skip.
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// The suffix that locks a single-table row for the rest of a write transaction.
    fn lock_row(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// The suffix that keeps a single-table row from changing until the transaction ends.
    fn share_row(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR SHARE",
        }
    }

    /// The backend's name (`sqlite` or `postgres`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A named master key (CMK) unwrapped in memory.
#[derive(Clone, Debug)]
struct Cmk {
    name: String,
    material: KeyMaterial,
}

/// An open store. Cheap to clone; clones share the pool and key cache.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    master: KeyMaterial,
    /// CMKs by id, unwrapped at open and on creation.
    cmks: Arc<RwLock<HashMap<i64, Cmk>>>,
    clock: Clock,
    /// The data directory of an embedded (SQLite) store.
    data_dir: Option<PathBuf>,
    /// Who acts through this handle, for the audit log.
    actor: Arc<str>,
    audit_reads: bool,
    /// SQLite: this process's writers take turns here (see [`WriteTx`]); `None` on PostgreSQL.
    writers: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store, running migrations; with [`OpenMode::Init`] creates what is missing.
    pub async fn open(config: &StoreConfig, mode: OpenMode) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = resolve_url(config, mode)?;
        let pool = connect(backend, &url, config.connect_timeout).await?;
        migrate::migrator(backend).await?.run(&pool).await?;

        let check: Option<Vec<u8>> =
            sqlx::query("SELECT value FROM meta WHERE key = 'master_key_check'")
                .fetch_optional(&pool)
                .await?
                .map(|row| row.try_get("value"))
                .transpose()?;
        let master = match (check, mode) {
            (Some(check), _) => {
                let master = load_master_key(config)?;
                if master.open(&check, &crypto::aad_key_check()).is_none() {
                    return Err(Error::Crypto(format!(
                        "the master key does not fit this store ({}): it was initialised with another key",
                        describe_location(config)
                    )));
                }
                master
            }
            (None, OpenMode::Existing) => {
                return Err(Error::config(format!(
                    "the store ({}) is not initialised; run: rotor init",
                    describe_location(config)
                )))
            }
            (None, OpenMode::Init) => initialise(&pool, config).await?,
        };

        let store = Store {
            pool,
            backend,
            master,
            cmks: Arc::default(),
            clock: config.clock.clone(),
            data_dir: (backend == Backend::Sqlite).then(|| config.data_dir.clone()),
            actor: config.actor.as_str().into(),
            audit_reads: config.audit_reads,
            writers: (backend == Backend::Sqlite).then(Arc::default),
        };
        store.load_cmks().await?;
        if mode == OpenMode::Init && store.cmk_id(DEFAULT_KEY).is_none() {
            store.create_key_if_missing(DEFAULT_KEY).await?;
        }
        Ok(store)
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The clock the store stamps times with.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The embedded store serves one worker: on SQLite this takes the data directory's worker
    /// lock (held while the file lives) or refuses; a PostgreSQL store takes several workers.
    pub fn lock_single_worker(&self) -> Result<Option<std::fs::File>> {
        let Some(dir) = &self.data_dir else {
            return Ok(None);
        };
        let path = dir.join("worker.lock");
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options
            .open(&path)
            .map_err(|e| Error::config(format!("cannot open {}: {e}", path.display())))?;
        files::check(&path, "worker lock file", files::Kind::Lock)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::conflict(format!(
                "another rotor worker is already running on the SQLite store in {}; the embedded store serves one worker (use --store postgres://… for several)",
                dir.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::config(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin_write(&self) -> Result<WriteTx> {
        let turn = match &self.writers {
            Some(writers) => Some(writers.clone().lock_owned().await),
            None => None,
        };
        let tx = self.pool.begin_with(self.backend.begin_write()).await?;
        Ok(WriteTx { tx, _turn: turn })
    }
}

/// A write transaction. On SQLite, one database write lock serves every writer: this
/// process's writers queue for it in order here rather than each retrying the lock in SQLite's
/// busy handler, which sleeps up to 100 ms between tries (other processes still meet the lock
/// and wait in the busy handler). Dereferences to the connection, like sqlx's `Transaction`;
/// dropped without [`commit`](Self::commit), it rolls back.
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    /// Commits the transaction.
    pub(crate) async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }
}

impl Store {
    /// Checks the store answers (`/readyz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Secrets due for rotation now, and secrets whose last cycle failed (the metrics gauges).
    pub async fn count_due_and_failed(&self) -> Result<(i64, i64)> {
        let now = self.clock.now_ms();
        let due: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM secrets WHERE next_rotation_at <= $1")
                .bind(now)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
        let failed: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM secrets WHERE failure_reason IS NOT NULL")
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
        Ok((due, failed))
    }

    /// Secrets (name, type, time) whose next rotation comes within `window` from now, for
    /// `secret_due_soon` notices; a failed secret is left out (its failure was announced).
    pub async fn rotating_within(&self, window: Duration) -> Result<Vec<(String, String, i64)>> {
        let now = self.clock.now_ms();
        let rows = sqlx::query(
            "SELECT name, secret_type, next_rotation_at FROM secrets \
             WHERE next_rotation_at > $1 AND next_rotation_at <= $2 AND planned_delete_at IS NULL \
               AND failure_reason IS NULL \
             ORDER BY next_rotation_at LIMIT 10000",
        )
        .bind(now)
        .bind(now.saturating_add(window.as_millis().min(i64::MAX as u128) as i64))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("name")?,
                    r.try_get("secret_type")?,
                    r.try_get("next_rotation_at")?,
                ))
            })
            .collect()
    }
}

/// True when a database error is a unique-constraint violation.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Reads an optional text column.
fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(col)?)
}
