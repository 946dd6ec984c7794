"""Publish/subscribe basics, for MQTT 3.1.1 and 5.0.

Covers: QoS 0/1/2 round trips, granted QoS, QoS downgrade to the
subscription's QoS, `+` and `#` wildcards (including the parent level and
empty levels), `$`-topics kept out of wildcards at the first level, overlapping
subscriptions (maximum QoS; one copy for 3.1.1), re-subscribe, unsubscribe
(exact filter only), many filters in one SUBSCRIBE, ordering, empty, large
and UTF-8 payloads/topics, Remaining Length encoding boundaries, and the
WebSocket listener (round trip, large payload, a wrong path answered with
HTTP 404 while the right one gets 101).
"""

import time

import pytest

from helpers import SYS_PREFIX, V5, V311, ws_upgrade_status


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_round_trip(broker, connect, version, topic, qos):
    sub = connect(broker, version)
    assert sub.subscribe(f"{topic}/x", qos=2) == [2]
    pub = connect(broker, version)
    pub.publish(f"{topic}/x", b"hello", qos=qos)
    m = sub.expect()
    assert (m.topic, m.payload, m.qos, m.retain) == (f"{topic}/x", b"hello", qos, False)
    sub.expect_silence(0.3)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_granted_qos_equals_requested(broker, connect, version, topic, qos):
    sub = connect(broker, version)
    assert sub.subscribe(topic, qos=qos) == [qos]


@pytest.mark.parametrize("pub_qos,sub_qos", [(1, 0), (2, 0), (2, 1)])
def test_qos_downgraded_to_subscription_qos(broker, connect, version, topic, pub_qos, sub_qos):
    sub = connect(broker, version)
    sub.subscribe(topic, qos=sub_qos)
    pub = connect(broker, version)
    pub.publish(topic, b"d", qos=pub_qos)
    m = sub.expect()
    assert m.qos == sub_qos


def test_qos_not_upgraded(broker, connect, version, topic):
    sub = connect(broker, version)
    sub.subscribe(topic, qos=2)
    pub = connect(broker, version)
    pub.publish(topic, b"q1", qos=1)
    assert sub.expect().qos == 1


def test_publisher_receives_own_message(broker, connect, version, topic):
    c = connect(broker, version)
    c.subscribe(topic, qos=1)
    c.publish(topic, b"self", qos=1)
    assert c.expect().payload == b"self"


def test_single_level_wildcard(broker, connect, version, topic):
    sub = connect(broker, version)
    sub.subscribe(f"{topic}/+/c", qos=1)
    pub = connect(broker, version)
    for t in ["a/c", "b/c", "a/d", "a/b/c", "c", "/c"]:
        pub.publish(f"{topic}/{t}", t.encode(), qos=1)
    got = sorted(m.topic for m in sub.collect(3))
    # "{topic}//c" has an empty level between the slashes, which "+" matches.
    assert got == sorted([f"{topic}/a/c", f"{topic}/b/c", f"{topic}//c"])


def test_multi_level_wildcard_matches_parent_and_children(broker, connect, version, topic):
    sub = connect(broker, version)
    sub.subscribe(f"{topic}/a/#", qos=1)
    pub = connect(broker, version)
    for t in ["a", "a/b", "a/b/c", "a/", "b", "ab", "b/a"]:
        pub.publish(f"{topic}/{t}", t.encode(), qos=1)
    got = sorted(m.topic for m in sub.collect(4))
    # [MQTT-4.7.1-2]: "sport/#" also matches "sport".
    assert got == sorted(f"{topic}/{t}" for t in ["a", "a/b", "a/b/c", "a/"])


def test_plus_and_hash_combined(broker, connect, version, topic):
    sub = connect(broker, version)
    sub.subscribe(f"{topic}/+/x/#", qos=0)
    pub = connect(broker, version)
    for t in ["a/x", "a/x/1/2", "a/y/1", "x"]:
        pub.publish(f"{topic}/{t}", b"", qos=1)
    assert sorted(m.topic for m in sub.collect(2)) == [f"{topic}/a/x", f"{topic}/a/x/1/2"]


