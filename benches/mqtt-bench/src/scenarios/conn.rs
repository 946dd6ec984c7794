//! `conn`: open C connections (TCP + CONNECT/CONNACK each), at most
//! `--concurrency` handshakes at a time and at most `--rate` started per
//! second, from source addresses 127.0.0.1 .. 127.0.0.254 in turn; report
//! the connect rate; hold them for `--hold` seconds with PINGREQs; close.
//!
//! With `--subscribe`, each client also subscribes (QoS 1) to a topic of its
//! own, `bench/conn/{pid}/{i}`, as part of its handshake, or with
//! `--subscribe-topic FILTER` all to that one filter. Messages delivered while
//! holding are counted (`deliveries`, and `clients_delivered` that got at
//! least one) and acknowledged, with the wall-clock time of the first and
//! the last, so a script can publish once and see it reach every client,
//! also across several load-generator processes.
//!
//! With `--hosts`, client `i` connects to the `(i mod n)`-th broker of the
//! list (e.g. the data-plane nodes of a fleet).
//!
//! A connection that fails to open is counted, not fatal: the run still
//! prints its JSON line, then exits non-zero. The same goes for a held
//! connection that the broker drops. With `--pid` (or `--broker-pid`), the
//! broker's VmRSS and CPU time are read before the first connection, after
//! the last CONNACK (or SUBACK), and at the end of the hold; with several
//! pids they are summed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use mqtt_codec::{Packet, ProtocolVersion, PubAck, QoS};
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout_at, Instant};
use tracing::{info, warn};

use crate::args::ConnArgs;
use crate::client::{disconnect_error, source_address, Client, ConnectRequest, CONNECT_TIMEOUT};
use crate::config::{self, at_least_one, seconds, seconds_or_zero, Broker, Pids};
use crate::proc_status::check_open_files;
use crate::publisher::WRITE_TIMEOUT;
use crate::subscriber;

use super::{round, within, Report};

/// Time allowed for closing every connection after the hold.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Distinct failure messages logged at the end.
const FAILURES_SHOWN: usize = 5;

#[derive(Debug, Serialize)]
struct ConnReport {
    scenario: &'static str,
    version: u8,
    clients: usize,
    subscribed: bool,
    connected: usize,
    failed: usize,
    connect_secs: f64,
    connect_rate: f64,
    hold_secs: f64,
    dropped: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_before_kb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_after_kb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_conn: Option<i64>,
    /// RSS at the end of the hold, when there was one: idle connections
    /// may have hibernated and the allocator returned memory by then.
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_held_kb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_conn_held: Option<i64>,
    /// Broker CPU seconds from the first connection to the last CONNACK.
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_cpu_s: Option<f64>,
    /// Connections made per broker CPU-second (`connected / broker_cpu_s`):
    /// the connect rate per core, whatever the load generator's own speed.
    #[serde(skip_serializing_if = "Option::is_none")]
    connects_per_broker_cpu_s: Option<f64>,
    /// Broker CPU seconds over the hold (pings included).
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_broker_cpu_s: Option<f64>,
    /// The brokers connected to, as IP:PORT, in the order clients were dealt.
    hosts: Vec<String>,
    /// PUBLISH packets received while holding (copies included).
    deliveries: u64,
    /// Clients that received at least one.
    clients_delivered: u64,
    /// Wall-clock times (ms since the Unix epoch) of the first and last
    /// delivery, when there were any.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_delivery_unix_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_delivery_unix_ms: Option<u64>,
}

/// Validated `conn` settings.
#[derive(Debug, Clone)]
struct ConnSettings {
    version: ProtocolVersion,
    /// Client `i` connects to `hosts[i % len]`; never empty.
    hosts: Vec<SocketAddr>,
    clients: usize,
    rate: Option<f64>,
    concurrency: usize,
    /// Connections not open by `start + connect_window` count as failed.
    connect_window: Duration,
    hold: Duration,
    keep_alive: u16,
    pids: Pids,
    subscribe: bool,
    /// The one filter every client subscribes to, instead of its own topic.
    subscribe_topic: Option<Arc<str>>,
}

impl ConnSettings {
    fn broker(&self, index: usize) -> Broker {
        Broker { addr: self.hosts[index % self.hosts.len()], version: self.version }
    }
}

