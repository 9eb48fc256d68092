//! Key pairs and authorized_keys text: generating a pair, reading an `ECS`/`SSHKey` value,
//! and the line edits rotor makes, which keep every other line byte for byte.

use russh::keys::{PrivateKey, PublicKey};
use serde_json::json;
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, EcdsaCurve, LineEnding};
use zeroize::Zeroizing;

use super::settings::KeyType;
use crate::rotator::RotateError;
use crate::value::SecretValue;

/// An `ECS`/`SSHKey` value, parsed.
pub struct KeyPair {
    /// The host user the key pair logs in as.
    pub user: String,
    /// The public key (the part added to authorized_keys).
    pub public: PublicKey,
    /// The private key.
    pub private: PrivateKey,
}

impl KeyPair {
    /// Reads `{"UserName","PublicKey","PrivateKey"}`; the private key may be OpenSSH or PEM.
    pub fn from_value(value: &SecretValue) -> Result<Self, RotateError> {
        let parsed: serde_json::Value = serde_json::from_slice(value.expose())
            .map_err(|_| RotateError::fatal("the SSH key secret's value is not JSON"))?;
        let field = |name: &str| {
            parsed
                .get(name)
                .and_then(|v| v.as_str())
                .ok_or_else(|| RotateError::fatal(format!("the SSH key secret has no '{name}'")))
        };
        let user = field("UserName")?.to_owned();
        let public = PublicKey::from_openssh(field("PublicKey")?.trim()).map_err(|_| {
            RotateError::fatal("the secret's PublicKey is not an OpenSSH public key")
        })?;
        let private = parse_private_key(field("PrivateKey")?)
            .map_err(|e| RotateError::fatal(format!("the secret's PrivateKey: {e}")))?;
        if private.public_key().key_data() != public.key_data() {
            return Err(RotateError::fatal(
                "the secret's PublicKey does not belong to its PrivateKey",
            ));
        }
        Ok(KeyPair {
            user,
            public,
            private,
        })
    }

    /// The value to store.
    pub fn to_value(&self) -> Result<SecretValue, RotateError> {
        let private = self
            .private
            .to_openssh(LineEnding::LF)
            .map_err(|e| RotateError::fatal(format!("cannot encode the private key: {e}")))?;
        let text = Zeroizing::new(
            json!({
                "UserName": self.user,
                "PublicKey": public_line(&self.public),
                "PrivateKey": private.as_str(),
            })
            .to_string(),
        );
        Ok(SecretValue::new(text.as_bytes().to_vec()))
    }

    /// A new key pair of `key_type` for `user`, commented `comment`, from the OS random source.
    pub fn generate(user: &str, key_type: KeyType, comment: &str) -> Result<Self, RotateError> {
        let algorithm = match key_type {
            KeyType::Ed25519 => Algorithm::Ed25519,
            KeyType::Rsa3072 | KeyType::Rsa4096 => Algorithm::Rsa { hash: None },
            KeyType::EcdsaP256 => Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
            KeyType::EcdsaP384 => Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP384,
            },
        };
        let mut rng = rand_keys::rngs::SysRng;
        let mut rng = rand_keys::rand_core::UnwrapErr(&mut rng);
        let mut private = match key_type {
            KeyType::Rsa3072 | KeyType::Rsa4096 => {
                let bits = if key_type == KeyType::Rsa3072 {
                    3072
                } else {
                    4096
                };
                ssh_key::private::RsaKeypair::random(&mut rng, bits).map(PrivateKey::from)
            }
            _ => PrivateKey::random(&mut rng, algorithm),
        }
        .map_err(|e| RotateError::fatal(format!("cannot generate a {key_type:?} key: {e}")))?;
        private.set_comment(comment);
        let public = private.public_key().clone();
        Ok(KeyPair {
            user: user.to_owned(),
            public,
            private,
        })
    }
}

/// A new key pair as an `ECS`/`SSHKey` value, generated off the async workers (an RSA key
/// takes a while).
pub async fn generate_value(
    user: &str,
    key_type: KeyType,
    comment: &str,
) -> Result<SecretValue, RotateError> {
    let (user, comment) = (user.to_owned(), comment.to_owned());
    tokio::task::spawn_blocking(move || KeyPair::generate(&user, key_type, &comment)?.to_value())
        .await
        .map_err(|e| RotateError::fatal(format!("key generation stopped: {e}")))?
}

/// Parses an OpenSSH or PEM private key; encrypted keys are refused.
pub fn parse_private_key(text: &str) -> Result<PrivateKey, String> {
    let key = russh::keys::decode_secret_key(text.trim(), None).map_err(|e| match e {
        russh::keys::Error::KeyIsEncrypted => {
            "the private key is encrypted; give rotor an unencrypted key".to_owned()
        }
        _ => "not an OpenSSH or PEM private key".to_owned(),
    })?;
    if key.is_encrypted() {
        return Err("the private key is encrypted; give rotor an unencrypted key".into());
    }
    Ok(key)
}

