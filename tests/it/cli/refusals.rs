//! Bad input is refused with a one-line error and an unchanged store.

use super::*;

both_backends!(
    bad_input_is_refused_and_changes_nothing,
    |t: TestEnv| async move {
        t.ok(&["init"]);
        t.ok(&[
            "secret", "create", "db/app", "--type", "Rds", "--value", RDS_VALUE,
        ]);
        t.ok(&[
            "secret",
            "create",
            "plain",
            "--type",
            "Generic",
            "--value",
            "Keep-Me-77",
            "--version-id",
            "v1",
        ]);
        let too_big = write_file(t.dir.path(), "big", &vec![b'x'; 30_721]);
        let long = "n".repeat(193);
        let k129 = format!("{}=v", "k".repeat(129));
        let v129 = format!("k={}", "v".repeat(129));
        let mut many_tags = vec![
            "secret",
            "create",
            "tagged",
            "--type",
            "Generic",
            "--value",
            "Sekrit-21",
        ];
        let tags: Vec<String> = (0..21).map(|i| format!("k{i}=v")).collect();
        for tag in &tags {
            many_tags.extend(["--tag", tag.as_str()]);
        }
        let create = |name: &'static str, extra: &'static [&'static str]| -> Vec<&'static str> {
            let mut args = vec![
                "secret",
                "create",
                name,
                "--type",
                "Generic",
                "--value",
                "Sekrit-21",
            ];
            args.extend_from_slice(extra);
            args
        };

        // (arguments, exit code, what the message must name)
        let cases: Vec<(Vec<&str>, i32, &str)> = vec![
            (
                vec![
                    "secret",
                    "create",
                    long.as_str(),
                    "--type",
                    "Generic",
                    "--value",
                    "Sekrit-21",
                ],
                2,
                "limit is 192",
            ),
            (create("bad name!", &[]), 2, "contains ' '"),
            (create("acs/mine", &[]), 2, "reserved"),
            (many_tags.clone(), 2, "at most 20"),
            (create("t", &["--tag", "placeholder"]), 2, "KEY=VALUE"),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "Generic",
                    "--value",
                    "Sekrit-21",
                    "--tag",
                    k129.as_str(),
                ],
                2,
                "tag key is 129 characters",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "Generic",
                    "--value",
                    "Sekrit-21",
                    "--tag",
                    v129.as_str(),
                ],
                2,
                "tag value is 129 characters",
            ),
            (
                create("t", &["--tag", "aliyun:env=x"]),
                2,
                "reserved prefix",
            ),
            (create("t", &["--tag", "acs:env=x"]), 2, "reserved prefix"),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "Generic",
                    "--value-file",
                    too_big.to_str().unwrap(),
                ],
                2,
                "30721 bytes",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "Rds",
                    "--value",
                    r#"{"User":"app","Password":"Sekrit-21"}"#,
                ],
                2,
                "unexpected fields 'Password', 'User'",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "Rds",
                    "--value",
                    r#"{"AccountName":"app"}"#,
                ],
                2,
                "missing field 'AccountPassword'",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "ECS",
                    "--sub-type",
                    "SSHKey",
                    "--value",
                    r#"{"UserName":"u","Password":"Sekrit-21"}"#,
                ],
                2,
                "unexpected field 'Password'",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "Vault",
                    "--value",
                    "Sekrit-21",
                ],
                2,
                "unknown secret type",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "PolarDB",
                    "--sub-type",
                    "SingleUser",
                    "--value",
                    "Sekrit-21",
                ],
                2,
                "does not support sub-type",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "t",
                    "--type",
                    "Generic",
                    "--value",
                    "Sekrit-21",
                    "--key",
                    "nope",
                ],
                3,
                "key 'nope' does not exist",
            ),
            (
                vec![
                    "secret",
                    "create",
                    "plain",
                    "--type",
                    "Generic",
                    "--value",
                    "Sekrit-21",
                ],
                4,
                "already exists",
            ),
            (
                vec!["rotation", "set", "db/app", "--interval", "1h"],
                2,
                "out of bounds",
            ),
            (
                vec!["rotation", "set", "db/app", "--interval", "400d"],
                2,
                "out of bounds",
            ),
            (
                vec!["rotation", "set", "plain", "--interval", "7d"],
                2,
                "do not rotate automatically",
            ),
            (
                vec!["rotation", "set", "db/app", "--cron", "0 3 * *"],
                2,
                "malformed cron",
            ),
            (
                vec!["rotation", "set", "db/app", "--cron", "*/10 * * * *"],
                2,
                "too often",
            ),
            (
                vec!["rotation", "set", "db/app", "--interval", "soon"],
                2,
                "malformed duration",
            ),
            (
                vec!["secret", "get", "nope"],
                3,
                "secret 'nope' does not exist",
            ),
            (
                vec!["secret", "get", "plain", "--version-id", "v9"],
                3,
                "no version 'v9'",
            ),
            (
                vec!["secret", "put", "nope", "--value", "Sekrit-21"],
                3,
                "does not exist",
            ),
            (
                vec![
                    "secret",
                    "put",
                    "plain",
                    "--value",
                    "Sekrit-21",
                    "--version-id",
                    "v1",
                ],
                4,
                "already exists with other data",
            ),
            (
                vec!["secret", "put", "db/app", "--value", "Sekrit-21"],
                2,
                "must be a JSON object",
            ),
            (
                vec![
                    "secret", "put", "db/app", "--value", RDS_VALUE, "--stage", "blue",
                ],
                2,
                "only allowed on Generic",
            ),
            (
                vec![
                    "secret",
                    "put",
                    "plain",
                    "--value",
                    "Sekrit-21",
                    "--stage",
                    "ACSPending",
                ],
                2,
                "ACSPending is managed",
            ),
            (
                vec![
                    "secret",
                    "stage",
                    "plain",
                    "--stage",
                    "ACSCurrent",
                    "--move-to",
                    "v7",
                ],
                3,
                "no version 'v7'",
            ),
            (
                vec!["secret", "delete", "plain", "--recovery-days", "3"],
                2,
                "7 to 30 days",
            ),
            (
                vec!["secret", "restore", "plain"],
                4,
                "not scheduled for deletion",
            ),
            (vec!["key", "create", "default"], 4, "already exists"),
        ];
        let before = t.snapshot().await;
        for (args, code, expect) in cases {
            let out = t.run(&args);
            assert_refused(&out, code, expect, Some("Sekrit-21"));
            assert_eq!(
                t.snapshot().await,
                before,
                "rotor {args:?} changed the store"
            );
        }
    }
);

/// Found by a hostile run: `secret stage` moved a managed secret's ACSCurrent to a version its
/// target does not hold, with no login check.
#[tokio::test]
async fn a_managed_secrets_current_and_previous_do_not_move_by_hand() {
    let t = TestEnv::new(crate::support::Backend::Sqlite).await;
    t.ok(&["init"]);
    t.ok(&[
        "secret", "create", "db/app", "--type", "Rds", "--value", RDS_VALUE,
    ]);
    let before = t.snapshot().await;
    for stage in ["ACSCurrent", "ACSPrevious"] {
        let out = t.run(&[
            "secret",
            "stage",
            "db/app",
            "--stage",
            stage,
            "--move-to",
            "v1",
        ]);
        assert_refused(
            &out,
            2,
            "moves only with its credential on the target",
            None,
        );
    }
    assert_eq!(t.snapshot().await, before, "nothing changed");
}
