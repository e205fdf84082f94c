//! The `.eh_frame` unwinder (issue 7) end to end: workloads built without frame pointers,
//! recorded with `--unwinder dwarf` and, for contrast, `--unwinder fp`.

use crate::common::{Folded, ember, example, privileged, run, share_agrees, share_bound, tempdir};

/// Records `command` with `extra` options; returns the workload's stacks.
fn record(extra: &[&str], comm: &str, command: &[&str]) -> Folded {
    record_with_stderr(extra, comm, command).0
}

/// [`record`], and ember's stderr.
fn record_with_stderr(extra: &[&str], comm: &str, command: &[&str]) -> (Folded, String) {
    let dir = tempdir();
    let out_path = dir.path().join("out.folded");
    let mut cmd = ember();
    cmd.arg("record")
        .arg("-o")
        .arg(&out_path)
        .args(["--no-kernel"])
        .args(extra)
        .arg("--")
        .args(command);
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "ember record {extra:?} -- {command:?} failed"
    );
    (
        Folded::read(&out_path).process(comm),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// ≥ 95 % of the samples reach `main` and the 70/30 split holds within ± 5 points.
fn assert_complete_split(w: &Folded, what: &str, fn_a: &str, fn_b: &str) {
    let total = w.total();
    // 6 s at 99 Hz is ~590 samples on an idle CPU; tests running in parallel can halve it.
    assert!(total >= 200, "{what}: too few samples: {total}");
    let main = w.share("main");
    let a = w.share(fn_a);
    let b = w.share(fn_b);
    eprintln!(
        "{what}: {total} samples, main {}, {fn_a} {}, {fn_b} {}",
        pct(main),
        pct(a),
        pct(b)
    );
    assert!(
        main >= 0.95,
        "{what}: only {} of samples reach main: {:#?}",
        pct(main),
        w.lines
    );
    let bound = pct(share_bound(0.70, total));
    assert!(
        share_agrees(a, 0.70, total),
        "{what}: {fn_a} got {} (± {bound})",
        pct(a)
    );
    assert!(
        share_agrees(b, 0.30, total),
        "{what}: {fn_b} got {} (± {bound})",
        pct(b)
    );
}

#[test]
fn split_nofp_reaches_main_with_dwarf_and_not_with_fp() {
    let Some(_p) = privileged("split_nofp_reaches_main_with_dwarf_and_not_with_fp") else {
        return;
    };
    let bin = example("split-nofp");
    let dwarf = record(
        &["--unwinder", "dwarf"],
        "split-nofp",
        &[bin.to_str().unwrap(), "6"],
    );
    assert_complete_split(&dwarf, "split-nofp (dwarf)", "fn_a", "fn_b");
    // main -> work -> fn_a in that order, under libc's start code.
    let chained = dwarf.count_where(|f| {
        f.windows(3).any(|w| w == ["main", "work", "fn_a"])
            && f.iter().any(|x| x.contains("__libc_start_call_main"))
    });
    assert!(
        chained as f64 >= 0.9 * dwarf.with_frame("fn_a") as f64,
        "fn_a without libc;main;work above it: {:#?}",
        dwarf.lines
    );

    // The contrast: frame pointers alone lose main on this binary.
    let fp = record(
        &["--unwinder", "fp"],
        "split-nofp",
        &[bin.to_str().unwrap(), "3"],
    );
    let fp_main = fp.share("main");
    eprintln!(
        "split-nofp (fp): {} samples, main {}",
        fp.total(),
        pct(fp_main)
    );
    assert!(fp.total() >= 100, "too few samples: {}", fp.total());
    assert!(
        fp_main < 0.95,
        "the frame-pointer walk reached main in {}: the test proves nothing",
        pct(fp_main)
    );
}

#[test]
fn rust_release_build_without_frame_pointers_reaches_main() {
    let Some(_p) = privileged("rust_release_build_without_frame_pointers_reaches_main") else {
        return;
    };
    let bin = example("rust-split-nofp");
    let w = record(
        &["--unwinder", "dwarf"],
        "rust-split-nofp",
        &[bin.to_str().unwrap(), "6"],
    );
    assert_complete_split(
        &w,
        "rust-split-nofp (dwarf)",
        "rust_split::fn_a",
        "rust_split::fn_b",
    );
    // Through std's runtime into the program's own main and work.
    let chained = w.count_where(|f| {
        f.iter().any(|x| x.contains("lang_start"))
            && f.windows(2)
                .any(|p| p == ["rust_split::main", "rust_split::work"])
    });
    assert!(
        chained as f64 >= 0.95 * w.total() as f64,
        "stacks without lang_start..rust_split::main;rust_split::work: {:#?}",
        w.lines
    );
}

#[test]
fn libc_hot_loop_reaches_main_through_qsort() {
    let Some(_p) = privileged("libc_hot_loop_reaches_main_through_qsort") else {
        return;
    };
    let bin = example("libc-hot");
    let w = record(
        &["--unwinder", "dwarf"],
        "libc-hot",
        &[bin.to_str().unwrap(), "4"],
    );
    let total = w.total();
    assert!(total >= 200, "too few samples: {total}");
    // Samples inside libc's sort (or the callback it calls) whose stack goes on, through
    // qsort, to sort_round and main.
    let in_sort = w.count_where(|f| f.iter().any(|x| x.contains("msort")));
    let through = w.count_where(|f| {
        let Some(m) = f.iter().position(|x| *x == "main") else {
            return false;
        };
        let rest = &f[m + 1..];
        rest.first() == Some(&"sort_round")
            && rest.get(1).is_some_and(|x| x.contains("qsort"))
            && rest.iter().any(|x| x.contains("msort"))
    });
    let callback = w.count_where(|f| {
        f.last() == Some(&"compare_items") && f.iter().any(|x| x.contains("msort"))
    });
    eprintln!(
        "libc-hot: {total} samples, {in_sort} in msort, {through} main;sort_round;qsort;msort, \
         {callback} in the callback under msort"
    );
    assert!(
        in_sort as f64 >= 0.5 * total as f64,
        "the workload should sit in qsort: {:#?}",
        w.lines
    );
    assert!(
        through as f64 >= 0.95 * in_sort as f64,
        "samples in libc's sort without main;sort_round;qsort above: {:#?}",
        w.lines
    );
    assert!(
        callback > 0,
        "no sample in the callback called from libc: {:#?}",
        w.lines
    );
}

/// Issue 16: a sample inside the vDSO (`clock_gettime`, code the kernel maps into every
/// process with no file behind it) keeps every caller: with the vDSO's own unwind table,
/// not frame pointers, which dropped `read_clocks` and glibc's wrapper from 1.2 % of them.
#[test]
fn vdso_samples_keep_their_callers() {
    let Some(_p) = privileged("vdso_samples_keep_their_callers") else {
        return;
    };
    let bin = example("clock");
    let w = record(
        &["--unwinder", "dwarf"],
        "clock",
        &[bin.to_str().unwrap(), "6"],
    );
    let total = w.total();
    // 6 s at 99 Hz is ~590 samples on an idle CPU; a busy machine can halve it.
    assert!(total >= 150, "too few samples: {total}");
    // Unwound to `_start` (the process's first milliseconds, before its tables are loaded,
    // are issue 16's first item), with the vDSO's `clock_gettime` as the leaf (frame 0 is
    // the process name).
    let complete_in_vdso =
        |f: &[&str]| f.get(1) == Some(&"_start") && f.last() == Some(&"clock_gettime");
    let in_vdso = w.count_where(|f| complete_in_vdso(f));
    let whole = w.count_where(|f| {
        complete_in_vdso(f)
            && f.ends_with(&[
                "main",
                "read_clocks",
                "__GI___clock_gettime",
                "clock_gettime",
            ])
    });
    eprintln!("clock: {total} samples, {in_vdso} in the vDSO from _start, {whole} of them whole");
    assert!(
        in_vdso as f64 >= 0.6 * total as f64,
        "the workload should sit in the vDSO: {:#?}",
        w.lines
    );
    assert_eq!(
        whole, in_vdso,
        "vDSO samples that skip a caller: {:#?}",
        w.lines
    );
}

/// What a recursion stack was.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    /// main, exactly `depth` recurse frames, leaf_spin.
    Complete,
    /// Marked truncated at the root, only recurse frames above leaf_spin.
    Truncated,
    /// Not in leaf_spin (descending, returning, printing the summary).
    Other,
}

