//! The read cache: versions read lately, still sealed, by secret and selector, for
//! [`VERSION_CACHE_TTL`]. Every use decrypts; a change made through this server forgets the
//! secret's entries at once, so only changes made elsewhere (the CLI, a worker's rotation,
//! another server) are seen up to that late.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ApiError;
use crate::model::SecretName;
use crate::store::{SealedVersion, Selector, Store};

/// How long a version read from the store serves further reads of the same secret and
/// selector.
pub const VERSION_CACHE_TTL: Duration = Duration::from_secs(1);
/// The most entries kept; when full, the cache starts again empty.
const VERSION_CACHE_MAX: usize = 10_000;

/// Sealed versions by (secret, `VersionStage`/`VersionId` asked for), with when they were read.
type Versions = HashMap<(String, String), (Instant, Arc<SealedVersion>)>;

/// The API's read cache.
#[derive(Default)]
pub(crate) struct ReadCache {
    versions: Mutex<Versions>,
}

impl ReadCache {
    /// A version of `name`, sealed, from the cache or `store`.
    pub(crate) async fn sealed(
        &self,
        store: &Store,
        name: &SecretName,
        selector: &Selector,
    ) -> Result<Arc<SealedVersion>, ApiError> {
        let key = (
            name.as_str().to_owned(),
            match selector {
                Selector::Stage(s) => format!("stage:{s}"),
                Selector::Version(v) => format!("version:{v}"),
            },
        );
        if let Some((at, v)) = self.versions.lock().expect("version cache").get(&key) {
            if at.elapsed() < VERSION_CACHE_TTL {
                return Ok(v.clone());
            }
        }
        let version = Arc::new(store.get_sealed(name, selector).await?);
        let mut cache = self.versions.lock().expect("version cache");
        if cache.len() >= VERSION_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), version.clone()));
        Ok(version)
    }

    /// Forgets what is cached of `name` (after a change made through this server).
    pub(crate) fn forget(&self, name: &SecretName) {
        self.versions
            .lock()
            .expect("version cache")
            .retain(|(secret, _), _| secret != name.as_str());
    }
}
