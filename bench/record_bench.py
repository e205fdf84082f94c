#!/usr/bin/env python3
"""Benchmarks `ember record` against `perf record` on this machine, in one run.

Prints, with ratios against perf measured in the same run:

1. Overhead: throughput of the `split` workload (rounds of fixed work in a fixed time)
   with no profiler, under `ember record --all -F 99`, and under `perf record -F 99 -a -g`,
   in interleaved, rotated runs; medians and per-run spread.
2. Time to flame graph after a 10 s system-wide capture: Ember (stop -> SVG written)
   against perf (stop -> perf.data written) + `perf script | inferno-collapse-perf |
   inferno-flamegraph`.
3. Ember's own CPU time (user+sys) per 1,000 samples and its peak RSS.

Usage: bench/record_bench.py [--pairs N] [--seconds S] [--ember PATH]
Needs root (both profilers load kernel programs), perf, and inferno's CLI tools (installed
into target/bench-tools by scripts/bench.sh).
"""

import argparse
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import log, bpf_stats, bpf_program_stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_workload(split, seconds):
    """Runs split for `seconds`; returns its rounds (throughput)."""
    out = subprocess.run([split, str(seconds)], capture_output=True, text=True, check=True)
    m = re.search(r"split: (\d+) rounds", out.stderr)
    if not m:
        raise RuntimeError(f"unexpected split output: {out.stderr!r}")
    return int(m.group(1))


def start_profiler(kind, ember, tmp):
    if kind == "none":
        return None
    if kind == "ember":
        cmd = [ember, "record", "--all", "-F", "99", "-q", "-o", os.path.join(tmp, "e.folded")]
    else:
        cmd = ["perf", "record", "-F", "99", "-a", "-g", "-q", "-o", os.path.join(tmp, "perf.data")]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach before the measured run starts
    return p


def stop_profiler(p):
    if p is None:
        return
    p.send_signal(signal.SIGINT)
    p.wait(timeout=120)


def overhead(args, split):
    kinds = ["none", "ember", "perf"]
    results = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="ember-bench-") as tmp:
        for i in range(args.pairs):
            order = kinds[i % 3:] + kinds[:i % 3]  # rotate so no kind always goes first
            for kind in order:
                p = start_profiler(kind, args.ember, tmp)
                rounds = run_workload(split, args.seconds)
                stop_profiler(p)
                results[kind].append(rounds)
            log(f"  run {i + 1}/{args.pairs}: " + ", ".join(f"{k} {results[k][-1]}" for k in kinds))
    base = statistics.median(results["none"])
    print("\n## Overhead on the split workload (throughput, higher is better)\n")
    print(f"{args.pairs} rotated runs of {args.seconds} s each; 99 Hz on every CPU.\n")
    print("| profiler | median rounds | min | max | overhead vs none |")
    print("|---|---|---|---|---|")
    over = {}
    for k in kinds:
        med = statistics.median(results[k])
        over[k] = (base - med) / base * 100
        print(f"| {k} | {med:.0f} | {min(results[k])} | {max(results[k])} | {over[k]:+.2f} % |")
    # Pairwise: each run against the baseline run next to it, to cancel drift.
    for k in ["ember", "perf"]:
        per_pair = [(b - x) / b * 100 for b, x in zip(results["none"], results[k])]
        print(f"\n{k}: per-pair overhead median {statistics.median(per_pair):+.2f} % "
              f"(spread {min(per_pair):+.2f} … {max(per_pair):+.2f} %)")
    return over


