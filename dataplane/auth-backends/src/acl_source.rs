//! What the external authorizers (`sql_acl.rs`, `redis_acl.rs`,
//! `http_acl.rs`) share: their common settings (`timeout_ms`, `pool_size`,
//! `queue`, `on_error`, `refresh_s`), the bounded run of a fetch, and the
//! reading of the QoS and retain values a source keeps in its own types.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dataplane::auth::client_rules::{RuleSet, RuleSpec};
use dataplane::auth::external::{OnFailure, SourcePolicy};
use tokio::sync::Semaphore;

use crate::http::SettingsError;
use crate::stored;
use crate::template::OnError;

/// The limits and policy of one authorizer.
pub(crate) struct Fetcher {
    timeout: Duration,
    /// `pool_size + queue` permits: fetches running or waiting.
    admission: Arc<Semaphore>,
    policy: SourcePolicy,
}

impl Fetcher {
    pub fn new(
        timeout_ms: u64,
        pool_size: usize,
        queue: usize,
        on_error: OnError,
        refresh_s: u64,
        name: String,
    ) -> Result<Fetcher, SettingsError> {
        if timeout_ms == 0 || pool_size == 0 || refresh_s == 0 {
            return Err(SettingsError::Invalid {
                key: "timeout_ms, pool_size, refresh_s",
                reason: "must be at least 1".into(),
            });
        }
        Ok(Fetcher {
            timeout: Duration::from_millis(timeout_ms),
            admission: Arc::new(Semaphore::new(pool_size.saturating_add(queue))),
            policy: SourcePolicy {
                refresh: Duration::from_secs(refresh_s),
                on_error: match on_error {
                    OnError::Deny => OnFailure::Deny,
                    OnError::Ignore => OnFailure::Ignore,
                },
                name,
            },
        })
    }

    pub fn policy(&self) -> SourcePolicy {
        self.policy.clone()
    }

    /// The rules `work` reads, on a task of its own within the timeout,
    /// checked.
    pub async fn fetch<F>(&self, work: F) -> Result<RuleSet, String>
    where
        F: Future<Output = Result<Vec<RuleSpec>, String>> + Send + 'static,
    {
        let specs = stored::bounded(&self.admission, self.timeout, work).await?;
        RuleSet::compile(&specs).map_err(|error| error.to_string())
    }
}

/// QoS levels as a source may write them: `1`, `"0,1"`, `"[0, 1]"`, empty
/// or absent for any.
pub(crate) fn qos_levels(text: &str) -> Result<Vec<u8>, String> {
    text.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(str::trim)
        .filter(|level| !level.is_empty())
        .map(|level| match level {
            "0" => Ok(0),
            "1" => Ok(1),
            "2" => Ok(2),
            other => Err(format!("QoS {other:?} is not 0, 1 or 2")),
        })
        .collect()
}

/// A retain flag as a source may write it: `1`/`true`, `0`/`false`, empty
/// or absent for either.
pub(crate) fn retain_flag(text: &str) -> Result<Option<bool>, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "all" | "any" => Ok(None),
        "1" | "true" | "t" => Ok(Some(true)),
        "0" | "false" | "f" => Ok(Some(false)),
        other => Err(format!("retain {other:?} is not true or false")),
    }
}

/// A rule from a JSON object (`permission`, `action`, `topic`, optional
/// `qos` as a number or list and `retain`), as the HTTP authorizer, Redis
/// values and JWT `acl` claims carry them; `permission` defaults to allow
/// where the source says so.
pub(crate) fn rule_from_json(
    value: &serde_json::Value,
    default_permission: Option<&str>,
) -> Result<RuleSpec, String> {
    let object = value.as_object().ok_or("a rule is not an object")?;
    let text = |name: &str| object.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
    let permission = text("permission")
        .or_else(|| default_permission.map(str::to_owned))
        .ok_or("a rule has no permission")?;
    let action = text("action").ok_or("a rule has no action")?;
    let topic = text("topic").ok_or("a rule has no topic")?;
    let qos = match object.get("qos") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Number(number)) => qos_levels(&number.to_string())?,
        Some(serde_json::Value::Array(levels)) => {
            let joined: Vec<String> = levels.iter().map(|level| level.to_string()).collect();
            qos_levels(&joined.join(","))?
        }
        Some(serde_json::Value::String(text)) => qos_levels(text)?,
        Some(other) => return Err(format!("qos {other} is not a number or a list")),
    };
    let retain = match object.get("retain") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Bool(flag)) => Some(*flag),
        Some(serde_json::Value::Number(number)) => retain_flag(&number.to_string())?,
        Some(serde_json::Value::String(text)) => retain_flag(text)?,
        Some(other) => return Err(format!("retain {other} is not true or false")),
    };
    Ok(RuleSpec { permission, action, topic, qos, retain })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_and_retain_are_read_as_sources_write_them() {
        assert_eq!(qos_levels("1"), Ok(vec![1]));
        assert_eq!(qos_levels("[0, 2]"), Ok(vec![0, 2]));
        assert_eq!(qos_levels(""), Ok(vec![]));
        assert!(qos_levels("3").is_err());
        assert_eq!(retain_flag("TRUE"), Ok(Some(true)));
        assert_eq!(retain_flag("0"), Ok(Some(false)));
        assert_eq!(retain_flag(""), Ok(None));
        assert!(retain_flag("maybe").is_err());
    }

    #[test]
    fn json_rules_are_checked() {
        let rule = rule_from_json(
            &serde_json::json!({"permission": "deny", "action": "pub", "topic": "t/#", "qos": [1, 2], "retain": true}),
            None,
        )
        .unwrap();
        assert_eq!(rule.qos, vec![1, 2]);
        assert_eq!(rule.retain, Some(true));
        assert!(rule_from_json(&serde_json::json!({"action": "pub", "topic": "t"}), None).is_err());
        assert_eq!(
            rule_from_json(&serde_json::json!({"action": "pub", "topic": "t"}), Some("allow"))
                .unwrap()
                .permission,
            "allow"
        );
        assert!(rule_from_json(&serde_json::json!(["t"]), None).is_err());
        assert!(rule_from_json(
            &serde_json::json!({"permission": "allow", "action": "pub", "topic": "t", "qos": {}}),
            None
        )
        .is_err());
    }
}
