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
