"""Sessions, for MQTT 3.1.1 and 5.0.

Covers: a persistent session keeps its subscriptions and queues QoS 1/2
(and, by default, QoS 0) messages while offline, delivering them in order on
reconnect; the Session Present flag; Clean Session / Clean Start discards the
session; v5 Session Expiry Interval (expiry, zero, changed on DISCONNECT;
raising it from zero on DISCONNECT is a Protocol Error answered with
DISCONNECT 0x82); session.max_expiry_interval caps it (the CONNACK announces
the capped value) and is what 3.1.1 persistent sessions get;
unacknowledged QoS 1/2 PUBLISHes are re-sent with DUP, and an unanswered
PUBREL is re-sent, on reconnect; the queue limit with both policies (offline
and behind a full in-flight window) and its dropped counter; the in-flight
window; session takeover (5.0: DISCONNECT 0x8E to the old connection).
"""

import struct
import time

import pytest

from helpers import (DISCONNECT, PUBCOMP, PUBLISH, PUBREC, PUBREL, RC_NORMAL, RC_PROTOCOL_ERROR, SUBACK, SYS_PREFIX,
                     V5, V311, RawClient, pkt_ack, pkt_disconnect, pkt_subscribe, uid)


@pytest.fixture(params=["v311", "v5"])
def level(request):
    return {"v311": 4, "v5": 5}[request.param]


@pytest.fixture
def raw_clients():
    made = []

    def make(port):
        r = RawClient(port)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def persistent(version, expiry=60):
    """kwargs for a client whose session outlives its connection."""
    if version == V5:
        return {"clean": False, "session_expiry": expiry}
    return {"clean": False}


def test_session_keeps_subscription_and_queues_offline(broker, connect, version, topic):
    cid = uid("ps")
    c = connect(broker, version, client_id=cid, **persistent(version))
    c.subscribe(topic, qos=1)
    c.disconnect()
    pub = connect(broker, version)
    for i in range(10):
        pub.publish(topic, str(i).encode(), qos=1)
    c = connect(broker, version, client_id=cid, **persistent(version))
    assert c.session_present is True
    msgs = c.expect_n(10)
    assert [int(m.payload) for m in msgs] == list(range(10))
    assert all(m.qos == 1 for m in msgs)
    # The subscription is still there for new messages, too.
    pub.publish(topic, b"after", qos=1)
    assert c.expect().payload == b"after"


def test_queued_qos2_delivered_once(broker, connect, version, topic):
    cid = uid("ps")
    c = connect(broker, version, client_id=cid, **persistent(version))
    c.subscribe(topic, qos=2)
    c.disconnect()
    connect(broker, version).publish(topic, b"exactly-once", qos=2)
    c = connect(broker, version, client_id=cid, **persistent(version))
    msgs = c.collect(1)
    assert [(m.payload, m.qos) for m in msgs] == [(b"exactly-once", 2)]


def test_queued_qos0_by_default(broker, connect, version, topic):
    """session.queue_qos0 = true (default): QoS 0 messages are queued too."""
    cid = uid("ps")
    c = connect(broker, version, client_id=cid, **persistent(version))
    c.subscribe(topic, qos=1)
    c.disconnect()
    connect(broker, version).publish(topic, b"q0", qos=0)
    time.sleep(0.1)
    c = connect(broker, version, client_id=cid, **persistent(version))
    m = c.expect()
    assert (m.payload, m.qos) == (b"q0", 0)


def test_queue_qos0_disabled(broker_factory, connect, version, topic):
    b = broker_factory("session.queue_qos0=false")
    cid = uid("ps")
    c = connect(b, version, client_id=cid, **persistent(version))
    c.subscribe(topic, qos=1)
    c.disconnect()
    pub = connect(b, version)
    pub.publish(topic, b"q0", qos=0)
    pub.publish(topic, b"q1", qos=1)
    c = connect(b, version, client_id=cid, **persistent(version))
    assert [m.payload for m in c.collect(1)] == [b"q1"]


