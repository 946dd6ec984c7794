//! Measures the heap one route costs: in a control-plane member's state
//! (`ControlState`, as the Raft state machine holds it) and in a data-plane
//! node's table of remote routes (`RouteTable`), behind a counting
//! allocator, for N routes shaped as the commonest IoT pattern makes them
//! (every device subscribed to its own command topic:
//! `fleet/n{node}/device-{k:07}/+/state`, one node each).
//!
//! `cargo run --release -p controlplane-bench --example route_memory -- 1000000 [control|data]`
//!
//! Prints live heap bytes per route for each (what was asked of the
//! allocator) and the growth of the process's resident memory (what the
//! allocator took from the system, its own overhead included; run one part
//! per process for that figure to be clean), and the time a copy of the
//! state (what a Raft snapshot takes), its serialization and one route
//! change cost.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use controlplane::state::{Command, ControlState};
use dataplane::cluster::route_table::RouteTable;

struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> i64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Resident memory of this process, bytes.
fn rss() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn filter(k: usize) -> String {
    format!("fleet/n{}/device-{k:07}/+/state", k % 3 + 1)
}

fn main() {
    let routes: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let part = std::env::args().nth(2).unwrap_or_default();
    if part != "data" {
        control_plane(routes);
    }
    if part != "control" {
        data_plane(routes);
    }
}

fn control_plane(routes: usize) {
    let batch = 1000;
    let rss_before = rss();

    let before = live();
    let mut state = ControlState::default();
    let started = Instant::now();
    for start in (0..routes).step_by(batch) {
        let add: Vec<String> = (start..(start + batch).min(routes)).map(filter).collect();
        let command = Command::RouteBatch {
            node_id: (start / batch % 3 + 1) as u64,
            add,
            remove: Vec::new(),
            share_add: Vec::new(),
            share_remove: Vec::new(),
            at_ms: 0,
        };
        let _ = state.apply(command);
    }
    let filled = started.elapsed();
    let state_bytes = live() - before;
    println!(
        "control plane: {routes} routes in ControlState: {:.0} bytes a route ({:.1} MiB) asked, RSS +{:.0} bytes a route, filled in {:.2} s",
        state_bytes as f64 / routes as f64,
        state_bytes as f64 / 1048576.0,
        (rss() - rss_before) as f64 / routes as f64,
        filled.as_secs_f64()
    );

    let started = Instant::now();
    let copy = state.clone();
    let copied = started.elapsed();
    let one = Command::RouteBatch {
        node_id: 9,
        add: vec!["fleet/extra/+".to_string()],
        remove: Vec::new(),
        share_add: Vec::new(),
        share_remove: Vec::new(),
        at_ms: 0,
    };
    let started = Instant::now();
    let _ = state.apply(one);
    let changed = started.elapsed();
    println!(
        "control plane: a copy of the state (a Raft snapshot's) {:.3} ms; one route change after it {:.3} ms",
        copied.as_secs_f64() * 1000.0,
        changed.as_secs_f64() * 1000.0
    );
    // What a voter's snapshot costs in CPU: the serialization of the copy.
    let started = Instant::now();
    let bytes = copy.to_snapshot_bytes().map(|b| b.len()).unwrap_or(0);
    println!(
        "control plane: serializing the copy for a Raft snapshot: {:.0} ms, {:.1} MiB",
        started.elapsed().as_secs_f64() * 1000.0,
        bytes as f64 / 1048576.0
    );
    drop(copy);
    drop(state);
}

fn data_plane(routes: usize) {
    let rss_before = rss();
    let before = live();
    let table = RouteTable::new();
    let started = Instant::now();
    for k in 0..routes {
        table.set(&filter(k), &[(k % 3 + 1) as u64]);
    }
    let filled = started.elapsed();
    let table_bytes = live() - before;
    let started = Instant::now();
    table.set("fleet/extra/+", &[9]);
    let changed = started.elapsed();
    println!(
        "data plane: {routes} remote routes in RouteTable: {:.0} bytes a route ({:.1} MiB) asked, RSS +{:.0} bytes a route, filled in {:.2} s; one change {:.3} ms",
        table_bytes as f64 / routes as f64,
        table_bytes as f64 / 1048576.0,
        (rss() - rss_before) as f64 / routes as f64,
        filled.as_secs_f64(),
        changed.as_secs_f64() * 1000.0
    );
}
