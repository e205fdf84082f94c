//! The registry of opened binaries: each executable file is opened and parsed once per
//! [`Symbolizer`](crate::Symbolizer), however many processes map it.
//!
//! A binary is first identified by the device and inode printed in `/proc/PID/maps`
//! ([`FileKey`]). The first time a key is seen, the file is opened through
//! `/proc/PID/map_files/<start>-<end>`, which the kernel resolves to the very file that is
//! mapped, even inside another mount namespace or after the file was deleted. When that is
//! not permitted (it needs `CAP_SYS_ADMIN` or `CAP_CHECKPOINT_RESTORE`) the path is opened
//! under `/proc/PID/root`, and then only accepted if its device and inode match, so a file
//! replaced at the same path is never mistaken for the mapped one.
//!
//! The opened [`File`] is kept while the binary is in the cache (a byte-bounded LRU, see
//! [`Binaries`]). That is what lets a process be symbolized after it exited, and what keeps
//! the [`FileKey`] unambiguous: an inode number cannot be reused while a file is held open.
//! A file rewritten in place (same inode, new size or modification time) is noticed on
//! lookup and dropped, so its old names are never served. blazesym's resolver of a binary
//! is given the stable path `/proc/self/fd/<fd>` of the kept file (and opens and maps it
//! once, itself).
//!
//! Binaries are then deduplicated by GNU build-id: a file under a new key whose build-id is
//! already registered (the same library in two container images) is dropped and the
//! registered one is reused, so its symbols are parsed once. Files without a build-id are
//! known by their key only.
//!
//! Invariants: a [`BinaryId`] is an index into the registry's list and is never reused,
//! so results memoized per `(BinaryId, offset)` can never be attributed to another file;
//! each registered binary holds one open file (plus the one blazesym opens from its path).

use hashbrown::HashMap;
use std::cell::OnceCell;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use blazesym::helper::ElfResolver;
use unwinder::elf::{self, ElfFile};

use crate::config::Config;
use crate::debug::{self, DebugFile};
use crate::gopclntab::GoTable;
use crate::maps::{Backing, FileKey, Mapping};
use crate::untrusted::{self, Refusal, RefusalLog, Refusals, Root, Run, Worker};

/// Identifies a registered binary; never reused, so results memoized per
/// `(BinaryId, offset)` can never be attributed to another file, even after eviction.
pub(crate) type BinaryId = u32;

/// Fixed per-binary overhead counted on top of file sizes: blazesym's resolver, our
/// headers and indexes, two file descriptors.
const BINARY_OVERHEAD_BYTES: u64 = 16 << 10;

