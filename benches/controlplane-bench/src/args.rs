//! Command-line options: the raw flags ([`Cli`]) and the validated run
//! ([`Config`]), with the sizes as defaults and `--quick` for a CI
//! smoke run. An option given explicitly always wins over `--quick`.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};

/// Which control-plane member each route-writing client talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// Client `i` talks to voter `i % 3`: writes reach the leader directly
    /// or are forwarded by a follower.
    Spread,
    /// Every client talks to the leader.
    Leader,
    /// Clients alternate between the two followers (every write forwarded).
    Followers,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Spread => "spread",
            Via::Leader => "leader",
            Via::Followers => "followers",
        }
    }
}

/// What the commit-to-apply step writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WriteKind {
    /// `AclAdd` then `AclDelete` of that rule, alternately (admin API).
    Acl,
    /// `UserAdd` with an imported argon2id hash (admin API).
    User,
    /// `RegisterRoutes` adding then removing one filter, alternately.
    Route,
}

impl WriteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteKind::Acl => "acl",
            WriteKind::User => "user",
            WriteKind::Route => "route",
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "controlplane-bench",
    about = "Benchmarks the control plane: three voters in this process, route-batch writes, \
             the snapshot a new data-plane node takes, commit-to-apply latency on Watch streams."
)]
pub struct Cli {
    /// Small sizes for a CI smoke run (under 20 s); explicit options still win.
    #[arg(long)]
    pub quick: bool,
    /// Routes in the state when the snapshot is taken [default: 1000000; quick: 20000].
    #[arg(long)]
    pub routes: Option<u64>,
    /// Users in the state when the snapshot is taken [default: 100000; quick: 2000].
    #[arg(long)]
    pub users: Option<u64>,
    /// Topic filters per `RegisterRoutes` call [default: 1000].
    #[arg(long)]
    pub batch: Option<u64>,
    /// Seconds of the route-batch write step [default: 10; quick: 3].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Concurrent route-writing clients, one data-plane node each [default: 3].
    #[arg(long)]
    pub clients: Option<usize>,
    /// Which member the route-writing clients talk to.
    #[arg(long, value_enum, default_value = "spread")]
    pub via: Via,
    /// `UserAdd` calls in flight while importing users [default: 32].
    #[arg(long)]
    pub user_concurrency: Option<usize>,
    /// How many times a new data-plane node takes the snapshot [default: 3; quick: 1].
    #[arg(long)]
    pub snapshot_runs: Option<usize>,
    /// Writes in the commit-to-apply step [default: 500; quick: 100].
    #[arg(long)]
    pub writes: Option<usize>,
    /// Pace of those writes, per second [default: 50].
    #[arg(long)]
    pub rate: Option<f64>,
    /// What the commit-to-apply step writes.
    #[arg(long, value_enum, default_value = "acl")]
    pub write_kind: WriteKind,
    /// The Watch client's decoding limit [default: the data plane's own,
    /// `dataplane::cluster::link::MAX_WATCH_MESSAGE_BYTES`]. 4194304 is
    /// tonic's default.
    #[arg(long)]
    pub watch_max_message_bytes: Option<usize>,
    /// Skip the route-batch write step.
    #[arg(long)]
    pub skip_route_writes: bool,
    /// Skip the user import, the fill to `--routes` and the snapshot step.
    #[arg(long)]
    pub skip_snapshot: bool,
    /// Skip the commit-to-apply step.
    #[arg(long)]
    pub skip_propagation: bool,
    /// Runtime worker threads [default: the number of cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// The voters' `snapshot_every` [default: the control plane's own].
    #[arg(long)]
    pub snapshot_every: Option<u64>,
}

/// A run that can be carried out: every size checked once.
#[derive(Clone, Debug)]
pub struct Config {
    pub quick: bool,
    pub routes: u64,
    pub users: u64,
    pub batch: u64,
    pub duration: Duration,
    pub clients: usize,
    pub via: Via,
    pub user_concurrency: usize,
    pub snapshot_runs: usize,
    pub writes: usize,
    pub rate: f64,
    pub write_kind: WriteKind,
    pub watch_max_message_bytes: usize,
    pub route_writes: bool,
    pub snapshot: bool,
    pub propagation: bool,
    pub threads: Option<usize>,
    pub snapshot_every: Option<u64>,
}

impl Config {
    pub fn from_cli(cli: Cli) -> Result<Config> {
        let quick = cli.quick;
        let pick =
            |given: Option<u64>, full: u64, small: u64| given.unwrap_or(if quick { small } else { full });
        let config = Config {
            quick,
            routes: pick(cli.routes, 1_000_000, 20_000),
            users: pick(cli.users, 100_000, 2_000),
            batch: cli.batch.unwrap_or(1000),
            duration: Duration::from_secs_f64(cli.duration.unwrap_or(if quick { 3.0 } else { 10.0 })),
            clients: cli.clients.unwrap_or(3),
            via: cli.via,
            user_concurrency: cli.user_concurrency.unwrap_or(32),
            snapshot_runs: cli.snapshot_runs.unwrap_or(if quick { 1 } else { 3 }),
            writes: cli.writes.unwrap_or(if quick { 100 } else { 500 }),
            rate: cli.rate.unwrap_or(50.0),
            write_kind: cli.write_kind,
            watch_max_message_bytes: cli
                .watch_max_message_bytes
                .unwrap_or(dataplane::cluster::link::MAX_WATCH_MESSAGE_BYTES),
            route_writes: !cli.skip_route_writes,
            snapshot: !cli.skip_snapshot,
            propagation: !cli.skip_propagation,
            threads: cli.threads,
            snapshot_every: cli.snapshot_every,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            bail!("--batch must be at least 1");
        }
        if !(1..=64).contains(&self.clients) {
            bail!("--clients must be between 1 and 64");
        }
        if self.routes < self.clients as u64 {
            bail!("--routes must be at least --clients");
        }
        if self.duration.is_zero() {
            bail!("--duration must be above zero");
        }
        if !(1..=1024).contains(&self.user_concurrency) {
            bail!("--user-concurrency must be between 1 and 1024");
        }
        if !(self.rate > 0.0 && self.rate <= 10_000.0) {
            bail!("--rate must be above 0 and at most 10000 per second");
        }
        if self.watch_max_message_bytes < 1024 {
            bail!("--watch-max-message-bytes must be at least 1024");
        }
        if self.snapshot_every == Some(0) {
            bail!("--snapshot-every must be at least 1");
        }
        if self.threads == Some(0) {
            bail!("--threads must be at least 1");
        }
        Ok(())
    }
}
