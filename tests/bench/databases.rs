//! Database rotation benchmark on loopback, store on SQLite: median and p95 of one full
//! dual-account rotation on PostgreSQL (password-checking cluster), MariaDB/MySQL and Redis; the
//! single-account gap on PostgreSQL (from the password change to the promotion of the new
//! version); where one rotation's time goes (each rotator call, then the engine and the
//! store); PostgreSQL's floor, measured on the target alone (verifier, `ALTER ROLE`, login);
//! the store's floor on SQLite (a statement, a durable commit) and its statements a rotation;
//! and the time for a worker to rotate 1,000 due PostgreSQL dual-account secrets with its
//! store on SQLite, then on PostgreSQL (with the store's transactions per rotation, read from
//! `pg_stat_database`, and the CPU a rotation cost each process: the target server, this one,
//! the store server). Not a test: it asserts nothing about speed.
//!
//! ```text
//! tests/run -- --skip .       # starts the services (ROTOR_TEST_PG_SCRAM, ROTOR_TEST_MYSQL, ROTOR_TEST_REDIS)
//! cargo bench --bench databases                    # 50 rotations each, 1,000 in the batch
//! cargo bench --bench databases -- --rotations 100 --batch 2000 --batch-store postgres --tls
//!                                                  # --batch-store: only that store's batch
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use rotators::family::OptionValue;
use rotators::{Options, Source};
use rotators::{Registry, SecretKind, SecretType, SecretValue, SubType};
use rotor::engine::{Engine, EngineConfig};
use rotor::model::{RotationPolicy, RotationSchedule, SecretName};
use rotor::store::{NewSecret, OpenMode, Store, StoreConfig};
use rotor::worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

#[path = "common.rs"]
mod common;
use common::{breakdown, percentiles, rotate_once, GapProbe, StepTimer};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

/// (target URL without account, admin user, admin password) from a service URL.
fn split(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, host) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    (
        format!("{scheme}://{host}"),
        user.to_owned(),
        password.to_owned(),
    )
}

async fn new_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::new(dir.path().join("data")), OpenMode::Init)
        .await
        .unwrap();
    (store, dir)
}

fn new_engine(store: &Store, registry: Registry) -> Engine {
    Engine::new(
        store.clone(),
        registry,
        EngineConfig {
            owner: "bench".into(),
            ..EngineConfig::default()
        },
    )
}

async fn add_target(store: &Store, name: &str, kind: &str, url: &str) {
    let (url, user, password) = split(url);
    let user = if user.is_empty() {
        "default".to_owned()
    } else {
        user
    };
    let mut options = Options::new();
    options
        .insert("admin-user", OptionValue::Text(user))
        .insert("admin-password", OptionValue::Secret(password.into()));
    rotor::targets::add_target(
        store,
        &rotor::builtin_rotators(),
        name,
        kind,
        Some(&url),
        &options,
        true,
    )
    .await
    .unwrap();
}

