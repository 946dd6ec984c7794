#!/usr/bin/env python3
"""Broker CPU with many idle connections: does anything spin?

For each broker, starts it fresh and runs `mqtt-bench conn --clients N
--hold SECONDS --keep-alive K --pid PID` (optionally --subscribe): N clients
connect, then sit idle for SECONDS, each sending a PINGREQ every 3/4 of its
keep-alive (staggered). mqtt-bench reads the broker's CPU time (utime +
stime of /proc/PID/stat, all threads) when the last client has connected
and at the end of the hold; this script reports it as CPU seconds and as a
share of one core, with the RSS per connection at the end of the hold.

A run FAILS (exit status 1 if an mqttd run failed) if a connection fails or
is dropped, the broker dies, or an mqttd variant uses more than --max-share
of a core while its clients are idle.

    python3 benches/idle_cpu.py [--clients 5000] [--seconds 10] [--subscribe]
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
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=10.0, help="how long the clients stay idle")
    ap.add_argument("--keep-alive", type=int, default=60,
                    help="keep-alive in CONNECT; a PINGREQ goes out every 3/4 of it")
    ap.add_argument("--subscribe", action="store_true", help="each client subscribes to a topic of its own")
    ap.add_argument("--brokers", default="mqttd,mqttd-nohibernate,mosquitto")
    ap.add_argument("--max-share", type=float, default=0.05,
                    help="most CPU, in cores, an mqttd variant may use while its clients idle")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--mqttd", default=bl.default_mqttd(), help="env MQTTD_BIN")
    ap.add_argument("--bench", default=bl.default_bench(), help="env MQTT_BENCH")
    ap.add_argument("--mosquitto", default=bl.default_mosquitto())
    a = ap.parse_args()
    brokers = bl.parse_brokers(a.brokers, ap)
    if not 1 <= a.clients <= 18000 or not 0 < a.seconds <= 300 or a.rounds < 1:
        ap.error("--clients must be 1..18000, --seconds in (0, 300], --rounds at least 1")
    bl.need_executable(a.bench, "mqtt-bench (--bench or MQTT_BENCH)")
    if any(b.startswith("mqttd") for b in brokers):
        bl.need_executable(a.mqttd, "mqttd (--mqttd or MQTTD_BIN)")
    bl.raise_open_files(20000)
    settings = bl.Settings()
    args = ["conn", "--clients", str(a.clients), "--hold", f"{a.seconds:g}", "--keep-alive",
            str(a.keep_alive), "--duration", "10"] + (["--subscribe"] if a.subscribe else [])
    print(f"# {bl.command_line()}\n# {bl.machine_line()}\n# mqtt-bench {' '.join(args)}")
    for line in settings.describe():
        print(f"# {line}")
    sys.stdout.flush()

    workdir = tempfile.mkdtemp(prefix="mqtt-idle-")
    rows, failed_mqttd = [], False
    try:
        for round_no in range(a.rounds):
            for name in bl.rotated(brokers, round_no):
                row = run_one(name, args, a, settings, workdir)
                row.update(broker=name, round=round_no + 1)
                rows.append(row)
                failed_mqttd |= not row["ok"] and name.startswith("mqttd")
                print(f"round {round_no + 1} {name}: "
                      + ("ok" if row["ok"] else f"FAILED: {row['reason']}"), file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n| broker | round | idle CPU s over {a.seconds:g} s | cores | connect CPU s "
          f"| RSS per connection after the hold, B |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["ok"]:
            print(f"| {r['broker']} | {r['round']} | {r['idle_cpu_s']:.2f} | {r['share']:.3f} | "
                  f"{r['connect_cpu_s']:.2f} | {r['bytes_per_conn_held']:,} |")
        else:
            print(f"| {r['broker']} | {r['round']} | FAILED: {r['reason']} | | | |")
    return 1 if failed_mqttd else 0


def run_one(name, args, a, settings, workdir):
    try:
        broker = bl.start_named(name, workdir, settings, mqttd=a.mqttd, mosquitto=a.mosquitto)
    except Exception as error:  # noqa: BLE001 - reported as this run's failure
        return {"ok": False, "reason": f"did not start: {error}"}
    try:
        status, r, tail = bl.run_bench(a.bench, args + ["--pid", str(broker.pid)], broker,
                                       a.seconds + 90)
        problems = []
        if status != 0 or r is None:
            problems.append(f"mqtt-bench exited {status}: {tail}")
        elif r.get("hold_broker_cpu_s") is None:
            problems.append("no hold_broker_cpu_s in the JSON")
        if not broker.alive():
            problems.append(f"the broker died: {broker.log_tail(3)}")
        if problems:
            return {"ok": False, "reason": "; ".join(problems)}
        share = r["hold_broker_cpu_s"] / a.seconds
        row = {"ok": True, "idle_cpu_s": r["hold_broker_cpu_s"], "share": share,
               "connect_cpu_s": r["broker_cpu_s"], "bytes_per_conn_held": r["bytes_per_conn_held"]}
        if name.startswith("mqttd") and share > a.max_share:
            row.update(ok=False, reason=f"{share:.3f} of a core while idle (more than {a.max_share})")
        return row
    finally:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
