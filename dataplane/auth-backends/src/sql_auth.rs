//! `type = "postgresql"` and `type = "mysql"` (MySQL or MariaDB): users
//! in a table, read with the query EMQX's SQL authenticators take, so the
//! same table works for both.
//!
//! ```toml
//! [[auth.authenticators]]
//! type = "postgresql"             # or "mysql"
//! server = "127.0.0.1:5432"       # MySQL: 3306 by default
//! database = "mqtt"
//! username = "mqtt"
//! password = "..."
//! query = "SELECT password_hash, salt, is_superuser FROM mqtt_user WHERE username = ${username} LIMIT 1"
//! password_hash = { algorithm = "sha256", salt_position = "suffix" }
//! timeout_ms = 5000
//! pool_size = 8                   # connections (sqlx pool, made as needed)
//! queue = 64                      # checks that may wait for one of them
//! on_error = "deny"               # or "ignore"
//! cache_entries = 10000
//! cache_ttl_s = 60
//! ```
//!
//! Invariants:
//! - **Values are bound, never pasted into SQL**: each placeholder of
//!   `query` (`${username}`, `${clientid}`, `${peerhost}`,
//!   `${cert_common_name}`; not `${password}`) becomes a parameter (`$1`,
//!   `$2`, ... for PostgreSQL, `?` for MySQL) bound as text. A placeholder
//!   inside quotes (`'${username}'`) is refused at start: it would be a
//!   literal.
//! - The first row's `password_hash` (or `password`) column, and `salt` and
//!   `is_superuser` when the query returns them, are the user; no row is no
//!   such user (ignore). Text, bytes, booleans and integers are read.
//! - The pool connects on first use (the broker starts whether or not the
//!   database is up), at most `pool_size` connections; a check waits at
//!   most `timeout_ms` in all, and at most `pool_size + queue` checks wait.
//! - Outcomes and the cache are as for Redis (`stored.rs`, `cache.rs`).

use std::time::Duration;

use dataplane::cluster::access::Grant;
use dataplane::hooks::{Authenticator, ConnectRequest, HookFuture, Verdict};
use serde::Deserialize;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Column, Row};

use crate::http::SettingsError;
use crate::password::HashAlgorithm;
use crate::stored::{self, Store, StoreSettings, StoredUser};
use crate::template::{request_values, Chain, Limits, PLACEHOLDERS};

/// Placeholders a query may hold.
const QUERY_PLACEHOLDERS: [&str; 4] = ["${username}", "${clientid}", "${peerhost}", "${cert_common_name}"];

/// Which database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
}

/// The settings of one `type = "postgresql"` or `"mysql"` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    server: String,
    database: String,
    username: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    tls: SqlTls,
    #[serde(default)]
    ca_file: Option<std::path::PathBuf>,
    query: String,
    password_hash: HashAlgorithm,
}

/// TLS to the database (`tls` in an entry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SqlTls {
    /// Never.
    None,
    /// When the server offers it, unverified (the drivers' default).
    #[default]
    Prefer,
    /// Always, the certificate unverified.
    Require,
    /// Always, the certificate verified against `ca_file` (or the system's
    /// CAs), not the host name.
    VerifyCa,
    /// Always, certificate and host name verified.
    VerifyFull,
}

/// A pool of either database's connections.
#[derive(Clone)]
pub(crate) enum Pool {
    Postgres(PgPool),
    Mysql(MySqlPool),
}

/// The `postgresql` and `mysql` authenticators.
pub struct SqlAuthenticator {
    pool: Pool,
    /// The query with `$1`, `$2`, ... (or `?`) in place of its placeholders.
    sql: String,
    /// For each parameter, its placeholder's index in [`PLACEHOLDERS`].
    parameters: Vec<usize>,
    store: Store,
    server: String,
}

impl std::fmt::Debug for SqlAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlAuthenticator")
            .field("server", &self.server)
            .field("sql", &self.sql)
            .finish_non_exhaustive()
    }
}

