//! Draining a generation of counts and stacks (see the protocol in the module above).

use std::collections::HashMap as StdHashMap;
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

use aya::maps::{HashMap, MapData, MapError, StackTraceMap};
use profiler_common::{
    CONTROL_MAP, COUNTS_MAPS, EFAULT, INFLIGHT_MAP, OFFCPU_PENDING_MAP, OffCpuPending,
    SAMPLE_FLAG_OFF_CPU, SAMPLE_FLAG_PYTHON_TRUNCATED, SAMPLE_FLAG_USER_STACK_CUSTOM,
    SAMPLE_FLAG_USER_TRUNCATED, STACKS_MAPS, SampleKey,
    unwind::{USER_STACKS_MAPS, UserStack},
};
use tracing::{debug, warn};

use super::{SampleError, Sampler};

/// One generation of maps.
pub(crate) struct Generation {
    pub(crate) counts: HashMap<MapData, SampleKey, u64>,
    /// A second fd of `counts`, for the batch drain ([`super::batch`]).
    pub(crate) counts_fd: std::os::fd::OwnedFd,
    pub(crate) stacks: StackTraceMap<MapData>,
    /// Stacks walked by the table unwinder (`SAMPLE_FLAG_USER_STACK_CUSTOM`).
    pub(crate) user_stacks: HashMap<MapData, u32, UserStack>,
    /// When the stack maps were last walked for stacks no drained key referred to.
    pub(crate) walked: Instant,
    /// A failed count insert was seen while this generation may have been the one being
    /// filled: its next drain walks its stack maps.
    pub(crate) walk_due: bool,
}

/// The longest a generation's stack maps go without a walk for unreferenced stacks, when
/// no drain gave a reason for one (see [`Sampler::drain`]).
const WALK_AT_LEAST_EVERY: Duration = Duration::from_secs(30);

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
    /// The thread's Python frames, leaf first, as `profiler_common::python::frame_word`s;
    /// empty when it was not running Python (or the stack was lost).
    pub python: Vec<u64>,
    /// The Python walk stopped at its depth bound: the outermost Python frames are
    /// missing.
    pub python_truncated: bool,
}

/// The longest the drain waits for programs still running in the old generation. They
/// run for microseconds; reaching this means a CPU is stuck, and we go on rather than hang.
const QUIESCE_TIMEOUT: Duration = Duration::from_millis(200);

fn comm_to_string(comm: &[u8]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// Which of a generation's stack maps a stack id points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum StackMap {
    /// `STACKS_<gen>`: the kernel's stack helpers (kernel stacks, frame-pointer user stacks).
    Trace,
    /// `USTACKS_<gen>`: the table unwinder's ([`SAMPLE_FLAG_USER_STACK_CUSTOM`]).
    Custom,
}

/// A stack in the maps of one generation: `(epoch, map, id)`.
type StackRef = (u32, StackMap, u32);

/// Copies of stacks of drained generations that off-CPU keys may still refer to.
///
/// An off-CPU key's stacks are taken when the thread leaves the CPU, in that generation's
/// maps ([`SampleKey::epoch`]); its time is counted when the thread comes back, in the
/// generation current then, which may be drains later (a thread asleep for a minute).
/// Before a drain clears the old generation's stack maps it copies here every stack that
/// a thread still off CPU ([`profiler_common::OFFCPU_PENDING_MAP`]) or a key already
/// counted in the new generation refers to, and forgets the copies nothing refers to any
/// more. Why that is enough: the program counts a key before it deletes the pending
/// entry, and after the flip no entry of the old generation is made, so every interval
/// of the old generation is, at any moment, pending or counted in the new generation (or
/// in the old one, drained already). Pending entries are read first and counted keys
/// second, so one that moves from the first to the second in between is seen at least
/// once. Entries evicted from the full LRU map are never counted.
///
/// This costs a read of the pending map and of the new count map per drain, and memory
/// for the stacks of threads blocked across drains; the simpler alternative, keeping each
/// generation's stack maps one drain longer, still loses any wait longer than a drain.
#[derive(Debug, Default)]
pub(crate) struct KeptStacks {
    stacks: StdHashMap<StackRef, Vec<u64>>,
}

impl KeptStacks {
    /// Number of stacks kept.
    pub(crate) fn len(&self) -> usize {
        self.stacks.len()
    }
}

/// The stacks a drain resolves keys against: the old generation's maps for keys of its
/// epoch, [`KeptStacks`] for older ones.
struct Stacks<'a> {
    generation: &'a Generation,
    epoch: u32,
    kept: &'a KeptStacks,
    cache: StdHashMap<StackRef, Option<Vec<u64>>>,
}

