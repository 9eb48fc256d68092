//! The agent's client of rotor's KMS-compatible API: reqwest with rustls, trusting only the
//! installation's CA (`ca_file`), each request signed ACS3-HMAC-SHA256 with `acs-sign` as the
//! SDKs sign. Two calls: the cheap one, `ListSecretVersionIds` (which version is `ACSCurrent`,
//! no value decrypted), and `GetSecretValue` of that version. An answer that never came is
//! [`CallError::Unreachable`] (keep what you have, retry later); a KMS error is
//! [`CallError::Refused`] with its code.

use std::fmt;
use std::time::Duration;

use acs_sign::sign;
use rand::Rng;
use serde_json::Value;
use zeroize::Zeroizing;

use super::settings::Settings;
use crate::error::{Error, Result};

/// The API version rotor speaks.
const VERSION: &str = "2016-01-20";
/// The largest answer read (a value is at most 30 KiB, base64 and JSON around it).
const MAX_ANSWER: usize = 256 * 1024;

/// Why a call gave no answer to use.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer: connection refused, timeout, TLS failure, a 5xx.
    #[error("rotor's API cannot be reached: {0}")]
    Unreachable(String),
    /// The API answered with a KMS error.
    #[error("rotor's API refused {action} of '{secret}': {code}: {message}")]
    Refused {
        /// The action called.
        action: &'static str,
        /// The secret asked for.
        secret: String,
        /// The KMS error code (`Forbidden.NoPermission`, `Forbidden.ResourceNotFound`, …).
        code: String,
        /// The API's message.
        message: String,
    },
}

/// One version of a secret as `GetSecretValue` returned it.
pub struct Fetched {
    /// The secret's name.
    pub name: String,
    /// `Generic`, `Rds`, …
    pub secret_type: String,
    /// The version.
    pub version_id: String,
    /// Its stages.
    pub stages: Vec<String>,
    /// `text` or `binary` (then `data` is base64).
    pub data_type: String,
    /// `CreateTime` as the API gave it.
    pub create_time: String,
    /// `SecretData`.
    pub data: Zeroizing<String>,
}

/// The value never shows.
impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetched")
            .field("name", &self.name)
            .field("version_id", &self.version_id)
            .field("data", &"[REDACTED]")
            .finish()
    }
}

/// A signed client of one rotor API.
pub struct Client {
    http: reqwest::Client,
    url: reqwest::Url,
    host: String,
    key_id: String,
    secret: Zeroizing<String>,
}

