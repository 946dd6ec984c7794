#!/usr/bin/env bash
# Profiles mqttd under one mqtt-bench scenario with perf (Debian: linux-perf)
# and writes, under benches/profiles/ (or $OUT):
#   SCENARIO.txt  the hottest functions (perf report, self time)
#   SCENARIO.svg  a flamegraph, when inferno is installed (cargo install inferno)
#
#   bash benches/profile.sh fanin --publishers 100 --qos 0
#   MQTTD_SETS="node.worker_threads=1" OUT=/tmp/p1 bash benches/profile.sh fanin --publishers 100 --qos 0
#
# Starts its own release mqttd on 127.0.0.1:21990 and stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 SCENARIO [mqtt-bench options]" >&2; exit 2; }
scenario="$1"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/mqttd-target}"
out="${OUT:-benches/profiles}"
port="${PORT:-21990}"
seconds="${SECONDS_TO_RECORD:-3}"
mkdir -p "$out"
cargo build --release -q -p mqttd -p mqtt-bench
bin="$CARGO_TARGET_DIR/release"
data="$(mktemp -d)"
"$bin/mqttd" --set "listeners.tcp.bind=127.0.0.1:$port" --set listeners.ws.enabled=false \
  --set controlplane.bind=127.0.0.1:0 --set "node.data_dir=$data" --set sys.interval=0 \
  --set log.level=warn --set mqtt.max_inflight=1000 --set mqtt.receive_maximum=1000 \
  ${MQTTD_SETS:+$(for s in $MQTTD_SETS; do printf -- '--set %s ' "$s"; done)} &
broker=$!
trap 'kill $broker 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  sleep 0.1
done
"$bin/mqtt-bench" "$@" --port "$port" --duration $((seconds + 2)) > "$out/$scenario.json" &
bench=$!
sleep 1
perf record -F 499 --call-graph dwarf,16384 -p "$broker" -o "$out/$scenario.perf.data" -- sleep "$seconds" 2>/dev/null
wait $bench || true
perf report -i "$out/$scenario.perf.data" --no-children --percent-limit 1 --stdio 2>/dev/null \
  | grep -E '^ +[0-9]' > "$out/$scenario.txt" || true
if command -v inferno-collapse-perf >/dev/null && command -v inferno-flamegraph >/dev/null; then
  perf script -i "$out/$scenario.perf.data" 2>/dev/null | inferno-collapse-perf \
    | inferno-flamegraph --title "mqttd: mqtt-bench $*" > "$out/$scenario.svg"
fi
# perf.data stays for `perf report -i`; it is not committed (.gitignore).
echo "$out/$scenario.txt: $(tail -1 "$out/$scenario.json")"
head -15 "$out/$scenario.txt"
