//! One subscriber: subscribes, then counts, checks and acknowledges every
//! delivery until told to stop.
//!
//! Acknowledgements follow the spec: PUBACK for QoS 1; PUBREC for QoS 2,
//! then PUBCOMP when the broker's PUBREL comes. A QoS 2 PUBLISH whose packet
//! id is still awaiting PUBREL is a resend and is not counted twice. Acks for
//! one read are queued together and written as the socket takes them, while
//! reading goes on: a subscriber never stops reading to wait for a write.
//!
//! Invariant: the shared `received` counter is updated after each read, so
//! the coordinator can watch deliveries arrive while draining.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use mqtt_codec::{Packet, PubAck, Publish, QoS, Subscribe, SubscriptionOptions};
use tokio::sync::watch;
use tokio::time::{interval_at, sleep_until, Instant};

use crate::client::{describe_reason, disconnect_error, Client, Transfer};
use crate::payload::{read_stamp, Clock, Seen, SequenceCounts, SequenceTracker};
use crate::publisher::{KEEP_ALIVE, WRITE_TIMEOUT};

/// Topic filters per SUBSCRIBE packet.
pub const FILTERS_PER_SUBSCRIBE: usize = 100;
/// SUBSCRIBE packets sent ahead of their SUBACKs on one connection.
const SUBSCRIBE_WINDOW: usize = 16;

/// Subscribes `client` to `filters` at `qos`, in SUBSCRIBE packets of
/// [`FILTERS_PER_SUBSCRIBE`] filters, and checks every SUBACK.
pub async fn subscribe(
    client: &mut Client,
    filters: &[String],
    qos: QoS,
    deadline: Instant,
) -> anyhow::Result<()> {
    let options = SubscriptionOptions { qos, ..SubscriptionOptions::default() };
    let mut chunks = filters.chunks(FILTERS_PER_SUBSCRIBE).enumerate().peekable();
    // The filter count of each outstanding SUBSCRIBE, by packet id.
    let mut outstanding: Vec<Option<usize>> = vec![None; 1 << 16];
    let mut open = 0;
    let mut lowered = false;
    while chunks.peek().is_some() || open > 0 {
        while open < SUBSCRIBE_WINDOW {
            let Some((index, chunk)) = chunks.next() else { break };
            let packet_id = u16::try_from(index % usize::from(u16::MAX) + 1).context("packet id")?;
            let subscribe = Subscribe {
                packet_id,
                filters: chunk.iter().map(|filter| (filter.clone(), options)).collect(),
                ..Subscribe::default()
            };
            client.queue(&Packet::Subscribe(subscribe))?;
            outstanding[usize::from(packet_id)] = Some(chunk.len());
            open += 1;
        }
        client.flush(deadline).await?;
        let packet = client.recv(deadline).await?.with_context(|| {
            format!("no SUBACK in time ({} of {} filters subscribed)", filters.len() - open, filters.len())
        })?;
        match packet {
            Packet::SubAck(suback) => {
                let Some(count) = outstanding[usize::from(suback.packet_id)].take() else {
                    bail!("SUBACK for packet id {} that was not sent", suback.packet_id);
                };
                if suback.reasons.len() != count {
                    bail!("SUBACK with {} codes for {count} filters", suback.reasons.len());
                }
                if let Some(refused) = suback.reasons.iter().find(|reason| !reason.is_success()) {
                    bail!(
                        "the broker refused a subscription: SUBACK 0x{:02x} ({})",
                        refused.0,
                        describe_reason(*refused)
                    );
                }
                lowered |= suback.reasons.iter().any(|reason| reason.0 < qos as u8);
                open -= 1;
            }
            Packet::Disconnect(disconnect) => return Err(disconnect_error(&disconnect)),
            Packet::PingResp | Packet::Publish(_) => {}
            other => bail!("expected SUBACK, got packet type {}", other.packet_type()),
        }
    }
    if lowered {
        tracing::warn!(?qos, "the broker granted a lower QoS than asked for");
    }
    Ok(())
}

/// What one subscriber checks besides counting.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    /// Track per-publisher order; needs one topic per publisher.
    pub order: Option<usize>,
    /// Record each delivery's latency from its stamp.
    pub latency: bool,
}

/// What one subscriber saw.
#[derive(Debug, Default)]
pub struct SubscriberReport {
    /// Deliveries counted (a QoS 2 resend awaiting PUBREL is not), copies
    /// included.
    pub received: u64,
    /// Distinct, duplicate, reordered and corrupt deliveries, when checked.
    pub order: Option<SequenceCounts>,
    /// Send-to-receive latency of each stamped delivery (first copies only
    /// when order is checked), in nanoseconds.
    pub latencies_ns: Vec<u64>,
    pub last_delivery: Option<Instant>,
}

