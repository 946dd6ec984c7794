#!/usr/bin/env python3
"""Side-by-side benchmark: mqttd against Mosquitto (and rumqttd if installed).

Starts each broker on its own loopback port with a generated configuration
(Mosquitto's limits raised so that it does not drop, run both with and
without TCP_NODELAY and the better result counted), runs every scenario of
mqtt-bench against each broker, interleaved, --rounds times, and prints a
table of medians with the ratio ours/Mosquitto. Broker RSS per idle
connection comes from /proc/PID/status around the `conn` scenario.

    python3 benches/compare.py [--rounds 3] [--duration 5] [--only fanin,fanout]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", "/var/cache/mqttd-target")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Broker:
    def __init__(self, name, argv, port, workdir):
        self.name, self.port = name, port
        self.log = open(os.path.join(workdir, f"{name}.log"), "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir)
        wait_port(port)
        # Let start-up finish before anything is measured: a listening port
        # is not a settled process (mqttd's embedded control plane is still
        # opening its store, and its data plane waits for the first view),
        # and `conn` reads the RSS before its clients connect.
        time.sleep(1)

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def start_mqttd(workdir):
    port = free_port()
    # A fresh data directory each time: replaying an earlier run's Raft log at
    # start would leave a warm heap, and the next run would reuse it.
    data = tempfile.mkdtemp(prefix="mqttd-data-", dir=workdir)
    argv = [os.path.join(TARGET, "release", "mqttd"),
            "--set", f"listeners.tcp.bind=127.0.0.1:{port}", "--set", "listeners.ws.enabled=false",
            "--set", f"node.data_dir={data}", "--set", "sys.interval=0",
            "--set", "controlplane.bind=127.0.0.1:0",
            "--set", "mqtt.max_inflight=1000",
            "--set", "mqtt.receive_maximum=1000", "--set", "log.level=warn"]
    return Broker("mqttd", argv, port, workdir)


def start_mosquitto(workdir, nodelay):
    port = free_port()
    conf = os.path.join(workdir, f"mosquitto-{nodelay}.conf")
    with open(conf, "w") as f:
        f.write(f"""listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
max_inflight_messages 0
max_keepalive 65535
set_tcp_nodelay {'true' if nodelay else 'false'}
log_dest none
""")
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    name = "mosquitto-nodelay" if nodelay else "mosquitto"
    return Broker(name, [exe, "-c", conf], port, workdir)


def start_rumqttd(workdir):
    exe = shutil.which("rumqttd") or os.path.expanduser("~/.cargo/bin/rumqttd")
    if not os.path.exists(exe):
        return None
    port = free_port()
    conf = os.path.join(workdir, "rumqttd.toml")
    with open(conf, "w") as f:
        f.write(f"""id = 0
[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 0
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 1000
dynamic_filters = true
""")
    return Broker("rumqttd", [exe, "-c", conf], port, workdir)


SCENARIOS = {
    "conn": (["conn", "--clients", "5000", "--hold", "2"], "bytes_per_conn", "B/conn"),
    "fanin-qos0": (["fanin", "--publishers", "100", "--qos", "0"], "msgs_per_sec", "msg/s"),
    "fanin-qos1": (["fanin", "--publishers", "100", "--qos", "1"], "msgs_per_sec", "msg/s"),
    "fanout": (["fanout", "--subscribers", "100", "--qos", "0"], "msgs_per_sec", "deliveries/s"),
    "pairs": (["pairs", "--pairs", "100", "--qos", "0"], "msgs_per_sec", "msg/s"),
    "latency": (["latency", "--rate", "10000", "--publishers", "10"], "p99_us", "p99 us"),
    "wildcards": (["wildcards", "--filters", "100000"], "msgs_per_sec", "msg/s"),
}
LOWER_IS_BETTER = {"conn", "latency"}


def run_bench(args, broker, duration):
    exe = os.environ.get("MQTT_BENCH", os.path.join(TARGET, "release", "mqtt-bench"))
    argv = [exe] + args + ["--port", str(broker.port), "--duration", str(duration)]
    if args[0] == "conn":
        argv += ["--pid", str(broker.proc.pid)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0 or not lines:
        print(f"  {broker.name} {args[0]} failed: {out.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--only", default="")
    opts = parser.parse_args()
    chosen = [s for s in SCENARIOS if not opts.only or s in opts.only.split(",")]
    workdir = tempfile.mkdtemp(prefix="mqtt-compare-")
    results = {}  # scenario -> broker -> [values]
    for round_no in range(opts.rounds):
        for scenario in chosen:
            args, key, _ = SCENARIOS[scenario]
            starters = [("mqttd", lambda: start_mqttd(workdir)),
                        ("mosquitto", lambda: start_mosquitto(workdir, False)),
                        ("mosquitto-nodelay", lambda: start_mosquitto(workdir, True)),
                        ("rumqttd", lambda: start_rumqttd(workdir))]
            for name, start in starters:
                broker = start()
                if broker is None:
                    continue
                try:
                    result = run_bench(args, broker, opts.duration)
                finally:
                    broker.stop()
                if result is not None:
                    value = result.get(key)
                    results.setdefault(scenario, {}).setdefault(name, []).append(value)
                    print(f"round {round_no + 1} {scenario:12} {name:18} {key}={value} "
                          f"lost={result.get('lost', '-')}", file=sys.stderr)
    print_table(chosen, results)


def print_table(chosen, results):
    print(f"\n{'scenario':14}{'unit':14}{'mqttd':>12}{'mosquitto*':>12}{'rumqttd':>12}{'ours/mosq':>11}")
    for scenario in chosen:
        _, _, unit = SCENARIOS[scenario]
        row = results.get(scenario, {})
        med = {n: statistics.median(v) for n, v in row.items() if v and None not in v}
        lower = scenario.split("-")[0] in LOWER_IS_BETTER
        mosq = [med[n] for n in ("mosquitto", "mosquitto-nodelay") if n in med]
        best_mosq = (min(mosq) if lower else max(mosq)) if mosq else None
        ours = med.get("mqttd")
        ratio = f"{ours / best_mosq:.2f}" if ours and best_mosq else "-"
        fmt = lambda v: f"{v:,.0f}" if isinstance(v, (int, float)) else "-"
        print(f"{scenario:14}{unit:14}{fmt(ours):>12}{fmt(best_mosq):>12}{fmt(med.get('rumqttd')):>12}{ratio:>11}")
    print("mosquitto*: the better of Mosquitto with and without set_tcp_nodelay; medians of the rounds.")


if __name__ == "__main__":
    main()
