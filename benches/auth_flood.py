#!/usr/bin/env python3
"""A CONNECT flood with wrong passwords for one username, against one mqttd.

While FLOOD clients (in a separate process) keep connecting as user
`victim` with a wrong password, a QoS 1 publisher (user `pub`) sends a
message every 10 ms to a subscriber on the same broker, and `mqttctl users
add` runs once in the middle. Prints one JSON line: the publisher's
publish-to-delivery latency (p50, p99, max, in ms), how many messages
arrived, the admin call's time, and what the flood's CONNECTs got (CONNACK
return codes and answers per second).

Usage: auth_flood.py MQTTD_BIN [--flood 300] [--seconds 10]
(mqttctl is taken from beside MQTTD_BIN). Loopback only; every wait is
bounded. Run it on the same machine for each broker build you compare.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def string(text):
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def packet(first, body):
    out = bytearray([first])
    length = len(body)
    while True:
        byte = length % 128
        length //= 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes(out) + body


def connect(client_id, user=None, password=None):
    flags = 0x02 | (0x80 if user else 0) | (0x40 if password else 0)
    body = string("MQTT") + bytes([4, flags]) + struct.pack(">H", 60) + string(client_id)
    if user:
        body += string(user)
    if password:
        body += string(password)
    return packet(0x10, body)


async def read_packet(reader):
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, await reader.readexactly(length)


async def open_client(port, client_id, user, password):
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    writer.write(connect(client_id, user, password))
    first, body = await asyncio.wait_for(read_packet(reader), 10)
    if first >> 4 != 2 or body[1] != 0:
        raise RuntimeError(f"{client_id}: CONNACK {body!r}")
    return reader, writer


def flood_process(port, clients, seconds, queue):
    async def one(n, deadline, codes, answered):
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(connect(f"flood-{n}", "victim", "wrong"))
                _, body = await asyncio.wait_for(read_packet(reader), 10)
                codes[body[1]] = codes.get(body[1], 0) + 1
                answered.append(1)
                writer.close()
            except Exception:
                codes["error"] = codes.get("error", 0) + 1
                await asyncio.sleep(0.05)

    async def main():
        codes, answered = {}, []
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(one(n, deadline, codes, answered) for n in range(clients)))
        queue.put({"codes": {str(k): v for k, v in codes.items()}, "answers_per_sec": round(len(answered) / seconds, 1)})

    asyncio.run(main())


async def probe(port, seconds, mqttctl_cmd):
    sub_r, sub_w = await open_client(port, "probe-sub", "pub", "pw")
    sub_w.write(packet(0x82, struct.pack(">H", 1) + string("probe/t") + bytes([1])))
    await asyncio.wait_for(read_packet(sub_r), 10)
    pub_r, pub_w = await open_client(port, "probe-pub", "pub", "pw")
    latencies, sent = [], 0
    admin = {}

    async def receive():
        while True:
            first, body = await read_packet(sub_r)
            if first >> 4 == 3:
                topic_len = struct.unpack(">H", body[:2])[0]
                packet_id = body[2 + topic_len:4 + topic_len]
                stamp = struct.unpack(">d", body[4 + topic_len:12 + topic_len])[0]
                latencies.append((time.monotonic() - stamp) * 1000)
                sub_w.write(packet(0x40, packet_id))

    async def drain_acks():
        while True:
            await read_packet(pub_r)

    async def admin_call():
        await asyncio.sleep(seconds / 2)
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(*mqttctl_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        admin["users_add_ms"] = round((time.monotonic() - started) * 1000, 1)
        admin["users_add_ok"] = proc.returncode == 0
        if proc.returncode:
            admin["users_add_error"] = err.decode().strip()

    tasks = [asyncio.create_task(receive()), asyncio.create_task(drain_acks())]
    admin_task = asyncio.create_task(admin_call())
    deadline = time.monotonic() + seconds
    packet_id = 0
    while time.monotonic() < deadline:
        packet_id = packet_id % 65535 + 1
        body = string("probe/t") + struct.pack(">H", packet_id) + struct.pack(">d", time.monotonic())
        pub_w.write(packet(0x32, body))
        sent += 1
        await asyncio.sleep(0.01)
    await asyncio.sleep(2)
    await asyncio.wait_for(admin_task, 60)
    for task in tasks:
        task.cancel()
    latencies.sort()
    pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2) if latencies else None
    return {"sent": sent, "delivered": len(latencies), "p50_ms": pick(0.50), "p99_ms": pick(0.99),
            "max_ms": round(latencies[-1], 2) if latencies else None, **admin}


async def refusal_times(port, rounds=20):
    """Mean CONNACK time (ms) for a known user with a wrong password and for
    an unknown user, alternating, before the flood."""
    async def one(client_id, user):
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(connect(client_id, user, "wrong"))
        await asyncio.wait_for(read_packet(reader), 10)
        writer.close()
        return (time.monotonic() - started) * 1000

    known, unknown = [], []
    for n in range(rounds):
        known.append(await one(f"k{n}", "victim"))
        unknown.append(await one(f"u{n}", f"nobody-{n}"))
    mean = lambda xs: round(sum(xs) / len(xs), 2)
    return {"refusal_known_user_ms": mean(known), "refusal_unknown_user_ms": mean(unknown)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mqttd")
    parser.add_argument("--flood", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    mqttctl = os.path.join(os.path.dirname(args.mqttd), "mqttctl")
    port, grpc = free_ports(2)
    with tempfile.TemporaryDirectory() as data:
        broker = subprocess.Popen(
            [args.mqttd, "--set", f"listeners.tcp.bind=127.0.0.1:{port}", "--set", "listeners.ws.enabled=false",
             "--set", f"controlplane.bind=127.0.0.1:{grpc}", "--set", f"node.data_dir={data}",
             "--set", "log.level=error"],
            cwd=data, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            ctl = [mqttctl, "--server", f"http://127.0.0.1:{grpc}"]
            token = os.path.join(data, "admin.token")
            for _ in range(100):
                if subprocess.run(ctl + (["--token-file", token] if os.path.exists(token) else []) + ["users", "list"],
                                  capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
            if os.path.exists(token):
                ctl += ["--token-file", token]
            for user, password in [("victim", "right"), ("pub", "pw")]:
                subprocess.run(ctl + ["users", "add", user, "--password", password], check=True, capture_output=True)
            time.sleep(1)
            timing = asyncio.run(refusal_times(port))
            queue = multiprocessing.Queue()
            flood = multiprocessing.Process(target=flood_process, args=(port, args.flood, args.seconds, queue))
            flood.start()
            result = asyncio.run(probe(port, args.seconds, ctl + ["users", "add", "extra", "--password", "x"]))
            flood.join(60)
            result["flood"] = queue.get(timeout=10) if not queue.empty() else None
            result["flood_clients"] = args.flood
            result.update(timing)
            result["binary"] = args.mqttd
            print(json.dumps(result))
        finally:
            broker.terminate()
            broker.wait(10)


if __name__ == "__main__":
    sys.exit(main())
