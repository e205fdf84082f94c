//! The table unwinder: walks a user stack with the `.eh_frame` rows the agent loaded
//! (see `profiler_common::unwind` for the maps and the row format).
//!
//! The walk runs one frame per `bpf_loop` iteration, so the verifier checks the step once
//! whatever the depth. Per frame: find the mapping that holds the PC (binary search over
//! the process's sorted mappings), then the row (binary search over the binary's rows),
//! compute the CFA, read the return address at CFA − 8 and the saved `rbp` if the row says
//! where it is. A PC outside every mapping with a table, or in a gap between functions, is
//! stepped with the frame pointer, so frame-pointer code and table code mix in one stack.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, bpf_perf_event_data, pt_regs},
    helpers::{bpf_probe_read_kernel, bpf_probe_read_user, generated},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::{PerfEventContext, RawTracePointContext},
};
use profiler_common::{
    DEFAULT_STACKS_ENTRIES, Stat,
    unwind::{
        DEFAULT_LEARNED_ENTRIES, DEFAULT_PROC_UNWIND_ENTRIES, FileKey, FileUnwind, Learned,
        LearnedMapping, MAX_LEARNED, MAX_PROC_MAPPINGS, MAX_UNWIND_DEPTH, ProcUnwind,
        UNWIND_STRICT, UnwindRow, UserStack, VDSO_FILE, VmaOffsets, cfa, rbp,
    },
};

use crate::program::stat;

