//! `rotor serve`, the API flags of `serve` and `worker`, `rotor ca` and `rotor access-key`.

use std::sync::Arc;

use clap::{Args, Subcommand};
use rotators::Registry;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::output::{table, Output};
use crate::api::{Api, ApiSettings};
use crate::config::{CommandLine, Config};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::policy::{Action, Policy, Rule};
use crate::store::Store;

/// Where the KMS-compatible API listens.
#[derive(Clone, Debug, Args)]
pub struct ApiArgs {
    /// Serve the KMS-compatible API on this address (HTTPS with the installation's CA).
    #[arg(long, env = "ROTOR_API_LISTEN", value_name = "ADDR")]
    pub api_listen: Option<std::net::SocketAddr>,
    /// Serve the API over plain HTTP (loopback addresses only).
    #[arg(long)]
    pub api_plain_http: bool,
    /// Another name the API's certificate is valid for (repeatable).
    #[arg(long = "api-hostname", value_name = "NAME")]
    pub api_hostnames: Vec<String>,
    /// Connections the API serves at once; one more is answered 503 and closed [default: 4096].
    #[arg(long, value_name = "N")]
    pub api_max_connections: Option<usize>,
}

impl ApiArgs {
    pub fn flags(&self, m: &clap::ArgMatches, flags: &mut CommandLine) {
        let given = |id: &str| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        if given("api_listen") {
            flags.set("api.listen", self.api_listen);
        }
        if given("api_plain_http") {
            flags.set("api.plain_http", self.api_plain_http);
        }
        if given("api_hostnames") {
            flags.set("api.hostnames", &self.api_hostnames);
        }
        if given("api_max_connections") {
            flags.set("api.max_connections", self.api_max_connections);
        }
    }
}

/// Starts the API beside a worker (or alone, for `serve`) when configured.
pub async fn start(
    store: &Store,
    engine: Arc<Engine>,
    settings: &Config,
    stop: CancellationToken,
) -> Result<Option<crate::api::Server>> {
    let Some(api) = settings.api.settings() else {
        return Ok(None);
    };
    let server = crate::api::serve(
        Api::new(store.clone(), engine).with_shutdown(stop.clone()),
        &api,
        &settings.data_dir,
        stop,
    )
    .await?;
    crate::telemetry::zero_api(&Action::names());
    Ok(Some(server))
}

/// `rotor serve`: the API (and metrics) without rotating, until SIGINT/SIGTERM.
pub async fn serve(store: &Store, registry: Registry, settings: &Config) -> Result<()> {
    let Some(ApiSettings { .. }) = settings.api.settings() else {
        return Err(Error::invalid(
            "rotor serve needs --api-listen ADDR (or api.listen in the configuration)",
        ));
    };
    let stop = CancellationToken::new();
    crate::worker::cancel_on_signal(stop.clone());
    if let Some(addr) = settings.server.metrics_listen {
        crate::telemetry::serve(addr, store.clone(), stop.clone()).await?;
        crate::telemetry::zero_rotations(&registry);
        // Before the API starts: a scrape between the two already sees its series.
        crate::telemetry::zero_api(&Action::names());
    }
    // The same engine as the worker's, webhooks included.
    let (engine, dispatcher) = super::rotate::engine(store, registry, settings)?;
    let server = start(store, engine, settings, stop.clone())
        .await?
        .expect("checked above");
    stop.cancelled().await;
    server.stopped().await;
    super::rotate::finish_webhooks(dispatcher, super::rotate::WEBHOOK_GRACE).await;
    Ok(())
}

/// `rotor ca`: the API's CA certificate, for clients to pin.
pub fn ca(settings: &Config) -> Result<()> {
    let pem = crate::api::tls::ca_pem(&settings.data_dir)?;
    super::output::write_stdout(&[pem.as_bytes()])
        .map_err(|e| Error::config(format!("cannot write to standard output: {e}")))
}

