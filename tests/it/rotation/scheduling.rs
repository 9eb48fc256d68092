//! Interval schedules (no rotation at once, no storm after downtime), cron windows and jitter.

use super::*;

both_backends!(
    interval_schedules_never_rotate_at_once_nor_storm_after_downtime,
    |t: TestEnv| async move {
        let rig = rig(t).await;
        let engine = rig.engine("w1", None);
        let name = rig.secret("db").await;
        rig.schedule(&name, RotationSchedule::Interval(DAY), None, false)
            .await;
        assert!(
            rig.due(&engine).await.is_empty(),
            "enabling rotation does not rotate"
        );
        assert_eq!(
            rig.store.describe(&name).await.unwrap().next_rotation_at,
            Some(rig.now() + 86_400_000)
        );
        // Changing the settings takes effect at once.
        rig.schedule(
            &name,
            RotationSchedule::Interval(Duration::from_secs(12 * 3600)),
            None,
            false,
        )
        .await;
        assert_eq!(
            rig.store.describe(&name).await.unwrap().next_rotation_at,
            Some(rig.now() + 43_200_000)
        );
        rig.clock.advance(Duration::from_secs(12 * 3600));
        assert_eq!(rig.run_due(&engine).await.len(), 1);
        // Ten intervals of downtime: one rotation, then the schedule counts from now.
        rig.clock.advance(10 * DAY);
        assert_eq!(rig.run_due(&engine).await.len(), 1);
        assert!(rig.run_due(&engine).await.is_empty(), "no catch-up storm");
        assert_eq!(
            rig.store.describe(&name).await.unwrap().next_rotation_at,
            Some(rig.now() + 43_200_000)
        );
        assert_eq!(
            rig.versions(&name).await.len(),
            2 + 1,
            "v3 current, v2 previous, v1 kept unstaged"
        );
        // --rotate-now makes it due at once.
        rig.schedule(&name, RotationSchedule::Interval(DAY), None, true)
            .await;
        assert_eq!(rig.run_due(&engine).await.len(), 1);
    }
);

both_backends!(cron_windows_and_jitter, |t: TestEnv| async move {
    let rig = rig(t).await; // 2026-01-01T00:00Z
    let engine = rig.engine("w1", None);
    let name = rig.secret("nightly").await;
    let nightly = RotationSchedule::cron("0 3 * * *", Some(Duration::from_secs(3600))).unwrap();
    rig.schedule(&name, nightly.clone(), None, false).await;
    let at = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&Utc)
            .timestamp_millis()
    };
    assert_eq!(
        rig.store.describe(&name).await.unwrap().next_rotation_at,
        Some(at("2026-01-01T03:00:00Z"))
    );
    // The worker was down through the whole window: the rotation waits for the next one.
    rig.clock.advance(Duration::from_secs(5 * 3600));
    let outcomes = rig.run_due(&engine).await;
    assert_eq!(
        outcomes,
        vec![Outcome::MissedWindow {
            next_at: Some(at("2026-01-02T03:00:00Z"))
        }]
    );
    assert_eq!(rig.versions(&name).await.len(), 1, "nothing rotated");
    // Inside the next window it rotates.
    rig.clock.advance(Duration::from_secs(22 * 3600 + 1800)); // 2026-01-02T03:30Z
    assert!(matches!(
        rig.run_due(&engine).await[..],
        [Outcome::Rotated { .. }]
    ));
    assert_eq!(
        rig.store.describe(&name).await.unwrap().next_rotation_at,
        Some(at("2026-01-03T03:00:00Z"))
    );

    // Jitter spreads secrets on one schedule over [fire time, fire time + jitter).
    let mut times = std::collections::HashSet::new();
    for i in 0..20 {
        let n = rig.secret(&format!("spread-{i}")).await;
        rig.schedule(&n, nightly.clone(), Some(Duration::from_secs(1800)), false)
            .await;
        let next = rig
            .store
            .describe(&n)
            .await
            .unwrap()
            .next_rotation_at
            .unwrap();
        assert!(
            (at("2026-01-03T03:00:00Z")..at("2026-01-03T03:30:00Z")).contains(&next),
            "{next}"
        );
        times.insert(next);
    }
    assert!(times.len() > 10, "jittered times differ");
    let too_wide = RotationPolicy {
        schedule: nightly,
        jitter: Some(Duration::from_secs(7200)),
        rotate_now: false,
    };
    assert!(
        rig.store.set_rotation(&name, Some(too_wide)).await.is_err(),
        "jitter must fit the window"
    );
});
