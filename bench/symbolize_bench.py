#!/usr/bin/env python3
"""Symbolization benchmark (scripts/bench.sh symbolize): prints a Markdown report.

1. Addresses per second, Ember's symbolizer against llvm-symbolizer-22 and
   `addr2line -f -i -C`, on the same addresses: N addresses spread over every function of
   a binary (fixed seed): the large Rust example, Debian's libc (its functions from
   libc6-dbg's debug file, which all three find by build-id) and the small C example.
   Ember runs on a live process that maps the binary
   (symbolizer/examples/symbolize_bench.rs): cold = fresh symbolizer, one pass; warm =
   binary parsed, result memo off, best of 5; memo = memo on, best of 5; cold, copy kept =
   a fresh symbolizer whose copy directory holds what an earlier run kept (libc's debug
   file decompressed: `ember record` and the agent keep copies in the user's cache, so
   this is every run but the first). The host is stopped (SIGSTOP) while Ember runs, so
   it takes no CPU from it; the peers run after it is gone. The peers take
   the ELF addresses on stdin; their cold rate is N / time of one run over N addresses,
   their warm rate the marginal rate N*9 / (time(10 N) - time(N)), i.e. after parsing.
   Issue 19's goals, cold and warm, on the Rust binary and on libc: Ember ≥ 5x addr2line
   and ≥ 3x llvm-symbolizer (`goal_rows`, also printed by bench/cost_bench.py).
2. The process storm (examples/storm: 20 ms children): share of samples with an unnamed
   leaf / any unnamed user frame, with Ember's process captures on and off
   (EMBER_CAPTURES=off).

Needs root (for the storm recording). Run through scripts/bench.sh, which builds things.
"""
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "target", "examples")
TOOL = os.path.join(ROOT, "target", "release", "examples", "symbolize_bench")
EMBER = os.path.join(ROOT, "target", "release", "ember")
LLVM = "/usr/bin/llvm-symbolizer-22"
N = int(os.environ.get("BENCH_ADDRESSES", "5000"))
ADDR2LINE_TARGET = 5.0
LLVM_TARGET = 3.0


def functions(binary):
    out = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    funcs = set()
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4 and f[2] in ("t", "T") and int(f[1], 16) > 0:
            funcs.add((int(f[0], 16), int(f[1], 16)))
    return sorted(funcs)


def addresses(binary, n, seed=7):
    rng = random.Random(seed)
    funcs = functions(binary)
    return [a + rng.randrange(s) for a, s in (funcs[i % len(funcs)] for i in range(n))]


def load_bias(pid, binary):
    start = None
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == binary and parts[2] == "00000000":
                start = int(parts[0].split("-")[0], 16)
                break
    out = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True, check=True).stdout
    first = next(int(l.split()[2], 16) for l in out.splitlines() if l.strip().startswith("LOAD"))
    return start - (first & ~0xFFF)


def timed(cmd, stdin_text):
    t = time.perf_counter()
    subprocess.run(cmd, input=stdin_text, stdout=subprocess.DEVNULL, text=True, check=True)
    return time.perf_counter() - t


def peer_rates(cmd, addrs):
    one = "".join(f"{a:#x}\n" for a in addrs)
    t1 = min(timed(cmd, one) for _ in range(3))
    t10 = min(timed(cmd, one * 10) for _ in range(2))
    return len(addrs) / t1, len(addrs) * 9 / max(t10 - t1, 1e-9)


def debug_file(binary):
    """The separate debug file of `binary` under /usr/lib/debug/.build-id, if installed."""
    out = subprocess.run(["readelf", "-nW", binary], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]{2})([0-9a-f]+)", out)
    path = m and f"/usr/lib/debug/.build-id/{m.group(1)}/{m.group(2)}.debug"
    return path if path and os.path.exists(path) else None


def mapped_libc(pid):
    with open(f"/proc/{pid}/maps") as f:
        return next(line.split()[5] for line in f if "/libc.so" in line and line.split()[2] == "00000000")