impl Client {
    /// A client for the settings' endpoint, trusting only their CA.
    pub fn new(settings: &Settings) -> Result<Client> {
        let url = reqwest::Url::parse(&settings.endpoint).map_err(|_| {
            Error::invalid(format!(
                "[agent] endpoint '{}' is not a URL",
                crate::model::printable(&settings.endpoint)
            ))
        })?;
        if !matches!(url.scheme(), "https" | "http")
            || !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.path() != "/"
        {
            return Err(Error::invalid(
                "[agent] endpoint is https://HOST[:PORT], with no path, query or account",
            ));
        }
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        if url.scheme() == "http" && !loopback {
            return Err(Error::invalid(
                "[agent] endpoint must be https:// (plain http:// only to this machine)",
            ));
        }
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(Error::invalid("[agent] endpoint has no host")),
        };
        // A redirect is never followed: it could send the signed request, and take the value
        // from, any host, over plain http.
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5));
        match &settings.ca_pem {
            Some(pem) => {
                let ca = reqwest::Certificate::from_pem(pem)
                    .map_err(|e| Error::config(format!("[agent] ca_file is not a PEM certificate: {e}")))?;
                builder = builder.tls_built_in_root_certs(false).add_root_certificate(ca);
            }
            None if url.scheme() == "https" => {
                return Err(Error::invalid(
                    "[agent] ca_file is needed with https:// (the installation's CA: rotor ca > ca.pem)",
                ))
            }
            None => {}
        }
        let http = builder
            .build()
            .map_err(|e| Error::config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            url,
            host,
            key_id: settings.access_key_id.clone(),
            secret: settings.access_key_secret.clone(),
        })
    }

    /// The version that carries `ACSCurrent` now, without reading the value.
    pub async fn current_version(&self, name: &str) -> Result<String, CallError> {
        let action = "ListSecretVersionIds";
        let answer = self
            .call(action, name, &[("SecretName", name), ("PageSize", "100")])
            .await?;
        answer["VersionIds"]["VersionId"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| {
                v["VersionStages"]["VersionStage"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s == "ACSCurrent"))
            })
            .and_then(|v| v["VersionId"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                CallError::Unreachable(format!("{action} of '{name}' named no ACSCurrent version"))
            })
            .and_then(|v| check_version(&v, name).map(|()| v))
    }

    /// `GetSecretValue` of `version` (`None`: `ACSCurrent`).
    pub async fn get_value(&self, name: &str, version: Option<&str>) -> Result<Fetched, CallError> {
        let mut params = vec![("SecretName", name)];
        if let Some(v) = version {
            params.push(("VersionId", v));
        }
        let mut answer = self.call("GetSecretValue", name, &params).await?;
        let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let data = match answer.get_mut("SecretData").map(Value::take) {
            Some(Value::String(s)) => Zeroizing::new(s),
            _ => {
                return Err(CallError::Unreachable(format!(
                    "GetSecretValue of '{name}' answered without SecretData"
                )))
            }
        };
        let version_id = text(&answer, "VersionId");
        check_version(&version_id, name)?;
        Ok(Fetched {
            version_id,
            name: name.to_owned(),
            secret_type: text(&answer, "SecretType"),
            stages: answer["VersionStages"]["VersionStage"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect(),
            data_type: text(&answer, "SecretDataType"),
            create_time: text(&answer, "CreateTime"),
            data,
        })
    }

    /// One signed V3 call, parameters in the query, no body.
    async fn call(
        &self,
        action: &'static str,
        secret: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, CallError> {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let nonce = hex_nonce();
        let date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let signed = sign::RpcRequest {
            host: &self.host,
            action,
            version: VERSION,
            query: &params,
            date: &date,
            nonce: &nonce,
        };
        let mut url = self.url.clone();
        url.set_query(Some(&sign::canonical_query(&params)));
        let mut request = self.http.post(url);
        for (k, v) in signed.signed_headers(&self.key_id, &self.secret) {
            request = request.header(k, v);
        }
        let response = request
            .send()
            .await
            .map_err(|e| CallError::Unreachable(format!("{}: {}", self.host, error_chain(&e))))?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            return Err(CallError::Unreachable(format!(
                "{action}: HTTP {status}: rotor's API does not redirect, and the agent follows no redirect"
            )));
        }
        if response
            .content_length()
            .is_some_and(|l| l > MAX_ANSWER as u64)
        {
            return Err(CallError::Unreachable(format!(
                "{action}: the answer is too large"
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| CallError::Unreachable(format!("{action}: reading the answer: {e}")))?;
        if body.len() > MAX_ANSWER {
            return Err(CallError::Unreachable(format!(
                "{action}: the answer is too large"
            )));
        }
        let json: Value = serde_json::from_slice(&body).map_err(|_| {
            CallError::Unreachable(format!(
                "{action}: HTTP {status} with an answer that is not JSON"
            ))
        })?;
        if (200..300).contains(&status) {
            return Ok(json);
        }
        let code = json["Code"].as_str().unwrap_or_default().to_owned();
        if status >= 500 || status == 429 {
            return Err(CallError::Unreachable(format!(
                "{action}: HTTP {status} {code}"
            )));
        }
        Err(CallError::Refused {
            action,
            secret: secret.to_owned(),
            code,
            message: crate::model::printable(json["Message"].as_str().unwrap_or_default())
                .into_owned(),
        })
    }
}

/// A version id is printable text of at most 64 characters: it goes into logs and files.
fn check_version(version: &str, name: &str) -> Result<(), CallError> {
    if version.is_empty() || version.len() > 64 || version.chars().any(char::is_control) {
        return Err(CallError::Unreachable(format!(
            "the API answered for '{name}' a VersionId that is empty, too long or holds control characters"
        )));
    }
    Ok(())
}

fn hex_nonce() -> String {
    rand::rng()
        .random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// reqwest's error with its causes (the TLS or connection reason is in the sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
