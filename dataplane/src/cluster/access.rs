//! Who may connect, publish and subscribe: bans, users and ACL rules from the
//! control plane's view, and the anonymous-access policy from the config.
//!
//! Reads only the current `ClusterView` (a lock-free `ArcSwap` load). The
//! one slow step, checking an argon2id hash, runs on the blocking pool with
//! a timeout, never on a connection's task.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use mqtt_codec::ReasonCode;

use super::view::{Action, BanTarget, ClusterView, Who};
use crate::config::{AclNoMatch, AnonymousPolicy, AuthConfig};
use crate::topic;

/// How long a password check may take.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// A client as access rules see it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub client_id: Arc<str>,
    pub username: Option<Box<str>>,
    pub address: IpAddr,
    /// Superusers pass every ACL check.
    pub superuser: bool,
}

/// Access decisions for one data-plane node.
#[derive(Debug)]
pub struct AccessControl {
    view: Arc<ArcSwap<ClusterView>>,
    config: AuthConfig,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl AccessControl {
    pub fn new(view: Arc<ArcSwap<ClusterView>>, config: AuthConfig) -> AccessControl {
        AccessControl { view, config }
    }

    /// The view that decisions are made from.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.load_full()
    }

    /// Decides whether a client may connect. Returns whether it is a
    /// superuser, or the CONNACK reason that refuses it.
    pub async fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
        address: IpAddr,
    ) -> Result<bool, ReasonCode> {
        let view = self.view.load_full();
        if is_banned(&view, client_id, username, address) {
            return Err(ReasonCode::BANNED);
        }
        if let Some(name) = username {
            if let Some(user) = view.users.get(name) {
                let Some(password) = password else { return Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD) };
                let hash = user.password_hash.clone();
                let password = password.to_vec();
                let check = tokio::task::spawn_blocking(move || verify(&hash, &password));
                return match tokio::time::timeout(VERIFY_TIMEOUT, check).await {
                    Ok(Ok(true)) => Ok(user.superuser),
                    Ok(Ok(false)) => Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
                    _ => Err(ReasonCode::SERVER_UNAVAILABLE),
                };
            }
            if view.has_users() {
                // An unknown user where users are defined is refused, not anonymous.
                return Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
            }
        }
        let anonymous_ok = match self.config.allow_anonymous {
            AnonymousPolicy::Allow => true,
            AnonymousPolicy::Deny => false,
            // As in Mosquitto 2: open on loopback only until auth is configured.
            AnonymousPolicy::Loopback => address.is_loopback() && !view.has_users(),
        };
        if anonymous_ok {
            Ok(false)
        } else if username.is_some() {
            Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        } else {
            Err(ReasonCode::NOT_AUTHORIZED)
        }
    }

    /// May `who` publish to `topic_name`?
    pub fn may_publish(&self, who: &Identity, topic_name: &str) -> bool {
        self.check(who, Action::Publish, topic_name)
    }

    /// May `who` subscribe to `filter` (prefixes already removed)?
    pub fn may_subscribe(&self, who: &Identity, filter: &str) -> bool {
        self.check(who, Action::Subscribe, filter)
    }

    fn check(&self, who: &Identity, action: Action, topic_or_filter: &str) -> bool {
        if who.superuser {
            return true;
        }
        let view = self.view.load();
        for rule in view.acl.iter() {
            let applies_to_action = rule.action == Action::All || rule.action == action;
            if !applies_to_action || !applies_to(&rule.who, who) {
                continue;
            }
            let filter = expand(&rule.topic_filter, who);
            if topic::matches(&filter, topic_or_filter) {
                return rule.allow;
            }
        }
        self.config.acl_no_match == AclNoMatch::Allow
    }
}

fn applies_to(rule: &Who, who: &Identity) -> bool {
    match rule {
        Who::All => true,
        Who::Username(name) => who.username.as_deref() == Some(name.as_str()),
        Who::ClientId(id) => &*who.client_id == id.as_str(),
        Who::Network(net) => net.contains(&who.address),
    }
}

/// Replaces `%u` and `%c` in a rule's filter. A rule with `%u` never matches
/// a client without a username.
fn expand(filter: &str, who: &Identity) -> String {
    if !filter.contains('%') {
        return filter.to_string();
    }
    let username = who.username.as_deref().unwrap_or("\u{0}");
    filter.replace("%u", username).replace("%c", &who.client_id)
}

