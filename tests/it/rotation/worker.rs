//! Shutdown between steps, and the worker's limits per target and in all.

use super::*;

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
