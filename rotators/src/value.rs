//! Secret values: the redacted byte container, and the JSON formats each secret type stores.
//!
//! Every non-generic type stores a JSON object with exactly the field names of the cloud KMS
//! (`AccountName`, `AccessKeyId`, ...). [`validate`] checks a value against its kind before the
//! engine stores it. Its errors name fields and never quote values: they end up in logs and on
//! terminals, and the value is a credential.

use std::fmt;

use secrecy::{ExposeSecret, SecretSlice};
use serde_json::{Map, Value};

use crate::kind::{SecretKind, SecretType, SubType};

/// The largest value a secret version may hold, in bytes (as in the cloud KMS).
pub const MAX_VALUE_BYTES: usize = 30_720;

/// A secret version's plaintext. Zeroed on drop; `Debug` never shows it.
pub struct SecretValue(SecretSlice<u8>);

impl SecretValue {
    /// Wraps `bytes` as a secret value.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(bytes.into())
    }

    /// The plaintext. Call sites are the few places that must see it (sealing, printing on
    /// request, comparing).
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// The plaintext as UTF-8 text, if it is text.
    pub fn as_text(&self) -> Option<&str> {
        std::str::from_utf8(self.expose()).ok()
    }

    /// The plaintext's length in bytes.
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// True when the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl Clone for SecretValue {
    fn clone(&self) -> Self {
        SecretValue::new(self.expose().to_vec())
    }
}

impl From<&str> for SecretValue {
    fn from(s: &str) -> Self {
        SecretValue::new(s.as_bytes().to_vec())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([REDACTED])")
    }
}

/// Why a value does not fit its secret's kind. Never carries the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    /// The value is empty.
    #[error("secret value is empty")]
    Empty,
    /// The value is larger than [`MAX_VALUE_BYTES`].
    #[error("secret value is {len} bytes; the limit is {MAX_VALUE_BYTES}")]
    TooLarge {
        /// The value's length in bytes.
        len: usize,
    },
    /// The value is not the JSON object the kind requires.
    #[error("{kind} value must be a JSON object with {expected}: {problem}")]
    Format {
        /// The secret's kind.
        kind: SecretKind,
        /// The fields the kind requires, in words.
        expected: String,
        /// What is wrong with the value.
        problem: String,
    },
}

/// The fields a kind's JSON value must have, exactly; `None` for free-form values.
pub fn required_fields(kind: SecretKind) -> Option<&'static [&'static str]> {
    match (kind.ty, kind.sub) {
        (SecretType::Generic, _) => None,
        (SecretType::Rds | SecretType::PolarDB | SecretType::Redis, _) => {
            Some(&["AccountName", "AccountPassword"])
        }
        (SecretType::RAMCredentials, _) => {
            Some(&["AccessKeyId", "AccessKeySecret", "GenerateTimestamp"])
        }
        (SecretType::ECS, Some(SubType::SSHKey)) => Some(&["UserName", "PublicKey", "PrivateKey"]),
        (SecretType::ECS, _) => Some(&["UserName", "Password"]),
    }
}

/// `text` as it is, or — when it contains any of `secrets` (a server echoing the statement that
/// set a password) — one fixed line instead. Replacing only the secret would not do: where the
/// marker sits in a known message tells a short password (`password authentication [marker]`).
pub fn withhold_if_quoting(text: String, secrets: &[&str]) -> String {
    if secrets
        .iter()
        .any(|secret| !secret.is_empty() && text.contains(secret))
    {
        "[REDACTED] (the message quoted a credential, so it is withheld)".into()
    } else {
        text
    }
}

/// The fields that name an account, a user or a key (never secret).
const NAME_FIELDS: &[&str] = &["AccountName", "UserName", "AccessKeyId"];

/// The longest name a value may carry (servers allow far less: PostgreSQL 63 bytes, MySQL 32).
const MAX_NAME_CHARS: usize = 256;

