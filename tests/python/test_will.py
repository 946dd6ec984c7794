"""Will messages, for MQTT 3.1.1 and 5.0.

Covers: the will is published when the network connection closes without a
DISCONNECT (socket closed, keep-alive expired: not before 1.5 x keep-alive
and not much later), with its topic, payload, QoS and retain flag; a client
that keeps pinging stays connected and keeps its will unsent; the will is
not published after a normal DISCONNECT; v5
DISCONNECT with reason 0x04 publishes it; v5 Will Delay Interval delays it,
a reconnect within the delay cancels it, and session end cuts the delay
short; v5 will properties are forwarded; a protocol error and a 3.1.1
takeover publish the will.
"""

import time

from helpers import CONNACK, V5, V311, RawClient, assert_keep_alive_close, pkt_connect, pkt_publish, uid


def will(topic, payload=b"gone", qos=1, retain=False, **properties):
    w = {"topic": topic, "payload": payload, "qos": qos, "retain": retain}
    if properties:
        w["properties"] = properties
    return w


def test_will_on_abnormal_close(broker, connect, version, topic):
    """[MQTT-3.1.2-8] (3.1.1) / section 3.1.2.5 (5.0)."""
    sub = connect(broker, version)
    sub.subscribe(f"{topic}/will", qos=2)
    c = connect(broker, version, will=will(f"{topic}/will", b"bye", qos=1))
    c.kill()
    m = sub.expect(3)
    assert (m.topic, m.payload, m.qos, m.retain) == (f"{topic}/will", b"bye", 1, False)
    sub.expect_silence(0.3)


def test_no_will_on_clean_disconnect(broker, connect, version, topic):
    """[MQTT-3.1.2-10] (3.1.1) / [MQTT-3.1.2-10] (5.0, reason 0x00)."""
    sub = connect(broker, version)
    sub.subscribe(f"{topic}/will", qos=1)
    c = connect(broker, version, will=will(f"{topic}/will"))
    c.disconnect()
    sub.expect_silence(0.5)


def test_v5_disconnect_with_will_message_reason(broker, connect, topic):
    """5.0: DISCONNECT with reason 0x04 (Disconnect with Will Message) makes
    the server publish the will."""
    sub = connect(broker, V5)
    sub.subscribe(f"{topic}/will", qos=1)
    c = connect(broker, V5, will=will(f"{topic}/will", b"asked-for"))
    c.disconnect(reason=0x04)
    assert sub.expect(3).payload == b"asked-for"


def test_will_retained(broker, connect, version, topic):
    c = connect(broker, version, will=will(f"{topic}/status", b"offline", qos=1, retain=True))
    c.kill()
    time.sleep(0.3)
    late = connect(broker, version)
    late.subscribe(f"{topic}/status", qos=1)
    m = late.expect(3)
    assert (m.payload, m.retain) == (b"offline", True)


def test_will_on_keep_alive_timeout(broker, connect, version, topic):
    """[MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (5.0): a client that sends
    nothing (its socket stays open) within 1.5 x keep-alive is disconnected,
    not earlier, and its will is published."""
    sub = connect(broker, version)
    sub.subscribe(f"{topic}/will", qos=1)
    raw = RawClient(broker.port)
    v = 5 if version == V5 else 4
    try:
        sent = time.monotonic()  # before the client's only packet
        raw.send(pkt_connect(uid("ka"), version=v, keepalive=1,
                             will={"topic": f"{topic}/will", "payload": b"timeout", "qos": 1}))
        assert raw.read().type == CONNACK
        m = sub.expect(4)
        assert m.payload == b"timeout"
        assert_keep_alive_close(m.received_at - sent, 1, "will published")
        _, closed = raw.read_until_closed(4)
        assert closed, "server did not close the silent connection"
        assert_keep_alive_close(time.monotonic() - sent, 1, "connection closed")
    finally:
        raw.close()


def test_will_not_sent_before_keep_alive_expires(broker, connect, topic):
    """A client that keeps pinging stays connected well past 1.5 x its
    keep-alive, and its will stays unsent."""
    sub = connect(broker, V5)
    sub.subscribe(f"{topic}/will", qos=1)
    pinger = connect(broker, V5, keepalive=1, will=will(f"{topic}/will"))
    pinger.expect_silence(3.0)  # twice 1.5 x keep-alive; fails at once if closed
    sub.expect_silence(0.3)


