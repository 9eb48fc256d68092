//! Rotation engine benchmark: 100,000 stored secrets of which 1,000 are due, rotated by an
//! in-process worker with a rotator that does no I/O. Prints rotations per second, the due
//! query's cost, the pick-up delay, the process's peak resident memory and its idle CPU, then
//! the store's ceiling on the same cores (trivial statements and write transactions per second
//! with as many clients as the worker's concurrency). Not a test: it asserts nothing about speed.
//!
//! ```text
//! cargo bench --bench rotation                        # both backends
//! cargo bench --bench rotation -- --backend postgres --stored 100000 --due 1000 --concurrency 32
//! cargo bench --bench rotation -- --backend postgres --workers 1,2,4   # the batch again per count
//! ```
//! With several worker counts, the batch is made due again and rotated once per count, each
//! worker with its own store handle (its own pool) and owner name, all on the one store.
//! PostgreSQL: a throwaway database on `ROTOR_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rotators::{
    Registry, RotateError, RotationContext, Rotator, SecretKind, SecretType, SecretValue, SubType,
};
use rotor::engine::{Engine, EngineConfig};
use rotor::model::{RotationPolicy, RotationSchedule, SecretName};
use rotor::store::{NewSecret, OpenMode, Store, StoreConfig};
use rotor::worker::WorkerConfig;
use sqlx::{AnyPool, Connection, Executor, Row};
use tokio_util::sync::CancellationToken;

struct Options {
    backends: Vec<&'static str>,
    stored: usize,
    due: usize,
    concurrency: usize,
    /// Worker counts to run the batch with, one after the other (each a worker loop with its
    /// own store handle and owner name, sharing the store).
    workers: Vec<usize>,
    /// Let the PostgreSQL store negotiate TLS (off by default: loopback).
    tls: bool,
}

fn options() -> Options {
    let mut o = Options {
        backends: vec!["sqlite", "postgres"],
        stored: 100_000,
        due: 1_000,
        concurrency: 16,
        workers: vec![1],
        tls: false,
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    o.tls = args.iter().any(|a| a == "--tls");
    let args: Vec<String> = args.into_iter().filter(|a| a != "--tls").collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--backend" => {
                o.backends = vec![if value == "sqlite" {
                    "sqlite"
                } else {
                    "postgres"
                }]
            }
            "--stored" => o.stored = value.parse().expect("--stored N"),
            "--due" => o.due = value.parse().expect("--due N"),
            "--concurrency" => o.concurrency = value.parse().expect("--concurrency N"),
            "--workers" => {
                o.workers = value
                    .split(',')
                    .map(|n| n.parse().expect("--workers N[,N…]"))
                    .collect()
            }
            other => panic!("unknown option {other}"),
        }
    }
    o
}

/// Makes a new password and touches nothing.
struct NoIo;

#[async_trait]
impl Rotator for NoIo {
    async fn create(&self, cx: &RotationContext) -> Result<SecretValue, RotateError> {
        let value =
            serde_json::json!({"UserName": cx.secret_name, "Password": rotor::crypto::random_id()});
        Ok(SecretValue::new(value.to_string().into_bytes()))
    }
    async fn set(&self, _: &RotationContext, _: &SecretValue) -> Result<(), RotateError> {
        Ok(())
    }
    async fn test(&self, _: &RotationContext, _: &SecretValue) -> Result<(), RotateError> {
        Ok(())
    }
    fn finish_is_noop(&self) -> bool {
        true
    }
}