impl SqlAuthenticator {
    /// Reads one `[[auth.authenticators]]` entry (its `type` taken out).
    pub fn from_table(table: &toml::Table, dialect: Dialect) -> Result<SqlAuthenticator, SettingsError> {
        let (settings, limits): (Settings, Limits) = stored::parse_settings(table, Chain::Authenticator)?;
        let invalid = |key, reason: String| SettingsError::Invalid { key, reason };
        if limits.timeout_ms == 0 || limits.pool_size == 0 || limits.pool_size > 1024 {
            return Err(invalid(
                "timeout_ms, pool_size",
                "timeout_ms at least 1, pool_size 1 to 1024".into(),
            ));
        }
        settings.password_hash.validate().map_err(|error| invalid("password_hash", error.to_string()))?;
        let (sql, parameters) = bind_placeholders(&settings.query, dialect, &QUERY_PLACEHOLDERS)
            .map_err(|reason| invalid("query", reason))?;
        let (pool, kind) = connect_pool(
            dialect,
            &Connection {
                server: &settings.server,
                database: &settings.database,
                username: &settings.username,
                password: settings.password.as_deref(),
                tls: settings.tls,
                ca_file: settings.ca_file.as_deref(),
            },
            limits.pool_size,
            Duration::from_millis(limits.timeout_ms),
        )?;
        Ok(SqlAuthenticator {
            pool,
            sql,
            parameters,
            store: Store::new(StoreSettings {
                algorithm: Some(settings.password_hash),
                timeout_ms: limits.timeout_ms,
                pool_size: limits.pool_size,
                queue: limits.queue,
                on_error: limits.on_error,
                cache_entries: limits.cache_entries,
                cache_ttl_s: limits.cache_ttl_s,
                name: format!("{kind} {}", settings.server),
            }),
            server: settings.server,
        })
    }

    async fn verdict(&self, request: ConnectRequest<'_>) -> Verdict<Grant> {
        let Some(password) = request.password else { return Verdict::Ignore };
        let all = request_values(&request);
        let values: Vec<String> = self.parameters.iter().map(|&index| all[index].clone()).collect();
        let key: Vec<&[u8]> = values.iter().map(|value| value.as_bytes()).collect();
        let (pool, sql, bound) = (self.pool.clone(), self.sql.clone(), values.clone());
        let lookup = async move {
            match pool {
                Pool::Postgres(pool) => {
                    let mut query = sqlx::query(&sql);
                    for value in bound {
                        query = query.bind(value);
                    }
                    let row = query.fetch_optional(&pool).await.map_err(|error| describe(&error))?;
                    row.map(|row| read_user!(row)).transpose()
                }
                Pool::Mysql(pool) => {
                    let mut query = sqlx::query(&sql);
                    for value in bound {
                        query = query.bind(value);
                    }
                    let row = query.fetch_optional(&pool).await.map_err(|error| describe(&error))?;
                    row.map(|row| read_user!(row)).transpose()
                }
            }
        };
        self.store.decide(request.username, &key, password, lookup).await
    }
}

/// Where a database is and who the broker is there.
pub(crate) struct Connection<'a> {
    pub server: &'a str,
    pub database: &'a str,
    pub username: &'a str,
    pub password: Option<&'a str>,
    pub tls: SqlTls,
    pub ca_file: Option<&'a std::path::Path>,
}

