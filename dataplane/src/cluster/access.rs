//! Who may connect, publish and subscribe: bans, users and ACL rules from the
//! control plane's view, and the anonymous-access policy from the config.
//!
//! Reads only the current `ClusterView` (a lock-free `ArcSwap` load). The
//! one slow step, checking an argon2id hash, runs on the bounded pool of
//! `verify` with a timeout, never on a connection's task. Topic decisions
//! are `acl`'s; `recheck` judges a live client again after a change.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use mqtt_codec::ReasonCode;

use super::acl::{Bearing, Placeholders, Subject};
use super::verify::{Verifier, VerifyError};
use super::view::{AclEntry, Action, BanTarget, ClusterView, Who};
use crate::config::{AclNoMatch, AnonymousPolicy, AuthConfig};
use crate::hooks::{Authenticator, Authorizer, ConnectRequest, HookFuture, Verdict};
#[cfg(test)]
use crate::topic::ParsedFilter;

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
    /// The password hash this client proved it knows; `None` when it got
    /// in anonymously. A live client whose user is gone, or whose hash
    /// changed, is disconnected.
    pub credential: Option<Arc<str>>,
    /// Let in by an authenticator other than the built-in one: a change to
    /// the built-in users does not judge it again (bans still do).
    pub external: bool,
    /// Rules held for this client: from its authenticator (a JWT's `acl`
    /// claim) and from external authorizers (`auth::external`).
    pub acl: Option<Arc<crate::auth::external::ClientAcl>>,
}

impl Identity {
    /// An anonymous client at `address`.
    pub fn anonymous(client_id: Arc<str>, address: IpAddr) -> Identity {
        Identity {
            client_id,
            username: None,
            address,
            superuser: false,
            credential: None,
            external: false,
            acl: None,
        }
    }
}

/// What a successful authentication grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub superuser: bool,
    /// See [`Identity::credential`].
    pub credential: Option<Arc<str>>,
    /// Granted by an authenticator other than the built-in one; see
    /// [`Identity::external`].
    pub external: bool,
    /// The username the client is known by from now on, when the
    /// authenticator gives one (`x509`: the certificate's name); `None`
    /// keeps the one in CONNECT.
    pub username: Option<Box<str>>,
    /// ACL rules the authenticator carries (a JWT's `acl` claim), checked
    /// before the authorizer chain.
    pub rules: Option<crate::auth::client_rules::RuleSet>,
    /// When the credential stops being good (a JWT's `exp`): the client is
    /// disconnected then.
    pub expires_at: Option<std::time::Instant>,
    /// The client id the client is known by from now on, when the
    /// authenticator gives one (`x509` with `clientid`); `None` keeps the
    /// one in CONNECT.
    pub client_id: Option<Box<str>>,
}

/// How a client is refused when no authenticator decides: 0x86 (bad user
/// name or password) if it gave a username, else 0x87 (not authorized).
pub fn default_refusal(username: Option<&str>) -> ReasonCode {
    if username.is_some() {
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    } else {
        ReasonCode::NOT_AUTHORIZED
    }
}

