"""Wire-level protocol rules, checked with a raw socket client.

Covers: CONNECT must come first and only once; unsupported protocol levels
are refused; MQTT 3.1 (MQIsdp) is accepted; empty client ids (3.1.1 rules)
and mqtt.max_clientid_len; PINGREQ/PINGRESP; QoS 2 exactly-once with a
duplicate PUBLISH before PUBREL; malformed or invalid packets (wildcards in
a topic name, QoS 3, bad SUBSCRIBE flags, bad filters, bad remaining
length, ill-formed UTF-8) close that client only, with the 5.0 reason code
where one is due; mqtt.connect_timeout; auth.allow_anonymous=deny.
"""

import struct
import time

import pytest

from helpers import (CONNACK, DISCONNECT, PINGRESP, PUBCOMP, PUBREC, PUBREL, SUBACK, V5, RawClient, mstr,
                     packet, pkt_ack, pkt_connect, pkt_publish, pkt_subscribe, uid)

LEVELS = {"v311": 4, "v5": 5}


@pytest.fixture(params=["v311", "v5"])
def level(request):
    return LEVELS[request.param]


@pytest.fixture
def raw_clients():
    made = []

    def make(port, **kw):
        r = RawClient(port, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def connect_raw(raw_clients, broker, level, **kw):
    r = raw_clients(broker.port)
    p = r.connect(uid("raw"), version=level, **kw)
    assert p.reason == 0
    return r


def assert_closed(r, level, v5_codes=None, timeout=3):
    """The server closed the connection; for 5.0 any DISCONNECT it sent
    carries one of `v5_codes`; 3.1.1 gets no packet at all."""
    packets, closed = r.read_until_closed(timeout)
    assert closed, f"connection still open; got {packets}"
    if level == 5 and v5_codes is not None:
        for p in packets:
            assert p.type == DISCONNECT and p.reason in v5_codes, (p.type, hex(p.reason) if p.body else None)
    elif level == 4:
        assert packets == [], packets


def test_first_packet_must_be_connect(broker, raw_clients):
    """[MQTT-3.1.0-1]."""
    r = raw_clients(broker.port)
    r.send(packet(12, 0, b""))  # PINGREQ
    packets, closed = r.read_until_closed(3)
    assert closed and all(p.type != PINGRESP for p in packets)


def test_second_connect_is_protocol_error(broker, raw_clients, level):
    """[MQTT-3.1.0-2]."""
    r = connect_raw(raw_clients, broker, level)
    r.send(pkt_connect(uid("again"), version=level))
    assert_closed(r, level, v5_codes={0x82})


@pytest.mark.parametrize("name,lvl", [("MQTT", 6), ("MQTT", 2), ("XMPP", 4)])
def test_unsupported_protocol_refused(broker, raw_clients, name, lvl):
    """[MQTT-3.1.2-1/2] (3.1.1): CONNACK 0x01 (or 5.0's 0x84) then close;
    a wrong protocol name may also just be closed."""
    r = raw_clients(broker.port)
    body = mstr(name) + bytes([lvl, 0x02]) + struct.pack("!H", 30) + mstr(uid("lvl"))
    r.send(packet(1, 0, body))
    packets, closed = r.read_until_closed(3)
    assert closed
    assert all(p.type == CONNACK for p in packets)
    if name == "MQTT":
        assert len(packets) == 1 and packets[0].reason in (0x01, 0x84), packets


def test_mqtt31_accepted(broker, raw_clients):
    r = raw_clients(broker.port)
    body = mstr("MQIsdp") + bytes([3, 0x02]) + struct.pack("!H", 30) + mstr(uid("m31")[:23])
    r.send(packet(1, 0, body))
    p = r.read()
    assert p is not None and p.type == CONNACK and p.reason == 0


def test_v311_empty_client_id_clean_session_accepted(broker, raw_clients):
    """[MQTT-3.1.3-6/7]."""
    r = raw_clients(broker.port)
    r.send(pkt_connect("", version=4, clean=True))
    p = r.read()
    assert p.type == CONNACK and p.reason == 0


def test_v311_empty_client_id_persistent_refused(broker, raw_clients):
    """[MQTT-3.1.3-8]: CONNACK 0x02 (identifier rejected), then close."""
    r = raw_clients(broker.port)
    r.send(pkt_connect("", version=4, clean=False))
    p = r.read()
    assert p is not None and p.type == CONNACK and p.reason == 0x02
    _, closed = r.read_until_closed(3)
    assert closed


def test_max_clientid_len(broker_factory, raw_clients, level):
    b = broker_factory("mqtt.max_clientid_len=10")
    ok = raw_clients(b.port)
    assert ok.connect("a" * 10, version=level).reason == 0
    r = raw_clients(b.port)
    r.send(pkt_connect("b" * 11, version=level))
    p = r.read()
    assert p is not None and p.type == CONNACK
    assert p.reason == (0x02 if level == 4 else 0x85)


def test_ping(broker, raw_clients, level):
    r = connect_raw(raw_clients, broker, level)
    r.send(packet(12, 0, b""))
    p = r.read()
    assert p is not None and p.type == PINGRESP


def test_qos2_duplicate_before_pubrel_delivered_once(broker, connect, raw_clients, level, topic):
    """Section 4.3.3: the receiver of a QoS 2 PUBLISH must not deliver it
    again for a re-sent PUBLISH (DUP=1, same packet id) before PUBREL."""
    sub = connect(broker, V5)
    sub.subscribe(topic, qos=2)
    r = connect_raw(raw_clients, broker, level)
    r.send(pkt_publish(topic, b"once", qos=2, pid=7, version=level))
    p = r.read()
    assert p.type == PUBREC and p.body[:2] == struct.pack("!H", 7)
    r.send(pkt_publish(topic, b"once", qos=2, pid=7, version=level, dup=True))
    p = r.read()
    assert p.type == PUBREC and p.body[:2] == struct.pack("!H", 7)
    r.send(pkt_ack(PUBREL, 7))
    p = r.read()
    assert p.type == PUBCOMP and p.body[:2] == struct.pack("!H", 7)
    msgs = sub.collect(1)
    assert [m.payload for m in msgs] == [b"once"]


def test_qos2_packet_id_reusable_after_pubcomp(broker, connect, raw_clients, level, topic):
    sub = connect(broker, V5)
    sub.subscribe(topic, qos=2)
    r = connect_raw(raw_clients, broker, level)
    for payload in (b"first", b"second"):
        r.send(pkt_publish(topic, payload, qos=2, pid=9, version=level))
        assert r.read().type == PUBREC
        r.send(pkt_ack(PUBREL, 9))
        assert r.read().type == PUBCOMP
    assert [m.payload for m in sub.expect_n(2)] == [b"first", b"second"]


@pytest.mark.parametrize("bad_topic", ["a/+/b", "a/#", "", "a\u0000b"], ids=["plus", "hash", "empty", "nul"])
def test_invalid_topic_name_in_publish(broker, connect, raw_clients, level, topic, bad_topic):
    """[MQTT-3.3.2-1/2], [MQTT-4.7.3-1/2]: a topic name with wildcards, an
    empty one (without alias) or one with U+0000 is an error: the client is
    disconnected (5.0: 0x90 Topic Name invalid, 0x82 or 0x81), the others are
    not."""
    bystander = connect(broker, V5)
    bystander.subscribe(f"{topic}/#", qos=1)
    r = connect_raw(raw_clients, broker, level)
    r.send(pkt_publish(f"{topic}/{bad_topic}" if bad_topic else "", b"x", qos=1, version=level))
    assert_closed(r, level, v5_codes={0x90, 0x82, 0x81})
    connect(broker, V5).publish(f"{topic}/fine", b"still-works", qos=1)
    assert bystander.expect().payload == b"still-works"


def test_qos3_publish_is_malformed(broker, raw_clients, level, topic):
    """[MQTT-3.3.1-4]: both QoS bits set is malformed."""
    r = connect_raw(raw_clients, broker, level)
    body = mstr(topic) + struct.pack("!H", 1) + (b"\x00" if level == 5 else b"") + b"x"
    r.send(packet(3, 0x06, body))
    assert_closed(r, level, v5_codes={0x81, 0x82})


def test_subscribe_with_wrong_fixed_header_flags(broker, raw_clients, level, topic):
    """[MQTT-3.8.1-1]: SUBSCRIBE flags must be 0010."""
    r = connect_raw(raw_clients, broker, level)
    sub = pkt_subscribe(1, [(topic, 1)], version=level)
    r.send(bytes([0x80]) + sub[1:])
    assert_closed(r, level, v5_codes={0x81})


def test_subscribe_without_filters(broker, raw_clients, level):
    """[MQTT-3.8.3-3] (3.1.1) / [MQTT-3.8.3-2] (5.0): at least one filter."""
    r = connect_raw(raw_clients, broker, level)
    r.send(pkt_subscribe(1, [], version=level))
    assert_closed(r, level, v5_codes={0x81, 0x82})


@pytest.mark.parametrize("bad_filter", ["a/#/b", "a/b#", "a+/b", ""], ids=["hash-middle", "hash-glued",
                                                                          "plus-glued", "empty"])
def test_invalid_topic_filter(broker, raw_clients, level, topic, bad_filter):
    """Section 4.7.1: misplaced wildcards / empty filters are invalid: 5.0
    answers SUBACK 0x8F (Topic Filter invalid) or disconnects; 3.1.1 answers
    SUBACK 0x80 or closes the connection."""
    r = connect_raw(raw_clients, broker, level)
    f = f"{topic}/{bad_filter}" if bad_filter else ""
    r.send(pkt_subscribe(1, [(f, 1)], version=level))
    first = r.read(3)
    if first is not None and first.type == SUBACK:
        assert first.body[-1] == (0x80 if level == 4 else 0x8F), hex(first.body[-1])
        return
    packets, closed = r.read_until_closed(3)
    packets = ([first] if first else []) + packets
    assert closed, f"neither SUBACK failure nor close: {packets}"
    if level == 5:
        assert all(p.type == DISCONNECT and p.reason in (0x8F, 0x81, 0x82) for p in packets), packets
    else:
        assert packets == [], packets


def test_bad_remaining_length(broker, raw_clients, level):
    """A remaining length of more than four bytes is malformed."""
    r = connect_raw(raw_clients, broker, level)
    r.send(bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]))
    assert_closed(r, level, v5_codes={0x81})


