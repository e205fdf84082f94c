//! Ember's in-kernel sampler.
//!
//! `ember_sample` runs on every `cpu-clock` sample of every CPU. It records who ran (tgid,
//! tid, comm, cgroup) and where (a kernel and a user stack id from the kernel's stack
//! helpers), and counts the sample under that key in the count map of the current
//! generation. Userspace never sees individual samples, only counts per key, and drains one
//! generation while this program fills the other (see `profiler-common` for the protocol).
//!
//! `ember_sample_fp` is the same program without the table unwinder, for kernels that lack
//! what the unwinder needs (`bpf_loop`, BTF-typed task pointers): the agent loads one of the
//! two, after probing the kernel.
//!
//! `ember_fork` follows children: when a target process forks, the child becomes a target
//! too, so `ember record -- CMD` profiles the whole process tree without races. It and
//! `ember_exec` are raw tracepoints, attached by name through the bpf syscall: no tracefs
//! is needed, and no tracepoint record format is read (the one kernel offset the fork hook
//! needs, `task_struct.tgid`, comes from the kernel's BTF).
//!
//! Every sample that cannot be recorded in full is counted in `STATS` by the reason.
#![cfg_attr(target_arch = "bpf", no_std, no_main, feature(core_intrinsics))]
#![cfg_attr(
    target_arch = "bpf",
    expect(
        internal_features,
        reason = "atomic_xadd is the only 64-bit atomic add the bpf target has (no CAS loop)"
    )
)]

#[cfg(not(target_arch = "bpf"))]
fn main() {
    // Host builds (clippy, `cargo build --workspace`) get this stub; the real program is
    // only meaningful for the bpf target, which `profiler-sampler/build.rs` builds.
}

/// The `.eh_frame` table unwinder (issue 7), kept apart from the sampler's own maps.
#[cfg(target_arch = "bpf")]
mod unwind;

