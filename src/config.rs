//! The one typed configuration: built-in defaults, then the TOML file (`--config PATH`, or
//! `DATA_DIR/rotor.toml` when present), then `ROTOR_…` environment variables, then flags given
//! on the command line — merged by figment, which remembers where every value came from
//! (`rotor config check` prints it).
//!
//! Secret material never lives in the settings shown: the store URL is shown without its
//! password, a webhook's signing secret only as where it comes from, and the master key itself
//! is never configuration (its file, or `ROTOR_MASTER_KEY`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use crate::engine::EngineConfig;
use crate::error::{Error, Result};
use crate::worker::WorkerConfig;

/// The file looked for in the data directory when `--config` is not given.
pub const FILE_NAME: &str = "rotor.toml";
/// The largest configuration file read.
const MAX_FILE: u64 = 1024 * 1024;

/// Every setting, as merged.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Holds the SQLite store, the master key file and (by default) this file.
    pub data_dir: PathBuf,
    pub store: StoreSettings,
    pub master_key: MasterKeySettings,
    pub worker: WorkerSettings,
    pub log: LogSettings,
    pub audit: AuditSettings,
    pub api: ApiConfig,
    pub server: ServerSettings,
    #[serde(rename = "webhook")]
    pub webhooks: Vec<WebhookSettings>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./rotor-data"),
            store: StoreSettings::default(),
            master_key: MasterKeySettings::default(),
            worker: WorkerSettings::default(),
            log: LogSettings::default(),
            audit: AuditSettings::default(),
            api: ApiConfig::default(),
            server: ServerSettings::default(),
            webhooks: vec![],
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `postgres://…` for a shared store; the embedded SQLite store in the data directory when
    /// absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: None,
            connect_timeout: crate::store::DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// The URL's password never shows.
impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &self.url.as_deref().map(crate::redact::store_url))
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Where the master key comes from: `ROTOR_MASTER_KEY` when set, else this file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MasterKeySettings {
    /// The key file; `DATA_DIR/master.key` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// Rotations: the worker's and one-shot runs' limits and backoff.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub per_target: usize,
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_cap: Duration,
    #[serde(with = "humantime_serde")]
    pub step_timeout: Duration,
    pub test_retries: u32,
    #[serde(with = "humantime_serde")]
    pub test_retry_delay: Duration,
    /// Serve `/metrics`, `/healthz` and `/readyz` here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        let (e, w) = (EngineConfig::DEFAULTS, WorkerConfig::DEFAULTS);
        WorkerSettings {
            concurrency: w.concurrency,
            per_target: w.per_target,
            poll: w.poll,
            drain_timeout: w.drain_timeout,
            lease: e.lease,
            max_attempts: e.max_attempts,
            backoff_base: e.backoff_base,
            backoff_cap: e.backoff_cap,
            step_timeout: e.step_timeout,
            test_retries: e.test_retries,
            test_retry_delay: e.test_retry_delay,
            metrics_listen: None,
        }
    }
}

impl WorkerSettings {
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            lease: self.lease,
            max_attempts: self.max_attempts,
            backoff_base: self.backoff_base,
            backoff_cap: self.backoff_cap,
            step_timeout: self.step_timeout,
            test_retries: self.test_retries,
            test_retry_delay: self.test_retry_delay,
            ..EngineConfig::default()
        }
    }

    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.concurrency,
            per_target: self.per_target,
            poll: self.poll,
            drain_timeout: self.drain_timeout,
            metrics: false,
            audit_retention: None,
        }
    }
}

/// `rotor serve`: its own settings, so that a worker and a server sharing one configuration on
/// one host do not collide.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Serve `/metrics`, `/healthz` and `/readyz` here (the worker's is `worker.metrics_listen`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (for people) or `json` (one object per line).
    pub format: LogFormat,
    /// Which events are logged, as `tracing` filter directives (`info`, `rotor=debug,info`).
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info,sqlx=warn".into(),
        }
    }
}