def test_malformed_packet_affects_only_that_client(broker, connect, raw_clients, level, topic):
    sub = connect(broker, V5)
    sub.subscribe(topic, qos=1)
    bad = connect_raw(raw_clients, broker, level)
    bad.send(b"\xf0\x00")  # packet type 15 (AUTH) is not valid in 3.1.1 and needs a CONNECT auth method in 5.0
    _, closed = bad.read_until_closed(3)
    assert closed
    connect(broker, V5).publish(topic, b"unaffected", qos=1)
    assert sub.expect().payload == b"unaffected"


def test_connect_timeout(broker_factory, raw_clients):
    """mqtt.connect_timeout: a connection that sends no CONNECT is closed."""
    b = broker_factory("mqtt.connect_timeout=1")
    r = raw_clients(b.port)
    t0 = time.monotonic()
    packets, closed = r.read_until_closed(4)
    assert closed and packets == []
    assert 0.8 <= time.monotonic() - t0 <= 3


def test_anonymous_denied(broker_factory, raw_clients, level):
    """auth.allow_anonymous=deny: CONNACK refuses (3.1.1: 0x05 not
    authorized or 0x04; 5.0: 0x87 not authorized or 0x86), then close."""
    b = broker_factory("auth.allow_anonymous=deny")
    r = raw_clients(b.port)
    r.send(pkt_connect(uid("anon"), version=level))
    p = r.read()
    assert p is not None and p.type == CONNACK
    assert p.reason in ((0x04, 0x05) if level == 4 else (0x86, 0x87)), hex(p.reason)
    _, closed = r.read_until_closed(3)
    assert closed


