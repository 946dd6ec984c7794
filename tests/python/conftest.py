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

Skips fail the run: a test that should run and did not is a failure, so
unless a skipped test is on `ALLOWED_SKIPS` (with the reason it may skip)
the session exits nonzero even when everything else passed, and every skip
is listed with its reason at the end. MQTTD_ALLOW_SKIPS=1 lists them
without failing (for a machine that lacks something on purpose; never in CI).

Only processes started here are ever signalled.
"""

from __future__ import annotations

import os
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


# ---- skips -------------------------------------------------------------------

# Tests that may be skipped, as "file.py::test_name" (every parametrisation)
# or "file.py::test_name[id]", with the reason. Empty: every test must run.
ALLOWED_SKIPS: dict[str, str] = {}

_skips: list[tuple[str, str]] = []  # (node id, reason)


def _skip_reason(report) -> str:
    if isinstance(report.longrepr, tuple):  # (path, line, "Skipped: reason")
        return report.longrepr[2].removeprefix("Skipped: ")
    return str(report.longrepr)


def _allowed(nodeid: str) -> bool:
    path, _, name = nodeid.partition("::")
    key = f"{os.path.basename(path)}::{name}"
    return key in ALLOWED_SKIPS or key.split("[", 1)[0] in ALLOWED_SKIPS


def _record_skip(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skips.append((report.nodeid, _skip_reason(report)))


def pytest_runtest_logreport(report):
    _record_skip(report)


def pytest_collectreport(report):
    _record_skip(report)  # a whole module skipped at import


def _forbidden_skips() -> list[tuple[str, str]]:
    return [(nodeid, reason) for nodeid, reason in _skips if not _allowed(nodeid)]


def pytest_sessionfinish(session, exitstatus):
    if _forbidden_skips() and exitstatus == pytest.ExitCode.OK and not os.environ.get("MQTTD_ALLOW_SKIPS"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    forbidden = _forbidden_skips()
    allowed = [s for s in _skips if s not in forbidden]
    if allowed:
        terminalreporter.section("skipped, allowed by ALLOWED_SKIPS in tests/python/conftest.py")
        for nodeid, reason in allowed:
            terminalreporter.line(f"{nodeid}: {reason}")
    if forbidden:
        verdict = "ignored (MQTTD_ALLOW_SKIPS is set)" if os.environ.get("MQTTD_ALLOW_SKIPS") else "the run fails"
        terminalreporter.section(f"skipped but not allowed: {verdict}", red=True)
        for nodeid, reason in forbidden:
            terminalreporter.line(f"{nodeid}: {reason}", red=True)
        terminalreporter.line("Make these tests run (install what they need), or add them to ALLOWED_SKIPS in "
                              "tests/python/conftest.py with the reason they may skip.")
