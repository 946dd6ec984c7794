//! The receiving side of peer links: the `Peer` service on
//! `dataplane.peer_bind`.
//!
//! Each batch is checked (the peer secret on the stream, the shape of each
//! message), routed to this node's own subscribers (never to `$local/`
//! ones, never forwarded again), then acknowledged. Invariants: for one
//! sending process (node and epoch), batches are delivered once each and in
//! order: a batch already delivered is acknowledged again without being
//! delivered, and one that would leave a gap ends the stream (the sender
//! resends from its oldest unacknowledged batch); a malformed message is
//! dropped and counted, never fatal to the batch.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use proto::auth::{constant_time_eq, presented_token};
use proto::peer as pb;
use proto::peer::peer_server::{Peer, PeerServer};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info};

use super::MAX_BATCH_BYTES;
use crate::broker::Broker;
use crate::pressure::Pressure;

/// Acknowledgements a stream buffers: more than a sender keeps in flight,
/// so sending one never waits.
const ACK_BUFFER: usize = 1024;

/// How long a batch's acknowledgement waits for each subscriber queue it
/// filled past half to drain (as a publisher's connection waits; a queue
/// that does not drain in time stops holding anyone back).
const PRESSURE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Where one sending process is.
#[derive(Debug, Default)]
struct Sender {
    epoch: u64,
    /// The last batch delivered (0: none yet for this epoch).
    delivered: u64,
    /// Messages of the next batch already routed (a batch paused for
    /// back-pressure; resent after a broken stream, it goes on from here).
    partial: usize,
}

/// What became of a batch.
enum Taken {
    /// Routed (or routed before): acknowledge `seq` once `pressure` drained.
    Done { seq: u64, pressure: Vec<Pressure> },
    /// Routed up to a message that filled a queue past half: wait for
    /// `pressure`, then take the batch again to route the rest.
    Paused { pressure: Vec<Pressure> },
}

/// The `Peer` service of this node.
#[derive(Clone)]
pub struct PeerService {
    inner: Arc<Receiver>,
}

/// What the service's streams share.
struct Receiver {
    broker: Arc<Broker>,
    senders: Mutex<HashMap<u64, Arc<Mutex<Sender>>>>,
}

/// How a forwarded message came: from which node, for this node's plain
/// subscriptions or not, and for which shared groups' members here.
#[derive(Debug, Default)]
pub struct Arrival {
    pub from: u64,
    pub plain: bool,
    pub shares: Vec<pb::ShareMember>,
    pub redirected: bool,
    /// Store it as its topic's retained message, if newer than what is held.
    pub retained: Option<crate::retained::Version>,
}

/// Why one batch was not taken.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// A batch after a gap: the stream ends, the sender resends.
    Gap { expected: u64, got: u64 },
}

impl PeerService {
    pub fn new(broker: Arc<Broker>) -> PeerService {
        PeerService { inner: Arc::new(Receiver { broker, senders: Mutex::new(HashMap::new()) }) }
    }
}

