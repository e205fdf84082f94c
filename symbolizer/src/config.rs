//! What the symbolizer looks up, and how much it remembers.
//!
//! [`Config`] is `#[non_exhaustive]` so options can be added without breaking callers:
//! start from [`Config::default`] and adjust with the `with_*` methods.

use std::path::PathBuf;

/// Default for [`Config::cache_entries`].
pub const DEFAULT_CACHE_ENTRIES: usize = 65_536;

/// Default for [`Config::cache_bytes`]: 256 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;

/// Default for [`Config::debug_dirs`].
pub const DEFAULT_DEBUG_DIR: &str = "/usr/lib/debug";

/// Symbolization options.
///
/// ```
/// let config = symbolizer::Config::default().with_inlined_fns(false);
/// assert!(config.code_info && !config.inlined_fns);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Budget, in estimated bytes, of the cache of opened binaries (default 256 MiB).
    /// Least recently used binaries are evicted past it; the most recent one always
    /// stays. See the crate documentation for how bytes are estimated.
    pub cache_bytes: u64,
    /// Directories searched for separate debug files, by build-id
    /// (`<dir>/.build-id/xx/rest.debug`) and by `.gnu_debuglink` (`<dir>/<binary dir>/`),
    /// both on the host and under the process's root (default `/usr/lib/debug`).
    pub debug_dirs: Vec<PathBuf>,
    /// Read perf map files (`/tmp/perf-PID.map`) for JIT code (default `true`).
    pub perf_maps: bool,
    /// Look up source file and line from DWARF (default `true`).
    pub code_info: bool,
    /// Report functions inlined at an address as frames of their own (default `true`).
    /// Needs `code_info`: without it no inlined frames are reported.
    pub inlined_fns: bool,
    /// Demangle Rust and C++ symbol names (default `true`).
    pub demangle: bool,
    /// Fetch debug files of stripped binaries from debuginfod servers (default: none).
    pub debuginfod: Option<crate::DebuginfodConfig>,
    /// How many symbolized addresses (per binary and file offset, or per kernel address)
    /// to remember; the memo is cleared when it would grow past this. 0 disables it.
    pub cache_entries: usize,
    /// A directory for copies that save later runs work (default: none, nothing is kept):
    /// `kernel/` holds a copy of `/proc/kallsyms` until the next boot, so the kernel is not
    /// paid to format it again (keyed by the boot id and the loaded modules, used only for
    /// the core kernel's and the modules' text); `debug/` holds decompressed copies of
    /// compressed debug files, by build-id, so their DWARF is mapped rather than inflated
    /// on every run (at most [`crate::DEBUG_COPIES_BYTES`], oldest deleted first).
    pub copy_dir: Option<PathBuf>,
    /// Whether the kernel's symbols come through the copy in [`Config::copy_dir`] (default
    /// `true`). The copy is a table that is mapped, not parsed onto the heap; an address
    /// it does not cover (a BPF program's) is named from the symbols of `/proc/kallsyms`
    /// outside it, which are kept (a few hundred).
    pub kernel_copy: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cache_bytes: DEFAULT_CACHE_BYTES,
            debug_dirs: vec![PathBuf::from(DEFAULT_DEBUG_DIR)],
            perf_maps: true,
            code_info: true,
            inlined_fns: true,
            demangle: true,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            debuginfod: None,
            copy_dir: None,
            kernel_copy: true,
        }
    }
}

impl Config {
    /// Sets [`Config::code_info`].
    #[must_use]
    pub fn with_code_info(mut self, enable: bool) -> Self {
        self.code_info = enable;
        self
    }

    /// Sets [`Config::inlined_fns`].
    #[must_use]
    pub fn with_inlined_fns(mut self, enable: bool) -> Self {
        self.inlined_fns = enable;
        self
    }

    /// Sets [`Config::demangle`].
    #[must_use]
    pub fn with_demangle(mut self, enable: bool) -> Self {
        self.demangle = enable;
        self
    }

    /// Sets [`Config::cache_bytes`].
    #[must_use]
    pub fn with_cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Sets [`Config::debug_dirs`].
    #[must_use]
    pub fn with_debug_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.debug_dirs = dirs;
        self
    }

    /// Sets [`Config::debuginfod`]; a configuration without URLs is none.
    #[must_use]
    pub fn with_debuginfod(mut self, debuginfod: Option<crate::DebuginfodConfig>) -> Self {
        self.debuginfod = debuginfod.filter(|d| !d.urls.is_empty());
        self
    }

    /// Sets [`Config::copy_dir`].
    #[must_use]
    pub fn with_copy_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.copy_dir = dir;
        self
    }

    /// Sets [`Config::kernel_copy`].
    #[must_use]
    pub fn with_kernel_copy(mut self, enable: bool) -> Self {
        self.kernel_copy = enable;
        self
    }

    /// Sets [`Config::cache_entries`].
    #[must_use]
    pub fn with_cache_entries(mut self, entries: usize) -> Self {
        self.cache_entries = entries;
        self
    }
}
