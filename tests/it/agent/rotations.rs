//! Applications keep working across rotations: stand-ins that log in every 100 ms — one reading
//! the agent's rendered file, one started by `agent exec` with the credentials in its
//! environment — while the worker rotates a dual-account secret 20 times: not one failed login,
//! the reload command ran once per change, the program was restarted once per change.

use super::*;
use crate::databases::{create_rds, redis_admin, redis_target, scram_port, Pg};

const ROTATIONS: usize = 20;
/// The agents' poll.
pub(super) const POLL: &str = "500ms";
/// A rotation is in every agent's hands within the poll + 1 s.
pub(super) const IN_PLACE: Duration = Duration::from_millis(1500);

/// The rendered file: account, password, version, one a line (a shell `read` takes any
/// password rotor makes: they hold no space, quote or backslash).
pub(super) fn creds_template(secret: &str, rig: &Rig) -> String {
    format!(
        "[[template]]\ncontents = \"\"\"{{{{ secret('{secret}').AccountName }}}}\n{{{{ secret('{secret}').AccountPassword }}}}\n{{{{ secret('{secret}').VersionId }}}}\n\"\"\"\ndestination = \"{}\"\ncommand = \"echo reloaded >> {}\"\n",
        rig.out.join("creds").display(),
        rig.out.join("reloads").display()
    )
}

/// A shell loop that logs in every 100 ms with `login` (a command line using `$U` and `$P`),
/// printing `ok` or `FAIL …`; `read_file` first reads U and P from the rendered file.
fn stand_in(login: &str, read_file: Option<&Path>) -> Vec<String> {
    let read = match read_file {
        Some(f) => format!("{{ read -r U; read -r P; }} < '{}'; ", f.display()),
        None => "U=\"$DB_USER\"; P=\"$DB_PASS\"; ".into(),
    };
    let script = format!(
        "trap 'exit 0' TERM; echo started; while :; do {read}out=$({login} 2>&1); rc=$?; \
         if [ \"$rc\" -ge 128 ]; then exit 0; fi; \
         if [ \"$rc\" -eq 0 ] && [ \"$out\" = \"$WANT\" ]; then echo ok; else echo \"FAIL $rc $out\"; fi; \
         sleep 0.1; done"
    );
    vec!["sh".into(), "-c".into(), script]
}

/// Drives `ROTATIONS` rotations through the worker (`rotation set --rotate-now`), each waited
/// for, then checks that the file agent has the new version within [`IN_PLACE`], and leaves
/// the poll + 1 s before the next. The versions made, in order.
fn rotate_many(t: &TestEnv, rig: &Rig, secret: &str) -> Vec<String> {
    let mut versions = vec![];
    for round in 1..=ROTATIONS {
        let before = current_version(t, secret);
        t.ok(&[
            "rotation",
            "set",
            secret,
            "--interval",
            "6h",
            "--rotate-now",
        ]);
        let mut now = before.clone();
        wait_for(Duration::from_secs(20), "the worker's rotation", || {
            now = current_version(t, secret);
            now != before
        });
        let took = wait_for(
            Duration::from_secs(5),
            "the new version in the file",
            || {
                std::fs::read_to_string(rig.out.join("creds"))
                    .unwrap()
                    .lines()
                    .nth(2)
                    == Some(now.as_str())
            },
        );
        assert!(took <= IN_PLACE, "round {round}: the file took {took:?}");
        versions.push(now);
        std::thread::sleep(IN_PLACE.saturating_sub(took));
    }
    versions
}

