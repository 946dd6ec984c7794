"""Shared pieces of the benchmark scripts (compare.py, hibernation_cost.py,
flood_rss.py, idle_cpu.py, ceiling/run.py): starting brokers on free
loopback ports with fresh data directories and the same settings, reading
their memory and CPU time from /proc, and running mqtt-bench.

Not a script of its own. Every broker started here is stopped by the
caller (`Broker.stop`, in a `finally`); `Brokers` does that for a group.
"""

import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def default_mqttd():
    return os.environ.get("MQTTD_BIN", os.path.join(TARGET, "release", "mqttd"))


def default_bench():
    return os.environ.get("MQTT_BENCH", os.path.join(TARGET, "release", "mqtt-bench"))


def default_mosquitto():
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def default_rumqttd():
    return shutil.which("rumqttd") or os.path.expanduser("~/.cargo/bin/rumqttd")


def default_baseline():
    return os.environ.get("BASELINE_BIN", os.path.join(TARGET, "release", "baseline"))


def need_executable(path, what):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        sys.exit(f"no {what} at {path}")
    return path


def raise_open_files(want=20000):
    """Raises our soft open-file limit (inherited by the brokers and
    mqtt-bench) towards `want`, within the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def proc_rss_kb(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


def proc_cpu_s(pid):
    """utime + stime of the whole process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Settings:
    """What every broker of a comparison gets alike."""
    queue: int = 1000          # messages queued per client beyond the in-flight window
    inflight: int = 32         # unacknowledged QoS 1/2 messages per client, each way
    mqttd_sets: list = field(default_factory=list)  # extra mqttd --set KEY=VALUE

    def describe(self):
        return [
            f"queue per client: {self.queue} messages (mqttd session.max_queued_messages, "
            f"Mosquitto max_queued_messages, rumqttd max_outgoing_packet_count, its nearest "
            f"equivalent)",
            f"in-flight window: {self.inflight} (mqttd mqtt.max_inflight and mqtt.receive_maximum, "
            f"Mosquitto max_inflight_messages, rumqttd max_inflight_count)",
            "$SYS: off (mqttd sys.interval=0 and sys.presence=false, Mosquitto sys_interval 0; "
            "rumqttd publishes none)",
            "persistence: off where there is a switch (Mosquitto persistence false; mqttd keeps "
            "its control plane's Raft log in a fresh data directory per start)",
        ] + ([f"mqttd extra settings: {' '.join(self.mqttd_sets)}"] if self.mqttd_sets else [])


def mqtt_string(text):
    """An MQTT UTF-8 string: two length bytes, then the bytes."""
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def mqtt_packet(first, body):
    """A whole MQTT packet: the first byte, the remaining length, `body`."""
    out = bytearray([first])
    length = len(body)
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes(out) + body


class Broker:
    """A broker process on 127.0.0.1:port, its output in workdir/NAME-N.log."""

    def __init__(self, name, argv, port, workdir, settle=1.0):
        self.name, self.port, self.argv = name, port, argv
        self.log_path = os.path.join(workdir, f"{name}-{port}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir,
                                     stdin=subprocess.DEVNULL)
        try:
            wait_port(port, self.proc)
            # A listening port is not a settled process (mqttd's embedded
            # control plane is still opening its store, and its data plane
            # waits for the first view); let start-up finish before anything
            # is measured.
            time.sleep(settle)
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with status {self.proc.returncode} during start-up")
        except Exception:
            self.stop()
            raise

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def rss_kb(self):
        return proc_rss_kb(self.pid)

    def hwm_kb(self):
        return proc_rss_kb(self.pid, "VmHWM")

    def cpu_s(self):
        return proc_cpu_s(self.pid)

    def log_tail(self, lines=5):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-lines:]).strip()
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()


def start_mqttd(exe, workdir, settings, extra_sets=(), name="mqttd"):
    port = free_port()
    # A fresh data directory each time: replaying an earlier run's Raft log at
    # start would leave a warm heap, and the next run would reuse it.
    data = tempfile.mkdtemp(prefix="mqttd-data-", dir=workdir)
    sets = [f"listeners.tcp.bind=127.0.0.1:{port}", "listeners.ws.enabled=false",
            f"node.data_dir={data}", "controlplane.bind=127.0.0.1:0", "log.level=warn",
            "sys.interval=0", "sys.presence=false",
            f"session.max_queued_messages={settings.queue}",
            f"mqtt.max_inflight={settings.inflight}", f"mqtt.receive_maximum={settings.inflight}",
            *settings.mqttd_sets, *extra_sets]
    argv = [exe]
    for s in sets:
        argv += ["--set", s]
    return Broker(name, argv, port, workdir)


