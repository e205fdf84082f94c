//! What this node offers: kernel features and privileges, probed at start, never assumed.
//!
//! [`NodeProbe::run`] asks the kernel directly — it loads tiny test programs for the program
//! types and helpers Ember uses, creates a test ring buffer, opens (and closes) a `cpu-clock`
//! perf event, reads the kernel's BTF for the offsets the fork hook needs, and reads the
//! sysctls and capabilities that decide what Ember may see. The sampler picks what to use
//! from it ([`NodeProbe::plan`]); `ember doctor` prints it for a person.
//!
//! Missing essentials (the bpf syscall, perf_event programs, perf events, ring buffers)
//! stop Ember with a message that says what to do. A missing optional feature degrades with
//! one warning that names it and what is lost.

use std::path::Path;

use aya::maps::MapType;
use aya::programs::ProgramType;
use aya::sys::{BpfHelper, is_helper_supported, is_map_supported, is_program_supported};
use serde::Serialize;

use super::btf::{self, TaskOffsets};
use profiler_common::unwind::VmaOffsets;

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "lowercase")]
pub enum Check {
    /// Present and usable.
    Yes,
    /// Absent, with why.
    No(String),
    /// Could not be told (e.g. probing needs a privilege Ember lacks).
    Unknown(String),
}

impl Check {
    /// Whether the feature is known to be present.
    #[must_use]
    pub fn is_yes(&self) -> bool {
        matches!(self, Check::Yes)
    }

    fn from_probe<E: std::error::Error>(r: Result<bool, E>, missing: &str) -> Check {
        match r {
            Ok(true) => Check::Yes,
            Ok(false) => Check::No(missing.to_owned()),
            Err(e) => Check::Unknown(error_chain(&e)),
        }
    }
}

/// A Linux capability Ember uses, with what it buys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Capability {
    /// `CAP_…` name.
    pub name: &'static str,
    /// Its number (`linux/capability.h`).
    pub bit: u32,
    /// What Ember does with it.
    pub purpose: &'static str,
    /// Whether missing it stops Ember (rather than leaving frames unnamed).
    pub essential: bool,
}

/// The capabilities of Ember's least-privilege set, in the order `ember doctor` lists them.
///
/// `CAP_SYS_ADMIN` also grants what `CAP_BPF`, `CAP_PERFMON` and `CAP_CHECKPOINT_RESTORE`
/// grant (the kernel accepts either), so root and older setups keep working.
pub const CAPABILITIES: [Capability; 6] = [
    Capability {
        name: "CAP_BPF",
        bit: 39,
        purpose: "create eBPF maps and load the programs",
        essential: true,
    },
    Capability {
        name: "CAP_PERFMON",
        bit: 38,
        purpose: "open perf events on every CPU, attach tracing programs, read kernel memory from eBPF",
        essential: true,
    },
    Capability {
        name: "CAP_SYS_PTRACE",
        bit: 19,
        purpose: "read other users' /proc/PID/maps, mem and root (names their frames)",
        essential: false,
    },
    Capability {
        name: "CAP_CHECKPOINT_RESTORE",
        bit: 40,
        purpose: "open /proc/PID/map_files (binaries of containers and of exited processes)",
        essential: false,
    },
    Capability {
        name: "CAP_DAC_READ_SEARCH",
        bit: 2,
        purpose: "read binaries and debug files other users own",
        essential: false,
    },
    Capability {
        name: "CAP_SYSLOG",
        bit: 34,
        purpose: "read kernel symbol addresses in /proc/kallsyms (names kernel frames)",
        essential: false,
    },
];

const CAP_SYS_ADMIN: u32 = 21;

/// The effective capability set of this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CapSet {
    /// `CapEff` from `/proc/self/status`.
    pub effective: u64,
}

impl CapSet {
    /// This process's effective set.
    #[must_use]
    pub fn current() -> CapSet {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        CapSet::from_status(&status)
    }

    /// Parses the `CapEff:` line of a `/proc/PID/status`.
    #[must_use]
    pub fn from_status(status: &str) -> CapSet {
        let effective = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        CapSet { effective }
    }

    fn raw(self, bit: u32) -> bool {
        bit < 64 && self.effective & (1 << bit) != 0
    }

