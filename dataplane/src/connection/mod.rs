//! One client connection, from CONNECT to close.
//!
//! The task owns the transport, the read and write buffers and, while the
//! client is connected, its session state. Each turn of the loop drains the
//! session's mailbox into the write buffer (as far as the in-flight window
//! allows), writes the buffer once, then waits for whichever comes first:
//! bytes from the client, a new delivery, the keep-alive deadline, a takeover
//! or shutdown. A plain-TCP connection that stays idle hibernates: its task
//! ends and the hibernator (`hibernate.rs`) holds it until one of those
//! comes, then starts a new task for it. Invariants: a malformed packet or protocol violation closes
//! this connection alone (with the spec's reason code for MQTT 5.0 clients);
//! the session state is always handed on when the task ends (parked,
//! ended, or given to the connection that took it over).

mod enhanced_auth;
mod handshake;
mod inbound;
mod outbound;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mqtt_codec::{Disconnect, DisconnectProperties, Packet, ProtocolVersion, ReasonCode};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, Instrument};

use crate::broker::Broker;
use crate::door::Ending;
use crate::message::Will;
use crate::metrics::Metrics;
use crate::registry::{ConnectionId, Control, ControlSlot};
use crate::session::SessionState;
use crate::transport::{TcpTransport, Transport};

/// Bytes read from a waking connection's socket before it goes back on
/// tokio's reactor: enough for the packets that usually wake an idle client.
const WAKE_READ: usize = 2048;

/// The longest a publisher waits for one slow subscriber's queue to drain
/// before that subscriber is treated as stalled.
const BACKPRESSURE_WAIT: Duration = Duration::from_secs(2);

/// Why the connection loop ended.
#[derive(Debug)]
pub(crate) enum Close {
    /// DISCONNECT from the client; `with_will` for reason 0x04.
    ClientDisconnect {
        with_will: bool,
    },
    /// The network connection closed or failed.
    Network,
    /// A protocol violation: send DISCONNECT with this reason (5.0) and close.
    Violation(ReasonCode),
    KeepAliveTimeout,
    TakenOver(oneshot::Sender<Box<SessionState>>),
    Shutdown,
    /// Access was withdrawn (banned, user deleted, password changed):
    /// DISCONNECT with this reason (5.0), close, and publish no will.
    Revoked(ReasonCode),
    /// Not a close: the connection is idle and hands itself to the hibernator.
    Hibernate,
}

impl Close {
    /// Why, in the words EMQX uses for `disconnected` events.
    fn describe(&self) -> &'static str {
        match self {
            Close::ClientDisconnect { .. } => "normal",
            Close::Network => "sock_closed",
            Close::Violation(_) => "protocol_error",
            Close::KeepAliveTimeout => "keepalive_timeout",
            Close::TakenOver(_) => "takenover",
            Close::Shutdown => "server_shutdown",
            Close::Revoked(_) => "kicked",
            Close::Hibernate => "hibernate",
        }
    }
}

/// Settings the client chose in CONNECT, after the server's caps.
#[derive(Debug, Clone)]
pub(crate) struct ClientLimits {
    /// Client's Receive Maximum, capped by `mqtt.max_inflight`.
    pub window: u16,
    /// Largest packet the client accepts.
    pub max_packet_size: u32,
    /// Topic aliases the client accepts from us.
    pub topic_alias_maximum: u16,
}

/// A live connection with its session.
pub(crate) struct Connection<T: Transport> {
    broker: Arc<Broker>,
    transport: T,
    id: ConnectionId,
    /// The listener it came in on (`Broker::listener_closed`).
    listener: u8,
    version: ProtocolVersion,
    read_buf: BytesMut,
    write_buf: BytesMut,
    session: Box<SessionState>,
    /// Seconds; 0 turns the keep-alive check off.
    keep_alive: u16,
    last_read: Instant,
    /// Last time a packet other than a ping went either way; hibernation
    /// counts from here.
    last_active: Instant,
    limits: ClientLimits,
    session_expiry: u32,
    will: Option<Box<Will>>,
    /// Subscribers' queues that asked this publisher to slow down: the
    /// connection waits for them to drain before it reads more.
    pressure: Vec<crate::pressure::Pressure>,
    /// Topic aliases and enhanced authentication, allocated when first
    /// used (most connections have neither).
    extras: Option<Box<Extras>>,
    control: Arc<ControlSlot>,
    /// Acknowledgements of the client's messages not sent yet, in order.
    acks: std::collections::VecDeque<PendingAck>,
}

