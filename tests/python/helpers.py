"""Shared helpers for the mqttd end-to-end tests.

- `Broker`/`start_broker`: run the real `mqttd` binary on free loopback ports.
- `Client`: a thin, blocking wrapper around a paho-mqtt 2.x client. Every
  wait is bounded; nothing here can hang a test. It records every
  disconnect (`Disconnect`: when, reason code, who closed), so a test says
  what it expects: `expect_silence` (the connection stays open and nothing
  arrives) or `expect_closed` (the server closed the connection).
- `RawClient` and the `pkt_*` encoders: a tiny hand-rolled MQTT client for
  what paho hides or refuses to do (silent sockets, exact reason codes,
  protocol errors).
- `ws_upgrade_status`: the HTTP answer to a WebSocket upgrade request.
- `assert_keep_alive_close`: the bounds on when a keep-alive timeout may
  close a connection.
"""

from __future__ import annotations

import base64
import os
import queue
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = "127.0.0.1"
NODE = "mqttd@127.0.0.1"
SYS_PREFIX = f"$SYS/brokers/{NODE}"
V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
MQTTD_BIN = os.environ.get("MQTTD_BIN", "/var/cache/mqttd-target/debug/mqttd")

# Reason codes used by the tests (MQTT 5.0, section 2.4).
RC_NORMAL = 0x00
RC_DISCONNECT_WITH_WILL = 0x04
RC_NO_SUBSCRIPTION_EXISTED = 0x11
RC_UNSPECIFIED = 0x80
RC_MALFORMED = 0x81
RC_PROTOCOL_ERROR = 0x82
RC_SERVER_SHUTTING_DOWN = 0x8B
RC_SESSION_TAKEN_OVER = 0x8E
RC_TOPIC_NAME_INVALID = 0x90
RC_PACKET_TOO_LARGE = 0x95
RC_TOPIC_ALIAS_INVALID = 0x94
RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93


def uid(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.02) -> bool:
    """Polls `predicate` until it is truthy or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --------------------------------------------------------------------------
# The broker process
# --------------------------------------------------------------------------


class BrokerStartError(Exception):
    pass


@dataclass
class Broker:
    proc: subprocess.Popen
    port: int
    ws_port: int | None
    data_dir: Path
    log_path: Path
    args: list[str]

    host: str = HOST

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds. Only this process."""
        if not self.alive():
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        code = self.wait_exit(grace)
        if code is None:
            self.proc.kill()
            code = self.wait_exit(5)
        return code


