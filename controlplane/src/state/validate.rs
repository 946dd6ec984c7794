//! Checks on values that enter the state: usernames, topic filters, IP
//! networks, password hashes, names.
//!
//! Each check returns the [`CommandError`] to answer; none panics on any
//! input. Normalising functions return the canonical form that is stored.

use std::net::IpAddr;

use argon2::password_hash::PasswordHash;
use ipnet::IpNet;

use super::command::CommandError;

/// The longest string MQTT can carry (a two-byte length prefix).
pub const MAX_STRING_LEN: usize = 65_535;

/// A username: non-empty, at most 65,535 bytes, no NUL (as MQTT allows).
pub fn username(name: &str) -> Result<(), CommandError> {
    mqtt_string(name).map_err(|reason| CommandError::InvalidUsername(reason.to_owned()))
}

/// A non-empty MQTT-compatible string naming something (`what` for errors).
pub fn name(what: &str, value: &str) -> Result<(), CommandError> {
    mqtt_string(value)
        .map_err(|reason| CommandError::InvalidValue { what: what.to_owned(), reason: reason.to_owned() })
}

fn mqtt_string(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        Err("empty")
    } else if value.len() > MAX_STRING_LEN {
        Err("longer than 65535 bytes")
    } else if value.contains('\0') {
        Err("contains U+0000")
    } else {
        Ok(())
    }
}

/// An API token's hash: 64 lowercase hex digits (SHA-256).
pub fn token_hash(hash: &str) -> Result<(), CommandError> {
    if hash.len() == 64 && hash.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(CommandError::InvalidValue {
            what: "token hash".to_owned(),
            reason: "expected 64 lowercase hex digits (SHA-256)".to_owned(),
        })
    }
}

/// The cluster's peer secret: 64 lowercase hex digits (32 random bytes).
/// The error never repeats the value.
pub fn peer_secret(secret: &str) -> Result<(), CommandError> {
    if secret.len() == 64 && secret.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(CommandError::InvalidValue {
            what: "peer secret".to_owned(),
            reason: "expected 64 lowercase hex digits (32 random bytes)".to_owned(),
        })
    }
}

/// A topic filter per MQTT: non-empty, `#` only as the whole last level,
/// `+` only as a whole level. `%u` and `%c` placeholders are plain text here.
pub fn topic_filter(filter: &str) -> Result<(), CommandError> {
    let invalid = |reason: &str| CommandError::InvalidTopicFilter {
        filter: filter.chars().take(256).collect(),
        reason: reason.to_owned(),
    };
    mqtt_string(filter).map_err(invalid)?;
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    for (position, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || position != last) {
            return Err(invalid("`#` must be a whole level and the last one"));
        }
        if level.contains('+') && *level != "+" {
            return Err(invalid("`+` must be a whole level"));
        }
    }
    Ok(())
}

/// An IP address or CIDR network, returned in canonical CIDR form (an
/// address becomes `/32` or `/128`; host bits are cleared).
pub fn ip_network(value: &str) -> Result<String, CommandError> {
    let trimmed = value.trim();
    if let Ok(network) = trimmed.parse::<IpNet>() {
        return Ok(network.trunc().to_string());
    }
    if let Ok(address) = trimmed.parse::<IpAddr>() {
        return Ok(IpNet::from(address).to_string());
    }
    Err(CommandError::InvalidIpNetwork(value.chars().take(256).collect()))
}

/// A PHC string for argon2id. Only hashes go into the log, never passwords,
/// and a hash the data plane could not verify is refused here.
pub fn password_hash(phc: &str) -> Result<(), CommandError> {
    let parsed = PasswordHash::new(phc)
        .map_err(|error| CommandError::InvalidPasswordHash(format!("not a PHC string: {error}")))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(CommandError::InvalidPasswordHash(format!(
            "algorithm {} is not argon2id",
            parsed.algorithm
        )));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(CommandError::InvalidPasswordHash("salt or hash missing".to_owned()));
    }
    // Every login runs this hash: a huge cost would let one imported hash
    // tie up the data plane's password-check threads (and their memory).
    let params = argon2::Params::try_from(&parsed)
        .map_err(|error| CommandError::InvalidPasswordHash(format!("bad argon2 parameters: {error}")))?;
    if params.m_cost() > MAX_HASH_MEMORY_KIB
        || params.t_cost() > MAX_HASH_PASSES
        || params.p_cost() > MAX_HASH_LANES
    {
        return Err(CommandError::InvalidPasswordHash(format!(
            "cost out of bounds (m={} KiB, t={}, p={}); at most m={MAX_HASH_MEMORY_KIB}, t={MAX_HASH_PASSES}, \
             p={MAX_HASH_LANES}",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        )));
    }
    Ok(())
}

