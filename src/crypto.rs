//! Envelope encryption: the installation's master key wraps named master keys (CMKs), a CMK
//! wraps each secret's data key, and a data key seals each version's value with AES-256-GCM.
//!
//! Every ciphertext carries associated data naming what it belongs to (a CMK's name, a secret's
//! id and name, a version id), so a ciphertext moved to another row does not open. The master key
//! comes from a key file (mode 0600, refused if others can read it) or `ROTOR_MASTER_KEY`; it
//! never enters the store.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Length of every key rotor uses (AES-256).
pub const KEY_LEN: usize = 32;
/// First byte of every sealed blob: the format, so a later format can be told apart.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

/// 32 bytes of key material, zeroed on drop, never shown.
#[derive(Clone)]
pub struct KeyMaterial(Zeroizing<[u8; KEY_LEN]>);

impl KeyMaterial {
    /// Fresh key material from the operating system's random source.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(key.as_mut());
        KeyMaterial(key)
    }

    fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(KeyMaterial(Zeroizing::new(array)))
    }

    /// Decodes the base64 text of a key file or `ROTOR_MASTER_KEY`.
    pub fn from_base64(text: &str) -> Option<Self> {
        let bytes = Zeroizing::new(BASE64.decode(text.trim()).ok()?);
        Self::from_slice(&bytes)
    }

    /// The base64 text written to a key file.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(self.0.as_ref()))
    }

    /// Seals `plaintext`, binding it to `aad`. Output: format byte, nonce, ciphertext and tag.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new(self.0.as_ref().into());
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encryption of a bounded message cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`seal`](Self::seal) made with the same key and `aad`; `None` if the key, the
    /// associated data or the bytes differ.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (&format, rest) = sealed.split_first()?;
        if format != FORMAT_V1 || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let cipher = Aes256Gcm::new(self.0.as_ref().into());
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }

    /// Wraps another key under this one.
    pub fn wrap(&self, key: &KeyMaterial, aad: &[u8]) -> Vec<u8> {
        self.seal(key.0.as_ref(), aad)
    }

    /// Unwraps a key wrapped by [`wrap`](Self::wrap).
    pub fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Option<KeyMaterial> {
        Self::from_slice(&self.open(wrapped, aad)?)
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial([REDACTED])")
    }
}

/// A random identifier (32 hex digits), e.g. a secret's `uid`.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Associated data of the store's master-key check value.
pub fn aad_key_check() -> Vec<u8> {
    b"rotor/master-key-check".to_vec()
}

/// Associated data of a CMK wrapped by the master key.
pub fn aad_cmk(key_name: &str) -> Vec<u8> {
    format!("rotor/cmk/{key_name}").into_bytes()
}

/// Associated data of a secret's data key wrapped by its CMK.
pub fn aad_data_key(secret_uid: &str, secret_name: &str) -> Vec<u8> {
    format!("rotor/data-key/{secret_uid}/{secret_name}").into_bytes()
}

/// Associated data of a version's value sealed by the secret's data key.
pub fn aad_value(secret_uid: &str, secret_name: &str, version_id: &str) -> Vec<u8> {
    format!("rotor/value/{secret_uid}/{secret_name}/{version_id}").into_bytes()
}

/// Reads the master key file, refusing one that others could read.
pub fn read_key_file(path: &Path) -> Result<KeyMaterial> {
    use std::io::Read;
    crate::files::check(path, "master key file", crate::files::Kind::Private)?;
    let mut text = Zeroizing::new(String::new());
    // A key file is 45 bytes; a bigger one is no key file and is not read whole.
    crate::files::open_regular(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|e| {
            Error::config(format!(
                "cannot read master key file {}: {e}",
                path.display()
            ))
        })?;
    KeyMaterial::from_base64(&text).ok_or_else(|| {
        Error::config(format!(
            "master key file {} does not hold a base64-encoded 32-byte key",
            path.display()
        ))
    })
}

/// Creates a new master key file with mode 0600; refuses to overwrite one.
pub fn create_key_file(path: &Path) -> Result<KeyMaterial> {
    let key = KeyMaterial::generate();
    let mut text = Zeroizing::new(key.to_base64().as_bytes().to_vec());
    text.push(b'\n');
    crate::files::create_private(path, "master key file", &text)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_bind_the_associated_data() {
        let key = KeyMaterial::generate();
        let sealed = key.seal(b"hunter2", b"a");
        assert_eq!(key.open(&sealed, b"a").unwrap().as_slice(), b"hunter2");
        assert!(key.open(&sealed, b"b").is_none());
        assert!(KeyMaterial::generate().open(&sealed, b"a").is_none());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.open(&tampered, b"a").is_none());
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn key_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let key = create_key_file(&path).unwrap();
        let again = read_key_file(&path).unwrap();
        assert_eq!(key.to_base64(), again.to_base64());
        assert!(
            create_key_file(&path).is_err(),
            "never overwrites a key file"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = read_key_file(&path).unwrap_err().to_string();
            assert!(err.contains("readable by others"), "{err}");
        }
        assert!(!format!("{key:?}").contains(key.to_base64().as_str()));
    }
}