/// Checks one recursion stack: a stack in leaf_spin is either complete or marked truncated
/// at the root, never a wrong chain.
fn check_recursion_stack(f: &[&str], depth: usize) -> Result<Shape, String> {
    let Some(leaf) = f.iter().position(|x| *x == "leaf_spin") else {
        return Ok(Shape::Other);
    };
    if f.get(1) == Some(&"[truncated]") {
        // The walk gave up: what is there must be a true part of the stack. Either only
        // recurse frames (cut inside the recursion), or all `depth` of them under main
        // (cut above main, e.g. in libc's start code), never an invented chain.
        let Some(m) = f.iter().position(|x| *x == "main") else {
            if !f[2..leaf].iter().all(|x| *x == "recurse") {
                return Err("truncated stack with frames other than recurse".into());
            }
            return Ok(Shape::Truncated);
        };
        let recurse = &f[m + 1..leaf];
        if recurse.len() != depth || !recurse.iter().all(|x| *x == "recurse") {
            return Err(format!(
                "truncated above main with {} frames between main and leaf_spin, want {depth} recurse",
                recurse.len()
            ));
        }
        return Ok(Shape::Truncated);
    }
    let Some(m) = f.iter().position(|x| *x == "main") else {
        return Err("neither complete nor marked truncated".into());
    };
    let recurse = &f[m + 1..leaf];
    if recurse.len() != depth || !recurse.iter().all(|x| *x == "recurse") {
        return Err(format!(
            "{} frames between main and leaf_spin, want {depth} recurse",
            recurse.len()
        ));
    }
    Ok(Shape::Complete)
}

