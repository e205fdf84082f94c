#!/usr/bin/env python3
"""Prints each cost goal of issue 19 next to its target, from one run on this machine.

Goals (ratios against the peer measured in the same run, interleaved, medians):

1. `ember record --all -F 99` (default `--unwinder auto`, and `--unwinder fp`) over a 5 s
   and a 30 s capture: Ember's CPU (user+sys of its process, start-up, draining,
   symbolizing and output included) plus the run time of its BPF programs
   (kernel.bpf_stats_enabled) against the CPU of `perf record -F 99 -a -g` over the same
   capture: target ≤ 0.5.
2. The same with `--unwinder dwarf` against `perf record -F 99 -a --call-graph dwarf`
   plus the `perf script` that does perf's unwinding: target ≤ 0.25.
3. BPF run time per sample (run_time_ns / run_cnt over Ember's perf_event programs), with
   frame pointers and with DWARF unwinding: target ≤ 3 µs with frame pointers.

Ember keeps a copy of the kernel's symbols for the rest of the boot in its cache directory;
the `cold-fp` kind runs `--unwinder fp` without one, as the first run of a boot does. The
rest of the cache (decompressed copies of binaries' compressed debug sections, which
outlive a boot) is copied over from the warm runs' cache, so the row is the cost of a new
boot, not of Ember's first run ever.

While each capture runs, the `split` workload (70/30, frame pointers) keeps one CPU busy;
for the DWARF pairs it is `split-nofp` (no frame pointers), so the table unwinder has work.
Every repetition runs the four kinds (and the baseline Ember, with --baseline) in an order
rotated by one per repetition.

Usage: bench/cost_bench.py [--quick] [--reps N] [--long-reps N] [--ember PATH]
                            [--baseline PATH] [--examples DIR]
  --quick       5 s captures only, one repetition (about 40 s)
  --baseline    a second ember binary measured in the same interleaved runs (before/after)
4. Symbolizing distinct addresses, cold and warm, on the large Rust example and on libc:
   Ember ≥ 5x `addr2line -f -i -C` and ≥ 3x llvm-symbolizer (bench/symbolize_bench.py's
   goal rows, measured at the end of the run).

Needs root (both profilers load kernel programs) and perf. The busy-node agent goal is
measured by bench/agent_bench.py.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import symbolize_bench

from benchlib import log, bpf_stats, bpf_stats_until_exit, machine_load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FP_TARGET = 0.5
DWARF_TARGET = 0.25
BPF_US_TARGET = 3.0


def wait_cpu(p):
    """Waits for child `p`; returns its own CPU time (user+sys)."""
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime


def user_cache_dir():
    """Ember's cache directory for this user, as `ember record` finds it."""
    base = os.environ.get("XDG_CACHE_HOME") or (
        os.path.join(os.environ["HOME"], ".cache") if os.environ.get("HOME") else "/var/cache")
    return os.path.join(base, "ember")


def run_ember(ember, unwinder, seconds, tmp, cold):
    """Runs one `ember record --all` capture; returns it (reaped) and its last BPF stats.

    `cold`: with an empty cache directory, as the first run of a boot is (no copy of the
    kernel's symbols yet)."""
    cmd = [ember, "record", "--all", "-F", "99", "-q", "--unwinder", unwinder,
           "-d", f"{seconds}s", "-o", os.path.join(tmp, "e.folded")]
    env = dict(os.environ)
    if cold:
        env["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cold-", dir=tmp)
        warm = os.path.join(user_cache_dir(), "debug")
        if os.path.isdir(warm):
            shutil.copytree(warm, os.path.join(env["XDG_CACHE_HOME"], "ember", "debug"))
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    last = bpf_stats_until_exit(p, ends_after=seconds)
    # Reaped: the caller takes its CPU time from RUSAGE_CHILDREN.
    return p, last


