//! Ember's agent: the pipeline **sample → aggregate → symbolize → store → query →
//! render/export** as a library, driven by the `ember` binary, the tests and the benches.
//!
//! - [`sample`] loads the eBPF program and drains its maps ([`sample::RawSample`]s).
//! - [`aggregate`] symbolizes each drain (through the `symbolizer` crate) into a
//!   [`profiler_model::Profile`].
//! - [`record`] is `ember record`: one capture written as folded stacks or an SVG.
//! - [`cli`] holds the command-line types.

pub mod aggregate;
pub mod cli;
pub mod record;
pub mod sample;
pub mod store;
