#!/usr/bin/env python3
"""Runs the connection-ceiling check (ceiling.py) against an mqttd it starts
itself: standalone (control plane and data plane in one process), or split
(`mqttd controlplane` and `mqttd dataplane`, two processes, so that the data
plane's memory per connection and the control plane's memory per route are
read apart).

    python3 benches/ceiling/run.py --mode standalone --clients 19000 --procs 4
    python3 benches/ceiling/run.py --mode split --clients 19000 --procs 4

Raises the open-file limit to 20,000 (the most a process may hold here), so
one broker holds about 19,000 clients. Every process started here gets a
fresh data directory and a free loopback port, and is stopped at the end.
Prints ceiling.py's JSON line; exits with its status (1 when a check failed).
"""

import argparse
import os
import secrets
import signal
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import benchlib as bl  # noqa: E402


def start_split(exe, workdir, settings):
    """A one-member control plane (bootstrapped) and one data plane that
    follows it, sharing a member token; returns (controlplane, dataplane)."""
    token = os.path.join(workdir, "member.token")
    with open(token, "w") as f:
        f.write(secrets.token_hex(32))
    os.chmod(token, 0o600)
    cp_port = bl.free_port()
    cp_data = tempfile.mkdtemp(prefix="cp-data-", dir=workdir)
    cp = bl.Broker("controlplane", [
        exe, "controlplane", "--set", f"controlplane.token_file={token}", "--set", "node.id=1",
        "--set", f"node.data_dir={cp_data}", "--set", f"controlplane.bind=127.0.0.1:{cp_port}",
        "--set", "controlplane.bootstrap=true", "--set", "log.level=warn"], cp_port, workdir, settle=2)
    try:
        port = bl.free_port()
        dp_data = tempfile.mkdtemp(prefix="dp-data-", dir=workdir)
        sets = [f"controlplane.token_file={token}", "node.id=11", f"node.data_dir={dp_data}",
                f"dataplane.controlplane=127.0.0.1:{cp_port}",
                f"dataplane.peer_bind=127.0.0.1:{bl.free_port()}",
                f"listeners.tcp.bind=127.0.0.1:{port}", "listeners.ws.enabled=false", "log.level=warn",
                "sys.interval=0", "sys.presence=false",
                f"session.max_queued_messages={settings.queue}",
                f"mqtt.max_inflight={settings.inflight}", f"mqtt.receive_maximum={settings.inflight}"]
        argv = [exe, "dataplane"]
        for s in sets:
            argv += ["--set", s]
        dp = bl.Broker("dataplane", argv, port, workdir, settle=2)
    except Exception:
        cp.stop()
        raise
    return cp, dp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["standalone", "split"], default="standalone")
    ap.add_argument("--clients", type=int, default=19000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--settle", type=float, default=12)
    ap.add_argument("--overflow", type=int, default=1500)
    ap.add_argument("--allow-failed", type=int, default=0)
    ap.add_argument("--mqttd", default=bl.default_mqttd(),
                    help="mqttd binary (env MQTTD_BIN, default $CARGO_TARGET_DIR/release/mqttd)")
    ap.add_argument("--timeout", type=float, default=900, help="give up on ceiling.py after this long")
    a = ap.parse_args()
    bl.need_executable(a.mqttd, "mqttd (--mqttd or MQTTD_BIN)")
    limit = bl.raise_open_files(20000)
    if a.clients // a.procs + 100 > limit:
        ap.error(f"{a.clients // a.procs} clients per process do not fit under {limit} open files")
    settings = bl.Settings()
    workdir = tempfile.mkdtemp(prefix="mqtt-ceiling-")
    started = []
    try:
        if a.mode == "standalone":
            started.append(bl.start_mqttd(a.mqttd, workdir, settings))
            broker, cp = started[0], None
        else:
            cp, broker = start_split(a.mqttd, workdir, settings)
            started += [broker, cp]
        argv = [sys.executable, os.path.join(HERE, "ceiling.py"), "--port", str(broker.port),
                "--pid", str(broker.pid), "--clients", str(a.clients), "--procs", str(a.procs),
                "--settle", str(a.settle), "--overflow", str(a.overflow),
                "--allow-failed", str(a.allow_failed)]
        if cp:
            argv += ["--controlplane-pid", str(cp.pid)]
        print(f"# {bl.command_line()}\n# {bl.machine_line()}\n# mqttd {a.mode}: {a.mqttd}, "
              f"session.max_queued_messages={settings.queue}, mqtt.max_inflight={settings.inflight}, "
              f"$SYS off", flush=True)
        # Its own process group, so that its client processes go with it.
        child = subprocess.Popen(argv, start_new_session=True)
        try:
            status = child.wait(timeout=a.timeout)
        except subprocess.TimeoutExpired:
            print(f"ceiling.py did not finish within {a.timeout} s", file=sys.stderr)
            status = 1
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        for b in started:
            if not b.alive():
                print(f"{b.name} exited: {b.log_tail()}", file=sys.stderr)
                status = status or 1
        return status
    finally:
        for b in started:
            b.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
