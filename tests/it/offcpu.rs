//! `ember record --off-cpu` end to end, against `examples/offcpu`: each of its modes waits
//! a known time under a known function and prints the time it measured itself
//! (`blocked FUNCTION MICROSECONDS`), so the time charged can be checked against it.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use profiler_model::{Profile, ProfileKind, folded, pprof};

use crate::common::{
    AgentGuard, Folded, ember, example, privileged, run, share_agrees, start_agent_logged, tempdir,
    wait_for_line,
};

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

/// What `offcpu` printed it measured itself: function → microseconds blocked.
fn measured_of(stdout: &[u8]) -> BTreeMap<String, f64> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()? == "blocked").then_some(())?;
            Some((f.next()?.to_owned(), f.next()?.parse().ok()?))
        })
        .collect()
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
    let measured = measured_of(&out.stdout);
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
    // The loop's own 7 ms sleeps are all below the minimum. Anything else charged is a
    // real wait of 30 ms or more that the loop did not make (the binary's pages read from
    // disk at exec on a cold page cache: `filemap_read;...;io_schedule`), which the
    // minimum must keep.
    let loop_waits = r.off_cpu.count_where(|f| {
        f.iter()
            .any(|x| x.contains("sleep_wait") || x.contains("clock_nanosleep"))
    });
    assert_eq!(
        loop_waits, 0,
        "waits shorter than --off-cpu-min were charged: {:#?}",
        r.off_cpu.lines
    );
    let io_waits = r
        .off_cpu
        .count_where(|f| f.iter().any(|x| x.contains("io_schedule")));
    assert_eq!(
        io_waits,
        r.off_cpu.total(),
        "off-CPU time charged outside the loop's sleeps and not an I/O wait: {:#?}",
        r.off_cpu.lines
    );
    // The CPU samples are still there.
    assert!(r.cpu.share("compute_burst") >= 0.5, "{:#?}", r.cpu.lines);
}

