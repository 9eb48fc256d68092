//! The RAM OpenAPI client (API version 2015-05-01): the AccessKey actions rotor needs, over
//! reqwest with rustls, signed V3 (`ACS3-HMAC-SHA256`, the default) or V1 (RPC `HMAC-SHA1`).
//!
//! Throttling (`Throttling*`) and server errors (5xx, `ServiceUnavailable`, `InternalError`) are
//! retried with exponential backoff and jitter; what is left becomes a [`RamError`] that says
//! whether it is worth retrying later. Messages carry the cloud's code, message and request id,
//! never a secret: the response of `CreateAccessKey`, which holds one, is never logged.
//! CreateAccessKey is retried only when the cloud said it was throttled (it did nothing): after
//! any other failure the key may exist, and the caller looks before trying again.
//!
//! Each answer's `Date` header is the cloud's clock: [`RamClient::clock_skew_ms`] says how far it
//! is from this machine's, so that times the cloud shows (an AccessKey's `CreateDate`) can be
//! compared with rotor's.

use std::sync::Mutex;
use std::time::Duration;

use acs_sign::sign;
use rand::Rng;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::rotator::RotateError;

/// The RAM API version.
pub const VERSION: &str = "2015-05-01";
/// The public RAM endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://ram.aliyuncs.com";
/// The most a response body may hold.
const MAX_RESPONSE: usize = 1024 * 1024;

/// Which signature requests carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SignatureStyle {
    /// `ACS3-HMAC-SHA256` in the `Authorization` header.
    #[default]
    #[serde(rename = "v3")]
    V3,
    /// The RPC signature, `HMAC-SHA1`, as the `Signature` parameter.
    #[serde(rename = "v1")]
    V1,
}

impl std::str::FromStr for SignatureStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "v3" => Ok(SignatureStyle::V3),
            "v1" => Ok(SignatureStyle::V1),
            _ => Err(format!("unknown signature '{s}' (expected v3 or v1)")),
        }
    }
}

/// A failed call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("RAM {action} failed: {code}: {message}{}", request_id.as_ref().map(|r| format!(" (RequestId {r})")).unwrap_or_default())]
pub struct RamError {
    /// The action that failed (`CreateAccessKey`, …).
    pub action: String,
    /// The cloud's error code (`EntityNotExist.User`, …), or `Network` / `BadResponse`.
    pub code: String,
    /// The cloud's error message, or what went wrong locally.
    pub message: String,
    /// The cloud's request id, when it answered with one.
    pub request_id: Option<String>,
    /// Whether trying again later may succeed.
    pub retryable: bool,
}

impl RamError {
    fn local(action: &str, code: &str, message: String, retryable: bool) -> RamError {
        RamError {
            action: action.to_owned(),
            code: code.to_owned(),
            message,
            request_id: None,
            retryable,
        }
    }
}

impl From<RamError> for RotateError {
    fn from(e: RamError) -> Self {
        if e.retryable {
            RotateError::retryable(e.to_string())
        } else {
            RotateError::fatal(e.to_string())
        }
    }
}

/// Whether a cloud error code (with its HTTP status) is worth retrying.
pub fn retryable_code(code: &str, status: u16) -> bool {
    code.starts_with("Throttling")
        || matches!(
            code,
            "ServiceUnavailable" | "InternalError" | "UnknownError"
        )
        || status >= 500
}

/// An AccessKey as ListAccessKeys shows it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKeyInfo {
    /// The AccessKey's id.
    pub access_key_id: String,
    /// The AccessKey's status (`Active` or `Inactive`).
    pub status: String,
    /// When the cloud created it, as the cloud shows it.
    pub create_date: String,
}

/// A new AccessKey pair. `Debug` hides the secret.
pub struct NewAccessKey {
    /// The new AccessKey's id.
    pub access_key_id: String,
    /// The new AccessKey's secret.
    pub access_key_secret: Zeroizing<String>,
    /// When the cloud created it, as the cloud shows it.
    pub create_date: String,
}

impl std::fmt::Debug for NewAccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"[REDACTED]")
            .field("create_date", &self.create_date)
            .finish()
    }
}

/// How retries back off.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// How many times a call is tried in all.
    pub attempts: u32,
    /// The backoff before the first retry (jittered); it doubles with each further one.
    pub base: Duration,
    /// The most the backoff grows to.
    pub cap: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
        }
    }
}

/// A RAM API client signing as one AccessKey.
pub struct RamClient {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    host: String,
    style: SignatureStyle,
    key_id: String,
    secret: Zeroizing<String>,
    /// How this client retries throttled and failed calls.
    pub retry: Retry,
    /// The cloud's clock minus this machine's (ms) at the last answer that carried a `Date`.
    skew: Mutex<Option<i64>>,
}

