//! Validated settings: the raw flags of [`crate::args`] checked once.
//!
//! Invariant: a [`Broker`] always points at a 127.0.0.0/8 address. This tool
//! floods whatever it is pointed at, so it refuses anything but the loopback
//! range before opening a single socket, and it never resolves host names.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::{bail, Context};
use mqtt_codec::{ProtocolVersion, QoS};

use crate::args::{ConnectionArgs, TrafficArgs};

/// The broker under test.
#[derive(Debug, Clone, Copy)]
pub struct Broker {
    pub addr: SocketAddr,
    pub version: ProtocolVersion,
    /// The broker's process, when its CPU time is to be read.
    pub pid: Option<u32>,
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

/// Checks the broker address and protocol version.
pub fn broker(args: &ConnectionArgs) -> anyhow::Result<Broker> {
    let ip = loopback_host(&args.host)?;
    if args.port == 0 {
        bail!("--port must not be 0");
    }
    let version = match args.protocol_version {
        4 => ProtocolVersion::V311,
        5 => ProtocolVersion::V5,
        other => bail!("--version must be 4 (MQTT 3.1.1) or 5 (MQTT 5.0), not {other}"),
    };
    if let Some(pid) = args.broker_pid {
        crate::proc_status::cpu_seconds(pid).context("--broker-pid")?;
    }
    Ok(Broker { addr: SocketAddr::V4(SocketAddrV4::new(ip, args.port)), version, pid: args.broker_pid })
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
fn loopback_host(host: &str) -> anyhow::Result<Ipv4Addr> {
    let ip = if host.eq_ignore_ascii_case("localhost") {
        Ipv4Addr::LOCALHOST
    } else {
        match host.parse::<Ipv4Addr>() {
            Ok(ip) => ip,
            Err(_) => bail!(
                "--host {host:?} is not allowed: mqtt-bench only targets IPv4 loopback addresses \
                 (127.0.0.0/8 or \"localhost\")"
            ),
        }
    };
    if !ip.is_loopback() {
        bail!("--host {ip} is not allowed: mqtt-bench only targets loopback addresses (127.0.0.0/8)");
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_accepted() {
        assert_eq!(loopback_host("127.0.0.1").unwrap(), Ipv4Addr::LOCALHOST);
        assert_eq!(loopback_host("127.9.8.7").unwrap(), Ipv4Addr::new(127, 9, 8, 7));
        assert_eq!(loopback_host("LOCALHOST").unwrap(), Ipv4Addr::LOCALHOST);
    }

    #[test]
    fn other_hosts_are_refused() {
        for host in ["10.0.0.1", "192.168.1.1", "8.8.8.8", "0.0.0.0", "::1", "example.com", ""] {
            let error = loopback_host(host).unwrap_err().to_string();
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
}
