#!/usr/bin/env python3
"""Benchmarks `ember agent`'s push to fleet backends (issue 14) and prints a Markdown report.

1. Cost: the agent at 19 Hz with split keeping one CPU busy, push off and then both pushes
   on (Pyroscope and OTLP to the test receiver, tests/push/receiver.py), in one run: the
   agent's CPU time (user+sys) as a share of one core and its peak RSS (VmHWM).
2. Size: bytes per window per destination (request bodies, from the receiver) against
   the window's pprof (the gzip pprofs of its series, as Pyroscope gets them).
3. Backlog: a store holding one hour of 10 s windows (360, the windows of a real run
   repeated in time) that neither destination has taken; the time until the receiver has
   every window from both, at the default pacing (6 windows per request, 500 ms apart).

Usage: bench/push_bench.py [--seconds N] [--ember PATH]   (root; needs tests/push/.venv)
"""

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

from benchlib import cpu_seconds, free_port, memory_kib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(ROOT, "tests/push/.venv/bin/python")
RECEIVER = os.path.join(ROOT, "tests/push/receiver.py")


def receiver(tmp, port):
    out = os.path.join(tmp, f"received-{port}.jsonl")
    p = subprocess.Popen([PYTHON, RECEIVER, "--port", str(port), "--out", out,
                          "--pprof-dir", os.path.join(tmp, "pprof")], stdout=subprocess.PIPE)
    line = p.stdout.readline().decode()
    assert line.startswith("listening"), line
    return p, out


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f]


def agent(args, store, extra):
    return subprocess.Popen([args.ember, "agent", "-q", "-F", "19", "--listen", "none",
                             "--data-dir", store] + extra, stderr=subprocess.DEVNULL)


def stop(p):
    p.terminate()
    p.wait()


def cost(args, tmp, push):
    store = tempfile.mkdtemp(dir=tmp)
    extra = []
    rx = None
    if push:
        port = free_port()
        rx, out = receiver(tmp, port)
        url = f"http://127.0.0.1:{port}"
        extra = ["--pyroscope-endpoint", url, "--otlp-endpoint", url]
    a = agent(args, store, extra)
    wl = subprocess.Popen([os.path.join(args.examples, "split"), str(args.seconds + 30)],
                          stderr=subprocess.DEVNULL)
    try:
        time.sleep(15)
        c0, t0 = cpu_seconds(a.pid), time.monotonic()
        time.sleep(args.seconds)
        c1, t1 = cpu_seconds(a.pid), time.monotonic()
        hwm = memory_kib(a.pid)[1]
    finally:
        wl.kill()
        wl.wait()
        stop(a)
    result = {"cpu": 100 * (c1 - c0) / (t1 - t0), "rss_mib": hwm / 1024}
    if rx:
        rx.kill()
        rx.wait()
        result["lines"] = lines(out)
    return result, store


def sizes(received):
    per = {"otlp": [], "pyroscope": []}
    pprof = {}
    for l in received:
        if "windows" not in l:
            continue
        starts = {w["start_ns"] for w in l["windows"]}
        if not starts:
            continue
        per[l["kind"]].append(l["bytes"] / len(starts))
        if l["kind"] == "pyroscope":
            for w in l["windows"]:
                pprof[w["start_ns"]] = pprof.get(w["start_ns"], 0) + w["pprof_bytes"]
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0
    return mean(per["otlp"]), mean(per["pyroscope"]), mean(list(pprof.values())), len(pprof)


def backlog(args, tmp, store):
    """Repeats the store's windows into an hour of 10 s windows, ends now, and drains it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db = sqlite3.connect(os.path.join(store, "ember-store.sqlite3"))
    # Full 10 s windows where there are some; a loaded machine may have closed only the
    # last, shorter one (written at stop).
    rows = db.execute("SELECT frequency_hz, samples, raw_len, crc, payload FROM windows "
                      "ORDER BY end_ns - start_ns >= 9000000000 DESC, id").fetchall()
    assert rows, "no window to repeat"
    db.execute("DELETE FROM windows")
    now = time.time_ns()
    start = now - 3600 * 10**9
    for i in range(360):
        r = rows[i % len(rows)]
        s = start + i * 10 * 10**9
        db.execute("INSERT INTO windows (start_ns, end_ns, frequency_hz, samples, raw_len, crc, payload) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", (s, s + 10 * 10**9) + tuple(r))
    db.execute("CREATE TABLE IF NOT EXISTS push_cursors (destination TEXT PRIMARY KEY NOT NULL, "
               "window_id INTEGER NOT NULL, end_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL)")
    db.execute("DELETE FROM push_cursors")
    for key in (f"pyroscope {url}/push.v1.PusherService/Push", f"otlp {url}/v1development/profiles"):
        db.execute("INSERT INTO push_cursors VALUES (?, 0, 0, 0)", (key,))
    db.commit()
    db.close()
    rx, out = receiver(tmp, port)
    t0 = time.monotonic()
    a = agent(args, store, ["--pyroscope-endpoint", url, "--otlp-endpoint", url])
    got = {"otlp": set(), "pyroscope": set()}
    offset = 0
    try:
        while True:
            # Only the lines added since the last look: the file grows to hundreds of MB.
            if os.path.exists(out):
                with open(out) as f:
                    f.seek(offset)
                    for line in f:
                        if not line.endswith("\n"):
                            break
                        offset += len(line.encode())
                        l = json.loads(line)
                        for w in l.get("windows", []):
                            if w["start_ns"] < now:
                                got[l["kind"]].add(w["start_ns"])
            if all(len(v) >= 360 for v in got.values()):
                break
            if time.monotonic() - t0 > 600:
                raise SystemExit(f"backlog not drained in 600 s: {[len(v) for v in got.values()]}")
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
        with open(out) as f:
            requests = sum(1 for line in f if line.startswith('{"kind": "otlp"'))
    finally:
        stop(a)
        rx.kill()
        rx.wait()
    return elapsed, requests


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--ember", default=os.path.join(ROOT, "target/release/ember"))
    ap.add_argument("--examples", default=os.path.join(ROOT, "target/examples"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("push_bench: run as root (the agent loads eBPF)")
    subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "examples"), f"OUT={args.examples}"], check=True)
    with tempfile.TemporaryDirectory(prefix="ember-push-bench-") as tmp:
        off, _ = cost(args, tmp, False)
        on, store = cost(args, tmp, True)
        otlp, pyro, pprof, windows = sizes(on["lines"])
        drain, requests = backlog(args, tmp, store)
    print(f"## Push (issue 14): 19 Hz, split on one CPU, {args.seconds} s\n")
    print("| | agent CPU (% of a core) | agent peak RSS (MiB) |")
    print("|---|---:|---:|")
    print(f"| push off | {off['cpu']:.2f} | {off['rss_mib']:.1f} |")
    print(f"| Pyroscope + OTLP on | {on['cpu']:.2f} | {on['rss_mib']:.1f} |")
    print(f"\nPer window ({windows} windows of 10 s): OTLP request {otlp / 1024:.1f} KiB, "
          f"Pyroscope request {pyro / 1024:.1f} KiB, the window's gzip pprofs {pprof / 1024:.1f} KiB.")
    print(f"\nBacklog of 1 h (360 windows of 10 s, both destinations): drained in {drain:.1f} s "
          f"({requests} OTLP requests).")


if __name__ == "__main__":
    main()
