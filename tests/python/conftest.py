"""pytest fixtures for the mqttd end-to-end tests.

- `broker`: one shared broker per test module (default config plus
  `sys.interval=1`, WebSocket listener on), checked to be alive before each
  test. Tests isolate themselves with the unique `topic` prefix and unique
  client ids.
- `broker_factory`: starts a broker with extra `--set key=value` arguments
  for tests that need their own configuration; stopped at teardown.
- `connect`: creates connected paho `Client`s and closes them at teardown.
- `version`: requesting it runs a test once for MQTT 3.1.1 and once for 5.0.
- `topic`: a topic prefix unique to the test.

Only processes started here are ever signalled.
"""

from __future__ import annotations

import uuid

import pytest

import helpers
from helpers import V5, V311, Broker, Client, start_broker


@pytest.fixture(scope="module")
def _module_broker(tmp_path_factory):
    b = start_broker(tmp_path_factory.mktemp("mqttd"), ["sys.interval=1"], ws=True)
    yield b
    b.stop()


@pytest.fixture
def broker(_module_broker: Broker) -> Broker:
    if not _module_broker.alive():
        pytest.fail(f"the shared mqttd has exited (code {_module_broker.proc.returncode}):\n"
                    f"{_module_broker.log_tail()}")
    yield _module_broker
    if not _module_broker.alive():
        pytest.fail(f"mqttd exited during the test (code {_module_broker.proc.returncode}):\n"
                    f"{_module_broker.log_tail()}")


@pytest.fixture
def broker_factory(tmp_path):
    started: list[Broker] = []

    def start(*sets: str, ws: bool = False) -> Broker:
        b = start_broker(tmp_path / f"b{len(started)}", list(sets), ws=ws)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def connect():
    """`connect(broker, version, **kw)` -> a connected `Client`."""
    clients: list[Client] = []

    def make(broker: Broker | int, version: int = V5, *, do_connect: bool = True, **kw) -> Client:
        port = broker if isinstance(broker, int) else broker.port
        c = Client(port, version, **kw)
        clients.append(c)
        if do_connect:
            c.connect()
        return c

    yield make
    for c in clients:
        c.close_quietly()


@pytest.fixture(params=[V311, V5], ids=["v311", "v5"])
def version(request) -> int:
    return request.param


@pytest.fixture
def topic() -> str:
    """A topic prefix no other test uses."""
    return f"t/{uuid.uuid4().hex[:10]}"


def pytest_report_header(config):
    return f"mqttd binary: {helpers.MQTTD_BIN}"
