"""Access-control attacks through the paho-mqtt client (MQTT 3.1.1 and 5.0)
and mosquitto_sub, provisioned with mqttctl and its admin token file.

The byte-level versions of these (and the attacks no client library can
express) are in tests/attacks.rs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

import helpers
from helpers import V5, uid

MQTTCTL = os.path.join(os.path.dirname(helpers.MQTTD_BIN), "mqttctl")


def grpc_port(broker) -> int:
    """The embedded control plane's port, from the broker's log."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = broker.log_path.read_text(errors="replace")
        for line in text.splitlines():
            if "control plane serving gRPC" in line and "local_addr=" in line:
                return int(line.split("local_addr=")[1].split()[0].rsplit(":", 1)[1])
        time.sleep(0.05)
    raise AssertionError(f"no gRPC address in the log:\n{broker.log_tail()}")


def mqttctl(broker, *args: str) -> None:
    cmd = [MQTTCTL, "--server", f"http://127.0.0.1:{grpc_port(broker)}",
           "--token-file", str(broker.data_dir / "admin.token"), *args]
    env = {k: v for k, v in os.environ.items() if k != "MQTTD_TOKEN"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, f"mqttctl {args}: {done.stderr}"


def eventually(probe, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def login(connect, broker, version, user, password, **kw):
    client = connect(broker, version, do_connect=False, **kw)
    client.paho.username_pw_set(user, password)
    return client


@pytest.fixture
def secured(broker_factory):
    b = broker_factory()
    mqttctl(b, "users", "add", "root", "--password", "r", "--superuser")
    for user, password in [("alice", "a"), ("bob", "b")]:
        mqttctl(b, "users", "add", user, "--password", password)
    mqttctl(b, "acl", "add", "--deny", "--action", "subscribe", "--topic", "secret/#", "--all")
    mqttctl(b, "acl", "add", "--deny", "--action", "publish", "--topic", "readonly/#", "--all")
    return b


def test_wildcard_subscription_cannot_pass_a_deny_rule(secured, connect, version):
    def refused(filter_):
        c = login(connect, secured, version, "alice", "a")
        c.connect()
        codes = c.subscribe(filter_, 1)
        c.close_quietly()
        return codes[0] >= 0x80

    eventually(lambda: refused("secret/x"), "the deny rule")
    for filter_ in ["#", "secret/+", "+/x", "$share/g/#"]:
        assert refused(filter_), filter_
    assert not refused("public/#")


def test_will_on_a_denied_topic_is_refused_at_connect(secured, connect, version):
    def attempt():
        c = login(connect, secured, version, "alice", "a",
                  will={"topic": "readonly/status", "payload": b"gone", "qos": 1})
        c.connect(expect_success=False)
        return c.connack_rc

    # 0x87 for 5.0; return code 5 for 3.1.1, which paho reports as 0x87 too.
    eventually(lambda: attempt() == 0x87, "the refusal of the will")


def test_another_user_cannot_resume_a_session(secured, connect, version):
    client_id = uid()
    eventually(lambda: login(connect, secured, V5, "root", "r").connect(expect_success=False).connack_rc == 0,
               "the users")
    alice = login(connect, secured, version, "alice", "a", client_id=client_id, clean=False, session_expiry=300)
    alice.connect()
    alice.subscribe("inbox/#", 1)
    alice.paho.disconnect()
    time.sleep(0.2)
    root = login(connect, secured, V5, "root", "r")
    root.connect()
    root.publish("inbox/alice", b"for alice only", qos=1)
    bob = login(connect, secured, version, "bob", "b", client_id=client_id, clean=False, session_expiry=300)
    bob.connect()
    assert bob.session_present is False
    bob.expect_silence(timeout=0.8)


@pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="mosquitto-clients not installed")
def test_mosquitto_sub_on_hash_is_refused_under_a_deny_rule(secured):
    # -E: exit once the SUBACK is in; mosquitto_sub reports a refusal as
    # "All subscription requests were denied." (and exits 0).
    def refused(protocol):
        done = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(secured.port), "-u", "alice", "-P", "a",
                               "-V", protocol, "-t", "#", "-E", "-W", "5"],
                              capture_output=True, text=True, timeout=15)
        return "all subscription requests were denied" in (done.stderr + done.stdout).lower()

    for protocol in ["mqttv5", "mqttv311"]:
        eventually(lambda: refused(protocol), f"mosquitto_sub's refusal ({protocol})")


def test_resumed_session_is_judged_as_the_new_connection(broker_factory, connect, version):
    """A persistent session resumed from another address keeps only what
    the rules allow there: its subscriptions and queued messages included."""
    b = broker_factory("auth.acl_no_match=deny")
    mqttctl(b, "users", "add", "root", "--password", "r", "--superuser")
    mqttctl(b, "users", "add", "alice", "--password", "a")
    mqttctl(b, "acl", "add", "--allow", "--action", "subscribe", "--topic", "secret/#", "--ipaddr", "127.0.0.1/32")
    mqttctl(b, "acl", "add", "--allow", "--action", "subscribe", "--topic", "news/#", "--all")
    client_id = uid()

    def alice(bind):
        c = login(connect, b, version, "alice", "a", client_id=client_id, clean=False, session_expiry=300)
        c.paho.connect(c.host, c.port, keepalive=c.keepalive, bind_address=bind,
                       **({"clean_start": False, "properties": c._connect_props} if version == V5 else {}))
        c.paho.loop_start()
        assert c.connected.wait(5) and c.connack_rc == 0, f"alice from {bind}: rc={c.connack_rc}"
        return c

    eventually(lambda: login(connect, b, V5, "root", "r").connect(expect_success=False).connack_rc == 0, "the users")
    first = alice("127.0.0.1")
    eventually(lambda: first.subscribe("secret/#", 1)[0] < 0x80, "the rule for 127.0.0.1")
    first.subscribe("news/#", 1)
    first.paho.disconnect()
    time.sleep(0.3)
    root = login(connect, b, V5, "root", "r")
    root.connect()
    root.publish("secret/plans", b"for 127.0.0.1 only", qos=1)
    root.publish("news/today", b"for everyone", qos=1)
    second = alice("127.0.0.2")
    assert second.session_present is True
    got = [m.topic for m in second.collect(1, timeout=2)]
    assert got == ["news/today"], f"received from 127.0.0.2: {got}"
    root.publish("secret/more", b"still not", qos=1)
    second.expect_silence(timeout=0.8)


def test_presence_events_are_for_superusers_once_users_exist(secured, connect, version):
    eventually(lambda: login(connect, secured, V5, "root", "r").connect(expect_success=False).connack_rc == 0,
               "the users")
    alice = login(connect, secured, version, "alice", "a")
    alice.connect()
    for filter_ in ["$SYS/#", "$SYS/brokers/+/clients/+/connected", "$SYS/+/+/clients/#"]:
        assert alice.subscribe(filter_, 0)[0] >= 0x80, filter_
    assert alice.subscribe("$SYS/brokers/+/uptime", 0)[0] < 0x80, "other $SYS topics stay readable"
    root = login(connect, secured, version, "root", "r")
    root.connect()
    assert root.subscribe("$SYS/brokers/+/clients/#", 0)[0] < 0x80
