//! Retries back off, then the cycle fails and a manual run recovers; fatal errors fail at once;
//! a store error while loading the target is retried.

use super::*;

both_backends!(
    retries_back_off_then_the_cycle_fails_and_a_manual_run_recovers,
    |t: TestEnv| async move {
        let rig = rig(t).await;
        let name = rig.secret("flaky").await;
        rig.schedule(&name, RotationSchedule::Interval(7 * DAY), None, true)
            .await;
        let before = rig.password(&name, Stage::Current).await;
        let failing = rig.engine(
            "w1",
            Some(Fault {
                step: "set".into(),
                mode: Mode::Fail,
                times: None,
            }),
        );

        for attempt in 1..=3u32 {
            let started = rig.now();
            let outcomes = rig.run_due(&failing).await;
            let [Outcome::Retrying {
                attempts, next_at, ..
            }] = outcomes[..]
            else {
                panic!("{outcomes:?}")
            };
            assert_eq!(attempts, attempt);
            // base 10 s doubling per attempt, cap 40 s, the upper half jittered.
            let full = (10_000i64 << (attempt - 1)).min(40_000);
            assert!(
                next_at >= started + full / 2 && next_at <= started + full,
                "attempt {attempt}: {}",
                next_at - started
            );
            let info = rig.store.describe(&name).await.unwrap();
            assert_eq!(info.rotation_status, RotationStatus::Retrying);
            assert_eq!(info.rotation_attempts, attempt);
            assert!(info.rotation_error.unwrap().contains("set step failed"));
            // Not before its time...
            rig.clock
                .advance(Duration::from_millis((next_at - started - 1) as u64));
            assert!(
                rig.due(&failing).await.is_empty(),
                "retry waits for its backoff"
            );
            rig.clock.advance(Duration::from_millis(1));
        }
        let outcomes = rig.run_due(&failing).await;
        assert!(
            matches!(outcomes[..], [Outcome::Failed { attempts: 4, .. }]),
            "{outcomes:?}"
        );
        let info = rig.store.describe(&name).await.unwrap();
        assert_eq!(info.rotation_status, RotationStatus::Failed);
        let failure = info.rotation_failure.clone().unwrap();
        assert_eq!(failure.attempts, 4);
        assert!(
            failure.reason.contains("set step failed"),
            "{}",
            failure.reason
        );
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["RotationStatus"], "Failed");
        assert_eq!(json["RotationFailure"]["Attempts"], 4);
        // The current credential is untouched and still logs in; the next try is the next cycle.
        assert_eq!(rig.password(&name, Stage::Current).await, before);
        assert!(FileRotator::passwords(rig.dir(), "flaky").contains(&before));
        assert_eq!(info.next_rotation_at, Some(rig.now() + 7 * 86_400_000));
        assert!(rig.due(&failing).await.is_empty());

        // A manual rotation retries the failed secret, resuming its pending version.
        let healthy = rig.engine("w2", None);
        let outcome = rig.rotate_now(&healthy, &name).await;
        assert!(
            matches!(outcome, Outcome::Rotated { ref version_id } if version_id.as_str() == "v2"),
            "{outcome:?}"
        );
        let info = rig.store.describe(&name).await.unwrap();
        assert_eq!(
            (info.rotation_status, info.rotation_failure),
            (RotationStatus::Idle, None)
        );
    }
);

both_backends!(
    fatal_errors_fail_the_cycle_at_once,
    |t: TestEnv| async move {
        let rig = rig(t).await;
        let name = rig.secret("broken").await;
        rig.schedule(&name, RotationSchedule::Interval(DAY), None, true)
            .await;
        let engine = rig.engine(
            "w1",
            Some(Fault {
                step: "test".into(),
                mode: Mode::Fatal,
                times: None,
            }),
        );
        let outcomes = rig.run_due(&engine).await;
        assert!(
            matches!(outcomes[..], [Outcome::Failed { attempts: 1, .. }]),
            "{outcomes:?}"
        );
        // The stale pending version does not block the next cycle: it resumes at `test`.
        rig.clock.advance(DAY);
        let healthy = rig.engine("w1", None);
        let outcomes = rig.run_due(&healthy).await;
        assert!(
            matches!(outcomes[..], [Outcome::Rotated { .. }]),
            "{outcomes:?}"
        );
        // (The injected failure strikes before the step logs itself.) create and set ran once.
        assert_eq!(
            steps_run(rig.dir(), "broken"),
            ["create", "set", "test", "finish"]
        );
        assert_eq!(rig.versions(&name).await.len(), 2);
    }
);

both_backends!(
    a_store_error_while_loading_the_target_is_retried_not_fatal,
    |t: TestEnv| async move {
        let url = t
            .store_url()
            .unwrap_or_else(|| format!("sqlite://{}", t.data_dir().join("rotor.db").display()));
        let rig = rig(t).await;
        add_unreachable_target(&rig.store, "db1").await;
        let name = rig.secret("onhost").await;
        sqlx::any::install_default_drivers();
        let raw = sqlx::AnyPool::connect(&url).await.unwrap();
        let exec = |sql: &'static str| {
            let raw = raw.clone();
            async move { sqlx::raw_sql(sql).execute(&raw).await.unwrap() }
        };
        exec("UPDATE secrets SET target = 'db1' WHERE name = 'onhost'").await;
        let engine = rig.engine("w1", None);

        // The store cannot read targets for a moment: the attempt is retried, not failed.
        exec("ALTER TABLE targets RENAME TO targets_away").await;
        let outcome = rig.rotate_now(&engine, &name).await;
        assert!(matches!(outcome, Outcome::Retrying { .. }), "{outcome:?}");
        let info = rig.store.describe(&name).await.unwrap();
        assert_eq!(info.rotation_status, RotationStatus::Retrying);

        exec("ALTER TABLE targets_away RENAME TO targets").await;
        let outcome = rig.rotate_now(&engine, &name).await;
        assert!(matches!(outcome, Outcome::Rotated { .. }), "{outcome:?}");
        raw.close().await;
    }
);
