//! Counters describing what the symbolizer did, for the agent's own metrics.
//!
//! All counters but the `binary_cache_bytes`/`binary_cache_entries` gauges only grow over a [`Symbolizer`](crate::Symbolizer)'s lifetime; take
//! differences between two [`Stats`] snapshots for rates.

/// A snapshot of the symbolizer's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Distinct binaries opened and handed to blazesym (each is parsed once).
    pub binaries_opened: u64,
    /// Binaries found under a new device and inode whose build-id was already known, so the
    /// already parsed copy was reused (the same library in two containers, say).
    pub binaries_shared: u64,
    /// Executable mappings whose file could not be opened, or was not ELF.
    pub binary_open_failures: u64,
    /// User addresses answered from the memo.
    pub offset_cache_hits: u64,
    /// User addresses that had to be looked up in a binary.
    pub offset_cache_misses: u64,
    /// Kernel addresses answered from the memo.
    pub kernel_cache_hits: u64,
    /// Kernel addresses that had to be looked up in kallsyms.
    pub kernel_cache_misses: u64,
    /// Times the memo was full and was cleared.
    pub cache_clears: u64,
    /// Frames returned without a function name (`module+0x..` or `[unknown]`).
    pub frames_unnamed: u64,
    /// Processes found gone (no `/proc/PID`, or no address space left) when their maps
    /// were needed; counted once per process until it is seen alive again.
    pub processes_gone: u64,
    /// Reads of `/proc/PID/maps`, successful or not.
    pub maps_reads: u64,
    /// Malformed `/proc/PID/maps` lines that were skipped.
    pub maps_lines_skipped: u64,
    /// Binary cache: mappings served by an already cached binary (same device and inode,
    /// or same build-id).
    pub binary_cache_hits: u64,
    /// Binary cache: binaries that had to be opened and added.
    pub binary_cache_misses: u64,
    /// Binary cache: binaries evicted to stay within [`Config::cache_bytes`].
    ///
    /// [`Config::cache_bytes`]: crate::Config::cache_bytes
    pub binary_cache_evictions: u64,
    /// Binary cache: entries dropped because the file changed on disk in place.
    pub binary_cache_stale: u64,
    /// Binary cache: estimated bytes held now (a gauge, not a counter).
    pub binary_cache_bytes: u64,
    /// Binary cache: binaries held now (a gauge).
    pub binary_cache_entries: u64,
    /// Separate debug files found and used.
    pub debug_files_found: u64,
    /// Go function tables (`.gopclntab`) loaded for binaries without symbols.
    pub go_tables_loaded: u64,
    /// Checks of perf map files (JIT symbols): each looks the file up and, only if it
    /// changed since the last check, reads it (rate-limited per process).
    pub perf_map_reads: u64,
    /// Perf map files actually read and parsed.
    pub perf_map_loads: u64,
    /// Process captures adopted ([`Symbolizer::add_capture`]).
    ///
    /// [`Symbolizer::add_capture`]: crate::Symbolizer::add_capture
    pub captures_adopted: u64,
    /// Mappings added from outside a process's maps (the eBPF unwinder's file lookup), for
    /// processes that exited before a capture saw them
    /// ([`Symbolizer::add_known_mappings`]).
    ///
    /// [`Symbolizer::add_known_mappings`]: crate::Symbolizer::add_known_mappings
    pub known_mappings_added: u64,
    /// Malformed perf map lines that were skipped.
    pub perf_map_lines_skipped: u64,
    /// Files opened on behalf of a process (perf maps, debug files, binaries under its
    /// root) that were refused, by reason: a symlink, not a regular file (a FIFO), another
    /// user's, over the size cap, too slow to read. Each process's first refusal is also
    /// logged as a warning with the path and reason.
    pub files_refused: crate::Refused,
    /// The debuginfod client's counters (all zero without one).
    pub debuginfod: crate::DebuginfodStats,
}