/// An acknowledgement waiting for its turn: for the other nodes a
/// message went to (or a new route was announced to), or for one ahead of
/// it that does.
pub(crate) struct PendingAck {
    what: AckPacket,
    wait: Option<Arc<crate::cluster::peer::ack::RemoteAck>>,
}

/// The acknowledgement itself.
pub(crate) enum AckPacket {
    /// PUBACK, PUBREC or PUBCOMP of a client's message.
    Publish { kind: fn(mqtt_codec::PubAck) -> Packet, packet_id: u16, reason: ReasonCode },
    /// A SUBACK, and the retained messages its subscriptions get after it.
    Subscribe { ack: mqtt_codec::SubAck, retained: Vec<crate::message::Delivery> },
}

/// What few connections use: topic aliases (both ways) and the state of
/// enhanced authentication.
#[derive(Debug, Default)]
struct Extras {
    /// Connected with SCRAM-SHA-256: the state of re-authentication
    /// (`None`: the client used no enhanced authentication, and AUTH is a
    /// protocol error).
    reauth: Option<enhanced_auth::ReAuth>,
    /// Set by the client towards us.
    incoming: HashMap<u16, String>,
    /// Bytes of the topics in `incoming` (bounded by `mqtt.max_topic_alias_bytes`).
    incoming_bytes: usize,
    /// Set by us towards the client.
    outgoing: HashMap<String, u16>,
}

/// What a hibernating connection keeps: everything but its transport,
/// its (empty) buffers and the state of a turn of its loop.
pub(crate) struct Dormant {
    /// `None` only once it is taken to wake.
    socket: Option<std::net::TcpStream>,
    broker: Arc<Broker>,
    id: ConnectionId,
    /// The listener it came in on (`Broker::listener_closed`).
    listener: u8,
    version: ProtocolVersion,
    /// Inline, not boxed: one allocation fewer per hibernating connection.
    session: SessionState,
    keep_alive: u16,
    last_read: Instant,
    /// How long before `last_read` the last packet other than a ping
    /// came, in milliseconds (saturated): hibernation counts from there.
    quiet_before_read_ms: u32,
    limits: ClientLimits,
    session_expiry: u32,
    will: Option<Box<Will>>,
    extras: Option<Box<Extras>>,
    control: Arc<ControlSlot>,
}

impl<T: Transport> Connection<T> {
    /// Keeps what outlives a turn of the loop, and the detached `socket`;
    /// drops the rest.
    fn into_dormant(this: Self, socket: std::net::TcpStream) -> Dormant {
        Dormant {
            socket: Some(socket),
            broker: this.broker,
            id: this.id,
            listener: this.listener,
            version: this.version,
            session: *this.session,
            keep_alive: this.keep_alive,
            last_read: this.last_read,
            quiet_before_read_ms: this
                .last_read
                .saturating_duration_since(this.last_active)
                .as_millis()
                .min(u32::MAX as u128) as u32,
            limits: this.limits,
            session_expiry: this.session_expiry,
            will: this.will,
            extras: this.extras,
            control: this.control,
        }
    }

    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Default::default)
    }
}

impl Dormant {
    /// When the last packet other than a ping came.
    fn last_active(&self) -> Instant {
        let quiet = Duration::from_millis(u64::from(self.quiet_before_read_ms));
        self.last_read.checked_sub(quiet).unwrap_or(self.last_read)
    }

    pub(crate) fn socket(&self) -> Option<&std::net::TcpStream> {
        self.socket.as_ref()
    }

