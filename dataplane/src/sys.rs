//! `$SYS` topics: the node's statistics, published every `sys.interval`
//! seconds as retained messages under `$SYS/brokers/{node}/`, with the
//! names EMQX uses.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqtt_codec::QoS;

use crate::broker::Broker;
use crate::message::Message;
use crate::metrics::Metrics;

/// Publishes `$SYS` topics until shutdown.
pub async fn run(broker: Arc<Broker>) {
    let interval = broker.config.sys.interval;
    if interval == 0 {
        return;
    }
    let mut shutdown = broker.shutdown_signal();
    let mut ticker = tokio::time::interval(Duration::from_secs(interval));
    loop {
        tokio::select! {
            _ = ticker.tick() => publish_all(&broker),
            _ = shutdown.changed() => return,
        }
    }
}

/// The current `$SYS` values, as (topic suffix, value).
pub fn values(broker: &Broker) -> Vec<(&'static str, String)> {
    let m = &broker.metrics;
    let mut values = vec![
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("uptime", broker.uptime().to_string()),
        ("clients/connected", Metrics::get(&m.connections).to_string()),
        ("clients/total", Metrics::get(&m.connections_total).to_string()),
        ("stats/connections/count", Metrics::get(&m.connections).to_string()),
        ("stats/connections/hibernating", broker.hibernating().to_string()),
        ("stats/sessions/count", broker.registry.len().to_string()),
        ("stats/subscriptions/count", broker.router.count().to_string()),
        ("stats/retained/count", broker.retained.count().to_string()),
        ("metrics/messages/received", Metrics::get(&m.messages_received).to_string()),
        ("metrics/messages/sent", Metrics::get(&m.messages_sent).to_string()),
        ("metrics/messages/dropped", Metrics::get(&m.messages_dropped).to_string()),
        ("metrics/bytes/received", Metrics::get(&m.bytes_received).to_string()),
        ("metrics/bytes/sent", Metrics::get(&m.bytes_sent).to_string()),
    ];
    if let Some(peers) = broker.peers() {
        let c = &peers.counters;
        values.extend([
            ("stats/routes/remote/count", broker.remote_routes.len().to_string()),
            ("metrics/messages/forward/sent", Metrics::get(&c.forwarded).to_string()),
            ("metrics/messages/forward/delivered", Metrics::get(&c.delivered).to_string()),
            ("metrics/messages/forward/dropped", Metrics::get(&c.dropped).to_string()),
            ("metrics/messages/forward/acks_released", Metrics::get(&c.acks_released).to_string()),
            ("metrics/messages/forward/received", Metrics::get(&c.received).to_string()),
            ("metrics/messages/forward/malformed", Metrics::get(&c.received_malformed).to_string()),
        ]);
    }
    values
}

fn publish_all(broker: &Broker) {
    broker.retained.purge_expired();
    for (suffix, value) in values(broker) {
        let message = Message {
            id: crate::message::next_id(),
            topic: format!("$SYS/brokers/{}/{}", broker.node_name, suffix),
            payload: Bytes::from(value),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Default::default(),
            publisher: None,
            expires_at: None,
        };
        broker.publish(Arc::new(message));
    }
}
