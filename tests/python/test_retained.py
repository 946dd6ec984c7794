"""Retained messages, for MQTT 3.1.1 and 5.0.

Covers: a retained message is stored and sent (retain flag set) to new
subscribers, including wildcard ones; a newer one replaces it; an empty
retained payload deletes it and is still forwarded to current subscribers;
live deliveries to existing subscribers carry retain=0; retained QoS is
capped by the subscription; re-subscribing re-sends; v5 Retain Handling
0/1/2 and Retain As Published; v5 properties kept with the stored message;
a retained message published through a topic alias; the retainer limits
from the config (and $SYS not using them up); mqtt.retain_available=false.
"""

import time

import pytest

from helpers import DISCONNECT, V5, RawClient, pkt_publish


def test_retained_sent_to_new_subscriber(broker, connect, version, topic):
    pub = connect(broker, version)
    pub.publish(topic, b"last", qos=1, retain=True)
    sub = connect(broker, version)
    sub.subscribe(topic, qos=1)
    m = sub.expect()
    assert (m.topic, m.payload, m.retain, m.qos) == (topic, b"last", True, 1)
    sub.expect_silence(0.3)


def test_retained_replaced_by_newer(broker, connect, version, topic):
    pub = connect(broker, version)
    pub.publish(topic, b"one", qos=1, retain=True)
    pub.publish(topic, b"two", qos=1, retain=True)
    sub = connect(broker, version)
    sub.subscribe(topic, qos=1)
    assert [m.payload for m in sub.collect(1)] == [b"two"]


def test_empty_retained_payload_deletes(broker, connect, version, topic):
    """[MQTT-3.3.1-10/11] (3.1.1), [MQTT-3.3.1-6/7] (5.0)."""
    pub = connect(broker, version)
    pub.publish(topic, b"soon-gone", qos=1, retain=True)
    pub.publish(topic, b"", qos=1, retain=True)
    sub = connect(broker, version)
    sub.subscribe(topic, qos=1)
    sub.expect_silence(0.3)


def test_empty_retained_forwarded_to_existing_subscribers(broker, connect, version, topic):
    """3.1.1 section 3.3.1.3: a zero-byte retained PUBLISH is processed as
    normal and sent to current subscribers."""
    sub = connect(broker, version)
    sub.subscribe(topic, qos=1)
    pub = connect(broker, version)
    pub.publish(topic, b"", qos=1, retain=True)
    m = sub.expect()
    assert m.payload == b""


def test_non_retained_publish_keeps_retained_message(broker, connect, version, topic):
    """A PUBLISH with retain=0 neither stores nor removes the retained one."""
    pub = connect(broker, version)
    pub.publish(topic, b"kept", qos=1, retain=True)
    pub.publish(topic, b"transient", qos=1, retain=False)
    sub = connect(broker, version)
    sub.subscribe(topic, qos=1)
    assert [m.payload for m in sub.collect(1)] == [b"kept"]


def test_retained_sent_on_wildcard_subscribe(broker, connect, version, topic):
    pub = connect(broker, version)
    for t in ["a/x", "b/x", "b/y", "c/d/x"]:
        pub.publish(f"{topic}/{t}", t.encode(), qos=1, retain=True)
    sub = connect(broker, version)
    sub.subscribe(f"{topic}/+/x", qos=1)
    msgs = sub.collect(2)
    assert sorted(m.topic for m in msgs) == [f"{topic}/a/x", f"{topic}/b/x"]
    assert all(m.retain for m in msgs)
    sub2 = connect(broker, version)
    sub2.subscribe(f"{topic}/#", qos=1)
    msgs = sub2.collect(4)
    assert sorted(m.payload for m in msgs) == [b"a/x", b"b/x", b"b/y", b"c/d/x"]
    assert all(m.retain for m in msgs)


def test_live_delivery_has_retain_flag_cleared(broker, connect, version, topic):
    """[MQTT-3.3.1-9] (3.1.1); 5.0 with Retain As Published = 0 [MQTT-3.3.1-13]:
    existing subscribers get retain=0."""
    sub = connect(broker, version)
    sub.subscribe(topic, qos=1)
    pub = connect(broker, version)
    pub.publish(topic, b"live", qos=1, retain=True)
    m = sub.expect()
    assert (m.payload, m.retain) == (b"live", False)
    # ... and the message was stored all the same.
    late = connect(broker, version)
    late.subscribe(topic, qos=1)
    m = late.expect()
    assert (m.payload, m.retain) == (b"live", True)


