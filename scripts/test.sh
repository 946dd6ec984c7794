#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests
# need (idempotently), builds, then runs format and lint checks, the Rust
# tests (unit, property and end-to-end) and the Python paho-mqtt tests.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/mqttd-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$CARGO_TARGET_DIR" 2>/dev/null || export CARGO_TARGET_DIR="$PWD/target"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: a C toolchain with make (ring and jemalloc build from C
# sources), the mosquitto clients (and the broker, for side-by-side runs).
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v make >/dev/null 2>&1 || need+=(make)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Python clients, from PyPI.
if ! python3 -c 'import paho.mqtt, pytest' >/dev/null 2>&1; then
  echo "== installing paho-mqtt and pytest"
  python3 -m pip install -q 'paho-mqtt>=2,<3' 'pytest>=7'
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
MQTTD_BIN="$CARGO_TARGET_DIR/debug/mqttd" python3 -m pytest -q tests/python
echo "== load generator smoke run (every scenario briefly, against mqttd on its defaults)"
bench_dir=$(mktemp -d)
bench_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$CARGO_TARGET_DIR/debug/mqttd" --set "listeners.tcp.bind=127.0.0.1:$bench_port" --set listeners.ws.enabled=false \
  --set controlplane.bind=127.0.0.1:0 --set "node.data_dir=$bench_dir" --set log.level=warn >"$bench_dir/log" 2>&1 &
bench_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$bench_port") 2>/dev/null && break; sleep 0.1; done
smoke_status=0
MQTT_BENCH="$CARGO_TARGET_DIR/debug/mqtt-bench" bash benches/smoke.sh "$bench_port" || smoke_status=$?
kill "$bench_pid" 2>/dev/null; wait "$bench_pid" 2>/dev/null || true
rm -rf "$bench_dir"
[ "$smoke_status" = 0 ] || { echo "load generator smoke run failed"; exit 1; }
echo "== all tests passed"
