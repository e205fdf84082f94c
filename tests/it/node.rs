//! Ember on a node as it really is: no tracefs or debugfs mounted, features probed (and one
//! hidden), and least privilege — a non-root user holding only Ember's capabilities.
//!
//! Every `ember` these tests start goes through `common::ember()`, which runs it in a
//! private mount namespace with tracefs and debugfs unmounted (`common::FRESH_NODE`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{Folded, ember, example, privileged, share_agrees, share_bound, tempdir};

/// The capabilities of Ember's least-privilege set, as setpriv spells them.
const CAPS: [&str; 6] = [
    "bpf",
    "perfmon",
    "sys_ptrace",
    "checkpoint_restore",
    "dac_read_search",
    "syslog",
];

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `ember()`'s fresh-node command, run inside an outer private mount namespace that first
/// runs `setup` (as root): the way to hide a feature, or to mount what a host might have.
fn ember_after(setup: &str) -> Command {
    let inner = ember();
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!("{setup} && exec \"$@\""))
        .arg("outer")
        .arg(inner.get_program())
        .args(inner.get_args());
    c.env_remove("RUST_LOG");
    c
}

fn doctor_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd
        .args(["doctor", "--json"])
        .output()
        .expect("ember doctor");
    assert!(
        out.status.success(),
        "ember doctor --json failed: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("doctor prints JSON")
}

/// Issue 17: `ember doctor` lists the CPython processes it finds, with their versions and
/// whether Ember has their struct offsets: Debian's stripped 3.11, found from its mappings.
#[test]
fn doctor_lists_a_running_python_with_its_version() {
    let test = "doctor_lists_a_running_python_with_its_version";
    let Some(_p) = privileged(test) else {
        return;
    };
    let script = crate::common::repo_root().join("examples/python/split.py");
    let mut python = Command::new("/usr/bin/python3.11")
        .arg(&script)
        .arg("20")
        .stdout(Stdio::null())
        .spawn()
        .expect("starting /usr/bin/python3.11");
    let pid = python.id();
    // The interpreter is mapped before the script runs; give it a moment to start.
    std::thread::sleep(Duration::from_millis(500));
    let v = doctor_json(&mut ember());
    let report = text(&ember().arg("doctor").output().expect("ember doctor").stdout);
    let _ = python.kill();
    let _ = python.wait();
    let found: Vec<&serde_json::Value> = v["python"]
        .as_array()
        .expect("a python list")
        .iter()
        .filter(|p| p["pid"] == pid)
        .collect();
    assert_eq!(found.len(), 1, "python3.11 (pid {pid}) not listed: {v:#}");
    let p = found[0];
    assert!(
        p["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.11.")),
        "{p}"
    );
    assert_eq!(p["supported"], true, "{p}");
    assert!(
        p["interpreter"]
            .as_str()
            .is_some_and(|i| i.ends_with("python3.11")),
        "{p}"
    );
    let line = report
        .lines()
        .find(|l| l.split_whitespace().next() == Some(pid.to_string().as_str()))
        .unwrap_or_else(|| panic!("no line for pid {pid}:\n{report}"));
    assert!(
        line.contains("supported") && line.contains("3.11."),
        "{line}"
    );
}

fn assert_split(folded: &Folded, min_samples: u64) {
    let w = folded.process("split");
    let (a, b) = (w.share("fn_a"), w.share("fn_b"));
    eprintln!("split: {} samples, fn_a {a:.3}, fn_b {b:.3}", w.total());
    assert!(
        w.total() >= min_samples,
        "too few split samples: {:#?}",
        folded.lines
    );
    let bound = share_bound(0.70, w.total());
    assert!(
        share_agrees(a, 0.70, w.total()),
        "fn_a {a:.3} (want 0.70 ± {bound:.3})"
    );
    assert!(
        share_agrees(b, 0.30, w.total()),
        "fn_b {b:.3} (want 0.30 ± {bound:.3})"
    );
}

/// Runs `run` while `split` (run as root, for `seconds`) is busy; `settle` lets it start.
fn beside_split(
    split: &Path,
    seconds: &str,
    settle: Duration,
    run: impl FnOnce() -> Output,
) -> Output {
    let mut busy = Command::new(split)
        .arg(seconds)
        .stdout(Stdio::null())
        .spawn()
        .expect("starting split as root");
    std::thread::sleep(settle);
    let out = run();
    busy.kill().ok();
    busy.wait().ok();
    out
}

