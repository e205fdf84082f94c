//! `ember export`: a store made with the store API exported in every format and checked by
//! the readers people use (go tool pprof, speedscope's schema); bad arguments; and a live
//! agent read through its API and its store while it writes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use profiler_model::{Frame, FrameKind, Labels, Location, Profile, ProfileMeta, keys, pprof};
use profiler_store::{Store, StoreConfig, Window};

use crate::common::{
    AgentGuard, Folded, ember, example, privileged, repo_root, start_agent_logged,
    start_agent_with_api, tempdir,
};

const T0: u64 = 1_700_000_000;
const NS: u64 = 1_000_000_000;

fn user(name: &str, offset: u64, line: u32) -> Frame {
    let mut f = Frame::named(name, FrameKind::User);
    f.module = Some("/opt/split".into());
    f.file = Some("split.c".into());
    f.line = Some(line);
    f.location = Location::File {
        build_id: Some(Arc::from(&[0xab, 0xcd, 0x01][..])),
        offset,
    };
    f
}

fn kernel(name: &str, addr: u64) -> Frame {
    let mut f = Frame::named(name, FrameKind::Kernel);
    f.location = Location::Kernel { addr };
    f
}

/// Two windows of 10 s at 100 Hz: split (pid 10) 70/30 plus a kernel leaf, and `other`
/// (pid 20, in container c1), and the idle task.
fn make_store(dir: &Path) {
    let split = Labels::new()
        .with(keys::PID, "10")
        .with(keys::TID, "10")
        .with(keys::COMM, "split");
    let other = Labels::new()
        .with(keys::PID, "20")
        .with(keys::TID, "21")
        .with(keys::COMM, "other")
        .with("container_id", "c1");
    let idle = Labels::new()
        .with(keys::PID, "0")
        .with(keys::TID, "0")
        .with(keys::COMM, "swapper/0");
    let (main, work) = (user("main", 0x1000, 90), user("work", 0x1100, 60));
    let (fn_a, fn_b) = (user("fn_a", 0x1200, 30), user("fn_b", 0x1300, 40));
    let irq = kernel("asm_sysvec_apic_timer_interrupt", 0xffff_ffff_8100_0000);
    let mut store = Store::open(dir, StoreConfig::default()).expect("creating a store");
    for w in 0..2 {
        let mut p = Profile::new(ProfileMeta {
            start_unix_ns: 0,
            duration_ns: 0,
            frequency_hz: 100,
            ..ProfileMeta::default()
        });
        p.add(&split, &[main.clone(), work.clone(), fn_a.clone()], 7);
        p.add(&split, &[main.clone(), work.clone(), fn_b.clone()], 3);
        p.add(
            &split,
            &[main.clone(), work.clone(), fn_b.clone(), irq.clone()],
            1,
        );
        p.add(&other, &[main.clone(), fn_b.clone()], 2);
        p.add(&idle, &[kernel("default_idle", 0xffff_ffff_8200_0000)], 50);
        store
            .write_window(&Window {
                start_unix_ns: (T0 + 10 * w) * NS,
                end_unix_ns: (T0 + 10 * (w + 1)) * NS,
                profile: p,
            })
            .expect("writing a window");
    }
}

/// `ember export` of the store's 20 s.
fn export(dir: &Path, extra: &[&str]) -> Output {
    let range = [
        "--from".to_owned(),
        T0.to_string(),
        "--to".to_owned(),
        (T0 + 20).to_string(),
    ];
    export_raw(
        dir,
        &range
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
    )
}

