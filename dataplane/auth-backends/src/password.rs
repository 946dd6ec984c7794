//! Password hashes as external user stores keep them, in the formats EMQX
//! accepts, so that a table or hash written for EMQX works unchanged:
//!
//! ```toml
//! password_hash = { algorithm = "sha256", salt_position = "prefix" }
//! # algorithm: plain | md5 | sha | sha256 | sha512  (salt_position: prefix | suffix | disable)
//! #       bcrypt                               (the stored hash carries its salt and cost)
//! #       pbkdf2 (mac_fun = md4 | md5 | ripemd160 | sha | sha224 | sha256 | sha384 | sha512,
//! #               iterations = 4096, dk_length = optional, the MAC's size by default)
//! #       argon2                               (a PHC string, `$argon2id$...`)
//! ```
//!
//! EMQX's own spelling, `password_hash_algorithm = { name = "sha256", ... }`,
//! is read as well ([`from_emqx_spelling`]), so its configuration moves over.
//!
//! Digests and derived keys are stored as hexadecimal and compared without
//! regard to case, in constant time. A salt `prefix` hashes `salt ||
//! password`, a `suffix` `password || salt`.
//!
//! The store is not trusted further than it must be: a bcrypt hash whose
//! cost is above [`MAX_BCRYPT_COST`] or an argon2 hash whose parameters ask
//! for more than [`MAX_ARGON2_MEMORY_KIB`] is refused (a row written by an
//! attacker must not buy seconds of CPU per CONNECT), and so is a stored
//! value that is not well formed. Checks are CPU work: callers run them off
//! the connections' tasks.

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use hmac::digest::core_api::BlockSizeUser;
use hmac::digest::Digest;
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// The highest bcrypt cost accepted in a stored hash (2^14 rounds, about a
/// second on one core; EMQX writes 10 by default).
pub const MAX_BCRYPT_COST: u32 = 14;

/// The most memory an argon2 hash may ask for, KiB (the argon2 crate's
/// default is 19 MiB).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 64 * 1024;

/// The most PBKDF2 iterations a configuration may ask for.
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// Where the salt goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaltPosition {
    /// `salt || password`.
    Prefix,
    /// `password || salt`.
    Suffix,
    /// No salt, whatever the store holds.
    Disable,
}

/// The hash function inside PBKDF2's HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MacFun {
    Md4,
    Md5,
    Ripemd160,
    Sha,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// How stored passwords are hashed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "algorithm", rename_all = "lowercase", deny_unknown_fields)]
pub enum HashAlgorithm {
    Plain {
        #[serde(default = "disabled")]
        salt_position: SaltPosition,
    },
    Md5 {
        #[serde(default = "prefix")]
        salt_position: SaltPosition,
    },
    Sha {
        #[serde(default = "prefix")]
        salt_position: SaltPosition,
    },
    Sha256 {
        #[serde(default = "prefix")]
        salt_position: SaltPosition,
    },
    Sha512 {
        #[serde(default = "prefix")]
        salt_position: SaltPosition,
    },
    Bcrypt {},
    Pbkdf2 {
        mac_fun: MacFun,
        #[serde(default = "default_iterations")]
        iterations: u32,
        #[serde(default)]
        dk_length: Option<usize>,
    },
    Argon2 {},
}

fn disabled() -> SaltPosition {
    SaltPosition::Disable
}

fn prefix() -> SaltPosition {
    SaltPosition::Prefix
}

fn default_iterations() -> u32 {
    4096
}

/// Why a stored value could not be checked (the client is refused, and
/// the operator is told why in the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("the stored hash is not {0}")]
    Malformed(&'static str),
    #[error("the stored hash asks for more work than allowed ({0})")]
    TooCostly(String),
    #[error("{0}")]
    Settings(String),
}

impl HashAlgorithm {
    /// Refuses settings that cannot work (called when the chain is built).
    pub fn validate(&self) -> Result<(), HashError> {
        if let HashAlgorithm::Pbkdf2 { iterations, dk_length, .. } = self {
            if *iterations == 0 || *iterations > MAX_PBKDF2_ITERATIONS {
                return Err(HashError::Settings(format!(
                    "pbkdf2 iterations: expected 1 to {MAX_PBKDF2_ITERATIONS}, got {iterations}"
                )));
            }
            if dk_length.is_some_and(|length| length == 0 || length > 1024) {
                return Err(HashError::Settings("pbkdf2 dk_length: expected 1 to 1024".into()));
            }
        }
        Ok(())
    }

