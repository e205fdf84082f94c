//! Kernel addresses to names: from this boot's copy of kallsyms (`kernel_copy`), a table
//! Ember maps (`ksyms`), and for addresses the copy does not cover (BPF programs,
//! trampolines) from the few symbols of the live kallsyms outside it, read again when an
//! address is not among them, at most once a minute. Without a copy (no cache directory,
//! module addresses hidden) blazesym's kallsyms source reads the live file whole.
//!
//! kallsyms is loaded lazily, on the first kernel stack, and only once: before indexing
//! it we check that it shows real addresses. With `kernel.kptr_restrict` hiding
//! them (every address reads as zero) a single warning says what to do, and from then on
//! every kernel frame is `[unknown]` without touching kallsyms again.
//!
//! vmlinux and kernel-module ELF files are deliberately not consulted: kallsyms covers the
//! core kernel, modules and BPF programs without file-system access, and a vmlinux lookup
//! would need the KASLR offset (from `/proc/kcore`). kallsyms has no sizes, so a name is
//! the nearest symbol at or below the address; addresses further than
//! [`MAX_SYMBOL_OFFSET`] from it, and addresses outside the kernel half of the address
//! space, are treated as garbage (`[unknown]`).

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use blazesym::MaybeDefault;
use blazesym::symbolize::source::{self, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer as Blaze};

use crate::kernel_copy::{self, Coverage, Key};
use crate::ksyms::{KernelSymbols, SortedSymbols, each_line};

/// Where the running kernel's symbols are.
pub(crate) const KALLSYMS: &str = "/proc/kallsyms";

/// The lowest kernel address: the kernel owns the upper half of the address space on the
/// 64-bit architectures Ember runs on (`x86_64`, `aarch64`).
const KERNEL_HALF: u64 = 1 << 63;

/// The largest distance from a symbol that still names it. Kernel functions are far
/// smaller; anything further is past the end of the last function in a region.
pub(crate) const MAX_SYMBOL_OFFSET: usize = 1 << 20;

/// How far kernel symbolization got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// kallsyms has not been looked at yet.
    NotLoaded,
    /// kallsyms is loaded in blazesym.
    Ready,
    /// kallsyms is unusable; the reason was logged once.
    Unavailable,
}

/// What the beginning of kallsyms tells us.
#[derive(Debug, PartialEq, Eq)]
enum Visibility {
    /// At least one nonzero address.
    Visible,
    /// Symbols, but every address zero: `kptr_restrict` in effect.
    Hidden,
    /// No symbol lines at all.
    Empty,
}

/// Where a copy of kallsyms may be kept for the rest of the boot (see `kernel_copy`), and
/// the files its key is read from.
#[derive(Clone, Debug)]
pub(crate) struct CopyPlace {
    pub(crate) dir: PathBuf,
    pub(crate) boot_id: PathBuf,
    pub(crate) modules: PathBuf,
}

impl CopyPlace {
    /// A copy in `dir` of the running kernel's symbols.
    pub(crate) fn running(dir: PathBuf) -> Self {
        CopyPlace {
            dir,
            boot_id: kernel_copy::BOOT_ID.into(),
            modules: kernel_copy::MODULES.into(),
        }
    }
}

/// Kernel symbolization state.
#[derive(Debug)]
pub(crate) struct Kernel {
    kallsyms: PathBuf,
    copy: Option<CopyPlace>,
    /// The copy's symbols, which name the addresses in `coverage`.
    index: Option<KernelSymbols>,
    coverage: Option<Coverage>,
    /// The live file's symbols outside `coverage` (BPF programs, trampolines: a few
    /// hundred), and when they were read: read when an address outside the copy is first
    /// asked about, and again when one is not among them, at most every `live_reread`.
    live: Option<(SortedSymbols, Instant)>,
    live_reread: Duration,
    state: State,
}

/// The least time between two reads of the live kallsyms for addresses outside the copy:
/// a read costs the kernel about 40 ms of CPU.
const LIVE_REREAD: Duration = Duration::from_secs(60);

