//! Plain HTTP only on loopback, HTTPS with the CA, and the connection cap.

use super::*;

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
