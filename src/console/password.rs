//! Console passwords: hashed with argon2id (the `argon2` crate's defaults, OWASP's minimum:
//! 19 MiB, two passes) into a PHC string with a random salt; checked in constant time by the
//! same crate. Hashing is slow on purpose, so both run on a blocking thread.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The shortest password a console user may have.
pub const MIN_LENGTH: usize = 12;
/// The longest password read (a bound on hashing work, not a policy).
pub const MAX_LENGTH: usize = 1024;

/// A hash of a random password nobody knows, checked when a user does not exist so that a
/// wrong name takes as long to refuse as a wrong password.
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        Argon2::default()
            .hash_password(crate::crypto::random_id().as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Checks a new password's form: 12 to 1024 characters, no control characters.
pub fn check_new(password: &str) -> Result<()> {
    let n = password.chars().count();
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&n) {
        return Err(Error::invalid(format!(
            "a console password must be {MIN_LENGTH} to {MAX_LENGTH} characters"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(Error::invalid(
            "a console password may not hold control characters",
        ));
    }
    Ok(())
}

/// The argon2id PHC string of `password` (checked by [`check_new`] first).
pub async fn hash(password: Zeroizing<String>) -> Result<String> {
    check_new(&password)?;
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::config(format!("cannot hash the password: {e}")))
    })
    .await
    .map_err(|e| Error::config(format!("password hashing stopped: {e}")))?
}

/// Whether `password` matches `hash` (a PHC string); with `None` (no such user), a decoy is
/// checked and the answer is no.
pub async fn verify(password: Zeroizing<String>, hash: Option<String>) -> bool {
    let known = hash.is_some();
    let matched = tokio::task::spawn_blocking(move || {
        let hash: &str = match &hash {
            Some(h) => h,
            None => decoy(),
        };
        password.len() <= MAX_LENGTH * 4
            && Argon2::default()
                .verify_password(password.as_bytes(), hash)
                .is_ok()
    })
    .await
    .unwrap_or(false);
    known && matched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_refuse() {
        let h = hash(Zeroizing::new("correct horse battery".into()))
            .await
            .unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(
            verify(
                Zeroizing::new("correct horse battery".into()),
                Some(h.clone())
            )
            .await
        );
        assert!(!verify(Zeroizing::new("wrong horse battery".into()), Some(h)).await);
        assert!(!verify(Zeroizing::new("anything at all".into()), None).await);
        assert!(hash(Zeroizing::new("short".into())).await.is_err());
        assert!(check_new("has a\nnewline in it").is_err());
    }
}
