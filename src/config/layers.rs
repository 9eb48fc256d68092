//! The layers merged into a [`Config`]: built-in defaults, the TOML file, `ROTOR_…` variables,
//! command-line flags — each one a figment provider that names where its values came from.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Serialize;

use super::{Config, FILE_NAME};
use crate::error::{Error, Result};

/// The largest configuration file read.
const MAX_FILE: u64 = 1024 * 1024;

/// `ROTOR_…` variables and the settings they set. `ROTOR_MASTER_KEY` is key material, not a
/// setting: the store reads it itself.
pub const ENV: [(&str, &str); 26] = [
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
    ("ROTOR_VERIFY_INTERVAL", "worker.verify_interval"),
    ("ROTOR_ON_DRIFT", "worker.on_drift"),
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
    /// The merged configuration.
    pub config: Config,
    pub(super) figment: Figment,
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
const TEXT_KEYS: [&str; 8] = [
    "api.listen",
    "worker.on_drift",
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::WorkerConfig;

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
