//! Console changes checked on the server, over plain HTTP on loopback with raw requests: a
//! Generic secret's new version and stage moves (roll back included) go through the store's
//! put and stage, audited as `console:USER`, refusals next to their fields; and two rotate-now
//! requests racing for one dual-account PostgreSQL secret, whose target is behind the test
//! kit's holding proxy (the first rotation's `ALTER ROLE` held on the wire) so that the first
//! rotation is still running when the second asks: exactly one rotation, and the loser told at
//! once that another driver is rotating the secret.

use serde_json::Value;

use crate::api::{serve, stop};
use crate::console_hostile::{csrf, header, make_user, request, sign_in, status};
use crate::databases::{self, create_rds, Pg};
use crate::proxy::Proxy;
use crate::support::{Backend, TestEnv};

/// The stages of each version, from `rotor secret versions`.
fn stages(t: &TestEnv, name: &str) -> Vec<(String, Vec<String>)> {
    let versions = t.json(&["secret", "versions", name]);
    versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let stages = v["VersionStages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect();
            (v["VersionId"].as_str().unwrap().to_owned(), stages)
        })
        .collect()
}

fn holds(t: &TestEnv, name: &str, version: &str, stage: &str) -> bool {
    stages(t, name)
        .iter()
        .any(|(v, s)| v == version && s.iter().any(|s| s == stage))
}

/// Audit records of `action` on `secret` by `actor`.
fn audited(t: &TestEnv, action: &str, secret: &str, actor: &str) -> usize {
    let audit: Value = t.json(&["audit", "--secret", secret, "--action", action]);
    audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["Actor"] == actor)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_versions_are_put_and_staged_from_the_console() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    t.ok(&[
        "secret", "create", "app/gen", "--type", "Generic", "--value", "first",
    ]);
    make_user(&t, "ops", "ops-password-1234", "*:*");
    make_user(&t, "reader", "reader-password-1234", "DescribeSecret:*");
    let (server, addr) = serve(&t, &["--api-plain-http"]);
    let cookie = sign_in(&addr, "ops", "ops-password-1234");
    let page = request(
        &addr,
        "GET",
        "/console/secret?name=app%2Fgen",
        Some(&cookie),
        "",
    );
    assert!(page.contains("id=\"put-value\""), "{page}");
    let token = csrf(&page);
    let post = |path: &str, form: &str| request(&addr, "POST", path, Some(&cookie), form);

    // A new version, v2, ACSCurrent; v1 ACSPrevious.
    let put = post(
        "/console/secret/put",
        &format!("_csrf={token}&name=app%2Fgen&value=second+value&version_id=v2"),
    );
    assert_eq!(status(&put), "303", "{put}");
    let back = header(&put, "location").unwrap().to_owned();
    assert!(back.ends_with("&notice=put"), "{back}");
    let page = request(&addr, "GET", &back, Some(&cookie), "");
    assert!(
        page.contains("New version stored: version v2 is ACSCurrent."),
        "{page}"
    );
    assert!(holds(&t, "app/gen", "v2", "ACSCurrent") && holds(&t, "app/gen", "v1", "ACSPrevious"));
    assert_eq!(
        t.json(&["secret", "get", "app/gen"])["SecretData"],
        "second value"
    );
    // A bad version id: the CLI's message next to its field; nothing stored.
    let bad = post(
        "/console/secret/put",
        &format!("_csrf={token}&name=app%2Fgen&value=third&version_id=bad+id%21"),
    );
    assert_eq!(status(&bad), "422", "{bad}");
    assert!(bad.contains("data-field=\"version_id\""), "{bad}");
    assert_eq!(stages(&t, "app/gen").len(), 2);

    // Roll back: ACSCurrent moved to the ACSPrevious version, as `rotor secret stage`.
    let page = request(
        &addr,
        "GET",
        "/console/secret?name=app%2Fgen",
        Some(&cookie),
        "",
    );
    assert!(page.contains("id=\"generic-rollback\""), "{page}");
    let rolled = post(
        "/console/secret/stage",
        &format!("_csrf={token}&name=app%2Fgen&stage=ACSCurrent&move_to=v1&remove_from="),
    );
    assert_eq!(status(&rolled), "303", "{rolled}");
    assert!(holds(&t, "app/gen", "v1", "ACSCurrent") && holds(&t, "app/gen", "v2", "ACSPrevious"));
    // A custom stage; a reserved one refused next to the stage field.
    let custom = post(
        "/console/secret/stage",
        &format!("_csrf={token}&name=app%2Fgen&stage=blue&move_to=v2"),
    );
    assert_eq!(status(&custom), "303", "{custom}");
    assert!(holds(&t, "app/gen", "v2", "blue"));
    let reserved = post(
        "/console/secret/stage",
        &format!("_csrf={token}&name=app%2Fgen&stage=ACSMine&move_to=v2"),
    );
    assert_eq!(status(&reserved), "422", "{reserved}");
    assert!(
        reserved.contains("data-field=\"stage\"") && reserved.contains("reserved"),
        "{reserved}"
    );

    // Audited as console:ops.
    assert_eq!(audited(&t, "secret.put", "app/gen", "console:ops"), 1);
    assert_eq!(audited(&t, "secret.stage", "app/gen", "console:ops"), 2);

    // A user whose rules do not allow PutSecretValue neither sees the panel nor may post.
    let reader = sign_in(&addr, "reader", "reader-password-1234");
    let page = request(
        &addr,
        "GET",
        "/console/secret?name=app%2Fgen",
        Some(&reader),
        "",
    );
    assert!(!page.contains("id=\"put-value\""), "{page}");
    let refused = request(
        &addr,
        "POST",
        "/console/secret/put",
        Some(&reader),
        &format!("_csrf={}&name=app%2Fgen&value=x", csrf(&page)),
    );
    assert_eq!(status(&refused), "403", "{refused}");
    assert_eq!(stages(&t, "app/gen").len(), 2);
    stop(server);
}

