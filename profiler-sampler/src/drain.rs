//! Draining a generation of counts and stacks (see the protocol in the module above).

use std::collections::HashMap as StdHashMap;
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

use aya::maps::{HashMap, MapData, MapError, StackTraceMap};
use profiler_common::{
    CONTROL_MAP, COUNTS_MAPS, EFAULT, INFLIGHT_MAP, SAMPLE_FLAG_USER_STACK_CUSTOM,
    SAMPLE_FLAG_USER_TRUNCATED, STACKS_MAPS, SampleKey,
    unwind::{USER_STACKS_MAPS, UserStack},
};
use tracing::{debug, warn};

use super::{SampleError, Sampler};

/// One generation of maps.
pub(crate) struct Generation {
    pub(crate) counts: HashMap<MapData, SampleKey, u64>,
    pub(crate) stacks: StackTraceMap<MapData>,
    /// Stacks walked by the table unwinder (`SAMPLE_FLAG_USER_STACK_CUSTOM`).
    pub(crate) user_stacks: HashMap<MapData, u32, UserStack>,
}

/// What became of one of a sample's stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackStatus {
    /// The stack was recorded (it may still be empty).
    Ok,
    /// There is no such stack: a kernel thread has no user stack, a sample taken in user
    /// mode no kernel stack, or kernel stacks were not requested.
    Absent,
    /// The stack was lost (the kernel's negative errno: `-EEXIST` is a hash collision).
    Lost(i32),
    /// The stack is incomplete: the unwinder gave up before the outermost frame.
    Truncated,
}

/// Samples of one `(process, thread, stacks)` since the last drain: raw addresses only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawSample {
    /// Process id; 0 is the idle task.
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// The thread's name (`comm`).
    pub thread_comm: String,
    /// User stack, leaf first: the sampled instruction, then return addresses.
    pub user: Vec<u64>,
    /// What became of the user stack.
    pub user_status: StackStatus,
    /// Kernel stack, leaf first.
    pub kernel: Vec<u64>,
    /// What became of the kernel stack.
    pub kernel_status: StackStatus,
    /// Number of samples; for an off-CPU sample ([`RawSample::off_cpu`]), nanoseconds off
    /// CPU.
    pub count: u64,
    /// Time off CPU charged to the stack it blocked in (`--off-cpu`), not CPU samples.
    pub off_cpu: bool,
}

/// The longest the drain waits for programs still running in the old generation. They
/// run for microseconds; reaching this means a CPU is stuck, and we go on rather than hang.
const QUIESCE_TIMEOUT: Duration = Duration::from_millis(200);

