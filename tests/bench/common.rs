//! What the rotation benchmarks share: one timed manual rotation, median and p95, and the gap
//! probe, which wraps a rotator and notes when `set` changed the credential (the old one stops
//! working, for single accounts and host passwords) and when the promoted version reached
//! `finish`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rotators::{RotateError, RotationContext, Rotator, SecretValue};
use rotor::engine::{Claim, Engine, Outcome};
use rotor::model::SecretName;
use tokio_util::sync::CancellationToken;

/// Rotates `name` now (a manual rotation, which must succeed); returns how long it took.
pub async fn rotate_once(engine: &Engine, name: &str) -> Duration {
    let name = SecretName::parse(name).unwrap();
    let started = Instant::now();
    let claim = Claim::granted(
        engine
            .store()
            .claim_now("bench", &name, Duration::from_secs(30))
            .await
            .unwrap(),
    );
    let outcome = engine
        .rotate(&claim, true, &CancellationToken::new())
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Rotated { .. }), "{outcome:?}");
    started.elapsed()
}

/// Median and p95 of `samples`, in milliseconds.
pub fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(samples[samples.len() / 2]),
        ms(samples[(samples.len() * 95 / 100).min(samples.len() - 1)]),
    )
}

pub struct GapProbe {
    pub inner: Arc<dyn Rotator>,
    pub set_done: Mutex<Option<Instant>>,
    pub gaps: Mutex<Vec<Duration>>,
}

impl GapProbe {
    pub fn new(inner: Arc<dyn Rotator>) -> Arc<GapProbe> {
        Arc::new(GapProbe {
            inner,
            set_done: Mutex::new(None),
            gaps: Mutex::new(vec![]),
        })
    }

    /// The gaps measured since the last call.
    pub fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.gaps.lock().unwrap())
    }
}

#[async_trait]
impl Rotator for GapProbe {
    async fn create(&self, cx: &RotationContext) -> Result<SecretValue, RotateError> {
        self.inner.create(cx).await
    }
    async fn set(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        self.inner.set(cx, pending).await?;
        *self.set_done.lock().unwrap() = Some(Instant::now());
        Ok(())
    }
    async fn test(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        self.inner.test(cx, pending).await
    }
    async fn finish(
        &self,
        cx: &RotationContext,
        promoted: &SecretValue,
    ) -> Result<(), RotateError> {
        if let Some(at) = self.set_done.lock().unwrap().take() {
            self.gaps.lock().unwrap().push(at.elapsed());
        }
        self.inner.finish(cx, promoted).await
    }
}
