//! [`Symbolizer`]: stacks of raw addresses in, stacks of [`Frame`]s out.
//!
//! Each input stack is leaf first (index 0 is the sampled instruction pointer, later
//! entries are return addresses); each output stack is root first, and every address
//! becomes one or more frames: the function containing it, followed (leafward) by the
//! functions inlined at that address, outermost first. No address is ever dropped: one
//! that cannot be named becomes `module+0xoffset` or `[unknown]`.
//!
//! A return address points just past its call instruction, which may already be the next
//! function (after a call to a `noreturn` function) or the next line, so every address but
//! the first is looked up at `addr - 1`. The user-space [`Location`] records the file
//! offset of that looked-up address (so for a return address, the offset of the return
//! address minus one), which makes a re-symbolization from the location alone correct and
//! lets every frame of an address share it. Kernel locations keep the address as the kernel
//! reported it, as [`Location::Kernel`] documents.
//!
//! Results are memoized per `(binary, file offset)` for user addresses and per
//! `(address, leaf or return)` for kernel addresses, in one bounded memo (see `memo.rs`).

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use blazesym::symbolize::{CodeInfo, FindSymOpts, InlinedFn, Symbolize, Symbolizer as Blaze};
use hashbrown::HashMap;
use profiler_model::{Frame, FrameKind, Location, Profile};
use unwinder::elf::ElfFile;

use crate::binary::{Binaries, BinaryId, OpenError, Opened};
use crate::capture::ProcessCapture;
use crate::config::Config;
use crate::debuginfod::Debuginfod;
use crate::kernel::{self, CopyPlace, Kernel};
use crate::maps::{self, Backing, Mapping, MapsError};
use crate::memo::Memo;
use crate::perfmap::PerfMaps;
use crate::process::{ProcMapping, Process, Resolution};
use crate::stats::Stats;
use crate::untrusted::Refusals;

/// What the memo is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum MemoKey {
    /// A user address, by binary and file offset of the looked-up address.
    User { binary: BinaryId, offset: u64 },
    /// A kernel address as reported, and whether it was the leaf (looked up as is) or a
    /// return address (looked up at `addr - 1`).
    Kernel { addr: u64, leaf: bool },
}

/// The frames one address expands to.
#[derive(Clone, Debug)]
struct Resolved {
    /// Outermost function first, then the functions inlined into it.
    frames: Arc<[Frame]>,
    /// The frames carry no function name.
    unnamed: bool,
}

impl Resolved {
    fn named(frames: impl Into<Arc<[Frame]>>) -> Self {
        Resolved {
            frames: frames.into(),
            unnamed: false,
        }
    }

    fn unnamed(frame: Frame) -> Self {
        Resolved {
            frames: Arc::new([frame]),
            unnamed: true,
        }
    }
}

/// A mapping of a process known from outside its maps file, by the file's device and
/// inode ([`Symbolizer::add_known_mappings`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownMapping {
    /// First address.
    pub start: u64,
    /// One past the last.
    pub end: u64,
    /// File offset of `start`.
    pub pgoff: u64,
    /// The file, as maps would print it; `None` for the vDSO.
    pub key: Option<crate::FileKey>,
}
/// Symbolizes kernel and user stacks, caching what it learns across calls.
///
/// Create one per agent and keep it: binaries are parsed once per `Symbolizer`, and kernel
/// symbols are loaded on the first kernel stack.
///
/// The type is neither `Send` nor `Sync`, because blazesym's symbolizer is not; create it on
/// the thread that uses it.
///
/// ```no_run
/// use symbolizer::{Config, Symbolizer};
///
/// let mut symbolizer = Symbolizer::new(Config::default());
/// // Leaf first, as the sampler reports them.
/// let frames = symbolizer.symbolize_kernel_stack(&[0xffff_ffff_821e_f640]);
/// for frame in &frames {
///     println!("{}", frame.name);
/// }
/// ```
pub struct Symbolizer {
    config: Config,
    blaze: Blaze,
    kernel: Kernel,
    processes: HashMap<u32, Process>,
    binaries: Binaries,
    memo: Memo<MemoKey, Resolved>,
    names: crate::names::NameCache,
    /// Source paths of frames, joined once per distinct file.
    paths: crate::names::PathCache,
    perf_maps: PerfMaps,
    /// Files refused on behalf of processes (`untrusted.rs`).
    refusals: Refusals,
    stats: Stats,
    unknown: Arc<str>,
    /// The debuginfod client, when servers are configured (`debuginfod/`).
    debuginfod: Option<Debuginfod>,
    /// The segment layout of each binary asked for, to rename stored frames with.
    requested: HashMap<Arc<[u8]>, ElfFile>,
    /// Renames frames of profiles from fetched files; made at the first arrival.
    renamer: Option<crate::Resymbolizer>,
    /// `stats.offset_cache_misses` at the last [`Symbolizer::release_file_pages`]: with no
    /// lookup in a binary since, no page of one was touched and there is nothing to give back.
    released_at: std::cell::Cell<Option<u64>>,
}