/// Checks that `bytes` is a well-formed value for a secret of `kind`.
pub fn validate(kind: SecretKind, bytes: &[u8]) -> Result<(), ValueError> {
    if bytes.is_empty() {
        return Err(ValueError::Empty);
    }
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(ValueError::TooLarge { len: bytes.len() });
    }
    let Some(fields) = required_fields(kind) else {
        return Ok(());
    };
    let format_error = |problem: String| ValueError::Format {
        kind,
        expected: fields.join(", "),
        problem,
    };
    // serde_json's syntax errors give a position only; its type errors could quote a value, so
    // the shape is checked by hand below.
    let parsed: Value = serde_json::from_slice(bytes).map_err(|e| {
        format_error(format!(
            "invalid JSON at line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(map) = parsed else {
        return Err(format_error("the value is not a JSON object".into()));
    };
    check_unique_keys(bytes).map_err(format_error)?;
    let unknown: Vec<String> = map
        .keys()
        .filter(|k| !fields.contains(&k.as_str()))
        .map(|k| format!("'{}'", shorten(k)))
        .collect();
    if !unknown.is_empty() {
        let plural = if unknown.len() == 1 { "" } else { "s" };
        return Err(format_error(format!(
            "unexpected field{plural} {}",
            unknown.join(", ")
        )));
    }
    for field in fields {
        match map.get(*field) {
            None => return Err(format_error(format!("missing field '{field}'"))),
            // A server without a password (Redis's default user) has an empty one.
            Some(Value::String(s)) if s.is_empty() && *field != "AccountPassword" => {
                return Err(format_error(format!("field '{field}' is empty")))
            }
            // Names reach terminals, logs and servers' login routines (PostgreSQL's SASLprep):
            // control characters and unbounded lengths are refused there.
            Some(Value::String(s)) if NAME_FIELDS.contains(field) => {
                if s.chars().any(char::is_control) {
                    return Err(format_error(format!(
                        "field '{field}' holds a control character"
                    )));
                }
                if s.chars().count() > MAX_NAME_CHARS {
                    return Err(format_error(format!(
                        "field '{field}' is longer than {MAX_NAME_CHARS} characters"
                    )));
                }
            }
            Some(Value::String(_)) => {}
            Some(_) => return Err(format_error(format!("field '{field}' is not a string"))),
        }
    }
    if kind.sub == Some(SubType::SSHKey) {
        check_ssh_key_pair(&map).map_err(format_error)?;
    }
    Ok(())
}

/// Refuses JSON whose objects repeat a key (`{"UserName":"a","UserName":"b"}`): parsers
/// disagree on which one wins, so rotor and an application could read different credentials.
/// The message names the key, never a value.
pub fn check_unique_keys(bytes: &[u8]) -> Result<(), String> {
    use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

    struct Unique;
    impl<'de> serde::Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Unique)
        }
    }
    impl<'de> Visitor<'de> for Unique {
        type Value = Unique;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(de::Error::custom(format!(
                        "field '{}' appears more than once",
                        shorten(&key)
                    )));
                }
                map.next_value::<Unique>()?;
            }
            Ok(Unique)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
            while seq.next_element::<Unique>()?.is_some() {}
            Ok(Unique)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_unit<E>(self) -> Result<Unique, E> {
            Ok(Unique)
        }
    }
    match serde_json::from_slice::<Unique>(bytes) {
        Ok(_) => Ok(()),
        // Only our own message (it names a key); a syntax error was reported before.
        Err(e) if e.is_data() => Err(e
            .to_string()
            .split(" at line")
            .next()
            .unwrap_or_default()
            .to_owned()),
        Err(_) => Ok(()),
    }
}

/// Checks that `PublicKey` is an OpenSSH public key and `PrivateKey` an OpenSSH or PEM private
/// key; for OpenSSH private keys, that the two belong together.
fn check_ssh_key_pair(map: &Map<String, Value>) -> Result<(), String> {
    let text = |f: &str| map.get(f).and_then(Value::as_str).unwrap_or_default();
    let public = ssh_key::PublicKey::from_openssh(text("PublicKey").trim())
        .map_err(|_| "field 'PublicKey' is not an OpenSSH public key".to_string())?;
    let private = text("PrivateKey").trim();
    if private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        let key = ssh_key::PrivateKey::from_openssh(private)
            .map_err(|_| "field 'PrivateKey' is not a valid OpenSSH private key".to_string())?;
        if key.public_key().key_data() != public.key_data() {
            return Err("'PublicKey' does not belong to 'PrivateKey'".into());
        }
        Ok(())
    } else if is_pem_private_key(private) {
        Ok(())
    } else {
        Err("field 'PrivateKey' is neither an OpenSSH nor a PEM private key".into())
    }
}

fn is_pem_private_key(text: &str) -> bool {
    const LABELS: [&str; 3] = ["RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY"];
    LABELS.iter().any(|label| {
        text.starts_with(&format!("-----BEGIN {label}-----"))
            && text.ends_with(&format!("-----END {label}-----"))
    })
}

