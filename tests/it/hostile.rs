//! What a careless or hostile operator may hand rotor: a store URL with passwords in its query,
//! a FIFO where a file is expected, control characters in a refused value, a recovery window
//! out of range. Each is refused or redacted — never echoed raw, never waited on forever.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::api::{access_key, refused, serve, stop, Client, Signing};
use crate::support::{assert_refused, Backend, TestEnv};

const URL_SECRETS: [&str; 3] = ["Hunter2User", "Hunter2Secret", "Hunter2Other"];

fn assert_hidden(what: &str, out: &Output) {
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        for secret in URL_SECRETS {
            assert!(!text.contains(secret), "{what} shows {secret}: {text}");
        }
    }
}

/// `url` with a password in its user-info and two in its query.
fn with_passwords(url: &str) -> reqwest::Url {
    let mut url = reqwest::Url::parse(url).unwrap();
    url.set_password(Some("Hunter2User")).unwrap();
    url.set_query(Some(
        "sslmode=disable&password=Hunter2Secret&sslpassword=Hunter2Other",
    ));
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_url_with_passwords_in_its_query_shows_none_of_them() {
    let t = TestEnv::new(Backend::Postgres).await;
    let url = with_passwords(&t.store_url().unwrap());
    let rotor = |url: &str, log: Option<&str>, args: &[&str]| {
        let mut cmd = t.rotor();
        cmd.env("ROTOR_STORE", url).args(args);
        match log {
            Some(level) => cmd.env("ROTOR_LOG", level),
            None => cmd.env_remove("ROTOR_LOG"),
        };
        cmd.output().unwrap()
    };
    // The URL works (sqlx takes `password=`), and no log level shows a password.
    let out = rotor(url.as_str(), Some("trace"), &["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_hidden("init", &out);
    let create = ["secret", "create", "x", "--type", "Generic", "--value", "v"];
    let out = rotor(url.as_str(), Some("trace"), &create);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_hidden("secret create", &out);
    for level in [
        None,
        Some("trace"),
        Some("debug"),
        Some("info"),
        Some("warn"),
    ] {
        let out = rotor(url.as_str(), level, &["secret", "list"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_hidden(&format!("secret list at {level:?}"), &out);
    }
    // config check shows the URL, its passwords masked.
    for args in [&["config", "check"][..], &["--json", "config", "check"]] {
        let out = rotor(url.as_str(), None, args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_hidden("config check", &out);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("sslpassword=***"), "{text}");
    }
    // Store-open errors: a database that does not exist, a port nobody listens on.
    let mut missing = url.clone();
    missing.set_path("/rotor_it_no_such_database");
    let mut closed = url.clone();
    closed.set_port(Some(1)).unwrap();
    for (url, expect) in [(missing, "does not exist"), (closed, "127.0.0.1:1")] {
        for level in [None, Some("trace")] {
            let out = rotor(
                url.as_str(),
                level,
                &["--store-connect-timeout", "5s", "secret", "list"],
            );
            assert_refused(&out, 1, expect, None);
            assert_hidden(&format!("{url} at {level:?}"), &out);
        }
    }
}

/// Runs `cmd`; a command still running after 20 s is killed and the test fails.
fn run_bounded(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "rotor still waits after 20 s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &std::path::Path, mode: u32) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), mode) }, 0, "mkfifo");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_or_directory_given_as_a_file_is_refused_without_waiting() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    let fifo = t.dir.path().join("fifo");
    mkfifo(&fifo, 0o600);
    let fifo = fifo.to_str().unwrap();
    let dir = t.dir.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let dir = dir.to_str().unwrap();
    for file in [fifo, dir] {
        let mut cmd = t.rotor();
        cmd.args(["secret", "create", "x", "--type", "Generic"])
            .args(["--value-file", file]);
        assert_refused(&run_bounded(cmd), 2, "not a regular file", None);
        let mut cmd = t.rotor();
        cmd.args(["target", "add", "h", "--kind", "ssh"])
            .args(["--url", "ssh://127.0.0.1:1", "--admin-user", "root"])
            .args(["--admin-key-file", file]);
        assert_refused(&run_bounded(cmd), 2, "not a regular file", None);
    }
    // Standard input still works.
    let out = t.run_with_stdin(
        &[
            "secret",
            "create",
            "x",
            "--type",
            "Generic",
            "--value-file",
            "-",
        ],
        "from-stdin",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_value_is_shown_escaped_on_one_line() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    fn create(name: &str) -> [&str; 7] {
        [
            "secret", "create", name, "--type", "Generic", "--value", "v",
        ]
    }
    for (args, shown) in [
        (create("a\nb\x1b[31m").to_vec(), "a\\nb\\u{1b}[31m"),
        (
            [&create("ok")[..], &["--tag", "k=v\nx\x1b[31m"]].concat(),
            "k=v\\nx\\u{1b}[31m",
        ),
        (
            [&create("ok")[..], &["--tag", "k\x1b[2J=v"]].concat(),
            "k\\u{1b}[2J",
        ),
        (
            vec!["secret", "put", "ok", "--value", "v", "--stage", "s\r\nt"],
            "s\\r\\nt",
        ),
    ] {
        let out = t.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
        assert!(!stderr.contains('\x1b'), "raw escape: {stderr:?}");
        assert_refused(&out, 2, shown, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recovery_window_is_7_to_30_days_in_the_api_and_the_cli() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    t.ok(&["secret", "create", "x", "--type", "Generic", "--value", "v"]);
    let before = t.snapshot().await;
    for days in ["0", "3", "6", "31"] {
        let out = t.run(&["secret", "delete", "x", "--recovery-days", days]);
        assert_refused(&out, 2, "7 to 30 days", None);
    }
    let key = access_key(&t, "all", &["*:*"]);
    let (server, addr) = serve(&t, &[]);
    let c = Client::new(&t, &addr);
    for days in ["0", "3", "6", "31"] {
        let params = [("SecretName", "x"), ("RecoveryWindowInDays", days)];
        let answer = c.v1(&Signing::new(&key), "DeleteSecret", &params, "").await;
        let message = answer.1["Message"].as_str().unwrap_or("").to_owned();
        refused(answer, 400, "InvalidParameter");
        assert!(message.contains("7 to 30"), "{days}: {message}");
    }
    assert_eq!(t.snapshot().await, before, "nothing deleted");
    let params = [("SecretName", "x"), ("RecoveryWindowInDays", "7")];
    let (status, body) = c.v1(&Signing::new(&key), "DeleteSecret", &params, "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["PlannedDeleteTime"].is_string(), "{body}");
    stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_and_step_timeout_are_bounded_before_anything_runs() {
    let t = TestEnv::new(Backend::Sqlite).await;
    // Found by a hostile run: a huge lease overflowed the expiry computation and panicked.
    for (flag, value, expect) in [
        ("--lease", "18446744073709551615s", "must be at most 1d"),
        ("--lease", "2d", "must be at most 1d"),
        ("--lease", "0s", "must be at least 1s"),
        ("--step-timeout", "8d", "must be at most 7d"),
    ] {
        let out = t.run(&["rotate", "--due", flag, value]);
        assert_refused(&out, 2, expect, None);
    }
}

/// Found by a hostile run: an imported account name holding an escape sequence reached the
/// terminal raw (MySQL, Redis) or made sqlx panic in SASLprep (PostgreSQL, exit 101).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_account_names_with_control_characters_or_unpreparable_text_are_refused() {
    let pg = crate::databases::Pg::new().await;
    let t = &pg.t;
    for (name, code, expect) in [
        ("ht_\u{1b}[31mred", 2, "holds a control character"),
        ("ht_\nline", 2, "holds a control character"),
        // Private use: printable, but SASLprep refuses it.
        ("ht_\u{e000}", 2, "saslprep refuses it"),
    ] {
        let value = serde_json::json!({"AccountName": name, "AccountPassword": "Some-Pass-123"})
            .to_string();
        let out = t.run(&[
            "secret",
            "create",
            "db/hostile-name",
            "--type",
            "Rds",
            "--sub-type",
            "SingleUser",
            "--target",
            "pg",
            "--value",
            &value,
        ]);
        assert_refused(&out, code, expect, Some("Some-Pass-123"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains('\u{1b}'),
            "a raw escape reached stderr: {stderr:?}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    pg.cleanup(&[]).await;
}