    /// Whether `password` matches `stored` (with `salt`, for the algorithms
    /// that take one from the store).
    pub fn verify(&self, password: &[u8], stored: &str, salt: &[u8]) -> Result<bool, HashError> {
        let stored = stored.trim();
        match self {
            HashAlgorithm::Plain { salt_position } => {
                let salted = salted(*salt_position, password, salt);
                Ok(bool::from(salted.as_slice().ct_eq(stored.as_bytes())))
            }
            HashAlgorithm::Md5 { salt_position } => {
                hex_equal(&md5::Md5::digest(salted(*salt_position, password, salt)), stored)
            }
            HashAlgorithm::Sha { salt_position } => {
                hex_equal(&sha1::Sha1::digest(salted(*salt_position, password, salt)), stored)
            }
            HashAlgorithm::Sha256 { salt_position } => {
                hex_equal(&sha2::Sha256::digest(salted(*salt_position, password, salt)), stored)
            }
            HashAlgorithm::Sha512 { salt_position } => {
                hex_equal(&sha2::Sha512::digest(salted(*salt_position, password, salt)), stored)
            }
            HashAlgorithm::Bcrypt {} => verify_bcrypt(password, stored),
            HashAlgorithm::Pbkdf2 { mac_fun, iterations, dk_length } => {
                let key = match mac_fun {
                    MacFun::Md4 => pbkdf2_hmac::<md4::Md4>(password, salt, *iterations, *dk_length),
                    MacFun::Md5 => pbkdf2_hmac::<md5::Md5>(password, salt, *iterations, *dk_length),
                    MacFun::Ripemd160 => {
                        pbkdf2_hmac::<ripemd::Ripemd160>(password, salt, *iterations, *dk_length)
                    }
                    MacFun::Sha => pbkdf2_hmac::<sha1::Sha1>(password, salt, *iterations, *dk_length),
                    MacFun::Sha224 => pbkdf2_hmac::<sha2::Sha224>(password, salt, *iterations, *dk_length),
                    MacFun::Sha256 => pbkdf2_hmac::<sha2::Sha256>(password, salt, *iterations, *dk_length),
                    MacFun::Sha384 => pbkdf2_hmac::<sha2::Sha384>(password, salt, *iterations, *dk_length),
                    MacFun::Sha512 => pbkdf2_hmac::<sha2::Sha512>(password, salt, *iterations, *dk_length),
                };
                hex_equal(&key, stored)
            }
            HashAlgorithm::Argon2 {} => verify_argon2(password, stored),
        }
    }
}

/// EMQX's spelling of the setting, `password_hash_algorithm = { name = ...
/// }`, as this broker's `password_hash = { algorithm = ... }`; the table is
/// left as it is when it uses this broker's.
pub fn from_emqx_spelling(table: &mut toml::Table) {
    if table.contains_key("password_hash") {
        return;
    }
    if let Some(toml::Value::Table(mut emqx)) = table.remove("password_hash_algorithm") {
        if let Some(name) = emqx.remove("name") {
            emqx.insert("algorithm".into(), name);
        }
        table.insert("password_hash".into(), toml::Value::Table(emqx));
    }
}

fn salted(position: SaltPosition, password: &[u8], salt: &[u8]) -> Vec<u8> {
    match position {
        SaltPosition::Prefix => [salt, password].concat(),
        SaltPosition::Suffix => [password, salt].concat(),
        SaltPosition::Disable => password.to_vec(),
    }
}

/// Compares `digest` with hexadecimal `stored`, any case, in constant time.
fn hex_equal(digest: &[u8], stored: &str) -> Result<bool, HashError> {
    let decoded = hex::decode(stored).map_err(|_| HashError::Malformed("hexadecimal"))?;
    Ok(bool::from(decoded.as_slice().ct_eq(digest)))
}

fn pbkdf2_hmac<D>(password: &[u8], salt: &[u8], iterations: u32, length: Option<usize>) -> Vec<u8>
where
    D: Digest + BlockSizeUser + Clone + Sync,
{
    let mut key = vec![0u8; length.unwrap_or(<D as Digest>::output_size())];
    pbkdf2::pbkdf2::<hmac::SimpleHmac<D>>(password, salt, iterations, &mut key)
        .expect("HMAC takes a key of any length");
    key
}

