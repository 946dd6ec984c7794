//! ACL rules for one client from an external source (a SQL table, Redis,
//! an HTTP service, a JWT's `acl` claim), as EMQX's authorization sources
//! return them: permission, action, topic, and optionally the QoS levels
//! and the retain flag a rule is about. They are checked in order and the
//! first that matches decides, exactly as the built-in rules are (see
//! `cluster::acl`: a subscription is allowed only if every topic it can
//! match is).
//!
//! Invariants:
//! - **What a source returns is hostile**: every field is checked, an
//!   unknown permission or action refuses the whole set (never read as
//!   "allow"), at most [`MAX_RULES`] rules and [`MAX_TOPIC_BYTES`] per
//!   topic.
//! - **A condition not known never widens**: an allow rule that names QoS
//!   levels or a retain flag does not match a check that does not say them;
//!   a deny rule does.
//! - `eq <filter>` matches that filter as written (wildcards as
//!   characters), as in EMQX; `${username}`/`%u` and `${clientid}`/`%c` are
//!   one literal level each, as in the built-in rules.

use mqtt_codec::QoS;

use crate::cluster::access::Identity;
use crate::cluster::acl::{Bearing, Pattern, Placeholders, Subject};
use crate::cluster::view::Action;
use crate::hooks::Verdict;

/// Most rules one client may have from one source.
pub const MAX_RULES: usize = 1024;
/// Longest topic filter in a rule.
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// A rule as a source spells it, before it is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSpec {
    /// `allow` or `deny`.
    pub permission: String,
    /// `publish` (`pub`), `subscribe` (`sub`) or `all`.
    pub action: String,
    pub topic: String,
    /// The QoS levels it is about; empty: any.
    pub qos: Vec<u8>,
    /// The retain flag it is about (publishes only); `None`: either.
    pub retain: Option<bool>,
}

/// Why a source's rules were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("rule {index}: permission {value:?} is not allow or deny")]
    Permission { index: usize, value: String },
    #[error("rule {index}: action {value:?} is not publish, subscribe or all")]
    Action { index: usize, value: String },
    #[error("rule {index}: QoS {value} is not 0, 1 or 2")]
    Qos { index: usize, value: u8 },
    #[error("rule {index}: {reason}")]
    Topic { index: usize, reason: String },
    #[error("{count} rules, over the limit of {MAX_RULES}")]
    TooMany { count: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Pattern(Pattern),
    /// `eq <filter>`: that text exactly.
    Exact(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    allow: bool,
    action: Action,
    target: Target,
    /// Bit `n` set: QoS `n` is named; 0: any.
    qos: u8,
    retain: Option<bool>,
}

/// One client's rules from one source, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    rules: Box<[Rule]>,
}

/// `allow`/`deny` as a source writes it.
pub fn parse_permission(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "allow" => Some(true),
        "deny" => Some(false),
        _ => None,
    }
}

/// `publish`/`subscribe`/`all` as a source writes it.
pub fn parse_action(text: &str) -> Option<Action> {
    match text.trim().to_ascii_lowercase().as_str() {
        "publish" | "pub" => Some(Action::Publish),
        "subscribe" | "sub" => Some(Action::Subscribe),
        "all" | "pubsub" => Some(Action::All),
        _ => None,
    }
}

