"""Interoperability with Debian's mosquitto_pub / mosquitto_sub (2.0.x).

Covers: QoS 0/1/2 round trips for MQTT 3.1.1 and 5.0; retained messages
with -r (set, then cleared with -n); v5 properties (-D) forwarded; paho and
mosquitto clients talking to each other; a mosquitto_sub persistent session
(-c) that picks up queued messages; a mosquitto_sub will after SIGKILL; a
paho client on the WebSocket listener and mosquitto clients on TCP talking
both ways (Debian builds mosquitto_sub/mosquitto_pub without WebSocket
support, so paho is the WebSocket side).
"""

import queue
import shutil
import signal
import subprocess
import threading
import time

import pytest

from helpers import HOST, V5, V311, uid

pytestmark = pytest.mark.skipif(shutil.which("mosquitto_sub") is None or shutil.which("mosquitto_pub") is None,
                                reason="mosquitto-clients not installed")

VERSIONS = {"v311": "mqttv311", "v5": "mqttv5"}
MARK = "MSG>"
# mosquitto_sub's stdout is block-buffered when it is a pipe.
LINE_BUFFERED = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []


class Sub:
    """A running mosquitto_sub whose output lines are read on a thread."""

    def __init__(self, port, topic, version="mqttv311", qos=2, extra=(), fmt=f"{MARK} %t %q %r %p"):
        self.proc = subprocess.Popen(
            [*LINE_BUFFERED, "mosquitto_sub", "-h", HOST, "-p", str(port), "-V", version, "-t", topic, "-q", str(qos), "-d",
             "-F", fmt, "-W", "8", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_line(lambda line: "SUBACK" in line, 5)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"mosquitto_sub: expected line not seen within {timeout}s; output: {seen}")

    def message(self, timeout=5):
        return self.wait_line(lambda line: line.startswith(MARK), timeout)[len(MARK) + 1:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
def subs():
    started = []

    def make(*a, **kw):
        s = Sub(*a, **kw)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


def pub(port, topic, message, version="mqttv311", qos=0, extra=()):
    args = ["mosquitto_pub", "-h", HOST, "-p", str(port), "-V", version, "-t", topic, "-q", str(qos), *extra]
    args += ["-n"] if message is None else ["-m", message]
    r = subprocess.run(args, capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, f"mosquitto_pub failed ({r.returncode}): {r.stdout}{r.stderr}"


def sub_once(port, topic, version="mqttv311", fmt="%r %p", wait=3, extra=()):
    """mosquitto_sub -C 1: the first message's formatted line, or None."""
    r = subprocess.run(["mosquitto_sub", "-h", HOST, "-p", str(port), "-V", version, "-t", topic, "-C", "1",
                        "-W", str(wait), "-F", fmt, *extra], capture_output=True, text=True, timeout=wait + 5)
    out = r.stdout.strip()
    return out or None


@pytest.mark.parametrize("v", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_round_trip(broker, subs, topic, v, qos):
    s = subs(broker.port, topic, VERSIONS[v], qos=2)
    pub(broker.port, topic, f"hello-{qos}", VERSIONS[v], qos=qos)
    assert s.message() == f"{topic} {qos} 0 hello-{qos}"


@pytest.mark.parametrize("v", VERSIONS)
def test_qos_downgrade(broker, subs, topic, v):
    s = subs(broker.port, topic, VERSIONS[v], qos=0)
    pub(broker.port, topic, "down", VERSIONS[v], qos=2)
    assert s.message() == f"{topic} 0 0 down"


@pytest.mark.parametrize("v", VERSIONS)
def test_retained_set_and_cleared(broker, topic, v):
    pub(broker.port, topic, "kept", VERSIONS[v], qos=1, extra=["-r"])
    assert sub_once(broker.port, topic, VERSIONS[v]) == "1 kept"
    pub(broker.port, topic, None, VERSIONS[v], qos=1, extra=["-r"])  # -n -r: delete
    assert sub_once(broker.port, topic, VERSIONS[v], wait=1) is None


def test_v5_properties(broker, subs, topic):
    s = subs(broker.port, topic, "mqttv5", fmt=f"{MARK} %P|%C|%R|%F|%p")
    pub(broker.port, topic, "props", "mqttv5", qos=1,
        extra=["-D", "publish", "user-property", "k", "v", "-D", "publish", "content-type", "text/plain",
               "-D", "publish", "response-topic", f"{topic}/r", "-D", "publish", "payload-format-indicator", "1"])
    assert s.message() == f"k:v|text/plain|{topic}/r|1|props"


def test_v5_message_expiry_forwarded(broker, subs, topic):
    s = subs(broker.port, topic, "mqttv5", fmt=f"{MARK} %E %p")
    pub(broker.port, topic, "ttl", "mqttv5", qos=1, extra=["-D", "publish", "message-expiry-interval", "60"])
    expiry, payload = s.message().split()
    assert payload == "ttl" and 58 <= int(expiry) <= 60


def test_paho_to_mosquitto_and_back(broker, subs, connect, topic):
    s = subs(broker.port, f"{topic}/to-mosq", "mqttv5", qos=1)
    p = connect(broker, V5)
    p.subscribe(f"{topic}/to-paho", qos=1)
    p.publish(f"{topic}/to-mosq", b"from-paho", qos=1)
    assert s.message() == f"{topic}/to-mosq 1 0 from-paho"
    pub(broker.port, f"{topic}/to-paho", "from-mosq", "mqttv311", qos=1)
    m = p.expect()
    assert (m.payload, m.qos) == (b"from-mosq", 1)


@pytest.mark.parametrize("v", VERSIONS)
def test_persistent_session(broker, topic, v):
    cid = uid("mosq")
    base = ["mosquitto_sub", "-h", HOST, "-p", str(broker.port), "-V", VERSIONS[v], "-t", topic, "-q", "1",
            "-c", "-i", cid]
    if v == "v5":
        base += ["-x", "60"]
    r = subprocess.run(base + ["-E"], capture_output=True, text=True, timeout=10)  # subscribe, then leave
    assert r.returncode == 0, r.stdout + r.stderr
    pub(broker.port, topic, "one", VERSIONS[v], qos=1)
    pub(broker.port, topic, "two", VERSIONS[v], qos=1)
    r = subprocess.run(base + ["-C", "2", "-W", "5", "-F", "%p"], capture_output=True, text=True, timeout=10)
    assert r.stdout.split() == ["one", "two"], r.stdout + r.stderr


def test_will_after_sigkill(broker, connect, topic):
    watcher = connect(broker, V311)
    watcher.subscribe(f"{topic}/will", qos=1)
    s = Sub(broker.port, f"{topic}/x", "mqttv311",
            extra=["--will-topic", f"{topic}/will", "--will-payload", "died", "--will-qos", "1"])
    try:
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(5)
        assert watcher.expect(3).payload == b"died"
    finally:
        s.stop()


@pytest.mark.parametrize("v", VERSIONS)
def test_websocket_paho_and_tcp_mosquitto(broker, subs, connect, topic, v):
    """QoS 1 both ways between paho over WebSocket (the listeners.ws port,
    path /mqtt) and mosquitto_sub/mosquitto_pub over TCP."""
    ws = connect(broker.ws_port, V5 if v == "v5" else V311, transport="websockets", ws_path="/mqtt")
    ws.subscribe(f"{topic}/to-ws", qos=1)
    s = subs(broker.port, f"{topic}/to-tcp", VERSIONS[v], qos=1)
    ws.publish(f"{topic}/to-tcp", b"from-ws", qos=1)
    assert s.message() == f"{topic}/to-tcp 1 0 from-ws"
    pub(broker.port, f"{topic}/to-ws", "from-tcp", VERSIONS[v], qos=1)
    m = ws.expect()
    assert (m.topic, m.payload, m.qos, m.retain) == (f"{topic}/to-ws", b"from-tcp", 1, False)
