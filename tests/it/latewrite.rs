//! The lost credential of issue 18 (c2): a target write that lands after its driver lost the
//! lease. Each test puts a single-account secret's target behind the test kit's holding proxy
//! and runs real `rotor` processes on one PostgreSQL store:
//!
//! 1. `rotor rotate` (run 1) sends its `set` write; the proxy holds it; run 1 is SIGSTOPped;
//! 2. a worker takes the job over once run 1's lease runs out and promotes v2;
//! 3. a second `rotor rotate` promotes v3;
//! 4. the proxy lets run 1's write through (v2's password lands: `ACSCurrent`, v3, no longer
//!    logs in — the lost credential) and run 1 is SIGCONTed;
//! 5. the worker's check after the takeover notices and sets v3 again: `ACSCurrent` logs in,
//!    the audit log shows `rotation.verify` `repaired`, the metric counts it, the secret is
//!    `Idle`; run 1 exits without promoting anything and writes nothing more.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::databases::{self, account_of};
use crate::proxy::Proxy;
use crate::support::{Backend, TestEnv};
use crate::workers::{sample, scrape};

const SECRET: &str = "app/solo";
/// Short leases so that the test runs in seconds; the step timeout bounds how late a held
/// write may land (the check after the takeover waits that long).
const ENGINE: [&str; 4] = ["--lease", "2s", "--step-timeout", "8s"];
const STEP_TIMEOUT: Duration = Duration::from_secs(8);

/// A child process killed (not left stopped) if the test fails half-way.
struct Proc(Child);

impl Proc {
    fn signal(&self, signal: i32) {
        // Our own child, by its id.
        unsafe { libc::kill(self.0.id() as i32, signal) };
    }