def ember_cost(ember, unwinder, seconds, tmp, cold=False):
    before = children_cpu()
    p, bpf = run_ember(ember, unwinder, seconds, tmp, cold)
    cpu = children_cpu() - before
    if p.returncode != 0:
        raise RuntimeError(f"ember record failed: {p.stderr.read().decode(errors='replace')}")
    run_ns, runs = bpf or (0, 0)
    return cpu, run_ns / 1e9, runs


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def perf_cost(dwarf, seconds, tmp):
    data = os.path.join(tmp, "perf.data")
    graph = ["--call-graph", "dwarf"] if dwarf else ["-g"]
    p = subprocess.Popen(["perf", "record", "-F", "99", "-a"] + graph +
                         ["-q", "-o", data, "--", "sleep", str(seconds)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu = wait_cpu(p)
    if p.returncode != 0:
        raise RuntimeError("perf record failed")
    if dwarf:
        # perf unwinds DWARF stacks when the data is read: count `perf script` too.
        s = subprocess.Popen(["perf", "script", "-i", data], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        cpu += wait_cpu(s)
    os.unlink(data)
    return cpu


def one_capture(kind, binary, seconds, examples, tmp):
    """Runs one capture of `kind` with its workload; returns (cost s, BPF s, BPF runs)."""
    dwarf = kind.endswith("dwarf")
    workload = os.path.join(examples, "split-nofp" if dwarf else "split")
    unwinder = kind.rpartition("-")[2]
    wl = subprocess.Popen([workload, str(seconds + 2)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        if kind.startswith("perf"):
            return perf_cost(dwarf, seconds, tmp), 0.0, 0
        cpu, bpf_s, runs = ember_cost(binary, unwinder, seconds, tmp, kind.startswith("cold"))
        return cpu + bpf_s, bpf_s, runs
    finally:
        wl.kill()
        wl.wait()


def measure(args, seconds, reps):
    """{kind: [(cost, bpf s, bpf runs)]} over `reps` rotated repetitions."""
    kinds = [("perf-fp", None), ("ember-auto", args.ember), ("ember-fp", args.ember),
             ("perf-dwarf", None), ("ember-dwarf", args.ember), ("cold-fp", args.ember)]
    if args.baseline:
        kinds += [("base-auto", args.baseline), ("base-fp", args.baseline),
                  ("base-dwarf", args.baseline)]
    out = {k: [] for k, _ in kinds}
    with tempfile.TemporaryDirectory(prefix="ember-cost-bench-") as tmp:
        for i in range(reps):
            order = kinds[i % len(kinds):] + kinds[:i % len(kinds)]
            for kind, binary in order:
                out[kind].append(one_capture(kind, binary, seconds, args.examples, tmp))
            log(f"  {seconds} s, repetition {i + 1}/{reps}: " + ", ".join(
                f"{k} {out[k][-1][0]:.3f} s" for k, _ in kinds))
    return out


def med(runs, i=0):
    return statistics.median(r[i] for r in runs)


def per_sample_us(runs):
    ns = sum(r[1] for r in runs) * 1e9
    n = sum(r[2] for r in runs)
    return ns / n / 1e3 if n else float("nan")


def verdict(value, target):
    return "**met**" if value <= target else "not met"


def report(seconds, reps, out, baseline):
    print(f"\n## {seconds} s captures at 99 Hz on every CPU ({reps} repetitions, medians)\n")
    print("| | Ember CPU + BPF (s) | of which BPF (s) | peer CPU (s) | ratio | target | |")
    print("|---|---|---|---|---|---|---|")
    rows = [("`record --all` (auto) vs `perf record -a -g`", "ember-auto", "perf-fp",
             FP_TARGET),
            ("`--unwinder fp` vs `perf record -a -g`", "ember-fp", "perf-fp", FP_TARGET),
            ("`--unwinder fp`, first run of the boot (no kernel-symbol copy yet)", "cold-fp",
             "perf-fp", FP_TARGET),
            ("`--unwinder dwarf` vs `perf --call-graph dwarf` + `perf script`",
             "ember-dwarf", "perf-dwarf", DWARF_TARGET)]
    if baseline:
        rows += [("baseline: auto", "base-auto", "perf-fp", FP_TARGET),
                 ("baseline: fp", "base-fp", "perf-fp", FP_TARGET),
                 ("baseline: dwarf", "base-dwarf", "perf-dwarf", DWARF_TARGET)]
    for name, ember, peer, target in rows:
        ratio = med(out[ember]) / max(med(out[peer]), 1e-9)
        spread = ", ".join(f"{r[0]:.3f}" for r in out[ember])
        print(f"| {name} | {med(out[ember]):.3f} ({spread}) | {med(out[ember], 1):.4f} | "
              f"{med(out[peer]):.3f} | **{ratio:.2f}** | ≤ {target} | {verdict(ratio, target)} |")
    print("\n| BPF run time per sample | µs | target | |")
    print("|---|---|---|---|")
    kinds = [("ember-fp", BPF_US_TARGET), ("ember-auto", None), ("ember-dwarf", None)]
    if baseline:
        kinds += [("base-fp", BPF_US_TARGET), ("base-auto", None), ("base-dwarf", None)]
    for kind, target in kinds:
        us = per_sample_us(out[kind])
        runs = sum(r[2] for r in out[kind])
        goal = f"≤ {target}" if target else "(say it)"
        ok = verdict(us, target) if target else ""
        print(f"| {kind} ({runs} runs) | **{us:.2f}** | {goal} | {ok} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 s captures only, one repetition")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the 5 s captures")
    ap.add_argument("--long-reps", type=int, default=1, help="repetitions of the 30 s captures")
    ap.add_argument("--ember", default=os.path.join(ROOT, "target/release/ember"))
    ap.add_argument("--baseline", help="another ember binary, measured in the same runs")
    ap.add_argument("--examples", default=os.path.join(ROOT, "target/examples"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("cost_bench: needs root (both profilers load kernel programs)")
    for name in ["split", "split-nofp"]:
        if not os.access(os.path.join(args.examples, name), os.X_OK):
            sys.exit(f"cost_bench: no {name} in {args.examples} (make -C examples OUT=...)")
    plan = [(5, 1)] if args.quick else [(5, args.reps), (30, args.long_reps)]
    load, busiest = machine_load()
    print(f"# Ember cost benchmark (issue 19) — {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}")
    print(f"\nLoad average at the start: {load}; busiest processes: {busiest}.")
    bpf_stats(True)
    try:
        for seconds, reps in plan:
            log(f"{seconds} s captures …")
            # Each duration's table as soon as it is measured: a long run cut short keeps
            # what it has.
            report(seconds, reps, measure(args, seconds, reps), args.baseline)
            sys.stdout.flush()
    finally:
        bpf_stats(False)
    log("symbolization …")
    print(f"\n## Symbolizing {symbolize_bench.N} distinct addresses (addresses/second)\n")
    print(symbolize_bench.GOAL_HEADER)
    for row in symbolize_bench.goal_rows():
        print(row)
    load, busiest = machine_load()
    print(f"\nLoad average at the end: {load}; busiest processes: {busiest}.")


if __name__ == "__main__":
    main()
