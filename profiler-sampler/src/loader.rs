//! Loading the eBPF object, sizing its maps and attaching its programs.

use std::time::Duration;

use aya::{
    Ebpf, EbpfError,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, StackTraceMap},
    programs::{
        PerfEvent, ProgramError, RawTracePoint,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
};
use profiler_common::python::{PY_CONFIG_GLOBAL, PY_PROCS_MAP, PyConfig, PyProc};
use profiler_common::unwind::{
    EXEC_PROGRAM, FILE_LOOKUP_GLOBAL, FILE_UNWIND_MAP, FileKey, FileUnwind, LEARNED_MAP, Learned,
    PROC_UNWIND_MAP, ProcUnwind, UNWIND_CONFIG_MAP, UNWIND_ROWS_MAP, UNWIND_STRICT,
    USER_STACKS_MAPS, UserStack, VDSO_FILE,
};
use profiler_common::{
    CONTROL_MAP, COUNTS_MAPS, Control, FORK_PROGRAM, INFLIGHT_MAP, OFFCPU_FP_PROGRAM,
    OFFCPU_PENDING_MAP, OFFCPU_PROGRAM, OffCpuPending, SAMPLE_FP_PROGRAM, SAMPLE_PROGRAM,
    STACKS_MAPS, STATS_MAP, SampleKey, Stat, TARGET_TGIDS_MAP,
};
use std::sync::Arc;
use tracing::{info, warn};

use super::python::PythonProcs;

use super::error::{SampleError, is_permission, perf_event_hint};
use super::probe::NodeProbe;
use super::unwind::{AyaUnwindMaps, UnwindConfig, UnwindTables, UnwindWorker, UnwinderMode};
use super::{SamplerStats, drain::Generation};

/// The eBPF object, built by `build.rs`; empty when built with `AYA_BUILD_SKIP=1`.
///
/// Embedded 8-byte aligned: aya parses the ELF in place, and a plain `include_bytes!` gives
/// only byte alignment, so the object would load or not depending on where the linker put it.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ember-sampler"));

/// How often a targeted run reads its targets' mappings again (libraries loaded after
/// start, by the dynamic loader or `dlopen`).
const TARGET_RECHECK: Duration = Duration::from_millis(100);

/// Which processes to sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every process on every CPU, the idle task included.
    All,
    /// These processes, their threads, and the children they fork from now on.
    Pids(Vec<u32>),
    /// The children this process forks from now on (not the process itself): how
    /// `ember record -- CMD` follows a command from its first instruction.
    ChildrenOf(u32),
}

/// How to sample.
#[derive(Clone, Debug)]
pub struct SamplerConfig {
    /// Samples per second per CPU.
    pub frequency_hz: u64,
    /// Which processes.
    pub target: Target,
    /// Record kernel stacks.
    pub kernel_stacks: bool,
    /// Entries in each generation's count map (distinct keys per drain).
    pub counts_entries: u32,
    /// Entries in each generation's stack map (distinct stacks per drain).
    pub stacks_entries: u32,
    /// How user stacks are walked (`--unwinder`, `--unwind-table-mem`).
    pub unwind: UnwindConfig,
    /// Record off-CPU time too (`--off-cpu`); `None` records CPU samples only.
    pub off_cpu: Option<OffCpuConfig>,
}

/// How off-CPU time is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffCpuConfig {
    /// Intervals off CPU shorter than this are not recorded (`--off-cpu-min`).
    pub min: Duration,
    /// Take the stacks of one in this many switch-outs, chosen at random, and weight their
    /// time by this factor (`--off-cpu-every`; 1 records all).
    pub every: u32,
}

impl OffCpuConfig {
    /// The default shortest interval recorded: below it, switches cost more to record
    /// than they tell (a futex handoff, a short preemption).
    pub const DEFAULT_MIN: Duration = Duration::from_micros(100);
}