/// A lazy pool of at most `pool_size` connections (made on first use, so
/// the broker starts whether or not the database is up), and the kind of
/// database as logs name it.
pub(crate) fn connect_pool(
    dialect: Dialect,
    connection: &Connection<'_>,
    pool_size: usize,
    timeout: Duration,
) -> Result<(Pool, &'static str), SettingsError> {
    if connection.ca_file.is_some()
        && matches!(connection.tls, SqlTls::None | SqlTls::Prefer | SqlTls::Require)
    {
        return Err(SettingsError::Invalid {
            key: "ca_file",
            reason: "is for tls = \"verify_ca\" or \"verify_full\"".into(),
        });
    }
    if let Some(path) = connection.ca_file {
        std::fs::metadata(path).map_err(|error| SettingsError::Invalid {
            key: "ca_file",
            reason: format!("{}: {error}", path.display()),
        })?;
    }
    Ok(match dialect {
        Dialect::Postgres => {
            let (host, port) = stored::host_port(connection.server, 5432)?;
            let mut options = PgConnectOptions::new()
                .host(&host)
                .port(port)
                .database(connection.database)
                .username(connection.username)
                .application_name("mqttd");
            if let Some(password) = connection.password {
                options = options.password(password);
            }
            use sqlx::postgres::PgSslMode;
            options = options.ssl_mode(match connection.tls {
                SqlTls::None => PgSslMode::Disable,
                SqlTls::Prefer => PgSslMode::Prefer,
                SqlTls::Require => PgSslMode::Require,
                SqlTls::VerifyCa => PgSslMode::VerifyCa,
                SqlTls::VerifyFull => PgSslMode::VerifyFull,
            });
            if let Some(path) = connection.ca_file {
                options = options.ssl_root_cert(path);
            }
            let pool = PgPoolOptions::new()
                .max_connections(pool_size as u32)
                .min_connections(0)
                .acquire_timeout(timeout)
                .connect_lazy_with(options);
            (Pool::Postgres(pool), "postgresql")
        }
        Dialect::Mysql => {
            let (host, port) = stored::host_port(connection.server, 3306)?;
            let mut options = MySqlConnectOptions::new()
                .host(&host)
                .port(port)
                .database(connection.database)
                .username(connection.username);
            if let Some(password) = connection.password {
                options = options.password(password);
            }
            use sqlx::mysql::MySqlSslMode;
            options = options.ssl_mode(match connection.tls {
                SqlTls::None => MySqlSslMode::Disabled,
                SqlTls::Prefer => MySqlSslMode::Preferred,
                SqlTls::Require => MySqlSslMode::Required,
                SqlTls::VerifyCa => MySqlSslMode::VerifyCa,
                SqlTls::VerifyFull => MySqlSslMode::VerifyIdentity,
            });
            if let Some(path) = connection.ca_file {
                options = options.ssl_ca(path);
            }
            let pool = MySqlPoolOptions::new()
                .max_connections(pool_size as u32)
                .min_connections(0)
                .acquire_timeout(timeout)
                .connect_lazy_with(options);
            (Pool::Mysql(pool), "mysql")
        }
    })
}

/// A database error without what the server echoed (which may hold a
/// bound value, and so a username).
pub(crate) fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::PoolTimedOut => "no connection within the timeout".into(),
        sqlx::Error::Io(_) => "cannot reach the database".into(),
        sqlx::Error::Database(database) => format!("database error {}", database.code().unwrap_or_default()),
        other => format!("{}", other).chars().take(200).collect(),
    }
}

/// The query with each placeholder replaced by the next `$n` (PostgreSQL)
/// or `?` (MySQL), and which placeholder each parameter is.
pub(crate) fn bind_placeholders(
    query: &str,
    dialect: Dialect,
    allowed: &[&str],
) -> Result<(String, Vec<usize>), String> {
    let mut sql = String::with_capacity(query.len());
    let mut parameters = Vec::new();
    let mut rest = query;
    while let Some(start) = rest.find("${") {
        let before = &rest[..start];
        let tail = &rest[start..];
        let end = tail.find('}').ok_or_else(|| format!("unclosed placeholder in {query:?}"))?;
        let placeholder = &tail[..=end];
        if !allowed.contains(&placeholder) {
            return Err(format!(
                "placeholder {placeholder} not allowed here (allowed: {})",
                allowed.join(", ")
            ));
        }
        if before.ends_with('\'') || before.ends_with('"') {
            return Err(format!("{placeholder} is bound as a parameter: write it without quotes"));
        }
        sql.push_str(before);
        let index = PLACEHOLDERS.iter().position(|known| *known == placeholder).unwrap_or(0);
        parameters.push(index);
        match dialect {
            Dialect::Postgres => sql.push_str(&format!("${}", parameters.len())),
            Dialect::Mysql => sql.push('?'),
        }
        rest = &tail[end + 1..];
    }
    sql.push_str(rest);
    Ok((sql, parameters))
}

