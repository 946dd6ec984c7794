//! `pairs`: N independent publisher/subscriber pairs, pair i on
//! `bench/pair/{i}`. Measures total delivered messages per second and loss;
//! nothing is shared between pairs but the broker.

use serde::Serialize;

use crate::args::PairsArgs;
use crate::config::{self, at_least_one};
use crate::flow::{self, FlowPlan, PublisherSpec};
use crate::publisher::FixedTopic;
use crate::subscriber::Checks;

use super::{flow_budget, order_check, quotas, round, within, BrokerCpu, Deliveries, Endpoints, Report};

#[derive(Debug, Serialize)]
struct PairsReport {
    scenario: &'static str,
    version: u8,
    qos: u8,
    size: usize,
    pairs: usize,
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

pub async fn run(args: PairsArgs) -> anyhow::Result<Report> {
    let brokers = config::brokers(&args.connection, &args.spread)?;
    let traffic = config::traffic(&args.traffic)?;
    let pairs = at_least_one(args.pairs, "--pairs")?;
    let plan = FlowPlan {
        subscribers: (0..pairs).map(|index| vec![format!("bench/pair/{index}")]).collect(),
        publishers: quotas(traffic.count, pairs)
            .into_iter()
            .enumerate()
            .map(|(index, quota)| PublisherSpec {
                topics: Box::new(FixedTopic::new(format!("bench/pair/{index}"), 1)),
                quota,
                pacing: None,
            })
            .collect(),
        checks: Checks { order: order_check(&traffic, pairs), latency: false },
    };
    let outcome = within(flow_budget(&traffic), flow::run(&brokers, traffic, plan)).await?;
    Report::new(
        &PairsReport {
            scenario: "pairs",
            version: brokers.version.level(),
            qos: traffic.qos as u8,
            size: traffic.payload_size,
            pairs,
            sent: outcome.sent,
            deliveries: Deliveries::of(&outcome),
            lost: outcome.lost(),
            unacked: outcome.unacked,
            seconds: round(outcome.seconds, 3),
            msgs_per_sec: round(outcome.deliveries_per_sec(), 1),
            broker_cpu: BrokerCpu::of(&outcome),
            endpoints: Endpoints::of(&brokers, pairs, pairs),
        },
        None,
    )
}