    /// Waits for the exit, at most `limit`.
    async fn wait(&mut self, limit: Duration, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not exit in {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.signal(libc::SIGCONT);
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Where the held credential lives, and how a login to it is checked (never through the proxy).
enum Target {
    Redis { user: String },
    Postgres { role: String },
}

impl Target {
    async fn logs_in(&self, account: &(String, String)) -> Result<String, String> {
        match self {
            Target::Redis { .. } => databases::redis_login(account).await,
            Target::Postgres { .. } => {
                databases::login(&account.0, &account.1, "postgres", databases::scram_port()).await
            }
        }
    }

    async fn cleanup(&self) {
        use sqlx::Executor;
        match self {
            Target::Redis { user } => {
                let _: Result<(), _> = redis::cmd("ACL")
                    .arg("DELUSER")
                    .arg(user)
                    .query_async(&mut databases::redis_admin().await)
                    .await;
            }
            Target::Postgres { role } => {
                let _ = databases::admin()
                    .await
                    .execute(format!("DROP ROLE IF EXISTS {role}").as_str())
                    .await;
            }
        }
    }
}

/// One test's store, proxy and single-account secret.
struct Case {
    t: TestEnv,
    proxy: Proxy,
    target: Target,
    /// What the proxy waits for in run 1's `set` (the password change).
    pattern: &'static str,
}

fn log_file(dir: &Path, name: &str) -> (PathBuf, File) {
    let path = dir.join(name);
    (path.clone(), File::create(&path).expect("a log file"))
}

fn version(t: &TestEnv) -> String {
    t.json(&["secret", "get", SECRET])["VersionId"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn status(t: &TestEnv) -> String {
    t.json(&["secret", "describe", SECRET])["RotationStatus"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn verify_records(t: &TestEnv) -> Vec<Value> {
    t.json(&["audit", "--secret", SECRET, "--action", "rotation.verify"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Polls `done` every 100 ms until it holds; fails with `what` after `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} (waited {limit:?})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The scenario of the module's header, on a prepared case.
async fn a_late_write_is_noticed_and_repaired(c: Case) {
    let t = &c.t;
    let dir = t.dir.path();
    let v1 = version(t);

    // 1. Run 1's password change is held on the wire; run 1 stops.
    c.proxy.hold_on(c.pattern);
    let (run1_log, file) = log_file(dir, "run1.log");
    let mut run1 = Proc(
        t.rotor()
            .args(["rotate", SECRET])
            .args(ENGINE)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("rotor runs"),
    );
    until(
        Duration::from_secs(30),
        "run 1's password change never reached the proxy",
        || async { c.proxy.held_bytes() > 0 },
    )
    .await;
    run1.signal(libc::SIGSTOP);

    // 2. A worker takes the job over after the lease and promotes v2.
    let metrics = format!("127.0.0.1:{}", crate::api::free_port());
    let (_, file) = log_file(dir, "worker.log");
    let mut worker = Proc(
        t.rotor()
            .args(["worker", "--poll", "100ms", "--metrics-listen", &metrics])
            .args(ENGINE)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("rotor worker runs"),
    );
    until(
        Duration::from_secs(30),
        "the worker never took the stalled rotation over",
        || async { version(t) != v1 && status(t) == "Idle" },
    )
    .await;
    let v2 = version(t);

    // 3. A second manual rotation promotes v3: run 1's lease is gone.
    let out = t.ok(&["rotate", SECRET]);
    assert!(out.contains("is ACSCurrent"), "{out}");
    let v3 = version(t);
    assert_ne!(v3, v2);
    let current = account_of(t, SECRET, "ACSCurrent").await;
    assert_eq!(
        c.target.logs_in(&current).await,
        Ok(current.0.clone()),
        "v3 logs in before the late write"
    );
    assert!(
        c.proxy.held_bytes() > 0,
        "run 1's write is still held after v3"
    );

    // 4. Run 1's held write lands (v2's password) while run 1 is still stopped — as a write
    // the network delivers late would — and then run 1 resumes.
    c.proxy.release();
    until(
        Duration::from_secs(5),
        "the held write never landed: ACSCurrent still logs in",
        || async { c.target.logs_in(&current).await.is_err() },
    )
    .await;
    let resumed_at = std::fs::metadata(&run1_log).unwrap().len() as usize;
    run1.signal(libc::SIGCONT);

    // Run 1 exits without promoting anything: its lease is gone.
    let exit = run1.wait(Duration::from_secs(30), "run 1").await;
    let log = std::fs::read_to_string(&run1_log).unwrap();
    assert!(!exit.success(), "run 1 must fail: {log}");
    let error = log
        .lines()
        .find(|l| l.starts_with("rotor: "))
        .unwrap_or_default();
    assert!(
        error.contains("passed to another worker") || error.contains("lease"),
        "run 1's error names the lost lease: {error:?}"
    );
    assert!(
        log[..resumed_at].contains("step starts"),
        "run 1 logs its steps: {log}"
    );
    assert!(
        !log[resumed_at..].contains("step starts"),
        "run 1 started a step after it resumed: {}",
        &log[resumed_at..]
    );
    assert_eq!(version(t), v3, "run 1 promoted nothing");

    // 5. The check after the takeover repairs ACSCurrent.
    until(
        STEP_TIMEOUT + Duration::from_secs(20),
        "no check after the takeover repaired ACSCurrent (it does not log in)",
        || async {
            verify_records(t)
                .iter()
                .any(|r| r["Outcome"].as_str() == Some("repaired"))
        },
    )
    .await;
    assert_eq!(
        c.target.logs_in(&current).await,
        Ok(current.0.clone()),
        "ACSCurrent logs in again"
    );
    assert_eq!(version(t), v3);
    assert_eq!(status(t), "Idle");
    let repaired = sample(
        &scrape(&metrics),
        "rotor_rotations_total",
        &[("result", "repaired")],
    );
    assert_eq!(repaired, Some(1.0), "the repair is counted");
    let records = verify_records(t);
    assert_eq!(records.len(), 1, "one check: {records:?}");
    // Run 1 wrote nothing more: the repaired password still logs in a while later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.target.logs_in(&current).await, Ok(current.0.clone()));

    worker.signal(libc::SIGTERM);
    let exit = worker.wait(Duration::from_secs(30), "the worker").await;
    assert!(exit.success(), "the worker drains and exits: {exit}");
    c.target.cleanup().await;
}

/// A store on PostgreSQL (shared by run 1, the worker and the second run), initialised.
async fn store() -> TestEnv {
    let t = TestEnv::new(Backend::Postgres).await;
    t.ok(&["init"]);
    t
}

fn single_user(t: &TestEnv, ty: &str, target: &str, user: &str, password: &str) {
    let value = serde_json::json!({"AccountName": user, "AccountPassword": password}).to_string();
    t.ok(&[
        "secret",
        "create",
        SECRET,
        "--type",
        ty,
        "--sub-type",
        "SingleUser",
        "--target",
        target,
        "--value",
        &value,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_redis_setuser_is_noticed_and_repaired() {
    let t = store().await;
    let server = databases::redis_url();
    let address = server
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let proxy = Proxy::start(&address).await;
    let user = format!("late_{}", &rotor::crypto::random_id()[..8]);
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg(&["on", ">Late-Initial-Pass1", "~*", "+@all"][..])
        .query_async(&mut databases::redis_admin().await)
        .await
        .unwrap();
    let url = format!("redis://127.0.0.1:{}", proxy.port);
    let out = databases::add_target(&t, "red", "redis", &url, "default", "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    single_user(&t, "Redis", "red", &user, "Late-Initial-Pass1");
    a_late_write_is_noticed_and_repaired(Case {
        t,
        proxy,
        target: Target::Redis { user },
        pattern: "SETUSER",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_postgres_alter_role_is_noticed_and_repaired() {
    use sqlx::Executor;
    let t = store().await;
    let proxy = Proxy::start(&format!("127.0.0.1:{}", databases::scram_port())).await;
    let role = format!("late_{}", &rotor::crypto::random_id()[..8]);
    databases::admin()
        .await
        .execute(format!("CREATE ROLE {role} LOGIN PASSWORD 'Late-Initial-Pass1'").as_str())
        .await
        .unwrap();
    // Without TLS, so that the proxy sees the statement (the server offers TLS).
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
    let out = databases::add_target(&t, "pg", "postgres", &url, "postgres", &admin_password);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    single_user(&t, "Rds", "pg", &role, "Late-Initial-Pass1");
    a_late_write_is_noticed_and_repaired(Case {
        t,
        proxy,
        target: Target::Postgres { role },
        pattern: "ALTER ROLE",
    })
    .await;
}

/// The SSH host password case: the traffic is encrypted, so the hold is on the host itself —
/// the throwaway sshd's sessions find a `chpasswd` that, for the first call after `hold` is
/// made, waits until `release` exists, then runs the real one (a target held on a lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_host_chpasswd_is_noticed_and_repaired() {
    use crate::sshd::{keygen, HostUser, Sshd, Sudo};
    use std::os::unix::fs::PermissionsExt;
    let t = store().await;
    let lock = tempfile::tempdir().unwrap();
    let l = lock.path().to_owned();
    std::fs::set_permissions(&l, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(l.join("bin")).unwrap();
    let real = ["/usr/sbin/chpasswd", "/sbin/chpasswd", "/usr/bin/chpasswd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chpasswd is installed");
    let wrapper = l.join("bin/chpasswd");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif mv {d}/hold {d}/held 2>/dev/null; then\n  \
             while [ ! -e {d}/release ]; do sleep 0.1; done\nfi\nexec {real}\n",
            d = l.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sshd = Sshd::start_with(&format!(
        "SetEnv PATH={}/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
        l.display()
    ));
    let root = HostUser::new(Sudo::IsRoot);
    let user = HostUser::new(Sudo::No);
    let (public, private) = keygen(t.dir.path(), &["-t", "ed25519"]);
    root.write_authorized_keys(&format!("{public}\n"));
    let key_file = crate::support::write_file(t.dir.path(), "root_key", private.as_bytes());
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let host_key = sshd.host_key();
    let key_path = key_file.display().to_string();
    crate::ssh::ok(crate::ssh::add_target(
        &t,
        "host",
        &sshd,
        &[
            "--host-key",
            &host_key,
            "--admin-user",
            &root.name,
            "--admin-key-file",
            &key_path,
        ],
        "",
    ));
    t.ok(&[
        "secret", "create", SECRET, "--type", "ECS", "--target", "host", "--user", &user.name,
    ]);
    let password = |stage: &str| {
        crate::ssh::value(&t, SECRET, stage)["Password"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let logs_in = |pw: &str| sshd.login_password(&user.name, pw).is_ok();
    assert!(logs_in(&password("ACSCurrent")));
    let v1 = version(&t);

    // 1. Run 1's chpasswd waits on the host; run 1 is stopped there, past its lease.
    std::fs::write(l.join("hold"), b"").unwrap();
    let (log_path, file) = log_file(t.dir.path(), "run1.log");
    let mut run1 = Proc(
        t.rotor()
            .args(["rotate", SECRET])
            .args(ENGINE)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("rotor runs"),
    );
    until(
        Duration::from_secs(30),
        "run 1's chpasswd never reached the host",
        || async { l.join("held").exists() },
    )
    .await;
    run1.signal(libc::SIGSTOP);

    // 2. A worker takes the job over after the lease and promotes v2; 3. a manual run, v3.
    let metrics = format!("127.0.0.1:{}", crate::api::free_port());
    let (_, file) = log_file(t.dir.path(), "worker.log");
    let mut worker = Proc(
        t.rotor()
            .args(["worker", "--poll", "100ms", "--metrics-listen", &metrics])
            .args(ENGINE)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("rotor worker runs"),
    );
    until(
        Duration::from_secs(30),
        "the worker never took the stalled rotation over",
        || async { version(&t) != v1 && status(&t) == "Idle" },
    )
    .await;
    let out = t.ok(&["rotate", SECRET]);
    assert!(out.contains("is ACSCurrent"), "{out}");
    let current = password("ACSCurrent");
    assert!(logs_in(&current));

    // 4. The held chpasswd runs (v2's password): ACSCurrent no longer logs in.
    std::fs::write(l.join("release"), b"").unwrap();
    until(
        Duration::from_secs(10),
        "the held chpasswd never landed",
        || async { !logs_in(&current) },
    )
    .await;
    run1.signal(libc::SIGCONT);
    let exit = run1.wait(Duration::from_secs(30), "run 1").await;
    assert!(!exit.success(), "run 1 lost its lease: {exit}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains(&current), "no password in run 1's log");

    // 5. The check after the takeover sets ACSCurrent again.
    until(
        STEP_TIMEOUT + Duration::from_secs(20),
        "no check after the takeover repaired ACSCurrent (it does not log in)",
        || async {
            verify_records(&t)
                .iter()
                .any(|r| r["Outcome"].as_str() == Some("repaired"))
        },
    )
    .await;
    assert!(logs_in(&current), "ACSCurrent logs in again");
    assert_eq!(status(&t), "Idle");
    let repaired = sample(
        &scrape(&metrics),
        "rotor_rotations_total",
        &[("result", "repaired")],
    );
    assert_eq!(repaired, Some(1.0), "the repair is counted");
    worker.signal(libc::SIGTERM);
    let exit = worker.wait(Duration::from_secs(30), "the worker").await;
    assert!(exit.success(), "the worker drains and exits: {exit}");
}
