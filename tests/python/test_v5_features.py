"""MQTT 5.0 features.

Covers: No Local; Subscription Identifiers (single, overlapping, absent);
user properties (order kept), content type, payload format, response topic
and correlation data pass through; Message Expiry Interval (expired queued
and retained messages dropped, remaining interval forwarded); Topic Aliases
from the client (set, use, remap, invalid ones); CONNACK properties and the
config keys behind them (receive_maximum, max_packet_size, max_keep_alive,
max_qos, *_available), including Will QoS / Will Retain refusals and the
Server Keep Alive being enforced (the close comes at 1.5 x its value, not
earlier, also for a client that asked for none); the client's Receive
Maximum and Maximum Packet Size honoured (with the exact size boundary); the
server's Receive Maximum and Maximum Packet Size enforced.
"""

import time

import pytest

from helpers import (CONNACK, DISCONNECT, PUBREC, SUBACK, V5, V311, RawClient, assert_keep_alive_close, pkt_connect,
                     pkt_publish, pkt_subscribe, uid)


# ---- subscription options ---------------------------------------------------


def test_no_local(broker, connect, topic):
    """[MQTT-3.8.3-3]: with No Local, a client's own messages are not sent
    back to it; other clients' messages are."""
    c = connect(broker, V5)
    c.subscribe(topic, qos=1, no_local=True)
    c.publish(topic, b"mine", qos=1)
    c.expect_silence(0.3)
    connect(broker, V5).publish(topic, b"theirs", qos=1)
    assert c.expect().payload == b"theirs"


def test_no_local_does_not_affect_others(broker, connect, topic):
    c = connect(broker, V5)
    c.subscribe(topic, qos=1, no_local=True)
    other = connect(broker, V5)
    other.subscribe(topic, qos=1)
    c.publish(topic, b"x", qos=1)
    assert other.expect().payload == b"x"


def test_subscription_identifier_delivered(broker, connect, topic):
    """[MQTT-3.3.4-3]: the Subscription Identifier comes with each message
    matched by that subscription."""
    sub = connect(broker, V5)
    sub.subscribe(f"{topic}/+", qos=1, sub_id=42)
    connect(broker, V5).publish(f"{topic}/a", b"id", qos=1)
    assert sub.expect().prop("SubscriptionIdentifier") == [42]


def test_subscription_identifier_absent_when_not_given(broker, connect, topic):
    sub = connect(broker, V5)
    sub.subscribe(topic, qos=1)
    connect(broker, V5).publish(topic, b"noid", qos=1)
    assert sub.expect().prop("SubscriptionIdentifier") is None


def test_subscription_identifiers_of_overlapping_subscriptions(broker, connect, topic):
    """[MQTT-3.3.4-4/5]: one copy carries all matching identifiers; several
    copies carry one each."""
    sub = connect(broker, V5)
    sub.subscribe(f"{topic}/#", qos=1, sub_id=1)
    sub.subscribe(f"{topic}/a", qos=1, sub_id=2)
    sub.subscribe(f"{topic}/+", qos=1)  # no identifier
    connect(broker, V5).publish(f"{topic}/a", b"ov", qos=1)
    msgs = sub.collect(1)
    assert msgs
    ids = [i for m in msgs for i in (m.prop("SubscriptionIdentifier") or [])]
    assert sorted(ids) == [1, 2]


def test_subscription_identifier_on_retained_delivery(broker, connect, topic):
    connect(broker, V5).publish(topic, b"r", qos=1, retain=True)
    sub = connect(broker, V5)
    sub.subscribe(topic, qos=1, sub_id=7)
    m = sub.expect()
    assert (m.retain, m.prop("SubscriptionIdentifier")) == (True, [7])


# ---- properties forwarded ---------------------------------------------------


def test_publish_properties_pass_through(broker, connect, topic):
    """[MQTT-3.3.2-4/15/16/17/18]: payload format, content type, response
    topic, correlation data and user properties (in order) are forwarded
    unaltered."""
    sub = connect(broker, V5)
    sub.subscribe(topic, qos=1)
    user = [("b", "2"), ("a", "1"), ("a", "0"), ("ключ", "значение")]
    connect(broker, V5).publish(topic, b'{"q":1}', qos=1, properties={
        "PayloadFormatIndicator": 1, "ContentType": "application/json",
        "ResponseTopic": f"{topic}/reply", "CorrelationData": b"\x00corr\xff",
        "UserProperty": user})
    m = sub.expect()
    assert m.prop("PayloadFormatIndicator") == 1
    assert m.prop("ContentType") == "application/json"
    assert m.prop("ResponseTopic") == f"{topic}/reply"
    assert m.prop("CorrelationData") == b"\x00corr\xff"
    assert m.prop("UserProperty") == user