impl Stacks<'_> {
    /// The frames of stack `id` (a negative errno when the program recorded none).
    fn get(&mut self, epoch: u32, map: StackMap, id: i32) -> (Vec<u64>, StackStatus) {
        if id < 0 {
            return if id == -EFAULT && map == StackMap::Trace {
                (Vec::new(), StackStatus::Absent)
            } else {
                (Vec::new(), StackStatus::Lost(id))
            };
        }
        let r = (epoch, map, id.unsigned_abs());
        let frames = if epoch == self.epoch {
            let generation = self.generation;
            self.cache
                .entry(r)
                .or_insert_with(|| read_stack(generation, map, r.2))
                .as_ref()
        } else {
            let found = self.kept.stacks.get(&r);
            if found.is_none() {
                debug!(epoch, id, "off-CPU stack of a drained generation not kept");
            }
            found
        };
        match frames {
            Some(f) => (f.clone(), StackStatus::Ok),
            None => (Vec::new(), StackStatus::Lost(-libc::ENOENT)),
        }
    }
}

/// Reads stack `id` of `map` in `generation`, leaf first.
fn read_stack(generation: &Generation, map: StackMap, id: u32) -> Option<Vec<u64>> {
    match map {
        StackMap::Trace => match generation.stacks.get(&id, 0) {
            Ok(trace) => Some(trace.frames().iter().map(|f| f.ip).collect()),
            Err(e) => {
                debug!(id, error = %e, "stack id without a stack");
                None
            }
        },
        StackMap::Custom => match generation.user_stacks.get(&id, 0) {
            Ok(s) => {
                let len = (s.len as usize).min(s.frames.len());
                Some(s.frames[..len].to_vec())
            }
            Err(e) => {
                debug!(id, error = %e, "custom stack id without a stack");
                None
            }
        },
    }
}

/// The stacks `key` refers to, with the generation they are in.
fn stack_refs(key: &SampleKey) -> impl Iterator<Item = StackRef> {
    let user = if key.flags & SAMPLE_FLAG_USER_STACK_CUSTOM != 0 {
        StackMap::Custom
    } else {
        StackMap::Trace
    };
    [
        (user, key.user_stack_id),
        (StackMap::Trace, key.kernel_stack_id),
        (StackMap::Custom, key.python_stack_id),
    ]
    .into_iter()
    .filter(|&(_, id)| id >= 0)
    .map(move |(map, id)| (key.epoch, map, id.unsigned_abs()))
}