/// A subscribed client, ready to receive.
pub struct Subscriber {
    client: Client,
    clock: Clock,
    received_total: Arc<AtomicU64>,
    tracker: Option<SequenceTracker>,
    record_latency: bool,
    /// QoS 2 packet ids that got PUBREC and await PUBREL; empty below QoS 2.
    awaiting_release: Vec<bool>,
    report: SubscriberReport,
}

impl Subscriber {
    pub fn new(
        client: Client,
        qos: QoS,
        checks: Checks,
        clock: Clock,
        received_total: Arc<AtomicU64>,
    ) -> Self {
        Subscriber {
            client,
            clock,
            received_total,
            tracker: checks.order.map(SequenceTracker::new),
            record_latency: checks.latency,
            awaiting_release: if qos == QoS::ExactlyOnce { vec![false; 1 << 16] } else { Vec::new() },
            report: SubscriberReport::default(),
        }
    }

    /// Receives until `stop` turns true (or its sender goes), then
    /// disconnects.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> anyhow::Result<SubscriberReport> {
        let mut ping = interval_at(Instant::now() + KEEP_ALIVE / 2, KEEP_ALIVE / 2);
        // While acks wait to be written, the broker must take some by then.
        let mut write_deadline: Option<Instant> = None;
        loop {
            let pending = self.client.pending_bytes() > 0;
            if !pending {
                write_deadline = None;
            } else if write_deadline.is_none() {
                write_deadline = Some(Instant::now() + WRITE_TIMEOUT);
            }
            // Acks are written as the socket takes them, never waited for
            // before reading more: a broker that stops reading until its
            // deliveries are read must not deadlock with us.
            tokio::select! {
                biased;
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
                transfer = self.client.read_or_write() => match transfer? {
                    Transfer::Read => self.on_read()?,
                    Transfer::Wrote => write_deadline = None,
                },
                _ = ping.tick() => self.client.queue(&Packet::PingReq)?,
                () = sleep_until(write_deadline.unwrap_or_else(Instant::now)), if pending => bail!(
                    "the broker took none of {} queued bytes for {WRITE_TIMEOUT:?}",
                    self.client.pending_bytes()
                ),
            }
        }
        self.report.order = self.tracker.as_ref().map(SequenceTracker::counts);
        self.client.close(Instant::now() + std::time::Duration::from_millis(500)).await;
        Ok(self.report)
    }

    /// Handles every whole packet in the read buffer.
    fn on_read(&mut self) -> anyhow::Result<()> {
        let before = self.report.received;
        while let Some(packet) = self.client.try_decode()? {
            match packet {
                Packet::Publish(publish) => self.on_publish(publish)?,
                Packet::PubRel(release) => {
                    if let Some(awaiting) = self.awaiting_release.get_mut(usize::from(release.packet_id)) {
                        *awaiting = false;
                    }
                    let complete = PubAck { packet_id: release.packet_id, ..PubAck::default() };
                    self.client.queue(&Packet::PubComp(complete))?;
                }
                Packet::PingResp | Packet::SubAck(_) => {}
                Packet::Disconnect(disconnect) => return Err(disconnect_error(&disconnect)),
                other => bail!("a subscriber got an unexpected packet of type {}", other.packet_type()),
            }
        }
        let new = self.report.received - before;
        if new > 0 {
            self.received_total.fetch_add(new, Ordering::Relaxed);
            self.report.last_delivery = Some(Instant::now());
        }
        Ok(())
    }

    fn on_publish(&mut self, publish: Publish) -> anyhow::Result<()> {
        let counted = match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => true,
            (QoS::AtLeastOnce, Some(packet_id)) => {
                self.client.queue(&Packet::PubAck(PubAck { packet_id, ..PubAck::default() }))?;
                true
            }
            (QoS::ExactlyOnce, Some(packet_id)) => {
                if self.awaiting_release.is_empty() {
                    // Subscribed below QoS 2, so the broker should not send it; keep
                    // the flow going anyway.
                    self.awaiting_release = vec![false; 1 << 16];
                }
                let awaiting = &mut self.awaiting_release[usize::from(packet_id)];
                let first = !*awaiting;
                *awaiting = true;
                self.client.queue(&Packet::PubRec(PubAck { packet_id, ..PubAck::default() }))?;
                first
            }
            (_, None) => bail!("a QoS {} PUBLISH without a packet id", publish.qos as u8),
        };
        if !counted {
            return Ok(());
        }
        self.report.received += 1;
        if let Some(stamp) = read_stamp(&publish.payload) {
            let seen = self.tracker.as_mut().map(|tracker| tracker.observe(&stamp));
            if self.record_latency && matches!(seen, None | Some(Seen::New | Seen::Reordered)) {
                self.report.latencies_ns.push(self.clock.now_ns().saturating_sub(stamp.sent_ns));
            }
        }
        Ok(())
    }
}
