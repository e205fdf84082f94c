#!/usr/bin/env python3
"""Benchmarks `ember agent` (issue 3) on this machine and prints a Markdown report.

1. Steady-state cost at 19 Hz with the split workload keeping one CPU busy: the agent's
   CPU time (user+sys from /proc/PID/stat) as a share of one core, its peak RSS (VmHWM),
   and the store's growth extrapolated to bytes per hour per busy core.
2. Scale: 500 busy processes with distinct stacks: the agent's CPU and RSS, losses, and
   the API's latency for the last hour.
3. Merging stored windows into one profile (the store's own measurement, release build):
   1 h and 24 h of 10 s windows drawn from 50,000 distinct stacks, p50 of 5 runs.

Usage: bench/agent_bench.py [--seconds N] [--ember PATH]   (root; scripts/bench.sh runs it)
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import cpu_seconds, memory_kib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


def steady_state(args):
    split = os.path.join(args.examples, "split")
    with tempfile.TemporaryDirectory(prefix="ember-agent-bench-") as store:
        agent = subprocess.Popen([args.ember, "agent", "-q", "--listen", "none", "--data-dir", store],
                                 stderr=subprocess.DEVNULL)
        wl = subprocess.Popen([split, str(args.seconds + 30)], stderr=subprocess.DEVNULL)
        try:
            time.sleep(15)  # start-up (kernel symbols, first windows) is not steady state
            cpu0, bytes0, t0 = cpu_seconds(agent.pid), dir_bytes(store), time.monotonic()
            time.sleep(args.seconds)
            cpu1, bytes1, t1 = cpu_seconds(agent.pid), dir_bytes(store), time.monotonic()
            hwm = memory_kib(agent.pid)[1]
        finally:
            wl.kill()
            wl.wait()
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=60)
    elapsed = t1 - t0
    share = (cpu1 - cpu0) / elapsed * 100
    per_hour = (bytes1 - bytes0) / elapsed * 3600
    print("\n## Agent steady state (19 Hz, 10 s windows, split keeping one CPU busy)\n")
    print(f"- measured over {elapsed:.0f} s after a 15 s warm-up")
    print(f"- agent CPU: {cpu1 - cpu0:.2f} s = **{share:.2f} % of one core** (goal < 1 %)")
    print(f"- peak RSS (VmHWM): **{hwm / 1024:.1f} MiB** (goal < 64 MiB)")
    print(f"- store growth: {bytes1 - bytes0} bytes → **{per_hour / 1e6:.2f} MB per hour per busy core** "
          "(SQLite grows its file in pages, so short runs are coarse)")


def scale(args, processes=500, seconds=60):
    """500 busy processes with distinct stacks; the agent's cost and the API's latency."""
    recursion = os.path.join(args.examples, "recursion")
    with tempfile.TemporaryDirectory(prefix="ember-agent-scale-") as store:
        agent = subprocess.Popen([args.ember, "agent", "-q", "--listen", "127.0.0.1:0", "--data-dir", store],
                                 stderr=subprocess.PIPE, text=True)
        base = None
        for line in agent.stderr:
            if line.startswith("ember: API listening on "):
                base = line.split()[-1]
                break
        if base is None:
            raise RuntimeError("the agent did not start its API")
        # Each process recurses to its own depth: distinct stacks per process.
        workers = [subprocess.Popen([recursion, str(seconds + 20), str(20 + i % 100)],
                                    stderr=subprocess.DEVNULL) for i in range(processes)]
        try:
            time.sleep(10)
            cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
            time.sleep(seconds)
            cpu1, t1 = cpu_seconds(agent.pid), time.monotonic()
            hwm = memory_kib(agent.pid)[1]
            latencies = {}
            for name, path in [("profile (folded, last hour)", "/api/v1/profile?from=now-1h&format=folded"),
                               ("labels (last hour)", "/api/v1/labels?from=now-1h"),
                               ("top (last hour)", "/api/v1/top?from=now-1h")]:
                times = []
                for _ in range(5):
                    t = time.monotonic()
                    body = urllib.request.urlopen(base + path, timeout=30).read()
                    times.append(time.monotonic() - t)
                latencies[name] = (sorted(times)[2], len(body))
            metrics = urllib.request.urlopen(base + "/metrics", timeout=30).read().decode()
        finally:
            for w in workers:
                w.kill()
            for w in workers:
                w.wait()
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=60)
    lost = sum(float(l.rsplit(" ", 1)[1]) for l in metrics.splitlines()
               if l.startswith("ember_samples_lost_total{"))
    print(f"\n## Scale: {processes} busy processes with distinct stacks, 19 Hz\n")
    print(f"- agent CPU: **{(cpu1 - cpu0) / (t1 - t0) * 100:.2f} % of one core** over {t1 - t0:.0f} s")
    print(f"- peak RSS (VmHWM): **{hwm / 1024:.1f} MiB**")
    print(f"- samples lost (all reasons, from /metrics): {lost:.0f}")
    for name, (p50, size) in latencies.items():
        print(f"- API {name}: p50 **{p50 * 1000:.0f} ms** ({size} bytes)")


def merge():
    print("\n## Merging stored windows (store measurement, release build)\n")
    out = subprocess.run(
        ["cargo", "test", "--release", "--quiet", "-p", "profiler-store", "--lib",
         "tests::query_24h_timing", "--", "--ignored", "--nocapture"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    for line in out.stderr.splitlines():
        if line.startswith(("wrote ", "query ", "merge ", "timeline ")):
            print(f"- {line}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=60, help="steady-state measurement (default 60)")
    ap.add_argument("--ember", default=os.path.join(ROOT, "target/release/ember"))
    ap.add_argument("--examples", default=os.path.join(ROOT, "target/examples"))
    ap.add_argument("--skip-merge", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("agent_bench: needs root (the agent loads eBPF)")
    print(f"# ember agent benchmark — {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
          f"kernel {os.uname().release}")
    steady_state(args)
    scale(args)
    if not args.skip_merge:
        merge()


if __name__ == "__main__":
    main()
