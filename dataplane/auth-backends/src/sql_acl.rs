//! `[[auth.authorizers]] type = "postgresql"` and `"mysql"`: a client's ACL
//! rules from a table, read with the query EMQX's SQL authorization takes,
//! so EMQX's `mqtt_acl` table works unchanged.
//!
//! ```toml
//! [[auth.authorizers]]
//! type = "postgresql"             # or "mysql"
//! server = "127.0.0.1:5432"
//! database = "mqtt"
//! username = "mqtt"
//! password = "..."
//! query = "SELECT permission, action, topic, qos, retain FROM mqtt_acl WHERE username = ${username}"
//! timeout_ms = 5000
//! pool_size = 8
//! queue = 64
//! on_error = "ignore"             # or "deny": refuse what this source would judge
//! refresh_s = 60                  # a connected client's rules are read again this often
//! ```
//!
//! Each row is a rule, in the order the query returns them (add `ORDER BY`
//! to make it yours): `permission` (`allow`/`deny`), `action` (`publish`,
//! `subscribe` or `all`), `topic` (a filter; `${username}`/`%u` and
//! `${clientid}`/`%c` inside it are the client's; `eq ` before it matches
//! it as written), and optionally `qos` (a number or a list such as `0,1`;
//! NULL: any) and `retain` (NULL: either). The first rule that matches
//! decides; none: the next authorizer. Placeholders in the query
//! (`${username}`, `${clientid}`, `${peerhost}`) are bound as parameters,
//! as in the SQL authenticator (`sql_auth.rs`), never pasted.

use std::time::Duration;

use dataplane::auth::client_rules::{RuleSet, RuleSpec, MAX_RULES};
use dataplane::auth::external::{RuleSource, SourcePolicy};
use dataplane::cluster::access::Identity;
use dataplane::hooks::HookFuture;
use futures_util::TryStreamExt;
use serde::Deserialize;
use sqlx::{Column, Row};

use crate::acl_source::{qos_levels, retain_flag, Fetcher};
use crate::http::SettingsError;
use crate::sql_auth::{bind_placeholders, connect_pool, describe, Connection, Dialect, Pool, SqlTls};
use crate::stored;
use crate::template::{identity_values, Chain, Limits, ACL_PLACEHOLDERS};

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
}

/// A rule from a row (either database's): each column read as the first
/// type its SQL type allows, as text.
macro_rules! read_rule {
    ($row:expr) => {{
        let row = &$row;
        let column = |name: &str| row.columns().iter().position(|column| column.name() == name);
        let cell = |at: usize| -> Result<Option<String>, String> {
            if let Ok(text) = row.try_get::<Option<String>, _>(at) {
                return Ok(text);
            }
            if let Ok(number) = row.try_get::<Option<i64>, _>(at) {
                return Ok(number.map(|n| n.to_string()));
            }
            if let Ok(number) = row.try_get::<Option<i32>, _>(at) {
                return Ok(number.map(|n| n.to_string()));
            }
            if let Ok(number) = row.try_get::<Option<i16>, _>(at) {
                return Ok(number.map(|n| n.to_string()));
            }
            if let Ok(number) = row.try_get::<Option<i8>, _>(at) {
                return Ok(number.map(|n| n.to_string()));
            }
            // After the integers: MySQL's TINYINT(1) also reads as a bool.
            if let Ok(flag) = row.try_get::<Option<bool>, _>(at) {
                return Ok(flag.map(|flag| flag.to_string()));
            }
            let bytes = row
                .try_get::<Option<Vec<u8>>, _>(at)
                .map_err(|error| format!("column {at}: {}", describe(&error)))?;
            bytes
                .map(|bytes| String::from_utf8(bytes).map_err(|_| format!("column {at} is not text")))
                .transpose()
        };
        let named = |name: &'static str| -> Result<Option<String>, String> {
            match column(name) {
                Some(at) => cell(at),
                None => Ok(None),
            }
        };
        let required = |name: &'static str| -> Result<String, String> {
            named(name)?.ok_or_else(|| format!("the query returns no {name} (or it is NULL)"))
        };
        (|| -> Result<RuleSpec, String> {
            Ok(RuleSpec {
                permission: required("permission")?,
                action: required("action")?,
                topic: required("topic")?,
                qos: qos_levels(&named("qos")?.unwrap_or_default())?,
                retain: retain_flag(&named("retain")?.unwrap_or_default())?,
            })
        })()
    }};
}

/// The `postgresql` and `mysql` authorizers.
pub struct SqlRuleSource {
    pool: Pool,
    sql: String,
    parameters: Vec<usize>,
    fetcher: Fetcher,
}

impl std::fmt::Debug for SqlRuleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlRuleSource").field("sql", &self.sql).finish_non_exhaustive()
    }
}

impl SqlRuleSource {
    /// Reads one `[[auth.authorizers]]` entry (its `type` taken out).
    pub fn from_table(table: &toml::Table, dialect: Dialect) -> Result<SqlRuleSource, SettingsError> {
        let (settings, limits): (Settings, Limits) = stored::parse_settings(table, Chain::Authorizer)?;
        let invalid = |key, reason: String| SettingsError::Invalid { key, reason };
        if limits.pool_size > 1024 {
            return Err(invalid("pool_size", "at most 1024".into()));
        }
        let (sql, parameters) = bind_placeholders(&settings.query, dialect, &ACL_PLACEHOLDERS)
            .map_err(|reason| invalid("query", reason))?;
        let fetcher_timeout = limits.timeout_ms;
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
            limits.pool_size.max(1),
            Duration::from_millis(fetcher_timeout.max(1)),
        )?;
        let fetcher = Fetcher::new(
            limits.timeout_ms,
            limits.pool_size,
            limits.queue,
            limits.on_error,
            limits.refresh_s,
            format!("{kind} {}", settings.server),
        )?;
        Ok(SqlRuleSource { pool, sql, parameters, fetcher })
    }

    async fn fetch(&self, who: &Identity) -> Result<RuleSet, String> {
        let all = identity_values(who);
        let values: Vec<String> = self.parameters.iter().map(|&index| all[index].clone()).collect();
        let (pool, sql) = (self.pool.clone(), self.sql.clone());
        self.fetcher
            .fetch(async move {
                // The same steps for either database: its pool and row types differ.
                macro_rules! rows_as_rules {
                    ($pool:expr) => {{
                        let mut query = sqlx::query(&sql);
                        for value in values {
                            query = query.bind(value);
                        }
                        let mut rows = query.fetch($pool);
                        let mut rules = Vec::new();
                        while let Some(row) = rows.try_next().await.map_err(|error| describe(&error))? {
                            if rules.len() == MAX_RULES {
                                return Err(format!("more than {MAX_RULES} rules"));
                            }
                            rules.push(read_rule!(row)?);
                        }
                        Ok(rules)
                    }};
                }
                match pool {
                    Pool::Postgres(pool) => rows_as_rules!(&pool),
                    Pool::Mysql(pool) => rows_as_rules!(&pool),
                }
            })
            .await
    }
}

impl RuleSource for SqlRuleSource {
    fn rules<'a>(&'a self, who: &'a Identity) -> HookFuture<'a, Result<RuleSet, String>> {
        Box::pin(self.fetch(who))
    }

    fn policy(&self) -> SourcePolicy {
        self.fetcher.policy()
    }
}