def test_properties_reach_v311_subscriber_as_plain_message(broker, connect, topic):
    sub = connect(broker, V311)
    sub.subscribe(topic, qos=1)
    connect(broker, V5).publish(topic, b"plain", qos=1, properties={"UserProperty": [("k", "v")]})
    assert sub.expect().payload == b"plain"


def test_request_response_round_trip(broker, connect, topic):
    responder = connect(broker, V5)
    responder.subscribe(f"{topic}/req", qos=1)
    requester = connect(broker, V5)
    requester.subscribe(f"{topic}/resp", qos=1)
    requester.publish(f"{topic}/req", b"ping", qos=1,
                      properties={"ResponseTopic": f"{topic}/resp", "CorrelationData": b"42"})
    req = responder.expect()
    responder.publish(req.prop("ResponseTopic"), b"pong", qos=1,
                      properties={"CorrelationData": req.prop("CorrelationData")})
    resp = requester.expect()
    assert (resp.payload, resp.prop("CorrelationData")) == (b"pong", b"42")


# ---- message expiry ---------------------------------------------------------


def test_expired_queued_message_not_delivered(broker, connect, topic):
    """[MQTT-3.3.2-5]: a message whose expiry passed before delivery started
    is not delivered."""
    cid = uid("exp")
    c = connect(broker, V5, client_id=cid, clean=False, session_expiry=60)
    c.subscribe(topic, qos=1)
    c.disconnect()
    pub = connect(broker, V5)
    pub.publish(topic, b"short", qos=1, properties={"MessageExpiryInterval": 1})
    pub.publish(topic, b"forever", qos=1)
    time.sleep(2.1)
    c = connect(broker, V5, client_id=cid, clean=False, session_expiry=60)
    assert [m.payload for m in c.collect(1)] == [b"forever"]


def test_queued_message_expiry_interval_decremented(broker, connect, topic):
    """[MQTT-3.3.2-6]: the forwarded Message Expiry Interval is the received
    value minus the time the message waited in the server."""
    cid = uid("exp")
    c = connect(broker, V5, client_id=cid, clean=False, session_expiry=60)
    c.subscribe(topic, qos=1)
    c.disconnect()
    connect(broker, V5).publish(topic, b"ttl", qos=1, properties={"MessageExpiryInterval": 30})
    time.sleep(1.3)
    c = connect(broker, V5, client_id=cid, clean=False, session_expiry=60)
    m = c.expect()
    remaining = m.prop("MessageExpiryInterval")
    assert remaining is not None and 25 <= remaining <= 29, remaining


def test_live_message_carries_expiry_interval(broker, connect, topic):
    sub = connect(broker, V5)
    sub.subscribe(topic, qos=1)
    connect(broker, V5).publish(topic, b"ttl", qos=1, properties={"MessageExpiryInterval": 30})
    remaining = sub.expect().prop("MessageExpiryInterval")
    assert remaining is not None and 29 <= remaining <= 30, remaining


def test_expired_retained_message_not_sent(broker, connect, topic):
    """5.0 section 3.3.2.3.3: a retained message past its expiry is not sent
    to new subscribers."""
    pub = connect(broker, V5)
    pub.publish(f"{topic}/short", b"x", qos=1, retain=True, properties={"MessageExpiryInterval": 1})
    pub.publish(f"{topic}/long", b"y", qos=1, retain=True, properties={"MessageExpiryInterval": 60})
    time.sleep(2.1)
    sub = connect(broker, V5)
    sub.subscribe(f"{topic}/#", qos=1)
    msgs = sub.collect(1)
    assert [m.topic for m in msgs] == [f"{topic}/long"]
    remaining = msgs[0].prop("MessageExpiryInterval")
    assert remaining is not None and 55 <= remaining <= 59, remaining


# ---- topic aliases ------------------------------------------------------------


