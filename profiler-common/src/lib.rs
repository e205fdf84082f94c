//! Types shared by Ember's eBPF sampler (`profiler-ebpf`) and its userspace agent: the
//! boundary of stage 1, **sample** (sample → aggregate → symbolize → store → query →
//! render/export), between the kernel side and `profiler-sampler`.
//!
//! Everything that crosses the kernel/userspace boundary is defined here once: the map
//! names, the map keys and values, the control block and the loss counters. Every type is
//! `#[repr(C)]`, `Copy`, has explicit padding and no `bool`, so both sides agree on the
//! layout byte for byte; the `user` feature adds `aya::Pod` for the agent.
//!
//! # How the maps fit together
//!
//! The program aggregates in the kernel: each sample increments a count in
//! [`COUNTS_MAPS`]`[generation]` keyed by [`SampleKey`], whose stack ids point into
//! [`STACKS_MAPS`]`[generation]`. The agent drains one generation while the program fills
//! the other: it flips [`Control::generation`], waits until every CPU's [`INFLIGHT_MAP`] count
//! shows no program still running in the old generation, then reads and clears the old
//! generation's counts and stacks. Nothing is lost and nothing is counted twice.
//!
//! [`Control::generation`] counts drains; its parity picks the maps. Off-CPU keys (see
//! [`OFFCPU_PROGRAM`]) are counted when a thread comes back on CPU, possibly several
//! drains after their stacks were taken at switch-out: [`SampleKey::epoch`] names the
//! generation whose stack maps their ids point into, and the drain keeps a copy of the
//! stacks that keys still pending may refer to (`profiler-sampler`'s `drain.rs`).
//!
//! The user stack is referenced through [`SampleKey::user_stack_id`] plus
//! [`SampleKey::flags`], so a userspace-table unwinder can later store stacks in a map of
//! its own (flagged [`SAMPLE_FLAG_USER_STACK_CUSTOM`]) without changing the key.
#![no_std]

pub mod python;
pub mod unwind;

/// Deepest stack, in frames, that the kernel's stack helpers record (`PERF_MAX_STACK_DEPTH`).
pub const MAX_STACK_DEPTH: usize = 127;

/// Length of a task's `comm`, including the terminating NUL (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// Name of the count map of each generation (`HashMap<SampleKey, u64>`).
pub const COUNTS_MAPS: [&str; 2] = ["COUNTS_0", "COUNTS_1"];

/// Name of the stack-trace map of each generation (`StackTrace`, `u32` id → `[u64; 127]`).
pub const STACKS_MAPS: [&str; 2] = ["STACKS_0", "STACKS_1"];

/// Name of the one-entry `Array<Control>` the agent writes to steer the program.
pub const CONTROL_MAP: &str = "CONTROL";

/// Name of the `PerCpuArray<u64>` of counters indexed by [`Stat`].
pub const STATS_MAP: &str = "STATS";

/// Name of the one-entry `PerCpuArray<u64>`: how many programs are running on each CPU.
pub const INFLIGHT_MAP: &str = "INFLIGHT";

/// Name of the `HashMap<u32, u32>` of process ids to sample when [`Control::filter_tgids`]
/// is set; the fork tracepoint adds children of processes already in it.
pub const TARGET_TGIDS_MAP: &str = "TARGET_TGIDS";

/// Name of the `perf_event` sampling program.
pub const SAMPLE_PROGRAM: &str = "ember_sample";

/// Name of the sampling program without the table unwinder (for kernels without
/// `bpf_loop` or BTF-typed task pointers).
pub const SAMPLE_FP_PROGRAM: &str = "ember_sample_fp";

/// Name of the `sched_process_fork` raw tracepoint program that follows children.
pub const FORK_PROGRAM: &str = "ember_fork";

/// Default number of entries in each generation's count map.
pub const DEFAULT_COUNTS_ENTRIES: u32 = 16_384;

/// Default number of entries in each generation's stack map.
pub const DEFAULT_STACKS_ENTRIES: u32 = 16_384;

/// Default number of entries in [`TARGET_TGIDS_MAP`].
pub const DEFAULT_TARGET_ENTRIES: u32 = 8_192;

/// The user stack id refers to a map of the agent's own unwinder, not `STACKS_*`.
pub const SAMPLE_FLAG_USER_STACK_CUSTOM: u32 = 1 << 0;