def test_retained_not_resent_to_existing_subscriber(broker, connect, version, topic):
    sub = connect(broker, version)
    sub.subscribe(topic, qos=1)
    pub = connect(broker, version)
    pub.publish(topic, b"r1", qos=1, retain=True)
    assert sub.expect().payload == b"r1"
    sub.expect_silence(0.3)


@pytest.mark.parametrize("stored_qos,sub_qos,expected", [(2, 1, 1), (1, 2, 1), (2, 0, 0), (0, 2, 0)])
def test_retained_qos_is_minimum(broker, connect, version, topic, stored_qos, sub_qos, expected):
    pub = connect(broker, version)
    pub.publish(topic, b"q", qos=stored_qos, retain=True)
    sub = connect(broker, version)
    sub.subscribe(topic, qos=sub_qos)
    assert sub.expect().qos == expected


def test_resubscribe_resends_retained(broker, connect, version, topic):
    """[MQTT-3.8.4-3] (3.1.1): retained messages are re-sent when a
    subscription is replaced; 5.0 with Retain Handling 0 [MQTT-3.3.1-9]."""
    pub = connect(broker, version)
    pub.publish(topic, b"again", qos=1, retain=True)
    sub = connect(broker, version)
    sub.subscribe(topic, qos=1)
    assert sub.expect().payload == b"again"
    sub.subscribe(topic, qos=1)
    m = sub.expect()
    assert (m.payload, m.retain) == (b"again", True)


def test_retained_survives_publisher_disconnect(broker, connect, version, topic):
    pub = connect(broker, version)
    pub.publish(topic, b"stays", qos=1, retain=True)
    pub.disconnect()
    sub = connect(broker, version)
    sub.subscribe(topic, qos=1)
    assert sub.expect().payload == b"stays"


# ---- MQTT 5.0 subscription options ----------------------------------------


def test_v5_retain_handling_0_sends_every_time(broker, connect, topic):
    connect(broker, V5).publish(topic, b"rh0", qos=1, retain=True)
    sub = connect(broker, V5)
    sub.subscribe(topic, qos=1, rh=0)
    assert sub.expect().payload == b"rh0"
    sub.subscribe(topic, qos=1, rh=0)
    assert sub.expect().payload == b"rh0"


def test_v5_retain_handling_1_only_for_new_subscription(broker, connect, topic):
    """[MQTT-3.3.1-10]: sent only if the subscription did not exist."""
    connect(broker, V5).publish(topic, b"rh1", qos=1, retain=True)
    sub = connect(broker, V5)
    sub.subscribe(topic, qos=1, rh=1)
    assert sub.expect().payload == b"rh1"
    sub.subscribe(topic, qos=1, rh=1)
    sub.expect_silence(0.3)


def test_v5_retain_handling_2_never_sends(broker, connect, topic):
    """[MQTT-3.3.1-11]."""
    pub = connect(broker, V5)
    pub.publish(topic, b"rh2", qos=1, retain=True)
    sub = connect(broker, V5)
    sub.subscribe(topic, qos=1, rh=2)
    sub.expect_silence(0.3)
    # Live messages still flow.
    pub.publish(topic, b"live", qos=1)
    assert sub.expect().payload == b"live"


def test_v5_retain_as_published_keeps_flag(broker, connect, topic):
    """[MQTT-3.3.1-12]: with Retain As Published, forwarded messages keep the
    RETAIN flag they were published with."""
    sub = connect(broker, V5)
    sub.subscribe(topic, qos=1, rap=True)
    pub = connect(broker, V5)
    pub.publish(topic, b"kept-flag", qos=1, retain=True)
    pub.publish(topic, b"plain", qos=1, retain=False)
    msgs = sub.expect_n(2)
    assert [(m.payload, m.retain) for m in msgs] == [(b"kept-flag", True), (b"plain", False)]


def test_v5_retained_sent_on_subscribe_has_retain_flag_regardless_of_rap(broker, connect, topic):
    connect(broker, V5).publish(topic, b"stored", qos=1, retain=True)
    sub = connect(broker, V5)
    sub.subscribe(topic, qos=1, rap=False)
    m = sub.expect()
    assert m.retain is True


# ---- retainer limits from the configuration --------------------------------


