//! A message run, shared by every scenario but `conn`: connect and subscribe
//! the subscribers, connect the publishers, publish for the window, drain,
//! stop, and add up what everyone saw.
//!
//! Phases and their time limits, which together bound a run to its
//! duration plus [`OVERHEAD`]:
//! 1. setup ([`SETUP_TIMEOUT`]): every handshake and SUBACK;
//! 2. the publishing window (`--duration`, or until `--count` is sent);
//! 3. finish ([`FINISH_TIMEOUT`]): publishers write what they had queued
//!    and complete open QoS 1/2 flows;
//! 4. drain ([`DRAIN_TIMEOUT`]): wait for stragglers until every expected
//!    delivery is in, or deliveries stop once the minimum is reached;
//! 5. close ([`CLOSE_TIMEOUT`]): subscribers disconnect and report.
//!
//! The measured window runs from the first publish to the last delivery, so
//! deliveries that were still queued in the broker when publishing stopped
//! count, and so does the time the broker took to hand them out. The
//! broker's CPU time, when its pid is known, is read as publishing starts
//! and again when the drain ends (at most [`DRAIN_QUIET`] after the last
//! delivery), so it leaves out connecting and subscribing. With several
//! broker processes (a fleet), their CPU times are summed.
//!
//! Subscriber `i` connects to `brokers.subscriber(i)` and publisher `i` to
//! `brokers.publisher(i)`: one broker, or several dealt round robin.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep, timeout_at, Instant};
use tracing::info;

use crate::client::{source_address, Client, ConnectRequest, CONNECT_TIMEOUT};
use crate::config::{Broker, Brokers, Traffic};
use crate::payload::{Clock, SequenceCounts};
use crate::publisher::{
    self, Expected, Pacing, PublishSettings, PublisherPlan, TopicSource, Window, KEEP_ALIVE,
};
use crate::subscriber::{self, Checks, Subscriber, SubscriberReport};

pub const SETUP_TIMEOUT: Duration = Duration::from_secs(8);
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(3);
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Time a message run may take beyond its duration.
pub const OVERHEAD: Duration =
    SETUP_TIMEOUT.saturating_add(FINISH_TIMEOUT).saturating_add(DRAIN_TIMEOUT).saturating_add(CLOSE_TIMEOUT);
/// Once the minimum expected deliveries are in, this long without a new one
/// ends the drain.
const DRAIN_QUIET: Duration = Duration::from_millis(200);
/// Handshakes in progress at once during setup.
const HANDSHAKES_AT_ONCE: usize = 64;

/// What a connection of a message run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Subscriber,
    Publisher,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Subscriber => "sub",
            Role::Publisher => "pub",
        }
    }

    /// Subscribers read bursts of deliveries; publishers only read acks.
    fn read_chunk(self) -> usize {
        match self {
            Role::Subscriber => 64 * 1024,
            Role::Publisher => 4 * 1024,
        }
    }

    /// Publishers keep a small socket buffer (see [`publisher::SEND_BUFFER`]).
    fn send_buffer(self) -> Option<u32> {
        match self {
            Role::Subscriber => None,
            Role::Publisher => Some(publisher::SEND_BUFFER),
        }
    }
}

/// One publisher of a plan; the flow gives it a connection and a window.
pub struct PublisherSpec {
    pub topics: Box<dyn TopicSource>,
    pub quota: Option<u64>,
    /// Messages per second and the delay of this publisher's first one.
    pub pacing: Option<(f64, Duration)>,
}

/// Who subscribes to what and who publishes.
pub struct FlowPlan {
    /// The topic filters of each subscriber connection.
    pub subscribers: Vec<Vec<String>>,
    pub publishers: Vec<PublisherSpec>,
    pub checks: Checks,
}

/// Everything a message run measured.
#[derive(Debug, Default)]
pub struct FlowOutcome {
    pub sent: u64,
    pub unacked: u64,
    pub expected: Expected,
    /// Deliveries counted, copies included.
    pub received: u64,
    /// Distinct, duplicate, reordered and corrupt deliveries, when checked.
    pub order: Option<SequenceCounts>,
    /// Broker CPU seconds over the measured window, when its pid is known.
    pub broker_cpu_s: Option<f64>,
    /// From the first publish to the last delivery.
    pub seconds: f64,
    /// From the first publish to the last.
    pub publish_secs: f64,
    /// Time to connect and subscribe every subscriber.
    pub subscribe_secs: f64,
    pub latencies_ns: Vec<u64>,
}

