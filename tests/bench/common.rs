//! What the rotation benchmarks share: one timed manual rotation, median and p95, and the gap
//! probe, which wraps a rotator and notes when `set` changed the credential (the old one stops
//! working, for single accounts and host passwords) and when the promoted version reached
//! `finish` — or, for a rotator with nothing to clean up (its promotion is the rotation's last
//! commit), when the rotation returned ([`GapProbe::rotated`]).

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

    /// A rotation returned: the gap ends here unless `finish` ended it (a rotator whose
    /// `finish` does nothing is promoted in the rotation's last commit, without a call).
    pub fn rotated(&self) {
        if let Some(at) = self.set_done.lock().unwrap().take() {
            self.gaps.lock().unwrap().push(at.elapsed());
        }
    }
}

#[async_trait]
impl Rotator for GapProbe {
    fn finish_is_noop(&self) -> bool {
        self.inner.finish_is_noop()
    }
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

/// Wraps a rotator and adds up the time spent in each of its four calls, so that a rotation's
/// time splits into the target's share (create, set, test, finish) and the rest (the engine and
/// the store).
pub struct StepTimer {
    pub inner: Arc<dyn Rotator>,
    /// Time spent in create, set, test and finish, in that order, since the last `take`.
    pub spent: Mutex<[Duration; 4]>,
}

impl StepTimer {
    pub fn new(inner: Arc<dyn Rotator>) -> Arc<StepTimer> {
        Arc::new(StepTimer {
            inner,
            spent: Mutex::new([Duration::ZERO; 4]),
        })
    }

    /// The time spent in each call since the last `take`.
    pub fn take(&self) -> [Duration; 4] {
        std::mem::take(&mut *self.spent.lock().unwrap())
    }

    fn add(&self, step: usize, since: Instant) {
        self.spent.lock().unwrap()[step] += since.elapsed();
    }
}

#[async_trait]
impl Rotator for StepTimer {
    fn finish_is_noop(&self) -> bool {
        self.inner.finish_is_noop()
    }
    async fn create(&self, cx: &RotationContext) -> Result<SecretValue, RotateError> {
        let t = Instant::now();
        let r = self.inner.create(cx).await;
        self.add(0, t);
        r
    }
    async fn set(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        let t = Instant::now();
        let r = self.inner.set(cx, pending).await;
        self.add(1, t);
        r
    }
    async fn test(&self, cx: &RotationContext, pending: &SecretValue) -> Result<(), RotateError> {
        let t = Instant::now();
        let r = self.inner.test(cx, pending).await;
        self.add(2, t);
        r
    }
    async fn finish(
        &self,
        cx: &RotationContext,
        promoted: &SecretValue,
    ) -> Result<(), RotateError> {
        let t = Instant::now();
        let r = self.inner.finish(cx, promoted).await;
        self.add(3, t);
        r
    }
}

/// One line of where a rotation's time goes: the mean of each rotator call over `n`
/// rotations, and the rest of the mean rotation (the engine and the store).
pub fn breakdown(label: &str, spent: [Duration; 4], whole: &[Duration]) -> String {
    let n = whole.len().max(1) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0 / n;
    let total: Duration = whole.iter().sum();
    let target: Duration = spent.iter().sum();
    format!(
        "{label:<11} where the time goes (mean of {} rotations): create {:.2} ms, set {:.2} ms, test {:.2} ms, finish {:.2} ms; engine and store {:.2} ms of {:.2} ms",
        whole.len(),
        ms(spent[0]),
        ms(spent[1]),
        ms(spent[2]),
        ms(spent[3]),
        ms(total.saturating_sub(target)),
        ms(total),
    )
}
