//! The wire: the official SDK and rotor's client against the emulator in both signature styles,
//! and the emulator's refusal of reused nonces and stale timestamps.

use super::*;

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