impl FlowOutcome {
    /// Distinct messages delivered: first copies when order is checked,
    /// every delivery otherwise.
    pub fn delivered(&self) -> u64 {
        self.order.map_or(self.received, |order| order.delivered)
    }

    /// Expected deliveries that never came.
    pub fn lost(&self) -> u64 {
        self.expected.min.saturating_sub(self.delivered())
    }

    /// Distinct deliveries per second over the measured window.
    pub fn deliveries_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.delivered() as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Distinct deliveries per second of broker CPU time.
    pub fn deliveries_per_broker_cpu_sec(&self) -> Option<f64> {
        self.broker_cpu_s.filter(|&cpu| cpu > 0.0).map(|cpu| self.delivered() as f64 / cpu)
    }
}

/// Runs `plan` against `brokers`.
pub async fn run(brokers: &Brokers, traffic: Traffic, plan: FlowPlan) -> anyhow::Result<FlowOutcome> {
    let FlowPlan { subscribers, publishers, checks } = plan;
    let setup_deadline = Instant::now() + SETUP_TIMEOUT;
    let clock = Clock::new();
    let subscriber_count = subscribers.len();
    let publisher_count = publishers.len();

    let subscribe_start = Instant::now();
    let subscriber_clients = open_clients(brokers, traffic, Role::Subscriber, subscribers, 0, setup_deadline)
        .await
        .context("subscribers")?;
    let subscribe_secs = subscribe_start.elapsed().as_secs_f64();
    info!(subscribers = subscriber_count, subscribe_secs, "subscribed");

    let received_total = Arc::new(AtomicU64::new(0));
    let (stop, stop_signal) = watch::channel(false);
    let subscriber_tasks: Vec<JoinHandle<anyhow::Result<SubscriberReport>>> = subscriber_clients
        .into_iter()
        .map(|client| {
            let subscriber = Subscriber::new(client, traffic.qos, checks, clock, received_total.clone());
            tokio::spawn(subscriber.run(stop_signal.clone()))
        })
        .collect();

    let no_filters = vec![Vec::new(); publisher_count];
    let publisher_clients =
        open_clients(brokers, traffic, Role::Publisher, no_filters, subscriber_count, setup_deadline)
            .await
            .context("publishers")?;
    info!(publishers = publisher_count, "publishers connected; publishing");

    let cpu_before = brokers.pids.cpu_seconds().context("--broker-pid")?;
    let start = Instant::now();
    let end = start + traffic.duration;
    let settings = PublishSettings {
        qos: traffic.qos,
        payload_size: traffic.payload_size,
        inflight: traffic.inflight,
        clock,
        window: Window { end, finish: end + FINISH_TIMEOUT },
    };
    let publisher_tasks: Vec<_> = publisher_clients
        .into_iter()
        .zip(publishers)
        .enumerate()
        .map(|(index, (client, spec))| {
            let plan = PublisherPlan {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                topics: spec.topics,
                quota: spec.quota,
                pacing: spec.pacing.map(|(per_second, delay)| Pacing { start: start + delay, per_second }),
            };
            tokio::spawn(publisher::run(client, plan, settings))
        })
        .collect();

    let mut outcome = FlowOutcome { subscribe_secs, ..FlowOutcome::default() };
    let mut last_send = None;
    for (index, task) in publisher_tasks.into_iter().enumerate() {
        let report =
            task.await.context("a publisher task panicked")?.with_context(|| format!("publisher {index}"))?;
        outcome.sent += report.sent;
        outcome.unacked += report.unacked;
        outcome.expected.min += report.expected.min;
        outcome.expected.max += report.expected.max;
        last_send = last_send.max(report.last_send);
    }
    let publishers_done = Instant::now();
    info!(sent = outcome.sent, secs = (publishers_done - start).as_secs_f64(), "publishing done; draining");

    drain(&received_total, outcome.expected, &subscriber_tasks).await;
    let cpu_after = brokers.pids.cpu_seconds().context("--broker-pid")?;
    outcome.broker_cpu_s = cpu_before.zip(cpu_after).map(|(before, after)| after - before);
    let _ = stop.send(true);
    let last_delivery = collect_subscribers(subscriber_tasks, &mut outcome).await?;
    let window_end = last_delivery.unwrap_or(publishers_done);
    outcome.seconds = window_end.saturating_duration_since(start).as_secs_f64();
    outcome.publish_secs = last_send.unwrap_or(start).saturating_duration_since(start).as_secs_f64();
    Ok(outcome)
}

