//! The official Python SDK drives the API in both signature styles and rotates a PostgreSQL
//! dual-account secret.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_drives_the_api_in_both_signature_styles_and_rotates_a_postgres_secret() {
    let pg = Pg::new().await;
    let t = &pg.t;
    let app = pg.name("kms");
    t.ok(&create_rds(
        "db/kms",
        "pg",
        &["--account", &app, "--database", &pg.db],
    ));
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
    pg.cleanup_dual(&app).await;
}
