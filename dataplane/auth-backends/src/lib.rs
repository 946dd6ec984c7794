//! Authentication backends with heavy dependencies, kept out of the data
//! plane's core (STYLE: "backends with heavy dependencies live in a crate of
//! their own"). `mqttd` hands [`Factory`] to the data plane, which asks it
//! for the chain entries it does not build itself.
//!
//! - `http.rs`: `type = "http"`, an HTTP service that answers allow, deny or
//!   ignore.
//! - `http_acl.rs`: the `http` authorizer, a client's rules from a service.
//! - `cache.rs`: the bounded, expiring memory of answers every external
//!   authenticator keeps.
//! - `redis_auth.rs`: `type = "redis"`, users in Redis hashes;
//!   `redis_acl.rs`: the `redis` authorizer, a client's rules in a hash.
//! - `sql_auth.rs`: `type = "postgresql"` and `"mysql"`, users in a table.
//! - `ldap_auth.rs`: `type = "ldap"`, users in a directory, checked by a
//!   bind.
//! - `jwt.rs`: `type = "jwt"`, a signed token as the password; `jwks.rs`:
//!   its keys from a JWKS URL.
//! - `sql_acl.rs`: `[[auth.authorizers]]` `type = "postgresql"` and
//!   `"mysql"`, a client's ACL rules from a table; `acl_source.rs`: what
//!   the external authorizers share.
//! - `password.rs`: password hashes in the formats EMQX's stores use, for
//!   the database backends.
//! - `template.rs`: placeholders and the failure policy they all share.
//! - `stored.rs`: a user store's row judged, and the verdict made of it.

#![forbid(unsafe_code)]

mod acl_source;
mod cache;
pub mod http;
pub mod http_acl;
mod jwks;
pub mod jwt;
pub mod ldap_auth;
pub mod password;
pub mod redis_acl;
pub mod redis_auth;
mod redis_link;
pub mod sql_acl;
pub mod sql_auth;
mod stored;
mod template;

use std::sync::Arc;

use dataplane::auth::external::RuleSource;
use dataplane::auth::Backends;
use dataplane::config::{AuthenticatorConfig, AuthorizerConfig};
use dataplane::hooks::Authenticator;

/// The backends this crate builds.
#[derive(Debug, Default)]
pub struct Factory;

impl Backends for Factory {
    fn authenticator(&self, entry: &AuthenticatorConfig) -> Option<Result<Arc<dyn Authenticator>, String>> {
        match entry {
            AuthenticatorConfig::Http(table) => Some(
                http::HttpAuthenticator::from_table(table)
                    .map(|hook| Arc::new(hook) as Arc<dyn Authenticator>)
                    .map_err(|error| error.to_string()),
            ),
            AuthenticatorConfig::Jwt(table) => Some(
                jwt::JwtAuthenticator::from_table(table)
                    .map(|hook| Arc::new(hook) as Arc<dyn Authenticator>)
                    .map_err(|error| error.to_string()),
            ),
            AuthenticatorConfig::Postgresql(table) => Some(
                sql_auth::SqlAuthenticator::from_table(table, sql_auth::Dialect::Postgres)
                    .map(|hook| Arc::new(hook) as Arc<dyn Authenticator>)
                    .map_err(|error| error.to_string()),
            ),
            AuthenticatorConfig::Mysql(table) => Some(
                sql_auth::SqlAuthenticator::from_table(table, sql_auth::Dialect::Mysql)
                    .map(|hook| Arc::new(hook) as Arc<dyn Authenticator>)
                    .map_err(|error| error.to_string()),
            ),
            AuthenticatorConfig::Redis(table) => Some(
                redis_auth::RedisAuthenticator::from_table(table)
                    .map(|hook| Arc::new(hook) as Arc<dyn Authenticator>)
                    .map_err(|error| error.to_string()),
            ),
            AuthenticatorConfig::Ldap(table) => Some(
                ldap_auth::LdapAuthenticator::from_table(table)
                    .map(|hook| Arc::new(hook) as Arc<dyn Authenticator>)
                    .map_err(|error| error.to_string()),
            ),
            _ => None,
        }
    }

    fn rule_source(&self, entry: &AuthorizerConfig) -> Option<Result<Arc<dyn RuleSource>, String>> {
        match entry {
            AuthorizerConfig::Postgresql(table) => Some(
                sql_acl::SqlRuleSource::from_table(table, sql_auth::Dialect::Postgres)
                    .map(|source| Arc::new(source) as Arc<dyn RuleSource>)
                    .map_err(|error| error.to_string()),
            ),
            AuthorizerConfig::Mysql(table) => Some(
                sql_acl::SqlRuleSource::from_table(table, sql_auth::Dialect::Mysql)
                    .map(|source| Arc::new(source) as Arc<dyn RuleSource>)
                    .map_err(|error| error.to_string()),
            ),
            AuthorizerConfig::Http(table) => Some(
                http_acl::HttpRuleSource::from_table(table)
                    .map(|source| Arc::new(source) as Arc<dyn RuleSource>)
                    .map_err(|error| error.to_string()),
            ),
            AuthorizerConfig::Redis(table) => Some(
                redis_acl::RedisRuleSource::from_table(table)
                    .map(|source| Arc::new(source) as Arc<dyn RuleSource>)
                    .map_err(|error| error.to_string()),
            ),
            _ => None,
        }
    }
}
