#!/usr/bin/env python3
"""Side-by-side benchmark: mqttd against Mosquitto (with and without
TCP_NODELAY), rumqttd if installed, and the bare "baseline" forwarder if
built, with the same settings for every broker. mqttd runs twice: on its
defaults (a worker thread per core) and as "mqttd-1w" with
node.worker_threads=1, one thread as Mosquitto has, since on two cores
shared with the load generator a second worker mostly wakes and parks.

Every broker gets the same queue limit (--queue), the same in-flight window
(--inflight) and no $SYS publishing; each start is a fresh process on a free
loopback port with a fresh data directory. For every round, every scenario
runs once against every broker, and the order of the brokers rotates from
round to round. mqtt-bench samples the broker's CPU time (utime + stime of
/proc/PID/stat, all threads) at the start and end of its measured window, so
every throughput figure comes with deliveries per broker CPU-second.

A run that loses, duplicates or reorders QoS 1/2 messages, leaves QoS 1/2
flows unacknowledged, duplicates or reorders QoS 0 messages, or loses QoS 0
messages where no loss is expected (every scenario but those in
--qos0-loss-shown, fanout by default), FAILS: the table shows FAILED and the
number of failed rounds for that broker and scenario instead of a median. So
does a run whose mqtt-bench exits non-zero, or whose broker dies.

Prints a header with the settings, one line per run on stderr, and a
Markdown table of medians with ratios mqttd/Mosquitto and mqttd/baseline.
Exits 1 if any mqttd run failed (any run with --strict), 2 on bad usage.

    python3 benches/compare.py [--rounds 3] [--duration 5] [--only conn,fanin-qos1]
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

MOSQUITTOS = ("mosquitto", "mosquitto-nodelay")
CPU_KEY = "msgs_per_broker_cpu_s"
CPU_UNIT = "msg per broker CPU-s"


@dataclass
class Row:
    key: str
    unit: str
    lower: bool = False


@dataclass
class Scenario:
    name: str
    args: list
    rows: list
    qos: int = 0
    baseline: str = None  # the baseline's --mode, when it can run this scenario
    loss_shown: bool = False  # QoS 0 loss shown as "lost N" instead of failing
    conn: bool = False
    extra: dict = field(default_factory=dict)


def scenarios(opts):
    n, hold = opts.clients, opts.conn_hold
    rate = [Row("msgs_per_sec", "msg/s"), Row(CPU_KEY, CPU_UNIT)]
    conn = ["conn", "--clients", str(opts.conn_clients), "--hold", str(hold), "--duration", "10"]
    held = f"B of RSS per connection after {hold:g} s (lower is better)"
    found = [
        Scenario("conn", conn, [Row("bytes_per_conn_held", held, True),
                                Row("connect_rate", f"connections/s, {opts.conn_clients:,} clients, "
                                                    "CONNECT to CONNACK"),
                                Row("connects_per_broker_cpu_s", "connections per broker CPU-s")],
                 conn=True, baseline="conn"),
        Scenario("conn-sub", conn + ["--subscribe"],
                 [Row("bytes_per_conn_held", held.replace("connection", "connection + subscription"),
                      True)], conn=True, baseline="conn"),
        Scenario("fanin-qos0", ["fanin", "--publishers", str(n), "--qos", "0"], rate, 0, "fanin"),
        Scenario("fanin-qos1", ["fanin", "--publishers", str(n), "--qos", "1"], rate, 1, "fanin"),
        Scenario("fanout", ["fanout", "--subscribers", str(n), "--qos", "0"],
                 [Row("msgs_per_sec", "deliveries/s"), Row(CPU_KEY, CPU_UNIT)], 0, "fanout"),
        Scenario("pairs", ["pairs", "--pairs", str(n), "--qos", "0"], rate, 0),
        *[Scenario(f"latency-{rate // 1000}k" if rate % 1000 == 0 else f"latency-{rate}",
                   ["latency", "--rate", str(rate), "--publishers", "10", "--qos", "0"],
                   [Row("p99_us", f"p99 µs at {rate:,} msg/s (lower is better)", True),
                    Row("p50_us", "p50 µs (lower is better)", True), Row(CPU_KEY, CPU_UNIT)],
                   0, "latency")
          for rate in opts.latency_rates],
        Scenario("wildcards", ["wildcards", "--filters", str(opts.filters), "--qos", "0"],
                 [Row("msgs_per_sec", f"deliveries/s through {opts.filters:,} filters"),
                  Row(CPU_KEY, CPU_UNIT)], 0),
    ]
    shown = set(filter(None, opts.qos0_loss_shown.split(",")))
    for s in found:
        s.loss_shown = s.name in shown
    return found


def select(all_scenarios, only):
    """--only names a scenario, or a group: "fanin" is fanin-qos0 and
    fanin-qos1, "conn" is conn and conn-sub."""
    if not only:
        return all_scenarios
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = []
    for w in wanted:
        hits = [s for s in all_scenarios if s.name == w or s.name.startswith(w + "-")]
        if not hits:
            sys.stderr.write(f"--only: no scenario {w!r}; there are "
                             f"{', '.join(s.name for s in all_scenarios)}\n")
            sys.exit(2)
        chosen += [s for s in hits if s not in chosen]
    return [s for s in all_scenarios if s in chosen]


def judge(scenario, status, result, tail, alive):
    """Whether a run counts, and why not: returns a dict with ok, reason,
    the figures of its rows, and lost (QoS 0 loss shown, not failing)."""
    run = {"ok": False, "reason": None, "values": {}, "lost": 0, "result": result}
    problems = []
    if not alive:
        problems.append("the broker died")
    if status is None:
        problems.append(tail)
    elif status != 0:
        problems.append(f"mqtt-bench exited {status}: {tail}")
    if result is None:
        problems.append("no JSON from mqtt-bench")
    else:
        r = result
        if scenario.conn:
            if r.get("failed") or r.get("dropped"):
                problems.append(f"{r.get('failed')} connections failed, {r.get('dropped')} dropped")
        else:
            qos = r.get("qos", scenario.qos)
            for key in ("duplicates", "reordered", "corrupt"):
                if r.get(key):
                    problems.append(f"{r[key]} {key}")
            if r.get("unacked"):
                problems.append(f"{r['unacked']} QoS {qos} flows unacknowledged")
            if "expected_max" in r and r.get("deliveries", 0) > r["expected_max"]:
                problems.append(f"{r['deliveries'] - r['expected_max']} deliveries more than "
                                f"the filters allow (duplicates)")
            lost = r.get("lost", 0)
            if lost:
                if qos == 0 and scenario.loss_shown:
                    run["lost"] = lost
                    run["expected"] = r.get("expected", r.get("sent", 0))
                else:
                    problems.append(f"lost {lost:,} of {r.get('expected', r.get('sent', '?')):,} "
                                    f"at QoS {qos}")
            if r.get("sent", 0) == 0:
                problems.append("nothing sent")
        for row in scenario.rows:
            value = r.get(row.key)
            if value is None:
                problems.append(f"no {row.key} in the JSON")
            run["values"][row.key] = value
    if problems:
        run["reason"] = "; ".join(p for p in problems if p)
    else:
        run["ok"] = True
    return run


def fmt(value):
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.3g}"


def summarize(runs, key):
    """(median or None, cell text): a failure in any round fails the cell."""
    if not runs:
        return None, "-"
    failed = [r for r in runs if not r["ok"]]
    if failed:
        return None, f"FAILED {len(failed)}/{len(runs)}"
    values = [r["values"][key] for r in runs]
    med = statistics.median(values)
    text = fmt(med)
    lost = [r for r in runs if r["lost"]]
    if lost:
        worst = max(lost, key=lambda r: r["lost"])
        pct = 100.0 * worst["lost"] / max(worst.get("expected") or 1, 1)
        text += f" (lost {worst['lost']:,}, {pct:.1f}%, in {len(lost)}/{len(runs)})"
    return med, text


def best_mosquitto(per_broker, key, lower):
    """The better Mosquitto (with or without TCP_NODELAY) of those that
    passed every round; FAILED only if both failed."""
    cells = [(n,) + summarize(per_broker[n], key) for n in MOSQUITTOS if per_broker.get(n)]
    passed = [c for c in cells if c[1] is not None]
    if passed:
        name, med, text = (min if lower else max)(passed, key=lambda c: c[1])
        return med, text + ("" if name == "mosquitto" else " ⁿ")
    if cells:
        return None, " / ".join(c[2] for c in cells)
    return None, "-"


def ratio(ours, theirs):
    return f"{ours / theirs:.2f}" if ours is not None and theirs else "-"


def print_table(chosen, results, brokers, out):
    cols = ["scenario", "unit", "mqttd", "mqttd-1w", "mosquitto*", "rumqttd", "baseline",
            "mqttd/mosquitto*", "mqttd-1w/mosquitto*", "mqttd/baseline", "mqttd-1w/baseline"]
    out.write("\n| " + " | ".join(cols) + " |\n")
    out.write("|---|---|" + "---:|" * (len(cols) - 2) + "\n")
    for s in chosen:
        per = results.get(s.name, {})
        for row in s.rows:
            ours, ours_text = summarize(per.get("mqttd", []), row.key)
            one, one_text = summarize(per.get("mqttd-1w", []), row.key)
            if "mqttd-1w" not in brokers:
                one_text = "not run"
            mosq, mosq_text = best_mosquitto(per, row.key, row.lower)
            _, rum_text = summarize(per.get("rumqttd", []), row.key)
            base, base_text = summarize(per.get("baseline", []), row.key)
            if "mqttd" not in brokers:
                ours_text = "not run"
            if not any(m in brokers for m in MOSQUITTOS):
                mosq_text = "not run"
            if "rumqttd" not in brokers:
                rum_text = "not run"
            if not s.baseline:
                base_text = "n/a"
            elif "baseline" not in brokers:
                base_text = "not run"
            cells = [s.name, row.unit, ours_text, one_text, mosq_text, rum_text, base_text,
                     ratio(ours, mosq), ratio(one, mosq), ratio(ours, base) if s.baseline else "n/a",
                     ratio(one, base) if s.baseline else "n/a"]
            out.write("| " + " | ".join(cells) + " |\n")
    out.write("\nMedians of the rounds. mosquitto*: the better of Mosquitto with and without "
              "set_tcp_nodelay (ⁿ: with), of those that passed every round. FAILED k/n: k of n "
              "rounds failed (lost, duplicated or reordered messages, unacknowledged flows, a "
              "failed run), so no median is shown. \"lost\" (QoS 0 in the scenarios where a "
              "broker may shed load) is the worst round's loss. mqttd/baseline: mqttd's figure "
              "as a fraction of the bare forwarder's (for latency, a multiple of its latency).\n")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Scenarios: conn, conn-sub, fanin-qos0, fanin-qos1, fanout, pairs, latency, "
               "wildcards (--only also takes the groups conn and fanin).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5, help="publishing window per run, seconds")
    parser.add_argument("--only", default="", help="comma-separated scenarios or groups")
    parser.add_argument("--brokers", default="mqttd,mqttd-1w,mosquitto,mosquitto-nodelay,rumqttd,baseline",
                        help="which of mqttd, mqttd-1w (node.worker_threads=1), mosquitto, "
                             "mosquitto-nodelay, rumqttd, baseline to run "
                             "(those not installed are left out)")
    parser.add_argument("--queue", type=int, default=1000,
                        help="messages queued per client, every broker (default 1000, mqttd's and "
                             "Mosquitto's default)")
    parser.add_argument("--inflight", type=int, default=32,
                        help="in-flight QoS 1/2 window per client, every broker (default 32, "
                             "mqttd's default)")
    parser.add_argument("--clients", type=int, default=100,
                        help="publishers (fanin), subscribers (fanout), pairs (pairs)")
    parser.add_argument("--conn-clients", type=int, default=10000)
    parser.add_argument("--conn-hold", type=float, default=12,
                        help="seconds conn holds its clients before RSS is read (default 12: idle "
                             "clients hibernate after mqtt.hibernate_after_ms, 2 s, and jemalloc "
                             "returns freed pages after about 10 s)")
    parser.add_argument("--latency-rates", default="10000,50000,200000",
                        type=lambda text: [int(r) for r in text.split(",") if r.strip()],
                        help="total publish rates of the latency scenarios (latency-10k, ...)")
    parser.add_argument("--filters", type=int, default=100000)
    parser.add_argument("--qos0-loss-shown", default="fanout",
                        help="scenarios where QoS 0 loss is shown as 'lost N' next to the rate "
                             "instead of failing the run (default: fanout, where one publish "
                             "becomes N deliveries and a broker may shed QoS 0 to slow subscribers)")
    parser.add_argument("--mqttd", default=bl.default_mqttd(),
                        help="mqttd binary (env MQTTD_BIN, default $CARGO_TARGET_DIR/release/mqttd)")
    parser.add_argument("--mqttd-set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra mqttd --set, repeatable (printed in the header)")
    parser.add_argument("--bench", default=bl.default_bench(),
                        help="mqtt-bench binary (env MQTT_BENCH, default "
                             "$CARGO_TARGET_DIR/release/mqtt-bench)")
    parser.add_argument("--mosquitto", default=bl.default_mosquitto())
    parser.add_argument("--rumqttd", default=bl.default_rumqttd())
    parser.add_argument("--baseline", default=None,
                        help="baseline server binary, started as PATH --port N --mode "
                             "fanin|fanout|latency (env BASELINE_BIN, default "
                             "$CARGO_TARGET_DIR/release/baseline if it exists)")
    parser.add_argument("--save", metavar="FILE", help="also write every run's JSON here (JSON lines)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 if any run of any broker failed, not only mqttd's")
    opts = parser.parse_args()
    if opts.rounds < 1 or opts.duration <= 0:
        parser.error("--rounds must be at least 1 and --duration above 0")

    bl.need_executable(opts.bench, "mqtt-bench (cargo build --release -p mqtt-bench, or --bench)")
    wanted = [b.strip() for b in opts.brokers.split(",") if b.strip()]
    unknown = set(wanted) - {"mqttd", "mqttd-1w", "rumqttd", "baseline", *MOSQUITTOS}
    if unknown:
        parser.error(f"--brokers: unknown {', '.join(sorted(unknown))}")
    baseline_path = opts.baseline or bl.default_baseline()
    available = {
        "mqttd": os.access(opts.mqttd, os.X_OK),
        "mqttd-1w": os.access(opts.mqttd, os.X_OK),
        "mosquitto": os.access(opts.mosquitto, os.X_OK),
        "mosquitto-nodelay": os.access(opts.mosquitto, os.X_OK),
        "rumqttd": os.access(opts.rumqttd, os.X_OK),
        "baseline": os.access(baseline_path, os.X_OK),
    }
    if opts.baseline and not available["baseline"]:
        parser.error(f"--baseline {opts.baseline}: not an executable")
    if "mqttd" in wanted and not available["mqttd"]:
        parser.error(f"no mqttd at {opts.mqttd} (--mqttd or MQTTD_BIN)")
    brokers = [b for b in wanted if available[b]]
    settings = bl.Settings(queue=opts.queue, inflight=opts.inflight, mqttd_sets=opts.mqttd_set)
    chosen = select(scenarios(opts), opts.only)
    files = bl.raise_open_files()

    out = sys.stdout
    out.write(f"# {bl.command_line()}\n# {bl.machine_line()}\n")
    versions = {
        "mqttd": f"{opts.mqttd} ({bl.version_of([opts.mqttd, '--version'])})",
        "mosquitto": f"{opts.mosquitto} ({bl.version_of([opts.mosquitto, '-h'])})",
        "rumqttd": f"{opts.rumqttd} ({bl.version_of([opts.rumqttd, '--version'])})",
        "baseline": baseline_path,
    }
    for name in ("mqttd", "mosquitto", "rumqttd", "baseline"):
        state = versions[name] if available[name] else "not installed"
        if available[name] and name not in wanted and not (name == "mosquitto" and "mosquitto-nodelay"
                                                           in wanted):
            state += ", not run (--brokers)"
        out.write(f"# {name}: {state}\n")
    for line in settings.describe():
        out.write(f"# {line}\n")
    out.write(f"# load: mqtt-bench {opts.bench}, 64-byte payloads, {opts.clients} clients per message "
              f"scenario, {opts.conn_clients} in conn, {opts.duration:g} s windows, {opts.rounds} "
              f"round(s), broker order rotated every round; one load-generator core, open-file limit "
              f"{files}\n# QoS 0 loss shown, not failing, in: {opts.qos0_loss_shown or 'none'}\n")
    out.flush()

    workdir = tempfile.mkdtemp(prefix="mqtt-compare-")
    saved = open(opts.save, "w") if opts.save else None
    results = {}  # scenario -> broker -> [run]
    try:
        for round_no in range(opts.rounds):
            for s in chosen:
                names = [b for b in brokers if b != "baseline" or s.baseline]
                shift = round_no % len(names) if names else 0
                for name in names[shift:] + names[:shift]:
                    run = run_one(s, name, opts, settings, baseline_path, workdir)
                    results.setdefault(s.name, {}).setdefault(name, []).append(run)
                    first = s.rows[0].key
                    line = (f"round {round_no + 1} {s.name:11} {name:18} "
                            f"{first}={fmt(run['values'].get(first))} "
                            f"cpu={fmt(run['values'].get(CPU_KEY))}")
                    if run["lost"]:
                        line += f" lost={run['lost']}"
                    if not run["ok"]:
                        line += f"  FAILED: {run['reason']}"
                    sys.stderr.write(line + "\n")
                    if saved:
                        saved.write(json.dumps({"round": round_no + 1, "scenario": s.name,
                                                "broker": name, "ok": run["ok"],
                                                "reason": run["reason"],
                                                "result": run["result"]}) + "\n")
                        saved.flush()
    finally:
        if saved:
            saved.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(chosen, results, brokers, out)
    failures = [(s, b, r) for s, per in results.items() for b, runs in per.items() for r in runs
                if not r["ok"]]
    for s, b, r in failures:
        out.write(f"- FAILED {s} {b}: {r['reason']}\n")
    if any(b.startswith("mqttd") for _, b, _ in failures) or (opts.strict and failures):
        sys.exit(1)


def run_one(s, name, opts, settings, baseline_path, workdir):
    try:
        if name == "mqttd":
            broker = bl.start_mqttd(opts.mqttd, workdir, settings)
        elif name == "mqttd-1w":
            # The same broker on one worker thread, as Mosquitto runs: on
            # two cores shared with the load generator, a second worker
            # mostly wakes and parks (benches/README.md).
            broker = bl.start_mqttd(opts.mqttd, workdir, settings, ["node.worker_threads=1"], name=name)
        elif name in MOSQUITTOS:
            broker = bl.start_mosquitto(opts.mosquitto, workdir, settings, name == "mosquitto-nodelay")
        elif name == "rumqttd":
            broker = bl.start_rumqttd(opts.rumqttd, workdir, settings)
        else:
            broker = bl.start_baseline(baseline_path, workdir, s.baseline)
    except Exception as error:  # noqa: BLE001 - reported as this run's failure
        return {"ok": False, "reason": f"did not start: {error}", "values": {}, "lost": 0,
                "result": None}
    try:
        args = list(s.args)
        if s.conn:
            args += ["--pid", str(broker.pid)]
            timeout = 10 + opts.conn_hold + 60
        else:
            args += ["--duration", f"{opts.duration:g}", "--broker-pid", str(broker.pid)]
            timeout = opts.duration + 60
        status, result, tail = bl.run_bench(opts.bench, args, broker, timeout)
        alive = broker.alive()
        if not alive:
            tail += f" | broker log: {broker.log_tail(3)}"
        return judge(s, status, result, tail, alive)
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