impl RuleSet {
    /// Checks and compiles a source's rules, in their order.
    pub fn compile(specs: &[RuleSpec]) -> Result<RuleSet, RuleError> {
        if specs.len() > MAX_RULES {
            return Err(RuleError::TooMany { count: specs.len() });
        }
        let rules = specs
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                let allow = parse_permission(&spec.permission)
                    .ok_or_else(|| RuleError::Permission { index, value: spec.permission.clone() })?;
                let action = parse_action(&spec.action)
                    .ok_or_else(|| RuleError::Action { index, value: spec.action.clone() })?;
                let mut qos = 0u8;
                for &level in &spec.qos {
                    if level > 2 {
                        return Err(RuleError::Qos { index, value: level });
                    }
                    qos |= 1 << level;
                }
                let topic = spec.topic.trim();
                if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
                    return Err(RuleError::Topic { index, reason: "empty or too long a topic".into() });
                }
                let target = match topic.strip_prefix("eq ") {
                    Some(exact) => Target::Exact(Box::from(exact.trim())),
                    None => Target::Pattern(
                        Pattern::compile(topic)
                            .map_err(|error| RuleError::Topic { index, reason: error.to_string() })?,
                    ),
                };
                Ok(Rule { allow, action, target, qos, retain: spec.retain })
            })
            .collect::<Result<Vec<Rule>, RuleError>>()?;
        Ok(RuleSet { rules: rules.into() })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first matching rule's decision; `Ignore` when none matches.
    pub fn decide(&self, who: &Identity, action: Action, subject: Subject<'_>) -> Verdict<()> {
        let values = Placeholders { username: who.username.as_deref(), client_id: &who.client_id };
        let deny = Verdict::Deny(mqtt_codec::ReasonCode::NOT_AUTHORIZED);
        for rule in self.rules.iter() {
            if rule.action != Action::All && rule.action != action {
                continue;
            }
            if !rule.conditions_hold(action, subject) {
                continue;
            }
            let bearing = match &rule.target {
                Target::Pattern(pattern) => pattern.bearing(subject, values, rule.allow),
                Target::Exact(text) => {
                    if exact_matches(text, subject) {
                        Bearing::Covers
                    } else {
                        Bearing::None
                    }
                }
            };
            match bearing {
                Bearing::None => {}
                Bearing::Covers if rule.allow => return Verdict::Allow(()),
                Bearing::Covers => return deny,
                Bearing::Overlaps if !rule.allow => return deny,
                Bearing::Overlaps => {}
            }
        }
        Verdict::Ignore
    }
}

impl Rule {
    /// Whether the rule's QoS and retain conditions hold for `subject`; a
    /// condition the subject does not say holds for a deny rule only.
    fn conditions_hold(&self, action: Action, subject: Subject<'_>) -> bool {
        if self.qos != 0 {
            match subject.qos {
                Some(qos) if self.qos & (1 << qos_level(qos)) == 0 => return false,
                Some(_) => {}
                None if self.allow => return false,
                None => {}
            }
        }
        // Retain is about publishes; a subscription is not judged by it.
        if let (Some(wanted), Action::Publish) = (self.retain, action) {
            match subject.retain {
                Some(retain) if retain != wanted => return false,
                Some(_) => {}
                None if self.allow => return false,
                None => {}
            }
        }
        true
    }
}

fn qos_level(qos: QoS) -> u8 {
    qos as u8
}