fn admin_url() -> String {
    std::env::var("ROTOR_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn ecs() -> SecretKind {
    SecretKind::new(SecretType::ECS, Some(SubType::Password)).unwrap()
}

fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds this process has used.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

/// How many secrets are still due (an index range, cheap beside the worker).
async fn count_due(raw: &AnyPool, now: i64) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM secrets WHERE next_rotation_at <= $1")
        .bind(now)
        .fetch_one(raw)
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

/// What the store's server does at most on these cores with `clients` connections: trivial
/// statements per second, then write transactions (each its own row) per second. A rotation's
/// statements and commits are what the engine's rate is made of.
async fn store_ceiling(url: &str, clients: usize) -> (f64, f64) {
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(clients as u32)
        .connect(url)
        .await
        .unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM secrets ORDER BY id LIMIT $1")
        .bind(clients as i64)
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut rates = [0.0; 2];
    for (i, rate) in rates.iter_mut().enumerate() {
        let until = Instant::now() + Duration::from_secs(2);
        let mut tasks = tokio::task::JoinSet::new();
        for &id in &ids {
            let pool = pool.clone();
            tasks.spawn(async move {
                let mut n = 0u64;
                let mut conn = pool.acquire().await.unwrap();
                while Instant::now() < until {
                    if i == 0 {
                        conn.execute("SELECT 1").await.unwrap();
                    } else {
                        let mut tx = conn.begin().await.unwrap();
                        sqlx::query("UPDATE secrets SET updated_at = updated_at WHERE id = $1")
                            .bind(id)
                            .execute(&mut *tx)
                            .await
                            .unwrap();
                        tx.commit().await.unwrap();
                    }
                    n += 1;
                }
                n
            });
        }
        let started = Instant::now();
        let mut total = 0;
        while let Some(n) = tasks.join_next().await {
            total += n.unwrap();
        }
        *rate = total as f64 / started.elapsed().as_secs_f64();
    }
    pool.close().await;
    (rates[0], rates[1])
}

async fn bench(backend: &str, o: &Options) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path().join("data"));
    let mut pg = None;
    if backend == "postgres" {
        let db = format!("rotor_bench_{}", rotor::crypto::random_id());
        let mut admin = sqlx::PgConnection::connect(&admin_url())
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} is not reachable: {e}", admin_url()));
        admin
            .execute(format!("CREATE DATABASE {db}").as_str())
            .await
            .unwrap();
        config.url = Some(format!(
            "{}/{db}?sslmode={}",
            admin_url().rsplit_once('/').unwrap().0,
            if o.tls { "require" } else { "disable" }
        ));
        pg = Some((admin, db));
    }
    let store = Store::open(&config, OpenMode::Init).await.unwrap();
    let raw_url = config
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("data/rotor.db").display()));
    let raw = AnyPool::connect(&raw_url).await.unwrap();

    // The due secrets: real ones, through the store.
    let setup = Instant::now();
    let policy = RotationPolicy {
        schedule: RotationSchedule::Interval(Duration::from_secs(86_400)),
        jitter: None,
        rotate_now: false,
    };
    for i in 0..o.due {
        let name = SecretName::parse(&format!("due-{i:05}")).unwrap();
        let value = serde_json::json!({"UserName": format!("u{i}"), "Password": "initial"});
        store
            .create_secret(NewSecret::new(
                name.clone(),
                ecs(),
                SecretValue::new(value.to_string().into_bytes()),
            ))
            .await
            .unwrap();
        store
            .set_rotation(&name, Some(policy.clone()))
            .await
            .unwrap();
    }
    // The rest: copies of one secret's row under other names, scheduled 1–30 days out.
    let filler = o.stored.saturating_sub(o.due) as i64;
    let now = store.clock().now_ms();
    let series = match backend {
        "postgres" => "SELECT generate_series(1, $1) AS n".to_string(),
        _ => "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < $1) SELECT n FROM seq".to_string(),
    };
    let insert = format!(
        "INSERT INTO secrets (uid, name, secret_type, sub_type, description, key_id, wrapped_data_key, version_seq, \
                              created_at, updated_at, rotation_enabled, rotation_interval_s, next_rotation_at) \
         SELECT 'filler-' || CAST(g.n AS TEXT), 'filler-' || CAST(g.n AS TEXT), s.secret_type, s.sub_type, '', s.key_id, \
                s.wrapped_data_key, 1, $2, $2, 1, 2592000, $2 + 86400000 * (1 + g.n % 30) \
         FROM ({series}) g, secrets s WHERE s.name = 'due-00000'"
    );
    sqlx::query(&insert)
        .bind(filler)
        .bind(now)
        .execute(&raw)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO versions (secret_id, version_id, seq, ciphertext, data_type, created_at) \
         SELECT f.id, 'v1', 1, v.ciphertext, 'text', $1 FROM secrets f, versions v, secrets s \
         WHERE f.name LIKE 'filler-%' AND s.name = 'due-00000' AND v.secret_id = s.id",
    )
    .bind(now)
    .execute(&raw)
    .await
    .unwrap();
    if backend == "postgres" {
        raw.execute("ANALYZE").await.unwrap();
    }
    let setup = setup.elapsed();

    // Cost of the due query with nothing due among everything stored.
    let probe = Instant::now();
    for _ in 0..100 {
        assert!(store
            .claim_due("probe", Duration::from_secs(30), 16)
            .await
            .unwrap()
            .is_empty());
    }
    let empty_claim = probe.elapsed() / 100;

    // Make the 1,000 due at once and let the workers rotate them; again for each worker count.
    let mut registry = Registry::new();
    registry.register(ecs(), Arc::new(NoIo));
    let mut batches = vec![];
    for &workers in &o.workers {
        sqlx::query("UPDATE secrets SET next_rotation_at = $1 WHERE name LIKE 'due-%'")
            .bind(store.clock().now_ms())
            .execute(&raw)
            .await
            .unwrap();
        let now = store.clock().now_ms();
        let shutdown = CancellationToken::new();
        let mut running = vec![];
        let started = Instant::now();
        let cpu_before = cpu_seconds();
        for k in 0..workers {
            // A handle of its own per worker (the first reuses the store above).
            let handle = if k == 0 {
                store.clone()
            } else {
                Store::open(&config, OpenMode::Existing).await.unwrap()
            };
            let engine = Arc::new(Engine::new(
                handle,
                registry.clone(),
                EngineConfig {
                    owner: format!("bench-{k}"),
                    ..EngineConfig::default()
                },
            ));
            // The default poll interval (500 ms): the pick-up delay users get.
            let worker_config = WorkerConfig {
                concurrency: o.concurrency,
                ..WorkerConfig::default()
            };
            running.push(tokio::spawn(rotor::worker::run(
                engine,
                worker_config,
                shutdown.clone(),
            )));
        }
        while count_due(&raw, now).await > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let batch = started.elapsed();
        // The workers' share of the machine during the batch (the rest is the store's).
        let cpu = (cpu_seconds() - cpu_before) / batch.as_secs_f64() * 100.0;
        if workers == *o.workers.last().unwrap() {
            // The last count's workers stay for the pick-up and idle measures.
            batches.push((workers, batch, cpu, Some((shutdown, running))));
        } else {
            shutdown.cancel();
            for w in running {
                w.await.unwrap().unwrap();
            }
            batches.push((workers, batch, cpu, None));
        }
    }
    let (_, batch, batch_cpu, last) = batches.last_mut().unwrap();
    let (batch, batch_cpu) = (*batch, *batch_cpu);
    let (shutdown, running) = last.take().unwrap();

    // Pick-up delay: a secret becomes due while the worker idles.
    let mut delays = vec![];
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(137 * (i % 3 + 1))).await;
        let name = format!("due-{i:05}");
        let before: i64 = sqlx::query("SELECT last_rotation_at FROM secrets WHERE name = $1")
            .bind(&name)
            .fetch_one(&raw)
            .await
            .unwrap()
            .try_get("last_rotation_at")
            .unwrap();
        let due_at = Instant::now();
        sqlx::query("UPDATE secrets SET next_rotation_at = $1 WHERE name = $2")
            .bind(store.clock().now_ms())
            .bind(&name)
            .execute(&raw)
            .await
            .unwrap();
        loop {
            let row =
                sqlx::query("SELECT lease_owner, last_rotation_at FROM secrets WHERE name = $1")
                    .bind(&name)
                    .fetch_one(&raw)
                    .await
                    .unwrap();
            let owner: Option<String> = row.try_get("lease_owner").unwrap();
            let last: i64 = row.try_get("last_rotation_at").unwrap();
            if owner.is_some() || last != before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        delays.push(due_at.elapsed());
    }
    delays.sort();

    // Idle CPU over 10 s with 100,000 stored and nothing due.
    let cpu0 = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu = (cpu_seconds() - cpu0) / 10.0 * 100.0;

    shutdown.cancel();
    for w in running {
        w.await.unwrap().unwrap();
    }
    for (workers, batch, cpu, _) in &batches[..batches.len() - 1] {
        println!(
            "{backend:<9} stored {:>7}  due {:>5}  workers {workers}  rotations/s {:>7.0}  batch {:>6.2} s  workers' CPU {cpu:>3.0}%",
            o.stored,
            o.due,
            o.due as f64 / batch.as_secs_f64(),
            batch.as_secs_f64(),
        );
    }
    let workers = if o.workers.len() > 1 || o.workers[0] != 1 {
        format!("workers {}  ", o.workers.last().unwrap())
    } else {
        String::new()
    };
    println!(
        "{backend:<9} stored {:>7}  due {:>5}  {workers}rotations/s {:>7.0}  batch {:>6.2} s  empty due query {:>6.2} ms  \
         pick-up median {:>4} ms max {:>4} ms  peak RSS {:>4} MB  idle CPU {:>4.1}%  (setup {:.0} s)",
        o.stored,
        o.due,
        o.due as f64 / batch.as_secs_f64(),
        batch.as_secs_f64(),
        empty_claim.as_secs_f64() * 1000.0,
        delays[delays.len() / 2].as_millis(),
        delays[delays.len() - 1].as_millis(),
        proc_status("VmHWM:") / 1024,
        idle_cpu,
        setup.as_secs_f64(),
    );
    println!(
        "{backend:<9} during the batch the worker process used {batch_cpu:.0}% of one core ({} cores here; the store's server had the rest)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let (statements, writes) = store_ceiling(&raw_url, o.concurrency).await;
    println!(
        "{backend:<9} store ceiling on these cores ({} clients, 2 s each): {statements:.0} statements/s (SELECT 1), \
         {writes:.0} write transactions/s (BEGIN, one UPDATE, COMMIT)",
        o.concurrency
    );
    raw.close().await;
    store.close().await;
    if let Some((mut admin, db)) = pg {
        admin
            .execute(format!("DROP DATABASE {db} WITH (FORCE)").as_str())
            .await
            .unwrap();
    }
}

#[tokio::main]
async fn main() {
    sqlx::any::install_default_drivers();
    let o = options();
    println!(
        "rotation benchmark: {} stored, {} due, no-I/O rotator, worker concurrency {}, poll 500 ms",
        o.stored, o.due, o.concurrency
    );
    for backend in o.backends.clone() {
        bench(backend, &o).await;
    }
}