#[derive(Debug, Subcommand)]
pub enum AccessKeyCommand {
    /// Create an AccessKey for the API; prints its id and secret once.
    Create {
        /// A name for the key (its application).
        #[arg(long)]
        name: String,
        /// ACTION:PATTERN, e.g. GetSecretValue:db/* (repeatable; * for every action).
        #[arg(long = "allow", required = true, value_name = "ACTION:PATTERN")]
        allow: Vec<Rule>,
        /// Write the id and secret to this new file (mode 0600; an existing file or a symlink
        /// is refused) as {"AccessKeyId","AccessKeySecret"}, rather than print the secret.
        #[arg(long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// List AccessKeys (never their secrets).
    List,
    /// Disable a key (by name or id): its requests are refused within 2 s.
    Disable { key: String },
    /// Enable a disabled key.
    Enable { key: String },
    /// Delete a key.
    Delete { key: String },
}

pub async fn access_key(store: &Store, cmd: AccessKeyCommand, out: &Output) -> Result<()> {
    match cmd {
        AccessKeyCommand::Create {
            name,
            allow,
            output: Some(path),
        } => {
            let policy = Policy::new(allow)?;
            // The file first: a key whose secret could not be kept is never made.
            let file = KeyFile::create(&path)?;
            let (info, secret) = store.create_access_key(&name, &policy).await?;
            let body =
                json!({"AccessKeyId": info.access_key_id, "AccessKeySecret": secret.as_str()});
            file.fill(&body).map_err(|e| {
                Error::config(format!(
                    "{e}; access key '{}' exists without its secret: rotor access-key delete {}",
                    info.name, info.access_key_id
                ))
            })?;
            out.print(
                json!({"AccessKeyId": info.access_key_id, "AccessKeyName": info.name, "OutputFile": path}),
                || {
                    format!(
                        "created access key '{}' ({}); its secret is in {} (mode 0600)",
                        info.name,
                        info.access_key_id,
                        path.display()
                    )
                },
            );
        }
        AccessKeyCommand::Create {
            name,
            allow,
            output: None,
        } => {
            let policy = Policy::new(allow)?;
            let (info, secret) = store.create_access_key(&name, &policy).await?;
            out.print(
                json!({"AccessKeyId": info.access_key_id, "AccessKeySecret": secret.as_str()}),
                || {
                    format!(
                        "created access key '{}'\nAccessKeyId:     {}\nAccessKeySecret: {}\n(the secret is shown only now)",
                        info.name,
                        info.access_key_id,
                        secret.as_str()
                    )
                },
            );
        }
        AccessKeyCommand::List => {
            let keys = store.list_access_keys().await?;
            out.print(&keys, || {
                table(
                    &["ACCESS KEY ID", "NAME", "STATUS", "CREATED", "POLICY"],
                    keys.iter()
                        .map(|k| {
                            vec![
                                k.access_key_id.clone(),
                                k.name.clone(),
                                k.status.to_owned(),
                                k.create_time.clone(),
                                k.policy.join(" "),
                            ]
                        })
                        .collect(),
                )
            });
        }
        AccessKeyCommand::Disable { key } => {
            store.set_access_key_enabled(&key, false).await?;
            out.print(json!({"AccessKey": key, "Status": "Disabled"}), || {
                format!("access key '{key}' disabled")
            });
        }
        AccessKeyCommand::Enable { key } => {
            store.set_access_key_enabled(&key, true).await?;
            out.print(json!({"AccessKey": key, "Status": "Enabled"}), || {
                format!("access key '{key}' enabled")
            });
        }
        AccessKeyCommand::Delete { key } => {
            store.delete_access_key(&key).await?;
            out.print(json!({"AccessKey": key, "Deleted": true}), || {
                format!("access key '{key}' deleted")
            });
        }
    }
    Ok(())
}

/// The `--output` file of `access-key create`: made (owner-only, never over an existing file
/// or through a symlink) before the key, removed again if the key is not made or not written.
struct KeyFile {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
}

impl KeyFile {
    fn create(path: &std::path::Path) -> Result<KeyFile> {
        let mut options = std::fs::OpenOptions::new();
        // create_new is O_CREAT|O_EXCL: it refuses any existing file and any symlink, even one
        // pointing nowhere, so the secret lands only in a file made here.
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    "it exists (rotor writes a secret only to a new file)".to_string()
                }
                _ => e.to_string(),
            };
            Error::invalid(format!("cannot create --output {}: {why}", path.display()))
        })?;
        Ok(KeyFile {
            path: path.to_owned(),
            file: Some(file),
        })
    }

    fn fill(mut self, body: &serde_json::Value) -> Result<()> {
        use std::io::Write;
        let mut file = self.file.take().expect("filled once");
        let text = zeroize::Zeroizing::new(format!("{body:#}\n"));
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::config(format!("cannot write {}: {e}", self.path.display())))?;
        self.path = std::path::PathBuf::new();
        Ok(())
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
