//! The rules serde cannot say, checked once the layers are merged; a refusal names the setting
//! and where its value came from.

use std::path::PathBuf;
use std::time::Duration;

use super::Loaded;
use crate::error::{Error, Result};

impl Loaded {
    /// Rules serde cannot say: limits that must be positive, a webhook that can sign.
    pub(super) fn validate(&self) -> Result<()> {
        let w = &self.config.worker;
        for (key, value) in [
            ("worker.concurrency", w.concurrency as u64),
            ("worker.per_target", w.per_target as u64),
            ("worker.max_attempts", u64::from(w.max_attempts)),
            (
                "api.max_connections",
                self.config.api.max_connections as u64,
            ),
        ] {
            if value == 0 {
                return Err(self.invalid(key, "must be at least 1"));
            }
        }
        if w.lease < Duration::from_secs(1) {
            return Err(self.invalid("worker.lease", "must be at least 1s"));
        }
        // A lease is renewed every third of it: a day is far beyond any use, and bounds the
        // expiry times computed from it.
        if w.lease > Duration::from_secs(86_400) {
            return Err(self.invalid("worker.lease", "must be at most 1d"));
        }
        if w.step_timeout > Duration::from_secs(7 * 86_400) {
            return Err(self.invalid("worker.step_timeout", "must be at most 7d"));
        }
        for name in &self.config.api.hostnames {
            let ok = !name.is_empty()
                && name.len() <= 253
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
            if !ok {
                return Err(self.invalid(
                    "api.hostnames",
                    "holds a name that is not a DNS name or IP address",
                ));
            }
        }
        if w.backoff_cap < w.backoff_base {
            return Err(self.invalid("worker.backoff_cap", "is shorter than worker.backoff_base"));
        }
        for (i, hook) in self.config.webhooks.iter().enumerate() {
            let key = format!("webhook[{i}]");
            let url = reqwest::Url::parse(&hook.url)
                .map_err(|e| self.invalid(&format!("{key}.url"), &format!("is not a URL: {e}")))?;
            if !matches!(url.scheme(), "https" | "http") {
                return Err(self.invalid(&format!("{key}.url"), "must be https:// (or http://)"));
            }
            if hook.max_attempts == 0 {
                return Err(self.invalid(&format!("{key}.max_attempts"), "must be at least 1"));
            }
            match (&hook.secret, &hook.secret_file) {
                (Some(_), Some(_)) => {
                    return Err(self.invalid(&key, "has both secret and secret_file; give one"))
                }
                (None, None) => {
                    return Err(
                        self.invalid(&key, "has no signing secret: give secret_file (or secret)")
                    )
                }
                (Some(s), None) if s.len() < 16 => {
                    return Err(
                        self.invalid(&format!("{key}.secret"), "is shorter than 16 characters")
                    )
                }
                (Some(_), None) => self.check_private(&format!("{key}.secret"))?,
                (None, Some(_)) => {}
            }
        }
        Ok(())
    }

    /// A secret written in the configuration file: the file must be readable by its owner
    /// only.
    fn check_private(&self, key: &str) -> Result<()> {
        let Some(file) = self.source_file(key) else {
            return Ok(());
        };
        crate::files::check(
            &file,
            "configuration file holding a secret",
            crate::files::Kind::Private,
        )
        .map_err(|e| Error::config(format!("{key}: {e}")))
    }

    fn source_file(&self, key: &str) -> Option<PathBuf> {
        let key = key.split('[').next().unwrap_or(key);
        self.figment
            .find_metadata(key)
            .and_then(|m| m.source.as_ref())
            .and_then(|s| s.custom())
            .map(PathBuf::from)
    }

    fn invalid(&self, key: &str, what: &str) -> Error {
        let whence = self.source(key.split('[').next().unwrap_or(key));
        Error::config(format!("configuration: {key} {what} (from {whence})"))
    }
}
