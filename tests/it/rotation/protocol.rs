//! The four-step protocol: promotion keeps the previous version working; a step cut off
//! midway is resumed exactly once.

use super::*;

both_backends!(
    a_rotation_promotes_and_keeps_previous_working,
    |t: TestEnv| async move {
        let rig = rig(t).await;
        let engine = rig.engine("w1", None);
        let name = rig.secret("app").await;
        let first = rig.password(&name, Stage::Current).await;

        let outcome = rig.rotate_now(&engine, &name).await;
        assert_eq!(
            outcome,
            Outcome::Rotated {
                version_id: rotor::model::VersionId::parse("v2").unwrap()
            }
        );
        assert_eq!(
            steps_run(rig.dir(), "app"),
            ["create", "set", "test", "finish"]
        );
        assert_eq!(
            rig.versions(&name).await,
            vec![
                ("v2".into(), vec![Stage::Current]),
                ("v1".into(), vec![Stage::Previous])
            ]
        );
        let second = rig.password(&name, Stage::Current).await;
        assert_ne!(first, second);
        // Current and previous both log in: an application holding the old one keeps working.
        assert_eq!(
            FileRotator::passwords(rig.dir(), "app"),
            vec![first.clone(), second.clone()]
        );
        let info = rig.store.describe(&name).await.unwrap();
        assert_eq!(info.last_rotation_at, Some(rig.now()));
        assert_eq!(info.rotation_status, RotationStatus::Idle);

        rig.rotate_now(&engine, &name).await;
        let third = rig.password(&name, Stage::Current).await;
        assert_eq!(rig.password(&name, Stage::Previous).await, second);
        // Passwords older than ACSPrevious stop working after the clean-up.
        assert_eq!(
            FileRotator::passwords(rig.dir(), "app"),
            vec![second, third]
        );
    }
);

both_backends!(
    a_step_cut_off_midway_is_resumed_exactly_once,
    |t: TestEnv| async move {
        let rig = rig(t).await;
        for step in ["create", "set", "test", "finish"] {
            let name = rig.secret(&format!("cut-{step}")).await;
            rig.schedule(&name, RotationSchedule::Interval(DAY), None, true)
                .await;
            // The first worker hangs in the step; dropping its future is a crash at that instant.
            let hanging = rig.engine(
                "w1",
                Some(Fault {
                    step: step.into(),
                    mode: Mode::Hang,
                    times: None,
                }),
            );
            let claims = rig.due(&hanging).await;
            assert_eq!(claims.len(), 1);
            let cut = tokio::time::timeout(
                Duration::from_millis(300),
                hanging.rotate(&claims[0], false, &CancellationToken::new()),
            )
            .await;
            assert!(cut.is_err(), "the step hangs");
            // Nobody else may take it while the lease lives...
            let other = rig.engine("w2", None);
            assert!(
                rig.due(&other).await.is_empty(),
                "a live lease is respected"
            );
            // ...and once it has expired, another worker resumes the same job.
            rig.clock.advance(LEASE + Duration::from_secs(1));
            let mut outcomes = rig.run_due(&other).await;
            // The secret taken over in `set` the round before is checked once its holder's
            // step timeout has passed: ACSCurrent still logs in, nothing to repair.
            outcomes.retain(|o| {
                assert!(
                    !matches!(
                        o,
                        Outcome::Verified { repaired: true, .. }
                            | Outcome::Verified { error: Some(_), .. }
                    ),
                    "{step}: {o:?}"
                );
                !matches!(o, Outcome::Verified { .. })
            });
            assert!(
                matches!(outcomes[..], [Outcome::Rotated { .. }]),
                "{step}: {outcomes:?}"
            );
            assert_eq!(
                rig.versions(&name).await,
                vec![
                    ("v2".into(), vec![Stage::Current]),
                    ("v1".into(), vec![Stage::Previous])
                ],
                "{step}: exactly one new version, promoted once"
            );
            let current = rig.password(&name, Stage::Current).await;
            assert!(FileRotator::passwords(rig.dir(), name.as_str()).contains(&current));
            // The worker that lost its lease cannot move the job any more.
            let late = hanging
                .rotate(&claims[0], false, &CancellationToken::new())
                .await
                .unwrap();
            assert_eq!(late, Outcome::LeaseLost, "{step}");
            assert!(rig.due(&other).await.is_empty());
        }
    }
);