def test_session_present_flag(broker, connect, version):
    """[MQTT-3.2.2-1/2/3] (3.1.1), [MQTT-3.2.2-2/3] (5.0)."""
    cid = uid("sp")
    c = connect(broker, version, client_id=cid, **persistent(version))
    assert c.session_present is False  # no session existed
    c.disconnect()
    c = connect(broker, version, client_id=cid, **persistent(version))
    assert c.session_present is True
    c.disconnect()
    c = connect(broker, version, client_id=cid, clean=True)
    assert c.session_present is False  # clean start: always 0


def test_clean_start_discards_session(broker, connect, version, topic):
    """[MQTT-3.1.2-6] (3.1.1), [MQTT-3.1.2-4] (5.0)."""
    cid = uid("cs")
    c = connect(broker, version, client_id=cid, **persistent(version))
    c.subscribe(topic, qos=1)
    c.disconnect()
    pub = connect(broker, version)
    pub.publish(topic, b"queued", qos=1)
    c = connect(broker, version, client_id=cid, clean=True)
    assert c.session_present is False
    c.expect_silence(0.3)  # queued message went with the session
    pub.publish(topic, b"new", qos=1)
    c.expect_silence(0.3)  # and so did the subscription


def test_clean_session_connection_leaves_nothing_behind(broker, connect, version, topic):
    """A clean (3.1.1) / expiry-0 (5.0) session ends with its connection."""
    cid = uid("cl")
    c = connect(broker, version, client_id=cid, clean=True)
    c.subscribe(topic, qos=1)
    c.disconnect()
    connect(broker, version).publish(topic, b"nobody", qos=1)
    c = connect(broker, version, client_id=cid, **persistent(version))
    assert c.session_present is False
    c.expect_silence(0.3)


def test_v5_session_expiry_passes(broker, connect, topic):
    """5.0 section 3.1.2.11.2: after the Session Expiry Interval the session
    and its queued messages are gone."""
    cid = uid("se")
    c = connect(broker, V5, client_id=cid, clean=False, session_expiry=1)
    c.subscribe(topic, qos=1)
    c.disconnect()
    connect(broker, V5).publish(topic, b"expires-with-session", qos=1)
    time.sleep(2.2)
    c = connect(broker, V5, client_id=cid, clean=False, session_expiry=60)
    assert c.session_present is False
    c.expect_silence(0.3)


def test_v5_session_survives_within_expiry(broker, connect, topic):
    cid = uid("se")
    c = connect(broker, V5, client_id=cid, clean=False, session_expiry=5)
    c.subscribe(topic, qos=1)
    c.disconnect()
    connect(broker, V5).publish(topic, b"still-here", qos=1)
    time.sleep(1.2)
    c = connect(broker, V5, client_id=cid, clean=False, session_expiry=5)
    assert c.session_present is True
    assert c.expect().payload == b"still-here"


def test_v5_session_expiry_absent_means_zero(broker, connect, topic):
    """5.0 section 3.1.2.11.2: an absent Session Expiry Interval
    is 0, the session ends when the connection closes, even with Clean
    Start 0."""
    cid = uid("se")
    c = connect(broker, V5, client_id=cid, clean=False)
    c.subscribe(topic, qos=1)
    c.disconnect()
    c = connect(broker, V5, client_id=cid, clean=False)
    assert c.session_present is False


def test_v5_session_expiry_changed_on_disconnect(broker, connect, topic):
    """5.0 section 3.14.2.2.2: DISCONNECT can set Session Expiry Interval;
    setting it to 0 ends the session with the connection."""
    cid = uid("se")
    c = connect(broker, V5, client_id=cid, clean=False, session_expiry=60)
    c.subscribe(topic, qos=1)
    c.disconnect(properties={"SessionExpiryInterval": 0})
    time.sleep(0.2)
    c = connect(broker, V5, client_id=cid, clean=False, session_expiry=60)
    assert c.session_present is False


