//! The store's domain rules through the library API: versions and stages, put idempotency,
//! pruning, deletion and restore, rotation settings, tags and keys — on both backends.

use std::time::Duration;

use rotators::{SecretKind, SecretType, SecretValue, SubType};
use rotor::model::{RotationPolicy, RotationSchedule, SecretName, Stage, Tag, VersionId};
use rotor::store::{DeleteMode, NewSecret, PutValue, Selector, Store};
use rotor::Error;

use crate::both_backends;
use crate::support::TestEnv;

fn name(s: &str) -> SecretName {
    SecretName::parse(s).unwrap()
}

fn policy(schedule: RotationSchedule) -> RotationPolicy {
    RotationPolicy {
        schedule,
        jitter: None,
        rotate_now: false,
    }
}

fn vid(s: &str) -> VersionId {
    VersionId::parse(s).unwrap()
}

fn generic(n: &str, value: &str) -> NewSecret {
    NewSecret::new(
        name(n),
        SecretKind::new(SecretType::Generic, None).unwrap(),
        SecretValue::from(value),
    )
}

fn put(value: &str) -> PutValue {
    PutValue {
        value: SecretValue::from(value),
        version_id: None,
        stages: vec![],
    }
}

async fn current(store: &Store, n: &str) -> (String, String) {
    let v = store
        .get_value(&name(n), &Selector::default())
        .await
        .unwrap();
    (
        v.version_id.to_string(),
        v.value.as_text().unwrap().to_owned(),
    )
}

