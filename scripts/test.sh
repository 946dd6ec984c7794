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

# Debian packages: the mosquitto clients (and the broker, for side-by-side runs).
need=()
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
echo "== all tests passed"
