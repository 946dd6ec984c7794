"""Shared subscriptions (`$share/group/filter` and `$queue/filter`), for
MQTT 3.1.1 and 5.0 clients.

Covers: each message goes to exactly one member of a group; every group
(and every plain subscriber) gets its own copy; `$queue/`; wildcards in the
shared filter; round robin spreads evenly; the other strategies (random,
sticky, hash_clientid, hash_topic) keep exactly-once and their own
affinity; a member that leaves stops getting messages; a message in
flight to a member that goes away is given to another member; "$share/g/#"
does not match $SYS; CONNACK announces shared subscriptions (and
mqtt.shared_subscription_available=false); No Local on a shared
subscription is a protocol error.
"""

import collections
import time

import pytest

from helpers import DISCONNECT, SUBACK, V5, RawClient, pkt_subscribe


def group(broker, connect, version, filter_, n, qos=1):
    members = [connect(broker, version) for _ in range(n)]
    for m in members:
        assert m.subscribe(filter_, qos=qos) == [qos]
    return members


def collect(members, total, timeout=3.0, settle=0.15):
    """All messages the members got, waiting until `total` arrived (or the
    timeout), then `settle` seconds longer to catch duplicates."""
    got = {id(m): [] for m in members}
    deadline = time.monotonic() + timeout
    while sum(len(v) for v in got.values()) < total and time.monotonic() < deadline:
        for m in members:
            got[id(m)] += m.drain(0.01)
    time.sleep(settle)
    for m in members:
        got[id(m)] += m.drain(0.001)
    return [got[id(m)] for m in members]


def test_each_message_to_exactly_one_member(broker, connect, version, topic):
    members = group(broker, connect, version, f"$share/g/{topic}", 3)
    pub = connect(broker, version)
    for i in range(30):
        pub.publish(topic, str(i).encode(), qos=1)
    per_member = collect(members, 30)
    payloads = [int(m.payload) for msgs in per_member for m in msgs]
    assert sorted(payloads) == list(range(30)), "lost or duplicated messages"
    assert all(m.topic == topic for msgs in per_member for m in msgs)


def test_two_groups_each_get_a_copy(broker, connect, version, topic):
    g1 = group(broker, connect, version, f"$share/g1/{topic}", 2)
    g2 = group(broker, connect, version, f"$share/g2/{topic}", 2)
    plain = connect(broker, version)
    plain.subscribe(topic, qos=1)
    pub = connect(broker, version)
    for i in range(10):
        pub.publish(topic, str(i).encode(), qos=1)
    for g in (g1, g2):
        payloads = [int(m.payload) for msgs in collect(g, 10) for m in msgs]
        assert sorted(payloads) == list(range(10))
    assert [int(m.payload) for m in plain.expect_n(10)] == list(range(10))


def test_queue_prefix(broker, connect, version, topic):
    members = group(broker, connect, version, f"$queue/{topic}", 2)
    pub = connect(broker, version)
    for i in range(10):
        pub.publish(topic, str(i).encode(), qos=1)
    payloads = [int(m.payload) for msgs in collect(members, 10) for m in msgs]
    assert sorted(payloads) == list(range(10))


def test_shared_filter_with_wildcards(broker, connect, version, topic):
    members = group(broker, connect, version, f"$share/w/{topic}/+/x/#", 2)
    pub = connect(broker, version)
    for t in ["a/x", "b/x/1", "a/y", "x"]:
        pub.publish(f"{topic}/{t}", t.encode(), qos=1)
    got = sorted(m.topic for msgs in collect(members, 2) for m in msgs)
    assert got == [f"{topic}/a/x", f"{topic}/b/x/1"]


def test_shared_delivery_qos_capped_by_member(broker, connect, version, topic):
    members = group(broker, connect, version, f"$share/q/{topic}", 2, qos=0)
    connect(broker, version).publish(topic, b"x", qos=2)
    msgs = [m for msgs in collect(members, 1) for m in msgs]
    assert [(m.payload, m.qos) for m in msgs] == [(b"x", 0)]