/// `ALGORITHM BASE64 COMMENT` (the comment left out when empty).
pub fn public_line(key: &PublicKey) -> String {
    key.to_openssh().unwrap_or_default()
}

/// `ALGORITHM BASE64` of a key, with no comment.
pub fn bare_key(key: &PublicKey) -> String {
    let mut key = key.clone();
    key.set_comment("");
    public_line(&key).trim().to_owned()
}

/// The comment rotor puts on its authorized_keys lines: `rotor:SECRET:VERSION`.
pub fn rotor_comment(secret: &str, version: &str) -> String {
    format!("rotor:{secret}:{version}")
}

/// The authorized_keys line rotor adds for `key`.
pub fn authorized_line(key: &PublicKey, secret: &str, version: &str) -> String {
    format!("{} {}", bare_key(key), rotor_comment(secret, version))
}

/// One authorized_keys line, as far as rotor reads it: its key and comment.
pub struct Entry {
    /// The line's public key.
    pub key: KeyData,
    /// The line's comment.
    pub comment: String,
}

/// Reads a line (`[OPTIONS] ALGORITHM BASE64 [COMMENT]`); `None` for blank lines, comments
/// and anything rotor cannot parse (which it then never touches).
pub fn parse_line(line: &[u8]) -> Option<Entry> {
    let text = std::str::from_utf8(line).ok()?.trim();
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    if let Ok(key) = PublicKey::from_openssh(text) {
        return Some(Entry {
            key: key.key_data().clone(),
            comment: key.comment().as_str_lossy().to_owned(),
        });
    }
    // Options first: skip them (they may quote spaces), then read the key.
    let mut in_quotes = false;
    let mut end = None;
    for (i, c) in text.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ' ' | '\t' if !in_quotes => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let key = PublicKey::from_openssh(text[end?..].trim()).ok()?;
    Some(Entry {
        key: key.key_data().clone(),
        comment: key.comment().as_str_lossy().to_owned(),
    })
}

/// The lines of `content`, each with its line ending as it was.
pub fn lines(content: &[u8]) -> impl Iterator<Item = &[u8]> {
    content.split_inclusive(|b| *b == b'\n')
}

/// Whether some line of `content` holds `key`.
pub fn contains_key(content: &[u8], key: &PublicKey) -> bool {
    lines(content)
        .filter_map(parse_line)
        .any(|e| &e.key == key.key_data())
}

/// `content` with `line` added at the end (a newline first if the last line has none).
pub fn with_line(content: &[u8], line: &str) -> Vec<u8> {
    let mut out = content.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    out
}

/// `content` without the lines `remove` picks; every other line byte for byte. Also returns
/// how many went.
pub fn without_lines(content: &[u8], remove: impl Fn(&Entry) -> bool) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(content.len());
    let mut removed = 0;
    for line in lines(content) {
        if parse_line(line).is_some_and(|e| remove(&e)) {
            removed += 1;
        } else {
            out.extend_from_slice(line);
        }
    }
    (out, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEiVEW0yvcpmbzrcKp1UxyIk1NNRkDuRLIjyLaWWbQ9E other";

    #[test]
    fn generated_pairs_round_trip_through_the_value() {
        for key_type in [KeyType::Ed25519, KeyType::EcdsaP256] {
            let pair = KeyPair::generate("app", key_type, "rotor:s").unwrap();
            let value = pair.to_value().unwrap();
            crate::value::validate(
                crate::SecretKind::new(crate::SecretType::ECS, Some(crate::SubType::SSHKey))
                    .unwrap(),
                value.expose(),
            )
            .unwrap();
            let back = KeyPair::from_value(&value).unwrap();
            assert_eq!(back.public.key_data(), pair.public.key_data());
            assert_eq!(back.user, "app");
        }
    }

    #[test]
    fn edits_keep_other_lines_byte_for_byte() {
        let pair = KeyPair::generate("app", KeyType::Ed25519, "").unwrap();
        let original = format!(
            "# keep me\r\nfrom=\"10.0.0.1,10.0.0.2\",no-pty {OTHER}\n\n{OTHER}  trailing  \nnot a key"
        );
        let added = with_line(
            original.as_bytes(),
            &authorized_line(&pair.public, "s", "v2"),
        );
        assert!(added.starts_with(original.as_bytes()));
        assert!(contains_key(&added, &pair.public));
        let (back, removed) = without_lines(&added, |e| e.comment.starts_with("rotor:s:"));
        assert_eq!(removed, 1);
        assert_eq!(back, format!("{original}\n").as_bytes());
        let other = PublicKey::from_openssh(OTHER).unwrap();
        let (_, removed) = without_lines(original.as_bytes(), |e| &e.key == other.key_data());
        assert_eq!(removed, 2, "a line with options is read too");
    }
}