impl Receiver {
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let secret = self.broker.access.view().peer_secret.clone();
        if secret.is_empty() {
            return Err(Status::unavailable("no peer secret from the control plane yet"));
        }
        let presented = presented_token(request.metadata())?;
        if constant_time_eq(presented.as_bytes(), secret.as_bytes()) {
            Ok(())
        } else {
            Err(Status::unauthenticated("wrong peer secret"))
        }
    }

    /// Refuses a request that says it comes from this node.
    fn check_sender(&self, from: u64) -> Result<(), Status> {
        if self.broker.peers().map(|peers| peers.me()) == Some(from) {
            return Err(Status::invalid_argument("a request from this node's own id"));
        }
        Ok(())
    }

    /// Routes a batch (once: a batch seen before is only acknowledged),
    /// pausing after a message that filled a subscriber queue past half, as
    /// a publisher's connection pauses; the messages routed are taken out of
    /// `batch`.
    fn take(&self, batch: &mut pb::Batch) -> Result<Taken, Refusal> {
        let sender = self.senders.lock().entry(batch.from_node).or_default().clone();
        let mut sender = sender.lock();
        if sender.epoch != batch.epoch {
            // A new process on that node (or the first batch we see from it).
            *sender = Sender { epoch: batch.epoch, delivered: batch.seq.saturating_sub(1), partial: 0 };
        }
        if batch.seq <= sender.delivered {
            return Ok(Taken::Done { seq: batch.seq, pressure: Vec::new() });
        }
        if batch.seq != sender.delivered + 1 {
            return Err(Refusal::Gap { expected: sender.delivered + 1, got: batch.seq });
        }
        let now = Instant::now();
        let mut pressure = Vec::new();
        let counters = self.broker.peers().map(|peers| &peers.counters);
        let total = batch.messages.len();
        while sender.partial < total {
            let index = sender.partial;
            sender.partial += 1;
            let mut wire = std::mem::take(&mut batch.messages[index]);
            let arrival = Arrival {
                from: batch.from_node,
                plain: !wire.shares_only,
                shares: std::mem::take(&mut wire.shares),
                redirected: wire.redirected,
                retained: wire.retained.as_ref().map(super::version_from_wire),
            };
            match super::from_wire(wire, now) {
                Ok(message) => {
                    if let Some(counters) = counters {
                        counters.received.fetch_add(1, Ordering::Relaxed);
                    }
                    self.broker.publish_from_peer(Arc::new(message), arrival, &mut pressure);
                    if !pressure.is_empty() && sender.partial < total {
                        return Ok(Taken::Paused { pressure });
                    }
                }
                Err(error) => {
                    debug!(from = batch.from_node, %error, "malformed forwarded message dropped");
                    if let Some(counters) = counters {
                        counters.received_malformed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        sender.delivered = batch.seq;
        sender.partial = 0;
        Ok(Taken::Done { seq: batch.seq, pressure })
    }
}

type AckStream = tokio_stream::wrappers::ReceiverStream<Result<pb::Ack, Status>>;

type RetainedStream = tokio_stream::wrappers::ReceiverStream<Result<pb::RetainedChunk, Status>>;

/// Payload bytes in one chunk of retained messages, about.
const RETAINED_CHUNK_BYTES: usize = 1024 * 1024;

#[tonic::async_trait]
impl Peer for PeerService {
    type ForwardStream = AckStream;
    type RetainedStream = RetainedStream;

    async fn retained(
        &self,
        request: Request<pb::RetainedRequest>,
    ) -> Result<Response<Self::RetainedStream>, Status> {
        self.inner.authorize(&request)?;
        let chunks = self.inner.broker.retained.versions(RETAINED_CHUNK_BYTES);
        let (sender, receiver) = mpsc::channel(2);
        tokio::spawn(async move {
            let now = Instant::now();
            for chunk in chunks {
                let messages = chunk
                    .into_iter()
                    .map(|(message, version)| pb::PeerMessage {
                        retained: Some(super::version_to_wire(version)),
                        shares_only: true,
                        ..super::to_wire(&message, now)
                    })
                    .collect();
                if sender.send(Ok(pb::RetainedChunk { messages })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(receiver)))
    }

    async fn forward(
        &self,
        request: Request<Streaming<pb::Batch>>,
    ) -> Result<Response<Self::ForwardStream>, Status> {
        self.inner.authorize(&request)?;
        let mut batches = request.into_inner();
        let (acks, receiver) = mpsc::channel(ACK_BUFFER);
        let service = Arc::clone(&self.inner);
        tokio::spawn(async move {
            loop {
                let batch = match batches.message().await {
                    Ok(Some(batch)) => batch,
                    Ok(None) => return,
                    Err(status) => {
                        debug!(%status, "peer stream ended");
                        return;
                    }
                };
                let from = batch.from_node;
                let mut batch = batch;
                // The sender's publishers are slowed by what this link holds
                // unacknowledged: the rest of the batch, its ack and the next
                // batch wait while the subscribers here catch up.
                loop {
                    let (pressure, acked) = match service.take(&mut batch) {
                        Ok(Taken::Paused { pressure }) => (pressure, None),
                        Ok(Taken::Done { seq, pressure }) => (pressure, Some(seq)),
                        Err(Refusal::Gap { expected, got }) => {
                            debug!(from, expected, got, "peer batch after a gap; ending the stream");
                            let status =
                                Status::failed_precondition(format!("expected batch {expected}, got {got}"));
                            let _ = acks.send(Err(status)).await;
                            return;
                        }
                    };
                    for queue in &pressure {
                        queue.wait(tokio::time::Instant::now() + PRESSURE_WAIT).await;
                    }
                    if let Some(seq) = acked {
                        if acks.send(Ok(pb::Ack { seq })).await.is_err() {
                            return;
                        }
                        break;
                    }
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(receiver)))
    }

    async fn claim(&self, request: Request<pb::ClaimBatch>) -> Result<Response<pb::ClaimResults>, Status> {
        self.inner.authorize(&request)?;
        let batch = request.into_inner();
        self.inner.check_sender(batch.from_node)?;
        if batch.claims.len() > MAX_CLAIMS {
            return Err(Status::invalid_argument("too many claims in one batch"));
        }
        let results =
            crate::cluster::sessions::give_up(&self.inner.broker, batch.from_node, batch.claims).await;
        Ok(Response::new(pb::ClaimResults { results }))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseReply>, Status> {
        self.inner.authorize(&request)?;
        let request = request.into_inner();
        self.inner.check_sender(request.from_node)?;
        let queued = crate::cluster::sessions::release_moved(
            &self.inner.broker,
            request.from_node,
            &request.client_id,
        );
        Ok(Response::new(pb::ReleaseReply { queued }))
    }

    async fn reconcile(&self, request: Request<pb::ClientList>) -> Result<Response<pb::ClientList>, Status> {
        self.inner.authorize(&request)?;
        let list = request.into_inner();
        self.inner.check_sender(list.from_node)?;
        let me = self.inner.broker.peers().map_or(0, |peers| peers.me());
        // The caller sees this node again after a cut: take its retained
        // messages, which changes made meanwhile may not have reached.
        if let Some(links) = self.inner.broker.peers() {
            let address = links.view().peers.get(&list.from_node).map(|peer| peer.address.clone());
            if let Some(address) = address.filter(|a| !a.is_empty()) {
                crate::cluster::reconcile::resync_retained(
                    &self.inner.broker,
                    links,
                    list.from_node,
                    address,
                );
            }
        }
        Ok(Response::new(crate::cluster::reconcile::answer(&self.inner.broker, list, me)))
    }

    async fn announce(&self, request: Request<pb::Announcement>) -> Result<Response<pb::Announced>, Status> {
        self.inner.authorize(&request)?;
        let announcement = request.into_inner();
        self.inner.check_sender(announcement.from_node)?;
        if announcement.filters.len() + announcement.members.len() > MAX_ANNOUNCED {
            return Err(Status::invalid_argument("too many routes in one announcement"));
        }
        let bad_filter =
            |f: &str| !matches!(crate::topic::parse_filter(f), Ok(crate::topic::ParsedFilter::Plain(_)));
        if announcement.filters.iter().any(|f| bad_filter(f))
            || announcement.members.iter().any(|m| bad_filter(&m.topic_filter) || m.group.is_empty())
        {
            return Err(Status::invalid_argument("a malformed topic filter"));
        }
        if !self.inner.broker.announced.add(
            announcement.from_node,
            &announcement.filters,
            &announcement.members,
        ) {
            return Err(Status::resource_exhausted("too many announced routes held"));
        }
        Ok(Response::new(pb::Announced {}))
    }
}

/// Claims in one batch, at most.
const MAX_CLAIMS: usize = 100_000;

/// Routes in one announcement, at most (a larger burst is split by the
/// sender's batching only in time, so this is generous).
const MAX_ANNOUNCED: usize = 1_000_000;

/// Serves the `Peer` service on `listener` until the task is aborted.
pub async fn serve(broker: Arc<Broker>, listener: tokio::net::TcpListener) {
    let address = listener.local_addr().ok();
    let server_broker = broker.clone();
    let service = PeerService::new(broker);
    // The secret is checked on the headers, before a body (up to
    // MAX_BATCH_BYTES) is read and decoded; each call checks it again.
    let receiver = service.inner.clone();
    let server = tonic::service::interceptor::InterceptedService::new(
        PeerServer::new(service)
            .max_decoding_message_size(MAX_BATCH_BYTES)
            .max_encoding_message_size(MAX_BATCH_BYTES),
        move |request: Request<()>| receiver.authorize(&request).map(|()| request),
    );
    let mut builder = tonic::transport::Server::builder();
    let tls = broker_tls(&server_broker);
    if let Some(tls) = tls {
        builder = match builder.tls_config(tls.server) {
            Ok(builder) => builder,
            Err(error) => {
                tracing::error!(%error, "peer link TLS settings refused; not serving");
                return;
            }
        };
    }
    info!(?address, tls = builder_tls_name(&server_broker), "peer link serving");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    if let Err(error) = builder.add_service(server).serve_with_incoming(incoming).await {
        tracing::error!(%error, "peer link server stopped");
    }
}

fn broker_tls(broker: &Broker) -> Option<super::PeerTls> {
    broker.peers().and_then(|peers| peers.tls().cloned())
}

fn builder_tls_name(broker: &Broker) -> &'static str {
    if broker_tls(broker).is_some() {
        "mutual TLS"
    } else {
        "plain TCP"
    }
}

/// Binds the peer link's address.
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arc_swap::ArcSwap;
    use proto::peer::peer_client::PeerClient;

    use super::*;
    use crate::cluster::view::ClusterView;
    use crate::mailbox::Mailbox;
    use crate::router::Subscriber;

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    async fn node() -> (Arc<Broker>, Arc<Mailbox>, String) {
        let view = ClusterView { loaded: true, peer_secret: Arc::from(SECRET), ..Default::default() };
        let view = Arc::new(ArcSwap::from_pointee(view));
        let broker =
            Broker::new(Default::default(), "n".into(), view, None, Default::default(), Default::default());
        let mailbox = Arc::new(Mailbox::new());
        mailbox.set_online(true);
        let subscriber = Subscriber { session: 1, client_id: Arc::from("sub"), mailbox: mailbox.clone() };
        let filter = crate::topic::parse_filter("t/#").expect("filter");
        broker.subscribe(&filter, subscriber, Default::default(), None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(serve(broker.clone(), listener));
        (broker, mailbox, url)
    }

    fn message(topic: &str) -> pb::PeerMessage {
        pb::PeerMessage {
            topic: topic.into(),
            payload: bytes::Bytes::from_static(b"x"),
            qos: 1,
            ..Default::default()
        }
    }

    fn batch(seq: u64, messages: Vec<pb::PeerMessage>) -> pb::Batch {
        pb::Batch { from_node: 7, epoch: 42, seq, messages }
    }

    async fn client(
        url: &str,
        secret: &str,
    ) -> PeerClient<
        tonic::service::interceptor::InterceptedService<tonic::transport::Channel, proto::auth::BearerToken>,
    > {
        for _ in 0..50 {
            if let Ok(channel) =
                tonic::transport::Endpoint::from_shared(url.to_string()).expect("url").connect().await
            {
                return PeerClient::with_interceptor(
                    channel,
                    proto::auth::BearerToken::new(Some(secret)).expect("token"),
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the peer server does not answer");
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_and_nothing_is_delivered() {
        let (_broker, mailbox, url) = node().await;
        let mut peer = client(&url, "not-the-secret").await;
        let stream = futures_util::stream::iter([batch(1, vec![message("t/a")])]);
        let status = peer.forward(stream).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(mailbox.is_empty());
    }

    #[tokio::test]
    async fn batches_are_delivered_once_in_order_and_a_gap_ends_the_stream() {
        let (broker, mailbox, url) = node().await;
        let mut peer = client(&url, SECRET).await;
        let (requests, receiver) = mpsc::channel(8);
        let mut acks = peer
            .forward(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
            .expect("stream")
            .into_inner();
        // One good message, one with a wildcard topic (dropped, counted).
        requests.send(batch(1, vec![message("t/a"), message("t/+")])).await.expect("send");
        assert_eq!(acks.message().await.expect("ack").expect("one").seq, 1);
        assert_eq!(mailbox.len(), 1, "the malformed message is dropped, the other delivered");
        // The same batch again (a resend after a reconnection): acknowledged, not delivered.
        requests.send(batch(1, vec![message("t/a")])).await.expect("send");
        assert_eq!(acks.message().await.expect("ack").expect("one").seq, 1);
        assert_eq!(mailbox.len(), 1, "a batch already delivered is not delivered again");
        requests.send(batch(2, vec![message("t/b")])).await.expect("send");
        assert_eq!(acks.message().await.expect("ack").expect("one").seq, 2);
        assert_eq!(mailbox.len(), 2);
        // Batch 4 after 2: a gap; the stream ends and nothing is delivered.
        requests.send(batch(4, vec![message("t/c")])).await.expect("send");
        let status = acks.message().await.expect_err("a gap ends the stream");
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(mailbox.len(), 2);
        drop(broker);
    }

    #[tokio::test]
    async fn announcements_need_the_secret_and_well_formed_plain_filters() {
        let (broker, _mailbox, url) = node().await;
        let announcement = |filters: &[&str], members: Vec<pb::ShareMember>| pb::Announcement {
            from_node: 7,
            filters: filters.iter().map(|f| f.to_string()).collect(),
            members,
        };
        let mut stranger = client(&url, "not-the-secret").await;
        let status = stranger.announce(announcement(&["a/+"], vec![])).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(broker.announced.is_empty());

        let mut peer = client(&url, SECRET).await;
        for bad in ["a/#/b", "$share/g/a", "$local/a", ""] {
            let status = peer.announce(announcement(&[bad], vec![])).await.expect_err(bad);
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
        let member = |group: &str, filter: &str| pb::ShareMember {
            group: group.into(),
            topic_filter: filter.into(),
            client_id: "c".into(),
        };
        let status = peer.announce(announcement(&[], vec![member("", "s")])).await.expect_err("no group");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(broker.announced.is_empty(), "a refused announcement changes nothing");

        peer.announce(announcement(&["a/+"], vec![member("g", "s/#")])).await.expect("taken");
        let mut nodes = Vec::new();
        broker.announced.routes.nodes_for("a/b", 0, &mut nodes);
        assert_eq!(nodes, vec![7]);
        assert_eq!(broker.announced.shares.len(), 1);
    }
}
