#!/usr/bin/env python3
"""Python profiling benchmark (issue 17): what in-BPF CPython frame walking costs, and how
Ember compares with py-spy on the same script, in one run on this machine.

The workload is examples/python/split.py (pure Python, 70/30 between fn_a and fn_b under
`<module>;main;run;work`).

1. BPF run time per sample (kernel.bpf_stats_enabled: run_time_ns of Ember's perf_event
   programs, over run_cnt and over the samples in the profile) of `ember record -F 499 --
   PYTHON split.py N`, against the same for the native C `split` (same 70/30 shape); each
   repetition and the median, and the ratio of the medians.
2. py-spy against Ember at 99 Hz on the same script, interleaved: `py-spy record
   --nonblocking -r 99 -f raw` and `ember record -F 99`. For each, the profiler's own CPU
   (user+sys of the profiler process alone, read from /proc/PID/stat once it has exited
   and before it is reaped, so the profiled script's CPU is not counted; for Ember plus
   its BPF run time), the fn_a / fn_b split it reports, and the share of samples that
   reach the script's `<module>` and `main`.
3. `ember agent` at 19 Hz while split.py keeps one CPU busy: after a warm-up, the agent's
   CPU (utime+stime deltas in /proc/PID/stat) as a share of one core, its BPF run time,
   and its RSS.

Usage: bench/python_bench.py [--ember PATH] [--python PATH]... [--seconds N] [--reps N]
                             [--agent-seconds N] [--agent-warmup N] [--parts LIST]
                             [--examples DIR] [--py-spy PATH]
Needs root (Ember loads kernel programs; py-spy reads another process's memory). py-spy
is installed from PyPI into target/bench-tools/py-spy-venv when it is not there yet.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import (log, bpf_stats, bpf_program_stats, bpf_stats_until_exit, cpu_seconds,
                      free_port, machine_load, memory_kib)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples/python/split.py")
PY_SPY_VENV = os.path.join(ROOT, "target/bench-tools/py-spy-venv")
PY_SPY_VERSION = "0.4.2"
PARTS = ("bpf", "py-spy", "agent")


def profiler_run(cmd, tmp, bpf):
    """Runs profiler `cmd` (which runs the workload as its child) to its end; returns its own
    CPU seconds and, with `bpf`, its last BPF stats. The CPU is read while the profiler is a
    zombie: rusage from wait4 would include the workload it waited for."""
    err = open(os.path.join(tmp, "profiler.stderr"), "w+")
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    last = None
    while os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if bpf:
            s = bpf_program_stats(p.pid)
            if s:
                last = s
        time.sleep(0.05)
    cpu = cpu_seconds(p.pid)
    p.wait()
    if p.returncode != 0:
        err.seek(0)
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {err.read()[-2000:]}")
    return cpu, last


def samples(folded):
    """[(frames, count)] of folded text; the count is after the last space (frame names
    hold spaces)."""
    out = []
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out.append((stack.split(";"), int(count)))
    return out


def script_fn(frame):
    """The function name of a frame of split.py (`fn_a (split.py)_[j]` from Ember,
    `fn_a (split.py:17)` or with a longer path from py-spy), or of a native frame (`fn_a` in
    the C `split`); None for a Python frame of another file."""
    name, sep, where = frame.partition(" (")
    if not sep:
        return name
    path = where.split(")")[0].split(":")[0]
    return name if os.path.basename(path) == "split.py" else None


def split_shares(folded):
    """(samples, fn_a %, fn_b %, reaching `<module>` and `main` %) of folded text."""
    total = a = b = entry = 0
    for frames, n in samples(folded):
        fns = [script_fn(f) for f in frames]
        total += n
        if "fn_a" in fns:
            a += n
        elif "fn_b" in fns:
            b += n
        if "<module>" in fns and "main" in fns[fns.index("<module>"):]:
            entry += n
    pct = lambda n: 100.0 * n / total if total else float("nan")
    return total, pct(a), pct(b), pct(entry)


def interpreter_version(python):
    out = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "?"


def ensure_py_spy(path):
    if path:
        return path
    exe = os.path.join(PY_SPY_VENV, "bin/py-spy")
    if os.access(exe, os.X_OK):
        return exe
    log(f"installing py-spy {PY_SPY_VERSION} from PyPI into {PY_SPY_VENV} …")
    subprocess.run([sys.executable, "-m", "venv", PY_SPY_VENV], check=True)
    subprocess.run([os.path.join(PY_SPY_VENV, "bin/pip"), "install", "--quiet",
                    f"py-spy=={PY_SPY_VERSION}"], check=True)
    log("  py-spy installed")
    return exe


def med_col(values, fmt):
    """`median (each, …)` of `values` formatted with `fmt`."""
    return (fmt.format(statistics.median(values)) + " (" +
            ", ".join(fmt.format(v) for v in values) + ")")


def rotate(kinds, i):
    return kinds[i % len(kinds):] + kinds[:i % len(kinds)]


def part_bpf(args, python, tmp):
    """BPF µs per sample, Python against native, `args.reps` interleaved repetitions."""
    n = str(args.seconds)
    out = os.path.join(tmp, "bpf.folded")
    kinds = [("python", [python, SCRIPT, n]),
             ("native", [os.path.join(args.examples, "split"), n])]
    res = {k: [] for k, _ in kinds}
    for i in range(args.reps):
        for kind, workload in rotate(kinds, i):
            cmd = [args.ember, "record", "-q", "-F", "499", "--duration", f"{n}s", "-o", out,
                   "--"] + workload
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            last = bpf_stats_until_exit(p)
            if p.returncode != 0:
                raise RuntimeError(f"ember record failed: {p.stderr.read().decode(errors='replace')}")
            run_ns, runs = last or (0, 0)
            total, a, b, entry = split_shares(open(out).read())
            us = run_ns / runs / 1e3 if runs else float("nan")
            per_sample = run_ns / total / 1e3 if total else float("nan")
            res[kind].append((per_sample, us, runs, total, a, b))
            log(f"  rep {i + 1}: {kind}: {runs} BPF runs, {us:.2f} µs each; {total} samples, "
                f"{per_sample:.2f} µs each; fn_a {a:.1f} %, fn_b {b:.1f} %")
    py = statistics.median(r[0] for r in res["python"])
    nat = statistics.median(r[0] for r in res["native"])
    py_run = statistics.median(r[1] for r in res["python"])
    nat_run = statistics.median(r[1] for r in res["native"])
    print(f"\n## BPF run time per sample: {os.path.basename(python)} "
          f"{interpreter_version(python)} against native\n")
    print(f"`ember record -F 499 --duration {n}s -- WORKLOAD`, {args.reps} repetitions "
          "(median, then each repetition). The sampler runs on every CPU's clock and drops "
          "other processes' samples in BPF, so it runs about once a CPU a period: "
          "µs / BPF run averages in those cheap early exits; µs / recorded sample is the whole "
          "run time over the samples in the profile.\n")
    print("| workload | BPF µs / recorded sample | BPF µs / run | BPF runs | "
          "samples in the profile | fn_a | fn_b |")
    print("|---|---|---|---|---|---|---|")
    names = {"python": f"`{python} split.py {n}`",
             "native": f"`split {n}` (C, native frames only)"}
    for kind, _ in kinds:
        rs = res[kind]
        col = lambda j, fmt: med_col([r[j] for r in rs], fmt)
        print(f"| {names[kind]} | **{col(0, '{:.2f}')}** | {col(1, '{:.2f}')} | "
              f"{col(2, '{:.0f}')} | {col(3, '{:.0f}')} | {col(4, '{:.1f} %')} | "
              f"{col(5, '{:.1f} %')} |")
    print(f"\nPython / native, per recorded sample: **{py / nat:.2f}×** ({py - nat:+.2f} µs a "
          f"sample for the interpreter's frames); per BPF run: {py_run / nat_run:.2f}×.")


def part_py_spy(args, python, py_spy, tmp):
    """py-spy and Ember at 99 Hz on the same script, interleaved."""
    n = str(args.seconds)
    workload = [python, SCRIPT, n]
    kinds = [("py-spy", [py_spy, "record", "--nonblocking", "-r", "99", "-f", "raw", "-o",
                         os.path.join(tmp, "pyspy.txt"), "--"] + workload,
              os.path.join(tmp, "pyspy.txt"), False),
             ("ember", [args.ember, "record", "-q", "-F", "99", "-o",
                        os.path.join(tmp, "ember.folded"), "--"] + workload,
              os.path.join(tmp, "ember.folded"), True)]
    res = {k[0]: [] for k in kinds}
    for i in range(args.reps):
        for name, cmd, out, bpf in rotate(kinds, i):
            cpu, last = profiler_run(cmd, tmp, bpf)
            run_ns, runs = last or (0, 0)
            total, a, b, entry = split_shares(open(out).read())
            res[name].append((cpu + run_ns / 1e9, cpu, run_ns / 1e9, total, a, b, entry))
            log(f"  rep {i + 1}: {name}: CPU {cpu:.2f} s + BPF {run_ns / 1e9:.3f} s; {total} "
                f"samples, fn_a {a:.1f} %, fn_b {b:.1f} %, reaching main {entry:.1f} %")
    print(f"\n## py-spy and Ember at 99 Hz on `{python} split.py {n}` "
          f"({interpreter_version(python)})\n")
    print(f"Interleaved, {args.reps} repetitions (median, then each repetition). CPU is the "
          "profiler process's own user+sys (not the script's); Ember's total adds its BPF run "
          "time. The true split is 70/30.\n")
    print("| profiler | CPU total (s) | of which BPF (s) | samples | fn_a | fn_b | "
          "reaching `<module>;main` |")
    print("|---|---|---|---|---|---|---|")
    labels = {"py-spy": "`py-spy record --nonblocking -r 99`", "ember": "`ember record -F 99`"}
    for name, *_ in kinds:
        rs = res[name]
        col = lambda j, fmt: med_col([r[j] for r in rs], fmt)
        bpf = "–" if name == "py-spy" else col(2, "{:.3f}")
        print(f"| {labels[name]} | **{col(0, '{:.2f}')}** | {bpf} | {col(3, '{:.0f}')} | "
              f"{col(4, '{:.1f} %')} | {col(5, '{:.1f} %')} | {col(6, '{:.1f} %')} |")
    ratio = (statistics.median(r[0] for r in res["ember"]) /
             max(statistics.median(r[0] for r in res["py-spy"]), 1e-9))
    print(f"\nEmber / py-spy CPU: **{ratio:.2f}×**.")


def part_agent(args, python, tmp):
    """`ember agent -F 19` while split.py keeps one CPU busy."""
    store = os.path.join(tmp, "agent-store")
    os.mkdir(store)
    port = free_port()
    agent = subprocess.Popen([args.ember, "agent", "-q", "-F", "19", "--data-dir", store,
                              "--listen", f"127.0.0.1:{port}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wl = subprocess.Popen([python, SCRIPT, str(args.agent_warmup + args.agent_seconds + 10)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        log(f"  agent: {args.agent_warmup} s warm-up …")
        time.sleep(args.agent_warmup)
        if agent.poll() is not None:
            raise RuntimeError(f"ember agent exited ({agent.returncode}) during the warm-up")
        cpu0, bpf0, t0 = cpu_seconds(agent.pid), bpf_program_stats(agent.pid), time.monotonic()
        log(f"  agent: measuring over {args.agent_seconds} s …")
        time.sleep(args.agent_seconds)
        cpu1, bpf1, t1 = cpu_seconds(agent.pid), bpf_program_stats(agent.pid), time.monotonic()
        rss, hwm = memory_kib(agent.pid)
    finally:
        wl.kill()
        wl.wait()
        agent.send_signal(signal.SIGINT)
        try:
            agent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
    elapsed = t1 - t0
    share = (cpu1 - cpu0) / elapsed * 100
    (ns0, runs0), (ns1, runs1) = bpf0 or (0, 0), bpf1 or (0, 0)
    bpf_share = (ns1 - ns0) / 1e9 / elapsed * 100
    us = (ns1 - ns0) / (runs1 - runs0) / 1e3 if runs1 > runs0 else float("nan")
    print(f"\n## `ember agent -F 19` with `{python} split.py` keeping one CPU busy\n")
    print(f"Measured over {elapsed:.0f} s after a {args.agent_warmup} s warm-up; stopped with "
          f"SIGINT (exit status {agent.returncode}). The agent profiles every process: whatever "
          "else runs (see the load lines) is sampled and named too.\n")
    print("| agent CPU | BPF run time | BPF runs (µs each) | RSS | peak RSS (VmHWM) |")
    print("|---|---|---|---|---|")
    print(f"| **{share:.2f} % of a core** ({cpu1 - cpu0:.2f} s) | {bpf_share:.3f} % of a core | "
          f"{runs1 - runs0} ({us:.2f}) | **{rss / 1024:.1f} MiB** | {hwm / 1024:.1f} MiB |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ember", default=os.path.join(ROOT, "target/release/ember"))
    ap.add_argument("--python", action="append",
                    help="interpreter running split.py (repeat for several; default "
                         "/usr/bin/python3); the agent part uses the first")
    ap.add_argument("--seconds", type=int, default=5, help="length of each capture (default 5)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each capture (default 3)")
    ap.add_argument("--agent-seconds", type=int, default=20,
                    help="agent measurement after the warm-up (default 20)")
    ap.add_argument("--agent-warmup", type=int, default=10, help="agent warm-up (default 10)")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help=f"comma-separated parts to run (default {','.join(PARTS)})")
    ap.add_argument("--examples", default=os.path.join(ROOT, "target/examples"),
                    help="directory of the built C examples (the native `split`)")
    ap.add_argument("--py-spy", help="a py-spy binary (default: the one in "
                                     "target/bench-tools/py-spy-venv, installed if missing)")
    args = ap.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    if any(p not in PARTS for p in parts):
        sys.exit(f"python_bench: --parts takes {', '.join(PARTS)}")
    pythons = args.python or ["/usr/bin/python3"]
    if os.geteuid() != 0:
        sys.exit("python_bench: needs root (Ember loads kernel programs, py-spy reads "
                 "another process's memory)")
    if not os.access(args.ember, os.X_OK):
        sys.exit(f"python_bench: no ember at {args.ember} (cargo build --release -p ember, "
                 "or --ember PATH)")
    if "bpf" in parts and not os.access(os.path.join(args.examples, "split"), os.X_OK):
        sys.exit(f"python_bench: no split in {args.examples} (make -C examples OUT=...)")
    for python in pythons:
        if not os.access(python, os.X_OK):
            sys.exit(f"python_bench: no interpreter at {python}")
    py_spy = ensure_py_spy(args.py_spy) if "py-spy" in parts else None
    load, busiest = machine_load()
    print(f"# Python profiling benchmark (issue 17) — {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}")
    print(f"\nEmber: `{args.ember}`; interpreters: " +
          ", ".join(f"`{p}` ({interpreter_version(p)})" for p in pythons) +
          f"; captures of {args.seconds} s, {args.reps} repetitions; agent measured over "
          f"{args.agent_seconds} s after {args.agent_warmup} s.")
    if py_spy:
        ver = subprocess.run([py_spy, "--version"], capture_output=True, text=True).stdout
        print(f"py-spy: `{py_spy}` ({ver.strip()}).")
    print(f"\nLoad average at the start: {load}; busiest processes: {busiest}.")
    sys.stdout.flush()
    bpf_stats(True)
    try:
        with tempfile.TemporaryDirectory(prefix="ember-python-bench-") as tmp:
            for python in pythons:
                if "bpf" in parts:
                    log(f"BPF run time per sample, {python} …")
                    part_bpf(args, python, tmp)
                    sys.stdout.flush()
                if "py-spy" in parts:
                    log(f"py-spy and Ember, {python} …")
                    part_py_spy(args, python, py_spy, tmp)
                    sys.stdout.flush()
            if "agent" in parts:
                log(f"ember agent at 19 Hz, {pythons[0]} …")
                part_agent(args, pythons[0], tmp)
    finally:
        bpf_stats(False)
    load, busiest = machine_load()
    print(f"\nLoad average at the end: {load}; busiest processes: {busiest}.")


if __name__ == "__main__":
    main()
