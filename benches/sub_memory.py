#!/usr/bin/env python3
"""What one subscription adds to a connection's memory in mqttd, and how
much of it is the route: CLIENTS clients connect one after another, each
subscribing (QoS 1) either to one topic shared by all (`same`: no new route
after the first) or to a topic of its own (`distinct`: one route each), or
not at all (`none`); mqttd's RSS growth per client is read at 2, 8 and 14 s
after the last one connected.

    python3 benches/sub_memory.py [--clients 5000] [--modes none,same,distinct]

Prints one JSON line per mode. Loopback only; every wait is bounded.
"""

import argparse
import json
import os
import socket
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError("the broker closed a connection")
        data += chunk
    return data


def measure(opts, mode, workdir):
    settings = bl.Settings(queue=1000, inflight=32, mqttd_sets=[])
    broker = bl.start_mqttd(opts.mqttd, workdir, settings, name=f"mqttd-{mode}")
    socks = []
    try:
        base = broker.rss_kb()
        for i in range(opts.clients):
            sock = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
            sock.sendall(bl.mqtt_packet(0x10, bl.mqtt_string("MQTT") + bytes([4, 2]) + struct.pack(">H", 300)
                                + bl.mqtt_string(f"sub-memory-{i}")))
            ack = recv_exactly(sock, 4)
            if ack[0] != 0x20 or ack[3] != 0:
                raise RuntimeError(f"CONNACK {ack!r}")
            if mode != "none":
                topic = "same/topic" if mode == "same" else f"distinct/{i}"
                sock.sendall(bl.mqtt_packet(0x82, struct.pack(">H", 1) + bl.mqtt_string(topic) + bytes([1])))
                suback = recv_exactly(sock, 5)
                if suback[0] != 0x90 or suback[4] != 1:
                    raise RuntimeError(f"SUBACK {suback!r}")
            socks.append(sock)
        result = {"mode": mode, "clients": opts.clients}
        started = time.monotonic()
        for at in (2, 8, 14):
            time.sleep(max(0.0, started + at - time.monotonic()))
            result[f"bytes_per_client_{at}s"] = round((broker.rss_kb() - base) * 1024 / opts.clients)
        if not broker.alive():
            raise RuntimeError("the broker died")
        return result
    finally:
        for sock in socks:
            sock.close()
        broker.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--modes", default="none,same,distinct")
    parser.add_argument("--mqttd", default=bl.default_mqttd())
    opts = parser.parse_args()
    if opts.clients > 15000:
        parser.error("--clients: at most 15,000 (20,000 open files per process)")
    bl.raise_open_files()
    workdir = tempfile.mkdtemp(prefix="sub-memory-")
    for mode in opts.modes.split(","):
        print(json.dumps(measure(opts, mode, workdir)), flush=True)


if __name__ == "__main__":
    main()
