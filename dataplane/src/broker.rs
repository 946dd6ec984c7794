//! The broker of one data-plane node: the state every connection shares,
//! and the operations that span sessions (publish, session end, expiry).
//!
//! Invariants: a message is routed exactly once per publish, and each
//! matching session gets one `Arc` of it, never a copy of its payload; no
//! per-session queue grows past its limit (drops are counted in
//! `messages_dropped`); a parked session is removed only by the expiry
//! timer of its own generation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use arc_swap::ArcSwap;
use mqtt_codec::SubscriptionOptions;

use crate::cluster::access::AccessControl;
use crate::cluster::announce::Announced;
use crate::cluster::peer::ack::RemoteAck;
use crate::cluster::peer::outbox::PeerLinks;
use crate::cluster::peer::server::Arrival;
use crate::cluster::peer::{add_retained, add_share, Target};
use crate::cluster::route_table::RouteTable;
use crate::cluster::routes::RouteRegistrar;
use crate::cluster::share_table::{Member, ShareTable};
use crate::cluster::view::ClusterView;
use crate::config::DataplaneConfig;
use crate::hibernate::Hibernator;
use crate::hooks::{DropReason, Extensions, Hooks};
use crate::mailbox::{PushOutcome, QueueLimits};
use crate::message::{Delivery, Message, ShareKey, Will};
use crate::metrics::Metrics;
use crate::registry::{ConnectionId, PendingWill, Registry};
use crate::retained::{RetainOutcome, RetainStore, Version};
use crate::router::{Route, Router, SessionId, SharePick, Subscriber};
use crate::session::SessionState;
use crate::topic::{self, ParsedFilter};

/// Where a published message went.
#[derive(Debug, Default)]
pub struct Published {
    /// Local sessions it was queued for.
    pub local: usize,
    /// Other nodes it was forwarded to.
    pub remote: usize,
    /// What the publisher's acknowledgement waits for on those nodes.
    pub ack: Option<Arc<RemoteAck>>,
}

/// State shared by every connection of this node.
#[derive(Debug)]
pub struct Broker {
    pub(crate) config: DataplaneConfig,
    /// The node's name, as in `$SYS/brokers/{node}/`.
    pub(crate) node_name: String,
    pub(crate) router: Router,
    pub(crate) retained: RetainStore,
    pub(crate) registry: Registry,
    pub(crate) metrics: Metrics,
    /// Bans, users and ACLs from the control plane's view.
    pub(crate) access: Arc<AccessControl>,
    /// Authenticator and authorizer chains (the built-in `access` first)
    /// and observers.
    pub(crate) hooks: Hooks,
    /// Failed logins per address, and the bans they lead to.
    pub(crate) login_failures: crate::auth::failures::LoginFailures,
    /// Where local route changes go when a control plane is linked.
    pub(crate) routes: Option<Arc<RouteRegistrar>>,
    /// Which other nodes subscribe to what (from the control plane).
    pub(crate) remote_routes: RouteTable,
    /// The cluster's shared groups and their members (from the control plane).
    pub(crate) shares: ShareTable,
    /// Routes and members other nodes announced before the control plane
    /// listed them.
    pub(crate) announced: Arc<Announced>,
    /// Sessions given up to other nodes, until those release them.
    pub(crate) moves: crate::cluster::sessions::Moves,
    /// Links to the other nodes, set when this node is part of a fleet.
    peers: OnceLock<Arc<PeerLinks>>,
    pub(crate) started: Instant,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// Started on first use, from a connection's task.
    hibernator: OnceLock<Option<Arc<Hibernator>>>,
    /// Connections held by each listener (tcp, tls, ws, wss), handshakes
    /// included, for `listeners.*.max_connections`.
    listener_connections: [AtomicU64; 4],
    /// Incremented on every such change (see `access_generation`).
    access_generation: AtomicU64,
    /// Signalled when users, bans or ACL rules change (see `revalidate`).
    access_changes: tokio::sync::Notify,
}

