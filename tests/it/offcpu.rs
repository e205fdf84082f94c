//! `ember record --off-cpu` end to end, against `examples/offcpu`: each of its modes waits
//! a known time under a known function and prints the time it measured itself
//! (`blocked FUNCTION MICROSECONDS`), so the time charged can be checked against it.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use profiler_model::{Profile, ProfileKind, folded, pprof};

use crate::common::{Folded, ember, example, privileged, run, tempdir};

/// Kernel frames that mark a thread that was preempted (runnable, not waiting): its time
/// off CPU is real but not one the program measures as blocked.
const PREEMPTED: [&str; 3] = ["exit_to_user_mode", "preempt_schedule", "irqentry_exit"];

/// One `ember record --off-cpu` run of `offcpu SECONDS MODE`.
struct Run {
    /// The off-CPU profile of the workload (microseconds).
    off_cpu: Folded,
    /// The CPU profile of the same run (samples).
    cpu: Folded,
    /// What the workload measured: function → microseconds blocked.
    measured: BTreeMap<String, f64>,
}

fn folded_of(profile: &Profile) -> Folded {
    let mut text = Vec::new();
    folded::write(profile, folded::Options::default(), &mut text).expect("folded");
    Folded::parse(&String::from_utf8(text).expect("utf-8")).process("offcpu")
}

fn decode(path: &Path, kind: ProfileKind) -> Profile {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let profile = pprof::decode_kind(file, kind).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    assert_eq!(profile.meta.kind, kind);
    profile
}

fn record(mode: &str, seconds: &str, extra: &[&str]) -> Run {
    let dir = tempdir();
    let path = dir.path().join("out.pb.gz");
    let workload = example("offcpu");
    let out = run(ember()
        // 299 Hz: enough CPU samples of the pipe writer's 9 % of a CPU.
        .args(["record", "--off-cpu", "-F", "299", "-o"])
        .arg(&path)
        .args(extra)
        .arg("--")
        .arg(&workload)
        .args([seconds, mode]));
    assert!(out.status.success(), "ember record --off-cpu failed");
    let measured = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()? == "blocked").then_some(())?;
            Some((f.next()?.to_owned(), f.next()?.parse().ok()?))
        })
        .collect();
    Run {
        off_cpu: folded_of(&decode(&path, ProfileKind::OffCpu)),
        cpu: folded_of(&decode(&path, ProfileKind::Cpu)),
        measured,
    }
}

/// Microseconds charged under `frame` while waiting (preemptions left out).
fn waited(f: &Folded, frame: &str) -> u64 {
    f.count_where(|s| s.contains(&frame) && !preempted(s))
}

fn preempted(stack: &[&str]) -> bool {
    stack
        .iter()
        .any(|f| PREEMPTED.iter().any(|p| f.starts_with(p)))
}

