//! `latency`: a fixed total rate spread over P publishers (`bench/lat/{i}`),
//! one subscriber on `bench/lat/#`. Each payload carries its send time, so
//! the subscriber measures send-to-receive latency per message.
//!
//! The send time is taken when the message is encoded, not when it was
//! scheduled: if this tool falls behind its schedule, the lag shows as a
//! lower `achieved_rate`, not as broker latency. Publishers are phase-shifted
//! by `i / rate` so that their messages interleave instead of arriving at
//! the broker in bursts.

use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

use crate::args::LatencyArgs;
use crate::config::{self, at_least_one};
use crate::flow::{self, FlowPlan, PublisherSpec};
use crate::payload::STAMP_LEN;
use crate::publisher::FixedTopic;
use crate::stats::{percentiles, Percentiles};
use crate::subscriber::Checks;

use super::{flow_budget, quotas, round, within, BrokerCpu, Deliveries, Endpoints, Report};

#[derive(Debug, Serialize)]
struct LatencyReport {
    scenario: &'static str,
    version: u8,
    qos: u8,
    size: usize,
    publishers: usize,
    rate: f64,
    achieved_rate: f64,
    sent: u64,
    #[serde(flatten)]
    deliveries: Deliveries,
    /// Latency samples: one per distinct delivery.
    count: u64,
    lost: u64,
    unacked: u64,
    seconds: f64,
    #[serde(flatten)]
    percentiles: Option<Percentiles>,
    #[serde(flatten)]
    broker_cpu: BrokerCpu,
    #[serde(flatten)]
    endpoints: Endpoints,
}

pub async fn run(args: LatencyArgs) -> anyhow::Result<Report> {
    let brokers = config::brokers(&args.connection, &args.spread)?;
    let traffic = config::traffic(&args.traffic)?;
    let publishers = at_least_one(args.publishers, "--publishers")?;
    if traffic.payload_size < STAMP_LEN {
        bail!("latency needs --size of at least {STAMP_LEN} bytes to carry the send timestamp");
    }
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 10_000_000.0) {
        bail!("--rate must be above 0 and at most 10000000 messages per second");
    }
    let per_publisher = args.rate / publishers as f64;
    let plan = FlowPlan {
        subscribers: vec![vec!["bench/lat/#".to_string()]],
        publishers: quotas(traffic.count, publishers)
            .into_iter()
            .enumerate()
            .map(|(index, quota)| PublisherSpec {
                topics: Box::new(FixedTopic::new(format!("bench/lat/{index}"), 1)),
                quota,
                pacing: Some((per_publisher, Duration::from_secs_f64(index as f64 / args.rate))),
            })
            .collect(),
        checks: Checks { order: Some(publishers), latency: true },
    };
    let mut outcome = within(flow_budget(&traffic), flow::run(&brokers, traffic, plan)).await?;
    let count = outcome.latencies_ns.len() as u64;
    let percentiles = percentiles(&mut outcome.latencies_ns);
    let publish_secs = outcome.publish_secs;
    Report::new(
        &LatencyReport {
            scenario: "latency",
            version: brokers.version.level(),
            qos: traffic.qos as u8,
            size: traffic.payload_size,
            publishers,
            rate: args.rate,
            achieved_rate: round(
                if publish_secs > 0.0 { outcome.sent as f64 / publish_secs } else { 0.0 },
                1,
            ),
            sent: outcome.sent,
            deliveries: Deliveries::of(&outcome),
            count,
            lost: outcome.lost(),
            unacked: outcome.unacked,
            seconds: round(outcome.seconds, 3),
            percentiles,
            broker_cpu: BrokerCpu::of(&outcome),
            endpoints: Endpoints::of(&brokers, 1, publishers),
        },
        None,
    )
}