/// GETs `url` with curl; returns the status and the body.
fn curl(url: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", url])
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// The blocking call of `offcpu`'s sleep mode, as both `record` and the agent see it.
///
/// Until the agent has loaded a new process's unwind tables (its loop does, seconds after
/// it first sees the process on a busy node; `record` loads its command's before the
/// exec), the process's stacks are walked with frame pointers, and Debian's glibc has none: the
/// caller of `clock_nanosleep`, `sleep_wait`, is skipped (`run_sleep;__GI___clock_nanosleep`).
/// The blocking call itself is in every stack, so that is what the agent's off-CPU time is
/// checked under.
const SLEEP_CALL: &str = "__GI___clock_nanosleep";

/// `ember agent --off-cpu` over `offcpu 4 sleep`: the API's `type=off-cpu` answer for the
/// range charges the time the program measured blocked (±15 %, ≥ 90 % of it under its
/// blocking call), `type=cpu` puts its computing function first, `/metrics` counts the
/// switches, and both answers' shares agree with `ember record --off-cpu` run on the same
/// workload.
#[test]
fn the_agent_stores_off_cpu_windows_that_agree_with_record() {
    let Some(_p) = privileged("the_agent_stores_off_cpu_windows_that_agree_with_record") else {
        return;
    };
    let dir = tempdir();
    // At 99 Hz (`record` below takes 299); a grace long enough that nothing is left
    // unsymbolized.
    let (mut child, url, log) = start_agent_logged(
        dir.path(),
        "2s",
        // Every thread of the node switching out is a key of its own: room for them. `-v`:
        // "agent started" says when sampling runs (the API listens before the programs
        // are loaded and verified).
        &[
            "-v",
            "--off-cpu",
            "--stop-grace",
            "60s",
            "--counts-map-entries",
            "65536",
        ],
        &[],
    );
    wait_for_line(&mut child, &log, "agent started");
    let agent = AgentGuard(Some(child));
    // A first run, not measured: the agent learns the workload's binaries (their unwind
    // tables are loaded by its loop, seconds after a process is first seen on a busy
    // node; until then a wait in libc's `clock_nanosleep` is walked by frame pointers,
    // which skip its caller `sleep_wait`).
    let warm = run(std::process::Command::new(example("offcpu")).args(["1", "sleep"]));
    assert!(warm.status.success(), "offcpu failed");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let from = profiler_model::time::now_unix_ns() / 1_000_000_000;
    let workload = std::process::Command::new(example("offcpu"))
        .args(["4", "sleep"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting offcpu");
    let pid = workload.id();
    let out = workload.wait_with_output().expect("waiting for offcpu");
    assert!(out.status.success(), "offcpu failed");
    let measured = measured_of(&out.stdout);
    let ended = profiler_model::time::now_unix_ns();
    // Wait for an off-CPU window starting well after the workload ended (a drain after
    // its end closed the window before it): every one of its waits is then stored, in
    // both kinds' windows. The first drains name the node's binaries, which can hold a
    // window for many seconds on a busy node.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let (status, body) = curl(&format!(
            "{url}/api/v1/timeline?type=off-cpu&from={from}&to={}",
            ended / 1_000_000_000 + 3600
        ));
        let timeline: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let stored = timeline["points"].as_array().is_some_and(|points| {
            points.iter().any(|p| {
                p["start_unix_ns"]
                    .as_u64()
                    .is_some_and(|start| start > ended + 1_500_000_000)
            })
        });
        if status == 200 && stored {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no off-CPU window after the workload's end: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let to = profiler_model::time::now_unix_ns() / 1_000_000_000 + 1;
    // This run's process only (the warm-up's windows overlap the range).
    let range = format!("from={from}&to={to}&filter=pid={pid}&root=comm");
    let fetch = |kind: &str| {
        let (status, body) = curl(&format!("{url}/api/v1/profile?{range}&type={kind}"));
        let lines = log.lock().map(|l| l.join("\n")).unwrap_or_default();
        assert_eq!(status, 200, "type={kind}: {body}\n{lines}");
        Folded::parse(&body).process("offcpu")
    };
    let off_cpu = fetch("off-cpu");
    let cpu = fetch("cpu");
    let (status, types) = curl(&format!("{url}/api/v1/types"));
    assert!(status == 200 && types.contains("\"off-cpu\""), "{types}");
    let (_, metrics) = curl(&format!("{url}/metrics"));
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no `{name}` in /metrics:\n{metrics}"))
    };
    let (switches, recorded) = (
        counter("ember_off_cpu_switches_total"),
        counter("ember_off_cpu_recorded_total"),
    );
    let short = counter("ember_off_cpu_dropped_total{reason=\"below_min\"}");
    let evicted = counter("ember_off_cpu_dropped_total{reason=\"evicted\"}");
    eprintln!(
        "agent /metrics: {switches} switches, {recorded} recorded, {short} below --off-cpu-min, \
         {evicted} evicted"
    );
    assert!(recorded > 0 && switches >= recorded, "{metrics}");
    assert_eq!(evicted, 0, "a node this quiet fills no 65,536-entry map");
    drop(agent);

    // The off-CPU answer: the program's own measured blocked time, under its sleep.
    let measured_total: f64 = measured.values().sum();
    assert!(
        measured.contains_key("sleep_wait") && measured_total > 500_000.0,
        "the workload measured {measured:?}"
    );
    // What the program waited, charged anywhere in it (preemptions left out), and under
    // its blocking call.
    let charged = off_cpu.count_where(|s| !preempted(s));
    let ratio = charged as f64 / measured_total;
    let under = waited(&off_cpu, SLEEP_CALL);
    eprintln!(
        "agent: measured {measured_total:.0} µs, charged {charged} µs ({ratio:.3}), {under} µs \
         under `{SLEEP_CALL}`; {} CPU samples",
        cpu.total()
    );
    assert!(
        (0.85..=1.15).contains(&ratio),
        "charged {charged} µs for {measured_total:.0} µs measured: {:#?}",
        off_cpu.lines
    );
    assert!(
        under as f64 >= 0.9 * measured["sleep_wait"],
        "{under} µs under `{SLEEP_CALL}`, where `sleep_wait` measured {:.0} µs: {:#?}",
        measured["sleep_wait"],
        off_cpu.lines
    );
    // The CPU answer of the same range: the computing function first.
    let compute = cpu.share("compute_burst");
    assert!(cpu.total() >= 50, "only {} CPU samples", cpu.total());
    assert!(
        compute >= 0.5 && compute > cpu.share("sleep_wait"),
        "`compute_burst` has {compute:.3} of the CPU samples: {:#?}",
        cpu.lines
    );

    // The same workload under `ember record --off-cpu`: the same shares.
    let r = record("sleep", "4", &[]);
    // Shares of the time waited (preemptions left out: how often a runnable thread is
    // preempted depends on how busy the machine is at the moment, and the agent's own
    // drains make it busier than during `record`).
    let off_share =
        |f: &Folded| waited(f, SLEEP_CALL) as f64 / f.count_where(|s| !preempted(s)).max(1) as f64;
    let (agent_off, record_off) = (off_share(&off_cpu), off_share(&r.off_cpu));
    let (agent_cpu, record_cpu) = (compute, r.cpu.share("compute_burst"));
    eprintln!(
        "off-CPU share under `{SLEEP_CALL}`: agent {agent_off:.3}, record {record_off:.3}; CPU \
         share of `compute_burst`: agent {agent_cpu:.3}, record {record_cpu:.3}"
    );
    // Off-CPU shares weigh thousands of waits by their time: the 5-point floor applies.
    assert!(
        share_agrees(agent_off, record_off, 1_000_000),
        "off-CPU: agent {agent_off:.3}, record {record_off:.3}"
    );
    assert!(
        share_agrees(agent_cpu, record_cpu, cpu.total().min(r.cpu.total())),
        "CPU: agent {agent_cpu:.3}, record {record_cpu:.3}"
    );
}