impl Default for OffCpuConfig {
    fn default() -> Self {
        OffCpuConfig {
            min: Self::DEFAULT_MIN,
            every: 1,
        }
    }
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            frequency_hz: 99,
            target: Target::All,
            kernel_stacks: true,
            counts_entries: profiler_common::DEFAULT_COUNTS_ENTRIES,
            stacks_entries: profiler_common::DEFAULT_STACKS_ENTRIES,
            unwind: UnwindConfig::default(),
            off_cpu: None,
        }
    }
}

/// A running sampler: the programs stay attached until it is dropped.
pub struct Sampler {
    // Declared first so the programs detach before the maps close.
    _ebpf: Ebpf,
    pub(super) generations: [Generation; 2],
    pub(super) control: Array<MapData, Control>,
    pub(super) control_value: Control,
    pub(super) stats: PerCpuArray<MapData, u64>,
    pub(super) inflight: PerCpuArray<MapData, u64>,
    targets: HashMap<MapData, u32, u32>,
    pub(super) cpus: Vec<u32>,
    pub(super) last_drain: std::time::Instant,
    /// The counters as of the last drain.
    pub(super) drained_stats: SamplerStats,
    /// Samples taken in the last drain's interval that no count map holds, by reason.
    pub(super) drain_unrecorded: Vec<(Stat, u64)>,
    /// Process announcements for symbolizer captures (`events.rs`).
    pub(super) proc_events: Option<super::events::ProcEvents>,
    /// The table unwinder's worker; `None` with `--unwinder fp`.
    pub(super) unwind: Option<UnwindWorker>,
    pub(super) last_sweep: std::time::Instant,
    /// Threads off CPU (`--off-cpu`), read by the drain for the stacks they refer to.
    pub(super) off_cpu_pending: Option<HashMap<MapData, u32, OffCpuPending>>,
    /// Copies of the stacks of drained generations that off-CPU keys may still refer to.
    pub(super) kept_stacks: super::drain::KeptStacks,
    started: std::time::Instant,
    last_unwind_refresh: std::time::Instant,
    /// Whether the kernel adds the targets' new processes (the fork hook is attached).
    follows_forks: bool,
    last_adopt: std::time::Instant,
    /// The mappings the program learned per process (`LEARNED`), when it looks files up.
    learned: Option<HashMap<MapData, u32, Learned>>,
    /// The CPython processes the Python walker knows; `None` without the table unwinder.
    python: Option<Arc<PythonProcs>>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("cpus", &self.cpus)
            .field("control", &self.control_value)
            .finish_non_exhaustive()
    }
}

fn map_error(name: &str, err: MapError) -> SampleError {
    match err {
        MapError::CreateError { io_error, .. } if is_permission(&io_error) => {
            SampleError::Permission { source: io_error }
        }
        other => SampleError::ebpf(format!("eBPF map `{name}`"), other),
    }
}

fn program_error(name: &str, err: ProgramError) -> SampleError {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            if is_permission(&io_error) && verifier_log.to_string().trim().is_empty() {
                SampleError::Permission { source: io_error }
            } else {
                SampleError::Verifier {
                    program: name.to_owned(),
                    source: io_error,
                    log: verifier_log.to_string(),
                }
            }
        }
        ProgramError::SyscallError(e) if is_permission(&e.io_error) => {
            SampleError::Permission { source: e.io_error }
        }
        other => SampleError::ebpf(format!("eBPF program `{name}`"), other),
    }
}

fn load_error(err: EbpfError) -> SampleError {
    match err {
        EbpfError::MapError(e) => map_error("(loading)", e),
        EbpfError::ProgramError(e) => program_error("(loading)", e),
        other => SampleError::ebpf("loading the eBPF object", other),
    }
}