#[test]
fn tracefs_mounted_on_the_host_is_gone_for_ember() {
    let Some(_p) = privileged("tracefs_mounted_on_the_host_is_gone_for_ember") else {
        return;
    };
    // The host mounted tracefs (as the machine that hid the defect had): the fresh-node
    // wrapper takes it away again, and Ember does not notice either way.
    let v = doctor_json(&mut ember_after(
        "mount -t tracefs nodev /sys/kernel/tracing && grep -qw tracefs /proc/self/mounts",
    ));
    assert_eq!(v["probe"]["tracefs_mounted"], false, "{v:#}");
    assert_eq!(v["ready"], true, "{v:#}");
}

#[test]
fn doctor_reports_what_this_node_offers() {
    let Some(_p) = privileged("doctor_reports_what_this_node_offers") else {
        return;
    };
    let out = ember().arg("doctor").output().expect("ember doctor");
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    for line in [
        "verdict       ready",
        "raw tracepoints",
        "attached without tracefs",
        "kernel BTF",
        "task_struct.tgid at byte",
        "tracefs (not mounted)",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
        "unwinder        dwarf",
        "children        followed by the fork hook",
    ] {
        assert!(report.contains(line), "no `{line}` in:\n{report}");
    }
    assert!(
        !report.contains("warnings"),
        "root on this node has no warnings:\n{report}"
    );

    let v = doctor_json(&mut ember());
    assert_eq!(v["ready"], true);
    for feature in [
        "perf_event_programs",
        "raw_tracepoints",
        "ring_buffer",
        "perf_events",
        "bpf_loop",
        "task_pt_regs",
        "btf",
    ] {
        assert_eq!(v["probe"][feature]["state"], "yes", "{feature}: {v:#}");
    }
    assert_eq!(v["follows_forks"], true);
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(0), "{v:#}");
    assert_eq!(v["privileges"].as_array().map(Vec::len), Some(6));
}

#[test]
fn without_btf_ember_degrades_with_one_warning_and_still_follows_children() {
    let Some(_p) =
        privileged("without_btf_ember_degrades_with_one_warning_and_still_follows_children")
    else {
        return;
    };
    // Hide the kernel's BTF: the fork hook cannot get its offsets.
    let hide = "mount -t tmpfs none /sys/kernel/btf";
    let v = doctor_json(&mut ember_after(hide));
    assert_eq!(v["ready"], true, "{v:#}");
    assert_eq!(v["probe"]["btf"]["state"], "no", "{v:#}");
    assert_eq!(v["follows_forks"], false);
    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("no kernel BTF"), "{warnings:#?}");

    // `sh -c` forks split (the trailing `true` keeps sh from exec'ing it): without the
    // fork hook, the child is found through /proc.
    let dir = tempdir();
    let out_path = dir.path().join("out.folded");
    let split = example("split");
    let out = ember_after(hide)
        .args(["record", "-F", "99", "-o"])
        .arg(&out_path)
        .args(["--", "sh", "-c"])
        .arg(format!("{} 5; true", split.display()))
        .output()
        .expect("ember record");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("no kernel BTF").count(),
        1,
        "one warning names what is lost:\n{stderr}"
    );
    assert_split(&Folded::read(&out_path), 150);
}

/// A directory `nobody` can read, holding copies of `ember` and `split`.
struct Unprivileged {
    _dir: tempfile::TempDir,
    ember: PathBuf,
    split: PathBuf,
}

fn unprivileged_copies() -> Unprivileged {
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod tempdir");
    let copy = |from: &Path, name: &str| {
        let to = dir.path().join(name);
        std::fs::copy(from, &to).expect("copying a binary");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        to
    };
    Unprivileged {
        ember: copy(Path::new(env!("CARGO_BIN_EXE_ember")), "ember"),
        split: copy(&example("split"), "split"),
        _dir: dir,
    }
}

/// `ember ARGS` as `nobody` holding exactly `caps` (ambient), in a fresh-node namespace.
fn as_nobody_with(caps: &[&str], bin: &Path, args: &[&str]) -> Output {
    let list: Vec<String> = caps.iter().map(|c| format!("+{c}")).collect();
    let list = list.join(",");
    let fresh = ember();
    // Replace the ember binary at the end of the wrapper with setpriv + the copy.
    let mut wrapper: Vec<std::ffi::OsString> =
        fresh.get_args().map(std::ffi::OsStr::to_owned).collect();
    wrapper.pop();
    let mut cmd = Command::new(fresh.get_program());
    cmd.args(wrapper)
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .arg(format!("--inh-caps={list}"))
        .arg(format!("--ambient-caps={list}"))
        .arg("--")
        .arg(bin)
        .args(args)
        .env_remove("RUST_LOG")
        .current_dir("/");
    cmd.output().expect("running ember as nobody")
}