fn verify_bcrypt(password: &[u8], stored: &str) -> Result<bool, HashError> {
    // `$2b$10$` + 53 characters of salt and hash.
    let cost: u32 = stored
        .split('$')
        .nth(2)
        .and_then(|cost| cost.parse().ok())
        .ok_or(HashError::Malformed("a bcrypt hash"))?;
    if cost > MAX_BCRYPT_COST {
        return Err(HashError::TooCostly(format!("bcrypt cost {cost}, at most {MAX_BCRYPT_COST}")));
    }
    // bcrypt reads 72 bytes of the password at most, as every implementation does.
    let password = &password[..password.len().min(72)];
    bcrypt::verify(password, stored).map_err(|_| HashError::Malformed("a bcrypt hash"))
}

fn verify_argon2(password: &[u8], stored: &str) -> Result<bool, HashError> {
    let hash = PasswordHash::new(stored).map_err(|_| HashError::Malformed("an argon2 PHC string"))?;
    let params = argon2::Params::try_from(&hash).map_err(|_| HashError::Malformed("an argon2 PHC string"))?;
    if params.m_cost() > MAX_ARGON2_MEMORY_KIB || params.t_cost() > 16 || params.p_cost() > 8 {
        return Err(HashError::TooCostly(format!(
            "argon2 m={} t={} p={}, at most m={MAX_ARGON2_MEMORY_KIB} t=16 p=8",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        )));
    }
    Ok(Argon2::default().verify_password(password, &hash).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn algorithm(toml: &str) -> HashAlgorithm {
        let table: toml::Table = toml::from_str(&format!("a = {toml}")).unwrap();
        table["a"].clone().try_into().unwrap()
    }

    #[test]
    fn salted_digests_as_emqx_documents_them() {
        // From EMQX's Redis page (zh): sha256, suffix salt "slat_foo123",
        // password "public".
        let suffix = algorithm(r#"{ algorithm = "sha256", salt_position = "suffix" }"#);
        let stored = "44edc2d57cde8d79c98145003e105b90a14f1460b79186ea9cfe83942fc5abb5";
        assert_eq!(suffix.verify(b"public", stored, b"slat_foo123"), Ok(true));
        assert_eq!(suffix.verify(b"public", &stored.to_uppercase(), b"slat_foo123"), Ok(true), "any case");
        assert_eq!(suffix.verify(b"Public", stored, b"slat_foo123"), Ok(false));
        assert_eq!(suffix.verify(b"public", stored, b"slat_foo124"), Ok(false));
        // Prefix: the other order.
        let prefix = algorithm(r#"{ algorithm = "sha256", salt_position = "prefix" }"#);
        assert_eq!(prefix.verify(b"public", stored, b"slat_foo123"), Ok(false));
        let stored = hex::encode(sha2::Sha256::digest(b"slat_foo123public"));
        assert_eq!(prefix.verify(b"public", &stored, b"slat_foo123"), Ok(true));
        assert_eq!(algorithm(r#"{ algorithm = "sha256" }"#), prefix, "prefix by default");
    }

    #[test]
    fn every_digest_and_plain() {
        let cases: [(&str, String); 4] = [
            ("md5", hex::encode(md5::Md5::digest(b"pw"))),
            ("sha", hex::encode(sha1::Sha1::digest(b"pw"))),
            ("sha256", hex::encode(sha2::Sha256::digest(b"pw"))),
            ("sha512", hex::encode(sha2::Sha512::digest(b"pw"))),
        ];
        for (name, stored) in cases {
            let plain = algorithm(&format!(r#"{{ algorithm = "{name}", salt_position = "disable" }}"#));
            assert_eq!(plain.verify(b"pw", &stored, b"ignored"), Ok(true), "{name}");
            assert_eq!(plain.verify(b"pw2", &stored, b""), Ok(false), "{name}");
        }
        assert_eq!(hex::encode(md5::Md5::digest(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        let plain = algorithm(r#"{ algorithm = "plain" }"#);
        assert_eq!(plain.verify(b"pw", "pw", b"salt"), Ok(true), "plain takes no salt by default");
        assert_eq!(plain.verify(b"pw", "pw2", b""), Ok(false));
        assert!(matches!(
            algorithm(r#"{ algorithm = "md5" }"#).verify(b"pw", "zz", b""),
            Err(HashError::Malformed(_))
        ));
    }

    #[test]
    fn pbkdf2_matches_rfc_6070() {
        // RFC 6070, test 2: "password" / "salt", 2 iterations, HMAC-SHA1, 20 bytes.
        let pbkdf2 = algorithm(r#"{ algorithm = "pbkdf2", mac_fun = "sha", iterations = 2 }"#);
        let stored = "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957";
        assert_eq!(pbkdf2.verify(b"password", stored, b"salt"), Ok(true));
        assert_eq!(pbkdf2.verify(b"passwore", stored, b"salt"), Ok(false));
        let long =
            algorithm(r#"{ algorithm = "pbkdf2", mac_fun = "sha256", iterations = 10, dk_length = 48 }"#);
        let mut key = [0u8; 48];
        pbkdf2::pbkdf2::<hmac::SimpleHmac<sha2::Sha256>>(b"pw", b"s", 10, &mut key).unwrap();
        assert_eq!(long.verify(b"pw", &hex::encode(key), b"s"), Ok(true));
        for bad in [
            r#"{ algorithm = "pbkdf2", mac_fun = "sha", iterations = 0 }"#,
            r#"{ algorithm = "pbkdf2", mac_fun = "sha", iterations = 100000000 }"#,
            r#"{ algorithm = "pbkdf2", mac_fun = "sha", dk_length = 0 }"#,
        ] {
            assert!(algorithm(bad).validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn bcrypt_and_argon2_carry_their_salt_and_are_bounded() {
        let bcrypt = algorithm(r#"{ algorithm = "bcrypt" }"#);
        let stored = bcrypt::hash("pw", 4).unwrap();
        assert_eq!(bcrypt.verify(b"pw", &stored, b""), Ok(true));
        assert_eq!(bcrypt.verify(b"px", &stored, b""), Ok(false));
        let costly = stored.replacen("$04$", "$31$", 1);
        assert!(matches!(bcrypt.verify(b"pw", &costly, b""), Err(HashError::TooCostly(_))));
        assert!(matches!(bcrypt.verify(b"pw", "$2b$xx", b""), Err(HashError::Malformed(_))));
        // 72 bytes are read; a longer password neither fails nor panics.
        let long = vec![b'a'; 100];
        let stored = bcrypt::hash(&long[..72], 4).unwrap();
        assert_eq!(bcrypt.verify(&long, &stored, b""), Ok(true));

        use argon2::password_hash::{PasswordHasher, SaltString};
        let argon = algorithm(r#"{ algorithm = "argon2" }"#);
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        let params = argon2::Params::new(1024, 1, 1, None).unwrap();
        let hasher = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let stored = hasher.hash_password(b"pw", &salt).unwrap().to_string();
        assert_eq!(argon.verify(b"pw", &stored, b""), Ok(true));
        assert_eq!(argon.verify(b"px", &stored, b""), Ok(false));
        let greedy = stored.replace("m=1024", "m=4000000");
        assert!(matches!(argon.verify(b"pw", &greedy, b""), Err(HashError::TooCostly(_))));
    }

    #[test]
    fn emqx_spelling_is_read() {
        let mut table: toml::Table =
            toml::from_str(r#"password_hash_algorithm = { name = "sha512", salt_position = "suffix" }"#)
                .unwrap();
        from_emqx_spelling(&mut table);
        let algorithm: HashAlgorithm = table["password_hash"].clone().try_into().unwrap();
        assert_eq!(algorithm, HashAlgorithm::Sha512 { salt_position: SaltPosition::Suffix });
        assert!(!table.contains_key("password_hash_algorithm"));
    }

    #[test]
    fn unknown_names_and_fields_are_refused() {
        for bad in [
            r#"{ algorithm = "rot13" }"#,
            r#"{ algorithm = "md5", salt_position = "middle" }"#,
            r#"{ algorithm = "bcrypt", rounds = 3 }"#,
        ] {
            let table: toml::Table = toml::from_str(&format!("a = {bad}")).unwrap();
            assert!(table["a"].clone().try_into::<HashAlgorithm>().is_err(), "{bad}");
        }
    }
}
