//! `wildcards`: many distinct subscriptions, then publishing through them.
//!
//! Filter `i` (of `--filters F`) has number `n = i / 3` and one of three
//! shapes, by `i % 3`:
//! - 0: `w/a{n}/+/b{n % 10}`
//! - 1: `w/a{n}/#`
//! - 2: `w/+/x{n}/b{n % 10}`
//!
//! and belongs to subscriber `i % S`. Publishers send to `w/a{a}/x{x}/b{b}`
//! with `a` and `x` drawn uniformly from twice the filter numbers in use and
//! `b` from 0..10, so about half the messages match one `#` filter, a
//! tenth of those also a `+` filter, and the rest match nothing: the broker
//! has to search a large trie for every message, and most searches come
//! back empty or nearly so.
//!
//! Because each topic's matches follow from the numbers, every publisher
//! counts the deliveries it should cause without a second trie: `min`
//! assumes one copy per subscriber connection, `max` one copy per matching
//! filter (MQTT lets a broker do either when a client's filters overlap).

use std::fmt::Write;
use std::sync::Arc;

use serde::Serialize;

use crate::args::WildcardsArgs;
use crate::config::{self, at_least_one};
use crate::flow::{self, FlowPlan, PublisherSpec};
use crate::publisher::{Expected, TopicSource};
use crate::subscriber::Checks;

use super::{flow_budget, quotas, round, within, BrokerCpu, Endpoints, Report};

#[derive(Debug, Serialize)]
struct WildcardsReport {
    scenario: &'static str,
    version: u8,
    qos: u8,
    size: usize,
    filters: usize,
    subscribers: usize,
    publishers: usize,
    subscribe_secs: f64,
    sent: u64,
    expected_min: u64,
    expected_max: u64,
    deliveries: u64,
    lost: u64,
    unacked: u64,
    seconds: f64,
    publishes_per_sec: f64,
    deliveries_per_sec: f64,
    /// `deliveries_per_sec` under the key every message scenario shares.
    msgs_per_sec: f64,
    #[serde(flatten)]
    broker_cpu: BrokerCpu,
    #[serde(flatten)]
    endpoints: Endpoints,
}

pub async fn run(args: WildcardsArgs) -> anyhow::Result<Report> {
    let brokers = config::broker(&args.connection)?;
    let traffic = config::traffic(&args.traffic)?;
    let set = Arc::new(FilterSet {
        filters: at_least_one(args.filters, "--filters")?,
        subscribers: at_least_one(args.subscribers, "--subscribers")?,
    });
    let publishers = at_least_one(args.publishers, "--publishers")?;
    let plan = FlowPlan {
        subscribers: set.filters_by_subscriber(),
        publishers: quotas(traffic.count, publishers)
            .into_iter()
            .enumerate()
            .map(|(index, quota)| PublisherSpec {
                topics: Box::new(WildcardTopics::new(set.clone(), index as u64)),
                quota,
                pacing: None,
            })
            .collect(),
        // Messages of one publisher go to many topics, so order is not kept.
        checks: Checks { order: None, latency: false },
    };
    let outcome = within(flow_budget(&traffic), flow::run(&brokers, traffic, plan)).await?;
    let per_second =
        |count: u64| round(if outcome.seconds > 0.0 { count as f64 / outcome.seconds } else { 0.0 }, 1);
    Report::new(
        &WildcardsReport {
            scenario: "wildcards",
            version: brokers.version.level(),
            qos: traffic.qos as u8,
            size: traffic.payload_size,
            filters: set.filters,
            subscribers: set.subscribers,
            publishers,
            subscribe_secs: round(outcome.subscribe_secs, 3),
            sent: outcome.sent,
            expected_min: outcome.expected.min,
            expected_max: outcome.expected.max,
            deliveries: outcome.received,
            lost: outcome.lost(),
            unacked: outcome.unacked,
            seconds: round(outcome.seconds, 3),
            publishes_per_sec: per_second(outcome.sent),
            deliveries_per_sec: per_second(outcome.received),
            msgs_per_sec: per_second(outcome.received),
            broker_cpu: BrokerCpu::of(&outcome),
            endpoints: Endpoints::of(&brokers, set.subscribers, publishers),
        },
        None,
    )
}

/// The generated filters, and which of them a topic matches.
#[derive(Debug)]
struct FilterSet {
    filters: usize,
    subscribers: usize,
}

