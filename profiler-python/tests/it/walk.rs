//! The walker and namer on real interpreters.

use std::time::{Duration, Instant};

use profiler_python::{WalkError, display_file, walk};
use symbolizer::procfs::Procfs;

use crate::common::{Script, Walker, pythons};

const WALKS: usize = 30;

fn pause() {
    std::thread::sleep(Duration::from_millis(37));
}

#[test]
fn split_script_chain_names_files_and_lines_on_every_interpreter() {
    let mut verified = Vec::new();
    for python in pythons(9..=13) {
        let script = Script::start(&python, "split.py", "60");
        let mut w = Walker::attach(script.pid());
        assert_eq!(
            (w.interp.version.major, w.interp.version.minor),
            python.minor,
            "{python:?}"
        );
        assert!(w.interp.supported());
        let scanned = profiler_python::scan(&Procfs::default()).expect("scan");
        assert!(
            scanned
                .iter()
                .any(|r| r.as_ref().is_ok_and(|i| *i == w.interp)),
            "{python:?} not in the scan"
        );
        assert_eq!(
            w.interp.shared,
            !python.path.starts_with("/usr/bin"),
            "{:?}",
            w.interp
        );
        w.wait_for("work");
        let (mut a, mut b, mut complete) = (0, 0, 0);
        let dir = crate::common::scripts_dir();
        for _ in 0..WALKS {
            pause();
            let Some(threads) = w.walk_stopped() else {
                continue;
            };
            assert_eq!(threads.len(), 1, "one thread");
            let t = &threads[0];
            assert!(!t.stack.truncated);
            let names = t.names();
            let root_first: Vec<&str> = names.iter().rev().copied().collect();
            assert!(
                root_first.starts_with(&["<module>", "main", "run"]),
                "{python:?}: {root_first:?}"
            );
            if root_first.get(3) != Some(&"work") {
                // `run` shuffles each round's order: the rest is in the random module.
                let callees = &t.frames[..t.frames.len() - 3];
                assert!(
                    callees.iter().all(|f| f.file.ends_with("random.py")),
                    "{python:?}: {root_first:?}"
                );
                continue;
            }
            let leaf = *root_first.last().expect("frames");
            match root_first.len() {
                5 if leaf == "fn_a" => a += 1,
                5 if leaf == "fn_b" => b += 1,
                4 => {}
                _ => panic!("{python:?}: unexpected stack {root_first:?}"),
            }
            complete += 1;
            for f in &t.frames {
                assert_eq!(display_file(&f.file, &[&dir]), "split.py", "{f:?}");
                assert!(
                    f.file.ends_with("split.py"),
                    "{python:?}: file {:?}",
                    f.file
                );
            }
            // Each caller is at the line of its call; the leaf is in its own body.
            let frames: Vec<_> = t.frames.iter().rev().collect();
            let line = |i: usize| script.line(frames[i].line.expect("a line"));
            assert!(
                line(1).contains("run("),
                "{python:?}: main at {:?}",
                line(1)
            );
            assert!(
                line(2).contains("work("),
                "{python:?}: run at {:?}",
                line(2)
            );
            if frames.len() == 5 {
                assert!(
                    line(3).contains(&format!("{leaf}()")),
                    "{python:?}: work at {:?} calling {leaf}",
                    line(3)
                );
                let (def, end) = script.body(leaf);
                let at = frames[4].line.expect("leaf line");
                // At its first instruction (3.11+'s RESUME) a function is at its `def` line.
                assert!(
                    def <= at && at <= end,
                    "{python:?}: {leaf} at {at}, body {def}..={end}"
                );
            }
            // An evaluation call began at `<module>` (from C); from 3.11 the Python
            // calls under it run in the same one, before that each frame is its own.
            let entries: Vec<bool> = t.stack.frames.iter().rev().map(|f| f.is_entry).collect();
            assert!(entries[0], "{python:?}: {entries:?}");
            assert!(
                entries[1..].iter().all(|&e| e == (python.minor < (3, 11))),
                "{python:?}: {entries:?}"
            );
        }
        assert!(
            complete >= WALKS / 2,
            "{python:?}: only {complete} walks read"
        );
        assert!(a > 0 && b > 0, "{python:?}: fn_a {a}, fn_b {b}");
        // The cost of a walk of the running process, names from the cache (a figure).
        let started = Instant::now();
        let walked = (0..100).filter(|_| w.walk().is_some()).count();
        println!(
            "{}: {walked}/100 walks of the running process, {:?} each with names",
            w.interp.version,
            started.elapsed() / 100
        );
        verified.push(format!("{} ({})", w.interp.version, python.path.display()));
    }
    println!("python frames verified on: {}", verified.join(", "));
    assert!(!verified.is_empty() || std::env::var_os("CI").is_none());
}