def test_round_robin_spreads_evenly(broker, connect, version, topic):
    """shared_subscription.strategy = round_robin (the default)."""
    members = group(broker, connect, version, f"$share/rr/{topic}", 3)
    pub = connect(broker, version)
    for i in range(30):
        pub.publish(topic, str(i).encode(), qos=1)
    counts = [len(msgs) for msgs in collect(members, 30)]
    assert counts == [10, 10, 10]


def test_member_leaving_gets_nothing_more(broker, connect, version, topic):
    a, b = group(broker, connect, version, f"$share/l/{topic}", 2)
    a.unsubscribe(f"$share/l/{topic}")
    pub = connect(broker, version)
    for i in range(6):
        pub.publish(topic, str(i).encode(), qos=1)
    got_a, got_b = collect([a, b], 6)
    assert got_a == []
    assert sorted(int(m.payload) for m in got_b) == list(range(6))


def test_disconnected_member_is_skipped(broker, connect, version, topic):
    """A member whose (non-persistent) session ended is no longer a member."""
    a, b = group(broker, connect, version, f"$share/d/{topic}", 2)
    a.disconnect()
    pub = connect(broker, version)
    for i in range(6):
        pub.publish(topic, str(i).encode(), qos=1)
    assert sorted(int(m.payload) for m in b.expect_n(6)) == list(range(6))


def test_same_client_in_group_and_plain(broker, connect, version, topic):
    """A plain and a shared subscription are independent: the client gets the
    plain copy, and the group (of which it is the only member) its own."""
    c = connect(broker, version)
    c.subscribe([(topic, 1), (f"$share/self/{topic}", 1)])
    connect(broker, version).publish(topic, b"two-copies", qos=1)
    assert [m.payload for m in c.collect(2)] == [b"two-copies", b"two-copies"]


@pytest.mark.parametrize("strategy", ["random", "round_robin", "sticky", "hash_clientid", "hash_topic"])
def test_strategy_exactly_once(broker_factory, connect, topic, strategy):
    b = broker_factory(f"shared_subscription.strategy={strategy}")
    members = group(b, connect, V5, f"$share/s/{topic}/#", 3)
    pubs = [connect(b, V5) for _ in range(2)]
    n = 0
    for i in range(12):
        pubs[i % 2].publish(f"{topic}/{i % 3}", str(i).encode(), qos=1)
        n += 1
    payloads = [int(m.payload) for msgs in collect(members, n) for m in msgs]
    assert sorted(payloads) == list(range(n))


def test_sticky_keeps_one_member(broker_factory, connect, topic):
    b = broker_factory("shared_subscription.strategy=sticky")
    members = group(b, connect, V5, f"$share/s/{topic}", 3)
    pub = connect(b, V5)
    for i in range(10):
        pub.publish(topic, str(i).encode(), qos=1)
    counts = sorted(len(msgs) for msgs in collect(members, 10))
    assert counts == [0, 0, 10]


def test_hash_topic_same_topic_same_member(broker_factory, connect, topic):
    b = broker_factory("shared_subscription.strategy=hash_topic")
    members = group(b, connect, V5, f"$share/h/{topic}/#", 3)
    pubs = [connect(b, V5) for _ in range(3)]
    for i in range(18):
        pubs[i % 3].publish(f"{topic}/{i % 4}", str(i).encode(), qos=1)
    owners = collections.defaultdict(set)
    for idx, msgs in enumerate(collect(members, 18)):
        for m in msgs:
            owners[m.topic].add(idx)
    assert len(owners) == 4
    assert all(len(v) == 1 for v in owners.values()), dict(owners)


