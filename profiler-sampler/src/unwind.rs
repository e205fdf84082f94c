//! Unwind tables in the kernel: which binaries' rows are loaded, where, and for which
//! processes (issue 7; the row format and the eBPF walk are described in
//! `profiler_common::unwind`).
//!
//! Every binary's rows live in one contiguous range of the shared `UNWIND_ROWS` array,
//! which userspace writes through a shared mapping (`BPF_F_MMAPABLE`): one memcpy per
//! binary rather than a syscall per row. Tables are keyed by build id (by device and inode
//! when a binary has none), so every process running the same libc shares one table, and
//! counted by the processes that use them: a table whose last process is gone is freed.
//! The array's size is the `--unwind-table-mem` limit; a binary that no longer fits is
//! stepped with frame pointers, and named in a warning and in [`UnwindStats`].

use std::collections::{BTreeMap, HashMap as StdHashMap, HashSet};
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, MapData, MapError};
use profiler_common::unwind::{
    FILE_UNWIND_MAP, FileKey, FileSegment, FileUnwind, MAX_FILE_SEGMENTS, MAX_PROC_MAPPINGS,
    PROC_UNWIND_MAP, ProcMapping, ProcUnwind, UNWIND_ROWS_MAP, UnwindRow, VDSO_FILE,
};
use symbolizer::procfs::{self, Procfs};
use tracing::{debug, info, warn};
use unwinder::{ElfInfo, UnwindTable};

use super::SampleError;

/// `--unwinder`: how user stacks are walked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnwinderMode {
    /// The kernel's frame-pointer walk only.
    Fp,
    /// `.eh_frame` tables for every process; a binary without usable tables is named in
    /// a warning and stepped with frame pointers. Every user stack is walked by the eBPF
    /// program, so a stack cut short (no tables yet, a broken frame chain) is marked
    /// truncated.
    Dwarf,
    /// Tables where they can be built, quietly; processes without any table get the
    /// kernel's frame-pointer walk.
    #[default]
    Auto,
}

/// Unwinder settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnwindConfig {
    /// Which walk.
    pub mode: UnwinderMode,
    /// Bytes of kernel memory for the rows of every loaded binary together.
    pub table_mem: u64,
}

/// Default `--unwind-table-mem`: 2 Mi rows, the tables of about a hundred libc-sized
/// binaries.
pub const DEFAULT_TABLE_MEM: u64 = 16 << 20;

/// The hard maximum of `--unwind-table-mem`, whatever the node: 1 GiB (128 Mi rows, the
/// tables of thousands of binaries). The rows are one preallocated array.
pub const MAX_TABLE_MEM: u64 = 1 << 30;

/// The share of the node's memory (`MemTotal`) `--unwind-table-mem` may take: 1/16.
pub(crate) const TABLE_MEM_SHARE_OF_NODE: u64 = 16;

/// The largest `--unwind-table-mem` a node with `mem_total` bytes (`None`: unknown)
/// allows: `MAX_TABLE_MEM` (1 GiB), and at most 1/`TABLE_MEM_SHARE_OF_NODE` (1/16) of its memory.
#[must_use]
pub fn unwind_table_mem_cap(mem_total: Option<u64>) -> u64 {
    mem_total.map_or(MAX_TABLE_MEM, |m| {
        (m / TABLE_MEM_SHARE_OF_NODE).min(MAX_TABLE_MEM)
    })
}

/// `--unwind-table-mem` over the cap of this node.
#[derive(Debug, thiserror::Error)]
#[error(
    "{requested} bytes of unwind tables is more than this node allows: at most {cap} bytes \
     ({why}); the tables are preallocated kernel memory"
)]
pub struct TableMemTooLarge {
    /// What was asked for.
    pub requested: u64,
    /// The cap.
    pub cap: u64,
    /// Which bound made the cap.
    pub why: String,
}

/// Checks `requested` against [`unwind_table_mem_cap`] of this node (`MemTotal` from
/// `/proc/meminfo`).
///
/// # Errors
/// [`TableMemTooLarge`] naming the cap and why.
pub fn check_unwind_table_mem(requested: u64) -> Result<u64, TableMemTooLarge> {
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().strip_suffix("kB"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .map(|kb| kb.saturating_mul(1024));
    let cap = unwind_table_mem_cap(mem_total);
    if requested <= cap {
        return Ok(requested);
    }
    let why = match mem_total {
        Some(m) if cap < MAX_TABLE_MEM => format!(
            "1/{TABLE_MEM_SHARE_OF_NODE} of the node's {} MiB of memory",
            m >> 20
        ),
        _ => format!("the hard maximum, {} MiB", MAX_TABLE_MEM >> 20),
    };
    Err(TableMemTooLarge {
        requested,
        cap,
        why,
    })
}

impl Default for UnwindConfig {
    fn default() -> Self {
        UnwindConfig {
            mode: UnwinderMode::Auto,
            table_mem: DEFAULT_TABLE_MEM,
        }
    }
}

impl UnwindConfig {
    /// Rows the shared array holds (at least one: the map must exist even unused).
    #[must_use]
    pub fn row_capacity(&self) -> u32 {
        if self.mode == UnwinderMode::Fp {
            return 1;
        }
        let rows = self.table_mem / std::mem::size_of::<UnwindRow>() as u64;
        u32::try_from(rows.clamp(1, u64::from(u32::MAX >> 1))).unwrap_or(1)
    }
}

/// What the tables cost and cover, for logs and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnwindStats {
    /// Bytes of rows in use.
    pub table_bytes: u64,
    /// Bytes the rows may use (`--unwind-table-mem`).
    pub table_capacity_bytes: u64,
    /// Binaries whose tables are loaded.
    pub tables_loaded: u64,
    /// Processes whose stacks are walked with tables.
    pub processes: u64,
    /// Binaries stepped with frame pointers, and why (no table, over the limit).
    pub fell_back: BTreeMap<String, String>,
    /// Time spent building and loading tables.
    pub load_time: Duration,
}

/// The numbers of [`UnwindStats`], for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwindGauges {
    /// Bytes of rows in use.
    pub table_bytes: u64,
    /// Bytes the rows may use.
    pub table_capacity_bytes: u64,
    /// Binaries whose tables are loaded.
    pub tables_loaded: u64,
    /// Processes walked with tables.
    pub processes: u64,
    /// Binaries stepped with frame pointers.
    pub binaries_fell_back: u64,
}

impl UnwindStats {
    /// The numbers alone.
    #[must_use]
    pub fn gauges(&self) -> UnwindGauges {
        UnwindGauges {
            table_bytes: self.table_bytes,
            table_capacity_bytes: self.table_capacity_bytes,
            tables_loaded: self.tables_loaded,
            processes: self.processes,
            binaries_fell_back: self.fell_back.len() as u64,
        }
    }
}

/// A table in the shared array.
struct Table {
    offset: u32,
    len: u32,
    users: usize,
    path: String,
    /// When the last process using it went away: an unused table stays loaded for
    /// [`IDLE_GRACE`], or until its space is needed, so that short-lived processes of
    /// the same binaries (a shell's commands and their libc) do not rebuild it each time.
    idle_since: Option<Instant>,
}

/// What a binary (by device and inode) resolved to.
#[derive(Clone)]
enum FileState {
    /// Loaded: the table key and the segments to compute biases with.
    Loaded { key: String, info: ElfInfo },
    /// No table: the binary is stepped with frame pointers.
    Failed,
}

/// A process with tables.
struct Process {
    tables: Vec<String>,
    /// Hash of its executable mappings when loaded: a change means new code (`dlopen`).
    maps_sig: u64,
    /// `/proc/PID/exe`'s device and inode when loaded: a change means an exec.
    exe: Option<(u64, u64)>,
    checked: Instant,
    /// When its tables were first loaded.
    loaded: Instant,
}

/// The two maps the tables live in, as the bookkeeping of [`UnwindTables`] sees them:
/// the shared row array (`UNWIND_ROWS`) and the per-process entries (`PROC_UNWIND`).
/// [`AyaUnwindMaps`] is the kernel's; the tests use an in-memory one, so reference counts,
/// eviction and fallback are tested without root.
pub(crate) trait UnwindMaps: Send {
    /// Rows the array holds.
    fn capacity(&self) -> u32;
    /// Writes `rows` at `offset` of the array.
    ///
    /// # Errors
    /// If the range is outside the array.
    fn set_rows(&mut self, offset: u32, rows: &[UnwindRow]) -> Result<(), String>;
    /// Writes a process's entry (its mappings and the tables they use).
    ///
    /// # Errors
    /// If the map refuses the entry.
    fn set_process(&mut self, pid: u32, value: &ProcUnwind) -> Result<(), String>;
    /// Whether a process has an entry (the exec tracepoint removes it in the kernel).
    fn has_process(&self, pid: u32) -> bool;
    /// Removes a process's entry; an absent entry is not an error.
    ///
    /// # Errors
    /// If the map refuses the removal.
    fn remove_process(&mut self, pid: u32) -> Result<(), String>;
    /// Publishes a binary's table under the file the kernel maps (`FILE_UNWIND`), for
    /// processes not registered yet. `false`: the program has no file lookup here.
    ///
    /// # Errors
    /// If the map refuses the entry.
    fn set_file(&mut self, key: FileKey, value: &FileUnwind) -> Result<bool, String>;
    /// Withdraws a file's entry; an absent entry is not an error.
    ///
    /// # Errors
    /// If the map refuses the removal.
    fn remove_file(&mut self, key: FileKey) -> Result<(), String>;
}