def test_topic_alias_from_client(broker, connect, topic):
    """5.0 section 3.3.2.3.4: the client sets alias 1 with a topic, then
    publishes with an empty topic and the alias; subscribers see the topic."""
    pub = connect(broker, V5)
    assert getattr(pub.connack_properties, "TopicAliasMaximum", 0) >= 1
    sub = connect(broker, V5)
    sub.subscribe(f"{topic}/#", qos=1)
    pub.publish(f"{topic}/aliased", b"first", qos=1, properties={"TopicAlias": 1})
    pub.publish("", b"second", qos=1, properties={"TopicAlias": 1})
    msgs = sub.expect_n(2)
    assert [(m.topic, m.payload) for m in msgs] == [(f"{topic}/aliased", b"first"), (f"{topic}/aliased", b"second")]
    assert all(m.prop("TopicAlias") is None for m in msgs)  # the alias is per connection


def test_topic_alias_remapped(broker, connect, topic):
    pub = connect(broker, V5)
    sub = connect(broker, V5)
    sub.subscribe(f"{topic}/#", qos=1)
    pub.publish(f"{topic}/a", b"1", qos=1, properties={"TopicAlias": 1})
    pub.publish(f"{topic}/b", b"2", qos=1, properties={"TopicAlias": 1})
    pub.publish("", b"3", qos=1, properties={"TopicAlias": 1})
    assert [m.topic for m in sub.expect_n(3)] == [f"{topic}/a", f"{topic}/b", f"{topic}/b"]


def test_topic_alias_is_per_connection(broker, connect, topic):
    """Another connection's alias means nothing here: an unknown alias with
    an empty topic is a Protocol Error."""
    a = connect(broker, V5)
    a.publish(f"{topic}/a", b"1", qos=1, properties={"TopicAlias": 3})
    raw = RawClient(broker.port)
    try:
        raw.connect(version=5)
        raw.send(pkt_publish("", b"x", qos=1, pid=1, props_=[(0x23, 3)]))
        packets, closed = raw.read_until_closed(3)
        assert closed, f"connection kept open; got {packets}"
        assert [p.reason for p in packets if p.type == DISCONNECT] in ([0x82], [0x94])
    finally:
        raw.close()


@pytest.mark.parametrize("alias,codes", [(3, [0x94]), (0, [0x82, 0x94])], ids=["above-max", "zero"])
def test_topic_alias_out_of_range(broker_factory, alias, codes, topic):
    """A Topic Alias above the server's Topic Alias Maximum [MQTT-3.3.2-9]
    gets DISCONNECT 0x94 (Topic Alias invalid, whose definition is exactly
    this case); alias 0 [MQTT-3.3.2-8] is a Protocol Error (0x82, or 0x94)."""
    b = broker_factory("mqtt.topic_alias_maximum=2")
    raw = RawClient(b.port)
    try:
        connack = raw.connect(version=5)
        assert connack.reason == 0
        raw.send(pkt_publish(topic, b"x", qos=0, props_=[(0x23, alias)]))
        packets, closed = raw.read_until_closed(3)
        assert closed, f"connection kept open; got {packets}"
        got = [p.reason for p in packets if p.type == DISCONNECT]
        assert len(got) == 1 and got[0] in codes, [hex(c) for c in got]
    finally:
        raw.close()


# ---- CONNACK and limits -------------------------------------------------------


def test_connack_properties_default_config(broker, connect):
    c = connect(broker, V5)
    p = c.connack_properties
    assert getattr(p, "ReceiveMaximum", None) == 32  # mqtt.receive_maximum
    assert getattr(p, "MaximumPacketSize", None) == 1048576  # mqtt.max_packet_size
    assert getattr(p, "TopicAliasMaximum", None) == 65535  # mqtt.topic_alias_maximum
    assert not hasattr(p, "MaximumQoS")  # 2: must be absent [MQTT-3.2.2-9]
    for name in ("RetainAvailable", "WildcardSubscriptionAvailable", "SubscriptionIdentifierAvailable",
                 "SharedSubscriptionAvailable"):
        assert getattr(p, name, 1) == 1, name


