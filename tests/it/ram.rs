//! The RAM stand-in and rotor's RAM client. The cloud's RAM API cannot run here, so
//! `ram-emulator` (tests/ram-emulator) plays it; the official Alibaba Cloud RAM SDK for Python
//! drives it first, in both signature styles, which is what shows that the emulator, rotor's
//! client and the real SDK agree on the wire.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use rotators::ram::client::{RamClient, SignatureStyle};

use crate::support::{assert_refused, Backend, TestEnv};

pub(crate) const ADMIN_ID: &str = "LTAIadminTestKey0001";
const ADMIN_SECRET: &str = "AdminSecretForTheEmulator000001";

/// A running emulator, stopped on drop.
pub struct Emulator {
    child: Child,
    pub addr: String,
}

impl Emulator {
    pub fn start() -> Emulator {
        let bin = std::env::var("ROTOR_TEST_RAM_EMULATOR").unwrap_or_else(|_| {
            env!("CARGO_MANIFEST_DIR").to_owned() + "/target/debug/ram-emulator"
        });
        assert!(
            std::path::Path::new(&bin).exists(),
            "the RAM emulator ({bin}) is missing: cargo build -p ram-emulator (tests/run does)"
        );
        let mut child = Command::new(&bin)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-access-key-id",
                ADMIN_ID,
                "--admin-access-key-secret",
                ADMIN_SECRET,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the RAM emulator starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the emulator: {line:?}"))
            .to_owned();
        Emulator { child, addr }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn admin(&self, style: SignatureStyle) -> RamClient {
        RamClient::new(&self.endpoint(), style, ADMIN_ID, ADMIN_SECRET).unwrap()
    }

    /// Makes CreateAccessKey wait `ms` after creating the key, before answering.
    pub async fn slow_create(&self, ms: u64) {
        control(&self.addr, &format!("/_emulator/slow-create?ms={ms}")).await;
    }

    /// Makes the next `count` signed calls answer `Throttling.User`.
    pub async fn throttle(&self, count: u32) {
        control(&self.addr, &format!("/_emulator/throttle?count={count}")).await;
    }

    /// Makes every signed call of `action` answer HTTP `status` with error `code`, doing
    /// nothing, until [`allow`](Self::allow).
    pub async fn refuse(&self, action: &str, status: u16, code: &str) {
        control(
            &self.addr,
            &format!("/_emulator/refuse?action={action}&status={status}&code={code}"),
        )
        .await;
    }

    /// Makes the next `count` CreateAccessKey calls create the key, then answer 503.
    pub async fn lose_create(&self, count: u32) {
        control(&self.addr, &format!("/_emulator/lose-create?count={count}")).await;
    }

    /// Sets the emulator's clock `offset_s` seconds off the machine's (rotor's).
    pub async fn clock_offset(&self, offset_s: i64) {
        control(&self.addr, &format!("/_emulator/clock?offset_s={offset_s}")).await;
    }

    /// Lets `action` through again.
    pub async fn allow(&self, action: &str) {
        control(&self.addr, &format!("/_emulator/refuse?action={action}")).await;
    }
}

async fn control(addr: &str, path: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_accepts_the_emulator_in_both_signature_styles() {
    let python = std::env::var("ROTOR_TEST_RAM_SDK_PYTHON").unwrap_or_else(|_| {
        panic!("ROTOR_TEST_RAM_SDK_PYTHON is not set: tests/run makes a virtualenv with the official RAM SDK (pip install alibabacloud-ram20150501) and sets it")
    });
    let emulator = Emulator::start();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/ram-emulator/sdk_check.py"
    );
    let out = Command::new(&python)
        .args([script, &emulator.addr, ADMIN_ID, ADMIN_SECRET])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the official SDK disagrees with the emulator:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "v3: CreateUser ok",
        "v3: CreateAccessKey ok",
        "v3: ListAccessKeys ok",
        "v3: UpdateAccessKey ok",
        "v3: DeleteAccessKey ok",
        "v3: a wrong AccessKey secret is refused",
        "v2: CreateAccessKey ok",
        "v2: a wrong AccessKey secret is refused",
    ] {
        assert!(stdout.contains(line), "missing '{line}':\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotors_client_manages_keys_in_both_styles_and_retries_throttling() {
    let emulator = Emulator::start();
    for style in [SignatureStyle::V3, SignatureStyle::V1] {
        let admin = emulator.admin(style);
        let user = format!("app-{style:?}").to_lowercase();
        admin
            .call("CreateUser", &[("UserName", &user)])
            .await
            .unwrap();
        let first = admin.create_access_key(&user).await.unwrap();
        let second = admin.create_access_key(&user).await.unwrap();
        let err = admin.create_access_key(&user).await.unwrap_err();
        assert_eq!(err.code, "LimitExceeded.User.AccessKey");
        assert!(!err.retryable, "the two-key limit is fatal");
        let listed = admin.list_access_keys(&user).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|k| k.status == "Active"));

        // A new key signs for its own user.
        let own = RamClient::new(
            &emulator.endpoint(),
            style,
            &first.access_key_id,
            &first.access_key_secret,
        )
        .unwrap();
        own.get_user(&user).await.unwrap();
        admin
            .update_access_key(&user, &first.access_key_id, "Inactive")
            .await
            .unwrap();
        let err = own.get_user(&user).await.unwrap_err();
        assert_eq!(err.code, "InvalidAccessKeyId.Inactive");
        admin
            .delete_access_key(&user, &first.access_key_id)
            .await
            .unwrap();
        let err = own.get_user(&user).await.unwrap_err();
        assert_eq!(err.code, "InvalidAccessKeyId.NotFound");
        assert!(!err.to_string().contains(first.access_key_secret.as_str()));

        // A wrong secret, a missing user: fatal, with the cloud's code and request id.
        let wrong =
            RamClient::new(&emulator.endpoint(), style, ADMIN_ID, "not-the-secret").unwrap();
        let err = wrong.get_user(&user).await.unwrap_err();
        assert_eq!(err.code, "SignatureDoesNotMatch");
        assert!(!err.retryable && err.request_id.is_some(), "{err}");
        assert!(!err.to_string().contains("not-the-secret"));
        let err = admin.get_user("nobody").await.unwrap_err();
        assert_eq!(err.code, "EntityNotExist.User");

        // Throttling is retried with backoff, then succeeds.
        emulator.throttle(2).await;
        let keys = admin.list_access_keys(&user).await.unwrap();
        assert_eq!(keys.len(), 1);
        admin
            .delete_access_key(&user, &second.access_key_id)
            .await
            .unwrap();
    }
    // Throttling that does not stop is retryable in the end.
    emulator.throttle(100).await;
    let err = emulator
        .admin(SignatureStyle::V3)
        .get_user("app-v3")
        .await
        .unwrap_err();
    assert!(err.code.starts_with("Throttling") && err.retryable, "{err}");
}

