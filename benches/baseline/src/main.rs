//! `baseline`: the physical-limit MQTT forwarder the benchmarks compare
//! mqttd against (see the library's documentation and README.md).

use std::num::NonZeroUsize;

use anyhow::Context;
use baseline::Mode;
use clap::Parser;

/// A bare MQTT forwarder: every PUBLISH goes, as received, to every
/// connection that has subscribed to anything. No topic matching, no
/// sessions, no auth. Drive it with mqtt-bench like a broker.
#[derive(Debug, Parser)]
#[command(name = "baseline")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// TCP port to listen on (0: any free port, printed on stderr).
    #[arg(long)]
    port: u16,
    /// The scenario to serve; all three share one forwarding path, so this
    /// only names the run.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Runtime worker threads; defaults to the number of cores.
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
        let addr = listener.local_addr()?;
        eprintln!("baseline: {:?} mode, listening on {addr}, {threads} worker threads", args.mode);
        baseline::serve(listener, args.mode).await.context("accepting connections")
    })
}