pub async fn run(args: ConnArgs) -> anyhow::Result<Report> {
    let default = config::default_endpoint(&args.connection)?;
    let settings = ConnSettings {
        version: config::version(&args.connection)?,
        hosts: config::endpoints(args.hosts.as_deref(), "--hosts", default)?,
        clients: at_least_one(args.clients, "--clients")?,
        rate: match args.rate {
            Some(rate) if !(rate.is_finite() && rate > 0.0) => bail!("--rate must be above 0"),
            rate => rate,
        },
        concurrency: at_least_one(args.concurrency, "--concurrency")?,
        connect_window: seconds(args.duration, "--duration")?,
        hold: seconds_or_zero(args.hold, "--hold")?,
        keep_alive: args.keep_alive,
        pids: match (args.pid, args.connection.broker_pid) {
            (pid, other) if !pid.is_empty() && !other.is_empty() && pid != other => {
                bail!("--pid and --broker-pid differ")
            }
            (pid, other) if pid.is_empty() => Pids::new(&other, "--broker-pid")?,
            (pid, _) => Pids::new(&pid, "--pid")?,
        },
        subscribe: args.subscribe,
        subscribe_topic: args.subscribe_topic.map(Arc::from),
    };
    check_open_files(settings.clients)?;
    let budget = settings.connect_window + settings.hold + CLOSE_TIMEOUT + Duration::from_secs(10);
    within(budget, connect_and_hold(settings)).await
}

async fn connect_and_hold(settings: ConnSettings) -> anyhow::Result<Report> {
    let rss_before_kb = settings.pids.rss_kb().context("--pid")?;
    let cpu_before = settings.pids.cpu_seconds().context("--pid")?;
    let start = Instant::now();
    let deadline = start + settings.connect_window;
    let handshakes = Arc::new(Semaphore::new(settings.concurrency));
    let mut tasks = JoinSet::new();
    let mut failures: HashMap<String, usize> = HashMap::new();
    let mut not_started = 0;
    for index in 0..settings.clients {
        if let Some(rate) = settings.rate {
            sleep_until((start + Duration::from_secs_f64(index as f64 / rate)).min(deadline)).await;
        }
        let Ok(Ok(permit)) = timeout_at(deadline, handshakes.clone().acquire_owned()).await else {
            not_started = settings.clients - index;
            break;
        };
        let request = ConnectRequest {
            broker: settings.broker(index),
            source: Some(source_address(index)),
            client_id: format!("mqtt-bench-{}-conn-{index}", std::process::id()),
            keep_alive: settings.keep_alive,
            read_chunk: 64,
            deadline: deadline.min(Instant::now() + CONNECT_TIMEOUT),
            send_buffer: None,
        };
        let subscribe = settings.subscribe;
        let shared_topic = settings.subscribe_topic.clone();
        tasks.spawn(async move {
            let result = async {
                let mut client = Client::connect(&request).await?;
                if subscribe {
                    let topic = match shared_topic {
                        Some(topic) => topic.to_string(),
                        None => format!("bench/conn/{}/{index}", std::process::id()),
                    };
                    subscriber::subscribe(&mut client, &[topic], QoS::AtLeastOnce, request.deadline).await?;
                }
                anyhow::Ok((index, client, Instant::now()))
            }
            .await
            .with_context(|| format!("broker {}", request.broker.addr));
            drop(permit);
            result
        });
    }
    if not_started > 0 {
        failures.insert("not started before --duration ran out".to_string(), not_started);
    }

    let mut clients = Vec::with_capacity(settings.clients);
    let mut last_connected = start;
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a connect task panicked")? {
            Ok((index, client, connected_at)) => {
                clients.push((index, client));
                last_connected = last_connected.max(connected_at);
            }
            Err(error) => *failures.entry(format!("{error:#}")).or_default() += 1,
        }
    }
    let connected = clients.len();
    let failed = settings.clients - connected;
    let connect_secs = last_connected.duration_since(start).as_secs_f64();
    let rss_after_kb = settings.pids.rss_kb().context("--pid")?;
    let cpu_after = settings.pids.cpu_seconds().context("--pid")?;
    info!(connected, failed, connect_secs, "connect phase done");
    log_failures("connect failed", &failures);

    let deliveries = Arc::new(Deliveries::default());
    let (dropped, held) = hold(clients, &settings, &deliveries).await?;

    let per_conn = |after: Option<u64>| match (rss_before_kb, after) {
        (Some(before), Some(after)) if connected > 0 => {
            Some((after as i64 - before as i64) * 1024 / connected as i64)
        }
        _ => None,
    };
    let cpu_delta = |from: Option<f64>, to: Option<f64>| from.zip(to).map(|(from, to)| round(to - from, 3));
    let report = ConnReport {
        scenario: "conn",
        version: settings.version.level(),
        clients: settings.clients,
        subscribed: settings.subscribe,
        connected,
        failed,
        connect_secs: round(connect_secs, 3),
        connect_rate: round(if connect_secs > 0.0 { connected as f64 / connect_secs } else { 0.0 }, 1),
        hold_secs: settings.hold.as_secs_f64(),
        dropped,
        rss_before_kb,
        rss_after_kb,
        bytes_per_conn: per_conn(rss_after_kb),
        rss_held_kb: held.rss_kb,
        bytes_per_conn_held: per_conn(held.rss_kb),
        broker_cpu_s: cpu_delta(cpu_before, cpu_after),
        connects_per_broker_cpu_s: cpu_before
            .zip(cpu_after)
            .map(|(before, after)| after - before)
            .filter(|cpu| *cpu > 0.0)
            .map(|cpu| round(connected as f64 / cpu, 1)),
        hold_broker_cpu_s: cpu_delta(cpu_after, held.cpu_s),
        hosts: config::used(&settings.hosts, settings.clients),
        deliveries: deliveries.count.load(Ordering::Relaxed),
        clients_delivered: deliveries.clients.load(Ordering::Relaxed),
        first_delivery_unix_ms: Some(deliveries.first_ms.load(Ordering::Relaxed))
            .filter(|&ms| ms != u64::MAX),
        last_delivery_unix_ms: Some(deliveries.last_ms.load(Ordering::Relaxed)).filter(|&ms| ms != 0),
    };
    let failure = match (failed, dropped) {
        (0, 0) => None,
        (failed, dropped) => {
            Some(format!("{failed} connections failed to open, {dropped} dropped while held"))
        }
    };
    Report::new(&report, failure)
}

