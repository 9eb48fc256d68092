//! The rotation engine in-process, with a manual clock and the file-host test rotator: the
//! four-step protocol and promotion, resuming after a step is cut off, backoff and the failed
//! state, leases, and scheduling (interval, cron windows, jitter, no catch-up storm) — on both
//! backends.

mod failures;
mod protocol;
mod scheduling;
mod worker;

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