    /// Resumes the connection in a new task with its socket back on the
    /// runtime's reactor (or closes it, if the socket cannot go back).
    pub(crate) fn wake(self, runtime: &tokio::runtime::Handle) {
        let mut this = self;
        let span = tracing::debug_span!("conn", client_id = %this.session.client_id());
        let _runtime = runtime.enter();
        // Read what woke it (if anything) right here, on the plain socket:
        // tokio learns a new registration's readiness only at its next
        // reactor turn, and a connection that saw nothing to read by then
        // would go back to sleep with the bytes still waiting.
        let mut first = BytesMut::new();
        let mut peer_closed = false;
        if let Some(socket) = &this.socket {
            let mut chunk = [0u8; WAKE_READ];
            match std::io::Read::read(&mut &*socket, &mut chunk) {
                Ok(0) => peer_closed = true,
                Ok(n) => first.extend_from_slice(&chunk[..n]),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => peer_closed = true,
            }
        }
        // A ping alone does not make it active: it may sleep again at once.
        let active_before = this.last_active();
        if !first.is_empty() {
            this.last_read = Instant::now();
            Metrics::add(&this.broker.metrics.bytes_received, first.len() as u64);
        }
        let socket = match this.socket.take() {
            Some(_) if peer_closed => Err(std::io::ErrorKind::UnexpectedEof.into()),
            Some(socket) => tokio::net::TcpStream::from_std(socket),
            None => Err(std::io::ErrorKind::NotConnected.into()),
        };
        match socket {
            Ok(stream) => {
                let mut connection = this.awaken(TcpTransport::new(stream));
                connection.read_buf = first;
                connection.last_active = active_before;
                runtime.spawn(connection.serve(false).instrument(span));
            }
            Err(error) if peer_closed => {
                debug!(%error, "peer closed while hibernating");
                let connection = this.awaken(TcpTransport::detached());
                runtime.spawn(connection.close(Close::Network).instrument(span));
            }
            Err(error) => {
                tracing::warn!(%error, "cannot wake a hibernating connection; closing it");
                let connection = this.awaken(TcpTransport::detached());
                runtime.spawn(connection.close(Close::Network).instrument(span));
            }
        }
    }

    /// The connection again, on `transport`.
    fn awaken<T: Transport>(self, transport: T) -> Box<Connection<T>> {
        let last_active = self.last_active();
        Box::new(Connection {
            broker: self.broker,
            transport,
            id: self.id,
            listener: self.listener,
            version: self.version,
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            session: Box::new(self.session),
            keep_alive: self.keep_alive,
            last_read: self.last_read,
            // Woken by a ping alone, it may hibernate again at once. (`wake`
            // sets this again after reading what woke it.)
            last_active,
            limits: self.limits,
            session_expiry: self.session_expiry,
            will: self.will,
            pressure: Vec::new(),
            extras: self.extras,
            control: self.control,
            acks: Default::default(),
        })
    }
}

/// Serves one client until it goes away.
pub async fn serve<T: Transport>(broker: Arc<Broker>, transport: T, peer: SocketAddr, listener: u8) {
    let span = tracing::debug_span!("conn", %peer, client_id = tracing::field::Empty);
    async move {
        Metrics::add(&broker.metrics.connections, 1);
        // Boxed so that the handshake's state is freed once it is done,
        // rather than sizing every connection's task for it.
        let connection = Box::pin(handshake::accept(broker.clone(), transport, peer, listener)).await;
        match connection {
            Some(connection) => {
                Metrics::add(&broker.metrics.connections_total, 1);
                // The gauge goes down in `finish`, which may run in a later
                // task if the connection hibernates meanwhile.
                connection.run().await;
            }
            None => {
                broker.metrics.connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                broker.listener_closed(listener);
            }
        }
    }
    .instrument(span)
    .await
}

/// Times to hibernate are rounded up to this grid, so that connections that
/// went quiet at about the same time hibernate in one wake-up of the
/// runtime's timer instead of one each: for clients that publish every few
/// seconds, a thread waking per hibernation was one more context switch per
/// message (benches/README.md, "Hibernation's cost").
const HIBERNATE_GRID: Duration = Duration::from_millis(250);

/// `at`, rounded up to the next point of [`HIBERNATE_GRID`].
fn on_hibernate_grid(at: Instant) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let grid = HIBERNATE_GRID.as_nanos();
    let since = at.saturating_duration_since(epoch).as_nanos();
    let rounded = since.div_ceil(grid) * grid;
    epoch + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
}

impl<T: Transport> Connection<T> {
    /// Serves the connection; boxed, so that the task holds one pointer to
    /// it rather than room for it at every await point.
    async fn run(mut self: Box<Self>) {
        // Packets pipelined behind CONNECT are already in the read buffer.
        match self.resend_inflight().and_then(|()| self.handle_input()) {
            Ok(()) => {
                if self.read_buf.is_empty() {
                    self.read_buf = BytesMut::new();
                }
                self.serve(true).await
            }
            Err(close) => self.close(close).await,
        }
    }

