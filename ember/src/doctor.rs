//! `ember doctor`: can Ember run on this node, and with what?
//!
//! Prints the sampler's own probe ([`NodeProbe`]) for a person: the kernel, each feature and
//! whether Ember will use it, the privileges held and lacking with what each one buys, the
//! unwinder and symbol sources that will be used, and where the store would go. `--json`
//! gives the same for scripts. The exit status is 0 when Ember can sample here, 1 when it
//! cannot.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use profiler_sampler::probe::{CAPABILITIES, Check, NodeProbe};

/// What `ember doctor` looks at beyond the kernel.
#[derive(Clone, Debug)]
pub(crate) struct DoctorConfig {
    /// The agent's store directory (`--data-dir`).
    pub data_dir: PathBuf,
    /// Directories searched for separate debug files.
    pub debug_dirs: Vec<PathBuf>,
}

/// One privilege line.
#[derive(Debug, Serialize)]
pub(crate) struct Privilege {
    /// `CAP_…`.
    pub name: &'static str,
    /// Whether this process has it (or `CAP_SYS_ADMIN` in its place).
    pub held: bool,
    /// Whether Ember stops without it.
    pub essential: bool,
    /// What Ember does with it.
    pub purpose: &'static str,
}

/// The whole report, as `--json` prints it.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// Whether Ember can sample here.
    pub ready: bool,
    /// Why not, and what to do, when not ready.
    pub blocker: Option<String>,
    /// The probe itself.
    pub probe: NodeProbe,
    /// The capabilities Ember uses.
    pub privileges: Vec<Privilege>,
    /// The unwinder `--unwinder auto` uses.
    pub unwinder: String,
    /// Whether processes that targets fork are followed.
    pub follows_forks: bool,
    /// One line per degraded feature or missing privilege.
    pub warnings: Vec<String>,
    /// Whether kernel symbol addresses are readable in `/proc/kallsyms`.
    pub kernel_symbols: bool,
    /// The debug directories and whether each exists.
    pub debug_dirs: Vec<(PathBuf, bool)>,
    /// The store directory.
    pub store: PathBuf,
    /// What the store directory's state is (exists / would be created / not writable).
    pub store_state: String,
    /// The CPython processes running now.
    pub python: Vec<PythonProcess>,
}

/// One CPython process found on the node.
#[derive(Debug, Serialize)]
pub(crate) struct PythonProcess {
    /// The process.
    pub pid: u32,
    /// The interpreter's version (`3.11.2`; `3.9` when the binary gives no patch level).
    pub version: String,
    /// The file holding the interpreter, as the process sees it.
    pub interpreter: String,
    /// Whether Ember has the version's struct offsets (CPython 3.9 to 3.13).
    pub supported: bool,
}

/// The CPython processes running now; those that could not be inspected are warnings.
fn python_processes(warnings: &mut Vec<String>) -> Vec<PythonProcess> {
    let procfs = symbolizer::procfs::Procfs::default();
    let Ok(found) = profiler_python::scan(&procfs) else {
        warnings.push("cannot list /proc: python processes not checked".to_owned());
        return Vec::new();
    };
    found
        .into_iter()
        .filter_map(|r| match r {
            Ok(i) => Some(PythonProcess {
                pid: i.pid,
                version: i.version.to_string(),
                interpreter: i.path.clone(),
                supported: i.supported(),
            }),
            Err(e) => {
                warnings.push(format!("python process not inspected: {e}"));
                None
            }
        })
        .collect()
}

/// Probes the node and builds the report.
#[must_use]
pub(crate) fn report(config: &DoctorConfig) -> Report {
    let probe = NodeProbe::run();
    let blocker = probe.blocker().map(|b| format!("{}; {}", b.what, b.fix));
    let (unwinder, follows_forks, mut warnings) = match probe.plan(true, false) {
        Ok(plan) => (
            if plan.table_unwinder {
                "dwarf: .eh_frame tables, frame pointers where a binary has none".to_owned()
            } else {
                "fp: frame pointers only".to_owned()
            },
            plan.follow_forks.is_some(),
            plan.warnings,
        ),
        Err(e) => ("none".to_owned(), false, vec![e]),
    };
    warnings.extend(probe.privilege_warnings());
    let python = python_processes(&mut warnings);
    let privileges = CAPABILITIES
        .iter()
        .map(|c| Privilege {
            name: c.name,
            held: probe.capabilities.grants(c),
            essential: c.essential,
            purpose: c.purpose,
        })
        .collect();
    Report {
        ready: blocker.is_none(),
        blocker,
        privileges,
        unwinder,
        follows_forks,
        warnings,
        kernel_symbols: kallsyms_has_addresses(),
        debug_dirs: config
            .debug_dirs
            .iter()
            .map(|d| (d.clone(), d.is_dir()))
            .collect(),
        store: config.data_dir.clone(),
        store_state: store_state(&config.data_dir),
        python,
        probe,
    }
}

/// Whether `/proc/kallsyms` shows real addresses to this process (not all zeros).
fn kallsyms_has_addresses() -> bool {
    use std::io::BufRead as _;
    let Ok(f) = std::fs::File::open("/proc/kallsyms") else {
        return false;
    };
    std::io::BufReader::new(f)
        .lines()
        .take(64)
        .map_while(Result::ok)
        .any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|a| !a.trim_start_matches('0').is_empty())
        })
}

