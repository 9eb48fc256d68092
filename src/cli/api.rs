//! `rotor serve`, the API flags of `serve` and `worker`, `rotor ca` and `rotor access-key`.

use std::sync::Arc;

use clap::{Args, Subcommand};
use rotators::Registry;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::output::{table, Output};
use crate::api::policy::{Policy, Rule};
use crate::api::{Api, ApiSettings};
use crate::config::{CommandLine, Config};
use crate::engine::Engine;
use crate::error::{Error, Result};
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
    crate::telemetry::zero_api(&crate::api::policy::ACTIONS);
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
    print!("{}", crate::api::tls::ca_pem(&settings.data_dir)?);
    Ok(())
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
        AccessKeyCommand::Create { name, allow } => {
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