/// `eq` rules: the subject's filter (with its share prefix) as written.
fn exact_matches(text: &str, subject: Subject<'_>) -> bool {
    match subject.group {
        None => text == subject.filter,
        Some("$queue") => text.strip_prefix("$queue/") == Some(subject.filter),
        Some(group) => {
            text.strip_prefix("$share/")
                .and_then(|rest| rest.strip_prefix(group))
                .and_then(|rest| rest.strip_prefix('/'))
                == Some(subject.filter)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn spec(permission: &str, action: &str, topic: &str) -> RuleSpec {
        RuleSpec {
            permission: permission.into(),
            action: action.into(),
            topic: topic.into(),
            ..Default::default()
        }
    }

    fn who() -> Identity {
        let mut who = Identity::anonymous(Arc::from("dev-1"), std::net::IpAddr::from([127, 0, 0, 1]));
        who.username = Some(Box::from("ann"));
        who
    }

    fn publish(topic: &str, qos: QoS, retain: bool) -> Subject<'_> {
        Subject { group: None, filter: topic, qos: Some(qos), retain: Some(retain) }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let set = RuleSet::compile(&[
            spec("deny", "all", "home/${username}/secret"),
            spec("allow", "all", "home/%u/#"),
            spec("deny", "all", "#"),
        ])
        .unwrap();
        let who = who();
        assert_eq!(
            set.decide(&who, Action::Publish, publish("home/ann/lamp", QoS::AtMostOnce, false)),
            Verdict::Allow(())
        );
        assert!(matches!(
            set.decide(&who, Action::Publish, publish("home/ann/secret", QoS::AtMostOnce, false)),
            Verdict::Deny(_)
        ));
        assert!(matches!(
            set.decide(&who, Action::Publish, publish("home/bob/lamp", QoS::AtMostOnce, false)),
            Verdict::Deny(_)
        ));
        // A subscription that reaches the denied topic is refused.
        assert!(matches!(
            set.decide(&who, Action::Subscribe, Subject::topic("home/ann/#")),
            Verdict::Deny(_)
        ));
        assert_eq!(set.decide(&who, Action::Subscribe, Subject::topic("home/ann/+/x")), Verdict::Allow(()));
        assert_eq!(RuleSet::default().decide(&who, Action::Publish, Subject::topic("t")), Verdict::Ignore);
    }

    #[test]
    fn qos_and_retain_conditions_never_widen() {
        let mut low = spec("allow", "publish", "t/#");
        low.qos = vec![0, 1];
        low.retain = Some(false);
        let set = RuleSet::compile(&[low]).unwrap();
        let who = who();
        assert_eq!(
            set.decide(&who, Action::Publish, publish("t/a", QoS::AtLeastOnce, false)),
            Verdict::Allow(())
        );
        assert_eq!(
            set.decide(&who, Action::Publish, publish("t/a", QoS::ExactlyOnce, false)),
            Verdict::Ignore
        );
        assert_eq!(set.decide(&who, Action::Publish, publish("t/a", QoS::AtMostOnce, true)), Verdict::Ignore);
        assert_eq!(
            set.decide(&who, Action::Publish, Subject::topic("t/a")),
            Verdict::Ignore,
            "QoS not known"
        );
        let mut high = spec("deny", "subscribe", "t/#");
        high.qos = vec![2];
        let set = RuleSet::compile(&[high, spec("allow", "subscribe", "t/#")]).unwrap();
        let at = |qos| Subject { qos: Some(qos), ..Subject::topic("t/x") };
        assert_eq!(set.decide(&who, Action::Subscribe, at(QoS::AtLeastOnce)), Verdict::Allow(()));
        assert!(matches!(set.decide(&who, Action::Subscribe, at(QoS::ExactlyOnce)), Verdict::Deny(_)));
        assert!(
            matches!(set.decide(&who, Action::Subscribe, Subject::topic("t/x")), Verdict::Deny(_)),
            "not known: the deny holds"
        );
    }

    #[test]
    fn eq_matches_the_filter_as_written() {
        let set = RuleSet::compile(&[
            spec("allow", "subscribe", "eq t/#"),
            spec("allow", "sub", "eq $share/g/j/+"),
        ])
        .unwrap();
        let who = who();
        assert_eq!(set.decide(&who, Action::Subscribe, Subject::topic("t/#")), Verdict::Allow(()));
        assert_eq!(set.decide(&who, Action::Subscribe, Subject::topic("t/a")), Verdict::Ignore);
        let shared = |group| Subject { group: Some(group), ..Subject::topic("j/+") };
        assert_eq!(set.decide(&who, Action::Subscribe, shared("g")), Verdict::Allow(()));
        assert_eq!(set.decide(&who, Action::Subscribe, shared("h")), Verdict::Ignore);
    }

    #[test]
    fn what_a_source_returns_is_checked() {
        for (bad, expect) in [
            (spec("alow", "publish", "t"), "permission"),
            (spec("allow", "write", "t"), "action"),
            (spec("allow", "publish", ""), "topic"),
            (spec("allow", "publish", "a/#/b"), "last level"),
            (RuleSpec { qos: vec![3], ..spec("allow", "publish", "t") }, "QoS"),
        ] {
            let error = RuleSet::compile(&[bad]).unwrap_err().to_string();
            assert!(error.contains(expect), "{error}");
        }
        let many = vec![spec("allow", "all", "t"); MAX_RULES + 1];
        assert!(matches!(RuleSet::compile(&many), Err(RuleError::TooMany { .. })));
    }
}
