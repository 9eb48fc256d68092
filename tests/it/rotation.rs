//! The rotation engine in-process, with a manual clock and the file-host test rotator: the
//! four-step protocol and promotion, resuming after a step is cut off, backoff and the failed
//! state, leases, and scheduling (interval, cron windows, jitter, no catch-up storm) — on both
//! backends.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rotators::{Registry, SecretKind, SecretType, SecretValue, SubType};
use rotor::clock::Clock;
use rotor::engine::{Claim, Engine, EngineConfig, Outcome, Step};
use rotor::model::{RotationPolicy, RotationSchedule, SecretName, Stage};
use rotor::store::{NewSecret, OpenMode, RotationStatus, Selector, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::both_backends;
use crate::support::TestEnv;
use crate::testkit_rotator::{Fault, FileRotator, Mode};

const DAY: Duration = Duration::from_secs(86_400);
const LEASE: Duration = Duration::from_secs(30);

struct Rig {
    store: Store,
    clock: Clock,
    hosts: tempfile::TempDir,
    _t: TestEnv,
}

async fn rig(t: TestEnv) -> Rig {
    let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .timestamp_millis();
    let clock = Clock::manual(start);
    let mut config = t.config();
    config.clock = clock.clone();
    let store = Store::open(&config, OpenMode::Init).await.unwrap();
    Rig {
        store,
        clock,
        hosts: tempfile::tempdir().unwrap(),
        _t: t,
    }
}

impl Rig {
    fn engine(&self, owner: &str, fault: Option<Fault>) -> Engine {
        let mut registry = Registry::new();
        registry.register(ecs(), FileRotator::new(self.hosts.path(), fault));
        let config = EngineConfig {
            owner: owner.into(),
            lease: LEASE,
            max_attempts: 4,
            backoff_base: Duration::from_secs(10),
            backoff_cap: Duration::from_secs(40),
            step_timeout: Duration::from_secs(10),
            test_retries: 0,
            test_retry_delay: Duration::ZERO,
        };
        Engine::new(self.store.clone(), registry, config)
    }

    fn dir(&self) -> &Path {
        self.hosts.path()
    }

    /// An `ECS`/`Password` secret for `user`, whose host accepts its first password.
    async fn secret(&self, name: &str) -> SecretName {
        let password = format!("initial-{name}");
        self.store
            .create_secret(NewSecret::new(
                SecretName::parse(name).unwrap(),
                ecs(),
                SecretValue::new(
                    json!({"UserName": name, "Password": password})
                        .to_string()
                        .into_bytes(),
                ),
            ))
            .await
            .unwrap();
        FileRotator::set_passwords(self.dir(), name, &[password]);
        SecretName::parse(name).unwrap()
    }

    async fn schedule(
        &self,
        name: &SecretName,
        schedule: RotationSchedule,
        jitter: Option<Duration>,
        rotate_now: bool,
    ) {
        let policy = RotationPolicy {
            schedule,
            jitter,
            rotate_now,
        };
        self.store.set_rotation(name, Some(policy)).await.unwrap();
    }

    async fn due(&self, engine: &Engine) -> Vec<Claim> {
        self.store
            .claim_due(&engine.config().owner, LEASE, 100)
            .await
            .unwrap()
            .into_iter()
            .map(Claim::granted)
            .collect()
    }

    /// Claims what is due and rotates it; returns the outcomes.
    async fn run_due(&self, engine: &Engine) -> Vec<Outcome> {
        let mut outcomes = vec![];
        for claim in self.due(engine).await {
            outcomes.push(
                engine
                    .rotate(&claim, false, &CancellationToken::new())
                    .await
                    .unwrap(),
            );
        }
        outcomes
    }

    async fn rotate_now(&self, engine: &Engine, name: &SecretName) -> Outcome {
        let claim = Claim::granted(
            self.store
                .claim_now(&engine.config().owner, name, LEASE)
                .await
                .unwrap(),
        );
        engine
            .rotate(&claim, true, &CancellationToken::new())
            .await
            .unwrap()
    }

    async fn password(&self, name: &SecretName, stage: Stage) -> String {
        let v = self
            .store
            .get_value(name, &Selector::Stage(stage))
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(v.value.expose()).unwrap();
        json["Password"].as_str().unwrap().to_owned()
    }

    async fn versions(&self, name: &SecretName) -> Vec<(String, Vec<Stage>)> {
        self.store
            .versions(name)
            .await
            .unwrap()
            .into_iter()
            .map(|v| (v.version_id.to_string(), v.version_stages))
            .collect()
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// A PostgreSQL target nothing ever connects to (adding one touches no server).
async fn add_unreachable_target(store: &Store, name: &str) {
    let mut admin = rotators::Options::new();
    admin
        .insert(
            "admin-user",
            rotators::family::OptionValue::Text("admin".into()),
        )
        .insert(
            "admin-password",
            rotators::family::OptionValue::Secret("unused".into()),
        );
    rotor::targets::add_target(
        store,
        &rotor::builtin_rotators(),
        name,
        "postgres",
        Some("postgres://127.0.0.1:1/none"),
        &admin,
        false,
    )
    .await
    .unwrap();
}

fn ecs() -> SecretKind {
    SecretKind::new(SecretType::ECS, Some(SubType::Password)).unwrap()
}

fn steps_run(dir: &Path, secret: &str) -> Vec<String> {
    FileRotator::log(dir)
        .into_iter()
        .filter(|(s, _, _)| s == secret)
        .map(|(_, step, _)| step)
        .collect()
}

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

both_backends!(
    shutdown_stops_between_steps_and_the_job_resumes,
    |t: TestEnv| async move {
        let rig = rig(t).await;
        let name = rig.secret("drain").await;
        rig.schedule(&name, RotationSchedule::Interval(DAY), None, true)
            .await;
        let engine = Arc::new(rig.engine("w1", None));
        let claims = rig.due(&engine).await;
        let stop = CancellationToken::new();
        stop.cancel();
        let outcome = engine.rotate(&claims[0], false, &stop).await.unwrap();
        assert_eq!(outcome, Outcome::Interrupted { step: Step::Create });
        assert_eq!(rig.store.release_leases("w1").await.unwrap(), 1);
        // Released at once: another worker takes it without waiting for the lease to expire.
        let other = rig.engine("w2", None);
        assert!(matches!(
            rig.run_due(&other).await[..],
            [Outcome::Rotated { .. }]
        ));
    }
);

/// Counts rotations in flight per group (the secret name's prefix before `-`) during `set`.
#[derive(Default)]
struct Probe {
    counts: std::sync::Mutex<std::collections::HashMap<String, (usize, usize)>>,
}

impl Probe {
    fn max(&self, group: &str) -> usize {
        self.counts.lock().unwrap().get(group).map_or(0, |c| c.1)
    }
}

#[async_trait::async_trait]
impl rotators::Rotator for Probe {
    async fn create(
        &self,
        cx: &rotators::RotationContext,
    ) -> Result<SecretValue, rotators::RotateError> {
        let value = json!({"UserName": cx.secret_name, "Password": rotor::crypto::random_id()});
        Ok(SecretValue::new(value.to_string().into_bytes()))
    }
    async fn set(
        &self,
        cx: &rotators::RotationContext,
        _: &SecretValue,
    ) -> Result<(), rotators::RotateError> {
        let group = cx.secret_name.split('-').next().unwrap().to_owned();
        {
            let mut counts = self.counts.lock().unwrap();
            let c = counts.entry(group.clone()).or_default();
            c.0 += 1;
            c.1 = c.1.max(c.0);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.counts.lock().unwrap().get_mut(&group).unwrap().0 -= 1;
        Ok(())
    }
    async fn test(
        &self,
        _: &rotators::RotationContext,
        _: &SecretValue,
    ) -> Result<(), rotators::RotateError> {
        Ok(())
    }
}

both_backends!(
    the_worker_limits_rotations_per_target_and_in_all,
    |t: TestEnv| async move {
        let url = t
            .store_url()
            .unwrap_or_else(|| format!("sqlite://{}", t.data_dir().join("rotor.db").display()));
        let rig = rig(t).await;
        let mut names = vec![];
        for i in 0..8 {
            names.push(rig.secret(&format!("db1-{i}")).await);
            names.push(rig.secret(&format!("free-{i}")).await);
        }
        for name in &names {
            rig.schedule(name, RotationSchedule::Interval(DAY), None, true)
                .await;
        }
        // A target the probe never connects to; the secrets are put on it by hand (create
        // mode would need a real server).
        add_unreachable_target(&rig.store, "db1").await;
        sqlx::any::install_default_drivers();
        let raw = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query("UPDATE secrets SET target = 'db1' WHERE name LIKE 'db1-%'")
            .execute(&raw)
            .await
            .unwrap();
        raw.close().await;

        // A worker whose slots on db1 are all taken claims only the other secrets.
        let claims = rig
            .store
            .claim_due_except("peek", LEASE, 100, &["db1".to_string()])
            .await
            .unwrap();
        assert_eq!(claims.len(), 8);
        assert!(claims.iter().all(|c| c.name.as_str().starts_with("free-")));
        assert_eq!(rig.store.release_leases("peek").await.unwrap(), 8);

        let probe = Arc::new(Probe::default());
        let mut registry = Registry::new();
        registry.register(ecs(), probe.clone());
        let config = EngineConfig {
            owner: "w1".into(),
            lease: LEASE,
            ..EngineConfig::default()
        };
        let engine = Arc::new(Engine::new(rig.store.clone(), registry, config));
        let worker_config = rotor::worker::WorkerConfig {
            concurrency: 6,
            per_target: 2,
            poll: Duration::from_millis(20),
            drain_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let shutdown = CancellationToken::new();
        let worker = tokio::spawn(rotor::worker::run(engine, worker_config, shutdown.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let done = rig
                .store
                .list(&[], false)
                .await
                .unwrap()
                .iter()
                .filter(|s| s.last_rotation_at.is_some())
                .count();
            if done == names.len() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{done} of {} rotated",
                names.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        worker.await.unwrap().unwrap();
        assert_eq!(probe.max("db1"), 2, "at most two at once on one target");
        let free = probe.max("free");
        assert!(
            free > 2 && free <= 6,
            "secrets without a target use the global limit: {free}"
        );
        assert_eq!(
            rig.store.release_leases("w1").await.unwrap(),
            0,
            "the worker released everything"
        );
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
