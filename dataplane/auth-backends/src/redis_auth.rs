//! `type = "redis"`: users kept in Redis hashes, as EMQX's Redis
//! authenticator reads them, so the same keys work for both.
//!
//! ```toml
//! [[auth.authenticators]]
//! type = "redis"
//! server = "127.0.0.1:6379"
//! database = 0
//! username = "mqtt"               # Redis ACL user (optional)
//! password = "..."                # optional
//! cmd = "HMGET mqtt_user:${username} password_hash salt is_superuser"
//! password_hash = { algorithm = "sha256", salt_position = "suffix" }
//! timeout_ms = 5000
//! pool_size = 8                   # commands in flight (one pipelined connection)
//! queue = 64                      # checks that may wait for one of them
//! on_error = "deny"               # or "ignore": ask the next authenticator
//! cache_entries = 10000           # results held; 0: none
//! cache_ttl_s = 60
//! ```
//!
//! `cmd` is `HMGET <key> <field>...` or `HGET <key> <field>`; the key may
//! hold `${username}`, `${clientid}`, `${peerhost}` and
//! `${cert_common_name}` (never `${password}`: a key shows in Redis's
//! logs), the fields none. `password_hash` (or `password`, EMQX 4's name)
//! is required among the fields; `salt` and `is_superuser` (`1` or `true`)
//! are optional.
//!
//! Outcomes: no such user (the hash field is missing) or a client that
//! sent no password: ignore, the next authenticator decides; the password
//! matches: allow; it does not: deny (bad username or password). Redis
//! unreachable, slow past `timeout_ms`, a reply not understood or a stored
//! hash that cannot be checked: `on_error`.
//!
//! Invariants:
//! - **The command is built from arguments, never from text**: each
//!   expanded value is one argument of the Redis protocol, so a username
//!   with spaces or CRLF stays one key.
//! - **Nothing runs on the connection's task**: the command is a task of
//!   its own, at most `pool_size` at once and `queue` more waiting, within
//!   `timeout_ms` in all; costly hashes (bcrypt, PBKDF2, argon2) are
//!   checked on the blocking pool.
//! - **No password is kept**: the cache holds a keyed MAC of the password
//!   with the outcome (`cache.rs`), and only outcomes that came from
//!   Redis.
//! - `mode = "cluster"` (`servers`: some of its nodes) and `"sentinel"`
//!   (`servers`: the Sentinels, `sentinel`: the master's name) as well as
//!   a single `server` (`redis_link.rs`); TLS with a single server only.

use dataplane::cluster::access::Grant;
use dataplane::hooks::{Authenticator, ConnectRequest, HookFuture, Verdict};
use serde::Deserialize;

use crate::http::SettingsError;
use crate::password::HashAlgorithm;
use crate::redis_link::{Mode, RedisLink, RedisServer, Servers};
use crate::stored::{self, Store, StoreSettings, StoredUser};
use crate::template::{check_template, expand, request_values, Chain, Limits};

/// Placeholders a key may hold.
const KEY_PLACEHOLDERS: [&str; 4] = ["${username}", "${clientid}", "${peerhost}", "${cert_common_name}"];

/// The settings of one `type = "redis"` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    servers: Option<Servers>,
    #[serde(default)]
    sentinel: Option<String>,
    #[serde(default)]
    database: i64,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    tls: bool,
    #[serde(default)]
    ca_file: Option<std::path::PathBuf>,
    cmd: String,
    password_hash: HashAlgorithm,
}

/// Where each wanted field is in the command's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    hash: usize,
    salt: Option<usize>,
    superuser: Option<usize>,
}

/// The `redis` authenticator.
pub struct RedisAuthenticator {
    link: RedisLink,
    /// `HMGET` or `HGET`.
    verb: &'static str,
    key: String,
    fields: Vec<String>,
    wanted: Fields,
    store: Store,
    server: String,
}