/// The broker as it was at the end of the hold (with a pid and a hold).
#[derive(Debug, Default)]
struct Held {
    rss_kb: Option<u64>,
    cpu_s: Option<f64>,
}

/// Messages delivered to the held clients, counted by all of them.
#[derive(Debug)]
struct Deliveries {
    count: AtomicU64,
    /// Clients that got at least one.
    clients: AtomicU64,
    /// Wall-clock ms of the first delivery (`u64::MAX` before one) and of
    /// the last (0 before one).
    first_ms: AtomicU64,
    last_ms: AtomicU64,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            count: AtomicU64::new(0),
            clients: AtomicU64::new(0),
            first_ms: AtomicU64::new(u64::MAX),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Deliveries {
    /// Counts one delivery to a client whose flag says whether it had one.
    fn record(&self, had_one: &AtomicBool) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
        self.count.fetch_add(1, Ordering::Relaxed);
        if !had_one.swap(true, Ordering::Relaxed) {
            self.clients.fetch_add(1, Ordering::Relaxed);
        }
        self.first_ms.fetch_min(now_ms, Ordering::Relaxed);
        self.last_ms.fetch_max(now_ms, Ordering::Relaxed);
    }
}

/// Holds every connection for the hold time, then closes them all; returns
/// how many the broker dropped meanwhile, and the broker's RSS and CPU time
/// read at the end of the hold, before closing.
async fn hold(
    clients: Vec<(usize, Client)>,
    settings: &ConnSettings,
    deliveries: &Arc<Deliveries>,
) -> anyhow::Result<(usize, Held)> {
    let (stop, stop_signal) = watch::channel(false);
    let keep_alive = Duration::from_secs(u64::from(settings.keep_alive));
    let mut tasks = JoinSet::new();
    for (index, client) in clients {
        // Spread the pings over the ping interval instead of sending them at once.
        let phase = (index % 1000) as f64 / 1000.0;
        tasks.spawn(hold_one(client, stop_signal.clone(), keep_alive, phase, deliveries.clone()));
    }
    let mut held = Held::default();
    if !settings.hold.is_zero() {
        info!(secs = settings.hold.as_secs_f64(), "holding connections");
        sleep(settings.hold).await;
        held.rss_kb = settings.pids.rss_kb().context("--pid")?;
        held.cpu_s = settings.pids.cpu_seconds().context("--pid")?;
    }
    let _ = stop.send(true);
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    let mut drops: HashMap<String, usize> = HashMap::new();
    let mut dropped = 0;
    loop {
        match timeout_at(deadline, tasks.join_next()).await {
            Ok(None) => break,
            Ok(Some(Ok(Ok(())))) => {}
            Ok(Some(Ok(Err(error)))) => {
                dropped += 1;
                *drops.entry(format!("{error:#}")).or_default() += 1;
            }
            Ok(Some(Err(_panicked))) => dropped += 1,
            Err(_) => {
                warn!(left = tasks.len(), "connections did not close in time");
                break;
            }
        }
    }
    log_failures("connection dropped while held", &drops);
    Ok((dropped, held))
}

