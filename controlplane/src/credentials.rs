//! Secrets on disk and their hashes: the node's own admin token
//! (`node.data_dir/admin.token`), new random tokens, and the SHA-256 hash
//! under which API tokens are kept in the replicated state.
//!
//! Invariants: the data directory is mode 0700 and the token file 0600,
//! created with those modes (never widened later); an existing token file
//! is reused, so a restart keeps the credential operators already hold. A
//! secret is never logged.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

/// The node's admin token, in `node.data_dir`.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Why the node's credentials could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot create or restrict the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot create the admin token file {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot use the admin token file {path}: {source}")]
    Read { path: PathBuf, source: proto::auth::TokenFileError },
}

/// A new random token: 32 bytes from the OS, as 64 lowercase hex digits.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

/// The SHA-256 of a token, as 64 lowercase hex digits: what the state keeps.
pub fn hash_token(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}

/// Creates `dir` (and its parents) with mode 0700 if it does not exist.
/// A directory that already exists keeps its mode (it may be shared, like
/// `/tmp`); a warning says so when others can enter it.
pub fn ensure_private_dir(dir: &Path) -> Result<(), CredentialError> {
    let error = |source| CredentialError::DataDir { path: dir.to_owned(), source };
    match std::fs::metadata(dir) {
        Ok(metadata) => {
            if metadata.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %dir.display(),
                    "the data directory is open to other users; `chmod 700` it (the token file itself is 0600)"
                );
            }
            Ok(())
        }
        Err(_) => DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(error),
    }
}

/// The admin token in `dir/admin.token`: read when the file exists, else a
/// new random one written there with mode 0600.
pub fn load_or_create_admin_token(dir: &Path) -> Result<String, CredentialError> {
    let path = dir.join(ADMIN_TOKEN_FILE);
    let token = generate_token();
    let created = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
    match created {
        Ok(mut file) => {
            let written = file.write_all(format!("{token}\n").as_bytes()).and_then(|()| file.sync_all());
            if let Err(source) = written {
                // Leave no half-written file to be read as a token later.
                let _ = std::fs::remove_file(&path);
                return Err(CredentialError::Create { path, source });
            }
            tracing::info!(path = %path.display(), "created the admin token file (mode 0600)");
            Ok(token)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            proto::auth::read_token_file(&path).map_err(|source| CredentialError::Read { path, source })
        }
        Err(source) => Err(CredentialError::Create { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_hashes_are_sha256() {
        let (one, two) = (generate_token(), generate_token());
        assert_eq!(one.len(), 64);
        assert_ne!(one, two);
        assert!(crate::state::validate::token_hash(&hash_token(&one)).is_ok());
        assert_eq!(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn the_admin_token_file_is_private_and_reused() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("data");
        ensure_private_dir(&dir).expect("dir");
        let token = load_or_create_admin_token(&dir).expect("created");
        let mode = |path: &Path| std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(ADMIN_TOKEN_FILE)), 0o600);
        assert_eq!(load_or_create_admin_token(&dir).expect("reused"), token);
        std::fs::write(dir.join(ADMIN_TOKEN_FILE), "").expect("emptied");
        assert!(load_or_create_admin_token(&dir).is_err(), "an empty file is an error, not replaced");
    }
}