/// Waits for every subscriber to stop and adds its counts to `outcome`;
/// returns the time of the last delivery, if any.
async fn collect_subscribers(
    tasks: Vec<JoinHandle<anyhow::Result<SubscriberReport>>>,
    outcome: &mut FlowOutcome,
) -> anyhow::Result<Option<Instant>> {
    let close_deadline = Instant::now() + CLOSE_TIMEOUT;
    let mut last_delivery = None;
    for (index, task) in tasks.into_iter().enumerate() {
        let report = timeout_at(close_deadline, task)
            .await
            .map_err(|_| anyhow!("subscriber {index} did not stop in time"))?
            .context("a subscriber task panicked")?
            .with_context(|| format!("subscriber {index}"))?;
        outcome.received += report.received;
        if let Some(more) = report.order {
            outcome.order.get_or_insert_with(SequenceCounts::default).add(&more);
        }
        outcome.latencies_ns.extend(report.latencies_ns);
        last_delivery = last_delivery.max(report.last_delivery);
    }
    Ok(last_delivery)
}

/// Waits until every expected delivery is in, or deliveries stop after the
/// minimum is in, or a subscriber quits, or [`DRAIN_TIMEOUT`] passes.
async fn drain<T>(received_total: &AtomicU64, expected: Expected, subscriber_tasks: &[JoinHandle<T>]) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut last_count = received_total.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    loop {
        let received = received_total.load(Ordering::Relaxed);
        let now = Instant::now();
        if received != last_count {
            last_count = received;
            last_change = now;
        }
        let quiet = now.duration_since(last_change) >= DRAIN_QUIET;
        if received >= expected.max
            || (received >= expected.min && quiet)
            || now >= deadline
            || subscriber_tasks.iter().any(JoinHandle::is_finished)
        {
            return;
        }
        sleep(Duration::from_millis(10)).await;
    }
}

/// Connects one client per entry of `filters` (subscribing it to those
/// filters when there are any), a bounded number at a time, all by
/// `deadline`. Client `i` binds source address number `first_source + i`
/// and connects to the `i`-th broker of its role.
async fn open_clients(
    brokers: &Brokers,
    traffic: Traffic,
    role: Role,
    filters: Vec<Vec<String>>,
    first_source: usize,
    deadline: Instant,
) -> anyhow::Result<Vec<Client>> {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_AT_ONCE));
    let mut tasks = JoinSet::new();
    let count = filters.len();
    for (index, filters) in filters.into_iter().enumerate() {
        let broker: Broker = match role {
            Role::Subscriber => brokers.subscriber(index),
            Role::Publisher => brokers.publisher(index),
        };
        let request = ConnectRequest {
            broker,
            source: Some(source_address(first_source + index)),
            client_id: format!("mqtt-bench-{}-{}-{index}", std::process::id(), role.name()),
            keep_alive: u16::try_from(KEEP_ALIVE.as_secs()).unwrap_or(u16::MAX),
            read_chunk: role.read_chunk(),
            deadline,
            send_buffer: role.send_buffer(),
        };
        let handshakes = handshakes.clone();
        tasks.spawn(async move {
            let setup = async {
                let _permit = handshakes.acquire_owned().await?;
                let request =
                    ConnectRequest { deadline: deadline.min(Instant::now() + CONNECT_TIMEOUT), ..request };
                let mut client = Client::connect(&request).await?;
                if !filters.is_empty() {
                    subscriber::subscribe(&mut client, &filters, traffic.qos, deadline).await?;
                }
                anyhow::Ok(client)
            };
            let client = timeout_at(deadline, setup)
                .await
                .map_err(|_| anyhow!("setup did not finish within {SETUP_TIMEOUT:?}"))
                .and_then(|result| result)
                .with_context(|| format!("{} {index} (broker {})", role.name(), broker.addr))?;
            anyhow::Ok((index, client))
        });
    }
    let mut clients: Vec<Option<Client>> = (0..count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (index, client) = joined.context("a connect task panicked")??;
        clients[index] = Some(client);
    }
    clients.into_iter().map(|client| client.context("a client was not connected")).collect()
}