/// The user in a row (either database's): `password_hash` (or
/// `password`), `salt`, `is_superuser`, each decoded as the first type the
/// column's SQL type allows (sqlx refuses the others).
macro_rules! read_user {
    ($row:expr) => {{
        let row = &$row;
        let column = |name: &str| row.columns().iter().position(|column| column.name() == name);
        let text_at = |at: usize| -> Result<Option<Vec<u8>>, String> {
            if let Ok(text) = row.try_get::<Option<String>, _>(at) {
                return Ok(text.map(String::into_bytes));
            }
            row.try_get::<Option<Vec<u8>>, _>(at)
                .map_err(|error| format!("column {at}: {}", describe(&error)))
        };
        let flag_at = |at: usize| -> Result<bool, String> {
            if let Ok(flag) = row.try_get::<Option<bool>, _>(at) {
                return Ok(flag.unwrap_or(false));
            }
            if let Ok(number) = row.try_get::<Option<i64>, _>(at) {
                return Ok(number.is_some_and(|n| n != 0));
            }
            if let Ok(number) = row.try_get::<Option<i32>, _>(at) {
                return Ok(number.is_some_and(|n| n != 0));
            }
            if let Ok(number) = row.try_get::<Option<i16>, _>(at) {
                return Ok(number.is_some_and(|n| n != 0));
            }
            Ok(text_at(at)?.is_some_and(|value| stored::flag(&value)))
        };
        (|| -> Result<StoredUser, String> {
            let hash_at = column("password_hash")
                .or_else(|| column("password"))
                .ok_or("the query returns no password_hash (or password) column")?;
            let hash = text_at(hash_at)?.ok_or("the row's password_hash is NULL")?;
            let salt = match column("salt") {
                Some(at) => text_at(at)?.unwrap_or_default(),
                None => Vec::new(),
            };
            let superuser = match column("is_superuser") {
                Some(at) => flag_at(at)?,
                None => false,
            };
            let hash = String::from_utf8(hash).map_err(|_| "the stored hash is not text".to_owned())?;
            Ok(StoredUser { hash, salt, superuser })
        })()
    }};
}
use read_user;

impl Authenticator for SqlAuthenticator {
    fn authenticate<'a>(&'a self, request: ConnectRequest<'a>) -> HookFuture<'a, Verdict<Grant>> {
        Box::pin(self.verdict(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_bound_parameters() {
        let query =
            "SELECT password_hash FROM u WHERE username = ${username} AND (clientid = ${clientid} OR ${username} = '')";
        let (sql, parameters) = bind_placeholders(query, Dialect::Postgres, &QUERY_PLACEHOLDERS).unwrap();
        assert_eq!(sql, "SELECT password_hash FROM u WHERE username = $1 AND (clientid = $2 OR $3 = '')");
        assert_eq!(parameters, vec![0, 2, 0]);
        let (sql, parameters) = bind_placeholders(query, Dialect::Mysql, &QUERY_PLACEHOLDERS).unwrap();
        assert_eq!(sql, "SELECT password_hash FROM u WHERE username = ? AND (clientid = ? OR ? = '')");
        assert_eq!(parameters, vec![0, 2, 0]);
        for bad in [
            "SELECT 1 WHERE u = '${username}'",
            "SELECT 1 WHERE p = ${password}",
            "SELECT 1 WHERE u = ${user}",
            "SELECT 1 WHERE u = ${username",
        ] {
            assert!(bind_placeholders(bad, Dialect::Mysql, &QUERY_PLACEHOLDERS).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn bad_settings_are_refused_with_the_key() {
        let base = "server = \"127.0.0.1:5432\"\ndatabase = \"d\"\nusername = \"u\"\n";
        for (extra, expect) in [
            ("query = \"SELECT 1\"", "password_hash"),
            (
                "query = \"SELECT 1 WHERE u = '${username}'\"\npassword_hash = { algorithm = \"plain\" }",
                "quotes",
            ),
            ("query = \"SELECT 1\"\npassword_hash = { algorithm = \"plain\" }\npool_size = 0", "pool_size"),
            ("query = \"SELECT 1\"\npassword_hash = { algorithm = \"plain\" }\nsurprise = 1", "surprise"),
        ] {
            let table: toml::Table = toml::from_str(&format!("{base}{extra}")).unwrap();
            let error = SqlAuthenticator::from_table(&table, Dialect::Postgres).err().map(|e| e.to_string());
            assert!(error.as_deref().is_some_and(|error| error.contains(expect)), "{extra:?}: {error:?}");
        }
    }
}
