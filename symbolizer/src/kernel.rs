//! Kernel addresses to names, through blazesym's kernel source backed by kallsyms.
//!
//! kallsyms is loaded lazily, on the first kernel stack, and only once: before handing it
//! to blazesym we check that it shows real addresses. With `kernel.kptr_restrict` hiding
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
use std::path::PathBuf;

use blazesym::MaybeDefault;
use blazesym::symbolize::source::{self, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer as Blaze};

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

/// Kernel symbolization state.
#[derive(Debug)]
pub(crate) struct Kernel {
    kallsyms: PathBuf,
    state: State,
}

impl Kernel {
    /// Kernel symbols from `kallsyms` (normally [`KALLSYMS`]); nothing is read yet.
    pub(crate) fn new(kallsyms: PathBuf) -> Self {
        Kernel {
            kallsyms,
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

    fn load(&self, blaze: &Blaze) -> State {
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
        // Symbolizing nothing makes blazesym parse kallsyms now, so a failure surfaces here,
        // once, rather than as an unknown frame per sample.
        match blaze.symbolize(&self.source(), Input::AbsAddr(&[])) {
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

    /// The blazesym source: kallsyms only.
    fn source(&self) -> Source<'static> {
        Source::Kernel(source::Kernel {
            kallsyms: MaybeDefault::Some(self.kallsyms.clone()),
            vmlinux: MaybeDefault::None,
            debug_syms: false,
            ..source::Kernel::default()
        })
    }

    /// The name of the kernel function containing `addr`, if it is known.
    ///
    /// Call only after [`Kernel::ensure_ready`] returned `true`.
    pub(crate) fn lookup(&self, blaze: &Blaze, addr: u64) -> Option<String> {
        if !Self::is_plausible(addr) || self.state != State::Ready {
            return None;
        }
        match blaze.symbolize_single(&self.source(), Input::AbsAddr(addr)) {
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
        let mut kernel = Kernel::new(file.path().to_owned());
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
        assert!(!Kernel::new(file.path().to_owned()).ensure_ready(&blaze));
        assert!(!Kernel::new("/nonexistent/kallsyms".into()).ensure_ready(&blaze));
    }

    #[test]
    fn visible_symbols_resolve_to_the_nearest_lower_symbol() {
        let file = kallsyms(
            "0000000000000000 A fixed_percpu_data\n\
             ffffffff81000000 T _stext\n\
             ffffffff81001000 T do_syscall_64\n\
             ffffffff81002000 T schedule\n",
        );
        let mut kernel = Kernel::new(file.path().to_owned());
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
}
