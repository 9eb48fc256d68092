//! Store benchmark: create, put and get of N generic secrets with 1 KB values, on SQLite and on
//! PostgreSQL, printing operations per second. Not a test: it asserts nothing about speed.
//!
//! ```text
//! cargo bench --bench store                      # 10,000 secrets, both backends, 1 and 8 clients
//! cargo bench --bench store -- --count 2000 --backend sqlite --clients 4
//! ```
//! PostgreSQL: a throwaway database on `ROTOR_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards.

use std::sync::Arc;
use std::time::Instant;

use rotators::{SecretKind, SecretType, SecretValue};
use rotor::model::SecretName;
use rotor::store::{NewSecret, OpenMode, PutValue, Selector, Store, StoreConfig};
use sqlx::{Connection, Executor};

struct Options {
    count: usize,
    backends: Vec<&'static str>,
    clients: Vec<usize>,
    tls: bool,
}

fn options() -> Options {
    let mut o = Options {
        count: 10_000,
        backends: vec!["sqlite", "postgres"],
        clients: vec![1, 8],
        tls: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--count" => o.count = value.parse().expect("--count N"),
            "--backend" => {
                o.backends = match value.as_str() {
                    "sqlite" => vec!["sqlite"],
                    "postgres" => vec!["postgres"],
                    _ => panic!("--backend sqlite|postgres"),
                }
            }
            "--clients" => {
                o.clients = value
                    .split(',')
                    .map(|c| c.parse().expect("--clients N[,M]"))
                    .collect()
            }
            "--tls" => {
                o.tls = true;
                i += 1;
                continue;
            }
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

fn admin_url() -> String {
    std::env::var("ROTOR_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A 1 KB text value that differs per secret and per round.
fn value(i: usize, round: &str) -> SecretValue {
    let mut text = format!("{round}-{i}-");
    while text.len() < 1024 {
        text.push_str(&format!(
            "{:016x}",
            (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ text.len() as u64
        ));
    }
    text.truncate(1024);
    SecretValue::new(text.into_bytes())
}

/// Runs `op` for secrets 0..count split over `clients` tasks; returns operations per second.
async fn timed<F, Fut>(count: usize, clients: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                for i in (c..count).step_by(clients) {
                    op(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("benchmark task");
    }
    count as f64 / start.elapsed().as_secs_f64()
}

async fn run(store: Store, count: usize, clients: usize, label: &str) {
    let kind = SecretKind::new(SecretType::Generic, None).unwrap();
    let prefix = format!("bench-{clients}");
    let name = move |i: usize| SecretName::parse(&format!("{prefix}/secret-{i}")).unwrap();

    let (s, n) = (store.clone(), name.clone());
    let create = timed(count, clients, move |i| {
        let (s, n) = (s.clone(), n.clone());
        async move {
            let new = NewSecret::new(n(i), kind, value(i, "create"));
            s.create_secret(new).await.expect("create");
        }
    })
    .await;
    let (s, n) = (store.clone(), name.clone());
    let put = timed(count, clients, move |i| {
        let (s, n) = (s.clone(), n.clone());
        async move {
            let put = PutValue {
                value: value(i, "put"),
                version_id: None,
                stages: vec![],
            };
            s.put_value(&n(i), put).await.expect("put");
        }
    })
    .await;
    let (s, n) = (store.clone(), name.clone());
    let get = timed(count, clients, move |i| {
        let (s, n) = (s.clone(), n.clone());
        async move {
            let v = s.get_value(&n(i), &Selector::default()).await.expect("get");
            assert_eq!(v.value.len(), 1024);
        }
    })
    .await;
    println!("{label:<10} {clients:>7} {count:>8} {create:>12.0} {put:>12.0} {get:>12.0}");
}

#[tokio::main]
async fn main() {
    let o = options();
    println!(
        "store benchmark: {} generic secrets, 1 KB values; operations per second",
        o.count
    );
    println!(
        "{:<10} {:>7} {:>8} {:>12} {:>12} {:>12}",
        "backend", "clients", "secrets", "create/s", "put/s", "get/s"
    );
    for backend in &o.backends {
        for &clients in &o.clients {
            let dir = tempfile::tempdir().unwrap();
            let mut config = StoreConfig::new(dir.path().join("data"));
            let mut pg_db = None;
            if *backend == "postgres" {
                let db = format!("rotor_bench_{}", rotor::crypto::random_id());
                let mut admin = sqlx::PgConnection::connect(&admin_url())
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PostgreSQL at {} is not reachable: {e}", admin_url())
                    });
                admin
                    .execute(format!("CREATE DATABASE {db}").as_str())
                    .await
                    .unwrap();
                let base = admin_url().rsplit_once('/').unwrap().0.to_owned();
                // Loopback: no TLS unless --tls.
                let tls = if o.tls { "require" } else { "disable" };
                config.url = Some(format!("{base}/{db}?sslmode={tls}"));
                pg_db = Some((admin, db));
            }
            let store = Store::open(&config, OpenMode::Init)
                .await
                .expect("store opens");
            run(store.clone(), o.count, clients, backend).await;
            store.close().await;
            if let Some((mut admin, db)) = pg_db {
                admin
                    .execute(format!("DROP DATABASE {db} WITH (FORCE)").as_str())
                    .await
                    .unwrap();
            }
        }
    }
}
