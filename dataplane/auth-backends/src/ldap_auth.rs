//! `type = "ldap"`: users in a directory (OpenLDAP, Active Directory), the
//! password checked by binding as the user, as EMQX's LDAP authenticator
//! does with `method = bind`.
//!
//! ```toml
//! [[auth.authenticators]]
//! type = "ldap"
//! server = "127.0.0.1:389"
//! tls = "none"                    # or "ldaps", or "starttls"
//! ca_file = "/etc/ssl/ldap-ca.pem" # with TLS; default: the system's roots
//! # Either bind straight away as the user's DN...
//! bind_dn = "uid=${username},ou=people,dc=example,dc=org"
//! # ...or find the user first (as a service account, or anonymously),
//! # then bind as the entry found:
//! # base_dn = "ou=people,dc=example,dc=org"
//! # filter = "(&(objectClass=inetOrgPerson)(uid=${username}))"
//! # username = "cn=mqtt,dc=example,dc=org"
//! # password = "..."
//! is_superuser_attribute = "isSuperuser"   # optional: TRUE or 1 makes a superuser
//! superuser_group = "cn=mqtt-admins,ou=groups,dc=example,dc=org"  # optional
//! timeout_ms = 5000
//! pool_size = 8                   # directory connections at once
//! queue = 64                      # checks that may wait for one of them
//! on_error = "deny"               # or "ignore": ask the next authenticator
//! cache_entries = 10000
//! cache_ttl_s = 60
//! ```
//!
//! Templates may hold `${username}`, `${clientid}`, `${peerhost}` and
//! `${cert_common_name}`, never `${password}`.
//!
//! Outcomes: a client that sent no password: ignore. With `filter`, no
//! entry found: ignore (the next authenticator decides); with `bind_dn` an
//! unknown user cannot be told from a wrong password (directories answer
//! both with invalidCredentials): deny. The bind succeeds: allow, as a
//! superuser when the entry's `is_superuser_attribute` is TRUE or the entry
//! is a `member` (or `uniqueMember`) of `superuser_group`. It fails with
//! invalidCredentials, or the password is empty: deny. The directory
//! unreachable, slow past `timeout_ms`, the service account refused, a
//! filter that matches more than one entry, any other result code:
//! `on_error`.
//!
//! Invariants:
//! - **Values are escaped, never pasted**: a value goes into a DN escaped
//!   as RFC 4514 says and into a filter as RFC 4515 says, so a username of
//!   `*` or `x)(uid=*` is matched as those characters.
//! - **An empty password never binds**: LDAP reads a simple bind with an
//!   empty password as an anonymous bind, which succeeds; it is refused
//!   before the directory is asked.
//! - **Nothing runs on the connection's task**: each check is a task of its
//!   own on a directory connection of its own (a bind changes who the
//!   connection is), at most `pool_size` at once and `queue` more waiting,
//!   within `timeout_ms` in all; the connection is closed when it ends.
//! - **No password is kept or logged**: the cache holds a keyed MAC of the
//!   password with the outcome (`cache.rs`); failures are logged by result
//!   code, without the server's text.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dataplane::cluster::access::Grant;
use dataplane::hooks::{Authenticator, ConnectRequest, HookFuture, Verdict};
use ldap3::{dn_escape, ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::http::SettingsError;
use crate::stored::{self, Outcome, Store, StoreSettings};
use crate::template::{check_template, expand, request_values, Chain, Limits};

/// Placeholders a DN or a filter may hold.
const PLACEHOLDERS: [&str; 4] = ["${username}", "${clientid}", "${peerhost}", "${cert_common_name}"];

/// LDAP result codes the authenticator tells apart.
const SUCCESS: u32 = 0;
const SIZE_LIMIT_EXCEEDED: u32 = 4;
const NO_SUCH_OBJECT: u32 = 32;
const INVALID_CREDENTIALS: u32 = 49;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Tls {
    None,
    Ldaps,
    Starttls,
}

/// The settings of one `type = "ldap"` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    server: String,
    #[serde(default = "no_tls")]
    tls: Tls,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    bind_dn: Option<String>,
    #[serde(default)]
    base_dn: Option<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    is_superuser_attribute: Option<String>,
    #[serde(default)]
    superuser_group: Option<String>,
}

fn no_tls() -> Tls {
    Tls::None
}

/// How the user's entry is found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Find {
    /// Its DN from a template: bind as it.
    Bind { dn: String },
    /// A search under `base` (as the service account, if any), then a
    /// bind as the entry found.
    Search { base: String, filter: String, service: Option<(String, String)> },
}

/// What a check needs, shared by all of them.
struct Directory {
    url: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    starttls: bool,
    connect_timeout: Duration,
    superuser_attribute: Option<String>,
    superuser_group: Option<String>,
}

