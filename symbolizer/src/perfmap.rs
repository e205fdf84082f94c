//! JIT symbols from perf map files, `/tmp/perf-<pid>.map`, as written by Node.js
//! (`--perf-basic-prof`), JVM perf-map agents and CPython 3.12+ (`-X perf`): one symbol
//! per line, `<start hex> <size hex> <name>`, where the name may contain spaces.
//!
//! A process in a container writes the file in its own `/tmp` under its own pid, so the
//! file is read as `/tmp/perf-<nspid>.map` beneath `/proc/<pid>/root`, `nspid` being the
//! innermost pid of the `NSpid:` line of `/proc/<pid>/status` (and then, if there is none,
//! as the host's `/tmp/perf-<pid>.map`). Lines that do not parse are skipped, counted and
//! logged once per read. Later lines win over earlier ones for the same start address
//! (JITs reuse code space).
//!
//! The file belongs to the process's user, so it is opened and read through `untrusted.rs`
//! (no symlinks, regular files of the process's user or root, at most
//! [`PERF_MAP_MAX_BYTES`], and all perf maps held together at most
//! [`PERF_MAPS_TOTAL_BYTES`]), on the [`PerfMaps`] worker thread, waited for at most
//! [`READ_WAIT`]. A map is checked again when an address misses it (JITs append as they
//! compile), but at most every [`RECHECK`] per process, and read again only when its
//! device, inode, size or modification time changed: a huge or hostile file is refused
//! once, not re-read at every stack.
//!
//! [`READ_WAIT`]: crate::untrusted::READ_WAIT

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stats::Stats;
use crate::untrusted::{
    self, OpenError, Owners, PERF_MAP_MAX_BYTES, READ_WAIT, Refusal, Refusals, Root, Run, Stamp,
    Worker,
};

/// Perf map text held for all processes together, 256 MiB: beyond it, a map that would
/// exceed it is refused (as too large) until other processes' maps are forgotten.
pub(crate) const PERF_MAPS_TOTAL_BYTES: u64 = 256 << 20;

/// The shortest time between two checks of one process's perf map.
pub(crate) const RECHECK: Duration = Duration::from_millis(200);

/// The shortest time between two checks when the last found no perf map.
const RECHECK_MISSING: Duration = Duration::from_secs(1);

/// The shortest time between two checks when the last refused the file.
const RECHECK_REFUSED: Duration = Duration::from_secs(10);

/// The symbols of one perf map, sorted by start address.
#[derive(Debug, Default)]
pub(crate) struct PerfMap {
    entries: Vec<(u64, u64, Arc<str>)>,
}

fn hex(field: &str) -> Option<u64> {
    let digits = field
        .strip_prefix("0x")
        .or_else(|| field.strip_prefix("0X"))
        .unwrap_or(field);
    u64::from_str_radix(digits, 16).ok()
}

impl PerfMap {
    /// Parses a perf map's text; returns it and the number of malformed lines skipped.
    pub(crate) fn parse(text: &str) -> (PerfMap, u64) {
        let mut skipped = 0;
        let mut entries: Vec<(u64, u64, Arc<str>)> = Vec::new();
        let mut first_bad = None;
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut parts = line.splitn(3, ' ');
            let parsed = (|| {
                let start = hex(parts.next()?)?;
                let size = hex(parts.next()?)?;
                let name = parts.next()?.trim();
                let end = start.checked_add(size)?;
                (size > 0 && !name.is_empty()).then(|| (start, end, Arc::<str>::from(name)))
            })();
            match parsed {
                Some(entry) => entries.push(entry),
                None => {
                    skipped += 1;
                    first_bad.get_or_insert(number + 1);
                }
            }
        }
        if let Some(line) = first_bad {
            tracing::debug!(
                first_bad_line = line,
                skipped,
                "skipped malformed perf map lines"
            );
        }
        // Stable sort, then keep the last entry of each start address.
        entries.sort_by_key(|e| e.0);
        let mut deduped: Vec<(u64, u64, Arc<str>)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match deduped.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => deduped.push(entry),
            }
        }
        (PerfMap { entries: deduped }, skipped)
    }

    /// The name of the JIT function containing `addr`.
    pub(crate) fn lookup(&self, addr: u64) -> Option<&Arc<str>> {
        let idx = self
            .entries
            .partition_point(|e| e.0 <= addr)
            .checked_sub(1)?;
        // An earlier, larger symbol may still cover the address when the one right
        // before it is small: look back a little.
        self.entries[..=idx]
            .iter()
            .rev()
            .take(8)
            .find(|e| addr < e.1)
            .map(|e| &e.2)
    }

    /// Number of symbols.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// What one check of a process's perf map found.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// The map, read and parsed: `bytes` long, `skipped` malformed lines.
    Map {
        map: PerfMap,
        skipped: u64,
        stamp: Stamp,
        bytes: u64,
    },
    /// The same file as last time: not read again.
    Unchanged,
    /// No perf map (or no process any more).
    Missing,
    /// There is one, and it was refused; `stamp` is set when that version of the file is
    /// not to be looked at again.
    Refused {
        path: PathBuf,
        refusal: Refusal,
        stamp: Option<Stamp>,
    },
}