/// The run id in a rotate-now answer's redirect.
fn run_of(answer: &str) -> Option<String> {
    let location = header(answer, "location")?;
    Some(location.split("run=").nth(1)?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_racing_rotate_now_requests_rotate_once() {
    let pg = Pg::new().await;
    let t = &pg.t;
    let account = pg.name("race");
    // The target behind the test kit's holding proxy, without TLS so that it sees statements.
    let proxy = Proxy::start(&format!("127.0.0.1:{}", databases::scram_port())).await;
    let url = format!(
        "postgres://127.0.0.1:{}/postgres?sslmode=disable",
        proxy.port
    );
    let admin_password = databases::scram_url()
        .split(':')
        .nth(2)
        .and_then(|s| s.split('@').next())
        .unwrap()
        .to_owned();
    let added = pg.add_target("pg-held", &url, "postgres", &admin_password);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    t.ok(&create_rds(
        "db/race",
        "pg-held",
        &["--account", &account, "--database", &pg.db],
    ));
    let before = stages(t, "db/race").len();
    for user in ["alice", "bob"] {
        make_user(t, user, &format!("{user}-password-1234"), "*:db/*");
    }
    let (server, addr) = serve(t, &["--api-plain-http"]);
    let clients: Vec<(String, String)> = ["alice", "bob"]
        .iter()
        .map(|user| {
            let cookie = sign_in(&addr, user, &format!("{user}-password-1234"));
            let page = request(
                &addr,
                "GET",
                "/console/secret?name=db%2Frace",
                Some(&cookie),
                "",
            );
            let token = csrf(&page);
            (cookie, token)
        })
        .collect();

    // Hold the target: the first rotation's `set` (ALTER ROLE … PASSWORD) stays on the wire,
    // so that rotation is still in its steps when the second request asks.
    proxy.hold_on("ALTER ROLE");

    // Two clients, each on its own connection and session, at once.
    let barrier = std::sync::Barrier::new(2);
    let answers: Vec<String> = std::thread::scope(|s| {
        let sent: Vec<_> = clients
            .iter()
            .map(|(cookie, token)| {
                let (addr, barrier) = (&addr, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    request(
                        addr,
                        "POST",
                        "/console/secret/rotate",
                        Some(cookie),
                        &format!("_csrf={token}&name=db%2Frace"),
                    )
                })
            })
            .collect();
        sent.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Both answered while the target is still held: the loser did not wait for the winner.
    let winners: Vec<usize> = (0..2).filter(|&i| status(&answers[i]) == "303").collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one rotation starts: {answers:#?}"
    );
    let (winner, loser) = (winners[0], 1 - winners[0]);
    assert_eq!(status(&answers[loser]), "409", "{}", answers[loser]);
    assert!(
        answers[loser].contains("is being rotated by another driver"),
        "{}",
        answers[loser]
    );
    assert!(run_of(&answers[loser]).is_none());
    let run = run_of(&answers[winner]).expect("the winner's run");
    // The winner's rotation is in its steps, its write held at the target: the windows overlap.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while proxy.held_bytes() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotation's set never reached the target"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let early = t.json(&[
        "audit",
        "--secret",
        "db/race",
        "--action",
        "rotation.finish",
    ]);
    assert_eq!(early.as_array().unwrap().len(), 0, "{early}");

    // Let the write through; the winner's stream shows its steps and the outcome.
    proxy.release();
    let (cookie, _) = &clients[winner];
    let events = tokio::task::spawn_blocking({
        let (addr, cookie) = (addr.clone(), cookie.clone());
        move || {
            request(
                &addr,
                "GET",
                &format!("/console/runs/{run}/events"),
                Some(&cookie),
                "",
            )
        }
    })
    .await
    .unwrap();
    assert!(events.contains("\"result\":\"rotated\""), "{events}");
    for step in ["create", "set", "test", "finish"] {
        assert!(
            events.contains(&format!("\"step\":\"{step}\"")),
            "{step}: {events}"
        );
    }

    // One rotation in the audit log, by the winner.
    let users = ["alice", "bob"];
    let audit: Value = t.json(&[
        "audit",
        "--secret",
        "db/race",
        "--action",
        "rotation.finish",
    ]);
    let finished: Vec<&Value> = audit.as_array().unwrap().iter().collect();
    assert_eq!(finished.len(), 1, "{audit}");
    assert_eq!(
        finished[0]["Actor"],
        format!("console:{}", users[winner]),
        "{audit}"
    );
    let created = audited(
        t,
        "rotation.create",
        "db/race",
        &format!("console:{}", users[loser]),
    );
    assert_eq!(created, 0, "the loser started nothing");
    let versions = stages(t, "db/race");
    assert_eq!(versions.len(), before + 1, "one new version: {versions:?}");
    // And the new current logs in.
    let current = t.json(&["secret", "get", "db/race"]);
    let data: Value = serde_json::from_str(current["SecretData"].as_str().unwrap()).unwrap();
    let login = (
        data["AccountName"].as_str().unwrap().to_owned(),
        data["AccountPassword"].as_str().unwrap().to_owned(),
    );
    assert_eq!(pg.login(&login).await.unwrap(), login.0);
    stop(server);
    pg.cleanup_dual(&account).await;
}
