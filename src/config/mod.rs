//! The one typed configuration: built-in defaults, then the TOML file (`--config PATH`, or
//! `DATA_DIR/rotor.toml` when present), then `ROTOR_…` environment variables, then flags given
//! on the command line — merged by figment, which remembers where every value came from
//! (`rotor config check` prints it).
//!
//! Secret material never lives in the settings shown: the store URL is shown without its
//! password, a webhook's signing secret only as where it comes from, and the master key itself
//! is never configuration (its file, or `ROTOR_MASTER_KEY`).

mod layers;
mod runtime;
mod sections;
mod show;
mod validate;
mod webhook;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use layers::{load, CommandLine, Loaded, ENV};
pub use runtime::{ApiSettings, EngineConfig, WorkerConfig, DEFAULT_MAX_CONNECTIONS};
pub use sections::{
    ApiConfig, AuditSettings, LogFormat, LogSettings, MasterKeySettings, OnDrift, ServerSettings,
    StoreSettings, WorkerSettings,
};
pub use webhook::{Event, WebhookSettings};

/// The file looked for in the data directory when `--config` is not given.
pub const FILE_NAME: &str = "rotor.toml";

/// Every setting, as merged.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Holds the SQLite store, the master key file and (by default) this file.
    pub data_dir: PathBuf,
    /// `[store]`: where secrets are kept.
    pub store: StoreSettings,
    /// `[master_key]`: where the master key comes from.
    pub master_key: MasterKeySettings,
    /// `[worker]`: rotation limits and backoff.
    pub worker: WorkerSettings,
    /// `[log]`: log format and level.
    pub log: LogSettings,
    /// `[audit]`: what is audited and for how long.
    pub audit: AuditSettings,
    /// `[api]`: the KMS-compatible API.
    pub api: ApiConfig,
    /// `[server]`: settings of `rotor serve`.
    pub server: ServerSettings,
    /// `[[webhook]]`: where rotation events are sent.
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