/// A database secret in create mode (`secret create --target T --account A [--database D]`).
async fn account_secret(
    store: &Store,
    name: &str,
    kind: SecretKind,
    target: &str,
    account: &str,
    database: Option<&str>,
) {
    let mut options = Options::new();
    options.insert("account", OptionValue::Text(account.into()));
    if let Some(database) = database {
        options.insert("database", OptionValue::Text(database.into()));
    }
    let new = NewSecret::new(
        SecretName::parse(name).unwrap(),
        kind,
        SecretValue::new(vec![]),
    );
    rotor::targets::create_secret(
        store,
        &rotor::builtin_rotators(),
        new,
        target,
        Source::Create,
        &options,
    )
    .await
    .unwrap();
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let arg = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().unwrap())
    };
    tracing::subscriber::set_global_default(StatementCounter).unwrap();
    let rotations = arg("--rotations", 50);
    let batch = arg("--batch", 1000);
    let suffix = rotor::crypto::random_id()[..6].to_owned();
    // Loopback: TLS off unless --tls (the test cluster offers it; sqlx would negotiate it).
    let tls = args.iter().any(|a| a == "--tls");
    let pg_url = env(
        "ROTOR_TEST_PG_SCRAM",
        "postgres://postgres:rotor-scram-admin@127.0.0.1:55432/postgres",
    ) + if tls {
        "?sslmode=require"
    } else {
        "?sslmode=disable"
    };
    let my_url = env("ROTOR_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test");
    let redis_url = env("ROTOR_TEST_REDIS", "redis://127.0.0.1:6379");
    let dual = |ty| SecretKind::new(ty, Some(SubType::DoubleUsers)).unwrap();
    println!(
        "database rotation benchmark (release build, loopback, store on SQLite, PostgreSQL TLS {})",
        if tls { "on" } else { "off" }
    );

    // One full dual-account rotation, per database.
    let (store, _dir) = new_store().await;
    add_target(&store, "pg", "postgres", &pg_url).await;
    add_target(&store, "my", "mysql", &my_url).await;
    add_target(&store, "red", "redis", &redis_url).await;
    account_secret(
        &store,
        "pg/app",
        dual(SecretType::Rds),
        "pg",
        &format!("bp_{suffix}"),
        Some("postgres"),
    )
    .await;
    account_secret(
        &store,
        "my/app",
        dual(SecretType::Rds),
        "my",
        &format!("bm_{suffix}"),
        Some("test"),
    )
    .await;
    account_secret(
        &store,
        "red/app",
        dual(SecretType::Redis),
        "red",
        &format!("br_{suffix}"),
        None,
    )
    .await;
    // The rotators wrapped in a timer: where each rotation's time goes.
    let builtin = rotor::builtin_rotators();
    let mut timed = Registry::new();
    let mut timers = vec![];
    for ty in [SecretType::Rds, SecretType::Redis] {
        let timer = StepTimer::new(builtin.get(dual(ty)).unwrap());
        timed.register(dual(ty), timer.clone());
        timers.push(timer);
    }
    let engine = new_engine(&store, timed);
    let mut breakdowns = vec![];
    let mut statements = None;
    for (label, secret, timer) in [
        ("PostgreSQL", "pg/app", &timers[0]),
        ("MariaDB", "my/app", &timers[0]),
        ("Redis", "red/app", &timers[1]),
    ] {
        rotate_once(&engine, secret).await; // warm-up: admin pools, caches
        timer.take();
        let mut samples = vec![];
        for _ in 0..rotations {
            samples.push(rotate_once(&engine, secret).await);
        }
        breakdowns.push(breakdown(label, timer.take(), &samples));
        if label == "Redis" {
            // One more, its statements counted (apart: counting costs a little). Redis is
            // not reached through sqlx, so every statement counted is the store's.
            statements = Some(counted_statements(rotate_once(&engine, secret)).await);
        }
        let (median, p95) = percentiles(samples);
        println!("{label:<11} dual-account rotation: median {median:6.1} ms  p95 {p95:6.1} ms  ({rotations} rotations)");
    }
    for line in breakdowns {
        println!("{line}");
    }
    println!("{}", pg_floor(&pg_url, &suffix, rotations).await);
    println!(
        "{}; the store's statements in one Redis rotation (sqlx's statement log, BEGIN and COMMIT not in it): {}",
        sqlite_floor(rotations * 10).await,
        statements.unwrap_or_default()
    );

    // The single-account gap on PostgreSQL.
    let solo = format!("bs_{suffix}");
    account_secret(
        &store,
        "pg/solo",
        SecretKind::new(SecretType::Rds, Some(SubType::SingleUser)).unwrap(),
        "pg",
        &solo,
        Some("postgres"),
    )
    .await;
    let inner = rotor::builtin_rotators()
        .get(SecretKind::new(SecretType::Rds, Some(SubType::SingleUser)).unwrap())
        .unwrap();
    let probe = GapProbe::new(inner);
    let mut registry = Registry::new();
    registry.register(
        SecretKind::new(SecretType::Rds, Some(SubType::SingleUser)).unwrap(),
        probe.clone(),
    );
    let gap_engine = new_engine(&store, registry);
    let mut samples = vec![];
    for _ in 0..rotations {
        samples.push(rotate_once(&gap_engine, "pg/solo").await);
        probe.rotated();
    }
    let (median, p95) = percentiles(probe.take());
    let (whole, _) = percentiles(samples);
    println!("PostgreSQL  single-account gap (password changed -> new version promoted): median {median:5.1} ms  p95 {p95:5.1} ms  (whole rotation median {whole:.1} ms)");

    // 1,000 due PostgreSQL dual-account secrets, rotated by a worker: with the store on SQLite,
    // then on PostgreSQL (as several workers would share it); `--batch-store sqlite|postgres`
    // runs one of them.
    let only = args
        .windows(2)
        .find(|w| w[0] == "--batch-store")
        .map(|w| w[1].clone());
    for backend in ["sqlite", "postgres"] {
        if only.as_deref().is_none_or(|o| o == backend) {
            let prefix = format!("{suffix}{}", &backend[..1]);
            println!("{}", batch_run(backend, batch, &pg_url, &prefix).await);
        }
    }

    let mut pg = <sqlx::PgConnection as sqlx::Connection>::connect(&pg_url)
        .await
        .unwrap();
    let roles: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname LIKE $1")
            .bind(format!("%\\_{suffix}%"))
            .fetch_all(&mut pg)
            .await
            .unwrap();
    for role in roles
        .iter()
        .filter(|r| !r.ends_with("_group"))
        .chain(roles.iter().filter(|r| r.ends_with("_group")))
    {
        // A group holds the grants create mode made in database postgres: they go first.
        if role.ends_with("_group") {
            let _ = sqlx::Executor::execute(&mut pg, format!("DROP OWNED BY \"{role}\"").as_str())
                .await;
        }
        let _ =
            sqlx::Executor::execute(&mut pg, format!("DROP ROLE IF EXISTS \"{role}\"").as_str())
                .await;
    }
    let mut my = <sqlx::MySqlConnection as sqlx::Connection>::connect(&my_url)
        .await
        .unwrap();
    for user in [format!("bm_{suffix}"), format!("bm_{suffix}_clone")] {
        let _ = sqlx::Executor::execute(
            &mut my,
            format!("DROP USER IF EXISTS '{user}'@'%'").as_str(),
        )
        .await;
    }
    let mut red = redis::Client::open(redis_url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: Result<(), _> = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(format!("br_{suffix}"))
        .arg(format!("br_{suffix}_clone"))
        .query_async(&mut red)
        .await;
}

