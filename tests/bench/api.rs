//! API benchmark: GetSecretValue through `rotor serve` (HTTPS, signature check, policy,
//! decryption) against the unauthenticated `/healthz` of the same server, on loopback, with
//! the client in this process sharing the machine's cores. Prints requests per second and
//! p50/p99 latency for both, per store backend, and the server's memory after 10,000 and after
//! N (default 1,000,000) signed requests. Asserts nothing about speed.
//!
//! With `--idle-connections N` it measures memory instead: it opens N TLS connections to the
//! server (each makes one `/healthz` request, then stays open and idle) and prints the
//! server's memory before, while they are open and after they close.
//!
//! ```text
//! cargo bench --bench api                                   # SQLite and PostgreSQL
//! cargo bench --bench api -- --backend sqlite --seconds 10 --connections 16 --total 200000
//! cargo bench --bench api -- --backend sqlite --idle-connections 19900
//! ```
//! PostgreSQL: a throwaway database on `ROTOR_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use acs_sign::sign;
use sqlx::{Connection, Executor};

struct Options {
    backends: Vec<&'static str>,
    seconds: u64,
    connections: usize,
    total: u64,
    /// Measure memory with this many idle connections instead.
    idle: Option<usize>,
    /// `--api-max-connections` for the server.
    max_connections: Option<usize>,
}