/// Access decisions for one data-plane node.
#[derive(Debug)]
pub struct AccessControl {
    view: Arc<ArcSwap<ClusterView>>,
    config: AuthConfig,
    verifier: Verifier,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl AccessControl {
    pub fn new(view: Arc<ArcSwap<ClusterView>>, config: AuthConfig) -> AccessControl {
        let verifier = Verifier::new(
            config.password_check_threads,
            config.password_check_queue,
            config.password_checks_per_username,
            config.password_checks_per_address,
            super::recent_checks::RecentChecks::new(
                config.password_cache_entries,
                Duration::from_secs(config.password_cache_ttl_s),
            ),
        );
        AccessControl { view, config, verifier }
    }

    /// Waits (up to `limit`) for the first view from the control plane;
    /// returns whether it is there.
    pub async fn wait_loaded(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.view.load().loaded {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// The view that decisions are made from.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.load_full()
    }

    /// Checks what comes before any authenticator: the node holds a view
    /// (else 0x88, server unavailable) and the client is not banned (0x8A).
    pub fn admission(
        &self,
        client_id: &str,
        username: Option<&str>,
        address: IpAddr,
    ) -> Result<(), ReasonCode> {
        let view = self.view.load();
        if !view.loaded {
            return Err(ReasonCode::SERVER_UNAVAILABLE);
        }
        if is_banned(&view, client_id, username, address) {
            return Err(ReasonCode::BANNED);
        }
        Ok(())
    }

    /// The built-in authenticator alone: what the chain would answer with
    /// no other authenticator. Returns what it grants, or the CONNACK reason
    /// that refuses the client.
    pub async fn authenticate(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
        address: IpAddr,
    ) -> Result<Grant, ReasonCode> {
        match self.verdict_authenticate(username, password, address).await {
            Verdict::Allow(grant) => Ok(grant),
            Verdict::Deny(reason) => Err(reason),
            Verdict::Ignore => Err(default_refusal(username)),
        }
    }

    /// The built-in authenticator: a known user's password decides (Allow
    /// or Deny); the anonymous policy may allow; anything else (an unknown
    /// username, after the same work a known one costs, or an anonymous
    /// client the policy does not let in) is left to the next authenticator.
    async fn verdict_authenticate(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
        address: IpAddr,
    ) -> Verdict<Grant> {
        let view = self.view.load_full();
        if !view.loaded {
            return Verdict::Deny(ReasonCode::SERVER_UNAVAILABLE);
        }
        if let Some(name) = username {
            let user = view.users.get(name);
            if user.is_some() || view.has_users() {
                let Some(password) = password else {
                    return match user {
                        Some(_) => Verdict::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
                        None => Verdict::Ignore,
                    };
                };
                let phc = user.map(|user| &*user.password_hash);
                let checked =
                    tokio::time::timeout(VERIFY_TIMEOUT, self.verifier.verify(name, address, phc, password))
                        .await;
                return match (checked, user) {
                    (Ok(Ok(true)), Some(user)) => Verdict::Allow(Grant {
                        superuser: user.superuser,
                        credential: Some(user.password_hash.clone()),
                        external: false,
                        username: None,
                        rules: None,
                        expires_at: None,
                        client_id: None,
                    }),
                    (Ok(Ok(_)), Some(_)) => Verdict::Deny(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
                    (Ok(Ok(_)), None) => Verdict::Ignore,
                    (Ok(Err(VerifyError::Busy)), _) => Verdict::Deny(ReasonCode::SERVER_BUSY),
                    _ => Verdict::Deny(ReasonCode::SERVER_UNAVAILABLE),
                };
            }
        }
        if self.anonymous_ok(&view, address) {
            Verdict::Allow(Grant {
                superuser: false,
                credential: None,
                external: false,
                username: None,
                rules: None,
                expires_at: None,
                client_id: None,
            })
        } else {
            Verdict::Ignore
        }
    }

    fn anonymous_ok(&self, view: &ClusterView, address: IpAddr) -> bool {
        match self.config.allow_anonymous {
            AnonymousPolicy::Allow => true,
            AnonymousPolicy::Deny => false,
            // As in Mosquitto 2: open on loopback only until auth is configured.
            AnonymousPolicy::Loopback => address.is_loopback() && !view.has_users(),
        }
    }

    /// Would a connected client still be let in, as the view stands now?
    /// Refreshes its superuser flag; returns the DISCONNECT reason if not:
    /// banned (0x98, administrative action), or its user deleted, its
    /// password changed, or anonymous access ended (0x87).
    /// The SCRAM-SHA-256 verifier of `username`, if the user exists and has
    /// one, and the key made-up salts are made with for the others (the
    /// cluster's peer secret: every node answers alike for a name).
    pub fn scram(&self, username: &str) -> (Option<Arc<crate::auth::scram::Verifier>>, Vec<u8>) {
        let view = self.view.load();
        let verifier = view.users.get(username).and_then(|user| user.scram.clone());
        let secret = match &*view.peer_secret {
            "" => crate::auth::scram::node_secret().to_vec(),
            shared => format!("scram-salt:{shared}").into_bytes(),
        };
        (verifier, secret)
    }

    /// What a user who proved its password by SCRAM is granted (`None`:
    /// the user is gone meanwhile).
    pub fn scram_grant(&self, username: &str) -> Option<Grant> {
        let view = self.view.load();
        view.users.get(username).map(|user| Grant {
            superuser: user.superuser,
            credential: Some(user.password_hash.clone()),
            external: false,
            username: None,
            rules: None,
            expires_at: None,
            client_id: None,
        })
    }

    pub fn recheck(&self, who: &mut Identity) -> Result<(), ReasonCode> {
        let view = self.view.load();
        if !view.loaded {
            return Ok(()); // a node keeps its last view; nothing new to judge by
        }
        if is_banned(&view, &who.client_id, who.username.as_deref(), who.address) {
            return Err(ReasonCode::ADMINISTRATIVE_ACTION);
        }
        if who.acl.as_ref().is_some_and(|acl| acl.expired()) {
            return Err(ReasonCode::NOT_AUTHORIZED);
        }
        if who.external {
            return Ok(());
        }
        let user = who.username.as_deref().and_then(|name| view.users.get(name));
        match (&who.credential, user) {
            (Some(credential), Some(user)) if **credential == *user.password_hash => {
                who.superuser = user.superuser;
                Ok(())
            }
            (Some(_), _) => Err(ReasonCode::NOT_AUTHORIZED),
            (None, Some(_)) => Err(ReasonCode::NOT_AUTHORIZED),
            (None, None) if who.username.is_some() && view.has_users() => Err(ReasonCode::NOT_AUTHORIZED),
            (None, None) if self.anonymous_ok(&view, who.address) => Ok(()),
            (None, None) => Err(ReasonCode::NOT_AUTHORIZED),
        }
    }

    /// May `who` publish to `topic_name`, by the built-in rules alone?
    /// (For unit tests; the broker asks the whole chain, `Broker::may_publish`.)
    #[cfg(test)]
    pub fn may_publish(&self, who: &Identity, topic_name: &str) -> bool {
        self.decide(who, Action::Publish, Subject::topic(topic_name))
    }

    /// May `who` subscribe to `filter`, by the built-in rules alone? Only if
    /// every topic the filter can match is one `who` may subscribe to (see
    /// `acl`). (For unit tests, as `may_publish`.)
    #[cfg(test)]
    pub fn may_subscribe(&self, who: &Identity, filter: &ParsedFilter<'_>) -> bool {
        let group = match filter {
            ParsedFilter::Shared { group, .. } => Some(*group),
            _ => None,
        };
        self.decide(
            who,
            Action::Subscribe,
            Subject { group, filter: filter.filter(), qos: None, retain: None },
        )
    }

    /// The built-in decision alone, as the chain would give it with no
    /// other authorizer.
    #[cfg(test)]
    fn decide(&self, who: &Identity, action: Action, subject: Subject<'_>) -> bool {
        if who.superuser {
            return true;
        }
        match self.verdict(who, action, subject) {
            Verdict::Allow(()) => true,
            Verdict::Deny(_) => false,
            Verdict::Ignore => self.no_match_allows(),
        }
    }

    /// True once any user exists (authentication is configured).
    pub fn has_users(&self) -> bool {
        self.view.load().has_users()
    }

    /// What `auth.acl_no_match` says when no authorizer decides.
    pub fn no_match_allows(&self) -> bool {
        self.config.acl_no_match == AclNoMatch::Allow
    }

    /// The first rule that bears on the subject decides: an overlapping deny
    /// refuses, an allow decides once it covers the whole subject; an
    /// unreadable rule or a view not yet loaded refuses; no rule: `Ignore`.
    fn verdict(&self, who: &Identity, action: Action, subject: Subject<'_>) -> Verdict<()> {
        let deny = Verdict::Deny(ReasonCode::NOT_AUTHORIZED);
        let view = self.view.load();
        if !view.loaded {
            return deny;
        }
        let values = Placeholders { username: who.username.as_deref(), client_id: &who.client_id };
        for entry in view.acl.iter() {
            let rule = match entry {
                AclEntry::Rule(rule) => rule,
                AclEntry::Unreadable { .. } => return deny,
            };
            let applies_to_action = rule.action == Action::All || rule.action == action;
            if !applies_to_action || !applies_to(&rule.who, who) {
                continue;
            }
            match rule.pattern.bearing(subject, values, rule.allow) {
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

/// The built-in authenticator (`type = "builtin"`).
impl Authenticator for AccessControl {
    fn authenticate<'a>(&'a self, request: ConnectRequest<'a>) -> HookFuture<'a, Verdict<Grant>> {
        Box::pin(self.verdict_authenticate(request.username, request.password, request.address))
    }

    fn is_builtin(&self) -> bool {
        true
    }
}

/// The built-in ACL rules (`type = "builtin"`).
impl Authorizer for AccessControl {
    fn authorize(&self, who: &Identity, action: Action, subject: Subject<'_>) -> Verdict<()> {
        self.verdict(who, action, subject)
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
            credential: None,
            external: false,
            acl: None,
        }
    }

    fn access(rules: Vec<AclRule>, no_match: AclNoMatch) -> AccessControl {
        let acl = rules.into_iter().map(AclEntry::Rule).collect();
        let view = ClusterView { acl: Arc::new(acl), loaded: true, ..Default::default() };
        let config = AuthConfig { acl_no_match: no_match, ..Default::default() };
        AccessControl::new(Arc::new(ArcSwap::from_pointee(view)), config)
    }

    fn rule(who: Who, action: Action, filter: &str, allow: bool) -> AclRule {
        let pattern = crate::cluster::acl::Pattern::compile(filter).expect("valid rule filter");
        AclRule { who, action, topic_filter: filter.into(), pattern, allow }
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
        assert!(!acl.may_subscribe(&bob, &ParsedFilter::Plain("secret/x")), "bob's rule is for publish only");
        assert!(acl.may_publish(&eve, "home/eve/lamp"));
        assert!(!acl.may_publish(&eve, "home/bob/lamp"));
        assert!(!acl.may_publish(&anon, "home//lamp"), "%u never matches without a username");
        assert!(acl.may_subscribe(&anon, &ParsedFilter::Plain("clients/c3")));
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
        users.insert(
            "bob".to_string(),
            User { password_hash: Arc::from(hash.as_str()), superuser: true, scram: None },
        );
        let bans =
            vec![crate::cluster::view::Ban { target: BanTarget::ClientId("evil".into()), until_ms: None }];
        let view =
            ClusterView { users: Arc::new(users), bans: Arc::new(bans), loaded: true, ..Default::default() };
        let access = AccessControl::new(Arc::new(ArcSwap::from_pointee(view)), AuthConfig::default());
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "192.0.2.1".parse().unwrap();
        let granted = access.authenticate(Some("bob"), Some(b"pw"), remote).await.expect("bob is let in");
        assert!(granted.superuser);
        assert_eq!(
            access.authenticate(Some("bob"), Some(b"no"), local).await,
            Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        );
        assert_eq!(
            access.authenticate(Some("mallory"), Some(b"pw"), local).await,
            Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        );
        assert_eq!(
            access.authenticate(None, None, local).await,
            Err(ReasonCode::NOT_AUTHORIZED),
            "once users exist, anonymous loopback access ends"
        );
        assert_eq!(access.authenticate(None, None, remote).await, Err(ReasonCode::NOT_AUTHORIZED));
        let loaded = ClusterView { loaded: true, ..Default::default() };
        let open = AccessControl::new(Arc::new(ArcSwap::from_pointee(loaded)), AuthConfig::default());
        assert_eq!(
            open.authenticate(None, None, local).await,
            Ok(Grant {
                superuser: false,
                credential: None,
                external: false,
                username: None,
                rules: None,
                expires_at: None,
                client_id: None,
            }),
            "no users: loopback is open"
        );
        assert_eq!(open.authenticate(None, None, remote).await, Err(ReasonCode::NOT_AUTHORIZED));
        assert_eq!(access.admission("evil", None, local), Err(ReasonCode::BANNED));
        assert_eq!(access.admission("good", None, local), Ok(()));
    }

    #[test]
    fn wildcard_subscriptions_do_not_pass_deny_rules() {
        let acl = access(vec![rule(Who::All, Action::Subscribe, "secret/#", false)], AclNoMatch::Allow);
        let eve = identity(Some("eve"), "c", "127.0.0.1");
        for filter in ["#", "secret/+", "+/x", "secret/#", "+/+"] {
            assert!(!acl.may_subscribe(&eve, &ParsedFilter::Plain(filter)), "{filter}");
        }
        assert!(!acl.may_subscribe(&eve, &ParsedFilter::Shared { group: "g", filter: "#" }));
        assert!(acl.may_subscribe(&eve, &ParsedFilter::Plain("public/#")));
        assert!(acl.may_subscribe(&eve, &ParsedFilter::Plain("$SYS/#")), "# never matched $SYS");
    }

    #[test]
    fn allow_rules_grant_only_filters_they_cover() {
        let acl = access(vec![rule(Who::All, Action::Subscribe, "sensors/+", true)], AclNoMatch::Deny);
        let eve = identity(Some("eve"), "c", "127.0.0.1");
        assert!(acl.may_subscribe(&eve, &ParsedFilter::Plain("sensors/+")));
        assert!(acl.may_subscribe(&eve, &ParsedFilter::Plain("sensors/t1")));
        assert!(!acl.may_subscribe(&eve, &ParsedFilter::Plain("sensors/#")));
        assert!(!acl.may_subscribe(&eve, &ParsedFilter::Plain("#")));
    }

    #[test]
    fn placeholders_filled_with_wildcards_grant_nothing_more() {
        let acl = access(vec![rule(Who::All, Action::All, "clients/%c/#", true)], AclNoMatch::Deny);
        for id in ["#", "+", "a/b", "$SYS"] {
            let who = identity(Some(id), id, "127.0.0.1");
            assert!(!acl.may_subscribe(&who, &ParsedFilter::Plain("clients/#")), "{id}");
            assert!(!acl.may_subscribe(&who, &ParsedFilter::Plain("clients/+/x")), "{id}");
            assert!(!acl.may_publish(&who, "clients/other/x"), "{id}");
        }
        let users = access(vec![rule(Who::All, Action::All, "home/%u/#", true)], AclNoMatch::Deny);
        let empty = identity(Some(""), "c", "127.0.0.1");
        assert!(!users.may_publish(&empty, "home//x"), "an empty username is no home");
        assert!(
            !users.may_subscribe(&identity(Some("+"), "c", "127.0.0.1"), &ParsedFilter::Plain("home/+/#"))
        );
        assert!(
            users.may_subscribe(&identity(Some("ann"), "c", "127.0.0.1"), &ParsedFilter::Plain("home/ann/#"))
        );
    }

    #[test]
    fn share_groups_can_be_constrained() {
        let acl = access(
            vec![
                rule(Who::All, Action::Subscribe, "$share/workers/jobs/#", true),
                rule(Who::All, Action::Subscribe, "$share/+/jobs/#", false),
            ],
            AclNoMatch::Allow,
        );
        let eve = identity(Some("eve"), "c", "127.0.0.1");
        assert!(acl.may_subscribe(&eve, &ParsedFilter::Shared { group: "workers", filter: "jobs/a" }));
        assert!(!acl.may_subscribe(&eve, &ParsedFilter::Shared { group: "spies", filter: "jobs/a" }));
        assert!(!acl.may_subscribe(&eve, &ParsedFilter::Shared { group: "spies", filter: "#" }));
        assert!(acl.may_subscribe(&eve, &ParsedFilter::Plain("jobs/a")), "group rules leave plain filters");
    }

    #[test]
    fn unreadable_rules_and_unloaded_views_deny() {
        let acl = access(vec![rule(Who::All, Action::All, "open/#", true)], AclNoMatch::Allow);
        let eve = identity(Some("eve"), "c", "127.0.0.1");
        let mut view = (*acl.view()).clone();
        Arc::make_mut(&mut view.acl).push(AclEntry::Unreadable { id: 7 });
        acl.view.store(Arc::new(view.clone()));
        assert!(acl.may_publish(&eve, "open/x"), "rules before the unreadable one still decide");
        assert!(!acl.may_publish(&eve, "other"), "reaching an unreadable rule denies");
        view.loaded = false;
        acl.view.store(Arc::new(view));
        assert!(!acl.may_publish(&eve, "open/x"));
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        const LEVELS: [&str; 6] = ["a", "b", "+", "#", "%u", "%c"];
        const NAMES: [&str; 6] = ["a", "b", "#", "+", "", "a/b"];

        fn filter_from(levels: &[usize], table: &[&str]) -> String {
            let mut out: Vec<&str> = levels.iter().map(|&i| table[i % table.len()]).collect();
            // `#` only last.
            if let Some(pos) = out.iter().position(|l| *l == "#") {
                out.truncate(pos + 1);
            }
            out.join("/")
        }

        /// The publish-side reference: substitute placeholders as text and
        /// match each rule against the topic; the first match decides.
        fn reference(rules: &[AclRule], who: &Identity, topic: &str, no_match: bool) -> bool {
            for rule in rules {
                let mut levels = Vec::new();
                let mut skip = false;
                for level in rule.topic_filter.split('/') {
                    let value = match level {
                        "%u" => who.username.as_deref(),
                        "%c" => Some(&*who.client_id),
                        _ => {
                            levels.push(level.to_string());
                            continue;
                        }
                    };
                    match value {
                        Some(v) if !v.is_empty() && !v.contains(['/', '+', '#']) && !v.starts_with('$') => {
                            levels.push(v.to_string())
                        }
                        _ if rule.allow => skip = true,
                        _ => levels.push("+".into()),
                    }
                }
                if skip {
                    continue;
                }
                if crate::topic::matches(&levels.join("/"), topic) {
                    return rule.allow;
                }
            }
            no_match
        }

        /// Every topic of one to four levels over a, b, c and the empty
        /// level, and a `$` topic.
        fn topics() -> Vec<String> {
            let mut layer = vec![String::new()];
            let mut out = vec!["$SYS/a".to_string()];
            for depth in 0..4 {
                layer = layer
                    .iter()
                    .flat_map(|prefix| {
                        ["a", "b", "c", ""].map(|l| {
                            if depth == 0 {
                                l.to_string()
                            } else {
                                format!("{prefix}/{l}")
                            }
                        })
                    })
                    .collect();
                out.extend(layer.iter().cloned());
            }
            out
        }

        proptest! {
            #[test]
            fn subscribe_never_admits_a_denied_topic(
                specs in proptest::collection::vec(
                    (proptest::collection::vec(0usize..6, 1..4), any::<bool>()), 0..5),
                filter in proptest::collection::vec(0usize..4, 1..4),
                user in 0usize..7,
                client in 0usize..6,
                no_match in any::<bool>(),
            ) {
                let rules: Vec<AclRule> = specs
                    .iter()
                    .map(|(levels, allow)| rule(Who::All, Action::Subscribe, &filter_from(levels, &LEVELS), *allow))
                    .collect();
                let policy = if no_match { AclNoMatch::Allow } else { AclNoMatch::Deny };
                let acl = access(rules.clone(), policy);
                let who = identity(NAMES.get(user).copied(), NAMES[client], "127.0.0.1");
                let filter = filter_from(&filter, &["a", "b", "+", "#"]);
                if acl.may_subscribe(&who, &ParsedFilter::Plain(&filter)) {
                    for topic in topics() {
                        if crate::topic::matches(&filter, &topic) {
                            prop_assert!(reference(&rules, &who, &topic, no_match),
                                "{filter} admitted but {topic} is denied");
                        }
                    }
                }
                if !filter.contains(['+', '#']) {
                    prop_assert_eq!(acl.may_subscribe(&who, &ParsedFilter::Plain(&filter)),
                        reference(&rules, &who, &filter, no_match));
                }
            }
        }
    }
}
