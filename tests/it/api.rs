//! The KMS-compatible API: the official Python SDK drives it over HTTPS (rotor's CA pinned) in
//! both signature styles, including a rotation of a PostgreSQL dual-account secret; requests
//! signed here test every refusal with its KMS code.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use acs_sign::sign;
use serde_json::Value;

use crate::databases::Pg;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_drives_the_api_in_both_signature_styles_and_rotates_a_postgres_secret() {
    let pg = Pg::new().await;
    let t = &pg.t;
    let app = pg.name("kms");
    t.ok(&[
        "secret",
        "create",
        "db/kms",
        "--type",
        "Rds",
        "--target",
        "pg",
        "--account",
        &app,
        "--database",
        &pg.db,
    ]);
    let (id, secret) = access_key(t, "sdk", &["*:*"]);
    let (narrow_id, narrow_secret) = access_key(t, "narrow", &["GetSecretValue:other/*"]);
    let ca = t.dir.path().join("ca.pem");
    std::fs::write(&ca, t.ok(&["ca"])).unwrap();
    let (server, addr) = serve(t, &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/sdk_check.py");
    let mut values = vec![secret.clone(), narrow_secret.clone()];
    for algorithm in ["v3", "v2"] {
        let out = std::process::Command::new(sdk_python())
            .args([script, &addr, ca.to_str().unwrap(), &id, &secret])
            .args([&narrow_id, &narrow_secret, algorithm, "db/kms"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{algorithm}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for check in [
            "GetSecretValue by stage and by version id",
            "ListSecrets with paging",
            "DescribeSecret with tags",
            "DeleteSecret, RestoreSecret",
            "refusals",
            "RotateSecret",
        ] {
            assert!(stdout.contains(check), "{algorithm}: {check} in {stdout}");
        }
        // The rotated secret's new ACSCurrent logs in to PostgreSQL.
        let data = stdout
            .lines()
            .find_map(|l| l.strip_prefix("ROTATED "))
            .expect("the rotated value");
        let data: Value = serde_json::from_str(data).unwrap();
        let account = (
            data["AccountName"].as_str().unwrap().to_owned(),
            data["AccountPassword"].as_str().unwrap().to_owned(),
        );
        assert_eq!(pg.login(&account).await.unwrap(), account.0, "{algorithm}");
        values.push(account.1);
    }
    // The target's admin secret is not the API's: not listed, not readable, even with *:*.
    let c = Client::new(t, &addr);
    let key = (id.clone(), secret.clone());
    let (status, listed) = c
        .v1(
            &Signing::new(&key),
            "ListSecrets",
            &[("PageSize", "100")],
            "",
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    assert!(listed["TotalCount"].as_u64().unwrap() > 0);
    assert!(!listed.to_string().contains("acs/"), "{listed}");
    let admin = [("SecretName", "acs/target/pg/admin")];
    refused(
        c.v1(&Signing::new(&key), "GetSecretValue", &admin, "")
            .await,
        400,
        "InvalidParameter",
    );
    let log = stop(server);
    for v in &values {
        assert!(!log.contains(v.as_str()), "the API's log shows a secret");
    }
    pg.cleanup(&[app.clone(), format!("{app}_clone"), format!("{app}_group")])
        .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_its_kms_code_and_no_secret_in_it() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    let value = "Api-Secret-Value-1";
    for name in ["app/one", "app/two", "other/x"] {
        t.ok(&[
            "secret", "create", name, "--type", "Generic", "--value", value,
        ]);
    }
    let all = access_key(&t, "all", &["*:*"]);
    let reader = access_key(&t, "reader", &["GetSecretValue:app/*", "ListSecrets:app/*"]);
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let (server, addr) = serve(&t, &["--metrics-listen", &metrics_addr]);
    let c = Client::new(&t, &addr);
    let get = [("SecretName", "app/one")];

    // Both styles succeed when signed right.
    let (status, body) = c.v1(&Signing::new(&all), "GetSecretValue", &get, "").await;
    assert_eq!(
        (status, body["SecretData"].as_str()),
        (200, Some(value)),
        "{body}"
    );
    let (status, body) = c
        .v3(&Signing::new(&all), "GetSecretValue", &get, true, b"", b"")
        .await;
    assert_eq!(
        (status, body["SecretData"].as_str()),
        (200, Some(value)),
        "{body}"
    );
    assert_eq!(body["VersionStages"]["VersionStage"][0], "ACSCurrent");

    // Timestamps outside ±15 minutes.
    for skew in [-16 * 60, 16 * 60] {
        let s = Signing {
            skew,
            ..Signing::new(&all)
        };
        refused(
            c.v1(&s, "GetSecretValue", &get, "").await,
            400,
            "InvalidTimeStamp.Expired",
        );
        refused(
            c.v3(&s, "GetSecretValue", &get, true, b"", b"").await,
            400,
            "InvalidTimeStamp.Expired",
        );
    }
    let s = Signing {
        skew: 14 * 60,
        ..Signing::new(&all)
    };
    assert_eq!(
        c.v1(&s, "GetSecretValue", &get, "").await.0,
        200,
        "within the window"
    );
    // A nonce used twice.
    let s = Signing {
        nonce: Some("once-only".into()),
        ..Signing::new(&all)
    };
    assert_eq!(c.v1(&s, "GetSecretValue", &get, "").await.0, 200);
    refused(
        c.v1(&s, "GetSecretValue", &get, "").await,
        400,
        "SignatureNonceUsed",
    );
    refused(
        c.v3(&s, "GetSecretValue", &get, true, b"", b"").await,
        400,
        "SignatureNonceUsed",
    );
    // Unknown key, wrong secret, incomplete V3 signatures, a body that is not what was signed.
    let unknown = Signing::new(&("RTAKnobodyhasthiskey0".into(), "x".into()));
    refused(
        c.v1(&unknown, "GetSecretValue", &get, "").await,
        404,
        "InvalidAccessKeyId.NotFound",
    );
    refused(
        c.v3(&unknown, "GetSecretValue", &get, true, b"", b"").await,
        404,
        "InvalidAccessKeyId.NotFound",
    );
    let wrong = Signing::new(&(all.0.clone(), format!("{}x", all.1)));
    refused(
        c.v1(&wrong, "GetSecretValue", &get, "").await,
        400,
        "SignatureDoesNotMatch",
    );
    refused(
        c.v3(&wrong, "GetSecretValue", &get, true, b"", b"").await,
        400,
        "SignatureDoesNotMatch",
    );
    refused(
        c.v3(&Signing::new(&all), "GetSecretValue", &get, false, b"", b"")
            .await,
        400,
        "IncompleteSignature",
    );
    let (status, body) = c
        .send(
            c.http
                .post(&c.base)
                .header("authorization", "ACS3-HMAC-SHA256 garbage"),
        )
        .await;
    refused((status, body), 400, "IncompleteSignature");
    refused(
        c.v3(
            &Signing::new(&all),
            "GetSecretValue",
            &get,
            true,
            b"x=1",
            b"",
        )
        .await,
        400,
        "ContentSHA256NotMatched",
    );

    // Policy: the reader may read app/*, nothing else, and lists only app/*.
    refused(
        c.v1(
            &Signing::new(&reader),
            "GetSecretValue",
            &[("SecretName", "other/x")],
            "",
        )
        .await,
        403,
        "Forbidden.NoPermission",
    );
    refused(
        c.v1(
            &Signing::new(&reader),
            "PutSecretValue",
            &[
                ("SecretName", "app/one"),
                ("VersionId", "v9"),
                ("SecretData", "x"),
            ],
            "",
        )
        .await,
        403,
        "Forbidden.NoPermission",
    );
    refused(
        c.v1(
            &Signing::new(&reader),
            "DeleteSecret",
            &[("SecretName", "app/one")],
            "",
        )
        .await,
        403,
        "Forbidden.NoPermission",
    );
    let (status, body) = c
        .v1(
            &Signing::new(&reader),
            "ListSecrets",
            &[("PageSize", "100")],
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["SecretList"]["Secret"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["SecretName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app/one", "app/two"], "{body}");
    assert_eq!(body["TotalCount"], 2);

    // Bad input: unknown action, wrong version, missing, duplicate and malformed parameters, an
    // oversized body, a missing secret, a duplicate secret.
    refused(
        c.v1(&Signing::new(&all), "DescribeEverything", &get, "")
            .await,
        404,
        "InvalidAction.NotFound",
    );
    refused(
        c.v1(&Signing::new(&all), "GetSecretValue", &[], "").await,
        400,
        "MissingParameter",
    );
    refused(
        c.v1(
            &Signing::new(&all),
            "GetSecretValue",
            &[("SecretName", "app/one"), ("SecretName", "app/two")],
            "",
        )
        .await,
        400,
        "InvalidParameter",
    );
    refused(
        c.v1(
            &Signing::new(&all),
            "ListSecrets",
            &[("PageSize", "1000")],
            "",
        )
        .await,
        400,
        "InvalidParameter",
    );
    refused(
        c.v1(
            &Signing::new(&all),
            "ListSecrets",
            &[("Filters", "[{not json")],
            "",
        )
        .await,
        400,
        "InvalidParameter",
    );
    refused(
        c.v1(
            &Signing::new(&all),
            "DescribeSecret",
            &[("SecretName", "app/one"), ("FetchTags", "maybe")],
            "",
        )
        .await,
        400,
        "InvalidParameter",
    );
    refused(
        c.v1(&Signing::new(&all), "GetSecretValue", &get, "&%ff=%fe")
            .await,
        400,
        "InvalidParameter",
    );
    let (status, body) = c
        .v1(
            &Signing::new(&all),
            "DescribeSecret",
            &[("SecretName", "app/one"), ("FetchTags", "TRUE")],
            "",
        )
        .await;
    assert_eq!(
        (status, body["Tags"]["Tag"].is_array()),
        (200, true),
        "booleans in any case: {body}"
    );
    let big = format!("&Pad={}", "a".repeat(300 * 1024));
    refused(
        c.v1(&Signing::new(&all), "GetSecretValue", &get, &big)
            .await,
        413,
        "InvalidParameter",
    );
    refused(
        c.v1(
            &Signing::new(&all),
            "GetSecretValue",
            &[("SecretName", "app/none")],
            "",
        )
        .await,
        404,
        "Forbidden.ResourceNotFound",
    );
    refused(
        c.v1(
            &Signing::new(&all),
            "CreateSecret",
            &[
                ("SecretName", "app/one"),
                ("SecretData", "x"),
                ("VersionId", "v1"),
            ],
            "",
        )
        .await,
        409,
        "Rejected.ResourceExist",
    );
    let v3_version = {
        let mut s = Signing::new(&all);
        s.nonce = None;
        s
    };
    // A V1 request whose Version is another API's.
    let mut params: Vec<(String, String)> = vec![
        ("Action".into(), "GetSecretValue".into()),
        ("Version".into(), "2015-05-01".into()),
        ("AccessKeyId".into(), v3_version.id.clone()),
        ("SignatureMethod".into(), "HMAC-SHA1".into()),
        ("SignatureVersion".into(), "1.0".into()),
        ("SignatureNonce".into(), rotor::crypto::random_id()),
        ("Timestamp".into(), v3_version.stamp()),
        ("SecretName".into(), "app/one".into()),
    ];
    let signature = sign::v1_signature(&v3_version.secret, "POST", &params);
    params.push(("Signature".into(), signature));
    let res = c
        .send(
            c.http
                .post(&c.base)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(sign::canonical_query(&params)),
        )
        .await;
    refused(res, 400, "InvalidVersion");

    let put = [
        ("SecretName", "app/two"),
        ("VersionId", "v2"),
        ("SecretData", "Api-Put-Value-2"),
    ];
    assert_eq!(
        c.v1(&Signing::new(&all), "PutSecretValue", &put, "")
            .await
            .0,
        200
    );

    // A disabled key stops working within the cache time; enabled again, it works.
    t.ok(&["access-key", "disable", "reader"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    refused(
        c.v1(&Signing::new(&reader), "GetSecretValue", &get, "")
            .await,
        403,
        "InvalidAccessKeyId.Inactive",
    );
    t.ok(&["access-key", "enable", "reader"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        c.v1(&Signing::new(&reader), "GetSecretValue", &get, "")
            .await
            .0,
        200
    );
    t.ok(&["access-key", "delete", "reader"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    refused(
        c.v1(&Signing::new(&reader), "GetSecretValue", &get, "")
            .await,
        404,
        "InvalidAccessKeyId.NotFound",
    );

    // The API's requests show in the metrics, by action and result code.
    let scraped = crate::workers::scrape(&metrics_addr);
    let count = |action: &str, code: &str| {
        crate::workers::sample(
            &scraped,
            "rotor_api_requests_total",
            &[("action", action), ("code", code)],
        )
        .unwrap_or(0.0)
    };
    assert!(count("GetSecretValue", "OK") >= 4.0);
    assert!(count("GetSecretValue", "Forbidden.NoPermission") >= 1.0);
    assert!(count("unknown", "SignatureNonceUsed") >= 2.0);
    assert!(count("unknown", "InvalidAccessKeyId.NotFound") >= 2.0);
    let log = stop(server);
    for secret in [value, all.1.as_str(), reader.1.as_str()] {
        assert!(!log.contains(secret), "the API's log shows a secret");
    }
    // Audit: a write through the API names its AccessKey; key changes are recorded.
    let audit = t.json(&["audit", "--secret", "app/two", "--action", "secret.put"]);
    assert_eq!(
        audit[0]["Actor"],
        format!("api:{}", all.0).as_str(),
        "{audit}"
    );
    let audit = t.ok(&["audit", "--action", "access_key"]);
    for action in [
        "access_key.create",
        "access_key.disable",
        "access_key.enable",
        "access_key.delete",
    ] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
}

#[tokio::test]
async fn plain_http_is_only_for_loopback_and_https_needs_the_ca() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    let out = t.run(&["serve", "--api-listen", "0.0.0.0:0", "--api-plain-http"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = t.run(&["serve"]);
    assert_eq!(out.status.code(), Some(2), "serve needs --api-listen");
    // The CA key is private; a readable one is refused.
    use std::os::unix::fs::PermissionsExt;
    let key = t.data_dir().join("api-ca.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = t.run(&["serve", "--api-listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("api-ca.key"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Plain HTTP on loopback answers; HTTPS refuses a client that does not trust rotor's CA.
    let (server, addr) = serve(&t, &["--api-plain-http"]);
    let res = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    stop(server);
    let (server, addr) = serve(&t, &[]);
    let port = addr.rsplit(':').next().unwrap();
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(true)
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .is_err());
    let c = Client::new(&t, &addr);
    assert_eq!(
        c.http
            .get(format!("https://localhost:{port}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.http
            .get(format!("https://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    stop(server);

    // `rotor worker --api-listen` serves the API beside its rotations (and `serve` may run
    // beside it on the SQLite store: it takes no worker lock).
    t.ok(&[
        "secret",
        "create",
        "w/one",
        "--type",
        "Generic",
        "--value",
        "Worker-Served-1",
    ]);
    let key = access_key(&t, "w", &["GetSecretValue:w/*"]);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut worker = t
        .rotor()
        .args(["worker", "--poll", "100ms", "--api-listen", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the worker's API never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (beside, beside_addr) = serve(&t, &[]);
    for a in [&addr, &beside_addr] {
        let c = Client::new(&t, a);
        let (status, body) = c
            .v3(
                &Signing::new(&key),
                "GetSecretValue",
                &[("SecretName", "w/one")],
                true,
                b"",
                b"",
            )
            .await;
        assert_eq!(
            (status, body["SecretData"].as_str()),
            (200, Some("Worker-Served-1")),
            "{body}"
        );
    }
    stop(beside);
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    assert_eq!(worker.wait().unwrap().code(), Some(0));
}

/// A form body for GetSecretValue signed once (RPC style), to send as it is to several servers.
fn signed_get(key: &(String, String), nonce: &str, secret: &str) -> String {
    let mut params: Vec<(String, String)> = vec![
        ("Action".into(), "GetSecretValue".into()),
        ("Version".into(), "2016-01-20".into()),
        ("Format".into(), "JSON".into()),
        ("AccessKeyId".into(), key.0.clone()),
        ("SignatureMethod".into(), "HMAC-SHA1".into()),
        ("SignatureVersion".into(), "1.0".into()),
        ("SignatureNonce".into(), nonce.into()),
        (
            "Timestamp".into(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ),
        ("SecretName".into(), secret.into()),
    ];
    let signature = sign::v1_signature(&key.1, "POST", &params);
    params.push(("Signature".into(), signature));
    sign::canonical_query(&params)
}

async fn post(c: &Client, body: &str) -> (u16, Value) {
    c.send(
        c.http
            .post(&c.base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned()),
    )
    .await
}

crate::both_backends!(
    a_signed_request_is_accepted_once_across_servers_sharing_a_store,
    |t: TestEnv| async move {
        t.ok(&["init"]);
        t.ok(&[
            "secret",
            "create",
            "app/one",
            "--type",
            "Generic",
            "--value",
            "Shared-Nonce-1",
        ]);
        let key = access_key(&t, "app", &["GetSecretValue:app/*"]);
        let (first, first_addr) = serve(&t, &[]);
        let (second, second_addr) = serve(&t, &[]);
        let (a, b) = (Client::new(&t, &first_addr), Client::new(&t, &second_addr));
        // The same bytes to both servers, in both orders: the second is a replay.
        for (one, other) in [(&a, &b), (&b, &a)] {
            let body = signed_get(&key, &rotor::crypto::random_id(), "app/one");
            let (status, answer) = post(one, &body).await;
            assert_eq!(
                (status, answer["SecretData"].as_str()),
                (200, Some("Shared-Nonce-1")),
                "{answer}"
            );
            refused(post(other, &body).await, 400, "SignatureNonceUsed");
            refused(post(one, &body).await, 400, "SignatureNonceUsed");
        }
        // The same nonce at once to both: one of them accepts it.
        let body = signed_get(&key, &rotor::crypto::random_id(), "app/one");
        let (x, y) = tokio::join!(post(&a, &body), post(&b, &body));
        let mut statuses = [x.0, y.0];
        statuses.sort();
        assert_eq!(statuses, [200, 400], "{} {}", x.1, y.1);
        stop(first);
        stop(second);
    }
);

/// A TLS connection to the API that sends `GET /healthz` and returns the status code and body;
/// the connection stays open (keep-alive) while the stream lives.
async fn tls_healthz(
    port: u16,
    ca_pem: &str,
) -> (
    u16,
    String,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b64: String = ca_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.into()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // One response: the head, then the body its Content-Length announces.
    loop {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed without answering");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return (status, text, tls);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_answered_503_and_served_again_once_one_closes() {
    let t = TestEnv::new(Backend::Sqlite).await;
    t.ok(&["init"]);
    let ca = t.ok(&["ca"]);
    let (server, addr) = serve(&t, &["--api-max-connections", "2"]);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let (status, _, first) = tls_healthz(port, &ca).await;
    assert_eq!(status, 200);
    let (status, _, _second) = tls_healthz(port, &ca).await;
    assert_eq!(status, 200);
    // Two open: a third is told, in the KMS error shape, and closed.
    let (status, answer, _third) = tls_healthz(port, &ca).await;
    assert_eq!(status, 503, "{answer}");
    let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["Code"], "ServiceUnavailable", "{answer}");
    assert!(body["RequestId"].is_string(), "{answer}");
    let head = answer.to_ascii_lowercase();
    assert!(head.contains("connection: close"), "{answer}");
    assert!(head.contains("retry-after: 1"), "{answer}");
    // One closes: a new connection is served (once the server has seen the close).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, answer, _) = tls_healthz(port, &ca).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{answer}");
        assert!(
            Instant::now() < deadline,
            "never served again after a close"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(server);
}