impl Broker {
    /// A broker reading access rules from `view`, registering its routes
    /// with `routes` when a control plane is linked, deciding access by
    /// `chains` (the built-in provider in its place), with `extensions`
    /// behind them.
    /// A standalone broker on the defaults, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Arc<Broker> {
        Broker::new(
            Default::default(),
            "n".into(),
            Default::default(),
            None,
            Default::default(),
            Default::default(),
        )
    }

    pub fn new(
        config: DataplaneConfig,
        node_name: String,
        view: Arc<ArcSwap<ClusterView>>,
        routes: Option<Arc<RouteRegistrar>>,
        chains: crate::auth::Chains,
        extensions: Extensions,
    ) -> Arc<Broker> {
        use crate::auth::Slot;
        let (shutdown, _) = watch::channel(false);
        let access = Arc::new(AccessControl::new(view, config.auth.clone()));
        let mut hooks = Hooks::default();
        for slot in chains.authenticators {
            match slot {
                Slot::Builtin => hooks.add_authenticator(access.clone()),
                Slot::Hook(hook) => hooks.add_authenticator(hook),
            }
        }
        for (index, chain) in chains.listener_authenticators.into_iter().enumerate() {
            if let Some(chain) = chain {
                let chain = chain
                    .into_iter()
                    .map(|slot| match slot {
                        Slot::Builtin => access.clone() as Arc<dyn crate::hooks::Authenticator>,
                        Slot::Hook(hook) => hook,
                    })
                    .collect();
                hooks.set_listener_authenticators(index, chain);
            }
        }
        for slot in chains.authorizers {
            match slot {
                Slot::Builtin => hooks.add_authorizer(access.clone()),
                Slot::Hook(hook) => hooks.add_authorizer(hook),
            }
        }
        hooks.set_rule_sources(chains.rule_sources);
        if config.sys.presence {
            hooks.add_observer(Arc::new(crate::presence::Presence));
        }
        extensions.authenticators.into_iter().for_each(|hook| hooks.add_authenticator(hook));
        extensions.authorizers.into_iter().for_each(|hook| hooks.add_authorizer(hook));
        extensions.observers.into_iter().for_each(|hook| hooks.add_observer(hook));
        let login_failures = crate::auth::failures::LoginFailures::new(
            config.auth.failed_login_limit,
            Duration::from_secs(config.auth.failed_login_window_s),
            Duration::from_secs(config.auth.failed_login_ban_s),
        );
        Arc::new(Broker {
            access,
            hooks,
            login_failures,
            routes,
            remote_routes: RouteTable::new(),
            shares: ShareTable::new(config.shared_subscription.strategy),
            announced: Arc::new(Announced::new(config.shared_subscription.strategy)),
            moves: Default::default(),
            peers: OnceLock::new(),
            router: Router::new(config.shared_subscription.strategy),
            retained: RetainStore::new(config.retainer.clone()),
            registry: Registry::default(),
            metrics: Metrics::default(),
            started: Instant::now(),
            next_id: AtomicU64::new(1),
            shutdown,
            hibernator: OnceLock::new(),
            access_changes: tokio::sync::Notify::new(),
            access_generation: AtomicU64::new(0),
            listener_connections: Default::default(),
            node_name,
            config,
        })
    }

    /// The hibernator of idle connections, started on first use; `None`
    /// when hibernation is off, shutdown has begun, or it could not start.
    pub fn hibernator(&self) -> Option<&Arc<Hibernator>> {
        if !self.config.mqtt.hibernate || self.is_shutting_down() {
            return None;
        }
        self.hibernator
            .get_or_init(|| match Hibernator::start(self.shutdown_signal()) {
                Ok(hibernator) => Some(hibernator),
                Err(error) => {
                    tracing::warn!(%error, "cannot start hibernation; idle connections stay awake");
                    None
                }
            })
            .as_ref()
    }

    /// Connections hibernating now.
    pub fn hibernating(&self) -> u64 {
        self.hibernator.get().and_then(Option::as_ref).map_or(0, |h| h.count())
    }

    /// Counts a connection accepted by listener `index`, unless it holds
    /// `max` already (0: no limit); returns whether it may go on.
    pub fn listener_opened(&self, index: u8, max: usize) -> bool {
        let Some(count) = self.listener_connections.get(index as usize) else { return false };
        let previous = count.fetch_add(1, Ordering::Relaxed);
        if max > 0 && previous >= max as u64 {
            count.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// A connection of listener `index` ended.
    pub fn listener_closed(&self, index: u8) {
        if let Some(count) = self.listener_connections.get(index as usize) {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A number never handed out before (session ids, connection ids, generations).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Watches for the shutdown signal.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Tells every connection to close (DISCONNECT 0x8B for MQTT 5.0 clients).
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        for control in self.registry.online_controls() {
            control.send(crate::registry::Control::Shutdown);
        }
    }

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            max_len: self.config.session.max_queued_messages,
            policy: self.config.session.queue_full_policy,
            queue_qos0_offline: self.config.session.queue_qos0,
        }
    }

    /// The links to other nodes, when this node is part of a fleet.
    pub fn peers(&self) -> Option<&Arc<PeerLinks>> {
        self.peers.get()
    }

    /// Makes this node forward messages to the other nodes over `peers`.
    pub fn set_peers(&self, peers: Arc<PeerLinks>) {
        let _ = self.peers.set(peers);
    }

    /// Stores (if retained) and routes a message to every matching session,
    /// here and on other nodes. Returns the number of local sessions and
    /// remote nodes it was given to.
    pub fn publish(&self, message: Arc<Message>) -> usize {
        let published = self.publish_collecting_pressure(message, &mut Vec::new(), None);
        published.local + published.remote
    }

    /// Like [`Broker::publish`], also collecting the queues that asked the
    /// publisher to slow down (see `mailbox`). With `publisher` (a client's
    /// QoS 1 or 2 message), the result says what its acknowledgement must
    /// wait for on other nodes.
    pub fn publish_collecting_pressure(
        &self,
        message: Arc<Message>,
        pressure: &mut Vec<crate::pressure::Pressure>,
        publisher: Option<&Arc<crate::mailbox::Mailbox>>,
    ) -> Published {
        Metrics::add(&self.metrics.messages_received, 1);
        let me = self.peers.get().map_or(0, |peers| peers.me());
        let mut retained_change = None;
        if message.retain && self.config.mqtt.retain_available {
            let version = Version::now(me);
            match self.retained.store_at(&message, version) {
                RetainOutcome::Refused => Metrics::add(&self.metrics.messages_retained_refused, 1),
                RetainOutcome::Stored | RetainOutcome::Deleted => retained_change = Some(version),
                RetainOutcome::Stale => {}
            }
        }
        let Some(peers) = self.peers.get() else {
            let mut routes = Vec::new();
            self.router.route(&message, false, &mut routes);
            return Published {
                local: self.deliver_routes(routes, &message, pressure),
                ..Default::default()
            };
        };
        // Shared groups: one member in the whole cluster.
        let mut picks = Vec::new();
        self.shares.pick(&message, None, &mut picks);
        if !self.announced.is_empty() {
            let mut announced = Vec::new();
            self.announced.shares.pick(&message, None, &mut announced);
            for (key, member) in announced {
                if !picks.iter().any(|(k, _)| *k == key) {
                    picks.push((key, member));
                }
            }
        }
        let mut targets: Vec<Target> = Vec::new();
        let mut decided: Vec<ShareKey> = Vec::with_capacity(picks.len());
        let mut here: Vec<(ShareKey, Arc<str>, bool)> = Vec::new();
        for (key, member) in picks {
            decided.push(key.clone());
            if member.node == me {
                here.push((key, member.client_id, false));
            } else {
                add_share(&mut targets, member.node, share_member(&key, &member));
            }
        }
        let mut routes = Vec::new();
        let mut decide = |key: &ShareKey| match here.iter_mut().find(|(k, _, _)| k == key) {
            Some((_, client, used)) => {
                *used = true;
                SharePick::Member(client.clone())
            }
            None if decided.contains(key) => SharePick::Skip,
            None => SharePick::Here,
        };
        self.router.route_with(&message, false, &mut decide, &mut routes);
        let local = self.deliver_routes(routes, &message, pressure);
        // Chosen here, but no member is left here: another node's takes it.
        for (key, _, used) in here {
            if !used {
                match self.other_node_member(&key, &message, Some(me)) {
                    Some(member) => add_share(&mut targets, member.node, share_member(&key, &member)),
                    None => Metrics::add(&self.metrics.messages_dropped, 1),
                }
            }
        }
        let mut nodes = Vec::new();
        self.remote_routes.nodes_for(&message.topic, me, &mut nodes);
        if !self.announced.is_empty() {
            self.announced.routes.nodes_for(&message.topic, me, &mut nodes);
        }
        for node in nodes {
            match targets.iter_mut().find(|t| t.node == node) {
                Some(target) => target.plain = true,
                None => targets.push(Target::plain(node)),
            }
        }
        // Every node holds every retained message (not the node's own `$SYS`).
        if let Some(version) = retained_change.filter(|_| !message.topic.starts_with("$SYS/")) {
            let view = peers.view();
            add_retained(&mut targets, view.peers.keys().copied().filter(|&node| node != me), version);
        }
        let mut published = Published { local, ..Default::default() };
        if !targets.is_empty() {
            published.remote = targets.len();
            published.ack = peers.forward(&message, targets, publisher, Some(pressure));
        }
        published
    }

    /// Routes a message another node forwarded: to this node's plain
    /// subscribers if it came for them (never to `$local/` ones), and to
    /// the members here of the shared groups it names. It is never
    /// forwarded again, except once to another node's member of a group
    /// that has none left here. Subscriber queues it filled past half are
    /// added to `pressure` (the sending node waits for them: see `outbox`).
    pub fn publish_from_peer(
        &self,
        message: Arc<Message>,
        arrival: Arrival,
        pressure: &mut Vec<crate::pressure::Pressure>,
    ) -> usize {
        let retainable =
            message.retain && !message.topic.starts_with("$SYS/") && self.config.mqtt.retain_available;
        if let Some(version) = arrival.retained.filter(|_| retainable) {
            if self.retained.store_at(&message, version) == RetainOutcome::Refused {
                Metrics::add(&self.metrics.messages_retained_refused, 1);
            }
        }
        let mut routes = Vec::new();
        if arrival.plain {
            self.router.route_with(&message, true, &mut |_| SharePick::Skip, &mut routes);
        }
        let mut redirect: Vec<Target> = Vec::new();
        for member in arrival.shares {
            let key = ShareKey {
                group: Arc::from(member.group.as_str()),
                filter: Arc::from(member.topic_filter.as_str()),
            };
            match self.router.route_to_group(&key, &member.client_id, &message) {
                Some(route) => routes.push(route),
                None => {
                    let me = self.peers.get().map(|p| p.me());
                    let other =
                        (!arrival.redirected).then(|| self.other_node_member(&key, &message, me)).flatten();
                    match other {
                        Some(other) => add_share(&mut redirect, other.node, share_member(&key, &other)),
                        None => Metrics::add(&self.metrics.messages_dropped, 1),
                    }
                }
            }
        }
        let delivered = self.deliver_routes(routes, &message, pressure);
        if let (false, Some(peers)) = (redirect.is_empty(), self.peers.get()) {
            redirect.iter_mut().for_each(|t| t.redirected = true);
            peers.forward(&message, redirect, None, None);
        }
        delivered
    }

    /// Queues each route's delivery, counting drops and collecting the
    /// queues that ask the publisher to slow down.
    fn deliver_routes(
        &self,
        routes: Vec<Route>,
        message: &Arc<Message>,
        pressure: &mut Vec<crate::pressure::Pressure>,
    ) -> usize {
        let limits = self.queue_limits();
        let delivered = routes.len();
        for (subscriber, delivery) in routes {
            let pushed = subscriber.mailbox.push_with_pressure(delivery, limits);
            if pushed.outcome != PushOutcome::Queued {
                Metrics::add(&self.metrics.messages_dropped, 1);
                self.dropped(Some(&subscriber.client_id), message, DropReason::QueueFull);
            }
            if pushed.pressure {
                crate::pressure::Pressure::Queue(subscriber.mailbox).add_to(pressure);
            }
        }
        delivered
    }

    /// Publishes a will message, if its client may still publish there
    /// (never to `$SYS`); its expiry interval starts now.
    pub fn publish_will(&self, will: &Will) -> usize {
        let message = will.message.clone();
        // Judged as its client stands now (a superuser may have been demoted).
        let mut who = will.identity.clone();
        let current = self.access.recheck(&mut who).is_ok();
        if !current || self.authorize_publish(&who, &message.topic, message.qos, message.retain).is_err() {
            tracing::debug!(topic = %message.topic, client_id = %will.identity.client_id, "will refused by the ACL");
            Metrics::add(&self.metrics.messages_dropped, 1);
            self.dropped(Some(&will.identity.client_id), &message, DropReason::NotAuthorized);
            return 0;
        }
        match message.properties.message_expiry_interval {
            Some(seconds) => {
                let mut message = (*message).clone();
                message.expires_at = Some(Instant::now() + Duration::from_secs(seconds as u64));
                self.publish(Arc::new(message))
            }
            None => self.publish(message),
        }
    }

    /// Queues one delivery, counting a drop.
    pub fn deliver(&self, mailbox: &crate::mailbox::Mailbox, delivery: Delivery) {
        self.push(mailbox, delivery, self.queue_limits());
    }

    fn push(&self, mailbox: &crate::mailbox::Mailbox, delivery: Delivery, limits: QueueLimits) {
        match mailbox.push(delivery, limits) {
            PushOutcome::Queued => {}
            PushOutcome::DroppedOldest | PushOutcome::Dropped => {
                Metrics::add(&self.metrics.messages_dropped, 1);
            }
        }
    }

    /// Gives the shared-subscription deliveries of a leaving session to
    /// another member of their group; returns the ones no one could take.
    pub fn redispatch_shared(&self, session: SessionId, deliveries: Vec<Delivery>) -> Vec<Delivery> {
        let mut kept = Vec::new();
        for mut delivery in deliveries {
            let other = delivery.share.as_ref().and_then(|key| self.router.other_member(key, session));
            match other {
                Some((subscriber, options)) => {
                    delivery.qos = options.qos.min(delivery.message.qos);
                    self.deliver(&subscriber.mailbox, delivery);
                }
                None => match (&delivery.share, self.peers.get()) {
                    // None here: a member on another node takes it.
                    (Some(key), Some(peers)) => {
                        match self.other_node_member(key, &delivery.message, Some(peers.me())) {
                            Some(member) => {
                                let mut targets = Vec::new();
                                add_share(&mut targets, member.node, share_member(key, &member));
                                peers.forward(&delivery.message, targets, None, None);
                            }
                            None => kept.push(delivery),
                        }
                    }
                    _ => kept.push(delivery),
                },
            }
        }
        kept
    }

    /// Adds a subscription; returns whether it existed, and whether it is
    /// a new route of this node, announced to the other nodes (see
    /// [`Broker::announced_barrier`]). The first local subscriber to a
    /// filter registers it with the control plane.
    pub fn subscribe(
        &self,
        filter: &ParsedFilter<'_>,
        subscriber: Subscriber,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> (bool, bool) {
        let client_id = subscriber.client_id.clone();
        let (existed, first) = self.router.subscribe(filter, subscriber, options, identifier);
        let announcer = self.peers.get().map(|peers| &peers.announcer);
        let mut announced = false;
        if let Some(routes) = &self.routes {
            match filter {
                ParsedFilter::Shared { group, filter } if !existed => {
                    routes.share_joined((group.to_string(), filter.to_string(), client_id.to_string()));
                    if let Some(announcer) = announcer {
                        announcer.member(group, filter, &client_id);
                        announced = true;
                    }
                }
                _ if first => {
                    routes.filter_added(filter.filter());
                    if let Some(announcer) = announcer {
                        announcer.filter(filter.filter());
                        announced = true;
                    }
                }
                _ => {}
            }
        }
        (existed, announced)
    }

    /// Routes of this node are being announced (see `cluster::announce`).
    pub fn announcing(&self) -> bool {
        self.peers.get().is_some_and(|peers| peers.announcer.busy())
    }

    /// A member of the group `key` on another node than `except`: from the
    /// control plane's list, else from what nodes announced.
    fn other_node_member(&self, key: &ShareKey, message: &Message, except: Option<u64>) -> Option<Member> {
        self.shares
            .pick_in(key, message, except)
            .or_else(|| self.announced.shares.pick_in(key, message, except))
    }

    /// What a SUBACK waits for after a subscribe that announced a route:
    /// every live node has it (see `cluster::announce`). `None` outside a
    /// fleet.
    pub fn announced_barrier(&self, waiter: &Arc<crate::mailbox::Mailbox>) -> Option<Arc<RemoteAck>> {
        let peers = self.peers.get()?;
        let ack = RemoteAck::new(1, waiter.clone());
        peers.announcer.barrier(ack.clone());
        Some(ack)
    }

    /// Removes a subscription; returns whether it existed. The last local
    /// subscriber to a filter withdraws it from the control plane.
    pub fn unsubscribe(&self, filter: &ParsedFilter<'_>, session: SessionId, client_id: &str) -> bool {
        let (removed, last) = self.router.unsubscribe(filter, session);
        if let Some(routes) = &self.routes {
            match filter {
                ParsedFilter::Shared { group, filter } if removed => {
                    routes.share_left((group.to_string(), filter.to_string(), client_id.to_string()))
                }
                _ if last => routes.filter_removed(filter.filter()),
                _ => {}
            }
        }
        removed
    }

    /// Ends a session: its subscriptions go, its shared deliveries go to
    /// other members, the rest is dropped.
    #[allow(clippy::boxed_local)] // sessions travel boxed; unboxing here would copy one.
    pub fn end_session(&self, mut state: Box<SessionState>) {
        for filter in state.subscriptions.keys() {
            if let Ok(parsed) = topic::parse_filter(filter) {
                self.unsubscribe(&parsed, state.id, state.client_id());
            }
        }
        state.subscriptions.clear();
        let mut pending: Vec<Delivery> =
            state.inflight_in_order().into_iter().map(|(_, entry)| entry.delivery).collect();
        pending.extend(state.mailbox.take_all());
        let lost = self.redispatch_shared(state.id, pending);
        Metrics::add(&self.metrics.messages_dropped, lost.iter().filter(|d| d.qos as u8 > 0).count() as u64);
        if self.hooks.wants().deliveries {
            for delivery in &lost {
                self.dropped(Some(state.client_id()), &delivery.message, DropReason::SessionEnded);
            }
        }
        if self.hooks.wants().sessions {
            self.hooks.each(|i| i.sessions, |hook| hook.session_terminated(state.client_id()));
        }
    }

    /// Parks a session whose connection ended, and arms its timers: the
    /// will (if delayed) and the expiry. `expiry` of `u32::MAX` never expires.
    pub fn park_session(
        self: &Arc<Self>,
        connection: ConnectionId,
        state: Box<SessionState>,
        expiry: u32,
        will: Option<PendingWill>,
    ) {
        let generation = self.next_id();
        let client_id = state.client_id().clone();
        let will_delay = will.as_ref().map(|will| will.delay);
        if let Err(state) = self.registry.park(connection, state, generation, will) {
            // Another connection holds the client id now; this state is stale.
            self.end_session(state);
            return;
        }
        let broker = Arc::clone(self);
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            if let Some(delay) = will_delay {
                if delay < expiry {
                    tokio::time::sleep(Duration::from_secs(delay as u64)).await;
                    if let Some(will) = broker.registry.take_will(&client_id, generation) {
                        broker.publish_will(&will);
                    }
                }
            }
            if expiry == u32::MAX {
                return;
            }
            tokio::time::sleep_until(started + Duration::from_secs(expiry as u64)).await;
            if let Some((state, will)) = broker.registry.expire(&client_id, generation) {
                if let Some(will) = will {
                    broker.publish_will(&will);
                }
                broker.end_session(state);
            }
        });
    }

    /// Users, bans or ACL rules changed: live clients and parked sessions
    /// are checked again shortly (see [`revalidate`]).
    pub fn access_changed(&self) {
        self.access_generation.fetch_add(1, Ordering::SeqCst);
        self.access_changes.notify_one();
    }

    /// Counts access changes; a connection reads it before it authenticates
    /// and, if it moved by the time its session is open, checks itself
    /// again (the revalidation pass may have missed it meanwhile).
    pub fn access_generation(&self) -> u64 {
        self.access_generation.load(Ordering::SeqCst)
    }

    /// Applies the current rules to a session: drops the subscriptions they
    /// deny and, if any went, the queued and in-flight messages on topics
    /// the session may no longer receive. Returns the subscriptions dropped.
    pub fn enforce_subscriptions(&self, state: &mut SessionState) -> usize {
        let dropped = self.drop_denied_subscriptions(state);
        if dropped == 0 {
            return 0;
        }
        let allowed = |delivery: &Delivery| {
            let group = delivery.share.as_ref().map(|key| &*key.group);
            let subject = crate::cluster::acl::Subject {
                group,
                filter: &delivery.message.topic,
                qos: None,
                retain: None,
            };
            let no_match = self.access.no_match_allows();
            self.hooks.authorize(&state.identity, crate::cluster::view::Action::Subscribe, subject, no_match)
        };
        let (kept, gone): (Vec<Delivery>, Vec<Delivery>) =
            state.mailbox.take_all().into_iter().partition(allowed);
        state.mailbox.push_front_all(kept);
        let denied: Vec<u16> =
            state.inflight.iter().filter(|(_, entry)| !allowed(&entry.delivery)).map(|(id, _)| *id).collect();
        for id in denied {
            state.inflight.remove(&id);
        }
        for delivery in gone {
            self.dropped(Some(state.client_id()), &delivery.message, DropReason::NotAuthorized);
        }
        dropped
    }

    /// Drops the subscriptions of `state` that the rules deny now; returns
    /// how many.
    pub fn drop_denied_subscriptions(&self, state: &mut SessionState) -> usize {
        let denied: Vec<Box<str>> = state
            .subscriptions
            .iter()
            .filter(|(raw, held)| match topic::parse_filter(raw) {
                Ok(parsed) => !self.may_subscribe(&state.identity, &parsed, held.options.qos),
                Err(_) => true,
            })
            .map(|(raw, _)| raw.clone())
            .collect();
        for raw in &denied {
            if let Ok(parsed) = topic::parse_filter(raw) {
                self.unsubscribe(&parsed, state.id, state.client_id());
            }
            state.subscriptions.remove(&**raw);
        }
        denied.len()
    }

    /// Seconds since start.
    pub fn uptime(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

fn share_member(key: &ShareKey, member: &Member) -> proto::peer::ShareMember {
    proto::peer::ShareMember {
        group: key.group.to_string(),
        topic_filter: key.filter.to_string(),
        client_id: member.client_id.to_string(),
    }
}

/// How long changes to users, bans and rules gather before live clients
/// are checked against them (one pass for a burst of provisioning).
const REVALIDATE_AFTER: Duration = Duration::from_millis(100);

/// Applies access changes to what is already connected, within a second:
/// every live connection checks itself again (a banned or deleted user, a
/// changed password or the end of anonymous access disconnects it;
/// subscriptions the rules now deny are dropped), and parked sessions are
/// judged the same way here (a refused one is ended, without its will).
pub async fn revalidate(broker: Arc<Broker>) {
    loop {
        broker.access_changes.notified().await;
        tokio::time::sleep(REVALIDATE_AFTER).await;
        for control in broker.registry.online_controls() {
            control.revalidate();
        }
        for (client_id, generation) in broker.registry.parked() {
            let ended = broker.registry.judge_parked(&client_id, generation, |state| {
                if broker.access.recheck(&mut state.identity).is_err() {
                    return false;
                }
                broker.enforce_subscriptions(state);
                true
            });
            if let Some(state) = ended {
                broker.end_session(state);
            }
        }
    }
}
