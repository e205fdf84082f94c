#!/usr/bin/env python3
"""Benchmarks Ember's .eh_frame unwinder (issue 7) against frame pointers and against
`perf record --call-graph dwarf`, in one run on this machine.

Prints:

1. Complete-stack share on the workloads built without frame pointers (split-nofp,
   rust-split-nofp, libc-hot, recursion-nofp at depth 110): the share of each workload's
   samples whose stack reaches `main`, for `ember record --unwinder fp`, `--unwinder dwarf`
   and `perf record --call-graph dwarf`, side by side.
2. Overhead at 99 Hz on split-nofp: the workload's throughput with no profiler, under Ember
   (dwarf) and under perf (--call-graph dwarf), in rotated runs; the profilers' own CPU time
   (Ember: user+sys of its process plus its eBPF program's run time from
   kernel.bpf_stats_enabled; perf: `perf record` plus the `perf script` that does its
   unwinding) as a share of the workload's CPU time, and Ember's cost against perf's.
3. Unwind-table memory per binary and build time, for common libraries and for the binary
   with the largest table found on the system.

Usage: bench/unwind_bench.py [--pairs N] [--seconds S] [--ember PATH] [--examples DIR]
Needs root, perf, and inferno-collapse-perf (target/bench-tools, installed by
scripts/bench.sh; INFERNO_COLLAPSE_PERF overrides the path).
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
COLLAPSE = os.environ.get("INFERNO_COLLAPSE_PERF",
                          os.path.join(ROOT, "target/bench-tools/bin/inferno-collapse-perf"))


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def read_folded(text, comm):
    """{stack: count} of one process's lines of folded text."""
    stacks = {}
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not (stack == comm or stack.startswith(comm + ";")):
            continue
        stacks[stack] = stacks.get(stack, 0) + int(count)
    return stacks


def reaching_main(stacks):
    total = sum(stacks.values())
    main = sum(c for s, c in stacks.items() if "main" in s.split(";"))
    return main, total


WORKLOADS = [
    # (binary, args, comm as the kernel truncates it)
    ("split-nofp", ["5"], "split-nofp"),
    ("rust-split-nofp", ["5"], "rust-split-nofp"),
    ("libc-hot", ["5"], "libc-hot"),
    ("recursion-nofp", ["5", "110"], "recursion-nofp"),
]


