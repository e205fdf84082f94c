#!/usr/bin/env python3
"""Benchmarks `ember record --off-cpu` on a context-switch-heavy load and prints a Markdown
report (issue 15).

The load is `examples/offcpu SECONDS pingpong`: two threads bouncing one byte over a pair
of pipes, each blocking for the other, 100k+ context switches a second on this machine. In
interleaved, rotated runs of the same length it is measured with:

- none: no profiler;
- ember: `ember record --all -F 99` (CPU samples only);
- ember --off-cpu: the same with `--off-cpu` (default `--off-cpu-min 100us`);
- ember --off-cpu-every 10: the same, taking a stack at one switch-out in ten;
- perf: `perf record -e sched:sched_switch -g -a` (a stack at every switch, written to
  perf.data; its tracepoint needs tracefs, mounted only inside a private mount
  namespace, so the node keeps none).

For each: the load's round trips (throughput) and slowdown against `none`, the context
switches per second on the node (`ctxt` in /proc/stat), the profiler's own CPU time
(user+sys of its process, from wait4), and for Ember the in-kernel time of its raw
tracepoint programs (`kernel.bpf_stats_enabled`: run_time_ns / run_cnt in fdinfo, which
is the cost per switch: `sched_switch` runs once per switch; the fork and exec hooks,
raw tracepoints too, run a few times a run).

Usage: bench/offcpu_bench.py [--pairs N] [--seconds S] [--ember PATH] [--offcpu PATH]
Needs root, perf, and the example built (`make -C examples`).
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import log, bpf_stats  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BPF_PROG_TYPE_RAW_TRACEPOINT = "17"

# Each kind's extra arguments to `ember record --all -F 99` (None: not Ember).
KINDS = {
    "none": None,
    "ember": [],
    "ember --off-cpu": ["--off-cpu"],
    "ember --off-cpu --off-cpu-every 10": ["--off-cpu", "--off-cpu-every", "10"],
    "perf": None,
}


def context_switches():
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("ctxt "):
                return int(line.split()[1])
    return 0


def raw_tracepoint_stats(pid):
    """(run_time_ns, run_cnt) summed over the raw tracepoint programs `pid` holds open."""
    run_ns = runs = 0
    fdinfo = f"/proc/{pid}/fdinfo"
    try:
        fds = os.listdir(fdinfo)
    except OSError:
        return None
    for fd in fds:
        try:
            with open(f"{fdinfo}/{fd}") as f:
                info = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if info.get("prog_type", "").strip() == BPF_PROG_TYPE_RAW_TRACEPOINT:
            run_ns += int(info.get("run_time_ns", "0"))
            runs += int(info.get("run_cnt", "0"))
    return (run_ns, runs) if runs else None


def start(kind, args, tmp):
    if kind == "none":
        return None
    if KINDS[kind] is not None:
        cmd = [args.ember, "record", "--all", "-F", "99", "-q", "-o",
               os.path.join(tmp, "e.folded")] + KINDS[kind]
    else:
        data = os.path.join(tmp, "perf.data")
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               "mount -t tracefs none /sys/kernel/tracing && exec perf record -q "
               f"-e sched:sched_switch -g -a -o {data}"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)  # attached before the measured run starts
    if p.poll() is not None:
        raise RuntimeError(f"{kind} exited at once ({p.returncode}): {cmd}")
    return p


def stop(p):
    """Stops the profiler; returns its CPU seconds (user+sys, children included)."""
    if p is None:
        return 0.0
    p.send_signal(signal.SIGINT)
    deadline = time.time() + 300
    while time.time() < deadline:
        pid, status, rusage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            p.returncode = status
            return rusage.ru_utime + rusage.ru_stime
        time.sleep(0.05)
    p.kill()
    raise RuntimeError("the profiler did not stop")


def one_run(kind, args, tmp):
    p = start(kind, args, tmp)
    ember = KINDS[kind] is not None
    bpf0 = (raw_tracepoint_stats(p.pid) or (0, 0)) if ember else None
    before = context_switches()
    t0 = time.monotonic()
    # Both threads on one CPU: every round trip is two direct switches, whatever else
    # runs on the node (unpinned, where the scheduler puts the pair swings throughput
    # by a third from run to run).
    out = subprocess.run(["taskset", "-c", args.cpu, args.offcpu, str(args.seconds),
                          "pingpong"], capture_output=True, text=True, check=True)
    wall = time.monotonic() - t0
    switches = context_switches() - before
    bpf = None
    if ember:
        bpf1 = raw_tracepoint_stats(p.pid) or (0, 0)
        ns, n = bpf1[0] - bpf0[0], bpf1[1] - bpf0[1]
        bpf = (ns, n) if n > 0 else None
    cpu = stop(p)
    rounds = int(out.stdout.split()[-1])
    for f in os.listdir(tmp):
        os.unlink(os.path.join(tmp, f))
    return {"rounds": rounds, "switches_per_s": switches / wall, "cpu_s": cpu, "bpf": bpf}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--ember", default=os.path.join(ROOT, "target/debug/ember"))
    ap.add_argument("--offcpu", default=os.path.join(ROOT, "examples/bin/offcpu"))
    ap.add_argument("--cpu", default="1", help="the CPU the load is pinned to")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("offcpu_bench: needs root")
    bpf_stats(True)
    results = {k: [] for k in KINDS}
    try:
        with tempfile.TemporaryDirectory(prefix="ember-offcpu-bench-") as tmp:
            kinds = list(KINDS)
            for i in range(args.pairs):
                order = kinds[i % len(kinds):] + kinds[:i % len(kinds)]
                for kind in order:
                    results[kind].append(one_run(kind, args, tmp))
                log(f"  run {i + 1}/{args.pairs}: " + ", ".join(
                    f"{k} {results[k][-1]['rounds']}" for k in KINDS))
    finally:
        bpf_stats(False)

    base = statistics.median(r["rounds"] for r in results["none"])
    print("\n## Off-CPU profiling on a context-switch-heavy load (pingpong)\n")
    print(f"{args.pairs} rotated runs of {args.seconds:g} s each; `ember record --all -F 99`, "
          f"perf `record -e sched:sched_switch -g -a`.\n")
    print("| profiler | median round trips | slowdown vs none | switches/s (node) | "
          "profiler CPU (s per run) | BPF runs per s | BPF µs per run |")
    print("|---|---|---|---|---|---|---|")
    for k in KINDS:
        rs = results[k]
        med = statistics.median(r["rounds"] for r in rs)
        slow = (base - med) / base * 100
        sw = statistics.median(r["switches_per_s"] for r in rs)
        cpu = statistics.median(r["cpu_s"] for r in rs)
        bpf = [r["bpf"] for r in rs if r["bpf"]]
        per = (f"{statistics.median(ns / n for ns, n in bpf) / 1000:.2f}"
               if bpf else "–")
        rate = (f"{statistics.median(n for _, n in bpf) / args.seconds:,.0f}"
                if bpf else "–")
        print(f"| {k} | {med:.0f} | {slow:+.1f} % | {sw:,.0f} | {cpu:.2f} | {rate} | {per} |")
    print(f"\nThe load is pinned to CPU {args.cpu}. BPF runs and µs per run: Ember's raw "
          "tracepoint programs (bpf_stats_enabled), during the measured run only. With "
          "--off-cpu that is the `sched_switch` program, once per switch on the node, so "
          "µs per run is the cost per switch; without it, only the fork and exec hooks. "
          "Profiler CPU is user+sys of its process over the whole run (attach, "
          f"{args.seconds:g} s, stop, write); Ember is `{args.ember}`.")


if __name__ == "__main__":
    main()
