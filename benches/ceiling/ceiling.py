#!/usr/bin/env python3
"""Connection ceiling run: hold N clients on one broker (spread over several
processes, each under the per-process open-file limit), have every client
publish once to a topic only it subscribes to, and check that every message
comes back, that a new client still connects while they are all held, and
that the broker refuses connections past its file-descriptor ceiling
cleanly and serves again once some close.

    python3 benches/ceiling/ceiling.py --port 1883 --pid PID --clients 19000 --procs 4

Prints one JSON line, then exits 1 if a check failed (each is listed on
stderr): every client connected (CONNACK return code 0) and subscribed
(SUBACK granting QoS 0-2 for packet id 1), every message came back on the
right topic and got its PUBACK, a new client got an accepted CONNACK while
all were held, the broker used less than half a core while refusing the
overflow (no spinning), stayed alive, and accepted a client again after.
Loopback only; every wait has a timeout.

With --controlplane-pid (mqttd's control plane in a process of its own),
that process's RSS is read too, and its growth reported per route (each
client's subscription is one route).
"""

import argparse
import asyncio
import collections
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
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def cpu_s(pid):
    """utime + stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Refused(Exception):
    """The broker answered, but not with what was asked for."""


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
    """(packet type, flags, body) of the next packet."""
    first = (await reader.readexactly(1))[0]
    mult, length = 1, 0
    while True:
        b = (await reader.readexactly(1))[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    body = await reader.readexactly(length) if length else b""
    return first >> 4, first & 0x0F, body


def check_connack(kind, body):
    """A CONNACK with return code 0 (accepted), or Refused."""
    if kind != 2 or len(body) != 2:
        raise Refused(f"expected CONNACK, got packet type {kind} of {len(body)} bytes")
    if body[1] != 0:
        raise Refused(f"CONNACK return code {body[1]}")


def check_suback(kind, body, packet_id):
    """A SUBACK for packet_id granting QoS 0-2 (not 0x80), or Refused."""
    if kind != 9 or len(body) != 3:
        raise Refused(f"expected SUBACK with one code, got packet type {kind} of {len(body)} bytes")
    if struct.unpack("!H", body[:2])[0] != packet_id:
        raise Refused(f"SUBACK for packet id {struct.unpack('!H', body[:2])[0]}, not {packet_id}")
    if body[2] > 2:
        raise Refused(f"SUBACK code 0x{body[2]:02x}")


def parse_publish(flags, body):
    """(topic, packet id or None, payload) of a PUBLISH."""
    n = struct.unpack("!H", body[:2])[0]
    topic = body[2:2 + n].decode(errors="replace")
    rest = body[2 + n:]
    if (flags >> 1) & 3:
        return topic, struct.unpack("!H", rest[:2])[0], rest[2:]
    return topic, None, rest


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
        kind, _, body = await asyncio.wait_for(read_packet(reader), 30)
        check_connack(kind, body)
        kind, _, body = await asyncio.wait_for(read_packet(reader), 30)
        check_suback(kind, body, 1)
    except Exception as e:  # noqa: BLE001 - counted, reported
        results["failed"] += 1
        results["reasons"][f"connect: {type(e).__name__}: {e}"[:120]] += 1
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
            kind, flags, body = await asyncio.wait_for(read_packet(reader), 60)
            if kind == 4:
                if body[:2] != struct.pack("!H", 2):
                    raise Refused(f"PUBACK for packet id {body[:2].hex()}, not 2")
                got_ack = True
            elif kind == 3:
                got_topic, pid, payload = parse_publish(flags, body)
                if got_topic != topic or payload != b"x":
                    raise Refused(f"got {payload!r} on {got_topic!r}, not b'x' on {topic!r}")
                if got_msg:
                    raise Refused("the message came twice")
                got_msg = True
                if pid is not None:
                    writer.write(packet(0x40, struct.pack("!H", pid)))
        if got_msg and got_ack:
            results["received"] += 1
        else:
            results["reasons"][f"publish: no {'PUBACK' if got_msg else 'message'} in 60 s"] += 1
    except Exception as e:  # noqa: BLE001 - counted, reported
        results["reasons"][f"publish: {type(e).__name__}: {e}"[:120]] += 1
    finally:
        results["done"] += 1
    await results["release"].wait()
    writer.close()


def run_proc(proc, n, port, barrier, go_event, release_event, out_q):
    async def main():
        ready = asyncio.Semaphore(0)
        go = asyncio.Event()
        results = {"connected": 0, "failed": 0, "received": 0, "done": 0, "release": asyncio.Event(),
                   "reasons": collections.Counter()}
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
        out_q.put(("received", proc, results["received"], dict(results["reasons"])))
        await asyncio.get_running_loop().run_in_executor(None, release_event.wait)
        results["release"].set()
        await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(main())


ACCEPTED = b"\x20\x02\x00\x00"  # CONNACK, no session present, return code 0


def recv_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def probe(port, timeout=3.0):
    """A fresh client: CONNECT, then an accepted CONNACK (return code 0)
    within `timeout`."""
    started = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.sendall(packet(0x10, enc_str("MQTT") + bytes([4, 2]) + struct.pack("!H", 30) + enc_str("probe")))
        s.settimeout(timeout)
        ok = recv_exactly(s, 4) == ACCEPTED
        s.close()
        return ok, time.monotonic() - started
    except OSError:
        return False, time.monotonic() - started


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="the broker (or data plane) process")
    ap.add_argument("--controlplane-pid", type=int,
                    help="mqttd's control plane, when it runs in a process of its own")
    ap.add_argument("--clients", type=int, default=19000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--overflow", type=int, default=1500, help="extra connections past the ceiling")
    ap.add_argument("--settle", type=float, default=12,
                    help="seconds the clients stay idle before RSS is read again (idle connections "
                         "hibernate after mqtt.hibernate_after_ms; the allocator returns freed pages "
                         "within about 10 s)")
    ap.add_argument("--allow-failed", type=int, default=0,
                    help="connections that may fail during the ramp without failing the run")
    a = ap.parse_args()
    if a.clients % a.procs:
        ap.error("--clients must be a multiple of --procs")
    per = a.clients // a.procs
    q = mp.Queue()
    go, release = mp.Event(), mp.Event()
    rss_before = rss_kb(a.pid)
    cp_pid = a.controlplane_pid
    cp_before = rss_kb(cp_pid) if cp_pid else None
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
    cpu_settle_start = cpu_s(a.pid)
    time.sleep(a.settle)
    settle_cpu = cpu_s(a.pid) - cpu_settle_start
    rss_settled = rss_kb(a.pid)
    cp_settled = rss_kb(cp_pid) if cp_pid else None
    probe_ok, probe_secs = probe(a.port)
    go.set()
    received = 0
    reasons = collections.Counter()
    for _ in procs:
        _, _, r, why = q.get(timeout=300)
        received += r
        reasons.update(why)
    # Past the ceiling: the broker must refuse cleanly, keep running, and
    # serve again once connections close.
    overflow = []
    refused = 0
    overflow_cpu_start, overflow_started = cpu_s(a.pid), time.monotonic()
    for i in range(a.overflow):
        try:
            s = socket.create_connection(("127.0.0.1", a.port), timeout=2)
            s.sendall(packet(0x10, enc_str("MQTT") + bytes([4, 2]) + struct.pack("!H", 30) + enc_str(f"over-{i}")))
            overflow.append(s)
        except OSError:
            refused += 1
    time.sleep(2)
    answered = other_answers = 0
    for s in overflow:
        s.settimeout(0.05)
        try:
            got = recv_exactly(s, 4)
            if got == ACCEPTED:
                answered += 1
            elif got:
                other_answers += 1
        except OSError:
            pass
    alive_at_ceiling = os.path.exists(f"/proc/{a.pid}")
    overflow_secs = time.monotonic() - overflow_started
    overflow_cpu = cpu_s(a.pid) - overflow_cpu_start if alive_at_ceiling else None
    for s in overflow:
        s.close()
    release.set()
    for p in procs:
        p.join(60)
    time.sleep(2)
    recovered, recover_secs = probe(a.port)
    cp = {}
    if cp_pid:
        routes = max(connected, 1)
        cp = {"controlplane_rss_before_kb": cp_before, "controlplane_rss_settled_kb": cp_settled,
              "controlplane_bytes_per_route": round((cp_settled - cp_before) * 1024 / routes)}
    overflow_share = overflow_cpu / overflow_secs if overflow_cpu is not None else None
    report = {
        "scenario": "ceiling", "clients": a.clients, "connected": connected, "failed": failed,
        "connect_secs": round(connect_secs, 2), "rss_before_kb": rss_before, "rss_after_kb": rss_after,
        "bytes_per_conn": round((rss_after - rss_before) * 1024 / max(connected, 1)),
        "settle_secs": a.settle, "rss_settled_kb": rss_settled,
        "bytes_per_conn_settled": round((rss_settled - rss_before) * 1024 / max(connected, 1)),
        "new_client_while_held": probe_ok, "new_client_secs": round(probe_secs, 3),
        "published": connected, "received": received, "lost": connected - received,
        "overflow_attempts": a.overflow, "overflow_answered": answered, "overflow_refused_at_connect": refused,
        "overflow_other_answers": other_answers,
        "overflow_secs": round(overflow_secs, 2),
        "overflow_broker_cpu_s": None if overflow_cpu is None else round(overflow_cpu, 2),
        "settle_broker_cpu_s": round(settle_cpu, 2),
        "broker_alive_at_ceiling": alive_at_ceiling, "serves_after_ceiling": recovered,
        **cp,
        "failure_reasons": dict(reasons.most_common(5)),
    }
    checks = [
        (connected + a.allow_failed >= a.clients, f"{connected} of {a.clients} connected and subscribed"),
        (received == connected, f"{received} of {connected} messages came back (with their PUBACK)"),
        (probe_ok, "a new client got an accepted CONNACK while all were held"),
        (overflow_share is not None and overflow_share < 0.5,
         f"past the ceiling the broker used {overflow_share} of a core (no spinning: under 0.5)"),
        (alive_at_ceiling, "the broker stayed alive past its ceiling"),
        (recovered, "a new client got an accepted CONNACK after the overflow closed"),
    ]
    report["checks_failed"] = [what for ok, what in checks if not ok]
    print(json.dumps(report))
    for what in report["checks_failed"]:
        print(f"ceiling: check failed: {what}", file=sys.stderr)
    sys.exit(1 if report["checks_failed"] else 0)


if __name__ == "__main__":
    main()
