//! The forms in which a new password reaches a server: never the password itself, so that no
//! statement log, slow log, error message or `MONITOR` can show it. PostgreSQL gets a
//! SCRAM-SHA-256 verifier (RFC 5802 / RFC 7677, as PostgreSQL stores it), MySQL/MariaDB the
//! `mysql_native_password` hash, Redis the SHA-256 of the password (`#<hex>`). Every primitive is
//! a RustCrypto crate; this module only assembles their outputs.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::TryRngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// PostgreSQL's iteration count before `scram_iterations` existed (PostgreSQL 16).
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 4096;

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` with a fresh 16-byte salt from
/// the OS random source. Passwords rotor generates are printable ASCII, which SASLprep leaves
/// as they are.
pub fn scram_sha256_verifier(password: &str, iterations: u32) -> String {
    let mut salt = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut salt)
        .expect("the OS random source works");
    scram_with_salt(password, &salt, iterations)
}

fn scram_with_salt(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = zeroize::Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, salted.as_mut());
    let hmac = |key: &[u8], msg: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(msg);
        mac.finalize().into_bytes()
    };
    let client_key = hmac(salted.as_ref(), b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(salted.as_ref(), b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        B64.encode(salt),
        B64.encode(stored_key),
        B64.encode(server_key)
    )
}

/// `*` and the upper-case hex of SHA1(SHA1(password)): what `mysql_native_password` stores.
pub fn mysql_native_hash(password: &str) -> String {
    let inner = Sha1::digest(password.as_bytes());
    format!("*{}", hex::encode_upper(Sha1::digest(inner)))
}

/// `#` and the hex SHA-256 of the password: an ACL password Redis takes without seeing it.
pub fn redis_password_hash(password: &str) -> String {
    format!("#{}", hex::encode(Sha256::digest(password.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_matches_rfc_7677() {
        // RFC 7677 section 3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==,
        // 4096 iterations; the server signature there follows from this ServerKey.
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = scram_with_salt("pencil", &salt, 4096);
        assert_eq!(
            v,
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
        let fresh = scram_sha256_verifier("pencil", 4096);
        assert!(fresh.starts_with("SCRAM-SHA-256$4096:"));
        assert_ne!(fresh, scram_sha256_verifier("pencil", 4096), "fresh salts");
    }

    #[test]
    fn mysql_and_redis_hashes() {
        // MySQL's documented example: PASSWORD('mypass').
        assert_eq!(
            mysql_native_hash("mypass"),
            "*6C8989366EAF75BB670AD8EA7A7FC1176A95CEF4"
        );
        assert_eq!(
            redis_password_hash("foo"),
            "#2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
        );
    }
}
