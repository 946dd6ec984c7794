#!/usr/bin/env python3
"""Peak broker memory under a fan-in flood: does the queue limit bound it?

For each broker and each queue limit (--queues), starts the broker fresh and
runs `mqtt-bench fanin --publishers 100 --qos 0` (100 publishers writing as
fast as the broker reads, one subscriber on bench/in/#) while sampling the
broker's VmRSS every 20 ms. Reports the RSS before the flood, its peak during
it, messages sent and delivered, loss, and the broker's CPU time.

The brokers get the same settings as in compare.py (queue, in-flight window,
$SYS off), with the queue limit varied. A run FAILS (exit status 1 if an
mqttd run failed) if mqtt-bench fails, the broker dies, or messages are
duplicated or reordered; loss is shown, and fails the run only with
--no-loss (the README's claim for mqttd: back-pressure, not loss).

    python3 benches/flood_rss.py [--queues 1000,100000] [--publishers 100] [--duration 3]
"""

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queues", default="1000,100000", help="queue limits to try, comma-separated")
    ap.add_argument("--publishers", type=int, default=100)
    ap.add_argument("--qos", type=int, choices=[0, 1, 2], default=0)
    ap.add_argument("--duration", type=float, default=3.0, help="publishing window, seconds")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--brokers", default="mqttd,mosquitto-nodelay")
    ap.add_argument("--inflight", type=int, default=32)
    ap.add_argument("--no-loss", action="store_true", help="a run that loses messages fails")
    ap.add_argument("--mqttd", default=bl.default_mqttd(), help="env MQTTD_BIN")
    ap.add_argument("--bench", default=bl.default_bench(), help="env MQTT_BENCH")
    ap.add_argument("--mosquitto", default=bl.default_mosquitto())
    a = ap.parse_args()
    brokers = bl.parse_brokers(a.brokers, ap)
    try:
        queues = [int(q) for q in a.queues.split(",") if q.strip()]
    except ValueError:
        ap.error("--queues takes numbers, e.g. 1000,100000")
    if not queues or not (0 < a.duration <= 60) or not 1 <= a.publishers <= 10000 or a.rounds < 1:
        ap.error("need --queues, --duration in (0, 60], --publishers in 1..10000, --rounds >= 1")
    bl.need_executable(a.bench, "mqtt-bench (--bench or MQTT_BENCH)")
    if any(b.startswith("mqttd") for b in brokers):
        bl.need_executable(a.mqttd, "mqttd (--mqttd or MQTTD_BIN)")
    bl.raise_open_files(20000)
    args = ["fanin", "--publishers", str(a.publishers), "--qos", str(a.qos), "--duration", f"{a.duration:g}"]
    print(f"# {bl.command_line()}\n# {bl.machine_line()}\n# mqtt-bench {' '.join(args)}")
    for line in bl.Settings(queue=queues[0], inflight=a.inflight).describe()[1:]:
        print(f"# {line}")
    sys.stdout.flush()

    workdir = tempfile.mkdtemp(prefix="mqtt-flood-")
    rows, failed_mqttd = [], False
    try:
        for round_no in range(a.rounds):
            for name in bl.rotated(brokers, round_no):
                for queue in queues:
                    row = run_one(name, queue, args, a, workdir)
                    row.update(broker=name, queue=queue, round=round_no + 1)
                    rows.append(row)
                    failed_mqttd |= not row["ok"] and name.startswith("mqttd")
                    print(f"round {round_no + 1} {name} queue {queue}: "
                          + ("ok" if row["ok"] else f"FAILED: {row['reason']}"), file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print("\n| broker | queue | round | RSS before MB | peak RSS MB | sent | delivered | lost | msg/s "
          "| broker CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["ok"]:
            print(f"| {r['broker']} | {r['queue']:,} | {r['round']} | {r['before_kb'] / 1024:.1f} | "
                  f"{r['peak_kb'] / 1024:.1f} | {r['sent']:,} | {r['delivered']:,} | {r['lost']:,} | "
                  f"{r['msgs_per_sec']:,.0f} | {r.get('broker_cpu_s', '-')} |")
        else:
            print(f"| {r['broker']} | {r['queue']:,} | {r['round']} | FAILED: {r['reason']} |"
                  + " |" * 6)
    return 1 if failed_mqttd else 0


def run_one(name, queue, args, a, workdir):
    settings = bl.Settings(queue=queue, inflight=a.inflight)
    try:
        broker = bl.start_named(name, workdir, settings, mqttd=a.mqttd, mosquitto=a.mosquitto)
    except Exception as error:  # noqa: BLE001 - reported as this run's failure
        return {"ok": False, "reason": f"did not start: {error}"}
    try:
        before = broker.rss_kb()
        with bl.RssSampler(broker.pid, every=0.02) as rss:
            status, r, tail = bl.run_bench(a.bench, args + ["--broker-pid", str(broker.pid)], broker,
                                           a.duration + 60)
        problems = []
        if status != 0 or r is None:
            problems.append(f"mqtt-bench exited {status}: {tail}")
        else:
            for key in ("duplicates", "reordered", "corrupt", "unacked"):
                if r.get(key):
                    problems.append(f"{key} {r[key]}")
            if a.no_loss and r.get("lost"):
                problems.append(f"lost {r['lost']:,}")
        if not broker.alive():
            problems.append(f"the broker died: {broker.log_tail(3)}")
        if problems:
            return {"ok": False, "reason": "; ".join(problems)}
        return {"ok": True, "before_kb": before, "peak_kb": rss.peak_kb, "sent": r["sent"],
                "delivered": r["delivered"], "lost": r["lost"], "msgs_per_sec": r["msgs_per_sec"],
                "broker_cpu_s": r.get("broker_cpu_s")}
    finally:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