/// What a file looked like when it was registered: if its size or modification time
/// changes (a binary rewritten in place, keeping its inode), the registration is stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(file: &File) -> Option<Stamp> {
        let meta = file.metadata().ok()?;
        Some(Stamp {
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

/// A separate debug file in use for a binary.
pub(crate) struct DebugSource {
    /// Keeps the debug file (and so its `fd_path`) open.
    file: File,
    /// `/proc/self/fd/<fd>` of the debug file: the path blazesym knows it by.
    pub(crate) fd_path: PathBuf,
    /// Where it was found.
    pub(crate) path: PathBuf,
    /// blazesym's resolver of the debug file.
    pub(crate) resolver: LazyResolver,
}

/// blazesym's resolver of one file, opened at the first lookup in it; an open that failed
/// is not tried again.
///
/// Each binary owns its resolvers, so evicting the binary frees everything blazesym parsed
/// for it, and asks them directly: a `blazesym::Symbolizer` in between hashed the path
/// into its file cache on every address (a tenth of a warm lookup). Resolvers are made
/// without debug directories: separate debug files are found by `debug.rs`.
///
/// It also remembers where one name it returned lies: blazesym reads names in place, so
/// that address is inside its mapping of the file, which is how `pages.rs` tells that
/// mapping from any other of the same file.
#[derive(Default)]
pub(crate) struct LazyResolver {
    resolver: OnceCell<Option<ElfResolver>>,
    /// The address of a name the resolver returned (0 before the first).
    name_at: std::cell::Cell<usize>,
}

impl LazyResolver {
    /// The resolver of the file at `fd_path`, opened now if this is the first lookup.
    pub(crate) fn get(&self, fd_path: &Path) -> Option<&ElfResolver> {
        self.resolver
            .get_or_init(|| {
                ElfResolver::open_with_debug_dirs(fd_path, std::iter::empty::<&Path>())
                    .inspect_err(|err| {
                        tracing::debug!(
                            path = %fd_path.display(),
                            error = %err,
                            "blazesym cannot read the file; its frames stay unnamed"
                        );
                    })
                    .ok()
            })
            .as_ref()
    }

    /// Notes that the resolver returned a name at `name`.
    pub(crate) fn returned(&self, name: &str) {
        self.name_at.set(name.as_ptr() as usize);
    }

    /// An address inside blazesym's mapping of the file, if the resolver is open and has
    /// returned a name read in place (one it made, say decompressed, lies elsewhere, and
    /// then `pages.rs` finds no mapping holding it).
    fn inside(&self) -> Option<usize> {
        matches!(self.resolver.get(), Some(Some(_)))
            .then(|| self.name_at.get())
            .filter(|&at| at != 0)
    }
}

/// A file blazesym holds mapped in its entirety (`pages.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MappedFile {
    /// Its device and inode, as `/proc/self/maps` prints them.
    pub(crate) key: FileKey,
    /// Its size: blazesym maps the whole file, so its mapping is this long (page-rounded).
    pub(crate) size: u64,
    /// An address inside blazesym's mapping of it ([`LazyResolver`]).
    pub(crate) inside: usize,
}

impl MappedFile {
    /// The file `file` if `resolver` has it open.
    fn of(file: &File, resolver: &LazyResolver) -> Option<MappedFile> {
        let inside = resolver.inside()?;
        let meta = file.metadata().ok()?;
        Some(MappedFile {
            key: FileKey::of(&meta),
            size: meta.size(),
            inside,
        })
    }
}

/// A binary that blazesym can symbolize.
pub(crate) struct Binary {
    /// Keeps the file (and so its inode and the `fd_path`) alive; shared with the process
    /// mappings it backs, so it can be registered again after an eviction.
    file: Arc<File>,
    /// `/proc/self/fd/<fd>` of `file`: the path blazesym knows the binary by.
    pub(crate) fd_path: PathBuf,
    /// The GNU build-id, when the binary has one.
    pub(crate) build_id: Option<Arc<[u8]>>,
    /// The path under which the binary was first seen, for `Frame::module`.
    pub(crate) module: Arc<str>,
    /// Program and section headers of the binary.
    pub(crate) info: ElfFile,
    /// Separate debug information found for it (`debug.rs`).
    pub(crate) debug: Option<DebugSource>,
    /// Go function table, for Go binaries without a symbol table.
    pub(crate) go: Option<GoTable>,
    /// blazesym's resolver of the binary's own file.
    pub(crate) resolver: LazyResolver,
    /// Estimated memory cost (see [`Binaries`]).
    bytes: u64,
    stamp: Option<Stamp>,
    last_used: u64,
}

impl std::fmt::Debug for Binary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binary")
            .field("module", &self.module)
            .field("fd_path", &self.fd_path)
            .field("debug", &self.debug.as_ref().map(|d| &d.path))
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// Why a binary could not be registered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// Neither `/proc/PID/map_files` nor `/proc/PID/root` gave access to the file.
    #[error("failed to open `{path}` of process {pid}")]
    Open {
        /// The process that maps the file.
        pid: u32,
        /// The path from its maps.
        path: Arc<str>,
        /// The error opening it through `/proc/PID/root`.
        #[source]
        source: io::Error,
    },
    /// The file at the mapped path was refused (`untrusted.rs`): a symlink on the way, not
    /// a regular file.
    #[error("`{path}` of process {pid} was refused: {refusal}")]
    Refused {
        /// The process that maps the file.
        pid: u32,
        /// The path from its maps.
        path: Arc<str>,
        /// Why.
        refusal: Refusal,
    },
    /// The file at the mapped path is not the mapped file (it was replaced or deleted).
    #[error("`{path}` of process {pid} is no longer the file it mapped")]
    Replaced {
        /// The process that maps the file.
        pid: u32,
        /// The path from its maps.
        path: Arc<str>,
    },
    /// The file is not an ELF file we can read.
    #[error("`{path}` is not a readable ELF file")]
    NotElf {
        /// The path from the maps.
        path: Arc<str>,
        /// What is wrong with it.
        #[source]
        source: elf::ElfError,
    },
    /// The mapping is not backed by a file with a known device and inode.
    #[error("mapping is not backed by an identifiable file")]
    NoFile,
    /// The file is still being read on the worker thread (a slow file system); it is
    /// registered when the read completes.
    #[error("the binary is still being read")]
    Pending,
    /// The worker thread could not run the read.
    #[error("the binary reader thread failed")]
    Worker,
    /// The process has no vDSO that matches this symbolizer's own.
    #[error("no usable copy of the vDSO")]
    NoVdso,
}

/// What is known about the vDSO image.
#[derive(Debug)]
enum Vdso {
    /// Not looked at yet.
    Unknown,
    /// Our own vDSO, copied into a file; `len` is the size of its mapping.
    Ready { id: BinaryId, len: u64 },
    /// It could not be copied; don't try again.
    Unavailable,
}

/// Counters of the binary cache.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CacheCounters {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) evictions: u64,
    pub(crate) stale: u64,
    pub(crate) debug_files: u64,
    pub(crate) go_tables: u64,
}

