#!/usr/bin/env python3
"""Benchmarks `ember agent` (issue 3) on this machine and prints a Markdown report.

1. Steady-state cost at 19 Hz with the split workload keeping one CPU busy: the agent's
   CPU time (user+sys from /proc/PID/stat) as a share of one core, its peak RSS (VmHWM),
   and the store's growth extrapolated to bytes per hour per busy core.
2. Scale: 500 busy processes with distinct stacks: the agent's CPU and RSS, losses, and
   the API's latency for the last hour.
3. Merging stored windows into one profile (the store's own measurement, release build):
   1 h and 24 h of 10 s windows drawn from 50,000 distinct stacks, p50 of 5 runs.
4. Issue 19's busy node (`busy_node`, also printed by bench/cost_bench.py): the agent at
   its default 19 Hz, started on a node already running a mix that keeps both CPUs busy
   and churns processes (described in BUSY_MIX); its CPU as a share of one core and its
   RSS, each second, from start-up to the end; then the UI's page view (the requests
   app.js makes for the default last 15 minutes) asked ten times, its CPU counted apart
   from sampling's (the CPU over the queries less the steady rate over the same time).

Usage: bench/agent_bench.py [--seconds N] [--ember PATH] [--busy-only]
       (root; scripts/bench.sh runs it)
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import cpu_seconds, free_port, log, memory_kib

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


BUSY_MIX = """\
- headless Chromium rendering a page (2,000 table rows and a canvas drawn by its script,
  2 s of virtual time) into a screenshot, in a loop: a browser, zygote, renderer and GPU
  process started and ended every few seconds;
- rustc building examples/rust_workload.rs with -O, in a loop;
- a Python HTTP service (`python3 -m http.server`) and a Python client fetching from it
  every 10 ms;
