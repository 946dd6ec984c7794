#!/usr/bin/env python3
"""Fleet benchmark: mqttd as one control plane plus N data-plane processes
on this machine, against one data-plane node and against Mosquitto alone.

A fleet is `mqttd controlplane` on 127.0.0.20 and N `mqttd dataplane`
nodes on 127.0.0.21, .22, ... (free ports, fresh data directories, a member
token file of mode 0600), started as tests/common/fleet.rs starts them; it
counts as ready once the control plane has a leader, every node is "up" in
`mqttctl --json cluster status`, and a probe published on every node reached
a subscriber on every node. Each run gets a fresh fleet (or a fresh
Mosquitto) that is stopped afterwards, also on error. Every data-plane node
and Mosquitto get the same settings as in compare.py: a queue of --queue
messages and an in-flight window of --inflight per client, $SYS off.
Broker CPU is the sum over every mqttd process of the fleet, control plane
included (mqtt-bench --broker-pid PID,PID,...).

Parts (--only takes part or scenario names):

  throughput  fan-in, fan-out and pairs, clients spread over 1 node vs 3
              nodes, with Mosquitto alone as the reference: msg/s and msg
              per broker CPU-second
  latency     p50/p99 at --latency-rate msg/s in total, publishers and
              subscriber on the same node vs on different nodes (3 nodes),
              and on a 1-node fleet
  connect     connect rate, --conn-clients clients over 3 nodes vs 1 node
              (and Mosquitto)
  connections --big-clients subscribed clients held across --big-nodes
              nodes by one load generator per node; one QoS 1 publish that
              must reach every one of them once; RSS per connection per node

A run FAILS if mqtt-bench exits non-zero or prints no JSON, a broker
process dies, any QoS 1 message is lost or left unacknowledged, any message
is duplicated or reordered (per publisher), or in `connections` if a client
does not connect, is dropped, or does not get the publish exactly once.
QoS 0 loss is shown next to the rate ("lost N"), not failed: a peer link
drops QoS 0 past its buffer by design. Exits 1 if any mqttd run failed
(with --strict also Mosquitto's) or nothing could be measured, 2 on bad
usage.

    python3 benches/fleet.py [--rounds 3] [--duration 4] [--only throughput,latency]
"""

import argparse
import json
import os
import secrets
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

CP_IP = "127.0.0.20"
NODE_IPS = [f"127.0.0.{21 + i}" for i in range(8)]
CPU_KEY = "msgs_per_broker_cpu_s"
PARTS = ("throughput", "latency", "connect", "connections")


