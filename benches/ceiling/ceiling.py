#!/usr/bin/env python3
"""Connection ceiling run: hold N clients on one broker (spread over several
processes, each under the per-process open-file limit), have every client
publish once to a topic only it subscribes to, and check that every message
comes back, that a new client still connects while they are all held, and
that the broker refuses connections past its file-descriptor ceiling
cleanly and serves again once some close.

    python3 benches/ceiling/ceiling.py --port 1883 --pid PID --clients 19000 --procs 4

Prints one JSON line. Loopback only; every wait has a timeout.
"""

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import struct
import subprocess
import sys
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def enc_str(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def packet(first, body):
    out = bytearray([first])
    n = len(body)
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + body


async def read_packet(reader):
    first = (await reader.readexactly(1))[0]
    mult, length = 1, 0
    while True:
        b = (await reader.readexactly(1))[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    body = await reader.readexactly(length) if length else b""
    return first >> 4, body


async def client(proc, i, port, ready, go, results):
    cid = f"ceil-{proc}-{i}"
    topic = f"ceil/{proc}/{i}"
    src = f"127.0.0.{2 + (i % 200)}"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0)), 30)
        writer.write(packet(0x10, enc_str("MQTT") + bytes([4, 2]) + struct.pack("!H", 300) + enc_str(cid)))
        writer.write(packet(0x82, struct.pack("!H", 1) + enc_str(topic) + bytes([1])))
        await writer.drain()
        kind, _ = await asyncio.wait_for(read_packet(reader), 30)
        assert kind == 2
        kind, _ = await asyncio.wait_for(read_packet(reader), 30)
        assert kind == 9
    except Exception as e:  # noqa: BLE001 - counted, reported
        results["failed"] += 1
        ready.release()
        return
    results["connected"] += 1
    ready.release()
    await go.wait()
    try:
        writer.write(packet(0x32, enc_str(topic) + struct.pack("!H", 2) + b"x"))
        await writer.drain()
        got_ack = got_msg = False
        deadline = time.monotonic() + 60
        while not (got_ack and got_msg) and time.monotonic() < deadline:
            kind, body = await asyncio.wait_for(read_packet(reader), 60)
            if kind == 4:
                got_ack = True
            elif kind == 3:
                got_msg = True
                pid = body[2 + struct.unpack("!H", body[:2])[0]:][:2]
                writer.write(packet(0x40, pid))
        if got_msg:
            results["received"] += 1
    except Exception:  # noqa: BLE001
        pass
    finally:
        results["done"] += 1
    await results["release"].wait()
    writer.close()


def run_proc(proc, n, port, barrier, go_event, release_event, out_q):
    async def main():
        ready = asyncio.Semaphore(0)
        go = asyncio.Event()
        results = {"connected": 0, "failed": 0, "received": 0, "done": 0, "release": asyncio.Event()}
        tasks = []
        for i in range(n):
            tasks.append(asyncio.create_task(client(proc, i, port, ready, go, results)))
            if i % 200 == 199:
                await asyncio.sleep(0.01)
        for _ in range(n):
            await ready.acquire()
        out_q.put(("connected", proc, results["connected"], results["failed"]))
        await asyncio.get_running_loop().run_in_executor(None, go_event.wait)
        go.set()
        deadline = time.monotonic() + 90
        while results["done"] < results["connected"] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        out_q.put(("received", proc, results["received"], 0))
        await asyncio.get_running_loop().run_in_executor(None, release_event.wait)
        results["release"].set()
        await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(main())


def probe(port, timeout=3.0):
    """A fresh client: CONNECT then CONNACK within `timeout`."""
    started = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.sendall(packet(0x10, enc_str("MQTT") + bytes([4, 2]) + struct.pack("!H", 30) + enc_str("probe")))
        s.settimeout(timeout)
        ok = s.recv(4)[:1] == b"\x20"
        s.close()
        return ok, time.monotonic() - started
    except OSError:
        return False, time.monotonic() - started


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--clients", type=int, default=19000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--overflow", type=int, default=1500, help="extra connections past the ceiling")
    ap.add_argument("--settle", type=float, default=12,
                    help="seconds the clients stay idle before RSS is read again (idle connections "
                         "hibernate after mqtt.hibernate_after_ms; the allocator returns freed pages "
                         "within about 10 s)")
    a = ap.parse_args()
    per = a.clients // a.procs
    q = mp.Queue()
    go, release = mp.Event(), mp.Event()
    rss_before = rss_kb(a.pid)
    started = time.monotonic()
    procs = [mp.Process(target=run_proc, args=(p, per, a.port, None, go, release, q)) for p in range(a.procs)]
    for p in procs:
        p.start()
    connected = failed = 0
    for _ in procs:
        _, _, c, f = q.get(timeout=300)
        connected += c
        failed += f
    connect_secs = time.monotonic() - started
    time.sleep(1)
    rss_after = rss_kb(a.pid)
    time.sleep(a.settle)
    rss_settled = rss_kb(a.pid)
    probe_ok, probe_secs = probe(a.port)
    go.set()
    received = 0
    for _ in procs:
        _, _, r, _ = q.get(timeout=300)
        received += r
    # Past the ceiling: the broker must refuse cleanly, keep running, and
    # serve again once connections close.
    overflow = []
    refused = 0
    for i in range(a.overflow):
        try:
            s = socket.create_connection(("127.0.0.1", a.port), timeout=2)
            s.sendall(packet(0x10, enc_str("MQTT") + bytes([4, 2]) + struct.pack("!H", 30) + enc_str(f"over-{i}")))
            overflow.append(s)
        except OSError:
            refused += 1
    time.sleep(2)
    answered = 0
    for s in overflow:
        s.settimeout(0.05)
        try:
            if s.recv(4)[:1] == b"\x20":
                answered += 1
        except OSError:
            pass
    alive_at_ceiling = os.path.exists(f"/proc/{a.pid}")
    for s in overflow:
        s.close()
    release.set()
    for p in procs:
        p.join(60)
    time.sleep(2)
    recovered, recover_secs = probe(a.port)
    print(json.dumps({
        "scenario": "ceiling", "clients": a.clients, "connected": connected, "failed": failed,
        "connect_secs": round(connect_secs, 2), "rss_before_kb": rss_before, "rss_after_kb": rss_after,
        "bytes_per_conn": round((rss_after - rss_before) * 1024 / max(connected, 1)),
        "settle_secs": a.settle, "rss_settled_kb": rss_settled,
        "bytes_per_conn_settled": round((rss_settled - rss_before) * 1024 / max(connected, 1)),
        "new_client_while_held": probe_ok, "new_client_secs": round(probe_secs, 3),
        "published": connected, "received": received, "lost": connected - received,
        "overflow_attempts": a.overflow, "overflow_answered": answered, "overflow_refused_at_connect": refused,
        "broker_alive_at_ceiling": alive_at_ceiling, "serves_after_ceiling": recovered,
    }))


if __name__ == "__main__":
    main()
