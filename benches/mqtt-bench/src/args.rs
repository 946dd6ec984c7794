//! The command line as the user typed it: one subcommand per scenario.
//!
//! Nothing here is validated beyond what clap parses; [`crate::config`]
//! turns these raw values into settings that cannot be wrong (a loopback
//! address, a QoS, a protocol version), as ripgrep does with its flags.
//! `--clients` is accepted by every scenario as an alias of the count that
//! scenario scales by, so that a sweep script can use one flag throughout.

use clap::{Args, Parser, Subcommand};

/// Load generator for MQTT brokers on this machine (loopback addresses only).
///
/// Prints one JSON line of results on stdout; logs go to stderr (filter with
/// MQTT_BENCH_LOG, e.g. MQTT_BENCH_LOG=debug).
#[derive(Debug, Parser)]
#[command(name = "mqtt-bench")]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: ScenarioArgs,
}

#[derive(Debug, Subcommand)]
pub enum ScenarioArgs {
    /// Open many connections, report the connect rate, hold them, close them.
    Conn(ConnArgs),
    /// Many publishers, one subscriber on a wildcard.
    Fanin(FaninArgs),
    /// One publisher, many subscribers on the same topic.
    Fanout(FanoutArgs),
    /// Independent publisher/subscriber pairs, one topic each.
    Pairs(PairsArgs),
    /// End-to-end latency at a fixed total rate.
    Latency(LatencyArgs),
    /// Routing through a large set of wildcard subscriptions.
    Wildcards(WildcardsArgs),
}

/// Where the broker is and how to talk to it; shared by every scenario.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// Broker address; must be in 127.0.0.0/8 (or "localhost").
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker TCP port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// MQTT protocol level: 4 (3.1.1) or 5 (5.0).
    #[arg(long = "version", value_name = "4|5", default_value_t = 4)]
    pub protocol_version: u8,
    /// Runtime worker threads; 1 runs everything on the main thread.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Broker process whose CPU time (user + system, all threads, from
    /// /proc/PID/stat) is read at the start and end of the measured window,
    /// reported as broker_cpu_s. Several (PID,PID,... or the flag repeated):
    /// their times are summed, e.g. every process of a fleet.
    #[arg(long, value_name = "PID[,PID...]", value_delimiter = ',')]
    pub broker_pid: Vec<u32>,
}

/// Several brokers for one run (e.g. the data-plane nodes of a fleet);
/// shared by fanin, fanout, pairs and latency. Each list is
/// IP:PORT,IP:PORT,... of loopback addresses; clients are dealt round
/// robin: subscriber i connects to the (i mod n)-th of --sub-hosts,
/// publisher i to the (i mod n)-th of --pub-hosts. A list not given is
/// --host and --port.
#[derive(Debug, Args)]
pub struct SpreadArgs {
    /// Brokers for the subscribers, dealt round robin.
    #[arg(long, value_name = "IP:PORT,...")]
    pub sub_hosts: Option<String>,
    /// Brokers for the publishers, dealt round robin.
    #[arg(long, value_name = "IP:PORT,...")]
    pub pub_hosts: Option<String>,
}

/// How messages are published; shared by the message scenarios.
#[derive(Debug, Args)]
pub struct TrafficArgs {
    /// QoS of the publishes and of the subscriptions: 0, 1 or 2.
    #[arg(long, default_value_t = 0)]
    pub qos: u8,
    /// Payload size in bytes. At 20 or more the payload carries a publisher
    /// number, a sequence number and a send timestamp.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Length of the publishing window in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Stop after this many messages in total (spread over the publishers),
    /// or at the end of --duration, whichever comes first.
    #[arg(long)]
    pub count: Option<u64>,
    /// Unacknowledged QoS 1/2 publishes allowed per publisher.
    #[arg(long, default_value_t = 16)]
    pub inflight: u16,
}

#[derive(Debug, Args)]
pub struct ConnArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Cap on connection attempts started per second.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Handshakes (TCP connect + CONNECT/CONNACK) in progress at once.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// Seconds allowed for opening all connections; later ones count as failed.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to hold the connections open once all are connected.
    #[arg(long, default_value_t = 0.0)]
    pub hold: f64,
    /// Keep alive sent in CONNECT, in seconds; a PINGREQ goes out every
    /// three quarters of it while holding.
    #[arg(long, default_value_t = 30)]
    pub keep_alive: u16,
    /// Broker process whose VmRSS (and CPU time) is read before and after
    /// connecting and at the end of the hold; --broker-pid does the same.
    /// Several (PID,PID,...): their sizes and times are summed.
    #[arg(long, value_name = "PID[,PID...]", value_delimiter = ',')]
    pub pid: Vec<u32>,
    /// Have each client subscribe (QoS 1) to a topic of its own right after
    /// its CONNACK, as part of its handshake.
    #[arg(long)]
    pub subscribe: bool,
    /// With --subscribe, subscribe every client to this one topic filter
    /// instead of a topic of its own, so that one publish reaches them all;
    /// deliveries while holding are counted (and acknowledged).
    #[arg(long, value_name = "FILTER", requires = "subscribe")]
    pub subscribe_topic: Option<String>,
    /// Brokers to spread the connections over, IP:PORT,IP:PORT,... of
    /// loopback addresses: client i connects to the (i mod n)-th. Default:
    /// --host and --port.
    #[arg(long, value_name = "IP:PORT,...")]
    pub hosts: Option<String>,
}

#[derive(Debug, Args)]
pub struct FaninArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub spread: SpreadArgs,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    /// Publishers, each on bench/in/{i}.
    #[arg(long, visible_alias = "clients", default_value_t = 4)]
    pub publishers: usize,
}

#[derive(Debug, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub spread: SpreadArgs,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    /// Subscribers on bench/out.
    #[arg(long, visible_alias = "clients", default_value_t = 10)]
    pub subscribers: usize,
}

#[derive(Debug, Args)]
pub struct PairsArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub spread: SpreadArgs,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    /// Publisher/subscriber pairs, pair i on bench/pair/{i}.
    #[arg(long, visible_alias = "clients", default_value_t = 10)]
    pub pairs: usize,
}

#[derive(Debug, Args)]
pub struct LatencyArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub spread: SpreadArgs,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    /// Publishers sharing --rate, each on bench/lat/{i}.
    #[arg(long, visible_alias = "clients", default_value_t = 10)]
    pub publishers: usize,
    /// Total messages per second over all publishers.
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
}

#[derive(Debug, Args)]
pub struct WildcardsArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    /// Distinct topic filters, spread round-robin over the subscribers.
    #[arg(long, default_value_t = 100_000)]
    pub filters: usize,
    /// Subscriber connections holding the filters.
    #[arg(long, visible_alias = "clients", default_value_t = 10)]
    pub subscribers: usize,
    /// Publishers publishing to w/a{a}/x{x}/b{b} topics.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
}