/// Field names come from user input: keep error lines short.
fn shorten(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_owned()
    } else {
        format!("{}...", s.chars().take(64).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_refused_naming_the_key_only() {
        let ecs = SecretKind::new(SecretType::ECS, Some(SubType::Password)).unwrap();
        let err = validate(
            ecs,
            br#"{"UserName":"a","Password":"Hunter2-One","UserName":"b"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("'UserName' appears more than once"), "{err}");
        assert!(!err.contains("Hunter2"), "{err}");
        assert!(check_unique_keys(br#"{"Accounts":[{"a":1,"a":2}]}"#).is_err());
        assert!(check_unique_keys(br#"{"Accounts":[{"a":1},{"a":2}]}"#).is_ok());
    }

    fn kind(ty: SecretType, sub: Option<SubType>) -> SecretKind {
        SecretKind::new(ty, sub).unwrap()
    }

    const ED25519_PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCzPq7zfqLffKoBDe/eo04kH2XxtSmk9D7RQyf1xUqrYgAAAJgAIAxdACAM
XQAAAAtzc2gtZWQyNTUxOQAAACCzPq7zfqLffKoBDe/eo04kH2XxtSmk9D7RQyf1xUqrYg
AAAEC2BsIi0QwW2uFscKTUUXNHLsYX4FxlaSDSblbAj7WR7bM+rvN+ot98qgEN796jTiQf
ZfG1KaT0PtFDJ/XFSqtiAAAAEHVzZXJAZXhhbXBsZS5jb20BAgMEBQ==
-----END OPENSSH PRIVATE KEY-----";
    const ED25519_PUBLIC: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti user@example.com";
    const OTHER_PUBLIC: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEiVEW0yvcpmbzrcKp1UxyIk1NNRkDuRLIjyLaWWbQ9E other";

    #[test]
    fn generic_values_are_free_but_bounded() {
        let g = kind(SecretType::Generic, None);
        assert_eq!(validate(g, b"x"), Ok(()));
        assert_eq!(validate(g, &[0xff, 0x00]), Ok(()));
        assert_eq!(validate(g, &vec![b'a'; MAX_VALUE_BYTES]), Ok(()));
        assert_eq!(
            validate(g, &vec![b'a'; MAX_VALUE_BYTES + 1]),
            Err(ValueError::TooLarge {
                len: MAX_VALUE_BYTES + 1
            })
        );
        assert_eq!(validate(g, b""), Err(ValueError::Empty));
    }

    #[test]
    fn account_values_need_exactly_their_fields() {
        let rds = kind(SecretType::Rds, None);
        assert_eq!(
            validate(rds, br#"{"AccountName":"app","AccountPassword":"pw"}"#),
            Ok(())
        );
        for bad in [
            &br#"{"AccountName":"app"}"#[..],
            br#"{"AccountName":"app","AccountPassword":"pw","Extra":1}"#,
            br#"{"AccountName":"app","AccountPassword":12345}"#,
            br#"{"AccountName":"","AccountPassword":"pw"}"#,
            br#"{"AccountName":"ap\u001bp","AccountPassword":"pw"}"#,
            br#"{"AccountName":"a\np","AccountPassword":"pw"}"#,
            br#"["AccountName"]"#,
            b"not json",
        ] {
            assert!(
                validate(rds, bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn errors_never_quote_the_value() {
        let rds = kind(SecretType::Rds, None);
        let err = validate(rds, br#"{"AccountName":"app","AccountPassword":987654321}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("987654321"), "{err}");
        assert!(err.contains("AccountPassword"), "{err}");
        let v = SecretValue::from("hunter2");
        assert!(!format!("{v:?}").contains("hunter2"));
    }

    #[test]
    fn ram_and_ecs_formats() {
        let ram = kind(SecretType::RAMCredentials, None);
        assert_eq!(
            validate(
                ram,
                br#"{"AccessKeyId":"LTAI","AccessKeySecret":"s","GenerateTimestamp":"2026-01-01T00:00:00Z"}"#
            ),
            Ok(())
        );
        let pw = kind(SecretType::ECS, None);
        assert_eq!(
            validate(pw, br#"{"UserName":"root","Password":"pw"}"#),
            Ok(())
        );
        let ssh = kind(SecretType::ECS, Some(SubType::SSHKey));
        assert!(validate(ssh, br#"{"UserName":"root","Password":"pw"}"#).is_err());
    }

    #[test]
    fn ssh_key_pairs_must_match() {
        let ssh = kind(SecretType::ECS, Some(SubType::SSHKey));
        let value = |public: &str, private: &str| {
            serde_json::json!({"UserName": "root", "PublicKey": public, "PrivateKey": private})
                .to_string()
        };
        assert_eq!(
            validate(ssh, value(ED25519_PUBLIC, ED25519_PRIVATE).as_bytes()),
            Ok(())
        );
        let err = validate(ssh, value(OTHER_PUBLIC, ED25519_PRIVATE).as_bytes()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        assert!(validate(ssh, value("ssh-ed25519 AAAA", ED25519_PRIVATE).as_bytes()).is_err());
        assert!(validate(ssh, value(ED25519_PUBLIC, "secret").as_bytes()).is_err());
    }
}
