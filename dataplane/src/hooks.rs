//! Hook points on the broker's door: ordered chains that decide
//! (authenticate, authorize) and observers that are told what happens
//! (clients, sessions, messages).
//!
//! Invariants:
//! - **Chains decide in order**: the first hook that answers `Allow` or
//!   `Deny` decides; `Ignore` asks the next. The built-in users and ACL
//!   rules from the control plane take the places `auth` gives them (by
//!   default, alone in each chain; see `auth`). Superusers pass every
//!   authorizer.
//! - **Hooks on the hot path are synchronous and cheap**: authorizers and
//!   observers run on the caller's task and must not block. Anything slow
//!   or remote goes through [`QueuedObserver`], a bounded queue that counts
//!   what it drops and never makes the caller wait.
//! - Observers are called only for what they said they want
//!   ([`Interests`]), so a broker with no message observer pays nothing per
//!   delivery.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mqtt_codec::ReasonCode;
use tokio::sync::mpsc;

use crate::cluster::access::{Grant, Identity};
use crate::cluster::acl::Subject;
use crate::cluster::view::Action;
use crate::message::Message;

/// A hook's answer in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<T> {
    Allow(T),
    /// Refused, with the reason a client is told.
    Deny(ReasonCode),
    /// No opinion: the next hook decides.
    Ignore,
}

/// What a protocol knows of a client that asks to connect.
#[derive(Debug, Clone, Copy)]
pub struct ConnectRequest<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// Already normalised (IPv4-mapped IPv6 addresses as IPv4).
    pub address: std::net::IpAddr,
    /// The client certificate TLS verified (DER), if any.
    pub certificate: Option<&'a [u8]>,
}

/// A future a hook returns.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Decides who may connect.
pub trait Authenticator: Send + Sync + Debug {
    fn authenticate<'a>(&'a self, request: ConnectRequest<'a>) -> HookFuture<'a, Verdict<Grant>>;

    /// True only for the built-in users: what another authenticator lets
    /// in is marked [`Grant::external`].
    fn is_builtin(&self) -> bool {
        false
    }
}

/// Decides what a client may publish or subscribe to. Synchronous: it runs
/// on every publish.
pub trait Authorizer: Send + Sync + Debug {
    fn authorize(&self, who: &Identity, action: Action, subject: Subject<'_>) -> Verdict<()>;
}

/// A client as observers see it when it connects or disconnects.
#[derive(Debug, Clone, Copy)]
pub struct ClientEvent<'a> {
    pub identity: &'a Identity,
    /// `"mqtt"` (gateways will name theirs).
    pub protocol: &'static str,
    /// Protocol level (3, 4 or 5 for MQTT).
    pub protocol_version: u8,
    pub keep_alive: u16,
    pub clean_start: bool,
}

/// Why a message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A subscriber's queue was full.
    QueueFull,
    /// Its expiry interval ran out before it was sent.
    Expired,
    /// The publisher may not publish there (ACL or `$SYS`).
    NotAuthorized,
    /// An observer dropped it.
    ByHook,
    /// Its session ended before it could be sent.
    SessionEnded,
}

/// What an observer wants to be told; the broker skips the rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interests {
    pub clients: bool,
    pub sessions: bool,
    /// `message_publish` (may modify or drop).
    pub publish: bool,
    /// `message_delivered`, `message_acked` and `message_dropped`.
    pub deliveries: bool,
}

/// Told what happens; every method is synchronous and must be cheap.
pub trait Observer: Send + Sync + Debug {
    fn interests(&self) -> Interests;
    fn client_connected(&self, _broker: &crate::Broker, _client: &ClientEvent<'_>) {}
    fn client_disconnected(&self, _broker: &crate::Broker, _client: &Identity, _reason: &str) {}
    fn session_created(&self, _client: &Identity) {}
    fn session_resumed(&self, _client: &Identity) {}
    fn session_terminated(&self, _client_id: &str) {}
    /// May change the message; returns false to drop it.
    fn message_publish(&self, _publisher: Option<&Identity>, _message: &mut Message) -> bool {
        true
    }
    fn message_delivered(&self, _client_id: &str, _message: &Message) {}
    fn message_acked(&self, _client_id: &str, _message: &Message) {}
    fn message_dropped(&self, _client_id: Option<&str>, _message: &Message, _reason: DropReason) {}
}

/// Hooks a caller adds after the built-in ones (plugins, tests): they run
/// in this order, behind the built-in users, rules and presence events.
#[derive(Debug, Default, Clone)]
pub struct Extensions {
    /// Builds the chain entries the core does not have (see `auth`).
    pub backends: Option<Arc<dyn crate::auth::Backends>>,
    pub authenticators: Vec<Arc<dyn Authenticator>>,
    pub authorizers: Vec<Arc<dyn Authorizer>>,
    pub observers: Vec<Arc<dyn Observer>>,
}

/// The chains and observers of one broker.
#[derive(Debug, Default)]
pub struct Hooks {
    authenticators: Vec<Arc<dyn Authenticator>>,
    /// Listeners' own chains (by listener index), used instead of
    /// `authenticators` for their clients.
    listener_authenticators: [Option<Vec<Arc<dyn Authenticator>>>; 4],
    authorizers: Vec<Arc<dyn Authorizer>>,
    /// The external authorizers among `authorizers`, whose rules a client
    /// fetches when it connects.
    rule_sources: Vec<Arc<crate::auth::external::ExternalAuthorizer>>,
    observers: Vec<Arc<dyn Observer>>,
    wants: Interests,
}

impl Hooks {
    /// Adds an authenticator at the end of the chain.
    /// Adds an authenticator at the end of the chain (and of every
    /// listener's own chain).
    pub fn add_authenticator(&mut self, hook: Arc<dyn Authenticator>) {
        for chain in self.listener_authenticators.iter_mut().flatten() {
            chain.push(hook.clone());
        }
        self.authenticators.push(hook);
    }