#[test]
fn deep_recursion_is_complete_or_marked_truncated_never_wrong() {
    let Some(_p) = privileged("deep_recursion_is_complete_or_marked_truncated_never_wrong") else {
        return;
    };
    let bin = example("recursion-nofp");
    // 110 levels fit in the 127-frame walk: complete stacks.
    let w = record(
        &["--unwinder", "dwarf"],
        "recursion-nofp",
        &[bin.to_str().unwrap(), "3", "110"],
    );
    let mut complete = 0u64;
    for (line, count) in &w.lines {
        let frames: Vec<&str> = line.split(';').collect();
        match check_recursion_stack(&frames, 110) {
            Ok(Shape::Complete) => complete += count,
            Ok(_) => {}
            Err(e) => panic!("depth 110: {e}: {line}"),
        }
    }
    eprintln!("recursion depth 110: {complete} of {} complete", w.total());
    assert!(w.total() >= 100, "too few samples: {}", w.total());
    assert!(
        complete as f64 >= 0.95 * w.total() as f64,
        "depth 110 should unwind completely: {:#?}",
        w.lines
    );

    // 300 levels do not fit: every leaf stack is marked truncated, none is wrong.
    let w = record(
        &["--unwinder", "dwarf"],
        "recursion-nofp",
        &[bin.to_str().unwrap(), "3", "300"],
    );
    let mut truncated = 0u64;
    for (line, count) in &w.lines {
        let frames: Vec<&str> = line.split(';').collect();
        match check_recursion_stack(&frames, 300) {
            Ok(Shape::Complete) => panic!("depth 300 cannot be complete in 127 frames: {line}"),
            Ok(Shape::Truncated) => truncated += count,
            Ok(Shape::Other) => {}
            Err(e) => panic!("depth 300: {e}: {line}"),
        }
    }
    eprintln!(
        "recursion depth 300: {truncated} of {} truncated",
        w.total()
    );
    assert!(
        truncated as f64 >= 0.9 * w.total() as f64,
        "depth 300: leaf stacks should be marked truncated: {:#?}",
        w.lines
    );
}

