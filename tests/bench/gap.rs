//! The gap probe the benchmarks share: wraps a rotator and notes when `set` changed the
//! credential (the old one stops working, for single accounts and host passwords) and when the
//! promoted version reached `finish`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rotators::{RotateError, RotationContext, Rotator, SecretValue};

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
