//! `mqttd`: the broker daemon. Parses the command line and configuration,
//! sets up logging and runs the node; all broker logic lives in the planes.
#![forbid(unsafe_code)]

mod config;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing::{error, info};

use config::{Config, LogFormat};

/// MQTT 3.1 / 3.1.1 / 5.0 broker.
#[derive(Debug, Parser)]
#[command(name = "mqttd", version)]
struct Args {
    /// TOML configuration file (default: config/mqttd.toml if it exists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one configuration key, e.g. --set listeners.tcp.bind=127.0.0.1:1883.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Log format (overrides log.format).
    #[arg(long, value_enum)]
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
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mqttd: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!("{err:#}");
            eprintln!("mqttd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config, format: Option<LogFormat>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
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

async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.node.data_dir)
        .with_context(|| format!("node.data_dir: cannot create {}", config.node.data_dir.display()))?;
    raise_file_limit();
    let node = dataplane::Node::start(config.dataplane, config.node.name.clone()).await?;
    info!(node = %config.node.name, version = env!("CARGO_PKG_VERSION"), "mqttd started");
    wait_for_signal().await?;
    info!("shutting down");
    node.shutdown(Duration::from_secs(5)).await;
    Ok(())
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

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