#[test]
fn binary_without_eh_frame_falls_back_to_frame_pointers_and_is_named() {
    let Some(_p) = privileged("binary_without_eh_frame_falls_back_to_frame_pointers_and_is_named")
    else {
        return;
    };
    // The frame-pointer build of split, its unwind sections removed: its own frames are
    // stepped with frame pointers, libc's with tables, in one stack.
    let dir = tempdir();
    let bin = dir.path().join("split-nocfi");
    let status = std::process::Command::new("objcopy")
        .args([
            "--remove-section=.eh_frame",
            "--remove-section=.eh_frame_hdr",
            "--remove-section=.debug_frame",
        ])
        .arg(example("split"))
        .arg(&bin)
        .status()
        .expect("objcopy (binutils)");
    assert!(status.success());
    let (w, stderr) = record_with_stderr(
        &["--unwinder", "dwarf"],
        "split-nocfi",
        &[bin.to_str().unwrap(), "5"],
    );
    assert!(
        stderr.contains("split-nocfi") && stderr.contains("no .eh_frame or .debug_frame"),
        "no warning naming the binary without tables: {stderr}"
    );
    let total = w.total();
    let complete = w.count_where(|f| {
        f.contains(&"main") && f.iter().any(|x| x.contains("__libc_start_call_main"))
    });
    eprintln!("split-nocfi: {complete} of {total} through libc's start code to main");
    assert!(total >= 200, "too few samples: {total}");
    assert!(
        complete as f64 >= 0.95 * total as f64,
        "frame-pointer frames and table frames should join: {:#?}",
        w.lines
    );
}

#[test]
fn over_the_table_memory_limit_binaries_are_named_and_fall_back() {
    let Some(_p) = privileged("over_the_table_memory_limit_binaries_are_named_and_fall_back")
    else {
        return;
    };
    // libc's table is about 220 KiB: it does not fit in 64 KiB.
    let bin = example("libc-hot");
    let (w, stderr) = record_with_stderr(
        &["--unwinder", "dwarf", "--unwind-table-mem", "64KiB"],
        "libc-hot",
        &[bin.to_str().unwrap(), "2"],
    );
    assert!(
        stderr.contains("--unwind-table-mem") && stderr.contains("libc.so.6"),
        "no warning naming libc as over the limit: {stderr}"
    );
    // Still a profile, and its stacks through libc are marked rather than made up.
    assert!(w.total() >= 50, "too few samples: {}", w.total());
    let wrong = w.count_where(|f| {
        f.contains(&"main") && f.iter().any(|x| x.contains("msort")) && !f.contains(&"sort_round")
    });
    assert_eq!(
        wrong, 0,
        "stacks through qsort skipping sort_round: {:#?}",
        w.lines
    );
}

#[test]
fn forked_and_execd_processes_get_their_own_tables() {
    let Some(_p) = privileged("forked_and_execd_processes_get_their_own_tables") else {
        return;
    };
    // The shell forks one split-nofp, then replaces itself with another (same pid, new
    // image: the exec tracepoint drops the shell's mappings and the new image's are
    // loaded).
    let bin = example("split-nofp");
    let w = record(
        &["--unwinder", "dwarf"],
        "split-nofp",
        &[
            "sh",
            "-c",
            "\"$0\" 3 && exec \"$0\" 3",
            bin.to_str().unwrap(),
        ],
    );
    let total = w.total();
    let main = w.share("main");
    eprintln!("fork + exec: {total} samples, main {}", pct(main));
    // 6 s of split at 99 Hz is ~590 samples on an idle CPU; split runs for wall-clock time,
    // so other work on the machine (tests running in parallel) halves that easily. Half
    // of the samples are the exec'd image's: if it had no tables, main would be near 50 %.
    assert!(total >= 150, "too few samples: {total}");
    assert!(
        main >= 0.95,
        "only {} reach main after fork and exec: {:#?}",
        pct(main),
        w.lines
    );
}