    /// Gives listener `index` a chain of its own.
    pub fn set_listener_authenticators(&mut self, index: usize, chain: Vec<Arc<dyn Authenticator>>) {
        if let Some(slot) = self.listener_authenticators.get_mut(index) {
            *slot = Some(chain);
        }
    }

    /// The chain for clients of listener `listener`.
    fn authenticators_of(&self, listener: u8) -> &[Arc<dyn Authenticator>] {
        match self.listener_authenticators.get(listener as usize) {
            Some(Some(chain)) => chain,
            _ => &self.authenticators,
        }
    }

    /// Adds an authorizer at the end of the chain.
    pub fn add_authorizer(&mut self, hook: Arc<dyn Authorizer>) {
        self.authorizers.push(hook);
    }

    /// Sets the external authorizers (already in the chain) whose rules each
    /// client fetches when it connects.
    pub fn set_rule_sources(&mut self, sources: Vec<Arc<crate::auth::external::ExternalAuthorizer>>) {
        self.rule_sources = sources;
    }

    /// What `who` holds from now on: the rules `granted` by its
    /// authenticator and fetched from each external authorizer (none for a
    /// superuser, whom no rule binds), and when its credential expires.
    pub async fn load_rules(
        &self,
        who: &Identity,
        grant: &mut crate::cluster::access::Grant,
    ) -> Option<Arc<crate::auth::external::ClientAcl>> {
        let sources = if who.superuser { &[][..] } else { &self.rule_sources[..] };
        crate::auth::external::load(sources, who, grant.rules.take(), grant.expires_at).await
    }

    /// Adds an observer.
    pub fn add_observer(&mut self, hook: Arc<dyn Observer>) {
        let wants = hook.interests();
        self.wants.clients |= wants.clients;
        self.wants.sessions |= wants.sessions;
        self.wants.publish |= wants.publish;
        self.wants.deliveries |= wants.deliveries;
        self.observers.push(hook);
    }

    /// What any observer wants.
    pub fn wants(&self) -> Interests {
        self.wants
    }

    /// Whether the built-in users are in the authenticator chain (and so
    /// may be checked by SCRAM as well).
    pub fn has_builtin_authenticator(&self, listener: u8) -> bool {
        self.authenticators_of(listener).iter().any(|hook| hook.is_builtin())
    }

    /// Runs the authenticator chain; a chain where every hook ignores the
    /// client refuses it (0x86 with a username, else 0x87). What a hook
    /// other than the built-in one allows is marked `external`.
    pub async fn authenticate(&self, request: ConnectRequest<'_>, listener: u8) -> Result<Grant, ReasonCode> {
        for hook in self.authenticators_of(listener) {
            match hook.authenticate(request).await {
                Verdict::Allow(grant) => {
                    return Ok(Grant { external: !hook.is_builtin() || grant.external, ..grant })
                }
                Verdict::Deny(reason) => return Err(reason),
                Verdict::Ignore => {}
            }
        }
        Err(crate::cluster::access::default_refusal(request.username))
    }

    /// Runs the authorizer chain; `no_match` decides when every hook ignores.
    pub fn authorize(&self, who: &Identity, action: Action, subject: Subject<'_>, no_match: bool) -> bool {
        if who.superuser {
            return true;
        }
        if let Some(granted) = who.acl.as_ref().and_then(|acl| acl.granted.as_ref()) {
            match granted.decide(who, action, subject) {
                Verdict::Allow(()) => return true,
                Verdict::Deny(_) => return false,
                Verdict::Ignore => {}
            }
        }
        for hook in &self.authorizers {
            match hook.authorize(who, action, subject) {
                Verdict::Allow(()) => return true,
                Verdict::Deny(_) => return false,
                Verdict::Ignore => {}
            }
        }
        no_match
    }

