"""Configuration handling of the mqttd binary.

Covers: unknown keys/sections, badly typed, out-of-range and unknown enum
values, bad addresses and TLS listeners without certificates all make the
process exit non-zero quickly with a message naming the key; a bad config
file is named; a taken port makes it exit non-zero; `--config FILE`,
`MQTTD__...` environment variables and `--set` precedence work; disabling a
listener with only `listeners.X.enabled=false` works without a config file;
the shipped config/mqttd.toml is accepted; log.format=json logs JSON.
"""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from helpers import HOST, MQTTD_BIN, V5, Client, free_port, port_open

REPO = Path(__file__).resolve().parents[2]


# The embedded control plane's gRPC port on an ephemeral port, so brokers
# started here never collide on 50051 (a test may still override it).
QUIET_CONTROLPLANE = {"NO_COLOR": "1", "MQTTD__CONTROLPLANE__BIND": f"{HOST}:0"}


def run_mqttd(tmp_path, *args, env=None, timeout=5.0):
    """Runs mqttd expecting it to exit by itself; returns (code, stderr)."""
    try:
        r = subprocess.run([MQTTD_BIN, *args], cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, **QUIET_CONTROLPLANE, **(env or {})}, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mqttd {' '.join(args)} still running after {timeout}s (expected a quick non-zero exit)")
    return r.returncode, r.stderr


def base_sets(tmp_path, port=None):
    port = port or free_port()
    return ["--set", f"listeners.tcp.bind={HOST}:{port}", "--set", f"listeners.ws.bind={HOST}:0",
            "--set", "listeners.ws.enabled=false", "--set", f"node.data_dir={tmp_path / 'data'}"]


