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

pub(crate) fn default_on_error() -> OnError {
    OnError::Deny
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

pub(crate) fn default_refresh_s() -> u64 {
    60
}

/// An authorizer that fails leaves the check to the next one unless told.
pub(crate) fn default_acl_on_error() -> OnError {
    OnError::Ignore
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