/// Where `path` beneath `root` is, for logs.
fn shown(root: Root, path: &str) -> PathBuf {
    match root {
        Root::Process(pid) => PathBuf::from(format!("/proc/{pid}/root{path}")),
        Root::Host => PathBuf::from(path),
    }
}

/// Checks the perf map of process `pid`, reading it unless it is the version `last`, and
/// refusing it over `cap` bytes. Blocks as long as the file system does: run it on the
/// [`PerfMaps`] worker.
pub(crate) fn load(pid: u32, last: Option<Stamp>, cap: u64) -> Loaded {
    let Ok(status) = crate::procfs::Procfs::default().status(pid) else {
        return Loaded::Missing;
    };
    let nspid = status.ns_pid.unwrap_or(pid);
    let owners = status.uids.map_or(Owners::ROOT, Owners::from_uids);
    let candidates = [
        (Root::Process(pid), format!("/tmp/perf-{nspid}.map")),
        (Root::Host, format!("/tmp/perf-{pid}.map")),
    ];
    for (root, path) in candidates {
        let refused = |refusal, stamp| Loaded::Refused {
            path: shown(root, &path),
            refusal,
            stamp,
        };
        let found = match untrusted::find(root, Path::new(&path), Some(owners)) {
            Ok(found) => found,
            Err(OpenError::Missing(_)) => continue,
            Err(OpenError::Refused(refusal)) => return refused(refusal, None),
        };
        let stamp = Stamp::of(&found.meta);
        if last == Some(stamp) {
            return Loaded::Unchanged;
        }
        let size = found.meta.len();
        if size > cap {
            return refused(Refusal::TooLarge { size, cap }, Some(stamp));
        }
        let bytes = match found
            .open()
            .and_then(|file| untrusted::read_capped(&file, cap))
        {
            Ok(bytes) => bytes,
            Err(OpenError::Missing(_)) => continue,
            Err(OpenError::Refused(refusal)) => return refused(refusal, Some(stamp)),
        };
        let (map, skipped) = PerfMap::parse(&String::from_utf8_lossy(&bytes));
        return Loaded::Map {
            map,
            skipped,
            stamp,
            bytes: bytes.len() as u64,
        };
    }
    Loaded::Missing
}

/// What is known about one process's perf map.
#[derive(Debug, Default)]
struct State {
    map: Option<PerfMap>,
    /// The version of the file `map` was read from, or that was refused.
    stamp: Option<Stamp>,
    /// Bytes of the file `map` was read from.
    bytes: u64,
    /// When the file may be checked again.
    next_check: Option<Instant>,
}

/// The perf maps of all processes, read on a worker thread of their own.
#[derive(Debug)]
pub(crate) struct PerfMaps {
    procs: HashMap<u32, State>,
    worker: Worker<u32, Loaded>,
    /// Sum of `bytes` over `procs`.
    held: u64,
}

impl Default for PerfMaps {
    fn default() -> Self {
        PerfMaps {
            procs: HashMap::new(),
            worker: Worker::new("ember-perfmap"),
            held: 0,
        }
    }
}