    /// Whether the kernel grants what `cap` is for (directly, or through `CAP_SYS_ADMIN`
    /// where the kernel accepts it instead).
    #[must_use]
    pub fn grants(self, cap: &Capability) -> bool {
        let admin_covers = matches!(
            cap.name,
            "CAP_BPF" | "CAP_PERFMON" | "CAP_CHECKPOINT_RESTORE"
        );
        self.raw(cap.bit) || (admin_covers && self.raw(CAP_SYS_ADMIN))
    }

    /// The capabilities of [`CAPABILITIES`] this set lacks.
    #[must_use]
    pub fn missing(self) -> Vec<&'static Capability> {
        CAPABILITIES.iter().filter(|c| !self.grants(c)).collect()
    }
}

/// Everything probed about the node.
#[derive(Clone, Debug, Serialize)]
pub struct NodeProbe {
    /// `uname -r`.
    pub kernel_release: String,
    /// The bpf syscall and `perf_event` programs.
    pub perf_event_programs: Check,
    /// Raw tracepoints (the fork and exec hooks), attached by name without tracefs.
    pub raw_tracepoints: Check,
    /// `BPF_MAP_TYPE_RINGBUF` (process announcements).
    pub ring_buffer: Check,
    /// A `cpu-clock` perf event on every process of a CPU.
    pub perf_events: Check,
    /// `bpf_loop` from perf_event programs (the table unwinder's walk).
    pub bpf_loop: Check,
    /// `bpf_get_current_task_btf` and `bpf_task_pt_regs` (user registers of samples taken
    /// in the kernel, for the table unwinder).
    pub task_pt_regs: Check,
    /// `bpf_find_vma` and the VMA, file and inode fields of the kernel's BTF: tables found
    /// by the file behind a PC, for processes started while Ember runs.
    pub file_lookup: Check,
    /// The offsets, when [`NodeProbe::file_lookup`] is `Yes`.
    #[serde(skip)]
    pub vma_offsets: Option<VmaOffsets>,
    /// The kernel's BTF and the `task_struct` offsets read from it (the fork hook).
    pub btf: Check,
    /// The offsets, when [`NodeProbe::btf`] is `Yes`.
    #[serde(skip)]
    pub task_offsets: Option<TaskOffsets>,
    /// `kernel.perf_event_paranoid`.
    pub perf_event_paranoid: Option<i64>,
    /// `kernel.kptr_restrict`.
    pub kptr_restrict: Option<i64>,
    /// `kernel.bpf_stats_enabled` (per-program run time, for benchmarks).
    pub bpf_stats_enabled: Option<bool>,
    /// Where a cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or
    /// `/sys/fs/cgroup/unified` on hybrid hosts): container and pod labels.
    pub cgroup_v2: Option<String>,
    /// Whether tracefs happens to be mounted (informational: Ember does not need it).
    pub tracefs_mounted: bool,
    /// Effective capabilities.
    pub capabilities: CapSet,
    /// Effective user id.
    pub euid: u32,
}

/// What the sampler will use, decided from a [`NodeProbe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Load the program with the table unwinder (else the frame-pointer-only one).
    pub table_unwinder: bool,
    /// The file lookup's offsets, when the table unwinder finds tables by file too.
    pub file_lookup: Option<VmaOffsets>,
    /// The fork hook's offsets; `None`: children are not followed by the kernel.
    pub follow_forks: Option<TaskOffsets>,
    /// One line per degraded feature: what is missing and what is lost.
    pub warnings: Vec<String>,
}

/// Why Ember cannot run here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    /// What is missing.
    pub what: String,
    /// What to do about it.
    pub fix: String,
}

/// Whether the program's copy of a VMA ([`profiler_common::unwind`]'s 128 bytes) holds the
/// fields the lookup reads.
fn usable_vma_offsets(o: &VmaOffsets) -> bool {
    [o.vm_start, o.vm_end, o.vm_pgoff, o.vm_file]
        .iter()
        .all(|&off| off % 8 == 0 && off + 8 <= 128)
}

