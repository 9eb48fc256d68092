//! The KMS-compatible API: the official Python SDK drives it over HTTPS (rotor's CA pinned) in
//! both signature styles, including a rotation of a PostgreSQL dual-account secret; requests
//! signed here test every refusal with its KMS code.

mod refusals;
mod replay;
mod sdk;
mod transport;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use acs_sign::sign;
use serde_json::Value;

use crate::databases::{create_rds, Pg};
use crate::support::{Backend, TestEnv};

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `rotor serve`, its log collected as it is written.
pub(crate) struct Served {
    child: Child,
    log: std::thread::JoinHandle<String>,
}

/// `rotor serve` on a free loopback port; waits until it accepts connections.
pub(crate) fn serve(t: &TestEnv, extra: &[&str]) -> (Served, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = t
        .rotor()
        .args(["serve", "--api-listen", &addr])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "rotor serve never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Served { child, log }, addr)
}

pub(crate) fn stop(mut served: Served) -> String {
    unsafe { libc::kill(served.child.id() as i32, libc::SIGTERM) };
    let status = served.child.wait().unwrap();
    let log = served.log.join().unwrap();
    assert_eq!(status.code(), Some(0), "serve exits 0 on SIGTERM: {log}");
    log
}

pub(crate) fn access_key(t: &TestEnv, name: &str, allow: &[&str]) -> (String, String) {
    let mut args = vec!["access-key", "create", "--name", name];
    for a in allow {
        args.extend(["--allow", a]);
    }
    let key = t.json(&args);
    (
        key["AccessKeyId"].as_str().unwrap().to_owned(),
        key["AccessKeySecret"].as_str().unwrap().to_owned(),
    )
}

fn sdk_python() -> String {
    std::env::var("ROTOR_TEST_KMS_SDK_PYTHON").unwrap_or_else(|_| {
        panic!("ROTOR_TEST_KMS_SDK_PYTHON is not set: tests/run makes the KMS SDK virtualenv and sets it")
    })
}

/// A client that signs requests itself, to send what the SDK never would.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    host: String,
}

/// How a test request is signed.
#[derive(Clone)]
pub(crate) struct Signing {
    id: String,
    secret: String,
    /// Seconds added to the real time.
    skew: i64,
    nonce: Option<String>,
}

impl Signing {
    pub(crate) fn new((id, secret): &(String, String)) -> Signing {
        Signing {
            id: id.clone(),
            secret: secret.clone(),
            skew: 0,
            nonce: None,
        }
    }

    fn stamp(&self) -> String {
        (chrono::Utc::now() + chrono::Duration::seconds(self.skew))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    fn nonce(&self) -> String {
        self.nonce.clone().unwrap_or_else(rotor::crypto::random_id)
    }
}

impl Client {
    pub(crate) fn new(t: &TestEnv, addr: &str) -> Client {
        let ca = reqwest::Certificate::from_pem(t.ok(&["ca"]).as_bytes()).unwrap();
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let port = addr.rsplit(':').next().unwrap();
        Client {
            http,
            base: format!("https://localhost:{port}/"),
            host: format!("localhost:{port}"),
        }
    }

    /// An RPC-style (HMAC-SHA1) form request; `extra` is appended to the body unsigned.
    pub(crate) async fn v1(
        &self,
        s: &Signing,
        action: &str,
        params: &[(&str, &str)],
        extra: &str,
    ) -> (u16, Value) {
        let mut all: Vec<(String, String)> = vec![
            ("Action".into(), action.into()),
            ("Version".into(), "2016-01-20".into()),
            ("Format".into(), "JSON".into()),
            ("AccessKeyId".into(), s.id.clone()),
            ("SignatureMethod".into(), "HMAC-SHA1".into()),
            ("SignatureVersion".into(), "1.0".into()),
            ("SignatureNonce".into(), s.nonce()),
            ("Timestamp".into(), s.stamp()),
        ];
        all.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let signature = sign::v1_signature(&s.secret, "POST", &all);
        all.push(("Signature".into(), signature));
        let body = format!("{}{extra}", sign::canonical_query(&all));
        self.send(
            self.http
                .post(&self.base)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }

    /// A V3 request with `params` in the query; `sign_date` false leaves x-acs-date out of
    /// the signed headers; `body` is sent (its hash is signed as given in `signed_body`).
    async fn v3(
        &self,
        s: &Signing,
        action: &str,
        params: &[(&str, &str)],
        sign_date: bool,
        body: &[u8],
        signed_body: &[u8],
    ) -> (u16, Value) {
        let query: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body_sha = sign::sha256_hex(signed_body);
        let mut headers = vec![
            ("host".to_string(), self.host.clone()),
            ("x-acs-action".into(), action.into()),
            ("x-acs-content-sha256".into(), body_sha.clone()),
            ("x-acs-date".into(), s.stamp()),
            ("x-acs-signature-nonce".into(), s.nonce()),
            ("x-acs-version".into(), "2016-01-20".into()),
        ];
        let signed: Vec<(String, String)> = headers
            .iter()
            .filter(|(n, _)| sign_date || n != "x-acs-date")
            .cloned()
            .collect();
        let (signature, names) =
            sign::v3_signature(&s.secret, "POST", "/", &query, &signed, &body_sha);
        headers.push((
            "authorization".into(),
            sign::v3_authorization(&s.id, &names, &signature),
        ));
        let mut req = self
            .http
            .post(format!("{}?{}", self.base, sign::canonical_query(&query)))
            .body(body.to_vec());
        for (n, v) in headers.iter().filter(|(n, _)| n != "host") {
            req = req.header(n, v);
        }
        self.send(req).await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let json: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        assert!(json["RequestId"].is_string(), "{json}");
        (status, json)
    }
}

pub(crate) fn refused((status, body): (u16, Value), want_status: u16, code: &str) {
    assert_eq!(
        (status, body["Code"].as_str().unwrap_or("")),
        (want_status, code),
        "{body}"
    );
    assert!(body["Message"].is_string(), "{body}");
}