impl fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Symbolizer")
            .field("config", &self.config)
            .field("kernel", &self.kernel.state())
            .field("processes", &self.processes.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Symbolizer {
    /// A symbolizer; cheap: nothing is read until the first stack.
    #[must_use]
    pub fn new(config: Config) -> Symbolizer {
        Self::with_kallsyms(config, kernel::KALLSYMS.into())
    }

    /// A symbolizer reading kernel symbols from `kallsyms` instead of `/proc/kallsyms`.
    pub(crate) fn with_kallsyms(config: Config, kallsyms: PathBuf) -> Symbolizer {
        let blaze = Blaze::builder()
            // Binaries are opened through file descriptors we keep, so the file behind a
            // path cannot change; stat-ing it on every lookup would be wasted work.
            .enable_auto_reload(false)
            .enable_code_info(config.code_info)
            .enable_inlined_fns(config.code_info && config.inlined_fns)
            .enable_demangling(config.demangle)
            .build();
        let debuginfod = config.debuginfod.as_ref().and_then(|d| {
            Debuginfod::new(d, crate::debuginfod::http_fetcher)
                .inspect_err(|err| {
                    tracing::warn!(
                        cache = %d.cache_dir.display(),
                        "debuginfod disabled: cannot use its cache directory: {err}"
                    );
                })
                .ok()
        });
        let kernel = Kernel::new(
            kallsyms,
            config
                .copy_dir
                .as_ref()
                .filter(|_| config.kernel_copy)
                .map(|d| CopyPlace::running(d.join(crate::copies::KERNEL_DIR))),
        );
        Symbolizer {
            debuginfod,
            requested: HashMap::new(),
            renamer: None,
            released_at: std::cell::Cell::new(None),
            memo: Memo::new(config.cache_entries),
            binaries: Binaries::new(&config),
            names: crate::names::NameCache::new(config.demangle),
            paths: crate::names::PathCache::default(),
            config,
            blaze,
            kernel,
            processes: HashMap::new(),
            perf_maps: PerfMaps::default(),
            refusals: Refusals::default(),
            stats: Stats::default(),
            unknown: crate::unknown_name(),
        }
    }

    /// Leaf-first kernel addresses to root-first frames of kind [`FrameKind::Kernel`].
    ///
    /// Addresses outside the kernel half of the address space, or too far from any kernel
    /// symbol, and all addresses when kallsyms is unusable, become `[unknown]`.
    pub fn symbolize_kernel_stack(&mut self, addrs: &[u64]) -> Vec<Frame> {
        let mut out = Vec::with_capacity(addrs.len());
        for (depth, &addr) in addrs.iter().enumerate().rev() {
            let resolved = self.kernel_address(addr, depth == 0);
            self.push(&mut out, &resolved);
        }
        out
    }

    /// Leaf-first user addresses of process `pid` to root-first frames of kind
    /// [`FrameKind::User`], with inlined functions expanded into frames of their own.
    ///
    /// A process that is gone before its mappings could be read yields `[unknown]` frames.
    pub fn symbolize_user_stack(&mut self, pid: u32, addrs: &[u64]) -> Vec<Frame> {
        let mut out = Vec::with_capacity(addrs.len());
        if addrs.is_empty() {
            return out;
        }
        self.collect_fetched();
        // Whether /proc/PID/maps was read during this call: it is read at most once per call.
        let mut maps_read = false;
        if self
            .processes
            .get(&pid)
            .is_none_or(|p| p.mappings.is_empty())
        {
            self.read_maps(pid);
            maps_read = true;
        }
        for (depth, &addr) in addrs.iter().enumerate().rev() {
            let resolved = self.user_address(pid, addr, depth == 0, &mut maps_read);
            self.push(&mut out, &resolved);
        }
        out
    }

    /// Whether `pid`'s mappings are known already, so its stacks are named without reading
    /// `/proc` and, nearly always, without opening a binary for the first time.
    #[must_use]
    pub fn knows_process(&self, pid: u32) -> bool {
        self.processes
            .get(&pid)
            .is_some_and(|p| !p.mappings.is_empty())
    }

    /// Adopts a [`ProcessCapture`] taken while the process was alive: its mappings replace
    /// any cached for that pid, and the binaries behind them are registered from the
    /// captured files, so the process symbolizes after it exited.
    pub fn add_capture(&mut self, capture: ProcessCapture) {
        let ProcessCapture {
            pid,
            mappings,
            files,
            lines_skipped,
        } = capture;
        self.stats.captures_adopted += 1;
        self.stats.maps_lines_skipped += lines_skipped;
        let mut resolutions = vec![Resolution::Unresolved; mappings.len()];
        let mut kept: Vec<Option<Arc<std::fs::File>>> = vec![None; mappings.len()];
        // Binaries are not registered (nor charged to the cache) here: only when an
        // address in them is symbolized. Every exec on a node is captured; most of those
        // processes are never sampled.
        for (_, key, file) in files {
            let (cached, file) = self.binaries.keep(key, file);
            for ((res, keep), m) in resolutions.iter_mut().zip(&mut kept).zip(&mappings) {
                if m.exec && matches!(&m.backing, Backing::File { key: Some(k), .. } if *k == key) {
                    if let Some(id) = cached {
                        *res = Resolution::Binary(id);
                    }
                    *keep = Some(Arc::clone(&file));
                }
            }
        }
        let process = self.processes.entry(pid).or_default();
        process.set_mappings(mappings);
        for ((entry, res), file) in process.mappings.iter_mut().zip(resolutions).zip(kept) {
            entry.resolution = res;
            entry.file = file;
        }
        process.gone = false;
    }

    /// Adds mappings of process `pid` known from elsewhere than its maps (the eBPF
    /// unwinder's file lookup saw them, with the file's device and inode): for a process
    /// that exited before a capture saw them all (a child that mapped libc a millisecond
    /// before its first sample and exited soon after). Only a mapping of a binary already
    /// open for another process is added (it is named as that binary), and only where no
    /// mapping of the process's own is. Returns how many were added.
    pub fn add_known_mappings(&mut self, pid: u32, known: &[KnownMapping]) -> usize {
        let Self {
            processes,
            binaries,
            ..
        } = self;
        let process = processes.entry(pid).or_default();
        let mut added = 0;
        for k in known {
            if k.start >= k.end
                || process
                    .mappings
                    .iter()
                    .any(|m| m.mapping.start < k.end && k.start < m.mapping.end)
            {
                continue;
            }
            let (backing, resolution, file) = match k.key {
                // The vDSO is read from ember's own (the same image), as for a capture.
                None => (
                    Backing::Special(Arc::from("[vdso]")),
                    Resolution::Unresolved,
                    None,
                ),
                Some(key) => {
                    let Some(id) = binaries.lookup(&key) else {
                        continue;
                    };
                    let Some(module) = binaries.get(id).map(|b| Arc::clone(&b.module)) else {
                        continue;
                    };
                    (
                        Backing::File {
                            path: module,
                            key: Some(key),
                            deleted: false,
                        },
                        Resolution::Binary(id),
                        binaries.file(id),
                    )
                }
            };
            let at = process
                .mappings
                .partition_point(|m| m.mapping.start < k.start);
            process.mappings.insert(
                at,
                ProcMapping {
                    mapping: Mapping {
                        start: k.start,
                        end: k.end,
                        pgoff: k.pgoff,
                        exec: true,
                        backing,
                    },
                    resolution,
                    file,
                },
            );
            added += 1;
        }
        self.stats.known_mappings_added += added as u64;
        added
    }

    /// Drops what is cached about process `pid`'s mappings: call it when the process exited
    /// or its pid may be reused. Binaries and memoized symbols stay, for other processes.
    pub fn forget_process(&mut self, pid: u32) {
        self.processes.remove(&pid);
        self.perf_maps.forget(pid);
        self.refusals.forget(pid);
    }

    /// Drops from this process's page tables the pages of the files blazesym has mapped
    /// (`pages.rs`): they stay in the page cache, and the next lookup that needs one maps
    /// it again. For a long-running process, after a batch of lookups: what the memo knows
    /// is never read from the files again. Nothing is done (not even reading the maps)
    /// when no address was looked up in a binary since the last call.
    ///
    /// # Errors
    /// If `/proc/self/maps` cannot be read.
    pub fn release_file_pages(&self) -> std::io::Result<crate::ReleasedPages> {
        let misses = self.stats.offset_cache_misses;
        if self.released_at.replace(Some(misses)) == Some(misses) {
            return Ok(crate::ReleasedPages::default());
        }
        crate::pages::release(&self.binaries.mapped_files())
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let c = &self.binaries.counters;
        Stats {
            binary_cache_hits: c.hits,
            binary_cache_misses: c.misses,
            binary_cache_evictions: c.evictions,
            binary_cache_stale: c.stale,
            binary_cache_bytes: self.binaries.bytes(),
            binary_cache_entries: self.binaries.len() as u64,
            debug_files_found: c.debug_files,
            go_tables_loaded: c.go_tables,
            files_refused: self.refusals.counts,
            debuginfod: self
                .debuginfod
                .as_ref()
                .map(Debuginfod::stats)
                .unwrap_or_default(),
            ..self.stats
        }
    }

    fn push(&mut self, out: &mut Vec<Frame>, resolved: &Resolved) {
        if resolved.unnamed {
            self.stats.frames_unnamed += resolved.frames.len() as u64;
        }
        out.extend(resolved.frames.iter().cloned());
    }

    fn unknown(&self, kind: FrameKind, module: Option<Arc<str>>, location: Location) -> Resolved {
        unknown_frame(&self.unknown, kind, module, location)
    }

    fn memoize(&mut self, key: MemoKey, resolved: &Resolved) {
        if self.memo.insert(key, resolved.clone()) {
            self.stats.cache_clears += 1;
        }
    }

    fn kernel_address(&mut self, addr: u64, leaf: bool) -> Resolved {
        let location = Location::Kernel { addr };
        if !Kernel::is_plausible(addr) || !self.kernel.ensure_ready(&self.blaze) {
            return self.unknown(FrameKind::Kernel, None, location);
        }
        let key = MemoKey::Kernel { addr, leaf };
        if let Some(hit) = self.memo.get(&key) {
            self.stats.kernel_cache_hits += 1;
            return hit.clone();
        }
        self.stats.kernel_cache_misses += 1;
        // Plausible kernel addresses are at least 2^63, so this cannot underflow.
        let lookup = if leaf { addr } else { addr - 1 };
        let resolved = match self.kernel.lookup(&self.blaze, lookup) {
            Some(name) => Resolved::named(vec![Frame {
                name: name.into(),
                kind: FrameKind::Kernel,
                inlined: false,
                module: None,
                file: None,
                line: None,
                location,
            }]),
            None => self.unknown(FrameKind::Kernel, None, location),
        };
        self.memoize(key, &resolved);
        resolved
    }

    /// Reads (or re-reads) the mappings of `pid`, keeping the old ones if that fails.
    fn read_maps(&mut self, pid: u32) {
        self.stats.maps_reads += 1;
        match maps::read(pid) {
            Ok((mappings, skipped)) => {
                self.stats.maps_lines_skipped += skipped;
                let process = self.processes.entry(pid).or_default();
                process.set_mappings(mappings);
                process.gone = false;
                process.read_at = Some(std::time::Instant::now());
            }
            Err(MapsError::Gone { .. }) => {
                let process = self.processes.entry(pid).or_default();
                if !process.gone {
                    process.gone = true;
                    self.stats.processes_gone += 1;
                    tracing::debug!(
                        pid,
                        cached_mappings = process.mappings.len(),
                        "process is gone; addresses outside its cached mappings will be `[unknown]`"
                    );
                }
            }
            Err(err) => {
                tracing::debug!(pid, error = %crate::ErrorChain(&err), "failed to read the mappings of a process");
            }
        }
    }

    fn user_address(&mut self, pid: u32, addr: u64, leaf: bool, maps_read: &mut bool) -> Resolved {
        // A return address points after its call; the call itself is the byte before.
        let Some(lookup) = (if leaf {
            Some(addr)
        } else {
            addr.checked_sub(1)
        }) else {
            return self.unknown(FrameKind::User, None, Location::Virtual { addr });
        };
        let mut idx = self.processes.get(&pid).and_then(|p| p.find(lookup));
        if idx.is_none() && !*maps_read && self.processes.get(&pid).is_none_or(|p| p.may_reread()) {
            *maps_read = true;
            self.read_maps(pid);
            idx = self.processes.get(&pid).and_then(|p| p.find(lookup));
        }

        let Self {
            processes,
            binaries,
            stats,
            refusals,
            ..
        } = self;
        let Some(entry) = idx.and_then(|idx| processes.get_mut(&pid)?.mappings.get_mut(idx)) else {
            let known = processes.get(&pid).is_some_and(|p| !p.mappings.is_empty());
            let location = if known {
                Location::Virtual { addr }
            } else {
                Location::Unknown
            };
            return unknown_frame(&self.unknown, FrameKind::User, None, location);
        };
        let mapping = &entry.mapping;
        let is_code = match &mapping.backing {
            Backing::Anonymous => false,
            Backing::Special(name) => &**name == "[vdso]",
            Backing::File { .. } => mapping.exec,
        };
        let jit = mapping.exec
            && match &mapping.backing {
                Backing::Anonymous => true,
                Backing::Special(name) => name.starts_with("[anon"),
                Backing::File { .. } => false,
            };
        if jit && self.config.perf_maps {
            let module = module_of(&mapping.backing);
            return self.jit_address(pid, lookup, addr, module);
        }
        let (true, Some(offset)) = (is_code, mapping.file_offset(lookup)) else {
            // Anonymous or special memory, or data: nothing to look up.
            return match (&mapping.backing, mapping.file_offset(lookup)) {
                (Backing::File { path, .. }, Some(offset)) => {
                    unnamed_in_file(Arc::clone(path), offset, None)
                }
                (backing, _) => unknown_frame(
                    &self.unknown,
                    FrameKind::User,
                    module_of(backing),
                    Location::Virtual { addr },
                ),
            };
        };

        let evicted = matches!(entry.resolution, Resolution::Binary(id) if !binaries.contains(id));
        if entry.resolution == Resolution::Unresolved || evicted {
            entry.resolution = resolve_binary(
                binaries,
                stats,
                refusals,
                pid,
                &entry.mapping,
                entry.file.clone(),
            );
            if let Resolution::Binary(id) = entry.resolution {
                entry.file = binaries.file(id);
            }
        }
        let Resolution::Binary(binary) = entry.resolution else {
            let module = module_of(&entry.mapping.backing).unwrap_or_else(crate::unknown_name);
            return unnamed_in_file(module, offset, None);
        };
        let key = MemoKey::User { binary, offset };
        if let Some(hit) = self.memo.get(&key) {
            self.stats.offset_cache_hits += 1;
            return hit.clone();
        }
        self.stats.offset_cache_misses += 1;
        let mut resolved = self.symbolize_in_binary(binary, offset);
        if resolved.unnamed && self.ask_debuginfod(binary) {
            // Its debug file was fetched before (and the binary registered again since).
            resolved = self.symbolize_in_binary(binary, offset);
        }
        self.memoize(key, &resolved);
        resolved
    }

    /// Asks debuginfod for the debug file of `binary`, one that has none and no symbol
    /// table (a stripped binary), unless asked before; whether it was attached just now
    /// (fetched earlier).
    fn ask_debuginfod(&mut self, binary: BinaryId) -> bool {
        let Some(debuginfod) = &mut self.debuginfod else {
            return false;
        };
        let Some(b) = self.binaries.get(binary) else {
            return false;
        };
        if b.debug.is_some() || b.info.has_symtab() {
            return false;
        }
        let Some(build_id) = b.build_id.clone() else {
            return false;
        };
        if !self.requested.contains_key(&build_id) {
            self.requested.insert(Arc::clone(&build_id), b.info.clone());
        }
        match debuginfod.request(&build_id) {
            Some(path) => self.use_fetched(&build_id, &path),
            None => false,
        }
    }

    /// Takes in the debug files fetched since the last call: the binaries they belong to
    /// are named from them from now on.
    fn collect_fetched(&mut self) {
        let Some(debuginfod) = &mut self.debuginfod else {
            return;
        };
        for (build_id, path) in debuginfod.arrived() {
            self.use_fetched(&build_id, &path);
        }
    }

    /// Uses the fetched debug file `path` of `build_id`: for its binary, if registered
    /// (whose memoized unnamed frames are forgotten), and for renaming stored frames.
    /// Whether the binary got it.
    fn use_fetched(&mut self, build_id: &Arc<[u8]>, path: &std::path::Path) -> bool {
        let attached = self.binaries.attach_debug(build_id, path);
        if attached {
            self.memo.clear();
        }
        let config = &self.config;
        let renamer = self.renamer.get_or_insert_with(|| {
            // Only fetched files: no directory is searched.
            crate::Resymbolizer::new(&config.clone().with_debug_dirs(Vec::new()))
        });
        renamer.insert_fetched(build_id, path, self.requested.get(build_id));
        attached
    }

    /// Waits at most `bound` for the debug files still being fetched from debuginfod and
    /// takes in those that arrive; `None` without a debuginfod client. `ember record`
    /// calls it at the end, before [`Symbolizer::rename_fetched`].
    pub fn wait_for_debuginfod(&mut self, bound: std::time::Duration) -> Option<crate::WaitReport> {
        let debuginfod = self.debuginfod.as_mut()?;
        let (report, arrived) = debuginfod.wait(bound);
        for (build_id, path) in arrived {
            self.use_fetched(&build_id, &path);
        }
        Some(report)
    }

    /// A copy of `profile` in which the unnamed frames (`module+0xoffset`) of binaries
    /// whose debug files were fetched from debuginfod are named, with the number of
    /// distinct frames renamed; `None` when there is nothing to rename. Frames are named
    /// exactly as live symbolization names them.
    pub fn rename_fetched(&mut self, profile: &Profile) -> Option<(Profile, u64)> {
        self.collect_fetched();
        let renamer = self.renamer.as_mut()?;
        let before = renamer.frames_renamed();
        let renamed = renamer.resymbolize(profile);
        let count = renamer.frames_renamed() - before;
        (count > 0).then_some((renamed, count))
    }

    /// Names a JIT address from the process's perf map (read on first use, and checked
    /// again, rate-limited, when an address is not in it: JITs append as they compile;
    /// see `perfmap.rs`).
    fn jit_address(
        &mut self,
        pid: u32,
        lookup: u64,
        addr: u64,
        module: Option<Arc<str>>,
    ) -> Resolved {
        let name = self
            .perf_maps
            .lookup(pid, lookup, &mut self.stats, &mut self.refusals);
        match name {
            Some(name) => Resolved::named(vec![Frame {
                name,
                kind: FrameKind::User,
                inlined: false,
                module,
                file: None,
                line: None,
                location: Location::Virtual { addr },
            }]),
            None => unknown_frame(
                &self.unknown,
                FrameKind::User,
                module,
                Location::Virtual { addr },
            ),
        }
    }

    /// What blazesym looks up for an address, as configured.
    fn find_opts(&self) -> FindSymOpts {
        match (self.config.code_info, self.config.inlined_fns) {
            (false, _) => FindSymOpts::Basic,
            (true, false) => FindSymOpts::CodeInfo,
            (true, true) => FindSymOpts::CodeInfoAndInlined,
        }
    }

    /// Looks up `offset` in a registered binary: in its separate debug file if one was
    /// found, else in the binary itself, then in its Go function table.
    fn symbolize_in_binary(&mut self, id: BinaryId, offset: u64) -> Resolved {
        let opts = self.find_opts();
        let (names, paths) = (&mut self.names, &mut self.paths);
        let Some(binary) = self.binaries.get(id) else {
            return unknown_frame(&self.unknown, FrameKind::User, None, Location::Unknown);
        };
        let location = Location::File {
            build_id: binary.build_id.clone(),
            offset,
        };
        let vaddr = binary.info.vaddr_of(offset);
        let debug = binary.debug.as_ref().map(|d| (&d.resolver, &d.fd_path));
        let files = debug
            .into_iter()
            .chain([(&binary.resolver, &binary.fd_path)])
            .filter_map(|(lazy, path)| Some((lazy, lazy.get(path)?, vaddr?)));
        for (lazy, resolver, vaddr) in files {
            match resolver.find_sym(vaddr, &opts) {
                Ok(Ok(sym)) if !sym.name.is_empty() => {
                    lazy.returned(sym.name);
                    return Resolved::named(frames_from_sym::<Arc<[Frame]>>(
                        &Cow::Borrowed(sym.name),
                        sym.code_info.as_deref(),
                        &sym.inlined,
                        &binary.module,
                        &location,
                        &mut |n| match n {
                            Cow::Borrowed(n) => names.get_in(id, n),
                            Cow::Owned(n) => names.get(n),
                        },
                        &mut |info| paths.get_in(id, info.dir.as_ref(), &info.file),
                    ));
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::trace!(
                        module = %binary.module,
                        offset = format_args!("{offset:#x}"),
                        error = %err,
                        "symbolization failed"
                    );
                }
            }
        }
        if let Some(name) = vaddr.and_then(|v| binary.go.as_ref()?.lookup(v)) {
            return Resolved::named(vec![Frame {
                name: names.get(name),
                kind: FrameKind::User,
                inlined: false,
                module: Some(Arc::clone(&binary.module)),
                file: None,
                line: None,
                location,
            }]);
        }
        unnamed_in_file(Arc::clone(&binary.module), offset, binary.build_id.clone())
    }
}

/// Finds or opens the binary behind an executable mapping.
fn resolve_binary(
    binaries: &mut Binaries,
    stats: &mut Stats,
    refusals: &mut Refusals,
    pid: u32,
    mapping: &Mapping,
    kept: Option<Arc<std::fs::File>>,
) -> Resolution {
    let _ = binaries.collect_late(refusals);
    let opened = match &mapping.backing {
        Backing::Special(_) => binaries.vdso(mapping.end - mapping.start, refusals),
        Backing::File { key: Some(key), .. } => match (binaries.lookup(key), kept) {
            (Some(id), _) => {
                binaries.counters.hits += 1;
                Ok(Opened::Known(id))
            }
            // Evicted meanwhile: register it again from the file kept open for it.
            (None, Some(file)) => binaries.adopt(pid, mapping, *key, file, refusals),
            (None, None) => binaries.open(pid, mapping, refusals),
        },
        _ => Err(OpenError::NoFile),
    };
    match opened {
        Ok(opened) => {
            match opened {
                Opened::New(_) => stats.binaries_opened += 1,
                Opened::Shared(_) => stats.binaries_shared += 1,
                Opened::Known(_) => {}
            }
            Resolution::Binary(opened.id())
        }
        // Still being read on the worker (counted as a refusal that timed out): asked
        // again at the next address in it, and named once the read completes.
        Err(OpenError::Pending) => Resolution::Unresolved,
        Err(err) => {
            stats.binary_open_failures += 1;
            if let OpenError::Refused { path, refusal, .. } = &err {
                refusals.record(
                    Some(pid),
                    std::path::Path::new(&format!("/proc/{pid}/root{path}")),
                    refusal,
                );
            } else {
                tracing::debug!(pid, error = %crate::ErrorChain(&err), "binary not available; its frames stay unnamed");
            }
            Resolution::Unavailable
        }
    }
}

/// The name a mapping's frames carry as their module: its path or pseudo-path.
fn module_of(backing: &Backing) -> Option<Arc<str>> {
    match backing {
        Backing::Anonymous => None,
        Backing::Special(name) => Some(Arc::clone(name)),
        Backing::File { path, .. } => Some(Arc::clone(path)),
    }
}

/// A `[unknown]` frame.
fn unknown_frame(
    name: &Arc<str>,
    kind: FrameKind,
    module: Option<Arc<str>>,
    location: Location,
) -> Resolved {
    Resolved::unnamed(Frame {
        name: Arc::clone(name),
        kind,
        inlined: false,
        module,
        file: None,
        line: None,
        location,
    })
}

/// The frame for an address in a file that could not be named: `basename+0xoffset`.
fn unnamed_in_file(module: Arc<str>, offset: u64, build_id: Option<Arc<[u8]>>) -> Resolved {
    let basename = module.rsplit('/').next().unwrap_or(&module);
    Resolved::unnamed(Frame {
        name: format!("{basename}+{offset:#x}").into(),
        kind: FrameKind::User,
        inlined: false,
        module: Some(module),
        file: None,
        line: None,
        location: Location::File { build_id, offset },
    })
}

/// The frames of one symbolized address: the function `name`, then the functions
/// `inlined` into it, outermost first. Each frame gets the source location within *its*
/// function: blazesym reports the function's own `code_info` as the call site of the
/// first inlined function, and each inlined function's as the call site of the next, the
/// last one holding the address's own location.
#[expect(
    clippy::ptr_arg,
    reason = "whether a name is borrowed decides how it is interned"
)]
pub(crate) fn frames_from_sym<C: FromIterator<Frame>>(
    name: &Cow<'_, str>,
    code_info: Option<&CodeInfo<'_>>,
    inlined: &[InlinedFn<'_>],
    module: &Arc<str>,
    location: &Location,
    names: &mut dyn FnMut(&Cow<'_, str>) -> Arc<str>,
    paths: &mut dyn FnMut(&CodeInfo<'_>) -> Arc<str>,
) -> C {
    let mut frame = |name: &Cow<'_, str>, inlined: bool, code_info: Option<&CodeInfo<'_>>| {
        let name: Arc<str> = if name.is_empty() {
            crate::unknown_name()
        } else {
            names(name)
        };
        Frame {
            name,
            kind: FrameKind::User,
            inlined,
            module: Some(Arc::clone(module)),
            file: code_info.map(&mut *paths),
            line: code_info.and_then(|info| info.line),
            location: location.clone(),
        }
    };
    let outer = frame(name, false, code_info);
    // Collected straight into the caller's collection: the memo's `Arc<[Frame]>` takes
    // one allocation (the length is known), where a `Vec` was built and copied into it.
    std::iter::once(outer)
        .chain(
            inlined
                .iter()
                .map(|inlined| frame(&inlined.name, true, inlined.code_info.as_ref())),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn kernel_stacks_come_out_root_first_and_garbage_is_unknown() {
        let mut kallsyms = tempfile::NamedTempFile::new().expect("temp file");
        kallsyms
            .write_all(
                b"ffffffff81000000 T entry_SYSCALL_64\n\
                  ffffffff81001000 T do_syscall_64\n\
                  ffffffff81002000 T schedule\n",
            )
            .expect("write kallsyms");
        let mut sym = Symbolizer::with_kallsyms(Config::default(), kallsyms.path().to_owned());
        // Leaf first: schedule called from do_syscall_64 called from entry_SYSCALL_64. The
        // return address 0xffffffff81001000 is the first byte of do_syscall_64, so only the
        // `addr - 1` lookup attributes it to its caller.
        let stack = [
            0xffff_ffff_8100_2010,
            0xffff_ffff_8100_1010,
            0xffff_ffff_8100_1000,
        ];
        let frames = sym.symbolize_kernel_stack(&stack);
        let names: Vec<&str> = frames.iter().map(|f| &*f.name).collect();
        assert_eq!(names, ["entry_SYSCALL_64", "do_syscall_64", "schedule"]);
        assert!(
            frames
                .iter()
                .all(|f| f.kind == FrameKind::Kernel && !f.inlined)
        );
        assert_eq!(
            frames[0].location,
            Location::Kernel {
                addr: 0xffff_ffff_8100_1000
            }
        );

        let again = sym.symbolize_kernel_stack(&stack);
        assert_eq!(again, frames);
        assert_eq!(sym.stats().kernel_cache_hits, 3);
        assert_eq!(sym.stats().kernel_cache_misses, 3);

        let garbage = sym.symbolize_kernel_stack(&[0, 1, 0x7fff_ffff_ffff, u64::MAX]);
        assert_eq!(garbage.len(), 4);
        assert!(
            garbage
                .iter()
                .all(|f| &*f.name == "[unknown]" && f.kind == FrameKind::Kernel)
        );
        assert_eq!(sym.stats().frames_unnamed, 4);
        assert!(sym.symbolize_kernel_stack(&[]).is_empty());
    }

    #[test]
    fn hidden_kernel_addresses_give_unknown_frames() {
        let mut kallsyms = tempfile::NamedTempFile::new().expect("temp file");
        kallsyms
            .write_all(b"0000000000000000 T do_syscall_64\n")
            .expect("write kallsyms");
        let mut sym = Symbolizer::with_kallsyms(Config::default(), kallsyms.path().to_owned());
        for _ in 0..3 {
            let frames = sym.symbolize_kernel_stack(&[0xffff_ffff_8100_1000]);
            assert_eq!(&*frames[0].name, "[unknown]");
        }
        assert_eq!(sym.kernel.state(), kernel::State::Unavailable);
        assert_eq!(sym.stats().kernel_cache_misses, 0);
    }

    #[test]
    fn a_symbol_with_inlined_functions_expands_outermost_first() {
        let info = |file: &'static str, line| CodeInfo {
            dir: Some(std::path::Path::new("/src").into()),
            file: std::ffi::OsStr::new(file).into(),
            line: Some(line),
            column: None,
            _non_exhaustive: (),
        };
        let inlined = [
            InlinedFn {
                name: "middle".into(),
                code_info: Some(info("middle.h", 20)),
                _non_exhaustive: (),
            },
            InlinedFn {
                name: "inner".into(),
                code_info: None,
                _non_exhaustive: (),
            },
        ];
        let location = Location::File {
            build_id: None,
            offset: 0x1010,
        };
        let frames: Vec<Frame> = frames_from_sym(
            &"outer".into(),
            Some(&info("outer.c", 10)),
            &inlined,
            &Arc::from("/bin/x"),
            &location,
            &mut |n| n.as_ref().into(),
            &mut |i| i.to_path().to_string_lossy().into(),
        );
        let summary: Vec<_> = frames
            .iter()
            .map(|f| (&*f.name, f.inlined, f.file.as_deref(), f.line))
            .collect();
        assert_eq!(
            summary,
            [
                ("outer", false, Some("/src/outer.c"), Some(10)),
                ("middle", true, Some("/src/middle.h"), Some(20)),
                ("inner", true, None, None),
            ]
        );
        assert!(frames.iter().all(|f| f.location == location));
    }

    #[test]
    fn a_vanished_process_gives_unknown_frames_and_is_counted_once() {
        let mut sym = Symbolizer::new(Config::default());
        for _ in 0..2 {
            let frames = sym.symbolize_user_stack(u32::MAX, &[0x1000, 0x2000]);
            assert_eq!(frames.len(), 2);
            assert!(frames.iter().all(|f| &*f.name == "[unknown]"
                && f.kind == FrameKind::User
                && f.location == Location::Unknown));
        }
        let stats = sym.stats();
        assert_eq!(stats.processes_gone, 1);
        assert_eq!(stats.maps_reads, 2, "one read per call");
        assert_eq!(stats.frames_unnamed, 4);
        sym.forget_process(u32::MAX);
        assert!(sym.processes.is_empty());
    }

    /// This process's executable mapping of libc.
    fn own_libc() -> Mapping {
        let (mappings, _) = maps::read(std::process::id()).expect("own maps");
        mappings
            .into_iter()
            .find(|m| {
                m.exec
                    && matches!(&m.backing, Backing::File { path, .. } if path.contains("libc.so"))
            })
            .expect("a libc mapping")
    }

    /// A process gone before anything captured its libc is named from a mapping known
    /// from elsewhere (the eBPF file lookup's), once libc is open for another process.
    #[test]
    fn a_gone_process_is_named_from_known_mappings_of_an_open_binary() {
        let mut sym = Symbolizer::new(Config::default());
        let me = std::process::id();
        let libc = own_libc();
        let Backing::File { key: Some(key), .. } = libc.backing.clone() else {
            panic!("libc has no device and inode");
        };
        // An address in libc's code, named for this process (which opens libc).
        let addr = libc.start + (libc.end - libc.start) / 2;
        let named = sym.symbolize_user_stack(me, &[addr]);
        assert!(!named[0].is_unnamed(), "{named:?}");
        // A process that is gone: nothing named, until its libc mapping is known.
        let gone = u32::MAX - 1;
        assert!(sym.symbolize_user_stack(gone, &[addr])[0].is_unnamed());
        let known = KnownMapping {
            start: libc.start,
            end: libc.end,
            pgoff: libc.pgoff,
            key: Some(key),
        };
        assert_eq!(sym.add_known_mappings(gone, &[known]), 1);
        assert_eq!(sym.symbolize_user_stack(gone, &[addr]), named);
        // Not twice, and never over a mapping the process has.
        assert_eq!(sym.add_known_mappings(gone, &[known]), 0);
        // A binary no process has opened is not added.
        let unseen = KnownMapping {
            key: Some(crate::FileKey {
                major: 0,
                minor: 0,
                inode: 1,
            }),
            start: 0x1000,
            end: 0x2000,
            ..known
        };
        assert_eq!(sym.add_known_mappings(gone, &[unseen]), 0);
        assert_eq!(sym.stats().known_mappings_added, 1);
    }

    /// libc's debug file from `libc6-dbg` is zlib-compressed: through its decompressed
    /// copy every address gets the same frames (inlined ones, files and lines included).
    #[test]
    fn a_decompressed_debug_copy_names_libc_as_the_compressed_file_does() {
        let me = std::process::id();
        let libc = own_libc();
        let addrs: Vec<u64> = (1..200)
            .map(|i| libc.start + (libc.end - libc.start) * i / 200)
            .collect();
        let dir = tempfile::tempdir().expect("dir");
        let mut plain = Symbolizer::new(Config::default());
        let mut copied =
            Symbolizer::new(Config::default().with_copy_dir(Some(dir.path().to_owned())));
        let want = plain.symbolize_user_stack(me, &addrs);
        assert_eq!(copied.symbolize_user_stack(me, &addrs), want);
        let copies = dir.path().join(crate::copies::DEBUG_DIR);
        let made = std::fs::read_dir(&copies).map_or(0, Iterator::count);
        if plain.stats().debug_files_found == 0 {
            eprintln!("SKIPPED the copy half: no debug file for libc (install libc6-dbg)");
            assert!(std::env::var_os("CI").is_none(), "CI installs libc6-dbg");
            return;
        }
        assert_eq!(made, 1, "libc's compressed debug file was copied");
        let lines = want.iter().filter(|f| f.line.is_some()).count();
        assert!(
            lines * 2 > want.len(),
            "{lines} of {} frames have lines",
            want.len()
        );
        // A second symbolizer maps the copy made by the first.
        let mut again =
            Symbolizer::new(Config::default().with_copy_dir(Some(dir.path().to_owned())));
        assert_eq!(again.symbolize_user_stack(me, &addrs), want);
    }

    /// Resident kB of this process's mapping starting at `start`, from `smaps`.
    fn resident_kb(start: u64) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("own smaps");
        let head = format!("{start:x}-");
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
        lines.next()?;
        lines
            .find_map(|l| l.strip_prefix("Rss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// blazesym's whole-file mappings are dropped from the page tables, and what is looked
    /// up afterwards (new addresses, so the memo cannot answer) is named as before.
    #[test]
    fn released_file_pages_are_mapped_again_and_name_the_same() {
        let me = std::process::id();
        let libc = own_libc();
        let addrs = |phase: u64| -> Vec<u64> {
            (1..300)
                .map(|i| libc.start + (libc.end - libc.start) * i / 300 + phase)
                .collect()
        };
        // Names read in place from libc's debug file, as in the agent: its decompressed copy.
        let dir = tempfile::tempdir().expect("dir");
        let config = Config::default().with_copy_dir(Some(dir.path().to_owned()));
        let mut sym = Symbolizer::new(config.clone());
        let first = sym.symbolize_user_stack(me, &addrs(0));
        assert!(first.iter().filter(|f| !f.is_unnamed()).count() > 250);
        let files = sym.binaries.mapped_files();
        assert!(!files.is_empty(), "libc's resolver is open");
        let text = std::fs::read_to_string("/proc/self/maps").expect("own maps");
        let ranges = crate::pages::whole_file_mappings(&text, &files, crate::pages::page_size());
        assert!(
            !ranges.is_empty(),
            "blazesym's mapping of libc is found:\n{text}"
        );
        let before: u64 = ranges.iter().filter_map(|r| resident_kb(r.0)).sum();
        assert!(before > 0, "the lookups touched pages of {ranges:x?}");

        let released = sym.release_file_pages().expect("released");
        assert_eq!(released.mappings, ranges.len() as u64);
        let after: u64 = ranges.iter().filter_map(|r| resident_kb(r.0)).sum();
        assert_eq!(after, 0, "{before} kB resident before");
        // Addresses the memo knows touch no file: nothing to give back, nothing read.
        assert_eq!(sym.symbolize_user_stack(me, &addrs(0)), first);
        assert_eq!(
            sym.release_file_pages().expect("released"),
            crate::ReleasedPages::default()
        );

        let mut fresh = Symbolizer::new(config);
        assert_eq!(
            sym.symbolize_user_stack(me, &addrs(3)),
            fresh.symbolize_user_stack(me, &addrs(3))
        );
        assert!(ranges.iter().filter_map(|r| resident_kb(r.0)).sum::<u64>() > 0);
    }
}