/// The unwinder gave up before the outermost frame: the user stack is incomplete.
pub const SAMPLE_FLAG_USER_TRUNCATED: u32 = 1 << 1;

/// The key counts time off CPU, in nanoseconds, rather than CPU samples: the off-CPU
/// program added it when the thread came back on CPU (see [`OFFCPU_PROGRAM`]).
pub const SAMPLE_FLAG_OFF_CPU: u32 = 1 << 2;

/// The Python walker gave up before the outermost Python frame (its depth bound).
pub const SAMPLE_FLAG_PYTHON_TRUNCATED: u32 = 1 << 3;

/// The raw tracepoint on `sched_switch` that records off-CPU time, with the table
/// unwinder. At switch-out it takes the stacks of the thread leaving the CPU (the current
/// task) and keeps them in [`OFFCPU_PENDING_MAP`] under its thread id; at switch-in it
/// finds the thread coming back (`next`) there and charges the time between to that key.
pub const OFFCPU_PROGRAM: &str = "ember_offcpu";

/// [`OFFCPU_PROGRAM`] with frame-pointer user stacks only.
pub const OFFCPU_FP_PROGRAM: &str = "ember_offcpu_fp";

/// Threads off CPU, by thread id (`LruHashMap<u32, OffCpuPending>`): when each left, and
/// the key its time will be charged under.
pub const OFFCPU_PENDING_MAP: &str = "OFFCPU_PENDING";

/// Default size of [`OFFCPU_PENDING_MAP`] (an LRU map: the oldest entry goes when full).
pub const DEFAULT_OFFCPU_THREADS: u32 = 65_536;

/// A thread off CPU, in [`OFFCPU_PENDING_MAP`].
///
/// Written by the off-CPU program at switch-out, read and deleted by it at switch-in; read
/// (never written) by the agent's drain, which keeps the stacks `key` points at.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OffCpuPending {
    /// When the thread left the CPU (`bpf_ktime_get_ns`).
    pub since_ns: u64,
    /// The key its time off CPU is charged under: [`SAMPLE_FLAG_OFF_CPU`] set, stack ids
    /// in the maps of generation [`SampleKey::epoch`].
    pub key: SampleKey,
}

/// What one sample is counted under: who ran, and where.
///
/// Written by the eBPF program; read (and deleted) by the agent's drain.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SampleKey {
    /// Process id (the kernel's tgid). 0 is the idle task.
    pub tgid: u32,
    /// Thread id (the kernel's pid).
    pub tid: u32,
    /// cgroup v2 id of the thread (`bpf_get_current_cgroup_id`); the agent maps it to a path.
    pub cgroup_id: u64,
    /// Id of the user stack in `STACKS_<gen>`, or a negative errno: `-EFAULT` means no
    /// user stack (a kernel thread), `-EEXIST` a collision that was counted in [`Stat`].
    pub user_stack_id: i32,
    /// Id of the kernel stack in `STACKS_<gen>`, or a negative errno: `-EFAULT` means the
    /// sample was taken in user mode.
    pub kernel_stack_id: i32,
    /// `SAMPLE_FLAG_*` bits.
    pub flags: u32,
    /// The [`Control::generation`] the stacks were taken in: the stack ids point into that
    /// generation's maps. The generation of the count map itself for CPU samples; for
    /// off-CPU time, that of the switch-out, which may be older.
    pub epoch: u32,
    /// The thread's `comm`, NUL-padded.
    pub comm: [u8; COMM_LEN],
    /// Id of the thread's Python stack in `USTACKS_<gen>` (the table unwinder's maps; see
    /// [`python`]), or a negative errno: `-EFAULT` means the thread was not running Python
    /// (or its process is not a registered CPython).
    pub python_stack_id: i32,
    /// Zero.
    pub _pad: u32,
}