/// What a PostgreSQL rotation cannot go below, measured on the target directly: the client's
/// SCRAM verifier (PBKDF2 at the server's count), `ALTER ROLE … PASSWORD` with it (the server
/// runs PBKDF2 once more: it checks the verifier is not the empty password's), the same
/// `ALTER ROLE` without a password (what the statement costs apart from that PBKDF2), and a
/// fresh SCRAM login with one query (the `test` step). Medians of `rounds`; the line to print.
async fn pg_floor(pg_url: &str, suffix: &str, rounds: usize) -> String {
    use rotators::database::hash::{scram_sha256_verifier, DEFAULT_SCRAM_ITERATIONS};
    use sqlx::postgres::PgConnectOptions;
    use sqlx::{ConnectOptions, Connection, Executor};
    use std::str::FromStr;

    let ms = |samples: Vec<Duration>| percentiles(samples).0;
    let mut admin = sqlx::PgConnection::connect(pg_url).await.unwrap();
    let iterations =
        sqlx::query_scalar::<_, Option<String>>("SELECT current_setting('scram_iterations', true)")
            .fetch_one(&mut admin)
            .await
            .unwrap()
            .and_then(|i| i.parse().ok())
            .unwrap_or(DEFAULT_SCRAM_ITERATIONS);
    let role = format!("bfl_{suffix}");
    let password = rotor::crypto::random_id();
    let (mut verify, mut alter, mut bare, mut login) = (vec![], vec![], vec![], vec![]);
    admin
        .execute(format!("CREATE ROLE {role} LOGIN").as_str())
        .await
        .unwrap();
    for _ in 0..rounds {
        let t = Instant::now();
        let verifier = scram_sha256_verifier(&password, iterations);
        verify.push(t.elapsed());
        let t = Instant::now();
        admin
            .execute(format!("ALTER ROLE {role} WITH PASSWORD '{verifier}'").as_str())
            .await
            .unwrap();
        alter.push(t.elapsed());
        let t = Instant::now();
        admin
            .execute(format!("ALTER ROLE {role} VALID UNTIL 'infinity'").as_str())
            .await
            .unwrap();
        bare.push(t.elapsed());
        let options = PgConnectOptions::from_str(pg_url)
            .unwrap()
            .username(&role)
            .password(&password)
            .disable_statement_logging();
        let t = Instant::now();
        let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
        conn.execute("SELECT 1").await.unwrap();
        conn.close().await.unwrap();
        login.push(t.elapsed());
    }
    let _ = admin.execute(format!("DROP ROLE {role}").as_str()).await;
    let (verify, alter, bare, login) = (ms(verify), ms(alter), ms(bare), ms(login));
    format!(
        "PostgreSQL  floor (median of {rounds}, on the target alone): SCRAM verifier {verify:.2} ms, \
         ALTER ROLE … PASSWORD {alter:.2} ms (without a password {bare:.2} ms: the rest is the server's own PBKDF2), \
         fresh SCRAM login {login:.2} ms; together {:.1} ms",
        verify + alter + login
    )
}

