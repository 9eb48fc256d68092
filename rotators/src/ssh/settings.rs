//! What the SSH family stores: a target's address and pinned host key, a secret's rotation
//! settings, and the rules for the user names it puts into remote commands.

use std::fmt;

use russh::keys::{HashAlg, PublicKey};
use serde::{Deserialize, Serialize};

use crate::database::account::PasswordPolicy;
use crate::family::SetupError;
use crate::rotator::RotateError;

/// `ssh://HOST[:PORT]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshAddress {
    /// The host name or IP address.
    pub host: String,
    /// The TCP port (22 when the URL gives none).
    pub port: u16,
}

impl SshAddress {
    /// Parses `ssh://HOST[:PORT]` (an IPv6 host in brackets); nothing else may follow.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("ssh://")
            .ok_or("an SSH target URL is ssh://HOST[:PORT]")?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err("an SSH target URL is ssh://HOST[:PORT], with no path or query".into());
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or("unclosed '[' in the SSH target URL")?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("'{p}' is not a TCP port"))?,
            None => 22,
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || ".-_:".contains(c);
        if host.is_empty() || host.len() > 253 || !host.chars().all(valid) {
            return Err("the SSH target's host must be a host name or an IP address".into());
        }
        Ok(SshAddress {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for SshAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The host key a target accepts.
#[derive(Clone, Debug)]
pub enum HostKeyPin {
    /// Exactly this key.
    Key(PublicKey),
    /// A key with this SHA-256 fingerprint (`SHA256:…`).
    Fingerprint(String),
    /// Any key: only to read the key on first use, never to log in.
    Any,
}

impl HostKeyPin {
    /// True when `key` is a host key this pin accepts.
    pub fn accepts(&self, key: &PublicKey) -> bool {
        match self {
            HostKeyPin::Key(pinned) => pinned.key_data() == key.key_data(),
            HostKeyPin::Fingerprint(f) => key.fingerprint(HashAlg::Sha256).to_string() == *f,
            HostKeyPin::Any => true,
        }
    }

    /// The pinned key's fingerprint, for messages.
    pub fn describe(&self) -> String {
        match self {
            HostKeyPin::Key(k) => k.fingerprint(HashAlg::Sha256).to_string(),
            HostKeyPin::Fingerprint(f) => f.clone(),
            HostKeyPin::Any => "any key".into(),
        }
    }
}

/// A target's settings, as `target add` validated them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SshTarget {
    /// The host's address.
    pub address: SshAddress,
    /// The host key in OpenSSH form (`ssh-ed25519 AAAA…`), when pinned by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// The host key's `SHA256:` fingerprint, when pinned by fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_fingerprint: Option<String>,
}

impl SshTarget {
    /// Reads a target's stored settings.
    pub fn from_json(config: &serde_json::Value) -> Result<Self, RotateError> {
        serde_json::from_value(config.clone()).map_err(|e| {
            RotateError::fatal(format!("the SSH target's settings are malformed: {e}"))
        })
    }

    /// The host key pin the settings record (by key, else by fingerprint).
    pub fn pin(&self) -> Result<HostKeyPin, RotateError> {
        match (&self.host_key, &self.host_key_fingerprint) {
            (Some(key), _) => PublicKey::from_openssh(key)
                .map(HostKeyPin::Key)
                .map_err(|_| RotateError::fatal("the SSH target's pinned host key is malformed")),
            (None, Some(f)) => Ok(HostKeyPin::Fingerprint(f.clone())),
            (None, None) => Err(RotateError::fatal("the SSH target pins no host key")),
        }
    }
}

/// Checks a `SHA256:` fingerprint as OpenSSH prints it (43 base64 characters, no padding).
pub fn check_fingerprint(f: &str) -> Result<(), String> {
    let body = f
        .strip_prefix("SHA256:")
        .ok_or("a host key fingerprint starts with SHA256: (as ssh-keygen -lf prints it)")?;
    let b64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    if body.len() != 43 || !body.chars().all(b64) {
        return Err("a SHA256 host key fingerprint has 43 base64 characters after SHA256:".into());
    }
    Ok(())
}

/// Key pair types rotor generates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    /// Ed25519 (the default).
    #[default]
    #[serde(rename = "ed25519")]
    Ed25519,
    /// RSA, 3072 bits.
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    /// RSA, 4096 bits.
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    /// ECDSA on NIST P-256.
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// ECDSA on NIST P-384.
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
}

impl KeyType {
    /// The key type names, for messages.
    pub const NAMES: &'static str = "ed25519, rsa-3072, rsa-4096, ecdsa-p256 or ecdsa-p384";
}

impl std::str::FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
            .map_err(|_| format!("unknown key type '{s}' (expected {})", KeyType::NAMES))
    }
}

/// An ECS secret's settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EcsSettings {
    /// Password secrets: how new passwords are made.
    #[serde(default)]
    pub password: PasswordPolicy,
    /// Key secrets: the type of new key pairs.
    #[serde(default)]
    pub key_type: KeyType,
    /// Key secrets: the public key adopted by import (OpenSSH form, no comment). Rotor did not
    /// add its line, but it is this secret's key: it is removed like rotor's own once it is
    /// neither current nor previous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted_key: Option<String>,
}

impl EcsSettings {
    /// Reads the settings stored with a secret (`Null` gives the defaults).
    pub fn from_json(settings: &serde_json::Value) -> Result<Self, RotateError> {
        if settings.is_null() {
            return Ok(EcsSettings::default());
        }
        serde_json::from_value(settings.clone()).map_err(|e| {
            RotateError::fatal(format!("the secret's ECS settings are malformed: {e}"))
        })
    }
}

/// Refuses user names that are not portable POSIX user names (letters, digits, `_`, `.`,
/// `-`, not starting with `-` or `.`, at most 32 characters): they go into remote commands
/// and authorized_keys paths.
pub fn check_user_name(name: &str) -> Result<(), SetupError> {
    let fail = |why: &str| {
        SetupError::Invalid(format!(
            "'{}' is not a valid host user name: {why}",
            name.chars().take(40).collect::<String>().escape_debug()
        ))
    };
    if name.is_empty() || name.len() > 32 {
        return Err(fail("it must have 1 to 32 characters"));
    }
    if name.starts_with(['-', '.']) {
        return Err(fail("it may not start with '-' or '.'"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(fail(
            "only letters, digits, '_', '.' and '-' are allowed (no shell metacharacters)",
        ));
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err(fail("a user name cannot be all digits"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let a = SshAddress::parse("ssh://10.0.0.5").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("10.0.0.5", 22));
        let a = SshAddress::parse("ssh://[::1]:2222/").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 2222));
        assert_eq!(a.to_string(), "[::1]:2222");
        for bad in [
            "ssh://",
            "ssh://h:0",
            "ssh://h:99999",
            "ssh://h/path",
            "ssh://h?x=1",
            "ssh://h;rm",
            "http://h",
        ] {
            assert!(SshAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_names_with_shell_metacharacters_are_refused() {
        for ok in ["app", "svc_backup", "a.b-c", "_x"] {
            assert!(check_user_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a;b",
            "$(id)",
            "`id`",
            "-rf",
            "a'b",
            "1000",
            &"x".repeat(33),
        ] {
            assert!(check_user_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fingerprints_and_key_types() {
        assert!(check_fingerprint("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s").is_ok());
        assert!(check_fingerprint("MD5:aa").is_err());
        assert!(check_fingerprint("SHA256:short").is_err());
        assert_eq!("RSA-4096".parse::<KeyType>(), Ok(KeyType::Rsa4096));
        assert!("dsa".parse::<KeyType>().is_err());
    }
}