def broker_command(port: int, ws_port: int | None, data_dir: Path, sets: list[str]) -> list[str]:
    cmd = [
        MQTTD_BIN,
        "--set", f"listeners.tcp.bind={HOST}:{port}",
        "--set", f"node.data_dir={data_dir}",
        # The embedded control plane's gRPC on an ephemeral port (not 50051).
        "--set", f"controlplane.bind={HOST}:0",
    ]
    if ws_port is None:
        # The bind address is given too, so that a disabled listener never
        # depends on defaults being merged into a partially set section.
        cmd += ["--set", "listeners.ws.enabled=false", "--set", f"listeners.ws.bind={HOST}:0"]
    else:
        cmd += ["--set", f"listeners.ws.bind={HOST}:{ws_port}"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def start_broker(workdir: Path, sets: list[str] | tuple[str, ...] = (), ws: bool = False,
                 timeout: float = 10.0) -> Broker:
    """Starts mqttd in `workdir` and waits until its TCP port accepts."""
    if not os.access(MQTTD_BIN, os.X_OK):
        raise BrokerStartError(f"broker binary not found or not executable: {MQTTD_BIN} (set MQTTD_BIN)")
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    log_path = workdir / "mqttd.log"
    last_error = ""
    for _attempt in range(3):  # a free port can be taken between probe and bind
        port = free_port()
        ws_port = free_port() if ws else None
        cmd = broker_command(port, ws_port, data_dir, list(sets))
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env={**os.environ, "RUST_BACKTRACE": "1", "NO_COLOR": "1"})
        broker = Broker(proc, port, ws_port, data_dir, log_path, cmd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not broker.alive():
                break
            if port_open(port) and (ws_port is None or port_open(ws_port)):
                return broker
            time.sleep(0.02)
        if broker.alive():
            broker.stop()
            raise BrokerStartError(f"mqttd did not accept on port {port} within {timeout}s:\n{broker.log_tail()}")
        last_error = broker.log_tail()
        if "in use" not in last_error.lower():
            break
    raise BrokerStartError(f"mqttd exited during startup ({' '.join(cmd)}):\n{last_error}")


def ws_upgrade_status(port: int, path: str, host: str = HOST, timeout: float = 3.0) -> tuple[int, str]:
    """Sends a WebSocket upgrade request (subprotocol "mqtt") for `path` on
    a raw socket; returns the HTTP status code and status line."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n")
    head = b""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request.encode())
        try:
            while b"\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
        except socket.timeout:
            pass
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise AssertionError(f"no HTTP status line in the answer to GET {path}: {head!r}")
    return int(parts[1]), line


# How much later than 1.5 x keep-alive a keep-alive timeout may be seen:
# mqttd checks the deadlines of idle (hibernated) connections on a 0.5 s
# sweep, so about 0.6 s late is normal; the rest is for a debug build on a
# loaded machine.
KEEP_ALIVE_SLACK = 1.0


def assert_keep_alive_close(elapsed: float, keep_alive: int, what: str = "connection closed") -> None:
    """A keep-alive timeout happened `elapsed` seconds after the client's
    last packet. Section 3.1.2.10, [MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22]
    (5.0), gives the client one and a half times the keep-alive, so the
    close must not come earlier, nor much later. Measure `elapsed` from
    before the last packet was sent to after the close was seen: it can
    only overestimate the server's interval, so the lower bound needs no
    tolerance."""
    low = 1.5 * keep_alive
    high = low + KEEP_ALIVE_SLACK
    assert low <= elapsed <= high, (f"{what} {elapsed:.2f}s after the client's last packet; "
                                    f"expected {low:.2f}s to {high:.2f}s (keep-alive {keep_alive}s)")


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# paho wrapper
# --------------------------------------------------------------------------


@dataclass
class Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    properties: Any = None
    received_at: float = field(default_factory=time.monotonic)

    def prop(self, name: str, default=None):
        if self.properties is None:
            return default
        return getattr(self.properties, name, default)


@dataclass
class Disconnect:
    """One on_disconnect of a paho client."""
    at: float          # time.monotonic() when paho reported it
    reason: int        # the server's DISCONNECT reason, else paho's (0x80 for a lost connection)
    from_server: bool  # the server sent a DISCONNECT packet (5.0)
    requested: bool    # this test closed it (Client.disconnect() or Client.kill())


def props(packet_type: int, **values) -> Properties:
    p = Properties(packet_type)
    for k, v in values.items():
        setattr(p, k, v)
    return p


def rc_value(rc) -> int:
    if isinstance(rc, ReasonCode):
        return rc.value
    return int(rc)


class Client:
    """A connected paho client with blocking, time-bounded helpers."""

    def __init__(self, port: int, version: int = V5, client_id: str | None = None, clean: bool = True,
                 session_expiry: int | None = None, keepalive: int = 30, will: dict | None = None,
                 connect_properties: dict | None = None, manual_ack: bool = False,
                 transport: str = "tcp", ws_path: str = "/mqtt", host: str = HOST):
        self.version = version
        self.client_id = uid() if client_id is None else client_id
        self.port = port
        self.host = host
        self.clean = clean
        self.keepalive = keepalive
        self.manual_ack = manual_ack
        kwargs: dict[str, Any] = {}
        if version != V5:
            kwargs["clean_session"] = clean
        self.paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=version,
                                transport=transport, reconnect_on_failure=False, manual_ack=manual_ack, **kwargs)
        if transport == "websockets":
            self.paho.ws_set_options(path=ws_path)
        self.messages: queue.Queue[Msg] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack_rc: int | None = None
        self.session_present: bool | None = None
        self.connack_properties = None
        self.disconnect_rc: int | None = None  # of the first disconnect
        self.disconnect_properties = None
        self.disconnects: list[Disconnect] = []
        self._closing = False  # set by disconnect()/kill() before they close
        self._cond = threading.Condition()
        self._acks: dict[int, tuple[list[int], Any]] = {}
        self._pub_rcs: dict[int, int] = {}
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_unsubscribe = self._on_unsubscribe
        self.paho.on_publish = self._on_publish
        self._connect_props = None
        if version == V5:
            cp = dict(connect_properties or {})
            if session_expiry is not None:
                cp["SessionExpiryInterval"] = session_expiry
            if cp:
                self._connect_props = props(PacketTypes.CONNECT, **cp)
        if will:
            will = dict(will)
            wprops = will.pop("properties", None)
            p = props(PacketTypes.WILLMESSAGE, **wprops) if wprops else None
            self.paho.will_set(will["topic"], will.get("payload", b""), will.get("qos", 0),
                               will.get("retain", False), properties=p)

    # callbacks (network thread) -------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack_rc = rc_value(reason_code)
        self.session_present = bool(flags.session_present)
        self.connack_properties = properties
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        d = Disconnect(time.monotonic(), rc_value(reason_code), bool(flags.is_disconnect_packet_from_server),
                       self._closing)
        if not self.disconnects:
            self.disconnect_rc = d.reason
            self.disconnect_properties = properties
        self.disconnects.append(d)
        self.disconnected.set()
        self.connected.set()  # unblock a pending connect()

    def _on_message(self, client, userdata, m):
        props_ = getattr(m, "properties", None)
        self.messages.put(Msg(m.topic, bytes(m.payload), m.qos, bool(m.retain), bool(m.dup), m.mid, props_))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._cond:
            self._acks[mid] = ([rc_value(r) for r in reason_codes], properties)
            self._cond.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties):
        with self._cond:
            codes = [rc_value(r) for r in reason_codes] if isinstance(reason_codes, list) else []
            self._acks[mid] = (codes, properties)
            self._cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self._cond:
            self._pub_rcs[mid] = rc_value(reason_code)
            self._cond.notify_all()

    # actions ------------------------------------------------------------
    def connect(self, timeout: float = 5.0, expect_success: bool = True) -> "Client":
        kwargs: dict[str, Any] = {}
        if self.version == V5:
            kwargs["clean_start"] = self.clean
            kwargs["properties"] = self._connect_props
        self.paho.connect(self.host, self.port, keepalive=self.keepalive, **kwargs)
        self.paho.loop_start()
        if not self.connected.wait(timeout):
            raise AssertionError(f"{self.client_id}: no CONNACK within {timeout}s")
        if expect_success and self.connack_rc != 0:
            raise AssertionError(f"{self.client_id}: connect failed: rc={self.connack_rc} "
                                 f"disconnect_rc={self.disconnect_rc}")
        return self

    def _wait_ack(self, mid: int, timeout: float):
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._acks, timeout):
                raise AssertionError(f"{self.client_id}: no SUBACK/UNSUBACK for mid {mid} within {timeout}s")
            return self._acks.pop(mid)

    def subscribe(self, topic: str | list, qos: int = 0, no_local: bool = False, rap: bool = False,
                  rh: int = 0, sub_id: int | None = None, timeout: float = 3.0) -> list[int]:
        """Subscribes and waits for the SUBACK; returns its reason codes
        (for 3.1.1 the granted QoS, or 0x80)."""
        topics = topic if isinstance(topic, list) else [(topic, qos)]
        p = None
        if self.version == V5:
            topics = [(t, SubscribeOptions(qos=q, noLocal=no_local, retainAsPublished=rap, retainHandling=rh))
                      for t, q in topics]
            if sub_id is not None:
                p = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=sub_id)
        rc, mid = self.paho.subscribe(topics, properties=p)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
        codes, _ = self._wait_ack(mid, timeout)
        return codes

    def unsubscribe(self, topic: str, timeout: float = 3.0) -> list[int]:
        rc, mid = self.paho.unsubscribe(topic)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"unsubscribe failed locally: {rc}"
        codes, _ = self._wait_ack(mid, timeout)
        return codes

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
                properties: dict | None = None, wait: bool = True, timeout: float = 3.0):
        """Publishes; for QoS 1/2 waits for PUBACK/PUBCOMP. Returns the v5
        PUBACK/PUBREC reason code (0 for v3.1.1 or QoS 0)."""
        p = props(PacketTypes.PUBLISH, **properties) if properties else None
        info = self.paho.publish(topic, payload, qos=qos, retain=retain, properties=p)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish failed locally: {info.rc}"
        if not wait:
            return info
        info.wait_for_publish(timeout)
        assert info.is_published(), f"{self.client_id}: publish to {topic!r} (QoS {qos}) not acknowledged within {timeout}s"
        with self._cond:
            return self._pub_rcs.pop(info.mid, 0)

    def expect(self, timeout: float = 2.0) -> Msg:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no message within {timeout}s") from None

    def expect_n(self, n: int, timeout: float = 3.0) -> list[Msg]:
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            remaining = deadline - time.monotonic()
            try:
                out.append(self.messages.get(timeout=max(remaining, 0.001)))
            except queue.Empty:
                raise AssertionError(f"{self.client_id}: got {len(out)} of {n} messages within {timeout}s: "
                                     f"{[(m.topic, m.payload) for m in out]}") from None
        return out

    def is_open(self) -> bool:
        """Connected (CONNACK 0) and not disconnected since."""
        return (self.connack_rc == 0 and not self.disconnected.is_set() and self.paho.is_connected())

    def _unexpected(self, m: Msg) -> AssertionError:
        return AssertionError(f"{self.client_id}: unexpected message {m.topic!r} {m.payload!r} "
                              f"qos={m.qos} retain={m.retain}")

    def _assert_open(self, when: str) -> None:
        if not self.is_open():
            raise AssertionError(f"{self.client_id}: connection not open {when} "
                                 f"(connack_rc={self.connack_rc}, disconnects={self.disconnects})")

    def expect_silence(self, timeout: float = 0.5) -> None:
        """For `timeout` seconds the connection stays open and no message
        arrives. Fails as soon as a message arrives or the connection
        closes: silence from a closed connection proves nothing."""
        self._assert_open("when the silence began")
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                m = self.messages.get(timeout=min(remaining, 0.05))
            except queue.Empty:
                self._assert_open(f"during {timeout}s of expected silence")
                continue
            raise self._unexpected(m)
        self._assert_open(f"after {timeout}s of silence")

    def expect_closed(self, timeout: float = 3.0, reason: int | None = None) -> Disconnect:
        """The server closes the connection within `timeout` seconds (not
        this test: a disconnect()/kill() does not count). With `reason`,
        that close must be a DISCONNECT packet with this reason code (5.0).
        Returns the first disconnect."""
        if not self.disconnected.wait(timeout):
            raise AssertionError(f"{self.client_id}: connection still open after {timeout}s")
        first = self.disconnects[0]
        assert not first.requested, f"{self.client_id}: closed by the test, not the server: {first}"
        if reason is not None:
            assert first.from_server and first.reason == reason, (
                f"{self.client_id}: expected a DISCONNECT with reason {reason:#04x} from the server, got {first}")
        return first

    def assert_nothing_received(self) -> None:
        """No message has been received so far (no waiting: for a client
        whose connection is known to be closed)."""
        try:
            m = self.messages.get_nowait()
        except queue.Empty:
            return
        raise self._unexpected(m)

    def collect(self, n: int, timeout: float = 3.0, settle: float = 0.15) -> list[Msg]:
        """Waits for `n` messages (or the timeout), then `settle` seconds more
        to catch any extra (duplicate or unexpected) ones; returns them all."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                out.append(self.messages.get(timeout=remaining))
            except queue.Empty:
                break
        return out + self.drain(settle)

    def drain(self, timeout: float = 0.3) -> list[Msg]:
        """Everything that arrives within `timeout` seconds."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return out
            try:
                out.append(self.messages.get(timeout=remaining))
            except queue.Empty:
                return out

    def ack(self, msg: Msg) -> None:
        self.paho.ack(msg.mid, msg.qos)

    def disconnect(self, reason: int | None = None, properties: dict | None = None, timeout: float = 3.0) -> None:
        """A clean DISCONNECT, waiting until the socket is closed."""
        rc = None
        if reason is not None:
            rc = ReasonCode(PacketTypes.DISCONNECT, identifier=reason)
        p = props(PacketTypes.DISCONNECT, **properties) if properties else None
        self._closing = True
        if self.version == V5:
            self.paho.disconnect(reasoncode=rc, properties=p)
        else:
            self.paho.disconnect()
        self.disconnected.wait(timeout)
        self._stop_loop()

    def kill(self) -> None:
        """Closes the TCP connection without sending DISCONNECT."""
        self._closing = True
        sock = self.paho.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.disconnected.wait(3)
        self._stop_loop()

    def _stop_loop(self) -> None:
        t = getattr(self.paho, "_thread", None)
        self.paho._thread_terminate = True
        if t is not None and t is not threading.current_thread():
            t.join(3)
        self.paho._thread = None
        sock = self.paho.socket()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def close_quietly(self) -> None:
        try:
            if self.connected.is_set() and not self.disconnected.is_set():
                self.disconnect(timeout=1.0)
            else:
                self._stop_loop()
        except Exception:  # teardown must never raise
            pass


# --------------------------------------------------------------------------
# A raw MQTT client, for exact wire-level checks
# --------------------------------------------------------------------------

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def mstr(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def prop_bytes(items: list[tuple[int, Any]]) -> bytes:
    """Encodes v5 properties from (identifier, value) pairs; the value type
    follows the identifier (only the ones the tests need)."""
    u8 = {0x01, 0x24, 0x25}
    u16 = {0x21, 0x22, 0x23, 0x13}
    u32 = {0x02, 0x11, 0x18, 0x27}
    vbi = {0x0B}
    strs = {0x03, 0x08, 0x12, 0x1A, 0x1C, 0x1F}
    bins = {0x09, 0x16}
    out = bytearray()
    for ident, value in items:
        out += varint(ident)
        if ident in u8:
            out += struct.pack("!B", value)
        elif ident in u16:
            out += struct.pack("!H", value)
        elif ident in u32:
            out += struct.pack("!I", value)
        elif ident in vbi:
            out += varint(value)
        elif ident in strs or ident in bins:
            out += mstr(value)
        elif ident == 0x26:
            out += mstr(value[0]) + mstr(value[1])
        else:
            raise ValueError(f"unknown property {ident:#x}")
    return varint(len(out)) + bytes(out)


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def pkt_connect(client_id: str, version: int = 5, clean: bool = True, keepalive: int = 30,
                props_: list | None = None, will: dict | None = None, username: str | None = None) -> bytes:
    level = 5 if version in (5, V5) else 4
    flags = 0x02 if clean else 0
    if will:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
    if username is not None:
        flags |= 0x80
    body = mstr("MQTT") + bytes([level, flags]) + struct.pack("!H", keepalive)
    if level == 5:
        body += prop_bytes(props_ or [])
    body += mstr(client_id)
    if will:
        if level == 5:
            body += prop_bytes(will.get("props", []))
        body += mstr(will["topic"]) + mstr(will.get("payload", b""))
    if username is not None:
        body += mstr(username)
    return packet(CONNECT, 0, body)


def pkt_publish(topic: str, payload: bytes = b"", qos: int = 0, pid: int = 1, retain: bool = False,
                version: int = 5, props_: list | None = None, dup: bool = False) -> bytes:
    flags = (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    body = mstr(topic)
    if qos:
        body += struct.pack("!H", pid)
    if version in (5, V5):
        body += prop_bytes(props_ or [])
    return packet(PUBLISH, flags, body + payload)


def pkt_subscribe(pid: int, filters: list[tuple[str, int]], version: int = 5, props_: list | None = None) -> bytes:
    body = struct.pack("!H", pid)
    if version in (5, V5):
        body += prop_bytes(props_ or [])
    for f, opts in filters:
        body += mstr(f) + bytes([opts])
    return packet(SUBSCRIBE, 0x02, body)


def pkt_ack(ptype: int, pid: int) -> bytes:
    return packet(ptype, 0x02 if ptype == PUBREL else 0, struct.pack("!H", pid))


def pkt_disconnect(reason: int | None = None, version: int = 5, props_: list | None = None) -> bytes:
    if version not in (5, V5) or (reason is None and not props_):
        return packet(DISCONNECT, 0, b"")
    return packet(DISCONNECT, 0, bytes([reason or 0]) + prop_bytes(props_ or []))


@dataclass
class Packet:
    type: int
    flags: int
    body: bytes

    @property
    def reason(self) -> int:
        """Reason code of a v5 DISCONNECT (0 when omitted) or of a CONNACK."""
        if self.type == DISCONNECT:
            return self.body[0] if self.body else 0
        if self.type == CONNACK:
            return self.body[1]
        raise ValueError(f"no reason code in packet type {self.type}")

    def publish_fields(self, version: int = 5) -> tuple[str, bytes, int]:
        assert self.type == PUBLISH
        n = struct.unpack("!H", self.body[:2])[0]
        topic = self.body[2:2 + n].decode()
        pos = 2 + n
        qos = (self.flags >> 1) & 3
        if qos:
            pos += 2
        if version in (5, V5):
            plen, used = read_varint(self.body, pos)
            pos += used + plen
        return topic, self.body[pos:], qos


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    mult, value, used = 1, 0, 0
    while True:
        b = buf[pos + used]
        used += 1
        value += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            return value, used


class RawClient:
    """A socket speaking bytes. Reads are bounded by timeouts."""

    def __init__(self, port: int, host: str = HOST, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError from None
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def read(self, timeout: float = 3.0) -> Packet | None:
        """The next packet; None if the server closed the connection;
        raises TimeoutError if nothing complete arrives in time."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                try:
                    length, used = read_varint(self.buf, 1)
                except IndexError:
                    length, used = None, 0
                if length is not None and len(self.buf) >= 1 + used + length:
                    head = self.buf[0]
                    body = self.buf[1 + used:1 + used + length]
                    self.buf = self.buf[1 + used + length:]
                    return Packet(head >> 4, head & 0x0F, body)
            if self.closed or not self._fill(deadline):
                return None

    def read_until_closed(self, timeout: float = 3.0) -> tuple[list[Packet], bool]:
        """Packets received until the server closes the connection; the flag
        says whether it closed within `timeout`."""
        out = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                p = self.read(max(deadline - time.monotonic(), 0.001))
                if p is None:
                    return out, True
                out.append(p)
        except TimeoutError:
            return out, False

    def connect(self, client_id: str | None = None, version: int = 5, **kw) -> Packet:
        self.send(pkt_connect(client_id or uid("raw"), version=version, **kw))
        p = self.read()
        assert p is not None and p.type == CONNACK, f"expected CONNACK, got {p}"
        return p

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