/// What a rotation's store on SQLite cannot go below, measured on a file of its own through an
/// sqlx connection set up as the store's (WAL, `synchronous = FULL`): one statement's round
/// trip, and one durable write transaction (`BEGIN IMMEDIATE`, one `UPDATE`, `COMMIT`); a
/// rotation commits four (the claim, the pending version, the step after `set`, the promotion
/// with the job's end). Medians of `rounds`; the line to print.
async fn sqlite_floor(rounds: usize) -> String {
    use sqlx::{Connection, Executor};

    let ms = |samples: Vec<Duration>| percentiles(samples).0;
    let dir = tempfile::tempdir().unwrap();
    sqlx::any::install_default_drivers();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("floor.db").display()
    );
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    for statement in [
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = FULL",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
        "INSERT INTO t VALUES (1, 0)",
    ] {
        conn.execute(statement).await.unwrap();
    }
    let (mut trip, mut write) = (vec![], vec![]);
    for _ in 0..rounds {
        let t = Instant::now();
        sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
        trip.push(t.elapsed());
        let t = Instant::now();
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("UPDATE t SET n = n + 1 WHERE id = $1")
            .bind(1_i64)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        write.push(t.elapsed());
    }
    conn.close().await.unwrap();
    let (trip, write) = (ms(trip), ms(write));
    format!(
        "SQLite      store floor (median of {rounds}, a file of its own, WAL, synchronous FULL): \
         a statement {trip:.3} ms, a durable write transaction {write:.3} ms; a rotation's four {:.2} ms",
        4.0 * write
    )
}

/// Runs `rotation`, counting the statements sqlx logs meanwhile (its `sqlx::query` events).
async fn counted_statements(rotation: impl std::future::Future<Output = Duration>) -> usize {
    use std::sync::atomic::Ordering;
    COUNTING.store(true, Ordering::SeqCst);
    let before = STATEMENTS.load(Ordering::SeqCst);
    rotation.await;
    COUNTING.store(false, Ordering::SeqCst);
    STATEMENTS.load(Ordering::SeqCst) - before
}