#[test]
fn each_thread_of_the_two_thread_script_has_its_own_hot_function() {
    for python in pythons(9..=13) {
        let script = Script::start(&python, "threads.py", "60");
        let mut w = Walker::attach(script.pid());
        w.wait_for("beta_loop");
        w.wait_for("alpha_loop");
        let tasks = Procfs::default().tasks(script.pid()).expect("tasks");
        let (mut alpha_hot, mut beta_hot) = (0, 0);
        for _ in 0..WALKS {
            pause();
            let Some(threads) = w.walk_stopped() else {
                continue;
            };
            assert_eq!(threads.len(), 3, "{python:?}: main, alpha, beta");
            let with = |name: &str| {
                threads
                    .iter()
                    .filter(|t| t.names().contains(&name))
                    .collect::<Vec<_>>()
            };
            let (alpha, beta, main) = (with("alpha_loop"), with("beta_loop"), with("main"));
            assert_eq!(
                (alpha.len(), beta.len(), main.len()),
                (1, 1, 1),
                "{python:?}"
            );
            for (thread, hot, other) in [
                (alpha[0], "alpha_hot", "beta"),
                (beta[0], "beta_hot", "alpha"),
            ] {
                let names = thread.names();
                assert!(
                    !names.iter().any(|n| n.starts_with(other)),
                    "{python:?}: {names:?}"
                );
                assert!(
                    names.contains(&"Thread.run") || names.contains(&"run"),
                    "{names:?}"
                );
                if names[0] == hot {
                    if hot == "alpha_hot" {
                        alpha_hot += 1;
                    } else {
                        beta_hot += 1;
                    }
                }
                match thread.stack.native_thread_id {
                    Some(tid) => assert!(tasks.contains(&tid), "{tid} not in {tasks:?}"),
                    None => assert!(python.minor < (3, 11)),
                }
            }
            assert_ne!(alpha[0].stack.thread_id, beta[0].stack.thread_id);
        }
        assert!(
            alpha_hot > 0 && beta_hot > 0,
            "{python:?}: {alpha_hot} {beta_hot}"
        );
    }
}

#[test]
fn the_c_extension_scripts_top_python_frame_is_its_caller() {
    for python in pythons(9..=13) {
        let script = Script::start(&python, "cext.py", "60");
        let mut w = Walker::attach(script.pid());
        w.wait_for("compress_loop");
        let (mut walks, mut at_call) = (0, 0);
        for _ in 0..WALKS {
            pause();
            let Some(threads) = w.walk_stopped() else {
                continue;
            };
            let names = threads[0].names();
            assert_eq!(
                names,
                ["compress_loop", "run", "main", "<module>"],
                "{python:?}"
            );
            walks += 1;
            let line = threads[0].frames[0].line.expect("line");
            if script.line(line).contains("zlib.compress(") {
                at_call += 1;
            }
        }
        assert!(walks >= WALKS / 2, "{python:?}: {walks}");
        assert!(
            at_call * 2 >= walks,
            "{python:?}: {at_call} of {walks} at the call"
        );
    }
}

