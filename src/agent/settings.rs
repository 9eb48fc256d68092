//! The agent's settings: the `[agent]` table (how to reach rotor's API: `endpoint`, `ca_file`,
//! `access_key_id`, `access_key_secret_file`, `poll`), each also from its `ROTOR_AGENT_…`
//! variable, which wins; the `[[template]]` list and the optional `[cache]` endpoint. The file
//! and the AccessKey secret file are trusted files (`crate::files`): no one else may write the
//! settings, no one else may read the secret.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::files::{self, Kind};

/// The largest settings file, template source or secret file read.
const MAX_FILE: u64 = 1024 * 1024;
/// The largest AccessKey secret file read.
const MAX_KEY_FILE: u64 = 4096;

/// The variables that set `[agent]` keys, and the keys they set.
pub const ENV: [(&str, &str); 5] = [
    ("ROTOR_AGENT_ENDPOINT", "endpoint"),
    ("ROTOR_AGENT_CA_FILE", "ca_file"),
    ("ROTOR_AGENT_ACCESS_KEY_ID", "access_key_id"),
    (
        "ROTOR_AGENT_ACCESS_KEY_SECRET_FILE",
        "access_key_secret_file",
    ),
    ("ROTOR_AGENT_POLL", "poll"),
];

/// The whole file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct File {
    agent: Connection,
    template: Vec<TemplateSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<CacheSpec>,
}

/// `[agent]`: how the agent reaches rotor's API.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Connection {
    /// `https://rotor.internal:8443` (plain `http://` only to this machine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The installation's CA certificate (`rotor ca`), the only root the agent trusts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The AccessKey's id; read from the secret file when that holds `rotor access-key create
    /// --output`'s JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// The AccessKey's secret: the secret alone, or the JSON `rotor access-key create
    /// --output` writes. Owner-only, like the master key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_secret_file: Option<PathBuf>,
    /// How often each secret's current version is asked for.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
}

impl Default for Connection {
    fn default() -> Self {
        Connection {
            endpoint: None,
            ca_file: None,
            access_key_id: None,
            access_key_secret_file: None,
            poll: Duration::from_secs(30),
        }
    }
}

/// One `[[template]]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// A template file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    /// The template itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<String>,
    /// The file written.
    pub destination: PathBuf,
    /// Its mode, octal text (`"0640"`); 0600 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Its owner, `USER[:GROUP]` (names or numeric ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A command (`sh -c`) run after the file changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// `[cache]`: the local cache endpoint, on a loopback address or a Unix socket (one of them).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// A loopback address (`127.0.0.1:2773`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// A Unix socket, made owner-only (0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// The file holding the token every request must carry (`X-Rotor-Token`); owner-only.
    pub token_file: PathBuf,
    /// How long a value is served before it is asked for again.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
}

fn default_ttl() -> Duration {
    Duration::from_secs(300)
}

/// A template ready to render: its text and what to do with the result.
#[derive(Clone, Debug)]
pub struct Template {
    /// Where the template came from, for messages (`source` path or `template N`).
    pub label: String,
    /// The template text.
    pub text: String,
    /// The file written.
    pub destination: PathBuf,
    /// Its mode.
    pub mode: u32,
    /// Its owner, as given.
    pub owner: Option<String>,
    /// The command run after a change.
    pub command: Option<String>,
}

/// The agent's checked settings.
#[derive(Debug)]
pub struct Settings {
    /// The API endpoint (`https://host:port`).
    pub endpoint: String,
    /// The pinned CA, PEM.
    pub ca_pem: Option<Vec<u8>>,
    /// The AccessKey id.
    pub access_key_id: String,
    /// The AccessKey secret.
    pub access_key_secret: Zeroizing<String>,
    /// The poll interval.
    pub poll: Duration,
    /// The templates, in the file's order.
    pub templates: Vec<Template>,
    /// The cache endpoint, if configured.
    pub cache: Option<CacheSpec>,
}

/// Reads `path` (when given) and the `ROTOR_AGENT_…` variables into [`Settings`].
pub fn load(path: Option<&Path>) -> Result<Settings> {
    let mut figment = Figment::from(Serialized::defaults(File::default()));
    if let Some(path) = path {
        let bytes = files::read_checked(path, "agent configuration file", Kind::Lock, MAX_FILE)?;
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
            Error::config(format!(
                "agent configuration file {} is not UTF-8 text",
                path.display()
            ))
        })?;
        figment = figment.merge(Toml::string(&text));
    }
    for (var, key) in ENV {
        if let Some(value) = std::env::var_os(var) {
            let value = value
                .into_string()
                .map_err(|_| Error::invalid(format!("{var} is not UTF-8 text")))?;
            figment = figment.merge(Serialized::default(&format!("agent.{key}"), value));
        }
    }
    let file: File = figment.extract().map_err(|e| {
        let what = path.map_or_else(|| "the environment".into(), |p| p.display().to_string());
        Error::invalid(format!("agent configuration ({what}): {e}"))
    })?;
    check(file)
}