def test_retainer_max_payload_size(broker_factory, connect, version, topic):
    b = broker_factory("retainer.max_payload_size=16")
    pub = connect(b, version)
    pub.publish(f"{topic}/small", b"x" * 16, qos=1, retain=True)
    pub.publish(f"{topic}/big", b"x" * 17, qos=1, retain=True)
    sub = connect(b, version)
    sub.subscribe(f"{topic}/#", qos=1)
    assert [m.topic for m in sub.collect(1)] == [f"{topic}/small"]


def test_retainer_max_payload_size_still_delivers_live(broker_factory, connect, topic):
    """Too big to retain is not too big to deliver."""
    b = broker_factory("retainer.max_payload_size=16")
    sub = connect(b, V5)
    sub.subscribe(topic, qos=1)
    connect(b, V5).publish(topic, b"y" * 100, qos=1, retain=True)
    assert sub.expect().payload == b"y" * 100


def test_retainer_max_retained_messages(broker_factory, connect, topic):
    b = broker_factory("retainer.max_retained_messages=2", "sys.interval=0")
    pub = connect(b, V5)
    for i in range(4):
        pub.publish(f"{topic}/{i}", str(i).encode(), qos=1, retain=True)
    sub = connect(b, V5)
    sub.subscribe(f"{topic}/#", qos=1)
    msgs = sub.collect(2)
    assert 1 <= len(msgs) <= 2, [m.topic for m in msgs]


def test_sys_topics_do_not_use_up_the_retained_limit(broker_factory, connect, topic):
    """The broker's own $SYS publications must not take the slots that
    retainer.max_retained_messages gives to clients: with a limit of 2 and
    $SYS on, a client's retained message must still be stored."""
    b = broker_factory("retainer.max_retained_messages=2", "sys.interval=1")
    time.sleep(0.3)  # the first $SYS round goes out at start-up
    pub = connect(b, V5)
    pub.publish(f"{topic}/0", b"mine", qos=1, retain=True)
    sub = connect(b, V5)
    sub.subscribe(f"{topic}/#", qos=1)
    assert [m.payload for m in sub.collect(1)] == [b"mine"]


def test_retain_available_false_announced(broker_factory, connect):
    b = broker_factory("mqtt.retain_available=false")
    c = connect(b, V5)
    assert getattr(c.connack_properties, "RetainAvailable", None) == 0


def test_retain_available_false_refuses_retained_publish(broker_factory, topic):
    """5.0 section 3.2.2.3.5: a retained PUBLISH when Retain Available is 0
    is a protocol violation answered with DISCONNECT 0x9A (Retain not
    supported) [MQTT-3.2.2-14]."""
    b = broker_factory("mqtt.retain_available=false")
    raw = RawClient(b.port)
    raw.connect(version=5)
    raw.send(pkt_publish(topic, b"r", qos=0, retain=True))
    packets, closed = raw.read_until_closed(3)
    raw.close()
    assert closed, "connection not closed"
    assert [(p.type, p.reason) for p in packets if p.type == DISCONNECT] == [(DISCONNECT, 0x9A)]


def test_v5_retained_message_keeps_properties(broker, connect, topic):
    """5.0 section 3.3.1.3: the retained Application Message is stored with
    its properties and sent with them to later subscribers."""
    connect(broker, V5).publish(topic, b"{}", qos=1, retain=True, properties={
        "ContentType": "application/json", "UserProperty": [("origin", "sensor-1")],
        "ResponseTopic": f"{topic}/r", "CorrelationData": b"cd", "PayloadFormatIndicator": 1})
    sub = connect(broker, V5)
    sub.subscribe(topic, qos=1)
    m = sub.expect()
    assert m.prop("ContentType") == "application/json"
    assert m.prop("UserProperty") == [("origin", "sensor-1")]
    assert m.prop("ResponseTopic") == f"{topic}/r"
    assert m.prop("CorrelationData") == b"cd"
    assert m.prop("PayloadFormatIndicator") == 1


def test_v5_retained_published_through_topic_alias(broker, connect, topic):
    """A retained PUBLISH that names its topic only by alias is stored under
    the topic the alias stands for."""
    pub = connect(broker, V5)
    pub.publish(f"{topic}/via-alias", b"first", qos=1, properties={"TopicAlias": 4})
    pub.publish("", b"stored", qos=1, retain=True, properties={"TopicAlias": 4})
    sub = connect(broker, V5)
    sub.subscribe(f"{topic}/#", qos=1)
    assert [(m.topic, m.payload) for m in sub.collect(1)] == [(f"{topic}/via-alias", b"stored")]