def test_dollar_topics_not_matched_by_root_wildcards(broker, connect, version):
    """[MQTT-4.7.2-1]: filters starting with a wildcard do not match topic
    names starting with '$'. The broker publishes $SYS every second here,
    retained, so both the retained copies and a live round are checked."""
    wild = connect(broker, version)
    wild.subscribe([("#", 0), ("+/brokers/#", 0), ("+/+/+/version", 0)])
    sys_sub = connect(broker, version)
    sys_sub.subscribe(f"{SYS_PREFIX}/#", qos=0)
    deadline = time.monotonic() + 2.5
    live = False
    while not live and time.monotonic() < deadline:  # wait for a live (non-retained) $SYS round
        live = any(not m.retain for m in sys_sub.drain(0.05))
    assert live, "positive control: no live $SYS publication seen"
    leaked = [m.topic for m in wild.drain(0.1) if m.topic.startswith("$")]
    assert leaked == []


def test_overlapping_subscriptions_deliver_max_qos(broker, connect, version, topic):
    """[MQTT-3.3.5-1] (3.1.1) / [MQTT-3.3.4-2] (5.0): the message is delivered
    respecting the maximum QoS of all matching subscriptions."""
    sub = connect(broker, version)
    sub.subscribe([(f"{topic}/#", 1), (f"{topic}/a", 2), (f"{topic}/+", 0)])
    pub = connect(broker, version)
    pub.publish(f"{topic}/a", b"ov", qos=2)
    msgs = sub.collect(1)
    assert msgs, "no copy delivered"
    assert max(m.qos for m in msgs) == 2


def test_overlapping_subscriptions_single_copy_v311(broker, connect, topic):
    """The broker's contract for 3.1.1: one copy per client, at the maximum
    QoS of the matching subscriptions (3.1.1 section 3.3.5 allows this)."""
    sub = connect(broker, V311)
    sub.subscribe([(f"{topic}/#", 1), (f"{topic}/a", 2), (f"{topic}/+", 0)])
    pub = connect(broker, V311)
    pub.publish(f"{topic}/a", b"ov", qos=2)
    msgs = sub.collect(1)
    assert [(m.payload, m.qos) for m in msgs] == [(b"ov", 2)]


def test_resubscribe_replaces_qos(broker, connect, version, topic):
    """[MQTT-3.8.4-3]: a SUBSCRIBE with an existing filter replaces the
    subscription (no duplicate delivery, new QoS applies)."""
    sub = connect(broker, version)
    sub.subscribe(topic, qos=2)
    assert sub.subscribe(topic, qos=0) == [0]
    pub = connect(broker, version)
    pub.publish(topic, b"r", qos=2)
    msgs = sub.collect(1)
    assert [(m.payload, m.qos) for m in msgs] == [(b"r", 0)]


def test_unsubscribe_stops_delivery(broker, connect, version, topic):
    sub = connect(broker, version)
    sub.subscribe([(f"{topic}/a", 1), (f"{topic}/b", 1)])
    codes = sub.unsubscribe(f"{topic}/a")
    if version == V5:
        assert codes == [0]
    pub = connect(broker, version)
    pub.publish(f"{topic}/a", b"gone", qos=1)
    pub.publish(f"{topic}/b", b"kept", qos=1)
    assert [m.payload for m in sub.collect(1)] == [b"kept"]


def test_order_preserved_qos1(broker, connect, version, topic):
    """Section 4.6: messages on one topic at one QoS arrive in publish order."""
    sub = connect(broker, version)
    sub.subscribe(topic, qos=1)
    pub = connect(broker, version)
    for i in range(50):
        pub.publish(topic, str(i).encode(), qos=1, wait=False)
    msgs = sub.expect_n(50, timeout=5)
    assert [int(m.payload) for m in msgs] == list(range(50))


def test_order_preserved_qos2(broker, connect, version, topic):
    sub = connect(broker, version)
    sub.subscribe(topic, qos=2)
    pub = connect(broker, version)
    for i in range(30):
        pub.publish(topic, str(i).encode(), qos=2, wait=False)
    msgs = sub.expect_n(30, timeout=5)
    assert [int(m.payload) for m in msgs] == list(range(30))


def test_fan_out_to_many_subscribers(broker, connect, version, topic):
    subs = [connect(broker, version) for _ in range(5)]
    for s in subs:
        s.subscribe(topic, qos=1)
    pub = connect(broker, version)
    pub.publish(topic, b"all", qos=1)
    for s in subs:
        assert s.expect().payload == b"all"


def test_large_payload(broker, connect, version, topic):
    payload = bytes(range(256)) * 1024  # 256 KiB, below the 1 MiB default limit
    sub = connect(broker, version)
    sub.subscribe(topic, qos=1)
    pub = connect(broker, version)
    pub.publish(topic, payload, qos=1)
    assert sub.expect(3).payload == payload