#[test]
fn least_privilege_records_and_names_everything_without_root() {
    let Some(_p) = privileged("least_privilege_records_and_names_everything_without_root") else {
        return;
    };
    let u = unprivileged_copies();
    let split = u.split.to_str().expect("utf-8 path");

    // A command of nobody's own, children followed.
    let out = as_nobody_with(
        &CAPS,
        &u.ember,
        &[
            "record",
            "-F",
            "99",
            "-f",
            "folded",
            "-o",
            "-",
            "--",
            "sh",
            "-c",
            &format!("{split} 5; true"),
        ],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("CAP_"),
        "no capability is missing:\n{stderr}"
    );
    assert_split(&Folded::parse(&text(&out.stdout)), 150);

    // The whole machine, with split running as root (another user): its frames are named
    // through /proc/PID/{maps,map_files,root}, which the capabilities open.
    let out = beside_split(&u.split, "6", Duration::from_millis(300), || {
        as_nobody_with(
            &CAPS,
            &u.ember,
            &[
                "record", "--all", "-F", "99", "-d", "4s", "-f", "folded", "-o", "-",
            ],
        )
    });
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let folded = Folded::parse(&text(&out.stdout));
    let w = folded.process("split");
    let named = w.count_where(|f| f.contains(&"fn_a") || f.contains(&"fn_b"));
    assert!(
        w.total() >= 100 && named as f64 >= 0.95 * w.total() as f64,
        "root's split seen by nobody with capabilities: {named} of {} named\n{:#?}",
        w.total(),
        w.lines
    );
}

#[test]
fn a_missing_capability_is_named_with_what_it_costs() {
    let Some(_p) = privileged("a_missing_capability_is_named_with_what_it_costs") else {
        return;
    };
    let u = unprivileged_copies();

    // Without an essential one, Ember stops and says which, and how to grant it.
    let no_perfmon: Vec<&str> = CAPS.iter().copied().filter(|c| *c != "perfmon").collect();
    let out = as_nobody_with(
        &no_perfmon,
        &u.ember,
        &["record", "--all", "-d", "1s", "-o", "-"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("lacks CAP_PERFMON;") && stderr.contains("setcap"),
        "{stderr}"
    );
    let out = as_nobody_with(&no_perfmon, &u.ember, &["doctor"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "doctor exits 1 where Ember cannot run"
    );
    assert!(
        text(&out.stdout).contains("NO   CAP_PERFMON"),
        "{}",
        text(&out.stdout)
    );
    let out = as_nobody_with(&no_perfmon, &u.ember, &["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1), "doctor --json exits 1 too");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor --json");
    assert_eq!(v["ready"], false, "{v}");
    assert!(
        v["blocker"].to_string().contains("CAP_PERFMON"),
        "the blocker names the capability: {v}"
    );

    // Without CAP_SYS_PTRACE another user's frames cannot be named: one warning says so.
    let no_ptrace: Vec<&str> = CAPS
        .iter()
        .copied()
        .filter(|c| *c != "sys_ptrace")
        .collect();
    let out = beside_split(&u.split, "4", Duration::from_millis(200), || {
        as_nobody_with(
            &no_ptrace,
            &u.ember,
            &["record", "--all", "-d", "2s", "-f", "folded", "-o", "-"],
        )
    });
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("no CAP_SYS_PTRACE").count(),
        1,
        "one warning names the capability:\n{stderr}"
    );
    assert!(stderr.contains("unnamed"), "{stderr}");
}

#[test]
fn on_a_fresh_node_record_follows_children_and_all_sees_the_split() {
    let Some(_p) = privileged("on_a_fresh_node_record_follows_children_and_all_sees_the_split")
    else {
        return;
    };
    let split = example("split");
    // The fork hook follows split out of the shell that forks it.
    let dir = tempdir();
    let out_path = dir.path().join("children.folded");
    let out = ember()
        .args(["record", "-F", "99", "-o"])
        .arg(&out_path)
        .args(["--", "sh", "-c"])
        .arg(format!("{} 5; true", split.display()))
        .output()
        .expect("ember record");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains("BTF") && !stderr.contains("tracefs"),
        "nothing is degraded here:\n{stderr}"
    );
    assert_split(&Folded::read(&out_path), 150);

    // The whole machine, split running beside.
    let all_path = dir.path().join("all.folded");
    let out = beside_split(&split, "6", Duration::from_millis(300), || {
        ember()
            .args(["record", "--all", "-F", "99", "-d", "5s", "-o"])
            .arg(&all_path)
            .output()
            .expect("ember record --all")
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_split(&Folded::read(&all_path), 150);
}
