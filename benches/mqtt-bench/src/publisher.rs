//! One publisher: sends PUBLISH packets for the measurement window.
//!
//! Three ways to run, chosen by QoS and pacing:
//! - QoS 0, unpaced: batches of publishes written as fast as the socket
//!   takes them; the only brake is TCP back-pressure from the broker. A
//!   batch is at most [`BATCH`] messages or [`BATCH_BYTES`], the next is
//!   queued only once it is written, and the socket's own buffer is small
//!   ([`SEND_BUFFER`]), so a publisher never has more than about 80 KiB
//!   on its way and yields to the other tasks (subscribers reading the
//!   deliveries) after every batch.
//! - QoS 1/2: at most `inflight` unfinished flows (see [`InFlight`]); the
//!   publisher waits for PUBACK, or PUBREC then PUBCOMP, to send more.
//! - Paced (latency): message n is due at `start + n / rate`; whatever is
//!   due is sent in one batch, then the publisher sleeps until the next.
//!
//! Invariants: nothing is queued after the window ends; after it, the
//! publisher only writes what it had queued and completes flows already
//! started, until the finish deadline, and reports those still open as
//! `unacked`. A message counts as sent once the socket has taken all of it:
//! what is still unwritten at the finish deadline is dropped and not counted
//! (nor its deliveries expected). Every wait has a deadline: no
//! acknowledgement for [`ACK_TIMEOUT`] is an error, and so is a broker that
//! takes none of the queued bytes for [`WRITE_TIMEOUT`]; one that takes them
//! slowly is measured as slow.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::bail;
use mqtt_codec::{Packet, PubAck, Publish, QoS};
use tokio::time::{sleep_until, Instant};

use crate::client::{describe_reason, disconnect_error, Client};
use crate::inflight::InFlight;
use crate::payload::{Clock, PayloadWriter, Stamp};

/// Longest wait for the broker to acknowledge anything while flows are open.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the broker may take none of the bytes queued for it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// SO_SNDBUF asked for on a publisher's socket (Linux doubles it). The
/// default grows to 4 MiB per socket: a hundred publishers then park
/// hundreds of megabytes in the kernel, and since Linux wakes a writer only
/// once half its buffer is free, a slow broker looks like one taking nothing.
pub const SEND_BUFFER: u32 = 32 * 1024;
/// Keep alive sent in CONNECT by the message scenarios' clients.
pub const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Publishes per batch when unpaced.
const BATCH: u64 = 64;
/// Bytes per batch: a batch is written once it gets this large.
const BATCH_BYTES: usize = 16 * 1024;

/// How many times the broker should deliver one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expected {
    /// Deliveries if overlapping subscriptions of one client get one copy.
    pub min: u64,
    /// Deliveries if they get one copy per matching subscription.
    pub max: u64,
}

/// Chooses the topic of each message a publisher sends.
pub trait TopicSource: Send {
    /// Sets the topic of the next message in `publish` and says how many
    /// deliveries that message should make.
    fn next_topic(&mut self, publish: &mut Publish) -> Expected;
}

/// Every message on one topic, delivered a known number of times.
#[derive(Debug)]
pub struct FixedTopic {
    topic: String,
    deliveries: u64,
}

impl FixedTopic {
    pub fn new(topic: String, deliveries: u64) -> FixedTopic {
        FixedTopic { topic, deliveries }
    }
}

impl TopicSource for FixedTopic {
    fn next_topic(&mut self, publish: &mut Publish) -> Expected {
        if publish.topic != self.topic {
            publish.topic.clone_from(&self.topic);
        }
        Expected { min: self.deliveries, max: self.deliveries }
    }
}

/// Message `n` is due at `start + n / per_second`.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub start: Instant,
    pub per_second: f64,
}

impl Pacing {
    /// How many messages should have been sent by `now`.
    fn due_by(&self, now: Instant) -> u64 {
        if now < self.start {
            return 0;
        }
        // Saturating float-to-int conversion; the +1 sends message 0 at start.
        (now.duration_since(self.start).as_secs_f64() * self.per_second) as u64 + 1
    }

    /// When message `sent` (0-based) is due.
    fn due_at(&self, sent: u64) -> Instant {
        self.start + Duration::from_secs_f64(sent as f64 / self.per_second)
    }
}

/// The publishing window shared by every publisher of a run.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// No publish is sent at or after this instant.
    pub end: Instant,
    /// Open flows are given up at this instant.
    pub finish: Instant,
}

/// What one publisher does.
pub struct PublisherPlan {
    /// The publisher's number, carried in each payload's stamp.
    pub index: u32,
    pub topics: Box<dyn TopicSource>,
    /// Messages to send at most.
    pub quota: Option<u64>,
    pub pacing: Option<Pacing>,
}

/// Settings common to every publisher of a run.
#[derive(Debug, Clone, Copy)]
pub struct PublishSettings {
    pub qos: QoS,
    pub payload_size: usize,
    pub inflight: u16,
    pub clock: Clock,
    pub window: Window,
}