def test_assigned_client_identifier(broker, connect, topic):
    """[MQTT-3.2.2-16]: an empty client id gets an Assigned Client Identifier."""
    c = connect(broker, V5, client_id="")
    assigned = getattr(c.connack_properties, "AssignedClientIdentifier", None)
    assert assigned, "no Assigned Client Identifier in CONNACK"
    c.subscribe(topic, qos=1)
    connect(broker, V5).publish(topic, b"hi", qos=1)
    assert c.expect().payload == b"hi"


@pytest.mark.parametrize("asked", [60, 0])
def test_server_keep_alive(broker_factory, connect, asked):
    """mqtt.max_keep_alive: a client asking for more (or none) is told the
    limit in Server Keep Alive [MQTT-3.2.2-21]."""
    b = broker_factory("mqtt.max_keep_alive=10")
    c = connect(b, V5, keepalive=asked)
    assert getattr(c.connack_properties, "ServerKeepAlive", None) == 10


def test_server_keep_alive_not_sent_within_limit(broker_factory, connect):
    b = broker_factory("mqtt.max_keep_alive=10")
    c = connect(b, V5, keepalive=5)
    assert getattr(c.connack_properties, "ServerKeepAlive", 5) == 5


def test_server_max_packet_size(broker_factory, connect, topic):
    """mqtt.max_packet_size is announced as Maximum Packet Size; a larger
    packet gets DISCONNECT 0x95 (Packet too large) (5.0 section 3.2.2.3.6)."""
    b = broker_factory("mqtt.max_packet_size=1024")
    sub = connect(b, V5)
    sub.subscribe(topic, qos=0)
    assert getattr(sub.connack_properties, "MaximumPacketSize", None) == 1024
    raw = RawClient(b.port)
    try:
        raw.connect(version=5)
        raw.send(pkt_publish(topic, b"z" * 2000, qos=0))
        packets, closed = raw.read_until_closed(3)
        assert closed, "connection kept open"
        assert [p.reason for p in packets if p.type == DISCONNECT] == [0x95]
    finally:
        raw.close()
    sub.expect_silence(0.3)


def test_v311_oversized_packet_closes_connection(broker_factory, connect, topic):
    b = broker_factory("mqtt.max_packet_size=1024")
    raw = RawClient(b.port)
    try:
        raw.connect(version=4)
        raw.send(pkt_publish(topic, b"z" * 2000, qos=0, version=4))
        packets, closed = raw.read_until_closed(3)
        assert closed and packets == []
    finally:
        raw.close()


def test_client_maximum_packet_size_respected(broker, connect, topic):
    """[MQTT-3.1.2-24/25]: the server does not send a packet larger than the
    client's Maximum Packet Size; it drops it and carries on."""
    sub = connect(broker, V5, connect_properties={"MaximumPacketSize": 256})
    sub.subscribe(topic, qos=1)
    pub = connect(broker, V5)
    pub.publish(topic, b"b" * 1000, qos=1)
    pub.publish(topic, b"small", qos=1)
    assert [m.payload for m in sub.collect(1)] == [b"small"]
    assert sub.is_open(), f"connection closed: {sub.disconnects}"


def test_client_receive_maximum_respected(broker, connect, topic):
    """[MQTT-3.3.4-9]: no more than the client's Receive Maximum
    unacknowledged QoS 1/2 PUBLISH packets."""
    sub = connect(broker, V5, manual_ack=True, connect_properties={"ReceiveMaximum": 2})
    sub.subscribe(topic, qos=1)
    pub = connect(broker, V5)
    for i in range(6):
        pub.publish(topic, str(i).encode(), qos=1)
    first = sub.collect(2, settle=0.3)
    assert [int(m.payload) for m in first] == [0, 1]
    got = list(first)
    for m in first:
        sub.ack(m)
    deadline = time.monotonic() + 3
    while len(got) < 6 and time.monotonic() < deadline:
        batch = sub.drain(0.3)
        assert len(batch) <= 2, f"{len(batch)} unacknowledged in flight"
        for m in batch:
            sub.ack(m)
        got += batch
    assert [int(m.payload) for m in got] == list(range(6))


