//! `conn`: open C connections (TCP + CONNECT/CONNACK each), at most
//! `--concurrency` handshakes at a time and at most `--rate` started per
//! second, from source addresses 127.0.0.1 .. 127.0.0.254 in turn; report
//! the connect rate; hold them for `--hold` seconds with PINGREQs; close.
//!
//! With `--subscribe`, each client also subscribes (QoS 1) to a topic of its
//! own, `bench/conn/{pid}/{i}`, as part of its handshake.
//!
//! A connection that fails to open is counted, not fatal: the run still
//! prints its JSON line, then exits non-zero. The same goes for a held
//! connection that the broker drops. With `--pid` (or `--broker-pid`), the
//! broker's VmRSS and CPU time are read before the first connection, after
//! the last CONNACK (or SUBACK), and at the end of the hold.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use mqtt_codec::{Packet, QoS};
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout_at, Instant};
use tracing::{info, warn};

use crate::args::ConnArgs;
use crate::client::{disconnect_error, source_address, Client, ConnectRequest, CONNECT_TIMEOUT};
use crate::config::{self, at_least_one, seconds, seconds_or_zero, Broker};
use crate::proc_status::{check_open_files, cpu_seconds, vm_rss_kb};
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
    /// Broker CPU seconds over the hold (pings included).
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_broker_cpu_s: Option<f64>,
}

/// Validated `conn` settings.
#[derive(Debug, Clone, Copy)]
struct ConnSettings {
    broker: Broker,
    clients: usize,
    rate: Option<f64>,
    concurrency: usize,
    /// Connections not open by `start + connect_window` count as failed.
    connect_window: Duration,
    hold: Duration,
    keep_alive: u16,
    pid: Option<u32>,
    subscribe: bool,
}

pub async fn run(args: ConnArgs) -> anyhow::Result<Report> {
    let settings = ConnSettings {
        broker: config::broker(&args.connection)?,
        clients: at_least_one(args.clients, "--clients")?,
        rate: match args.rate {
            Some(rate) if !(rate.is_finite() && rate > 0.0) => bail!("--rate must be above 0"),
            rate => rate,
        },
        concurrency: at_least_one(args.concurrency, "--concurrency")?,
        connect_window: seconds(args.duration, "--duration")?,
        hold: seconds_or_zero(args.hold, "--hold")?,
        keep_alive: args.keep_alive,
        pid: match (args.pid, args.connection.broker_pid) {
            (Some(pid), Some(other)) if pid != other => bail!("--pid and --broker-pid differ"),
            (pid, other) => pid.or(other),
        },
        subscribe: args.subscribe,
    };
    check_open_files(settings.clients)?;
    let budget = settings.connect_window + settings.hold + CLOSE_TIMEOUT + Duration::from_secs(10);
    within(budget, connect_and_hold(settings)).await
}

async fn connect_and_hold(settings: ConnSettings) -> anyhow::Result<Report> {
    let rss_before_kb = settings.pid.map(vm_rss_kb).transpose().context("--pid")?;
    let cpu_before = settings.pid.map(cpu_seconds).transpose().context("--pid")?;
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
            broker: settings.broker,
            source: Some(source_address(index)),
            client_id: format!("mqtt-bench-{}-conn-{index}", std::process::id()),
            keep_alive: settings.keep_alive,
            read_chunk: 64,
            deadline: deadline.min(Instant::now() + CONNECT_TIMEOUT),
            send_buffer: None,
        };
        let subscribe = settings.subscribe;
        tasks.spawn(async move {
            let result = async {
                let mut client = Client::connect(&request).await?;
                if subscribe {
                    let topic = format!("bench/conn/{}/{index}", std::process::id());
                    subscriber::subscribe(&mut client, &[topic], QoS::AtLeastOnce, request.deadline).await?;
                }
                anyhow::Ok((index, client, Instant::now()))
            }
            .await;
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
    let rss_after_kb = settings.pid.map(vm_rss_kb).transpose().context("--pid")?;
    let cpu_after = settings.pid.map(cpu_seconds).transpose().context("--pid")?;
    info!(connected, failed, connect_secs, "connect phase done");
    log_failures("connect failed", &failures);

    let (dropped, held) = hold(clients, settings).await?;

    let per_conn = |after: Option<u64>| match (rss_before_kb, after) {
        (Some(before), Some(after)) if connected > 0 => {
            Some((after as i64 - before as i64) * 1024 / connected as i64)
        }
        _ => None,
    };
    let cpu_delta = |from: Option<f64>, to: Option<f64>| from.zip(to).map(|(from, to)| round(to - from, 3));
    let report = ConnReport {
        scenario: "conn",
        version: settings.broker.version.level(),
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
        hold_broker_cpu_s: cpu_delta(cpu_after, held.cpu_s),
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

/// Holds every connection for the hold time, then closes them all; returns
/// how many the broker dropped meanwhile, and the broker's RSS and CPU time
/// read at the end of the hold, before closing.
async fn hold(clients: Vec<(usize, Client)>, settings: ConnSettings) -> anyhow::Result<(usize, Held)> {
    let (stop, stop_signal) = watch::channel(false);
    let keep_alive = Duration::from_secs(u64::from(settings.keep_alive));
    let mut tasks = JoinSet::new();
    for (index, client) in clients {
        // Spread the pings over the ping interval instead of sending them at once.
        let phase = (index % 1000) as f64 / 1000.0;
        tasks.spawn(hold_one(client, stop_signal.clone(), keep_alive, phase));
    }
    let mut held = Held::default();
    if !settings.hold.is_zero() {
        info!(secs = settings.hold.as_secs_f64(), "holding connections");
        sleep(settings.hold).await;
        if let Some(pid) = settings.pid {
            held.rss_kb = Some(vm_rss_kb(pid).context("--pid")?);
            held.cpu_s = Some(cpu_seconds(pid).context("--pid")?);
        }
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
/// PINGRESP must come within the keep alive.
async fn hold_one(
    mut client: Client,
    mut stop: watch::Receiver<bool>,
    keep_alive: Duration,
    phase: f64,
) -> anyhow::Result<()> {
    let ping_every = keep_alive.mul_f64(0.75);
    let mut next_ping = Instant::now() + ping_every.mul_f64(phase);
    let mut ping_sent_at: Option<Instant> = None;
    loop {
        let pong_deadline = ping_sent_at.map(|sent| sent + keep_alive);
        tokio::select! {
            biased;
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
            read = client.fill() => {
                read?;
                while let Some(packet) = client.try_decode()? {
                    match packet {
                        Packet::PingResp => ping_sent_at = None,
                        Packet::Disconnect(disconnect) => return Err(disconnect_error(&disconnect)),
                        other => bail!("unexpected packet of type {} while holding", other.packet_type()),
                    }
                }
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

/// Logs the most common failure messages with their counts.
fn log_failures(what: &str, failures: &HashMap<String, usize>) {
    let mut by_count: Vec<(&String, &usize)> = failures.iter().collect();
    by_count.sort_by(|left, right| right.1.cmp(left.1));
    for (message, count) in by_count.into_iter().take(FAILURES_SHOWN) {
        warn!(count, "{what}: {message}");
    }
}
