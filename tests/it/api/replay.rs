//! A signed request is accepted once, across servers sharing a store.

use super::*;

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
