//! Ember's agent: the pipeline **sample → aggregate → symbolize → store → query →
//! render/export** as a library, driven by the `ember` binary, the tests and the benches.
//!
//! - [`sample`] loads the eBPF program and drains its maps ([`sample::RawSample`]s).
//! - [`aggregate`] symbolizes each drain (through the `symbolizer` crate) into a
//!   [`profiler_model::Profile`].
//! - [`record`] is `ember record`: one capture written as folded stacks or an SVG.
//! - [`agent`] is `ember agent`: continuous sampling into windows in the store
//!   ([`profiler_store`], on disk with SQLite and zstd, with retention).
//! - [`export`] is `ember export`: a stored time range as folded, pprof, SVG or speedscope,
//!   and the writer of those formats `record` shares.
//! - [`diff`] is `ember diff`: two profiles compared, with regression gates for CI.
//! - [`cli`] holds the command-line types.

pub mod agent;
pub mod aggregate;
pub mod cli;
pub mod diff;
pub mod export;
pub mod procinfo;
pub mod record;
pub mod sample;
pub mod signals;

/// Now, in nanoseconds since the Unix epoch (0 if the clock is before it).
#[must_use]
pub fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
