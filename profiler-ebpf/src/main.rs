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
//! `ember_offcpu` (and `ember_offcpu_fp`, without the table unwinder) records off-CPU time
//! (`--off-cpu`): the time a thread spends switched out, charged to the stack it left the
//! CPU in, in nanoseconds, in the same count maps under keys flagged `SAMPLE_FLAG_OFF_CPU`.
//! It is one raw tracepoint on `sched_switch`: this kernel has no kprobes, and
//! `finish_task_switch` (kernel/sched) cannot take an fentry program, so both halves of a
//! switch are seen there. It reads `task_struct.pid` of the thread switched in, at the
//! offset the kernel's BTF gives (so, like the fork hook, it needs BTF).
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

/// The CPython frame walker (issue 17), with the table unwinder's stack maps.
#[cfg(target_arch = "bpf")]
mod python;

#[cfg(target_arch = "bpf")]
mod program {
    use crate::unwind;
    use aya_ebpf::programs::tracing::StackIdContext;
    use aya_ebpf::{
        bindings::BPF_F_USER_STACK,
        helpers::{
            bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
            bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_probe_read_kernel,
        },
        macros::{map, perf_event, raw_tracepoint},
        maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, StackTrace},
        programs::{PerfEventContext, RawTracePointContext},
    };
    use core::intrinsics::{AtomicOrdering, atomic_xadd};
    use profiler_common::{
        Control, DEFAULT_COUNTS_ENTRIES, DEFAULT_OFFCPU_THREADS, DEFAULT_STACKS_ENTRIES,
        DEFAULT_TARGET_ENTRIES, EEXIST, EFAULT, OffCpuPending, SAMPLE_FLAG_OFF_CPU,
        SAMPLE_FLAG_PYTHON_TRUNCATED, SAMPLE_FLAG_USER_STACK_CUSTOM, SAMPLE_FLAG_USER_TRUNCATED,
        SampleKey, Stat,
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

    /// What the program reads of the control block, each field once.
    struct Settings {
        generation: u32,
        filter: bool,
        skip_kernel: bool,
        paused: bool,
        off_cpu_min_us: u32,
        off_cpu_every: u32,
        task_pid_offset: u32,
    }

    #[inline(always)]
    fn settings() -> Option<Settings> {
        let control = CONTROL.get_ptr(0)?;
        // SAFETY: a valid map value pointer; the agent rewrites the value at any time, so
        // each field is read once, volatile, and used as read.
        unsafe {
            Some(Settings {
                generation: core::ptr::read_volatile(&raw const (*control).generation),
                filter: core::ptr::read_volatile(&raw const (*control).filter_tgids) != 0,
                skip_kernel: core::ptr::read_volatile(&raw const (*control).skip_kernel) != 0,
                paused: core::ptr::read_volatile(&raw const (*control).paused) != 0,
                off_cpu_min_us: core::ptr::read_volatile(&raw const (*control).off_cpu_min_us),
                off_cpu_every: core::ptr::read_volatile(&raw const (*control).off_cpu_every),
                task_pid_offset: core::ptr::read_volatile(&raw const (*control).task_pid_offset),
            })
        }
    }

    /// Whether `tgid` is to be recorded under `settings`.
    #[inline(always)]
    fn is_target(settings: &Settings, tgid: u32) -> bool {
        // SAFETY: the value is only tested for presence.
        !settings.filter || unsafe { TARGET_TGIDS.get(&tgid) }.is_some()
    }

    /// The key of the current thread, stacks not yet taken.
    #[inline(always)]
    fn current_key(flags: u32) -> SampleKey {
        let pid_tgid = bpf_get_current_pid_tgid();
        SampleKey {
            tgid: (pid_tgid >> 32) as u32,
            tid: pid_tgid as u32,
            // SAFETY: a helper without preconditions.
            cgroup_id: unsafe { bpf_get_current_cgroup_id() },
            user_stack_id: -EFAULT,
            kernel_stack_id: -EFAULT,
            flags,
            epoch: 0,
            comm: bpf_get_current_comm().unwrap_or([0; 16]),
            python_stack_id: -EFAULT,
            _pad: 0,
        }
    }

    /// Adds one CPU sample to the current thread's key (stacks taken now) in the current
    /// generation.
    #[inline(always)]
    fn add_current(ctx: &PerfEventContext, settings: &Settings, key: &mut SampleKey, tables: bool) {
        let weight = Weight {
            value: 1,
            recorded: Stat::Recorded,
            full: Stat::CountsFull,
        };
        // Two explicit branches, so each helper call sees one constant map pointer.
        if settings.generation & 1 == 0 {
            take_stacks(ctx, key, settings, tables, &STACKS_0);
            add_count(&COUNTS_0, key, weight);
        } else {
            take_stacks(ctx, key, settings, tables, &STACKS_1);
            add_count(&COUNTS_1, key, weight);
        }
    }

    /// How much a recorded key adds, and the counters it is accounted under.
    #[derive(Clone, Copy)]
    struct Weight {
        value: u64,
        recorded: Stat,
        full: Stat,
    }

    #[inline(always)]
    fn record(ctx: &PerfEventContext, tables: bool) {
        stat(Stat::Samples);
        let Some(settings) = settings() else {
            stat(Stat::NoControl);
            return;
        };
        if settings.paused {
            stat(Stat::Filtered);
            return;
        }
        let mut key = current_key(0);
        if !is_target(&settings, key.tgid) {
            stat(Stat::Filtered);
            return;
        }
        announce_first_sample(key.tgid);
        add_current(ctx, &settings, &mut key, tables);
    }

    /// Takes the current task's user and kernel stacks into `stacks` (and the table
    /// unwinder's map) of generation `settings.generation`, and names them in `key`.
    #[inline(always)]
    fn take_stacks<C: unwind::UserRegs + StackIdContext>(
        ctx: &C,
        key: &mut SampleKey,
        settings: &Settings,
        tables: bool,
        stacks: &StackTrace,
    ) {
        key.epoch = settings.generation;
        // Processes with unwind tables get the table walk; the others the kernel's
        // frame-pointer walk. `tables` is a constant in each entry point, so the FP-only
        // program contains no unwinder code at all.
        let walked = if tables {
            unwind::walk(ctx, key.tgid, settings.generation)
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
        // The Python frames of a registered CPython process, beside its native stack.
        if tables && let Some(py) = crate::python::walk(key.tgid, key.tid, settings.generation) {
            key.python_stack_id = py.id;
            if py.truncated {
                key.flags |= SAMPLE_FLAG_PYTHON_TRUNCATED;
            }
        }
        if !settings.skip_kernel {
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
    }

    /// Adds `weight` to `key` in `counts`, inserting it if absent.
    #[inline(always)]
    fn add_count(counts: &HashMap<SampleKey, u64>, key: &SampleKey, weight: Weight) {
        if let Some(p) = counts.get_ptr_mut(key) {
            // SAFETY: a valid map value pointer; other CPUs may add to it concurrently.
            let _prev =
                unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, weight.value) };
            stat(weight.recorded);
            return;
        }
        match counts.insert(key, weight.value, BPF_NOEXIST) {
            Ok(()) => stat(weight.recorded),
            // Another CPU inserted the same key between our lookup and insert.
            Err(e) if e == -EEXIST => {
                if let Some(p) = counts.get_ptr_mut(key) {
                    // SAFETY: as above.
                    let _prev = unsafe {
                        atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, weight.value)
                    };
                    stat(weight.recorded);
                } else {
                    stat(weight.full);
                }
            }
            Err(_) => stat(weight.full),
        }
    }

    #[inline(always)]
    fn user_stack_id<C: StackIdContext>(ctx: &C, stacks: &StackTrace) -> i32 {
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
        crate::python::forget_process(tgid);
        if let Some(control) = CONTROL.get_ptr(0) {
            // SAFETY: a valid map value pointer, read once.
            let filter = unsafe { core::ptr::read_volatile(&raw const (*control).filter_tgids) };
            // SAFETY: presence test only.
            if filter != 0 && unsafe { TARGET_TGIDS.get(&tgid) }.is_none() {
                return 0;
            }
        }
        crate::unwind::learn_exec(tgid);
        // Captured now (the new binary and its loader), and again at its first sample, by
        // when its libraries are mapped.
        let _ = SEEN_TGIDS.remove(&tgid);
        if PROC_EVENTS.output::<u32>(&tgid, 0).is_err() {
            stat(Stat::AnnouncementsLost);
        }
        0
    }

    // Off-CPU time (`--off-cpu`), all in `sched_switch`: at switch-out the thread leaving
    // the CPU (the current task) has its stacks taken, with the same unwinders as CPU
    // samples, and kept in OFFCPU_PENDING with the time; at switch-in the thread coming
    // back (`next`) is looked up there and the time between is charged to that key in the
    // current generation. State is kept per thread, not per CPU, so a thread that wakes on
    // another CPU is charged right (a per-CPU map inflates the time of migrating threads).
    //
    // The stacks belong to the generation of the switch-out, which the drain may have
    // cleared by the time the thread comes back: the key says which (`epoch`), and the
    // drain keeps a copy of every stack a pending entry still refers to. For that the key
    // is counted *before* its pending entry is deleted: at any moment after a drain's flip,
    // every interval of the old generation is either still pending or already counted.
    #[map]
    static OFFCPU_PENDING: LruHashMap<u32, OffCpuPending> =
        LruHashMap::with_max_entries(DEFAULT_OFFCPU_THREADS, 0);

    // Evictions of pending waits. The LRU map makes room for a new entry by silently
    // dropping the least recently used one: that thread's wait (often the longest one, a
    // thread asleep for hours) is then never charged, and the map cannot tell. So the
    // program keeps the map's size itself in OFFCPU_LIVE: +1 when a thread not pending is
    // inserted, -1 when an entry is taken at switch-in. An insert of a new thread while the
    // count is at the map's size pushes another thread's wait out: counted as
    // `OffCpuEvicted`, and the count stays at the bound (one out, one in). An evicted
    // thread finds no entry when it comes back and takes nothing off the count.
    //
    // The count is a lower bound of the evictions, never an overcount of real ones: two
    // CPUs may read it in the same instant (off by at most the CPUs switching at once),
    // and the kernel's LRU keeps per-CPU free lists, so it may evict a little before the
    // map holds its full size. Entries are never dropped otherwise (no timeout), so a
    // count at the bound means the map is full.
    #[map]
    static OFFCPU_LIVE: Array<u64> = Array::with_max_entries(1, 0);

    /// Adds `delta` to the pending-wait count (see OFFCPU_LIVE).
    #[inline(always)]
    fn offcpu_live_add(delta: u64) {
        if let Some(p) = OFFCPU_LIVE.get_ptr_mut(0) {
            // SAFETY: `p` is a valid, aligned map value pointer for the whole program run.
            let _prev = unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(p, delta) };
        }
    }

    /// `TASK_DEAD` in `task_struct.__state`: the thread's last switch-out, never followed
    /// by a switch-in.
    const TASK_DEAD: u64 = 0x80;

    #[inline(always)]
    fn off_cpu(ctx: &RawTracePointContext, tables: bool) {
        let Some(settings) = settings() else {
            stat(Stat::NoControl);
            return;
        };
        // SAFETY: a helper without preconditions.
        let now = unsafe { bpf_ktime_get_ns() };
        switch_in(ctx, &settings, now);
        switch_out(ctx, &settings, now, tables);
    }

    /// `next`, coming back on CPU: charges its time off CPU, if it is pending.
    #[inline(always)]
    fn switch_in(ctx: &RawTracePointContext, settings: &Settings, now: u64) {
        let offset = settings.task_pid_offset;
        // 0: not recording off-CPU time; the bound keeps a corrupt value from reading far
        // outside the task.
        if offset == 0 || offset > 1 << 16 {
            return;
        }
        let next: u64 = ctx.arg(2);
        // SAFETY: bpf_probe_read_kernel fails cleanly on a bad address; the offset is the
        // running kernel's own (from /sys/kernel/btf/vmlinux).
        let Ok(tid) = (unsafe { bpf_probe_read_kernel((next + u64::from(offset)) as *const u32) })
        else {
            return;
        };
        if tid == 0 {
            return;
        }
        // SAFETY: the value is copied out at once.
        let Some(pending) = (unsafe { OFFCPU_PENDING.get(&tid) }).copied() else {
            return;
        };
        let blocked = now.saturating_sub(pending.since_ns);
        if settings.paused {
            // After the last drain's pause: nothing more is drained.
        } else if blocked < u64::from(settings.off_cpu_min_us) * 1000 {
            stat(Stat::OffCpuShort);
        } else {
            // --off-cpu-every N kept one switch-out in N: each stands for N. No 128-bit
            // multiply on bpf: bound, then multiply.
            let every = u64::from(settings.off_cpu_every.max(1));
            let weight = Weight {
                value: blocked.min(u64::MAX / every) * every,
                recorded: Stat::OffCpuRecorded,
                full: Stat::OffCpuCountsFull,
            };
            if settings.generation & 1 == 0 {
                add_count(&COUNTS_0, &pending.key, weight);
            } else {
                add_count(&COUNTS_1, &pending.key, weight);
            }
        }
        // Deleted after it is counted (see above).
        if OFFCPU_PENDING.remove(&tid).is_ok() {
            offcpu_live_add(u64::MAX); // wrapping -1
        }
    }

    /// `prev`, the current task, leaving the CPU: takes its stacks if it is a target.
    #[inline(always)]
    fn switch_out(ctx: &RawTracePointContext, settings: &Settings, now: u64, tables: bool) {
        if settings.task_pid_offset == 0 || settings.paused {
            return;
        }
        let pid_tgid = bpf_get_current_pid_tgid();
        let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
        // The idle task is never "blocked"; an exiting thread never comes back.
        let prev_state: u64 = ctx.arg(3);
        if tid == 0 || prev_state & TASK_DEAD != 0 || !is_target(settings, tgid) {
            return;
        }
        stat(Stat::OffCpuSwitches);
        // SAFETY: a helper without preconditions.
        if settings.off_cpu_every > 1
            && unsafe { bpf_get_prandom_u32() } % settings.off_cpu_every != 0
        {
            stat(Stat::OffCpuSampledOut);
            return;
        }
        announce_first_sample(tgid);
        let mut pending = OffCpuPending {
            since_ns: now,
            key: current_key(SAMPLE_FLAG_OFF_CPU),
        };
        if settings.generation & 1 == 0 {
            take_stacks(ctx, &mut pending.key, settings, tables, &STACKS_0);
        } else {
            take_stacks(ctx, &mut pending.key, settings, tables, &STACKS_1);
        }
        if OFFCPU_PENDING.get_ptr(&tid).is_none() {
            let live = OFFCPU_LIVE.get(0).copied().unwrap_or(0);
            if live >= u64::from(DEFAULT_OFFCPU_THREADS) {
                stat(Stat::OffCpuEvicted);
            } else {
                offcpu_live_add(1);
            }
        }
        let _ = OFFCPU_PENDING.insert(&tid, &pending, 0);
    }

    /// `sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
    /// unsigned int prev_state)`, in the context of `prev`, with interrupts off.
    #[raw_tracepoint(tracepoint = "sched_switch")]
    pub fn ember_offcpu(ctx: RawTracePointContext) -> u32 {
        inflight_add(1);
        off_cpu(&ctx, true);
        inflight_add(u64::MAX); // wrapping -1
        0
    }

    /// [`ember_offcpu`] without the table unwinder, for kernels without `bpf_loop`.
    #[raw_tracepoint(tracepoint = "sched_switch")]
    pub fn ember_offcpu_fp(ctx: RawTracePointContext) -> u32 {
        inflight_add(1);
        off_cpu(&ctx, false);
        inflight_add(u64::MAX); // wrapping -1
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