/// `rotor target add NAME --kind ram --url ENDPOINT` with the admin pair (secret on stdin).
pub(crate) fn add_ram_target(
    t: &TestEnv,
    name: &str,
    emulator: &Emulator,
    extra: &[&str],
) -> std::process::Output {
    let endpoint = emulator.endpoint();
    let mut all = vec![
        "target",
        "add",
        name,
        "--kind",
        "ram",
        "--url",
        &endpoint,
        "--admin-access-key-id",
        ADMIN_ID,
        "--admin-access-key-secret-stdin",
    ];
    all.extend_from_slice(extra);
    t.run_with_stdin(&all, ADMIN_SECRET)
}

pub(crate) async fn env(backend: Backend) -> TestEnv {
    let t = TestEnv::new(backend).await;
    t.ok(&["init"]);
    t
}

/// A stage's AccessKey pair: (id, secret).
pub(crate) fn pair(t: &TestEnv, secret: &str, stage: &str) -> (String, String) {
    let out = t.json(&["secret", "get", secret, "--stage", stage]);
    let v: serde_json::Value = serde_json::from_str(out["SecretData"].as_str().unwrap()).unwrap();
    assert!(v["GenerateTimestamp"]
        .as_str()
        .is_some_and(|g| !g.is_empty()));
    (
        v["AccessKeyId"].as_str().unwrap().to_owned(),
        v["AccessKeySecret"].as_str().unwrap().to_owned(),
    )
}

/// The user's key ids, sorted.
pub(crate) async fn keys_of(emulator: &Emulator, user: &str) -> Vec<String> {
    let mut ids: Vec<String> = emulator
        .admin(SignatureStyle::V3)
        .list_access_keys(user)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.access_key_id)
        .collect();
    ids.sort();
    ids
}