    /// Serves until the connection closes or hibernates; with
    /// `hibernate_now`, it hibernates at once if it is idle.
    async fn serve(mut self: Box<Self>, hibernate_now: bool) {
        // Bytes read while waking from hibernation come first.
        if !self.read_buf.is_empty() {
            if let Err(close) = Box::pin(self.handle_buffered()).await {
                return self.close(close).await;
            }
        }
        match self.serve_loop(hibernate_now).await {
            Close::Hibernate => self.hibernate().await,
            close => self.close(close).await,
        }
    }

    async fn close(self: Box<Self>, close: Close) {
        debug!(?close, "connection closing");
        // Boxed: closing needs its own copy of the connection, which every
        // live connection's task would otherwise carry room for.
        Box::pin(self.finish(close)).await;
    }

    /// How long this connection may idle before it hibernates, if it can.
    fn hibernate_after(&self) -> Option<Duration> {
        let config = &self.broker.config.mqtt;
        (config.hibernate && self.transport.can_detach() && self.broker.hibernator().is_some())
            .then(|| Duration::from_millis(config.hibernate_after_ms))
    }

    /// True when nothing is under way: no bytes or deliveries waiting and
    /// no publisher held back.
    fn idle(&self) -> bool {
        self.read_buf.is_empty()
            && self.write_buf.is_empty()
            && self.pressure.is_empty()
            && self.acks.is_empty()
            && self.session.mailbox.is_empty()
    }

