//! Where each effective setting came from, for `rotor config check` and for error messages.

use std::time::Duration;

use super::layers::ENV;
use super::Loaded;

impl Loaded {
    /// Where the value of `key` came from: `default`, the file, `ROTOR_X`, `command line`.
    pub fn source(&self, key: &str) -> String {
        let Some(meta) = self.figment.find_metadata(key) else {
            return "default".into();
        };
        if let Some(path) = meta.source.as_ref().and_then(|s| s.custom()) {
            return path.to_owned();
        }
        match meta.name.as_ref() {
            "command line" => "command line".into(),
            "environment" => ENV
                .iter()
                .find(|(_, k)| *k == key)
                .map_or_else(|| "environment".into(), |(v, _)| (*v).to_owned()),
            _ => "default".into(),
        }
    }

    /// Every effective setting with where it came from, secrets left out (`rotor config
    /// check`).
    pub fn effective(&self) -> Vec<(String, String, String)> {
        let c = &self.config;
        let w = &c.worker;
        let d = show_duration;
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let mut rows: Vec<(String, String)> = vec![
            ("data_dir".into(), c.data_dir.display().to_string()),
            (
                "store.url".into(),
                opt(c.store.url.as_deref().map(crate::redact::store_url)),
            ),
            ("store.connect_timeout".into(), d(c.store.connect_timeout)),
            (
                "master_key.file".into(),
                match (&c.master_key.file, std::env::var_os("ROTOR_MASTER_KEY")) {
                    (_, Some(_)) => "(ROTOR_MASTER_KEY is set and used instead)".into(),
                    (Some(f), None) => f.display().to_string(),
                    (None, None) => c
                        .data_dir
                        .join(crate::store::KEY_FILE)
                        .display()
                        .to_string(),
                },
            ),
            ("worker.concurrency".into(), w.concurrency.to_string()),
            ("worker.per_target".into(), w.per_target.to_string()),
            ("worker.poll".into(), d(w.poll)),
            ("worker.drain_timeout".into(), d(w.drain_timeout)),
            ("worker.lease".into(), d(w.lease)),
            ("worker.max_attempts".into(), w.max_attempts.to_string()),
            ("worker.backoff_base".into(), d(w.backoff_base)),
            ("worker.backoff_cap".into(), d(w.backoff_cap)),
            ("worker.step_timeout".into(), d(w.step_timeout)),
            ("worker.test_retries".into(), w.test_retries.to_string()),
            ("worker.test_retry_delay".into(), d(w.test_retry_delay)),
            (
                "worker.metrics_listen".into(),
                opt(w.metrics_listen.map(|a| a.to_string())),
            ),
            ("worker.verify_interval".into(), d(w.verify_interval)),
            (
                "worker.on_drift".into(),
                format!("{:?}", w.on_drift).to_lowercase(),
            ),
            (
                "log.format".into(),
                format!("{:?}", c.log.format).to_lowercase(),
            ),
            ("log.level".into(), c.log.level.clone()),
            ("audit.reads".into(), c.audit.reads.to_string()),
            (
                "api.listen".into(),
                opt(c.api.listen.map(|a| a.to_string())),
            ),
            ("api.plain_http".into(), c.api.plain_http.to_string()),
            (
                "server.metrics_listen".into(),
                opt(c.server.metrics_listen.map(|a| a.to_string())),
            ),
            ("api.hostnames".into(), c.api.hostnames.join(",")),
            (
                "api.max_connections".into(),
                c.api.max_connections.to_string(),
            ),
            ("audit.retention".into(), d(c.audit.retention)),
        ];
        for (i, hook) in c.webhooks.iter().enumerate() {
            let events = if hook.events.is_empty() {
                "all".to_string()
            } else {
                hook.events
                    .iter()
                    .map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let secret = match (&hook.secret, &hook.secret_file) {
                (_, Some(f)) => format!("file {}", f.display()),
                _ => "(set in the file)".into(),
            };
            rows.extend([
                (
                    format!("webhook[{i}].url"),
                    crate::redact::webhook_url(&hook.url),
                ),
                (format!("webhook[{i}].events"), events),
                (format!("webhook[{i}].secret"), secret),
                (
                    format!("webhook[{i}].max_attempts"),
                    hook.max_attempts.to_string(),
                ),
                (format!("webhook[{i}].timeout"), d(hook.timeout)),
                (format!("webhook[{i}].due_soon"), d(hook.due_soon)),
            ]);
        }
        rows.into_iter()
            .map(|(key, value)| {
                let source = self.source(key.split('[').next().unwrap_or(&key));
                (key, value, source)
            })
            .collect()
    }
}

/// A duration as it would be written in the file: `500ms`, `30s`, `5m`, `1h`, `365d`.
fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}
