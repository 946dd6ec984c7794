//! The scenarios: each validates its flags, runs under a watchdog, and
//! turns what it measured into one JSON object.
//!
//! Invariant: a scenario never runs longer than its budget (duration plus
//! [`flow::OVERHEAD`] and a second, or the `conn` equivalent); past it the
//! run fails rather than hangs.

mod conn;
mod fanin;
mod fanout;
mod latency;
mod pairs;
mod wildcards;

use std::future::Future;
use std::time::Duration;

use anyhow::anyhow;
use serde::Serialize;

use crate::args::ScenarioArgs;
use crate::config::{self, Brokers, Traffic};
use crate::flow::{self, FlowOutcome};
use crate::payload::STAMP_LEN;

/// The result of a run: the JSON line to print, and whether the run failed
/// although it measured something (e.g. some connections were refused).
#[derive(Debug)]
pub struct Report {
    pub json: String,
    pub failure: Option<String>,
}

impl Report {
    fn new<T: Serialize>(report: &T, failure: Option<String>) -> anyhow::Result<Report> {
        Ok(Report { json: serde_json::to_string(report)?, failure })
    }
}

/// What the subscribers got, as every message scenario reports it.
///
/// `received` counts every delivery (a QoS 2 resend awaiting PUBREL is not
/// one), `delivered` the distinct messages among them. When payloads carry
/// stamps and each publisher has a topic of its own, `duplicates` (copies of
/// a message already delivered), `reordered` (first copies that came after
/// a later message of the same publisher) and `corrupt` (stamps no publisher
/// of this run wrote) are counted apart; otherwise they are `null` and
/// `delivered` equals `received`.
#[derive(Debug, Serialize)]
struct Deliveries {
    received: u64,
    delivered: u64,
    duplicates: Option<u64>,
    reordered: Option<u64>,
    corrupt: Option<u64>,
}

impl Deliveries {
    fn of(outcome: &FlowOutcome) -> Deliveries {
        Deliveries {
            received: outcome.received,
            delivered: outcome.delivered(),
            duplicates: outcome.order.map(|order| order.duplicates),
            reordered: outcome.order.map(|order| order.reordered),
            corrupt: outcome.order.map(|order| order.corrupt),
        }
    }
}

/// The broker's CPU time over the measured window (with `--broker-pid`)
/// and the distinct deliveries per CPU second it bought.
#[derive(Debug, Serialize)]
struct BrokerCpu {
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_cpu_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    msgs_per_broker_cpu_s: Option<f64>,
}

impl BrokerCpu {
    fn of(outcome: &FlowOutcome) -> BrokerCpu {
        BrokerCpu {
            broker_cpu_s: outcome.broker_cpu_s.map(|cpu| round(cpu, 3)),
            msgs_per_broker_cpu_s: outcome.deliveries_per_broker_cpu_sec().map(|rate| round(rate, 1)),
        }
    }
}

/// The brokers a message run's clients connected to, as `IP:PORT`: one
/// each with `--host`/`--port`, those used of `--sub-hosts` and
/// `--pub-hosts` otherwise (in the order clients were dealt to them).
#[derive(Debug, Serialize)]
struct Endpoints {
    sub_hosts: Vec<String>,
    pub_hosts: Vec<String>,
}

impl Endpoints {
    fn of(brokers: &Brokers, subscribers: usize, publishers: usize) -> Endpoints {
        Endpoints {
            sub_hosts: config::used(&brokers.subscribers, subscribers),
            pub_hosts: config::used(&brokers.publishers, publishers),
        }
    }
}

/// Runs the chosen scenario.
pub async fn run(scenario: ScenarioArgs) -> anyhow::Result<Report> {
    match scenario {
        ScenarioArgs::Conn(args) => conn::run(args).await,
        ScenarioArgs::Fanin(args) => fanin::run(args).await,
        ScenarioArgs::Fanout(args) => fanout::run(args).await,
        ScenarioArgs::Pairs(args) => pairs::run(args).await,
        ScenarioArgs::Latency(args) => latency::run(args).await,
        ScenarioArgs::Wildcards(args) => wildcards::run(args).await,
    }
}

/// Runs `work`, failing if it takes longer than `budget`.
async fn within<T>(budget: Duration, work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(budget, work)
        .await
        .map_err(|_| anyhow!("the run did not finish within {budget:?}; giving up"))?
}

/// The budget of a message run.
fn flow_budget(traffic: &Traffic) -> Duration {
    traffic.duration + flow::OVERHEAD + Duration::from_secs(1)
}

/// Each publisher's share of `--count`.
fn quotas(count: Option<u64>, publishers: usize) -> Vec<Option<u64>> {
    match count {
        Some(total) => crate::publisher::split_count(total, publishers).into_iter().map(Some).collect(),
        None => vec![None; publishers],
    }
}

/// Order is checked per publisher when payloads carry stamps.
fn order_check(traffic: &Traffic, publishers: usize) -> Option<usize> {
    (traffic.payload_size >= STAMP_LEN).then_some(publishers)
}

/// `value` rounded to `decimals` places, for readable JSON.
fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}