impl RamClient {
    /// A client for `endpoint` (`https://…`, or `http://…` for a local emulator).
    pub fn new(
        endpoint: &str,
        style: SignatureStyle,
        key_id: &str,
        secret: &str,
    ) -> Result<RamClient, String> {
        let endpoint = reqwest::Url::parse(endpoint)
            .map_err(|e| format!("the RAM endpoint '{endpoint}' is not a URL: {e}"))?;
        if !matches!(endpoint.scheme(), "https" | "http")
            || endpoint.path() != "/"
            || endpoint.query().is_some()
            || !endpoint.username().is_empty()
        {
            return Err("the RAM endpoint is https://HOST[:PORT], with no path or query".into());
        }
        // CreateAccessKey answers with a secret: plain HTTP only to this machine (an emulator).
        let loopback = match endpoint.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        if endpoint.scheme() == "http" && !loopback {
            return Err(
                "the RAM endpoint must be https:// (plain http:// only to this machine)".into(),
            );
        }
        let host = match (endpoint.host_str(), endpoint.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err("the RAM endpoint has no host".into()),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(RamClient {
            http,
            endpoint,
            host,
            style,
            key_id: key_id.to_owned(),
            secret: Zeroizing::new(secret.to_owned()),
            retry: Retry::default(),
            skew: Mutex::new(None),
        })
    }

    /// Calls `action` with `params`, retrying throttling and server errors; returns the JSON
    /// answer.
    pub async fn call(
        &self,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<serde_json::Value, RamError> {
        self.call_retrying(action, params, |e| e.retryable).await
    }

    /// The cloud's clock minus this machine's, in ms, as the last answer's `Date` showed it
    /// (`None` before an answer with one). `Date` has whole seconds and the answer took time to
    /// arrive, so this is at most the true difference and less by under a second plus the
    /// answer's travel time.
    pub fn clock_skew_ms(&self) -> Option<i64> {
        *self.skew.lock().expect("skew slot")
    }

    async fn call_retrying(
        &self,
        action: &str,
        params: &[(&str, &str)],
        again: impl Fn(&RamError) -> bool,
    ) -> Result<serde_json::Value, RamError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call_once(action, params).await {
                Err(e) if again(&e) && attempt < self.retry.attempts => {
                    let exp = self.retry.base * 2u32.saturating_pow(attempt - 1);
                    let wait = exp.min(self.retry.cap);
                    let jitter = rand::rng().random_range(0..=wait.as_millis() as u64 / 2);
                    tracing::debug!(action, code = %e.code, attempt, "RAM call retried");
                    tokio::time::sleep(wait / 2 + Duration::from_millis(jitter)).await;
                }
                other => return other,
            }
        }
    }

