//! Stage 2, **aggregate** (and the call into stage 3, symbolize): turns the raw samples of
//! each drain into a [`Profile`] with names and labels.
//!
//! Symbolization happens here, at every drain, because user addresses only mean something
//! while the process's mappings can still be read. Each distinct stack of a drain is
//! symbolized once, however many threads share it.

use std::collections::HashMap;
use std::sync::Arc;

use profiler_model::{Frame, FrameKind, Labels, Profile, ProfileMeta, keys};
use symbolizer::Symbolizer;

use crate::sample::{RawSample, StackStatus};

/// Names of processes, read from `/proc/PID/comm` the first time each is seen.
#[derive(Debug, Default)]
pub struct ProcessNames {
    names: HashMap<u32, Arc<str>>,
}

impl ProcessNames {
    /// The process's name: its `comm`, or when it has already exited, the name of the
    /// sampled thread (`fallback`). The idle task (pid 0) is `swapper`.
    pub fn name(&mut self, pid: u32, fallback: &str) -> Arc<str> {
        if pid == 0 {
            return Arc::from("swapper");
        }
        if let Some(n) = self.names.get(&pid) {
            return n.clone();
        }
        let name: Arc<str> = match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            Ok(s) => Arc::from(s.trim_end_matches('\n')),
            // Gone already: don't cache the guess, a later sample of the main thread
            // may have a better one.
            Err(_) => return Arc::from(fallback),
        };
        self.names.insert(pid, name.clone());
        name
    }

    /// Forgets a process (it exited; its PID may be reused).
    pub fn forget(&mut self, pid: u32) {
        self.names.remove(&pid);
    }
}

/// Counters of what aggregation saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AggregateStats {
    /// Samples added.
    pub samples: u64,
    /// Samples whose user or kernel stack was lost (collision, full map).
    pub stacks_lost: u64,
    /// Samples whose user stack was truncated.
    pub stacks_truncated: u64,
}

/// Builds a profile out of drains.
pub struct Aggregator {
    symbolizer: Symbolizer,
    names: ProcessNames,
    profile: Profile,
    kernel: bool,
    stats: AggregateStats,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn lost_frame(errno: i32, kind: FrameKind) -> Frame {
    let what = if errno == -profiler_common::EEXIST {
        "[lost: stack map collision]"
    } else {
        "[lost: stack not recorded]"
    };
    Frame::named(what, kind)
}

impl Aggregator {
    /// A new aggregator; `kernel` says whether kernel frames are kept.
    #[must_use]
    pub fn new(symbolizer: Symbolizer, meta: ProfileMeta, kernel: bool) -> Self {
        Aggregator {
            symbolizer,
            names: ProcessNames::default(),
            profile: Profile::new(meta),
            kernel,
            stats: AggregateStats::default(),
        }
    }

    /// Symbolizes a drain and adds it to the profile.
    pub fn add(&mut self, samples: &[RawSample]) {
        // (pid, leaf-first addresses) -> root-first frames, for this drain only.
        let mut user_cache: HashMap<(u32, &[u64]), Arc<[Frame]>> = HashMap::new();
        let mut kernel_cache: HashMap<&[u64], Arc<[Frame]>> = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        for s in samples {
            stack.clear();
            match s.user_status {
                StackStatus::Ok | StackStatus::Truncated => {
                    if s.user_status == StackStatus::Truncated {
                        self.stats.stacks_truncated += s.count;
                        stack.push(Frame::named("[truncated]", FrameKind::User));
                    }
                    let frames = user_cache
                        .entry((s.tgid, s.user.as_slice()))
                        .or_insert_with(|| {
                            self.symbolizer.symbolize_user_stack(s.tgid, &s.user).into()
                        });
                    stack.extend(frames.iter().cloned());
                }
                StackStatus::Absent => {}
                StackStatus::Lost(errno) => {
                    self.stats.stacks_lost += s.count;
                    stack.push(lost_frame(errno, FrameKind::User));
                }
            }
            if self.kernel {
                match s.kernel_status {
                    StackStatus::Ok | StackStatus::Truncated => {
                        let frames = kernel_cache.entry(s.kernel.as_slice()).or_insert_with(|| {
                            self.symbolizer.symbolize_kernel_stack(&s.kernel).into()
                        });
                        stack.extend(frames.iter().cloned());
                    }
                    StackStatus::Absent => {}
                    StackStatus::Lost(errno) => {
                        self.stats.stacks_lost += s.count;
                        stack.push(lost_frame(errno, FrameKind::Kernel));
                    }
                }
            }
            let comm = self.names.name(s.tgid, &s.thread_comm);
            let labels = Labels::new()
                .with(keys::PID, s.tgid.to_string())
                .with(keys::TID, s.tid.to_string())
                .with(keys::COMM, comm)
                .with(keys::THREAD, s.thread_comm.as_str());
            self.profile.add(&labels, &stack, s.count);
            self.stats.samples += s.count;
        }
    }

    /// The profile so far.
    #[must_use]
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The profile's metadata, to update as the capture goes on.
    pub fn meta_mut(&mut self) -> &mut ProfileMeta {
        &mut self.profile.meta
    }

    /// What aggregation saw.
    #[must_use]
    pub fn stats(&self) -> AggregateStats {
        self.stats
    }

    /// The symbolizer, for its statistics.
    #[must_use]
    pub fn symbolizer(&self) -> &Symbolizer {
        &self.symbolizer
    }

    /// Ends aggregation, returning the profile.
    #[must_use]
    pub fn into_profile(self) -> Profile {
        self.profile
    }
}