/// Reads and clears a generation's count map: in a few batch calls where the kernel has
/// them, else key by key (three syscalls a key).
fn take_counts(generation: &mut Generation, name: &str) -> Vec<(SampleKey, u64)> {
    use std::os::fd::AsFd;
    let mut entries = Vec::new();
    match super::batch::take_all(generation.counts_fd.as_fd(), &mut entries) {
        Ok(true) => return entries,
        Ok(false) => {}
        Err(e) => {
            // The failed call's entries are lost; read what is left key by key.
            warn!(error = %e, "batch-reading {name}");
        }
    }
    let mut rest = Vec::new();
    for item in generation.counts.iter() {
        match item {
            Ok(kv) => rest.push(kv),
            Err(e) => warn!(error = %e, "reading {name}"),
        }
    }
    for (key, _) in &rest {
        if let Err(e) = generation.counts.remove(key) {
            debug!(error = %e, "removing a drained key");
        }
    }
    entries.extend(rest);
    entries
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
        let old_epoch = self.control_value.generation;
        let old = (old_epoch & 1) as usize;
        self.control_value.generation = old_epoch.wrapping_add(1);
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
        let delta = stats.since(&self.drained_stats);
        self.drain_unrecorded = delta.unrecorded();
        self.drained_stats = stats;
        // The counters are read after the switch to the new generation, so a failure
        // counted now happened in the old generation or early in the new one: both are due
        // a walk (the new one at its own drain).
        if delta.get(profiler_common::Stat::CountsFull) > 0 {
            for g in &mut self.generations {
                g.walk_due = true;
            }
        }

        let generation = &mut self.generations[old];
        let entries = take_counts(generation, COUNTS_MAPS[old]);

        let mut stacks = Stacks {
            generation: &*generation,
            epoch: old_epoch,
            kept: &self.kept_stacks,
            cache: StdHashMap::new(),
        };
        let mut samples = Vec::with_capacity(entries.len());
        for (key, count) in entries {
            let user_map = if key.flags & SAMPLE_FLAG_USER_STACK_CUSTOM != 0 {
                StackMap::Custom
            } else {
                StackMap::Trace
            };
            let (user, mut user_status) = stacks.get(key.epoch, user_map, key.user_stack_id);
            if key.flags & SAMPLE_FLAG_USER_TRUNCATED != 0 && user_status == StackStatus::Ok {
                user_status = StackStatus::Truncated;
            }
            let (kernel, kernel_status) =
                stacks.get(key.epoch, StackMap::Trace, key.kernel_stack_id);
            let python = if key.python_stack_id >= 0 {
                stacks
                    .get(key.epoch, StackMap::Custom, key.python_stack_id)
                    .0
            } else {
                Vec::new()
            };
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
                off_cpu: key.flags & SAMPLE_FLAG_OFF_CPU != 0,
                python_truncated: key.flags & SAMPLE_FLAG_PYTHON_TRUNCATED != 0
                    && !python.is_empty(),
                python,
            });
        }
        // The stacks read are known to be in the maps: they are deleted by id below,
        // without walking the map for them.
        let read: Vec<(StackMap, u32)> = stacks
            .cache
            .iter()
            .filter(|(_, frames)| frames.is_some())
            .map(|(&(_, map, id), _)| (map, id))
            .collect();
        drop(stacks);
        if let Some(pending) = &self.off_cpu_pending {
            let new_counts = &self.generations[old ^ 1].counts;
            keep_off_cpu_stacks(
                &mut self.kept_stacks,
                &self.generations[old],
                old_epoch,
                pending,
                new_counts,
            );
        }
        let generation = &mut self.generations[old];

        // Clear every stack of the old generation, referenced or not, so the next use of
        // this generation starts empty: the ones read by id, then whatever a walk of the
        // maps still finds. Only a sample whose count insert failed (`CountsFull`) or an
        // off-CPU wait leaves a stack no drained key refers to, so the walk runs when this
        // generation may hold one of those (`walk_due`, or off-CPU on), and at least every
        // `WALK_AT_LEAST_EVERY` anyway: an empty map's walk looks at each of its buckets
        // (16,384 by default), a fifth of a quiet recording's CPU between start-up and
        // output.
        let walk = self.off_cpu_pending.is_some()
            || generation.walk_due
            || generation.walked.elapsed() >= WALK_AT_LEAST_EVERY;
        for &(map, id) in &read {
            let removed = match map {
                StackMap::Trace => generation.stacks.remove(&id),
                StackMap::Custom => generation.user_stacks.remove(&id),
            };
            if let Err(e) = removed {
                debug!(error = %e, id, "removing a drained stack");
            }
        }
        if walk {
            generation.walked = Instant::now();
            generation.walk_due = false;
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
        }

        // Processes first seen in this drain get their unwind tables (on the worker),
        // once they have had enough samples (`UnwindTables::with_min_samples`).
        if let Some(u) = &self.unwind {
            let mut seen: StdHashMap<u32, u64> = StdHashMap::new();
            for s in &samples {
                // An off-CPU sample's count is nanoseconds: it counts as one.
                *seen.entry(s.tgid).or_default() += if s.off_cpu { 1 } else { s.count };
            }
            u.sampled(seen.into_iter().collect(), super::unwind::RECHECK);
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

/// Copies the stacks of generation `epoch` (about to be cleared) that threads still off CPU
/// or keys counted in the new generation refer to into `kept`, and forgets kept stacks
/// nothing refers to any more (see [`KeptStacks`]).
fn keep_off_cpu_stacks(
    kept: &mut KeptStacks,
    generation: &Generation,
    epoch: u32,
    pending: &HashMap<MapData, u32, OffCpuPending>,
    new_counts: &HashMap<MapData, SampleKey, u64>,
) {
    let current = epoch.wrapping_add(1);
    let mut refs: std::collections::HashSet<StackRef> = std::collections::HashSet::new();
    // Pending first, counted second: see `KeptStacks` for why the order matters.
    for item in pending.iter() {
        match item {
            Ok((_, p)) if p.key.epoch != current => refs.extend(stack_refs(&p.key)),
            Ok(_) => {}
            Err(e) => debug!(error = %e, "reading {OFFCPU_PENDING_MAP}"),
        }
    }
    for item in new_counts.keys() {
        match item {
            Ok(key) if key.flags & SAMPLE_FLAG_OFF_CPU != 0 && key.epoch != current => {
                refs.extend(stack_refs(&key));
            }
            Ok(_) => {}
            Err(e) => debug!(error = %e, "reading the current count map"),
        }
    }
    kept.stacks.retain(|r, _| refs.contains(r));
    for r in refs {
        if r.0 == epoch
            && !kept.stacks.contains_key(&r)
            && let Some(frames) = read_stack(generation, r.1, r.2)
        {
            kept.stacks.insert(r, frames);
        }
    }
    debug!(kept = kept.len(), "off-CPU stacks kept across the drain");
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