- the examples `split` (one busy CPU, 70/30), `offcpu sleep` and `threads`;
- idle `sleep` processes up to 500 processes in the mix."""

CPU_TARGET = 0.5  # % of one core
RSS_TARGET_MIB = 100
STARTUP_S = 30

PAGE = """<!doctype html><html><body><canvas id=c width=800 height=400></canvas><table id=t></table>
<script>
const t = document.getElementById("t");
for (let i = 0; i < 2000; i++) { const r = t.insertRow(); for (let j = 0; j < 5; j++) r.insertCell().textContent = (i * j).toString(16); }
const g = document.getElementById("c").getContext("2d");
for (let i = 0; i < 20000; i++) { g.fillStyle = `hsl(${i % 360},80%,50%)`; g.fillRect((i * 7) % 800, (i * 13) % 400, 5, 5); }
</script></body></html>"""


def start_mix(args, tmp):
    """Starts BUSY_MIX; returns the processes (each in its own process group)."""
    page = os.path.join(tmp, "page.html")
    with open(page, "w") as f:
        f.write(PAGE)
    port = free_port()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    loops = []
    if chromium:
        loops.append(f"while :; do {chromium} --headless --no-sandbox --disable-gpu --disable-dev-shm-usage "
                     f"--virtual-time-budget=2000 --window-size=800,600 --screenshot={tmp}/shot.png "
                     f"file://{page}; done")
    else:
        log("  (no chromium: the mix runs without the browser)")
    loops.append(f"while :; do rustc -O --edition 2021 --crate-name rust_workload "
                 f"{ROOT}/examples/rust_workload.rs -o {tmp}/rw; done")
    procs = [subprocess.Popen(["sh", "-c", loop], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True) for loop in loops]
    procs.append(subprocess.Popen(["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                   "--directory", tmp], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True))
    client = ("import time, urllib.request\n"
              "while True:\n"
              "    try: urllib.request.urlopen('http://127.0.0.1:%d/', timeout=5).read()\n"
              "    except OSError: pass\n"
              "    time.sleep(0.01)\n" % port)
    procs.append(subprocess.Popen(["python3", "-c", client], start_new_session=True))
    ex = args.examples
    for argv in ([f"{ex}/split", "100000"], [f"{ex}/offcpu", "100000", "sleep"],
                 [f"{ex}/threads", "100000"]):
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
    while len(procs) < 500:
        procs.append(subprocess.Popen(["sleep", "100000"], start_new_session=True))
    return procs


def stop_mix(procs):
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
    for p in procs:
        p.wait()


def page_view(base):
    """The requests app.js makes to show its default view (the last 15 minutes)."""
    q = "from=now-15m&to=now"
    for path in ("/api/v1/types", "/api/v1/timeline?from=now-30d", f"/api/v1/cpu?{q}",
                 f"/api/v1/flame?{q}&width=1200", f"/api/v1/top?{q}&group=process&sort=self&limit=300",
                 f"/api/v1/cpu?{q}", f"/api/v1/cpu?{q}"):
        urllib.request.urlopen(base + path, timeout=60).read()


def busy_node(args):
    """Issue 19's busy-node goal: Markdown rows under BUSY_HEADER, and a description."""
    with tempfile.TemporaryDirectory(prefix="ember-busy-") as tmp:
        store = os.path.join(tmp, "store")
        os.mkdir(store)
        log(f"busy node: starting the mix ({args.busy_seconds} s with the agent) …")
        mix = start_mix(args, tmp)
        agent = None
        try:
            time.sleep(10)
            load = open("/proc/loadavg").read().split()[0]
            port = free_port()
            t_start = time.monotonic()
            agent = subprocess.Popen([args.ember, "agent", "-q", "--listen", f"127.0.0.1:{port}",
                                      "--data-dir", store], stderr=subprocess.DEVNULL)
            base = f"http://127.0.0.1:{port}"
            samples = []  # (seconds since start, cpu seconds, rss KiB)
            while time.monotonic() - t_start < args.busy_seconds:
                time.sleep(1)
                samples.append((time.monotonic() - t_start, cpu_seconds(agent.pid), memory_kib(agent.pid)[0]))
            startup = [x for x in samples if x[0] <= STARTUP_S]
            steady = [x for x in samples if x[0] > STARTUP_S]
            rate = (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
            cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
            views = 10
            times = []
            for _ in range(views):
                t = time.monotonic()
                page_view(base)
                times.append(time.monotonic() - t)
            cpu1, t1 = cpu_seconds(agent.pid), time.monotonic()
            hwm = memory_kib(agent.pid)[1]
            procs = len([d for d in os.listdir("/proc") if d.isdigit()])
        finally:
            if agent:
                agent.send_signal(signal.SIGTERM)
                agent.wait(timeout=120)
            stop_mix(mix)
    startup_cpu = startup[-1][1] / startup[-1][0]  # CPU seconds since the agent started
    steady_mib = max(x[2] for x in steady) / 1024
    startup_mib = max(x[2] for x in startup) / 1024
    rows = [
        ("agent CPU, steady state (after the first 30 s)", f"{rate * 100:.2f} % of a core",
         f"< {CPU_TARGET} %", rate * 100 < CPU_TARGET),
        ("agent RSS, most in the steady state", f"{steady_mib:.1f} MiB",
         f"< {RSS_TARGET_MIB} MiB", steady_mib < RSS_TARGET_MIB),
        ("agent RSS, peak of the whole run (VmHWM, queries included)", f"{hwm / 1024:.1f} MiB",
         f"< {RSS_TARGET_MIB} MiB", hwm / 1024 < RSS_TARGET_MIB),
        ("start-up: most RSS in the first 30 s vs the steady state's most",
         f"{startup_mib:.1f} vs {steady_mib:.1f} MiB",
         "no spike above", startup_mib <= steady_mib),
        ("start-up: CPU over the first 30 s (program load, kernel symbols, first binaries)",
         f"{startup_cpu * 100:.2f} % of a core", "(say it)", None),
        ("UI page view (7 requests, last 15 min): agent CPU beyond sampling's",
         f"{max(0.0, (cpu1 - cpu0) - rate * (t1 - t0)) / views * 1000:.0f} ms a view", "(say it)", None),
        ("UI page view: wall time, median of 10", f"{sorted(times)[views // 2] * 1000:.0f} ms", "(say it)", None),
    ]
    out = [f"| {name} | **{value}** | {target} | {'' if ok is None else ('**met**' if ok else 'not met')} |"
           for name, value, target, ok in rows]
    note = (f"{procs} processes on the node at the end; load average {load} before the agent started; "
            f"{len(samples)} one-second samples over {args.busy_seconds} s.")
    return out, note


BUSY_HEADER = "| | measured | target | |\n|---|---|---|---|"


def busy_report(args):
    rows, note = busy_node(args)
    print("\n## Busy node: the agent at 19 Hz (issue 19)\n")
    print(BUSY_MIX + "\n")
    print(BUSY_HEADER)
    for row in rows:
        print(row)
    print(f"\n{note}")


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
    ap.add_argument("--busy-seconds", type=int, default=120, help="the busy-node run (default 120)")
    ap.add_argument("--busy-only", action="store_true", help="only the busy-node report")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("agent_bench: needs root (the agent loads eBPF)")
    print(f"# ember agent benchmark — {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
          f"kernel {os.uname().release}")
    if args.busy_only:
        busy_report(args)
        return
    steady_state(args)
    scale(args)
    busy_report(args)
    if not args.skip_merge:
        merge()


if __name__ == "__main__":
    main()