def test_max_expiry_interval_caps_sessions(broker_factory, connect, topic):
    """session.max_expiry_interval caps a v5 client's Session Expiry
    Interval, and 3.1.1 persistent sessions get exactly that value. Both
    sessions are checked over the same wait."""
    b = broker_factory("session.max_expiry_interval=1")
    cid5, cid3 = uid("cap5"), uid("cap3")
    c5 = connect(b, V5, client_id=cid5, clean=False, session_expiry=3600)
    # 5.0 section 3.2.2.3.2: the server tells a client it uses another
    # Session Expiry Interval in the CONNACK; an absent one means the
    # client's (3600), so the property must be there.
    announced = getattr(c5.connack_properties, "SessionExpiryInterval", None)
    assert announced == 1, f"CONNACK Session Expiry Interval {announced}, expected the cap (1)"
    c5.subscribe(topic, qos=1)
    c5.disconnect()
    c3 = connect(b, V311, client_id=cid3, clean=False)
    c3.subscribe(topic, qos=1)
    c3.disconnect()
    c3 = connect(b, V311, client_id=cid3, clean=False)
    assert c3.session_present is True  # alive right after disconnecting
    c3.disconnect()
    time.sleep(2.2)
    assert connect(b, V5, client_id=cid5, clean=False, session_expiry=3600).session_present is False
    assert connect(b, V311, client_id=cid3, clean=False).session_present is False


def test_unacked_qos1_resent_with_dup_on_reconnect(broker, connect, version, topic):
    """[MQTT-4.4.0-1]: unacknowledged PUBLISH packets are re-sent on
    reconnect with the original packet identifier, and [MQTT-3.3.1-1] with
    DUP = 1."""
    cid = uid("dup")
    c = connect(broker, version, client_id=cid, manual_ack=True, **persistent(version))
    c.subscribe(topic, qos=1)
    connect(broker, version).publish(topic, b"ack-me", qos=1)
    first = c.expect()
    assert first.dup is False
    c.kill()  # never acknowledged
    c = connect(broker, version, client_id=cid, **persistent(version))
    again = c.expect()
    assert (again.payload, again.dup, again.mid) == (b"ack-me", True, first.mid)
    c.expect_silence(0.3)


@pytest.mark.parametrize("policy,expected", [("drop_new", [0, 1, 2]), ("drop_oldest", [3, 4, 5])])
def test_offline_queue_limit(broker_factory, connect, version, topic, policy, expected):
    b = broker_factory("session.max_queued_messages=3", f"session.queue_full_policy={policy}")
    cid = uid("q")
    c = connect(b, version, client_id=cid, **persistent(version))
    c.subscribe(topic, qos=1)
    c.disconnect()
    pub = connect(b, version)
    for i in range(6):
        pub.publish(topic, str(i).encode(), qos=1)
    c = connect(b, version, client_id=cid, **persistent(version))
    assert [int(m.payload) for m in c.collect(3)] == expected


def test_drop_oldest_prefers_qos0(broker_factory, connect, topic):
    """session.queue_full_policy=drop_oldest drops the oldest QoS 0 message
    first, else the oldest message."""
    b = broker_factory("session.max_queued_messages=3", "session.queue_full_policy=drop_oldest")
    cid = uid("q")
    c = connect(b, V5, client_id=cid, clean=False, session_expiry=60)
    c.subscribe(topic, qos=1)
    c.disconnect()
    pub = connect(b, V5)
    for payload, qos in [(b"a", 1), (b"b", 0), (b"c", 1), (b"d", 1)]:
        pub.publish(topic, payload, qos=qos)
    c = connect(b, V5, client_id=cid, clean=False, session_expiry=60)
    assert [m.payload for m in c.collect(3)] == [b"a", b"c", b"d"]


