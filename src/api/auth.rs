//! Authentication: who signed a request, and may it still be answered. The signature is checked
//! — V3 `ACS3-HMAC-SHA256` or the RPC `HMAC-SHA1` style ([`acs_sign::verify`]) — with the
//! AccessKey's secret (cached for [`KEY_CACHE_TTL`]) within the timestamp [`WINDOW`]; the
//! nonce must be new, on this server and in the store's record every server on the store
//! shares ([`super::nonces`]); the `Version` must be the one this server speaks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acs_sign::verify;
use axum::http::{HeaderMap, Method, Uri};

use super::nonces::{self, Nonces, Recorder};
use super::{ApiError, VERSION};
use crate::store::{AccessKeyAuth, Store};

/// Signed timestamps this far from the server's clock are refused.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long an AccessKey (its secret, state and policy) is cached: a disabled or deleted key
/// stops working within this time.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
/// The most AccessKeys (known and unknown ids) remembered at once.
const KEY_CACHE_MAX: usize = 10_000;

/// AccessKeys by id (unknown ids too), with when they were read.
type KeyCache = HashMap<String, (Instant, Option<Arc<AccessKeyAuth>>)>;

/// The API's authenticator: the key cache, this server's nonces and the store's record of them.
pub(crate) struct Auth {
    store: Store,
    keys: Mutex<KeyCache>,
    nonces: Mutex<Nonces>,
    /// The store's record of nonces, shared by every server on it.
    recorder: Recorder,
}

impl Auth {
    pub(crate) fn new(store: Store) -> Auth {
        Auth {
            recorder: Recorder::start(store.clone(), WINDOW),
            store,
            keys: Mutex::default(),
            nonces: Mutex::new(Nonces::new(nonces::DEFAULT_CAPACITY)),
        }
    }

    /// Authenticates a request: signature, window, key state, nonce, version. Returns the call
    /// and the key (with its policy).
    pub(crate) async fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(verify::Verified, Arc<AccessKeyAuth>), ApiError> {
        let mut list = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            let value = value
                .to_str()
                .map_err(|_| ApiError::invalid("A header is not visible ASCII text."))?;
            list.push((name.as_str().to_owned(), value.to_owned()));
        }
        let req = verify::Request {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or_default(),
            headers: &list,
            body,
        };
        // The request names its key; the key (async, cached) gives the secret to check it with.
        let prepared = verify::prepare(&req)?;
        let key = match self.key(&prepared.key_id).await? {
            None => {
                return Err(ApiError::new(
                    404,
                    "InvalidAccessKeyId.NotFound",
                    "Specified access key is not found.",
                ))
            }
            Some(k) if !k.enabled => {
                return Err(ApiError::new(
                    403,
                    "InvalidAccessKeyId.Inactive",
                    "Specified access key is disabled.",
                ))
            }
            Some(k) => k,
        };
        let call = prepared.verify(&key.secret, chrono::Utc::now(), WINDOW)?;
        let now = chrono::Utc::now().timestamp();
        // This server's memory first (a replay to it costs no round trip), then the store's
        // record, which every server sharing the store consults.
        self.nonces.lock().expect("nonces").check(
            &call.nonce,
            call.timestamp,
            now,
            WINDOW.as_secs() as i64,
        )?;
        match self.recorder.record(&call.nonce, call.timestamp).await {
            Ok(true) => {}
            Ok(false) => return Err(nonces::used()),
            Err(e) => {
                // Not recorded: the client may send it again.
                self.nonces.lock().expect("nonces").forget(&call.nonce);
                return Err(e);
            }
        }
        if call.version.as_deref() != Some(VERSION) {
            return Err(ApiError::new(
                400,
                "InvalidVersion",
                format!("Specified parameter Version is not valid: this server speaks {VERSION}."),
            ));
        }
        Ok((call, key))
    }

    /// The key's secret, state and policy, from the cache or the store.
    async fn key(&self, key_id: &str) -> Result<Option<Arc<AccessKeyAuth>>, ApiError> {
        if key_id.len() > 64 || !key_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        if let Some((at, key)) = self.keys.lock().expect("key cache").get(key_id) {
            if at.elapsed() < KEY_CACHE_TTL {
                return Ok(key.clone());
            }
        }
        let key = self.store.access_key_auth(key_id).await?.map(Arc::new);
        let mut cache = self.keys.lock().expect("key cache");
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key_id.to_owned(), (Instant::now(), key.clone()));
        Ok(key)
    }
}