def test_server_receive_maximum_enforced(broker_factory, topic):
    """5.0 section 3.3.4: a client sending more unacknowledged QoS 2
    PUBLISHes than the server's Receive Maximum gets DISCONNECT 0x93."""
    b = broker_factory("mqtt.receive_maximum=2")
    raw = RawClient(b.port)
    try:
        connack = raw.connect(version=5)
        assert connack.reason == 0
        for pid in (1, 2, 3):
            raw.send(pkt_publish(topic, b"q2", qos=2, pid=pid))
        packets, closed = raw.read_until_closed(3)
        assert [p.type for p in packets if p.type != DISCONNECT] == [PUBREC, PUBREC]
        assert closed, "connection kept open"
        assert [p.reason for p in packets if p.type == DISCONNECT] == [0x93]
    finally:
        raw.close()


def test_max_qos_1(broker_factory, connect, topic):
    """mqtt.max_qos=1: CONNACK Maximum QoS 1; subscriptions granted at most
    QoS 1 (both versions)."""
    b = broker_factory("mqtt.max_qos=1")
    c5 = connect(b, V5)
    assert getattr(c5.connack_properties, "MaximumQoS", None) == 1
    assert c5.subscribe(topic, qos=2) == [1]
    c3 = connect(b, V311)
    assert c3.subscribe(topic, qos=2) == [1]


def test_max_qos_1_rejects_qos2_publish(broker_factory, topic):
    """[MQTT-3.2.2-11]: a QoS 2 PUBLISH above Maximum QoS gets DISCONNECT
    0x9B (QoS not supported)."""
    b = broker_factory("mqtt.max_qos=1")
    raw = RawClient(b.port)
    try:
        raw.connect(version=5)
        raw.send(pkt_publish(topic, b"q2", qos=2, pid=1))
        packets, closed = raw.read_until_closed(3)
        assert closed
        assert [p.reason for p in packets if p.type == DISCONNECT] == [0x9B]
    finally:
        raw.close()


def test_wildcard_subscriptions_disabled(broker_factory, connect, topic):
    b = broker_factory("mqtt.wildcard_subscription_available=false")
    c = connect(b, V5)
    assert getattr(c.connack_properties, "WildcardSubscriptionAvailable", None) == 0
    raw = RawClient(b.port)
    try:
        raw.connect(version=5)
        raw.send(pkt_subscribe(1, [(f"{topic}/#", 1), (topic, 1)]))
        p = raw.read()
        # 0xA2: Wildcard Subscriptions not supported, per filter in SUBACK,
        # or for the whole connection in DISCONNECT.
        assert p is not None and p.type in (SUBACK, DISCONNECT), p
        if p.type == SUBACK:
            assert p.body[-2:] == bytes([0xA2, 0x01])
        else:
            assert p.reason == 0xA2
    finally:
        raw.close()


def test_subscription_identifiers_disabled(broker_factory, connect, topic):
    """Subscription Identifier when not available: DISCONNECT 0xA1."""
    b = broker_factory("mqtt.subscription_identifiers_available=false")
    c = connect(b, V5)
    assert getattr(c.connack_properties, "SubscriptionIdentifierAvailable", None) == 0
    raw = RawClient(b.port)
    try:
        raw.connect(version=5)
        raw.send(pkt_subscribe(1, [(topic, 1)], props_=[(0x0B, 5)]))
        packets, closed = raw.read_until_closed(3)
        assert closed
        assert [p.reason for p in packets if p.type == DISCONNECT] == [0xA1]
    finally:
        raw.close()


def test_connack_is_first_packet(broker):
    raw = RawClient(broker.port)
    try:
        p = raw.connect(version=5)
        assert p.type == CONNACK and p.reason == 0
    finally:
        raw.close()


def test_will_qos_above_max_qos_refused(broker_factory):
    """[MQTT-3.2.2-12]: a CONNECT whose Will QoS exceeds Maximum QoS is
    refused (CONNACK 0x9B, QoS not supported)."""
    b = broker_factory("mqtt.max_qos=1")
    raw = RawClient(b.port)
    try:
        raw.send(pkt_connect(uid("wq"), version=5, will={"topic": "w", "payload": b"x", "qos": 2}))
        p = raw.read()
        assert p is not None and p.type == CONNACK and p.reason == 0x9B, p
        _, closed = raw.read_until_closed(3)
        assert closed
    finally:
        raw.close()


def test_will_retain_refused_when_retain_unavailable(broker_factory):
    """[MQTT-3.2.2-13]: Will Retain with Retain Available 0: CONNACK 0x9A."""
    b = broker_factory("mqtt.retain_available=false")
    raw = RawClient(b.port)
    try:
        raw.send(pkt_connect(uid("wr"), version=5, will={"topic": "w", "payload": b"x", "retain": True}))
        p = raw.read()
        assert p is not None and p.type == CONNACK and p.reason == 0x9A, p
    finally:
        raw.close()