fn export_raw(dir: &Path, args: &[&str]) -> Output {
    ember()
        .args(["export", "--data-dir"])
        .arg(dir)
        .args(args)
        .output()
        .expect("running ember export")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `go tool pprof -traces -sample_index=samples`: root-first stacks → summed counts.
fn go_traces(go: &Path, file: &Path) -> BTreeMap<String, u64> {
    let home = tempdir();
    let out = Command::new(go)
        .args(["tool", "pprof", "-traces", "-sample_index=samples"])
        .arg(file)
        .env("HOME", home.path())
        .env("PPROF_BINARY_PATH", home.path())
        .env("PPROF_TMPDIR", home.path())
        .output()
        .expect("running go tool pprof");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut traces = BTreeMap::new();
    let mut current: Option<(Vec<String>, u64)> = None;
    let mut flush = |c: &mut Option<(Vec<String>, u64)>| {
        if let Some((mut names, v)) = c.take()
            && !names.is_empty()
        {
            names.reverse();
            *traces.entry(names.join(";")).or_insert(0) += v;
        }
    };
    for line in stdout.lines() {
        if line.starts_with("-----------+") {
            flush(&mut current);
            current = Some((Vec::new(), 0));
            continue;
        }
        let Some(c) = current.as_mut() else { continue };
        // `        14   fn_a` (first line of a trace) or `             work`; label lines
        // (`      comm:  split`) have a colon at column 10.
        if line.len() > 13 && line.get(10..13) == Some("   ") {
            let value = line[..10].trim();
            if !value.is_empty() {
                c.1 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("count in `{line}`"));
            }
            c.0.push(line[13..].trim().to_owned());
        }
    }
    flush(&mut current);
    traces
}

fn validate_speedscope(file: &Path) {
    let harness = repo_root().join("tests/speedscope");
    if !harness.join("node_modules/speedscope").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but tests/speedscope has no node_modules (scripts/bootstrap.sh --test)"
        );
        crate::common::skip(
            "the speedscope schema check",
            "run npm ci in tests/speedscope (scripts/bootstrap.sh --test)",
        );
        return;
    }
    let out = Command::new("node")
        .arg(harness.join("validate.mjs"))
        .arg(file)
        .current_dir(&harness)
        .output()
        .expect("running node");
    assert!(
        out.status.success(),
        "speedscope schema validation failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    eprint!("{}", text(&out.stdout));
}