    /// The next time the loop must look at the clock: the keep-alive
    /// deadline or the time to hibernate, whichever is first.
    fn next_deadline(&self, hibernate_after: Option<Duration>) -> Option<Instant> {
        let hibernate_at = hibernate_after.map(|after| on_hibernate_grid(self.last_active + after));
        match (self.keep_alive_deadline(), hibernate_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Hands the connection to the hibernator; its task ends here. A
    /// connection that cannot hibernate after all (shutdown began) goes
    /// on in a new task.
    async fn hibernate(mut self: Box<Self>) {
        let Some(hibernator) = self.broker.hibernator().cloned() else {
            return Box::pin(self.close(Close::Shutdown)).await;
        };
        let deadline = self.keep_alive_deadline();
        let (mailbox, control) = (self.session.mailbox.clone(), self.control.clone());
        match self.transport.detach() {
            Some(socket) => {
                debug!("hibernating");
                let dormant = Self::into_dormant(*self, socket);
                hibernator.hibernate(dormant, deadline, &mailbox, &control);
            }
            None => Box::pin(self.close(Close::Network)).await,
        }
    }

    /// Another connection takes the session over. What the client sent
    /// before that comes first: a DISCONNECT already in the socket ends a
    /// session of expiry 0 as the client asked (the newcomer then starts
    /// afresh) and cancels the will, rather than losing a race to the
    /// takeover request.
    async fn taken_over(&mut self, reply: oneshot::Sender<Box<SessionState>>) -> Close {
        // One poll, no waiting: `read` is cancel-safe.
        let pending = tokio::time::timeout(Duration::ZERO, self.transport.read(&mut self.read_buf)).await;
        if let Ok(Ok(n)) = pending {
            if n > 0 {
                if let Err(Close::ClientDisconnect { with_will }) = self.handle_input() {
                    if !with_will {
                        self.will = None;
                    }
                    if self.session_expiry == 0 {
                        return Close::ClientDisconnect { with_will };
                    }
                }
            }
        }
        Close::TakenOver(reply)
    }

    async fn serve_loop(&mut self, hibernate_now: bool) -> Close {
        let mailbox = self.session.mailbox.clone();
        // One timer for the connection's life, re-armed only when it fires
        // early (the client spoke since), not on every turn of the loop.
        let hibernate_after = self.hibernate_after();
        let timed = self.keep_alive > 0 || hibernate_after.is_some();
        let first_deadline = self.next_deadline(hibernate_after).unwrap_or_else(Instant::now);
        let timer = tokio::time::sleep_until(first_deadline);
        tokio::pin!(timer);
        let mut hibernate_now = hibernate_now && hibernate_after.is_some();
        loop {
            if let Err(close) = self.pump() {
                return close;
            }
            if let Err(close) = self.flush().await {
                return close;
            }
            if std::mem::take(&mut hibernate_now) && self.idle() {
                return Close::Hibernate;
            }
            tokio::select! {
                biased;
                control = self.control.recv() => match control {
                    // A request whose sender stopped waiting (it gave up
                    // and did not take the client id) is stale: ignored.
                    Control::TakeOver { reply } if reply.is_closed() => {
                        debug!("a takeover request nobody waits for any more: ignored");
                    }
                    Control::TakeOver { reply } => return self.taken_over(reply).await,
                    Control::Shutdown => return Close::Shutdown,
                    Control::Revalidate => {
                        if let Err(close) = self.revalidate() {
                            return close;
                        }
                    }
                },
                read = self.transport.read(&mut self.read_buf) => match read {
                    Ok(0) | Err(_) => return Close::Network,
                    Ok(n) => {
                        Metrics::add(&self.broker.metrics.bytes_received, n as u64);
                        self.last_read = Instant::now();
                        loop {
                            if let Err(close) = self.handle_input() {
                                return close;
                            }
                            if self.pressure.is_empty() {
                                break;
                            }
                            // Decoding stopped at a publish whose subscribers
                            // are behind: let them catch up, then go on.
                            self.yield_to_subscribers().await;
                        }
                        if self.read_buf.is_empty() {
                            // Idle connections hold no read buffer.
                            self.read_buf = BytesMut::new();
                        }
                    }
                },
                _ = mailbox.notified() => {}
                _ = &mut timer, if timed => {
                    let now = Instant::now();
                    if self.keep_alive_deadline().is_some_and(|deadline| deadline <= now) {
                        return Close::KeepAliveTimeout;
                    }
                    if hibernate_after.is_some_and(|after| self.last_active + after <= now) && self.idle() {
                        return Close::Hibernate;
                    }
                    match self.next_deadline(hibernate_after) {
                        // Due but busy: look again after another idle spell.
                        Some(deadline) if deadline <= now => {
                            self.last_active = now;
                            if let Some(deadline) = self.next_deadline(hibernate_after) {
                                timer.as_mut().reset(deadline);
                            }
                        }
                        Some(deadline) => timer.as_mut().reset(deadline),
                        None => {}
                    }
                },
            }
        }
    }

    /// Handles the packets already in the read buffer, waiting for
    /// subscribers that ask this publisher to slow down.
    async fn handle_buffered(&mut self) -> Result<(), Close> {
        loop {
            self.handle_input()?;
            if self.pressure.is_empty() {
                return Ok(());
            }
            self.yield_to_subscribers().await;
        }
    }

    /// Back-pressure: waits (bounded per queue) for the subscribers this
    /// client's messages are piling up at, before reading more from it.
    async fn yield_to_subscribers(&mut self) {
        if self.pressure.is_empty() {
            return;
        }
        let own = self.session.mailbox.clone();
        for pressure in std::mem::take(&mut self.pressure) {
            if matches!(&pressure, crate::pressure::Pressure::Queue(mailbox) if Arc::ptr_eq(mailbox, &own)) {
                continue;
            }
            let deadline = Instant::now() + BACKPRESSURE_WAIT;
            loop {
                // Our own deliveries keep moving while we wait, so that two
                // clients publishing to each other do not wait on each other.
                if self.pump().is_err() || self.flush().await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = pressure.wait(deadline) => break,
                    _ = own.notified() => {}
                }
            }
        }
    }

    fn keep_alive_deadline(&self) -> Option<Instant> {
        (self.keep_alive > 0).then(|| self.last_read + Duration::from_millis(self.keep_alive as u64 * 1500))
    }

    /// Writes what is buffered.
    async fn flush(&mut self) -> Result<(), Close> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        // A client that stops reading must not hold its buffers forever.
        let limit = Duration::from_millis(self.broker.config.mqtt.write_timeout_ms);
        let result = match tokio::time::timeout(limit, self.transport.write_all(&self.write_buf)).await {
            Ok(result) => result,
            Err(_) => {
                debug!("write timed out: the client stopped reading");
                Err(std::io::ErrorKind::TimedOut.into())
            }
        };
        Metrics::add(&self.broker.metrics.bytes_sent, self.write_buf.len() as u64);
        self.write_buf.clear();
        if self.write_buf.capacity() > 64 * 1024 || self.session.mailbox.is_empty() {
            // Nothing more to send soon: do not hold the buffer while idle.
            self.write_buf = BytesMut::new();
        }
        result.map_err(|_| Close::Network)
    }