def rusage_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_to_flamegraph(args, split, tools):
    print("\n## Time to flame graph after a 10 s system-wide capture\n")
    with tempfile.TemporaryDirectory(prefix="ember-bench-") as tmp:
        wl = subprocess.Popen([split, "30"], stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            # Ember: total wall time minus the capture is the time from stop to SVG.
            svg = os.path.join(tmp, "ember.svg")
            bpf_stats(True)
            cpu0 = rusage_children()
            t0 = time.monotonic()
            ember = subprocess.Popen(
                ["/usr/bin/time", "-f", "MAXRSS_KB %M", args.ember, "record", "--all",
                 "--include-idle", "-F", "99", "-d", "10s", "-o", svg],
                stderr=subprocess.PIPE, text=True)
            time.sleep(9.5)
            prog = bpf_program_stats(ember.pid)
            _, err = ember.communicate(timeout=60)
            ember_wall = time.monotonic() - t0
            ember_cpu = rusage_children() - cpu0
            bpf_stats(False)
            if ember.returncode != 0:
                raise RuntimeError(f"ember record failed: {err}")
            ember_post = ember_wall - 10.0
            samples = int(re.search(r"wrote (\d+) samples", err).group(1))
            rss_kb = int(re.search(r"MAXRSS_KB (\d+)", err).group(1))

            # perf: record (its own post-processing after the capture included), then the
            # usual pipeline to an SVG.
            data = os.path.join(tmp, "perf.data")
            cpu0 = rusage_children()
            t0 = time.monotonic()
            subprocess.run(["perf", "record", "-F", "99", "-a", "-g", "-q", "-o", data, "--",
                            "sleep", "10"], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            perf_record_post = time.monotonic() - t0 - 10.0
            perf_record_cpu = rusage_children() - cpu0
            cpu0 = rusage_children()
            t0 = time.monotonic()
            pipeline = (f"perf script -i {data} 2>/dev/null | {tools}/inferno-collapse-perf "
                        f"| {tools}/inferno-flamegraph > {tmp}/perf.svg")
            subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], check=True)
            perf_pipeline = time.monotonic() - t0
            perf_pipeline_cpu = rusage_children() - cpu0
        finally:
            wl.kill()
            wl.wait()
    perf_post = perf_record_post + perf_pipeline
    print("| | stop → flame graph |")
    print("|---|---|")
    print(f"| ember record | {ember_post:.3f} s |")
    print(f"| perf record + perf script + inferno | {perf_post:.3f} s "
          f"(record {perf_record_post:.3f} s, script+collapse+flamegraph {perf_pipeline:.3f} s) |")
    print(f"\nEmber is **{perf_post / max(ember_post, 1e-3):.1f}×** faster to a flame graph.")
    print("\n## Ember's own cost\n")
    print(f"- {samples} samples in the 10 s capture (idle included)")
    print(f"- CPU time (user+sys) of `ember record`, start to SVG: {ember_cpu:.3f} s, "
          f"**{ember_cpu / samples * 1000 * 1000:.1f} ms per 1,000 samples**")
    print(f"- peak RSS: **{rss_kb / 1024:.1f} MiB**")
    perf_cpu = perf_record_cpu + perf_pipeline_cpu
    print(f"- for comparison, perf's CPU time for the same capture to an SVG: {perf_cpu:.3f} s "
          f"(perf record {perf_record_cpu:.3f} s, script+collapse+flamegraph {perf_pipeline_cpu:.3f} s): "
          f"Ember uses **{ember_cpu / max(perf_cpu, 1e-6) * 100:.0f} %** of perf's")
    if prog:
        run_ns, runs = prog
        print(f"- Ember's eBPF program in the kernel (kernel.bpf_stats_enabled): {runs} runs, "
              f"**{run_ns / max(runs, 1) / 1000:.1f} µs per sample**")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=9, help="rotated runs per profiler (default 9)")
    ap.add_argument("--seconds", type=float, default=5, help="length of each run (default 5)")
    ap.add_argument("--ember", default=os.path.join(ROOT, "target/release/ember"))
    ap.add_argument("--examples", default=os.path.join(ROOT, "target/examples"))
    ap.add_argument("--tools", default=os.path.join(ROOT, "target/bench-tools/bin"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("record_bench: needs root (both profilers load kernel programs)")
    split = os.path.join(args.examples, "split")
    print(f"# ember record benchmark — {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}")
    log("overhead runs …")
    over = overhead(args, split)
    log("time to flame graph …")
    time_to_flamegraph(args, split, args.tools)
    print(f"\nOverhead ratio: Ember {over['ember']:+.2f} % vs perf {over['perf']:+.2f} %.")


if __name__ == "__main__":
    main()
