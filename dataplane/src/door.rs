//! The broker's one door: the protocol-neutral calls every protocol makes
//! (MQTT today; gateways, HTTP publish, bridges and peer links later):
//! connect (admit, authenticate, open a session), publish, subscribe,
//! unsubscribe, and close. The policy lives here, not in a protocol's
//! connection code, which keeps only its wire details (packet ids, aliases,
//! reason-code mapping).
//!
//! Invariants:
//! - **Nothing enters without the door's checks**: a client is admitted
//!   only with a loaded view and no ban, then by the authenticator chain;
//!   every publish (wills included) passes the `$SYS` guard, the topic
//!   limits and the authorizer chain; every subscription the filter limits
//!   and the authorizer chain (for every topic it can match).
//! - **A session is resumed only by the username that owns it**; any other
//!   user ends it (as Clean Start would) and gets a fresh one.
//! - Observers hear of each step (see `hooks`); they cannot block it.

use std::sync::Arc;
use std::time::Duration;

use mqtt_codec::{QoS, ReasonCode, SubscriptionOptions};
use tokio::sync::oneshot;
use tracing::debug;

use crate::cluster::access::{Grant, Identity};
use crate::cluster::acl::{Bearing, Pattern, Placeholders, Subject};
use crate::cluster::view::Action;
use crate::hooks::{ClientEvent, ConnectRequest, DropReason};
use crate::message::{Message, Will};
use crate::registry::{Claim, ConnectionId, Control, ControlSlot};
use crate::session::{SessionState, SessionSubscription};
use crate::topic::{self, FilterError, ParsedFilter};
use crate::Broker;

/// How long a connect waits for the node's first view of the control plane
/// before it is refused with 0x88 (server unavailable).
const FIRST_VIEW_WAIT: Duration = Duration::from_secs(3);

/// How long a takeover may take before the new connection is refused.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// A session opened for a connection.
#[derive(Debug)]
pub struct Opened {
    pub session: Box<SessionState>,
    /// An earlier session of this client (and user) was resumed.
    pub present: bool,
}

/// A subscription the door accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribed {
    /// The QoS granted (the requested one, capped by `mqtt.max_qos`).
    pub qos: QoS,
    /// The session held this filter already.
    pub existed: bool,
    pub shared: bool,
    /// It made a new route of this node, announced to the other nodes: the
    /// SUBACK waits for [`Broker::announced_barrier`].
    pub announced: bool,
}

/// How a connection ends, for [`Broker::close_session`].
#[derive(Debug)]
pub enum Ending {
    /// Another connection takes the session over: hand it on.
    HandOver(oneshot::Sender<Box<SessionState>>),
    /// Park it for `expiry` seconds (`u32::MAX`: never expires), or end it
    /// now when `expiry` is 0.
    Leave { expiry: u32 },
}

/// True when `subject` can match a presence event's topic.
fn reads_presence(subject: Subject<'_>) -> bool {
    static PRESENCE: std::sync::OnceLock<Option<Pattern>> = std::sync::OnceLock::new();
    let pattern = PRESENCE.get_or_init(|| Pattern::compile("$SYS/brokers/+/clients/#").ok());
    let values = Placeholders { username: None, client_id: "" };
    // Read as a deny rule: any overlap counts.
    pattern
        .as_ref()
        .is_none_or(|p| p.bearing(Subject { group: None, ..subject }, values, false) != Bearing::None)
}

/// Number of levels in a topic name or filter.
fn levels(topic: &str) -> usize {
    topic.bytes().filter(|&b| b == b'/').count() + 1
}

impl Broker {
    /// Admits and authenticates a client: waits (briefly) for the first
    /// view, refuses banned clients, then asks the authenticator chain (of
    /// `listener`, if it has its own).
    pub async fn authenticate_client(
        &self,
        request: ConnectRequest<'_>,
        listener: u8,
    ) -> Result<Identity, ReasonCode> {
        self.admit(&request).await?;
        let grant = match self.hooks.authenticate(request, listener).await {
            Ok(grant) => grant,
            Err(reason) => {
                self.login_failed(&request, reason);
                return Err(reason);
            }
        };
        Ok(self.identity_for(&request, grant).await)
    }