/// The KMS-compatible API (`rotor serve`, `rotor worker`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve the API here; off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Plain HTTP instead of HTTPS (loopback addresses only).
    pub plain_http: bool,
    /// More names for the server certificate (besides localhost, 127.0.0.1 and ::1).
    pub hostnames: Vec<String>,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: None,
            plain_http: false,
            hostnames: vec![],
            max_connections: crate::api::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl ApiConfig {
    pub fn settings(&self) -> Option<crate::api::ApiSettings> {
        self.listen.map(|listen| crate::api::ApiSettings {
            listen,
            plain_http: self.plain_http,
            hostnames: self.hostnames.clone(),
            max_connections: self.max_connections,
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Record every read of a secret value too.
    pub reads: bool,
    /// Records older than this are pruned by the worker.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            reads: false,
            retention: Duration::from_secs(365 * 86_400),
        }
    }
}

/// One `[[webhook]]`: where events go and how they are signed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub url: String,
    /// Which events it hears; all of them when empty.
    #[serde(default)]
    pub events: Vec<crate::notify::Event>,
    /// The HMAC-SHA256 signing secret (then the file holding this setting must be private), …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// … or the file holding it (owner-only, like the master key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// Give up on an event after this many attempts.
    #[serde(default = "webhook_attempts")]
    pub max_attempts: u32,
    /// One delivery attempt's limit.
    #[serde(default = "webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// For `secret_due_soon`: how long before its rotation a secret is announced.
    #[serde(default = "webhook_due_soon", with = "humantime_serde")]
    pub due_soon: Duration,
}

fn webhook_attempts() -> u32 {
    8
}
fn webhook_timeout() -> Duration {
    Duration::from_secs(10)
}
fn webhook_due_soon() -> Duration {
    Duration::from_secs(86_400)
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &crate::redact::webhook_url(&self.url))
            .field("events", &self.events)
            .field("secret", &self.secret.as_ref().map(|_| "[REDACTED]"))
            .field("secret_file", &self.secret_file)
            .finish_non_exhaustive()
    }
}

/// `ROTOR_…` variables and the settings they set. `ROTOR_MASTER_KEY` is key material, not a
/// setting: the store reads it itself.
pub const ENV: [(&str, &str); 24] = [
    ("ROTOR_DATA_DIR", "data_dir"),
    ("ROTOR_STORE", "store.url"),
    ("ROTOR_STORE_CONNECT_TIMEOUT", "store.connect_timeout"),
    ("ROTOR_MASTER_KEY_FILE", "master_key.file"),
    ("ROTOR_CONCURRENCY", "worker.concurrency"),
    ("ROTOR_PER_TARGET", "worker.per_target"),
    ("ROTOR_POLL", "worker.poll"),
    ("ROTOR_DRAIN_TIMEOUT", "worker.drain_timeout"),
    ("ROTOR_LEASE", "worker.lease"),
    ("ROTOR_MAX_ATTEMPTS", "worker.max_attempts"),
    ("ROTOR_BACKOFF_BASE", "worker.backoff_base"),
    ("ROTOR_BACKOFF_CAP", "worker.backoff_cap"),
    ("ROTOR_STEP_TIMEOUT", "worker.step_timeout"),
    ("ROTOR_TEST_RETRIES", "worker.test_retries"),
    ("ROTOR_TEST_RETRY_DELAY", "worker.test_retry_delay"),
    ("ROTOR_METRICS_LISTEN", "worker.metrics_listen"),
    ("ROTOR_SERVER_METRICS_LISTEN", "server.metrics_listen"),
    ("ROTOR_LOG_FORMAT", "log.format"),
    ("ROTOR_LOG", "log.level"),
    ("ROTOR_AUDIT_READS", "audit.reads"),
    ("ROTOR_AUDIT_RETENTION", "audit.retention"),
    ("ROTOR_API_LISTEN", "api.listen"),
    ("ROTOR_API_PLAIN_HTTP", "api.plain_http"),
    ("ROTOR_API_MAX_CONNECTIONS", "api.max_connections"),
];

/// Values given as flags on the command line (the top layer).
#[derive(Clone, Debug, Default)]
pub struct CommandLine(Dict);

impl CommandLine {
    /// Sets `key` (a dotted path) to `value`.
    pub fn set(&mut self, key: &str, value: impl Serialize) {
        let value = Value::serialize(value).expect("flag values serialize");
        let nested = figment::util::nest(key, value)
            .into_dict()
            .expect("a key path nests into a dictionary");
        self.0 = merge_dicts(std::mem::take(&mut self.0), nested);
    }
}

fn merge_dicts(mut into: Dict, from: Dict) -> Dict {
    for (k, v) in from {
        let merged = match (into.remove(&k), v) {
            (Some(Value::Dict(_, a)), Value::Dict(tag, b)) => Value::Dict(tag, merge_dicts(a, b)),
            (_, v) => v,
        };
        into.insert(k, merged);
    }
    into
}

impl Provider for CommandLine {
    fn metadata(&self) -> Metadata {
        Metadata::named("command line")
    }