impl Kernel {
    /// Kernel symbols from `kallsyms` (normally [`KALLSYMS`]), through a copy kept at `copy`
    /// if there is one; nothing is read yet.
    pub(crate) fn new(kallsyms: PathBuf, copy: Option<CopyPlace>) -> Self {
        Kernel {
            index: None,
            live: None,
            live_reread: LIVE_REREAD,
            kallsyms,
            copy,
            coverage: None,
            state: State::NotLoaded,
        }
    }

    /// How far loading got.
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// Whether `addr` can be a kernel text address at all.
    pub(crate) fn is_plausible(addr: u64) -> bool {
        addr >= KERNEL_HALF
    }

    /// Loads kallsyms on first use; returns whether kernel addresses can be symbolized.
    pub(crate) fn ensure_ready(&mut self, blaze: &Blaze) -> bool {
        if self.state == State::NotLoaded {
            self.state = self.load(blaze);
        }
        self.state == State::Ready
    }

    fn load(&mut self, blaze: &Blaze) -> State {
        let path = self.kallsyms.display();
        match visibility(&self.kallsyms) {
            Ok(Visibility::Visible) => {}
            Ok(Visibility::Hidden) => {
                let kptr_restrict = fs::read_to_string("/proc/sys/kernel/kptr_restrict")
                    .map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned());
                tracing::warn!(
                    kptr_restrict = %kptr_restrict,
                    "kernel addresses are hidden (`{path}` shows only zero addresses), so kernel \
                     frames will be `[unknown]`; run as root (kptr_restrict=1 only hides them \
                     from processes without CAP_SYSLOG) or set `sysctl kernel.kptr_restrict=0`"
                );
                return State::Unavailable;
            }
            Ok(Visibility::Empty) => {
                tracing::warn!("`{path}` lists no symbols, so kernel frames will be `[unknown]`");
                return State::Unavailable;
            }
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    "failed to read `{path}`, so kernel frames will be `[unknown]`; run as root"
                );
                return State::Unavailable;
            }
        }
        if let Some(place) = &self.copy {
            let copy = Key::read(&place.boot_id, &place.modules)
                .and_then(|key| kernel_copy::open_or_make(&place.dir, &self.kallsyms, &key));
            match copy {
                Ok((index, coverage)) => {
                    self.index = Some(index);
                    self.coverage = Some(coverage);
                    return State::Ready;
                }
                Err(err) => tracing::debug!(
                    error = %err,
                    "no copy of the kernel's symbols in {}; reading `{path}`",
                    place.dir.display()
                ),
            }
        }
        // Symbolizing nothing makes blazesym parse kallsyms now, so a failure surfaces here,
        // once, rather than as an unknown frame per sample.
        match blaze.symbolize(&Self::source_of(&self.kallsyms), Input::AbsAddr(&[])) {
            Ok(_) => {
                tracing::debug!("loaded kernel symbols from `{path}`");
                State::Ready
            }
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    "failed to load kernel symbols from `{path}`, so kernel frames will be `[unknown]`"
                );
                State::Unavailable
            }
        }
    }

    /// The blazesym source: the kallsyms file `path` only.
    fn source_of(path: &Path) -> Source<'static> {
        Source::Kernel(source::Kernel {
            kallsyms: MaybeDefault::Some(path.to_owned()),
            vmlinux: MaybeDefault::None,
            debug_syms: false,
            ..source::Kernel::default()
        })
    }

    /// The name of the kernel function containing `addr`, if it is known.
    ///
    /// Call only after [`Kernel::ensure_ready`] returned `true`.
    pub(crate) fn lookup(&mut self, blaze: &Blaze, addr: u64) -> Option<String> {
        if !Self::is_plausible(addr) || self.state != State::Ready {
            return None;
        }
        let named = |found: Option<(&str, u64)>| {
            found
                .filter(|&(name, offset)| offset <= MAX_SYMBOL_OFFSET as u64 && !name.is_empty())
                .map(|(name, _)| name.to_owned())
        };
        if let (Some(index), Some(coverage)) = (&self.index, &self.coverage) {
            if coverage.contains(addr) {
                return named(index.find(addr));
            }
            // A BPF program, a trampoline or garbage: only the live file can say.
            let known = self
                .live
                .as_ref()
                .and_then(|(live, _)| named(live.find(addr)));
            if known.is_some() {
                return known;
            }
            if self
                .live
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() < self.live_reread)
            {
                return None;
            }
            match outside(&self.kallsyms, coverage) {
                Ok(live) => {
                    tracing::debug!(
                        addr = format_args!("{addr:#x}"),
                        symbols = live.len(),
                        "read the symbols outside the copy of kallsyms from `{}`",
                        self.kallsyms.display()
                    );
                    self.live = Some((live, Instant::now()));
                }
                Err(err) => {
                    tracing::debug!(error = %err, "cannot read `{}`", self.kallsyms.display());
                    self.live = Some((SortedSymbols::default(), Instant::now()));
                }
            }
            return self
                .live
                .as_ref()
                .and_then(|(live, _)| named(live.find(addr)));
        }
        match blaze.symbolize_single(&Self::source_of(&self.kallsyms), Input::AbsAddr(addr)) {
            Ok(Symbolized::Sym(sym)) if sym.offset <= MAX_SYMBOL_OFFSET && !sym.name.is_empty() => {
                Some(sym.name.into_owned())
            }
            Ok(_) => None,
            Err(err) => {
                tracing::trace!(addr = format_args!("{addr:#x}"), error = %err, "kernel lookup failed");
                None
            }
        }
    }
}