/// The cache of opened binaries: a byte-bounded LRU keyed by GNU build-id (and, to find
/// entries without opening anything, by the device and inode from the maps).
///
/// # The byte estimate
///
/// blazesym memory-maps each file it parses but only reads its symbol tables and DWARF
/// (never the code), and builds indexes proportional to what it reads. A binary is
/// therefore charged the sizes of its `.symtab`, `.strtab`, `.dynsym`, `.dynstr` and
/// `.debug_*` sections, the same for its separate debug file if one is used, the bytes of
/// a Go function table we copied, and a fixed 16 KiB for blazesym's resolver and our own
/// bookkeeping. Charging whole file sizes instead would count code pages that are never
/// touched: one toolchain library of 150 MB would fill the default budget alone.
///
/// Evicting a binary frees what blazesym parsed; its open file stays open as long as a
/// process mapping that it backs is remembered (`Process`), so a process that has exited
/// meanwhile can still have the binary registered again from that file.
pub(crate) struct Binaries {
    map: HashMap<BinaryId, Binary>,
    by_key: HashMap<FileKey, BinaryId>,
    by_build_id: HashMap<Arc<[u8]>, BinaryId>,
    vdso: Vdso,
    next_id: BinaryId,
    tick: u64,
    bytes: u64,
    budget: u64,
    config: Config,
    /// Files captured from processes for binaries not (yet) registered, one per key, so
    /// captures of many processes of one binary share one descriptor. Registered lazily,
    /// when an address in them is first symbolized; dropped once no process holds them.
    pending: HashMap<FileKey, Arc<File>>,
    /// Opens and reads binaries off the drain thread.
    worker: Worker<FileKey, Probed>,
    /// What the worker runs: [`run_probe`], or a stand-in in tests.
    prober: fn(Probe) -> Probed,
    /// How long a caller waits for the worker, [`BINARY_WAIT`].
    wait: Duration,
    pub(crate) counters: CacheCounters,
}

impl std::fmt::Debug for Binaries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binaries")
            .field("entries", &self.map.len())
            .field("bytes", &self.bytes)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// What [`Binaries::open`] did, for the stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    /// A new binary was registered.
    New(BinaryId),
    /// The file's build-id was already registered; that binary is reused.
    Shared(BinaryId),
    /// Nothing was opened: the binary was registered before.
    Known(BinaryId),
}

impl Opened {
    /// The binary to use.
    pub(crate) fn id(self) -> BinaryId {
        match self {
            Opened::New(id) | Opened::Shared(id) | Opened::Known(id) => id,
        }
    }
}

impl Binaries {
    /// An empty registry for symbolizers configured by `config`.
    pub(crate) fn new(config: &Config) -> Self {
        Binaries {
            map: HashMap::new(),
            by_key: HashMap::new(),
            by_build_id: HashMap::new(),
            vdso: Vdso::Unknown,
            next_id: 0,
            tick: 0,
            bytes: 0,
            budget: config.cache_bytes,
            config: config.clone(),
            pending: HashMap::new(),
            worker: Worker::new("ember-binary"),
            prober: run_probe,
            wait: BINARY_WAIT,
            counters: CacheCounters::default(),
        }
    }

    /// Estimated bytes held by the cached binaries.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Binaries in the cache.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The files of cached binaries (and their debug files) that blazesym has mapped.
    pub(crate) fn mapped_files(&self) -> Vec<MappedFile> {
        let mut files = Vec::new();
        for binary in self.map.values() {
            files.extend(MappedFile::of(&binary.file, &binary.resolver));
            if let Some(debug) = &binary.debug {
                files.extend(MappedFile::of(&debug.file, &debug.resolver));
            }
        }
        files
    }

    /// Whether binary `id` is still cached.
    pub(crate) fn contains(&self, id: BinaryId) -> bool {
        self.map.contains_key(&id)
    }

    /// The binary `id`, marking it recently used; `None` once evicted.
    pub(crate) fn get(&mut self, id: BinaryId) -> Option<&Binary> {
        self.tick += 1;
        let binary = self.map.get_mut(&id)?;
        binary.last_used = self.tick;
        Some(binary)
    }

    /// The binary already registered for `key`, if it is still the same file.
    pub(crate) fn lookup(&mut self, key: &FileKey) -> Option<BinaryId> {
        let id = *self.by_key.get(key)?;
        let Some(binary) = self.map.get(&id) else {
            self.by_key.remove(key);
            return None;
        };
        if binary.stamp.is_some() && Stamp::of(&binary.file) != binary.stamp {
            // Rewritten in place (same inode): never serve its old names.
            self.counters.stale += 1;
            tracing::debug!(module = %binary.module, "binary changed on disk; dropping its cached symbols");
            self.remove(id);
            return None;
        }
        Some(id)
    }

    /// Opens and registers the file backing `mapping` of process `pid`.
    ///
    /// Callers first try [`Binaries::lookup`]; this always opens the file, on the worker
    /// thread ([`Binaries::probe`]).
    pub(crate) fn open(
        &mut self,
        pid: u32,
        mapping: &Mapping,
        refusals: &mut Refusals,
    ) -> Result<Opened, OpenError> {
        let Backing::File {
            path,
            key: Some(key),
            ..
        } = &mapping.backing
        else {
            return Err(OpenError::NoFile);
        };
        if let Some(reading) = self.reading(*key, refusals) {
            return reading;
        }
        let job = Probe {
            pid: Some(pid),
            key: *key,
            module: Arc::clone(path),
            file: ProbeFile::Mapped(mapping.clone()),
            debug_dirs: self.config.debug_dirs.clone(),
            debug_copies: self
                .config
                .copy_dir
                .as_ref()
                .map(|d| d.join(crate::copies::DEBUG_DIR)),
            known: self.by_build_id.keys().cloned().collect(),
        };
        self.probe(job, refusals)
    }

