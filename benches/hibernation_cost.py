#!/usr/bin/env python3
"""What hibernation costs: sparse publishers that each go quiet for longer
than mqttd's mqtt.hibernate_after_ms (2,000 ms by default), so that each of
their messages has to wake a hibernated connection.

Each run is `mqtt-bench latency --publishers P --rate P/PERIOD`: every
publisher sends one message every PERIOD seconds (the publishers' phases are
spread evenly over the period, publisher i starting at i*PERIOD/P), all to
one subscriber on bench/lat/#, for --duration seconds. mqtt-bench reports
publish-to-delivery latency and the broker's CPU time over the measured
window; this script adds the broker's peak RSS (VmRSS sampled every 20 ms)
and CPU per message.

Brokers (--brokers): mqttd (hibernation on, the default), mqttd-nohibernate
(mqtt.hibernate=false), and Mosquitto with TCP_NODELAY for reference, all
with the same queue, in-flight window and $SYS off (see compare.py). The
order rotates each round. A run fails (FAILED in the table, exit status 1 if
an mqttd run failed) if mqtt-bench fails or reports lost, duplicated,
reordered or unacknowledged messages.

    python3 benches/hibernation_cost.py [--publishers 2000] [--period 3] [--duration 20] [--qos 1]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--publishers", type=int, default=2000)
    ap.add_argument("--period", type=float, default=3.0,
                    help="seconds between one publisher's messages (above hibernate_after_ms)")
    ap.add_argument("--duration", type=float, default=20.0, help="publishing window, seconds")
    ap.add_argument("--qos", type=int, choices=[0, 1, 2], default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--brokers", default="mqttd,mqttd-nohibernate,mosquitto-nodelay")
    ap.add_argument("--queue", type=int, default=1000)
    ap.add_argument("--inflight", type=int, default=32)
    ap.add_argument("--mqttd", default=bl.default_mqttd(), help="env MQTTD_BIN")
    ap.add_argument("--bench", default=bl.default_bench(), help="env MQTT_BENCH")
    ap.add_argument("--mosquitto", default=bl.default_mosquitto())
    a = ap.parse_args()
    brokers = bl.parse_brokers(a.brokers, ap)
    if not 1 <= a.publishers <= 18000:
        ap.error("--publishers must be 1..18000 (one process may hold 20,000 files here)")
    if not (0 < a.duration <= 600 and a.period > 0 and a.rounds >= 1):
        ap.error("--duration must be in (0, 600], --period above 0, --rounds at least 1")
    bl.need_executable(a.bench, "mqtt-bench (--bench or MQTT_BENCH)")
    if any(b.startswith("mqttd") for b in brokers):
        bl.need_executable(a.mqttd, "mqttd (--mqttd or MQTTD_BIN)")
    bl.raise_open_files(20000)
    settings = bl.Settings(queue=a.queue, inflight=a.inflight)
    rate = a.publishers / a.period
    args = ["latency", "--publishers", str(a.publishers), "--rate", f"{rate:.6g}",
            "--duration", f"{a.duration:g}", "--qos", str(a.qos)]
    print(f"# {bl.command_line()}\n# {bl.machine_line()}")
    print(f"# mqtt-bench {' '.join(args)}: {a.publishers} publishers, one QoS {a.qos} message every "
          f"{a.period:g} s each ({rate:,.1f} msg/s in all), phases spread evenly")
    for line in settings.describe():
        print(f"# {line}")
    sys.stdout.flush()

    workdir = tempfile.mkdtemp(prefix="mqtt-hibernation-")
    runs = {b: [] for b in brokers}
    try:
        for round_no in range(a.rounds):
            for name in bl.rotated(brokers, round_no):
                runs[name].append(run_one(name, args, a, settings, workdir))
                r = runs[name][-1]
                print(f"round {round_no + 1} {name:18} "
                      + (f"p50={r['p50_us']} p99={r['p99_us']} cpu={r['broker_cpu_s']} "
                         f"peak_rss_mb={r['peak_rss_mb']}" if r["ok"] else f"FAILED: {r['reason']}"),
                      file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    cols = [("p50_us", "p50 µs"), ("p99_us", "p99 µs"), ("p999_us", "p99.9 µs"), ("max_us", "max µs"),
            ("delivered", "delivered"), ("broker_cpu_s", "broker CPU s"),
            ("cpu_us_per_msg", "broker CPU µs per message"), ("peak_rss_mb", "peak RSS MB")]
    print("\n| broker | " + " | ".join(c[1] for c in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    failed_mqttd = False
    for name in brokers:
        bad = [r for r in runs[name] if not r["ok"]]
        if bad:
            failed_mqttd |= name.startswith("mqttd")
            cells = [f"FAILED {len(bad)}/{len(runs[name])}"] + ["-"] * (len(cols) - 1)
        else:
            cells = [fmt(statistics.median(r[k] for r in runs[name])) for k, _ in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nMedians of {a.rounds} round(s). Broker CPU is over mqtt-bench's measured window "
          f"(first publish to the drain's end), so it leaves out connecting.")
    for name in brokers:
        for r in runs[name]:
            if not r["ok"]:
                print(f"- FAILED {name}: {r['reason']}")
    return 1 if failed_mqttd else 0


def fmt(value):
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


def run_one(name, args, a, settings, workdir):
    try:
        broker = bl.start_named(name, workdir, settings, mqttd=a.mqttd, mosquitto=a.mosquitto)
    except Exception as error:  # noqa: BLE001 - reported as this run's failure
        return {"ok": False, "reason": f"did not start: {error}"}
    try:
        with bl.RssSampler(broker.pid, every=0.05) as rss:
            status, r, tail = bl.run_bench(a.bench, args + ["--broker-pid", str(broker.pid)], broker,
                                           a.duration + 60)
        problems = []
        if status != 0 or r is None:
            problems.append(f"mqtt-bench exited {status}: {tail}")
        else:
            for key in ("lost", "duplicates", "reordered", "corrupt", "unacked"):
                if r.get(key):
                    problems.append(f"{key} {r[key]}")
            if r.get("achieved_rate", 0) < 0.9 * r.get("rate", 0):
                problems.append(f"the load generator fell behind: {r['achieved_rate']} of "
                                f"{r['rate']} msg/s")
        if not broker.alive():
            problems.append(f"the broker died: {broker.log_tail(3)}")
        if problems:
            return {"ok": False, "reason": "; ".join(problems)}
        cpu = r.get("broker_cpu_s", 0.0)
        return {"ok": True, **{k: r[k] for k in ("p50_us", "p99_us", "p999_us", "max_us", "delivered")},
                "broker_cpu_s": cpu, "cpu_us_per_msg": cpu * 1e6 / max(r["delivered"], 1),
                "peak_rss_mb": rss.peak_kb / 1024}
    finally:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
