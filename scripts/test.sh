#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests
# need (idempotently), builds, then runs format and lint checks, the Rust
# tests (unit, property and end-to-end) and the Python paho-mqtt tests.
#
# The Python packages go into a virtual environment of the script's own
# (Debian's system Python refuses pip install, PEP 668), outside the clone:
#   MQTTD_VENV  where it lives (default /var/cache/mqttd-venv, or
#               target/mqttd-venv in the clone when /var/cache is not writable)
# A skipped Python test fails the run unless tests/python/conftest.py allows it.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/mqttd-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$CARGO_TARGET_DIR" 2>/dev/null || export CARGO_TARGET_DIR="$PWD/target"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

venv="${MQTTD_VENV:-/var/cache/mqttd-venv}"
venv_ok() { [ -x "$venv/bin/python" ] && "$venv/bin/python" -m pip --version >/dev/null 2>&1; }
if ! venv_ok && [ -z "${MQTTD_VENV:-}" ] && ! { mkdir -p "$venv" 2>/dev/null && [ -w "$venv" ]; }; then
  venv="$PWD/target/mqttd-venv"
fi

# Debian packages: a C toolchain with make (ring and jemalloc build from C
# sources), the mosquitto clients (and the broker, for side-by-side runs),
# iproute2 (tests/partition.rs puts a node in its own network namespace),
# redis-server and redis-cli (tests/auth_redis.rs runs a Redis of its own),
# PostgreSQL and MariaDB (tests/auth_sql.rs runs one of each of its own,
# PostgreSQL as the postgres user), OpenLDAP's slapd (tests/auth_ldap.rs);
# the packages' system services are not
# needed and are left as Debian sets them.
need=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v mariadbd >/dev/null 2>&1 || need+=(mariadb-server)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
{ [ -x /usr/sbin/slapd ] && [ -x /usr/sbin/slapadd ]; } || need+=(slapd)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v make >/dev/null 2>&1 || need+=(make)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# python3 -m venv needs ensurepip, which Debian ships in python3-venv.
venv_ok || { python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' >/dev/null 2>&1; } \
  || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Python clients, from PyPI, into the virtual environment.
if ! venv_ok; then
  echo "== creating the Python virtual environment $venv"
  mkdir -p "$(dirname "$venv")"
  # --clear only over a broken venv (one without pip), never over other files.
  if [ -f "$venv/pyvenv.cfg" ]; then python3 -m venv --clear "$venv"; else python3 -m venv "$venv"; fi
fi
py="$venv/bin/python"
if ! "$py" -c 'import paho.mqtt, pytest; assert paho.mqtt.__version__.split(".")[0] == "2"' >/dev/null 2>&1; then
  echo "== installing paho-mqtt and pytest into $venv"
  "$py" -m pip install -q 'paho-mqtt>=2,<3' 'pytest>=7'
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build"
cargo build --workspace --all-targets
echo "== cargo test"
cargo test --workspace
echo "== python tests (paho-mqtt, mosquitto clients)"
MQTTD_BIN="$CARGO_TARGET_DIR/debug/mqttd" "$py" -m pytest -q -rs tests/python
echo "== load generator smoke run (every scenario briefly, against mqttd on its defaults)"
bench_dir=$(mktemp -d)
bench_port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$CARGO_TARGET_DIR/debug/mqttd" --set "listeners.tcp.bind=127.0.0.1:$bench_port" --set listeners.ws.enabled=false \
  --set controlplane.bind=127.0.0.1:0 --set "node.data_dir=$bench_dir" --set log.level=warn >"$bench_dir/log" 2>&1 &
bench_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$bench_port") 2>/dev/null && break; sleep 0.1; done
smoke_status=0
# benches/smoke.sh checks its JSON with python3: the venv's, like everything here.
PATH="$venv/bin:$PATH" MQTT_BENCH="$CARGO_TARGET_DIR/debug/mqtt-bench" bash benches/smoke.sh "$bench_port" \
  || smoke_status=$?
kill "$bench_pid" 2>/dev/null; wait "$bench_pid" 2>/dev/null || true
rm -rf "$bench_dir"
[ "$smoke_status" = 0 ] || { echo "load generator smoke run failed"; exit 1; }
echo "== all tests passed"
