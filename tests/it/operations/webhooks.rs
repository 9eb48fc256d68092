//! Failure webhooks against a local receiver that checks signatures.

use super::*;

/// One request a receiver took: headers of interest and the raw body.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    path: String,
    pub(crate) event: String,
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
    /// What the receiver answered.
    status: u16,
}

impl Delivery {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    /// Checks the signature as a receiver would: HMAC-SHA256 over `TIMESTAMP.BODY`, a fresh
    /// timestamp.
    fn verifies(&self, key: &[u8]) -> bool {
        let ts: i64 = self.timestamp.parse().expect("numeric timestamp");
        let now = chrono::Utc::now().timestamp();
        if (now - ts).abs() > 300 {
            return false;
        }
        let Some(hex) = self.signature.strip_prefix("v1=") else {
            return false;
        };
        let Ok(given) = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
        else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(self.timestamp.as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        mac.verify_slice(&given).is_ok()
    }
}

#[derive(Clone, Default)]
pub(crate) struct Receiver {
    got: Arc<Mutex<Vec<Delivery>>>,
    /// Requests to refuse with 503 before accepting.
    refuse: Arc<AtomicU32>,
}

impl Receiver {
    pub(crate) async fn start(listener: tokio::net::TcpListener, refuse: u32) -> Receiver {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode, Uri};
        let receiver = Receiver::default();
        receiver.refuse.store(refuse, Ordering::SeqCst);
        async fn take(
            State(r): State<Receiver>,
            uri: Uri,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> StatusCode {
            let h = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let refuse = r
                .refuse
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let status = if refuse {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::NO_CONTENT
            };
            r.got.lock().unwrap().push(Delivery {
                path: uri.path().to_owned(),
                event: h("x-rotor-event"),
                id: h("x-rotor-delivery"),
                timestamp: h("x-rotor-timestamp"),
                signature: h("x-rotor-signature"),
                body: body.to_vec(),
                status: status.as_u16(),
            });
            status
        }
        let app = axum::Router::new()
            .fallback(axum::routing::post(take))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    pub(crate) fn accepted(&self) -> Vec<Delivery> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.status == 204)
            .cloned()
            .collect()
    }

    pub(crate) async fn wait_for(&self, event: &str, secret: &str, within: Duration) -> Delivery {
        let deadline = Instant::now() + within;
        loop {
            if let Some(d) = self
                .accepted()
                .into_iter()
                .find(|d| d.event == event && d.json()["SecretName"] == secret)
            {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "no {event} notice for {secret} within {within:?}: {:#?}",
                self.got.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_and_never_hold_up_a_rotation() {
    let t = TestEnv::new(Backend::Sqlite).await;
    let hosts = tempfile::tempdir().unwrap();
    let hosts = hosts.path();
    testkit_ok(&t, hosts, &["init"]);
    for name in ["ok-app", "bad-app", "soon-app"] {
        ecs_secret(&t, hosts, name);
    }
    let key_a = "File-Hook-Key-0123456789";
    let key_b = "Inline-Hook-Key-0123456789";
    let key_file = t.data_dir().join("hook-a.key");
    write_private(&key_file, &format!("{key_a}\n"), 0o600);
    // Receiver A takes every event (refusing its first request); B only `secret_failed`, and
    // is down until the failure has happened.
    let a_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a_port = a_listener.local_addr().unwrap().port();
    let a = Receiver::start(a_listener, 1).await;
    let b_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write_private(
        &t.data_dir().join("rotor.toml"),
        &format!(
            "[[webhook]]\nurl = \"http://127.0.0.1:{a_port}/hooks/a\"\nsecret_file = {:?}\ndue_soon = \"2h\"\n\n\
             [[webhook]]\nurl = \"http://127.0.0.1:{b_port}/hooks/b\"\nevents = [\"secret_failed\"]\nsecret = \"{key_b}\"\nmax_attempts = 12\n",
            key_file.display().to_string()
        ),
        0o600,
    );

    // A success, and a secret due within A's two hours.
    testkit_ok(
        &t,
        hosts,
        &["rotation", "set", "soon-app", "--interval", "1h"],
    );
    testkit_ok(
        &t,
        hosts,
        &[
            "rotation",
            "set",
            "ok-app",
            "--interval",
            "1d",
            "--rotate-now",
        ],
    );
    let mut worker = spawn_worker(&t, hosts, None, &[]);
    let ok = a
        .wait_for("rotation_succeeded", "ok-app", Duration::from_secs(30))
        .await;
    let soon = a
        .wait_for("secret_due_soon", "soon-app", Duration::from_secs(30))
        .await;
    terminate(&mut worker);
    let body = ok.json();
    assert_eq!(body["SecretType"], "ECS");
    assert_eq!(body["VersionId"], "v2");
    assert!(body["NextRotationDate"].is_null());
    assert!(soon.json()["NextRotationDate"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let store = t.store().await;
    wait_rotated(&store, "ok-app", Duration::from_secs(1)).await;
    // The refused first request was sent again with the same delivery id.
    let all = a.got.lock().unwrap().clone();
    assert_eq!(all[0].status, 503);
    assert!(
        all[1..]
            .iter()
            .any(|d| d.id == all[0].id && d.status == 204),
        "the refused notice was retried: {all:#?}"
    );

    // A failure: A hears both events at once; B is down and hears when it comes back.
    testkit_ok(
        &t,
        hosts,
        &[
            "rotation",
            "set",
            "bad-app",
            "--interval",
            "1d",
            "--rotate-now",
        ],
    );
    let mut worker = spawn_worker(&t, hosts, Some("set:fatal"), &[]);
    let failed = a
        .wait_for("secret_failed", "bad-app", Duration::from_secs(30))
        .await;
    a.wait_for("rotation_failed", "bad-app", Duration::from_secs(5))
        .await;
    let error = failed.json()["Error"].as_str().unwrap().to_owned();
    assert!(error.contains("set step failed"), "{error}");
    assert_eq!(failed.json()["Attempts"], 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b_listener = tokio::net::TcpListener::bind(("127.0.0.1", b_port))
        .await
        .unwrap();
    let b = Receiver::start(b_listener, 0).await;
    b.wait_for("secret_failed", "bad-app", Duration::from_secs(40))
        .await;
    terminate(&mut worker);
    assert!(b.accepted().iter().all(|d| d.event == "secret_failed"));

    // Every notice is signed with its webhook's key over the exact body, names its event in
    // the header and the body, and carries no value.
    let mut values: Vec<String> = vec![];
    for name in ["ok-app", "bad-app", "soon-app"] {
        values.extend(FileRotator::passwords(hosts, name));
        values.push(format!("initial-{name}"));
    }
    for (receiver, key, path) in [(&a, key_a, "/hooks/a"), (&b, key_b, "/hooks/b")] {
        let got = receiver.accepted();
        assert!(!got.is_empty());
        for d in got {
            assert_eq!(d.path, path);
            assert!(d.verifies(key.as_bytes()), "signature of {d:?}");
            assert!(!d.verifies(b"another-key-0123456789"), "a wrong key fails");
            assert_eq!(d.json()["Event"], d.event.as_str());
            let body = String::from_utf8_lossy(&d.body);
            for v in &values {
                assert!(!body.contains(v.as_str()), "a notice shows a value: {body}");
            }
        }
    }
}