def test_empty_payload(broker, connect, version, topic):
    sub = connect(broker, version)
    sub.subscribe(topic, qos=1)
    pub = connect(broker, version)
    pub.publish(topic, b"", qos=1)
    m = sub.expect()
    assert m.payload == b""


def test_utf8_topic(broker, connect, version, topic):
    t = f"{topic}/température/日本"
    sub = connect(broker, version)
    sub.subscribe(f"{topic}/+/日本", qos=1)
    pub = connect(broker, version)
    pub.publish(t, b"u", qos=1)
    assert sub.expect().topic == t


def test_websocket_round_trip(broker, connect, version, topic):
    ws = connect(broker.ws_port, version, transport="websockets")
    ws.subscribe(topic, qos=1)
    tcp = connect(broker, version)
    tcp.publish(topic, b"over-ws", qos=1)
    m = ws.expect()
    assert (m.payload, m.qos) == (b"over-ws", 1)
    ws.publish(f"{topic}/back", b"from-ws", qos=2)
    tcp.subscribe(f"{topic}/back2", qos=2)
    ws.publish(f"{topic}/back2", b"from-ws", qos=2)
    assert tcp.expect().payload == b"from-ws"


def test_leading_and_trailing_slash_are_levels(broker, connect, version, topic):
    """Section 4.7.1.1: "/a" has an empty first level; "a/" an empty last."""
    sub = connect(broker, version)
    sub.subscribe([(f"{topic}/+/a", 1), (f"{topic}/b/+", 1)])
    pub = connect(broker, version)
    for t in [f"{topic}//a", f"{topic}/a", f"{topic}/b/", f"{topic}/b"]:
        pub.publish(t, b"", qos=1)
    assert sorted(m.topic for m in sub.collect(2)) == sorted([f"{topic}//a", f"{topic}/b/"])


def test_unsubscribe_removes_only_the_exact_filter(broker, connect, version, topic):
    """Section 3.10.4: filters are compared character by character; removing
    "x/#" leaves "x/a" in place."""
    sub = connect(broker, version)
    sub.subscribe([(f"{topic}/#", 1), (f"{topic}/a", 1)])
    sub.unsubscribe(f"{topic}/#")
    pub = connect(broker, version)
    pub.publish(f"{topic}/a", b"exact", qos=1)
    pub.publish(f"{topic}/b", b"wild", qos=1)
    assert [m.payload for m in sub.collect(1)] == [b"exact"]


def test_many_filters_in_one_subscribe(broker, connect, version, topic):
    sub = connect(broker, version)
    filters = [(f"{topic}/{i}", i % 3) for i in range(100)]
    assert sub.subscribe(filters) == [q for _, q in filters]
    pub = connect(broker, version)
    pub.publish(f"{topic}/99", b"last", qos=1)
    assert sub.expect().payload == b"last"


@pytest.mark.parametrize("remaining", [127, 128, 16383, 16384])
def test_remaining_length_boundaries(broker, connect, version, topic, remaining):
    """Packets whose Remaining Length sits on a variable byte integer
    boundary (1/2 and 2/3 bytes) pass both ways unchanged."""
    t = f"{topic}/rl"
    overhead = 2 + len(t) + 2 + (1 if version == V5 else 0)  # topic, packet id, properties length
    payload = bytes((i * 7) % 256 for i in range(remaining - overhead))
    sub = connect(broker, version)
    sub.subscribe(t, qos=1)
    pub = connect(broker, version)
    pub.publish(t, payload, qos=1)
    assert sub.expect().payload == payload


def test_websocket_large_payload(broker, connect, version, topic):
    ws = connect(broker.ws_port, version, transport="websockets")
    ws.subscribe(topic, qos=1)
    payload = bytes(range(256)) * 400  # spans several WebSocket frames / reads
    connect(broker.ws_port, version, transport="websockets").publish(topic, payload, qos=1)
    assert ws.expect(3).payload == payload


def test_websocket_wrong_path_refused(broker):
    """An upgrade request for a path other than listeners.ws.path (/mqtt)
    gets HTTP 404; the same request for /mqtt (the control) gets 101."""
    assert ws_upgrade_status(broker.ws_port, "/mqtt")[0] == 101
    status, line = ws_upgrade_status(broker.ws_port, "/not-mqtt")
    assert status == 404, f"upgrade request for /not-mqtt answered with {line!r}"