fn check(file: File) -> Result<Settings> {
    let c = file.agent;
    let endpoint = c.endpoint.ok_or_else(|| {
        Error::invalid("the agent needs an endpoint: [agent] endpoint or ROTOR_AGENT_ENDPOINT")
    })?;
    if c.poll < Duration::from_millis(100) {
        return Err(Error::invalid("[agent] poll must be at least 100ms"));
    }
    let ca_pem =
        match &c.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                Error::config(format!("cannot read CA file {}: {e}", path.display()))
            })?),
            None => None,
        };
    let secret_file = c.access_key_secret_file.as_deref().ok_or_else(|| {
        Error::invalid(
            "the agent needs an AccessKey: [agent] access_key_secret_file or ROTOR_AGENT_ACCESS_KEY_SECRET_FILE",
        )
    })?;
    let (file_id, access_key_secret) = read_key_file(secret_file)?;
    let access_key_id = c.access_key_id.or(file_id).ok_or_else(|| {
        Error::invalid(
            "the agent needs an AccessKey id: [agent] access_key_id or ROTOR_AGENT_ACCESS_KEY_ID",
        )
    })?;
    let templates = file
        .template
        .into_iter()
        .enumerate()
        .map(|(i, t)| template(i + 1, t))
        .collect::<Result<Vec<_>>>()?;
    if let Some(cache) = &file.cache {
        match (cache.listen, &cache.socket) {
            (Some(listen), None) if !listen.ip().is_loopback() => {
                return Err(Error::invalid(format!(
                    "[cache] listen {listen} is not a loopback address: the cache endpoint serves only this machine"
                )));
            }
            (Some(_), None) | (None, Some(_)) => {}
            _ => return Err(Error::invalid(
                "[cache] needs one of listen (a loopback address) and socket (a Unix socket path)",
            )),
        }
    }
    Ok(Settings {
        endpoint,
        ca_pem,
        access_key_id,
        access_key_secret,
        poll: c.poll,
        templates,
        cache: file.cache,
    })
}

/// The secret (and the id, if the file is `access-key create --output`'s JSON).
fn read_key_file(path: &Path) -> Result<(Option<String>, Zeroizing<String>)> {
    let what = "AccessKey secret file";
    let bytes = files::read_checked(path, what, Kind::Private, MAX_KEY_FILE)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::config(format!("{what} {} is not UTF-8 text", path.display())))?;
    if text.trim_start().starts_with('{') {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Pair {
            access_key_id: Option<String>,
            access_key_secret: String,
        }
        // serde_json's errors could quote the text: only the shape is named.
        let pair: Pair = serde_json::from_str(text).map_err(|_| {
            Error::config(format!(
                "{what} {} holds JSON without an \"AccessKeySecret\" text",
                path.display()
            ))
        })?;
        return Ok((pair.access_key_id, Zeroizing::new(pair.access_key_secret)));
    }
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() || secret.chars().any(char::is_control) {
        return Err(Error::config(format!(
            "{what} {} must hold the secret on one line",
            path.display()
        )));
    }
    Ok((None, Zeroizing::new(secret.to_owned())))
}

fn template(n: usize, t: TemplateSpec) -> Result<Template> {
    let (label, text) = match (&t.source, t.contents) {
        (Some(path), None) => {
            let bytes = files::read_trusted(path, "template", MAX_FILE)?;
            let text = String::from_utf8(bytes).map_err(|_| {
                Error::config(format!("template {} is not UTF-8 text", path.display()))
            })?;
            (path.display().to_string(), text)
        }
        (None, Some(text)) => (format!("template {n}"), text),
        _ => {
            return Err(Error::invalid(format!(
                "[[template]] {n} needs exactly one of source and contents"
            )))
        }
    };
    let mode = match &t.mode {
        None => 0o600,
        Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "[[template]] {n}: mode '{}' is not an octal mode such as \"0640\"",
                    crate::model::printable(m)
                ))
            })?,
    };
    if mode & 0o002 != 0 {
        return Err(Error::invalid(format!(
            "[[template]] {n}: mode {mode:04o} lets anyone write the file"
        )));
    }
    if t.destination.file_name().is_none() || t.destination.parent().is_none() {
        return Err(Error::invalid(format!(
            "[[template]] {n}: destination {} names no file",
            t.destination.display()
        )));
    }
    Ok(Template {
        label,
        text,
        destination: t.destination,
        mode,
        owner: t.owner,
        command: t.command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mode: Option<&str>) -> TemplateSpec {
        TemplateSpec {
            source: None,
            contents: Some("x".into()),
            destination: "/tmp/x".into(),
            mode: mode.map(Into::into),
            owner: None,
            command: None,
        }
    }

    #[test]
    fn modes_are_octal_text_and_never_world_writable() {
        assert_eq!(template(1, spec(None)).unwrap().mode, 0o600);
        assert_eq!(template(1, spec(Some("0640"))).unwrap().mode, 0o640);
        assert!(template(1, spec(Some("0666"))).is_err());
        assert!(template(1, spec(Some("rw-"))).is_err());
        let mut both = spec(None);
        both.source = Some("/etc/hosts".into());
        assert!(template(1, both).is_err());
    }
}