/// The kernel's maps: the row array through a shared mapping (`BPF_F_MMAPABLE`), one
/// memcpy per binary rather than a syscall per row, and the process entries through aya.
pub(crate) struct AyaUnwindMaps {
    rows: *mut UnwindRow,
    capacity: u32,
    mmap_len: usize,
    procs: HashMap<MapData, u32, ProcUnwind>,
    /// `FILE_UNWIND`, when the program looks files up.
    files: Option<HashMap<MapData, FileKey, FileUnwind>>,
    _rows_map: MapData,
    /// Kept open: the program refers to the map only while some fd does.
    _settings: Array<MapData, u32>,
}

// SAFETY: `rows` points into a shared mapping owned by this value (unmapped on drop); the
// value is only used from one thread at a time.
unsafe impl Send for AyaUnwindMaps {}

impl Drop for AyaUnwindMaps {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.rows.cast(), self.mmap_len) };
    }
}

impl AyaUnwindMaps {
    /// Takes the maps from the loaded object and maps the row array.
    ///
    /// # Errors
    /// If the row array cannot be mapped.
    pub(crate) fn new(
        rows_map: MapData,
        procs: HashMap<MapData, u32, ProcUnwind>,
        files: Option<HashMap<MapData, FileKey, FileUnwind>>,
        settings: Array<MapData, u32>,
        capacity: u32,
    ) -> Result<AyaUnwindMaps, SampleError> {
        let len = capacity as usize * std::mem::size_of::<UnwindRow>();
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let mmap_len = len.div_ceil(page) * page;
        // SAFETY: mapping a BPF array map created with BPF_F_MMAPABLE, shared, at most its
        // size; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mmap_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                rows_map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(SampleError::ebpf(
                format!("mapping the eBPF map `{UNWIND_ROWS_MAP}` ({mmap_len} bytes)"),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(AyaUnwindMaps {
            rows: ptr.cast(),
            capacity,
            mmap_len,
            procs,
            files,
            _rows_map: rows_map,
            _settings: settings,
        })
    }
}

impl UnwindMaps for AyaUnwindMaps {
    fn capacity(&self) -> u32 {
        self.capacity
    }

    fn set_rows(&mut self, offset: u32, rows: &[UnwindRow]) -> Result<(), String> {
        let end = u64::from(offset) + rows.len() as u64;
        if end > u64::from(self.capacity) {
            return Err(format!(
                "rows {offset}..{end} outside `{UNWIND_ROWS_MAP}` ({} rows)",
                self.capacity
            ));
        }
        // SAFETY: `offset + len <= capacity` (checked above), inside the mapping; the
        // program only reads rows of tables an entry points at, and no entry points at
        // this range yet.
        unsafe {
            std::ptr::copy_nonoverlapping(
                rows.as_ptr(),
                self.rows.add(offset as usize),
                rows.len(),
            );
        }
        Ok(())
    }

    fn set_process(&mut self, pid: u32, value: &ProcUnwind) -> Result<(), String> {
        self.procs
            .insert(pid, *value, 0)
            .map_err(|e| format!("writing `{PROC_UNWIND_MAP}`: {e}"))
    }

    fn has_process(&self, pid: u32) -> bool {
        self.procs.get(&pid, 0).is_ok()
    }