impl std::fmt::Debug for RedisAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAuthenticator")
            .field("server", &self.server)
            .field("verb", &self.verb)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl RedisAuthenticator {
    /// Reads one `[[auth.authenticators]]` entry (its `type` taken out).
    pub fn from_table(table: &toml::Table) -> Result<RedisAuthenticator, SettingsError> {
        let (settings, limits): (Settings, Limits) = stored::parse_settings(table, Chain::Authenticator)?;
        RedisAuthenticator::new(settings, limits)
    }

    fn new(settings: Settings, limits: Limits) -> Result<RedisAuthenticator, SettingsError> {
        let invalid = |key, reason: String| SettingsError::Invalid { key, reason };
        if limits.timeout_ms == 0 || limits.pool_size == 0 {
            return Err(invalid("timeout_ms, pool_size", "must be at least 1".into()));
        }
        settings.password_hash.validate().map_err(|error| invalid("password_hash", error.to_string()))?;
        let (verb, key, fields) = parse_command(&settings.cmd).map_err(|reason| invalid("cmd", reason))?;
        let wanted = wanted_fields(&fields).map_err(|reason| invalid("cmd", reason))?;
        let server = RedisServer {
            mode: settings.mode,
            server: settings.server.as_deref(),
            servers: settings.servers.as_ref(),
            sentinel: settings.sentinel.as_deref(),
            database: settings.database,
            username: settings.username.as_deref(),
            password: settings.password.as_deref(),
            tls: settings.tls,
            ca_file: settings.ca_file.as_deref(),
        };
        let name = server.name();
        let link = RedisLink::new(&server, limits.pool_size)?;
        Ok(RedisAuthenticator {
            link,
            verb,
            key,
            fields,
            wanted,
            store: Store::new(StoreSettings {
                algorithm: Some(settings.password_hash),
                timeout_ms: limits.timeout_ms,
                pool_size: limits.pool_size,
                queue: limits.queue,
                on_error: limits.on_error,
                cache_entries: limits.cache_entries,
                cache_ttl_s: limits.cache_ttl_s,
                name: format!("redis {name}"),
            }),
            server: name,
        })
    }

    /// Looks the user up: the command on the pipelined connection (made
    /// first if there is none), its reply read as a user.
    fn lookup(
        &self,
        key: String,
    ) -> impl std::future::Future<Output = Result<Option<StoredUser>, String>> + Send {
        let link = self.link.clone();
        let mut command = redis::cmd(self.verb);
        command.arg(&key);
        for field in &self.fields {
            command.arg(field);
        }
        let verb = self.verb;
        let wanted = self.wanted.clone();
        async move {
            let values: Vec<Option<Vec<u8>>> = if verb == "HGET" {
                vec![link.query::<Option<Vec<u8>>>(command).await?]
            } else {
                link.query(command).await?
            };
            read_user(&values, &wanted)
        }
    }

    async fn verdict(&self, request: ConnectRequest<'_>) -> Verdict<Grant> {
        let Some(password) = request.password else { return Verdict::Ignore };
        let key = expand(&self.key, &request_values(&request));
        let lookup = self.lookup(key.clone());
        self.store.decide(request.username, &[key.as_bytes()], password, lookup).await
    }
}

/// The command's verb, key template and fields.
fn parse_command(cmd: &str) -> Result<(&'static str, String, Vec<String>), String> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let verb = match words.first().map(|verb| verb.to_ascii_uppercase()).as_deref() {
        Some("HMGET") => "HMGET",
        Some("HGET") => "HGET",
        other => return Err(format!("expected HMGET or HGET, got {:?}", other.unwrap_or(""))),
    };
    let Some(key) = words.get(1) else { return Err("no key".into()) };
    check_template(key, &KEY_PLACEHOLDERS)?;
    let fields: Vec<String> = words[2..].iter().map(|field| field.to_string()).collect();
    if fields.iter().any(|field| field.contains("${")) {
        return Err("fields take no placeholders".into());
    }
    if verb == "HGET" && fields.len() != 1 {
        return Err("HGET takes one field".into());
    }
    Ok((verb, key.to_string(), fields))
}

