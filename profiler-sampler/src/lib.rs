//! Stage 1, **sample**: the only part of Ember that touches the kernel.
//!
//! [`Sampler::start`] loads the eBPF object, sizes its maps, attaches the `perf_event`
//! program to a software `cpu-clock` event on every online CPU and, for targeted runs, the
//! fork tracepoint. [`Sampler::drain`] then hands out the samples counted since the last
//! drain as [`RawSample`]s: raw addresses, no names. Everything downstream works on plain
//! values and can be tested without privileges.
//!
//! # The drain protocol
//!
//! The program counts into one of two generations of maps. A drain flips
//! `Control::generation`, waits until no CPU is still running the program in the old
//! generation (the per-CPU `INFLIGHT` counts, raised and lowered with full-barrier atomics
//! around each run), and only then reads and clears the old generation. A sample is thus in
//! exactly one drain: none is lost to the race between reading and clearing, none is read
//! twice.

mod batch;
pub mod btf;
mod drain;
mod error;
mod events;
mod loader;
mod losses;
mod no_btf;
pub mod probe;
pub mod procinfo;
mod python;
mod unwind;

pub use drain::{RawSample, StackStatus};
pub use error::SampleError;
pub use events::{CaptureFeed, ProcEvents};
pub use loader::{OffCpuConfig, Sampler, SamplerConfig, Target};
pub use losses::{LossLog, UNRECORDED};
pub use python::{PythonFrame, PythonProcs};
pub use unwind::{
    DEFAULT_TABLE_MEM, MAX_TABLE_MEM, TableMemTooLarge, UnwindConfig, UnwindGauges,
    UnwindRequester, UnwindStats, UnwindTables, UnwindWorker, UnwinderMode, check_unwind_table_mem,
    unwind_table_mem_cap,
};

/// Loss and activity counters summed over all CPUs, as the program counted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SamplerStats {
    /// Indexed by `profiler_common::Stat`.
    pub counters: [u64; profiler_common::Stat::COUNT as usize],
}

impl SamplerStats {
    /// The value of one counter.
    #[must_use]
    pub fn get(&self, stat: profiler_common::Stat) -> u64 {
        self.counters[stat as usize]
    }

    /// Samples lost in whole or in part (a missing stack counts as lost).
    #[must_use]
    pub fn lost(&self) -> u64 {
        profiler_common::Stat::ALL
            .iter()
            .filter(|s| s.is_loss())
            .map(|&s| self.get(s))
            .sum()
    }
}