/// The checks every mode shares: `blocking` (run by the thread function `thread`) waits,
/// `compute` burns the CPU. `extra` goes to `ember record`.
fn check_mode(mode: &str, blocking: &str, thread: &str, compute: &str, extra: &[&str]) {
    let r = record(mode, "4", extra);
    let measured_total: f64 = r.measured.values().sum();
    assert!(
        r.measured.contains_key(blocking) && measured_total > 500_000.0,
        "{mode}: the workload measured {:?}",
        r.measured
    );
    let charged_total: u64 = r.measured.keys().map(|g| waited(&r.off_cpu, g)).sum();
    let ratio = charged_total as f64 / measured_total;
    eprintln!(
        "{mode}: measured {:?} µs; charged {:?} µs ({ratio:.3} of measured); off-CPU \
         total {} µs, preempted {} µs",
        r.measured,
        r.measured
            .keys()
            .map(|g| (g.as_str(), waited(&r.off_cpu, g)))
            .collect::<Vec<_>>(),
        r.off_cpu.total(),
        r.off_cpu.count_where(preempted),
    );
    assert!(
        (0.85..=1.15).contains(&ratio),
        "{mode}: charged {charged_total} µs for {measured_total:.0} µs measured: {:#?}",
        r.off_cpu.lines
    );
    // The blocking function's own time is charged under it, and the waiting thread waits
    // nowhere the program does not know of.
    let under = waited(&r.off_cpu, blocking);
    assert!(
        under as f64 >= 0.9 * r.measured[blocking],
        "{mode}: {under} µs under `{blocking}`, which measured {:.0} µs: {:#?}",
        r.measured[blocking],
        r.off_cpu.lines
    );
    let in_thread = |f: Option<&str>| {
        r.off_cpu.count_where(|s| {
            s.contains(&thread) && !preempted(s) && f.is_none_or(|f| s.contains(&f))
        })
    };
    let thread_total = in_thread(None);
    let known: u64 = r.measured.keys().map(|g| in_thread(Some(g))).sum();
    assert!(
        known as f64 >= 0.9 * thread_total as f64,
        "{mode}: only {known} of the {thread_total} µs `{thread}` waited are under the \
         functions the program measured: {:#?}",
        r.off_cpu.lines
    );
    // The CPU profile of the same run: the computing function first, not the waiting one.
    let cpu_total = r.cpu.total();
    let compute_share = r.cpu.share(compute);
    eprintln!(
        "{mode}: {cpu_total} CPU samples, {compute_share:.3} under `{compute}`, {:.3} under \
         `{blocking}`",
        r.cpu.share(blocking)
    );
    assert!(cpu_total >= 50, "{mode}: only {cpu_total} CPU samples");
    assert!(
        compute_share >= 0.5 && compute_share > r.cpu.share(blocking),
        "{mode}: `{compute}` has {compute_share:.3} of the CPU samples: {:#?}",
        r.cpu.lines
    );
}

#[test]
fn off_cpu_time_of_a_sleeping_loop_is_under_its_sleep() {
    let Some(_p) = privileged("off_cpu_time_of_a_sleeping_loop_is_under_its_sleep") else {
        return;
    };
    check_mode("sleep", "sleep_wait", "run_sleep", "compute_burst", &[]);
}

#[test]
fn off_cpu_time_of_a_contended_mutex_is_under_its_lock() {
    let Some(_p) = privileged("off_cpu_time_of_a_contended_mutex_is_under_its_lock") else {
        return;
    };
    check_mode("mutex", "lock_waiter", "waiter", "hold_and_compute", &[]);
}

#[test]
fn off_cpu_time_of_a_pipe_reader_is_under_its_read() {
    let Some(_p) = privileged("off_cpu_time_of_a_pipe_reader_is_under_its_read") else {
        return;
    };
    check_mode("pipe", "pipe_reader", "reader", "produce_item", &[]);
}

/// A wait is charged when the thread comes back, often drains after its stacks were taken
/// (at switch-out, in that generation's maps): the drain keeps those stacks until then.
/// With a drain at every 50 ms tick, about half of the reader's 22 ms waits and the
/// writer's 20 ms pauses span a drain; a stack not kept would show as `[lost: …]` and
/// the charged time would fall short.
#[test]
fn off_cpu_waits_across_drains_keep_their_stacks() {
    let Some(_p) = privileged("off_cpu_waits_across_drains_keep_their_stacks") else {
        return;
    };
    check_mode(
        "pipe",
        "pipe_reader",
        "reader",
        "produce_item",
        &["--drain-interval", "10ms"],
    );
}

#[test]
fn off_cpu_min_above_the_wait_charges_nothing() {
    let Some(_p) = privileged("off_cpu_min_above_the_wait_charges_nothing") else {
        return;
    };
    // The loop sleeps 7 ms at a time; nothing it does waits 30 ms.
    let r = record("sleep", "2", &["--off-cpu-min", "30ms"]);
    assert!(
        r.measured
            .get("sleep_wait")
            .is_some_and(|&us| us > 500_000.0),
        "the workload measured {:?}",
        r.measured
    );
    eprintln!(
        "--off-cpu-min 30ms: {} µs charged, {} CPU samples",
        r.off_cpu.total(),
        r.cpu.total()
    );
    assert_eq!(
        r.off_cpu.total(),
        0,
        "waits shorter than --off-cpu-min were charged: {:#?}",
        r.off_cpu.lines
    );
    // The CPU samples are still there.
    assert!(r.cpu.share("compute_burst") >= 0.5, "{:#?}", r.cpu.lines);
}