impl NodeProbe {
    /// Probes the running kernel and this process's privileges. Takes a few milliseconds.
    #[must_use]
    pub fn run() -> NodeProbe {
        let perf_event_programs = Check::from_probe(
            is_program_supported(ProgramType::PerfEvent),
            "this kernel cannot load perf_event eBPF programs (CONFIG_BPF_EVENTS)",
        );
        let raw_tracepoints = Check::from_probe(
            is_program_supported(ProgramType::RawTracePoint),
            "this kernel has no raw tracepoints (Linux 4.17+)",
        );
        let ring_buffer = Check::from_probe(
            is_map_supported(MapType::RingBuf),
            "this kernel has no BPF ring buffer (Linux 5.8+)",
        );
        let helper = |h: BpfHelper, missing: &str| {
            Check::from_probe(is_helper_supported(ProgramType::PerfEvent, h), missing)
        };
        let bpf_loop = helper(
            BpfHelper::BPF_FUNC_loop,
            "this kernel has no bpf_loop (Linux 5.17+)",
        );
        let task_btf = helper(
            BpfHelper::BPF_FUNC_get_current_task_btf,
            "this kernel has no bpf_get_current_task_btf (Linux 5.11+ with BTF)",
        );
        let task_pt_regs = match task_btf {
            Check::Yes => helper(
                BpfHelper::BPF_FUNC_task_pt_regs,
                "this kernel has no bpf_task_pt_regs (Linux 5.15+)",
            ),
            other => other,
        };
        let (btf, task_offsets, vma) = match btf::read_offsets(Path::new(btf::VMLINUX_BTF)) {
            Ok((task, vma)) => (Check::Yes, Some(task), Some(vma)),
            Err(e) => (Check::No(format!("{e:#}")), None, None),
        };
        let (file_lookup, vma_offsets) = match helper(
            BpfHelper::BPF_FUNC_find_vma,
            "this kernel has no bpf_find_vma (Linux 5.17+)",
        ) {
            Check::Yes => match vma {
                Some(Ok(o)) if usable_vma_offsets(&o) => (Check::Yes, Some(o)),
                Some(Ok(o)) => (
                    Check::No(format!(
                        "vm_area_struct's fields lie beyond the bytes the program copies ({o:?})"
                    )),
                    None,
                ),
                Some(Err(e)) => (Check::No(format!("{e:#}")), None),
                None => (Check::No("no kernel BTF".to_owned()), None),
            },
            other => (other, None),
        };
        NodeProbe {
            kernel_release: kernel_release(),
            perf_event_programs,
            raw_tracepoints,
            ring_buffer,
            perf_events: probe_perf_event(),
            bpf_loop,
            task_pt_regs,
            file_lookup,
            vma_offsets,
            btf,
            task_offsets,
            perf_event_paranoid: sysctl("kernel/perf_event_paranoid"),
            kptr_restrict: sysctl("kernel/kptr_restrict"),
            bpf_stats_enabled: sysctl("kernel/bpf_stats_enabled").map(|v| v != 0),
            cgroup_v2: mount_of("cgroup2"),
            tracefs_mounted: mount_of("tracefs").is_some(),
            capabilities: CapSet::current(),
            // SAFETY: geteuid has no preconditions.
            euid: unsafe { libc::geteuid() },
        }
    }

    /// The first essential that is missing, with what to do; `None` when Ember can run.
    #[must_use]
    pub fn blocker(&self) -> Option<Blocker> {
        let caps = self.capabilities;
        let need = |name: &str| {
            CAPABILITIES
                .iter()
                .find(|c| c.name == name)
                .is_some_and(|c| !caps.grants(c))
        };
        if need("CAP_BPF") || need("CAP_PERFMON") {
            let missing: Vec<&str> = CAPABILITIES
                .iter()
                .filter(|c| c.essential && !caps.grants(c))
                .map(|c| c.name)
                .collect();
            return Some(Blocker {
                what: format!("ember lacks {}", missing.join(" and ")),
                fix: privilege_hint(),
            });
        }
        for (check, what) in [
            (&self.perf_event_programs, "perf_event eBPF programs"),
            (&self.ring_buffer, "the BPF ring buffer"),
            (&self.perf_events, "cpu-clock perf events"),
        ] {
            match check {
                Check::Yes => {}
                Check::No(why) => {
                    return Some(Blocker {
                        what: format!("{what}: {why}"),
                        fix: "Ember needs Linux 5.8 or later with CONFIG_BPF_EVENTS and \
                              CONFIG_PERF_EVENTS"
                            .to_owned(),
                    });
                }
                Check::Unknown(e) => {
                    return Some(Blocker {
                        what: format!("{what} could not be probed: {e}"),
                        fix: privilege_hint(),
                    });
                }
            }
        }
        None
    }