def test_dropped_messages_counted(broker_factory, connect, topic):
    b = broker_factory("session.max_queued_messages=1", "session.queue_full_policy=drop_new", "sys.interval=1")
    cid = uid("q")
    c = connect(b, V5, client_id=cid, clean=False, session_expiry=60)
    c.subscribe(topic, qos=1)
    c.disconnect()
    pub = connect(b, V5)
    for i in range(4):
        pub.publish(topic, str(i).encode(), qos=1)
    watcher = connect(b, V5)
    watcher.subscribe(f"{SYS_PREFIX}/metrics/messages/dropped", qos=0)
    deadline = time.monotonic() + 3
    value = None
    while time.monotonic() < deadline:
        for m in watcher.drain(0.3):
            value = int(m.payload)
        if value is not None and value >= 3:
            break
    assert value is not None and value >= 3, f"metrics/messages/dropped = {value}, expected >= 3"


def test_inflight_window_limits_unacked_deliveries(broker_factory, connect, version, topic):
    """mqtt.max_inflight: at most that many unacknowledged QoS 1/2 messages
    towards a client; the rest wait in the queue and follow as acks come."""
    b = broker_factory("mqtt.max_inflight=2")
    sub = connect(b, version, manual_ack=True)
    sub.subscribe(topic, qos=1)
    pub = connect(b, version)
    for i in range(5):
        pub.publish(topic, str(i).encode(), qos=1)
    first = sub.collect(2, settle=0.3)
    assert [int(m.payload) for m in first] == [0, 1]
    for m in first:
        sub.ack(m)
    rest = sub.expect_n(2)
    for m in rest:
        sub.ack(m)
    rest += sub.expect_n(1)
    assert [int(m.payload) for m in first + rest] == list(range(5))


def test_v5_takeover_sends_session_taken_over(broker, connect, topic):
    """[MQTT-3.1.4-3] 5.0: the existing connection gets DISCONNECT 0x8E and is
    closed; the session continues on the new connection."""
    cid = uid("to")
    old = connect(broker, V5, client_id=cid, clean=False, session_expiry=60)
    old.subscribe(topic, qos=1)
    new = connect(broker, V5, client_id=cid, clean=False, session_expiry=60)
    old.expect_closed(3, reason=0x8E)
    assert new.session_present is True
    connect(broker, V5).publish(topic, b"to-new", qos=1)
    assert new.expect().payload == b"to-new"


def test_v311_takeover_closes_old_connection(broker, connect, topic):
    """[MQTT-3.1.4-2] 3.1.1: the server disconnects the existing client."""
    cid = uid("to")
    old = connect(broker, V311, client_id=cid, clean=False)
    old.subscribe(topic, qos=1)
    new = connect(broker, V311, client_id=cid, clean=False)
    old.expect_closed(3)
    assert new.session_present is True
    connect(broker, V311).publish(topic, b"to-new", qos=1)
    assert new.expect().payload == b"to-new"
    old.assert_nothing_received()


def test_unacked_qos2_publish_resent_with_dup(broker, connect, raw_clients, level, topic):
    """[MQTT-4.4.0-1]: a QoS 2 PUBLISH the client never answered with PUBREC
    is re-sent on reconnect, same packet id, DUP=1 [MQTT-3.3.1-1]."""
    cid = uid("q2")
    props_ = [(0x11, 60)] if level == 5 else None
    r = raw_clients(broker.port)
    assert r.connect(cid, version=level, clean=True, props_=props_).reason == 0
    r.close()
    r = raw_clients(broker.port)
    assert r.connect(cid, version=level, clean=False, props_=props_).reason == 0
    r.send(pkt_subscribe(1, [(topic, 2)], version=level))
    assert r.read().type == SUBACK
    connect(broker, V5).publish(topic, b"q2", qos=2)
    p = r.read()
    assert p.type == PUBLISH and not p.flags & 0x08
    pid = p.body[2 + len(topic):4 + len(topic)]
    r.close()  # no PUBREC
    r = raw_clients(broker.port)
    connack = r.connect(cid, version=level, clean=False, props_=props_)
    assert connack.body[0] & 1, "session not present"
    p = r.read()
    assert p.type == PUBLISH and p.flags & 0x08, f"expected a DUP PUBLISH, got {p}"
    assert p.body[2 + len(topic):4 + len(topic)] == pid
    assert p.publish_fields(level)[1] == b"q2"


