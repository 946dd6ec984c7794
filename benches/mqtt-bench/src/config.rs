//! Validated settings: the raw flags of [`crate::args`] checked once.
//!
//! Invariant: a [`Broker`] always points at a 127.0.0.0/8 address. This tool
//! floods whatever it is pointed at, so it refuses anything but the loopback
//! range before opening a single socket, and it never resolves host names.
//! The same goes for every address of `--sub-hosts`, `--pub-hosts` and
//! `--hosts`, which spread a run's clients over several brokers (the data-plane
//! nodes of a fleet).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::{bail, Context};
use mqtt_codec::{ProtocolVersion, QoS};

use crate::args::{ConnectionArgs, SpreadArgs, TrafficArgs};
use crate::proc_status::{cpu_seconds, vm_rss_kb};

/// One broker endpoint a client connects to.
#[derive(Debug, Clone, Copy)]
pub struct Broker {
    pub addr: SocketAddr,
    pub version: ProtocolVersion,
}

/// Where the clients of a message run connect: subscriber `i` to
/// `subscribers[i % len]`, publisher `i` to `publishers[i % len]` (round
/// robin); neither list is empty.
#[derive(Debug, Clone)]
pub struct Brokers {
    pub version: ProtocolVersion,
    pub subscribers: Vec<SocketAddr>,
    pub publishers: Vec<SocketAddr>,
    /// The broker processes whose CPU time is read (summed).
    pub pids: Pids,
}

impl Brokers {
    /// The broker of subscriber `index`.
    pub fn subscriber(&self, index: usize) -> Broker {
        Broker { addr: self.subscribers[index % self.subscribers.len()], version: self.version }
    }

    /// The broker of publisher `index`.
    pub fn publisher(&self, index: usize) -> Broker {
        Broker { addr: self.publishers[index % self.publishers.len()], version: self.version }
    }
}

/// How messages are published in the message scenarios.
#[derive(Debug, Clone, Copy)]
pub struct Traffic {
    pub qos: QoS,
    pub payload_size: usize,
    /// Length of the publishing window.
    pub duration: Duration,
    /// Total messages over all publishers, if bounded by count.
    pub count: Option<u64>,
    /// Unacknowledged QoS 1/2 publishes per publisher; at least 1.
    pub inflight: u16,
}

/// The endpoints that `clients` clients dealt round robin over `endpoints`
/// actually use, as `IP:PORT` strings, for the JSON report.
pub fn used(endpoints: &[SocketAddr], clients: usize) -> Vec<String> {
    endpoints.iter().take(clients).map(ToString::to_string).collect()
}

/// Broker processes (`--broker-pid`, `--pid`), possibly several: their CPU
/// times and resident sizes are summed.
#[derive(Debug, Clone, Default)]
pub struct Pids(Vec<u32>);

impl Pids {
    /// Checks that every process can be read now.
    pub fn new(pids: &[u32], flag: &str) -> anyhow::Result<Pids> {
        for &pid in pids {
            cpu_seconds(pid).with_context(|| format!("{flag} {pid}"))?;
        }
        let mut unique = pids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != pids.len() {
            bail!("{flag}: a process is listed twice");
        }
        Ok(Pids(pids.to_vec()))
    }

    /// CPU seconds (user + system) of every process, summed; `None` without pids.
    pub fn cpu_seconds(&self) -> anyhow::Result<Option<f64>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        self.0.iter().map(|&pid| cpu_seconds(pid)).sum::<anyhow::Result<f64>>().map(Some)
    }

    /// VmRSS of every process in kB, summed; `None` without pids.
    pub fn rss_kb(&self) -> anyhow::Result<Option<u64>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        self.0.iter().map(|&pid| vm_rss_kb(pid)).sum::<anyhow::Result<u64>>().map(Some)
    }
}

/// The protocol version of `--version`.
pub fn version(args: &ConnectionArgs) -> anyhow::Result<ProtocolVersion> {
    match args.protocol_version {
        4 => Ok(ProtocolVersion::V311),
        5 => Ok(ProtocolVersion::V5),
        other => bail!("--version must be 4 (MQTT 3.1.1) or 5 (MQTT 5.0), not {other}"),
    }
}

