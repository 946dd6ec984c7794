#!/usr/bin/env bash
# Smoke test of mqtt-bench against a broker that is already running on
# 127.0.0.1:PORT: every scenario once, briefly (about 1-2 s each), with small
# numbers. Each run must exit 0 and print exactly one JSON line whose numbers
# are sane; every run here uses QoS 1 or 2, so each must report lost == 0,
# and none may report duplicate, reordered or corrupt deliveries.
#
# Usage: benches/smoke.sh PORT
#   MQTT_BENCH  the binary (default: $CARGO_TARGET_DIR/debug/mqtt-bench)
#
# mqttd passes on its defaults: publishers that outrun a subscriber are held
# back (see dataplane/src/mailbox.rs), so no QoS 1/2 message is lost.
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 PORT" >&2
  exit 2
fi
port=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
bench=${MQTT_BENCH:-${CARGO_TARGET_DIR:-$repo/target}/debug/mqtt-bench}
if [ ! -x "$bench" ]; then
  echo "no mqtt-bench binary at $bench (cargo build -p mqtt-bench, or set MQTT_BENCH)" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# run NAME ARGS...: runs one scenario and checks its output.
run() {
  local name=$1
  shift
  local out="$work/$name.out" err="$work/$name.err"
  local started=$SECONDS
  "$bench" "$@" --port "$port" >"$out" 2>"$err"
  local status=$?
  if [ $status -eq 0 ] && python3 - "$out" "$@" <<'PY'; then
import json, sys

lines = [line for line in open(sys.argv[1]).read().splitlines() if line.strip()]
if len(lines) != 1:
    sys.exit(f"expected one JSON line on stdout, got {len(lines)}")
r = json.loads(lines[0])
problems = []

def need(condition, what):
    if not condition:
        problems.append(what)

s = r["scenario"]
if s == "conn":
    need(r["connected"] == r["clients"] > 0, "every client connected")
    need(r["failed"] == 0 and r["dropped"] == 0, "no failed or dropped connection")
    need(r["connect_rate"] > 0 and r["connect_secs"] > 0, "a connect rate")
else:
    need(r["sent"] > 0, "messages sent")
    need(r["seconds"] > 0, "a measured window")
    need(r["qos"] >= 1, "QoS 1 or 2 in this smoke test")
    need(r["lost"] == 0, f"no loss at QoS {r['qos']} (lost {r['lost']})")
    need(r["unacked"] == 0, "every publish acknowledged")
    for key in ("duplicates", "reordered", "corrupt"):
        need(r.get(key) in (None, 0), f"no {key} deliveries ({r.get(key)})")
    if s != "wildcards":
        need(r["delivered"] == r["received"], "delivered (distinct) == received")
if s == "conn":
    need(r["subscribed"] == ("--subscribe" in sys.argv[2:]), "subscribed as asked")
if s in ("fanin", "pairs"):
    need(r["delivered"] == r["sent"], "delivered == sent")
    need(r["msgs_per_sec"] > 0, "a message rate")
if s == "fanout":
    need(r["expected"] == r["sent"] * r["subscribers"], "expected == sent * subscribers")
    need(r["delivered"] == r["expected"], "delivered == expected")
    need(r["deliveries_per_sec"] > 0, "a delivery rate")
if s == "latency":
    need(r["count"] == r["sent"], "a latency sample per message")
    need(0 < r["p50_us"] <= r["p99_us"] <= r["p999_us"] <= r["max_us"], "ordered percentiles")
    need(r["achieved_rate"] > 0.5 * r["rate"], "at least half the asked rate")
if s == "wildcards":
    need(r["expected_min"] > 0, "some messages match a filter")
    need(r["expected_min"] <= r["deliveries"] <= r["expected_max"], "deliveries within expected")
    need(r["publishes_per_sec"] > 0 and r["deliveries_per_sec"] > 0, "rates")
if problems:
    sys.exit("; ".join(problems) + "\n  " + lines[0])
PY
    passed=$((passed + 1))
    echo "ok   $name ($((SECONDS - started)) s): $(cat "$out")"
  else
    failed=$((failed + 1))
    echo "FAIL $name (exit $status): $(cat "$out")"
    sed 's/^/     /' "$err" | tail -n 5
  fi
}

run conn      conn --clients 200 --duration 5 --hold 1 --keep-alive 2
run conn-sub  conn --clients 200 --duration 5 --hold 1 --keep-alive 2 --subscribe
run fanin     fanin --publishers 4 --qos 1 --count 50000 --duration 2
run fanin-v5  fanin --publishers 4 --qos 2 --version 5 --count 20000 --duration 2
run fanout    fanout --subscribers 10 --qos 1 --count 10000 --duration 2
run pairs     pairs --pairs 10 --qos 1 --count 50000 --duration 2
run latency   latency --rate 2000 --publishers 10 --qos 1 --duration 2
run wildcards wildcards --filters 2000 --subscribers 10 --qos 1 --count 50000 --duration 2

echo "smoke: $passed passed, $failed failed"
[ $failed -eq 0 ]
