//! What the external authenticators share: placeholders in their
//! templates (`${username}`, `${password}`, `${clientid}`, `${peerhost}`,
//! `${cert_common_name}`), expanded in one pass, each value as one value
//! (never re-read as a template), the policy when a backend fails, and the
//! defaults of the settings every one of them has (`timeout_ms`,
//! `pool_size`, `queue`, `cache_entries`, `cache_ttl_s`).

use dataplane::hooks::ConnectRequest;
use serde::Deserialize;

/// Every placeholder, in the order of [`request_values`].
pub(crate) const PLACEHOLDERS: [&str; 5] =
    ["${username}", "${password}", "${clientid}", "${peerhost}", "${cert_common_name}"];

/// What a backend that fails (cannot be reached, does not answer in time,
/// answers what is not understood) makes of the CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnError {
    /// Refuse, with 0x88 (server unavailable; 3.1.1: return code 3).
    Deny,
    /// Ask the next authenticator.
    Ignore,
}

pub(crate) fn default_timeout_ms() -> u64 {
    5000
}
pub(crate) fn default_pool_size() -> usize {
    8
}
pub(crate) fn default_queue() -> usize {
    64
}
pub(crate) fn default_cache_entries() -> usize {
    10_000
}
pub(crate) fn default_cache_ttl_s() -> u64 {
    60
}

/// Placeholders an authorizer's query may hold: what a connected client's
/// identity says (no password; no certificate).
pub(crate) const ACL_PLACEHOLDERS: [&str; 3] = ["${username}", "${clientid}", "${peerhost}"];

/// The placeholders' values for a connected client, in [`PLACEHOLDERS`]'
/// order (the password and certificate name empty).
pub(crate) fn identity_values(who: &dataplane::cluster::access::Identity) -> [String; 5] {
    [
        who.username.as_deref().unwrap_or("").to_owned(),
        String::new(),
        who.client_id.to_string(),
        who.address.to_string(),
        String::new(),
    ]
}

/// Which settings an entry shares with the others of its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chain {
    /// `timeout_ms`, `pool_size`, `queue`, `on_error` (default `deny`),
    /// `cache_entries`, `cache_ttl_s`.
    Authenticator,
    /// `timeout_ms`, `pool_size`, `queue`, `on_error` (default `ignore`),
    /// `refresh_s`.
    Authorizer,
}

/// The settings every external backend has, read apart from the rest of
/// its entry (serde's `flatten` does not mix with `deny_unknown_fields`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Limits {
    pub timeout_ms: u64,
    pub pool_size: usize,
    pub queue: usize,
    pub on_error: OnError,
    pub cache_entries: usize,
    pub cache_ttl_s: u64,
    pub refresh_s: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsEntry {
    timeout_ms: Option<u64>,
    pool_size: Option<usize>,
    queue: Option<usize>,
    on_error: Option<OnError>,
    cache_entries: Option<usize>,
    cache_ttl_s: Option<u64>,
    refresh_s: Option<u64>,
}

/// Takes the shared settings of `chain` out of `table` (what is left is the
/// backend's own) and reads them, defaults filled in. A key of the other
/// chain's stays in `table`, where the backend refuses it as unknown.
pub(crate) fn take_limits(
    table: &mut toml::Table,
    chain: Chain,
) -> Result<Limits, crate::http::SettingsError> {
    let keys: &[&str] = match chain {
        Chain::Authenticator => {
            &["timeout_ms", "pool_size", "queue", "on_error", "cache_entries", "cache_ttl_s"]
        }
        Chain::Authorizer => &["timeout_ms", "pool_size", "queue", "on_error", "refresh_s"],
    };
    let mut taken = toml::Table::new();
    for key in keys {
        if let Some(value) = table.remove(*key) {
            taken.insert((*key).to_owned(), value);
        }
    }
    let entry: LimitsEntry = toml::Value::Table(taken).try_into().map_err(|error: toml::de::Error| {
        crate::http::SettingsError::Parse(error.to_string().trim().to_owned())
    })?;
    let limits = Limits {
        timeout_ms: entry.timeout_ms.unwrap_or_else(default_timeout_ms),
        pool_size: entry.pool_size.unwrap_or_else(default_pool_size),
        queue: entry.queue.unwrap_or_else(default_queue),
        on_error: entry.on_error.unwrap_or(match chain {
            Chain::Authenticator => OnError::Deny,
            Chain::Authorizer => OnError::Ignore,
        }),
        cache_entries: entry.cache_entries.unwrap_or_else(default_cache_entries),
        cache_ttl_s: entry.cache_ttl_s.unwrap_or_else(default_cache_ttl_s),
        refresh_s: entry.refresh_s.unwrap_or(60),
    };
    if limits.timeout_ms == 0 || limits.pool_size == 0 || limits.refresh_s == 0 {
        return Err(crate::http::SettingsError::Invalid {
            key: "timeout_ms, pool_size, refresh_s",
            reason: "must be at least 1".into(),
        });
    }
    Ok(limits)
}

/// The placeholders' values for `request`, in [`PLACEHOLDERS`]' order.
pub(crate) fn request_values(request: &ConnectRequest<'_>) -> [String; 5] {
    let password = request.password.map(String::from_utf8_lossy).unwrap_or_default().into_owned();
    let common_name = request
        .certificate
        .and_then(|der| dataplane::auth::x509::name_in(der, dataplane::config::CertName::Cn))
        .unwrap_or_default();
    [
        request.username.unwrap_or("").to_owned(),
        password,
        request.client_id.to_owned(),
        request.address.to_string(),
        common_name,
    ]
}

/// The template with each placeholder replaced by its value, in one pass:
/// a value that holds a placeholder's text is not expanded again.
/// (Templates were checked by [`check_template`].)
pub(crate) fn expand(template: &str, values: &[String; 5]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let Some(end) = tail.find('}') else {
            rest = tail;
            break;
        };
        match PLACEHOLDERS.iter().position(|placeholder| *placeholder == &tail[..=end]) {
            Some(index) => out.push_str(&values[index]),
            None => out.push_str(&tail[..=end]),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A template may hold only the `allowed` placeholders.
pub(crate) fn check_template(template: &str, allowed: &[&str]) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let tail = &rest[start..];
        let end = tail.find('}').ok_or_else(|| format!("unclosed placeholder in {template:?}"))?;
        let placeholder = &tail[..=end];
        if !allowed.contains(&placeholder) {
            return Err(format!(
                "placeholder {placeholder} not allowed here (allowed: {})",
                allowed.join(", ")
            ));
        }
        rest = &tail[end + 1..];
    }
    Ok(())
}
