//! The audit log (`rotor audit`): who did what, recorded in the change's transaction.

use super::*;

// ---- Audit log -----------------------------------------------------------------------------

fn audit(t: &TestEnv, hosts: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json", "audit"];
    all.extend_from_slice(args);
    let out = testkit_ok(t, hosts, &all);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn actions(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| {
            (
                r["Action"].as_str().unwrap().to_owned(),
                r["Outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

both_backends!(
    the_audit_log_records_every_change_and_rotation_step_and_no_value,
    |t: TestEnv| async move {
        let hosts = tempfile::tempdir().unwrap();
        let hosts = hosts.path();
        testkit_ok(&t, hosts, &["init"]);
        ecs_secret(&t, hosts, "a1");
        testkit_ok(&t, hosts, &["rotation", "set", "a1", "--interval", "1d"]);
        // One attempt fails at `set`, the next run completes.
        let out = t
            .testkit(hosts)
            .env("ROTOR_TEST_FAULT", "set:fail:1")
            .args(["rotate", "a1"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
        testkit_ok(&t, hosts, &["rotate", "a1"]);

        let records = audit(&t, hosts, &["--secret", "a1"]);
        assert_eq!(
            actions(&records),
            [
                ("secret.create", "ok"),
                ("rotation.policy", "ok"),
                ("rotation.create", "ok"),
                ("rotation.set", "retrying"),
                ("rotation.set", "ok"),
                ("rotation.test", "ok"),
                ("rotation.promote", "ok"),
                ("rotation.finish", "ok"),
            ]
            .map(|(a, o)| (a.to_owned(), o.to_owned())),
            "{records:#?}"
        );
        let cli = records[0]["Actor"].as_str().unwrap();
        assert!(cli.starts_with("cli:"), "{cli}");
        // A manual rotation names who asked; the lease holder is in the detail.
        for r in &records[2..] {
            assert_eq!(r["Actor"], cli, "{r}");
            assert!(
                r["Detail"].as_str().unwrap().contains("lease worker:"),
                "{r}"
            );
        }
        assert_eq!(records[2]["VersionId"], "v2");
        assert_eq!(records[6]["VersionId"], "v2");
        assert!(
            records[3]["Detail"].as_str().unwrap().contains("attempt 1"),
            "{}",
            records[3]
        );
        let ids: Vec<i64> = records.iter().map(|r| r["Id"].as_i64().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");

        // Filters.
        let rotation = audit(&t, hosts, &["--secret", "a1", "--action", "rotation"]);
        assert_eq!(rotation.len(), 7);
        assert_eq!(audit(&t, hosts, &["--action", "rotation.promote"]).len(), 1);
        assert_eq!(
            audit(&t, hosts, &["--secret", "a1", "--since", "1h"]).len(),
            8
        );
        assert_eq!(
            audit(&t, hosts, &["--secret", "a1", "--limit", "2"]).len(),
            2
        );
        let out = t
            .testkit(hosts)
            .args(["audit", "--action", "x';--"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

        // Refused writes leave no record: a conflicting put, a stage move to a missing version.
        t.ok(&[
            "secret",
            "create",
            "g1",
            "--type",
            "Generic",
            "--value",
            "Generic-Value-1",
        ]);
        let before = audit(&t, hosts, &[]).len();
        let out = t.run(&[
            "secret",
            "put",
            "g1",
            "--version-id",
            "v1",
            "--value",
            "Other-Value-2",
        ]);
        assert!(!out.status.success());
        let out = t.run(&[
            "secret",
            "stage",
            "g1",
            "--stage",
            "blue",
            "--move-to",
            "v9",
        ]);
        assert!(!out.status.success(), "{}", stderr(&out));
        assert_eq!(
            audit(&t, hosts, &[]).len(),
            before,
            "no record of refused writes"
        );
        // Reads are recorded only when configured.
        t.ok(&["secret", "get", "g1"]);
        assert!(audit(&t, hosts, &["--action", "secret.read"]).is_empty());
        let out = t
            .rotor()
            .env("ROTOR_AUDIT_READS", "true")
            .args(["secret", "get", "g1"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let reads = audit(&t, hosts, &["--action", "secret.read"]);
        assert_eq!(reads.len(), 1);
        assert_eq!(
            (
                reads[0]["SecretName"].as_str(),
                reads[0]["VersionId"].as_str()
            ),
            (Some("g1"), Some("v1"))
        );

        // The store itself refuses to change a record.
        let refused = match &t.pg_db {
            Some(_) => {
                let mut conn =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&t.store_url().unwrap())
                        .await
                        .unwrap();
                sqlx::Executor::execute(&mut conn, "UPDATE audit_log SET outcome = 'ok'")
                    .await
                    .unwrap_err()
                    .to_string()
            }
            None => {
                let url = format!("sqlite://{}", t.data_dir().join("rotor.db").display());
                let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                    .await
                    .unwrap();
                sqlx::Executor::execute(&mut conn, "UPDATE audit_log SET outcome = 'ok'")
                    .await
                    .unwrap_err()
                    .to_string()
            }
        };
        assert!(
            refused.contains("audit records cannot be changed"),
            "{refused}"
        );

        // No value anywhere in the log.
        let all = testkit_ok(&t, hosts, &["--json", "audit"]);
        let mut values = FileRotator::passwords(hosts, "a1");
        values.extend([
            "initial-a1".into(),
            "Generic-Value-1".into(),
            "Other-Value-2".into(),
        ]);
        for v in &values {
            assert!(!all.contains(v.as_str()), "the audit log shows a value");
        }

        // A worker killed mid-rotation: the next one takes over its lease (counted in the
        // metrics), and the log names both workers.
        ecs_secret(&t, hosts, "k1");
        testkit_ok(
            &t,
            hosts,
            &["rotation", "set", "k1", "--interval", "1d", "--rotate-now"],
        );
        let mut doomed = spawn_worker(&t, hosts, Some("set:crash-during"), &[]);
        wait_exit(&mut doomed, Duration::from_secs(30));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut survivor = spawn_worker(&t, hosts, None, &["--metrics-listen", &addr]);
        let store = t.store().await;
        wait_rotated(&store, "k1", Duration::from_secs(30)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "metrics listener");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            sample(&scrape(&addr), "rotor_lease_takeovers_total", &[]),
            Some(1.0)
        );
        terminate(&mut survivor);
        let k1 = audit(&t, hosts, &["--secret", "k1", "--action", "rotation"]);
        let workers: std::collections::BTreeSet<&str> = k1
            .iter()
            .map(|r| r["Actor"].as_str().unwrap())
            .filter(|a| a.starts_with("worker:"))
            .collect();
        assert_eq!(workers.len(), 2, "{k1:#?}");

        // Retention: the worker prunes records older than audit.retention.
        std::thread::sleep(Duration::from_millis(1100));
        let mut worker = t
            .testkit(hosts)
            .args(["worker"])
            .args(FAST)
            .env("ROTOR_AUDIT_RETENTION", "1s")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !audit(&t, hosts, &["--action", "secret.create"]).is_empty() {
            assert!(Instant::now() < deadline, "old records were not pruned");
            std::thread::sleep(Duration::from_millis(100));
        }
        terminate(&mut worker);
    }
);

// ---- Webhooks ------------------------------------------------------------------------------