    fn remove_process(&mut self, pid: u32) -> Result<(), String> {
        match self.procs.remove(&pid) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn set_file(&mut self, key: FileKey, value: &FileUnwind) -> Result<bool, String> {
        let Some(files) = &mut self.files else {
            return Ok(false);
        };
        files
            .insert(key, *value, 0)
            .map(|()| true)
            .map_err(|e| format!("writing `{FILE_UNWIND_MAP}`: {e}"))
    }

    fn remove_file(&mut self, key: FileKey) -> Result<(), String> {
        let Some(files) = &mut self.files else {
            return Ok(());
        };
        match files.remove(&key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The unwind tables in the kernel.
pub struct UnwindTables {
    mode: UnwinderMode,
    maps: Box<dyn UnwindMaps>,
    capacity: u32,
    /// Free ranges of the array, sorted by offset, not adjacent.
    free: RangeAlloc,
    tables: StdHashMap<String, Table>,
    files: StdHashMap<(u64, u64), FileState>,
    /// The files each table is published under in `FILE_UNWIND`, withdrawn before its
    /// rows are freed.
    published: StdHashMap<String, Vec<FileKey>>,
    processes: StdHashMap<u32, Process>,
    /// Threads and vanished processes, not to be looked at again.
    ignored: HashSet<u32>,
    /// Processes running this executable are skipped (ember's own image, in a child that
    /// has not exec'd its command yet).
    skip_exe: Option<(u64, u64)>,
    fell_back: BTreeMap<String, String>,
    load_time: Duration,
    /// The size of ember's own vDSO mapping, once read ([`UnwindTables::vdso_state`]).
    vdso_len: Option<u64>,
    /// Samples a process must have had before its tables are built; 0 builds them on
    /// the first sample ([`UnwindTables::with_min_samples`]).
    min_samples: u64,
    /// Samples so far of the processes still below `min_samples`.
    samples: StdHashMap<u32, u64>,
}

/// [`UnwindTables::with_min_samples`] for `--unwinder auto` over every process sampled at
/// `frequency_hz`: about 0.1 s of CPU (2 samples at the agent's 19 Hz, 9 at 99 Hz). A busy
/// node runs hundreds of processes that are sampled a few times (a compiler job, a shell,
/// a cron script) and map large libraries; building their tables cost more than a third
/// of `record --all`'s CPU (issue 19) for samples that frame pointers walk as well in most
/// binaries. A process whose files all have tables already is loaded at once anyway.
pub(crate) fn auto_all_min_samples(frequency_hz: u64) -> u64 {
    (frequency_hz / 10).max(2)
}

/// The [`UnwindTables::files`] key of the vDSO's state: no file has device `u64::MAX`
/// (maps prints 12-bit majors and 20-bit minors) or inode 0.
const VDSO_KEY: (u64, u64) = (u64::MAX, 0);

/// Whether `m` is the vDSO's mapping.
fn is_vdso(m: &symbolizer::Mapping) -> bool {
    m.exec && matches!(&m.backing, symbolizer::Backing::Special(name) if &**name == "[vdso]")
}

impl std::fmt::Debug for UnwindTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnwindTables")
            .field("mode", &self.mode)
            .field("capacity", &self.capacity)
            .field("tables", &self.tables.len())
            .field("processes", &self.processes.len())
            .finish_non_exhaustive()
    }
}

/// How long after its first load a process's mappings are read again at the caller's
/// shorter interval.
const YOUNG: Duration = Duration::from_secs(2);

/// How long an unused table stays loaded (unless its space is needed first).
const IDLE_GRACE: Duration = Duration::from_secs(30);

/// How long a process's mappings are trusted before they are read again (new libraries
/// from `dlopen`).
pub(crate) const RECHECK: Duration = Duration::from_secs(10);

impl UnwindTables {
    /// The bookkeeping over `maps`, with the whole row array free.
    pub(crate) fn new(mode: UnwinderMode, maps: Box<dyn UnwindMaps>) -> UnwindTables {
        let capacity = maps.capacity();
        UnwindTables {
            mode,
            maps,
            capacity,
            free: RangeAlloc::new(capacity),
            tables: StdHashMap::new(),
            files: StdHashMap::new(),
            published: StdHashMap::new(),
            processes: StdHashMap::new(),
            ignored: HashSet::new(),
            skip_exe: None,
            fell_back: BTreeMap::new(),
            load_time: Duration::ZERO,
            vdso_len: None,
            min_samples: 0,
            samples: StdHashMap::new(),
        }
    }

    /// Builds a process's tables only once it has had `n` samples
    /// ([`UnwindTables::add_samples`]); until then its stacks are walked with frame
    /// pointers, and announcements of it are ignored.
    #[must_use]
    pub(crate) fn with_min_samples(mut self, n: u64) -> UnwindTables {
        self.min_samples = n;
        self
    }

    /// Counts `n` more samples of `pid` and ensures its tables when it has enough
    /// (`UnwindTables::with_min_samples`) or has them already.
    pub fn add_samples(&mut self, pid: u32, n: u64, recheck: Duration) {
        if self.min_samples > 0 && !self.processes.contains_key(&pid) {
            let seen = self.samples.entry(pid).or_default();
            *seen = seen.saturating_add(n);
            if *seen < self.min_samples {
                return;
            }
        }
        self.ensure_process_within(pid, recheck);
        // Loaded, or ignored from now on: either way no longer counted.
        self.samples.remove(&pid);
    }

    /// What the tables cost and cover.
    #[must_use]
    pub fn stats(&self) -> UnwindStats {
        let used: u64 = self.tables.values().map(|t| u64::from(t.len)).sum();
        let row = std::mem::size_of::<UnwindRow>() as u64;
        UnwindStats {
            table_bytes: used * row,
            table_capacity_bytes: u64::from(self.capacity) * row,
            tables_loaded: self.tables.len() as u64,
            processes: self.processes.len() as u64,
            fell_back: self.fell_back.clone(),
            load_time: self.load_time,
        }
    }

    /// Makes sure `pid`'s stacks are walked with tables: loads the tables of its binaries
    /// not loaded yet and writes its mappings. A process already set up is read again only
    /// when it exec'd (its entry was dropped by the exec tracepoint, or its executable
    /// changed) or its mappings are older than ten seconds. Threads and vanished processes
    /// are ignored; nothing here fails the recording.
    pub fn ensure_process(&mut self, pid: u32) {
        self.ensure_process_within(pid, RECHECK);
    }

    /// [`UnwindTables::ensure_process`], reading the mappings again when they are older
    /// than `recheck`.
    pub fn ensure_process_within(&mut self, pid: u32, recheck: Duration) {
        self.ensure(pid, recheck, None);
    }

    /// [`UnwindTables::ensure_process`] now, from the text of `pid`'s maps read a moment
    /// ago (by a capture): the maps are not read again.
    pub fn ensure_with_maps(&mut self, pid: u32, maps: String) {
        self.ensure(pid, Duration::ZERO, Some(maps));
    }

    /// Ensures `pid`, from `maps` if given, else reading its maps when needed (at most
    /// once).
    fn ensure(&mut self, pid: u32, recheck: Duration, mut maps: Option<String>) {
        // Ember itself is left to frame pointers: its own table is large and its stacks
        // are not what it is run for.
        if pid == 0 || pid == std::process::id() || self.ignored.contains(&pid) {
            return;
        }
        // Below the sample threshold only the drain's counts bring a process in, unless
        // every file it runs has its table already: then registering it builds nothing,
        // and a short-lived child of a known binary (a shell's, a build's) is complete
        // from its first sample.
        if self.min_samples > 0 && !self.processes.contains_key(&pid) {
            let seen = self.samples.get(&pid).copied().unwrap_or(0);
            if seen < self.min_samples {
                let Some(text) = given_or_read(&mut maps, pid) else {
                    return;
                };
                if !self.all_files_known(&text) {
                    // Its executable's table is built anyway, the first time the binary
                    // is seen: the program finds it by file for every later process of it.
                    self.load_executable(pid, &text);
                    return;
                }
                maps = Some(text);
            }
        }
        let exe = exe_id(pid);
        if self.skip_exe.is_some() && exe == self.skip_exe {
            return;
        }
        if let Some(p) = self.processes.get_mut(&pid) {
            // A short recheck only while the process is young (the dynamic loader is
            // still mapping its libraries); later, `dlopen` is rare enough for RECHECK.
            let recheck = if p.loaded.elapsed() < YOUNG {
                recheck
            } else {
                recheck.max(RECHECK)
            };
            if p.exe == exe && p.checked.elapsed() < recheck {
                return;
            }
            let present = self.maps.has_process(pid);
            if present && p.exe == exe {
                let Some(text) = given_or_read(&mut maps, pid) else {
                    return;
                };
                if maps_signature(&text) == p.maps_sig {
                    p.checked = Instant::now();
                    return;
                }
                maps = Some(text);
            }
        }
        let started = Instant::now();
        match self.load_process(pid, maps) {
            Ok(()) => {}
            Err(e) => {
                debug!(pid, error = %e, "no unwind tables for the process");
                self.release_process(pid);
                self.ignored.insert(pid);
            }
        }
        self.load_time += started.elapsed();
    }

    /// Whether every file a process with `maps` maps executable has been seen before (its
    /// table built, or found to have none), so loading the process builds no table.
    fn all_files_known(&self, maps: &str) -> bool {
        let mut any = false;
        for m in ExecFile::all_in(maps) {
            if !self.files.contains_key(&m.key) {
                return false;
            }
            any = true;
        }
        any
    }

    /// Builds (and publishes by file) the table of `pid`'s executable (found in its
    /// `maps`), unless its file was seen before.
    fn load_executable(&mut self, pid: u32, maps: &str) {
        let Some(exe) = exe_id(pid) else {
            return;
        };
        if self.skip_exe == Some(exe) {
            return;
        }
        // `stat`'s device, in the maps' `major << 32 | minor`.
        let exe = (
            (u64::from(libc::major(exe.0)) << 32) | u64::from(libc::minor(exe.0)),
            exe.1,
        );
        let started = Instant::now();
        if let Some(m) = ExecFile::all_in(maps).find(|m| m.key == exe)
            && !self.files.contains_key(&m.key)
        {
            self.file_state(pid, &m);
        }
        self.load_time += started.elapsed();
    }

    /// Skips processes that run ember's own executable (for targeted runs, where such a
    /// process is a child about to exec its command).
    pub fn skip_own_image(&mut self) {
        self.skip_exe = exe_id(std::process::id());
    }

    /// Loads and pins the tables of the shared libraries `pid` maps (not its executable),
    /// so that a command about to start finds libc's table ready instead of waiting for
    /// it to be built after its exec.
    pub fn preload_libraries(&mut self, pid: u32) {
        let procfs = Procfs::default();
        let Ok(maps) = procfs.code_maps_text(pid) else {
            return;
        };
        let exe = procfs
            .exe(pid)
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let started = Instant::now();
        // The vDSO too: every process maps it.
        if let Some(len) = maps
            .lines()
            .filter_map(procfs::parse_maps_line)
            .find(is_vdso)
            .map(|m| m.end - m.start)
            && let Some(FileState::Loaded { key, .. }) = self.vdso_state(len)
        {
            self.add_user(&key);
        }
        for m in ExecFile::all_in(&maps) {
            if exe.as_deref() == Some(&*m.path) {
                continue;
            }
            if self.files.contains_key(&m.key) {
                continue;
            }
            if let Some(FileState::Loaded { key, .. }) = self.file_state(pid, &m) {
                self.add_user(&key); // pinned for the whole run
            }
        }
        self.load_time += started.elapsed();
    }

    /// Builds, publishes by file and pins the table of the executable at `path`, so that a
    /// command about to be exec'd from it unwinds through its own code from its first
    /// sample instead of waiting for the table to be built after the exec (a large binary
    /// takes tenths of a second of CPU, at nice 10, on a busy machine longer). A file that
    /// is not an ELF binary (a script) or has no table is left to the process's own load.
    pub fn preload_executable(&mut self, path: &Path) {
        let started = Instant::now();
        match self.load_path(path) {
            Ok(Some(key)) => self.add_user(&key), // pinned for the whole run
            Ok(None) => {}
            Err(reason) => debug!(binary = %path.display(), %reason, "no unwind table preloaded"),
        }
        self.load_time += started.elapsed();
    }

    /// [`UnwindTables::preload_executable`]'s load: the table's key, `None` when the file
    /// was seen before.
    fn load_path(&mut self, path: &Path) -> Result<Option<String>, String> {
        use std::os::unix::fs::MetadataExt as _;
        let file = std::fs::File::open(path).map_err(|e| format!("opening: {e}"))?;
        let meta = file.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        let dev = (u64::from(libc::major(meta.dev())) << 32) | u64::from(libc::minor(meta.dev()));
        let key = (dev, meta.ino());
        if self.files.contains_key(&key) {
            return Ok(None);
        }
        // A binary without a table is not remembered here: the process's own load finds
        // that again and says so (a warning with `--unwinder dwarf`, the fallback list).
        match self.load_opened(&file, &path.to_string_lossy(), key)? {
            FileState::Loaded { key: table, info } => {
                self.files.insert(
                    key,
                    FileState::Loaded {
                        key: table.clone(),
                        info,
                    },
                );
                Ok(Some(table))
            }
            FileState::Failed => Ok(None),
        }
    }

    /// Forgets processes that have exited and frees the tables nobody uses any more.
    pub fn sweep(&mut self) {
        let gone: Vec<u32> = self
            .processes
            .keys()
            .copied()
            .filter(|&pid| !crate::procinfo::process_exists(pid))
            .collect();
        for pid in gone {
            self.release_process(pid);
        }
        self.ignored
            .retain(|&pid| crate::procinfo::process_exists(pid));
        self.samples
            .retain(|&pid, _| crate::procinfo::process_exists(pid));
        let expired: Vec<String> = self
            .tables
            .iter()
            .filter(|(_, t)| t.idle_since.is_some_and(|i| i.elapsed() >= IDLE_GRACE))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.free_table(&key);
        }
    }

    /// Frees the unused table idle the longest; false when no table is unused.
    fn evict_one(&mut self) -> bool {
        let oldest = self
            .tables
            .iter()
            .filter_map(|(k, t)| t.idle_since.map(|i| (i, k.clone())))
            .min();
        match oldest {
            Some((_, key)) => {
                self.free_table(&key);
                true
            }
            None => false,
        }
    }

    fn free_table(&mut self, key: &str) {
        let Some(t) = self.tables.remove(key) else {
            return;
        };
        debug!(binary = %t.path, rows = t.len, "unwind table freed");
        // Withdrawn from the file lookup before the rows can be reused.
        for file in self.published.remove(key).unwrap_or_default() {
            if let Err(e) = self.maps.remove_file(file) {
                debug!(binary = %t.path, error = %e, "withdrawing a file's unwind entry");
            }
        }
        self.files
            .retain(|_, f| !matches!(f, FileState::Loaded { key: k, .. } if k == key));
        self.free_range(t.offset, t.len);
    }

    fn release_process(&mut self, pid: u32) {
        if let Some(p) = self.processes.remove(&pid) {
            for key in p.tables {
                self.unref(&key);
            }
        }
        if let Err(e) = self.maps.remove_process(pid) {
            debug!(pid, error = %e, "removing a process's unwind entry");
        }
    }

    fn unref(&mut self, key: &str) {
        let Some(t) = self.tables.get_mut(key) else {
            return;
        };
        t.users = t.users.saturating_sub(1);
        if t.users == 0 {
            t.idle_since = Some(Instant::now());
        }
    }

    fn add_user(&mut self, key: &str) {
        if let Some(t) = self.tables.get_mut(key) {
            t.users += 1;
            t.idle_since = None;
        }
    }

    fn load_process(&mut self, pid: u32, maps: Option<String>) -> Result<(), String> {
        if !is_process(pid) {
            return Err("a thread, not a process".into());
        }
        let exe = exe_id(pid);
        let maps = match maps {
            Some(m) => m,
            None => Procfs::default()
                .code_maps_text(pid)
                .map_err(|e| format!("/proc/{pid}/maps: {e}"))?,
        };
        let maps_sig = maps_signature(&maps);
        let mut mappings = Vec::new();
        let mut used: Vec<String> = Vec::new();
        for (lineno, line) in maps.lines().enumerate() {
            let Some(m) = procfs::parse_maps_line(line) else {
                if !line.trim().is_empty() {
                    debug!(pid, line = lineno + 1, "unparsable /proc/{pid}/maps line");
                }
                continue;
            };
            let (state, start, end, offset) = if is_vdso(&m) {
                (self.vdso_state(m.end - m.start), m.start, m.end, 0)
            } else if let Some(f) = ExecFile::of(m) {
                (self.file_state(pid, &f), f.start, f.end, f.offset)
            } else {
                continue;
            };
            let Some(FileState::Loaded { key, info }) = state else {
                continue;
            };
            let Some(bias) = info.bias(start, offset) else {
                continue;
            };
            let Some(t) = self.tables.get(&key) else {
                continue;
            };
            mappings.push(ProcMapping {
                start,
                end,
                bias,
                table_offset: t.offset,
                table_len: t.len,
            });
            if !used.contains(&key) {
                used.push(key);
            }
        }
        if mappings.is_empty() {
            return Err("no executable mapping with unwind tables".into());
        }
        mappings.sort_by_key(|m| m.start);
        if mappings.len() > MAX_PROC_MAPPINGS {
            debug!(
                pid,
                mappings = mappings.len(),
                "more executable mappings than the eBPF side holds; the rest use frame pointers"
            );
            mappings.truncate(MAX_PROC_MAPPINGS);
        }
        let mut value = Box::<ProcUnwind>::default();
        value.len = u32::try_from(mappings.len()).unwrap_or(0);
        value.mappings[..mappings.len()].copy_from_slice(&mappings);
        // References first, then the entry: a table is never freed under a live entry.
        for key in &used {
            self.add_user(key);
        }
        let mut loaded = Instant::now();
        if let Some(old) = self.processes.remove(&pid) {
            // The same image with new libraries stays as old as it was; an exec is young.
            if old.exe == exe {
                loaded = old.loaded;
            }
            for key in old.tables {
                self.unref(&key);
            }
        }
        self.maps.set_process(pid, &value)?;
        self.processes.insert(
            pid,
            Process {
                tables: used,
                maps_sig,
                exe,
                checked: Instant::now(),
                loaded,
            },
        );
        Ok(())
    }

    /// The table of one mapped binary, loading it on first sight.
    fn file_state(&mut self, pid: u32, m: &ExecFile) -> Option<FileState> {
        if let Some(s) = self.files.get(&m.key) {
            return Some(s.clone());
        }
        // Through map_files the binary is found even in another mount namespace or
        // after it was replaced on disk.
        let state = match self.load_file(pid, m) {
            Ok(s) => s,
            Err(reason) => {
                // Over the limit is always worth a warning; a binary without tables only
                // when tables were asked for explicitly.
                if self.mode == UnwinderMode::Dwarf || reason.contains("--unwind-table-mem") {
                    warn!(binary = %m.path, "no unwind table ({reason}); its frames use frame pointers");
                } else {
                    debug!(binary = %m.path, %reason, "no unwind table");
                }
                self.fell_back.insert(m.path.clone(), reason);
                FileState::Failed
            }
        };
        self.files.insert(m.key, state.clone());
        Some(state)
    }

    /// The table of the vDSO, for a `[vdso]` mapping of `len` bytes: built once from
    /// ember's own copy, since every 64-bit process on a kernel maps the same image (a
    /// mapping of another size, a 32-bit process's vDSO, gets none). Without it a sample
    /// in `clock_gettime` or `gettimeofday` is stepped by frame pointers, which the vDSO's
    /// code does not keep, and loses its caller.
    fn vdso_state(&mut self, len: u64) -> Option<FileState> {
        if let Some(s) = self.files.get(&VDSO_KEY) {
            return (self.vdso_len == Some(len)).then(|| s.clone());
        }
        let state = match procfs::own_vdso() {
            Ok(image) => {
                self.vdso_len = Some(image.len() as u64);
                ElfInfo::parse(&image)
                    .map_err(|e| e.to_string())
                    .and_then(|info| {
                        let key = match &info.build_id {
                            Some(id) => id.iter().map(|b| format!("{b:02x}")).collect(),
                            None => "[vdso]".to_owned(),
                        };
                        let state = self.load_image("[vdso]", &image, key, info)?;
                        if let FileState::Loaded { key, info } = &state {
                            let len = u32::try_from(image.len()).unwrap_or(0);
                            self.publish(key, VDSO_FILE, info, "[vdso]", len);
                        }
                        Ok(state)
                    })
            }
            Err(e) => Err(format!("reading ember's own vDSO: {e}")),
        };
        let state = state.unwrap_or_else(|reason| {
            debug!(%reason, "no unwind table for the vDSO");
            FileState::Failed
        });
        self.files.insert(VDSO_KEY, state.clone());
        (self.vdso_len == Some(len)).then_some(state)
    }

    fn load_file(&mut self, pid: u32, m: &ExecFile) -> Result<FileState, String> {
        // The path is the process's user's to change (a symlink, a FIFO, another file):
        // it is opened as the symbolizer opens binaries, through map_files or beneath the
        // process's root without following symlinks, and only if it is still the mapped
        // file.
        let file = procfs::open_mapped(pid, &m.mapping).map_err(|e| format!("opening: {e}"))?;
        self.load_opened(&file, &m.path, m.key)
    }

    /// Builds, loads and publishes by file the table of the open binary `file`, mapped
    /// from `path`, whose device (`major << 32 | minor`) and inode are `key`.
    fn load_opened(
        &mut self,
        file: &std::fs::File,
        path: &str,
        key: (u64, u64),
    ) -> Result<FileState, String> {
        use std::os::unix::fs::MetadataExt as _;
        // SAFETY: a read-only private mapping; a binary truncated underneath us could
        // fault, the same risk every symbolizer takes with mapped binaries.
        let data = unsafe { memmap2::Mmap::map(file) }.map_err(|e| format!("mapping: {e}"))?;
        let info = ElfInfo::parse(&data).map_err(|e| e.to_string())?;
        let meta = file.metadata().map_err(|e| e.to_string())?;
        let table = match &info.build_id {
            Some(id) => id.iter().map(|b| format!("{b:02x}")).collect(),
            None => format!("{path}@{}", meta.ino()),
        };
        let state = self.load_image(path, &data, table, info)?;
        if let FileState::Loaded { key: table, info } = &state {
            let file = FileKey {
                ino: key.1,
                mtime: meta.mtime(),
                dev: FileKey::kernel_dev(
                    u32::try_from(key.0 >> 32).unwrap_or(0),
                    u32::try_from(key.0 & 0xffff_ffff).unwrap_or(0),
                ),
                _pad: 0,
            };
            self.publish(table, file, info, path, 0);
        }
        Ok(state)
    }

    /// Publishes the table `key` under `file` for the program's file lookup (`map_len`:
    /// the only mapping length it is for, 0 for any).
    fn publish(&mut self, key: &str, file: FileKey, info: &ElfInfo, path: &str, map_len: u32) {
        let Some(t) = self.tables.get(key) else {
            return;
        };
        let Some(mut value) = file_unwind(t.offset, t.len, info) else {
            debug!(
                binary = path,
                segments = info.segments.len(),
                "too many loadable segments for the file lookup"
            );
            return;
        };
        value.map_len = map_len;
        match self.maps.set_file(file, &value) {
            Ok(true) => {
                debug!(binary = path, ?file, "unwind table published by file");
                self.published.entry(key.to_owned()).or_default().push(file);
            }
            Ok(false) => {}
            Err(e) => debug!(binary = path, error = %e, "publishing a file's unwind entry"),
        }
    }

    /// Builds and loads the table of `data`, the image of the binary at `path`, under
    /// `key` (or shares the table already loaded under it).
    fn load_image(
        &mut self,
        path: &str,
        data: &[u8],
        key: String,
        info: ElfInfo,
    ) -> Result<FileState, String> {
        if let Some(t) = self.tables.get(&key) {
            debug!(binary = path, shared_with = %t.path, "unwind table shared by build id");
            return Ok(FileState::Loaded { key, info });
        }
        let started = Instant::now();
        let table = UnwindTable::from_elf(data).map_err(|e| e.to_string())?;
        let len = u32::try_from(table.rows.len()).map_err(|_| "too many rows".to_owned())?;
        if len == 0 {
            return Err("no unwind rows".into());
        }
        let mut offset = self.alloc(len);
        while offset.is_none() && self.evict_one() {
            offset = self.alloc(len);
        }
        let Some(offset) = offset else {
            return Err(format!(
                "over --unwind-table-mem: {} bytes needed, {} of {} in use",
                table.bytes(),
                self.stats().table_bytes,
                u64::from(self.capacity) * std::mem::size_of::<UnwindRow>() as u64
            ));
        };
        if let Err(e) = self.maps.set_rows(offset, &table.rows) {
            self.free_range(offset, len);
            return Err(e);
        }
        info!(
            binary = path,
            rows = len,
            bytes = table.bytes(),
            fdes = table.stats.fdes,
            unsupported = table.stats.unsupported_rows,
            elapsed = ?started.elapsed(),
            "unwind table loaded"
        );
        self.tables.insert(
            key.clone(),
            Table {
                offset,
                len,
                users: 0,
                path: path.to_owned(),
                idle_since: Some(Instant::now()),
            },
        );
        self.fell_back.remove(path);
        Ok(FileState::Loaded { key, info })
    }

    fn alloc(&mut self, len: u32) -> Option<u32> {
        self.free.alloc(len)
    }

    fn free_range(&mut self, offset: u32, len: u32) {
        self.free.free(offset, len);
    }
}

/// The file lookup's entry for a table at `offset..offset + len` of a binary with `info`'s
/// segments; `None` when it has more than [`MAX_FILE_SEGMENTS`].
fn file_unwind(offset: u32, len: u32, info: &ElfInfo) -> Option<FileUnwind> {
    if info.segments.len() > MAX_FILE_SEGMENTS {
        return None;
    }
    let mut value = FileUnwind {
        table_offset: offset,
        table_len: len,
        segments_len: u32::try_from(info.segments.len()).ok()?,
        ..FileUnwind::default()
    };
    for (dst, s) in value.segments.iter_mut().zip(&info.segments) {
        *dst = FileSegment {
            offset: s.offset,
            end: s.offset + s.filesz.max(1),
            vaddr: s.vaddr,
        };
    }
    Some(value)
}

/// A request to the table worker.
enum Request {
    /// Ensure these processes, reading mappings older than the duration again.
    Ensure(Vec<u32>, Duration),
    /// Ensure this process now, from the text of its maps just read.
    Captured(u32, String),
    /// A drain's samples per process ([`UnwindTables::add_samples`]).
    Sampled(Vec<(u32, u64)>, Duration),
    /// Preload and pin a process's libraries, then reply.
    Preload(u32, mpsc::Sender<()>),
    /// Preload and pin an executable's table, then reply.
    PreloadExecutable(std::path::PathBuf, mpsc::Sender<()>),
    /// Skip processes running ember's own image.
    SkipOwnImage,
    /// Release exited processes and expired tables.
    Sweep,
}

/// The unwind tables, owned by a thread of their own: building a large binary's table
/// takes from milliseconds to a second, and the drain loop must not wait for it. The
/// sampler sends it the processes each drain saw; the worker coalesces what queued up
/// meanwhile, and publishes its [`UnwindStats`] after each batch.
pub struct UnwindWorker {
    /// Shared with [`UnwindRequester`]s only weakly, so dropping the worker still closes
    /// the channel and ends its thread.
    tx: Option<Arc<mpsc::Sender<Request>>>,
    stats: Arc<Mutex<UnwindStats>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Set when the worker is dropped: the thread stops at the next process rather than
    /// after everything queued.
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for UnwindWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnwindWorker").finish_non_exhaustive()
    }
}