fn wanted_fields(fields: &[String]) -> Result<Fields, String> {
    let position = |name: &str| fields.iter().position(|field| field == name);
    let hash = position("password_hash")
        .or_else(|| position("password"))
        .ok_or("the fields must include password_hash (or password)")?;
    Ok(Fields { hash, salt: position("salt"), superuser: position("is_superuser") })
}

/// The user in a reply (`None`: no such user).
fn read_user(values: &[Option<Vec<u8>>], wanted: &Fields) -> Result<Option<StoredUser>, String> {
    let field = |index: Option<usize>| index.and_then(|index| values.get(index)).and_then(Option::as_ref);
    let Some(hash) = field(Some(wanted.hash)) else { return Ok(None) };
    Ok(Some(StoredUser {
        hash: String::from_utf8(hash.clone()).map_err(|_| "the stored hash is not text".to_owned())?,
        salt: field(wanted.salt).cloned().unwrap_or_default(),
        superuser: field(wanted.superuser).is_some_and(|value| stored::flag(value)),
    }))
}

impl Authenticator for RedisAuthenticator {
    fn authenticate<'a>(&'a self, request: ConnectRequest<'a>) -> HookFuture<'a, Verdict<Grant>> {
        Box::pin(self.verdict(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).expect("toml")
    }

    #[test]
    fn commands_are_read_into_verb_key_and_fields() {
        let (verb, key, fields) =
            parse_command("hmget mqtt_user:${username} password_hash salt is_superuser").unwrap();
        assert_eq!((verb, key.as_str()), ("HMGET", "mqtt_user:${username}"));
        assert_eq!(wanted_fields(&fields), Ok(Fields { hash: 0, salt: Some(1), superuser: Some(2) }));
        let (_, _, fields) = parse_command("HMGET u:${clientid} is_superuser password").unwrap();
        assert_eq!(wanted_fields(&fields), Ok(Fields { hash: 1, salt: None, superuser: Some(0) }));
        for bad in [
            "GET mqtt_user:${username}",
            "HMGET",
            "HMGET k:${password} password_hash",
            "HMGET k:${user} password_hash",
            "HMGET k ${username}",
            "HGET k password_hash salt",
        ] {
            assert!(parse_command(bad).is_err(), "{bad}");
        }
        assert!(wanted_fields(&["salt".to_string()]).is_err());
    }

    #[test]
    fn bad_settings_are_refused_with_the_key() {
        let base = "server = \"127.0.0.1:6379\"\ncmd = \"HMGET u:${username} password_hash\"\n";
        for (extra, expect) in [
            ("password_hash = { algorithm = \"sha256\" }\nmode = \"cluster\"", "servers"),
            ("password_hash = { algorithm = \"rot13\" }", "rot13"),
            ("password_hash = { algorithm = \"pbkdf2\", mac_fun = \"sha\", iterations = 0 }", "iterations"),
            ("password_hash = { algorithm = \"plain\" }\ntimeout_ms = 0", "timeout_ms"),
            ("password_hash = { algorithm = \"plain\" }\nsurprise = 1", "surprise"),
            ("", "password_hash"),
        ] {
            let error = RedisAuthenticator::from_table(&table(&format!("{base}{extra}")))
                .err()
                .map(|e| e.to_string());
            assert!(error.as_deref().is_some_and(|error| error.contains(expect)), "{extra:?}: {error:?}");
        }
        let emqx = "server = \"127.0.0.1\"\ncmd = \"HGET u:${username} password\"\npassword_hash_algorithm = { name = \"md5\" }";
        assert!(RedisAuthenticator::from_table(&table(emqx)).is_ok(), "EMQX's spelling of the hash setting");
    }
}
