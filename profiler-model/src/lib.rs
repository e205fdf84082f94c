//! Ember's profile data model: what a CPU profile *is*, independent of how it was sampled,
//! stored or rendered. It is no stage of the pipeline (sample → aggregate → symbolize →
//! store → query → render/export) but the values every stage after sample passes on.
//!
//! A [`Profile`] is a multiset of stacks: each distinct `(labels, stack)` pair carries a
//! sample count. Stacks are sequences of [`Frame`]s ordered **root first** (outermost
//! caller first, the sampled instruction last), the order of folded files. Frames and label
//! sets are interned once per profile, so a profile of 50,000 stacks over a few thousand
//! functions stays compact, and merging profiles is a re-interning pass.
//!
//! Every frame keeps its normalized [`Location`] (a build-id and file offset, or a kernel
//! address) beside its name, so a profile can be re-symbolized later.
//!
//! [`Format`] names the formats once (from a name, a path or a file's content; content
//! type, extension). Each has its own module: [`folded`] (what inferno and flamegraph.pl
//! read), [`pprof`] (gzip-compressed `profile.proto`, what `go tool pprof` reads),
//! [`speedscope`] (speedscope's JSON) and [`json`] (Ember's own, the API's); the SVG
//! flame graph and the one dispatch from a [`Format`] to its writer are
//! `profiler-render`'s.
//!
//! [`analysis`] answers questions of profiles (top functions, differences); [`time`] is
//! the one grammar of times and durations every command and the API read; [`hash`] the
//! one stable hash.

pub mod analysis;
pub mod filter;
pub mod folded;
mod format;
mod frame;
pub mod hash;
pub mod human;
pub mod json;
mod labels;
pub mod pprof;
mod profile;
pub mod speedscope;
pub mod time;

pub use filter::{LabelFilter, LabelFilterError};
pub use format::{Format, UnknownFormat, first_binary_byte};
pub use frame::{Frame, FrameKind, INLINED_SUFFIX, KERNEL_SUFFIX, Location, PYTHON_SUFFIX, Suffix};
pub use labels::{Labels, keys};
pub use profile::{FrameId, LabelsId, Profile, ProfileKind, ProfileMeta, StackRef};