def test_hash_clientid_same_publisher_same_member(broker_factory, connect, topic):
    b = broker_factory("shared_subscription.strategy=hash_clientid")
    members = group(b, connect, V5, f"$share/h/{topic}/#", 3)
    pubs = [connect(b, V5) for _ in range(4)]
    for i in range(20):
        p = pubs[i % 4]
        p.publish(f"{topic}/{i}", p.client_id.encode(), qos=1)
    owners = collections.defaultdict(set)
    for idx, msgs in enumerate(collect(members, 20)):
        for m in msgs:
            owners[m.payload].add(idx)
    assert len(owners) == 4
    assert all(len(v) == 1 for v in owners.values()), dict(owners)


def test_v5_connack_announces_shared_subscriptions(broker, connect):
    c = connect(broker, V5)
    # Absent means available (5.0 section 3.2.2.3.14); 0 would be wrong here.
    assert getattr(c.connack_properties, "SharedSubscriptionAvailable", 1) == 1


def test_v5_shared_subscriptions_disabled(broker_factory, connect, topic):
    """mqtt.shared_subscription_available=false: CONNACK says 0 and a shared
    SUBSCRIBE fails with 0x9E (Shared Subscriptions not supported)."""
    b = broker_factory("mqtt.shared_subscription_available=false")
    c = connect(b, V5)
    assert getattr(c.connack_properties, "SharedSubscriptionAvailable", None) == 0
    raw = RawClient(b.port)
    try:
        raw.connect(version=5)
        raw.send(pkt_subscribe(1, [(f"$share/g/{topic}", 1)]))
        p = raw.read()
        # 5.0 section 3.2.2.3.14: either a SUBACK or a DISCONNECT with 0x9E.
        assert p is not None and p.type in (SUBACK, DISCONNECT), p
        code = p.body[-1] if p.type == SUBACK else p.reason
        assert code == 0x9E
    finally:
        raw.close()


def test_v5_no_local_on_shared_subscription_is_protocol_error(broker, topic):
    """[MQTT-3.8.3-4]: No Local = 1 on a shared subscription is a Protocol
    Error: the server closes the connection (DISCONNECT 0x82 optional)."""
    raw = RawClient(broker.port)
    try:
        raw.connect(version=5)
        raw.send(pkt_subscribe(1, [(f"$share/g/{topic}", 0x04 | 1)]))
        packets, closed = raw.read_until_closed(3)
        assert closed, f"connection kept open; got {packets}"
        assert all(p.type == DISCONNECT for p in packets), packets
        assert all(p.reason == 0x82 for p in packets), [hex(p.reason) for p in packets]
    finally:
        raw.close()


def test_unacked_message_of_leaving_member_goes_to_another(broker, connect, version, topic):
    """Design ("a member that disconnects does not lose the messages in
    flight to it") and 5.0 section 4.8.2: a QoS 1 message a member never
    acknowledged is sent to another member when that member's session ends."""
    a = connect(broker, version, manual_ack=True)
    a.subscribe(f"$share/f/{topic}", qos=1)
    pub = connect(broker, version)
    pub.publish(topic, b"in-flight", qos=1)
    assert a.expect().payload == b"in-flight"  # a is the only member: it gets it
    b = connect(broker, version)
    b.subscribe(f"$share/f/{topic}", qos=1)
    a.kill()  # never acknowledged; clean session ends with the connection
    m = b.expect(3)
    assert m.payload == b"in-flight"


def test_shared_hash_wildcard_does_not_match_sys(broker, connect):
    """[MQTT-4.7.2-1] applies inside shared subscriptions too: "$share/g/#"
    does not receive $SYS topics."""
    member = connect(broker, V5)
    member.subscribe("$share/sysgrp/#", qos=0)
    watcher = connect(broker, V5)
    watcher.subscribe("$SYS/#", qos=0)
    deadline = time.monotonic() + 2.5
    live = False
    while not live and time.monotonic() < deadline:
        live = any(not m.retain for m in watcher.drain(0.05))
    assert live, "positive control: no live $SYS publication seen"
    assert [m.topic for m in member.drain(0.1) if m.topic.startswith("$")] == []
