//! One client connection, from CONNECT to close.
//!
//! The task owns the transport, the read and write buffers and, while the
//! client is connected, its session state. Each turn of the loop drains the
//! session's mailbox into the write buffer (as far as the in-flight window
//! allows), writes the buffer once, then waits for whichever comes first:
//! bytes from the client, a new delivery, the keep-alive deadline, a takeover
//! or shutdown. Invariants: a malformed packet or protocol violation closes
//! this connection alone (with the spec's reason code for MQTT 5.0 clients);
//! the session state is always handed on when the task ends (parked,
//! ended, or given to the connection that took it over).

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
use crate::message::Message;
use crate::metrics::Metrics;
use crate::registry::{ConnectionId, Control, ControlSlot};
use crate::session::SessionState;
use crate::transport::Transport;

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
}

/// Settings the client chose in CONNECT, after the server's caps.
#[derive(Debug, Clone)]
pub(crate) struct ClientLimits {
    /// Client's Receive Maximum, capped by `mqtt.max_inflight`.
    pub window: usize,
    /// Largest packet the client accepts.
    pub max_packet_size: usize,
    /// Topic aliases the client accepts from us.
    pub topic_alias_maximum: u16,
}

/// A live connection with its session.
pub(crate) struct Connection<T: Transport> {
    broker: Arc<Broker>,
    transport: T,
    id: ConnectionId,
    version: ProtocolVersion,
    read_buf: BytesMut,
    write_buf: BytesMut,
    session: Box<SessionState>,
    /// Seconds; 0 turns the keep-alive check off.
    keep_alive: u16,
    last_read: Instant,
    limits: ClientLimits,
    session_expiry: u32,
    will: Option<(Arc<Message>, u32)>,
    /// Subscribers' queues that asked this publisher to slow down: the
    /// connection waits for them to drain before it reads more.
    pressure: Vec<Arc<crate::mailbox::Mailbox>>,
    /// Who the client is, for ACL checks.
    identity: Arc<crate::cluster::access::Identity>,
    /// Topic aliases the client set towards us.
    aliases_in: HashMap<u16, String>,
    /// Topic aliases we set towards the client.
    aliases_out: HashMap<String, u16>,
    control: Arc<ControlSlot>,
}

/// Serves one client until it goes away.
pub async fn serve<T: Transport>(broker: Arc<Broker>, transport: T, peer: SocketAddr) {
    let span = tracing::debug_span!("conn", %peer, client_id = tracing::field::Empty);
    async move {
        Metrics::add(&broker.metrics.connections, 1);
        // Boxed so that the handshake's state is freed once it is done,
        // rather than sizing every connection's task for it.
        let connection = Box::pin(handshake::accept(broker.clone(), transport, peer)).await;
        if let Some(connection) = connection {
            Metrics::add(&broker.metrics.connections_total, 1);
            connection.run().await;
        }
        broker.metrics.connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
    .instrument(span)
    .await
}

impl<T: Transport> Connection<T> {
    /// Serves the connection; boxed, so that the task holds one pointer to
    /// it rather than room for it at every await point.
    async fn run(mut self: Box<Self>) {
        // Packets pipelined behind CONNECT are already in the read buffer.
        let close = match self.resend_inflight().and_then(|()| self.handle_input()) {
            Ok(()) => {
                if self.read_buf.is_empty() {
                    self.read_buf = BytesMut::new();
                }
                self.serve_loop().await
            }
            Err(close) => close,
        };
        debug!(?close, "connection closing");
        // Boxed: closing needs its own copy of the connection, which every
        // live connection's task would otherwise carry room for.
        Box::pin(self.finish(close)).await;
    }

    async fn serve_loop(&mut self) -> Close {
        let mailbox = self.session.mailbox.clone();
        // One timer for the connection's life, re-armed only when it fires
        // early (the client spoke since), not on every turn of the loop.
        let keep_alive = self.keep_alive > 0;
        let first_deadline = self.keep_alive_deadline().unwrap_or_else(Instant::now);
        let timer = tokio::time::sleep_until(first_deadline);
        tokio::pin!(timer);
        loop {
            if let Err(close) = self.pump() {
                return close;
            }
            if let Err(close) = self.flush().await {
                return close;
            }
            tokio::select! {
                biased;
                control = self.control.recv() => match control {
                    Control::TakeOver { reply } => return Close::TakenOver(reply),
                    Control::Shutdown => return Close::Shutdown,
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
                _ = &mut timer, if keep_alive => match self.keep_alive_deadline() {
                    Some(deadline) if deadline > Instant::now() => timer.as_mut().reset(deadline),
                    _ => return Close::KeepAliveTimeout,
                },
            }
        }
    }

    /// Back-pressure: waits (bounded per queue) for the subscribers this
    /// client's messages are piling up at, before reading more from it.
    async fn yield_to_subscribers(&mut self) {
        if self.pressure.is_empty() {
            return;
        }
        let own = self.session.mailbox.clone();
        for mailbox in std::mem::take(&mut self.pressure) {
            if Arc::ptr_eq(&mailbox, &own) {
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
                    _ = mailbox.wait_drained(deadline) => break,
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
        let result = self.transport.write_all(&self.write_buf).await;
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
            Close::Network => {}
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

        match close {
            Close::TakenOver(reply) => {
                if let Some((message, 0)) = will {
                    broker.publish_will(message);
                }
                if let Err(state) = reply.send(self.session) {
                    broker.end_session(state);
                }
            }
            _ if self.session_expiry == 0 => {
                broker.registry.release(&self.session.client_id, self.id);
                if let Some((message, _)) = will {
                    broker.publish_will(message);
                }
                broker.end_session(self.session);
            }
            _ => {
                let will = match will {
                    Some((message, 0)) => {
                        broker.publish_will(message);
                        None
                    }
                    other => other,
                };
                broker.park_session(self.id, self.session, self.session_expiry, will);
            }
        }
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
        let broker = crate::Broker::new(Default::default(), "n".into(), Default::default(), None);
        let future = super::serve(broker, crate::transport::TcpTransport(stream), addr);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 1024, "connection future grew to {size} bytes");
    }
}
