//! `ember record` end to end, against the workloads with known profiles.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Folded, ember, example, privileged, run, share_agrees, share_bound, tempdir};

/// Records `args` (after `ember record`) into a folded file and reads it back.
fn record_folded(extra: &[&str], command: &[&str]) -> (std::process::Output, Folded) {
    let dir = tempdir();
    let out_path = dir.path().join("out.folded");
    let mut cmd = ember();
    cmd.arg("record").arg("-o").arg(&out_path).args(extra);
    if !command.is_empty() {
        cmd.arg("--").args(command);
    }
    let out = run(&mut cmd);
    let folded = if out_path.exists() {
        Folded::read(&out_path)
    } else {
        Folded::default()
    };
    (out, folded)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

#[test]
fn split_workload_is_70_30_and_reaches_main() {
    let Some(_p) = privileged("split_workload_is_70_30_and_reaches_main") else {
        return;
    };
    let split = example("split");
    // 8 s at 99 Hz is about 790 samples: the counting noise (sd ≈ 1.6 points) stays well
    // inside the ±5 tolerance.
    let (out, folded) = record_folded(&[], &[split.to_str().unwrap(), "8"]);
    assert!(out.status.success(), "ember record failed");
    let workload = folded.process("split");
    let total = workload.total();
    assert!(total >= 300, "too few samples of the workload: {total}");
    let a = workload.share("fn_a");
    let b = workload.share("fn_b");
    eprintln!("split: {total} samples, fn_a {}, fn_b {}", pct(a), pct(b));
    let bound = share_bound(0.70, total);
    assert!(
        share_agrees(a, 0.70, total),
        "fn_a got {} (want 70 ± {})",
        pct(a),
        pct(bound)
    );
    assert!(
        share_agrees(b, 0.30, total),
        "fn_b got {} (want 30 ± {})",
        pct(b),
        pct(bound)
    );
    let main = workload.share("main");
    assert!(main >= 0.95, "only {} of samples reach main", pct(main));
    // The caller chain is intact: fn_a is called by work, which main calls.
    let chained = workload.count_where(|f| f.windows(3).any(|w| w == ["main", "work", "fn_a"]));
    assert!(
        chained as f64 >= 0.9 * workload.with_frame("fn_a") as f64,
        "fn_a samples without main;work above them: {:#?}",
        workload.lines
    );
}

#[test]
fn syscall_workload_shows_kernel_frames_under_its_user_frame() {
    let Some(_p) = privileged("syscall_workload_shows_kernel_frames_under_its_user_frame") else {
        return;
    };
    let (out, folded) = record_folded(&[], &[example("syscalls").to_str().unwrap(), "3"]);
    assert!(out.status.success());
    let w = folded.process("syscalls");
    // Kernel frames directly or transitively below do_syscalls, user frames first.
    let kernel_under_user = w.count_where(|f| {
        let Some(i) = f.iter().position(|x| *x == "do_syscalls") else {
            return false;
        };
        let rest = &f[i + 1..];
        let first_k = rest.iter().position(|x| x.ends_with("_[k]"));
        // Once kernel frames start, no user frame follows.
        first_k.is_some_and(|k| rest[k..].iter().all(|x| x.ends_with("_[k]")))
    });
    let share = kernel_under_user as f64 / w.total().max(1) as f64;
    eprintln!(
        "syscalls: {} samples, {} with kernel frames under do_syscalls",
        w.total(),
        pct(share)
    );
    assert!(
        share >= 0.3,
        "kernel frames under do_syscalls in only {}: {:#?}",
        pct(share),
        w.lines
    );

    // --no-kernel drops them all.
    let (out, folded) = record_folded(
        &["--no-kernel"],
        &[example("syscalls").to_str().unwrap(), "1"],
    );
    assert!(out.status.success());
    assert_eq!(
        folded
            .process("syscalls")
            .count_where(|f| f.iter().any(|x| x.ends_with("_[k]"))),
        0
    );
}

#[test]
fn rust_workload_shows_demangled_and_inlined_frames() {
    let Some(_p) = privileged("rust_workload_shows_demangled_and_inlined_frames") else {
        return;
    };
    let (out, folded) = record_folded(&[], &[example("rust-workload").to_str().unwrap(), "3"]);
    assert!(out.status.success());
    let w = folded.process("rust-workload");
    assert!(w.total() > 100, "too few samples: {}", w.total());
    let frames: std::collections::BTreeSet<&str> =
        w.lines.keys().flat_map(|l| l.split(';')).collect();
    // Demangled: no `_ZN`/`_R` symbols, and a generic instantiation with its path.
    assert!(
        !frames
            .iter()
            .any(|f| f.starts_with("_ZN") || f.starts_with("_R")),
        "mangled names left: {frames:#?}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.contains("rust_workload::checksum") && f.contains("u64")),
        "no demangled generic `rust_workload::checksum<u64>`: {frames:#?}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.contains("inlined_mix") && f.ends_with("_[i]")),
        "no inlined frame: {frames:#?}"
    );
    // The inlined frame sits under the function it was inlined into.
    assert!(
        w.count_where(|f| f
            .windows(2)
            .any(|p| p[0].contains("hot_outer") && p[1].contains("inlined_mix")))
            > 0
    );
}

#[test]
fn threaded_workload_shows_both_hot_functions() {
    let Some(_p) = privileged("threaded_workload_shows_both_hot_functions") else {
        return;
    };
    let (out, folded) = record_folded(&[], &[example("threads").to_str().unwrap(), "3"]);
    assert!(out.status.success());
    let w = folded.process("threads");
    let alpha = w.share("alpha_spin");
    let beta = w.share("beta_spin");
    eprintln!("threads: alpha {} beta {}", pct(alpha), pct(beta));
    assert!(
        alpha > 0.3 && beta > 0.3,
        "alpha {} beta {}",
        pct(alpha),
        pct(beta)
    );
}

#[test]
fn deep_recursion_is_recorded_to_depth() {
    let Some(_p) = privileged("deep_recursion_is_recorded_to_depth") else {
        return;
    };
    let (out, folded) = record_folded(&[], &[example("recursion").to_str().unwrap(), "2"]);
    assert!(out.status.success());
    let w = folded.process("recursion");
    let deep = w.count_where(|f| f.iter().filter(|x| **x == "recurse").count() >= 50);
    let share = deep as f64 / w.total().max(1) as f64;
    assert!(
        share > 0.8,
        "only {} of samples are ≥ 50 frames deep",
        pct(share)
    );
}

/// Starts a workload in the background for `--pid`/`--all` tests.
fn background(name: &str, seconds: &str) -> std::process::Child {
    Command::new(example(name))
        .arg(seconds)
        .stdout(Stdio::null())
        .spawn()
        .expect("starting a workload")
}

#[test]
fn pid_and_all_see_a_running_workload() {
    let Some(_p) = privileged("pid_and_all_see_a_running_workload") else {
        return;
    };
    let mut child = background("split", "8");
    std::thread::sleep(Duration::from_millis(200));
    let pid = child.id().to_string();
    let (out, folded) = record_folded(&["--pid", &pid, "--duration", "2s"], &[]);
    assert!(out.status.success());
    let w = folded.process("split");
    assert!(
        w.total() > 50 && w.share("fn_a") > 0.5,
        "--pid saw {:#?}",
        folded.lines
    );
    assert_eq!(w.total(), folded.total(), "--pid recorded other processes");

    let (out, folded) = record_folded(&["--all", "--duration", "2s"], &[]);
    assert!(out.status.success());
    let w = folded.process("split");
    assert!(
        w.total() > 50 && w.share("fn_a") > 0.5,
        "--all saw {:#?}",
        folded.lines
    );
    assert!(
        folded.process("swapper").total() == 0,
        "idle is left out by default"
    );
    child.kill().ok();
    child.wait().ok();
}

#[test]
fn command_exit_status_is_passed_through() {
    let Some(_p) = privileged("command_exit_status_is_passed_through") else {
        return;
    };
    let (out, _) = record_folded(&[], &["false"]);
    assert_eq!(out.status.code(), Some(1));
    let (out, _) = record_folded(&[], &["sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let (out, _) = record_folded(&[], &["true"]);
    assert_eq!(out.status.code(), Some(0));
    let (out, _) = record_folded(&[], &["/nonexistent/command"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot run `/nonexistent/command`"), "{err}");
}

#[test]
fn sigint_stops_cleanly_and_writes_the_output() {
    let Some(_p) = privileged("sigint_stops_cleanly_and_writes_the_output") else {
        return;
    };
    let mut wl = background("split", "10");
    let dir = tempdir();
    let path = dir.path().join("out.svg");
    let child = ember()
        .args(["record", "--all", "-o"])
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ember");
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("waiting for ember");
    wl.kill().ok();
    wl.wait().ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(&path).expect("the SVG was written");
    assert!(svg.contains("ember record: all processes"), "title");
    assert!(
        svg.contains(" Hz, ") && svg.contains(" samples"),
        "subtitle"
    );
    assert!(svg.contains("fn_a"), "the workload is in the graph");
}

#[test]
fn bad_input_gets_clear_errors() {
    // These need no privileges: they fail before anything is loaded, or they check
    // the privileged path's message only as root.
    let out = run(ember().args(["record"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pid"));

    let out = run(ember().args(["record", "--all", "--frequency", "0"]));
    assert_eq!(out.status.code(), Some(2));

    let out = run(ember().args(["record", "--all", "--duration", "soon"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("such as 30s"));

    let out = run(ember().args(["record", "--all", "-o", "x.png"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--format svg|folded"));

    let Some(_p) = privileged("bad_input_gets_clear_errors") else {
        return;
    };
    let out = run(ember().args([
        "record",
        "--pid",
        "999999999",
        "-d",
        "1s",
        "-o",
        "/dev/null",
        "-f",
        "folded",
    ]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such process: 999999999"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unprivileged_users_are_told_what_privileges_are_needed() {
    let Some(_p) = privileged("unprivileged_users_are_told_what_privileges_are_needed") else {
        return;
    };
    // Drop to `nobody` (setpriv is util-linux's); the kernel then refuses the eBPF program.
    let dir = tempdir();
    let out = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_ember"))
        .args(["record", "--all", "-d", "1s", "-o"])
        .arg(dir.path().join("x.folded")));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // The probe names what is missing and how to grant it, before anything is loaded.
    assert!(
        err.contains("lacks CAP_BPF and CAP_PERFMON") && err.contains("setcap cap_bpf,cap_perfmon"),
        "{err}"
    );
    assert!(!err.contains("panicked") && !err.contains("Os {"), "{err}");
}

#[test]
fn an_idle_target_is_reported_as_nothing_sampled() {
    let Some(_p) = privileged("an_idle_target_is_reported_as_nothing_sampled") else {
        return;
    };
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("starting sleep");
    let dir = tempdir();
    let out = run(ember()
        .args([
            "record",
            "--pid",
            &sleeper.id().to_string(),
            "-d",
            "1s",
            "-o",
        ])
        .arg(dir.path().join("x.folded")));
    sleeper.kill().ok();
    sleeper.wait().ok();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing sampled from pid"), "{err}");
    assert!(err.contains("--off-cpu to see where it waits"), "{err}");
}