fn take<T>(ebpf: &mut Ebpf, name: &str) -> Result<T, SampleError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or_else(|| {
        SampleError::ebpf(
            format!("the eBPF object has no map `{name}`"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })?;
    T::try_from(map).map_err(|e| map_error(name, e))
}

/// A second fd of map `name` (for syscalls aya does not wrap, [`super::batch`]).
fn map_fd(ebpf: &Ebpf, name: &str) -> Result<std::os::fd::OwnedFd, SampleError> {
    use std::os::fd::AsFd;
    let data = match ebpf.map(name) {
        Some(aya::maps::Map::HashMap(data) | aya::maps::Map::LruHashMap(data)) => data,
        _ => {
            return Err(SampleError::ebpf(
                format!("the eBPF object has no hash map `{name}`"),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
    };
    data.fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| SampleError::ebpf(format!("duplicating the fd of map `{name}`"), e))
}

impl Sampler {
    /// Loads the program, sizes the maps and attaches to every online CPU.
    ///
    /// # Errors
    /// [`SampleError`] says what went wrong and what to do: missing privileges, a verifier
    /// rejection (with its log), a perf event that cannot be opened, a missing target PID.
    pub fn start(config: &SamplerConfig) -> Result<Sampler, SampleError> {
        if OBJECT.is_empty() {
            return Err(SampleError::NoObject);
        }
        if let Target::Pids(pids) = &config.target {
            for &pid in pids {
                if !crate::procinfo::process_exists(pid) {
                    return Err(SampleError::NoSuchProcess { pid });
                }
            }
        }
        let started = std::time::Instant::now();
        let probe = NodeProbe::run();
        if let Some(b) = probe.blocker() {
            return Err(SampleError::Unsupported {
                what: b.what,
                fix: b.fix,
            });
        }
        let plan = probe
            .plan(
                config.unwind.mode != UnwinderMode::Fp,
                config.unwind.mode == UnwinderMode::Dwarf,
            )
            .map_err(SampleError::Unwinder)?;
        for w in plan.warnings.iter().chain(&probe.privilege_warnings()) {
            warn!("{w}");
        }
        // The program uses no CO-RE relocations: a loader that has parsed no kernel BTF
        // (aya 0.14's `EbpfLoader::new()` parses all of it; see `no_btf`).
        let mut loader = super::no_btf::loader();
        for name in COUNTS_MAPS {
            loader.map_max_entries(name, config.counts_entries.max(1));
        }
        for name in STACKS_MAPS.into_iter().chain(USER_STACKS_MAPS) {
            loader.map_max_entries(name, config.stacks_entries.max(1));
        }
        let row_capacity = config.unwind.row_capacity();
        loader.map_max_entries(UNWIND_ROWS_MAP, row_capacity);
        // The LRU map is preallocated: one entry when off-CPU time is not recorded.
        let off_cpu_offsets = match (config.off_cpu, plan.follow_forks) {
            (None, _) => None,
            (Some(_), Some(offsets)) if probe.raw_tracepoints.is_yes() => Some(offsets),
            (Some(_), _) => {
                return Err(SampleError::Unsupported {
                    what: "off-CPU time needs raw tracepoints and the kernel's BTF \
                           (/sys/kernel/btf/vmlinux), for the offset of `task_struct.pid`"
                        .to_owned(),
                    fix: "run without --off-cpu on this kernel (see `ember doctor`)".to_owned(),
                });
            }
        };
        if off_cpu_offsets.is_none() {
            loader.map_max_entries(OFFCPU_PENDING_MAP, 1);
        }
        // The file lookup is a read-only global: left off, the verifier drops its code.
        let file_lookup = plan.file_lookup.unwrap_or_default();
        loader.override_global(FILE_LOOKUP_GLOBAL, &file_lookup, true);
        if plan.file_lookup.is_none() {
            loader.map_max_entries(LEARNED_MAP, 1);
        }
        // So is the Python walker: it needs `bpf_loop`, as the table unwinder does.
        let py_config = PyConfig {
            enabled: u32::from(plan.table_unwinder),
            task_fsbase: probe.task_offsets.map_or(0, |t| t.fsbase),
        };
        loader.override_global(PY_CONFIG_GLOBAL, &py_config, true);
        let mut ebpf = loader.load(OBJECT).map_err(load_error)?;

        let generations = [
            Generation {
                counts_fd: map_fd(&ebpf, COUNTS_MAPS[0])?,
                counts: take::<HashMap<MapData, SampleKey, u64>>(&mut ebpf, COUNTS_MAPS[0])?,
                stacks: take::<StackTraceMap<MapData>>(&mut ebpf, STACKS_MAPS[0])?,
                user_stacks: take::<HashMap<MapData, u32, UserStack>>(
                    &mut ebpf,
                    USER_STACKS_MAPS[0],
                )?,
                walked: std::time::Instant::now(),
                walk_due: false,
            },
            Generation {
                counts_fd: map_fd(&ebpf, COUNTS_MAPS[1])?,
                counts: take::<HashMap<MapData, SampleKey, u64>>(&mut ebpf, COUNTS_MAPS[1])?,
                stacks: take::<StackTraceMap<MapData>>(&mut ebpf, STACKS_MAPS[1])?,
                user_stacks: take::<HashMap<MapData, u32, UserStack>>(
                    &mut ebpf,
                    USER_STACKS_MAPS[1],
                )?,
                walked: std::time::Instant::now(),
                walk_due: false,
            },
        ];
        let mut control: Array<MapData, Control> = take(&mut ebpf, CONTROL_MAP)?;
        let stats: PerCpuArray<MapData, u64> = take(&mut ebpf, STATS_MAP)?;
        let inflight: PerCpuArray<MapData, u64> = take(&mut ebpf, INFLIGHT_MAP)?;
        let mut targets: HashMap<MapData, u32, u32> = take(&mut ebpf, TARGET_TGIDS_MAP)?;
        let unwind = if !plan.table_unwinder {
            None
        } else {
            let rows = match ebpf.take_map(UNWIND_ROWS_MAP) {
                Some(aya::maps::Map::Array(data)) => data,
                _ => return Err(missing_map(UNWIND_ROWS_MAP)),
            };
            let procs: HashMap<MapData, u32, ProcUnwind> = take(&mut ebpf, PROC_UNWIND_MAP)?;
            let files: Option<HashMap<MapData, FileKey, FileUnwind>> = match plan.file_lookup {
                Some(_) => Some(take(&mut ebpf, FILE_UNWIND_MAP)?),
                None => None,
            };
            let mut settings: Array<MapData, u32> = take(&mut ebpf, UNWIND_CONFIG_MAP)?;
            let strict = if config.unwind.mode == UnwinderMode::Dwarf {
                UNWIND_STRICT
            } else {
                0
            };
            settings
                .set(0, strict, 0)
                .map_err(|e| map_error(UNWIND_CONFIG_MAP, e))?;
            let maps = AyaUnwindMaps::new(rows, procs, files, settings, row_capacity)?;
            let mut tables = UnwindTables::new(config.unwind.mode, Box::new(maps));
            // Tables for every process on the node only where asked for (`dwarf`); `auto`
            // builds them for the processes that are sampled enough to matter.
            if config.unwind.mode == UnwinderMode::Auto && matches!(config.target, Target::All) {
                tables = tables
                    .with_min_samples(super::unwind::auto_all_min_samples(config.frequency_hz));
            }
            Some(UnwindWorker::start(tables)?)
        };

        let filtered = !matches!(config.target, Target::All);
        let fork_offsets = plan.follow_forks.filter(|_| filtered);
        let control_value = Control {
            generation: 0,
            filter_tgids: u32::from(filtered),
            skip_kernel: u32::from(!config.kernel_stacks),
            task_tgid_offset: fork_offsets.map_or(0, |o| o.tgid),
            paused: 0,
            off_cpu_min_us: config
                .off_cpu
                .map_or(0, |o| u32::try_from(o.min.as_micros()).unwrap_or(u32::MAX)),
            off_cpu_every: config.off_cpu.map_or(1, |o| o.every.max(1)),
            task_pid_offset: off_cpu_offsets.map_or(0, |o| o.pid),
        };
        match &config.target {
            Target::All => {}
            Target::Pids(pids) => {
                for &pid in pids {
                    targets
                        .insert(pid, pid, 0)
                        .map_err(|e| map_error(TARGET_TGIDS_MAP, e))?;
                }
            }
            Target::ChildrenOf(pid) => targets
                .insert(pid, pid, 0)
                .map_err(|e| map_error(TARGET_TGIDS_MAP, e))?,
        }
        control
            .set(0, control_value, 0)
            .map_err(|e| map_error(CONTROL_MAP, e))?;

        // Raw tracepoints attach by name through the bpf syscall: no tracefs.
        if fork_offsets.is_some() {
            attach_raw_tracepoint(&mut ebpf, FORK_PROGRAM, "sched_process_fork")?;
        }
        // One exec hook serves the unwinder (it drops the old image's mappings) and the
        // symbolizer's captures (it announces the new image).
        if probe.raw_tracepoints.is_yes() {
            attach_raw_tracepoint(&mut ebpf, EXEC_PROGRAM, "sched_process_exec")?;
        }
        if let Some(u) = &unwind {
            if let Target::ChildrenOf(_) = config.target {
                // A forked child runs ember's image until it execs its command.
                u.skip_own_image();
            }
            if let Target::Pids(pids) = &config.target {
                u.ensure(pids.clone(), super::unwind::RECHECK);
            }
            // Every process on the node maps the libc and loader ember maps: with their
            // tables published by file, a process that starts while ember runs unwinds
            // through them from its first sample.
            if matches!(config.target, Target::All) && plan.file_lookup.is_some() {
                u.preload_libraries_later(std::process::id());
            }
        }
        let python = if plan.table_unwinder {
            let map: HashMap<MapData, u32, PyProc> = take(&mut ebpf, PY_PROCS_MAP)?;
            Some(Arc::new(PythonProcs::new(Some(map))))
        } else {
            None
        };
        let proc_events = super::events::setup(&mut ebpf, python.clone());

        let cpus = aya::util::online_cpus().map_err(|(what, e)| {
            SampleError::ebpf(format!("reading the online CPUs ({what})"), e)
        })?;
        // The frame-pointer-only program when the table unwinder is off: it does none of
        // the unwinder's lookups, and loads where `bpf_loop` is missing.
        let program = if plan.table_unwinder {
            SAMPLE_PROGRAM
        } else {
            SAMPLE_FP_PROGRAM
        };
        let sample: &mut PerfEvent = ebpf
            .program_mut(program)
            .ok_or_else(|| missing_program(program))?
            .try_into()
            .map_err(|e| program_error(program, e))?;
        sample.load().map_err(|e| program_error(program, e))?;
        for &cpu in &cpus {
            sample
                .attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Frequency(config.frequency_hz),
                    false,
                )
                .map_err(|e| match e {
                    ProgramError::SyscallError(s) => SampleError::PerfEvent {
                        cpu,
                        hint: perf_event_hint(&s.io_error),
                        source: s.io_error,
                    },
                    other => program_error(program, other),
                })?;
        }
        let off_cpu_pending = if off_cpu_offsets.is_some() {
            let program = if plan.table_unwinder {
                OFFCPU_PROGRAM
            } else {
                OFFCPU_FP_PROGRAM
            };
            attach_raw_tracepoint(&mut ebpf, program, "sched_switch")?;
            Some(take(&mut ebpf, OFFCPU_PENDING_MAP)?)
        } else {
            None
        };
        let learned: Option<HashMap<MapData, u32, Learned>> = match plan.file_lookup {
            Some(_) if plan.table_unwinder => Some(take(&mut ebpf, LEARNED_MAP)?),
            _ => None,
        };
        info!(
            cpus = cpus.len(),
            frequency_hz = config.frequency_hz,
            off_cpu = config.off_cpu.is_some(),
            target = ?config.target,
            program,
            follows_forks = fork_offsets.is_some(),
            elapsed = ?started.elapsed(),
            "sampler attached"
        );
        Ok(Sampler {
            _ebpf: ebpf,
            generations,
            control,
            control_value,
            stats,
            inflight,
            targets,
            cpus,
            last_drain: std::time::Instant::now(),
            drained_stats: SamplerStats::default(),
            drain_unrecorded: Vec::new(),
            proc_events,
            python,
            unwind,
            last_sweep: std::time::Instant::now(),
            off_cpu_pending,
            kept_stacks: super::drain::KeptStacks::default(),
            started: std::time::Instant::now(),
            last_unwind_refresh: std::time::Instant::now(),
            follows_forks: fork_offsets.is_some(),
            last_adopt: std::time::Instant::now(),
            learned,
        })
    }

    /// The CPython processes the Python walker knows, to name their Python frames;
    /// `None` when the table unwinder (and so the walker) is off.
    #[must_use]
    pub fn python(&self) -> Option<Arc<PythonProcs>> {
        self.python.clone()
    }

    /// The file mappings the program's file lookup learned for process `tgid` (kept after
    /// it exits, until pushed out by newer processes), for naming a process whose
    /// capture missed them; empty without the file lookup.
    #[must_use]
    pub fn known_mappings(&self, tgid: u32) -> Vec<symbolizer::KnownMapping> {
        let Some(learned) = self.learned.as_ref().and_then(|m| m.get(&tgid, 0).ok()) else {
            return Vec::new();
        };
        let len = (learned.len as usize).min(learned.mappings.len());
        learned.mappings[..len]
            .iter()
            .filter(|m| m.file.ino != 0 && m.start < m.end)
            .map(|m| symbolizer::KnownMapping {
                start: m.start,
                end: m.end,
                pgoff: m.offset,
                key: (m.file != VDSO_FILE).then_some(symbolizer::FileKey {
                    major: m.file.dev >> 20,
                    minor: m.file.dev & 0xf_ffff,
                    inode: m.file.ino,
                }),
            })
            .collect()
    }

    /// Whether the kernel adds the processes that targets fork (the fork hook is
    /// attached). Without it, a caller that starts a target must add it itself
    /// ([`Sampler::add_target`]) before it runs.
    #[must_use]
    pub fn follows_forks(&self) -> bool {
        self.follows_forks
    }

    /// Samples `pid` from now on (and, with [`Sampler::follows_forks`], its children).
    ///
    /// # Errors
    /// If the target map cannot be written (it is full).
    pub fn add_target(&mut self, pid: u32) -> Result<(), SampleError> {
        self.targets
            .insert(pid, pid, 0)
            .map_err(|e| map_error(TARGET_TGIDS_MAP, e))
    }

    /// Without the fork hook ([`Sampler::follows_forks`]), makes the targets' children
    /// targets by reading `/proc/PID/task/TID/children` of each target, at most every
    /// 20 ms: a child that lives shorter than that may be missed. Does nothing when the
    /// kernel follows forks, or in machine-wide runs.
    pub fn adopt_children(&mut self) {
        if self.follows_forks
            || self.control_value.filter_tgids == 0
            || self.last_adopt.elapsed() < Duration::from_millis(20)
        {
            return;
        }
        self.last_adopt = std::time::Instant::now();
        let targets: Vec<u32> = self.targets.keys().filter_map(Result::ok).collect();
        for tgid in &targets {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{tgid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                    continue;
                };
                for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                    if !targets.contains(&child) && self.add_target(child).is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Loads unwind tables for target processes not set up yet (children just forked or
    /// exec'd): cheap enough to call every few tens of milliseconds in a targeted run, so
    /// a command's tables are in place within its first moments. Does nothing for
    /// machine-wide runs (those load tables as processes show up in drains) or with
    /// `--unwinder fp`.
    pub fn refresh_unwind_targets(&mut self) {
        let Some(u) = &self.unwind else {
            return;
        };
        if self.control_value.filter_tgids == 0 {
            return;
        }
        // Every call while the run is young (a command's exec and its libraries), then
        // twice a second: each call walks the target map and wakes the worker.
        if self.started.elapsed() >= Duration::from_secs(1)
            && self.last_unwind_refresh.elapsed() < Duration::from_millis(500)
        {
            return;
        }
        self.last_unwind_refresh = std::time::Instant::now();
        u.ensure(
            self.targets.keys().filter_map(Result::ok).collect(),
            TARGET_RECHECK,
        );
    }

    /// Loads (and keeps) the unwind tables of the shared libraries `pid` maps, and waits
    /// for them; see [`UnwindTables::preload_libraries`]. A no-op with `--unwinder fp`.
    pub fn preload_unwind_libraries(&mut self, pid: u32) {
        if let Some(u) = &self.unwind {
            u.preload_libraries(pid);
        }
    }

    /// Loads (and keeps) the unwind table of the executable at `path`, and waits for it;
    /// see [`UnwindTables::preload_executable`]. A no-op with `--unwinder fp`.
    pub fn preload_unwind_executable(&mut self, path: &std::path::Path) {
        if let Some(u) = &self.unwind {
            u.preload_executable(path);
        }
    }

    /// The unwind tables' memory and coverage; `None` with `--unwinder fp`.
    #[must_use]
    pub fn unwind_stats(&self) -> Option<super::UnwindStats> {
        self.unwind.as_ref().map(UnwindWorker::stats)
    }

    /// Stops sampling `pid` (and no longer follows its future children).
    ///
    /// # Errors
    /// Only if the map operation fails for a reason other than the PID being absent.
    pub fn remove_target(&mut self, pid: u32) -> Result<(), SampleError> {
        match self.targets.remove(&pid) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(())
            }
            Err(e) => Err(map_error(TARGET_TGIDS_MAP, e)),
        }
    }

    /// Stops recording: from now on samples are only counted as filtered. The next
    /// [`Sampler::drain`] then returns everything that was recorded, and nothing after it.
    ///
    /// # Errors
    /// If the control map cannot be written.
    pub fn pause(&mut self) -> Result<(), SampleError> {
        self.control_value.paused = 1;
        self.control
            .set(0, self.control_value, 0)
            .map_err(|e| map_error(CONTROL_MAP, e))
    }

    /// The program's counters, summed over CPUs.
    ///
    /// # Errors
    /// If the stats map cannot be read.
    pub fn stats(&self) -> Result<SamplerStats, SampleError> {
        let mut out = SamplerStats::default();
        for stat in Stat::ALL {
            let values = self
                .stats
                .get(&(stat as u32), 0)
                .map_err(|e| map_error(STATS_MAP, e))?;
            out.counters[stat as usize] = values.iter().sum();
        }
        Ok(out)
    }

    /// Samples taken between the previous drain and the last one that are in no count map
    /// (the map was full, the control block unreadable), by reason: the drained samples
    /// plus these are every sample taken for a target. The aggregator stores them as
    /// `[lost: …]` stacks.
    #[must_use]
    pub fn unrecorded_in_last_drain(&self) -> &[(Stat, u64)] {
        &self.drain_unrecorded
    }

    /// Time since the last drain (or the start).
    #[must_use]
    pub fn since_last_drain(&self) -> Duration {
        self.last_drain.elapsed()
    }
}

/// Loads the raw tracepoint program `name` and attaches it to `tracepoint` by name.
fn attach_raw_tracepoint(ebpf: &mut Ebpf, name: &str, tracepoint: &str) -> Result<(), SampleError> {
    let prog: &mut RawTracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| missing_program(name))?
        .try_into()
        .map_err(|e| program_error(name, e))?;
    prog.load().map_err(|e| program_error(name, e))?;
    prog.attach(tracepoint)
        .map_err(|e| program_error(name, e))?;
    Ok(())
}

fn missing_map(name: &str) -> SampleError {
    SampleError::ebpf(
        format!("the eBPF object has no array map `{name}`"),
        std::io::Error::from(std::io::ErrorKind::NotFound),
    )
}

fn missing_program(name: &str) -> SampleError {
    SampleError::ebpf(
        format!("the eBPF object has no program `{name}`"),
        std::io::Error::from(std::io::ErrorKind::NotFound),
    )
}
