//! Measures the heap an idle MQTT connection holds in the data plane:
//! starts a node in-process behind a counting allocator, opens N clients
//! (CONNECT, CONNACK, then silence), and prints live heap bytes and
//! allocations per connection, with the live allocations by size.
//!
//! `cargo run --release -p dataplane --example idle_memory -- 2000`
//!
//! With `SERVE_PORT=N` it only serves on 127.0.0.1:N until killed, for an
//! external load generator (`mqtt-bench conn --pid`).
// The clients here are blocking sockets on the main thread, outside the runtime.
#![allow(clippy::disallowed_methods)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

const BUCKETS: usize = 64;

struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_COUNT: AtomicI64 = AtomicI64::new(0);
static TOTAL_COUNT: AtomicI64 = AtomicI64::new(0);
static TOTAL_BYTES: AtomicI64 = AtomicI64::new(0);
/// All allocations made, by size (same steps as `BY_SIZE`).
static MADE_BY_SIZE: [AtomicI64; BUCKETS] = [ZERO; BUCKETS];
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicI64 = AtomicI64::new(0);
/// Live allocations by size in 16-byte steps (the last bucket: 1008 and up).
static BY_SIZE: [AtomicI64; BUCKETS] = [ZERO; BUCKETS];

fn bucket(layout: Layout) -> usize {
    (layout.size() / 16).min(BUCKETS - 1)
}

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        LIVE_COUNT.fetch_add(1, Ordering::Relaxed);
        TOTAL_COUNT.fetch_add(1, Ordering::Relaxed);
        TOTAL_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        MADE_BY_SIZE[bucket(layout)].fetch_add(1, Ordering::Relaxed);
        BY_SIZE[bucket(layout)].fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        LIVE_COUNT.fetch_sub(1, Ordering::Relaxed);
        BY_SIZE[bucket(layout)].fetch_sub(1, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        BY_SIZE[bucket(layout)].fetch_sub(1, Ordering::Relaxed);
        BY_SIZE[bucket(Layout::from_size_align(new_size, layout.align()).unwrap())]
            .fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn snapshot() -> (i64, i64, Vec<i64>) {
    (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_COUNT.load(Ordering::Relaxed),
        BY_SIZE.iter().map(|b| b.load(Ordering::Relaxed)).collect(),
    )
}

fn rss_kb() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

fn main() -> anyhow::Result<()> {
    let clients: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut config = dataplane::DataplaneConfig::default();
    config.listeners.tcp.bind = "127.0.0.1:0".parse()?;
    config.listeners.ws.enabled = false;
    if let Ok(port) = std::env::var("SERVE_PORT") {
        // Serve external clients (e.g. `mqtt-bench conn --pid`) until killed.
        config.listeners.tcp.bind = format!("127.0.0.1:{port}").parse()?;
        let _node = runtime.block_on(dataplane::Node::start(config, "mem".into(), None))?;
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    let node = runtime.block_on(dataplane::Node::start(config, "mem".into(), None))?;
    let addr = node.addresses.iter().find(|(name, _)| *name == "tcp").map(|(_, a)| *a).unwrap();
    // Warm up: one connection, so that one-off structures are counted out.
    let mut warm = std::net::TcpStream::connect(addr)?;
    warm.write_all(&connect_packet("warm"))?;
    warm.read_exact(&mut [0; 4])?;
    std::thread::sleep(Duration::from_millis(300));
    let (bytes0, count0, sizes0) = snapshot();
    let (made0, made_bytes0) = (TOTAL_COUNT.load(Ordering::Relaxed), TOTAL_BYTES.load(Ordering::Relaxed));
    let made_sizes0: Vec<i64> = MADE_BY_SIZE.iter().map(|b| b.load(Ordering::Relaxed)).collect();
    let rss0 = rss_kb();
    let subscribe = std::env::var_os("SUBSCRIBE").is_some();
    let mut streams = Vec::with_capacity(clients);
    for i in 0..clients {
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.write_all(&connect_packet(&format!("mqtt-bench-123456-conn-{i}")))?;
        let mut connack = [0; 4];
        stream.read_exact(&mut connack)?;
        anyhow::ensure!(connack == [0x20, 2, 0, 0], "bad CONNACK {connack:?}");
        if subscribe {
            // SUBSCRIBE to a topic of its own, QoS 1; SUBACK is 5 bytes.
            let topic = format!("idle/{i}");
            let mut body = vec![0, 1];
            body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
            body.extend_from_slice(topic.as_bytes());
            body.push(1);
            let mut packet = vec![0x82, body.len() as u8];
            packet.extend(body);
            stream.write_all(&packet)?;
            let mut suback = [0; 5];
            stream.read_exact(&mut suback)?;
        }
        streams.push(stream);
    }
    // Long enough for subscribed clients to hibernate (mqtt.hibernate_after_ms).
    let default_hold = if subscribe { 2600 } else { 500 };
    let hold: u64 = std::env::var("HOLD_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_hold);
    std::thread::sleep(Duration::from_millis(hold));
    let (bytes1, count1, sizes1) = snapshot();
    if let Some(hibernator) = node.broker.hibernator() {
        println!("hibernating {} after {} hibernations", hibernator.count(), hibernator.hibernations());
    }
    let rss1 = rss_kb();
    let n = clients as f64;
    println!(
        "{clients} idle connections: {:.0} heap bytes, {:.2} allocations and {:.0} bytes of RSS each",
        (bytes1 - bytes0) as f64 / n,
        (count1 - count0) as f64 / n,
        (rss1 - rss0) as f64 * 1024.0 / n
    );
    println!(
        "  allocations made per connection: {:.1}, {:.0} bytes",
        (TOTAL_COUNT.load(Ordering::Relaxed) - made0) as f64 / n,
        (TOTAL_BYTES.load(Ordering::Relaxed) - made_bytes0) as f64 / n
    );
    for (i, a) in made_sizes0.iter().enumerate() {
        let per = (MADE_BY_SIZE[i].load(Ordering::Relaxed) - a) as f64 / n;
        if per >= 0.05 {
            println!("    made {:>5}..{:<5} B: {per:.2} per connection", i * 16, i * 16 + 15);
        }
    }
    for (i, (a, b)) in sizes0.iter().zip(&sizes1).enumerate() {
        let per = (b - a) as f64 / n;
        if per.abs() >= 0.05 {
            println!("  {:>5}..{:<5} B: {per:.2} per connection", i * 16, i * 16 + 15);
        }
    }
    if std::env::var_os("MALLOC_STATS").is_some() {
        extern "C" {
            fn malloc_stats();
        }
        // SAFETY: glibc's malloc_stats takes no arguments and only prints.
        unsafe { malloc_stats() };
    }
    drop(streams);
    Ok(())
}