    /// Encodes a packet into the write buffer.
    fn send(&mut self, packet: &Packet) {
        if let Err(error) = mqtt_codec::encode(packet, self.version, &mut self.write_buf) {
            debug!(%error, "could not encode a packet");
        }
    }

    async fn finish(mut self: Box<Self>, close: Close) {
        let mut with_will = true;
        match &close {
            Close::ClientDisconnect { with_will: keep } => with_will = *keep,
            Close::Violation(reason) => self.send_disconnect(*reason),
            Close::KeepAliveTimeout => self.send_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT),
            Close::TakenOver(_) => self.send_disconnect(ReasonCode::SESSION_TAKEN_OVER),
            Close::Shutdown => {
                self.send_disconnect(ReasonCode::SERVER_SHUTTING_DOWN);
                with_will = false;
            }
            Close::Revoked(reason) => {
                self.send_disconnect(*reason);
                with_will = false;
            }
            Close::Network | Close::Hibernate => {}
        }
        if !matches!(close, Close::Network) {
            let _ = self.flush().await;
            self.transport.close().await;
        }
        let broker = self.broker.clone();
        // A takeover asked for after we stopped listening: let it go on now.
        self.control.clear();
        let will = if with_will { self.will.take() } else { None };
        self.session.mailbox.set_online(false);

        // Shared-subscription messages not yet acknowledged go to another member.
        let session_id = self.session.id;
        let shared: Vec<u16> = self
            .session
            .inflight
            .iter()
            .filter(|(_, e)| e.delivery.share.is_some())
            .map(|(id, _)| *id)
            .collect();
        let mut pending = Vec::new();
        for id in shared {
            if let Some(entry) = self.session.inflight.remove(&id) {
                pending.push(entry.delivery);
            }
        }
        let queued = self.session.mailbox.take_all();
        let (queued_shared, queued_own): (Vec<_>, Vec<_>) =
            queued.into_iter().partition(|d| d.share.is_some());
        pending.extend(queued_shared);
        let mut kept = broker.redispatch_shared(session_id, pending);
        kept.extend(queued_own);
        self.session.mailbox.push_front_all(kept);

        let reason = close.describe();
        let ending = match close {
            Close::TakenOver(reply) => Ending::HandOver(reply),
            _ => Ending::Leave { expiry: self.session_expiry },
        };
        broker.close_session(self.id, self.session, will, ending, reason);
        broker.metrics.connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        broker.listener_closed(self.listener);
    }

    fn send_disconnect(&mut self, reason: ReasonCode) {
        if self.version.is_v5() {
            let packet =
                Packet::Disconnect(Disconnect { reason, properties: DisconnectProperties::default() });
            self.send(&packet);
        }
    }
}

#[cfg(test)]
mod size_tests {
    /// Every connection's task carries this future: keep it small (idle
    /// memory per connection), e.g. by boxing states that are short-lived.
    #[tokio::test]
    async fn a_tcp_connection_task_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let broker = crate::Broker::for_tests();
        let future = super::serve(broker, crate::transport::TcpTransport::new(stream), addr, 0);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 1024, "connection future grew to {size} bytes");
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let broker = crate::Broker::for_tests();
        let handshake =
            super::handshake::accept(broker, crate::transport::TcpTransport::new(stream), addr, 0);
        eprintln!("HANDSHAKE FUTURE SIZE {}", std::mem::size_of_val(&handshake));
    }
}

#[cfg(test)]
mod grid_tests {
    use super::*;

    #[test]
    fn hibernation_times_round_up_onto_a_shared_grid() {
        let start = Instant::now();
        let points: Vec<Instant> =
            (0..40).map(|n| on_hibernate_grid(start + Duration::from_millis(n * 13))).collect();
        for (n, point) in points.iter().enumerate() {
            let at = start + Duration::from_millis(n as u64 * 13);
            assert!(*point >= at, "never earlier");
            assert!(*point < at + HIBERNATE_GRID + Duration::from_millis(1), "at most one grid step later");
        }
        let mut distinct = points.clone();
        distinct.dedup();
        // 40 times over 520 ms fall on at most four points of a 250 ms grid.
        assert!(distinct.len() <= 4, "{} points", distinct.len());
    }
}