    /// The checks before any credential is looked at: the node's first
    /// view (waited for briefly), the client's own bans, the address's ban
    /// after failed logins.
    pub async fn admit(&self, request: &ConnectRequest<'_>) -> Result<(), ReasonCode> {
        if !self.access.wait_loaded(FIRST_VIEW_WAIT).await {
            // No users, bans or rules yet: serving now would serve without them.
            return Err(ReasonCode::SERVER_UNAVAILABLE);
        }
        self.access.admission(request.client_id, request.username, request.address)?;
        if self.login_failures.banned(request.address) {
            return Err(ReasonCode::BANNED);
        }
        Ok(())
    }

    /// Counts a refusal for bad credentials toward the address's ban.
    pub fn login_failed(&self, request: &ConnectRequest<'_>, reason: ReasonCode) {
        let credentials =
            matches!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD | ReasonCode::NOT_AUTHORIZED);
        if credentials && self.login_failures.failed(request.address) {
            tracing::warn!(address = %request.address, "address banned after repeated failed logins");
        }
    }

    /// The identity of a client `grant` lets in, with the rules it holds
    /// (fetched now from the external authorizers).
    pub async fn identity_for(&self, request: &ConnectRequest<'_>, mut grant: Grant) -> Identity {
        let mut identity = Identity {
            client_id: grant.client_id.take().map_or_else(|| Arc::from(request.client_id), Arc::from),
            username: grant.username.take().or_else(|| request.username.map(Box::from)),
            address: request.address,
            superuser: grant.superuser,
            credential: grant.credential.take(),
            external: grant.external,
            acl: None,
        };
        identity.acl = self.hooks.load_rules(&identity, &mut grant).await;
        identity
    }

    /// May `who` publish to `topic_name` at `qos`, with `retain`? (The
    /// authorizer chain alone.)
    pub fn may_publish(&self, who: &Identity, topic_name: &str, qos: QoS, retain: bool) -> bool {
        let subject = Subject { group: None, filter: topic_name, qos: Some(qos), retain: Some(retain) };
        self.hooks.authorize(who, Action::Publish, subject, self.access.no_match_allows())
    }

    /// May `who` subscribe to `filter`: every topic it can match? Presence
    /// events (client ids, usernames and addresses of everyone) are for
    /// superusers only once users exist, whatever the rules say.
    /// `qos` is what the subscription would be granted.
    pub fn may_subscribe(&self, who: &Identity, filter: &ParsedFilter<'_>, qos: QoS) -> bool {
        let group = match filter {
            ParsedFilter::Shared { group, .. } => Some(*group),
            _ => None,
        };
        let subject = Subject { group, filter: filter.filter(), qos: Some(qos), retain: None };
        if !who.superuser && self.access.has_users() && reads_presence(subject) {
            return false;
        }
        self.hooks.authorize(who, Action::Subscribe, subject, self.access.no_match_allows())
    }

    /// Checks a topic a client publishes to: never `$SYS`, within the level
    /// limit, allowed by the authorizer chain.
    pub fn authorize_publish(
        &self,
        who: &Identity,
        topic_name: &str,
        qos: QoS,
        retain: bool,
    ) -> Result<(), ReasonCode> {
        if topic_name.starts_with("$SYS") {
            // Only the broker publishes $SYS topics.
            return Err(ReasonCode::NOT_AUTHORIZED);
        }
        if levels(topic_name) > self.config.mqtt.max_topic_levels {
            return Err(ReasonCode::TOPIC_NAME_INVALID);
        }
        if !self.may_publish(who, topic_name, qos, retain) {
            return Err(ReasonCode::NOT_AUTHORIZED);
        }
        Ok(())
    }

    /// Opens the client's session for `connection`: resumes its own parked
    /// session, takes one over from a live connection (which hands it on),
    /// or starts a fresh one; another user's session is ended, never
    /// resumed. Refused with 0x89 if a takeover keeps failing.
    ///
    /// `generation` is [`Broker::access_generation`] as read before the
    /// client was authenticated: if users, bans or rules changed since, the
    /// client is judged again here (the revalidation pass may have run
    /// before this connection held the session), and a refused client's
    /// session is parked for `expiry` seconds (ended for 0). A resumed
    /// session's subscriptions are judged as this client's in any case.
    pub async fn open_session(
        self: &Arc<Self>,
        mut identity: Identity,
        clean_start: bool,
        expiry: u32,
        generation: u64,
        connection: ConnectionId,
        control: &Arc<ControlSlot>,
    ) -> Result<Opened, ReasonCode> {
        let client_id = identity.client_id.clone();
        let since = crate::cluster::sessions::now_micros();
        let mut previous = None;
        let mut resumed_will = None;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.registry.claim(&client_id, connection, control, since) {
                Claim::Fresh => break,
                Claim::Resumed(state, will) => {
                    previous = Some(state);
                    resumed_will = will;
                    break;
                }
                Claim::Busy { connection: holder_id, control: holder } => {
                    let (reply_tx, reply_rx) = oneshot::channel();
                    holder.send(Control::TakeOver { reply: reply_tx });
                    // Hold no reference: if that connection ends without reading
                    // the request, dropping its slot drops our reply sender.
                    drop(holder);
                    let state =
                        tokio::time::timeout(TAKEOVER_TIMEOUT, reply_rx).await.ok().and_then(Result::ok);
                    if self.registry.claim_from(&client_id, holder_id, connection, control, since) {
                        previous = state;
                        break;
                    }
                    if let Some(state) = state {
                        self.end_session(state);
                    }
                    if attempts > 3 {
                        return Err(ReasonCode::SERVER_BUSY);
                    }
                }
            }
        }
        // In a fleet, the other nodes give the client id up, and its
        // session if they hold it (see `cluster::sessions`).
        let mut moved: Option<(u64, Vec<crate::message::Delivery>)> = None;
        let mut other_holders = Vec::new();
        if let Some(peers) = self.peers() {
            use proto::peer::claim_result::Outcome;
            let claim = proto::peer::ClientClaim {
                client_id: client_id.to_string(),
                connected_at: since,
                clean_start,
            };
            let results = peers.claimer.claim(claim).await;
            if results.iter().any(|(_, r)| r.outcome == Outcome::NewerHere as i32) {
                debug!("a newer connection for this client id on another node: refused");
                match previous {
                    Some(state) if expiry > 0 => self.park_session(connection, state, expiry, resumed_will),
                    Some(state) => {
                        self.registry.release(&client_id, connection);
                        self.end_session(state);
                    }
                    None => self.registry.release(&client_id, connection),
                }
                return Err(ReasonCode::SERVER_BUSY);
            }
            for (node, result) in results {
                let Some(transfer) = result.session else { continue };
                if previous.is_none() {
                    let (state, queued) =
                        crate::cluster::sessions::from_transfer(transfer, self.next_id(), client_id.clone());
                    debug!(from = node, "session moved here from another node");
                    previous = Some(state);
                    moved = Some((node, queued));
                } else {
                    other_holders.push(node);
                }
            }
        }
        // Two nodes held a session (after a partition): this one's is kept.
        for node in other_holders {
            if let Some(peers) = self.peers() {
                crate::cluster::sessions::release(peers, node, &client_id).await;
            }
        }
        let owned = previous.as_ref().is_none_or(|state| state.identity.username == identity.username);
        if !owned {
            debug!("session of another user: ended, not resumed");
        }
        let clean_start = clean_start || !owned;
        if let Some(will) = resumed_will {
            // A delayed will of the parked session: a new connection cancels
            // it, unless Clean Start ends that session, which sends it.
            if clean_start {
                self.publish_will(&will);
            }
        }
        let (mut session, present) = match previous {
            Some(state) if !clean_start => (state, true),
            Some(state) => {
                self.end_session(state);
                (Box::new(SessionState::new(self.next_id(), client_id.clone())), false)
            }
            None => (Box::new(SessionState::new(self.next_id(), client_id.clone())), false),
        };
        if let (Some((node, queued)), Some(peers)) = (moved, self.peers()) {
            if present {
                self.resubscribe_moved(&mut session).await;
            }
            // The old node drops it now, and hands over what came meanwhile.
            let late = crate::cluster::sessions::release(peers, node, &client_id).await;
            if present {
                crate::cluster::sessions::settle_moved(&session, queued, late);
            }
        }
        let wants = self.hooks.wants().sessions;
        if wants && present {
            self.hooks.each(|i| i.sessions, |hook| hook.session_resumed(&identity));
        } else if wants {
            self.hooks.each(|i| i.sessions, |hook| hook.session_created(&identity));
        }
        let changed = self.access_generation() != generation;
        let refused = if changed { self.access.recheck(&mut identity).err() } else { None };
        // The session is the one claimed for this client id: its id is the
        // identity's (held once, there).
        debug_assert_eq!(session.identity.client_id, identity.client_id);
        session.identity = identity;
        if let Some(reason) = refused {
            debug!(?reason, "access changed while connecting: refused");
            if expiry == 0 {
                self.registry.release(session.client_id(), connection);
                self.end_session(session);
            } else {
                self.park_session(connection, session, expiry, None);
            }
            return Err(reason);
        }
        if present || changed {
            self.enforce_subscriptions(&mut session);
        }
        session.mailbox.set_online(true);
        Ok(Opened { session, present })
    }

    /// Subscribes a session that came from another node to its filters
    /// here, and waits until every live node knows the new routes.
    async fn resubscribe_moved(&self, session: &mut SessionState) {
        let mut announced = false;
        let subscriptions: Vec<(Box<str>, SessionSubscription)> =
            session.subscriptions.iter().map(|(f, s)| (f.clone(), *s)).collect();
        for (filter, sub) in subscriptions {
            if let Ok(parsed) = topic::parse_filter(&filter) {
                let (_, new_route) =
                    self.subscribe(&parsed, session.subscriber(), sub.options, sub.identifier);
                announced |= new_route;
            }
        }
        // Also when an earlier announcement of these routes is still out.
        if let Some(peers) = self.peers().filter(|p| announced || p.announcer.busy()) {
            let wait = crate::cluster::announce::ANNOUNCE_TIMEOUT * 2;
            let _ = tokio::time::timeout(wait, peers.announcer.barrier_async()).await;
        }
    }

    /// A client is connected (its CONNACK is on its way).
    pub fn client_connected(&self, event: ClientEvent<'_>) {
        if self.hooks.wants().clients {
            self.hooks.each(|i| i.clients, |hook| hook.client_connected(self, &event));
        }
    }

    /// Publishes a client's message: the publish checks, then the publish
    /// observers (which may change or drop it), then retain and route, here
    /// and to other nodes. With `publisher`, the result carries what the
    /// client's acknowledgement must wait for.
    pub fn publish_as(
        &self,
        who: &Identity,
        mut message: Message,
        pressure: &mut Vec<crate::pressure::Pressure>,
        publisher: Option<&Arc<crate::mailbox::Mailbox>>,
    ) -> Result<crate::broker::Published, ReasonCode> {
        if let Err(reason) = self.authorize_publish(who, &message.topic, message.qos, message.retain) {
            self.dropped(None, &message, DropReason::NotAuthorized);
            return Err(reason);
        }
        if !self.hooks.message_publish(Some(who), &mut message) {
            self.dropped(None, &message, DropReason::ByHook);
            return Ok(Default::default());
        }
        Ok(self.publish_collecting_pressure(Arc::new(message), pressure, publisher))
    }

    /// Tells the delivery observers that a message was dropped.
    pub fn dropped(&self, client_id: Option<&str>, message: &Message, reason: DropReason) {
        if self.hooks.wants().deliveries {
            self.hooks.each(|i| i.deliveries, |hook| hook.message_dropped(client_id, message, reason));
        }
    }

    /// Subscribes `session` to `raw` (prefixes included): the filter's
    /// syntax and limits, the server's capabilities, the session's quota,
    /// the authorizer chain, then the router.
    pub fn subscribe_as(
        &self,
        session: &mut SessionState,
        raw: &str,
        mut options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> Result<Subscribed, ReasonCode> {
        let config = &self.config.mqtt;
        let parsed = match topic::parse_filter(raw) {
            Ok(parsed) => parsed,
            Err(FilterError::BadShare) if !config.shared_subscription_available => {
                return Err(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)
            }
            Err(_) => return Err(ReasonCode::TOPIC_FILTER_INVALID),
        };
        if raw.len() > config.max_filter_length || levels(parsed.filter()) > config.max_topic_levels {
            return Err(ReasonCode::TOPIC_FILTER_INVALID);
        }
        let shared = matches!(parsed, ParsedFilter::Shared { .. });
        if shared && !config.shared_subscription_available {
            return Err(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED);
        }
        if topic::has_wildcard(parsed.filter()) && !config.wildcard_subscription_available {
            return Err(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED);
        }
        let limit = config.max_subscriptions;
        if limit > 0 && session.subscriptions.len() >= limit && !session.subscriptions.contains_key(raw) {
            return Err(ReasonCode::QUOTA_EXCEEDED);
        }
        options.qos = options.qos.min(QoS::from_u8(config.max_qos).unwrap_or(QoS::ExactlyOnce));
        if !self.may_subscribe(&session.identity, &parsed, options.qos) {
            return Err(ReasonCode::NOT_AUTHORIZED);
        }
        let (existed, announced) = self.subscribe(&parsed, session.subscriber(), options, identifier);
        session.subscriptions.insert(raw.into(), SessionSubscription { options, identifier });
        Ok(Subscribed { qos: options.qos, existed, shared, announced })
    }

    /// Retained messages for a new subscription to `raw` (none for shared ones).
    pub fn retained_for(&self, raw: &str) -> Vec<Arc<Message>> {
        match topic::parse_filter(raw) {
            Ok(ParsedFilter::Shared { .. }) | Err(_) => Vec::new(),
            Ok(parsed) => self.retained.matching(parsed.filter()),
        }
    }

    /// Removes the subscription of `session` to `raw`; returns whether it existed.
    pub fn unsubscribe_as(&self, session: &mut SessionState, raw: &str) -> Result<bool, ReasonCode> {
        let parsed = topic::parse_filter(raw).map_err(|_| ReasonCode::TOPIC_FILTER_INVALID)?;
        let removed = self.unsubscribe(&parsed, session.id, session.client_id());
        session.subscriptions.remove(raw);
        Ok(removed)
    }

    /// A connection ended: its will (already chosen by the protocol: `None`
    /// when it is not due) goes out now or later, and its session is handed
    /// over, parked or ended. `reason` is for observers and logs.
    pub fn close_session(
        self: &Arc<Self>,
        connection: ConnectionId,
        session: Box<SessionState>,
        will: Option<Box<Will>>,
        ending: Ending,
        reason: &str,
    ) {
        if self.hooks.wants().clients {
            self.hooks.each(|i| i.clients, |hook| hook.client_disconnected(self, &session.identity, reason));
        }
        match ending {
            Ending::HandOver(reply) => {
                if let Some(will) = will.filter(|w| w.delay == 0) {
                    self.publish_will(&will);
                }
                if let Err(state) = reply.send(session) {
                    self.end_session(state);
                }
            }
            Ending::Leave { expiry: 0 } => {
                self.registry.release(session.client_id(), connection);
                if let Some(will) = will {
                    self.publish_will(&will);
                }
                self.end_session(session);
            }
            Ending::Leave { expiry } => {
                let will = match will {
                    Some(will) if will.delay == 0 => {
                        self.publish_will(&will);
                        None
                    }
                    other => other,
                };
                self.park_session(connection, session, expiry, will);
            }
        }
    }
}