/// The symbols of kallsyms at `path` that `coverage` leaves out, sorted.
fn outside(path: &Path, coverage: &Coverage) -> io::Result<SortedSymbols> {
    let mut syms = SortedSymbols::default();
    each_line(
        BufReader::new(File::open(path)?),
        kernel_copy::MAX_KALLSYMS_BYTES,
        |line| {
            if Kernel::is_plausible(line.addr) && !coverage.contains(line.addr) {
                syms.push(line.addr, line.name)?;
            }
            Ok(())
        },
    )?;
    syms.sort();
    Ok(syms)
}

/// Reads kallsyms until the first nonzero address (normally the first line).
fn visibility(path: &std::path::Path) -> io::Result<Visibility> {
    let mut saw_symbol = false;
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        let Some(addr) = line.split_ascii_whitespace().next() else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        if addr != 0 {
            return Ok(Visibility::Visible);
        }
        saw_symbol = true;
    }
    Ok(if saw_symbol {
        Visibility::Hidden
    } else {
        Visibility::Empty
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn kallsyms(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write kallsyms");
        file
    }

    fn blaze() -> Blaze {
        Blaze::builder().enable_auto_reload(false).build()
    }

    #[test]
    fn hidden_addresses_make_the_kernel_unavailable_once() {
        let file = kallsyms(
            "0000000000000000 T _stext\n0000000000000000 T do_syscall_64\n0000000000000000 t x [mod]\n",
        );
        let mut kernel = Kernel::new(file.path().to_owned(), None);
        let blaze = blaze();
        assert!(!kernel.ensure_ready(&blaze));
        assert_eq!(kernel.state(), State::Unavailable);
        // Later samples do not look again, even if the file changed.
        std::fs::write(file.path(), "ffffffff81000000 T _stext\n").expect("rewrite");
        assert!(!kernel.ensure_ready(&blaze));
        assert_eq!(kernel.lookup(&blaze, 0xffff_ffff_8100_0000), None);
    }

    #[test]
    fn empty_and_missing_kallsyms_are_unavailable() {
        let file = kallsyms("");
        let blaze = blaze();
        assert!(!Kernel::new(file.path().to_owned(), None).ensure_ready(&blaze));
        assert!(!Kernel::new("/nonexistent/kallsyms".into(), None).ensure_ready(&blaze));
    }

    #[test]
    fn visible_symbols_resolve_to_the_nearest_lower_symbol() {
        let file = kallsyms(
            "0000000000000000 A fixed_percpu_data\n\
             ffffffff81000000 T _stext\n\
             ffffffff81001000 T do_syscall_64\n\
             ffffffff81002000 T schedule\n",
        );
        let mut kernel = Kernel::new(file.path().to_owned(), None);
        let blaze = blaze();
        assert!(kernel.ensure_ready(&blaze));
        assert_eq!(
            kernel.lookup(&blaze, 0xffff_ffff_8100_1000).as_deref(),
            Some("do_syscall_64")
        );
        assert_eq!(
            kernel.lookup(&blaze, 0xffff_ffff_8100_1fff).as_deref(),
            Some("do_syscall_64")
        );
        assert_eq!(
            kernel.lookup(&blaze, 0xffff_ffff_8100_2010).as_deref(),
            Some("schedule")
        );
        // Below the first symbol, far past the last, in user space, or at the very top.
        assert_eq!(kernel.lookup(&blaze, 0xffff_ffff_80ff_ffff), None);
        assert_eq!(kernel.lookup(&blaze, 0xffff_ffff_9000_0000), None);
        assert_eq!(kernel.lookup(&blaze, 0x1000), None);
        assert_eq!(kernel.lookup(&blaze, 0), None);
        assert_eq!(kernel.lookup(&blaze, u64::MAX), None);
    }

    fn copy_place(dir: &Path, modules: &str) -> CopyPlace {
        let boot_id = dir.join("boot_id");
        std::fs::write(&boot_id, "0b5c6f1e-7d1a-4c36-9d9e-2f5a1c2b3d4e\n").expect("boot id");
        let modules_file = dir.join("modules");
        std::fs::write(&modules_file, modules).expect("modules");
        CopyPlace {
            dir: dir.join("copies"),
            boot_id,
            modules: modules_file,
        }
    }

    #[test]
    fn a_copy_names_later_runs_and_what_it_does_not_cover_comes_from_the_live_file() {
        let dir = tempfile::tempdir().expect("dir");
        let live = dir.path().join("kallsyms");
        let text = "ffffffff81000000 T _stext\n\
                    ffffffff81001000 T do_syscall_64\n\
                    ffffffff81800000 T _etext\n\
                    ffffffffc0100000 t virtnet_poll\t[virtio_net]\n\
                    ffffffffc0300000 t some_program\t[bpf]\n";
        std::fs::write(&live, text).expect("live");
        let place = copy_place(dir.path(), "virtio_net 4096 0 - Live 0xffffffffc0100000\n");
        let first = |place: &CopyPlace| {
            let mut kernel = Kernel::new(live.clone(), Some(place.clone()));
            let blaze = blaze();
            assert!(kernel.ensure_ready(&blaze));
            (kernel, blaze)
        };
        let (mut kernel, blaze) = first(&place);
        assert_eq!(
            kernel.lookup(&blaze, 0xffff_ffff_8100_1010).as_deref(),
            Some("do_syscall_64")
        );
        // A later run reads the copy: what the live file now says about covered addresses
        // is not read (the kernel's text cannot change within a boot).
        std::fs::write(&live, text.replace("do_syscall_64", "renamed")).expect("live");
        let (mut kernel, blaze) = first(&place);
        assert_eq!(
            kernel.lookup(&blaze, 0xffff_ffff_8100_1010).as_deref(),
            Some("do_syscall_64")
        );
        assert_eq!(
            kernel.lookup(&blaze, 0xffff_ffff_c010_0040).as_deref(),
            Some("virtnet_poll")
        );
        // A BPF program is not in the copy: the live file names it, and the copy still
        // names what it covers.
        assert_eq!(
            kernel.lookup(&blaze, 0xffff_ffff_c030_0010).as_deref(),
            Some("some_program")
        );
        assert_eq!(
            kernel.lookup(&blaze, 0xffff_ffff_8100_1010).as_deref(),
            Some("do_syscall_64")
        );
        // Only the live file's symbols outside the copy are kept from it: the program,
        // and `_etext`, which lies just past the core text it ends.
        let live_syms = &kernel.live.as_ref().expect("read").0;
        assert_eq!(live_syms.len(), 2, "{live_syms:?}");
        // A program loaded later is named once the live file may be read again.
        let later = "ffffffffc0500000 t later_program\t[bpf]\n";
        let renamed = text.replace("do_syscall_64", "renamed");
        std::fs::write(&live, format!("{renamed}{later}")).expect("live");
        assert_eq!(kernel.lookup(&blaze, 0xffff_ffff_c050_0008), None);
        kernel.live_reread = Duration::ZERO;
        assert_eq!(
            kernel.lookup(&blaze, 0xffff_ffff_c050_0008).as_deref(),
            Some("later_program")
        );
        std::fs::write(&live, renamed).expect("live");
        // A module loaded since the copy was made: the copy is made again.
        let loaded = copy_place(
            dir.path(),
            "virtio_net 4096 0 - Live 0xffffffffc0100000\nkvm 4096 0 - Live 0xffffffffc0500000\n",
        );
        let (mut kernel, blaze) = first(&loaded);
        assert_eq!(
            kernel.lookup(&blaze, 0xffff_ffff_8100_1010).as_deref(),
            Some("renamed")
        );
    }

    /// On the running kernel (as root), every name through the copy is the live file's.
    #[test]
    fn the_running_kernels_copy_gives_the_live_names() {
        if visibility(Path::new(KALLSYMS)).ok() != Some(Visibility::Visible) {
            eprintln!(
                "SKIPPED the_running_kernels_copy_gives_the_live_names: {KALLSYMS} hides addresses"
            );
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root and must see kallsyms"
            );
            return;
        }
        let dir = tempfile::tempdir().expect("dir");
        let text = std::fs::read_to_string(KALLSYMS).expect("kallsyms");
        let mut addrs: Vec<u64> = text
            .lines()
            .step_by(211)
            .filter_map(|l| u64::from_str_radix(l.split_ascii_whitespace().next()?, 16).ok())
            .filter(|&a| Kernel::is_plausible(a))
            .flat_map(|a| [a, a + 7])
            .collect();
        addrs.sort_unstable();
        let place = CopyPlace::running(dir.path().to_owned());
        let (mut live, mut copy) = (
            Kernel::new(KALLSYMS.into(), None),
            Kernel::new(KALLSYMS.into(), Some(place)),
        );
        let (blaze_live, blaze_copy) = (blaze(), blaze());
        assert!(live.ensure_ready(&blaze_live) && copy.ensure_ready(&blaze_copy));
        let coverage = copy
            .coverage
            .clone()
            .expect("the running kernel's copy was made");
        let covered = addrs.iter().filter(|&&a| coverage.contains(a)).count();
        assert!(
            covered * 2 > addrs.len(),
            "{covered} of {} addresses covered",
            addrs.len()
        );
        assert!(copy.index.is_some(), "the copy was indexed");
        // Where the two differ, both names must be symbols at one address: of several at
        // one address the index names the first in the file, and so does blazesym, except
        // for an address past the lowest address of all, where its lower-bound search
        // names the last of them (`_stext`'s aliases).
        let mut address_of: std::collections::HashMap<&str, u64> = Default::default();
        for line in text.lines() {
            let mut f = line.split_ascii_whitespace();
            if let (Some(a), Some(_), Some(n)) = (f.next(), f.next(), f.next()) {
                address_of
                    .entry(n)
                    .or_insert(u64::from_str_radix(a, 16).unwrap_or(0));
            }
        }
        let (mut named, mut aliases) = (0, 0);
        for &a in addrs.iter().filter(|&&a| coverage.contains(a)) {
            let name = copy.lookup(&blaze_copy, a);
            let blazesym = live.lookup(&blaze_live, a);
            if name != blazesym {
                let at = |n: &Option<String>| n.as_deref().and_then(|n| address_of.get(n).copied());
                assert!(
                    at(&name).is_some() && at(&name) == at(&blazesym),
                    "{a:#x}: {name:?} against blazesym's {blazesym:?}"
                );
                aliases += 1;
            }
            named += usize::from(name.is_some());
        }
        assert!(named * 10 >= covered * 9, "{named} of {covered} named");
        assert!(aliases <= 2, "{aliases} addresses named by another alias");
        assert!(
            copy.live.is_none(),
            "covered addresses stayed with the copy"
        );
    }
}