#[test]
fn a_short_lived_process_is_walked_and_stays_named_after_it_exits() {
    for python in pythons(9..=13) {
        let mut script = Script::start(&python, "short.py", "0.05");
        let started = Instant::now();
        let pid = script.pid();
        let mut w = Walker::attach(pid);
        // Code addresses are reused within a process too (code run once at start-up is
        // freed): the last name read at an address is the one cached for it.
        let mut seen = std::collections::HashMap::new();
        while script.child.try_wait().expect("wait").is_none() {
            if let Ok(stacks) = walk(&w.mem, &w.interp, 128) {
                for frame in stacks.iter().flat_map(|s| s.frames.iter()) {
                    if let Ok(named) = w.namer.name(&w.mem, &w.interp, frame) {
                        seen.insert(frame.code, named.qualname);
                    }
                }
            }
        }
        let lived = started.elapsed();
        assert!(
            seen.values().any(|n| n == "burst" || n == "short_hot"),
            "{python:?}: lived {lived:?}, saw {seen:?}"
        );
        // Gone: reads fail cleanly, and what was read is still named from the cache.
        assert!(matches!(
            walk(&w.mem, &w.interp, 128),
            Err(WalkError::Read { .. })
        ));
        for (code, name) in &seen {
            let info = w
                .namer
                .cached(pid, w.interp.start_time, *code)
                .expect("cached");
            assert_eq!(&info.qualname, name);
            assert!(
                info.file.ends_with("short.py")
                    || info.file.starts_with('<')
                    || info.file.contains("python3"),
                "{python:?}: {name} at {code:#x} named from file {:?}",
                info.file
            );
        }
    }
}

#[test]
fn older_interpreters_are_found_and_reported_unsupported() {
    // 3.6 and older have no `_PyRuntime`: they are not found at all.
    let older = pythons(7..=8);
    for python in &older {
        let script = Script::start(python, "split.py", "30");
        let w = Walker::attach(script.pid());
        assert_eq!(
            (w.interp.version.major, w.interp.version.minor),
            python.minor
        );
        assert!(!w.interp.supported());
        assert!(matches!(
            walk(&w.mem, &w.interp, 128),
            Err(WalkError::Unsupported { .. })
        ));
    }
    println!("unsupported interpreters checked: {}", older.len());
}

#[test]
fn an_interpreter_in_its_own_mount_namespace_is_found_and_walked() {
    // Debian's interpreter is one file: copied onto a tmpfs mounted only in the script's
    // own mount namespace, it is at a path that does not exist out here.
    let Some(python) = pythons(11..=11)
        .into_iter()
        .find(|p| p.path.starts_with("/usr/bin"))
    else {
        println!("skipped: no /usr/bin/python3.11");
        return;
    };
    let dir = tempfile::tempdir().expect("mount point");
    let root = dir.path().display().to_string();
    let scripts = crate::common::scripts_dir().display().to_string();
    let shell = format!(
        "mount -t tmpfs none {root} && cp {} {root}/python3.11 && cp {scripts}/split.py {root}/ \
         && cd {root} && exec ./python3.11 split.py 60",
        python.path.display()
    );
    let child = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &shell])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("unshare runs");
    let script = Script {
        child,
        source: std::fs::read_to_string(format!("{scripts}/split.py"))
            .expect("script")
            .lines()
            .map(str::to_owned)
            .collect(),
    };
    let mut w = Walker::attach(script.pid());
    let interp_path = format!("{root}/python3.11");
    assert_eq!(w.interp.path, interp_path);
    assert!(!std::path::Path::new(&interp_path).exists(), "visible here");
    assert_eq!((w.interp.version.major, w.interp.version.minor), (3, 11));
    w.wait_for("work");
    let threads = (0..WALKS).find_map(|_| w.walk_stopped()).expect("a walk");
    let names = threads[0].names();
    assert!(
        names.ends_with(&["work", "run", "main", "<module>"]),
        "{names:?}"
    );
    assert!(
        threads[0]
            .frames
            .iter()
            .all(|f| f.file.ends_with("split.py"))
    );
}
