//! Complete from a process's first sample (issue 16): processes that start while
//! `ember record --all` runs unwind through their executable, libc and the loader from the
//! tables published by file, found from the PC with `bpf_find_vma`, before userspace has
//! registered them.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{AgentLog, Folded, ember, example, keep_stderr, privileged, tempdir};

/// `ember record --all` into `out` for `seconds`, started and attached: returns once the
/// sampler says so (and libc's table, preloaded in the background, has had a moment).
fn record_all(out: &std::path::Path, seconds: &str) -> (Child, AgentLog) {
    let mut child = ember()
        .args([
            "record",
            "--all",
            "-v",
            "-F",
            "499",
            "--no-kernel",
            "-d",
            seconds,
            "-o",
        ])
        .arg(out)
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ember record --all");
    let log = keep_stderr(&mut child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
        if has("sampler attached") && has("ld-linux-x86-64.so.2") {
            break;
        }
        assert!(
            child.try_wait().ok().flatten().is_none() && Instant::now() < deadline,
            "ember record --all did not attach:\n{}",
            lines.join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, log)
}

fn finish(mut child: Child, log: &AgentLog) {
    let status = child.wait().expect("waiting for ember");
    assert!(
        status.success(),
        "ember record --all failed:\n{}",
        log.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join("\n")
    );
}

fn unnamed(frame: &str) -> bool {
    frame == "[unknown]" || frame.contains("+0x")
}

#[test]
fn a_storm_of_4ms_children_is_complete_from_start() {
    let Some(_p) = privileged("a_storm_of_4ms_children_is_complete_from_start") else {
        return;
    };
    let dir = tempdir();
    let path = dir.path().join("storm.folded");
    // Built (on first use) before ember starts its clock.
    let storm = example("storm");
    let (child, log) = record_all(&path, "6s");
    // 4 ms children, 2 at a time: about 200 new processes a second, each exec'd after
    // ember started, most sampled once or twice before they exit. glibc's start code
    // keeps no frame pointers.
    let out = Command::new(storm)
        .args(["3", "4", "2"])
        .output()
        .expect("running storm");
    assert!(out.status.success(), "storm failed");
    let said = String::from_utf8_lossy(&out.stdout);
    let per_second: f64 = said
        .split(&['(', '/'][..])
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("storm printed no rate: {said}"));
    assert!(per_second >= 150.0, "only {per_second} children a second");
    finish(child, &log);

    let folded = Folded::read(&path).process("storm");
    // The children's samples: those in a hot function (the launcher never runs one).
    let hot = |s: &[&str]| s.iter().any(|f| f.starts_with("storm_hot_"));
    let children = folded.count_where(hot);
    assert!(children >= 300, "too few children's samples: {children}");
    let complete = folded.count_where(|s| {
        hot(s)
            && s[1..].starts_with(&[
                "_start",
                "__libc_start_main_impl",
                "__libc_start_call_main",
                "main",
                "child",
            ])
    });
    let truncated = folded.count_where(|s| hot(s) && s.contains(&"[truncated]"));
    let with_unnamed = folded.count_where(|s| hot(s) && s.iter().any(|f| unnamed(f)));
    let share = |n: u64| n as f64 / children as f64 * 100.0;
    eprintln!(
        "storm: {per_second:.0} children/s, {children} children's samples: complete {:.1}%, \
         truncated {:.1}%, an unnamed frame {:.2}%",
        share(complete),
        share(truncated),
        share(with_unnamed)
    );
    let incomplete: Vec<_> = folded
        .lines
        .iter()
        .filter(|(l, _)| {
            let s: Vec<&str> = l.split(';').collect();
            hot(&s) && !s[1..].starts_with(&["_start"])
        })
        .collect();
    assert!(
        share(complete) >= 95.0,
        "only {:.1}% of the children's samples are complete from _start: {incomplete:#?}",
        share(complete)
    );
    // A child that exited before the symbolizer captured its libc mapping is named from
    // the mappings the program's file lookup learned for it.
    assert!(
        share(with_unnamed) < 1.0,
        "{:.2}% of the children's samples have an unnamed frame",
        share(with_unnamed)
    );
}

#[test]
fn a_workload_started_after_record_all_is_one_tower() {
    let Some(_p) = privileged("a_workload_started_after_record_all_is_one_tower") else {
        return;
    };
    let dir = tempdir();
    let path = dir.path().join("all.folded");
    let split = example("split");
    let (child, log) = record_all(&path, "4s");
    // Started a moment after ember: its first samples come before userspace has read
    // its mappings.
    let out = Command::new(split)
        .arg("2")
        .stdout(Stdio::null())
        .status()
        .expect("running split");
    assert!(out.success());
    finish(child, &log);
    let w = Folded::read(&path).process("split");
    let total = w.total();
    assert!(total >= 150, "too few split samples: {total}");
    let tower = w.count_where(|s| {
        s[1..].starts_with(&[
            "_start",
            "__libc_start_main_impl",
            "__libc_start_call_main",
            "main",
        ])
    });
    let in_work = w.with_frame("work");
    eprintln!(
        "split after ember: {total} samples, {tower} complete from _start, {in_work} in work"
    );
    // Start-up (the loader, libc's init) is a few samples outside `main`.
    assert!(
        tower as f64 >= 0.95 * in_work as f64 && in_work as f64 >= 0.9 * total as f64,
        "split is not one tower: {:#?}",
        w.lines
    );
}

#[test]
fn a_library_dlopened_while_the_process_runs_unwinds_from_its_first_sample() {
    let Some(_p) =
        privileged("a_library_dlopened_while_the_process_runs_unwinds_from_its_first_sample")
    else {
        return;
    };
    let dir = tempdir();
    let path = dir.path().join("dlopen.folded");
    let dlopen = example("dlopen");
    let (child, log) = record_all(&path, "5s");
    // 1 s in its own code (registered by then), then libm dlopened and 2 s in its cos:
    // the new mapping is not in the process's registered entry, and libm keeps no frame
    // pointers, so only its table (found by file) keeps `in_libm` above cos.
    let out = Command::new(dlopen)
        .arg("2")
        .status()
        .expect("running dlopen");
    assert!(out.success());
    finish(child, &log);
    let w = Folded::read(&path).process("dlopen");
    let in_cos = |s: &[&str]| s.iter().any(|f| f.contains("cos"));
    let cos = w.count_where(in_cos);
    let under_caller = w.count_where(|s| {
        in_cos(s)
            && s[1..].starts_with(&[
                "_start",
                "__libc_start_main_impl",
                "__libc_start_call_main",
                "main",
                "in_libm",
            ])
    });
    eprintln!("dlopen: {cos} samples in libm's cos, {under_caller} complete under in_libm");
    assert!(cos >= 200, "too few samples in cos: {:#?}", w.lines);
    assert!(
        under_caller as f64 >= 0.95 * cos as f64,
        "cos lost its caller: {:#?}",
        w.lines
    );
}