    fn data(&self) -> std::result::Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

/// The merged configuration and the layers it came from.
pub struct Loaded {
    pub config: Config,
    figment: Figment,
    /// The file read, if any.
    pub file: Option<PathBuf>,
}

/// Finds and reads the configuration: `explicit` (`--config`) must exist; otherwise
/// `DATA_DIR/rotor.toml` is read when present, `DATA_DIR` being what the flags or environment
/// say before any file is read.
pub fn load(explicit: Option<&Path>, flags: &CommandLine) -> Result<Loaded> {
    let base = Figment::from(Serialized::defaults(Config::default()))
        .merge(env_provider())
        .merge(flags.clone());
    let file = match explicit {
        Some(path) => Some(path.to_path_buf()),
        None => {
            let dir: PathBuf = base
                .extract_inner("data_dir")
                .map_err(|e| Error::config(format!("configuration: {e}")))?;
            let candidate = dir.join(FILE_NAME);
            candidate.exists().then_some(candidate)
        }
    };
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = &file {
        let text = read_file(path)?;
        figment = figment.merge(FileLayer {
            path: path.clone(),
            text,
        });
    }
    let figment = figment.merge(env_provider()).merge(flags.clone());
    let config: Config = figment
        .extract()
        .map_err(|e| Error::config(format!("configuration: {}", describe_error(e))))?;
    let loaded = Loaded {
        config,
        figment,
        file,
    };
    loaded.validate()?;
    Ok(loaded)
}

fn env_provider() -> EnvLayer {
    EnvLayer
}

/// The `ROTOR_…` variables of [`ENV`]: text settings are taken as they are (a data directory
/// named `123` stays a path), the others parsed as TOML values (numbers, booleans).
struct EnvLayer;

/// Settings whose values are text, whatever they look like.
const TEXT_KEYS: [&str; 7] = [
    "api.listen",
    "data_dir",
    "store.url",
    "master_key.file",
    "log.level",
    "worker.metrics_listen",
    "server.metrics_listen",
];

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        // Errors name the variable, not the setting's path.
        Metadata::named("environment").interpolater(|_profile, keys| {
            let key = keys.join(".");
            ENV.iter()
                .find(|(_, k)| *k == key)
                .map_or(key, |(var, _)| (*var).to_owned())
        })
    }

    fn data(&self) -> std::result::Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (var, key) in ENV {
            let text = match std::env::var(var) {
                Ok(text) => text,
                Err(std::env::VarError::NotPresent) => continue,
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(figment::Error::from(format!("{var} is not valid UTF-8")))
                }
            };
            let value = if TEXT_KEYS.contains(&key) {
                Value::from(text)
            } else {
                text.parse::<Value>()
                    .expect("parsing a value is infallible")
            };
            let nested = figment::util::nest(key, value)
                .into_dict()
                .expect("a key path nests into a dictionary");
            dict = merge_dicts(dict, nested);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// figment's errors, one per line, each naming its key and where the value came from.
fn describe_error(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| e.to_string().replace("for key \"default.", "for key \""))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads the configuration file: its owner and mode are checked (no one else may write it),
/// and it is read up to [`MAX_FILE`] bytes.
fn read_file(path: &Path) -> Result<String> {
    let what = "configuration file";
    let bytes = crate::files::read_checked(path, what, crate::files::Kind::Lock, MAX_FILE)?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Error::config(format!("{what} {} is not UTF-8 text", path.display())))
}

/// The configuration file's text as a layer that names its file (in errors, and as the
/// source `rotor config check` prints).
struct FileLayer {
    path: PathBuf,
    text: String,
}

impl Provider for FileLayer {
    fn metadata(&self) -> Metadata {
        // A custom source prints as given (figment shows a file relative to the working
        // directory); errors then name the file exactly as the user gave it.
        Metadata::from(
            "TOML file",
            figment::Source::Custom(self.path.display().to_string()),
        )
    }

    fn data(&self) -> std::result::Result<Map<Profile, Dict>, figment::Error> {
        Toml::string(&self.text).data()
    }
}

impl Loaded {
    /// Rules serde cannot say: limits that must be positive, a webhook that can sign.
    fn validate(&self) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_environment_variable_names_a_real_setting() {
        let figment = Figment::from(Serialized::defaults(Config::default()));
        for (var, key) in ENV {
            let optional = [
                "store.url",
                "master_key.file",
                "worker.metrics_listen",
                "server.metrics_listen",
                "api.listen",
            ];
            assert!(
                figment.contains(key) || optional.contains(&key),
                "{var} -> {key}"
            );
        }
    }

    #[test]
    fn flags_nest_and_merge() {
        let mut flags = CommandLine::default();
        flags.set("worker.concurrency", 3);
        flags.set("worker.lease", "2s");
        flags.set("data_dir", "/x");
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(flags)
            .extract()
            .unwrap();
        assert_eq!(config.worker.concurrency, 3);
        assert_eq!(config.worker.lease, Duration::from_secs(2));
        assert_eq!(config.data_dir, PathBuf::from("/x"));
        assert_eq!(config.worker.per_target, WorkerConfig::DEFAULTS.per_target);
    }
}
