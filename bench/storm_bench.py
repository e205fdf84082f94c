#!/usr/bin/env python3
"""Complete and named from the first sample (issue 16): a storm of short-lived children
profiled machine-wide by Ember, by a baseline Ember (an older binary, `--baseline`), and by
`perf record --call-graph dwarf`, in one run on this machine.

The workload is `storm 3 5 2`: children of 5 ms of CPU, two at a time (about 180 a
second), each exec'd after the profiler started, its start code (glibc's, no frame
pointers) under its hot function. Each profiler records the whole machine at 499 Hz while
the storm runs; of the children's samples (those in a `storm_hot_*` function) it prints
the share complete from `_start` (`_start;__libc_start_main_impl;__libc_start_call_main;
main;child;storm_hot_*`), the share with an unnamed frame (`[unknown]`, `module+0x…`) above
the hot function, and, for Ember, the BPF run time per sample of its perf_event program
(kernel.bpf_stats_enabled): the file lookup's cost is the difference from the baseline.

Usage: bench/storm_bench.py [--reps N] [--ember PATH] [--baseline PATH] [--examples DIR]
Needs root, perf, and inferno-collapse-perf (target/bench-tools, installed by
scripts/bench.sh; INFERNO_COLLAPSE_PERF overrides the path).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import log, bpf_stats, bpf_stats_until_exit, machine_load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLAPSE = os.environ.get("INFERNO_COLLAPSE_PERF",
                          os.path.join(ROOT, "target/bench-tools/bin/inferno-collapse-perf"))
HZ = "499"
COMPLETE = ["_start", "__libc_start_main_impl", "__libc_start_call_main", "main", "child"]


def storm(examples):
    out = subprocess.run([os.path.join(examples, "storm"), "3", "5", "2"], check=True,
                         capture_output=True, text=True).stdout
    return out.strip()


def shares(folded, weight=1):
    """(children's samples, complete %, unnamed %) of the storm children in folded text
    whose counts are `weight` a sample."""
    hot = complete = unnamed = 0
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if frames[0] != "storm":
            continue
        leaf = next((i for i, f in enumerate(frames) if f.startswith("storm_hot_")), None)
        if leaf is None:
            continue
        n = int(count)
        user = frames[1:leaf + 1]
        hot += n
        if user[:len(COMPLETE)] == COMPLETE:
            complete += n
        if any(f == "[unknown]" or "+0x" in f for f in user):
            unnamed += n
    pct = lambda n: 100.0 * n / hot if hot else float("nan")
    return round(hot / weight), pct(complete), pct(unnamed)


def run_ember(ember, examples, tmp):
    out = os.path.join(tmp, "e.folded")
    p = subprocess.Popen([ember, "record", "--all", "-v", "-F", HZ, "--no-kernel", "-d", "7s",
                          "-o", out], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    attached = threading.Event()

    def read_log():
        for line in p.stderr:
            if "sampler attached" in line:
                attached.set()
    threading.Thread(target=read_log, daemon=True).start()
    if not attached.wait(30):
        p.kill()
        raise RuntimeError(f"{ember} did not attach")
    time.sleep(0.3)
    said = storm(examples)
    last = bpf_stats_until_exit(p)
    if p.returncode != 0:
        raise RuntimeError(f"{ember} record failed")
    run_ns, runs = last or (0, 0)
    return open(out).read(), said, (run_ns / runs / 1e3 if runs else float("nan")), 1


def run_perf(examples, tmp):
    data = os.path.join(tmp, "perf.data")
    p = subprocess.Popen(["perf", "record", "-q", "-F", HZ, "-a", "--call-graph", "dwarf",
                          "-o", data, "--", "sleep", "6"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    said = storm(examples)
    p.wait()
    script = subprocess.run(["perf", "script", "-i", data], check=True, capture_output=True)
    folded = subprocess.run([COLLAPSE], input=script.stdout, check=True, capture_output=True)
    os.unlink(data)
    # perf script gives each sample its period (nanoseconds of cpu-clock): about 1/HZ s.
    return folded.stdout.decode(errors="replace"), said, float("nan"), 1e9 / int(HZ)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ember", default=os.path.join(ROOT, "target/release/ember"))
    ap.add_argument("--baseline", help="an older ember binary, measured in the same run")
    ap.add_argument("--examples", default=os.path.join(ROOT, "target/examples"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("storm_bench: needs root (the profilers load kernel programs)")
    if not os.access(os.path.join(args.examples, "storm"), os.X_OK):
        sys.exit(f"storm_bench: no storm in {args.examples} (make -C examples OUT=...)")
    if not os.access(COLLAPSE, os.X_OK):
        sys.exit(f"storm_bench: no {COLLAPSE} (scripts/bench.sh installs it)")
    kinds = [("ember", lambda tmp: run_ember(args.ember, args.examples, tmp)),
             ("perf --call-graph dwarf", lambda tmp: run_perf(args.examples, tmp))]
    if args.baseline:
        kinds.insert(1, ("baseline ember",
                         lambda tmp: run_ember(args.baseline, args.examples, tmp)))
    load, busiest = machine_load()
    print(f"# Storm benchmark (issue 16) — {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}")
    print(f"\nLoad average at the start: {load}; busiest processes: {busiest}.")
    results = {k: [] for k, _ in kinds}
    bpf_stats(True)
    try:
        with tempfile.TemporaryDirectory(prefix="ember-storm-bench-") as tmp:
            for i in range(args.reps):
                order = kinds[i % len(kinds):] + kinds[:i % len(kinds)]
                for name, run in order:
                    folded, said, us, weight = run(tmp)
                    hot, complete, unnamed = shares(folded, weight)
                    results[name].append((hot, complete, unnamed, us))
                    log(f"  rep {i + 1}: {name}: {said}; {hot} children's samples, "
                        f"complete {complete:.1f} %, unnamed {unnamed:.2f} %, BPF {us:.2f} µs")
    finally:
        bpf_stats(False)
    print(f"\n`storm 3 5 2` at {HZ} Hz machine-wide, {args.reps} repetitions (medians; each "
          "repetition's figure in brackets)\n")
    print("| profiler | children's samples | complete from `_start` | an unnamed frame | "
          "BPF µs / sample |")
    print("|---|---|---|---|---|")
    for name, _ in kinds:
        rs = results[name]
        col = lambda j, fmt: (fmt.format(statistics.median(r[j] for r in rs)) + " (" +
                              ", ".join(fmt.format(r[j]) for r in rs) + ")")
        us = "–" if name.startswith("perf") else col(3, "{:.2f}")
        print(f"| {name} | {col(0, '{:.0f}')} | {col(1, '{:.1f} %')} | {col(2, '{:.2f} %')} "
              f"| {us} |")
    load, busiest = machine_load()
    print(f"\nLoad average at the end: {load}; busiest processes: {busiest}.")


if __name__ == "__main__":
    main()