    /// The file to keep for a mapping of `key` whose captured file is `file`: the cached
    /// binary's if there is one (and `file` is closed), else one shared per key.
    pub(crate) fn keep(&mut self, key: FileKey, file: Arc<File>) -> (Option<BinaryId>, Arc<File>) {
        if let Some(id) = self.lookup(&key)
            && let Some(kept) = self.file(id)
        {
            return (Some(id), kept);
        }
        if self.pending.len() >= 1024 {
            self.pending.retain(|_, f| Arc::strong_count(f) > 1);
        }
        let kept = self.pending.entry(key).or_insert(file);
        (None, Arc::clone(kept))
    }

    /// The open file of binary `id`, to keep with the mappings it backs.
    pub(crate) fn file(&self, id: BinaryId) -> Option<Arc<File>> {
        self.map.get(&id).map(|b| Arc::clone(&b.file))
    }

    /// Registers a file opened earlier for `mapping` of process `pid` (a capture), unless
    /// its key is cached already; it is read on the worker thread ([`Binaries::probe`]).
    pub(crate) fn adopt(
        &mut self,
        pid: u32,
        mapping: &Mapping,
        key: FileKey,
        file: Arc<File>,
        refusals: &mut Refusals,
    ) -> Result<Opened, OpenError> {
        if let Some(id) = self.lookup(&key) {
            self.counters.hits += 1;
            return Ok(Opened::Known(id));
        }
        let Backing::File { path, .. } = &mapping.backing else {
            return Err(OpenError::NoFile);
        };
        if let Some(reading) = self.reading(key, refusals) {
            return reading;
        }
        let job = Probe {
            pid: Some(pid),
            key,
            module: Arc::clone(path),
            file: ProbeFile::Kept(file),
            debug_dirs: self.config.debug_dirs.clone(),
            debug_copies: self
                .config
                .copy_dir
                .as_ref()
                .map(|d| d.join(crate::copies::DEBUG_DIR)),
            known: self.by_build_id.keys().cloned().collect(),
        };
        self.probe(job, refusals)
    }

    /// Runs `job` on the worker thread, waiting at most [`BINARY_WAIT`], and registers
    /// what it found. A job that outlives its wait is [`OpenError::Pending`] (counted and
    /// logged as a refusal that timed out); its binary is registered by
    /// [`Binaries::collect_late`] once the job finishes, and asking again before then
    /// starts nothing new.
    fn probe(&mut self, job: Probe, refusals: &mut Refusals) -> Result<Opened, OpenError> {
        let key = job.key;
        if self.collect_late(refusals).contains(&key)
            && let Some(id) = self.lookup(&key)
        {
            // Registered by a late result just now.
            return Ok(Opened::Known(id));
        }
        if self.worker.is_running(key) {
            return Err(OpenError::Pending);
        }
        let (pid, shown) = (job.pid, job.shown());
        let prober = self.prober;
        match self.worker.run(key, move || prober(job), self.wait) {
            Run::Done(probed) => self.register_probed(probed, refusals),
            Run::Late => {
                refusals.record(pid, &shown, &Refusal::TimedOut(self.wait));
                Err(OpenError::Pending)
            }
            Run::Busy => {
                refusals.record(pid, &shown, &Refusal::Busy);
                Err(OpenError::Pending)
            }
            Run::Failed => Err(OpenError::Worker),
        }
    }

    /// What became of the read of `key` started earlier, if one was: still running
    /// ([`OpenError::Pending`], the cheap answer for every address in it meanwhile), or
    /// finished and registered. `None` when there is none.
    fn reading(
        &mut self,
        key: FileKey,
        refusals: &mut Refusals,
    ) -> Option<Result<Opened, OpenError>> {
        if !self.worker.is_running(key) {
            return None;
        }
        let late = self.collect_late(refusals);
        if self.worker.is_running(key) {
            return Some(Err(OpenError::Pending));
        }
        let id = late.contains(&key).then(|| self.lookup(&key)).flatten()?;
        Some(Ok(Opened::Known(id)))
    }

    /// Registers the binaries whose probes outlived their wait and have finished since;
    /// returns their keys.
    pub(crate) fn collect_late(&mut self, refusals: &mut Refusals) -> Vec<FileKey> {
        let mut keys = Vec::new();
        for (key, probed) in self.worker.late() {
            match self.register_probed(probed, refusals) {
                Ok(_) => keys.push(key),
                Err(err) => {
                    tracing::debug!(error = %crate::ErrorChain(&err), "binary not available after a slow read; its frames stay unnamed");
                }
            }
        }
        keys
    }

    /// Registers what a probe found (recording its refusals), under its key.
    fn register_probed(
        &mut self,
        probed: Probed,
        refusals: &mut Refusals,
    ) -> Result<Opened, OpenError> {
        let Probed {
            key,
            pid,
            module,
            found,
            refused,
        } = probed;
        refusals.record_all(refused);
        let found = found?;
        let opened = self.register(found, module, pid);
        self.by_key.insert(key, opened.id());
        self.pending.remove(&key);
        Ok(opened)
    }