def test_invalid_utf8_topic_name(broker, raw_clients, level):
    """[MQTT-1.5.3-1] (3.1.1 [MQTT-1.5.3-1] too): ill-formed UTF-8 in a topic
    name is malformed: the connection is closed (5.0: 0x81 or 0x90 or 0x82)."""
    r = connect_raw(raw_clients, broker, level)
    bad = b"t/\xc3\x28"
    body = struct.pack("!H", len(bad)) + bad + (b"\x00" if level == 5 else b"") + b"x"
    r.send(packet(3, 0, body))
    assert_closed(r, level, v5_codes={0x81, 0x82, 0x90})


def test_utf16_surrogate_in_topic_filter(broker, raw_clients, level):
    """[MQTT-1.5.3-1]: UTF-16 surrogates (ED A0 80) are not valid UTF-8."""
    r = connect_raw(raw_clients, broker, level)
    bad = b"t/\xed\xa0\x80"
    body = struct.pack("!H", 1) + (b"\x00" if level == 5 else b"") + struct.pack("!H", len(bad)) + bad + b"\x01"
    r.send(packet(8, 2, body))
    first = r.read(3)
    if first is not None and first.type == SUBACK:
        pytest.fail(f"SUBACK for an ill-formed UTF-8 filter: {first.body!r}")
    packets, closed = r.read_until_closed(3)
    assert first is None or first.type == DISCONNECT
    assert closed