/// The `ldap` authenticator.
pub struct LdapAuthenticator {
    directory: Arc<Directory>,
    find: Find,
    /// `pool_size` permits: directory connections open.
    pool: Arc<Semaphore>,
    store: Store,
}

impl std::fmt::Debug for LdapAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapAuthenticator")
            .field("url", &self.directory.url)
            .field("starttls", &self.directory.starttls)
            .finish_non_exhaustive()
    }
}

impl LdapAuthenticator {
    /// Reads one `[[auth.authenticators]]` entry (its `type` taken out).
    pub fn from_table(table: &toml::Table) -> Result<LdapAuthenticator, SettingsError> {
        let (settings, limits): (Settings, Limits) = stored::parse_settings(table, Chain::Authenticator)?;
        LdapAuthenticator::new(settings, limits)
    }

    fn new(settings: Settings, limits: Limits) -> Result<LdapAuthenticator, SettingsError> {
        let invalid = |key, reason: String| SettingsError::Invalid { key, reason };
        if limits.timeout_ms == 0 || limits.pool_size == 0 {
            return Err(invalid("timeout_ms, pool_size", "must be at least 1".into()));
        }
        let find = match (settings.bind_dn, settings.base_dn, settings.filter) {
            (Some(dn), None, None) => {
                check_template(&dn, &PLACEHOLDERS).map_err(|reason| invalid("bind_dn", reason))?;
                if settings.username.is_some() || settings.password.is_some() {
                    return Err(invalid(
                        "username",
                        "a service account is for base_dn and filter, not bind_dn".into(),
                    ));
                }
                Find::Bind { dn }
            }
            (None, Some(base), Some(filter)) => {
                check_template(&base, &PLACEHOLDERS).map_err(|reason| invalid("base_dn", reason))?;
                check_template(&filter, &PLACEHOLDERS).map_err(|reason| invalid("filter", reason))?;
                let service = match (settings.username, settings.password) {
                    (Some(username), Some(password)) => Some((username, password)),
                    (None, None) => None,
                    _ => return Err(invalid("username", "the service account needs a password too".into())),
                };
                Find::Search { base, filter, service }
            }
            _ => {
                return Err(invalid(
                    "bind_dn",
                    "set either bind_dn, or base_dn and filter (to search, then bind)".into(),
                ))
            }
        };
        if let Some(group) = &settings.superuser_group {
            if group.contains("${") {
                return Err(invalid("superuser_group", "takes no placeholders".into()));
            }
        }
        let (host, port) =
            stored::host_port(&settings.server, if settings.tls == Tls::Ldaps { 636 } else { 389 })?;
        let scheme = if settings.tls == Tls::Ldaps { "ldaps" } else { "ldap" };
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        let tls = match settings.tls {
            Tls::None => {
                if settings.ca_file.is_some() {
                    return Err(invalid("ca_file", "is for tls = \"ldaps\" or \"starttls\"".into()));
                }
                None
            }
            Tls::Ldaps | Tls::Starttls => Some(Arc::new(
                client_config(settings.ca_file.as_deref()).map_err(|reason| invalid("ca_file", reason))?,
            )),
        };
        Ok(LdapAuthenticator {
            directory: Arc::new(Directory {
                url: format!("{scheme}://{host}:{port}"),
                tls,
                starttls: settings.tls == Tls::Starttls,
                connect_timeout: Duration::from_millis(limits.timeout_ms),
                superuser_attribute: settings.is_superuser_attribute,
                superuser_group: settings.superuser_group,
            }),
            find,
            pool: Arc::new(Semaphore::new(limits.pool_size)),
            store: Store::new(StoreSettings {
                algorithm: None,
                timeout_ms: limits.timeout_ms,
                pool_size: limits.pool_size,
                queue: limits.queue,
                on_error: limits.on_error,
                cache_entries: limits.cache_entries,
                cache_ttl_s: limits.cache_ttl_s,
                name: format!("ldap {}", settings.server),
            }),
        })
    }

    async fn verdict(&self, request: ConnectRequest<'_>) -> Verdict<Grant> {
        let Some(password) = request.password else { return Verdict::Ignore };
        let values = request_values(&request);
        let find = match &self.find {
            Find::Bind { dn } => Find::Bind { dn: expand(dn, &values.clone().map(escape_dn)) },
            Find::Search { base, filter, service } => Find::Search {
                base: expand(base, &values.clone().map(escape_dn)),
                filter: expand(filter, &values.map(escape_filter)),
                service: service.clone(),
            },
        };
        let key = match &find {
            Find::Bind { dn } => vec![dn.as_bytes()],
            Find::Search { base, filter, .. } => vec![base.as_bytes(), filter.as_bytes()],
        };
        let key: Vec<Vec<u8>> = key.into_iter().map(<[u8]>::to_vec).collect();
        let key: Vec<&[u8]> = key.iter().map(Vec::as_slice).collect();
        // An LDAP password is text; one that is not cannot match.
        let Ok(secret) = std::str::from_utf8(password) else {
            return self.store.decide_by(request.username, &key, password, async { Ok(Outcome::Deny) }).await;
        };
        let check = check(self.directory.clone(), self.pool.clone(), find, secret.to_owned());
        self.store.decide_by(request.username, &key, password, check).await
    }
}