    /// Registers an opened ELF file mapped by process `pid` (`None`: by none in
    /// particular), or finds the binary with the same build-id.
    fn register(&mut self, found: Found, module: Arc<str>, pid: Option<u32>) -> Opened {
        let Found {
            file,
            info,
            debug,
            go,
        } = found;
        let build_id: Option<Arc<[u8]>> = info.build_id.as_deref().map(Arc::from);
        if let Some(id) = build_id
            .as_ref()
            .and_then(|b| self.by_build_id.get(b))
            .copied()
            && self.map.contains_key(&id)
        {
            self.counters.hits += 1;
            return Opened::Shared(id);
        }
        self.counters.misses += 1;
        let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        let mut bytes = info.symbol_bytes() + BINARY_OVERHEAD_BYTES;
        let debug = debug.map(|(DebugFile { file, path }, debug_bytes)| {
            self.counters.debug_files += 1;
            bytes += debug_bytes;
            tracing::debug!(module = %module, pid, debug = %path.display(), "using separate debug file");
            DebugSource {
                fd_path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
                file,
                path,
                resolver: LazyResolver::default(),
            }
        });
        if let Some(go) = &go {
            self.counters.go_tables += 1;
            bytes += go.bytes();
        }

        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        if let Some(build_id) = &build_id {
            self.by_build_id.insert(Arc::clone(build_id), id);
        }
        self.tick += 1;
        self.map.insert(
            id,
            Binary {
                stamp: Stamp::of(&file),
                file,
                fd_path,
                build_id,
                module,
                info,
                debug,
                go,
                resolver: LazyResolver::default(),
                bytes,
                last_used: self.tick,
            },
        );
        self.bytes += bytes;
        self.evict_over_budget(id);
        Opened::New(id)
    }

    /// Gives the registered binary with `build_id` the debug file at `path` (one fetched
    /// from debuginfod, verified by build-id), unless it has one; whether it now does.
    pub(crate) fn attach_debug(&mut self, build_id: &[u8], path: &Path) -> bool {
        let Some(&id) = self.by_build_id.get(build_id) else {
            return false;
        };
        let Some(binary) = self.map.get_mut(&id) else {
            return false;
        };
        if binary.debug.is_some() {
            return false;
        }
        let file = match File::open(path) {
            Ok(file) => file,
            Err(err) => {
                tracing::debug!(path = %path.display(), error = %err, "fetched debug file cannot be opened");
                return false;
            }
        };
        let bytes = elf::parse(&file).map_or(0, |debug| debug.symbol_bytes());
        tracing::debug!(module = %binary.module, debug = %path.display(), "using fetched debug file");
        binary.debug = Some(DebugSource {
            fd_path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
            file,
            path: path.to_owned(),
            resolver: LazyResolver::default(),
        });
        binary.bytes += bytes;
        self.bytes += bytes;
        self.counters.debug_files += 1;
        self.evict_over_budget(id);
        true
    }

    /// Evicts least recently used binaries (never `keep`) until within the budget.
    fn evict_over_budget(&mut self, keep: BinaryId) {
        while self.bytes > self.budget && self.map.len() > 1 {
            let Some(victim) = self
                .map
                .iter()
                .filter(|(id, _)| **id != keep)
                .min_by_key(|(_, b)| b.last_used)
                .map(|(id, _)| *id)
            else {
                break;
            };
            self.counters.evictions += 1;
            self.remove(victim);
        }
    }

    /// Drops binary `id` and every index entry pointing to it.
    fn remove(&mut self, id: BinaryId) {
        let Some(binary) = self.map.remove(&id) else {
            return;
        };
        self.bytes = self.bytes.saturating_sub(binary.bytes);
        self.by_key.retain(|_, v| *v != id);
        if let Some(build_id) = &binary.build_id
            && self.by_build_id.get(build_id) == Some(&id)
        {
            self.by_build_id.remove(build_id);
        }
        if matches!(self.vdso, Vdso::Ready { id: vdso, .. } if vdso == id) {
            self.vdso = Vdso::Unknown;
        }
    }

    /// The binary holding a copy of the vDSO, for a `[vdso]` mapping of `len` bytes.
    ///
    /// Every process of a kind (64-bit, here) maps the same vDSO image, so our own copy
    /// stands in for all of them. A mapping of another size (a 32-bit process's vDSO) gets
    /// `None` rather than wrong names.
    pub(crate) fn vdso(&mut self, len: u64, refusals: &mut Refusals) -> Result<Opened, OpenError> {
        let mut opened = None;
        if let Vdso::Unknown = self.vdso {
            self.vdso = match copy_own_vdso() {
                Ok((file, vdso_len)) => match elf::parse(&file) {
                    Ok(info) => {
                        // Our own memory, copied: nothing of another process's to bound.
                        let found =
                            find_extras(Arc::new(file), info, "[vdso]", None, &Lookup::NONE, &[]);
                        refusals.record_all(found.1);
                        let registered = self.register(found.0, "[vdso]".into(), None);
                        opened = Some(registered);
                        Vdso::Ready {
                            id: registered.id(),
                            len: vdso_len,
                        }
                    }
                    Err(err) => {
                        tracing::debug!(error = %crate::ErrorChain(&err), "the vDSO copy is not readable ELF; its frames stay unnamed");
                        Vdso::Unavailable
                    }
                },
                Err(err) => {
                    tracing::debug!(error = %err, "failed to copy the vDSO; its frames stay unnamed");
                    Vdso::Unavailable
                }
            };
        }
        match self.vdso {
            Vdso::Ready { id, len: vdso_len } if vdso_len == len => {
                Ok(opened.unwrap_or(Opened::Known(id)))
            }
            _ => Err(OpenError::NoVdso),
        }
    }
}

