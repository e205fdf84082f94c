#!/usr/bin/env python3
"""Benchmarks `ember diff` against `inferno-diff-folded` on this machine, in one run.

Two synthetic folded profiles of N distinct stacks each (a node-sized capture: 20-frame
stacks over a few thousand function names, about 80 % of the stacks in both) are compared:

- `ember diff BASE NEW --folded OUT` (reads both, computes per-function shares, writes the
  three-column file and the table) against `inferno-diff-folded --normalize BASE NEW`
  (writes the three-column file only), medians of interleaved runs;
- `ember diff ... --svg OUT` (adds inferno's differential flame graph);
- `ember diff ... --fail-on-regression` (table and gate only: what a CI job runs);
- peak RSS of each.

The two three-column outputs are compared line for line (stacks and NEW counts must be
equal; scaled BASE counts may differ by rounding).

Usage: bench/diff_bench.py [--stacks N] [--runs R] [--ember PATH] [--inferno PATH]
Needs no root. inferno's CLI tools come from target/bench-tools (scripts/bench.sh installs
them).
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_profiles(path_base, path_new, stacks, seed=7):
    rng = random.Random(seed)
    names = [f"mod{i % 50}::function_{i}" for i in range(4000)]
    comms = [f"proc{i}" for i in range(40)]
    lines = set()
    while len(lines) < int(stacks * 1.2):
        depth = rng.randint(5, 20)
        lines.add(";".join([rng.choice(comms)] + [rng.choice(names) for _ in range(depth)]))
    lines = sorted(lines)
    rng.shuffle(lines)
    shared = int(stacks * 0.8)
    base = lines[:stacks]
    new = lines[:shared] + lines[stacks:stacks + (stacks - shared)]
    with open(path_base, "w") as f:
        for l in base:
            f.write(f"{l} {rng.randint(1, 500)}\n")
    with open(path_new, "w") as f:
        for l in new:
            # NEW is twice as long: counts about doubled, with noise.
            f.write(f"{l} {rng.randint(2, 1000)}\n")


def timed(cmd, stdout=None):
    """Runs cmd; returns (wall seconds, peak RSS of children so far in KiB)."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def peak_rss_kib(cmd, stdout_path=None):
    """Peak RSS of one run of cmd, in KiB (via wait4)."""
    out = open(stdout_path, "w") if stdout_path else subprocess.DEVNULL
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    if stdout_path:
        out.close()
    if status != 0:
        raise SystemExit(f"{cmd} failed with status {status}")
    return usage.ru_maxrss


def three_columns(path):
    out = {}
    with open(path) as f:
        for line in f:
            stack, base, new = line.rsplit(" ", 2)
            out[stack] = (int(base), int(new))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stacks", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ember", default=os.path.join(ROOT, "target/release/ember"))
    ap.add_argument("--inferno", default=os.path.join(ROOT, "target/bench-tools/bin/inferno-diff-folded"))
    a = ap.parse_args()
    for tool in (a.ember, a.inferno):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"bench: {tool} is missing (scripts/bench.sh builds and installs it)")

    with tempfile.TemporaryDirectory(prefix="ember-diff-bench-") as d:
        base, new = os.path.join(d, "base.folded"), os.path.join(d, "new.folded")
        make_profiles(base, new, a.stacks)
        size = os.path.getsize(base) + os.path.getsize(new)
        ember_out, inferno_out = os.path.join(d, "ember.diff"), os.path.join(d, "inferno.diff")
        svg = os.path.join(d, "diff.svg")
        ember_cmd = [a.ember, "diff", base, new, "--folded", ember_out, "--top", "20"]
        svg_cmd = [a.ember, "diff", base, new, "--svg", svg, "--top", "0"]
        gate_cmd = [a.ember, "diff", base, new, "--fail-on-regression", "100%"]
        inferno_cmd = [a.inferno, "--normalize", base, new]

        times = {"ember": [], "ember_svg": [], "ember_gate": [], "inferno": []}
        for _ in range(a.runs):
            times["ember"].append(timed(ember_cmd))
            with open(inferno_out, "w") as f:
                times["inferno"].append(timed(inferno_cmd, stdout=f))
            times["ember_svg"].append(timed(svg_cmd))
            times["ember_gate"].append(timed(gate_cmd))
        rss = {
            "ember": peak_rss_kib(ember_cmd),
            "ember_svg": peak_rss_kib(svg_cmd),
            "ember_gate": peak_rss_kib(gate_cmd),
            "inferno": peak_rss_kib(inferno_cmd, inferno_out),
        }

        e, i = three_columns(ember_out), three_columns(inferno_out)
        same_stacks = e.keys() == i.keys()
        same_new = all(e[k][1] == i[k][1] for k in e) if same_stacks else False
        base_off = max((abs(e[k][0] - i[k][0]) for k in e), default=0) if same_stacks else None

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"### `ember diff` vs `inferno-diff-folded` ({a.stacks:,} stacks per profile, "
          f"{size / 1e6:.1f} MB of folded input, median of {a.runs})\n")
    print("| command | wall time | ratio to inferno | peak RSS |")
    print("|---|---|---|---|")
    rows = [
        ("`inferno-diff-folded --normalize` (3-column file only)", "inferno"),
        ("`ember diff --folded` (3-column file + per-function table)", "ember"),
        ("`ember diff --svg` (differential flame graph)", "ember_svg"),
        ("`ember diff --fail-on-regression` (table + gate, the CI path)", "ember_gate"),
    ]
    for label, k in rows:
        print(f"| {label} | {med[k] * 1000:.0f} ms | {med[k] / med['inferno']:.2f}x | "
              f"{rss[k] / 1024:.1f} MiB |")
    print(f"\nSame stacks in both 3-column files: {same_stacks}; same NEW counts: {same_new}; "
          f"largest difference of a scaled BASE count: {base_off}.")


if __name__ == "__main__":
    main()
