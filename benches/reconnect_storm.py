#!/usr/bin/env python3
"""A reconnect storm with passwords: mqttd against Mosquitto.

After a node fails, every one of its clients reconnects at once, and each
CONNECT carries a password that the broker has checked before. This script
measures how long such a storm takes to be let back in.

For each broker (mqttd with its recent-checks memory; Mosquitto 2 with a
password file; with `--only mqttd-nocache`, mqttd without the memory,
`auth.password_cache_entries=0`, where every login costs an argon2 check):

1. USERS users are created (mqttd: `mqttctl users add`, argon2id hashes;
   Mosquitto: `mosquitto_passwd -U`, its sha512-pbkdf2 hashes), anonymous
   access off;
2. CLIENTS clients (CLIENTS / USERS per user) log in once, a few at a
   time, then disconnect: "clients that have all logged in before";
3. the storm: all CLIENTS connect at once (at most --concurrency handshakes
   in flight); a refusal other than a bad password (0x89/rc 3, busy) is
   retried after 50 ms, as clients do. The storm ends when every client
   holds a CONNACK 0, or after --limit seconds.

Prints one JSON line per broker (`storm_secs`, `connected`, `retries`,
`broker_cpu_s` over the storm) and a table. Loopback only; bounded.

    python3 benches/reconnect_storm.py [--clients 10000] [--users 2000]
"""

import argparse
import asyncio
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def connect_packet(client_id, user, password):
    body = bl.mqtt_string("MQTT") + bytes([4, 0x02 | 0x80 | 0x40]) + struct.pack(">H", 300)
    body += bl.mqtt_string(client_id) + bl.mqtt_string(user) + bl.mqtt_string(password)
    return bl.mqtt_packet(0x10, body)


DISCONNECT = b"\xe0\x00"