/// How long the drain thread waits for a binary to be opened and read ([`Probe`]): its
/// headers, its separate debug file (whose `.gnu_debuglink` CRC reads all of it) and a Go
/// table. A local binary takes milliseconds; a file on a stalled FUSE or NFS mount costs
/// the drain thread this long once, and its frames stay unnamed until the read completes.
pub(crate) const BINARY_WAIT: Duration = Duration::from_secs(1);

/// The file a [`Probe`] reads.
#[derive(Debug)]
enum ProbeFile {
    /// The file behind this mapping, to be opened ([`open_mapped_file`]).
    Mapped(Mapping),
    /// A file opened earlier (a capture).
    Kept(Arc<File>),
}

/// Everything the worker thread needs to open and read one binary: owned, so the job
/// runs on its own, and the result comes back whenever it is done.
#[derive(Debug)]
pub(crate) struct Probe {
    /// The process whose binary it is.
    pid: Option<u32>,
    key: FileKey,
    /// The path the process maps it from.
    module: Arc<str>,
    file: ProbeFile,
    debug_dirs: Vec<PathBuf>,
    /// Where decompressed copies of compressed debug files are kept, if anywhere.
    debug_copies: Option<PathBuf>,
    /// Build-ids already registered: a file with one of them is shared, so its debug file
    /// and Go table are not looked for again.
    known: Vec<Arc<[u8]>>,
}

impl Probe {
    /// Where the file is, for a refusal's log line.
    fn shown(&self) -> PathBuf {
        match self.pid {
            Some(pid) => PathBuf::from(format!("/proc/{pid}/root{}", self.module)),
            None => PathBuf::from(&*self.module),
        }
    }
}

/// Where a probe looks for debug files and keeps their decompressed copies.
struct Lookup<'a> {
    debug_dirs: &'a [PathBuf],
    debug_copies: Option<&'a Path>,
}

impl Lookup<'_> {
    /// No debug directories, no copies (the vDSO).
    const NONE: Lookup<'static> = Lookup {
        debug_dirs: &[],
        debug_copies: None,
    };
}

/// What the worker read of a binary: the file, its headers and what was found for it.
#[derive(Debug)]
pub(crate) struct Found {
    file: Arc<File>,
    info: ElfFile,
    /// Its separate debug file and that file's charged bytes.
    debug: Option<(DebugFile, u64)>,
    go: Option<GoTable>,
}

/// The result of a [`Probe`], with the refusals met on the way.
#[derive(Debug)]
pub(crate) struct Probed {
    key: FileKey,
    pid: Option<u32>,
    module: Arc<str>,
    found: Result<Found, OpenError>,
    refused: RefusalLog,
}

/// The job the worker runs for a [`Probe`]: opens the file (unless kept), reads its
/// headers, looks for its debug file and Go table. Blocks as long as the file system does.
pub(crate) fn run_probe(probe: Probe) -> Probed {
    let Probe {
        pid,
        key,
        module,
        file,
        debug_dirs,
        debug_copies,
        known,
    } = probe;
    let mut refused = RefusalLog::default();
    let found = (|| {
        let file = match file {
            ProbeFile::Kept(file) => file,
            ProbeFile::Mapped(mapping) => {
                let pid = pid.ok_or(OpenError::NoFile)?;
                Arc::new(open_mapped_file(pid, &mapping, &module, &key)?)
            }
        };
        let info = elf::parse(&*file).map_err(|source| OpenError::NotElf {
            path: Arc::clone(&module),
            source,
        })?;
        let dirs = Lookup {
            debug_dirs: &debug_dirs,
            debug_copies: debug_copies.as_deref(),
        };
        let (found, log) = find_extras(file, info, &module, pid, &dirs, &known);
        refused = log;
        Ok(found)
    })();
    Probed {
        key,
        pid,
        module,
        found,
        refused,
    }
}

/// The separate debug file and Go table of an opened binary, unless its build-id is in
/// `known` (then the registered binary is used and nothing more is read).
fn find_extras(
    file: Arc<File>,
    info: ElfFile,
    module: &str,
    pid: Option<u32>,
    dirs: &Lookup<'_>,
    known: &[Arc<[u8]>],
) -> (Found, RefusalLog) {
    let mut refused = RefusalLog::default();
    let shared = info
        .build_id
        .as_deref()
        .is_some_and(|id| known.iter().any(|k| **k == *id));
    let debug = if shared || info.has_debug_info() {
        None
    } else {
        debug::find(&info, module, pid, dirs.debug_dirs, &mut refused).map(|mut found| {
            if let Some(copies) = dirs.debug_copies {
                match crate::copies::decompressed_debug(copies, &found.file) {
                    Ok(Some(copy)) => found.file = copy,
                    Ok(None) => {}
                    Err(err) => tracing::debug!(
                        debug = %found.path.display(),
                        error = %err,
                        "no decompressed copy of the debug file; blazesym inflates it"
                    ),
                }
            }
            let bytes = elf::parse(&found.file).map_or_else(
                |_| found.file.metadata().map(|m| m.len()).unwrap_or(0),
                |debug| debug.symbol_bytes(),
            );
            (found, bytes)
        })
    };
    let go = if shared || info.has_symtab() || debug.is_some() {
        None
    } else {
        info.section(".gopclntab").and_then(|section| {
            let text = info.section(".text").map_or(0, |t| t.addr);
            match elf::read_section(&*file, section) {
                Ok(data) => GoTable::parse(data, text),
                Err(err) => {
                    tracing::debug!(module, error = %crate::ErrorChain(&err), "unreadable .gopclntab");
                    None
                }
            }
        })
    };
    (
        Found {
            file,
            info,
            debug,
            go,
        },
        refused,
    )
}