fn comm_to_string(comm: &[u8]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

fn stack_of(
    stacks: &StackTraceMap<MapData>,
    cache: &mut StdHashMap<u32, Option<Vec<u64>>>,
    id: i32,
) -> (Vec<u64>, StackStatus) {
    if id < 0 {
        return if id == -EFAULT {
            (Vec::new(), StackStatus::Absent)
        } else {
            (Vec::new(), StackStatus::Lost(id))
        };
    }
    let id = id.unsigned_abs();
    let frames = cache.entry(id).or_insert_with(|| match stacks.get(&id, 0) {
        Ok(trace) => Some(trace.frames().iter().map(|f| f.ip).collect()),
        Err(e) => {
            debug!(id, error = %e, "stack id without a stack");
            None
        }
    });
    match frames {
        Some(f) => (f.clone(), StackStatus::Ok),
        None => (Vec::new(), StackStatus::Lost(-libc::ENOENT)),
    }
}

fn custom_stack_of(
    stacks: &HashMap<MapData, u32, UserStack>,
    cache: &mut StdHashMap<u32, Option<Vec<u64>>>,
    id: i32,
) -> (Vec<u64>, StackStatus) {
    if id < 0 {
        return (Vec::new(), StackStatus::Lost(id));
    }
    let id = id.unsigned_abs();
    let frames = cache.entry(id).or_insert_with(|| match stacks.get(&id, 0) {
        Ok(s) => {
            let len = (s.len as usize).min(s.frames.len());
            Some(s.frames[..len].to_vec())
        }
        Err(e) => {
            debug!(id, error = %e, "custom stack id without a stack");
            None
        }
    });
    match frames {
        Some(f) => (f.clone(), StackStatus::Ok),
        None => (Vec::new(), StackStatus::Lost(-libc::ENOENT)),
    }
}

/// How often exited processes' unwind tables are released.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

impl Sampler {
    /// Returns every sample counted since the last drain and starts a new generation.
    ///
    /// # Errors
    /// If a map cannot be read or written; the samples of the generation being drained
    /// are then lost, and that is reported rather than retried.
    pub fn drain(&mut self) -> Result<Vec<RawSample>, SampleError> {
        let old = (self.control_value.generation & 1) as usize;
        self.control_value.generation = (old as u32) ^ 1;
        self.control
            .set(0, self.control_value, 0)
            .map_err(|e| map_err(CONTROL_MAP, e))?;
        // Our store of the new generation must be visible before we read INFLIGHT.
        fence(Ordering::SeqCst);
        self.wait_quiescent()?;
        self.last_drain = Instant::now();
        // Read after the old generation is quiescent: every sample counted into it, and
        // every unrecorded one before now, is in these counters.
        let stats = self.stats()?;
        self.drain_unrecorded = stats.since(&self.drained_stats).unrecorded();
        self.drained_stats = stats;

        let generation = &mut self.generations[old];
        let mut entries = Vec::new();
        for item in generation.counts.iter() {
            match item {
                Ok(kv) => entries.push(kv),
                Err(e) => warn!(error = %e, "reading {}", COUNTS_MAPS[old]),
            }
        }
        for (key, _) in &entries {
            if let Err(e) = generation.counts.remove(key) {
                debug!(error = %e, "removing a drained key");
            }
        }

        let mut cache = StdHashMap::new();
        let mut custom_cache = StdHashMap::new();
        let mut samples = Vec::with_capacity(entries.len());
        for (key, count) in entries {
            let (user, mut user_status) = if key.flags & SAMPLE_FLAG_USER_STACK_CUSTOM != 0 {
                custom_stack_of(
                    &generation.user_stacks,
                    &mut custom_cache,
                    key.user_stack_id,
                )
            } else {
                stack_of(&generation.stacks, &mut cache, key.user_stack_id)
            };
            if key.flags & SAMPLE_FLAG_USER_TRUNCATED != 0 && user_status == StackStatus::Ok {
                user_status = StackStatus::Truncated;
            }
            let (kernel, kernel_status) =
                stack_of(&generation.stacks, &mut cache, key.kernel_stack_id);
            samples.push(RawSample {
                tgid: key.tgid,
                tid: key.tid,
                cgroup_id: key.cgroup_id,
                thread_comm: comm_to_string(&key.comm),
                user,
                user_status,
                kernel,
                kernel_status,
                count,
                off_cpu: key.flags & profiler_common::SAMPLE_FLAG_OFF_CPU != 0,
            });
        }

        // Clear every stack of the old generation, referenced or not (a stack whose count
        // insert failed is still in the map), so the next use of this generation starts
        // empty.
        let ids: Vec<u32> = generation
            .stacks
            .stack_ids()
            .filter_map(Result::ok)
            .collect();
        for id in ids {
            if let Err(e) = generation.stacks.remove(&id) {
                debug!(error = %e, map = STACKS_MAPS[old], "removing a drained stack");
            }
        }
        let ids: Vec<u32> = generation
            .user_stacks
            .keys()
            .filter_map(Result::ok)
            .collect();
        for id in ids {
            if let Err(e) = generation.user_stacks.remove(&id) {
                debug!(error = %e, map = USER_STACKS_MAPS[old], "removing a drained stack");
            }
        }

        // Processes first seen in this drain get their unwind tables (on the worker).
        if let Some(u) = &self.unwind {
            let mut seen: Vec<u32> = samples.iter().map(|s| s.tgid).collect();
            seen.sort_unstable();
            seen.dedup();
            u.ensure(seen, super::unwind::RECHECK);
            if self.last_sweep.elapsed() >= SWEEP_EVERY {
                u.sweep();
                self.last_sweep = Instant::now();
            }
        }
        Ok(samples)
    }

    /// Waits until no CPU runs the program in the old generation.
    fn wait_quiescent(&self) -> Result<(), SampleError> {
        let deadline = Instant::now() + QUIESCE_TIMEOUT;
        loop {
            let values = self
                .inflight
                .get(&0, 0)
                .map_err(|e| map_err(INFLIGHT_MAP, e))?;
            if values.iter().all(|&v| v == 0) {
                return Ok(());
            }
            if Instant::now() > deadline {
                warn!(
                    "a CPU still runs the sampler after {QUIESCE_TIMEOUT:?}; draining anyway \
                     (a few samples may be lost)"
                );
                return Ok(());
            }
            std::thread::yield_now();
        }
    }
}

fn map_err(name: &str, e: MapError) -> SampleError {
    SampleError::ebpf(format!("eBPF map `{name}`"), e)
}

#[cfg(test)]
mod tests {
    use super::comm_to_string;

    #[test]
    fn comm_stops_at_nul() {
        let mut c = [0u8; 16];
        c[..5].copy_from_slice(b"split");
        assert_eq!(comm_to_string(&c), "split");
        assert_eq!(comm_to_string(b"0123456789abcdef"), "0123456789abcdef");
    }
}