impl UnwindWorker {
    /// Starts the worker thread that owns `tables`.
    ///
    /// # Errors
    /// If the thread cannot be started.
    pub(crate) fn start(mut tables: UnwindTables) -> Result<UnwindWorker, SampleError> {
        let (tx, rx) = mpsc::channel::<Request>();
        let stats = Arc::new(Mutex::new(tables.stats()));
        let published = stats.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ember-unwind".into())
            .spawn(move || {
                // Building tables is background work: below the drain loop and the
                // workloads, on machines with few CPUs (nice 10, this thread only).
                // SAFETY: setpriority on this thread's own id; failure changes nothing.
                unsafe {
                    let tid = libc::gettid();
                    libc::setpriority(libc::PRIO_PROCESS, tid.unsigned_abs(), 10);
                }
                while let Ok(first) = rx.recv() {
                    // Everything queued meanwhile, with each process ensured once.
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let mut seen = HashSet::new();
                    // The latest maps captured of each process in the batch: used by
                    // its first request, which stands for the batch's others.
                    let mut captured: StdHashMap<u32, String> = StdHashMap::new();
                    for req in &mut batch {
                        if let Request::Captured(pid, maps) = req {
                            captured.insert(*pid, std::mem::take(maps));
                        }
                    }
                    for req in batch {
                        if stopping.load(Ordering::Relaxed) {
                            return;
                        }
                        match req {
                            Request::Ensure(pids, recheck) => {
                                for pid in pids {
                                    if stopping.load(Ordering::Relaxed) {
                                        return;
                                    }
                                    if seen.insert(pid) {
                                        match captured.remove(&pid) {
                                            Some(maps) => tables.ensure_with_maps(pid, maps),
                                            None => tables.ensure_process_within(pid, recheck),
                                        }
                                    }
                                }
                            }
                            Request::Captured(pid, _) => {
                                if stopping.load(Ordering::Relaxed) {
                                    return;
                                }
                                if seen.insert(pid)
                                    && let Some(maps) = captured.remove(&pid)
                                {
                                    tables.ensure_with_maps(pid, maps);
                                }
                            }
                            Request::Sampled(counts, recheck) => {
                                // Every count is added, also of a process an
                                // announcement in this batch already ensured.
                                for (pid, n) in counts {
                                    if stopping.load(Ordering::Relaxed) {
                                        return;
                                    }
                                    seen.insert(pid);
                                    tables.add_samples(pid, n, recheck);
                                }
                            }
                            Request::Preload(pid, reply) => {
                                tables.preload_libraries(pid);
                                let _ = reply.send(());
                            }
                            Request::PreloadExecutable(path, reply) => {
                                tables.preload_executable(&path);
                                let _ = reply.send(());
                            }
                            Request::SkipOwnImage => tables.skip_own_image(),
                            Request::Sweep => tables.sweep(),
                        }
                    }
                    *published.lock().unwrap_or_else(PoisonError::into_inner) = tables.stats();
                }
            })
            .map_err(|e| SampleError::ebpf("starting the unwind table thread", e))?;
        Ok(UnwindWorker {
            tx: Some(Arc::new(tx)),
            stats,
            thread: Some(thread),
            stop,
        })
    }

