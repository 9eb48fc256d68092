//! Operations details (issue 24, points 6 and 8): the audit log names who asked for a manual
//! rotation (`cli:USER`, `api:KEY`) with the lease holder in the detail, while a worker's
//! rotations stay `worker:…`; `rotor serve` has its own metrics setting; every counter is
//! exported at zero from the start; webhooks carry `VersionId` on every attempt, keep one
//! secret's notices in order, and never announce a failed secret as due soon.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::api::{access_key, free_port, serve, stop, Client, Signing};
use crate::databases::{add_target, redis_admin, redis_url};
use crate::operations::{write_private, Receiver};
use crate::support::{Backend, TestEnv};
use crate::workers::{
    ecs_secret, sample, scrape, spawn_worker, terminate, testkit_ok, wait_rotated,
};

fn rotation_records(t: &TestEnv, secret: &str) -> Vec<Value> {
    t.json(&["audit", "--secret", secret, "--action", "rotation"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["Action"] != "rotation.policy")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_rotations_are_audited_as_who_asked_and_a_workers_as_the_worker() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let hosts = tempfile::tempdir().unwrap();
    let hosts = hosts.path();
    testkit_ok(&t, hosts, &["init"]);
    ecs_secret(&t, hosts, "by-hand");
    ecs_secret(&t, hosts, "by-worker");
    testkit_ok(&t, hosts, &["rotate", "by-hand"]);
    let created = t.json(&["audit", "--secret", "by-hand", "--action", "secret.create"]);
    let user = created[0]["Actor"].as_str().unwrap().to_owned();
    assert!(user.starts_with("cli:"), "{user}");
    let manual = rotation_records(&t, "by-hand");
    assert_eq!(manual.len(), 5, "{manual:#?}");
    for r in &manual {
        assert_eq!(r["Actor"], user.as_str(), "{r}");
        let detail = r["Detail"].as_str().unwrap();
        assert!(detail.contains("lease worker:"), "{r}");
    }

    testkit_ok(
        &t,
        hosts,
        &[
            "rotation",
            "set",
            "by-worker",
            "--interval",
            "1d",
            "--rotate-now",
        ],
    );
    let mut worker = spawn_worker(&t, hosts, None, &[]);
    wait_rotated(&t.store().await, "by-worker", Duration::from_secs(30)).await;
    terminate(&mut worker);
    let scheduled = rotation_records(&t, "by-worker");
    assert!(!scheduled.is_empty());
    for r in &scheduled {
        assert!(r["Actor"].as_str().unwrap().starts_with("worker:"), "{r}");
        assert!(
            !r["Detail"].as_str().unwrap_or_default().contains("lease"),
            "{r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_rotation_is_audited_as_its_access_key() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    let out = add_target(&t, "red", "redis", &redis_url(), "default", "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user = format!("aud_{}", &rotor::crypto::random_id()[..8]);
    t.ok(&[
        "secret",
        "create",
        "cache/audited",
        "--type",
        "Redis",
        "--target",
        "red",
        "--account",
        &user,
    ]);
    let key = access_key(&t, "rotator", &["RotateSecret:cache/*"]);
    let (server, addr) = serve(&t, &[]);
    let client = Client::new(&t, &addr);
    let (status, body) = client
        .v1(
            &Signing::new(&key),
            "RotateSecret",
            &[("SecretName", "cache/audited")],
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    stop(server);
    let records = rotation_records(&t, "cache/audited");
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r["Actor"], format!("api:{}", key.0).as_str(), "{r}");
        assert!(
            r["Detail"].as_str().unwrap().contains("lease worker:"),
            "{r}"
        );
    }
    let _: () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .arg(format!("{user}_clone"))
        .query_async(&mut redis_admin().await)
        .await
        .unwrap();
}

fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_and_a_server_share_one_configuration_and_counters_start_at_zero() {
    let t = TestEnv::new(Backend::Postgres).await;
    t.ok(&["init"]);
    let (worker_addr, server_addr) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    write_private(
        &t.data_dir().join("rotor.toml"),
        &format!(
            "[worker]\nmetrics_listen = \"{worker_addr}\"\n\n[server]\nmetrics_listen = \"{server_addr}\"\n"
        ),
        0o600,
    );
    let mut worker = t
        .rotor()
        .args(["worker", "--poll", "100ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(&worker_addr);
    let (server, _api) = serve(&t, &["--api-plain-http"]);
    wait_listening(&server_addr);
    let api_ok = sample(
        &scrape(&server_addr),
        "rotor_api_requests_total",
        &[("action", "GetSecretValue"), ("code", "OK")],
    );
    assert_eq!(api_ok, Some(0.0), "the API's counters start at zero");
    for addr in [&worker_addr, &server_addr] {
        let scraped = scrape(addr);
        for counter in ["rotor_lease_takeovers_total", "rotor_store_errors_total"] {
            assert_eq!(
                sample(&scraped, counter, &[]),
                Some(0.0),
                "{counter} at {addr}"
            );
        }
        for result in ["rotated", "retrying", "failed"] {
            assert_eq!(
                sample(
                    &scraped,
                    "rotor_rotations_total",
                    &[("family", "database"), ("type", "Rds"), ("result", result)]
                ),
                Some(0.0),
                "{result} at {addr}"
            );
        }
    }
    stop(server);
    terminate(&mut worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_carry_the_version_keep_each_secrets_order_and_skip_failed_secrets() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let hosts = tempfile::tempdir().unwrap();
    let hosts = hosts.path();
    testkit_ok(&t, hosts, &["init"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // The first request (the failed attempt's rotation_failed) is refused and retried a
    // second later: secret_failed must still come after it.
    let hook = Receiver::start(listener, 1).await;
    write_private(
        &t.data_dir().join("rotor.toml"),
        &format!(
            "[[webhook]]\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"Ops-Hook-Key-0123456789\"\ndue_soon = \"2d\"\n"
        ),
        0o600,
    );
    ecs_secret(&t, hosts, "wh-fail");
    testkit_ok(
        &t,
        hosts,
        &[
            "rotation",
            "set",
            "wh-fail",
            "--interval",
            "1d",
            "--rotate-now",
        ],
    );
    let mut worker = spawn_worker(&t, hosts, Some("test:fatal"), &[]);
    let failed = hook
        .wait_for("secret_failed", "wh-fail", Duration::from_secs(30))
        .await;
    terminate(&mut worker);
    let order: Vec<String> = hook
        .accepted()
        .iter()
        .filter(|d| d.json()["SecretName"] == "wh-fail")
        .map(|d| d.event.clone())
        .collect();
    assert_eq!(order, ["rotation_failed", "secret_failed"], "in order");
    assert_eq!(failed.json()["VersionId"], "v2");

    // A failed secret is not announced as due soon; a healthy one is.
    ecs_secret(&t, hosts, "wh-soon");
    testkit_ok(
        &t,
        hosts,
        &["rotation", "set", "wh-soon", "--interval", "1d"],
    );
    let mut worker = spawn_worker(&t, hosts, None, &[]);
    hook.wait_for("secret_due_soon", "wh-soon", Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    terminate(&mut worker);
    assert!(
        !hook
            .accepted()
            .iter()
            .any(|d| d.event == "secret_due_soon" && d.json()["SecretName"] == "wh-fail"),
        "a failed secret was announced as due soon"
    );

    // A failed attempt that is retried names the version it tried.
    ecs_secret(&t, hosts, "wh-retry");
    testkit_ok(
        &t,
        hosts,
        &[
            "rotation",
            "set",
            "wh-retry",
            "--interval",
            "1d",
            "--rotate-now",
        ],
    );
    let mut worker = spawn_worker(&t, hosts, Some("set:fail:1"), &["--backoff-base", "1s"]);
    let retried = hook
        .wait_for("rotation_failed", "wh-retry", Duration::from_secs(30))
        .await;
    hook.wait_for("rotation_succeeded", "wh-retry", Duration::from_secs(30))
        .await;
    terminate(&mut worker);
    assert_eq!(retried.json()["Attempts"], 1);
    assert_eq!(retried.json()["VersionId"], "v2", "{:?}", retried.json());
}