/// Opens the file behind `mapping`: through `map_files` if allowed, else through the
/// process's root directory, checking that the latter is still the mapped file.
pub(crate) fn open_mapped_file(
    pid: u32,
    mapping: &Mapping,
    path: &Arc<str>,
    key: &FileKey,
) -> Result<File, OpenError> {
    let map_file = format!(
        "/proc/{pid}/map_files/{:x}-{:x}",
        mapping.start, mapping.end
    );
    match untrusted::open_magic_link(Path::new(&map_file)) {
        Ok(file) => return Ok(file),
        Err(err) => {
            tracing::trace!(path = %map_file, error = %err, "map_files not usable; trying the process root");
        }
    }
    // The path is the process's to change (a directory swapped for a symlink, the file
    // for a FIFO): it is opened through `untrusted.rs`, and then must be the mapped file.
    let file = match untrusted::open(Root::Process(pid), Path::new(&**path), None) {
        Ok(file) => file,
        Err(untrusted::OpenError::Missing(source)) => {
            return Err(OpenError::Open {
                pid,
                path: path.clone(),
                source,
            });
        }
        Err(untrusted::OpenError::Refused(refusal)) => {
            return Err(OpenError::Refused {
                pid,
                path: path.clone(),
                refusal,
            });
        }
    };
    let same = file.metadata().is_ok_and(|meta| FileKey::of(&meta) == *key);
    if same {
        Ok(file)
    } else {
        Err(OpenError::Replaced {
            pid,
            path: path.clone(),
        })
    }
}