def test_v5_will_delay_interval(broker, connect, topic):
    """5.0 section 3.1.3.2.2: the will waits for its Will Delay Interval."""
    sub = connect(broker, V5)
    sub.subscribe(f"{topic}/will", qos=1)
    c = connect(broker, V5, session_expiry=60, will=will(f"{topic}/will", b"late", WillDelayInterval=1))
    killed = time.monotonic()
    c.kill()
    sub.expect_silence(0.6)
    m = sub.expect(2.5)
    assert m.payload == b"late"
    assert time.monotonic() - killed >= 0.9


def test_v5_will_delay_cancelled_by_reconnect(broker, connect, topic):
    """[MQTT-3.1.3-9]: a new connection for the session before the delay
    ends means the will is not sent."""
    sub = connect(broker, V5)
    sub.subscribe(f"{topic}/will", qos=1)
    cid = uid("wd")
    c = connect(broker, V5, client_id=cid, clean=False, session_expiry=60,
                will=will(f"{topic}/will", b"never", WillDelayInterval=1))
    c.kill()
    connect(broker, V5, client_id=cid, clean=False, session_expiry=60)
    sub.expect_silence(1.8)


def test_v5_will_sent_when_session_ends_before_delay(broker, connect, topic):
    """5.0 section 3.1.2.5: the will is published when the Will Delay
    Interval passes or the session ends, whichever is first."""
    sub = connect(broker, V5)
    sub.subscribe(f"{topic}/will", qos=1)
    c = connect(broker, V5, session_expiry=1, will=will(f"{topic}/will", b"session-ended", WillDelayInterval=60))
    c.kill()
    assert sub.expect(3.5).payload == b"session-ended"


def test_v5_will_delay_with_zero_session_expiry_is_immediate(broker, connect, topic):
    """Session Expiry 0: the session ends with the connection, so the will
    goes out at once even with a long Will Delay Interval."""
    sub = connect(broker, V5)
    sub.subscribe(f"{topic}/will", qos=1)
    c = connect(broker, V5, will=will(f"{topic}/will", b"now", WillDelayInterval=60))
    c.kill()
    assert sub.expect(1.5).payload == b"now"


def test_v5_will_properties_forwarded(broker, connect, topic):
    sub = connect(broker, V5)
    sub.subscribe(f"{topic}/will", qos=1)
    c = connect(broker, V5, will=will(
        f"{topic}/will", b'{"state":"off"}', ContentType="application/json", PayloadFormatIndicator=1,
        ResponseTopic=f"{topic}/resp", CorrelationData=b"\x01\x02", UserProperty=[("k", "v"), ("k", "w")]))
    c.kill()
    m = sub.expect(3)
    assert m.prop("ContentType") == "application/json"
    assert m.prop("PayloadFormatIndicator") == 1
    assert m.prop("ResponseTopic") == f"{topic}/resp"
    assert m.prop("CorrelationData") == b"\x01\x02"
    assert m.prop("UserProperty") == [("k", "v"), ("k", "w")]



def test_will_on_protocol_error(broker, connect, version, topic):
    """[MQTT-3.1.2-8] (3.1.1, listed case) / 5.0 section 3.1.2.5: the server
    closing the connection for a protocol error publishes the will."""
    sub = connect(broker, version)
    sub.subscribe(f"{topic}/will", qos=1)
    raw = RawClient(broker.port)
    try:
        v = 5 if version == V5 else 4
        raw.send(pkt_connect(uid("pe"), version=v, will={"topic": f"{topic}/will", "payload": b"broken", "qos": 1}))
        assert raw.read().type == 2
        raw.send(pkt_publish(f"{topic}/+", b"bad", qos=0, version=v))  # wildcard in a topic name
        _, closed = raw.read_until_closed(3)
        assert closed
        assert sub.expect(3).payload == b"broken"
    finally:
        raw.close()


def test_v311_will_on_takeover(broker, connect, topic):
    """3.1.1 [MQTT-3.1.2-8]: the will is published whenever the connection
    closes without a DISCONNECT from the client; a takeover [MQTT-3.1.4-2]
    closes the old connection that way."""
    sub = connect(broker, V311)
    sub.subscribe(f"{topic}/will", qos=1)
    cid = uid("tk")
    old = connect(broker, V311, client_id=cid, will=will(f"{topic}/will", b"taken-over"))
    connect(broker, V311, client_id=cid)
    old.expect_closed(3)
    assert sub.expect(3).payload == b"taken-over"