#[cfg(target_arch = "bpf")]
mod program {
    use crate::unwind;
    use aya_ebpf::programs::tracing::StackIdContext as _;
    use aya_ebpf::{
        bindings::BPF_F_USER_STACK,
        helpers::{
            bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
            bpf_probe_read_kernel,
        },
        macros::{map, perf_event, raw_tracepoint},
        maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, StackTrace},
        programs::{PerfEventContext, RawTracePointContext},
    };
    use core::intrinsics::{AtomicOrdering, atomic_xadd};
    use profiler_common::{
        Control, DEFAULT_COUNTS_ENTRIES, DEFAULT_STACKS_ENTRIES, DEFAULT_TARGET_ENTRIES, EEXIST,
        EFAULT, SAMPLE_FLAG_USER_STACK_CUSTOM, SAMPLE_FLAG_USER_TRUNCATED, SampleKey, Stat,
    };

    // Map sizes are defaults: the agent resizes them at load time (`set_max_entries`).
    #[map]
    static COUNTS_0: HashMap<SampleKey, u64> = HashMap::with_max_entries(DEFAULT_COUNTS_ENTRIES, 0);
    #[map]
    static COUNTS_1: HashMap<SampleKey, u64> = HashMap::with_max_entries(DEFAULT_COUNTS_ENTRIES, 0);
    #[map]
    static STACKS_0: StackTrace = StackTrace::with_max_entries(DEFAULT_STACKS_ENTRIES, 0);
    #[map]
    static STACKS_1: StackTrace = StackTrace::with_max_entries(DEFAULT_STACKS_ENTRIES, 0);
    #[map]
    static CONTROL: Array<Control> = Array::with_max_entries(1, 0);
    #[map]
    static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);
    #[map]
    static INFLIGHT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
    #[map]
    static TARGET_TGIDS: HashMap<u32, u32> = HashMap::with_max_entries(DEFAULT_TARGET_ENTRIES, 0);

    /// `BPF_NOEXIST`: insert only if the key is absent.
    const BPF_NOEXIST: u64 = 1;

    #[inline(always)]
    pub(crate) fn stat(s: Stat) {
        if let Some(p) = STATS.get_ptr_mut(s as u32) {
            // SAFETY: `p` points at this CPU's slot of a per-CPU array; programs of this
            // object do not nest on one CPU (the kernel's bpf_prog_active guard), so a
            // plain add cannot race.
            unsafe { *p += 1 };
        }
    }

    /// Adds `delta` to this CPU's in-flight count with a fetching atomic add: a full
    /// barrier, so the increment is visible before the generation is read (see
    /// `profiler-common`'s drain protocol).
    #[inline(always)]
    fn inflight_add(delta: u64) {
        if let Some(p) = INFLIGHT.get_ptr_mut(0) {
            // SAFETY: `p` is a valid, aligned map value pointer for the whole program run.
            let _prev = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, delta) };
        }
    }

    #[perf_event]
    pub fn ember_sample(ctx: PerfEventContext) -> u32 {
        inflight_add(1);
        record(&ctx, true);
        inflight_add(u64::MAX); // wrapping -1
        0
    }

    /// [`ember_sample`] without the table unwinder: no `bpf_loop` and no BTF-typed task
    /// pointer, so it loads on kernels that lack them.
    #[perf_event]
    pub fn ember_sample_fp(ctx: PerfEventContext) -> u32 {
        inflight_add(1);
        record(&ctx, false);
        inflight_add(u64::MAX); // wrapping -1
        0
    }

    #[inline(always)]
    fn record(ctx: &PerfEventContext, tables: bool) {
        stat(Stat::Samples);
        let Some(control) = CONTROL.get_ptr(0) else {
            stat(Stat::NoControl);
            return;
        };
        // SAFETY: a valid map value pointer; the agent rewrites the value at any time, so
        // each field is read once, volatile, and used as read.
        let (generation, filter, skip_kernel, paused) = unsafe {
            (
                core::ptr::read_volatile(&raw const (*control).generation),
                core::ptr::read_volatile(&raw const (*control).filter_tgids),
                core::ptr::read_volatile(&raw const (*control).skip_kernel),
                core::ptr::read_volatile(&raw const (*control).paused),
            )
        };
        if paused != 0 {
            stat(Stat::Filtered);
            return;
        }
        let pid_tgid = bpf_get_current_pid_tgid();
        let tgid = (pid_tgid >> 32) as u32;
        if filter != 0 {
            // SAFETY: the value is only tested for presence.
            if unsafe { TARGET_TGIDS.get(&tgid) }.is_none() {
                stat(Stat::Filtered);
                return;
            }
        }
        announce_first_sample(tgid);
        let mut key = SampleKey {
            tgid,
            tid: pid_tgid as u32,
            // SAFETY: a helper without preconditions.
            cgroup_id: unsafe { bpf_get_current_cgroup_id() },
            user_stack_id: -EFAULT,
            kernel_stack_id: -EFAULT,
            flags: 0,
            _pad: 0,
            comm: bpf_get_current_comm().unwrap_or([0; 16]),
        };
        // Two explicit branches, so each helper call sees one constant map pointer.
        if generation & 1 == 0 {
            count(
                ctx,
                &mut key,
                skip_kernel != 0,
                tables,
                0,
                &COUNTS_0,
                &STACKS_0,
            );
        } else {
            count(
                ctx,
                &mut key,
                skip_kernel != 0,
                tables,
                1,
                &COUNTS_1,
                &STACKS_1,
            );
        }
    }

    #[inline(always)]
    fn count(
        ctx: &PerfEventContext,
        key: &mut SampleKey,
        skip_kernel: bool,
        tables: bool,
        generation: u32,
        counts: &HashMap<SampleKey, u64>,
        stacks: &StackTrace,
    ) {
        // Processes with unwind tables get the table walk; the others the kernel's
        // frame-pointer walk. `tables` is a constant in each entry point, so the FP-only
        // program contains no unwinder code at all.
        let walked = if tables {
            unwind::walk(ctx, key.tgid, generation)
        } else {
            None
        };
        if let Some(walked) = walked {
            key.user_stack_id = walked.id;
            key.flags |= SAMPLE_FLAG_USER_STACK_CUSTOM;
            if walked.truncated {
                key.flags |= SAMPLE_FLAG_USER_TRUNCATED;
            }
        } else {
            key.user_stack_id = user_stack_id(ctx, stacks);
        }
        if !skip_kernel {
            key.kernel_stack_id = match ctx.get_stackid(stacks, 0) {
                Ok(id) => id as i32,
                Err(e) => {
                    // -EFAULT: the sample was taken in user mode; not a loss.
                    if e == -EEXIST {
                        stat(Stat::KernelStackCollision);
                    } else if e != -EFAULT {
                        stat(Stat::KernelStackError);
                    }
                    e
                }
            };
        }
        if let Some(p) = counts.get_ptr_mut(&*key) {
            // SAFETY: a valid map value pointer; other CPUs may add to it concurrently.
            let _prev = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, 1) };
            stat(Stat::Recorded);
            return;
        }
        match counts.insert(&*key, 1u64, BPF_NOEXIST) {
            Ok(()) => stat(Stat::Recorded),
            // Another CPU inserted the same key between our lookup and insert.
            Err(e) if e == -EEXIST => {
                if let Some(p) = counts.get_ptr_mut(&*key) {
                    // SAFETY: as above.
                    let _prev =
                        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, 1) };
                    stat(Stat::Recorded);
                } else {
                    stat(Stat::CountsFull);
                }
            }
            Err(_) => stat(Stat::CountsFull),
        }
    }

    #[inline(always)]
    fn user_stack_id(ctx: &PerfEventContext, stacks: &StackTrace) -> i32 {
        match ctx.get_stackid(stacks, u64::from(BPF_F_USER_STACK)) {
            Ok(id) => id as i32,
            Err(e) => {
                // -EFAULT: a kernel thread has no user stack; not a loss.
                if e == -EEXIST {
                    stat(Stat::UserStackCollision);
                } else if e != -EFAULT {
                    stat(Stat::UserStackError);
                }
                e
            }
        }
    }

    /// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`, in the
    /// parent's context: a target's new process becomes a target. New threads (the child's
    /// tgid is the parent's) need nothing: samples are filtered by tgid.
    #[raw_tracepoint(tracepoint = "sched_process_fork")]
    pub fn ember_fork(ctx: RawTracePointContext) -> u32 {
        let Some(control) = CONTROL.get_ptr(0) else {
            return 0;
        };
        // SAFETY: a valid map value pointer, read once.
        let offset = unsafe { core::ptr::read_volatile(&raw const (*control).task_tgid_offset) };
        // 0: the agent found no BTF offset and did not attach this program; the bound
        // keeps a corrupt value from reading far outside the task.
        if offset == 0 || offset > 1 << 16 {
            return 0;
        }
        let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
        // SAFETY: presence test only.
        if unsafe { TARGET_TGIDS.get(&parent) }.is_none() {
            return 0;
        }
        let child_task: u64 = ctx.arg(1);
        // SAFETY: bpf_probe_read_kernel fails cleanly on a bad address; the offset is the
        // running kernel's own (from /sys/kernel/btf/vmlinux).
        let Ok(child) =
            (unsafe { bpf_probe_read_kernel((child_task + u64::from(offset)) as *const u32) })
        else {
            return 0;
        };
        if child == parent || child == 0 {
            return 0;
        }
        if TARGET_TGIDS.insert(&child, &parent, 0).is_err() {
            stat(Stat::TargetsFull);
        }
        0
    }

    // Process announcements for the symbolizer (`profiler-sampler/src/events.rs`): the
    // first sample of a process not seen recently, and every exec of a sampled process, put
    // its tgid in `PROC_EVENTS`, so the agent captures its mappings and binaries at once,
    // before a short-lived process exits.
    #[map]
    static SEEN_TGIDS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16_384, 0);
    #[map]
    static PROC_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

    #[inline(always)]
    fn announce_first_sample(tgid: u32) {
        // SAFETY: presence test only.
        if tgid == 0 || unsafe { SEEN_TGIDS.get(&tgid) }.is_some() {
            return;
        }
        // A full ring loses the announcement (counted); the process is not marked seen, so
        // its next sample tries again.
        if PROC_EVENTS.output::<u32>(&tgid, 0).is_ok() {
            let _ = SEEN_TGIDS.insert(&tgid, &0, 0);
        } else {
            stat(Stat::AnnouncementsLost);
        }
    }

    /// Every exec: the unwinder forgets the old image's mappings, and the process is
    /// announced (if in scope) for a capture of the new one.
    #[raw_tracepoint(tracepoint = "sched_process_exec")]
    pub fn ember_exec(_ctx: RawTracePointContext) -> u32 {
        // Runs in the context of the task that exec'd.
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        crate::unwind::forget_process(tgid);
        if let Some(control) = CONTROL.get_ptr(0) {
            // SAFETY: a valid map value pointer, read once.
            let filter = unsafe { core::ptr::read_volatile(&raw const (*control).filter_tgids) };
            // SAFETY: presence test only.
            if filter != 0 && unsafe { TARGET_TGIDS.get(&tgid) }.is_none() {
                return 0;
            }
        }
        // Captured now (the new binary and its loader), and again at its first sample, by
        // when its libraries are mapped.
        let _ = SEEN_TGIDS.remove(&tgid);
        if PROC_EVENTS.output::<u32>(&tgid, 0).is_err() {
            stat(Stat::AnnouncementsLost);
        }
        0
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 4] = *b"GPL\0";
}