def start_mosquitto(exe, workdir, settings, nodelay, name=None):
    port = free_port()
    name = name or ("mosquitto-nodelay" if nodelay else "mosquitto")
    conf = os.path.join(workdir, f"{name}-{port}.conf")
    with open(conf, "w") as f:
        f.write(f"""listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages {settings.queue}
max_inflight_messages {settings.inflight}
sys_interval 0
max_keepalive 65535
set_tcp_nodelay {'true' if nodelay else 'false'}
log_dest none
""")
    return Broker(name, [exe, "-c", conf], port, workdir)


def start_rumqttd(exe, workdir, settings, name="rumqttd"):
    port = free_port()
    conf = os.path.join(workdir, f"rumqttd-{port}.toml")
    with open(conf, "w") as f:
        f.write(f"""id = 0
[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = {settings.queue}
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 0
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = {settings.inflight}
dynamic_filters = true
""")
    return Broker(name, [exe, "-c", conf], port, workdir)


def start_baseline(exe, workdir, mode, name="baseline"):
    port = free_port()
    return Broker(name, [exe, "--port", str(port), "--mode", mode], port, workdir, settle=0.3)


def run_bench(exe, args, broker, timeout):
    """Runs mqtt-bench against `broker`; returns (status, json or None, stderr tail)."""
    argv = [exe] + args + ["--port", str(broker.port)]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, None, f"mqtt-bench did not finish within {timeout} s"
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    result = None
    if lines:
        try:
            result = json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
    tail = "; ".join(line for line in out.stderr.strip().splitlines()[-3:])
    return out.returncode, result, tail


def command_line():
    return " ".join(["python3"] + [os.path.relpath(sys.argv[0], os.getcwd())] + sys.argv[1:])


def machine_line():
    cores = os.cpu_count()
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // (1024 * 1024)
    except OSError:
        mem = "?"
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    return f"{time.strftime('%Y-%m-%d %H:%M')}, {cores} cores, {mem} GiB, repository at {commit}"


def version_of(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL)
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# Broker variants the smaller scripts accept by name.
MQTTD_VARIANTS = {
    "mqttd": [],
    "mqttd-nohibernate": ["mqtt.hibernate=false"],
}
BROKER_NAMES = [*MQTTD_VARIANTS, "mosquitto", "mosquitto-nodelay", "rumqttd"]


def start_named(name, workdir, settings, mqttd=None, mosquitto=None, rumqttd=None):
    """Starts the broker variant called `name` (see BROKER_NAMES)."""
    if name in MQTTD_VARIANTS:
        return start_mqttd(mqttd or default_mqttd(), workdir, settings, MQTTD_VARIANTS[name], name=name)
    if name in ("mosquitto", "mosquitto-nodelay"):
        return start_mosquitto(mosquitto or default_mosquitto(), workdir, settings,
                               name == "mosquitto-nodelay")
    if name == "rumqttd":
        return start_rumqttd(rumqttd or default_rumqttd(), workdir, settings)
    raise ValueError(f"unknown broker {name!r}; known: {', '.join(BROKER_NAMES)}")


def parse_brokers(text, parser):
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BROKER_NAMES]
    if unknown or not names:
        parser.error(f"--brokers: unknown {', '.join(unknown) or '(none given)'}; "
                     f"known: {', '.join(BROKER_NAMES)}")
    return names


def rotated(names, round_no):
    shift = round_no % len(names)
    return names[shift:] + names[:shift]


class RssSampler:
    """Samples a process's VmRSS every `every` seconds in a thread; `peak_kb`
    is the largest seen."""

    def __init__(self, pid, every=0.02):
        import threading
        self.pid, self.every, self.peak_kb, self.samples = pid, every, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak_kb = max(self.peak_kb, proc_rss_kb(self.pid))
                self.samples += 1
            except (OSError, RuntimeError):
                return
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
