//! Opening a store: where it lives (a PostgreSQL URL, or the SQLite file in the data
//! directory, created with private permissions), the connection pool and its first probe, and
//! the master key (from `ROTOR_MASTER_KEY` or the key file, checked against the store).

use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Connection, Executor, Row};

use super::{Backend, OpenMode, StoreConfig, DB_FILE};
use crate::crypto::{self, KeyMaterial};
use crate::error::{Error, Result};
use crate::files;

/// Picks the backend and URL from the configuration, creating the data directory if allowed.
pub(super) fn resolve_url(config: &StoreConfig, mode: OpenMode) -> Result<(Backend, String)> {
    if let Some(url) = &config.url {
        return if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok((Backend::Postgres, sqlx_url(url)?))
        } else {
            Err(Error::config(
                "unsupported store URL: expected postgres://… (or no --store for SQLite in the data directory)",
            ))
        };
    }
    let dir = &config.data_dir;
    let db = dir.join(DB_FILE);
    match mode {
        OpenMode::Init => {
            create_data_dir(dir)?;
            create_private_file(&db)?;
        }
        OpenMode::Existing if !db.exists() => {
            return Err(Error::config(format!(
                "no rotor store at {}; run: rotor init (or pass --data-dir / ROTOR_DATA_DIR)",
                dir.display()
            )))
        }
        OpenMode::Existing => {}
    }
    // Whatever was found (or just made) must be trustworthy, SQLite's side files included.
    check_data_dir(dir)?;
    files::check(&db, "store file", files::Kind::Private)?;
    for side in ["-wal", "-shm"] {
        let file = dir.join(format!("{DB_FILE}{side}"));
        files::check_if_present(&file, "store file", files::Kind::Private)?;
    }
    let abs = std::path::absolute(&db)
        .map_err(|e| Error::config(format!("cannot resolve {}: {e}", db.display())))?;
    let path = abs.to_str().ok_or_else(|| {
        Error::config(format!(
            "data directory {} is not valid UTF-8",
            dir.display()
        ))
    })?;
    // sqlx percent-decodes the path, so `%`, `?` and `#` in directory names must be encoded.
    const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b'%')
        .add(b'?')
        .add(b'#')
        .add(b' ');
    let encoded = percent_encoding::utf8_percent_encode(path, SET);
    Ok((Backend::Sqlite, format!("sqlite://{encoded}?mode=rwc")))
}

/// The connect parameters sqlx-postgres 0.8 reads from a URL's query (and `options[…]`).
const SQLX_PG_PARAMS: &str = "sslmode ssl-mode sslrootcert ssl-root-cert ssl-ca sslcert ssl-cert \
    sslkey ssl-key statement-cache-capacity host hostaddr port dbname user password \
    application_name options";

/// `url` without the query parameters sqlx does not read: sqlx would ignore them anyway, but
/// it logs each one with its value at WARN — `sslpassword=…` included. They are dropped here
/// and named without their values.
fn sqlx_url(url: &str) -> Result<String> {
    let mut parsed = url::Url::parse(url)
        .map_err(|e| Error::config(format!("the store URL does not parse: {e}")))?;
    let Some(query) = parsed.query() else {
        return Ok(url.to_owned());
    };
    let name = |pair: &str| {
        let raw = pair.split('=').next().unwrap_or_default();
        url::form_urlencoded::parse(raw.as_bytes())
            .next()
            .map(|(n, _)| n.into_owned())
            .unwrap_or_default()
    };
    let known = |name: &str| {
        SQLX_PG_PARAMS.split_whitespace().any(|k| k == name) || name.starts_with("options[")
    };
    let (kept, dropped): (Vec<&str>, Vec<&str>) = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .partition(|pair| known(&name(pair)));
    if dropped.is_empty() {
        return Ok(url.to_owned());
    }
    for pair in &dropped {
        tracing::warn!(
            parameter = %crate::model::printable(&name(pair)),
            "ignoring a store URL parameter that sqlx does not read"
        );
    }
    let kept = kept.join("&");
    parsed.set_query((!kept.is_empty()).then_some(kept.as_str()));
    Ok(parsed.into())
}

fn check_data_dir(dir: &Path) -> Result<()> {
    files::check(dir, "data directory", files::Kind::DataDir)
}

