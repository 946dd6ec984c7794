//! `fanout`: one publisher on `bench/out`, N subscribers on `bench/out`.
//! Every message should be delivered N times; measures deliveries per
//! second over all subscribers and loss against `sent * N`.

use serde::Serialize;

use crate::args::FanoutArgs;
use crate::config::{self, at_least_one};
use crate::flow::{self, FlowPlan, PublisherSpec};
use crate::publisher::FixedTopic;
use crate::subscriber::Checks;

use super::{flow_budget, order_check, quotas, round, within, BrokerCpu, Deliveries, Endpoints, Report};

#[derive(Debug, Serialize)]
struct FanoutReport {
    scenario: &'static str,
    version: u8,
    qos: u8,
    size: usize,
    subscribers: usize,
    sent: u64,
    expected: u64,
    #[serde(flatten)]
    deliveries: Deliveries,
    lost: u64,
    unacked: u64,
    seconds: f64,
    deliveries_per_sec: f64,
    /// The same number under the key every message scenario shares.
    msgs_per_sec: f64,
    #[serde(flatten)]
    broker_cpu: BrokerCpu,
    #[serde(flatten)]
    endpoints: Endpoints,
}

pub async fn run(args: FanoutArgs) -> anyhow::Result<Report> {
    let brokers = config::brokers(&args.connection, &args.spread)?;
    let traffic = config::traffic(&args.traffic)?;
    let subscribers = at_least_one(args.subscribers, "--subscribers")?;
    let plan = FlowPlan {
        subscribers: vec![vec!["bench/out".to_string()]; subscribers],
        publishers: vec![PublisherSpec {
            topics: Box::new(FixedTopic::new("bench/out".to_string(), subscribers as u64)),
            quota: quotas(traffic.count, 1)[0],
            pacing: None,
        }],
        checks: Checks { order: order_check(&traffic, 1), latency: false },
    };
    let outcome = within(flow_budget(&traffic), flow::run(&brokers, traffic, plan)).await?;
    Report::new(
        &FanoutReport {
            scenario: "fanout",
            version: brokers.version.level(),
            qos: traffic.qos as u8,
            size: traffic.payload_size,
            subscribers,
            sent: outcome.sent,
            expected: outcome.expected.min,
            deliveries: Deliveries::of(&outcome),
            lost: outcome.lost(),
            unacked: outcome.unacked,
            seconds: round(outcome.seconds, 3),
            deliveries_per_sec: round(outcome.deliveries_per_sec(), 1),
            msgs_per_sec: round(outcome.deliveries_per_sec(), 1),
            broker_cpu: BrokerCpu::of(&outcome),
            endpoints: Endpoints::of(&brokers, subscribers, 1),
        },
        None,
    )
}
