//! Ember's symbolize stage: raw stack addresses from the sampler in, named [`Frame`]s out.
//!
//! The sampler reports, per sample, a process id and two stacks of raw addresses, **leaf
//! first**: a user stack (virtual addresses in that process) and a kernel stack. A
//! [`Symbolizer`] turns each into frames ordered **root first**, the order of
//! [`profiler_model`]'s stacks, expanding inlined functions into frames of their own
//! (`inlined: true`, leafward of the function they were inlined into) and filling in
//! source file and line from DWARF where the binary has it. Names are demangled (Rust and
//! C++, by blazesym). Nothing is dropped and nothing fails: an address that cannot be
//! named becomes `basename(module)+0x<file offset>`, or `[unknown]` when no file backs it,
//! and is counted in [`Stats::frames_unnamed`].
//!
//! # How user addresses are resolved
//!
//! blazesym has a process source that does all of this per call, but it re-reads
//! `/proc/PID/maps` on every call and needs the process alive. Profiles see the same few
//! binaries in thousands of samples across many, often short-lived, processes, so this
//! crate splits the work so each part is done once:
//!
//! 1. `/proc/PID/maps` is read by us and cached per process (`maps.rs`, `process.rs`). It
//!    is re-read at most once per stack, when an address falls outside every known
//!    mapping (a library loaded since), counting [`Stats::maps_reads`]. The cache outlives
//!    the process, until [`Symbolizer::forget_process`].
//! 2. An address becomes *(mapping, file offset)*, `addr - start + pgoff`. Only executable
//!    file mappings (and the vDSO) are looked up; anything else is unnamed at once.
//! 3. The mapped file is identified by the device and inode from the maps line, opened
//!    once (via `/proc/PID/map_files/…`, else `/proc/PID/root/<path>`, so a process in a
//!    container is symbolized from its own files), deduplicated by GNU build-id, and kept
//!    open in a byte-bounded LRU cache ([`Config::cache_bytes`], `binary.rs`, which
//!    documents the byte estimate). Each cached binary has its own blazesym resolvers
//!    (of the binary and of its debug file), which parse it from the stable path
//!    `/proc/self/fd/<fd>` and are asked for the virtual address of the file offset;
//!    evicting the binary frees what blazesym parsed. A binary rewritten in place is
//!    noticed (size, mtime) and dropped, never served stale.
//! 4. Names come, in order, from a separate debug file found by build-id or
//!    `.gnu_debuglink` under [`Config::debug_dirs`] (on the host and under the process's
//!    root; `debug.rs`), from the binary's own symbols and DWARF, and for Go binaries
//!    without a symbol table from `.gopclntab` (`gopclntab.rs`). Code in anonymous
//!    executable mappings (JITs) is named from the process's perf map, `/tmp/perf-PID.map`
//!    (`perfmap.rs`).
//!
//! Every file opened on behalf of a process (its perf map, debug files under its root or
//! next to its binary, a binary under `/proc/PID/root`) is chosen by that process's user,
//! and Ember runs as root; such files are opened through one module, `untrusted.rs`:
//! without following symlinks, non-blocking, only regular files of the process's user or
//! root, with a size cap, off the drain thread with a time bound (perf maps on one worker
//! thread; binaries, their debug files and Go tables on another, `binary.rs`). What is
//! refused, or still being read when the wait is over, is counted in
//! [`Stats::files_refused`] and logged once per process.
//! 5. For a stripped binary (no symbol table, no local debug file) whose frames come out
//!    unnamed, the debug file is fetched by build-id from debuginfod servers when
//!    [`Config::debuginfod`] names any (`debuginfod/`): in the background, with a disk
//!    cache; the binary is named from the file once it arrives, and frames already in a
//!    profile are renamed by [`Symbolizer::rename_fetched`].
//! 6. Results are memoized per *(binary, file offset)* in a bounded memo that is cleared
//!    when full (`memo.rs`, [`Config::cache_entries`]).
//!
//! Return addresses (every address but the leaf) are looked up at `addr - 1`, so a call
//! at the very end of a function is attributed to its caller rather than to whatever
//! follows. The [`Location::File`] of a frame holds the file offset of the address
//! actually looked up, so `offset` is that of `return address - 1` for non-leaf frames.
//!
//! Kernel addresses go to blazesym's kallsyms source, loaded on first use (`kernel.rs`).
//!
//! # Limits
//!
//! The [`Symbolizer`] is neither `Send` nor `Sync` (blazesym's is not). Each cached
//! binary holds two or three file descriptors (ours, blazesym's, a debug file), and a
//! capture thread's [`CapturedFiles`] up to [`CapturedFiles::MOST`] more; raise
//! `RLIMIT_NOFILE` accordingly or lower [`Config::cache_bytes`]. A process that exits
//! before its first stack is symbolized is `[unknown]`: its mappings are gone.
//!
//! [`Frame`]: profiler_model::Frame
//! [`Location::File`]: profiler_model::Location::File

mod binary;
mod capture;
mod config;
mod copies;
mod debug;
mod debuginfod;
mod gopclntab;
mod kernel;
mod kernel_copy;
mod ksyms;
mod maps;
mod memo;
mod names;
mod pages;
mod perfmap;
mod process;
pub mod procfs;
mod resymbolize;
mod stats;
mod symbolizer;
#[cfg(test)]
mod test_support;
mod untrusted;

use std::error::Error;
use std::fmt;
use std::sync::Arc;

pub use capture::{CaptureError, CapturedFiles, ProcessCapture};
pub use config::{Config, DEFAULT_CACHE_BYTES, DEFAULT_CACHE_ENTRIES, DEFAULT_DEBUG_DIR};
pub use copies::DEBUG_COPIES_BYTES;
pub use debuginfod::{
    DEBUGINFOD_URLS, DEFAULT_DEBUGINFOD_CACHE_BYTES, DEFAULT_DEBUGINFOD_CONCURRENCY,
    DEFAULT_DEBUGINFOD_NEGATIVE_TTL, DEFAULT_DEBUGINFOD_TIMEOUT, DebuginfodConfig, DebuginfodStats,
    WaitReport,
};
pub use maps::{Backing, FileKey, Mapping, parse_line as parse_maps_line};
pub use pages::ReleasedPages;
pub use resymbolize::Resymbolizer;
pub use stats::Stats;
pub use symbolizer::{KnownMapping, Symbolizer};
pub use untrusted::{ProcessRoot, Refused, RootFiles};

/// The model's name for a frame nothing is known about, `[unknown]`.
fn unknown_name() -> Arc<str> {
    profiler_model::Frame::unknown(profiler_model::FrameKind::User).name
}

/// Displays an error with its sources, `outer: inner: innermost`, for log fields.
struct ErrorChain<'a>(&'a dyn Error);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}