/// The broker of `--host` and `--port`.
pub fn default_endpoint(args: &ConnectionArgs) -> anyhow::Result<SocketAddr> {
    let ip = loopback_host(&args.host, "--host")?;
    if args.port == 0 {
        bail!("--port must not be 0");
    }
    Ok(SocketAddr::V4(SocketAddrV4::new(ip, args.port)))
}

/// One broker for every client (`--host`, `--port`), and the processes of
/// `--broker-pid`.
pub fn broker(args: &ConnectionArgs) -> anyhow::Result<Brokers> {
    let endpoint = default_endpoint(args)?;
    Ok(Brokers {
        version: version(args)?,
        subscribers: vec![endpoint],
        publishers: vec![endpoint],
        pids: Pids::new(&args.broker_pid, "--broker-pid")?,
    })
}

/// Like [`broker`], but subscribers and publishers go to the brokers of
/// `--sub-hosts` and `--pub-hosts` when given.
pub fn brokers(args: &ConnectionArgs, spread: &SpreadArgs) -> anyhow::Result<Brokers> {
    let mut brokers = broker(args)?;
    let endpoint = brokers.subscribers[0];
    brokers.subscribers = endpoints(spread.sub_hosts.as_deref(), "--sub-hosts", endpoint)?;
    brokers.publishers = endpoints(spread.pub_hosts.as_deref(), "--pub-hosts", endpoint)?;
    Ok(brokers)
}

/// The endpoints of a `--sub-hosts`-like flag (`IP:PORT,IP:PORT,...`, each a
/// loopback address), or `default` alone when the flag is absent.
pub fn endpoints(list: Option<&str>, flag: &str, default: SocketAddr) -> anyhow::Result<Vec<SocketAddr>> {
    match list {
        None => Ok(vec![default]),
        Some(list) => parse_endpoints(list, flag),
    }
}

/// Parses `IP:PORT,IP:PORT,...`: at least one, each IP in 127.0.0.0/8 (or
/// "localhost"), each port above 0; blanks around entries are ignored.
fn parse_endpoints(list: &str, flag: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let mut found = Vec::new();
    for entry in list.split(',').map(str::trim) {
        if entry.is_empty() {
            bail!("{flag} {list:?}: an empty entry; expected IP:PORT,IP:PORT,...");
        }
        let Some((host, port)) = entry.rsplit_once(':') else {
            bail!("{flag}: {entry:?} has no port; expected IP:PORT");
        };
        let ip = loopback_host(host, flag)?;
        let port: u16 = match port.parse() {
            Ok(port) if port > 0 => port,
            _ => bail!("{flag}: {entry:?} has no valid port (1-65535)"),
        };
        found.push(SocketAddr::V4(SocketAddrV4::new(ip, port)));
    }
    Ok(found)
}

/// Checks the traffic flags.
pub fn traffic(args: &TrafficArgs) -> anyhow::Result<Traffic> {
    let qos = QoS::from_u8(args.qos).with_context(|| format!("--qos must be 0, 1 or 2, not {}", args.qos))?;
    if args.size > 16 * 1024 * 1024 {
        bail!("--size must be at most 16 MiB");
    }
    if args.inflight == 0 {
        bail!("--inflight must be at least 1");
    }
    if args.count == Some(0) {
        bail!("--count must be at least 1");
    }
    Ok(Traffic {
        qos,
        payload_size: args.size,
        duration: seconds(args.duration, "--duration")?,
        count: args.count,
        inflight: args.inflight,
    })
}

/// A positive, finite number of seconds (at most a day).
pub fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value > 0.0 && value <= 86_400.0) {
        bail!("{flag} must be a number of seconds above 0 and at most 86400, not {value}");
    }
    Ok(Duration::from_secs_f64(value))
}

/// Like [`seconds`] but 0 is allowed.
pub fn seconds_or_zero(value: f64, flag: &str) -> anyhow::Result<Duration> {
    if value == 0.0 {
        return Ok(Duration::ZERO);
    }
    seconds(value, flag)
}

/// A count flag that must be at least 1.
pub fn at_least_one(value: usize, flag: &str) -> anyhow::Result<usize> {
    if value == 0 {
        bail!("{flag} must be at least 1");
    }
    Ok(value)
}