    /// What the sampler uses on this node for `mode`; `Err` when `--unwinder dwarf` was
    /// asked for and cannot be had.
    ///
    /// # Errors
    /// The reason, worded for the person who asked for `--unwinder dwarf`.
    pub fn plan(&self, wants_tables: bool, tables_required: bool) -> Result<Plan, String> {
        let mut warnings = Vec::new();
        let unwinder_missing = [
            ("bpf_loop", &self.bpf_loop),
            ("bpf_task_pt_regs", &self.task_pt_regs),
        ]
        .into_iter()
        .find(|(_, c)| !c.is_yes())
        .map(|(name, c)| match c {
            Check::No(why) | Check::Unknown(why) => format!("{name}: {why}"),
            Check::Yes => unreachable!("filtered above"),
        });
        let table_unwinder = match (&unwinder_missing, wants_tables) {
            (_, false) => false,
            (None, true) => true,
            (Some(why), true) if tables_required => {
                return Err(format!(
                    "--unwinder dwarf needs the table unwinder, which this kernel cannot run \
                     ({why}); use --unwinder fp or auto"
                ));
            }
            (Some(why), true) => {
                warnings.push(format!(
                    "{why}: --unwinder dwarf unavailable, using frame pointers (code built \
                     without them shows short stacks)"
                ));
                false
            }
        };
        let follow_forks = match (&self.raw_tracepoints, self.task_offsets) {
            (Check::Yes, Some(o)) => Some(o),
            (Check::Yes, None) => {
                let why = match &self.btf {
                    Check::No(w) | Check::Unknown(w) => w.clone(),
                    Check::Yes => String::new(),
                };
                warnings.push(format!(
                    "no kernel BTF ({why}): the fork hook is off; children of targets are \
                     found by reading /proc every 20 ms, so one that lives shorter may be \
                     missed (the command of `ember record -- CMD` itself is complete)"
                ));
                None
            }
            (other, _) => {
                let why = match other {
                    Check::No(w) | Check::Unknown(w) => w.clone(),
                    Check::Yes => String::new(),
                };
                warnings.push(format!(
                    "no raw tracepoints ({why}): the fork and exec hooks are off; children \
                     of targets are found by reading /proc every 20 ms, and exec'd images \
                     one drain later"
                ));
                None
            }
        };
        let file_lookup = match (&self.file_lookup, self.vma_offsets) {
            _ if !table_unwinder => None,
            (Check::Yes, Some(o)) => Some(o),
            // Without BTF the one warning about it says this too.
            _ if !self.btf.is_yes() => {
                if let Some(w) = warnings.iter_mut().find(|w| w.contains("no kernel BTF")) {
                    w.push_str(
                        "; and a process started while ember runs is walked by frame \
                         pointers until its tables are registered",
                    );
                }
                None
            }
            (other, _) => {
                let why = match other {
                    Check::No(w) | Check::Unknown(w) => w.clone(),
                    Check::Yes => "no offsets".to_owned(),
                };
                warnings.push(format!(
                    "no file lookup ({why}): a process started while ember runs is walked by \
                     frame pointers until its tables are registered (its first samples may \
                     stop short of main)"
                ));
                None
            }
        };
        Ok(Plan {
            table_unwinder,
            file_lookup,
            follow_forks,
            warnings,
        })
    }

    /// One warning per missing optional capability: what stays unnamed without it.
    #[must_use]
    pub fn privilege_warnings(&self) -> Vec<String> {
        if self.euid == 0 && self.capabilities.missing().is_empty() {
            return Vec::new();
        }
        let kallsyms_hidden =
            self.kptr_restrict.unwrap_or(1) >= 1 || self.perf_event_paranoid.unwrap_or(2) > 1;
        self.capabilities
            .missing()
            .into_iter()
            .filter(|c| !c.essential)
            .filter(|c| c.name != "CAP_SYSLOG" || kallsyms_hidden)
            .map(|c| {
                format!(
                    "no {}: cannot {}; affected frames stay unnamed",
                    c.name, c.purpose
                )
            })
            .collect()
    }
}

