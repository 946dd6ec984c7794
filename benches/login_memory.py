#!/usr/bin/env python3
"""Memory per idle client that logged in with a built-in user's password.

Starts mqttd (release build, fresh data directory, its control plane's gRPC
on a free port), adds the user `alice` with `mqttctl users add`, logs one
client in, waits, reads mqttd's RSS, then logs CLIENTS more clients in as
alice (the first login checks the argon2 hash; the others are answered
from the password cache) and reads the RSS again 8 s later. Prints the RSS
growth per client.

    python3 benches/login_memory.py [--clients 5000] [--mqttd PATH] [--mqttctl PATH]

Loopback only; every wait is bounded; the broker is stopped at the end.
"""

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def connect(port, n):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    client_id, user, password = f"c{n}".encode(), b"alice", b"pw"
    body = struct.pack(">H", 4) + b"MQTT" + bytes([4, 0xC2]) + struct.pack(">H", 600)
    for field in (client_id, user, password):
        body += struct.pack(">H", len(field)) + field
    sock.sendall(bl.mqtt_packet(0x10, body))
    ack = sock.recv(4)
    if len(ack) != 4 or ack[3] != 0:
        raise RuntimeError(f"client {n}: CONNACK {ack!r}")
    return sock


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--mqttd", default=bl.default_mqttd())
    parser.add_argument("--mqttctl", default=os.path.join(os.path.dirname(bl.default_mqttd()), "mqttctl"))
    opts = parser.parse_args()
    bl.need_executable(opts.mqttd, "mqttd (cargo build --release -p mqttd)")
    bl.need_executable(opts.mqttctl, "mqttctl (cargo build --release -p mqttctl)")
    bl.raise_open_files(opts.clients + 1000)
    with tempfile.TemporaryDirectory(prefix="login-memory-") as work:
        port, grpc = bl.free_port(), bl.free_port()
        data = os.path.join(work, "data")
        argv = [opts.mqttd]
        for setting in (f"listeners.tcp.bind=127.0.0.1:{port}", "listeners.ws.enabled=false",
                        f"node.data_dir={data}", f"controlplane.bind=127.0.0.1:{grpc}", "log.level=warn",
                        "sys.interval=0", "sys.presence=false"):
            argv += ["--set", setting]
        broker = bl.Broker("mqttd", argv, port, work)
        socks = []
        try:
            subprocess.run([opts.mqttctl, "--server", f"http://127.0.0.1:{grpc}", "--token-file",
                            os.path.join(data, "admin.token"), "users", "add", "alice", "--password", "pw"],
                           check=True, capture_output=True, timeout=60)
            time.sleep(1)
            socks.append(connect(port, 0))
            time.sleep(3)
            before = broker.rss_kb()
            socks += [connect(port, n) for n in range(1, opts.clients + 1)]
            time.sleep(8)
            after = broker.rss_kb()
            print(f"{opts.clients} idle clients logged in as one built-in user: "
                  f"{(after - before) * 1024 / opts.clients:.0f} B of RSS each")
        finally:
            for sock in socks:
                sock.close()
            broker.stop()


if __name__ == "__main__":
    main()