    fn send(&self, req: Request) {
        if let Some(tx) = &self.tx {
            // The worker only stops when this value is dropped.
            let _ = tx.send(req);
        }
    }

    /// Makes sure these processes' stacks are walked with tables (see
    /// [`UnwindTables::ensure_process`]), reading mappings older than `recheck` again.
    pub fn ensure(&self, pids: Vec<u32>, recheck: Duration) {
        if !pids.is_empty() {
            self.send(Request::Ensure(pids, recheck));
        }
    }

    /// Counts a drain's samples per process and ensures the processes' tables (see
    /// [`UnwindTables::add_samples`]).
    pub fn sampled(&self, counts: Vec<(u32, u64)>, recheck: Duration) {
        if !counts.is_empty() {
            self.send(Request::Sampled(counts, recheck));
        }
    }

    /// Loads and pins `pid`'s shared libraries' tables, and waits until they are loaded.
    pub fn preload_libraries(&self, pid: u32) {
        let (reply, done) = mpsc::channel();
        self.send(Request::Preload(pid, reply));
        let _ = done.recv();
    }

    /// Loads and pins the table of the executable at `path`, and waits until it is loaded;
    /// see [`UnwindTables::preload_executable`].
    pub fn preload_executable(&self, path: &Path) {
        let (reply, done) = mpsc::channel();
        self.send(Request::PreloadExecutable(path.to_owned(), reply));
        let _ = done.recv();
    }

    /// Loads and pins `pid`'s shared libraries' tables in the background.
    pub fn preload_libraries_later(&self, pid: u32) {
        let (reply, _) = mpsc::channel();
        self.send(Request::Preload(pid, reply));
    }

    /// See [`UnwindTables::skip_own_image`].
    pub fn skip_own_image(&self) {
        self.send(Request::SkipOwnImage);
    }

    /// See [`UnwindTables::sweep`].
    pub fn sweep(&self) {
        self.send(Request::Sweep);
    }

    /// The latest published statistics.
    #[must_use]
    pub fn stats(&self) -> UnwindStats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Lets another thread (the capture thread of `events.rs`) ask the worker for a process's
/// tables the moment the process is announced, rather than at the next drain.
#[derive(Clone, Debug)]
pub struct UnwindRequester(std::sync::Weak<mpsc::Sender<Request>>);

impl UnwindRequester {
    /// Loads `pid`'s tables, reading its mappings again (it just execed or mapped more
    /// code). Does nothing once the worker has stopped.
    pub fn ensure_now(&self, pid: u32) {
        if let Some(tx) = self.0.upgrade() {
            let _ = tx.send(Request::Ensure(vec![pid], Duration::ZERO));
        }
    }