def test_unacked_pubrel_resent_on_reconnect(broker, connect, raw_clients, level, topic):
    """[MQTT-4.4.0-1]: after PUBREC, the server's PUBREL is what gets re-sent
    on reconnect (not the PUBLISH again)."""
    cid = uid("q2")
    props_ = [(0x11, 60)] if level == 5 else None
    r = raw_clients(broker.port)
    assert r.connect(cid, version=level, clean=True, props_=props_).reason == 0
    r.close()
    r = raw_clients(broker.port)
    assert r.connect(cid, version=level, clean=False, props_=props_).reason == 0
    r.send(pkt_subscribe(1, [(topic, 2)], version=level))
    assert r.read().type == SUBACK
    connect(broker, V5).publish(topic, b"q2", qos=2)
    p = r.read()
    assert p.type == PUBLISH
    pid = struct.unpack("!H", p.body[2 + len(topic):4 + len(topic)])[0]
    r.send(pkt_ack(PUBREC, pid))
    p = r.read()
    assert p.type == PUBREL and struct.unpack("!H", p.body[:2])[0] == pid
    r.close()  # no PUBCOMP
    r = raw_clients(broker.port)
    connack = r.connect(cid, version=level, clean=False, props_=props_)
    assert connack.body[0] & 1, "session not present"
    p = r.read()
    assert p.type == PUBREL and struct.unpack("!H", p.body[:2])[0] == pid, f"expected PUBREL {pid}, got {p}"
    r.send(pkt_ack(PUBCOMP, pid))
    with pytest.raises(TimeoutError):
        extra = r.read(0.4)
        pytest.fail(f"unexpected packet after PUBCOMP: {extra}")


def test_v5_disconnect_cannot_raise_zero_expiry(broker, connect, raw_clients, topic):
    """[MQTT-3.14.2-2]: a non-zero Session Expiry Interval on DISCONNECT
    when CONNECT had 0 is a Protocol Error: the server answers with
    DISCONNECT 0x82 and closes (5.0 section 3.14.2.2.2, 4.13); the session
    must not survive. A raw client, because paho closes its socket as soon
    as it has sent DISCONNECT and never reads the answer."""
    cid = uid("se")
    r = raw_clients(broker.port)
    assert r.connect(cid, version=5, clean=False).reason == 0  # no Session Expiry Interval: 0
    r.send(pkt_subscribe(1, [(topic, 1)]))
    assert r.read().type == SUBACK
    r.send(pkt_disconnect(RC_NORMAL, props_=[(0x11, 60)]))
    packets, closed = r.read_until_closed(3)
    assert [(p.type, p.reason) for p in packets] == [(DISCONNECT, RC_PROTOCOL_ERROR)]
    assert closed, "connection not closed after the Protocol Error"
    c = connect(broker, V5, client_id=cid, clean=False, session_expiry=60)
    assert c.session_present is False


@pytest.mark.parametrize("policy,expected", [("drop_new", [0, 1, 2]), ("drop_oldest", [0, 3, 4])])
def test_online_queue_limit_beyond_inflight_window(broker_factory, connect, topic, policy, expected):
    """The queue limit also bounds messages waiting behind a full in-flight
    window of a connected client (session.max_queued_messages)."""
    b = broker_factory("mqtt.max_inflight=1", "session.max_queued_messages=2",
                       f"session.queue_full_policy={policy}")
    sub = connect(b, V5, manual_ack=True)
    sub.subscribe(topic, qos=1)
    pub = connect(b, V5)
    for i in range(5):
        pub.publish(topic, str(i).encode(), qos=1)
    got = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        batch = sub.drain(0.25)
        if not batch:
            break
        for m in batch:
            sub.ack(m)
        got += batch
    assert [int(m.payload) for m in got] == expected
