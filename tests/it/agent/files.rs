//! Files from templates (`--once`, then following new versions, an API that goes away), the
//! settings the agent refuses, and the cache endpoint.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::support::Backend;

const ALLOW: [&str; 2] = ["GetSecretValue:app/*", "ListSecretVersionIds:app/*"];

fn template(rig: &Rig) -> String {
    format!(
        "[[template]]\ncontents = \"token={{{{ secret('app/token').value }}}} v={{{{ secret('app/token').VersionId }}}}\\n\"\ndestination = \"{}\"\nmode = \"0640\"\ncommand = \"echo reloaded >> {}\"\n",
        rig.out.join("token.env").display(),
        rig.out.join("reloads").display()
    )
}

fn reloads(rig: &Rig) -> usize {
    std::fs::read_to_string(rig.out.join("reloads"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn put(t: &TestEnv, value: &str) {
    let out = t.run_with_stdin(&["secret", "put", "app/token", "--value-file", "-"], value);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_renders_files_once_and_then_follows_new_versions_through_an_outage() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let mut rig = Rig::start(&t, &ALLOW);
    t.ok(&[
        "secret",
        "create",
        "app/token",
        "--type",
        "Generic",
        "--value",
        "Token-Value-1",
    ]);
    let config = rig.config(&t, "300ms", &template(&rig));
    let file = rig.out.join("token.env");

    // --once: rendered, written with its mode, the command run once, exit 0.
    let out = t
        .rotor()
        .args(["agent", "--once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "token=Token-Value-1 v=v1\n"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(reloads(&rig), 1);
    // Again: nothing changed, nothing written, no command.
    let out = t
        .rotor()
        .args(["agent", "--once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(reloads(&rig), 1);

    let agent = rig.agent(&t, &["--config", config.to_str().unwrap()]);
    put(&t, "Token-Value-2");
    let took = wait_for(
        Duration::from_secs(5),
        "the new version in the file",
        || {
            std::fs::read_to_string(&file)
                .unwrap()
                .contains("Token-Value-2")
        },
    );
    assert!(
        took < Duration::from_millis(1300),
        "poll + 1 s: took {took:?}"
    );
    wait_for(Duration::from_secs(3), "the reload command", || {
        reloads(&rig) == 2
    });

    // The API goes away: the file keeps the last good value; the agent says so and retries.
    rig.stop_worker();
    put(&t, "Token-Value-3");
    std::thread::sleep(Duration::from_secs(2));
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("Token-Value-2"));
    assert!(agent.log().contains("cannot be reached"), "{}", agent.log());
    // Back: the new value arrives after the backoff.
    rig.start_worker(&t);
    wait_for(
        Duration::from_secs(8),
        "the value put during the outage",
        || {
            std::fs::read_to_string(&file)
                .unwrap()
                .contains("Token-Value-3")
        },
    );
    // The command runs once the pass has written every file: wait for it, then no more.
    wait_for(Duration::from_secs(3), "the reload command", || {
        reloads(&rig) == 3
    });
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(reloads(&rig), 3, "one reload per change");
    let (code, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");
    for value in ["Token-Value-1", "Token-Value-2", "Token-Value-3"] {
        assert!(!log.contains(value), "the agent's log shows a value: {log}");
    }
    // No temporary file is left beside the destination.
    let names: Vec<_> = std::fs::read_dir(&rig.out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    rig.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_refuses_unsafe_or_incomplete_settings_and_never_writes_an_empty_file() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let rig = Rig::start(&t, &ALLOW);
    t.ok(&[
        "secret",
        "create",
        "app/token",
        "--type",
        "Generic",
        "--value",
        "Token-Value-1",
    ]);
    let run = |config: &Path| {
        t.rotor()
            .args(["agent", "--once", "--config"])
            .arg(config)
            .output()
            .unwrap()
    };
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // An AccessKey secret others may read.
    std::fs::set_permissions(&rig.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&rig.config(&t, "1s", &template(&rig)));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    std::fs::set_permissions(&rig.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A cache endpoint off loopback, a broken template, an unknown key: exit 2, naming it.
    for (more, says) in [
        (
            "[cache]\nlisten = \"0.0.0.0:2773\"\ntoken_file = \"/nonexistent\"\n",
            "loopback",
        ),
        (
            "[[template]]\ncontents = \"{{ secret(\"\ndestination = \"/tmp/x\"\n",
            "template 1",
        ),
        ("[agent2]\nx = 1\n", "agent2"),
    ] {
        let out = run(&rig.config(&t, "1s", more));
        assert_eq!(out.status.code(), Some(2), "{more}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{more}: {}", stderr(&out));
    }

    // A secret the key may not read: no file at all, a failing exit, the reason logged.
    let file = rig.out.join("other.env");
    let more = format!(
        "[[template]]\ncontents = \"{{{{ secret('other/x').value }}}}\"\ndestination = \"{}\"\n",
        file.display()
    );
    let out = run(&rig.config(&t, "1s", &more));
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Forbidden.NoPermission"),
        "{}",
        stderr(&out)
    );
    assert!(!file.exists());

    // Exec mode: a secret the key may not read ends the agent before the program starts.
    let mut exec = rig.exec_with(
        &t,
        "1s",
        &["--env", "X=other/x", "--", "sh", "-c", "echo started"],
        &[],
    );
    let status = exec.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(status.code(), Some(7), "{}", exec.log());
    assert!(exec.lines().is_empty(), "{:?}", exec.lines());
    rig.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_endpoint_answers_with_the_token_only_and_follows_rotations() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let rig = Rig::start(&t, &ALLOW);
    t.ok(&[
        "secret",
        "create",
        "app/token",
        "--type",
        "Generic",
        "--value",
        "Token-Value-1",
    ]);
    let (agent, listen, token) = rig.cache_agent(&t, "ttl = \"1h\"\n");
    let http = reqwest::Client::new();
    let url = format!("http://{listen}/v1/secret?SecretName=app/token");
    let get = |token: Option<&str>, forwarded: bool| {
        let mut req = http.get(&url);
        if let Some(t) = token {
            req = req.header("X-Rotor-Token", t);
        }
        if forwarded {
            req = req.header("X-Forwarded-For", "10.0.0.1");
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let text = res.text().await.unwrap();
            (
                status,
                serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            )
        }
    };
    assert_eq!(get(None, false).await.0, 403);
    assert_eq!(get(Some("wrong-token-wrong-token"), false).await.0, 403);
    assert_eq!(get(Some(&token), true).await.0, 400);
    let (status, body) = get(Some(&token), false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["SecretData"], "Token-Value-1");
    assert_eq!(body["VersionId"], "v1");
    assert_eq!(body["VersionStages"]["VersionStage"][0], "ACSCurrent");
    // A new version is served within the poll (+ 1 s), though the TTL is an hour.
    put(&t, "Token-Value-2");
    let deadline = Instant::now() + Duration::from_millis(1300);
    loop {
        let (_, body) = get(Some(&token), false).await;
        if body["SecretData"] == "Token-Value-2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache still serves {}",
            body["VersionId"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A secret the key may not read: the API's refusal, in the KMS shape.
    let (status, body) = async {
        let res = http
            .get(format!("http://{listen}/v1/secret?SecretName=other/x"))
            .header("X-Rotor-Token", &token)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        )
    }
    .await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (403, Some("Forbidden.NoPermission")),
        "{body}"
    );
    let (code, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        !log.contains("Token-Value") && !log.contains(&token),
        "{log}"
    );
    rig.stop();
}

/// `ROTOR_CONFIG` names rotor's own configuration; exported on a host that runs both, it is not
/// read as the agent's file: the agent takes `--config` or `ROTOR_AGENT_CONFIG`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reads_its_own_config_never_rotor_config() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let rig = Rig::start(&t, &ALLOW);
    t.ok(&[
        "secret",
        "create",
        "app/token",
        "--type",
        "Generic",
        "--value",
        "Token-Value-1",
    ]);
    let agent_config = rig.config(&t, "1s", &template(&rig));
    // rotor's own configuration: a valid rotor.toml, not an agent file.
    let rotor_config = t.dir.path().join("rotor-own.toml");
    std::fs::write(&rotor_config, "[worker]\nverify_interval = \"1h\"\n").unwrap();
    let file = rig.out.join("token.env");
    let once = |args: &[&str], env: &[(&str, &Path)]| {
        let _ = std::fs::remove_file(&file);
        let mut cmd = t.rotor();
        cmd.args(["agent", "--once"]).args(args);
        cmd.envs(env.iter().copied());
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let agent_config_text = agent_config.to_str().unwrap();

    // ROTOR_AGENT_CONFIG with ROTOR_CONFIG exported: the agent's file is read, rotor's is not.
    let (code, log) = once(
        &[],
        &[
            ("ROTOR_CONFIG", &rotor_config),
            ("ROTOR_AGENT_CONFIG", &agent_config),
        ],
    );
    assert_eq!(code, Some(0), "{log}");
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("Token-Value-1"));
    // --config wins over both.
    let (code, log) = once(
        &["--config", agent_config_text],
        &[
            ("ROTOR_CONFIG", &rotor_config),
            ("ROTOR_AGENT_CONFIG", &rotor_config),
        ],
    );
    assert_eq!(code, Some(0), "{log}");
    assert!(file.exists());
    // ROTOR_CONFIG alone names no agent file: the agent has only the environment, which gives
    // no endpoint — it says so, not something about rotor.toml's [worker].
    let (code, log) = once(&[], &[("ROTOR_CONFIG", &agent_config)]);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("the agent needs an endpoint"), "{log}");
    assert!(!file.exists());
    rig.stop();
}

/// `GET /v1/secret` over a Unix socket: status and body.
fn unix_get(socket: &Path, token: Option<&str>) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    let header = token.map_or(String::new(), |t| format!("X-Rotor-Token: {t}\r\n"));
    write!(
        stream,
        "GET /v1/secret?SecretName=app/token HTTP/1.1\r\nHost: localhost\r\n{header}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// `[cache] socket = PATH`: the endpoint on a Unix socket, owner-only (0600), the token still
/// required; a stale socket is replaced, a live one or another file refused; removed at exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_endpoint_on_a_unix_socket_is_owner_only_and_still_wants_the_token() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let rig = Rig::start(&t, &ALLOW);
    t.ok(&[
        "secret",
        "create",
        "app/token",
        "--type",
        "Generic",
        "--value",
        "Token-Value-1",
    ]);
    let token_file = t.dir.path().join("cache.token");
    let token = rotor::crypto::random_id();
    private_file(&token_file, &token);
    let socket = t.dir.path().join("cache.sock");
    // A stale socket, as an agent that died leaves it: replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let config = rig.config(
        &t,
        "300ms",
        &format!(
            "[cache]\nsocket = \"{}\"\ntoken_file = \"{}\"\n",
            socket.display(),
            token_file.display()
        ),
    );
    let agent = rig.agent(&t, &["--config", config.to_str().unwrap()]);
    wait_for(Duration::from_secs(10), "the cache socket", || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket is owner-only");
    assert_eq!(unix_get(&socket, None).0, 403);
    assert_eq!(unix_get(&socket, Some("wrong-token-wrong-token")).0, 403);
    let (status, body) = unix_get(&socket, Some(&token));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["SecretData"], "Token-Value-1");

    // A second agent on the same socket is refused (the first one answers); so is a path that
    // is not a socket, and a [cache] with both listen and socket.
    let run = |more: &str| {
        let out = t
            .rotor()
            .args(["agent", "--config"])
            .arg(rig.config(&t, "1s", more))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let with = |path: &Path| {
        format!(
            "[cache]\nsocket = \"{}\"\ntoken_file = \"{}\"\n",
            path.display(),
            token_file.display()
        )
    };
    let (code, log) = run(&with(&socket));
    assert_ne!(code, Some(0), "{log}");
    assert!(log.contains("in use"), "{log}");
    let plain = t.dir.path().join("plain-file");
    std::fs::write(&plain, "x").unwrap();
    let (code, log) = run(&with(&plain));
    assert_ne!(code, Some(0), "{log}");
    assert!(log.contains("not a socket"), "{log}");
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "x");
    let (code, log) = run(&format!(
        "[cache]\nlisten = \"127.0.0.1:{}\"\nsocket = \"{}\"\ntoken_file = \"{}\"\n",
        free_port(),
        socket.display(),
        token_file.display()
    ));
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("one of listen"), "{log}");

    let (code, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(!socket.exists(), "the socket is removed at exit");
    assert!(!log.contains("Token-Value-1"));
    rig.stop();
}