/// A SCRAM-SHA-256 verifier as `password::scram_verifier` writes it:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, the keys 32
/// bytes, the iterations 4096 to [`MAX_SCRAM_ITERATIONS`] (every exchange
/// costs the client, not the broker, this many; a sane bound all the same).
pub fn scram_verifier(text: &str) -> Result<(), CommandError> {
    use base64::Engine;
    let bad = |why: &str| Err(CommandError::InvalidPasswordHash(format!("SCRAM verifier: {why}")));
    let decode = |part: &str| base64::engine::general_purpose::STANDARD.decode(part).ok();
    let Some(rest) = text.strip_prefix("SCRAM-SHA-256$") else { return bad("not SCRAM-SHA-256") };
    let Some((params, keys)) = rest.split_once('$') else { return bad("no keys") };
    let Some((iterations, salt)) = params.split_once(':') else { return bad("no salt") };
    let Some((stored, server)) = keys.split_once(':') else { return bad("one key") };
    match iterations.parse::<u32>() {
        Ok(n) if (4096..=MAX_SCRAM_ITERATIONS).contains(&n) => {}
        _ => return bad("iterations out of bounds"),
    }
    if decode(salt).is_none_or(|salt| salt.is_empty() || salt.len() > 64) {
        return bad("bad salt");
    }
    if decode(stored).is_none_or(|key| key.len() != 32) || decode(server).is_none_or(|key| key.len() != 32) {
        return bad("bad keys");
    }
    Ok(())
}

/// Most PBKDF2 iterations of a SCRAM verifier.
pub const MAX_SCRAM_ITERATIONS: u32 = 1_000_000;

/// Largest argon2 memory cost of a stored hash, in KiB (64 MiB); the data
/// plane refuses to run anything above the same bounds.
pub const MAX_HASH_MEMORY_KIB: u32 = 64 * 1024;
/// Most argon2 passes of a stored hash.
pub const MAX_HASH_PASSES: u32 = 8;
/// Most argon2 lanes of a stored hash.
pub const MAX_HASH_LANES: u32 = 8;

/// A JSON document (bridge or plugin configuration).
pub fn json_document(name: &str, json: &str) -> Result<(), CommandError> {
    serde_json::from_str::<serde_json::Value>(json)
        .map(|_| ())
        .map_err(|error| CommandError::InvalidJson { name: name.to_owned(), reason: error.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_filters() {
        for good in ["a", "a/b", "+", "#", "a/+/c", "a/#", "/", "users/%u/#", "$SYS/#", "+/+"] {
            assert!(topic_filter(good).is_ok(), "{good}");
        }
        for bad in ["", "a#", "a/#/b", "a+/b", "#/a", "a/b+", "x\0y"] {
            assert!(topic_filter(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ip_networks_are_canonical() {
        assert_eq!(ip_network("10.1.2.3").ok().as_deref(), Some("10.1.2.3/32"));
        assert_eq!(ip_network("10.1.2.3/8").ok().as_deref(), Some("10.0.0.0/8"));
        assert_eq!(ip_network("::1").ok().as_deref(), Some("::1/128"));
        assert!(matches!(ip_network("10.0.0.0/33"), Err(CommandError::InvalidIpNetwork(_))));
        assert!(matches!(ip_network("not an ip"), Err(CommandError::InvalidIpNetwork(_))));
    }

    #[test]
    fn usernames() {
        assert!(username("alice").is_ok());
        assert!(username("").is_err());
        assert!(username("a\0b").is_err());
        assert!(username(&"x".repeat(MAX_STRING_LEN + 1)).is_err());
    }

    #[test]
    fn password_hashes() {
        assert!(password_hash("plaintext").is_err());
        assert!(password_hash("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$Ww9E4S+9ZK0iDFzU6LnNDw").is_err());
        let absurd = "$argon2id$v=19$m=4194304,t=100,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(password_hash(absurd).unwrap_err().to_string().contains("out of bounds"));
        let sane = "$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(password_hash(sane).is_ok());
    }
}