    /// Calls `f` on every observer that wants `interest`.
    pub fn each(&self, interest: impl Fn(&Interests) -> bool, mut f: impl FnMut(&dyn Observer)) {
        for hook in &self.observers {
            if interest(&hook.interests()) {
                f(hook.as_ref());
            }
        }
    }

    /// Offers a message to the publish observers; false if one dropped it.
    pub fn message_publish(&self, publisher: Option<&Identity>, message: &mut Message) -> bool {
        if !self.wants.publish {
            return true;
        }
        self.observers.iter().filter(|h| h.interests().publish).all(|h| h.message_publish(publisher, message))
    }
}

/// An event as [`QueuedObserver`] hands it to a slow consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ClientConnected { client_id: Arc<str>, username: Option<String> },
    ClientDisconnected { client_id: Arc<str>, reason: String },
    MessagePublished { topic: String, payload: bytes::Bytes },
}

/// Feeds a slow or remote consumer (a webhook, a plugin over gRPC)
/// through a bounded queue: the broker never waits for it, and what does
/// not fit is dropped and counted.
#[derive(Debug)]
pub struct QueuedObserver {
    sender: mpsc::Sender<Event>,
    dropped: AtomicU64,
    interests: Interests,
}

impl QueuedObserver {
    /// An observer with a queue of `capacity` events; the receiver is the
    /// consumer's end.
    pub fn new(capacity: usize, interests: Interests) -> (Arc<QueuedObserver>, mpsc::Receiver<Event>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (Arc::new(QueuedObserver { sender, dropped: AtomicU64::new(0), interests }), receiver)
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn offer(&self, event: Event) {
        if self.sender.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Observer for QueuedObserver {
    fn interests(&self) -> Interests {
        self.interests
    }

    fn client_connected(&self, _broker: &crate::Broker, client: &ClientEvent<'_>) {
        self.offer(Event::ClientConnected {
            client_id: client.identity.client_id.clone(),
            username: client.identity.username.as_deref().map(str::to_string),
        });
    }

    fn client_disconnected(&self, _broker: &crate::Broker, client: &Identity, reason: &str) {
        self.offer(Event::ClientDisconnected {
            client_id: client.client_id.clone(),
            reason: reason.to_string(),
        });
    }

    fn message_publish(&self, _publisher: Option<&Identity>, message: &mut Message) -> bool {
        self.offer(Event::MessagePublished {
            topic: message.topic.clone(),
            payload: message.payload.clone(),
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(Verdict<()>);
    impl Authorizer for Fixed {
        fn authorize(&self, _: &Identity, _: Action, _: Subject<'_>) -> Verdict<()> {
            self.0.clone()
        }
    }

    #[test]
    fn first_answer_decides_and_ignore_falls_through() {
        let who = Identity::anonymous(Arc::from("c"), [127, 0, 0, 1].into());
        let subject = Subject::topic("t");
        let mut hooks = Hooks::default();
        assert!(hooks.authorize(&who, Action::Publish, subject, true), "an empty chain: no_match decides");
        hooks.add_authorizer(Arc::new(Fixed(Verdict::Ignore)));
        assert!(!hooks.authorize(&who, Action::Publish, subject, false));
        hooks.add_authorizer(Arc::new(Fixed(Verdict::Deny(ReasonCode::NOT_AUTHORIZED))));
        hooks.add_authorizer(Arc::new(Fixed(Verdict::Allow(()))));
        assert!(!hooks.authorize(&who, Action::Publish, subject, true), "the deny comes first");
        let root = Identity { superuser: true, ..who };
        assert!(hooks.authorize(&root, Action::Publish, subject, false));
    }

    #[tokio::test]
    async fn a_queued_observer_drops_and_counts_when_full() {
        let (observer, mut receiver) =
            QueuedObserver::new(2, Interests { publish: true, ..Default::default() });
        let mut hooks = Hooks::default();
        hooks.add_observer(observer.clone());
        let mut message = Message {
            id: crate::message::next_id(),
            topic: "t".into(),
            payload: "p".into(),
            qos: mqtt_codec::QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
            publisher: None,
            expires_at: None,
        };
        for _ in 0..5 {
            assert!(hooks.message_publish(None, &mut message), "never blocks, never drops the message");
        }
        assert_eq!(observer.dropped(), 3);
        assert!(matches!(receiver.recv().await, Some(Event::MessagePublished { .. })));
    }
}
