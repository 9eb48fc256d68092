//! What a hostile user on the application host could do to the agent: another user's (or a
//! shared) directory for a destination or a template source, a template others may edit, an
//! endpoint that redirects, signals other than TERM in exec mode, and the cache endpoint flooded
//! with unknown names or half-sent requests.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::support::Backend;

const ALLOW: [&str; 2] = ["GetSecretValue:app/*", "ListSecretVersionIds:app/*"];
/// The `nobody` user and group.
const NOBODY: u32 = 65534;

fn create(t: &TestEnv, name: &str, value: &str) {
    t.ok(&[
        "secret", "create", name, "--type", "Generic", "--value", value,
    ]);
}

fn once(t: &TestEnv, config: &Path) -> (Option<i32>, String) {
    let out = t
        .rotor()
        .args(["agent", "--once", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dir_owned(path: &Path, uid: u32, mode: u32) {
    std::fs::create_dir(path).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A destination in a directory another user owns, or others may write, is refused (its owner
/// could swap the temporary file under the agent); in a directory of the agent's own it is
/// written with its mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_refuses_destinations_in_directories_others_can_change() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let rig = Rig::start(&t, &ALLOW);
    create(&t, "app/dest", "Dest-Value-1");
    let theirs = t.dir.path().join("nobodys");
    dir_owned(&theirs, NOBODY, 0o755);
    let shared = t.dir.path().join("shared");
    dir_owned(&shared, 0, 0o775);
    for dir in [&theirs, &shared] {
        let file = dir.join("app.env");
        let config = rig.config(
            &t,
            "1s",
            &format!(
                "[[template]]\ncontents = \"{{{{ secret('app/dest').value }}}}\"\ndestination = \"{}\"\nmode = \"0644\"\n",
                file.display()
            ),
        );
        let (code, log) = once(&t, &config);
        assert_eq!(code, Some(7), "{}: {log}", dir.display());
        assert!(log.contains(dir.to_str().unwrap()), "{log}");
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            0,
            "nothing written"
        );
    }
    let file = rig.out.join("app.env");
    let config = rig.config(
        &t,
        "1s",
        &format!(
            "[[template]]\ncontents = \"{{{{ secret('app/dest').value }}}}\"\ndestination = \"{}\"\nmode = \"0644\"\n",
            file.display()
        ),
    );
    let (code, log) = once(&t, &config);
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "Dest-Value-1");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    rig.stop();
}

/// A template source others may write, another user's, a symlink, or in another user's
/// directory is refused at start: whoever could change it could make the agent render any
/// secret it may read, or any file root may read, into the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_refuses_template_sources_others_can_change() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let rig = Rig::start(&t, &ALLOW);
    create(&t, "app/src", "Src-Value-1");
    let text = "V={{ secret('app/src').value }}\n";
    let dest = rig.out.join("src.env");
    let config_for = |source: &Path| {
        rig.config(
            &t,
            "1s",
            &format!(
                "[[template]]\nsource = \"{}\"\ndestination = \"{}\"\n",
                source.display(),
                dest.display()
            ),
        )
    };
    let sources = t.dir.path().join("sources");
    dir_owned(&sources, 0, 0o755);
    // Writable by others.
    let open = sources.join("open.tmpl");
    std::fs::write(&open, text).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).unwrap();
    // Another user's.
    let theirs = sources.join("theirs.tmpl");
    std::fs::write(&theirs, text).unwrap();
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    // A symlink (to a file root may read).
    let link = sources.join("link.tmpl");
    std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
    // A file of root's in another user's directory.
    let nobodys = t.dir.path().join("nobodys-sources");
    dir_owned(&nobodys, NOBODY, 0o755);
    let inside = nobodys.join("inside.tmpl");
    std::fs::write(&inside, text).unwrap();
    for (source, says) in [
        (&open, "writable by others"),
        (&theirs, "belongs to uid 65534"),
        (&link, "symlink"),
        (&inside, "nobodys-sources"),
    ] {
        let (code, log) = once(&t, &config_for(source));
        assert_eq!(code, Some(1), "{}: {log}", source.display());
        assert!(log.contains(says), "{}: {log}", source.display());
        assert!(!dest.exists(), "{}", source.display());
    }
    // The agent's own, not writable by others: rendered.
    let good = sources.join("good.tmpl");
    std::fs::write(&good, text).unwrap();
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, log) = once(&t, &config_for(&good));
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "V=Src-Value-1\n");
    rig.stop();
}