/// Parses `host` as an IPv4 address in 127.0.0.0/8; "localhost" is
/// 127.0.0.1. Names are not resolved, so nothing else can slip through.
/// `flag` names the flag it came from, for the error.
fn loopback_host(host: &str, flag: &str) -> anyhow::Result<Ipv4Addr> {
    let ip = if host.eq_ignore_ascii_case("localhost") {
        Ipv4Addr::LOCALHOST
    } else {
        match host.parse::<Ipv4Addr>() {
            Ok(ip) => ip,
            Err(_) => bail!(
                "{flag} {host:?} is not allowed: mqtt-bench only targets IPv4 loopback addresses \
                 (127.0.0.0/8 or \"localhost\")"
            ),
        }
    };
    if !ip.is_loopback() {
        bail!("{flag} {ip} is not allowed: mqtt-bench only targets loopback addresses (127.0.0.0/8)");
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_accepted() {
        assert_eq!(loopback_host("127.0.0.1", "--host").unwrap(), Ipv4Addr::LOCALHOST);
        assert_eq!(loopback_host("127.9.8.7", "--host").unwrap(), Ipv4Addr::new(127, 9, 8, 7));
        assert_eq!(loopback_host("LOCALHOST", "--host").unwrap(), Ipv4Addr::LOCALHOST);
    }

    #[test]
    fn other_hosts_are_refused() {
        for host in ["10.0.0.1", "192.168.1.1", "8.8.8.8", "0.0.0.0", "::1", "example.com", ""] {
            let error = loopback_host(host, "--host").unwrap_err().to_string();
            assert!(error.contains("not allowed"), "{host}: {error}");
        }
    }

    #[test]
    fn seconds_must_be_positive_and_finite() {
        assert!(seconds(0.0, "--duration").is_err());
        assert!(seconds(-1.0, "--duration").is_err());
        assert!(seconds(f64::NAN, "--duration").is_err());
        assert_eq!(seconds(1.5, "--duration").unwrap(), Duration::from_millis(1500));
        assert_eq!(seconds_or_zero(0.0, "--hold").unwrap(), Duration::ZERO);
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn endpoint_lists_are_parsed_in_order() {
        let list = parse_endpoints("127.0.0.21:1883, 127.0.0.22:1884,localhost:9", "--sub-hosts").unwrap();
        assert_eq!(list, vec![addr("127.0.0.21:1883"), addr("127.0.0.22:1884"), addr("127.0.0.1:9")]);
        let default = addr("127.0.0.1:1883");
        assert_eq!(endpoints(None, "--pub-hosts", default).unwrap(), vec![default]);
        assert_eq!(
            endpoints(Some("127.0.0.5:7"), "--pub-hosts", default).unwrap(),
            vec![addr("127.0.0.5:7")]
        );
    }

    #[test]
    fn bad_endpoint_lists_are_refused() {
        for (list, expected) in [
            ("", "empty entry"),
            ("127.0.0.1:1883,,127.0.0.2:1883", "empty entry"),
            ("127.0.0.1:1883,", "empty entry"),
            ("127.0.0.1", "no port"),
            ("127.0.0.1:0", "no valid port"),
            ("127.0.0.1:65536", "no valid port"),
            ("127.0.0.1:x", "no valid port"),
            ("127.0.0.1:1883,10.0.0.1:1883", "not allowed"),
            ("[::1]:1883", "not allowed"),
            ("example.com:1883", "not allowed"),
            ("0.0.0.0:1883", "not allowed"),
        ] {
            let error = parse_endpoints(list, "--sub-hosts").unwrap_err().to_string();
            assert!(error.contains(expected) && error.contains("--sub-hosts"), "{list:?}: {error}");
        }
    }

    fn parse(args: &[&str]) -> crate::args::ScenarioArgs {
        use clap::Parser;
        crate::args::Cli::try_parse_from(std::iter::once("mqtt-bench").chain(args.iter().copied()))
            .unwrap()
            .scenario
    }

    #[test]
    fn clients_are_dealt_round_robin_over_the_hosts() {
        use crate::args::ScenarioArgs;
        let ScenarioArgs::Pairs(args) = parse(&[
            "pairs",
            "--port",
            "1999",
            "--sub-hosts",
            "127.0.0.21:1883,127.0.0.22:1883,127.0.0.23:1883",
            "--pub-hosts",
            "127.0.0.22:1883",
        ]) else {
            panic!("not pairs")
        };
        let brokers = brokers(&args.connection, &args.spread).unwrap();
        let subscribers: Vec<SocketAddr> = (0..4).map(|index| brokers.subscriber(index).addr).collect();
        assert_eq!(
            subscribers,
            ["127.0.0.21:1883", "127.0.0.22:1883", "127.0.0.23:1883", "127.0.0.21:1883"].map(addr)
        );
        assert_eq!(brokers.publisher(5).addr, addr("127.0.0.22:1883"));
        assert_eq!(used(&brokers.subscribers, 2), ["127.0.0.21:1883", "127.0.0.22:1883"]);
        assert_eq!(used(&brokers.publishers, 10), ["127.0.0.22:1883"]);
    }

    #[test]
    fn without_host_lists_every_client_goes_to_host_and_port() {
        use crate::args::ScenarioArgs;
        let ScenarioArgs::Fanin(args) = parse(&["fanin", "--host", "127.0.0.3", "--port", "2000"]) else {
            panic!("not fanin")
        };
        let found = brokers(&args.connection, &args.spread).unwrap();
        assert_eq!(found.subscribers, vec![addr("127.0.0.3:2000")]);
        assert_eq!(found.publishers, vec![addr("127.0.0.3:2000")]);
        assert!(found.pids.cpu_seconds().unwrap().is_none());
        // Only one side given: the other stays on --host/--port.
        let ScenarioArgs::Latency(args) = parse(&["latency", "--pub-hosts", "127.0.0.4:1,127.0.0.5:2"])
        else {
            panic!("not latency")
        };
        let found = brokers(&args.connection, &args.spread).unwrap();
        assert_eq!(found.subscribers, vec![addr("127.0.0.1:1883")]);
        assert_eq!(found.publishers, vec![addr("127.0.0.4:1"), addr("127.0.0.5:2")]);
    }

    #[test]
    fn a_bad_host_list_fails_the_scenario_flags() {
        use crate::args::ScenarioArgs;
        let ScenarioArgs::Fanout(args) = parse(&["fanout", "--sub-hosts", "127.0.0.1:1883,192.168.0.1:1883"])
        else {
            panic!("not fanout")
        };
        assert!(brokers(&args.connection, &args.spread).is_err());
    }

    #[test]
    fn broker_pids_may_be_a_list() {
        use crate::args::ScenarioArgs;
        let me = std::process::id();
        let listed = format!("{me}");
        let ScenarioArgs::Fanin(args) = parse(&["fanin", "--broker-pid", &listed]) else {
            panic!("not fanin")
        };
        let brokers = broker(&args.connection).unwrap();
        assert!(brokers.pids.cpu_seconds().unwrap().unwrap() >= 0.0);
        assert!(brokers.pids.rss_kb().unwrap().unwrap() > 0);
        // The same process twice is refused (its time would count twice).
        let twice = format!("{me},{me}");
        let ScenarioArgs::Fanin(args) = parse(&["fanin", "--broker-pid", &twice]) else {
            panic!("not fanin")
        };
        assert!(broker(&args.connection).unwrap_err().to_string().contains("twice"));
        assert!(Pids::default().cpu_seconds().unwrap().is_none());
    }

    #[test]
    fn conn_spreads_over_hosts() {
        use crate::args::ScenarioArgs;
        let ScenarioArgs::Conn(args) = parse(&[
            "conn",
            "--hosts",
            "127.0.0.21:1883,127.0.0.22:1883",
            "--subscribe",
            "--subscribe-topic",
            "fleet/all",
        ]) else {
            panic!("not conn")
        };
        let default = default_endpoint(&args.connection).unwrap();
        let hosts = endpoints(args.hosts.as_deref(), "--hosts", default).unwrap();
        assert_eq!(hosts, vec![addr("127.0.0.21:1883"), addr("127.0.0.22:1883")]);
        assert_eq!(args.subscribe_topic.as_deref(), Some("fleet/all"));
        // --subscribe-topic means nothing without --subscribe.
        use clap::Parser;
        let error =
            crate::args::Cli::try_parse_from(["mqtt-bench", "conn", "--subscribe-topic", "t"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let ScenarioArgs::Conn(args) = parse(&["conn", "--hosts", "127.0.0.1:1,10.1.1.1:1"]) else {
            panic!("not conn")
        };
        assert!(endpoints(args.hosts.as_deref(), "--hosts", default)
            .unwrap_err()
            .to_string()
            .contains("--hosts"));
    }
}