fn store_state(dir: &Path) -> String {
    let writable = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
            // SAFETY: access(2) on a NUL-terminated path.
            .is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
    };
    if dir.is_dir() {
        if writable(dir) {
            "exists, writable".to_owned()
        } else {
            "exists, NOT writable by this user".to_owned()
        }
    } else {
        match dir.ancestors().skip(1).find(|a| a.is_dir()) {
            Some(parent) if writable(parent) => "would be created".to_owned(),
            Some(parent) => format!("cannot be created: {} is not writable", parent.display()),
            None => "cannot be created".to_owned(),
        }
    }
}

fn check_line(out: &mut String, name: &str, check: &Check, used_for: &str) {
    let (mark, detail) = match check {
        Check::Yes => ("yes", String::new()),
        Check::No(why) => ("NO ", format!(" ({why})")),
        Check::Unknown(why) => ("?? ", format!(" (could not probe: {why})")),
    };
    let _ = writeln!(out, "  {mark}  {name:<28} {used_for}{detail}");
}

/// The report for a person.
#[must_use]
pub(crate) fn render(r: &Report) -> String {
    let p = &r.probe;
    let mut out = String::new();
    let _ = writeln!(out, "kernel        Linux {}", p.kernel_release);
    let _ = writeln!(
        out,
        "verdict       {}",
        match &r.blocker {
            None => "ready: ember can sample on this node".to_owned(),
            Some(b) => format!("NOT READY: {b}"),
        }
    );
    out.push_str("\nkernel features\n");
    check_line(
        &mut out,
        "bpf syscall, perf_event programs",
        &p.perf_event_programs,
        "sampling (essential)",
    );
    check_line(
        &mut out,
        "cpu-clock perf events",
        &p.perf_events,
        "sampling every CPU (essential)",
    );
    check_line(
        &mut out,
        "BPF ring buffer",
        &p.ring_buffer,
        "process announcements (essential)",
    );
    check_line(
        &mut out,
        "raw tracepoints",
        &p.raw_tracepoints,
        "fork and exec hooks, attached without tracefs",
    );
    let btf_use = match p.task_offsets {
        Some(o) => format!("fork hook: task_struct.tgid at byte {}", o.tgid),
        None => "fork hook offsets".to_owned(),
    };
    check_line(&mut out, "kernel BTF", &p.btf, &btf_use);
    check_line(&mut out, "bpf_loop", &p.bpf_loop, "table unwinder");
    check_line(
        &mut out,
        "bpf_task_pt_regs",
        &p.task_pt_regs,
        "table unwinder (samples taken in the kernel)",
    );
    check_line(
        &mut out,
        "bpf_find_vma + VMA fields",
        &p.file_lookup,
        "tables found by file: new processes complete from their first sample",
    );
    let _ = writeln!(
        out,
        "  {}  {:<28} container and pod labels{}",
        if p.cgroup_v2.is_some() { "yes" } else { "NO " },
        "cgroup v2",
        p.cgroup_v2
            .as_ref()
            .map_or_else(String::new, |m| format!(" (at {m})"))
    );
    let _ = writeln!(
        out,
        "  {}  {:<28} not needed",
        if p.tracefs_mounted { "yes" } else { " - " },
        if p.tracefs_mounted {
            "tracefs (mounted)"
        } else {
            "tracefs (not mounted)"
        }
    );
    out.push_str("\nsettings\n");
    let show = |v: Option<i64>| v.map_or_else(|| "unknown".to_owned(), |v| v.to_string());
    let _ = writeln!(
        out,
        "  kernel.perf_event_paranoid   {}",
        show(p.perf_event_paranoid)
    );
    let _ = writeln!(
        out,
        "  kernel.kptr_restrict         {}",
        show(p.kptr_restrict)
    );
    let _ = writeln!(
        out,
        "  kernel.bpf_stats_enabled     {}",
        match p.bpf_stats_enabled {
            Some(true) => "1".to_owned(),
            Some(false) => "0 (1 lets benchmarks read the BPF programs' run time)".to_owned(),
            None => "unknown".to_owned(),
        }
    );
    let _ = writeln!(out, "\nprivileges (euid {})", p.euid);
    for c in &r.privileges {
        let _ = writeln!(
            out,
            "  {}  {:<24} {}{}",
            if c.held { "yes" } else { "NO " },
            c.name,
            c.purpose,
            if c.essential { " (essential)" } else { "" }
        );
    }
    out.push_str("\nember will use\n");
    let _ = writeln!(out, "  unwinder        {}", r.unwinder);
    let _ = writeln!(
        out,
        "  children        {}",
        if r.follows_forks {
            "followed by the fork hook"
        } else {
            "found by reading /proc every 20 ms (no fork hook)"
        }
    );
    let _ = writeln!(
        out,
        "  kernel symbols  {}",
        if r.kernel_symbols {
            "/proc/kallsyms"
        } else {
            "hidden (/proc/kallsyms shows no addresses): kernel frames unnamed"
        }
    );
    for (dir, exists) in &r.debug_dirs {
        let _ = writeln!(
            out,
            "  debug files     {}{}",
            dir.display(),
            if *exists { "" } else { " (missing)" }
        );
    }
    out.push_str("  JIT perf maps   /tmp/perf-PID.map through each process's root\n");
    let _ = writeln!(
        out,
        "  store           {} ({})",
        r.store.display(),
        r.store_state
    );
    out.push_str("\npython processes\n");
    if r.python.is_empty() {
        out.push_str("  none found\n");
    }
    for p in &r.python {
        let _ = writeln!(
            out,
            "  {:<8} {:<8} {:<13} {}",
            p.pid,
            p.version,
            if p.supported {
                "supported"
            } else {
                "UNSUPPORTED"
            },
            p.interpreter
        );
    }
    if !r.warnings.is_empty() {
        out.push_str("\nwarnings\n");
        for w in &r.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    out
}
