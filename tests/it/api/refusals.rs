//! Every refusal has its KMS code and no secret in it.

use super::*;

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
    // The rest of that body was never read: the answer says the connection closes, so that
    // no client sends its next request on it (one that did got a broken answer, now and then).
    let res = c
        .http
        .post(&c.base)
        .body(vec![b'a'; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);
    assert_eq!(
        res.headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
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