    /// [`UnwindRequester::ensure_now`] from the text of `pid`'s maps read a moment ago
    /// (by a capture), instead of reading them again.
    pub fn ensure_with_maps(&self, pid: u32, maps: String) {
        if let Some(tx) = self.0.upgrade() {
            let _ = tx.send(Request::Captured(pid, maps));
        }
    }
}

impl UnwindWorker {
    /// A handle for other threads; see [`UnwindRequester`].
    #[must_use]
    pub fn requester(&self) -> Option<UnwindRequester> {
        self.tx
            .as_ref()
            .map(|tx| UnwindRequester(Arc::downgrade(tx)))
    }
}

impl Drop for UnwindWorker {
    fn drop(&mut self) {
        // Closing the channel ends the worker's loop; the flag ends it at the next
        // process instead of after the whole queue (a busy node's first drain queues
        // every process, tens of seconds of table building at nice 10).
        self.stop.store(true, Ordering::Relaxed);
        self.tx = None;
        // A worker inside one process's tables (seconds, for a large binary) is left to
        // stop by itself, or with the process, rather than delay a SIGTERM'd agent's exit.
        // It owns the tables and their map handles, so nothing it uses is freed under it.
        if let Some(t) = self.thread.take()
            && t.is_finished()
        {
            let _ = t.join();
        }
    }
}

/// First-fit allocation of row ranges in the shared array.
#[derive(Debug)]
struct RangeAlloc {
    /// Free ranges `(offset, len)`, sorted by offset, never adjacent.
    free: Vec<(u32, u32)>,
}

impl RangeAlloc {
    fn new(capacity: u32) -> RangeAlloc {
        RangeAlloc {
            free: vec![(0, capacity)],
        }
    }

    /// The offset of `len` free rows, now taken; `None` when no free range is that long.
    fn alloc(&mut self, len: u32) -> Option<u32> {
        if len == 0 {
            return None;
        }
        let i = self.free.iter().position(|&(_, l)| l >= len)?;
        let (off, l) = self.free[i];
        if l == len {
            self.free.remove(i);
        } else {
            self.free[i] = (off + len, l - len);
        }
        Some(off)
    }

    /// Returns a range taken by `alloc`, merging it with its free neighbours.
    fn free(&mut self, offset: u32, len: u32) {
        let i = self.free.partition_point(|&(o, _)| o < offset);
        self.free.insert(i, (offset, len));
        if i + 1 < self.free.len() && self.free[i].0 + self.free[i].1 == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == self.free[i].0 {
            self.free[i - 1].1 += self.free[i].1;
            self.free.remove(i);
        }
    }
}

/// An executable mapping of a file, from one `/proc/PID/maps` line (parsed by the
/// symbolizer's parser, which both stages share).
#[derive(Debug, PartialEq, Eq)]
struct ExecFile {
    start: u64,
    end: u64,
    /// File offset of `start`.
    offset: u64,
    /// Device (`major << 32 | minor`, as maps prints it) and inode.
    key: (u64, u64),
    /// The path as maps prints it (and `/proc/PID/exe` reads), ` (deleted)` included.
    path: String,
    /// The maps line it came from, to open the file by.
    mapping: symbolizer::Mapping,
}

impl ExecFile {
    /// The executable file mappings of a `/proc/PID/maps` text.
    fn all_in(maps: &str) -> impl Iterator<Item = ExecFile> + '_ {
        maps.lines()
            .filter_map(|l| procfs::parse_maps_line(l).and_then(ExecFile::of))
    }

    /// `m` if it maps a file (inode other than 0) executable; `None` for anything else.
    fn of(m: symbolizer::Mapping) -> Option<ExecFile> {
        let mapping = m.clone();
        let symbolizer::Backing::File {
            path,
            key: Some(key),
            deleted,
        } = m.backing
        else {
            return None;
        };
        m.exec.then(|| ExecFile {
            start: m.start,
            end: m.end,
            offset: m.pgoff,
            key: (
                (u64::from(key.major) << 32) | u64::from(key.minor),
                key.inode,
            ),
            path: if deleted {
                format!("{path} (deleted)")
            } else {
                path.to_string()
            },
            mapping,
        })
    }
}

/// The maps text a caller gave (taken out of `given`), else `pid`'s, read now.
fn given_or_read(given: &mut Option<String>, pid: u32) -> Option<String> {
    given
        .take()
        .or_else(|| Procfs::default().code_maps_text(pid).ok())
}

/// A hash of the executable file mappings in a `/proc/PID/maps` text.
fn maps_signature(maps: &str) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for m in ExecFile::all_in(maps) {
        (m.start, m.end, m.offset, m.key).hash(&mut h);
    }
    h.finish()
}

/// Device and inode of the process's executable.
pub(crate) fn exe_id(pid: u32) -> Option<(u64, u64)> {
    Procfs::default().exe_id(pid).ok()
}