impl PerfMaps {
    /// The name of the JIT function containing `addr` in process `pid`: from its map as
    /// known, else after checking the file again (if allowed yet; see the module docs).
    pub(crate) fn lookup(
        &mut self,
        pid: u32,
        addr: u64,
        stats: &mut Stats,
        refusals: &mut Refusals,
    ) -> Option<Arc<str>> {
        for (late_pid, loaded) in self.worker.late() {
            self.apply(late_pid, loaded, stats, refusals);
        }
        if let Some(name) = self.known(pid, addr) {
            return Some(name);
        }
        let now = Instant::now();
        if self.worker.is_running(pid) {
            return None;
        }
        let state = self.procs.entry(pid).or_default();
        if state.next_check.is_some_and(|at| now < at) {
            return None;
        }
        state.next_check = Some(now + RECHECK);
        let last = state.stamp;
        let others = self.held - state.bytes;
        let cap = PERF_MAP_MAX_BYTES.min(PERF_MAPS_TOTAL_BYTES.saturating_sub(others));
        stats.perf_map_reads += 1;
        match self
            .worker
            .run(pid, move || load(pid, last, cap), READ_WAIT)
        {
            Run::Done(loaded) => self.apply(pid, loaded, stats, refusals),
            Run::Late => refusals.record(
                Some(pid),
                &shown(Root::Process(pid), "/tmp/perf-*.map"),
                &Refusal::TimedOut(READ_WAIT),
            ),
            Run::Busy => refusals.record(
                Some(pid),
                &shown(Root::Process(pid), "/tmp/perf-*.map"),
                &Refusal::Busy,
            ),
            Run::Failed => {}
        }
        self.known(pid, addr)
    }

    fn known(&self, pid: u32, addr: u64) -> Option<Arc<str>> {
        self.procs.get(&pid)?.map.as_ref()?.lookup(addr).cloned()
    }

    fn apply(&mut self, pid: u32, loaded: Loaded, stats: &mut Stats, refusals: &mut Refusals) {
        let Some(state) = self.procs.get_mut(&pid) else {
            // Forgotten while its map was being read.
            return;
        };
        let now = Instant::now();
        match loaded {
            Loaded::Map {
                map,
                skipped,
                stamp,
                bytes,
            } => {
                stats.perf_map_loads += 1;
                stats.perf_map_lines_skipped += skipped;
                self.held = self.held - state.bytes + bytes;
                state.map = Some(map);
                state.stamp = Some(stamp);
                state.bytes = bytes;
            }
            Loaded::Unchanged => {}
            Loaded::Missing => state.next_check = Some(now + RECHECK_MISSING),
            Loaded::Refused {
                path,
                refusal,
                stamp,
            } => {
                refusals.record(Some(pid), &path, &refusal);
                if stamp.is_some() {
                    state.stamp = stamp;
                }
                state.next_check = Some(now + RECHECK_REFUSED);
            }
        }
    }

    /// Drops what is known about process `pid`'s perf map.
    pub(crate) fn forget(&mut self, pid: u32) {
        if let Some(state) = self.procs.remove(&pid) {
            self.held -= state.bytes;
        }
    }

    /// Bytes of perf map text held now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> u64 {
        self.held
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::test_support::have_root;

    #[test]
    fn parses_node_and_cpython_formats_and_skips_bad_lines() {
        let text = "\
7f0000001000 40 LazyCompile:*hotLoop /app/main.js:3:17\n\
7f0000001040 20 py::fib:/app/fib.py\n\
0x7f0000002000 0x100 Builtin:ArrayMap\n\
garbage line\n\
7f0000003000 zz bad-size\n\
7f0000004000 10\n\
\n\
7f0000005000 0 empty\n\
ffffffffffffffff 10 overflow\n\
7f0000001000 40 LazyCompile:*hotLoopAgain /app/main.js:3:17\n";
        let (map, skipped) = PerfMap::parse(text);
        assert_eq!(skipped, 5);
        assert_eq!(map.len(), 3);
        assert_eq!(
            map.lookup(0x7f00_0000_1010).map(|n| &**n),
            Some("LazyCompile:*hotLoopAgain /app/main.js:3:17")
        );
        assert_eq!(
            map.lookup(0x7f00_0000_1050).map(|n| &**n),
            Some("py::fib:/app/fib.py")
        );
        assert_eq!(
            map.lookup(0x7f00_0000_20ff).map(|n| &**n),
            Some("Builtin:ArrayMap")
        );
        assert_eq!(map.lookup(0x7f00_0000_2100), None);
        assert_eq!(map.lookup(0x7f00_0000_0fff), None);
        assert_eq!(map.lookup(0), None);
    }