/// Runs the whole scenario for `secret`: the file agent and its stand-in, the exec agent with
/// its own, 20 rotations; then counts. `login` prints `want` when it logs in.
fn scenario(t: &TestEnv, rig: &Rig, secret: &str, login: &str, want: &str) {
    let config = rig.config(t, POLL, &creds_template(secret, rig));
    let file_agent = rig.agent(t, &["--config", config.to_str().unwrap()]);
    let creds = rig.out.join("creds");
    wait_for(Duration::from_secs(10), "the first render", || {
        creds.exists()
    });

    let file_script = stand_in(login, Some(&creds));
    let mut cmd = Command::new(&file_script[0]);
    cmd.args(&file_script[1..]).env("WANT", want);
    let mut from_file = Running::spawn(cmd);

    let mut exec_args: Vec<String> = vec![
        "--env".into(),
        format!("DB_USER={secret}#AccountName"),
        "--env".into(),
        format!("DB_PASS={secret}#AccountPassword"),
        "--grace".into(),
        "5s".into(),
        "--".into(),
    ];
    exec_args.extend(stand_in(login, None));
    let exec_refs: Vec<&str> = exec_args.iter().map(String::as_str).collect();
    let exec_agent = rig.exec_with(t, POLL, &exec_refs, &[("WANT", want)]);
    for (who, running) in [("exec", &exec_agent), ("file", &from_file)] {
        wait_for(
            Duration::from_secs(10),
            &format!("the {who} stand-in's first login"),
            || running.lines().iter().any(|l| l == "ok"),
        );
    }

    let versions = rotate_many(t, rig, secret);
    assert_eq!(versions.len(), ROTATIONS);
    std::thread::sleep(Duration::from_millis(500));

    let (file_lines, exec_lines) = (from_file.lines(), exec_agent.lines());
    signal(&from_file.child, libc::SIGKILL);
    let _ = from_file.child.wait();
    let (code, file_log) = file_agent.stop();
    assert_eq!(code, Some(0), "{file_log}");
    let (code, exec_log) = exec_agent.stop();
    assert_eq!(
        code,
        Some(0),
        "the exec agent exits with the program's code: {exec_log}"
    );

    for (who, lines) in [("file", &file_lines), ("exec", &exec_lines)] {
        let failed: Vec<&String> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
        let ok = lines.iter().filter(|l| *l == "ok").count();
        assert!(
            failed.is_empty(),
            "{who}: {} failed logins of {}: {failed:?}",
            failed.len(),
            ok + failed.len()
        );
        // 20 rotations of about 2 s, a login every 100 ms (plus the login's own time).
        assert!(ok >= 100, "{who}: only {ok} logins");
        eprintln!("{secret} {who}: {ok} logins across {ROTATIONS} rotations, none failed");
    }
    let reloads = std::fs::read_to_string(rig.out.join("reloads"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(
        reloads,
        ROTATIONS + 1,
        "the first render, then one reload per change"
    );
    let restarts = exec_log
        .matches("a value changed: restarting the program")
        .count();
    assert_eq!(restarts, ROTATIONS, "one restart per change: {exec_log}");
    assert_eq!(
        exec_lines.iter().filter(|l| *l == "started").count(),
        ROTATIONS + 1,
        "the program started once, then once per change"
    );
    // No password in either agent's log.
    for stage in ["ACSCurrent", "ACSPrevious"] {
        let v = t.json(&["secret", "get", secret, "--stage", stage]);
        let data: serde_json::Value =
            serde_json::from_str(v["SecretData"].as_str().unwrap()).unwrap();
        let password = data["AccountPassword"].as_str().unwrap();
        for log in [&file_log, &exec_log] {
            assert!(!log.contains(password), "an agent's log shows a password");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_log_in_to_postgres_without_a_failure_across_20_rotations() {
    let pg = Pg::new().await;
    let t = &pg.t;
    let app = pg.name("agent");
    t.ok(&create_rds(
        "db/app",
        "pg",
        &["--account", &app, "--database", &pg.db],
    ));
    let rig = Rig::start(t, &["GetSecretValue:db/*", "ListSecretVersionIds:db/*"]);
    // The password-checking PostgreSQL: a wrong password fails the login.
    let login = format!(
        "PGPASSWORD=\"$P\" PGCONNECT_TIMEOUT=5 psql -X -w -h 127.0.0.1 -p {} -U \"$U\" -d {} -Atc 'SELECT 1'",
        scram_port(),
        pg.db
    );
    scenario(t, &rig, "db/app", &login, "1");
    rig.stop();
    pg.cleanup_dual(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_log_in_to_redis_without_a_failure_across_20_rotations() {
    let t = &TestEnv::new(crate::support::Backend::Sqlite).await;
    redis_target(t).await;
    let user = crate::databases::redis_pair(t, "cache/app", "ag", &["--privilege", "ReadWrite"]);
    let rig = Rig::start(
        t,
        &["GetSecretValue:cache/*", "ListSecretVersionIds:cache/*"],
    );
    // A refused AUTH makes redis-cli say so (and go on as `default`): only a bare PONG passes.
    let url = crate::databases::redis_url();
    let hostport = url.trim_start_matches("redis://").trim_end_matches('/');
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "6379"));
    let login =
        format!("redis-cli --no-auth-warning -h {host} -p {port} --user \"$U\" --pass \"$P\" PING");
    scenario(t, &rig, "cache/app", &login, "PONG");
    rig.stop();
    let mut admin = redis_admin().await;
    for u in [user.clone(), format!("{user}_clone")] {
        let _: Result<i64, _> = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&u)
            .query_async(&mut admin)
            .await;
    }
}