/// True when `pid` is a process (its own thread-group leader), not another thread.
///
/// `pidfd_open(2)` without `PIDFD_THREAD` refuses any other thread (`EINVAL`): two
/// syscalls where reading `/proc/PID/status` had the kernel format some fifty lines, a
/// twentieth of the agent's CPU on a node that starts processes all the time. Where the
/// call is missing (before Linux 5.3) or filtered, the status's `Tgid` says.
fn is_process(pid: u32) -> bool {
    use std::os::fd::{FromRawFd as _, OwnedFd};
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: pidfd_open(2) takes a pid and flags; a non-negative result is a new file
    // descriptor that nothing else owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    if let Ok(fd) = i32::try_from(fd)
        && fd >= 0
    {
        // SAFETY: `fd` was just opened for us and is closed once, here.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        return true;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EINVAL | libc::ESRCH) => false,
        _ => Procfs::default()
            .status(pid)
            .is_ok_and(|status| status.tgid == Some(pid)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write as _;
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use profiler_common::unwind::{FileKey, FileUnwind, ProcUnwind, UnwindRow, VDSO_FILE};

    use super::{ExecFile, RangeAlloc, UnwindMaps, UnwindTables, UnwinderMode, is_process};
    use symbolizer::procfs::{self, Procfs};

    /// The maps in memory, shared with the test so it can look at what was written.
    #[derive(Default)]
    struct FakeState {
        rows: Vec<UnwindRow>,
        procs: HashMap<u32, ProcUnwind>,
        files: HashMap<FileKey, FileUnwind>,
    }

    struct FakeMaps(Arc<Mutex<FakeState>>);

    impl UnwindMaps for FakeMaps {
        fn capacity(&self) -> u32 {
            u32::try_from(self.0.lock().unwrap().rows.len()).unwrap()
        }
        fn set_rows(&mut self, offset: u32, rows: &[UnwindRow]) -> Result<(), String> {
            let mut st = self.0.lock().unwrap();
            let at = offset as usize;
            let Some(dst) = st.rows.get_mut(at..at + rows.len()) else {
                return Err("outside the array".into());
            };
            dst.copy_from_slice(rows);
            Ok(())
        }
        fn set_process(&mut self, pid: u32, value: &ProcUnwind) -> Result<(), String> {
            self.0.lock().unwrap().procs.insert(pid, *value);
            Ok(())
        }
        fn has_process(&self, pid: u32) -> bool {
            self.0.lock().unwrap().procs.contains_key(&pid)
        }
        fn remove_process(&mut self, pid: u32) -> Result<(), String> {
            self.0.lock().unwrap().procs.remove(&pid);
            Ok(())
        }
        fn set_file(&mut self, key: FileKey, value: &FileUnwind) -> Result<bool, String> {
            self.0.lock().unwrap().files.insert(key, *value);
            Ok(true)
        }
        fn remove_file(&mut self, key: FileKey) -> Result<(), String> {
            self.0.lock().unwrap().files.remove(&key);
            Ok(())
        }
    }

    fn tables(capacity: u32) -> (UnwindTables, Arc<Mutex<FakeState>>) {
        let state = Arc::new(Mutex::new(FakeState {
            rows: vec![UnwindRow::default(); capacity as usize],
            procs: HashMap::new(),
            files: HashMap::new(),
        }));
        let maps = FakeMaps(state.clone());
        (UnwindTables::new(UnwinderMode::Auto, Box::new(maps)), state)
    }

    /// Whether libc's code is mapped. The loader reserves libc's whole range (read-only)
    /// before it maps the code segment in, so a `libc` line alone can come before there
    /// is anything to unwind.
    fn libc_code_mapped(maps: &str) -> bool {
        maps.lines()
            .any(|l| l.contains("libc") && l.split_whitespace().nth(1) == Some("r-xp"))
    }

    /// A child process, killed and reaped when dropped.
    struct Proc(Child);

    impl Proc {
        fn spawn(cmd: &str, args: &[&str]) -> Proc {
            let child = Command::new(cmd)
                .args(args)
                .stdin(Stdio::piped())
                .spawn()
                .expect("spawn");
            let p = Proc(child);
            // Until the dynamic loader has mapped libc's code, the process has only
            // part of its mappings.
            p.wait_until(|maps, _| libc_code_mapped(maps));
            p
        }
        fn pid(&self) -> u32 {
            self.0.id()
        }
        fn wait_until(&self, ready: impl Fn(&str, &str) -> bool) {
            for _ in 0..500 {
                // The executable first: maps read after it are of that image or a later
                // one, never of the image before an exec.
                let exe = std::fs::read_link(format!("/proc/{}/exe", self.pid()))
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let maps = std::fs::read_to_string(format!("/proc/{}/maps", self.pid()))
                    .unwrap_or_default();
                if ready(&maps, &exe) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("process {} never got ready", self.pid());
        }
        fn kill(mut self) {
            self.0.kill().expect("kill");
            self.0.wait().expect("wait");
        }
    }

    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The paths of the tables a process uses, by the bookkeeping.
    fn paths(t: &UnwindTables, pid: u32) -> Vec<String> {
        let mut v: Vec<String> = t.processes[&pid]
            .tables
            .iter()
            .map(|k| t.tables[k].path.clone())
            .collect();
        v.sort();
        v
    }

    fn users(t: &UnwindTables, path_part: &str) -> usize {
        t.tables
            .values()
            .find(|t| t.path.contains(path_part))
            .map_or_else(|| panic!("no table for {path_part}"), |t| t.users)
    }

    /// Every mapping of a process's entry points at rows that were written (not the
    /// array's zeroed default) and lies inside the array.
    fn assert_entry_valid(state: &FakeState, pid: u32) {
        let entry = state.procs.get(&pid).expect("an entry for the process");
        assert!(entry.len > 0);
        for m in &entry.mappings[..entry.len as usize] {
            let end = (m.table_offset + m.table_len) as usize;
            assert!(end <= state.rows.len(), "mapping {m:?} outside the array");
            assert!(
                state.rows[m.table_offset as usize..end]
                    .iter()
                    .any(|r| *r != UnwindRow::default()),
                "mapping {m:?} points at unwritten rows"
            );
        }
    }

    /// Issue 16: the vDSO (`clock_gettime`, `gettimeofday`) has a table, built once from
    /// ember's own copy and shared by every process, so a sample in it keeps its caller.
    #[test]
    fn the_vdso_has_a_table_shared_by_every_process() {
        let (mut t, state) = tables(1 << 20);
        let a = Proc::spawn("sleep", &["30"]);
        let b = Proc::spawn("cat", &[]);
        t.ensure_process(a.pid());
        t.ensure_process(b.pid());
        assert_eq!(users(&t, "[vdso]"), 2, "{:?}", t.fell_back);
        let st = state.lock().unwrap();
        for p in [&a, &b] {
            let maps = std::fs::read_to_string(format!("/proc/{}/maps", p.pid())).unwrap();
            let vdso = maps
                .lines()
                .filter_map(symbolizer::parse_maps_line)
                .find(super::is_vdso)
                .expect("a [vdso] mapping");
            let entry = &st.procs[&p.pid()];
            let m = entry.mappings[..entry.len as usize]
                .iter()
                .find(|m| m.start == vdso.start)
                .expect("the vDSO among the process's mappings");
            assert_eq!(m.end, vdso.end);
            // The vDSO's image is linked at 0 (or its own small base): the bias puts its
            // code inside the mapping.
            assert!(
                m.bias <= vdso.start && vdso.start - m.bias < 1 << 20,
                "{m:?}"
            );
            let rows = &st.rows[m.table_offset as usize..(m.table_offset + m.table_len) as usize];
            assert!(rows.len() >= 4, "{} rows", rows.len());
            assert!(
                rows.iter()
                    .any(|r| r.cfa_kind() != profiler_common::unwind::cfa::NONE)
            );
        }
    }

    #[test]
    fn processes_of_one_binary_share_tables_by_build_id_and_release_them_on_exit() {
        let (mut t, state) = tables(1 << 20);
        let a = Proc::spawn("sleep", &["30"]);
        let b = Proc::spawn("sleep", &["30"]);
        t.ensure_process(a.pid());
        let after_one = t.stats();
        t.ensure_process(b.pid());
        let after_two = t.stats();
        // The second process adds no table and no row: it shares sleep's, libc's and
        // the loader's.
        assert!(after_one.tables_loaded >= 3, "{after_one:?}");
        assert_eq!(after_one.tables_loaded, after_two.tables_loaded);
        assert_eq!(after_one.table_bytes, after_two.table_bytes);
        assert_eq!(after_two.processes, 2);
        assert_eq!(paths(&t, a.pid()), paths(&t, b.pid()));
        assert_eq!(users(&t, "sleep"), 2);
        assert_eq!(users(&t, "libc"), 2);
        {
            let st = state.lock().unwrap();
            assert_entry_valid(&st, a.pid());
            assert_entry_valid(&st, b.pid());
        }

        // One exits: its entry goes, the shared tables lose one user.
        let a_pid = a.pid();
        a.kill();
        t.sweep();
        assert!(!state.lock().unwrap().procs.contains_key(&a_pid));
        assert_eq!(t.stats().processes, 1);
        assert_eq!(users(&t, "libc"), 1);
        // The last exits: the tables stay loaded but unused, ready for the next one.
        let b_pid = b.pid();
        b.kill();
        t.sweep();
        assert!(state.lock().unwrap().procs.is_empty());
        assert!(!t.processes.contains_key(&b_pid));
        assert_eq!(t.stats().tables_loaded, after_two.tables_loaded);
        assert!(
            t.tables
                .values()
                .all(|t| t.users == 0 && t.idle_since.is_some())
        );
        // A new process of the same binary loads nothing new.
        let c = Proc::spawn("sleep", &["30"]);
        t.ensure_process(c.pid());
        assert_eq!(t.stats().table_bytes, after_two.table_bytes);
        assert_eq!(users(&t, "sleep"), 1);
    }

    /// Issue 16: every loaded table is published under the file the kernel maps, with
    /// segments that give the same bias as the process's own entry, and withdrawn before
    /// its rows are freed. Below the sample threshold a process still gets its
    /// executable's table (by file), not its libraries'.
    #[test]
    fn tables_are_published_by_file_and_withdrawn_when_freed() {
        use std::os::unix::fs::MetadataExt as _;
        let (mut t, state) = tables(1 << 20);
        let p = Proc::spawn("sleep", &["30"]);
        t.ensure_process(p.pid());
        let maps = Procfs::default().maps_text(p.pid()).expect("maps");
        let entry = state.lock().unwrap().procs[&p.pid()];
        let mut checked = 0;
        for m in ExecFile::all_in(&maps) {
            let meta = std::fs::metadata(format!(
                "/proc/{}/map_files/{:x}-{:x}",
                p.pid(),
                m.start,
                m.end
            ))
            .expect("map_files");
            let key = FileKey {
                ino: meta.ino(),
                mtime: meta.mtime(),
                dev: FileKey::kernel_dev(libc::major(meta.dev()), libc::minor(meta.dev())),
                _pad: 0,
            };
            let st = state.lock().unwrap();
            let file = st
                .files
                .get(&key)
                .unwrap_or_else(|| panic!("{} not published: {:?}", m.path, st.files.keys()));
            let mapping = entry.mappings[..entry.len as usize]
                .iter()
                .find(|e| e.start == m.start)
                .expect("registered");
            assert_eq!(
                file.bias(m.start, m.offset),
                Some(mapping.bias),
                "{}",
                m.path
            );
            assert_eq!(
                (file.table_offset, file.table_len),
                (mapping.table_offset, mapping.table_len)
            );
            checked += 1;
        }
        assert!(checked >= 2, "sleep, libc and the loader: {checked}");
        // The vDSO, which has no file, under its own key and for its own length only.
        let vdso = maps
            .lines()
            .filter_map(procfs::parse_maps_line)
            .find(super::is_vdso)
            .expect("a vDSO");
        let published = state.lock().unwrap().files[&VDSO_FILE];
        assert_eq!(u64::from(published.map_len), vdso.end - vdso.start);
        let registered = entry.mappings[..entry.len as usize]
            .iter()
            .find(|e| e.start == vdso.start)
            .expect("the vDSO registered");
        assert_eq!(published.bias(vdso.start, 0), Some(registered.bias));
        // Unused and expired: withdrawn with the rows.
        p.kill();
        t.sweep();
        let keys: Vec<String> = t.tables.keys().cloned().collect();
        for key in keys {
            t.free_table(&key);
        }
        assert!(state.lock().unwrap().files.is_empty());

        // Below the threshold: the executable only.
        let (t, state) = tables(1 << 20);
        let mut t = t.with_min_samples(1000);
        let q = Proc::spawn("sleep", &["30"]);
        t.ensure_process(q.pid());
        assert!(!state.lock().unwrap().procs.contains_key(&q.pid()));
        let published: Vec<String> = t
            .published
            .keys()
            .filter_map(|k| t.tables.get(k))
            .map(|t| t.path.clone())
            .collect();
        assert_eq!(published.len(), 1, "{published:?}");
        assert!(published[0].ends_with("/sleep"), "{published:?}");
    }

    /// A command's binary is loaded by path before it runs: published under the file the
    /// process will map, pinned, and shared by the process once it runs. A file that is
    /// not a binary (a script) loads nothing and fails nothing.
    #[test]
    fn an_executable_is_preloaded_by_path_before_it_runs() {
        use std::os::unix::fs::MetadataExt as _;
        let (mut t, state) = tables(1 << 20);
        let sleep = std::fs::canonicalize("/bin/sleep").expect("sleep");
        t.preload_executable(&sleep);
        let meta = std::fs::metadata(&sleep).unwrap();
        let key = FileKey {
            ino: meta.ino(),
            mtime: meta.mtime(),
            dev: FileKey::kernel_dev(libc::major(meta.dev()), libc::minor(meta.dev())),
            _pad: 0,
        };
        let published = *state
            .lock()
            .unwrap()
            .files
            .get(&key)
            .expect("published under sleep's file");
        assert_eq!(t.stats().tables_loaded, 1);
        assert_eq!(users(&t, "sleep"), 1, "pinned");
        let bytes = t.stats().table_bytes;
        t.preload_executable(&sleep);
        assert_eq!(t.stats().table_bytes, bytes, "loaded once");
        assert_eq!(users(&t, "sleep"), 1);

        let p = Proc::spawn(sleep.to_str().unwrap(), &["30"]);
        t.ensure_process(p.pid());
        assert_eq!(
            users(&t, "sleep"),
            2,
            "the process shares the preloaded table"
        );
        let entry = state.lock().unwrap().procs[&p.pid()];
        assert!(
            entry.mappings[..entry.len as usize]
                .iter()
                .any(|m| (m.table_offset, m.table_len)
                    == (published.table_offset, published.table_len)),
            "the process's entry uses the preloaded rows"
        );

        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        let before = t.stats();
        t.preload_executable(&script);
        t.preload_executable(&dir.path().join("missing"));
        t.preload_executable(dir.path());
        assert_eq!(t.stats().tables_loaded, before.tables_loaded);
        assert_eq!(t.stats().table_bytes, before.table_bytes);
    }

    /// Issue 19: with a sample threshold, a process gets tables only once its samples
    /// over drains reach it; announcements before that are ignored, and a process that
    /// has tables is rechecked as before.
    #[test]
    fn tables_wait_for_enough_samples_with_a_threshold() {
        let (t, state) = tables(1 << 20);
        let mut t = t.with_min_samples(20);
        let a = Proc::spawn("sleep", &["30"]);
        let pid = a.pid();
        // An announcement (first sample, exec) alone loads nothing new.
        t.ensure_process_within(pid, Duration::ZERO);
        assert_eq!(t.stats().processes, 0);
        t.add_samples(pid, 12, super::RECHECK);
        assert_eq!(t.stats().processes, 0, "12 samples are below the threshold");
        assert!(state.lock().unwrap().procs.is_empty());
        t.add_samples(pid, 8, super::RECHECK);
        assert_eq!(t.stats().processes, 1, "20 samples reach it");
        assert_entry_valid(&state.lock().unwrap(), pid);
        assert!(
            t.samples.is_empty(),
            "a process with tables is not counted any more"
        );
        // Once it has tables, announcements and drains recheck it as without a threshold.
        t.add_samples(pid, 1, super::RECHECK);
        t.ensure_process_within(pid, Duration::ZERO);
        assert_eq!(t.stats().processes, 1);
        // The counts of processes that exit are forgotten.
        let b = Proc::spawn("sleep", &["30"]);
        t.add_samples(b.pid(), 3, super::RECHECK);
        assert_eq!(t.samples.len(), 1);
        b.kill();
        t.sweep();
        assert!(t.samples.is_empty());
        // A new process whose every file has its table already is loaded at its first
        // announcement: nothing is built for it.
        let c = Proc::spawn("sleep", &["30"]);
        t.ensure_process_within(c.pid(), Duration::ZERO);
        assert_eq!(t.stats().processes, 2, "another sleep is loaded at once");
        assert_entry_valid(&state.lock().unwrap(), c.pid());
        // One with a file not seen yet waits for its samples.
        let d = Proc::spawn("cat", &[]);
        t.ensure_process_within(d.pid(), Duration::ZERO);
        assert_eq!(t.stats().processes, 2, "cat's own table is not built yet");
    }

    #[test]
    fn unused_tables_are_evicted_when_the_memory_limit_is_reached() {
        // Learn the tables' sizes with room to spare.
        let (mut big, _) = tables(1 << 20);
        let sleep = Proc::spawn("sleep", &["30"]);
        let cat = Proc::spawn("cat", &[]);
        big.ensure_process(sleep.pid());
        big.ensure_process(cat.pid());
        let len = |part: &str| {
            big.tables
                .values()
                .find(|t| t.path.contains(part))
                .map(|t| t.len)
                .unwrap()
        };
        let all: u32 = big.tables.values().map(|t| t.len).sum();
        // Room for either process's tables, not for both.
        let capacity = (all - len("bin/sleep")).max(all - len("bin/cat"));
        let (mut t, state) = tables(capacity);
        t.ensure_process(sleep.pid());
        assert!(t.fell_back.is_empty(), "{:?}", t.fell_back);
        let sleep_pid = sleep.pid();
        sleep.kill();
        t.sweep();
        // `cat` fits only when an unused table makes room.
        t.ensure_process(cat.pid());
        assert!(t.fell_back.is_empty(), "{:?}", t.fell_back);
        assert!(!t.processes.contains_key(&sleep_pid));
        assert!(paths(&t, cat.pid()).iter().any(|p| p.ends_with("/cat")));
        assert!(
            t.tables.values().all(|t| !t.path.ends_with("/sleep")),
            "the idle `sleep` table was evicted"
        );
        let used: u32 = t.tables.values().map(|t| t.len).sum();
        assert!(used <= capacity);
        assert_entry_valid(&state.lock().unwrap(), cat.pid());
    }

    #[test]
    fn a_binary_over_the_limit_falls_back_to_frame_pointers_by_name() {
        let (mut t, state) = tables(16);
        let p = Proc::spawn("sleep", &["30"]);
        t.ensure_process(p.pid());
        let reasons: Vec<(&String, &String)> = t.fell_back.iter().collect();
        assert!(
            reasons.iter().any(|(path, _)| path.ends_with("/sleep")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|(path, _)| path.contains("libc")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .all(|(_, why)| why.contains("over --unwind-table-mem")),
            "{reasons:?}"
        );
        assert_eq!(t.stats().gauges().binaries_fell_back, reasons.len() as u64);
        // Without any table the process has no entry and is not looked at again.
        assert!(state.lock().unwrap().procs.is_empty());
        assert!(t.ignored.contains(&p.pid()));
        assert_eq!(t.stats().tables_loaded, 0);
    }

    #[test]
    fn an_exec_replaces_the_process_tables() {
        let (mut t, state) = tables(1 << 20);
        let mut p = Proc::spawn("sh", &["-c", "read _; exec sleep 30"]);
        t.ensure_process(p.pid());
        let before = paths(&t, p.pid());
        assert!(
            before
                .iter()
                .any(|p| p.ends_with("/dash") || p.ends_with("/sh")),
            "{before:?}"
        );
        let shell = users(&t, "sh");
        assert_eq!(shell, 1);
        p.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        p.wait_until(|maps, exe| exe.ends_with("/sleep") && libc_code_mapped(maps));
        // The exec tracepoint drops the kernel entry; the next look reloads.
        state.lock().unwrap().procs.remove(&p.pid());
        t.ensure_process_within(p.pid(), Duration::ZERO);
        let after = paths(&t, p.pid());
        assert!(after.iter().any(|p| p.ends_with("/sleep")), "{after:?}");
        assert!(!after.iter().any(|p| p.ends_with("/dash")), "{after:?}");
        // The shell's table lost its only user and waits, idle, to be reused or freed.
        let sh = t
            .tables
            .values()
            .find(|t| t.path.ends_with("/dash") || t.path.ends_with("/sh"))
            .unwrap();
        assert_eq!(sh.users, 0);
        assert!(sh.idle_since.is_some());
        assert_eq!(users(&t, "libc"), 1, "libc is used once, by the new image");
        assert_entry_valid(&state.lock().unwrap(), p.pid());
    }

    #[test]
    fn ranges_are_reused_and_merged() {
        let mut a = RangeAlloc::new(100);
        assert_eq!(a.alloc(0), None);
        let x = a.alloc(40).unwrap();
        let y = a.alloc(30).unwrap();
        let z = a.alloc(30).unwrap();
        assert_eq!((x, y, z), (0, 40, 70));
        assert_eq!(a.alloc(1), None, "full");
        // Freeing the middle leaves a 30-row hole: too small for 40, right for 30.
        a.free(y, 30);
        assert_eq!(a.alloc(40), None);
        assert_eq!(a.alloc(30), Some(40));
        // Free everything in an order that needs merging on both sides.
        a.free(x, 40);
        a.free(z, 30);
        a.free(40, 30);
        assert_eq!(a.free, vec![(0, 100)]);
        assert_eq!(a.alloc(100), Some(0));
    }

    #[test]
    fn executable_file_mappings() {
        let exec = |line: &str| symbolizer::parse_maps_line(line).and_then(ExecFile::of);
        let m = exec(
            "7f1c2a428000-7f1c2a5a1000 r-xp 00026000 fe:01 1837602                    /usr/lib/x86_64-linux-gnu/libc.so.6",
        )
        .unwrap();
        assert_eq!(m.start, 0x7f1c_2a42_8000);
        assert_eq!(m.end, 0x7f1c_2a5a_1000);
        assert_eq!(m.offset, 0x26000);
        assert_eq!(m.key, ((0xfe << 32) | 1, 1_837_602));
        assert_eq!(m.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        // Not executable, anonymous, a pseudo-path, or not a maps line: nothing to load.
        assert!(
            exec("7f1c2a5a1000-7f1c2a5f9000 r--p 0019f000 fe:01 1837602 /usr/lib/libc.so.6")
                .is_none()
        );
        assert!(exec("7ffd1000-7ffd2000 r-xp 00000000 00:00 0 ").is_none());
        assert!(exec("7ffd1000-7ffd2000 r-xp 00000000 00:00 0 [vdso]").is_none());
        assert!(exec("garbage").is_none());
        assert!(exec("").is_none());
        let spaces = exec("1000-2000 r-xp 0 08:01 42 /tmp/a b (deleted)").unwrap();
        assert_eq!(spaces.path, "/tmp/a b (deleted)");
    }

    #[test]
    fn only_a_thread_group_leader_is_a_process() {
        assert!(is_process(std::process::id()));
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: gettid(2) has no preconditions.
            let tid = unsafe { libc::gettid() };
            tid_tx
                .send(u32::try_from(tid).expect("positive"))
                .expect("send");
            let _ = done_rx.recv();
        });
        let tid = tid_rx.recv().expect("tid");
        let status = Procfs::default().status(tid).expect("the thread's status");
        assert_eq!(status.tgid, Some(std::process::id()), "{tid} is our thread");
        assert!(!is_process(tid), "thread {tid} is not a process");
        done_tx.send(()).expect("send");
        thread.join().expect("thread");
        // A pid nothing has: the kernel's pid_max is at most 2^22.
        assert!(!is_process(1 << 23));
    }
}