/// What one publisher did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublisherReport {
    /// PUBLISH packets written.
    pub sent: u64,
    /// QoS 1/2 flows still open at the finish deadline.
    pub unacked: u64,
    pub expected: Expected,
    /// When the last PUBLISH was queued.
    pub last_send: Option<Instant>,
}

/// Runs one publisher over an open connection until its window closes and
/// its flows complete (or the finish deadline passes), then disconnects.
pub async fn run(
    client: Client,
    plan: PublisherPlan,
    settings: PublishSettings,
) -> anyhow::Result<PublisherReport> {
    let limit = settings.inflight.min(client.server_receive_maximum());
    if limit < settings.inflight && plan.index == 0 {
        tracing::info!(limit, "the broker's Receive Maximum caps the in-flight window");
    }
    let mut publisher = Publisher {
        client,
        publish: Publish { qos: settings.qos, ..Publish::default() },
        payloads: PayloadWriter::new(settings.payload_size),
        inflight: InFlight::new(limit),
        plan,
        settings,
        report: PublisherReport::default(),
        last_write: Instant::now(),
        queued: 0,
        unwritten: VecDeque::new(),
    };
    publisher.run().await?;
    let finish = publisher.settings.window.finish.max(Instant::now() + Duration::from_millis(200));
    publisher.drop_unwritten(finish).await?;
    publisher.report.unacked = publisher.inflight.len() as u64;
    let report = publisher.report;
    publisher.client.close(finish).await;
    Ok(report)
}

/// A PUBLISH queued and not yet wholly written.
#[derive(Debug)]
struct Unwritten {
    /// Where it ends in the client's count of bytes queued.
    end: u64,
    expected: Expected,
    packet_id: Option<u16>,
}

struct Publisher {
    client: Client,
    /// Reused for every message: only topic, packet id and payload change.
    publish: Publish,
    payloads: PayloadWriter,
    inflight: InFlight,
    plan: PublisherPlan,
    settings: PublishSettings,
    report: PublisherReport,
    last_write: Instant,
    /// Messages queued so far (sent or not): the next one's sequence number.
    queued: u64,
    /// Queued messages the socket has not wholly taken yet, oldest first.
    unwritten: VecDeque<Unwritten>,
}

impl Publisher {
    async fn run(&mut self) -> anyhow::Result<()> {
        let window = self.settings.window;
        loop {
            let now = Instant::now();
            let sending = now < window.end && !self.quota_reached();
            if sending && self.client.pending_bytes() < BATCH_BYTES {
                self.queue_due(now)?;
            }
            if now.duration_since(self.last_write) >= KEEP_ALIVE / 2 {
                self.client.queue(&Packet::PingReq)?;
            }
            if now >= window.finish {
                // Flows still open are reported as unacked.
                return Ok(());
            }
            if self.client.pending_bytes() > 0 {
                // A broker that pushes back (TCP) is slow, not failing: wait
                // for it, even past the window's end, as long as it takes
                // something every WRITE_TIMEOUT; give up at the finish.
                let written = self.client.written();
                let result = self.client.write_queued(WRITE_TIMEOUT, window.finish).await;
                if self.client.written() > written {
                    self.last_write = Instant::now();
                }
                self.settle();
                if !result? {
                    return Ok(());
                }
            }
            if !sending && self.inflight.is_empty() {
                return Ok(());
            }
            let next_due = match (sending, self.plan.pacing) {
                (true, Some(pacing)) => Some(pacing.due_at(self.queued).min(window.end)),
                _ => None,
            };
            if self.inflight.is_empty() {
                match next_due {
                    Some(at) => sleep_until(at.min(now + KEEP_ALIVE / 2)).await,
                    // QoS 0 flat out: let the other tasks run, then send more.
                    None => tokio::task::yield_now().await,
                }
                continue;
            }
            self.wait_for_acks(now, next_due.filter(|_| self.inflight.room() > 0)).await?;
        }
    }

    /// Waits for the broker's next packet, or until `wake` (the next paced
    /// message, when the window has room).
    async fn wait_for_acks(&mut self, now: Instant, wake: Option<Instant>) -> anyhow::Result<()> {
        let finish = self.settings.window.finish;
        let deadline = (now + ACK_TIMEOUT).min(finish);
        tokio::select! {
            packet = self.client.recv(deadline) => match packet? {
                Some(packet) => {
                    self.on_packet(packet)?;
                    while let Some(packet) = self.client.try_decode()? {
                        self.on_packet(packet)?;
                    }
                }
                None if Instant::now() >= finish => {}
                None => bail!(
                    "no acknowledgement from the broker for {:?} with {} publishes in flight",
                    ACK_TIMEOUT,
                    self.inflight.len()
                ),
            },
            () = sleep_until(wake.unwrap_or(deadline)), if wake.is_some() => {}
        }
        Ok(())
    }

    fn quota_reached(&self) -> bool {
        self.plan.quota.is_some_and(|quota| self.queued >= quota)
    }

