//! `fanin`: P publishers, each on `bench/in/{i}`, one subscriber on
//! `bench/in/#` at the same QoS. Measures delivered messages per second
//! and loss at the single subscriber.

use serde::Serialize;

use crate::args::FaninArgs;
use crate::config::{self, at_least_one};
use crate::flow::{self, FlowPlan, PublisherSpec};
use crate::publisher::FixedTopic;
use crate::subscriber::Checks;

use super::{flow_budget, order_check, quotas, round, within, BrokerCpu, Deliveries, Endpoints, Report};

#[derive(Debug, Serialize)]
struct FaninReport {
    scenario: &'static str,
    version: u8,
    qos: u8,
    size: usize,
    publishers: usize,
    sent: u64,
    #[serde(flatten)]
    deliveries: Deliveries,
    lost: u64,
    unacked: u64,
    seconds: f64,
    msgs_per_sec: f64,
    #[serde(flatten)]
    broker_cpu: BrokerCpu,
    #[serde(flatten)]
    endpoints: Endpoints,
}

pub async fn run(args: FaninArgs) -> anyhow::Result<Report> {
    let brokers = config::brokers(&args.connection, &args.spread)?;
    let traffic = config::traffic(&args.traffic)?;
    let publishers = at_least_one(args.publishers, "--publishers")?;
    let plan = FlowPlan {
        subscribers: vec![vec!["bench/in/#".to_string()]],
        publishers: quotas(traffic.count, publishers)
            .into_iter()
            .enumerate()
            .map(|(index, quota)| PublisherSpec {
                topics: Box::new(FixedTopic::new(format!("bench/in/{index}"), 1)),
                quota,
                pacing: None,
            })
            .collect(),
        checks: Checks { order: order_check(&traffic, publishers), latency: false },
    };
    let outcome = within(flow_budget(&traffic), flow::run(&brokers, traffic, plan)).await?;
    Report::new(
        &FaninReport {
            scenario: "fanin",
            version: brokers.version.level(),
            qos: traffic.qos as u8,
            size: traffic.payload_size,
            publishers,
            sent: outcome.sent,
            deliveries: Deliveries::of(&outcome),
            lost: outcome.lost(),
            unacked: outcome.unacked,
            seconds: round(outcome.seconds, 3),
            msgs_per_sec: round(outcome.deliveries_per_sec(), 1),
            broker_cpu: BrokerCpu::of(&outcome),
            endpoints: Endpoints::of(&brokers, 1, publishers),
        },
        None,
    )
}
