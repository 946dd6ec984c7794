"""Graceful shutdown of the mqttd process.

Covers: on SIGTERM every MQTT 5.0 client receives DISCONNECT with reason
0x8B (Server shutting down) and its connection is closed by the server
[MQTT-3.14.4-2], 3.1.1 clients are simply disconnected, and the process
exits 0 within 5 s; SIGINT does the same; an idle broker stops at once.
"""

import signal
import time

from helpers import DISCONNECT, V5, RawClient, uid


def test_sigterm_v5_clients_get_server_shutting_down(broker_factory, connect):
    b = broker_factory()
    raws = []
    for _ in range(3):
        r = RawClient(b.port)
        assert r.connect(uid("sd"), version=5).reason == 0
        raws.append(r)
    paho = connect(b, V5)
    t0 = time.monotonic()
    b.signal(signal.SIGTERM)
    try:
        for r in raws:
            packets, closed = r.read_until_closed(5)
            assert [(p.type, p.reason) for p in packets] == [(DISCONNECT, 0x8B)]
            assert closed, "server did not close the connection after its DISCONNECT"
        paho.expect_closed(5, reason=0x8B)
        code = b.wait_exit(max(5 - (time.monotonic() - t0), 0.1))
        assert code == 0, f"exit code {code}:\n{b.log_tail()}"
    finally:
        for r in raws:
            r.close()


def test_sigterm_v311_client_disconnected(broker_factory):
    b = broker_factory()
    r = RawClient(b.port)
    try:
        assert r.connect(uid("sd"), version=4).reason == 0
        t0 = time.monotonic()
        b.signal(signal.SIGTERM)
        packets, closed = r.read_until_closed(5)
        assert closed
        assert packets == []  # 3.1.1 has no server-to-client DISCONNECT
        assert b.wait_exit(max(5 - (time.monotonic() - t0), 0.1)) == 0
    finally:
        r.close()


def test_sigterm_idle_broker_exits_quickly(broker_factory):
    b = broker_factory()
    t0 = time.monotonic()
    b.signal(signal.SIGTERM)
    assert b.wait_exit(5) == 0
    assert time.monotonic() - t0 < 2


def test_sigint_exits_zero(broker_factory, connect):
    b = broker_factory()
    c = connect(b, V5)
    b.signal(signal.SIGINT)
    c.expect_closed(5, reason=0x8B)
    assert b.wait_exit(5) == 0