    async fn call_once(
        &self,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<serde_json::Value, RamError> {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let nonce = hex::encode(rand::rng().random::<[u8; 16]>());
        let date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let request = match self.style {
            SignatureStyle::V3 => {
                let signed = sign::RpcRequest {
                    host: &self.host,
                    action,
                    version: VERSION,
                    query: &params,
                    date: &date,
                    nonce: &nonce,
                };
                let mut url = self.endpoint.clone();
                url.set_query(Some(&sign::canonical_query(&params)));
                let mut request = self.http.post(url);
                for (k, v) in signed.signed_headers(&self.key_id, &self.secret) {
                    request = request.header(k, v);
                }
                request
            }
            SignatureStyle::V1 => {
                let mut all = params;
                for (k, v) in [
                    ("Action", action),
                    ("Version", VERSION),
                    ("Format", "JSON"),
                    ("AccessKeyId", &self.key_id),
                    ("SignatureMethod", "HMAC-SHA1"),
                    ("SignatureVersion", "1.0"),
                    ("SignatureNonce", &nonce),
                    ("Timestamp", &date),
                ] {
                    all.push((k.to_owned(), v.to_owned()));
                }
                let signature = sign::v1_signature(&self.secret, "POST", &all);
                all.push(("Signature".into(), signature));
                self.http
                    .post(self.endpoint.clone())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(sign::canonical_query(&all))
            }
        };
        let response = request.send().await.map_err(|e| {
            RamError::local(
                action,
                "Network",
                format!("cannot reach {}: {e}", self.host),
                true,
            )
        })?;
        let status = response.status().as_u16();
        if let Some(cloud) = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
        {
            let skew = cloud.timestamp_millis() - chrono::Utc::now().timestamp_millis();
            *self.skew.lock().expect("skew slot") = Some(skew);
        }
        if response
            .content_length()
            .is_some_and(|l| l > MAX_RESPONSE as u64)
        {
            return Err(RamError::local(
                action,
                "BadResponse",
                "the answer is too large".into(),
                false,
            ));
        }
        let body = response.bytes().await.map_err(|e| {
            RamError::local(action, "Network", format!("reading the answer: {e}"), true)
        })?;
        if body.len() > MAX_RESPONSE {
            return Err(RamError::local(
                action,
                "BadResponse",
                "the answer is too large".into(),
                false,
            ));
        }
        let json: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
            RamError::local(
                action,
                "BadResponse",
                format!("HTTP {status} with an answer that is not JSON"),
                status >= 500,
            )
        })?;
        if (200..300).contains(&status) {
            return Ok(json);
        }
        let text = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let code = text("Code").unwrap_or_else(|| format!("HTTP{status}"));
        Err(RamError {
            action: action.to_owned(),
            retryable: retryable_code(&code, status),
            message: text("Message").unwrap_or_default(),
            request_id: text("RequestId"),
            code,
        })
    }

    /// GetUser: proves the caller may see `user` (and that the user exists).
    pub async fn get_user(&self, user: &str) -> Result<serde_json::Value, RamError> {
        self.call("GetUser", &[("UserName", user)]).await
    }

    /// ListAccessKeys of `user`.
    pub async fn list_access_keys(&self, user: &str) -> Result<Vec<AccessKeyInfo>, RamError> {
        let json = self.call("ListAccessKeys", &[("UserName", user)]).await?;
        let list = json
            .pointer("/AccessKeys/AccessKey")
            .cloned()
            .unwrap_or(serde_json::Value::Array(vec![]));
        serde_json::from_value(list).map_err(|e| {
            RamError::local(
                "ListAccessKeys",
                "BadResponse",
                format!("unexpected answer: {e}"),
                false,
            )
        })
    }

    /// CreateAccessKey for `user`.
    pub async fn create_access_key(&self, user: &str) -> Result<NewAccessKey, RamError> {
        let json = self
            .call_retrying("CreateAccessKey", &[("UserName", user)], |e| {
                e.code.starts_with("Throttling")
            })
            .await?;
        let field = |k: &str| {
            json.pointer(&format!("/AccessKey/{k}"))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        match (
            field("AccessKeyId"),
            field("AccessKeySecret"),
            field("CreateDate"),
        ) {
            (Some(id), Some(secret), Some(date)) => Ok(NewAccessKey {
                access_key_id: id,
                access_key_secret: Zeroizing::new(secret),
                create_date: date,
            }),
            _ => Err(RamError::local(
                "CreateAccessKey",
                "BadResponse",
                "the answer has no AccessKey".into(),
                false,
            )),
        }
    }

    /// UpdateAccessKey: `Active` or `Inactive`.
    pub async fn update_access_key(
        &self,
        user: &str,
        key_id: &str,
        status: &str,
    ) -> Result<(), RamError> {
        self.call(
            "UpdateAccessKey",
            &[
                ("UserName", user),
                ("UserAccessKeyId", key_id),
                ("Status", status),
            ],
        )
        .await
        .map(drop)
    }

    /// DeleteAccessKey.
    pub async fn delete_access_key(&self, user: &str, key_id: &str) -> Result<(), RamError> {
        self.call(
            "DeleteAccessKey",
            &[("UserName", user), ("UserAccessKeyId", key_id)],
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_error_classes() {
        assert!(RamClient::new("https://ram.aliyuncs.com", SignatureStyle::V3, "id", "s").is_ok());
        let c = RamClient::new("http://127.0.0.1:8080", SignatureStyle::V1, "id", "s").unwrap();
        assert_eq!(c.host, "127.0.0.1:8080");
        for bad in [
            "ftp://x",
            "https://x/path",
            "https://u@x",
            "https://x?a=1",
            "x",
        ] {
            assert!(
                RamClient::new(bad, SignatureStyle::V3, "id", "s").is_err(),
                "{bad}"
            );
        }
        assert!(retryable_code("Throttling.User", 400));
        assert!(retryable_code("Whatever", 503));
        assert!(!retryable_code("EntityNotExist.User", 404));
        assert!(!retryable_code("SignatureDoesNotMatch", 400));
        let e = RamError::local(
            "CreateAccessKey",
            "LimitExceeded.User.AccessKey",
            "two".into(),
            false,
        );
        assert!(!RotateError::from(e).is_retryable());
        let k = NewAccessKey {
            access_key_id: "LTAI".into(),
            access_key_secret: Zeroizing::new("hunter2".into()),
            create_date: "d".into(),
        };
        assert!(!format!("{k:?}").contains("hunter2"));
    }
}