impl FilterSet {
    fn filter(&self, index: usize) -> String {
        let number = index / 3;
        match index % 3 {
            0 => format!("w/a{number}/+/b{}", number % 10),
            1 => format!("w/a{number}/#"),
            _ => format!("w/+/x{number}/b{}", number % 10),
        }
    }

    fn filters_by_subscriber(&self) -> Vec<Vec<String>> {
        let mut by_subscriber = vec![Vec::new(); self.subscribers];
        for index in 0..self.filters {
            by_subscriber[index % self.subscribers].push(self.filter(index));
        }
        by_subscriber
    }

    /// How many filter numbers are in use (numbers 0..this).
    fn numbers(&self) -> u64 {
        self.filters.div_ceil(3) as u64
    }

    /// Deliveries of a message on `w/a{a}/x{x}/b{b}`.
    fn expected(&self, a: u64, x: u64, b: u64) -> Expected {
        let candidates = [
            (3 * a, b == a % 10),     // w/a{a}/+/b{b}
            (3 * a + 1, true),        // w/a{a}/#
            (3 * x + 2, b == x % 10), // w/+/x{x}/b{b}
        ];
        let mut matched: Vec<usize> = candidates
            .iter()
            .filter(|(index, fits)| *fits && *index < self.filters as u64)
            .map(|(index, _)| *index as usize % self.subscribers)
            .collect();
        let max = matched.len() as u64;
        matched.sort_unstable();
        matched.dedup();
        Expected { min: matched.len() as u64, max }
    }
}

/// Topics for one publisher, from its own deterministic random sequence.
struct WildcardTopics {
    set: Arc<FilterSet>,
    random: SplitMix64,
}

impl WildcardTopics {
    fn new(set: Arc<FilterSet>, seed: u64) -> WildcardTopics {
        WildcardTopics { set, random: SplitMix64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED) }
    }
}

impl TopicSource for WildcardTopics {
    fn next_topic(&mut self, publish: &mut mqtt_codec::Publish) -> Expected {
        let span = 2 * self.set.numbers();
        let a = self.random.next() % span;
        let x = self.random.next() % span;
        let b = self.random.next() % 10;
        publish.topic.clear();
        // Writing to a String cannot fail.
        let _ = write!(publish.topic, "w/a{a}/x{x}/b{b}");
        self.set.expected(a, x, b)
    }
}

/// A small, fast, good-enough generator (Steele, Lea and Flood's SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MQTT topic matching, straight from the spec, to check `expected`.
    fn matches(filter: &str, topic: &str) -> bool {
        let mut levels = topic.split('/');
        for part in filter.split('/') {
            match (part, levels.next()) {
                ("#", _) => return true,
                ("+", Some(_)) => {}
                (part, Some(level)) if part == level => {}
                _ => return false,
            }
        }
        levels.next().is_none()
    }

    #[test]
    fn expected_agrees_with_matching_every_filter() {
        let set = FilterSet { filters: 61, subscribers: 4 };
        let filters: Vec<(usize, String)> =
            (0..set.filters).map(|index| (index % 4, set.filter(index))).collect();
        let mut topics = WildcardTopics::new(Arc::new(FilterSet { filters: 61, subscribers: 4 }), 7);
        let mut matched_some = 0;
        for _ in 0..2000 {
            let mut publish = mqtt_codec::Publish::default();
            let expected = topics.next_topic(&mut publish);
            let hits: Vec<usize> = filters
                .iter()
                .filter(|(_, filter)| matches(filter, &publish.topic))
                .map(|(subscriber, _)| *subscriber)
                .collect();
            let mut clients = hits.clone();
            clients.sort_unstable();
            clients.dedup();
            assert_eq!(
                expected,
                Expected { min: clients.len() as u64, max: hits.len() as u64 },
                "{}",
                publish.topic
            );
            matched_some += u64::from(!hits.is_empty());
        }
        assert!((600..1400).contains(&matched_some), "about half should match: {matched_some}");
    }

    #[test]
    fn filters_are_distinct_and_spread_round_robin() {
        let set = FilterSet { filters: 10, subscribers: 3 };
        let by_subscriber = set.filters_by_subscriber();
        assert_eq!(by_subscriber.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 3, 3]);
        let mut all: Vec<String> = by_subscriber.concat();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 10);
        assert_eq!(set.filter(4), "w/a1/#");
    }
}
