"""Helpers the benchmark scripts share: progress on stderr, a process's CPU and memory
from /proc, a free port, and the kernel's accounting of BPF program run time
(`kernel.bpf_stats_enabled`, `run_time_ns`/`run_cnt` in fdinfo)."""

import os
import socket
import subprocess
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    """User+sys seconds of process `pid` itself (not its reaped children), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def memory_kib(pid):
    """(VmRSS, VmHWM) of `pid` in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bpf_stats(enable):
    """Turns the kernel's per-program run-time accounting on or off."""
    try:
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write("1" if enable else "0")
    except OSError as e:
        log(f"  (cannot toggle kernel.bpf_stats_enabled: {e})")


def bpf_program_stats(pid):
    """(run_time_ns, run_cnt) summed over the perf_event programs that `pid` or one of its
    direct children holds open (under /usr/bin/time, ember is time's child); None if none."""
    return read_prog_stats(perf_event_prog_fds(pid))


def machine_load():
    """The load average and the busiest other processes, to say what else was running."""
    load = open("/proc/loadavg").read().split()[:3]
    ps = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"],
                        capture_output=True, text=True).stdout.splitlines()[:5]
    return " ".join(load), ", ".join(" ".join(p.split()[::-1]) + " %" for p in ps)


def perf_event_prog_fds(pid):
    """The fdinfo paths of the perf_event programs `pid` or one of its direct children
    holds open (found once by a poller, so its later readings open two files, not every
    fd's)."""
    found = []
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        children = []
    for p in [str(pid)] + children:
        fdinfo = f"/proc/{p}/fdinfo"
        try:
            fds = os.listdir(fdinfo)
        except OSError:
            continue
        for fd in fds:
            try:
                if any(line.split(":", 1)[1].strip() == "7" for line in open(f"{fdinfo}/{fd}")
                       if line.startswith("prog_type:")):
                    found.append(f"{fdinfo}/{fd}")
            except OSError:
                continue
    return found


def read_prog_stats(paths):
    """(run_time_ns, run_cnt) summed over the fdinfo `paths`; None when none is readable."""
    run_ns = runs = 0
    seen = False
    for path in paths:
        try:
            info = dict(line.split(":", 1) for line in open(path) if ":" in line)
        except OSError:
            continue
        seen = True
        run_ns += int(info.get("run_time_ns", "0"))
        runs += int(info.get("run_cnt", "0"))
    return (run_ns, runs) if seen and runs else None


def bpf_stats_until_exit(p, ends_after=None):
    """Polls the BPF stats of `p` (a Popen) until it exits, and reaps it; returns the last
    reading taken while its programs were loaded (they unload when it exits).

    The poller must cost the profiler under test nothing: its own CPU is sampled, and a
    Python process sampled makes Ember name Python frames (libpython's DWARF parsed) that
    the workload never asked for; polling every 50 ms over all of Ember's fds cost a 30 s
    `record --all` 55 ms. So the programs' fds are found once, and with `ends_after`
    (seconds, when the capture is known to end about then) they are read once a second
    until half a second before that and every 50 ms after; up to 50 ms of the end may
    still be missed (per-sample figures are not affected)."""
    start = time.monotonic()
    last, paths = None, []
    while p.poll() is None:
        if not paths:
            paths = perf_event_prog_fds(p.pid)
        s = read_prog_stats(paths) if paths else None
        if s:
            last = s
        elif paths:
            paths = []  # the fds changed: find them again
        to_end = 0 if ends_after is None else ends_after - 0.5 - (time.monotonic() - start)
        time.sleep(min(1.0, to_end) if paths and to_end > 0.05 else 0.05)
    return last
