//! Shared test helpers: a fresh store per test on either backend (a temporary data directory,
//! plus a throwaway database on the machine's PostgreSQL), the `rotor` binary wired to it, and a
//! snapshot of everything the store holds, to prove that refused commands change nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rotor::store::{OpenMode, Store, StoreConfig};
use serde_json::{json, Value};

/// The PostgreSQL the tests create their databases on.
pub fn pg_admin_url() -> String {
    std::env::var("ROTOR_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body once per backend: `both_backends!(name, |t| async move { ... });`
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let t = $crate::support::TestEnv::new($crate::support::Backend::Sqlite).await;
                ($body)(t).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let t = $crate::support::TestEnv::new($crate::support::Backend::Postgres).await;
                ($body)(t).await;
            }
        }
    };
}

/// One test's store: its data directory and, on PostgreSQL, its own database.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub pg_db: Option<String>,
}

impl TestEnv {
    pub async fn new(backend: Backend) -> TestEnv {
        let dir = tempfile::tempdir().expect("temporary directory");
        let pg_db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(create_pg_database().await),
        };
        TestEnv { dir, pg_db }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn store_url(&self) -> Option<String> {
        self.pg_db.as_ref().map(|db| db_url(db))
    }

    pub fn config(&self) -> StoreConfig {
        let mut config = StoreConfig::new(self.data_dir());
        config.url = self.store_url();
        config
    }

    /// Opens (initialising on first use) the store through the library.
    pub async fn store(&self) -> Store {
        Store::open(&self.config(), OpenMode::Init)
            .await
            .expect("store opens")
    }

    /// The `rotor` binary, pointed at this store.
    pub fn rotor(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rotor"));
        cmd.env_remove("ROTOR_MASTER_KEY")
            .env("ROTOR_DATA_DIR", self.data_dir())
            .env("ROTOR_LOG", "trace");
        match self.store_url() {
            Some(url) => cmd.env("ROTOR_STORE", url),
            None => cmd.env_remove("ROTOR_STORE"),
        };
        cmd
    }

    /// `rotor-testkit` (the rotor CLI with the file-host test rotator for `ECS`/`Password`),
    /// pointed at this store and at the host files in `hosts`.
    pub fn testkit(&self, hosts: &Path) -> Command {
        let exe = std::env::current_exe().expect("test binary path");
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .expect("target directory")
            .join("examples/rotor-testkit");
        assert!(
            bin.exists(),
            "{} is missing: cargo test builds it (example rotor-testkit)",
            bin.display()
        );
        let mut cmd = Command::new(bin);
        cmd.env_remove("ROTOR_MASTER_KEY")
            .env_remove("ROTOR_TEST_FAULT")
            .env("ROTOR_DATA_DIR", self.data_dir())
            .env("ROTOR_TEST_TARGET_DIR", hosts)
            .env("ROTOR_LOG", "info");
        match self.store_url() {
            Some(url) => cmd.env("ROTOR_STORE", url),
            None => cmd.env_remove("ROTOR_STORE"),
        };
        cmd
    }

    /// Runs `rotor ARGS...` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.rotor().args(args).output().expect("rotor runs")
    }

    /// Runs `rotor ARGS...` with `stdin` on its standard input (a secret read from stdin).
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .rotor()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("rotor runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().expect("rotor runs")
    }

    /// Runs `rotor ARGS...`, which must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rotor {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs `rotor --json ARGS...`, which must succeed; returns the parsed JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("JSON output")
    }

    /// Everything the store holds that a command could change: keys, secrets with their
    /// metadata (including update times), tags, versions with stages, and every current value.
    pub async fn snapshot(&self) -> Value {
        let store = Store::open(&self.config(), OpenMode::Existing)
            .await
            .expect("store opens");
        let secrets = store.list(&[], true).await.expect("list");
        let mut versions = Vec::new();
        for s in &secrets {
            let current = match store.get_value(&s.name, &Default::default()).await {
                Ok(v) => format!(
                    "{} {}",
                    v.version_id,
                    String::from_utf8_lossy(v.value.expose())
                ),
                Err(e) => e.to_string(),
            };
            versions.push(json!({
                "name": s.name,
                "versions": store.versions(&s.name).await.expect("versions"),
                "current": current,
            }));
        }
        let snapshot = json!({
            "keys": store.list_keys().await.expect("keys"),
            "secrets": secrets,
            "versions": versions,
        });
        store.close().await;
        snapshot
    }

    /// The files and dumps where a plaintext could leak: the SQLite database with its WAL, or a
    /// `pg_dump` of the test database.
    pub fn raw_store_bytes(&self) -> Vec<u8> {
        match &self.pg_db {
            None => {
                let mut bytes = Vec::new();
                for entry in std::fs::read_dir(self.data_dir()).expect("data dir") {
                    let path = entry.expect("entry").path();
                    if path
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("rotor.db"))
                    {
                        bytes.extend(std::fs::read(&path).expect("store file"));
                    }
                }
                bytes
            }
            Some(db) => {
                // ROTOR_TEST_PG_DUMP: another pg_dump command, e.g. one inside a container.
                let dump = std::env::var("ROTOR_TEST_PG_DUMP").unwrap_or_else(|_| "pg_dump".into());
                let mut words = dump.split_whitespace();
                let out = Command::new(words.next().expect("a pg_dump command"))
                    .args(words)
                    .arg("--dbname")
                    .arg(db_url(db))
                    .output()
                    .expect("pg_dump runs (install the PostgreSQL client tools)");
                assert!(
                    out.status.success(),
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out.stdout
            }
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(db) = self.pg_db.take() {
            // Drop runs inside the test's runtime: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) = pg_admin().await {
                        let _ = sqlx::Executor::execute(
                            &mut conn,
                            format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str(),
                        )
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

fn db_url(db: &str) -> String {
    let admin = pg_admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{db}")
}

async fn pg_admin() -> Result<sqlx::PgConnection, sqlx::Error> {
    use sqlx::Connection;
    sqlx::PgConnection::connect(&pg_admin_url()).await
}

async fn create_pg_database() -> String {
    let mut conn = pg_admin().await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {} ({e}); start it (see .ci/run) or set ROTOR_TEST_PG",
            pg_admin_url()
        )
    });
    let db = format!("rotor_it_{}", rotor::crypto::random_id());
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {db}").as_str())
        .await
        .expect("test database is created");
    db
}

/// Asserts a failed command: non-zero exit `code`, a one-line message on stderr that contains
/// `expect`, and no trace of `secret` anywhere in its output.
pub fn assert_refused(out: &Output, code: i32, expect: &str, secret: Option<&str>) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("rotor: "))
        .collect();
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {stderr}");
    assert_eq!(error_lines.len(), 1, "one error line; stderr: {stderr}");
    assert!(
        error_lines[0]
            .to_lowercase()
            .contains(&expect.to_lowercase()),
        "error {:?} should mention {expect:?}",
        error_lines[0]
    );
    if let Some(secret) = secret {
        assert!(!stderr.contains(secret), "stderr leaks the value: {stderr}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(secret),
            "stdout leaks the value"
        );
    }
}

/// A file path inside `dir` holding `bytes`.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write file");
    path
}