// Sizes are defaults: the agent sets them at load time.
#[map]
static UNWIND_ROWS: Array<UnwindRow> = Array::with_max_entries(1, BPF_F_MMAPABLE);
#[map]
static PROC_UNWIND: HashMap<u32, ProcUnwind> =
    HashMap::with_max_entries(DEFAULT_PROC_UNWIND_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
pub(crate) static USTACKS_0: HashMap<u32, UserStack> =
    HashMap::with_max_entries(DEFAULT_STACKS_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
pub(crate) static USTACKS_1: HashMap<u32, UserStack> =
    HashMap::with_max_entries(DEFAULT_STACKS_ENTRIES, BPF_F_NO_PREALLOC);
/// Settings (`UNWIND_STRICT`), written by the agent at start.
#[map]
static UNWIND_CONFIG: Array<u32> = Array::with_max_entries(1, 0);
/// A process without tables: every frame is stepped with the frame pointer.
#[map]
static UNWIND_NO_TABLES: Array<ProcUnwind> = Array::with_max_entries(1, 0);
/// The stack being walked (1 KiB: too big for the 512-byte BPF stack).
#[map]
static UNWIND_SCRATCH: PerCpuArray<UserStack> = PerCpuArray::with_max_entries(1, 0);

/// Every binary with a table, by the file the kernel maps (see `profiler_common::unwind`).
#[map]
static FILE_UNWIND: HashMap<FileKey, FileUnwind> =
    HashMap::with_max_entries(DEFAULT_PROC_UNWIND_ENTRIES, BPF_F_NO_PREALLOC);
/// The file mappings each process found here before userspace registered it.
#[map]
static LEARNED: LruHashMap<u32, Learned> = LruHashMap::with_max_entries(DEFAULT_LEARNED_ENTRIES, 0);
/// This walk's copy of its process's learned mappings.
#[map]
static LEARNED_SCRATCH: PerCpuArray<Learned> = PerCpuArray::with_max_entries(1, 0);
/// The first bytes of a VMA, copied: its fields are read at offsets known only at load.
#[map]
static VMA_SCRATCH: PerCpuArray<[u64; VMA_WORDS]> = PerCpuArray::with_max_entries(1, 0);
/// The exec hook's own scratch slots: it runs with interrupts on, so a sample can
/// interrupt it on its CPU and use the sampling path's slots meanwhile.
#[map]
static EXEC_LEARNED: PerCpuArray<Learned> = PerCpuArray::with_max_entries(1, 0);
#[map]
static EXEC_VMA_SCRATCH: PerCpuArray<[u64; VMA_WORDS]> = PerCpuArray::with_max_entries(1, 0);

/// The kernel offsets of the file lookup, and whether it is on: set by the agent at load,
/// read-only to the program, so with `enabled` 0 the verifier drops the lookup's code.
#[unsafe(no_mangle)]
static FILE_LOOKUP: VmaOffsets = VmaOffsets {
    enabled: 0,
    vm_start: 0,
    vm_end: 0,
    vm_pgoff: 0,
    vm_file: 0,
    file_inode: 0,
    inode_ino: 0,
    inode_sb: 0,
    inode_mtime: 0,
    sb_dev: 0,
    task_mm: 0,
    mm_start_code: 0,
    mm_vdso: 0,
    _pad: 0,
};

/// Words of a VMA copied for the lookup: its `vm_start`, `vm_end`, `vm_pgoff` and `vm_file`
/// must lie in the first 128 bytes (the agent checks; they are in the first 96 on 6.x).
pub(crate) const VMA_WORDS: usize = 16;

/// Binary-search steps over one binary's rows: tables hold at most 2^20 rows.
const ROW_SEARCH_STEPS: u32 = 21;
/// Binary-search steps over a process's mappings (`MAX_PROC_MAPPINGS` = 128).
const MAPPING_SEARCH_STEPS: u32 = 8;

const RUNNING: u32 = 0;
const COMPLETE: u32 = 1;
const TRUNCATED: u32 = 2;

/// The registers and progress of a walk. Kept in a per-CPU map, not on the stack: the
/// verifier does not track map contents, so every `bpf_loop` pass looks the same to it and
/// the step is verified once, instead of once per combination of constants it would
/// otherwise follow through the passes.
#[repr(C)]
#[derive(Clone, Copy)]
struct WalkRegs {
    ip: u64,
    sp: u64,
    bp: u64,
    hash: u64,
    n: u32,
    status: u32,
    fp_frames: u32,
    bp_known: u32,
    /// `bp` was read from a saved slot, not taken from a register: a 0 there is the end
    /// of a frame-pointer chain, not a register that happened to hold 0.
    bp_from_chain: u32,
    /// `bpf_find_vma` calls left in this walk. With interrupts off (a perf event) the
    /// helper defers its unlock to an irq_work, and until that runs every further call on
    /// the CPU fails: one call a sample.
    vma_budget: u32,
    /// 1 once this walk learned a mapping: the entry is written back.
    learned_new: u32,
    tgid: u32,
    /// A binary search's bounds, kept here rather than in registers: the verifier does
    /// not track a map value's contents, so the two sides of each step look alike to it
    /// and it checks the search once, not once per pair of bounds it could have reached.
    lo: u32,
    hi: u32,
}

#[map]
static UNWIND_WALK: PerCpuArray<WalkRegs> = PerCpuArray::with_max_entries(1, 0);

/// What one `bpf_loop` pass needs, on the program's stack: pointers only, the same on
/// every pass.
#[repr(C)]
struct Walk {
    procs: *const ProcUnwind,
    stack: *mut UserStack,
    regs: *mut WalkRegs,
    learned: *mut Learned,
}

/// Outcome of a walk, for the sample key.
pub(crate) struct Walked {
    /// The stack's key in `USTACKS_<gen>` (non-negative), or a negative errno.
    pub(crate) id: i32,
    /// The walk gave up before the outermost frame.
    pub(crate) truncated: bool,
}

/// On exec the process's mappings describe the old image: drop them, so its stacks use
/// frame pointers until the agent has loaded the new image's tables. Called by the exec
/// tracepoint (`ember_exec` in `main.rs`).
#[inline(always)]
pub(crate) fn forget_process(tgid: u32) {
    let _ = PROC_UNWIND.remove(&tgid);
}

/// Whether the file lookup is on (a constant to the verifier).
#[inline(always)]
fn lookup_offsets() -> VmaOffsets {
    // SAFETY: a read of a global; volatile so the compiler keeps the load the verifier
    // resolves from the frozen map.
    unsafe { core::ptr::read_volatile(&raw const FILE_LOOKUP) }
}

/// At exec, before the new image runs: learn the mappings of its executable (at
/// `mm->start_code`), its vDSO and its dynamic loader (at the entry point in the user
/// registers), so that its first samples unwind from the files' tables. Interrupts are on
/// here, so all three lookups can be made.
#[inline(always)]
pub(crate) fn learn_exec(tgid: u32) {
    let o = lookup_offsets();
    if o.enabled == 0 {
        return;
    }
    let Some(scratch) = EXEC_LEARNED.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot of the exec hook's own map (the hook does not nest).
    let learned = unsafe { &mut *scratch };
    learned.len = 0;
    learned.next = 0;
    let mm = current_mm(&o);
    learned.mm = mm;
    if mm != 0 {
        if let Some(code) = read_kernel(mm.wrapping_add(u64::from(o.mm_start_code))) {
            learn_at(learned, code, vma_found_exec, &EXEC_VMA_SCRATCH);
        }
        // The vDSO is mapped by now too (a sample in `clock_gettime` would otherwise spend
        // its one lookup there and step libc's frames by frame pointer).
        if let Some(vdso) = read_kernel::<u64>(mm.wrapping_add(u64::from(o.mm_vdso)))
            && vdso != 0
        {
            learn_at(learned, vdso, vma_found_exec, &EXEC_VMA_SCRATCH);
        }
    }
    if let Some((ip, _, _)) = task_user_regs() {
        learn_at(learned, ip, vma_found_exec, &EXEC_VMA_SCRATCH);
    }
    let _ = LEARNED.insert(&tgid, learned, 0);
}

/// The current task's `mm_struct` (0 for a kernel thread or on a failed read).
#[inline(always)]
fn current_mm(o: &VmaOffsets) -> u64 {
    // SAFETY: a helper without preconditions; the task pointer is read only through
    // bpf_probe_read_kernel, which fails cleanly.
    let task = unsafe { generated::bpf_get_current_task() } as u64;
    read_kernel(task.wrapping_add(u64::from(o.task_mm))).unwrap_or(0)
}

/// Looks up the VMA at `addr` and appends it to `learned` (replacing the oldest entry once
/// all are used); returns it.
#[inline(always)]
fn learn_at(
    learned: &mut Learned,
    addr: u64,
    callback: VmaCallback,
    scratch: &PerCpuArray<[u64; VMA_WORDS]>,
) -> Option<LearnedMapping> {
    let mut found: u64 = 0;
    // SAFETY: the BTF task of the current context; the callback has the signature
    // bpf_find_vma expects, copies the VMA into `scratch` and sets `found`, on this stack.
    let ret = unsafe {
        let task = generated::bpf_get_current_task_btf();
        generated::bpf_find_vma(
            task,
            addr,
            callback as *mut core::ffi::c_void,
            (&raw mut found).cast(),
            0,
        )
    };
    let words = scratch.get_ptr(0)?;
    if ret != 0 || found == 0 {
        stat(Stat::UnwindVmaMissed);
        return None;
    }
    // The fields are read here, not in the callback: the verifier checks a callback again
    // for each state the call is reached in, so it is kept to one copy.
    let o = lookup_offsets();
    // SAFETY: this CPU's slot, which the callback just filled.
    let w = unsafe { &*words };
    let word = |off: u32| w[(off as usize / 8) & (VMA_WORDS - 1)];
    let (start, end, pgoff, file) = (
        word(o.vm_start),
        word(o.vm_end),
        word(o.vm_pgoff),
        word(o.vm_file),
    );
    if start >= end {
        stat(Stat::UnwindVmaMissed);
        return None;
    }
    stat(Stat::UnwindVmaFound);
    if learned.mm == 0 {
        learned.mm = current_mm(&o);
    }
    let mut mapping = LearnedMapping {
        start,
        end,
        offset: pgoff << 12,
        file: FileKey {
            ino: 0,
            mtime: 0,
            dev: 0,
            _pad: 0,
        },
    };
    if file == 0 {
        // No file: the vDSO (where `mm->context.vdso` says it starts) has a table of its
        // own; anything else (JIT code, the stack) none.
        let vdso: u64 = read_kernel(learned.mm.wrapping_add(u64::from(o.mm_vdso))).unwrap_or(0);
        if vdso != 0 && vdso == start {
            mapping.file = VDSO_FILE;
            mapping.offset = 0;
        }
    } else if let Some(inode) = read_kernel::<u64>(file.wrapping_add(u64::from(o.file_inode))) {
        mapping.file.ino = read_kernel(inode.wrapping_add(u64::from(o.inode_ino))).unwrap_or(0);
        mapping.file.mtime = read_kernel(inode.wrapping_add(u64::from(o.inode_mtime))).unwrap_or(0);
        let sb: u64 = read_kernel(inode.wrapping_add(u64::from(o.inode_sb))).unwrap_or(0);
        mapping.file.dev = read_kernel(sb.wrapping_add(u64::from(o.sb_dev))).unwrap_or(0);
    }
    let len = learned.len as usize;
    let at = if len < MAX_LEARNED {
        learned.len += 1;
        len
    } else {
        let at = learned.next as usize % MAX_LEARNED;
        learned.next = ((at + 1) % MAX_LEARNED) as u32;
        at
    };
    let at = at & (MAX_LEARNED - 1);
    learned.mappings[at] = mapping;
    Some(mapping)
}

#[inline(always)]
pub(crate) fn read_kernel<T: Copy>(addr: u64) -> Option<T> {
    if addr < 4096 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel fails cleanly on any address.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// A `bpf_find_vma` callback.
type VmaCallback = unsafe extern "C" fn(
    *mut core::ffi::c_void,
    *mut core::ffi::c_void,
    *mut core::ffi::c_void,
) -> i64;

/// `bpf_find_vma`'s callback on the sampling path.
#[inline(never)]
unsafe extern "C" fn vma_found(
    _task: *mut core::ffi::c_void,
    vma: *mut core::ffi::c_void,
    ctx: *mut core::ffi::c_void,
) -> i64 {
    // SAFETY: bpf_find_vma's arguments.
    unsafe { copy_vma(&VMA_SCRATCH, vma, ctx) }
}

/// `bpf_find_vma`'s callback in the exec hook, with the hook's own scratch slot.
#[inline(never)]
unsafe extern "C" fn vma_found_exec(
    _task: *mut core::ffi::c_void,
    vma: *mut core::ffi::c_void,
    ctx: *mut core::ffi::c_void,
) -> i64 {
    // SAFETY: bpf_find_vma's arguments.
    unsafe { copy_vma(&EXEC_VMA_SCRATCH, vma, ctx) }
}

/// Copies the VMA's first bytes into `scratch` and sets the `u64` at `ctx` to 1.
///
/// # Safety
/// `vma` is the kernel's VMA and `ctx` the caller's flag, as bpf_find_vma passes them.
#[inline(always)]
unsafe fn copy_vma(
    scratch: &PerCpuArray<[u64; VMA_WORDS]>,
    vma: *mut core::ffi::c_void,
    ctx: *mut core::ffi::c_void,
) -> i64 {
    let Some(words) = scratch.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: `words` is this CPU's slot; bpf_probe_read_kernel fails cleanly; `ctx` the
    // caller's flag on its stack.
    unsafe {
        if generated::bpf_probe_read_kernel(
            words.cast(),
            (VMA_WORDS * 8) as u32,
            vma as *const core::ffi::c_void,
        ) == 0
        {
            *ctx.cast::<u64>() = 1;
        }
    }
    0
}

/// Walks the current task's user stack if its process has tables; `None` when it has none
/// (the caller then uses the kernel's frame-pointer walk).
#[inline(always)]
pub(crate) fn walk<C: UserRegs>(ctx: &C, tgid: u32, generation: u32) -> Option<Walked> {
    let learned = LEARNED_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: lookups; PROC_UNWIND's value is only read, LEARNED's copied into this CPU's
    // scratch slot.
    let (registered, has_learned) = unsafe {
        let registered = PROC_UNWIND.get(&tgid).map(|p| p as *const ProcUnwind);
        let o = lookup_offsets();
        let has_learned = match LEARNED.get(&tgid) {
            // Learned by this very process, not by an exited one whose pid it got.
            Some(l) if o.enabled != 0 && l.mm == current_mm(&o) => {
                copy_words(learned, l);
                true
            }
            _ => {
                // A new entry's mm is read if it learns something (`learn_at`).
                (*learned).len = 0;
                (*learned).next = 0;
                (*learned).mm = 0;
                false
            }
        };
        (registered, has_learned)
    };
    let procs = match registered {
        Some(p) => p,
        None => {
            let strict = UNWIND_CONFIG.get(0).is_some_and(|c| c & UNWIND_STRICT != 0);
            // A process exec'd since ember started is walked from the files it mapped.
            if !strict && !has_learned {
                return None;
            }
            UNWIND_NO_TABLES.get_ptr(0)?
        }
    };
    let stack = UNWIND_SCRATCH.get_ptr_mut(0)?;
    let (ip, sp, bp) = ctx.user_regs()?;
    let regs = UNWIND_WALK.get_ptr_mut(0)?;
    stat(Stat::UnwindWalked);
    // SAFETY: this CPU's slot; programs do not nest on one CPU.
    unsafe {
        *regs = WalkRegs {
            ip,
            sp,
            bp,
            hash: FNV_BASIS,
            n: 0,
            status: RUNNING,
            fp_frames: 0,
            bp_known: 1,
            bp_from_chain: 0,
            vma_budget: 1,
            learned_new: 0,
            tgid,
            lo: 0,
            hi: 0,
        };
    }
    let mut walk = Walk {
        procs,
        stack,
        regs,
        learned,
    };
    // SAFETY: `step` has the callback signature bpf_loop expects and only touches `walk`
    // and the maps it points at, which outlive the call.
    unsafe {
        generated::bpf_loop(
            MAX_UNWIND_DEPTH as u32,
            step as *mut core::ffi::c_void,
            (&raw mut walk).cast(),
            0,
        );
    }
    // SAFETY: as above.
    let w = unsafe { *regs };
    if w.learned_new != 0 {
        // SAFETY: this CPU's scratch slot, a valid map value.
        let _ = LEARNED.insert(&tgid, unsafe { &*learned }, 0);
    }
    if w.fp_frames > 0 {
        stat(Stat::UnwindFpFrames);
    }
    let truncated = w.status != COMPLETE;
    if truncated {
        stat(Stat::UnwindTruncated);
    }
    let (id, _) = store_stack(stack, w.n, w.hash, generation, Stat::UnwindStackLost);
    Some(Walked { id, truncated })
}

/// `*dst = *src`, eight bytes at a time. A plain copy of a struct this large becomes a
/// call to the byte-by-byte `memcpy` of `compiler_builtins`, which the verifier walks once
/// per byte (400 iterations for a `Learned`: a quarter of all it verified). The volatile
/// accesses keep LLVM from turning this loop back into that call.
///
/// # Safety
/// `dst` and `src` are valid, 8-aligned and do not overlap.
#[inline(always)]
unsafe fn copy_words<T: Copy>(dst: *mut T, src: *const T) {
    const { assert!(core::mem::size_of::<T>() % 8 == 0) };
    let (d, s) = (dst.cast::<u64>(), src.cast::<u64>());
    let mut i = 0;
    while i < core::mem::size_of::<T>() / 8 {
        // SAFETY: within both values (the caller's promise), word by word.
        unsafe { core::ptr::write_volatile(d.add(i), core::ptr::read_volatile(s.add(i))) };
        i += 1;
    }
}

/// FNV-1a's offset basis, where a stack's hash starts.
pub(crate) const FNV_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// One FNV-1a step over a 64-bit word.
#[inline(always)]
pub(crate) fn fnv(hash: u64, word: u64) -> u64 {
    (hash ^ word).wrapping_mul(0x0000_0100_0000_01b3)
}

/// murmur3's 64-bit finalizer: every input bit reaches every output bit.
#[inline(always)]
pub(crate) fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Keeps the walked `stack` (this CPU's scratch slot, `len` frames, 64-bit FNV `hash`) in
/// `USTACKS_<generation>` under the low 31 bits of the mixed hash, the high 32 kept to
/// tell a collision. FNV's multiply carries a bit only upward, so without the mix the
/// words' high bits (a Python frame's instruction, bits 48–62) would never reach the key,
/// and stacks differing only there would collide. Returns the stack's id (or `-EEXIST`
/// for a collision, the insert's errno, both counted as `lost`), and whether the stack is
/// new to the generation.
#[inline(always)]
pub(crate) fn store_stack(
    stack: *mut UserStack,
    len: u32,
    hash: u64,
    generation: u32,
    lost: Stat,
) -> (i32, bool) {
    let hash = mix(hash);
    // SAFETY: `stack` is this CPU's scratch slot; nothing else runs here meanwhile.
    unsafe {
        (*stack).len = len;
        (*stack).hash_hi = (hash >> 32) as u32;
    }
    let key = (hash as u32) & 0x7fff_ffff;
    let map = if generation & 1 == 0 {
        &USTACKS_0
    } else {
        &USTACKS_1
    };
    // SAFETY: the value is only read.
    if let Some(old) = unsafe { map.get(&key) } {
        if old.hash_hi == (hash >> 32) as u32 && old.len == len {
            return (key as i32, false);
        }
        stat(lost);
        return (-17, false);
    }
    // SAFETY: `stack` is a valid map value pointer.
    match map.insert(&key, unsafe { &*stack }, 0) {
        Ok(()) => (key as i32, true),
        Err(e) => {
            stat(lost);
            (e as i32, false)
        }
    }
}

/// Where a program finds the user registers of the current task: `(ip, sp, bp)`, `None`
/// for a kernel thread.
pub(crate) trait UserRegs: EbpfContext {
    fn user_regs(&self) -> Option<(u64, u64, u64)>;
}

impl UserRegs for PerfEventContext {
    /// The interrupted registers when the sample hit user mode, else the task's saved ones.
    #[inline(always)]
    fn user_regs(&self) -> Option<(u64, u64, u64)> {
        let data = self.as_ptr() as *const bpf_perf_event_data;
        // SAFETY: the perf_event context is a `bpf_perf_event_data`; the verifier checks
        // each field access.
        let (ip, sp, bp, cs) = unsafe {
            (
                (*data).regs.rip,
                (*data).regs.rsp,
                (*data).regs.rbp,
                (*data).regs.cs,
            )
        };
        if cs & 3 == 3 {
            return Some((ip, sp, bp));
        }
        task_user_regs()
    }
}

impl UserRegs for RawTracePointContext {
    /// A raw tracepoint runs in the kernel: the task's saved user registers.
    #[inline(always)]
    fn user_regs(&self) -> Option<(u64, u64, u64)> {
        task_user_regs()
    }
}

/// The registers the current task entered the kernel with.
#[inline(always)]
fn task_user_regs() -> Option<(u64, u64, u64)> {
    // SAFETY: helpers without preconditions; the returned pointer is only read through
    // bpf_probe_read_kernel, which fails cleanly.
    let regs = unsafe {
        let task = generated::bpf_get_current_task_btf();
        generated::bpf_task_pt_regs(task) as *const pt_regs
    };
    if regs.is_null() {
        return None;
    }
    // SAFETY: as above.
    let regs = unsafe { bpf_probe_read_kernel(regs) }.ok()?;
    // A kernel thread has no user registers.
    if regs.cs & 3 != 3 || regs.rip == 0 {
        return None;
    }
    Some((regs.rip, regs.rsp, regs.rbp))
}

#[inline(always)]
pub(crate) fn read_user(addr: u64) -> Option<u64> {
    // SAFETY: bpf_probe_read_user fails cleanly on any address.
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}

/// One frame. Returns 0 to go on, 1 to stop.
#[inline(never)]
unsafe extern "C" fn step(index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: `ctx` is the `Walk` that `walk` passed to bpf_loop; its pointers are valid
    // map values of this CPU.
    let (procs, stack, w, learned) = unsafe {
        let walk = &*ctx.cast::<Walk>();
        (
            &*walk.procs,
            walk.stack,
            &mut *walk.regs,
            &mut *walk.learned,
        )
    };
    if w.status != RUNNING {
        return 1;
    }
    // The frame index is bpf_loop's: a bounded unknown to the verifier.
    let n = index as usize;
    if n >= MAX_UNWIND_DEPTH {
        w.status = TRUNCATED;
        return 1;
    }
    // SAFETY: `n` is bounds-checked above.
    unsafe { (*stack).frames[n] = w.ip };
    w.hash = fnv(w.hash, w.ip);
    w.n = n as u32 + 1;
    if n + 1 >= MAX_UNWIND_DEPTH {
        w.status = TRUNCATED;
        return 1;
    }
    // Return addresses point after the call: look up the call instruction itself.
    let pc = if n == 0 { w.ip } else { w.ip - 1 };
    match table_step(procs, learned, w, pc) {
        Step::Done => {}
        Step::Fp => {
            w.fp_frames += 1;
            fp_step(w);
        }
    }
    if w.status == RUNNING { 0 } else { 1 }
}

enum Step {
    /// The frame was stepped (or the walk ended).
    Done,
    /// No table covers the PC: step with the frame pointer.
    Fp,
}

/// The table that covers a PC: its rows and the mapping's load bias.
struct Covered {
    bias: u64,
    table_offset: u32,
    table_len: u32,
}

/// The table of the registered mapping that holds `pc`.
#[inline(always)]
fn registered_table(procs: &ProcUnwind, w: &mut WalkRegs, pc: u64) -> Option<Covered> {
    let len = procs.len;
    if len == 0 || len as usize > MAX_PROC_MAPPINGS {
        return None;
    }
    // Last mapping whose start <= pc, with the bounds in `w` (see `WalkRegs::lo`).
    let (lo, hi) = (&raw mut w.lo, &raw mut w.hi);
    // SAFETY: `lo` and `hi` point into `w`, valid for the whole search.
    unsafe {
        core::ptr::write_volatile(lo, 0);
        core::ptr::write_volatile(hi, len);
        for _ in 0..MAPPING_SEARCH_STEPS {
            let (l, h) = (core::ptr::read_volatile(lo), core::ptr::read_volatile(hi));
            if h <= l || h - l <= 1 {
                break;
            }
            let mid = l + (h - l) / 2;
            if procs.mappings[bounded(mid)].start <= pc {
                core::ptr::write_volatile(lo, mid);
            } else {
                core::ptr::write_volatile(hi, mid);
            }
        }
    }
    // SAFETY: as above.
    let m = &procs.mappings[bounded(unsafe { core::ptr::read_volatile(lo) })];
    if pc < m.start || pc >= m.end || m.table_len == 0 {
        return None;
    }
    Some(Covered {
        bias: m.bias,
        table_offset: m.table_offset,
        table_len: m.table_len,
    })
}

/// The table of the file mapped at `pc`, from the mappings the process learned, or, once
/// a walk, from a new lookup of the VMA.
#[inline(always)]
fn file_table(learned: &mut Learned, w: &mut WalkRegs, pc: u64) -> Option<Covered> {
    if lookup_offsets().enabled == 0 {
        return None;
    }
    // The mapping is copied out, not indexed: an index the verifier knew exactly would
    // split every later state by its value (seconds more to load the program).
    let mut m = LearnedMapping::default();
    let mut hit = 0u32;
    let mut i = 0;
    while i < MAX_LEARNED {
        if (i as u32) < learned.len {
            let e = &learned.mappings[i];
            if e.start <= pc && pc < e.end {
                m = *e;
                hit = 1;
            }
        }
        i += 1;
    }
    if hit == 0 {
        if w.vma_budget == 0 {
            return None;
        }
        w.vma_budget -= 1;
        m = learn_at(learned, pc, vma_found, &VMA_SCRATCH)?;
        w.learned_new = 1;
    }
    if m.file.ino == 0 || pc < m.start || pc >= m.end {
        return None;
    }
    // SAFETY: a lookup; the value is only read.
    let f = unsafe { FILE_UNWIND.get(&m.file) }?;
    if f.table_len == 0 || (f.map_len != 0 && m.end - m.start != u64::from(f.map_len)) {
        return None;
    }
    Some(Covered {
        bias: f.bias(m.start, m.offset)?,
        table_offset: f.table_offset,
        table_len: f.table_len,
    })
}

#[inline(always)]
fn table_step(procs: &ProcUnwind, learned: &mut Learned, w: &mut WalkRegs, pc: u64) -> Step {
    let m = match registered_table(procs, w, pc) {
        Some(m) => m,
        None => match file_table(learned, w, pc) {
            Some(m) => m,
            None => return Step::Fp,
        },
    };
    let vaddr = pc.wrapping_sub(m.bias);
    if vaddr > u64::from(u32::MAX) {
        return Step::Fp;
    }
    let vaddr = vaddr as u32;
    // Last row whose pc <= vaddr, with the bounds in `w` (see `WalkRegs::lo`).
    let (lo, hi) = (&raw mut w.lo, &raw mut w.hi);
    // SAFETY: `lo` and `hi` point into `w`, valid for the whole search.
    unsafe {
        core::ptr::write_volatile(lo, m.table_offset);
        core::ptr::write_volatile(hi, m.table_offset.wrapping_add(m.table_len));
        for _ in 0..ROW_SEARCH_STEPS {
            let (l, h) = (core::ptr::read_volatile(lo), core::ptr::read_volatile(hi));
            if h <= l || h - l <= 1 {
                break;
            }
            let mid = l + (h - l) / 2;
            let Some(r) = UNWIND_ROWS.get(mid) else {
                return Step::Fp;
            };
            if r.pc <= vaddr {
                core::ptr::write_volatile(lo, mid);
            } else {
                core::ptr::write_volatile(hi, mid);
            }
        }
    }
    // SAFETY: as above.
    let Some(row) = UNWIND_ROWS.get(unsafe { core::ptr::read_volatile(lo) }) else {
        return Step::Fp;
    };
    if row.pc > vaddr {
        return Step::Fp;
    }
    let cfa_base = match row.cfa_kind() {
        cfa::RSP => w.sp,
        cfa::RBP => {
            if w.bp_known == 0 {
                w.status = TRUNCATED;
                return Step::Done;
            }
            w.bp
        }
        cfa::PLT => {
            let extra = if (w.ip & 15) as i8 >= row.rbp_offset {
                8
            } else {
                0
            };
            w.sp + extra
        }
        cfa::END => {
            w.status = COMPLETE;
            return Step::Done;
        }
        cfa::NONE => return Step::Fp,
        _ => {
            w.status = TRUNCATED;
            return Step::Done;
        }
    };
    let cfa = cfa_base.wrapping_add((row.cfa_offset as i64 * 8) as u64);
    let Some(ra) = read_user(cfa.wrapping_sub(8)) else {
        w.status = TRUNCATED;
        return Step::Done;
    };
    match row.rbp_kind() {
        rbp::AT_CFA if row.cfa_kind() != cfa::PLT => {
            match read_user(cfa.wrapping_add((row.rbp_offset as i64 * 8) as u64)) {
                Some(bp) => {
                    w.bp = bp;
                    w.bp_known = 1;
                    w.bp_from_chain = 1;
                }
                None => w.bp_known = 0,
            }
        }
        rbp::UNKNOWN => w.bp_known = 0,
        _ => {}
    }
    advance(w, cfa, ra);
    Step::Done
}

/// `i` masked into the mappings array. The volatile read hides from LLVM that `i` is
/// already below the length (it would drop the mask, and the verifier, which does not
/// know that relation, would reject the access).
#[inline(always)]
fn bounded(i: u32) -> usize {
    // SAFETY: a read of a local.
    let i = unsafe { core::ptr::read_volatile(&i) };
    i as usize & (MAX_PROC_MAPPINGS - 1)
}

/// Frame-pointer step: `[rbp]` is the caller's `rbp`, `[rbp + 8]` the return address.
#[inline(always)]
fn fp_step(w: &mut WalkRegs) {
    if w.bp_known == 0 || w.bp == 0 {
        // rbp = 0 marks the outermost frame of a frame-pointer stack.
        w.status = if w.bp == 0 && w.bp_known != 0 {
            COMPLETE
        } else {
            TRUNCATED
        };
        return;
    }
    let bp = w.bp;
    if bp < w.sp || bp & 7 != 0 {
        w.status = TRUNCATED;
        return;
    }
    let (Some(next_bp), Some(ra)) = (read_user(bp), read_user(bp + 8)) else {
        w.status = TRUNCATED;
        return;
    };
    w.bp = next_bp;
    w.bp_from_chain = 1;
    advance(w, bp + 16, ra);
}

#[inline(always)]
fn advance(w: &mut WalkRegs, cfa: u64, ra: u64) {
    if ra == 0 {
        // The end of a frame-pointer chain; anywhere else a zero return address is a
        // guess gone wrong (tables mark the outermost frame themselves).
        w.status = if w.bp == 0 && w.bp_from_chain != 0 {
            COMPLETE
        } else {
            TRUNCATED
        };
        return;
    }
    // The stack grows down: each caller's frame is above the callee's.
    if cfa <= w.sp {
        w.status = TRUNCATED;
        return;
    }
    w.sp = cfa;
    w.ip = ra;
}
