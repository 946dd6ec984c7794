"""`$SYS/brokers/mqttd@127.0.0.1/...` topics (sys.interval=1 here).

Covers: the topics exist, are retained and are re-published every interval;
version matches the binary; uptime grows; clients/connected,
stats/subscriptions/count and stats/retained/count follow what clients do;
message and byte counters grow with traffic; sys.interval=0 turns it off.
"""

import subprocess
import time

from helpers import MQTTD_BIN, SYS_PREFIX, V5, V311

TOPICS = ["version", "uptime", "clients/connected", "stats/subscriptions/count", "stats/retained/count",
          "metrics/messages/received", "metrics/messages/sent", "metrics/messages/dropped",
          "metrics/bytes/received", "metrics/bytes/sent"]
NUMERIC = [t for t in TOPICS if t != "version"]


class SysWatcher:
    def __init__(self, client):
        self.client = client
        self.values: dict[str, bytes] = {}
        self.retained: dict[str, bool] = {}
        self.updates: dict[str, int] = {}
        client.subscribe(f"{SYS_PREFIX}/#", qos=0)

    def poll(self, timeout=0.2):
        for m in self.client.drain(timeout):
            name = m.topic[len(SYS_PREFIX) + 1:]
            self.values[name] = m.payload
            self.retained.setdefault(name, m.retain)
            self.updates[name] = self.updates.get(name, 0) + 1

    def fresh(self, timeout=2.5):
        """Waits for one publication after the retained copies, so that the
        values reflect the present, not the last interval."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and min((self.updates.get(t, 0) for t in TOPICS), default=0) < 2:
            self.poll(0.05)

    def int(self, name):
        return int(self.values[name].decode().strip())

    def wait_for(self, name, predicate, timeout=3.5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0.1)
            if name in self.values and predicate(self.values[name]):
                return self.values[name]
        raise AssertionError(f"$SYS {name}: last value {self.values.get(name)!r} did not satisfy the condition "
                             f"within {timeout}s")

    def wait_int(self, name, predicate, timeout=3.5):
        def ok(v):
            try:
                return predicate(int(v.decode().strip()))
            except ValueError:
                return False
        return int(self.wait_for(name, ok, timeout))


def test_sys_topics_present_and_retained(broker, connect):
    w = SysWatcher(connect(broker, V311))
    w.poll(0.6)  # retained copies arrive right after SUBSCRIBE
    missing = [t for t in TOPICS if t not in w.values]
    assert missing == [], f"missing $SYS topics: {missing}"
    assert all(w.retained[t] for t in TOPICS), {t: w.retained[t] for t in TOPICS}
    for t in NUMERIC:
        assert w.int(t) >= 0, (t, w.values[t])


def test_sys_version_matches_binary(broker, connect):
    out = subprocess.run([MQTTD_BIN, "--version"], capture_output=True, text=True, timeout=5).stdout
    w = SysWatcher(connect(broker, V5))
    version = w.wait_for("version", lambda v: len(v) > 0).decode()
    assert version in out, f"$SYS version {version!r} not in `mqttd --version` output {out!r}"


def test_sys_republished_every_interval_and_uptime_grows(broker, connect):
    w = SysWatcher(connect(broker, V5))
    first = w.wait_int("uptime", lambda v: True)
    later = w.wait_int("uptime", lambda v: v > first, timeout=3.0)
    assert later - first <= 3
    assert w.updates["uptime"] >= 2


def test_sys_uptime_is_sane(broker, connect):
    w = SysWatcher(connect(broker, V5))
    up = w.wait_int("uptime", lambda v: True)
    # The module's broker started at most a few minutes ago.
    assert 0 <= up < 600


def test_sys_clients_connected(broker, connect):
    w = SysWatcher(connect(broker, V5))
    w.wait_int("clients/connected", lambda v: v >= 1)
    w.fresh()
    before = w.int("clients/connected")
    extra = [connect(broker, v) for v in (V311, V5, V5)]
    w.wait_int("clients/connected", lambda v: v >= before + 3)
    for c in extra:
        c.disconnect()
    w.wait_int("clients/connected", lambda v: v <= before)


def test_sys_subscription_count(broker, connect, topic):
    w = SysWatcher(connect(broker, V5))
    w.fresh()
    before = w.int("stats/subscriptions/count")
    c = connect(broker, V311)
    c.subscribe([(f"{topic}/a", 0), (f"{topic}/b", 1), (f"{topic}/+/c", 2)])
    w.wait_int("stats/subscriptions/count", lambda v: v >= before + 3)
    c.unsubscribe(f"{topic}/a")
    c.unsubscribe(f"{topic}/b")
    w.wait_int("stats/subscriptions/count", lambda v: v <= before + 1)


def test_sys_retained_count(broker, connect, topic):
    w = SysWatcher(connect(broker, V5))
    w.fresh()
    before = w.int("stats/retained/count")
    pub = connect(broker, V5)
    pub.publish(f"{topic}/1", b"r", qos=1, retain=True)
    pub.publish(f"{topic}/2", b"r", qos=1, retain=True)
    w.wait_int("stats/retained/count", lambda v: v >= before + 2)
    pub.publish(f"{topic}/1", b"", qos=1, retain=True)
    pub.publish(f"{topic}/2", b"", qos=1, retain=True)
    w.wait_int("stats/retained/count", lambda v: v <= before)


def test_sys_message_and_byte_counters(broker, connect, topic):
    w = SysWatcher(connect(broker, V5))
    w.fresh()
    base = {t: w.int(t) for t in ["metrics/messages/received", "metrics/messages/sent",
                                  "metrics/bytes/received", "metrics/bytes/sent"]}
    sub = connect(broker, V5)
    sub.subscribe(topic, qos=1)
    pub = connect(broker, V5)
    for _ in range(5):
        pub.publish(topic, b"p" * 1000, qos=1)
    sub.expect_n(5)
    w.wait_int("metrics/messages/received", lambda v: v >= base["metrics/messages/received"] + 5)
    w.wait_int("metrics/messages/sent", lambda v: v >= base["metrics/messages/sent"] + 5)
    w.wait_int("metrics/bytes/received", lambda v: v >= base["metrics/bytes/received"] + 5000)
    w.wait_int("metrics/bytes/sent", lambda v: v >= base["metrics/bytes/sent"] + 5000)


def test_sys_disabled_with_interval_zero(broker_factory, connect):
    b = broker_factory("sys.interval=0")
    c = connect(b, V5)
    c.subscribe("$SYS/#", qos=0)
    c.expect_silence(1.5)