/// Keeps one connection alive until `stop`: a PINGREQ every three quarters
/// of the keep alive (first one at `phase` of that interval), and the
/// PINGRESP must come within the keep alive. Deliveries are counted in
/// `deliveries` and QoS 1 ones acknowledged.
async fn hold_one(
    mut client: Client,
    mut stop: watch::Receiver<bool>,
    keep_alive: Duration,
    phase: f64,
    deliveries: Arc<Deliveries>,
) -> anyhow::Result<()> {
    let ping_every = keep_alive.mul_f64(0.75);
    let mut next_ping = Instant::now() + ping_every.mul_f64(phase);
    let mut ping_sent_at: Option<Instant> = None;
    let had_one = AtomicBool::new(false);
    // Packets read along with the SUBACK are already in the buffer.
    on_held_packets(&mut client, &mut ping_sent_at, &deliveries, &had_one)?;
    client.flush(Instant::now() + WRITE_TIMEOUT).await?;
    loop {
        let pong_deadline = ping_sent_at.map(|sent| sent + keep_alive);
        tokio::select! {
            biased;
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
            read = client.fill() => {
                read?;
                on_held_packets(&mut client, &mut ping_sent_at, &deliveries, &had_one)?;
                client.flush(Instant::now() + WRITE_TIMEOUT).await?;
            }
            () = sleep_until(next_ping), if !keep_alive.is_zero() => {
                client.queue(&Packet::PingReq)?;
                client.flush(Instant::now() + WRITE_TIMEOUT).await?;
                ping_sent_at = ping_sent_at.or(Some(Instant::now()));
                next_ping += ping_every;
            }
            () = sleep_until(pong_deadline.unwrap_or(next_ping)), if pong_deadline.is_some() => {
                bail!("no PINGRESP within the keep alive of {keep_alive:?}");
            }
        }
    }
    client.close(Instant::now() + Duration::from_secs(1)).await;
    Ok(())
}

/// Handles the whole packets in a held client's read buffer: PINGRESP,
/// deliveries (counted; a PUBACK queued for QoS 1), DISCONNECT (an error).
fn on_held_packets(
    client: &mut Client,
    ping_sent_at: &mut Option<Instant>,
    deliveries: &Deliveries,
    had_one: &AtomicBool,
) -> anyhow::Result<()> {
    while let Some(packet) = client.try_decode()? {
        match packet {
            Packet::PingResp => *ping_sent_at = None,
            Packet::Publish(publish) => {
                deliveries.record(had_one);
                match (publish.qos, publish.packet_id) {
                    (QoS::AtMostOnce, _) => {}
                    (QoS::AtLeastOnce, Some(packet_id)) => {
                        client.queue(&Packet::PubAck(PubAck { packet_id, ..PubAck::default() }))?;
                    }
                    (qos, _) => bail!("a held client got a QoS {} PUBLISH it cannot handle", qos as u8),
                }
            }
            Packet::SubAck(_) => {}
            Packet::Disconnect(disconnect) => return Err(disconnect_error(&disconnect)),
            other => bail!("unexpected packet of type {} while holding", other.packet_type()),
        }
    }
    Ok(())
}

/// Logs the most common failure messages with their counts.
fn log_failures(what: &str, failures: &HashMap<String, usize>) {
    let mut by_count: Vec<(&String, &usize)> = failures.iter().collect();
    by_count.sort_by(|left, right| right.1.cmp(left.1));
    for (message, count) in by_count.into_iter().take(FAILURES_SHOWN) {
        warn!(count, "{what}: {message}");
    }
}