/// An error and its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// What to run to give Ember its privileges.
#[must_use]
pub fn privilege_hint() -> String {
    let names: Vec<String> = CAPABILITIES
        .iter()
        .map(|c| c.name.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect();
    format!(
        "run ember as root, or give it the capabilities it needs: \
         `sudo setcap {}+ep $(command -v ember)` (CAP_BPF and CAP_PERFMON are essential; \
         `ember doctor` says what each one is for)",
        names
            .iter()
            .map(|n| format!("cap_{n}"))
            .collect::<Vec<_>>()
            .join(",")
    )
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn sysctl(name: &str) -> Option<i64> {
    std::fs::read_to_string(Path::new("/proc/sys").join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The first mount point of a file system type, from `/proc/self/mounts`.
fn mount_of(fstype: &str) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let point = f.nth(1)?;
        (f.next()? == fstype).then(|| point.to_owned())
    })
}

/// The first fields of `struct perf_event_attr` (`PERF_ATTR_SIZE_VER0`, 64 bytes): enough
/// to open a software event, and accepted by every kernel.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttrV0 {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    bp_addr: u64,
}

/// Opens and closes a disabled `cpu-clock` event on every process of CPU 0: the same
/// permission checks as the sampler's events.
fn probe_perf_event() -> Check {
    const PERF_TYPE_SOFTWARE: u32 = 1;
    const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
    let attr = PerfEventAttrV0 {
        type_: PERF_TYPE_SOFTWARE,
        size: 64,
        config: PERF_COUNT_SW_CPU_CLOCK,
        flags: 1, // disabled
        ..PerfEventAttrV0::default()
    };
    // SAFETY: perf_event_open with a valid attribute of the size it declares; the returned
    // descriptor is closed below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &raw const attr,
            -1i32,
            0i32,
            -1i32,
            libc::c_ulong::from(1u8 << 3), // PERF_FLAG_FD_CLOEXEC
        )
    };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        return Check::No(super::error::perf_event_hint(&err));
    }
    // SAFETY: `fd` was just returned by the kernel and is owned here.
    unsafe { libc::close(i32::try_from(fd).unwrap_or(-1)) };
    Check::Yes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_from_status() {
        // Root's full set, then CAP_BPF + CAP_PERFMON only.
        let root = CapSet::from_status("Name:\tx\nCapEff:\t000001ffffffffff\n");
        assert!(root.missing().is_empty());
        let bpf_perfmon =
            CapSet::from_status(&format!("CapEff:\t{:016x}\n", (1u64 << 39) | (1 << 38)));
        let missing: Vec<_> = bpf_perfmon.missing().iter().map(|c| c.name).collect();
        assert_eq!(
            missing,
            [
                "CAP_SYS_PTRACE",
                "CAP_CHECKPOINT_RESTORE",
                "CAP_DAC_READ_SEARCH",
                "CAP_SYSLOG"
            ]
        );
        // CAP_SYS_ADMIN stands in for CAP_BPF, CAP_PERFMON and CAP_CHECKPOINT_RESTORE.
        let admin = CapSet::from_status(&format!("CapEff:\t{:016x}\n", 1u64 << 21));
        let missing: Vec<_> = admin.missing().iter().map(|c| c.name).collect();
        assert_eq!(
            missing,
            ["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH", "CAP_SYSLOG"]
        );
        assert_eq!(CapSet::from_status("garbage"), CapSet::default());
    }

    fn probe_with(bpf_loop: Check, btf: bool) -> NodeProbe {
        NodeProbe {
            kernel_release: "6.18".into(),
            perf_event_programs: Check::Yes,
            raw_tracepoints: Check::Yes,
            ring_buffer: Check::Yes,
            perf_events: Check::Yes,
            bpf_loop,
            task_pt_regs: Check::Yes,
            file_lookup: if btf {
                Check::Yes
            } else {
                Check::No("cannot read".into())
            },
            vma_offsets: btf.then(VmaOffsets::default),
            btf: if btf {
                Check::Yes
            } else {
                Check::No("cannot read".into())
            },
            task_offsets: btf.then_some(TaskOffsets {
                tgid: 1234,
                pid: 1230,
                fsbase: 0,
            }),
            perf_event_paranoid: Some(2),
            kptr_restrict: Some(0),
            bpf_stats_enabled: Some(false),
            cgroup_v2: Some("/sys/fs/cgroup".into()),
            tracefs_mounted: false,
            capabilities: CapSet::from_status("CapEff:\t000001ffffffffff\n"),
            euid: 0,
        }
    }

    #[test]
    fn plan_degrades_with_one_warning_per_missing_feature() {
        let full = probe_with(Check::Yes, true)
            .plan(true, false)
            .expect("plan");
        assert!(full.table_unwinder && full.follow_forks.is_some() && full.warnings.is_empty());

        let no_loop = probe_with(Check::No("no bpf_loop (Linux 5.17+)".into()), true);
        let plan = no_loop.plan(true, false).expect("auto degrades");
        assert!(!plan.table_unwinder);
        assert_eq!(plan.warnings.len(), 1);
        assert!(
            plan.warnings[0].contains("bpf_loop") && plan.warnings[0].contains("frame pointers")
        );
        let err = no_loop
            .plan(true, true)
            .expect_err("--unwinder dwarf cannot degrade");
        assert!(
            err.contains("--unwinder dwarf") && err.contains("bpf_loop"),
            "{err}"
        );
        // --unwinder fp asks for nothing the kernel lacks.
        assert!(no_loop.plan(false, false).expect("fp").warnings.is_empty());

        let no_btf = probe_with(Check::Yes, false)
            .plan(true, false)
            .expect("plan");
        assert!(no_btf.follow_forks.is_none() && no_btf.table_unwinder);
        assert_eq!(no_btf.warnings.len(), 1);
        assert!(no_btf.warnings[0].contains("BTF"), "{:?}", no_btf.warnings);
        assert!(no_btf.file_lookup.is_none() && full.file_lookup.is_some());

        let mut no_find_vma = probe_with(Check::Yes, true);
        no_find_vma.file_lookup = Check::No("this kernel has no bpf_find_vma".into());
        let plan = no_find_vma.plan(true, false).expect("plan");
        assert!(plan.table_unwinder && plan.file_lookup.is_none());
        assert_eq!(plan.warnings.len(), 1);
        assert!(
            plan.warnings[0].contains("bpf_find_vma")
                && plan.warnings[0].contains("frame pointers"),
            "{:?}",
            plan.warnings
        );
    }

    #[test]
    fn a_missing_essential_capability_blocks_and_names_itself() {
        let mut p = probe_with(Check::Yes, true);
        assert_eq!(p.blocker(), None);
        p.capabilities = CapSet::from_status(&format!("CapEff:\t{:016x}\n", 1u64 << 39));
        p.euid = 1000;
        let b = p.blocker().expect("no CAP_PERFMON");
        assert!(
            b.what.contains("CAP_PERFMON") && !b.what.contains("CAP_BPF"),
            "{b:?}"
        );
        assert!(
            b.fix.contains("setcap") && b.fix.contains("cap_perfmon"),
            "{b:?}"
        );
        let warnings = p.privilege_warnings();
        assert!(
            warnings.iter().any(|w| w.contains("CAP_SYS_PTRACE")),
            "{warnings:?}"
        );
        // kallsyms addresses are hidden at paranoid 2 without CAP_SYSLOG.
        assert!(
            warnings.iter().any(|w| w.contains("CAP_SYSLOG")),
            "{warnings:?}"
        );
    }

    #[test]
    fn probing_this_machine_is_consistent() {
        let p = NodeProbe::run();
        assert!(!p.kernel_release.is_empty());
        // As root here every essential is present; as another user the blocker names the
        // capabilities.
        match p.blocker() {
            None => assert!(p.perf_event_programs.is_yes() && p.perf_events.is_yes()),
            Some(b) => assert!(!b.what.is_empty() && !b.fix.is_empty(), "{b:?}"),
        }
    }
}