def ember_folded(ember, unwinder, cmd, tmp):
    out = os.path.join(tmp, "e.folded")
    subprocess.run([ember, "record", "-q", "--no-kernel", "-F", "99", "--unwinder", unwinder,
                    "-o", out, "--"] + cmd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return open(out).read()


def perf_folded(cmd, tmp):
    data = os.path.join(tmp, "perf.data")
    subprocess.run(["perf", "record", "-q", "-F", "99", "--call-graph", "dwarf", "-o", data,
                    "--"] + cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    script = subprocess.run(["perf", "script", "-i", data], check=True, capture_output=True)
    folded = subprocess.run([COLLAPSE], input=script.stdout, check=True, capture_output=True)
    return folded.stdout.decode(errors="replace")


def complete_share(args):
    print("\n## Complete-stack share without frame pointers (99 Hz, 5 s per run)\n")
    print("Share of each workload's samples whose stack reaches `main`.\n")
    print("| workload | ember --unwinder fp | ember --unwinder dwarf | perf --call-graph dwarf |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="ember-unwind-bench-") as tmp:
        for name, wargs, comm in WORKLOADS:
            cmd = [os.path.join(args.examples, name)] + wargs
            cells = []
            for kind in ["fp", "dwarf", "perf"]:
                text = perf_folded(cmd, tmp) if kind == "perf" else ember_folded(
                    args.ember, kind, cmd, tmp)
                main, total = reaching_main(read_folded(text, comm))
                if kind == "perf":
                    # inferno weighs perf's samples by their period (ns of cpu-clock).
                    main, total = round(main * 99 / 1e9), round(total * 99 / 1e9)
                cells.append(f"{main / max(total, 1) * 100:.1f} % ({main}/{total})")
                log(f"  {name} {kind}: {main}/{total}")
            print(f"| {name} {' '.join(wargs[1:])} | " + " | ".join(cells) + " |")


def one_run(kind, args, tmp):
    """Runs split-nofp for --seconds under `kind`; returns (rounds, profiler CPU s, bpf)."""
    split = os.path.join(args.examples, "split-nofp")
    wl = subprocess.Popen([split, str(args.seconds)], stderr=subprocess.PIPE, text=True)
    prof = None
    bpf = None
    if kind.startswith("ember"):
        unwinder = "fp" if kind == "ember-fp" else "dwarf"
        prof = subprocess.Popen([args.ember, "record", "-q", "--unwinder", unwinder, "-F", "99",
                                 "--pid", str(wl.pid), "-o", os.path.join(tmp, "e.folded")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elif kind == "perf":
        prof = subprocess.Popen(["perf", "record", "-q", "-F", "99", "--call-graph", "dwarf",
                                 "-p", str(wl.pid), "-o", os.path.join(tmp, "perf.data")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, err = wl.communicate()
    cpu = 0.0
    if prof is not None:
        if kind.startswith("ember"):
            # The workload exited: ember notices, drains and writes; read its BPF stats
            # while its programs are still loaded.
            deadline = time.time() + 30
            while time.time() < deadline:
                s = bpf_program_stats(prof.pid)
                if not s:
                    break
                bpf = s
                time.sleep(0.05)
        else:
            prof.send_signal(signal.SIGINT)
        # The profiler's own CPU time: wait4 gives this child's usage alone.
        _, _, ru = os.wait4(prof.pid, 0)
        prof.returncode = 0
        cpu = ru.ru_utime + ru.ru_stime
    if kind == "perf":
        # perf unwinds when the data is read: count `perf script` too.
        c0 = children_cpu()
        subprocess.run(["perf", "script", "-i", os.path.join(tmp, "perf.data")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        cpu += children_cpu() - c0
    m = re.search(r"split: (\d+) rounds", err)
    if not m:
        raise RuntimeError(f"unexpected split output: {err!r}")
    return int(m.group(1)), cpu, bpf


def overhead(args):
    kinds = ["none", "ember-fp", "ember", "perf"]
    rounds = {k: [] for k in kinds}
    cpu = {k: [] for k in kinds}
    bpf = {k: [0, 0] for k in kinds}
    bpf_stats(True)
    try:
        with tempfile.TemporaryDirectory(prefix="ember-unwind-bench-") as tmp:
            for i in range(args.pairs):
                order = kinds[i % 4:] + kinds[:i % 4]
                for kind in order:
                    r, c, b = one_run(kind, args, tmp)
                    rounds[kind].append(r)
                    cpu[kind].append(c)
                    if b:
                        bpf[kind][0] += b[0]
                        bpf[kind][1] += b[1]
                log(f"  run {i + 1}/{args.pairs}: " + ", ".join(
                    f"{k} {rounds[k][-1]} rounds {cpu[k][-1]:.2f} s cpu" for k in kinds))
    finally:
        bpf_stats(False)
    base_rounds = statistics.median(rounds["none"])
    base_cpu = args.seconds  # the workload keeps one CPU busy for its run
    print(f"\n## Overhead at 99 Hz on split-nofp ({args.pairs} rotated runs of {args.seconds} s)\n")
    print("| profiler | median rounds | throughput vs none | profiler CPU (s, median) | "
          "profiler CPU / workload CPU |")
    print("|---|---|---|---|---|")
    own = {}
    for k in kinds:
        med = statistics.median(rounds[k])
        own[k] = statistics.median(cpu[k])
        print(f"| {k} | {med:.0f} (min {min(rounds[k])}, max {max(rounds[k])}) | "
              f"{(med / base_rounds - 1) * 100:+.1f} % | {own[k]:.3f} | "
              f"{own[k] / base_cpu * 100:.2f} % |")
    print()
    for k in ["ember-fp", "ember"]:
        ns, runs = bpf[k]
        if runs:
            total = ns / 1e9 / args.pairs
            print(f"- `{k}`'s eBPF program (kernel.bpf_stats_enabled): {runs} runs, "
                  f"{ns / runs / 1e3:.2f} µs per run on average over every CPU's samples "
                  f"(those of other processes are filtered out early), {total:.4f} s per "
                  f"{args.seconds:.0f} s run ({total / base_cpu * 100:.3f} % of the workload's CPU)")
            own[k] += total
    extra = own["ember"] - own["ember-fp"]
    print(f"- Ember with the unwinder, all included (start-up, symbolizing, eBPF): "
          f"{own['ember']:.3f} s = **{own['ember'] / base_cpu * 100:.2f} %** of the workload's "
          f"CPU, **{own['ember'] / max(own['perf'], 1e-9) * 100:.0f} %** of perf's cost "
          f"(record + script, {own['perf']:.3f} s).")
    print(f"- What the unwinder adds over Ember's frame-pointer mode: {extra:+.3f} s = "
          f"**{extra / base_cpu * 100:+.2f} %** of the workload's CPU, "
          f"**{extra / max(own['perf'], 1e-9) * 100:.0f} %** of perf's cost. "
          f"Goals: under a quarter of perf's, ≤ 1 % absolute.")


def table_memory(args):
    print("\n## Unwind-table memory per binary\n")
    tool = os.path.join(ROOT, "target/release/examples/unwind_table")
    subprocess.run(["cargo", "build", "-q", "--release", "--locked", "-p", "unwinder",
                    "--example", "unwind_table"], cwd=ROOT, check=True)
    candidates = [
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
        os.path.join(args.examples, "split-nofp"),
        os.path.join(args.examples, "rust-split-nofp"),
        os.path.join(ROOT, "target/release/ember"),
    ]
    # The largest ELF files on the system: the largest table is among them.
    found = subprocess.run(
        "find /usr/bin /usr/sbin /usr/lib /usr/libexec /usr/local/bin -xdev -type f "
        "-size +20M -printf '%s %p\\n' 2>/dev/null | sort -rn | head -15",
        shell=True, capture_output=True, text=True).stdout.split("\n")
    for line in found:
        path = line.partition(" ")[2]
        if path:
            with open(path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    candidates.append(path)
    rows = []
    for path in candidates:
        if not os.path.exists(path):
            continue
        out = subprocess.run([tool, "--tsv", path], capture_output=True, text=True)
        if out.returncode != 0:
            log(f"  {path}: {out.stderr.strip()}")
            continue
        f = out.stdout.strip().split("\t")
        rows.append((path, int(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[5]), float(f[6])))
    print("| binary | file size | rows | table bytes | FDEs | unsupported rows | build ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1] / 2**20:.1f} MiB | {r[2]} | {r[3] / 1024:.0f} KiB | {r[4]} | "
              f"{r[5]} | {r[6]:.1f} |")
    if rows:
        big = max(rows, key=lambda r: r[3])
        print(f"\nLargest table: {big[0]}: {big[3] / 2**20:.1f} MiB of rows, built in "
              f"{big[6]:.0f} ms (file read from the page cache).")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--ember", default=os.path.join(ROOT, "target/release/ember"))
    ap.add_argument("--examples", default=os.path.join(ROOT, "target/examples"))
    ap.add_argument("--only", choices=["share", "overhead", "memory"])
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("unwind_bench: needs root")
    print("# Ember unwinder benchmark\n")
    print(f"Machine: {os.cpu_count()} CPUs, shared with other builds (figures are noisy).")
    if args.only in (None, "share"):
        complete_share(args)
    if args.only in (None, "overhead"):
        overhead(args)
    if args.only in (None, "memory"):
        table_memory(args)


if __name__ == "__main__":
    main()