#[test]
fn a_store_exports_in_every_format() {
    let dir = tempdir();
    make_store(dir.path());

    // Folded on stdout: both windows summed, idle left out, kernel frames kept.
    let out = export(dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "other;main;fn_b 4\n\
         split;main;work;fn_a 14\n\
         split;main;work;fn_b 6\n\
         split;main;work;fn_b;asm_sysvec_apic_timer_interrupt_[k] 2\n"
    );
    let folded = Folded::parse(&text(&out.stdout));

    // Filters, with `container` for the agent's `container_id`, and the idle task on request.
    let out = export(dir.path(), &["--filter", "container=c1"]);
    assert_eq!(
        text(&out.stdout),
        "other;main;fn_b 4\n",
        "{}",
        text(&out.stderr)
    );
    let out = export(
        dir.path(),
        &["--filter", "comm=split,pid=10", "--no-kernel"],
    );
    assert_eq!(
        text(&out.stdout),
        "split;main;work;fn_a 14\nsplit;main;work;fn_b 8\n"
    );
    let out = export(dir.path(), &["--include-idle", "--filter", "pid=0"]);
    assert_eq!(text(&out.stdout), "swapper/0;default_idle_[k] 100\n");
    // One window only.
    let out = ember()
        .args(["export", "--data-dir"])
        .arg(dir.path())
        .args([
            "--from",
            &(T0 + 10).to_string(),
            "--to",
            &(T0 + 20).to_string(),
        ])
        .args(["--filter", "comm=split"])
        .output()
        .unwrap();
    assert!(text(&out.stdout).contains("split;main;work;fn_a 7\n"));

    // pprof: labels, modules, build-ids, files, lines, addresses survive.
    let out_dir = tempdir();
    let pb = out_dir.path().join("p.pb.gz");
    let out = export(dir.path(), &["-o", pb.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Samples with their CPU time, the range in calendar time (T0 is 2023-11-14 22:13:20 UTC).
    let said = text(&out.stderr);
    assert!(
        said.contains(
            "wrote 26 samples (0.26 CPU s) of 2023-11-14 22:13:20 to 22:13:40 UTC (20 s) to "
        ),
        "{said}"
    );
    let p = pprof::decode(&std::fs::read(&pb).unwrap()[..]).unwrap();
    assert_eq!(p.total(), 26);
    assert_eq!(p.meta.frequency_hz, 100);
    let fn_a = p.frames().iter().find(|f| &*f.name == "fn_a").unwrap();
    assert_eq!(fn_a.file.as_deref(), Some("split.c"));
    assert_eq!(fn_a.line, Some(30));
    assert_eq!(fn_a.module.as_deref(), Some("/opt/split"));
    assert_eq!(
        fn_a.location,
        Location::File {
            build_id: Some(Arc::from(&[0xab, 0xcd, 0x01][..])),
            offset: 0x1200
        }
    );
    assert!(
        p.label_sets()
            .iter()
            .any(|l| l.get("container_id") == Some("c1") && l.get(keys::PID) == Some("20"))
    );
    if let Some(go) = crate::common::go("export") {
        let traces = go_traces(&go, &pb);
        // pprof has no comm frame: compare without the first folded frame.
        let mut want: BTreeMap<String, u64> = BTreeMap::new();
        for (line, c) in &folded.lines {
            let rest = line.split_once(';').unwrap().1.replace("_[k]", "");
            *want.entry(rest).or_insert(0) += c;
        }
        assert_eq!(traces, want);
    }

    // SVG.
    let svg = out_dir.path().join("p.svg");
    let out = export(dir.path(), &["-o", svg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("fn_a (14 samples"),
        "{svg}"
    );

    // speedscope, by extension and by flag.
    let json = out_dir.path().join("p.speedscope.json");
    let out = export(dir.path(), &["-o", json.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let profiles = doc["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 2);
    assert_eq!(profiles[0]["name"], "split (pid 10)");
    // 22 samples at 100 Hz = 10 ms each.
    assert_eq!(profiles[0]["endValue"], 22 * 10_000_000);
    let frames = doc["shared"]["frames"].as_array().unwrap();
    assert!(
        frames
            .iter()
            .any(|f| f["name"] == "fn_a" && f["file"] == "split.c" && f["line"] == 30)
    );
    validate_speedscope(&json);
    let out = export(dir.path(), &["-f", "speedscope"]);
    assert_eq!(out.stdout, std::fs::read(&json).unwrap());
}

#[test]
fn bad_export_arguments_are_explained() {
    let dir = tempdir();
    make_store(dir.path());
    let from = T0.to_string();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--from", "yesterday"], 2, "`yesterday` is not a time"),
        (&["--to", "now-5x"], 2, "unknown unit `x`"),
        (&["--filter", "comm"], 2, "expected `name=value`"),
        (&["--filter", "comm=a,,pid=1"], 2, "stray comma"),
        (&["--format", "png"], 2, "invalid value 'png'"),
        (
            &["-o", "out.png"],
            1,
            "cannot tell the output format from `out.png`",
        ),
        (
            &["--agent", "ftp://x:1"],
            1,
            "expected an http:// or https:// URL",
        ),
        (
            &["--agent", "https://127.0.0.1:1"],
            1,
            "cannot reach the agent",
        ),
        (
            &["--agent", "http://127.0.0.1:1"],
            1,
            "cannot reach the agent",
        ),
        (
            &["--from", "-1h", "--filter", "comm=nothing"],
            1,
            "no samples in ",
        ),
        (
            &["--from", &from, "--filter", "comm=nothing"],
            1,
            "no samples in ",
        ),
    ];
    for (args, code, want) in cases {
        let out = export_raw(dir.path(), args);
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(want),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).contains("panicked"));
    }
    let out = export_raw(dir.path(), &["--from", "now", "--to", "-1h"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("`--from` must be before `--to`"));

    // A directory without a store is named, and nothing is created in it.
    let empty = tempdir();
    let out = ember()
        .args(["export", "--data-dir"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no Ember store in"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}

/// The CLI reads times, durations and filters with the API's grammar (fractional
/// offsets, overflow said as such, filters that could match nothing refused with exit 2),
/// and `--no-kernel` applies to pprof as the API's `no_kernel` does.
#[test]
fn cli_grammar_and_no_kernel_match_the_api() {
    let dir = tempdir();
    make_store(dir.path());
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--filter", "COMM=split"], 2, "unknown label `COMM`"),
        (&["--filter", "pid=abc"], 2, "`abc` is not a pid"),
        (&["--filter", "comm!=split"], 2, "`!=` is not supported"),
        (&["--from", "-1"], 2, "`-1`: missing unit"),
        (&["--from", "now-99999999999h"], 2, "too large"),
        // Parsed: the range is just empty.
        (
            &["--from", "-1.5h", "--filter", "comm=nothing"],
            1,
            "no samples in ",
        ),
    ];
    for (args, code, want) in cases {
        let out = export_raw(dir.path(), args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    // `--no-kernel` drops kernel frames from pprof too, as the API's `no_kernel` does.
    let out = export(dir.path(), &["--no-kernel", "-f", "pprof"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let back = pprof::decode(&out.stdout[..]).expect("pprof decodes");
    assert!(back.frames().iter().all(|f| f.kind == FrameKind::User));
    assert_eq!(back.total(), 26);
    let out = export(dir.path(), &["-f", "pprof"]);
    let with_kernel = pprof::decode(&out.stdout[..]).expect("pprof decodes");
    assert!(
        with_kernel
            .frames()
            .iter()
            .any(|f| f.kind == FrameKind::Kernel)
    );
    for duration in ["99999999999h", "18446744073709551615s"] {
        let out = ember()
            .args(["record", "--all", "-d", duration])
            .output()
            .expect("running ember record");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{duration}: {stderr}");
        assert!(stderr.contains("too large"), "{duration}: {stderr}");
        assert!(!stderr.contains("more than zero"), "{duration}: {stderr}");
    }
}

fn signal(pid: u32, signo: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, signo) };
}

#[test]
fn a_live_agent_exports_through_its_api_and_its_store_while_writing() {
    let Some(_p) = privileged("a_live_agent_exports_through_its_api_and_its_store_while_writing")
    else {
        return;
    };
    let dir = tempdir();
    let (agent, url) = start_agent_with_api(dir.path(), "1s");
    let mut guard = AgentGuard(Some(agent));
    let status = Command::new(example("split"))
        .arg("5")
        .stderr(Stdio::null())
        .status()
        .expect("running split");
    assert!(status.success());
    // Let the last window close.
    std::thread::sleep(Duration::from_millis(1500));

    let out_dir = tempdir();
    let check = |source: &[&str], name: &str| -> Folded {
        let folded = out_dir.path().join(format!("{name}.folded"));
        let out = ember()
            .arg("export")
            .args(source)
            .args(["--from", "-2m", "--filter", "comm=split", "-o"])
            .arg(&folded)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let f = Folded::read(&folded);
        let (a, b) = (f.share("fn_a"), f.share("fn_b"));
        eprintln!("{name}: {} samples, fn_a {a:.3}, fn_b {b:.3}", f.total());
        let mut others: Vec<_> = f
            .lines
            .iter()
            .filter(|(l, _)| !l.contains(";fn_a") && !l.contains(";fn_b"))
            .collect();
        others.sort_by_key(|(_, c)| std::cmp::Reverse(**c));
        for (line, count) in others.iter().take(3) {
            eprintln!("{name}:   other stack {count}: {line}");
        }
        // 5 s at 99 Hz is ~495 samples on an idle CPU; other work on the machine lowers
        // it. At 150 samples one standard deviation of a 70/30 split is 3.7 points.
        assert!(f.total() >= 150, "{name}: {} samples", f.total());
        // The split is fn_a : fn_b = 70 : 30; the rest is start-up and exit. Samples the
        // agent drains after split has exited (up to one drain interval, 1 s of the 5 s
        // run) are named too: the agent captured split's mappings at its first sample.
        assert!(a + b > 0.95, "{name}: fn_a + fn_b {}", a + b);
        let split = a / (a + b);
        // Counting noise: one standard deviation is sqrt(0.21 / n); the bound is 3.5 of
        // them (0.083 at 376 samples), and never tighter than 6 points.
        let bound = (3.5 * (0.21 / f.total() as f64).sqrt()).max(0.06);
        assert!(
            (split - 0.70).abs() < bound,
            "{name}: fn_a / (fn_a + fn_b) {split} (bound {bound:.3} at {} samples)",
            f.total()
        );
        f
    };
    let via_api = check(&["--agent", &url], "api");
    // The store, read while the agent still writes to it.
    let via_store = check(&["--data-dir", dir.path().to_str().unwrap()], "store");
    // Same windows (the agent may have closed one more idle one in between).
    assert!(via_store.with_frame("fn_a") >= via_api.with_frame("fn_a"));

    // pprof through the API keeps the labels.
    let pb = out_dir.path().join("api.pb.gz");
    let out = ember()
        .args([
            "export",
            "--agent",
            &url,
            "--from",
            "-2m",
            "--filter",
            "comm=split",
            "-o",
        ])
        .arg(&pb)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let p = pprof::decode(&std::fs::read(&pb).unwrap()[..]).unwrap();
    assert!(
        p.label_sets()
            .iter()
            .all(|l| l.get(keys::COMM) == Some("split"))
    );
    assert!(p.frames().iter().any(|f| &*f.name == "fn_b"));

    // A bad filter is refused before the agent is asked.
    let out = ember()
        .args(["export", "--agent", &url, "--from", "-2m", "--filter", "=x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("empty label name"),
        "{}",
        text(&out.stderr)
    );

    let mut agent = guard.0.take().expect("the agent is running");
    signal(agent.id(), libc::SIGTERM);
    let status = agent.wait().unwrap();
    assert!(status.success());
}

#[test]
fn record_writes_pprof_and_speedscope_too() {
    let Some(_p) = privileged("record_writes_pprof_and_speedscope_too") else {
        return;
    };
    let dir = tempdir();
    let pb = dir.path().join("split.pb.gz");
    let json = dir.path().join("split.speedscope.json");
    for out in [&pb, &json] {
        let status = ember()
            .args(["record", "-q", "-F", "499", "-o"])
            .arg(out)
            .arg("--")
            .arg(example("split"))
            .arg("2")
            .stderr(Stdio::null())
            .status()
            .expect("running ember record");
        assert!(status.success(), "{}", out.display());
    }

    // pprof: the split, with binaries, build-ids, source lines and labels.
    let p = pprof::decode(&std::fs::read(&pb).expect("reading the pprof")[..])
        .expect("record's pprof decodes");
    let count = |name: &str| -> u64 {
        p.stacks()
            .filter(|s| s.frames.iter().any(|&f| &*p.frame(f).name == name))
            .map(|s| s.count)
            .sum()
    };
    let (a, b) = (count("fn_a"), count("fn_b"));
    let split = a as f64 / (a + b) as f64;
    eprintln!("record pprof: {} samples, fn_a {a}, fn_b {b}", p.total());
    assert!(a + b > 200, "fn_a {a} fn_b {b}");
    assert!(
        (split - 0.70).abs() < 0.08,
        "fn_a / (fn_a + fn_b) = {split}"
    );
    let fn_a = p
        .frames()
        .iter()
        .find(|f| &*f.name == "fn_a")
        .expect("fn_a is a frame");
    assert!(
        fn_a.file.as_deref().is_some_and(|f| f.ends_with("split.c")),
        "{fn_a:?}"
    );
    assert!(fn_a.line.is_some(), "{fn_a:?}");
    assert!(
        matches!(&fn_a.location, Location::File { build_id: Some(id), offset } if !id.is_empty() && *offset > 0),
        "{fn_a:?}"
    );
    assert!(
        p.label_sets()
            .iter()
            .all(|l| l.get(keys::COMM) == Some("split"))
    );
    assert_eq!(p.meta.frequency_hz, 499);

    // speedscope: schema-valid, one process, fn_a with its source line.
    validate_speedscope(&json);
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("reading the JSON")).expect("JSON");
    assert_eq!(doc["profiles"].as_array().map(Vec::len), Some(1));
    assert!(
        doc["profiles"][0]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("split (pid "))
    );
    assert!(
        doc["shared"]["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .any(|f| f["name"] == "fn_a" && f["line"].is_number())
    );
}

/// `--resymbolize`: a window stored while `split` had no symbols keeps `split+0xOFFSET`
/// with the build-id; once a debug file with that build-id is installed, the export names
/// the frame.
#[test]
fn export_resymbolize_names_frames_from_debug_files_installed_later() {
    let dir = tempdir();
    let split = example("split");
    let build_id = build_id_of(&split);
    let offset = file_offset_of(&split, "fn_a");
    let mut frame = Frame::named(format!("split+{offset:#x}"), FrameKind::User);
    frame.module = Some("split".into());
    frame.location = Location::File {
        build_id: Some(Arc::from(build_id.as_slice())),
        offset,
    };
    let labels = Labels::new()
        .with(keys::PID, "10")
        .with(keys::TID, "10")
        .with(keys::COMM, "split");
    let mut p = Profile::new(ProfileMeta {
        start_unix_ns: 0,
        duration_ns: 0,
        frequency_hz: 100,
        ..ProfileMeta::default()
    });
    p.add(&labels, &[frame], 5);
    let mut store = Store::open(dir.path(), StoreConfig::default()).expect("creating a store");
    store
        .write_window(&Window {
            start_unix_ns: T0 * NS,
            end_unix_ns: (T0 + 10) * NS,
            profile: p,
        })
        .expect("writing a window");
    drop(store);

    // No debug file yet: the stored name stays, and the export says it named nothing.
    let debug_root = dir.path().join("debug");
    std::fs::create_dir_all(&debug_root).expect("mkdir");
    let debug_arg = debug_root.to_str().expect("utf-8 path");
    let before = export(
        dir.path(),
        &["-f", "folded", "--resymbolize", "--debug-dir", debug_arg],
    );
    assert!(before.status.success(), "{}", text(&before.stderr));
    assert_eq!(text(&before.stdout), format!("split;split+{offset:#x} 5\n"));
    assert!(
        text(&before.stderr).contains("named 0 frame(s)"),
        "{}",
        text(&before.stderr)
    );

    // The debug file appears in the -dbgsym layout.
    let hex: String = build_id.iter().map(|b| format!("{b:02x}")).collect();
    let by_id = debug_root.join(".build-id").join(&hex[..2]);
    std::fs::create_dir_all(&by_id).expect("mkdir");
    let status = Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&split)
        .arg(by_id.join(format!("{}.debug", &hex[2..])))
        .status()
        .expect("running objcopy");
    assert!(status.success());
    let after = export(
        dir.path(),
        &["-f", "folded", "--resymbolize", "--debug-dir", debug_arg],
    );
    assert!(after.status.success(), "{}", text(&after.stderr));
    assert_eq!(text(&after.stdout), "split;fn_a 5\n");
    assert!(
        text(&after.stderr).contains("named 1 frame(s)"),
        "{}",
        text(&after.stderr)
    );
    // Without the flag names stay as stored.
    let plain = export(dir.path(), &["-f", "folded"]);
    assert_eq!(text(&plain.stdout), format!("split;split+{offset:#x} 5\n"));
}

/// The GNU build-id of an ELF file, from `readelf -n`.
fn build_id_of(path: &Path) -> Vec<u8> {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(path)
        .output()
        .expect("running readelf");
    let notes = text(&out.stdout);
    let hex = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("no build-id in {}:\n{notes}", path.display()))
        .trim()
        .to_owned();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex build-id"))
        .collect()
}

/// The file offset of `symbol` in an ELF file: its address mapped through the program
/// header of the executable LOAD segment that holds it.
fn file_offset_of(path: &Path, symbol: &str) -> u64 {
    let nm = text(
        &Command::new("nm")
            .arg(path)
            .output()
            .expect("running nm")
            .stdout,
    );
    let addr = nm
        .lines()
        .find_map(|l| {
            let mut parts = l.split_whitespace();
            let (a, _, name) = (parts.next()?, parts.next()?, parts.next()?);
            (name == symbol).then(|| u64::from_str_radix(a, 16).expect("nm address"))
        })
        .unwrap_or_else(|| panic!("no symbol {symbol} in {}", path.display()));
    let headers = text(
        &Command::new("readelf")
            .args(["-lW"])
            .arg(path)
            .output()
            .expect("running readelf")
            .stdout,
    );
    for line in headers.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first() != Some(&"LOAD") || f.len() < 7 {
            continue;
        }
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex");
        let (offset, vaddr, memsz) = (hex(f[1]), hex(f[2]), hex(f[5]));
        if (vaddr..vaddr + memsz).contains(&addr) {
            return addr - vaddr + offset;
        }
    }
    panic!("{symbol} is in no LOAD segment of {}", path.display());
}

#[test]
fn export_sends_the_api_token_to_an_agent_that_wants_one() {
    let test = "export_sends_the_api_token_to_an_agent_that_wants_one";
    let Some(_p) = privileged(test) else { return };
    let dir = tempdir();
    let token = "ember-test-token-0123456789abcdef";
    let (agent, url, _log) =
        start_agent_logged(dir.path(), "1s", &[], &[("EMBER_API_TOKEN", token)]);
    let mut guard = AgentGuard(Some(agent));
    let status = Command::new(example("split"))
        .arg("2")
        .stderr(Stdio::null())
        .status()
        .expect("running split");
    assert!(status.success());
    // Let the last window close.
    std::thread::sleep(Duration::from_millis(1500));

    let out_dir = tempdir();
    let token_file = out_dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let wrong_file = out_dir.path().join("wrong");
    std::fs::write(&wrong_file, "not-the-token-0123456789abcdef\n").unwrap();
    let folded = out_dir.path().join("split.folded");
    let export = |extra: &[&str], env: Option<&str>| -> Output {
        let mut cmd = ember();
        cmd.args([
            "export",
            "--agent",
            &url,
            "--from",
            "-2m",
            "--filter",
            "comm=split",
        ])
        .args(extra)
        .arg("-o")
        .arg(&folded)
        .env_remove("EMBER_API_TOKEN")
        .env_remove("EMBER_API_TOKEN_FILE");
        if let Some(t) = env {
            cmd.env("EMBER_API_TOKEN", t);
        }
        cmd.output().expect("running ember export")
    };

    // Without a token: the agent answers 401, and export says how to give one.
    let out = export(&[], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("needs its API token (401)") && err.contains("--api-token-file"),
        "{err}"
    );
    // The wrong token: refused, and said so.
    let out = export(&["--api-token-file", wrong_file.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("refused the API token (401)"),
        "{}",
        text(&out.stderr)
    );
    // The token from a file, then from the environment: the profile arrives (once the
    // agent has stored split's window; on a busy machine its drain lags behind).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let out = export(&["--api-token-file", token_file.to_str().unwrap()], None);
        if out.status.success() {
            break;
        }
        let err = text(&out.stderr);
        assert!(
            err.contains("no samples") && std::time::Instant::now() < deadline,
            "{err}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let from_file = Folded::read(&folded);
    std::fs::remove_file(&folded).unwrap();
    let out = export(&[], Some(token));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let from_env = Folded::read(&folded);
    for (how, f) in [("file", &from_file), ("env", &from_env)] {
        eprintln!("{test}: token from {how}: {} samples", f.total());
        assert!(f.with_frame("fn_a") > 0, "{how}: {:?}", f.lines);
    }
    // Never both.
    let out = export(
        &["--api-token-file", token_file.to_str().unwrap()],
        Some(token),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("give the API token once"),
        "{}",
        text(&out.stderr)
    );

    let mut agent = guard.0.take().expect("the agent is running");
    signal(agent.id(), libc::SIGTERM);
    assert!(agent.wait().unwrap().success());
}
