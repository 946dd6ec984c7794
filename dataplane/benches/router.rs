//! Criterion micro-benchmarks of the topic index (`Router`): `route` against
//! 10k, 100k and 1M distinct subscriptions, and the rate of `subscribe`.
//!
//! The filters model a fleet: device `i` belongs to site `i / 1000`, and of
//! every site's 1000 filters 85% are exact (`fleet/s{site}/d{i}/state`), 10%
//! end in `+` (`fleet/s{site}/d{k}/+`), 4% have `+` in place of the site
//! (`fleet/+/d{k}/state`), 0.9% end in `#` (`fleet/s{site}/d{k}/#`) and one is
//! the site's `fleet/s{site}/#`. Filters are dealt to sessions round-robin,
//! [`FILTERS_PER_SESSION`] each, as a dashboard or a gateway holds several.
//!
//! Each size is built once, outside the measured loop, and three topics are
//! routed through it: one that five filters match (one of each shape, each
//! of another session), one that only the site's `#` matches, and one that
//! nothing matches. Almost all filters match none of them.

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use dataplane::config::ShareStrategy;
use dataplane::mailbox::Mailbox;
use dataplane::message::Message;
use dataplane::router::{Route, Router, Subscriber};
use dataplane::topic::parse_filter;
use mqtt_codec::{PublishProperties, QoS, SubscriptionOptions};

/// Index sizes for `route`.
const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

/// Filters inserted per measured `subscribe` run.
const SUBSCRIBE_COUNT: usize = 100_000;

/// Filters per session.
const FILTERS_PER_SESSION: usize = 10;

/// Filters (and devices) per site.
const SITE_SIZE: usize = 1000;

/// Filter `i` of the fleet model described at the top of the file.
fn filter(i: usize) -> String {
    let site = i / SITE_SIZE;
    let first_device = site * SITE_SIZE;
    match i % SITE_SIZE {
        j @ 0..=849 => format!("fleet/s{site}/d{}/state", first_device + j),
        j @ 850..=949 => format!("fleet/s{site}/d{}/+", first_device + j - 850),
        j @ 950..=989 => format!("fleet/+/d{}/state", first_device + j - 950),
        j @ 990..=998 => format!("fleet/s{site}/d{}/#", first_device + j - 990),
        _ => format!("fleet/s{site}/#"),
    }
}

/// The subscribers for `count` filters.
fn subscribers(count: usize) -> Vec<Subscriber> {
    (0..count.div_ceil(FILTERS_PER_SESSION))
        .map(|session| Subscriber {
            session: session as u64,
            client_id: Arc::from(format!("dashboard-{session}")),
            mailbox: Arc::new(Mailbox::new()),
        })
        .collect()
}

fn options() -> SubscriptionOptions {
    SubscriptionOptions { qos: QoS::AtLeastOnce, ..SubscriptionOptions::default() }
}

/// Subscribes `filters` to `router`, filter `i` for session `i % sessions.len()`.
fn fill(router: &Router, filters: &[String], sessions: &[Subscriber]) {
    for (i, raw) in filters.iter().enumerate() {
        let parsed = parse_filter(raw).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
        let (existed, _) = router.subscribe(&parsed, sessions[i % sessions.len()].clone(), options(), None);
        assert!(!existed, "filter {raw} is not distinct");
    }
}

fn message(topic: &str) -> Arc<Message> {
    Arc::new(Message {
        id: dataplane::message::next_id(),
        topic: topic.into(),
        payload: Bytes::from_static(&[b'x'; 64]),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: PublishProperties::default(),
        publisher: Some(Arc::from("fleet-publisher")),
        expires_at: None,
    })
}

/// The topics routed at each size, with the deliveries each must produce.
fn probes(size: usize) -> [(&'static str, String, usize); 3] {
    // A site in the middle of the index, and its fourth device: the device
    // has a filter of every shape.
    let site = size / SITE_SIZE / 2;
    let device = site * SITE_SIZE + 3;
    // A device that only exact filters name: on another metric only
    // `fleet/s{site}/#` matches it, and on a site that does not exist nothing.
    let plain_device = site * SITE_SIZE + 500;
    [
        ("match_5", format!("fleet/s{site}/d{device}/state"), 5),
        ("match_1", format!("fleet/s{site}/d{plain_device}/temperature"), 1),
        ("match_0", format!("fleet/s{}/d{plain_device}/state", size / SITE_SIZE + 1), 0),
    ]
}

fn bench_route(c: &mut Criterion) {
    let mut group = c.benchmark_group("route");
    for size in SIZES {
        let router = Router::new(ShareStrategy::RoundRobin);
        let filters: Vec<String> = (0..size).map(filter).collect();
        fill(&router, &filters, &subscribers(size));
        drop(filters);
        assert_eq!(router.count(), size);

        let mut out: Vec<Route> = Vec::new();
        for (name, topic, expected) in probes(size) {
            let message = message(&topic);
            out.clear();
            router.route(&message, false, &mut out);
            assert_eq!(out.len(), expected, "{topic} at {size} filters");
            group.bench_with_input(BenchmarkId::new(name, size), &message, |b, message| {
                b.iter(|| {
                    out.clear();
                    router.route(black_box(message), false, &mut out);
                })
            });
        }
    }
    group.finish();
}

fn bench_subscribe(c: &mut Criterion) {
    let mut group = c.benchmark_group("subscribe");
    // One iteration inserts 100k filters (tens of milliseconds): ten samples
    // of equal iteration counts keep the run short and still show the spread.
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(SUBSCRIBE_COUNT as u64));
    let filters: Vec<String> = (0..SUBSCRIBE_COUNT).map(filter).collect();
    let sessions = subscribers(SUBSCRIBE_COUNT);
    let parsed: Vec<_> =
        filters.iter().map(|raw| parse_filter(raw).unwrap_or_else(|e| panic!("{raw}: {e:?}"))).collect();
    group.bench_function(BenchmarkId::new("fresh_index", SUBSCRIBE_COUNT), |b| {
        b.iter_batched(
            || Router::new(ShareStrategy::RoundRobin),
            |router| {
                for (i, filter) in parsed.iter().enumerate() {
                    router.subscribe(filter, sessions[i % sessions.len()].clone(), options(), None);
                }
                // Returned, so that tearing the index down is not timed.
                router
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_route, bench_subscribe);
criterion_main!(benches);
