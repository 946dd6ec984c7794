//! `[[auth.authorizers]] type = "http"`: an HTTP service gives a client's
//! ACL rules when it connects (and again every `refresh_s`).
//!
//! ```toml
//! [[auth.authorizers]]
//! type = "http"
//! url = "http://127.0.0.1:8080/acl"
//! method = "post"                 # or "get": the fields in the query string
//! body = { username = "${username}", clientid = "${clientid}", peerhost = "${peerhost}" }
//! headers = { "content-type" = "application/json" }
//! timeout_ms = 5000
//! pool_size = 8
//! queue = 64
//! on_error = "ignore"             # or "deny"
//! refresh_s = 60
//! ```
//!
//! The service answers 200 with `{"rules": [{"permission": "allow" |
//! "deny", "action": "publish" | "subscribe" | "all", "topic": "...",
//! "qos": [0, 1], "retain": false}, ...]}` (at most 1 MiB), checked in
//! order, the first that matches deciding; 204 or 404: no rules (the next
//! authorizer decides). Anything else (another status, a body that does not
//! parse, no connection, the timeout) is a failure and `on_error` decides.
//!
//! Unlike EMQX's HTTP authorization, which asks the service at each publish
//! and subscription, the service is asked once per client: every check
//! runs on the publish path, which never waits for a network.

use std::collections::BTreeMap;

use dataplane::auth::client_rules::{RuleSet, RuleSpec, MAX_RULES};
use dataplane::auth::external::{RuleSource, SourcePolicy};
use dataplane::cluster::access::Identity;
use dataplane::hooks::HookFuture;
use serde::Deserialize;

use crate::acl_source::{rule_from_json, Fetcher};
use crate::http::{read_body, Endpoint, EndpointSettings, Failure, Method, SettingsError};
use crate::stored;
use crate::template::{identity_values, Chain, Limits, ACL_PLACEHOLDERS};

/// The most of an answer's body that is read.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    url: String,
    #[serde(default = "post")]
    method: Method,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_body")]
    body: BTreeMap<String, String>,
}

fn post() -> Method {
    Method::Post
}

fn default_body() -> BTreeMap<String, String> {
    ["username", "clientid", "peerhost"]
        .into_iter()
        .map(|name| (name.to_owned(), format!("${{{name}}}")))
        .collect()
}

/// The `http` authorizer.
pub struct HttpRuleSource {
    endpoint: std::sync::Arc<Endpoint>,
    fetcher: Fetcher,
}

impl std::fmt::Debug for HttpRuleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRuleSource").field("url", &self.endpoint.name()).finish_non_exhaustive()
    }
}

impl HttpRuleSource {
    /// Reads one `[[auth.authorizers]]` entry (its `type` taken out).
    pub fn from_table(table: &toml::Table) -> Result<HttpRuleSource, SettingsError> {
        let (settings, limits): (Settings, Limits) = stored::parse_settings(table, Chain::Authorizer)?;
        let endpoint = Endpoint::new(&EndpointSettings {
            url: &settings.url,
            method: settings.method,
            headers: &settings.headers,
            body: &settings.body,
            placeholders: &ACL_PLACEHOLDERS,
            timeout_ms: limits.timeout_ms,
            pool_size: limits.pool_size,
            queue: limits.queue,
        })?;
        let fetcher = Fetcher::new(
            limits.timeout_ms,
            limits.pool_size,
            limits.queue,
            limits.on_error,
            limits.refresh_s,
            format!("http {}", endpoint.name()),
        )?;
        Ok(HttpRuleSource { endpoint: std::sync::Arc::new(endpoint), fetcher })
    }

    async fn fetch(&self, who: &Identity) -> Result<RuleSet, String> {
        let fields = self.endpoint.fields(&identity_values(who));
        let endpoint = self.endpoint.clone();
        self.fetcher
            .fetch(
                async move { endpoint.ask(fields, read_rules).await.map_err(|failure| failure.to_string()) },
            )
            .await
    }
}

async fn read_rules(response: reqwest::Response) -> Result<Vec<RuleSpec>, Failure> {
    match response.status().as_u16() {
        204 | 404 => return Ok(Vec::new()),
        200 => {}
        other => return Err(Failure::Status(other)),
    }
    let body = read_body(response, MAX_BODY).await?;
    parse_rules(&body).map_err(Failure::Body)
}

fn parse_rules(body: &[u8]) -> Result<Vec<RuleSpec>, String> {
    let reply: serde_json::Value = serde_json::from_slice(body).map_err(|error| error.to_string())?;
    let rules = reply.get("rules").and_then(serde_json::Value::as_array).ok_or("no \"rules\" list")?;
    if rules.len() > MAX_RULES {
        return Err(format!("more than {MAX_RULES} rules"));
    }
    rules.iter().map(|rule| rule_from_json(rule, None)).collect()
}

impl RuleSource for HttpRuleSource {
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

    #[test]
    fn answers_are_read_strictly() {
        let rules = parse_rules(
            br#"{"rules": [{"permission": "allow", "action": "publish", "topic": "t/#", "qos": 1}]}"#,
        )
        .unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].qos, vec![1]);
        for bad in
            [&br#"{"result": "allow"}"#[..], br#"{"rules": [{"action": "publish", "topic": "t"}]}"#, b"nope"]
        {
            assert!(parse_rules(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_body_cannot_ask_for_the_password() {
        let table: toml::Table =
            toml::from_str("url = \"http://127.0.0.1:1/acl\"\nbody = { p = \"${password}\" }").unwrap();
        let error = HttpRuleSource::from_table(&table).err().map(|error| error.to_string());
        assert!(error.as_deref().is_some_and(|error| error.contains("not allowed")), "{error:?}");
    }
}
