//! `mqttd`: the broker daemon. Parses the command line and configuration,
//! sets up logging and runs the node; all broker logic lives in the planes.
#![forbid(unsafe_code)]

mod config;
mod roles;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing::{error, info};

use config::{Config, LogFormat};

/// jemalloc rather than the system allocator: it holds fewer bytes per idle
/// connection and keeps fan-in throughput steadier (see benches/README.md).
///
/// The `system-allocator` feature leaves it out, so that heap profilers that
/// hook malloc (heaptrack) can see every allocation.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// MQTT 3.1 / 3.1.1 / 5.0 broker.
#[derive(Debug, Parser)]
#[command(name = "mqttd", version)]
struct Args {
    /// What to run; without one, standalone.
    #[command(subcommand)]
    role: Option<roles::Role>,
    /// TOML configuration file (default: config/mqttd.toml if it exists).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Override one configuration key, e.g. --set listeners.tcp.bind=127.0.0.1:1883.
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    sets: Vec<String>,
    /// Log format (overrides log.format).
    #[arg(long, value_enum, global = true)]
    log_format: Option<LogFormat>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match config::load(args.config.as_deref(), std::env::vars(), &args.sets) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("mqttd: {error:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config, args.log_format);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.node.worker_threads > 0 {
        builder.worker_threads(config.node.worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mqttd: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    info!(worker_threads = runtime.metrics().num_workers(), "runtime started");
    let role = args.role.unwrap_or(roles::Role::Standalone);
    match runtime.block_on(async {
        raise_file_limit();
        roles::run(role, config).await
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!("{err:#}");
            eprintln!("mqttd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config, format: Option<LogFormat>) {
    // Raft's own info lines are chatter for an operator; its warnings are not.
    let level = if config.log.level.contains("openraft") {
        config.log.level.clone()
    } else {
        format!("{},openraft=warn", config.log.level)
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format.unwrap_or(config.log.format) {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Raises the soft limit on open files to the hard limit: each client holds
/// one descriptor, so this limit is the node's connection ceiling.
fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(
            open_files = limit,
            connection_ceiling = limit.saturating_sub(64),
            "file descriptor limit raised to the hard limit"
        ),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
}

pub(crate) async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