async def login(port, client_id, user, password, timeout=30):
    """One CONNECT; returns (writer or None, CONNACK return code or None)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, asyncio.TimeoutError):
        return None, None
    try:
        writer.write(connect_packet(client_id, user, password))
        ack = await asyncio.wait_for(reader.readexactly(4), timeout)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        writer.close()
        return None, None
    if ack[0] != 0x20 or ack[3] != 0:
        writer.close()
        return None, ack[3] if ack[0] == 0x20 else None
    return writer, 0


def identities(clients, users):
    return [(f"storm-{n}", f"user{n % users}", f"pw-{n % users}") for n in range(clients)]


async def run_clients(port, who, concurrency, limit, retry_busy):
    """Connects every client in `who` (at most `concurrency` handshakes at
    once, retrying refusals that are not a bad password); returns the
    writers, the number of retries and the elapsed seconds."""
    gate = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + limit
    retries = 0
    refused = 0

    async def one(client_id, user, password):
        nonlocal retries, refused
        while time.monotonic() < deadline:
            async with gate:
                writer, rc = await login(port, client_id, user, password)
            if writer is not None:
                return writer
            if rc in (4, 5) or not retry_busy:
                refused += 1
                return None
            retries += 1
            await asyncio.sleep(0.05)
        return None

    started = time.monotonic()
    writers = await asyncio.gather(*(one(*identity) for identity in who))
    return [w for w in writers if w is not None], retries, refused, time.monotonic() - started


async def close_all(writers):
    for writer in writers:
        try:
            writer.write(DISCONNECT)
            writer.close()
        except OSError:
            pass
    await asyncio.sleep(0.5)


def start_mqttd(opts, workdir, name, extra):
    port, grpc = bl.free_port(), bl.free_port()
    data = tempfile.mkdtemp(prefix="mqttd-data-", dir=workdir)
    argv = [opts.mqttd, "--set", f"listeners.tcp.bind=127.0.0.1:{port}", "--set", "listeners.ws.enabled=false",
            "--set", f"node.data_dir={data}", "--set", "sys.interval=0", "--set", "log.level=warn",
            "--set", f"controlplane.bind=127.0.0.1:{grpc}", "--set", "auth.allow_anonymous=deny"] + extra
    broker = bl.Broker(name, argv, port, workdir)
    mqttctl = os.path.join(os.path.dirname(opts.mqttd), "mqttctl")
    token = os.path.join(data, "admin.token")
    env = dict(os.environ, MQTTD_TOKEN=open(token).read().strip())
    server = f"http://127.0.0.1:{grpc}"
    started = time.monotonic()
    pending = []
    for n in range(opts.users):
        pending.append(subprocess.Popen([mqttctl, "--server", server, "users", "add", f"user{n}",
                                         "--password", f"pw-{n}"], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        if len(pending) >= 8:
            for p in pending:
                if p.wait() != 0:
                    raise RuntimeError(f"mqttctl users add failed: {p.stderr.read().decode()}")
            pending = []
    for p in pending:
        if p.wait() != 0:
            raise RuntimeError(f"mqttctl users add failed: {p.stderr.read().decode()}")
    print(f"  {name}: {opts.users} users added in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return broker


def start_mosquitto(opts, workdir):
    port = bl.free_port()
    passwords = os.path.join(workdir, "passwords")
    with open(passwords, "w") as f:
        for n in range(opts.users):
            f.write(f"user{n}:pw-{n}\n")
    subprocess.run(["mosquitto_passwd", "-U", passwords], check=True)
    # Started as root, Mosquitto drops to its own user, which must read it.
    os.chmod(workdir, 0o755)
    os.chmod(passwords, 0o644)
    conf = os.path.join(workdir, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
                f"persistence false\nsys_interval 0\nmax_keepalive 65535\nlog_dest none\n")
    exe = bl.default_mosquitto()
    return bl.Broker("mosquitto", [exe, "-c", conf], port, workdir)


async def storm(opts, broker):
    who = identities(opts.clients, opts.users)
    # Everyone logs in once, a few at a time (retrying busy answers).
    writers, _, refused, took = await run_clients(broker.port, who, opts.warm_concurrency, opts.limit * 4, True)
    if refused or len(writers) != len(who):
        raise RuntimeError(f"{broker.name}: only {len(writers)} of {len(who)} logged in before the storm "
                           f"({refused} refused)")
    print(f"  {broker.name}: all {len(who)} logged in once ({took:.1f} s)", file=sys.stderr)
    await close_all(writers)
    cpu_before = broker.cpu_s()
    writers, retries, refused, took = await run_clients(broker.port, who, opts.concurrency, opts.limit, True)
    cpu = broker.cpu_s() - cpu_before
    result = {"broker": broker.name, "clients": len(who), "users": opts.users, "connected": len(writers),
              "refused": refused, "retries": retries, "storm_secs": round(took, 3),
              "broker_cpu_s": round(cpu, 3), "complete": len(writers) == len(who)}
    await close_all(writers)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1000, help="handshakes in flight in the storm")
    parser.add_argument("--warm-concurrency", type=int, default=16, help="handshakes in flight when warming up")
    parser.add_argument("--limit", type=float, default=60, help="seconds the storm may take")
    parser.add_argument("--mqttd", default=bl.default_mqttd())
    parser.add_argument("--only", default="mqttd,mosquitto",
                        help="brokers, of mqttd, mqttd-nocache (slow: an argon2 check per login), mosquitto")
    opts = parser.parse_args()
    if opts.clients > 15000:
        parser.error("--clients: at most 15,000 (one process holds them all; 20,000 open files)")
    workdir = tempfile.mkdtemp(prefix="storm-")
    starters = {
        "mqttd": lambda: start_mqttd(opts, workdir, "mqttd", []),
        "mqttd-nocache": lambda: start_mqttd(opts, workdir, "mqttd-nocache",
                                             ["--set", "auth.password_cache_entries=0"]),
        "mosquitto": lambda: start_mosquitto(opts, workdir),
    }
    results = []
    failed = False
    for name in opts.only.split(","):
        broker = starters[name]()
        try:
            result = asyncio.run(storm(opts, broker))
        except RuntimeError as error:
            print(f"  {error}", file=sys.stderr)
            result = {"broker": name, "complete": False, "error": str(error)}
        finally:
            broker.stop()
        # Without its memory, mqttd is not expected to finish in time.
        failed |= name != "mqttd-nocache" and not result.get("complete")
        print(json.dumps(result), flush=True)
        results.append(result)
    print(f"\n{'broker':16}{'connected':>12}{'storm s':>10}{'retries':>10}{'broker CPU s':>14}")
    for r in results:
        print(f"{r['broker']:16}{str(r.get('connected', '-')) + '/' + str(opts.clients):>12}"
              f"{r.get('storm_secs', '-'):>10}{r.get('retries', '-'):>10}{r.get('broker_cpu_s', '-'):>14}")
    shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