/// The control block the agent writes and the program reads on every sample.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Control {
    /// The current generation: its parity is the maps new samples go to. Incremented by
    /// the agent's drain (wrapping).
    pub generation: u32,
    /// Non-zero: sample only processes in [`TARGET_TGIDS_MAP`]. Written at start.
    pub filter_tgids: u32,
    /// Non-zero: do not record kernel stacks. Written at start.
    pub skip_kernel: u32,
    /// Offset of `tgid` in the kernel's `struct task_struct`, read by the agent from the
    /// kernel's BTF (`/sys/kernel/btf/vmlinux`); 0 when unknown, and then children are not
    /// followed by the fork hook. Written at start.
    pub task_tgid_offset: u32,
    /// Non-zero: record nothing (samples count as [`Stat::Filtered`]). Written by the
    /// agent before its last drain, so the last drain is complete.
    pub paused: u32,
    /// Off CPU: switches back in after less than this many microseconds are not recorded
    /// (counted as [`Stat::OffCpuShort`]).
    pub off_cpu_min_us: u32,
    /// Off CPU: record one in this many eligible switches, weighted by this factor (0 or 1:
    /// all of them); the others are counted as [`Stat::OffCpuSampledOut`].
    pub off_cpu_every: u32,
    /// Offset of `pid` (the thread id) in `struct task_struct`, from the kernel's BTF like
    /// [`Control::task_tgid_offset`]: the off-CPU program reads the thread switched in.
    /// Written at start; 0 when off-CPU time is not recorded.
    pub task_pid_offset: u32,
}

/// Loss and activity counters in [`STATS_MAP`], one slot each, summed over CPUs.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Times the sampling program ran.
    Samples = 0,
    /// Samples skipped because the process was not a target.
    Filtered = 1,
    /// Samples counted into a count map.
    Recorded = 2,
    /// Kernel stacks lost to a stack-map hash collision (`-EEXIST`).
    KernelStackCollision = 3,
    /// User stacks lost to a stack-map hash collision (`-EEXIST`).
    UserStackCollision = 4,
    /// Kernel stacks lost to any other helper error (the map full: `-ENOMEM`, ...).
    KernelStackError = 5,
    /// User stacks lost to any other helper error.
    UserStackError = 6,
    /// Samples lost because the count map was full.
    CountsFull = 7,
    /// Children the fork tracepoint could not add because the target map was full.
    TargetsFull = 8,
    /// Samples lost because the control block could not be read.
    NoControl = 9,
    /// User stacks the table unwinder walked (`unwind` module).
    UnwindWalked = 10,
    /// Walked user stacks that were cut short (marked truncated).
    UnwindTruncated = 11,
    /// Frames the table unwinder stepped with the frame pointer (no mapping or no row).
    UnwindFpFrames = 12,
    /// Walked user stacks lost: a 31-bit key collision or the stack map full.
    UnwindStackLost = 13,
    /// Process announcements (first sample, exec) lost to a full `PROC_EVENTS` ring: the
    /// symbolizer may not capture such a process before it exits.
    AnnouncementsLost = 14,
    /// Switch-outs of target threads the off-CPU program saw.
    OffCpuSwitches = 15,
    /// Off-CPU intervals charged to a stack.
    OffCpuRecorded = 16,
    /// Off-CPU intervals shorter than [`Control::off_cpu_min_us`], not charged.
    OffCpuShort = 17,
    /// Switch-outs left out by [`Control::off_cpu_every`] (no stack taken).
    OffCpuSampledOut = 18,
    /// Off-CPU intervals lost because the count map was full.
    OffCpuCountsFull = 19,
    /// Pending off-CPU waits pushed out of the full [`OFFCPU_PENDING_MAP`] by a newer
    /// switch-out, so never charged (a lower bound: see `ember_offcpu`).
    OffCpuEvicted = 20,
    /// VMAs the file lookup found (`bpf_find_vma`), for processes ember has not
    /// registered yet.
    UnwindVmaFound = 21,
    /// File lookups that found nothing (busy mm lock, an address outside every VMA).
    UnwindVmaMissed = 22,
    /// Samples of threads of registered CPython processes whose Python frames were
    /// walked (`python` module).
    PythonWalked = 23,
    /// Samples of a registered CPython process whose thread has no Python thread state
    /// (not started by Python, or not yet or no longer running Python code).
    PythonNoThread = 24,
    /// Python stacks cut short at the depth bound (marked truncated).
    PythonTruncated = 25,
    /// Python stacks lost: a 31-bit key collision or the stack map full.
    PythonStackLost = 26,
    /// New Python stacks whose code objects could not be announced for naming (the
    /// `PY_EVENTS` ring full): they may stay unnamed if the process exits first.
    PythonEventsLost = 27,
}

impl Stat {
    /// Number of slots in [`STATS_MAP`].
    pub const COUNT: u32 = 28;