fn options() -> Options {
    let mut o = Options {
        backends: vec!["sqlite", "postgres"],
        seconds: 10,
        connections: 16,
        total: 1_000_000,
        idle: None,
        max_connections: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--backend" => {
                o.backends = match value.as_str() {
                    "sqlite" => vec!["sqlite"],
                    "postgres" => vec!["postgres"],
                    _ => panic!("--backend sqlite|postgres"),
                }
            }
            "--seconds" => o.seconds = value.parse().expect("--seconds N"),
            "--connections" => o.connections = value.parse().expect("--connections N"),
            "--total" => o.total = value.parse().expect("--total N"),
            "--idle-connections" => o.idle = Some(value.parse().expect("--idle-connections N")),
            "--max-connections" => {
                o.max_connections = Some(value.parse().expect("--max-connections N"))
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

fn rotor(dir: &Path, store: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rotor"));
    cmd.env_remove("ROTOR_MASTER_KEY")
        .env("ROTOR_DATA_DIR", dir)
        .env("ROTOR_LOG", "warn");
    match store {
        Some(url) => cmd.env("ROTOR_STORE", url),
        None => cmd.env_remove("ROTOR_STORE"),
    };
    cmd
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("rotor runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Bench {
    http: reqwest::Client,
    base: String,
    key: (String, String),
}

impl Bench {
    /// A signed GetSecretValue (RPC style, HMAC-SHA1: what the SDK sends with v2).
    fn signed_body(&self, nonce: u64) -> String {
        let mut params: Vec<(String, String)> = vec![
            ("Action".into(), "GetSecretValue".into()),
            ("Version".into(), "2016-01-20".into()),
            ("AccessKeyId".into(), self.key.0.clone()),
            ("SignatureMethod".into(), "HMAC-SHA1".into()),
            ("SignatureVersion".into(), "1.0".into()),
            (
                "SignatureNonce".into(),
                format!("bench-{nonce}-{}", std::process::id()),
            ),
            (
                "Timestamp".into(),
                chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            ),
            ("SecretName".into(), "bench/app".into()),
        ];
        let signature = sign::v1_signature(&self.key.1, "POST", &params);
        params.push(("Signature".into(), signature));
        sign::canonical_query(&params)
    }

    /// Runs `connections` clients for `seconds` (or until `limit` requests); returns requests per
    /// second and the p50 and p99 latency in ms.
    async fn run(
        self: &Arc<Self>,
        signed: bool,
        seconds: u64,
        connections: usize,
        limit: u64,
        counter: &Arc<AtomicU64>,
    ) -> (f64, f64, f64) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                let (b, counter) = (self.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    loop {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        if n >= limit || Instant::now() > deadline {
                            break;
                        }
                        let t = Instant::now();
                        let res = if signed {
                            b.http
                                .post(&b.base)
                                .header("content-type", "application/x-www-form-urlencoded")
                                .body(b.signed_body(n))
                                .send()
                                .await
                        } else {
                            b.http.get(format!("{}healthz", b.base)).send().await
                        }
                        .expect("request");
                        let status = res.status();
                        let body = res.bytes().await.expect("body");
                        assert!(status.is_success(), "{}", String::from_utf8_lossy(&body));
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let secs = started.elapsed().as_secs_f64();
        all.sort();
        let pct = |p: f64| {
            all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0
        };
        (all.len() as f64 / secs, pct(0.50), pct(0.99))
    }
}

async fn bench(backend: &str, o: &Options) {
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = match backend {
        "postgres" => {
            let admin = std::env::var("ROTOR_TEST_PG")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let db = format!("rotor_api_bench_{}", std::process::id());
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("PostgreSQL");
            conn.execute(format!("CREATE DATABASE {db}").as_str())
                .await
                .unwrap();
            let (base, _) = admin.rsplit_once('/').unwrap();
            (
                Some(format!("{base}/{db}?sslmode=disable")),
                Some((admin, db)),
            )
        }
        _ => (None, None),
    };
    let data = dir.path().join("data");
    ok(rotor(&data, url.as_deref()).arg("init"));
    ok(rotor(&data, url.as_deref()).args([
        "secret",
        "create",
        "bench/app",
        "--type",
        "Generic",
        "--value",
        &"v".repeat(1024),
    ]));
    let key: serde_json::Value = serde_json::from_str(&ok(rotor(&data, url.as_deref()).args([
        "--json",
        "access-key",
        "create",
        "--name",
        "bench",
        "--allow",
        "GetSecretValue:bench/*",
    ])))
    .unwrap();
    let ca = ok(rotor(&data, url.as_deref()).arg("ca"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = rotor(&data, url.as_deref());
    serve.args(["serve", "--api-listen", &format!("127.0.0.1:{port}")]);
    if let Some(max) = o.max_connections {
        serve.args(["--api-max-connections", &max.to_string()]);
    }
    let server: Child = serve.stdout(Stdio::null()).spawn().unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(n) = o.idle {
        idle_connections(backend, n, port, &ca, server.id()).await;
        stop(server, db).await;
        return;
    }
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .pool_max_idle_per_host(o.connections)
        .build()
        .unwrap();
    let b = Arc::new(Bench {
        http,
        base: format!("https://localhost:{port}/"),
        key: (
            key["AccessKeyId"].as_str().unwrap().into(),
            key["AccessKeySecret"].as_str().unwrap().into(),
        ),
    });
    let counter = Arc::new(AtomicU64::new(0));
    // Warm up, and the memory after 10,000 signed requests.
    b.run(true, 600, o.connections, 10_000, &counter).await;
    let rss_10k = rss_kib(server.id());
    let (get_rps, get_p50, get_p99) = b
        .run(true, o.seconds, o.connections, u64::MAX, &counter)
        .await;
    println!(
        "{backend:8}  GetSecretValue (HTTPS, HMAC-SHA1 check, policy, AES-GCM): {get_rps:8.0} req/s  p50 {get_p50:.2} ms  p99 {get_p99:.2} ms  ({} connections, {} s)",
        o.connections, o.seconds
    );
    // Up to the total in steps, then the memory again.
    let mut steps = vec![];
    loop {
        let done = counter.load(Ordering::Relaxed);
        if done >= o.total {
            break;
        }
        let next = (done + o.total / 5).min(o.total);
        b.run(true, 3600, o.connections, next, &counter).await;
        steps.push(format!("{} KiB at {}k", rss_kib(server.id()), next / 1000));
    }
    println!(
        "{backend:8}  server memory on the way: {}",
        steps.join(", ")
    );
    let rss_total = rss_kib(server.id());
    let (static_rps, static_p50, static_p99) = b
        .run(
            false,
            o.seconds,
            o.connections,
            u64::MAX,
            &Arc::new(AtomicU64::new(0)),
        )
        .await;
    println!(
        "{backend:8}  /healthz (HTTPS, static, same server):                 {static_rps:8.0} req/s  p50 {static_p50:.2} ms  p99 {static_p99:.2} ms  → GetSecretValue at {:.0} % of it",
        100.0 * get_rps / static_rps
    );
    println!(
        "{backend:8}  server memory (VmRSS): {} KiB after 10,000 signed requests, {} KiB after {} ({:+.1} %)",
        rss_10k,
        rss_total,
        counter.load(Ordering::Relaxed).min(o.total),
        100.0 * (rss_total as f64 - rss_10k as f64) / rss_10k as f64
    );
    stop(server, db).await;
}

async fn stop(mut server: Child, db: Option<(String, String)>) {
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let _ = server.wait();
    if let Some((admin, db)) = db {
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        let _ = conn
            .execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str())
            .await;
    }
}

/// Opens `n` TLS connections (each makes one `/healthz` request and stays open), prints the
/// server's memory before, while open and after they close; connections the server refuses
/// (over its cap) are counted.
async fn idle_connections(backend: &str, n: usize, port: u16, ca_pem: &str, pid: u32) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Semaphore;

    // The PEM's base64 body is the certificate's DER.
    let b64: String = ca_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.into()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let before = rss_kib(pid);
    let started = Instant::now();
    let handshakes = Arc::new(Semaphore::new(64));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (connector, handshakes) = (connector.clone(), handshakes.clone());
            tokio::spawn(async move {
                let permit = handshakes.acquire_owned().await.unwrap();
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let mut tls = connector.connect(name, tcp).await?;
                tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
                    .await?;
                let mut buf = [0u8; 1024];
                let got = tls.read(&mut buf).await?;
                drop(permit);
                let head = String::from_utf8_lossy(&buf[..got]).to_string();
                Ok::<_, std::io::Error>((head.starts_with("HTTP/1.1 200"), tls))
            })
        })
        .collect();
    let mut open = Vec::new();
    let (mut refused, mut failed) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok((true, tls)) => open.push(tls),
            Ok((false, _)) => refused += 1,
            Err(_) => failed += 1,
        }
    }
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rss_kib(pid);
    // What the server still holds (it may close idle connections itself).
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let kept = open.len();
    drop(open);
    let (mut after, mut slept) = (Vec::new(), 0);
    for at in [1, 5, 15] {
        tokio::time::sleep(Duration::from_secs(at - slept)).await;
        slept = at;
        after.push(format!("{} KiB after {at} s", rss_kib(pid)));
    }
    println!(
        "{backend:8}  idle TLS connections: {kept} served and open, {refused} refused (503), {failed} failed, opened in {:.1} s",
        opened.as_secs_f64()
    );
    println!(
        "{backend:8}  server memory (VmRSS): {before} KiB before, {during} KiB with them open ({fds} descriptors in the server), after they closed: {}",
        after.join(", ")
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let o = options();
    raise_open_files();
    for backend in o.backends.clone() {
        bench(backend, &o).await;
    }
}

/// Idle connections need a descriptor each, here and in the server (which inherits the limit).
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
