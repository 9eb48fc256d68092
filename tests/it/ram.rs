//! The RAM stand-in and rotor's RAM client. The cloud's RAM API cannot run here, so
//! `ram-emulator` (tests/ram-emulator) plays it; the official Alibaba Cloud RAM SDK for Python
//! drives it first, in both signature styles, which is what shows that the emulator, rotor's
//! client and the real SDK agree on the wire.

mod keys;
mod lifecycle;
mod wire;

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

    /// Makes the next CreateAccessKey call create the key and answer 503, and every signed
    /// call after it answer 503 until [`end_outage`](Self::end_outage): the network down just
    /// after the cloud made the key.
    pub async fn lose_create_then_outage(&self) {
        control(&self.addr, "/_emulator/lose-create?count=1&outage=1").await;
    }

    /// Ends the outage [`lose_create_then_outage`](Self::lose_create_then_outage) started.
    pub async fn end_outage(&self) {
        control(&self.addr, "/_emulator/outage?on=0").await;
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