def bench_binary(label):
    """Ember and both peers on one binary: `rust-workload`, `split` or `libc`."""
    if not os.access(TOOL, os.X_OK):
        raise SystemExit(f"symbolize_bench: {TOOL} is not built; `scripts/bench.sh symbolize` "
                         "(or `cost`) builds it, or run "
                         "`cargo build --release --locked -p symbolizer --example symbolize_bench`")
    host = "split" if label == "libc" else label
    proc = subprocess.Popen([os.path.join(EXAMPLES, host), "600"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        binary = mapped_libc(proc.pid) if label == "libc" else os.path.join(EXAMPLES, host)
        symbols = debug_file(binary) if label == "libc" else binary
        if symbols is None:
            raise SystemExit(f"symbolize_bench: no debug file for {binary} (apt install libc6-dbg)")
        addrs = addresses(symbols, N)
        bias = load_bias(proc.pid, binary)
        with tempfile.NamedTemporaryFile("w", suffix=".addrs", delete=False) as f:
            f.write("".join(f"{a + bias:x}\n" for a in addrs))
            path = f.name
        # The host only has to stay mapped: stopped, it does not take a CPU from Ember's
        # passes (the peers run after it is gone).
        os.kill(proc.pid, signal.SIGSTOP)
        ours = json.loads(subprocess.run([TOOL, str(proc.pid), path], capture_output=True, text=True, check=True).stdout)
        os.unlink(path)
    finally:
        proc.kill()
        proc.wait()
    llvm = peer_rates([LLVM, f"--obj={binary}", "--functions=linkage", "--inlining", "--demangle"], addrs)
    a2l = peer_rates(["addr2line", "-f", "-i", "-C", "-e", binary], addrs)
    n = ours["addresses"]
    return {
        "binary": label,
        "n": n,
        "named": ours["named"],
        "digest": ours["digest"],
        "ember": (n / ours["cold"], n / ours["warm"], n / ours["memo"]),
        "ember_cold_kept": n / ours["cold_kept"],
        "llvm": llvm,
        "addr2line": a2l,
    }


def goal_rows(results=None):
    """Issue 19's symbolization goals as Markdown table rows (under GOAL_HEADER), from
    `results` of bench_binary, or measured now."""
    rows = []
    for r in results or [bench_binary(label) for label in ("rust-workload", "libc")]:
        if r["binary"] not in ("rust-workload", "libc"):
            continue
        passes = [("cold", r["ember"][0], 0), ("cold, copy kept", r["ember_cold_kept"], 0),
                  ("warm", r["ember"][1], 1)]
        for kind, ours, i in passes:
            if kind == "cold, copy kept" and r["binary"] != "libc":
                continue  # only a compressed debug file is copied
            a2l, llvm = r["addr2line"][i], r["llvm"][i]
            ra, rl = ours / a2l, ours / llvm
            rows.append(f"| {r['binary']} | {kind} | {ours:,.0f} | {a2l:,.0f} | **{ra:.1f}x** | "
                        f"≥ {ADDR2LINE_TARGET:g}x | {'**met**' if ra >= ADDR2LINE_TARGET else 'not met'} | "
                        f"{llvm:,.0f} | **{rl:.1f}x** | ≥ {LLVM_TARGET:g}x | "
                        f"{'**met**' if rl >= LLVM_TARGET else 'not met'} |")
    return rows


GOAL_HEADER = ("| binary | pass | Ember (addr/s) | addr2line | ratio | target | | llvm-symbolizer | ratio | target | |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|")


def storm_shares(captures):
    env = dict(os.environ)
    if not captures:
        env["EMBER_CAPTURES"] = "off"
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "storm.folded")
        run = subprocess.run([EMBER, "-q", "record", "-F", "499", "-o", out, "--",
                              os.path.join(EXAMPLES, "storm"), "5", "20", "3"],
                             capture_output=True, text=True, env=env, check=True)
        m = re.search(r"storm: (\d+) children in ([\d.]+) s", run.stdout)
        children = int(m.group(1)) if m else 0
        total = leaf = anyu = 0
        with open(out) as f:
            for line in f:
                stack, count = line.rstrip("\n").rsplit(" ", 1)
                frames = stack.split(";")
                if frames[0] != "storm":
                    continue
                count = int(count)
                user = [fr for fr in frames[1:] if not fr.endswith("_[k]")]
                bad = [fr == "[unknown]" or "+0x" in fr for fr in user]
                total += count
                if user and bad[-1]:
                    leaf += count
                if any(bad):
                    anyu += count
    return children, total, 100.0 * leaf / max(total, 1), 100.0 * anyu / max(total, 1)


def main():
    print("## Symbolization\n")
    print(f"{N} addresses spread over every function of each example binary (fixed seed); addresses/second.\n")
    print("| binary | named (digest of the frames) | Ember cold | Ember cold, copy kept | Ember warm | Ember memo | llvm-symbolizer-22 cold | llvm warm | addr2line cold | addr2line warm | Ember warm / addr2line warm |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    results = []
    for name in ("rust-workload", "libc", "split"):
        r = bench_binary(name)
        results.append(r)
        e, l, a = r["ember"], r["llvm"], r["addr2line"]
        print(f"| {name} | {r['named']}/{r['n']} ({r['digest']}) | {e[0]:,.0f} | {r['ember_cold_kept']:,.0f} | {e[1]:,.0f} | {e[2]:,.0f} | {l[0]:,.0f} | {l[1]:,.0f} | "
              f"{a[0]:,.0f} | {a[1]:,.0f} | {e[1] / a[1]:.1f}x |")
        sys.stdout.flush()
    print(f"\nIssue 19's goals, from the runs above:\n")
    print(GOAL_HEADER)
    for row in goal_rows(results):
        print(row)
    sys.stdout.flush()
    print("\nProcess storm (examples/storm 5 s, 20 ms children, 3 at a time; `ember record -F 499`):\n")
    print("| captures | children | storm samples | unnamed leaf | any unnamed user frame |")
    print("|---|---|---|---|---|")
    for captures in (True, False):
        c, t, leaf, anyu = storm_shares(captures)
        print(f"| {'on' if captures else 'off (EMBER_CAPTURES=off)'} | {c} | {t} | {leaf:.2f} % | {anyu:.2f} % |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
