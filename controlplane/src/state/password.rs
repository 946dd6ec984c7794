//! Password hashing: argon2id with a random salt, done by the member that
//! receives the password, before anything is proposed to Raft.
//!
//! Invariant: the Raft log, snapshots and the Watch stream carry only the PHC
//! hash string, never a password. Hashing is slow on purpose; call it from
//! `tokio::task::spawn_blocking`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

/// Hashing failed (only on parameters or sizes argon2 refuses).
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct PasswordError(String);

/// Hashes `password` with argon2id (the crate's default parameters: 19 MiB,
/// 2 passes) and a random 16-byte salt; returns the PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let mut salt_bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|error| PasswordError(error.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| PasswordError(error.to_string()))
}

/// Iterations of PBKDF2 in a new SCRAM-SHA-256 verifier (RFC 7677's
/// minimum; PostgreSQL's default).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// The SCRAM-SHA-256 verifier of `password` (RFC 5802, 7677) with a random
/// 16-byte salt, in PostgreSQL's format:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64).
/// It lets the data plane check a SCRAM exchange without the password.
pub fn scram_verifier(password: &str) -> String {
    use base64::Engine;
    use ring::{digest, hmac, pbkdf2};
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let mut salted = [0u8; 32];
    let iterations = std::num::NonZeroU32::new(SCRAM_ITERATIONS).unwrap_or(std::num::NonZeroU32::MIN);
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, password.as_bytes(), &mut salted);
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let server_key = hmac::sign(&key, b"Server Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    format!(
        "SCRAM-SHA-256${SCRAM_ITERATIONS}:{}${}:{}",
        b64(&salt),
        b64(stored_key.as_ref()),
        b64(server_key.as_ref())
    )
}

/// True if `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let hash = hash_password("correct horse").expect("hashing works");
        assert!(hash.starts_with("$argon2id$"));
        assert!(super::super::validate::password_hash(&hash).is_ok());
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("correct horse", "garbage"));
    }

    #[test]
    fn salts_differ() {
        let first = hash_password("same").expect("hashing works");
        let second = hash_password("same").expect("hashing works");
        assert_ne!(first, second);
    }
}