/// Creates the data directory (0700) unless it exists; an existing one is checked, never
/// repaired.
pub(crate) fn create_data_dir(dir: &Path) -> Result<()> {
    if std::fs::symlink_metadata(dir).is_ok() {
        return check_data_dir(dir);
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| {
        Error::config(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })
}

/// Creates an empty file readable only by its owner, unless it exists. SQLite gives its WAL and
/// shared-memory files the database file's mode, so the whole store stays private.
fn create_private_file(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::config(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// The pragmas every SQLite connection runs first.
const SQLITE_PRAGMAS: [&str; 4] = [
    // WAL lets readers run beside the one writer; FULL makes every commit durable; a writer
    // waits up to 30 s for another process's lock.
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA busy_timeout = 30000",
    "PRAGMA foreign_keys = ON",
];

/// Opens the pool. One connection is made first, within `timeout`, so that a store that cannot
/// be opened (unreachable, refused, a file that is not a database) fails at once with its own
/// reason instead of a pool timing out.
pub(super) async fn connect(backend: Backend, url: &str, timeout: Duration) -> Result<AnyPool> {
    let what = || match backend {
        Backend::Sqlite => "the SQLite store".to_string(),
        Backend::Postgres => format!("the PostgreSQL store at {}", crate::redact::store_host(url)),
    };
    let probe = async {
        let mut conn = sqlx::AnyConnection::connect(url).await?;
        if backend == Backend::Sqlite {
            for pragma in SQLITE_PRAGMAS {
                conn.execute(pragma).await?;
            }
        }
        conn.execute("SELECT 1").await?;
        conn.close().await
    };
    match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let cause = match &e {
                sqlx::Error::Database(db) => db.message().to_owned(),
                other => other.to_string(),
            };
            return Err(Error::config(format!("cannot open {}: {cause}", what())));
        }
        Err(_) => {
            return Err(Error::config(format!(
                "cannot open {}: no answer within {} (--store-connect-timeout)",
                what(),
                crate::model::fmt_duration(timeout)
            )))
        }
    }
    let options = AnyPoolOptions::new().acquire_timeout(timeout);
    let pool = match backend {
        Backend::Sqlite => {
            // A local file: no connection to lose between uses, so no ping before each one
            // (PostgreSQL keeps it: a restarted server leaves dead connections in the pool).
            options
                .max_connections(4)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        for pragma in SQLITE_PRAGMAS {
                            conn.execute(pragma).await?;
                        }
                        Ok(())
                    })
                })
                .connect(url)
                .await
        }
        Backend::Postgres => options.max_connections(8).connect(url).await,
    };
    pool.map_err(|e| Error::config(format!("cannot open {}: {e}", what())))
}

pub(super) fn describe_location(config: &StoreConfig) -> String {
    match &config.url {
        Some(url) => crate::redact::store_url(url),
        None => config.data_dir.join(DB_FILE).display().to_string(),
    }
}

/// The master key from `ROTOR_MASTER_KEY` or the key file.
pub(super) fn load_master_key(config: &StoreConfig) -> Result<KeyMaterial> {
    if let Some(key) = &config.master_key {
        return Ok(key.clone());
    }
    let path = config.key_file();
    if !path.exists() {
        return Err(Error::config(format!(
            "the store is initialised but its master key file {} is missing; restore it or set ROTOR_MASTER_KEY",
            path.display()
        )));
    }
    check_key_dir(config)?;
    crypto::read_key_file(&path)
}

/// The directory holding the master key file must be as trustworthy as the data directory.
fn check_key_dir(config: &StoreConfig) -> Result<()> {
    let path = config.key_file();
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => files::check(dir, "master key directory", files::Kind::DataDir),
        None => check_data_dir(&config.data_dir),
    }
}

/// First open of a fresh store: find or create the master key and record its check value.
pub(super) async fn initialise(pool: &AnyPool, config: &StoreConfig) -> Result<KeyMaterial> {
    let path = config.key_file();
    let master = match &config.master_key {
        Some(key) => key.clone(),
        None if path.exists() => {
            check_key_dir(config)?;
            crypto::read_key_file(&path)?
        }
        None => {
            create_data_dir(&config.data_dir)?;
            crypto::create_key_file(&path)?
        }
    };
    let check = master.seal(b"rotor", &crypto::aad_key_check());
    sqlx::query("INSERT INTO meta (key, value) VALUES ('master_key_check', $1) ON CONFLICT (key) DO NOTHING")
        .bind(check)
        .execute(pool)
        .await?;
    // Another process may have initialised the store at the same moment: the stored check wins.
    let stored: Vec<u8> = sqlx::query("SELECT value FROM meta WHERE key = 'master_key_check'")
        .fetch_one(pool)
        .await?
        .try_get("value")?;
    if master.open(&stored, &crypto::aad_key_check()).is_none() {
        return Err(Error::Crypto(
            "the store was initialised with another master key at the same time".into(),
        ));
    }
    Ok(master)
}