class Running:
    """A broker started with arbitrary arguments; stopped by the test."""

    def __init__(self, tmp_path, args, env=None, wait_port=None):
        self.proc = subprocess.Popen([MQTTD_BIN, *args], cwd=tmp_path, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                     env={**os.environ, **QUIET_CONTROLPLANE, **(env or {})})
        self.port = wait_port

    def wait_listening(self, port, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if port_open(port):
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.stdout.read() if self.proc.stdout else ""


@pytest.fixture
def running(tmp_path):
    procs = []

    def start(args, env=None):
        r = Running(tmp_path, args, env)
        procs.append(r)
        return r

    yield start
    for r in procs:
        r.stop()


@pytest.mark.parametrize("setting,names", [
    ("mqtt.bogus_key=1", ["mqtt", "bogus_key"]),
    ("nosuchsection.key=1", ["nosuchsection"]),
    ("listeners.tcp.bnd=127.0.0.1:1", ["listeners.tcp", "bnd"]),
    ("session.max_expiry=5", ["session", "max_expiry"]),
], ids=["unknown-key", "unknown-section", "typo-in-listener", "typo-in-session"])
def test_unknown_key_rejected(tmp_path, setting, names):
    code, out = run_mqttd(tmp_path, *base_sets(tmp_path), "--set", setting)
    assert code != 0
    for n in names:
        assert n in out, f"{n!r} not named in: {out}"


@pytest.mark.parametrize("setting,key", [
    ("mqtt.max_inflight=many", "mqtt.max_inflight"),
    ("mqtt.max_inflight=0", "mqtt.max_inflight"),
    ("mqtt.max_qos=3", "mqtt.max_qos"),
    ("mqtt.receive_maximum=0", "mqtt.receive_maximum"),
    ("mqtt.receive_maximum=70000", "mqtt.receive_maximum"),
    ("mqtt.max_packet_size=10", "mqtt.max_packet_size"),
    ("mqtt.max_keep_alive=-1", "mqtt.max_keep_alive"),
    ("session.max_queued_messages=0", "session.max_queued_messages"),
    ("session.queue_full_policy=sometimes", "session.queue_full_policy"),
    ("shared_subscription.strategy=fastest", "shared_subscription.strategy"),
    ("auth.allow_anonymous=maybe", "auth.allow_anonymous"),
    ("sys.interval=soon", "sys.interval"),
    ("retainer.max_retained_messages=-5", "retainer.max_retained_messages"),
    ("log.format=xml", "log.format"),
    ("listeners.tcp.bind=not-an-address", "listeners.tcp.bind"),
    ("listeners.tcp.enabled=maybe", "listeners.tcp.enabled"),
    ("listeners.tls.enabled=true", "listeners.tls"),
    ("listeners.ws.path=mqtt", "listeners.ws.path"),
    ("node.name=a/b", "node.name"),
])
def test_bad_value_rejected(tmp_path, setting, key):
    t0 = time.monotonic()
    code, out = run_mqttd(tmp_path, *base_sets(tmp_path), "--set", setting)
    assert code != 0
    assert key in out, f"{key!r} not named in: {out}"
    assert time.monotonic() - t0 < 5


def test_bad_config_exits_before_binding(tmp_path):
    """Design: a bad config exits non-zero before it binds anything."""
    port = free_port()
    proc = subprocess.Popen([MQTTD_BIN, *base_sets(tmp_path, port), "--set", "mqtt.max_qos=9"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bound = False
        while proc.poll() is None:
            bound = bound or port_open(port)
        assert proc.returncode != 0
        assert not bound
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


def test_config_file_with_unknown_key_names_file_and_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[mqtt]\nmax_inflihgt = 5\n")
    code, out = run_mqttd(tmp_path, "--config", str(cfg), *base_sets(tmp_path))
    assert code != 0
    assert "bad.toml" in out and "max_inflihgt" in out, out


def test_config_file_with_bad_value_names_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[session]\nqueue_full_policy = "drop_all"\n')
    code, out = run_mqttd(tmp_path, "--config", str(cfg), *base_sets(tmp_path))
    assert code != 0
    assert "session.queue_full_policy" in out, out


def test_invalid_toml_names_file(tmp_path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[mqtt\nmax_inflight = \n")
    code, out = run_mqttd(tmp_path, "--config", str(cfg), *base_sets(tmp_path))
    assert code != 0
    assert "broken.toml" in out, out


def test_missing_config_file_names_file(tmp_path):
    code, out = run_mqttd(tmp_path, "--config", str(tmp_path / "nope.toml"), *base_sets(tmp_path))
    assert code != 0
    assert "nope.toml" in out, out


def test_set_without_equals_rejected(tmp_path):
    code, out = run_mqttd(tmp_path, *base_sets(tmp_path), "--set", "mqtt.max_qos")
    assert code != 0
    assert "mqtt.max_qos" in out, out


def test_tcp_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen(1)
        port = s.getsockname()[1]
        code, out = run_mqttd(tmp_path, *base_sets(tmp_path, port))
    assert code != 0
    assert "listeners.tcp" in out, out


def test_ws_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen(1)
        port = s.getsockname()[1]
        code, out = run_mqttd(tmp_path, "--set", f"listeners.tcp.bind={HOST}:{free_port()}",
                              "--set", f"listeners.ws.bind={HOST}:{port}", "--set", f"node.data_dir={tmp_path / 'd'}")
    assert code != 0
    assert "listeners.ws" in out, out


@pytest.mark.parametrize("listener", ["ws", "tls", "wss"])
def test_disabling_listener_with_enabled_key_alone(tmp_path, running, listener):
    """DESIGN.md: every listener has `bind` and `enabled` keys, e.g.
    `--set listeners.ws.enabled=false`. With no config file (the working
    directory has none), the section's other keys keep their built-in
    defaults, so this alone must be a valid configuration."""
    port = free_port()
    args = ["--set", f"listeners.tcp.bind={HOST}:{port}", "--set", f"listeners.{listener}.enabled=false",
            "--set", "node.data_dir=data"]
    if listener != "ws":
        args += ["--set", "listeners.ws.enabled=false", "--set", f"listeners.ws.bind={HOST}:0"]
    r = running(args)
    ok = r.wait_listening(port)
    out = "" if ok else r.stop()
    assert ok, f"mqttd did not start: {out}"


def test_environment_variable_override(tmp_path, running):
    port = free_port()
    r = running(["--set", "listeners.ws.enabled=false", "--set", f"listeners.ws.bind={HOST}:0",
                 "--set", "node.data_dir=data"],
                env={"MQTTD__LISTENERS__TCP__BIND": f"{HOST}:{port}"})
    assert r.wait_listening(port), r.stop()
    c = Client(port, V5).connect()
    c.disconnect()


def test_environment_variable_bad_value_named(tmp_path):
    code, out = run_mqttd(tmp_path, *base_sets(tmp_path), env={"MQTTD__MQTT__MAX_QOS": "7"})
    assert code != 0
    assert "MQTTD__MQTT__MAX_QOS" in out or "mqtt.max_qos" in out, out


def test_config_file_and_set_precedence(tmp_path, running):
    file_port, set_port = free_port(), free_port()
    cfg = tmp_path / "mqttd.toml"
    cfg.write_text(f'[listeners.tcp]\nbind = "{HOST}:{file_port}"\n'
                   f'[listeners.ws]\nenabled = false\nbind = "{HOST}:0"\n'
                   f'[node]\ndata_dir = "{tmp_path / "data"}"\n')
    r = running(["--config", str(cfg)])
    assert r.wait_listening(file_port), r.stop()
    r.stop()
    r = running(["--config", str(cfg), "--set", f"listeners.tcp.bind={HOST}:{set_port}"])
    assert r.wait_listening(set_port), r.stop()
    assert not port_open(file_port)


def test_shipped_config_file_is_accepted(tmp_path, running):
    shipped = REPO / "config" / "mqttd.toml"
    if not shipped.is_file():
        pytest.skip("config/mqttd.toml not present")
    port = free_port()
    r = running(["--config", str(shipped), *base_sets(tmp_path, port)])
    assert r.wait_listening(port), r.stop()


def test_json_logs(tmp_path, running):
    port = free_port()
    r = running([*base_sets(tmp_path, port), "--set", "log.format=json"])
    assert r.wait_listening(port), r.stop()
    out = r.stop()
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, "no log output"
    for line in lines:
        json.loads(line)


def test_log_format_flag(tmp_path, running):
    port = free_port()
    r = running([*base_sets(tmp_path, port), "--log-format", "json"])
    assert r.wait_listening(port), r.stop()
    out = r.stop()
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and all(json.loads(line) for line in lines)
