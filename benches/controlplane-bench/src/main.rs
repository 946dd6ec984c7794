//! `controlplane-bench`: benchmarks the control plane in one process.
//!
//! It starts three control-plane voters (`controlplane::ControlPlane`, temp
//! data directories, free loopback ports, the default timings), forms the
//! cluster through the admin API, and then measures, over real gRPC:
//!
//! 1. route-batch write throughput: `--clients` simulated data-plane nodes
//!    sending `RegisterRoutes` batches of `--batch` filters back to back
//!    for `--duration` (`routes.rs`);
//! 2. the snapshot a new data-plane node takes once the state holds
//!    `--routes` routes and `--users` users, turned into the data plane's
//!    own `ClusterView` (`users.rs` imports the users, `snapshot.rs`);
//! 3. commit-to-apply latency: from a write's call returning to three
//!    data-plane Watch streams, one per voter, having applied it
//!    (`propagation.rs`).
//!
//! Output: human-readable lines and one JSON line per measurement, on
//! stdout (`stats.rs`); logs go to stderr (`CONTROLPLANE_BENCH_LOG`,
//! default `warn,openraft=error`: openraft warns about routine races while
//! members join). Everything shares this process and its cores: the
//! numbers are for comparing builds on one machine, not a deployment.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod args;
mod cluster;
mod propagation;
mod routes;
mod snapshot;
mod stats;
mod timed;
mod users;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;

use args::{Cli, Config};
use cluster::{Cluster, Heartbeats};
use stats::{emit, round, say};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let config = match Config::from_cli(cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("controlplane-bench: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.threads {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("controlplane-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("controlplane-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONTROLPLANE_BENCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,openraft=error"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn run(config: Config) -> Result<()> {
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map(|cores| cores.get()).unwrap_or(1);
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let cluster = Cluster::start(config.snapshot_every).await.context("forming the cluster")?;
    let leader = cluster.leader()?;
    say(format!(
        "cluster: 3 voters in this process ({profile} build, {cores} cores, {} runtime threads), leader voter {}, formed in {:.1} s",
        config.threads.unwrap_or(cores),
        leader + 1,
        started.elapsed().as_secs_f64(),
    ));
    emit(json!({
        "measurement": "setup",
        "profile": profile,
        "cores": cores,
        "threads": config.threads.unwrap_or(cores),
        "voters": cluster.voters.len(),
        "leader": leader + 1,
        "quick": config.quick,
        "formed_secs": round(started.elapsed().as_secs_f64()),
    }));

    let hash = users::imported_hash().await?;
    let mut node_ids: Vec<u64> = (0..config.clients as u64).map(|i| routes::FIRST_NODE_ID + i).collect();
    node_ids.push(propagation::PROBE_NODE_ID);
    let heartbeats = Heartbeats::start(&cluster, &node_ids).await?;
    let mut writers = routes::RouteWriter::connect_all(&cluster, &config).await?;

    if config.snapshot {
        users::import(&cluster, &config, &hash).await.context("importing users")?;
    }
    if config.route_writes {
        writers = routes::write_step(&cluster, &config, writers).await.context("route-batch writes")?;
    }
    if config.snapshot {
        routes::fill_step(&cluster, &config, writers).await.context("filling the route table")?;
        snapshot::step(&cluster, &config).await.context("snapshot to a new data-plane node")?;
    } else {
        drop(writers);
    }
    if config.propagation {
        propagation::step(&cluster, &config, &hash).await.context("commit-to-apply latency")?;
    }

    drop(heartbeats);
    // An election during the run (a member starved of CPU long enough)
    // shows here as a higher term or another leader.
    let terms: Vec<u64> = cluster.voters.iter().map(|voter| voter.status().term).collect();
    let leader_after = cluster.leader()? + 1;
    say(format!(
        "leader at the end: voter {leader_after} (terms {terms:?}); done in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    emit(json!({
        "measurement": "end",
        "leader": leader_after,
        "terms": terms,
        "seconds": round(started.elapsed().as_secs_f64()),
        "rss_mib": stats::rss_mib(),
    }));
    cluster.shutdown().await?;
    Ok(())
}