impl Authenticator for LdapAuthenticator {
    fn authenticate<'a>(&'a self, request: ConnectRequest<'a>) -> HookFuture<'a, Verdict<Grant>> {
        Box::pin(self.verdict(request))
    }
}

fn escape_dn(value: String) -> String {
    dn_escape(value.as_str()).into_owned()
}

fn escape_filter(value: String) -> String {
    ldap_escape(value.as_str()).into_owned()
}

/// The TLS client settings: trust the CA in `ca_file`, or the system's.
fn client_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certificates| certificates.collect())
                .map_err(|error| format!("{}: {error}", path.display()))?;
            if certificates.is_empty() {
                return Err(format!("{}: no certificate in it", path.display()));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|error| format!("{}: {error}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("no ca_file, and the system has no CA certificates".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Aborts the connection's driver when the check ends (or is abandoned at
/// the timeout).
struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One check, on a directory connection of its own.
async fn check(
    directory: Arc<Directory>,
    pool: Arc<Semaphore>,
    find: Find,
    password: String,
) -> Result<Outcome, String> {
    if password.is_empty() {
        return Ok(Outcome::Deny);
    }
    let _permit = pool.acquire_owned().await.map_err(|_| "the LDAP pool is closed".to_owned())?;
    let mut settings =
        LdapConnSettings::new().set_conn_timeout(directory.connect_timeout).set_starttls(directory.starttls);
    if let Some(tls) = &directory.tls {
        settings = settings.set_config(tls.clone());
    }
    let (connection, mut ldap) =
        LdapConnAsync::with_settings(settings, &directory.url).await.map_err(|error| describe(&error))?;
    let _driver = Driver(tokio::spawn(async move {
        let _ = connection.drive().await;
    }));
    let outcome = match find {
        Find::Bind { dn } => match bind(&mut ldap, &dn, &password).await? {
            false => Outcome::Deny,
            true => Outcome::Allow { superuser: superuser(&directory, &mut ldap, &dn, None).await? },
        },
        Find::Search { base, filter, service } => {
            if let Some((username, service_password)) = &service {
                if !bind(&mut ldap, username, service_password).await? {
                    return Err("the service account's bind was refused".into());
                }
            }
            let attributes: Vec<&str> = directory.superuser_attribute.iter().map(String::as_str).collect();
            let attributes = if attributes.is_empty() { vec!["1.1"] } else { attributes };
            let result = ldap
                .with_search_options(ldap3::SearchOptions::new().sizelimit(2))
                .search(&base, Scope::Subtree, &filter, attributes)
                .await
                .map_err(|error| describe(&error))?;
            let (entries, done) = (result.0, result.1);
            if done.rc == SIZE_LIMIT_EXCEEDED || entries.len() > 1 {
                return Err("the filter matched more than one entry".into());
            }
            if done.rc == NO_SUCH_OBJECT {
                return Ok(Outcome::Ignore);
            }
            if done.rc != SUCCESS {
                return Err(format!("search: result code {}", done.rc));
            }
            let Some(entry) = entries.into_iter().next() else { return Ok(Outcome::Ignore) };
            let entry = SearchEntry::construct(entry);
            // Superuser first, while bound as the service account (which
            // may read what the user cannot).
            let superuser = superuser(&directory, &mut ldap, &entry.dn, Some(&entry)).await?;
            match bind(&mut ldap, &entry.dn, &password).await? {
                false => Outcome::Deny,
                true => Outcome::Allow { superuser },
            }
        }
    };
    let _ = ldap.unbind().await;
    Ok(outcome)
}

/// A simple bind: `Ok(false)` for invalid credentials.
async fn bind(ldap: &mut Ldap, dn: &str, password: &str) -> Result<bool, String> {
    let result = ldap.simple_bind(dn, password).await.map_err(|error| describe(&error))?;
    match result.rc {
        SUCCESS => Ok(true),
        INVALID_CREDENTIALS => Ok(false),
        rc => Err(format!("bind: result code {rc}")),
    }
}

/// Whether the entry at `dn` is a superuser: its attribute (read from
/// `entry` when the search brought it), or its membership of the group.
async fn superuser(
    directory: &Directory,
    ldap: &mut Ldap,
    dn: &str,
    entry: Option<&SearchEntry>,
) -> Result<bool, String> {
    if let Some(attribute) = &directory.superuser_attribute {
        let values = match entry {
            Some(entry) => attribute_values(entry, attribute),
            None => {
                let result = ldap
                    .search(dn, Scope::Base, "(objectClass=*)", vec![attribute.as_str()])
                    .await
                    .map_err(|error| describe(&error))?;
                if result.1.rc != SUCCESS {
                    return Err(format!("reading the entry: result code {}", result.1.rc));
                }
                result
                    .0
                    .into_iter()
                    .next()
                    .map(SearchEntry::construct)
                    .map_or_else(Vec::new, |entry| attribute_values(&entry, attribute))
            }
        };
        if values.iter().any(|value| stored::flag(value.as_bytes())) {
            return Ok(true);
        }
    }
    if let Some(group) = &directory.superuser_group {
        let dn = ldap_escape(dn);
        let filter = format!("(|(member={dn})(uniqueMember={dn}))");
        let result =
            ldap.search(group, Scope::Base, &filter, vec!["1.1"]).await.map_err(|error| describe(&error))?;
        return match result.1.rc {
            SUCCESS => Ok(!result.0.is_empty()),
            NO_SUCH_OBJECT => {
                tracing::warn!(group = %group, "the superuser group does not exist");
                Ok(false)
            }
            rc => Err(format!("reading the superuser group: result code {rc}")),
        };
    }
    Ok(false)
}

/// An attribute's values, its name matched without regard to case (as
/// LDAP names are).
fn attribute_values(entry: &SearchEntry, attribute: &str) -> Vec<String> {
    entry
        .attrs
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .flat_map(|(_, values)| values.iter().cloned())
        .collect()
}

/// An LDAP error without anything the server echoed back.
fn describe(error: &LdapError) -> String {
    match error {
        LdapError::Io { source } => format!("connection: {source}"),
        LdapError::LdapResult { result } => format!("result code {}", result.rc),
        LdapError::Timeout { .. } => "timed out".into(),
        LdapError::Rustls { source } => format!("TLS: {source}"),
        other => {
            let text = other.to_string();
            text.split(':').next().unwrap_or("error").to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).expect("toml")
    }

    #[test]
    fn bad_settings_are_refused_with_the_key() {
        for (text, expect) in [
            ("server = \"h\"", "bind_dn"),
            ("server = \"h\"\nbind_dn = \"uid=${username}\"\nfilter = \"(uid=x)\"", "bind_dn"),
            ("server = \"h\"\nbind_dn = \"uid=${password}\"", "not allowed"),
            ("server = \"h\"\nbind_dn = \"uid=${username}\"\nusername = \"cn=svc\"", "service account"),
            (
                "server = \"h\"\nbase_dn = \"dc=x\"\nfilter = \"(uid=${username})\"\nusername = \"cn=s\"",
                "password",
            ),
            ("server = \"h\"\nbind_dn = \"uid=x\"\nsuperuser_group = \"cn=${username}\"", "placeholders"),
            ("server = \"h\"\nbind_dn = \"uid=x\"\nca_file = \"/x\"", "ca_file"),
            (
                "server = \"h\"\nbind_dn = \"uid=x\"\ntls = \"ldaps\"\nca_file = \"/nonexistent\"",
                "nonexistent",
            ),
            ("server = \"h:x\"\nbind_dn = \"uid=x\"", "port"),
            ("server = \"h\"\nbind_dn = \"uid=x\"\ntimeout_ms = 0", "timeout_ms"),
            ("server = \"h\"\nbind_dn = \"uid=x\"\nsurprise = 1", "surprise"),
        ] {
            let error = LdapAuthenticator::from_table(&table(text)).err().map(|e| e.to_string());
            assert!(error.as_deref().is_some_and(|error| error.contains(expect)), "{text:?}: {error:?}");
        }
    }

    #[test]
    fn urls_follow_the_tls_mode() {
        let auth =
            LdapAuthenticator::from_table(&table("server = \"127.0.0.1\"\nbind_dn = \"uid=x\"")).unwrap();
        assert_eq!(auth.directory.url, "ldap://127.0.0.1:389");
        assert!(auth.directory.tls.is_none());
        let auth =
            LdapAuthenticator::from_table(&table("server = \"[::1]:1636\"\nbind_dn = \"uid=x\"")).unwrap();
        assert_eq!(auth.directory.url, "ldap://[::1]:1636");
    }

    #[test]
    fn values_are_escaped_for_where_they_go() {
        assert_eq!(escape_filter("x)(uid=*".into()), "x\\29\\28uid=\\2a");
        assert_eq!(escape_dn("a,ou=admins".into()), "a\\2cou\\3dadmins");
        assert_eq!(escape_dn(" lead".into()), "\\20lead");
    }
}