fn is_banned(view: &ClusterView, client_id: &str, username: Option<&str>, address: IpAddr) -> bool {
    let now = now_ms();
    view.bans.iter().any(|ban| {
        ban.until_ms.is_none_or(|until| until > now)
            && match &ban.target {
                BanTarget::ClientId(id) => id == client_id,
                BanTarget::Username(name) => Some(name.as_str()) == username,
                BanTarget::Network(net) => net.contains(&address),
            }
    })
}

/// Checks a password against a PHC string (argon2id).
fn verify(phc: &str, password: &[u8]) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(phc) {
        Ok(hash) => argon2::Argon2::default().verify_password(password, &hash).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::view::{AclRule, User};

    fn identity(username: Option<&str>, client_id: &str, ip: &str) -> Identity {
        Identity {
            client_id: Arc::from(client_id),
            username: username.map(Box::from),
            address: ip.parse().unwrap(),
            superuser: false,
        }
    }

    fn access(rules: Vec<AclRule>, no_match: AclNoMatch) -> AccessControl {
        let view = ClusterView { acl: Arc::new(rules), ..Default::default() };
        let config = AuthConfig { acl_no_match: no_match, ..Default::default() };
        AccessControl::new(Arc::new(ArcSwap::from_pointee(view)), config)
    }

    fn rule(who: Who, action: Action, filter: &str, allow: bool) -> AclRule {
        AclRule { who, action, topic_filter: filter.into(), allow }
    }

    #[test]
    fn first_matching_rule_wins_with_placeholders() {
        let acl = access(
            vec![
                rule(Who::Username("bob".into()), Action::Publish, "secret/#", true),
                rule(Who::All, Action::All, "secret/#", false),
                rule(Who::All, Action::Publish, "home/%u/#", true),
                rule(Who::All, Action::Subscribe, "clients/%c", true),
                rule(Who::Network("10.0.0.0/8".parse().unwrap()), Action::All, "lan/#", true),
            ],
            AclNoMatch::Deny,
        );
        let bob = identity(Some("bob"), "c1", "127.0.0.1");
        let eve = identity(Some("eve"), "c2", "10.1.2.3");
        let anon = identity(None, "c3", "127.0.0.1");
        assert!(acl.may_publish(&bob, "secret/x"));
        assert!(!acl.may_publish(&eve, "secret/x"));
        assert!(!acl.may_subscribe(&bob, "secret/x"), "bob's rule is for publish only");
        assert!(acl.may_publish(&eve, "home/eve/lamp"));
        assert!(!acl.may_publish(&eve, "home/bob/lamp"));
        assert!(!acl.may_publish(&anon, "home//lamp"), "%u never matches without a username");
        assert!(acl.may_subscribe(&anon, "clients/c3"));
        assert!(acl.may_publish(&eve, "lan/printer"));
        assert!(!acl.may_publish(&bob, "lan/printer"), "not in 10/8; no match means deny");
        let root = Identity { superuser: true, ..anon };
        assert!(acl.may_publish(&root, "secret/x"));
    }

    #[tokio::test]
    async fn passwords_bans_and_anonymous_policy() {
        use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut OsRng);
        let hash = argon2::Argon2::default().hash_password(b"pw", &salt).unwrap().to_string();
        let mut users = std::collections::HashMap::new();
        users.insert("bob".to_string(), User { password_hash: hash, superuser: true });
        let bans =
            vec![crate::cluster::view::Ban { target: BanTarget::ClientId("evil".into()), until_ms: None }];
        let view = ClusterView { users: Arc::new(users), bans: Arc::new(bans), ..Default::default() };
        let access = AccessControl::new(Arc::new(ArcSwap::from_pointee(view)), AuthConfig::default());
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(access.authenticate("c", Some("bob"), Some(b"pw"), remote).await, Ok(true));
        assert_eq!(
            access.authenticate("c", Some("bob"), Some(b"no"), local).await,
            Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        );
        assert_eq!(
            access.authenticate("c", Some("mallory"), Some(b"pw"), local).await,
            Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        );
        assert_eq!(
            access.authenticate("c", None, None, local).await,
            Err(ReasonCode::NOT_AUTHORIZED),
            "once users exist, anonymous loopback access ends"
        );
        assert_eq!(access.authenticate("c", None, None, remote).await, Err(ReasonCode::NOT_AUTHORIZED));
        let open = AccessControl::new(Default::default(), AuthConfig::default());
        assert_eq!(open.authenticate("c", None, None, local).await, Ok(false), "no users: loopback is open");
        assert_eq!(open.authenticate("c", None, None, remote).await, Err(ReasonCode::NOT_AUTHORIZED));
        assert_eq!(access.authenticate("evil", None, None, local).await, Err(ReasonCode::BANNED));
    }
}
