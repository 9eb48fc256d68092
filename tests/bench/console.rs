//! Console benchmark: the Secrets page with N secrets (10,000 by default) in the store, served by
//! the API's server as `rotor serve` serves it, signed in as a console user. Prints the server's
//! own time for the page (its `Server-Timing`) — median, p95 and the slowest — for an
//! administrator (`*:*`, first and last page), a search, a tab, and a user whose rules cover a
//! tenth of the secrets. Not a test: the issue's target is ≤ 200 ms.
//!
//! ```text
//! cargo bench --bench console                       # 10,000 secrets on SQLite
//! cargo bench --bench console -- --count 20000 --backend postgres
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use rotators::{SecretKind, SecretType, SecretValue};
use rotor::api::{Api, ApiSettings};
use rotor::engine::{Engine, EngineConfig};
use rotor::model::{SecretName, Tag};
use rotor::policy::Policy;
use rotor::store::{NewSecret, OpenMode, Store, StoreConfig};
use sqlx::{Connection, Executor};
use tokio_util::sync::CancellationToken;

const ROUNDS: usize = 30;

fn admin_url() -> String {
    std::env::var("ROTOR_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `--count N`, `--backend sqlite|postgres`.
fn options() -> (usize, String) {
    let (mut count, mut backend) = (10_000, "sqlite".to_string());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--count" => count = value.parse().expect("--count N"),
            "--backend" => backend = value,
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    (count, backend)
}

async fn fill(store: &Store, count: usize) {
    let kind = SecretKind::new(SecretType::Generic, None).unwrap();
    let store = Arc::new(store.clone());
    let tasks: Vec<_> = (0..8)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (c..count).step_by(8) {
                    let team = if i % 10 == 0 { "app" } else { "ops" };
                    let name = SecretName::parse(&format!("{team}/service-{i:05}")).unwrap();
                    let mut new = NewSecret::new(name, kind, SecretValue::from("v"));
                    new.tags = vec![Tag::new("team", team).unwrap()];
                    new.description = format!("secret number {i}");
                    store.create_secret(new).await.expect("create");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Signs in; returns the session cookie.
async fn login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> String {
    let response = http
        .post(format!("{base}/console/login"))
        .form(&[("user", user), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "login as {user}");
    let cookie = response
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

/// The page's server time (ms, from `Server-Timing`) over [`ROUNDS`] requests: median, p95, max.
async fn measure(http: &reqwest::Client, url: &str, cookie: &str, expect: &str) -> (f64, f64, f64) {
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        let response = http.get(url).header("cookie", cookie).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let timing = response.headers()["server-timing"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.text().await.unwrap();
        assert!(body.contains(expect), "{url}: {expect}");
        let ms: f64 = timing.trim_start_matches("app;dur=").parse().unwrap();
        times.push(ms);
    }
    times.sort_by(f64::total_cmp);
    (
        times[times.len() / 2],
        times[(times.len() * 95 / 100).min(times.len() - 1)],
        times[times.len() - 1],
    )
}

#[tokio::main]
async fn main() {
    let (count, backend) = options();
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
        let base = admin_url().rsplit_once('/').unwrap().0.to_owned();
        config.url = Some(format!("{base}/{db}?sslmode=disable"));
        pg = Some((admin, db));
    }
    let store = Store::open(&config, OpenMode::Init).await.unwrap();
    let filled = Instant::now();
    fill(&store, count).await;
    eprintln!(
        "{count} secrets stored in {:.1} s",
        filled.elapsed().as_secs_f64()
    );
    let password = "bench-password-long";
    let hash = rotor::console::password::hash(password.to_owned().into())
        .await
        .unwrap();
    let admin = Policy::new(vec!["*:*".parse().unwrap()]).unwrap();
    let narrow = Policy::new(vec!["*:app/*".parse().unwrap()]).unwrap();
    store
        .create_console_user("admin", &hash, &admin)
        .await
        .unwrap();
    store
        .create_console_user("app", &hash, &narrow)
        .await
        .unwrap();

    let engine = Arc::new(Engine::new(
        store.clone(),
        rotor::builtin_rotators(),
        EngineConfig::default(),
    ));
    let stop = CancellationToken::new();
    let settings = ApiSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        plain_http: true,
        hostnames: vec![],
        max_connections: 64,
    };
    let server = rotor::api::serve(
        Api::new(store.clone(), engine).with_shutdown(stop.clone()),
        &settings,
        dir.path(),
        stop.clone(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.local);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let admin_cookie = login(&http, &base, "admin", password).await;
    let app_cookie = login(&http, &base, "app", password).await;
    let last = count.div_ceil(50);
    let pages = [
        (
            "admin, first page",
            format!("{base}/console/secrets"),
            &admin_cookie,
            "app/service-00000".to_string(),
        ),
        (
            "admin, last page",
            format!("{base}/console/secrets?page={last}"),
            &admin_cookie,
            format!("page {last} of {last}"),
        ),
        (
            "admin, search",
            format!("{base}/console/secrets?q=service-0999"),
            &admin_cookie,
            "service-09990".to_string(),
        ),
        (
            "admin, tag filter",
            format!("{base}/console/secrets?tags=team%3Dapp"),
            &admin_cookie,
            "app/service-00010".to_string(),
        ),
        (
            "admin, Database tab",
            format!("{base}/console/secrets?tab=database"),
            &admin_cookie,
            "0 secrets".to_string(),
        ),
        (
            "app/* user",
            format!("{base}/console/secrets"),
            &app_cookie,
            "app/service-00000".to_string(),
        ),
    ];
    println!("console benchmark: the Secrets page with {count} secrets ({backend}), server time over {ROUNDS} requests");
    println!(
        "{:<22} {:>10} {:>10} {:>10}",
        "page", "median ms", "p95 ms", "max ms"
    );
    for (label, url, cookie, expect) in &pages {
        let (median, p95, max) = measure(&http, url, cookie, expect).await;
        println!("{label:<22} {median:>10.1} {p95:>10.1} {max:>10.1}");
    }
    stop.cancel();
    server.stopped().await;
    store.close().await;
    if let Some((mut admin, db)) = pg {
        admin
            .execute(format!("DROP DATABASE {db} WITH (FORCE)").as_str())
            .await
            .unwrap();
    }
}
