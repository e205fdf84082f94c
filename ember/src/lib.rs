//! Ember's agent: the pipeline **sample → aggregate → symbolize → store → query →
//! render/export** as a library, driven by the `ember` binary, the tests and the benches.
//!
//! - [`profiler_sampler`] loads the eBPF program and drains its maps
//!   ([`profiler_sampler::RawSample`]s).
//! - [`aggregate`] symbolizes each drain (through the `symbolizer` crate) into a
//!   [`profiler_model::Profile`].
//! - [`record`] is `ember record`: one capture written as folded stacks, an SVG, pprof or
//!   speedscope.
//! - [`agent`] is `ember agent`: continuous sampling into windows in the store
//!   ([`profiler_store`], on disk with SQLite and zstd, with retention).
//! - [`export`] is `ember export`: a stored time range as folded, pprof, SVG or speedscope.
//! - [`output`] is where `record` and `export` write: a file or stdout, in a format from
//!   `--format` or the file name, through `profiler-render` (the writer the API uses).
//! - [`diff`] is `ember diff`: two profiles compared, with regression gates for CI.
//! - [`doctor`] is `ember doctor`: what the node offers and what Ember will use.
//! - [`cli`] holds the command-line types.

pub mod agent;
pub mod aggregate;
pub mod cli;
pub mod diff;
pub mod doctor;
pub mod export;
pub mod launch;
pub mod output;
pub(crate) mod pipeline;
pub mod record;
pub mod signals;

pub use profiler_model::time::now_unix_ns;