    #[test]
    fn a_missing_perf_map_is_missing_not_a_panic() {
        assert!(matches!(
            load(u32::MAX, None, PERF_MAP_MAX_BYTES),
            Loaded::Missing
        ));
        let (map, skipped) = PerfMap::parse("\u{fffd}\u{0}\n   \n");
        assert_eq!((map.len(), skipped), (0, 1));
    }

    /// A child process and its perf map path; the child is killed and the map removed
    /// when dropped.
    struct Jit {
        child: std::process::Child,
        map: PathBuf,
    }

    impl Jit {
        fn start(uid: Option<u32>) -> Jit {
            use std::os::unix::process::CommandExt;
            let mut command = std::process::Command::new("sleep");
            command.arg("30");
            if let Some(uid) = uid {
                command.uid(uid).gid(uid);
            }
            let child = command.spawn().expect("spawn sleep");
            let map = PathBuf::from(format!("/tmp/perf-{}.map", child.id()));
            let _ = std::fs::remove_file(&map);
            Jit { child, map }
        }

        fn pid(&self) -> u32 {
            self.child.id()
        }
    }

    impl Drop for Jit {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(&self.map);
        }
    }

    #[test]
    fn an_unchanged_map_is_not_read_again_and_a_changed_one_is() {
        let jit = Jit::start(None);
        std::fs::write(&jit.map, "7f0000001000 40 first\n").expect("write map");
        let Loaded::Map { map, stamp, .. } = load(jit.pid(), None, PERF_MAP_MAX_BYTES) else {
            panic!("map not loaded");
        };
        assert_eq!(map.lookup(0x7f00_0000_1010).map(|n| &**n), Some("first"));
        assert!(matches!(
            load(jit.pid(), Some(stamp), PERF_MAP_MAX_BYTES),
            Loaded::Unchanged
        ));
        std::fs::write(&jit.map, "7f0000001000 40 first\n7f0000002000 40 second\n")
            .expect("append");
        let Loaded::Map { map, .. } = load(jit.pid(), Some(stamp), PERF_MAP_MAX_BYTES) else {
            panic!("changed map not loaded");
        };
        assert_eq!(map.lookup(0x7f00_0000_2010).map(|n| &**n), Some("second"));

        // Through `PerfMaps`: one read names it, misses re-check at most every RECHECK.
        let mut maps = PerfMaps::default();
        let (mut stats, mut refusals) = (Stats::default(), Refusals::default());
        let name = maps.lookup(jit.pid(), 0x7f00_0000_1000, &mut stats, &mut refusals);
        assert_eq!(name.as_deref(), Some("first"));
        for _ in 0..1000 {
            assert!(
                maps.lookup(jit.pid(), 0x7f00_0000_9000, &mut stats, &mut refusals)
                    .is_none()
            );
        }
        assert_eq!((stats.perf_map_reads, stats.perf_map_loads), (1, 1));
        std::thread::sleep(RECHECK);
        assert!(
            maps.lookup(jit.pid(), 0x7f00_0000_9000, &mut stats, &mut refusals)
                .is_none()
        );
        assert_eq!(
            (stats.perf_map_reads, stats.perf_map_loads),
            (2, 1),
            "checked again but not re-read"
        );
        assert_eq!(maps.held(), 45);
        maps.forget(jit.pid());
        assert_eq!(maps.held(), 0);
        assert_eq!(refusals.counts.total(), 0);
    }

    #[test]
    fn a_huge_sparse_map_is_refused_once_without_reading_it() {
        let jit = Jit::start(None);
        std::fs::File::create(&jit.map)
            .and_then(|f| f.set_len(1 << 30))
            .expect("sparse map");
        let start = Instant::now();
        let Loaded::Refused {
            refusal,
            stamp: Some(stamp),
            ..
        } = load(jit.pid(), None, PERF_MAP_MAX_BYTES)
        else {
            panic!("a 1 GiB map must be refused with its stamp");
        };
        assert_eq!(
            refusal,
            Refusal::TooLarge {
                size: 1 << 30,
                cap: PERF_MAP_MAX_BYTES
            }
        );
        // Its version is remembered: the same file is not even refused again.
        assert!(matches!(
            load(jit.pid(), Some(stamp), PERF_MAP_MAX_BYTES),
            Loaded::Unchanged
        ));
        assert!(start.elapsed() < Duration::from_millis(200));

        let mut maps = PerfMaps::default();
        let (mut stats, mut refusals) = (Stats::default(), Refusals::default());
        for _ in 0..100 {
            assert!(
                maps.lookup(jit.pid(), 0x7f00_0000_1000, &mut stats, &mut refusals)
                    .is_none()
            );
        }
        assert_eq!(refusals.counts.too_large, 1);
        assert_eq!((stats.perf_map_reads, stats.perf_map_loads), (1, 0));
        assert_eq!(maps.held(), 0);
    }

    #[test]
    fn the_total_held_is_bounded_across_processes() {
        let jits: Vec<Jit> = (0..2).map(|_| Jit::start(None)).collect();
        let line = "7f0000001000 40 f\n";
        for jit in &jits {
            std::fs::write(&jit.map, line.repeat(100)).expect("write map");
        }
        let cap = line.len() as u64 * 150;
        // As PerfMaps computes it: the first leaves room for less than the second needs.
        assert!(matches!(
            load(jits[0].pid(), None, cap),
            Loaded::Map { bytes, .. } if bytes == line.len() as u64 * 100
        ));
        assert!(matches!(
            load(jits[1].pid(), None, cap - line.len() as u64 * 100),
            Loaded::Refused {
                refusal: Refusal::TooLarge { .. },
                ..
            }
        ));
    }

    #[test]
    fn fifo_symlink_and_foreign_maps_are_refused_quickly() {
        let jit = Jit::start(None);
        let start = Instant::now();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &jit.map,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");
        assert!(matches!(
            load(jit.pid(), None, PERF_MAP_MAX_BYTES),
            Loaded::Refused {
                refusal: Refusal::NotRegular("a FIFO"),
                ..
            }
        ));
        std::fs::remove_file(&jit.map).expect("remove fifo");
        let secret = tempfile::NamedTempFile::new().expect("secret");
        std::fs::write(secret.path(), "7f0000001000 40 secretSymbol\n").expect("write");
        std::os::unix::fs::symlink(secret.path(), &jit.map).expect("symlink");
        let mut maps = PerfMaps::default();
        let (mut stats, mut refusals) = (Stats::default(), Refusals::default());
        assert!(
            maps.lookup(jit.pid(), 0x7f00_0000_1000, &mut stats, &mut refusals)
                .is_none()
        );
        assert_eq!(refusals.counts.symlink, 1);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_map_of_another_user_is_refused_and_the_processs_or_roots_is_read() {
        let test = "a_map_of_another_user_is_refused_and_the_processs_or_roots_is_read";
        if !have_root(test, "needs root to run a process as another user") {
            return;
        }
        // The process runs as nobody (65534).
        let jit = Jit::start(Some(65534));
        let text = "7f0000001000 40 f\n";
        for (owner, readable) in [(4242, false), (65534, true), (0, true)] {
            let _ = std::fs::remove_file(&jit.map);
            std::fs::write(&jit.map, text).expect("write map");
            std::os::unix::fs::chown(&jit.map, Some(owner), Some(owner)).expect("chown");
            let loaded = load(jit.pid(), None, PERF_MAP_MAX_BYTES);
            if readable {
                assert!(
                    matches!(loaded, Loaded::Map { .. }),
                    "owner {owner}: {loaded:?}"
                );
            } else {
                assert!(
                    matches!(
                        loaded,
                        Loaded::Refused {
                            refusal: Refusal::Owner(4242),
                            ..
                        }
                    ),
                    "owner {owner}: {loaded:?}"
                );
            }
        }
    }
}