static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static STATEMENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A subscriber that only counts sqlx's statement events, and only while [`COUNTING`] is set.
struct StatementCounter;

impl tracing::Subscriber for StatementCounter {
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if meta.target() == "sqlx::query" {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        meta.target() == "sqlx::query" && COUNTING.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {
        STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// `batch` due PostgreSQL dual-account secrets rotated by one worker with its store on
/// `backend`: the line to print. The accounts are named `bf{i}_{suffix}`.
async fn batch_run(backend: &str, batch: usize, pg_url: &str, suffix: &str) -> String {
    let dual = |ty| SecretKind::new(ty, Some(SubType::DoubleUsers)).unwrap();
    let mut batch_db = None;
    let (batch_store, _batch_dir) = if backend == "postgres" {
        let dir = tempfile::tempdir().unwrap();
        let admin_url = env(
            "ROTOR_TEST_PG",
            "postgres://postgres@127.0.0.1:5432/postgres",
        );
        let db = format!("rotor_bench_{suffix}");
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .unwrap();
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {db}").as_str())
            .await
            .unwrap();
        let mut config = StoreConfig::new(dir.path().join("data"));
        config.url = Some(format!(
            "{}/{db}?sslmode=disable",
            admin_url.rsplit_once('/').unwrap().0
        ));
        batch_db = Some((admin, db));
        (Store::open(&config, OpenMode::Init).await.unwrap(), dir)
    } else {
        new_store().await
    };
    let batch_backend = batch_store.backend().name();
    add_target(&batch_store, "pg", "postgres", pg_url).await;
    let setup = Instant::now();
    let policy = RotationPolicy {
        schedule: RotationSchedule::Interval(Duration::from_secs(86_400)),
        jitter: None,
        rotate_now: true,
    };
    for i in 0..batch {
        let name = format!("fleet/{i:04}");
        account_secret(
            &batch_store,
            &name,
            dual(SecretType::Rds),
            "pg",
            &format!("bf{i}_{suffix}"),
            Some("postgres"),
        )
        .await;
        batch_store
            .set_rotation(&SecretName::parse(&name).unwrap(), Some(policy.clone()))
            .await
            .unwrap();
    }
    let setup = setup.elapsed();
    let commits_before = match &mut batch_db {
        Some((admin, db)) => Some(store_commits(admin, db).await),
        None => None,
    };
    let worker_engine = Arc::new(new_engine(&batch_store, rotor::builtin_rotators()));
    let shutdown = CancellationToken::new();
    // Where the batch's CPU goes: the target server's, this process's and (on PostgreSQL) the
    // store server's, read from /proc where the servers run on this machine.
    let target_server = server_pid(pg_url).await;
    let store_server = match &batch_db {
        Some(_) => {
            server_pid(&env(
                "ROTOR_TEST_PG",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ))
            .await
            // One server for both (the compose rig): its CPU is the target server's line.
            .filter(|pid| Some(*pid) != target_server)
        }
        None => None,
    };
    let cpu_before = (
        target_server.map(server_cpu),
        own_cpu(),
        store_server.map(server_cpu),
    );
    // On stderr, for a profiler started from outside (`perf record -a` for the batch alone).
    eprintln!("batch on {batch_backend}: {batch} due, worker starting");
    let started = Instant::now();
    let config = WorkerConfig {
        concurrency: 16,
        per_target: 16,
        ..WorkerConfig::default()
    };
    let worker = tokio::spawn(rotor::worker::run(worker_engine, config, shutdown.clone()));
    // Progress: one count (an index range) every 10 ms; a secret stays due until its promotion
    // moves its next rotation a day ahead. Reading every row instead cost the store's thread a
    // tenth of the batch.
    loop {
        let (due, failed) = batch_store.count_due_and_failed().await.unwrap();
        assert_eq!(failed, 0, "a batch rotation failed");
        if due == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let cpu_after = (
        target_server.map(server_cpu),
        own_cpu(),
        store_server.map(server_cpu),
    );
    let rotated = batch_store
        .list(&[], false)
        .await
        .unwrap()
        .iter()
        .filter(|s| s.name.as_str().starts_with("fleet/") && s.last_rotation_at.is_some())
        .count();
    assert_eq!(rotated, batch, "every due secret rotated");
    shutdown.cancel();
    worker.await.unwrap().unwrap();
    batch_store.close().await;
    let mut line = format!(
        "PostgreSQL  {batch} due dual-account secrets, worker (concurrency 16, per-target 16, store on {batch_backend}): {:.1} s, {:.0} rotations/s  (setup {:.0} s)",
        elapsed.as_secs_f64(),
        batch as f64 / elapsed.as_secs_f64(),
        setup.as_secs_f64()
    );
    let per = |before: Option<Duration>, after: Option<Duration>| {
        before
            .zip(after)
            .map(|(b, a)| a.saturating_sub(b).as_secs_f64() * 1000.0 / batch as f64)
    };
    let mut cpu = vec![];
    if let Some(ms) = per(cpu_before.0, cpu_after.0) {
        cpu.push(format!("target server {ms:.1} ms"));
    }
    cpu.push(format!(
        "worker process {:.1} ms",
        per(Some(cpu_before.1), Some(cpu_after.1)).unwrap_or_default()
    ));
    if let Some(ms) = per(cpu_before.2, cpu_after.2) {
        cpu.push(format!("store server {ms:.1} ms"));
    }
    line.push_str(&format!("  [CPU per rotation: {}]", cpu.join(", ")));
    if let Some((mut admin, db)) = batch_db {
        if let Some(before) = commits_before {
            // The worker's own transactions, with its progress polls (one read each) and
            // the list reads above: an upper bound of what one rotation commits.
            let after = store_commits(&mut admin, &db).await;
            line.push_str(&format!(
                "  [store transactions per rotation <= {:.1}]",
                (after - before) as f64 / batch as f64
            ));
        }
        let _ = sqlx::Executor::execute(
            &mut admin,
            format!("DROP DATABASE {db} WITH (FORCE)").as_str(),
        )
        .await;
    }
    line
}

/// The transactions committed in database `db` so far (`pg_stat_database`), once every
/// session's pending statistics had time to reach the collector.
async fn store_commits(admin: &mut sqlx::PgConnection, db: &str) -> i64 {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
        .bind(db)
        .fetch_one(admin)
        .await
        .unwrap()
}

/// The process id of the PostgreSQL server behind `url`, when it runs on this machine (the
/// postmaster: the parent of the backend serving this connection).
async fn server_pid(url: &str) -> Option<u32> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .ok()?;
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{backend}/stat")).ok()?;
    proc_fields(&stat).get(1)?.parse().ok()
}

/// A `/proc/PID/stat` line's fields after the command name (`state` is the first).
fn proc_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect())
}

/// The CPU time a PostgreSQL server has used: the postmaster's, its ended backends' (counted
/// in its children's time once reaped) and its running backends'.
fn server_cpu(postmaster: u32) -> Duration {
    let tick = 1.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks = |fields: &[&str], from: usize, to: usize| -> f64 {
        fields[from..to]
            .iter()
            .map(|f| f.parse::<f64>().unwrap_or(0.0))
            .sum()
    };
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let fields = proc_fields(&stat);
        if fields.len() < 15 {
            continue;
        }
        // After the name: state, ppid, …; utime, stime, cutime, cstime are fields 14–17 of
        // the line, 11–14 here.
        if entry.file_name().to_str() == Some(&postmaster.to_string()) {
            total += ticks(&fields, 11, 15);
        } else if fields[1] == postmaster.to_string() {
            total += ticks(&fields, 11, 13);
        }
    }
    Duration::from_secs_f64(total * tick)
}

/// The CPU time this process has used (user and system, every thread).
fn own_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}