@pytest.mark.parametrize("asked", [60, 0])
def test_server_keep_alive_enforced(broker_factory, asked):
    """[MQTT-3.1.2-21]: the client must use the Server Keep Alive; the server
    closes a connection silent for 1.5 times that value [MQTT-3.1.2-22],
    not earlier, also for a client that asked for no keep-alive (0)."""
    b = broker_factory("mqtt.max_keep_alive=1")
    raw = RawClient(b.port)
    try:
        sent = time.monotonic()  # before the client's only packet
        raw.send(pkt_connect(uid("ka"), version=5, keepalive=asked))
        p = raw.read()
        assert p.type == CONNACK and p.reason == 0
        packets, closed = raw.read_until_closed(4)
        assert closed, "silent connection not closed"
        assert_keep_alive_close(time.monotonic() - sent, 1)
        assert [p.reason for p in packets if p.type == DISCONNECT] in ([], [0x8D])  # Keep Alive timeout
    finally:
        raw.close()


def test_no_local_with_overlapping_subscription(broker, connect, topic):
    """No Local applies per subscription: a second matching subscription
    without it still delivers the client's own message."""
    c = connect(broker, V5)
    c.subscribe(f"{topic}/#", qos=1, no_local=True)
    c.subscribe(f"{topic}/a", qos=1)
    c.publish(f"{topic}/a", b"own", qos=1)
    msgs = c.collect(1)
    assert [m.payload for m in msgs] == [b"own"]


def test_subscription_identifier_replaced_on_resubscribe(broker, connect, topic):
    """[MQTT-3.8.4-3]: a SUBSCRIBE for an existing filter replaces it, with
    its Subscription Identifier."""
    sub = connect(broker, V5)
    sub.subscribe(topic, qos=1, sub_id=1)
    sub.subscribe(topic, qos=1, sub_id=2)
    connect(broker, V5).publish(topic, b"x", qos=1)
    msgs = sub.collect(1)
    assert [m.prop("SubscriptionIdentifier") for m in msgs] == [[2]]


@pytest.mark.parametrize("delta,accepted", [(0, True), (1, False)], ids=["at-limit", "one-over"])
def test_server_max_packet_size_boundary(broker_factory, connect, topic, delta, accepted):
    """Maximum Packet Size counts the whole packet (fixed header included):
    exactly mqtt.max_packet_size is fine, one byte more is 0x95."""
    b = broker_factory("mqtt.max_packet_size=1024")
    sub = connect(b, V5)
    sub.subscribe(topic, qos=0)
    # fixed header 1 + 2-byte remaining length; topic; properties length 0
    payload = b"p" * (1024 + delta - 3 - (2 + len(topic)) - 1)
    raw = RawClient(b.port)
    try:
        raw.connect(version=5)
        pkt = pkt_publish(topic, payload, qos=0)
        assert len(pkt) == 1024 + delta
        raw.send(pkt)
        if accepted:
            assert sub.expect().payload == payload
        else:
            packets, closed = raw.read_until_closed(3)
            assert closed and [p.reason for p in packets if p.type == DISCONNECT] == [0x95]
    finally:
        raw.close()


@pytest.mark.parametrize("delta,delivered", [(0, True), (1, False)], ids=["at-limit", "one-over"])
def test_client_max_packet_size_boundary(broker, connect, topic, delta, delivered):
    """[MQTT-3.1.2-24]: a PUBLISH of exactly the client's Maximum Packet Size
    is sent; one byte more is not."""
    limit = 300
    sub = connect(broker, V5, connect_properties={"MaximumPacketSize": limit})
    sub.subscribe(topic, qos=0)
    # QoS 0, no properties: 1 + 2 (remaining length) + 2 + topic + 1 + payload
    payload = b"q" * (limit + delta - 3 - (2 + len(topic)) - 1)
    pub = connect(broker, V5)
    pub.publish(topic, payload, qos=1)
    pub.publish(topic, b"marker", qos=1)
    got = [m.payload for m in sub.collect(2 if delivered else 1)]
    assert got == ([payload, b"marker"] if delivered else [b"marker"])