/// A plain HTTP server on loopback answering every request with `answer`, forever.
fn http_server(answer: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
    addr
}

/// An endpoint answering `302` to another server is an error: the redirect is not followed, the
/// value there never rendered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_follows_no_redirect() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let body = r#"{"SecretName":"app/x","SecretType":"Generic","SecretData":"Redirected-Value","SecretDataType":"text","VersionId":"v9","VersionStages":{"VersionStage":["ACSCurrent"]},"RequestId":"r"}"#;
    let elsewhere = http_server(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    let endpoint = http_server(format!(
        "HTTP/1.1 302 Found\r\nLocation: http://{elsewhere}/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ));
    let (config, dest) = fake_api_agent(&t, "redirect", &endpoint);
    let (code, log) = once(&t, &config);
    assert_eq!(code, Some(7), "{log}");
    assert!(log.contains("302"), "{log}");
    assert!(!dest.exists(), "the redirected value was rendered");
}

/// A `VersionId` holding a newline and an escape (a forged log line) is refused, never logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_refuses_version_ids_with_control_characters() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let body = r#"{"SecretName":"app/x","SecretType":"Generic","SecretData":"Forged-Value","SecretDataType":"text","VersionId":"v1\n2026-01-01T00:00:00Z  INFO forged\u001b[2J","VersionStages":{"VersionStage":["ACSCurrent"]},"RequestId":"r"}"#;
    let endpoint = http_server(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    let (config, dest) = fake_api_agent(&t, "forged", &endpoint);
    let (code, log) = once(&t, &config);
    assert_eq!(code, Some(7), "{log}");
    assert!(
        !log.contains("INFO forged") && !log.contains('\u{1b}'),
        "{log}"
    );
    assert!(!dest.exists());
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// In exec mode, SIGHUP (like USR1, USR2, QUIT, ALRM) to the agent stops the program the way
/// TERM does, and the agent exits: the program is never left running on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_mode_stops_the_program_on_hup_and_never_leaves_it_running() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let rig = Rig::start(&t, &ALLOW);
    create(&t, "app/exec", "Exec-Value-1");
    for sig in [libc::SIGHUP, libc::SIGUSR1, libc::SIGALRM] {
        let mut exec = rig.exec_with(
            &t,
            "1s",
            &[
                "--env",
                "V=app/exec",
                "--grace",
                "2s",
                "--",
                "sh",
                "-c",
                "echo $$; exec sleep 600",
            ],
            &[],
        );
        wait_for(Duration::from_secs(10), "the program", || {
            !exec.lines().is_empty()
        });
        let pid: i32 = exec.lines()[0].parse().unwrap();
        assert!(alive(pid));
        signal(&exec.child, sig);
        let status = exec.child.wait().unwrap();
        let left = alive(pid);
        if left {
            // SAFETY: as above; the orphan is not left behind by the test either.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        assert!(!left, "signal {sig}: the program runs on without the agent");
        assert_eq!(
            status.code(),
            Some(128 + libc::SIGTERM),
            "signal {sig}: {}",
            exec.log()
        );
    }
    rig.stop();
}

/// In exec mode the program gets the variables `--env` names and none of the agent's own
/// `ROTOR_…` settings (a master key or rotor's config in the agent's environment, its key file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_mode_hands_the_program_none_of_the_agents_rotor_settings() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let rig = Rig::start(&t, &ALLOW);
    create(&t, "app/env", "Env-Value-1");
    let mut exec = rig.exec_with(
        &t,
        "1s",
        &[
            "--env",
            "V=app/env",
            "--",
            "sh",
            "-c",
            "echo $$; env; echo END; exec sleep 600",
        ],
        &[
            ("ROTOR_MASTER_KEY", "not-for-the-program"),
            ("ROTOR_CONFIG", "/nonexistent/rotor.toml"),
        ],
    );
    wait_for(Duration::from_secs(10), "the program's environment", || {
        exec.lines().iter().any(|l| l == "END")
    });
    let lines = exec.lines();
    let pid: i32 = lines[0].parse().unwrap();
    signal(&exec.child, libc::SIGTERM);
    exec.child.wait().unwrap();
    if alive(pid) {
        // SAFETY: kill(2) on a pid this test's program printed; no memory is touched.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    rig.stop();
    assert!(
        lines.iter().any(|l| l == "V=Env-Value-1"),
        "the program did not get V: {}",
        exec.log()
    );
    let leaked: Vec<&String> = lines.iter().filter(|l| l.starts_with("ROTOR_")).collect();
    assert!(leaked.is_empty(), "the program inherited {leaked:?}");
}

/// The cache endpoint does not watch what it could not read (a name asked for that does not
/// exist is not polled afterwards), and neither half-sent requests nor a flood of connections
/// hold it: over the cap a connection is closed at once, and one whose headers never end is
/// closed after the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_endpoint_watches_only_what_it_read_and_bounds_connections() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let rig = Rig::start(&t, &ALLOW);
    create(&t, "app/cached", "Cached-Value-1");
    let (agent, listen, token) = rig.cache_agent(&t, "");
    let http = reqwest::Client::new();
    let get = |name: &str| {
        let req = http
            .get(format!("http://{listen}/v1/secret?SecretName={name}"))
            .header("X-Rotor-Token", &token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("app/cached").await, 200);
    assert_eq!(get("app/later").await, 404);
    // Created afterwards: an agent that still polled the name would read it now.
    create(&t, "app/later", "Later-Value-1");
    std::thread::sleep(Duration::from_millis(1500));
    let polled = agent
        .log()
        .lines()
        .any(|l| l.contains("app/later") && l.contains("new version"));
    assert!(
        !polled,
        "a name that was not found is still polled: {}",
        agent.log()
    );

    // Connections whose headers never end, more than the cap.
    let extra = 40;
    let mut held: Vec<std::net::TcpStream> = (0..rotor::agent::cache::MAX_CONNECTIONS + extra)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&listen).unwrap();
            s.write_all(b"GET /v1/secret?SecretName=app/cached HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // Closed by the agent: the end of the stream (or a reset), never a timeout.
    let closed = |held: &mut Vec<std::net::TcpStream>| {
        held.iter_mut()
            .filter_map(|s| {
                s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
                let done = match s.read(&mut [0u8; 256]) {
                    Ok(_) => true,
                    Err(e) => !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                };
                done.then_some(())
            })
            .count()
    };
    std::thread::sleep(Duration::from_millis(500));
    let early = closed(&mut held);
    assert!(
        early >= extra,
        "{early} of the connections over the cap were closed"
    );
    let timeout = rotor::agent::cache::HEADER_TIMEOUT;
    wait_for(
        timeout + Duration::from_secs(5),
        "every half-sent request closed",
        || closed(&mut held) == held.len(),
    );
    drop(held);
    assert_eq!(get("app/cached").await, 200);
    let (code, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");
    rig.stop();
}

/// An agent file (`NAME.toml`) for a fake API at `endpoint` (plain HTTP on loopback) with one
/// template of `app/x`'s value into `NAME.env`; the config's path and the destination's.
fn fake_api_agent(
    t: &TestEnv,
    name: &str,
    endpoint: &impl std::fmt::Display,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let key_file = t.dir.path().join(format!("{name}.key"));
    private_file(&key_file, "not-a-real-secret-0000");
    let dest = t.dir.path().join(format!("{name}.env"));
    let config = t.dir.path().join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[agent]\nendpoint = \"http://{endpoint}\"\naccess_key_id = \"LTAI{name}\"\naccess_key_secret_file = \"{}\"\n\n[[template]]\ncontents = \"{{{{ secret('app/x').value }}}}\"\ndestination = \"{}\"\n",
            key_file.display(),
            dest.display()
        ),
    )
    .unwrap();
    (config, dest)
}