    /// Counts as sent the messages the socket has wholly taken.
    fn settle(&mut self) {
        let written = self.client.written();
        let mut settled = false;
        while let Some(message) = self.unwritten.front().filter(|message| message.end <= written) {
            self.report.sent += 1;
            self.report.expected.min += message.expected.min;
            self.report.expected.max += message.expected.max;
            self.unwritten.pop_front();
            settled = true;
        }
        if settled {
            self.report.last_send = Some(Instant::now());
        }
    }

    /// At the finish: drops the messages the broker has seen nothing of
    /// (they are not sent, and their flows are given back), and tries to
    /// complete one the socket took part of, by `deadline`.
    async fn drop_unwritten(&mut self, deadline: Instant) -> anyhow::Result<()> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        self.client.discard_unwritten();
        // Only the rest of a partly written packet can be left.
        let _ = self.client.flush(deadline).await;
        self.settle();
        let dropped = self.unwritten.len();
        for message in self.unwritten.drain(..) {
            if let Some(id) = message.packet_id {
                self.inflight.cancel(id)?;
            }
        }
        if self.plan.index == 0 {
            tracing::debug!(dropped, "messages still unwritten at the finish were not sent");
        }
        Ok(())
    }

    /// Queues what may be sent now: a batch, or what pacing has made due,
    /// within the quota and the in-flight window.
    fn queue_due(&mut self, now: Instant) -> anyhow::Result<()> {
        let mut allowed = match self.plan.pacing {
            Some(pacing) => pacing.due_by(now).saturating_sub(self.queued),
            None => BATCH,
        };
        if let Some(quota) = self.plan.quota {
            allowed = allowed.min(quota.saturating_sub(self.queued));
        }
        for _ in 0..allowed {
            self.publish.packet_id = match self.settings.qos {
                QoS::AtMostOnce => None,
                QoS::AtLeastOnce | QoS::ExactlyOnce => match self.inflight.start() {
                    Some(id) => Some(id),
                    None => break,
                },
            };
            let expected = self.plan.topics.next_topic(&mut self.publish);
            let stamp = Stamp {
                publisher: self.plan.index,
                sequence: self.queued,
                sent_ns: self.settings.clock.now_ns(),
            };
            self.publish.payload = self.payloads.payload(stamp);
            let end = self.client.queue_publish(&self.publish)?;
            self.unwritten.push_back(Unwritten { end, expected, packet_id: self.publish.packet_id });
            self.queued += 1;
            if self.client.pending_bytes() >= BATCH_BYTES {
                break;
            }
        }
        Ok(())
    }

    fn on_packet(&mut self, packet: Packet) -> anyhow::Result<()> {
        match packet {
            Packet::PubAck(ack) => {
                check_ack_reason("PUBACK", &ack)?;
                self.inflight.on_puback(ack.packet_id)
            }
            Packet::PubRec(ack) => {
                check_ack_reason("PUBREC", &ack)?;
                self.inflight.on_pubrec(ack.packet_id)?;
                let release = PubAck { packet_id: ack.packet_id, ..PubAck::default() };
                self.client.queue(&Packet::PubRel(release))
            }
            Packet::PubComp(ack) => {
                check_ack_reason("PUBCOMP", &ack)?;
                self.inflight.on_pubcomp(ack.packet_id)
            }
            Packet::PingResp => Ok(()),
            Packet::Disconnect(disconnect) => Err(disconnect_error(&disconnect)),
            other => bail!("a publisher got an unexpected packet of type {}", other.packet_type()),
        }
    }
}

/// MQTT 5.0 acks carry a reason; 0x80 and above mean the broker refused.
fn check_ack_reason(name: &str, ack: &PubAck) -> anyhow::Result<()> {
    if ack.reason.is_success() {
        return Ok(());
    }
    bail!(
        "the broker answered packet id {} with {name} 0x{:02x} ({})",
        ack.packet_id,
        ack.reason.0,
        describe_reason(ack.reason)
    );
}

/// Splits `total` messages over `parts` publishers as evenly as possible.
pub fn split_count(total: u64, parts: usize) -> Vec<u64> {
    let parts_u64 = parts as u64;
    (0..parts_u64).map(|index| total / parts_u64 + u64::from(index < total % parts_u64)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_count_spreads_the_remainder() {
        assert_eq!(split_count(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(split_count(2, 3), vec![1, 1, 0]);
    }

    #[test]
    fn pacing_sends_the_first_message_at_start() {
        let start = Instant::now();
        let pacing = Pacing { start, per_second: 1000.0 };
        assert_eq!(pacing.due_by(start), 1);
        assert_eq!(pacing.due_by(start + Duration::from_millis(10)), 11);
        assert_eq!(pacing.due_at(5), start + Duration::from_millis(5));
        assert_eq!(pacing.due_by(start - Duration::from_millis(1)), 0);
    }

    #[test]
    fn fixed_topic_sets_the_topic_once() {
        let mut topic = FixedTopic::new("bench/x".into(), 3);
        let mut publish = Publish::default();
        assert_eq!(topic.next_topic(&mut publish), Expected { min: 3, max: 3 });
        assert_eq!(publish.topic, "bench/x");
    }
}