def free_port_on(ip):
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def wait_listening(ip, port, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before listening on {ip}:{port}")
        try:
            with socket.create_connection((ip, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {ip}:{port} after {timeout} s")


# ---------------------------------------------------------------------------
# A minimal MQTT 3.1.1 client for the readiness probe and the one publish of
# `connections` (benchlib's packet helpers; blocking sockets with timeouts).

class MiniClient:
    def __init__(self, ip, port, client_id, timeout=5.0):
        self.sock = socket.create_connection((ip, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        body = bl.mqtt_string("MQTT") + bytes([4, 0x02]) + struct.pack(">H", 120) + bl.mqtt_string(client_id)
        self.sock.sendall(bl.mqtt_packet(0x10, body))
        packet = self.read(timeout)
        if packet is None or packet[0] >> 4 != 2 or len(packet[1]) < 2 or packet[1][1] != 0:
            raise RuntimeError(f"{ip}:{port} refused CONNECT: {packet!r}")

    def read(self, timeout):
        """The next packet as (first byte, body), or None after `timeout`."""
        deadline = time.time() + timeout
        while True:
            packet = self._parse()
            if packet:
                return packet
            left = deadline - time.time()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.sock], [], [], left)
            if ready:
                data = self.sock.recv(65536)
                if not data:
                    raise RuntimeError("the broker closed the connection")
                self.buf += data

    def _parse(self):
        if len(self.buf) < 2:
            return None
        length, shift, i = 0, 0, 1
        while True:
            if i >= len(self.buf):
                return None
            byte = self.buf[i]
            length |= (byte & 0x7F) << shift
            i += 1
            if not byte & 0x80:
                break
            shift += 7
        if len(self.buf) < i + length:
            return None
        first, body = self.buf[0], self.buf[i:i + length]
        self.buf = self.buf[i + length:]
        return first, body

    def subscribe(self, topic_filter, qos=0, timeout=5.0):
        self.sock.sendall(bl.mqtt_packet(0x82, struct.pack(">H", 1) + bl.mqtt_string(topic_filter) + bytes([qos])))
        deadline = time.time() + timeout
        while time.time() < deadline:
            packet = self.read(deadline - time.time())
            if packet and packet[0] >> 4 == 9:
                if packet[1][-1] >= 0x80:
                    raise RuntimeError(f"SUBACK refused {topic_filter}")
                return
        raise RuntimeError(f"no SUBACK for {topic_filter}")

    def publish(self, topic, payload, qos=0, packet_id=1):
        body = bl.mqtt_string(topic) + (struct.pack(">H", packet_id) if qos else b"") + payload
        self.sock.sendall(bl.mqtt_packet(0x30 | (qos << 1), body))

    def topics_received(self, timeout):
        """Topics of the PUBLISH packets that arrive within `timeout` (QoS 0)."""
        found = []
        deadline = time.time() + timeout
        while True:
            packet = self.read(max(0.0, deadline - time.time()))
            if packet is None:
                return found
            first, body = packet
            if first >> 4 == 3:
                (length,) = struct.unpack(">H", body[:2])
                found.append(body[2:2 + length].decode())

    def wait_puback(self, packet_id, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            packet = self.read(deadline - time.time())
            if packet and packet[0] >> 4 == 4 and struct.unpack(">H", packet[1][:2])[0] == packet_id:
                return True
        return False

    def close(self):
        try:
            self.sock.sendall(b"\xe0\x00")
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------------------
# Brokers: a fleet, or Mosquitto alone.

class Proc:
    """A started process with its output in `log_path`."""

    def __init__(self, name, argv, workdir, env=None):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir,
                                     stdin=subprocess.DEVNULL, env=env)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, lines=3):
        try:
            with open(self.log_path) as f:
                return " / ".join(line.strip() for line in f.readlines()[-lines:])
        except OSError:
            return ""

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.terminate()

    def stop(self):
        self.terminate()
        if self.proc.poll() is None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()


class Fleet:
    """One control plane and `n` data-plane nodes, ready when constructed."""

    def __init__(self, opts, settings, n, workdir):
        self.name = f"fleet{n}"
        self.dir = tempfile.mkdtemp(prefix=f"fleet{n}-", dir=workdir)
        self.opts, self.cp, self.nodes, self.endpoints = opts, None, [], []
        self.token = os.path.join(self.dir, "member.token")
        fd = os.open(self.token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(24) + "\n")
        try:
            self._start(settings, n)
        except Exception:
            self.stop()
            raise

    def _start(self, settings, n):
        opts = self.opts
        cp_port = free_port_on(CP_IP)
        self.cp_addr = f"{CP_IP}:{cp_port}"
        self.cp = Proc("cp", [opts.mqttd, "controlplane",
                              "--set", f"controlplane.token_file={self.token}",
                              "--set", "node.id=1",
                              "--set", f"node.data_dir={os.path.join(self.dir, 'cp')}",
                              "--set", f"controlplane.bind={self.cp_addr}",
                              "--set", "controlplane.bootstrap=true",
                              "--set", "controlplane.dataplane_down_after=2",
                              "--set", "controlplane.dataplane_grace_period=2",
                              "--set", "log.level=warn"], self.dir)
        self._wait_status(lambda s: s.get("leader") == 1, "a control-plane leader")
        for i in range(n):
            ip, node_id = NODE_IPS[i], 11 + i
            port, peer = free_port_on(ip), free_port_on(ip)
            sets = [f"dataplane.token_file={self.token}", f"node.id={node_id}", f"node.name=dp{node_id}",
                    f"node.data_dir={os.path.join(self.dir, f'dp{node_id}')}",
                    f"listeners.tcp.bind={ip}:{port}", f"dataplane.peer_bind={ip}:{peer}",
                    "listeners.ws.enabled=false", f"dataplane.controlplane={self.cp_addr}",
                    "dataplane.heartbeat_interval=1", "auth.allow_anonymous=allow",
                    "sys.interval=0", "sys.presence=false", "log.level=warn",
                    f"session.max_queued_messages={settings.queue}",
                    f"mqtt.max_inflight={settings.inflight}",
                    f"mqtt.receive_maximum={settings.inflight}", *settings.mqttd_sets]
            argv = [opts.mqttd, "dataplane"]
            for s in sets:
                argv += ["--set", s]
            self.nodes.append(Proc(f"dp{node_id}", argv, self.dir))
            self.endpoints.append((ip, port))
        for node, (ip, port) in zip(self.nodes, self.endpoints):
            wait_listening(ip, port, node.proc)
        self._wait_status(lambda s: len(s.get("dataplane", [])) == n and
                          all(d.get("state") == "up" for d in s["dataplane"]), f"{n} data-plane nodes up")
        self._probe()

    def status(self):
        env = dict(os.environ)
        with open(self.token) as f:
            env["MQTTD_TOKEN"] = f.read().strip()
        try:
            out = subprocess.run([self.opts.mqttctl, "--server", f"http://{self.cp_addr}", "--timeout", "2",
                                  "--json", "cluster", "status"], capture_output=True, text=True,
                                 timeout=10, env=env, stdin=subprocess.DEVNULL)
            return json.loads(out.stdout) if out.returncode == 0 else None
        except (subprocess.TimeoutExpired, json.JSONDecodeError, OSError):
            return None

    def _wait_status(self, ready, what, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self._check_alive()
            status = self.status()
            if status and ready(status):
                return status
            time.sleep(0.2)
        raise RuntimeError(f"no {what} after {timeout} s")

    def _check_alive(self):
        for p in [self.cp] + self.nodes:
            if p and not p.alive():
                raise RuntimeError(f"{p.name} exited ({p.proc.returncode}): {p.log_tail()}")

    def _probe(self, timeout=20):
        """A subscriber on every node hears a QoS 0 probe published on every
        node: the nodes know one another and their peer links carry messages."""
        subs, pubs = [], []
        try:
            for i, (ip, port) in enumerate(self.endpoints):
                sub = MiniClient(ip, port, f"probe-sub-{i}")
                sub.subscribe("fleet/probe/#")
                subs.append(sub)
                pubs.append(MiniClient(ip, port, f"probe-pub-{i}"))
            want = {f"fleet/probe/{j}" for j in range(len(pubs))}
            heard = [set() for _ in subs]
            deadline = time.time() + timeout
            while time.time() < deadline:
                for j, pub in enumerate(pubs):
                    pub.publish(f"fleet/probe/{j}", b"probe")
                for i, sub in enumerate(subs):
                    heard[i].update(sub.topics_received(0.1))
                if all(h >= want for h in heard):
                    for sub in subs:  # probes still on their way
                        sub.topics_received(0.2)
                    return
            missing = [f"node {i + 1} missed {sorted(want - h)}" for i, h in enumerate(heard) if want - h]
            raise RuntimeError("cross-node probe failed: " + "; ".join(missing))
        finally:
            for c in subs + pubs:
                c.close()

    @property
    def pids(self):
        return [self.cp.pid] + [n.pid for n in self.nodes]

    @property
    def named_pids(self):
        return [("cp", self.cp.pid)] + [(n.name, n.pid) for n in self.nodes]

    def hosts(self, indexes):
        return ",".join(f"{self.endpoints[i][0]}:{self.endpoints[i][1]}" for i in indexes)

    def alive(self):
        return all(p.alive() for p in [self.cp] + self.nodes)

    def log_tail(self):
        return " | ".join(f"{p.name}: {p.log_tail(2)}" for p in [self.cp] + self.nodes if not p.alive())

    def stop(self):
        """SIGTERM to every process at once, then waits for each (SIGKILL after 10 s)."""
        procs = self.nodes + ([self.cp] if self.cp else [])
        for p in procs:
            p.terminate()
        for p in procs:
            p.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Alone:
    """Mosquitto alone, in the Fleet's shape."""

    def __init__(self, opts, settings, workdir):
        self.name = "mosquitto"
        self.broker = bl.start_mosquitto(opts.mosquitto, workdir, settings, opts.mosquitto_nodelay)
        self.endpoints = [("127.0.0.1", self.broker.port)]

    @property
    def pids(self):
        return [self.broker.pid]

    @property
    def named_pids(self):
        return [("mosquitto", self.broker.pid)]

    def hosts(self, indexes):
        return ",".join(f"{self.endpoints[i][0]}:{self.endpoints[i][1]}" for i in indexes)

    def alive(self):
        return self.broker.alive()

    def log_tail(self):
        return self.broker.log_tail(3)

    def stop(self):
        self.broker.stop()


# ---------------------------------------------------------------------------
# Scenarios of the throughput, latency and connect parts.

@dataclass
class Row:
    key: str
    unit: str
    lower: bool = False


@dataclass
class Scenario:
    name: str
    part: str
    args: list
    rows: list
    qos: int = 0
    conn: bool = False
    # (column, broker kind, placement): kind is "mosquitto" or a node count;
    # placement maps the broker's node count to (subscriber node indexes,
    # publisher node indexes) (for conn: the nodes of --hosts).
    columns: list = field(default_factory=list)


def spread(n):
    return list(range(n))


def rotated(n):
    return [(i + 1) % n for i in range(n)]


def scenarios(opts):
    n, rate = opts.clients, opts.latency_rate
    rows = [Row("msgs_per_sec", "msg/s"), Row(CPU_KEY, "msg per broker CPU-s")]
    deliveries = [Row("msgs_per_sec", "deliveries/s"), Row(CPU_KEY, "msg per broker CPU-s")]

    def three(placement):
        return [("mosquitto", "mosquitto", placement), ("1 node", 1, placement), ("3 nodes", 3, placement)]

    fanin = lambda k: ([0], spread(k))  # noqa: E731 - one subscriber on node 1, publishers everywhere
    fanout = lambda k: (spread(k), [0])  # noqa: E731 - one publisher on node 1, subscribers everywhere
    across = lambda k: (spread(k), rotated(k))  # noqa: E731 - pair i: subscriber on node i, publisher on i+1
    local = lambda k: (spread(k), spread(k))  # noqa: E731 - pair i: both on node i
    lat_same = lambda k: ([0], [0])  # noqa: E731
    lat_across = lambda k: ([0], list(range(1, k)) or [0])  # noqa: E731
    conn = ["conn", "--clients", str(opts.conn_clients), "--duration", "30"]
    lat = ["latency", "--rate", str(rate), "--publishers", "10"]
    return [
        Scenario("fanin-qos0", "throughput", ["fanin", "--publishers", str(n), "--qos", "0"], rows, 0,
                 columns=three(fanin)),
        Scenario("fanin-qos1", "throughput", ["fanin", "--publishers", str(n), "--qos", "1"], rows, 1,
                 columns=three(fanin)),
        Scenario("fanout", "throughput", ["fanout", "--subscribers", str(n), "--qos", "0"], deliveries, 0,
                 columns=three(fanout)),
        Scenario("fanout-qos1", "throughput", ["fanout", "--subscribers", str(n), "--qos", "1"], deliveries, 1,
                 columns=three(fanout)),
        Scenario("pairs", "throughput", ["pairs", "--pairs", str(n), "--qos", "0"], rows, 0,
                 columns=three(across)),
        Scenario("pairs-qos1", "throughput", ["pairs", "--pairs", str(n), "--qos", "1"], rows, 1,
                 columns=three(across)),
        Scenario("pairs-local", "throughput", ["pairs", "--pairs", str(n), "--qos", "0"], rows, 0,
                 columns=[("3 nodes", 3, local)]),
        *[Scenario(f"latency-qos{q}", "latency", lat + ["--qos", str(q)],
                   [Row("p50_us", "p50 µs", True), Row("p99_us", "p99 µs", True), Row(CPU_KEY, "msg per broker CPU-s")],
                   q, columns=[("1 node", 1, lat_same), ("3 nodes, same node", 3, lat_same),
                               ("3 nodes, across nodes", 3, lat_across)])
          for q in (0, 1)],
        Scenario("connect", "connect", conn,
                 [Row("connect_rate", f"connections/s, {opts.conn_clients:,} clients"),
                  Row("conns_per_broker_cpu_s", "connections per broker CPU-s")],
                 conn=True, columns=[("mosquitto", "mosquitto", spread), ("1 node", 1, spread),
                                     ("3 nodes", 3, spread)]),
    ]


def select_scenarios(found, only, parser):
    if not only:
        return found, set(PARTS)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen, parts = [], set()
    for w in wanted:
        if w == "connections":
            parts.add(w)
            continue
        hits = [s for s in found if s.name == w or s.part == w]
        if not hits:
            parser.error(f"--only: no part or scenario {w!r}; there are {', '.join(PARTS)} and "
                         f"{', '.join(s.name for s in found)}")
        chosen += [s for s in hits if s not in chosen]
        parts.update(s.part for s in hits)
    return [s for s in found if s in chosen], parts


def judge(s, status, result, tail, alive):
    run = {"ok": False, "reason": None, "values": {}, "lost": 0, "expected": 0, "result": result}
    problems = []
    if not alive:
        problems.append("a broker process died")
    if status is None:
        problems.append(tail)
    elif status != 0:
        problems.append(f"mqtt-bench exited {status}: {tail}")
    if result is None:
        problems.append("no JSON from mqtt-bench")
    else:
        r = result
        if s.conn:
            if r.get("failed") or r.get("dropped"):
                problems.append(f"{r.get('failed')} connections failed, {r.get('dropped')} dropped")
            cpu = r.get("broker_cpu_s")
            r["conns_per_broker_cpu_s"] = round(r.get("connected", 0) / cpu, 1) if cpu else None
        else:
            for key in ("duplicates", "reordered", "corrupt"):
                if r.get(key):
                    problems.append(f"{r[key]} {key}")
            if r.get("unacked"):
                problems.append(f"{r['unacked']} QoS {s.qos} flows unacknowledged")
            lost = r.get("lost", 0)
            expected = r.get("expected", r.get("sent", 0))
            if lost and s.qos == 0:
                run["lost"], run["expected"] = lost, expected
            elif lost:
                problems.append(f"lost {lost:,} of {expected:,} at QoS {s.qos}")
            if r.get("sent", 0) == 0:
                problems.append("nothing sent")
        for row in s.rows:
            value = r.get(row.key)
            if value is None:
                problems.append(f"no {row.key} in the JSON")
            run["values"][row.key] = value
    if problems:
        run["reason"] = "; ".join(p for p in problems if p)
    else:
        run["ok"] = True
    return run


def start_broker(kind, opts, settings, workdir):
    if kind == "mosquitto":
        return Alone(opts, settings, workdir)
    return Fleet(opts, settings, kind, workdir)


def run_one(s, column, opts, settings, workdir):
    _, kind, placement = column
    try:
        broker = start_broker(kind, opts, settings, workdir)
    except Exception as error:  # noqa: BLE001 - this run's failure
        return {"ok": False, "reason": f"did not start: {error}", "values": {}, "lost": 0, "expected": 0,
                "result": None}
    try:
        k = len(broker.endpoints)
        pids = ",".join(str(p) for p in broker.pids)
        args = list(s.args)
        if s.conn:
            args += ["--hosts", broker.hosts(placement(k)), "--pid", pids]
            timeout = 30 + 60
        else:
            subs, pubs = placement(k)
            args += ["--sub-hosts", broker.hosts(subs), "--pub-hosts", broker.hosts(pubs),
                     "--duration", f"{opts.duration:g}", "--broker-pid", pids]
            timeout = opts.duration + 60
        cpu_before = {name: bl.proc_cpu_s(pid) for name, pid in broker.named_pids}
        try:
            out = subprocess.run([opts.bench] + args, capture_output=True, text=True, timeout=timeout,
                                 stdin=subprocess.DEVNULL)
            status = out.returncode
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            result = json.loads(lines[-1]) if lines else None
            tail = "; ".join(out.stderr.strip().splitlines()[-3:])
        except subprocess.TimeoutExpired:
            status, result, tail = None, None, f"mqtt-bench did not finish within {timeout} s"
        except json.JSONDecodeError:
            status, result, tail = status, None, "unreadable JSON"
        alive = broker.alive()
        if not alive:
            tail += f" | {broker.log_tail()}"
        run = judge(s, status, result, tail, alive)
        run["args"] = args
        if alive:  # CPU seconds of each process over the whole mqtt-bench run, setup included
            run["cpu_by_process"] = {name: round(bl.proc_cpu_s(pid) - cpu_before[name], 2)
                                     for name, pid in broker.named_pids}
        return run
    finally:
        broker.stop()


def fmt(value):
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.3g}"


def summarize(runs, key):
    if not runs:
        return None, "-"
    failed = [r for r in runs if not r["ok"]]
    if failed:
        return None, f"FAILED {len(failed)}/{len(runs)}"
    med = statistics.median(r["values"][key] for r in runs)
    text = fmt(med)
    lost = [r for r in runs if r["lost"]]
    if lost:
        worst = max(lost, key=lambda r: r["lost"])
        pct = 100.0 * worst["lost"] / max(worst["expected"] or 1, 1)
        text += f" (lost {worst['lost']:,}, {pct:.1f}%, in {len(lost)}/{len(runs)})"
    return med, text


def print_tables(chosen, results, out):
    for part, title in (("throughput", "Throughput: clients spread over the nodes"),
                        ("latency", "Latency at a fixed total rate"),
                        ("connect", "Connect rate")):
        group = [s for s in chosen if s.part == part]
        if not group:
            continue
        columns = []
        for s in group:
            for c in s.columns:
                if c[0] not in columns:
                    columns.append(c[0])
        ratio = part == "throughput" and "1 node" in columns and "3 nodes" in columns
        head = ["scenario", "unit"] + columns + (["3 nodes / 1 node"] if ratio else [])
        out.write(f"\n{title}\n\n| " + " | ".join(head) + " |\n|---|---|" + "---:|" * (len(head) - 2) + "\n")
        for s in group:
            per = results.get(s.name, {})
            for row in s.rows:
                cells, meds = [], {}
                for c in columns:
                    if c not in per:
                        cells.append("n/a" if all(x[0] != c for x in s.columns) else "not run")
                        continue
                    meds[c], text = summarize(per[c], row.key)
                    cells.append(text)
                if ratio:
                    one, three = meds.get("1 node"), meds.get("3 nodes")
                    cells.append(f"{three / one:.2f}" if one and three else "-")
                unit = row.unit + (" (lower is better)" if row.lower else "")
                out.write("| " + " | ".join([s.name, unit] + cells) + " |\n")


# ---------------------------------------------------------------------------
# The connections part.

def run_connections(opts, settings, workdir, out, save):
    """Returns (ok, summary dict)."""
    nodes, total = opts.big_nodes, opts.big_clients
    per_node = [total // nodes + (1 if i < total % nodes else 0) for i in range(nodes)]
    summary = {"nodes": nodes, "clients": total, "per_node": per_node, "ok": False}
    sys.stderr.write(f"connections: starting a fleet of {nodes} nodes for {total:,} clients\n")
    try:
        fleet = Fleet(opts, settings, nodes, workdir)
    except Exception as error:  # noqa: BLE001
        summary["reason"] = f"the fleet did not start: {error}"
        return False, summary
    generators = []
    try:
        rss_before = {p: bl.proc_rss_kb(p) for p in fleet.pids}
        topic = "fleet/all"
        t0 = time.time()
        for i in range(nodes):
            argv = [opts.bench, "conn", "--clients", str(per_node[i]), "--hosts", fleet.hosts([i]),
                    "--subscribe", "--subscribe-topic", topic, "--duration", str(opts.big_connect_window),
                    "--hold", str(opts.big_hold), "--keep-alive", "600", "--concurrency", "100"]
            log = open(os.path.join(workdir, f"gen{i}.err"), "w")
            outf = open(os.path.join(workdir, f"gen{i}.out"), "w")
            generators.append((subprocess.Popen(argv, stdout=outf, stderr=log, stdin=subprocess.DEVNULL),
                               log, outf, os.path.join(workdir, f"gen{i}.err")))
        # Every generator logs "connect phase done" when its clients are in.
        connected_at = [None] * nodes
        deadline = t0 + opts.big_connect_window + 30
        while None in connected_at and time.time() < deadline:
            for i, (proc, _, _, err) in enumerate(generators):
                if connected_at[i] is None:
                    with open(err) as f:
                        if "connect phase done" in f.read():
                            connected_at[i] = time.time()
                    if connected_at[i] is None and proc.poll() is not None:
                        connected_at[i] = time.time()  # it ended: its JSON says why
            if not fleet.alive():
                break
            time.sleep(0.2)
        connect_wall = max(c for c in connected_at if c) - t0 if any(connected_at) else None
        sys.stderr.write(f"connections: generators done connecting after {connect_wall or 0:.1f} s; "
                         f"holding {opts.big_settle:g} s before reading RSS\n")
        time.sleep(opts.big_settle)
        rss_held = {p: bl.proc_rss_kb(p) for p in fleet.pids if os.path.exists(f"/proc/{p}")}
        # One QoS 1 publish on node 1; its PUBACK comes once every node with
        # a route queued it for its subscribers.
        publisher = MiniClient(*fleet.endpoints[0], "fleet-bench-publisher")
        published_ms = time.time() * 1000
        publisher.publish(topic, b"one message for every subscriber", qos=1, packet_id=7)
        acked = publisher.wait_puback(7, 30)
        puback_ms = time.time() * 1000 - published_ms
        publisher.close()
        sys.stderr.write(f"connections: published once, PUBACK {'after %.0f ms' % puback_ms if acked else 'MISSING'}; "
                         f"waiting for the generators to end their hold\n")
        time.sleep(min(10.0, opts.big_hold / 4))
        rss_after = {p: bl.proc_rss_kb(p) for p in fleet.pids if os.path.exists(f"/proc/{p}")}
        results = []
        for i, (proc, log, outf, err) in enumerate(generators):
            remaining = max(5.0, t0 + opts.big_connect_window + opts.big_hold + 60 - time.time())
            try:
                proc.wait(remaining)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
            outf.close()
            with open(os.path.join(workdir, f"gen{i}.out")) as f:
                lines = [line for line in f.read().splitlines() if line.startswith("{")]
            with open(err) as f:
                err_tail = " / ".join(f.read().strip().splitlines()[-2:])
            results.append((proc.returncode, json.loads(lines[-1]) if lines else None, err_tail))
        alive = fleet.alive()
        problems = []
        if not alive:
            problems.append(f"a fleet process died: {fleet.log_tail()}")
        if not acked:
            problems.append("no PUBACK for the publish within 30 s")
        rows = []
        for i, (status, r, err_tail) in enumerate(results):
            dp = fleet.nodes[i].pid
            if r is None:
                problems.append(f"generator {i + 1}: no JSON (exit {status}): {err_tail}")
                continue
            if status != 0 or r.get("failed") or r.get("dropped"):
                problems.append(f"generator {i + 1}: {r.get('failed')} failed, {r.get('dropped')} dropped "
                                f"(exit {status}): {err_tail}")
            connected = r.get("connected", 0)
            if r.get("clients_delivered", 0) != connected:
                problems.append(f"node {i + 1}: {connected - r.get('clients_delivered', 0):,} of {connected:,} "
                                f"clients did not get the publish")
            if r.get("deliveries", 0) != r.get("clients_delivered", 0):
                problems.append(f"node {i + 1}: {r['deliveries'] - r['clients_delivered']:,} duplicate deliveries")
            per_conn = lambda after: (  # noqa: E731
                (after[dp] - rss_before[dp]) * 1024 / connected if connected and dp in after else None)
            rows.append({"node": i + 1, "pid": dp, "connected": connected, "connect_secs": r.get("connect_secs"),
                         "rss_before_kb": rss_before[dp], "rss_held_kb": rss_held.get(dp),
                         "rss_after_publish_kb": rss_after.get(dp),
                         "bytes_per_conn_held": per_conn(rss_held), "bytes_per_conn_after_publish": per_conn(rss_after),
                         "deliveries": r.get("deliveries"), "clients_delivered": r.get("clients_delivered"),
                         "last_delivery_unix_ms": r.get("last_delivery_unix_ms")})
        cp = fleet.cp.pid
        connected = sum(r["connected"] for r in rows)
        delivered = sum(r["clients_delivered"] or 0 for r in rows)
        lasts = [r["last_delivery_unix_ms"] for r in rows if r["last_delivery_unix_ms"]]
        slowest = max((r["connect_secs"] or 0) for r in rows) if rows else 0
        if connected < total:
            problems.append(f"only {connected:,} of {total:,} clients connected")
        summary.update({
            "connected": connected, "delivered": delivered,
            "deliveries": sum(r["deliveries"] or 0 for r in rows),
            "connect_secs": slowest, "connect_rate": connected / slowest if slowest else None,
            "puback_ms": round(puback_ms, 1) if acked else None,
            "all_delivered_ms": round(max(lasts) - published_ms, 1) if lasts else None,
            "cp_rss_before_kb": rss_before[cp], "cp_rss_held_kb": rss_held.get(cp), "rows": rows,
            "problems": problems, "ok": not problems,
        })
        write_connections(summary, out)
        return summary["ok"], summary
    finally:
        for proc, log, outf, _ in generators:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
            outf.close()
        fleet.stop()
        if save:
            save.write(json.dumps({"part": "connections", "result": summary}) + "\n")
            save.flush()


def write_connections(summary, out):
    out.write(f"\nConnections: {summary['clients']:,} subscribed clients over {summary['nodes']} data-plane "
              f"nodes, one load generator (mqtt-bench conn) per node\n\n")
    out.write("| node | clients | connect s | RSS before (MiB) | RSS held (MiB) | B per connection, held | "
              "B per connection, after the publish | deliveries |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    for r in summary["rows"]:
        mib = lambda kb: f"{kb / 1024:,.1f}" if kb else "-"  # noqa: E731
        out.write(f"| {r['node']} | {r['connected']:,} | {fmt(r['connect_secs'])} | {mib(r['rss_before_kb'])} | "
                  f"{mib(r['rss_held_kb'])} | {fmt(r['bytes_per_conn_held'])} | "
                  f"{fmt(r['bytes_per_conn_after_publish'])} | {r['deliveries']:,} |\n")
    out.write(f"\n- connected: {summary['connected']:,} of {summary['clients']:,} "
              f"(slowest generator {fmt(summary['connect_secs'])} s, "
              f"{fmt(summary['connect_rate'])} connections/s in all)\n")
    out.write(f"- one QoS 1 publish on node 1: PUBACK after {fmt(summary['puback_ms'])} ms; "
              f"{summary['delivered']:,} clients got it ({summary['deliveries']:,} deliveries), the last "
              f"{fmt(summary['all_delivered_ms'])} ms after publishing\n")
    out.write(f"- control plane RSS: {summary['cp_rss_before_kb'] / 1024:,.1f} MiB before, "
              f"{(summary['cp_rss_held_kb'] or 0) / 1024:,.1f} MiB held\n")
    for p in summary["problems"]:
        out.write(f"- FAILED: {p}\n")


# ---------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4, help="publishing window per run, seconds")
    parser.add_argument("--only", default="", help="comma-separated parts or scenarios")
    parser.add_argument("--queue", type=int, default=1000, help="messages queued per client (as compare.py)")
    parser.add_argument("--inflight", type=int, default=32, help="in-flight window per client (as compare.py)")
    parser.add_argument("--clients", type=int, default=100,
                        help="publishers (fanin), subscribers (fanout), pairs (pairs)")
    parser.add_argument("--latency-rate", type=int, default=10000, help="total msg/s of the latency part")
    parser.add_argument("--conn-clients", type=int, default=15000, help="clients of the connect part")
    parser.add_argument("--big-clients", type=int, default=100000, help="clients of the connections part")
    parser.add_argument("--big-nodes", type=int, default=6, help="data-plane nodes of the connections part")
    parser.add_argument("--big-connect-window", type=float, default=120,
                        help="seconds each generator may take to connect its clients")
    parser.add_argument("--big-hold", type=float, default=60,
                        help="seconds each generator holds its clients once connected")
    parser.add_argument("--big-settle", type=float, default=12,
                        help="seconds between the last generator connected and reading RSS (idle "
                             "connections hibernate, the allocator returns freed pages)")
    parser.add_argument("--mqttd", default=bl.default_mqttd(), help="env MQTTD_BIN")
    parser.add_argument("--mqttctl", default=None, help="default: next to mqttd")
    parser.add_argument("--mqttd-set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra --set for every data-plane node, repeatable")
    parser.add_argument("--bench", default=bl.default_bench(), help="env MQTT_BENCH")
    parser.add_argument("--mosquitto", default=bl.default_mosquitto())
    parser.add_argument("--mosquitto-nodelay", action="store_true", help="Mosquitto with set_tcp_nodelay true")
    parser.add_argument("--save", metavar="FILE", help="also write every run's JSON here (JSON lines)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any run failed, Mosquitto's too")
    opts = parser.parse_args()
    if opts.rounds < 1 or not 0 < opts.duration <= 60:
        parser.error("--rounds must be at least 1 and --duration in (0, 60]")
    if not 2 <= opts.big_nodes <= len(NODE_IPS):
        parser.error(f"--big-nodes must be 2..{len(NODE_IPS)}")
    if -(-opts.big_clients // opts.big_nodes) > 18000:
        parser.error("--big-clients / --big-nodes must stay at most 18,000 (20,000 open files a process)")
    if not 1 <= opts.conn_clients <= 18000 or not 1 <= opts.clients <= 5000:
        parser.error("--conn-clients must be 1..18000 and --clients 1..5000")
    if opts.big_hold < 4 * opts.big_settle / 3 or opts.big_hold > 300 or opts.big_connect_window > 300:
        parser.error("--big-hold must be at least 4/3 of --big-settle; --big-hold and "
                     "--big-connect-window at most 300")
    opts.mqttctl = opts.mqttctl or os.path.join(os.path.dirname(opts.mqttd), "mqttctl")
    bl.need_executable(opts.bench, "mqtt-bench (cargo build --release -p mqtt-bench, or --bench)")
    bl.need_executable(opts.mqttd, "mqttd (cargo build --release -p mqttd, or --mqttd)")
    bl.need_executable(opts.mqttctl, "mqttctl (cargo build --release -p mqttctl, or --mqttctl)")
    have_mosquitto = os.access(opts.mosquitto, os.X_OK)
    chosen, parts = select_scenarios(scenarios(opts), opts.only, parser)
    settings = bl.Settings(queue=opts.queue, inflight=opts.inflight, mqttd_sets=opts.mqttd_set)
    files = bl.raise_open_files()

    out = sys.stdout
    out.write(f"# {bl.command_line()}\n# {bl.machine_line()}\n")
    out.write(f"# mqttd: {opts.mqttd} ({bl.version_of([opts.mqttd, '--version'])}); mqttctl: {opts.mqttctl}\n")
    out.write(f"# mosquitto: {opts.mosquitto} ({bl.version_of([opts.mosquitto, '-h']) if have_mosquitto else 'not installed'}"
              f"{', set_tcp_nodelay true' if opts.mosquitto_nodelay else ''})\n")
    out.write(f"# fleet: control plane on {CP_IP}, data-plane nodes on {NODE_IPS[0]}.. (node defaults: "
              f"worker threads = cores); broker CPU = every mqttd process of the fleet, control plane "
              f"included; a fresh fleet or Mosquitto per run\n")
    for line in settings.describe():
        out.write(f"# {line}\n")
    out.write(f"# load: mqtt-bench {opts.bench}, 64-byte payloads, {opts.clients} clients per message "
              f"scenario, {opts.duration:g} s windows, {opts.rounds} round(s), broker order rotated every "
              f"round; one load-generator process (one thread) per run but in `connections`; open-file limit "
              f"{files}\n# QoS 0 loss is shown, not failed\n")
    out.flush()

    workdir = tempfile.mkdtemp(prefix="mqtt-fleet-")
    save = open(opts.save, "w") if opts.save else None
    results = {}  # scenario -> column -> [run]
    failures = []
    connections_ok = True
    try:
        for round_no in range(opts.rounds):
            for s in chosen:
                columns = [c for c in s.columns if c[1] != "mosquitto" or have_mosquitto]
                for column in bl.rotated(columns, round_no) if columns else []:
                    run = run_one(s, column, opts, settings, workdir)
                    results.setdefault(s.name, {}).setdefault(column[0], []).append(run)
                    first = s.rows[0].key
                    line = (f"round {round_no + 1} {s.name:12} {column[0]:22} {first}="
                            f"{fmt(run['values'].get(first))} cpu={fmt(run['values'].get(s.rows[-1].key))}")
                    if run["lost"]:
                        line += f" lost={run['lost']}"
                    if not run["ok"]:
                        line += f"  FAILED: {run['reason']}"
                        failures.append((s.name, column, run))
                    sys.stderr.write(line + "\n")
                    if save:
                        save.write(json.dumps({"round": round_no + 1, "scenario": s.name, "broker": column[0],
                                               "args": run.get("args"),
                                               "cpu_by_process": run.get("cpu_by_process"), "ok": run["ok"], "reason": run["reason"],
                                               "result": run["result"]}) + "\n")
                        save.flush()
        print_tables(chosen, results, out)
        if chosen:
            out.write("\nMedians of the rounds; FAILED k/n: k of n rounds failed (reasons below). "
                      "\"lost\": QoS 0 messages lost in the worst round. Placement: fan-in, one subscriber "
                      "on node 1 and the publishers dealt over the nodes; fan-out, one publisher on node 1 "
                      "and the subscribers dealt over the nodes; pairs, pair i's subscriber on node i mod n "
                      "and its publisher on the next node (pairs-local: the same node); latency across "
                      "nodes, subscriber on node 1 and publishers on nodes 2 and 3.\n")
        for name, column, run in failures:
            out.write(f"- FAILED {name} {column[0]}: {run['reason']}\n")
        out.flush()
        if "connections" in parts:
            connections_ok, _ = run_connections(opts, settings, workdir, out, save)
    finally:
        if save:
            save.close()
        shutil.rmtree(workdir, ignore_errors=True)
    ours = [f for f in failures if f[1][1] != "mosquitto"]
    measured = any(r["ok"] for per in results.values() for runs in per.values() for r in runs)
    if ours or (opts.strict and failures) or not connections_ok or (chosen and not measured):
        sys.exit(1)


if __name__ == "__main__":
    main()