    /// Every counter, in slot order.
    pub const ALL: [Stat; Self::COUNT as usize] = [
        Stat::Samples,
        Stat::Filtered,
        Stat::Recorded,
        Stat::KernelStackCollision,
        Stat::UserStackCollision,
        Stat::KernelStackError,
        Stat::UserStackError,
        Stat::CountsFull,
        Stat::TargetsFull,
        Stat::NoControl,
        Stat::UnwindWalked,
        Stat::UnwindTruncated,
        Stat::UnwindFpFrames,
        Stat::UnwindStackLost,
        Stat::AnnouncementsLost,
        Stat::OffCpuSwitches,
        Stat::OffCpuRecorded,
        Stat::OffCpuShort,
        Stat::OffCpuSampledOut,
        Stat::OffCpuCountsFull,
        Stat::OffCpuEvicted,
        Stat::UnwindVmaFound,
        Stat::UnwindVmaMissed,
        Stat::PythonWalked,
        Stat::PythonNoThread,
        Stat::PythonTruncated,
        Stat::PythonStackLost,
        Stat::PythonEventsLost,
    ];

    /// A stable snake_case name, used in logs and metrics.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Stat::Samples => "samples",
            Stat::Filtered => "filtered",
            Stat::Recorded => "recorded",
            Stat::KernelStackCollision => "kernel_stack_collision",
            Stat::UserStackCollision => "user_stack_collision",
            Stat::KernelStackError => "kernel_stack_error",
            Stat::UserStackError => "user_stack_error",
            Stat::CountsFull => "counts_full",
            Stat::TargetsFull => "targets_full",
            Stat::NoControl => "no_control",
            Stat::UnwindWalked => "unwind_walked",
            Stat::UnwindTruncated => "unwind_truncated",
            Stat::UnwindFpFrames => "unwind_fp_frames",
            Stat::UnwindStackLost => "unwind_stack_lost",
            Stat::AnnouncementsLost => "announcements_lost",
            Stat::OffCpuSwitches => "off_cpu_switches",
            Stat::OffCpuRecorded => "off_cpu_recorded",
            Stat::OffCpuShort => "off_cpu_short",
            Stat::OffCpuSampledOut => "off_cpu_sampled_out",
            Stat::OffCpuCountsFull => "off_cpu_counts_full",
            Stat::OffCpuEvicted => "off_cpu_evicted",
            Stat::UnwindVmaFound => "unwind_vma_found",
            Stat::UnwindVmaMissed => "unwind_vma_missed",
            Stat::PythonWalked => "python_walked",
            Stat::PythonNoThread => "python_no_thread",
            Stat::PythonTruncated => "python_truncated",
            Stat::PythonStackLost => "python_stack_lost",
            Stat::PythonEventsLost => "python_events_lost",
        }
    }

    /// True for counters that count lost data, as opposed to activity.
    #[must_use]
    pub const fn is_loss(self) -> bool {
        !matches!(
            self,
            Stat::Samples
                | Stat::Filtered
                | Stat::Recorded
                | Stat::UnwindWalked
                | Stat::UnwindTruncated
                | Stat::UnwindFpFrames
                | Stat::AnnouncementsLost
                | Stat::OffCpuSwitches
                | Stat::OffCpuRecorded
                | Stat::OffCpuShort
                | Stat::OffCpuSampledOut
                | Stat::UnwindVmaFound
                | Stat::UnwindVmaMissed
                | Stat::PythonWalked
                | Stat::PythonNoThread
                | Stat::PythonTruncated
                | Stat::PythonEventsLost
        )
    }
}

/// `EFAULT`: the stack helpers' "there is no such stack" (user mode, or a kernel thread).
pub const EFAULT: i32 = 14;
/// `EEXIST`: a stack-map hash collision.
pub const EEXIST: i32 = 17;

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are `repr(C)`, `Copy`, made only of integers and integer arrays with
    // explicit padding, so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::SampleKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Control {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::OffCpuPending {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn layouts_match_the_ebpf_side() {
        assert_eq!(size_of::<SampleKey>(), 56);
        assert_eq!(align_of::<SampleKey>(), 8);
        assert_eq!(size_of::<Control>(), 32);
        assert_eq!(align_of::<Control>(), 4);
        assert_eq!(size_of::<OffCpuPending>(), 64);
        assert_eq!(align_of::<OffCpuPending>(), 8);
    }

    #[test]
    fn stats_are_in_slot_order() {
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{}", s.name());
        }
    }
}
