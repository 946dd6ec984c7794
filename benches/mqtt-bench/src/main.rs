//! `mqtt-bench`: a load generator for MQTT brokers on this machine.
//!
//! Each scenario (see `scenarios/`) drives raw TCP clients that speak MQTT
//! through the project's sans-I/O codec, measures, and prints exactly one
//! JSON line on stdout; everything else goes to stderr. It only ever talks
//! to loopback addresses (see [`config`]), and every run is bounded in time.
//!
//! Code map: `args` (raw flags) → `config` (validated) → `scenarios::*`,
//! which build a `flow::FlowPlan` of `publisher`s and `subscriber`s over
//! `client::Client`s (or, for `conn`, just open and hold clients).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod args;
mod client;
mod config;
mod flow;
mod inflight;
mod payload;
mod proc_status;
mod publisher;
mod scenarios;
mod stats;
mod subscriber;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use args::{Cli, ScenarioArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let threads = match &cli.scenario {
        ScenarioArgs::Conn(args) => args.connection.threads,
        ScenarioArgs::Fanin(args) => args.connection.threads,
        ScenarioArgs::Fanout(args) => args.connection.threads,
        ScenarioArgs::Pairs(args) => args.connection.threads,
        ScenarioArgs::Latency(args) => args.connection.threads,
        ScenarioArgs::Wildcards(args) => args.connection.threads,
    };
    let runtime = match build_runtime(threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mqtt-bench: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(scenarios::run(cli.scenario));
    // Tasks still running at this point are abandoned, not awaited.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(report) => {
            let mut stdout = std::io::stdout().lock();
            if let Err(error) = writeln!(stdout, "{}", report.json).and_then(|()| stdout.flush()) {
                eprintln!("mqtt-bench: writing the result: {error}");
                return ExitCode::FAILURE;
            }
            match report.failure {
                None => ExitCode::SUCCESS,
                Some(failure) => {
                    eprintln!("mqtt-bench: {failure}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("mqtt-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// One thread by default (the current-thread runtime), so the load
/// generator takes one core and leaves the rest to the broker.
fn build_runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let runtime = match threads {
        0 => anyhow::bail!("--threads must be at least 1"),
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        threads => {
            tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
        }
    };
    Ok(runtime)
}

/// Logs to stderr; the filter comes from MQTT_BENCH_LOG (default "info").
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MQTT_BENCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