/// Copies this process's vDSO into an unnamed temporary file; returns it and its size.
fn copy_own_vdso() -> io::Result<(File, u64)> {
    let image = crate::procfs::own_vdso()?;
    let file = tempfile::tempfile()?;
    file.write_all_at(&image, 0)?;
    Ok((file, image.len() as u64))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::maps;

    fn own_exe_mapping() -> Mapping {
        let (maps, _) = maps::read(std::process::id()).expect("read own maps");
        let exe = fs::read_link("/proc/self/exe").expect("read /proc/self/exe");
        let exe = exe.to_string_lossy().into_owned();
        maps.into_iter()
            .find(|m| m.exec && matches!(&m.backing, Backing::File { path, .. } if **path == *exe))
            .expect("an executable mapping of the test binary")
    }

    #[test]
    fn a_binary_is_registered_once_per_build_id() {
        let mapping = own_exe_mapping();
        let mut binaries = Binaries::new(&Config::default());
        let first = binaries
            .open(std::process::id(), &mapping, &mut Refusals::default())
            .expect("open own binary");
        assert!(matches!(first, Opened::New(0)));
        let Backing::File { key: Some(key), .. } = &mapping.backing else {
            panic!("mapping has no file key");
        };
        assert_eq!(binaries.lookup(key), Some(0));
        // Opening it again (as if under another key) finds it by build-id; Rust test
        // binaries are linked with a build-id on Linux.
        let binary = binaries.get(0).expect("binary 0");
        assert!(binary.build_id.is_some(), "the test binary has no build-id");
        let again = binaries
            .open(std::process::id(), &mapping, &mut Refusals::default())
            .expect("open again");
        assert_eq!(again, Opened::Shared(0));
        assert_eq!(binaries.len(), 1);
    }

    #[test]
    fn a_replaced_file_is_refused() {
        let mut mapping = own_exe_mapping();
        if let Backing::File { key: Some(key), .. } = &mut mapping.backing {
            key.inode ^= 1;
        }
        // map_files would still open the right file, so make sure only the rooted path
        // can be tried: there is no mapping starting at 0.
        mapping.start = 0;
        let Backing::File {
            path,
            key: Some(key),
            ..
        } = &mapping.backing
        else {
            panic!("mapping has no file key");
        };
        let err = open_mapped_file(std::process::id(), &mapping, path, key)
            .expect_err("a mismatched inode must be refused");
        assert!(matches!(err, OpenError::Replaced { .. }), "{err}");
    }

    #[test]
    fn a_mapped_path_through_a_symlink_or_to_a_fifo_is_refused_without_blocking() {
        let mut mapping = own_exe_mapping();
        // No mapping starts at 0, so map_files cannot be used: the rooted path is opened.
        mapping.start = 0;
        let exe = fs::read_link("/proc/self/exe").expect("read /proc/self/exe");
        let dir = tempfile::tempdir().expect("temp dir");
        let link = dir.path().join("exe");
        std::os::unix::fs::symlink(&exe, &link).expect("symlink");
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");
        let Backing::File { key: Some(key), .. } = &mapping.backing else {
            panic!("mapping has no file key");
        };
        let key = *key;
        for (path, want) in [
            (&link, Refusal::Symlink),
            (&fifo, Refusal::NotRegular("a FIFO")),
        ] {
            let path: Arc<str> = path.to_string_lossy().into();
            let err =
                open_mapped_file(std::process::id(), &mapping, &path, &key).expect_err("refused");
            assert!(
                matches!(&err, OpenError::Refused { refusal, .. } if *refusal == want),
                "{err}"
            );
        }
    }

    /// Released by [`a_binary_on_a_stalled_file_system_costs_one_wait_and_is_named_later`].
    static STALLED_FS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// A prober whose file system answers only once [`STALLED_FS`] is set (a hung FUSE or
    /// NFS mount under the process's binary or its debug link).
    fn stalled_prober(probe: Probe) -> Probed {
        while !STALLED_FS.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        run_probe(probe)
    }

    #[test]
    fn a_binary_on_a_stalled_file_system_costs_one_wait_and_is_named_later() {
        use std::time::{Duration, Instant};
        let mapping = own_exe_mapping();
        let Backing::File { key: Some(key), .. } = &mapping.backing else {
            panic!("mapping has no file key");
        };
        let mut binaries = Binaries::new(&Config::default());
        binaries.prober = stalled_prober;
        binaries.wait = Duration::from_millis(50);
        let mut refusals = Refusals::default();
        let start = Instant::now();
        let first = binaries.open(std::process::id(), &mapping, &mut refusals);
        assert!(matches!(first, Err(OpenError::Pending)), "{first:?}");
        // Asking again while it is read waits for nothing and starts nothing new.
        for _ in 0..20 {
            let again = binaries.open(std::process::id(), &mapping, &mut refusals);
            assert!(matches!(again, Err(OpenError::Pending)), "{again:?}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(binaries.worker.stalled(), 1);
        assert_eq!(refusals.counts.timed_out, 1);
        assert_eq!(binaries.lookup(key), None);
        // The file system answers: the binary is registered as soon as anyone asks.
        STALLED_FS.store(true, std::sync::atomic::Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while binaries.lookup(key).is_none() {
            assert!(Instant::now() < deadline, "the late read never arrived");
            std::thread::sleep(Duration::from_millis(10));
            binaries.collect_late(&mut refusals);
        }
        assert_eq!(binaries.worker.stalled(), 0);
        // Opened again (as under another key), it is the registered binary, at once.
        let opened = binaries
            .open(std::process::id(), &mapping, &mut refusals)
            .expect("registered");
        assert!(matches!(opened, Opened::Shared(0)), "{opened:?}");
        assert_eq!(binaries.len(), 1);
        assert_eq!(refusals.counts.total(), 1);
    }

    #[test]
    fn a_debug_link_to_a_fifo_is_refused_without_blocking() {
        // The test binary's own headers, with a debug link whose target beside the binary
        // is a FIFO: an `open` of it for reading would wait for a writer forever.
        let dir = tempfile::tempdir().expect("temp dir");
        let exe = fs::read_link("/proc/self/exe").expect("read /proc/self/exe");
        let module = dir.path().join("app");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("app.debug"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");
        let file = File::open(&exe).expect("open own exe");
        let mut info = elf::parse(&file).expect("own headers");
        info.sections.retain(|s| !s.name.starts_with(".debug_"));
        info.build_id = None;
        info.debuglink = Some(("app.debug".to_owned(), 0));
        let start = std::time::Instant::now();
        let (found, refused) = find_extras(
            Arc::new(file),
            info,
            &module.to_string_lossy(),
            Some(std::process::id()),
            &Lookup::NONE,
            &[],
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        assert!(found.debug.is_none());
        assert_eq!(
            refused
                .entries()
                .iter()
                .map(|(_, path, r)| (path.file_name().map(ToOwned::to_owned), r.clone()))
                .collect::<Vec<_>>(),
            [(
                Some(std::ffi::OsString::from("app.debug")),
                Refusal::NotRegular("a FIFO")
            )]
        );
    }

    #[test]
    fn the_shared_elf_reader_finds_the_build_id_blazesym_finds() {
        let info = elf::parse(&File::open("/proc/self/exe").expect("open own exe"))
            .expect("parse own exe");
        let blaze = blazesym::helper::read_elf_build_id("/proc/self/exe")
            .expect("blazesym build-id")
            .expect("some");
        assert_eq!(info.build_id.as_deref(), Some(blaze.as_ref()));
    }

    #[test]
    fn the_vdso_copy_is_an_elf_file_with_a_build_id() {
        let mut binaries = Binaries::new(&Config::default());
        let (file, len) = copy_own_vdso().expect("copy own vDSO");
        assert!(elf::parse(&file).is_ok());
        let opened = binaries
            .vdso(len, &mut Refusals::default())
            .expect("vDSO binary");
        let binary = binaries.get(opened.id()).expect("registered");
        assert_eq!(&*binary.module, "[vdso]");
        assert!(binaries.vdso(len + 4096, &mut Refusals::default()).is_err());
    }
}