/// Whether a pair signs for `user`.
async fn signs(
    emulator: &Emulator,
    user: &str,
    (id, secret): &(String, String),
) -> Result<(), String> {
    RamClient::new(&emulator.endpoint(), SignatureStyle::V3, id, secret)
        .unwrap()
        .get_user(user)
        .await
        .map(drop)
        .map_err(|e| e.code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_keys_rotate_10_times_within_the_two_key_limit() {
    let t = env(Backend::Sqlite).await;
    let emulator = Emulator::start();
    let admin = emulator.admin(SignatureStyle::V3);
    admin
        .call("CreateUser", &[("UserName", "app")])
        .await
        .unwrap();
    let out = add_ram_target(&t, "cloud", &emulator, &["--signature", "v1"]);
    assert!(out.status.success(), "{out:?}");
    let report = t.ok(&["target", "check", "cloud"]);
    assert!(report.contains("ListUsers"), "{report}");

    // Create mode: the cloud makes the first pair.
    t.ok(&[
        "secret",
        "create",
        "ram/app",
        "--type",
        "RAMCredentials",
        "--target",
        "cloud",
        "--ram-user",
        "app",
    ]);
    let first = pair(&t, "ram/app", "ACSCurrent");
    assert_eq!(keys_of(&emulator, "app").await, vec![first.0.clone()]);
    signs(&emulator, "app", &first).await.unwrap();

    let mut seen = vec![first];
    for round in 1..=10 {
        let out = t.run(&["rotate", "ram/app"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "round {round}: {text}");
        let current = pair(&t, "ram/app", "ACSCurrent");
        let previous = pair(&t, "ram/app", "ACSPrevious");
        assert!(
            !text.contains(&current.1) && !text.contains(&previous.1),
            "no secret in rotor's output or logs"
        );
        let mut expected = vec![current.0.clone(), previous.0.clone()];
        expected.sort();
        assert_eq!(
            keys_of(&emulator, "app").await,
            expected,
            "round {round}: exactly current and previous"
        );
        signs(&emulator, "app", &current).await.unwrap();
        signs(&emulator, "app", &previous).await.unwrap();
        for old in &seen[..seen.len() - 1] {
            assert_eq!(
                signs(&emulator, "app", old).await,
                Err("InvalidAccessKeyId.NotFound".into()),
                "round {round}: an older key is gone"
            );
        }
        seen.push(current);
    }
    // describe names the RAM user and both key ids, never a key secret.
    let (current, previous) = (
        pair(&t, "ram/app", "ACSCurrent"),
        pair(&t, "ram/app", "ACSPrevious"),
    );
    let described = t.ok(&["secret", "describe", "ram/app"]);
    assert!(described.contains("\nRAM user:      app\n"), "{described}");
    assert!(
        described.contains(&format!(
            "\nAccessKeys:    {} (ACSCurrent), {} (ACSPrevious)\n",
            current.0, previous.0
        )),
        "{described}"
    );
    assert!(
        !described.contains(&current.1) && !described.contains(&previous.1),
        "{described}"
    );
    // Both keys work, so rolling back is allowed.
    t.ok(&["secret", "rollback", "ram/app"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_pairs_are_checked_and_foreign_keys_stop_the_rotation() {
    let t = env(Backend::Postgres).await;
    let emulator = Emulator::start();
    let admin = emulator.admin(SignatureStyle::V3);
    admin
        .call("CreateUser", &[("UserName", "svc")])
        .await
        .unwrap();
    let existing = admin.create_access_key("svc").await.unwrap();
    assert!(add_ram_target(&t, "cloud", &emulator, &[]).status.success());

    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, v: serde_json::Value| {
        let p = dir.path().join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p.display().to_string()
    };
    let wrong = file(
        "wrong.json",
        serde_json::json!({"AccessKeyId": existing.access_key_id, "AccessKeySecret": "not-it"}),
    );
    let out = t.run(&[
        "secret",
        "create",
        "ram/svc",
        "--type",
        "RAMCredentials",
        "--target",
        "cloud",
        "--ram-user",
        "svc",
        "--value-file",
        &wrong,
    ]);
    assert_refused(&out, 2, "does not sign", Some("not-it"));
    let good = file(
        "good.json",
        serde_json::json!({"AccessKeyId": existing.access_key_id, "AccessKeySecret": existing.access_key_secret.as_str()}),
    );
    t.ok(&[
        "secret",
        "create",
        "ram/svc",
        "--type",
        "RAMCredentials",
        "--target",
        "cloud",
        "--ram-user",
        "svc",
        "--value-file",
        &good,
    ]);
    assert_eq!(pair(&t, "ram/svc", "ACSCurrent").0, existing.access_key_id);

    // Someone adds a key of their own: the rotation fails, naming it, and changes nothing.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let foreign = admin.create_access_key("svc").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let before = keys_of(&emulator, "svc").await;
    let out = t.run(&["rotate", "ram/svc"]);
    assert_refused(&out, 6, &foreign.access_key_id, None);
    assert_eq!(keys_of(&emulator, "svc").await, before, "nothing changed");
    assert_eq!(
        t.json(&["secret", "describe", "ram/svc"])["RotationStatus"],
        "Failed"
    );
    admin
        .delete_access_key("svc", &foreign.access_key_id)
        .await
        .unwrap();

    // Throttling answers back off and the rotation succeeds.
    emulator.throttle(3).await;
    t.ok(&["rotate", "ram/svc"]);
    let current = pair(&t, "ram/svc", "ACSCurrent");
    assert_ne!(current.0, existing.access_key_id);
    let mut expected = vec![current.0.clone(), existing.access_key_id.clone()];
    expected.sort();
    assert_eq!(keys_of(&emulator, "svc").await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_killed_after_create_access_key_leaves_no_orphan() {
    let t = env(Backend::Sqlite).await;
    let emulator = Emulator::start();
    let admin = emulator.admin(SignatureStyle::V3);
    admin
        .call("CreateUser", &[("UserName", "batch")])
        .await
        .unwrap();
    assert!(add_ram_target(&t, "cloud", &emulator, &[]).status.success());
    t.ok(&[
        "secret",
        "create",
        "ram/batch",
        "--type",
        "RAMCredentials",
        "--target",
        "cloud",
        "--ram-user",
        "batch",
    ]);
    t.ok(&["rotate", "ram/batch"]);
    assert_eq!(keys_of(&emulator, "batch").await.len(), 2);

    // The cloud makes the key, then answers slowly: the worker is killed before it stores it.
    t.ok(&[
        "rotation",
        "set",
        "ram/batch",
        "--interval",
        "7d",
        "--rotate-now",
    ]);
    emulator.slow_create(5000).await;
    let worker = || {
        t.rotor()
            .args(["worker", "--lease", "2s", "--poll", "100ms"])
            .env("ROTOR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = worker();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let current = pair(&t, "ram/batch", "ACSCurrent");
    let previous = pair(&t, "ram/batch", "ACSPrevious");
    loop {
        // Previous deleted, a new key made: current plus the key nobody holds yet.
        let keys = keys_of(&emulator, "batch").await;
        if keys.len() == 2 && !keys.contains(&previous.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "CreateAccessKey never ran: {keys:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let orphan: Vec<String> = keys_of(&emulator, "batch")
        .await
        .into_iter()
        .filter(|k| *k != current.0)
        .collect();
    assert_eq!(orphan.len(), 1, "one key nobody holds");
    assert_eq!(
        pair(&t, "ram/batch", "ACSCurrent"),
        current,
        "nothing stored"
    );
    emulator.slow_create(0).await;

    // The next worker takes the job over once the lease has expired, finds the key (created
    // after the job's create mark), deletes it and rotates.
    let mut child = worker();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pair(&t, "ram/batch", "ACSCurrent") == current
        || t.json(&["secret", "describe", "ram/batch"])["RotationStatus"] != "Idle"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotation never completed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let new = pair(&t, "ram/batch", "ACSCurrent");
    let mut expected = vec![new.0.clone(), current.0.clone()];
    expected.sort();
    assert_eq!(
        keys_of(&emulator, "batch").await,
        expected,
        "current and previous, no orphan"
    );
    assert!(!expected.contains(&orphan[0]));
    assert_eq!(pair(&t, "ram/batch", "ACSPrevious").0, current.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_disables_the_previous_key_once_its_grace_has_passed() {
    let t = env(Backend::Postgres).await;
    let emulator = Emulator::start();
    let admin = emulator.admin(SignatureStyle::V3);
    admin
        .call("CreateUser", &[("UserName", "web")])
        .await
        .unwrap();
    assert!(add_ram_target(&t, "cloud", &emulator, &[]).status.success());
    let out = t.run(&[
        "secret",
        "create",
        "ram/web",
        "--type",
        "RAMCredentials",
        "--target",
        "cloud",
        "--ram-user",
        "web",
        "--previous-grace",
        "soon",
    ]);
    assert_refused(&out, 2, "--previous-grace", None);
    t.ok(&[
        "secret",
        "create",
        "ram/web",
        "--type",
        "RAMCredentials",
        "--target",
        "cloud",
        "--ram-user",
        "web",
        "--previous-grace",
        "2s",
        "--rotation-interval",
        "30d",
    ]);
    t.ok(&["rotate", "ram/web"]);
    let current = pair(&t, "ram/web", "ACSCurrent");
    let previous = pair(&t, "ram/web", "ACSPrevious");
    signs(&emulator, "web", &previous).await.unwrap();
    let status = |keys: &[rotators::ram::client::AccessKeyInfo], id: &str| {
        keys.iter()
            .find(|k| k.access_key_id == id)
            .map(|k| k.status.clone())
    };

    let mut worker = t
        .rotor()
        .args(["worker", "--poll", "100ms"])
        .env("ROTOR_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let keys = admin.list_access_keys("web").await.unwrap();
        if status(&keys, &previous.0).as_deref() == Some("Inactive") {
            assert_eq!(status(&keys, &current.0).as_deref(), Some("Active"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the previous key stayed Active: {keys:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    assert!(worker.wait().unwrap().success());
    assert_eq!(
        signs(&emulator, "web", &previous).await,
        Err("InvalidAccessKeyId.Inactive".into())
    );
    signs(&emulator, "web", &current).await.unwrap();
    // The follow-up did not rotate: the secret waits for its next rotation, 30 days away.
    assert_eq!(pair(&t, "ram/web", "ACSCurrent"), current);
    let described = t.json(&["secret", "describe", "ram/web"]);
    assert_eq!(described["RotationStatus"], "Idle", "{described}");
    assert!(described["NextRotationDate"].is_string(), "{described}");
    // The next rotation replaces the Inactive key.
    t.ok(&["rotate", "ram/web"]);
    let mut expected = vec![pair(&t, "ram/web", "ACSCurrent").0, current.0.clone()];
    expected.sort();
    assert_eq!(keys_of(&emulator, "web").await, expected);
}

/// Sends one V3-signed GetUser as raw HTTP, with the date and nonce given; returns the answer.
async fn raw_v3(addr: &str, date: &str, nonce: &str) -> String {
    use acs_sign::sign;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body_sha = sign::sha256_hex(b"");
    let headers: Vec<(String, String)> = [
        ("host", addr),
        ("x-acs-action", "GetUser"),
        ("x-acs-version", "2015-05-01"),
        ("x-acs-date", date),
        ("x-acs-signature-nonce", nonce),
        ("x-acs-content-sha256", body_sha.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let query = vec![("UserName".to_string(), "nobody".to_string())];
    let (signature, names) =
        sign::v3_signature(ADMIN_SECRET, "POST", "/", &query, &headers, &body_sha);
    let mut request = format!("POST /?{} HTTP/1.1\r\n", sign::canonical_query(&query));
    for (k, v) in &headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!(
        "authorization: {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        sign::v3_authorization(ADMIN_ID, &names, &signature)
    ));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_refuses_reused_nonces_and_stale_timestamps() {
    let emulator = Emulator::start();
    let now = chrono::Utc::now();
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    // A correctly signed call gets through the signature check (the user does not exist).
    let first = raw_v3(&emulator.addr, &stamp(now), "nonce-0001").await;
    assert!(first.contains("EntityNotExist.User"), "{first}");
    let again = raw_v3(&emulator.addr, &stamp(now), "nonce-0001").await;
    assert!(again.contains("SignatureNonceUsed"), "{again}");
    let stale = raw_v3(
        &emulator.addr,
        &stamp(now - chrono::Duration::minutes(20)),
        "nonce-0002",
    )
    .await;
    assert!(stale.contains("InvalidTimeStamp.Expired"), "{stale}");
    assert!(
        stale.contains("\"RequestId\""),
        "errors carry a RequestId: {stale}"
    );
}
