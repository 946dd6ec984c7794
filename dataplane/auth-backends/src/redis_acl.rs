//! `[[auth.authorizers]] type = "redis"`: a client's ACL rules from a Redis
//! hash, as EMQX's Redis authorization keeps them, so the same keys work
//! for both.
//!
//! ```toml
//! [[auth.authorizers]]
//! type = "redis"
//! server = "127.0.0.1:6379"
//! database = 0
//! password = "..."
//! cmd = "HGETALL mqtt_acl:${username}"
//! timeout_ms = 5000
//! pool_size = 8
//! queue = 64
//! on_error = "ignore"             # or "deny"
//! refresh_s = 60
//! ```
//!
//! Each field of the hash is a topic filter and its value the action it is
//! allowed (`publish`, `subscribe` or `all`), or a JSON object with
//! `action` and optionally `permission` (default `allow`), `qos` (a number
//! or a list) and `retain`. A hash has no order: deny rules are checked
//! before allow rules (each kind by topic), so a deny always holds. The key
//! may hold `${username}`, `${clientid}` and `${peerhost}`, each value one
//! Redis argument.

use dataplane::auth::client_rules::{RuleSet, RuleSpec, MAX_RULES};
use dataplane::auth::external::{RuleSource, SourcePolicy};
use dataplane::cluster::access::Identity;
use dataplane::hooks::HookFuture;
use serde::Deserialize;

use crate::acl_source::{rule_from_json, Fetcher};
use crate::http::SettingsError;
use crate::redis_link::{Mode, RedisLink, RedisServer, Servers};
use crate::stored;
use crate::template::{check_template, expand, identity_values, Chain, Limits, ACL_PLACEHOLDERS};

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
}

/// The `redis` authorizer.
pub struct RedisRuleSource {
    link: RedisLink,
    key: String,
    fetcher: Fetcher,
}

impl std::fmt::Debug for RedisRuleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRuleSource").field("key", &self.key).finish_non_exhaustive()
    }
}

impl RedisRuleSource {
    /// Reads one `[[auth.authorizers]]` entry (its `type` taken out).
    pub fn from_table(table: &toml::Table) -> Result<RedisRuleSource, SettingsError> {
        let (settings, limits): (Settings, Limits) = stored::parse_settings(table, Chain::Authorizer)?;
        let invalid = |reason: String| SettingsError::Invalid { key: "cmd", reason };
        let words: Vec<&str> = settings.cmd.split_whitespace().collect();
        let key = match words.as_slice() {
            [verb, key] if verb.eq_ignore_ascii_case("HGETALL") => key.to_string(),
            _ => return Err(invalid(format!("expected HGETALL <key>, got {:?}", settings.cmd))),
        };
        check_template(&key, &ACL_PLACEHOLDERS).map_err(invalid)?;
        let fetcher = Fetcher::new(
            limits.timeout_ms,
            limits.pool_size,
            limits.queue,
            limits.on_error,
            limits.refresh_s,
            format!("redis {}", settings.server.as_deref().unwrap_or("cluster/sentinel")),
        )?;
        let link = RedisLink::new(
            &RedisServer {
                mode: settings.mode,
                server: settings.server.as_deref(),
                servers: settings.servers.as_ref(),
                sentinel: settings.sentinel.as_deref(),
                database: settings.database,
                username: settings.username.as_deref(),
                password: settings.password.as_deref(),
                tls: settings.tls,
                ca_file: settings.ca_file.as_deref(),
            },
            limits.pool_size,
        )?;
        Ok(RedisRuleSource { link, key, fetcher })
    }

    async fn fetch(&self, who: &Identity) -> Result<RuleSet, String> {
        let key = expand(&self.key, &identity_values(who));
        let link = self.link.clone();
        self.fetcher
            .fetch(async move {
                let mut command = redis::cmd("HGETALL");
                command.arg(key);
                let fields: Vec<(Vec<u8>, Vec<u8>)> = link.query(command).await?;
                read_rules(fields)
            })
            .await
    }
}

/// The rules in a hash's fields: denies first, then allows, each by topic.
fn read_rules(fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<RuleSpec>, String> {
    if fields.len() > MAX_RULES {
        return Err(format!("{} rules, over the limit of {MAX_RULES}", fields.len()));
    }
    let mut rules = Vec::with_capacity(fields.len());
    for (topic, value) in fields {
        let topic = String::from_utf8(topic).map_err(|_| "a topic is not text".to_owned())?;
        let value = String::from_utf8(value).map_err(|_| "a value is not text".to_owned())?;
        let rule = if value.trim_start().starts_with('{') {
            let mut object: serde_json::Value =
                serde_json::from_str(&value).map_err(|error| format!("a value is not JSON: {error}"))?;
            if let Some(object) = object.as_object_mut() {
                object.insert("topic".into(), serde_json::Value::String(topic));
            }
            rule_from_json(&object, Some("allow"))?
        } else {
            RuleSpec { permission: "allow".into(), action: value, topic, ..Default::default() }
        };
        rules.push(rule);
    }
    rules.sort_by(|a, b| {
        let denies = |rule: &RuleSpec| !rule.permission.trim().eq_ignore_ascii_case("deny");
        (denies(a), &a.topic).cmp(&(denies(b), &b.topic))
    });
    Ok(rules)
}

impl RuleSource for RedisRuleSource {
    fn rules<'a>(&'a self, who: &'a Identity) -> HookFuture<'a, Result<RuleSet, String>> {
        Box::pin(self.fetch(who))
    }

    fn policy(&self) -> SourcePolicy {
        self.fetcher.policy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(topic: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
        (topic.as_bytes().to_vec(), value.as_bytes().to_vec())
    }

    #[test]
    fn fields_are_rules_with_denies_first() {
        let rules = read_rules(vec![
            field("a/#", "all"),
            field("a/secret", r#"{"permission": "deny", "action": "all"}"#),
            field("b", r#"{"action": "publish", "qos": [0, 1], "retain": false}"#),
        ])
        .unwrap();
        let topics: Vec<&str> = rules.iter().map(|rule| rule.topic.as_str()).collect();
        assert_eq!(topics, ["a/secret", "a/#", "b"]);
        assert_eq!(rules[2].qos, vec![0, 1]);
        assert_eq!(rules[2].retain, Some(false));
        assert!(read_rules(vec![field("t", "{nope")]).is_err());
    }

    #[test]
    fn only_hgetall_of_a_key_is_taken() {
        let table = |cmd: &str| -> toml::Table {
            toml::from_str(&format!("server = \"127.0.0.1\"\ncmd = \"{cmd}\"")).expect("toml")
        };
        assert!(RedisRuleSource::from_table(&table("HGETALL mqtt_acl:${username}")).is_ok());
        for bad in ["HGET k f", "HGETALL", "HGETALL a b", "HGETALL k:${password}"] {
            assert!(RedisRuleSource::from_table(&table(bad)).is_err(), "{bad}");
        }
    }
}
