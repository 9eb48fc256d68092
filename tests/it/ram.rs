//! The RAM stand-in and rotor's RAM client. The cloud's RAM API cannot run here, so
//! `ram-emulator` (tests/ram-emulator) plays it; the official Alibaba Cloud RAM SDK for Python
//! drives it first, in both signature styles, which is what shows that the emulator, rotor's
//! client and the real SDK agree on the wire.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use rotators::ram::client::{RamClient, SignatureStyle};

const ADMIN_ID: &str = "LTAIadminTestKey0001";
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

    /// Makes the next `count` signed calls answer `Throttling.User`.
    pub async fn throttle(&self, count: u32) {
        control(&self.addr, &format!("/_emulator/throttle?count={count}")).await;
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