/// (version id, stages) newest first.
async fn history(store: &Store, n: &str) -> Vec<(String, Vec<String>)> {
    store
        .versions(&name(n))
        .await
        .unwrap()
        .into_iter()
        .map(|v| {
            (
                v.version_id.to_string(),
                v.version_stages.iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect()
}

both_backends!(first_version_is_v1_and_current, |t: TestEnv| async move {
    let store = t.store().await;
    let done = store.create_secret(generic("app", "one")).await.unwrap();
    assert_eq!(done.version_id.as_str(), "v1");
    assert_eq!(current(&store, "app").await, ("v1".into(), "one".into()));

    let mut custom = generic("custom-id", "x");
    custom.version_id = Some(vid("release-2026.1"));
    store.create_secret(custom).await.unwrap();
    assert_eq!(current(&store, "custom-id").await.0, "release-2026.1");
});

both_backends!(put_moves_current_and_previous, |t: TestEnv| async move {
    let store = t.store().await;
    store.create_secret(generic("app", "one")).await.unwrap();
    let v2 = store.put_value(&name("app"), put("two")).await.unwrap();
    assert_eq!(v2.version_id.as_str(), "v2");
    store.put_value(&name("app"), put("three")).await.unwrap();
    assert_eq!(
        history(&store, "app").await,
        vec![
            ("v3".into(), vec!["ACSCurrent".into()]),
            ("v2".into(), vec!["ACSPrevious".into()]),
            ("v1".into(), vec![]),
        ]
    );
    let prev = store
        .get_value(&name("app"), &Selector::Stage(Stage::Previous))
        .await
        .unwrap();
    assert_eq!(prev.value.as_text(), Some("two"));
    let old = store
        .get_value(&name("app"), &Selector::Version(vid("v1")))
        .await
        .unwrap();
    assert_eq!(old.value.as_text(), Some("one"));
    assert!(old.stages.is_empty());
});

both_backends!(put_is_idempotent_per_version_id, |t: TestEnv| async move {
    let store = t.store().await;
    store.create_secret(generic("app", "one")).await.unwrap();
    let with_id = |v: &str| PutValue {
        value: SecretValue::from(v),
        version_id: Some(vid("build-7")),
        stages: vec![],
    };
    assert!(
        store
            .put_value(&name("app"), with_id("two"))
            .await
            .unwrap()
            .created
    );
    let before = history(&store, "app").await;
    let again = store.put_value(&name("app"), with_id("two")).await.unwrap();
    assert!(!again.created, "same id and data: success without a change");
    assert_eq!(history(&store, "app").await, before);
    let err = store
        .put_value(&name("app"), with_id("other"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert!(err.to_string().contains("build-7"), "{err}");
    assert_eq!(history(&store, "app").await, before);
    assert_eq!(current(&store, "app").await.1, "two");
});

both_backends!(generated_ids_skip_ids_users_took, |t: TestEnv| async move {
    let store = t.store().await;
    store.create_secret(generic("app", "one")).await.unwrap();
    let taken = PutValue {
        value: SecretValue::from("x"),
        version_id: Some(vid("v3")),
        stages: vec![],
    };
    store.put_value(&name("app"), taken).await.unwrap(); // seq 2, id v3
    let next = store.put_value(&name("app"), put("y")).await.unwrap(); // seq 3: v3 is taken
    assert_eq!(next.version_id.as_str(), "v4");
});

both_backends!(
    prunes_beyond_ten_unstaged_versions,
    |t: TestEnv| async move {
        let store = t.store().await;
        store.create_secret(generic("app", "v")).await.unwrap();
        // A custom stage keeps an old version alive however many puts follow.
        store
            .put_value(
                &name("app"),
                PutValue {
                    value: SecretValue::from("pinned"),
                    version_id: Some(vid("pinned")),
                    stages: vec![Stage::Custom("keep".into())],
                },
            )
            .await
            .unwrap();
        for i in 0..30 {
            store
                .put_value(&name("app"), put(&format!("value {i}")))
                .await
                .unwrap();
        }
        let versions = history(&store, "app").await;
        let unstaged = versions.iter().filter(|(_, s)| s.is_empty()).count();
        assert_eq!(unstaged, 10, "{versions:?}");
        assert_eq!(
            versions.len(),
            13,
            "10 unstaged + current + previous + pinned: {versions:?}"
        );
        assert!(versions
            .iter()
            .any(|(id, s)| id == "pinned" && s == &vec!["keep".to_string()]));
        // The kept unstaged versions are the newest ones.
        let ids: Vec<&str> = versions.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(&ids[..3], &["v32", "v31", "v30"]);
        assert!(!ids.contains(&"v1"));
    }
);

both_backends!(stage_moves_follow_the_rules, |t: TestEnv| async move {
    let store = t.store().await;
    let app = name("app");
    store.create_secret(generic("app", "one")).await.unwrap();
    store.put_value(&app, put("two")).await.unwrap();
    store.put_value(&app, put("three")).await.unwrap();

    // Roll back: ACSCurrent to v2; v3 becomes ACSPrevious.
    store
        .update_stage(&app, &Stage::Current, Some(&vid("v2")), None)
        .await
        .unwrap();
    assert_eq!(current(&store, "app").await, ("v2".into(), "two".into()));
    assert_eq!(
        history(&store, "app").await[0],
        ("v3".into(), vec!["ACSPrevious".into()])
    );
    // remove-from must name the version that holds the stage.
    let err = store
        .update_stage(&app, &Stage::Current, Some(&vid("v1")), Some(&vid("v3")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    // ACSCurrent cannot just be removed; ACSPending is the engine's.
    assert!(store
        .update_stage(&app, &Stage::Current, None, Some(&vid("v2")))
        .await
        .is_err());
    assert!(store
        .update_stage(&app, &Stage::Pending, Some(&vid("v1")), None)
        .await
        .is_err());
    // Custom stages on generic secrets: move and remove.
    let blue = Stage::Custom("blue".into());
    store
        .update_stage(&app, &blue, Some(&vid("v1")), None)
        .await
        .unwrap();
    store
        .update_stage(&app, &blue, Some(&vid("v3")), Some(&vid("v1")))
        .await
        .unwrap();
    let by_stage = store
        .get_value(&app, &Selector::Stage(blue.clone()))
        .await
        .unwrap();
    assert_eq!(by_stage.version_id.as_str(), "v3");
    store
        .update_stage(&app, &blue, None, Some(&vid("v3")))
        .await
        .unwrap();
    assert!(matches!(
        store.get_value(&app, &Selector::Stage(blue)).await,
        Err(Error::NotFound(_))
    ));
    // ACSPrevious may be removed.
    store
        .update_stage(&app, &Stage::Previous, None, Some(&vid("v3")))
        .await
        .unwrap();
    // Unknown versions are reported.
    let err = store
        .update_stage(&app, &Stage::Current, Some(&vid("v9")), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    // Exactly one ACSCurrent throughout.
    let currents = history(&store, "app")
        .await
        .iter()
        .filter(|(_, s)| s.contains(&"ACSCurrent".to_string()))
        .count();
    assert_eq!(currents, 1);
});

both_backends!(
    custom_stages_only_on_generic_secrets,
    |t: TestEnv| async move {
        let store = t.store().await;
        let rds = NewSecret {
            kind: SecretKind::new(SecretType::Rds, None).unwrap(),
            value: SecretValue::from(r#"{"AccountName":"app","AccountPassword":"pw1"}"#),
            ..generic("db", "unused")
        };
        store.create_secret(rds).await.unwrap();
        let staged = PutValue {
            value: SecretValue::from(r#"{"AccountName":"app","AccountPassword":"pw2"}"#),
            version_id: None,
            stages: vec![Stage::Custom("blue".into())],
        };
        let err = store.put_value(&name("db"), staged).await.unwrap_err();
        assert!(err.to_string().contains("only allowed on Generic"), "{err}");
        let bad = store
            .put_value(&name("db"), put("not json"))
            .await
            .unwrap_err();
        assert!(matches!(bad, Error::Invalid(_)), "{bad}");
        assert_eq!(history(&store, "db").await.len(), 1);
    }
);

both_backends!(every_type_stores_its_format, |t: TestEnv| async move {
    let store = t.store().await;
    let cases = [
        (
            SecretType::Rds,
            Some(SubType::SingleUser),
            r#"{"AccountName":"root","AccountPassword":"pw"}"#,
        ),
        (
            SecretType::PolarDB,
            None,
            r#"{"AccountName":"app","AccountPassword":"pw"}"#,
        ),
        (
            SecretType::Redis,
            None,
            r#"{"AccountName":"app","AccountPassword":"pw"}"#,
        ),
        (
            SecretType::RAMCredentials,
            None,
            r#"{"AccessKeyId":"LTAI5t","AccessKeySecret":"s3cr3t","GenerateTimestamp":"2026-11-28T00:00:00Z"}"#,
        ),
        (
            SecretType::ECS,
            Some(SubType::Password),
            r#"{"UserName":"deploy","Password":"pw"}"#,
        ),
    ];
    for (i, (ty, sub, value)) in cases.into_iter().enumerate() {
        let n = format!("typed-{i}");
        let new = NewSecret {
            kind: SecretKind::new(ty, sub).unwrap(),
            value: SecretValue::from(value),
            ..generic(&n, "unused")
        };
        store.create_secret(new).await.unwrap();
        let got = store
            .get_value(&name(&n), &Selector::default())
            .await
            .unwrap();
        assert_eq!(got.value.as_text(), Some(value));
        assert_eq!(got.kind.ty, ty);
    }
    // Binary generic values round-trip byte for byte.
    let bytes: Vec<u8> = (0..=255u8).collect();
    let new = NewSecret {
        value: SecretValue::new(bytes.clone()),
        ..generic("blob", "unused")
    };
    store.create_secret(new).await.unwrap();
    let got = store
        .get_value(&name("blob"), &Selector::default())
        .await
        .unwrap();
    assert_eq!(got.value.expose(), &bytes[..]);
});

both_backends!(deletion_window_restore_and_force, |t: TestEnv| async move {
    let store = t.store().await;
    let app = name("app");
    store.create_secret(generic("app", "one")).await.unwrap();
    for days in [6, 31] {
        let err = store
            .delete(&app, DeleteMode::RecoveryWindow(days))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("7 to 30"), "{err}");
    }
    let at = store
        .delete(&app, DeleteMode::RecoveryWindow(7))
        .await
        .unwrap()
        .unwrap();
    let now = store.clock().now_ms();
    assert!((at - now - 7 * 86_400_000).abs() < 60_000);
    // Scheduled: unreadable, unchangeable, hidden from the default list, still described.
    assert!(matches!(
        store.get_value(&app, &Selector::default()).await,
        Err(Error::Conflict(_))
    ));
    assert!(store.put_value(&app, put("two")).await.is_err());
    assert!(store.list(&[], false).await.unwrap().is_empty());
    assert_eq!(store.list(&[], true).await.unwrap().len(), 1);
    assert_eq!(
        store.describe(&app).await.unwrap().planned_delete_at,
        Some(at)
    );
    let err = store
        .create_secret(generic("app", "again"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("scheduled for deletion"), "{err}");
    // Restore brings every version back.
    store.restore(&app).await.unwrap();
    assert_eq!(current(&store, "app").await.1, "one");
    assert!(matches!(store.restore(&app).await, Err(Error::Conflict(_))));
    // Force deletes at once; the name is free again.
    store.delete(&app, DeleteMode::Force).await.unwrap();
    assert!(matches!(
        store.describe(&app).await,
        Err(Error::NotFound(_))
    ));
    store.create_secret(generic("app", "fresh")).await.unwrap();
    assert_eq!(current(&store, "app").await, ("v1".into(), "fresh".into()));
});

both_backends!(recovery_window_ends_with_a_purge, |t: TestEnv| async move {
    let clock = rotor::clock::Clock::manual(1_800_000_000_000);
    let mut config = t.config();
    config.clock = clock.clone();
    let store = Store::open(&config, rotor::store::OpenMode::Init)
        .await
        .unwrap();
    let app = name("app");
    store.create_secret(generic("app", "one")).await.unwrap();
    store.create_secret(generic("other", "x")).await.unwrap();
    store
        .delete(&app, DeleteMode::RecoveryWindow(7))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(6 * 86_400));
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    clock.advance(Duration::from_secs(86_400));
    let err = store.restore(&app).await.unwrap_err();
    assert!(
        err.to_string().contains("recovery window has ended"),
        "{err}"
    );
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    assert!(matches!(
        store.describe(&app).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(current(&store, "other").await.1, "x");
});

both_backends!(
    rotation_settings_are_validated_and_stored,
    |t: TestEnv| async move {
        let clock = rotor::clock::Clock::manual(1_800_000_000_000);
        let mut config = t.config();
        config.clock = clock.clone();
        let store = Store::open(&config, rotor::store::OpenMode::Init)
            .await
            .unwrap();
        let db = NewSecret {
            kind: SecretKind::new(SecretType::Rds, None).unwrap(),
            value: SecretValue::from(r#"{"AccountName":"app","AccountPassword":"pw"}"#),
            ..generic("db", "unused")
        };
        store.create_secret(db).await.unwrap();
        store.create_secret(generic("plain", "x")).await.unwrap();
        let week = Duration::from_secs(7 * 86_400);
        let info = store
            .set_rotation(&name("db"), Some(policy(RotationSchedule::Interval(week))))
            .await
            .unwrap();
        assert_eq!(info.rotation, Some(RotationSchedule::Interval(week)));
        assert_eq!(
            info.next_rotation_at,
            Some(clock.now_ms() + week.as_millis() as i64),
            "not rotated at once"
        );

        let too_short = RotationSchedule::Interval(Duration::from_secs(5 * 3600));
        assert!(matches!(
            store
                .set_rotation(&name("db"), Some(policy(too_short)))
                .await,
            Err(Error::Invalid(_))
        ));
        let generic_err = store
            .set_rotation(
                &name("plain"),
                Some(policy(RotationSchedule::Interval(week))),
            )
            .await
            .unwrap_err();
        assert!(
            generic_err.to_string().contains("do not rotate"),
            "{generic_err}"
        );
        // A refused change leaves the old policy in place.
        assert_eq!(
            store.describe(&name("db")).await.unwrap().rotation,
            Some(RotationSchedule::Interval(week))
        );

        let cron = RotationSchedule::cron("0 3 * * *", Some(Duration::from_secs(7200))).unwrap();
        let info = store
            .set_rotation(&name("db"), Some(policy(cron.clone())))
            .await
            .unwrap();
        assert_eq!(info.rotation, Some(cron));
        let next = rotor::clock::from_ms(info.next_rotation_at.unwrap());
        assert_eq!(next.format("%H:%M").to_string(), "03:00");
        assert!(info.next_rotation_at.unwrap() > clock.now_ms());

        let info = store.set_rotation(&name("db"), None).await.unwrap();
        assert_eq!((info.rotation, info.next_rotation_at), (None, None));
    }
);

both_backends!(tags_filter_the_list, |t: TestEnv| async move {
    let store = t.store().await;
    let tag = |k: &str, v: &str| Tag::new(k, v).unwrap();
    let with_tags = |n: &str, tags: Vec<Tag>| NewSecret {
        tags,
        ..generic(n, "x")
    };
    store
        .create_secret(with_tags(
            "a",
            vec![tag("env", "prod"), tag("team", "core")],
        ))
        .await
        .unwrap();
    store
        .create_secret(with_tags("b", vec![tag("env", "prod")]))
        .await
        .unwrap();
    store
        .create_secret(with_tags("c", vec![tag("env", "dev")]))
        .await
        .unwrap();
    let names = |list: Vec<rotor::store::SecretInfo>| {
        list.into_iter()
            .map(|s| s.name.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.list(&[tag("env", "prod")], false).await.unwrap()),
        ["a", "b"]
    );
    assert_eq!(
        names(
            store
                .list(&[tag("env", "prod"), tag("team", "core")], false)
                .await
                .unwrap()
        ),
        ["a"]
    );
    assert_eq!(
        names(store.list(&[], false).await.unwrap()),
        ["a", "b", "c"]
    );
    assert_eq!(store.describe(&name("a")).await.unwrap().tags.len(), 2);
});

both_backends!(keys_pick_the_protection, |t: TestEnv| async move {
    let store = t.store().await;
    store.create_key("payments").await.unwrap();
    assert!(matches!(
        store.create_key("payments").await,
        Err(Error::Conflict(_))
    ));
    let new = NewSecret {
        key: Some("payments".into()),
        ..generic("card", "4111")
    };
    store.create_secret(new).await.unwrap();
    assert_eq!(
        store.describe(&name("card")).await.unwrap().key_name,
        "payments"
    );
    let missing = NewSecret {
        key: Some("nope".into()),
        ..generic("x", "y")
    };
    assert!(matches!(
        store.create_secret(missing).await,
        Err(Error::NotFound(_))
    ));
    let keys = store.list_keys().await.unwrap();
    let counts: Vec<(String, i64)> = keys
        .into_iter()
        .map(|k| (k.key_id, k.secret_count))
        .collect();
    assert_eq!(counts, vec![("default".into(), 0), ("payments".into(), 1)]);
    // A second process (a fresh open) sees and uses the new key.
    let again = t.store().await;
    assert_eq!(
        again
            .get_value(&name("card"), &Selector::default())
            .await
            .unwrap()
            .value
            .as_text(),
        Some("4111")
    );
});

// A rotation's new version: `v<seq>` when free, else the next free id, on both backends — on
// PostgreSQL the one-call path seals for `v<seq>` from the rotation's load, and takes the
// statement path when a user took that id or the counter moved since the load.
both_backends!(
    a_rotations_version_skips_ids_users_took,
    |t: TestEnv| async move {
        let store = t.store().await;
        let n = name("app");
        store.create_secret(generic("app", "one")).await.unwrap();
        // A user's own id, where the counter's next would go (the counter is now 2).
        let mut taken = put("two");
        taken.version_id = Some(vid("v3"));
        store.put_value(&n, taken).await.unwrap();
        let claim = store
            .claim_now("test", &n, Duration::from_secs(60))
            .await
            .unwrap();
        let loaded = store.load_rotation(&claim).await.unwrap();
        let made = store
            .store_pending(
                &claim,
                &loaded.sealing,
                &SecretValue::from("three"),
                "create",
                "set",
            )
            .await
            .unwrap();
        assert_eq!(made.as_str(), "v4", "v3 is the user's: the next free id");
        // Sealed from a load before that version: the counter moved since.
        let again = store
            .store_pending(
                &claim,
                &loaded.sealing,
                &SecretValue::from("four"),
                "set",
                "set",
            )
            .await
            .unwrap();
        assert_eq!(again.as_str(), "v5");
        let now = store.load_rotation(&claim).await.unwrap();
        let pending = now.pending.expect("ACSPending");
        assert_eq!(pending.version_id, "v5");
        assert_eq!(pending.value.expose(), b"four", "sealed for the id it got");
    }
);

// The check after a takeover is planned once the write of every holder taken over could have
// landed: a later takeover moves it later, never earlier (a hostile run saw the first
// takeover's time kept, the check coming before the last holder's step timeout ran out).
both_backends!(
    a_later_takeover_moves_the_check_after_it_later,
    |t: TestEnv| async move {
        let store = t.store().await;
        let n = name("app");
        store.create_secret(generic("app", "one")).await.unwrap();
        let claim = store
            .claim_now("test", &n, Duration::from_secs(60))
            .await
            .unwrap();
        store.plan_verify(&claim, 2_000_000).await.unwrap();
        store.plan_verify(&claim, 3_000_000).await.unwrap();
        let loaded = store.load_rotation(&claim).await.unwrap();
        assert_eq!(loaded.looks.verify, Some(3_000_000), "the later takeover's");
        store.plan_verify(&claim, 2_500_000).await.unwrap();
        let loaded = store.load_rotation(&claim).await.unwrap();
        assert_eq!(loaded.looks.verify, Some(3_000_000), "never moved earlier");
    }
);
