//! The CPython walker: the Python frames of a sampled thread of a registered CPython
//! process (see `profiler_common::python` for the maps and the walk).
//!
//! Per sample of such a process: find the thread's `PyThreadState` (cached per thread and
//! checked again), read its current frame, then walk the frames leaf first, one per
//! `bpf_loop` pass, recording each as a `frame_word` (code object, instruction, whether an
//! evaluation call began there). The stack is kept like a table-unwound user stack, in
//! `USTACKS_<gen>`; a stack new to the generation is also announced on `PY_EVENTS` so
//! userspace names its code objects while the process lives. Nothing is written to the
//! process and nothing stops it: every read is `bpf_probe_read_user`, which fails cleanly
//! on a frame being torn down.

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_ktime_get_ns, generated},
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use profiler_common::{
    Stat,
    python::{
        ABSENT, DEFAULT_PY_PROCS, MAX_PY_DEPTH, MAX_PY_THREADS, PyConfig, PyOffsets, PyProc,
        PyStackEvent, frame_word, instr,
    },
    unwind::UserStack,
};

use crate::program::stat;
use crate::unwind::{FNV_BASIS, Walked, fnv, mix, read_kernel, read_user as read_u64, store_stack};

#[map]
static PY_PROCS: HashMap<u32, PyProc> = HashMap::with_max_entries(DEFAULT_PY_PROCS, 0);
/// Thread id → its `PyThreadState`, found by a scan of the thread list.
#[map]
static PY_THREADS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16_384, 0);
#[map]
static PY_EVENTS: RingBuf = RingBuf::with_byte_size(512 * 1024, 0);
/// The Python stack being walked.
#[map]
static PY_SCRATCH: PerCpuArray<UserStack> = PerCpuArray::with_max_entries(1, 0);
#[map]
static PY_WALK: PerCpuArray<PyWalk> = PerCpuArray::with_max_entries(1, 0);
/// Call paths (process, code objects, generation) already announced for naming.
#[map]
static PY_ANNOUNCED: LruHashMap<u64, u8> = LruHashMap::with_max_entries(16_384, 0);
/// The frame being read, copied (its fields are at offsets known only at load).
#[map]
static PY_FRAME: PerCpuArray<[u8; FRAME_BUF_BYTES]> = PerCpuArray::with_max_entries(1, 0);
/// The event of a new stack, built here (too big for the BPF stack).
#[map]
static PY_EVENT_SCRATCH: PerCpuArray<PyStackEvent> = PerCpuArray::with_max_entries(1, 0);

/// Set by the loader; with `enabled` 0 the verifier drops the walker.
#[unsafe(no_mangle)]
static PY_CONFIG: PyConfig = PyConfig {
    enabled: 0,
    task_fsbase: 0,
};

const RUNNING: u32 = 0;
const COMPLETE: u32 = 1;
const TRUNCATED: u32 = 2;
/// A read failed: the stack is what was read so far, marked truncated.
const BROKEN: u32 = 3;

/// The progress of a walk, in a per-CPU map so every `bpf_loop` pass looks alike to the
/// verifier (as the table unwinder's `WalkRegs`).
#[repr(C)]
#[derive(Clone, Copy)]
struct PyWalk {
    frame: u64,
    hash: u64,
    n: u32,
    status: u32,
    /// Passes taken, shims included: a cycle of shims ends too.
    steps: u32,
    /// Bytes of each frame read ([`frame_span`]).
    span: u32,
    /// The hash of the code objects alone (no instructions): which names a stack needs.
    code_hash: u64,
}

/// What one pass needs: pointers only.
#[repr(C)]
struct Ctx {
    proc: *const PyProc,
    stack: *mut UserStack,
    walk: *mut PyWalk,
    frame: *mut [u8; FRAME_BUF_BYTES],
}

#[inline(always)]
fn config() -> PyConfig {
    // SAFETY: a read-only global; volatile so the loader's value is read, not the
    // initializer's.
    unsafe { core::ptr::read_volatile(&raw const PY_CONFIG) }
}

#[inline(always)]
fn at(base: u64, offset: u32) -> u64 {
    base.wrapping_add(u64::from(offset))
}

/// The current task's FS base: its `pthread_t` on x86-64.
#[inline(always)]
fn fsbase(offset: u32) -> Option<u64> {
    if offset == 0 || offset > 1 << 16 {
        return None;
    }
    // SAFETY: a helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    read_kernel::<u64>(task + u64::from(offset))
}

/// Whether `tstate` is the state of the thread `tid` (whose `pthread_t` is `pthread`).
#[inline(always)]
fn is_thread(o: &PyOffsets, tstate: u64, tid: u32, pthread: u64) -> bool {
    if o.tstate_native_thread_id != ABSENT {
        read_u64(at(tstate, o.tstate_native_thread_id)) == Some(u64::from(tid))
    } else {
        pthread != 0 && read_u64(at(tstate, o.tstate_thread_id)) == Some(pthread)
    }
}

/// A [`PY_THREADS`] value for a thread the scan did not find, in the time slot of its low
/// 32 bits ([`not_found_slot`]): user addresses never have bit 63 set.
const NOT_FOUND: u64 = 1 << 63;

/// How long a thread the scan did not find is left alone: 2^24 ns, about 17 ms.
const NOT_FOUND_SLOT_SHIFT: u32 = 24;

/// The current [`NOT_FOUND`] time slot.
#[inline(always)]
fn not_found_slot() -> u64 {
    // SAFETY: a helper without preconditions.
    NOT_FOUND | ((unsafe { bpf_ktime_get_ns() } >> NOT_FOUND_SLOT_SHIFT) & u64::from(u32::MAX))
}

/// The `PyThreadState` of thread `tid`, from the cache if it still holds, else from a
/// scan of the main interpreter's threads. A thread not found (a native thread of the
/// process, one not started by Python) is not looked for again in the same time slot of
/// about 17 ms: its samples cost one lookup, not a scan of every thread, and a thread
/// that was not found yet (sampled while the interpreter started, or a native thread that
/// calls into Python later) is found within a slot. (Kept per drain generation instead, one
/// sample in the interpreter's start-up would leave its main thread unwalked for a second.)
#[inline(always)]
fn thread_state(p: &PyProc, tid: u32, cfg: &PyConfig) -> Option<u64> {
    let o = &p.offsets;
    let pthread = if o.tstate_native_thread_id == ABSENT {
        fsbase(cfg.task_fsbase)?
    } else {
        0
    };
    // SAFETY: the value is copied.
    if let Some(&cached) = unsafe { PY_THREADS.get(&tid) } {
        if cached & NOT_FOUND != 0 {
            // The clock is read only for threads not found: a found one costs no helper.
            if cached == not_found_slot() {
                return None;
            }
        } else if is_thread(o, cached, tid, pthread) {
            return Some(cached);
        }
    }
    let interp = read_u64(at(p.runtime, o.runtime_interpreters_head))?;
    let first = read_u64(at(interp, o.interp_threads_head))?;
    let mut scan = Scan {
        proc: p as *const PyProc,
        tstate: first,
        found: 0,
        pthread,
        tid,
    };
    // SAFETY: `scan_step` has bpf_loop's callback signature and touches only `scan`.
    unsafe {
        generated::bpf_loop(
            MAX_PY_THREADS,
            scan_step as *mut core::ffi::c_void,
            (&raw mut scan).cast(),
            0,
        );
    }
    if scan.found == 0 {
        let _ = PY_THREADS.insert(&tid, &not_found_slot(), 0);
        return None;
    }
    let _ = PY_THREADS.insert(&tid, &scan.found, 0);
    Some(scan.found)
}

/// The thread-list scan's state, on the program's stack.
#[repr(C)]
struct Scan {
    proc: *const PyProc,
    tstate: u64,
    found: u64,
    pthread: u64,
    tid: u32,
}

/// One thread of the list: is it the sampled one? Returns 0 to go on, 1 to stop.
#[inline(never)]
unsafe extern "C" fn scan_step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: `ctx` is the `Scan` that `thread_state` passed to bpf_loop.
    let s = unsafe { &mut *ctx.cast::<Scan>() };
    // SAFETY: a map value pointer valid for the program run.
    let o = unsafe { &(*s.proc).offsets };
    if s.tstate == 0 {
        return 1;
    }
    if is_thread(o, s.tstate, s.tid, s.pthread) {
        s.found = s.tstate;
        return 1;
    }
    match read_u64(at(s.tstate, o.tstate_next)) {
        Some(next) => {
            s.tstate = next;
            0
        }
        None => 1,
    }
}

/// On exec the process's interpreter (if any) is gone: userspace registers the new image
/// if it is CPython too.
#[inline(always)]
pub(crate) fn forget_process(tgid: u32) {
    let _ = PY_PROCS.remove(&tgid);
}

/// Walks the Python stack of thread `tid` of process `tgid`, if the process is a
/// registered CPython, into `USTACKS_<generation>`.
#[inline(always)]
pub(crate) fn walk(tgid: u32, tid: u32, generation: u32) -> Option<Walked> {
    let cfg = config();
    if cfg.enabled == 0 {
        return None;
    }
    // SAFETY: a map value pointer, only read, valid for the program run.
    let proc = unsafe { PY_PROCS.get(&tgid) }? as *const PyProc;
    stat(Stat::PythonWalked);
    // SAFETY: as above.
    let p = unsafe { &*proc };
    let o = &p.offsets;
    let Some(tstate) = thread_state(p, tid, &cfg) else {
        stat(Stat::PythonNoThread);
        return None;
    };
    let mut frame = read_u64(at(tstate, o.tstate_frame))?;
    if o.cframe_current_frame != ABSENT && frame != 0 {
        frame = read_u64(at(frame, o.cframe_current_frame))?;
    }
    if frame == 0 {
        // A Python thread between calls into Python: no frames.
        stat(Stat::PythonNoThread);
        return None;
    }
    let span = frame_span(o)?;
    let stack = PY_SCRATCH.get_ptr_mut(0)?;
    let w = PY_WALK.get_ptr_mut(0)?;
    let frame_buf = PY_FRAME.get_ptr_mut(0)?;
    // SAFETY: this CPU's slots; programs do not nest on one CPU.
    unsafe {
        *w = PyWalk {
            frame,
            // FNV-1a's basis with a different last bit than the native stacks' so a
            // Python and a native stack with the same words do not share a key.
            hash: FNV_BASIS ^ 1,
            n: 0,
            status: RUNNING,
            steps: 0,
            span,
            code_hash: FNV_BASIS,
        };
    }
    let mut ctx = Ctx {
        proc,
        stack,
        walk: w,
        frame: frame_buf,
    };
    // SAFETY: `py_step` has bpf_loop's callback signature and touches only `ctx` and the
    // map values it points at, which outlive the call.
    unsafe {
        generated::bpf_loop(
            (MAX_PY_DEPTH * 2 + 2) as u32,
            py_step as *mut core::ffi::c_void,
            (&raw mut ctx).cast(),
            0,
        );
    }
    // SAFETY: as above.
    let done = unsafe { *w };
    if done.n == 0 {
        return None;
    }
    let truncated = done.status != COMPLETE;
    if truncated {
        stat(Stat::PythonTruncated);
    }
    let (id, new) = store_stack(stack, done.n, done.hash, generation, Stat::PythonStackLost);
    if new {
        // Names depend on the code objects, not on where in them each frame is: one
        // announcement per process, call path and drain (the instructions change at
        // nearly every sample).
        let path = mix(done.code_hash ^ (u64::from(tgid) << 32) ^ u64::from(generation));
        announce(tgid, stack, done.n, path);
    }
    Some(Walked { id, truncated })
}

/// Sends a stack new to this generation for naming, unless its call path (`path`) was
/// sent in this generation already. A function of its own, so the verifier checks it once.
#[inline(never)]
fn announce(tgid: u32, stack: *const UserStack, len: u32, path: u64) {
    // SAFETY: presence test only.
    if unsafe { PY_ANNOUNCED.get(&path) }.is_some() {
        return;
    }
    let _ = PY_ANNOUNCED.insert(&path, &0, 0);
    let Some(ev) = PY_EVENT_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slots; both arrays hold at least MAX_PY_DEPTH words (the stack
    // MAX_UNWIND_DEPTH, the event MAX_PY_DEPTH).
    unsafe {
        (*ev).tgid = tgid;
        (*ev).len = len;
        // One helper call: a copy loop of 96 words is one the verifier walks word by word.
        let frames = (&raw const (*stack).frames).cast::<u64>();
        let dst = (&raw mut (*ev).frames).cast::<u64>();
        let _ = generated::bpf_probe_read_kernel(
            dst.cast(),
            (MAX_PY_DEPTH * core::mem::size_of::<u64>()) as u32,
            frames.cast(),
        );
    }
    // SAFETY: as above.
    if PY_EVENTS
        .output::<PyStackEvent>(unsafe { &*ev }, 0)
        .is_err()
    {
        stat(Stat::PythonEventsLost);
    }
}

/// One pass: one frame, or one shim skipped. Returns 0 to go on, 1 to stop.
#[inline(never)]
unsafe extern "C" fn py_step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: `ctx` is the `Ctx` that `walk` passed to bpf_loop; its pointers are valid
    // map values of this CPU.
    let (p, stack, w, buf) = unsafe {
        let c = &*ctx.cast::<Ctx>();
        (&*c.proc, c.stack, &mut *c.walk, &mut *c.frame)
    };
    if w.status != RUNNING {
        return 1;
    }
    let o = &p.offsets;
    let frame = w.frame;
    if frame == 0 {
        w.status = COMPLETE;
        return 1;
    }
    w.steps += 1;
    let n = w.n as usize;
    if n >= MAX_PY_DEPTH || w.steps as usize > MAX_PY_DEPTH * 2 {
        w.status = TRUNCATED;
        return 1;
    }
    // The frame's fields in one read: its first `span` bytes (the end of its last field
    // the walk needs, checked against the buffer in `walk`).
    let span = w.span & (FRAME_BUF_BYTES as u32 - 1);
    // SAFETY: `buf` is this CPU's FRAME_BUF_BYTES-byte slot and `span` is below that; the
    // helper fails cleanly on any source address.
    let rc = unsafe {
        generated::bpf_probe_read_user(
            buf.as_mut_ptr().cast(),
            span.max(1),
            frame as *const core::ffi::c_void,
        )
    };
    if rc != 0 {
        w.status = BROKEN;
        return 1;
    }
    let back = field::<u64>(buf, o.frame_back);
    if o.frame_owner_cstack != ABSENT
        && u32::from(field::<u8>(buf, o.frame_owner)) == o.frame_owner_cstack
    {
        // A C-stack shim: the frame recorded before it is where an evaluation call
        // began.
        if n > 0 && n <= MAX_PY_DEPTH {
            // SAFETY: `n - 1` is below MAX_PY_DEPTH, inside the array.
            unsafe {
                let last = &mut (*stack).frames[n - 1];
                *last |= profiler_common::python::WORD_ENTRY;
            }
            // The hash takes the entry bit of the last frame too.
            w.hash = fnv(w.hash, 1);
        }
        w.frame = back;
        return 0;
    }
    let code = field::<u64>(buf, o.frame_code);
    let offset = instr_offset(o, buf, code);
    let entry = if o.frame_is_entry != ABSENT {
        field::<u8>(buf, o.frame_is_entry) != 0
    } else {
        // Before 3.11 each frame is its own evaluation call; from 3.12 a shim says.
        o.frame_owner_cstack == ABSENT
    };
    let word = frame_word(code, offset, entry);
    // SAFETY: `n` is bounds-checked above.
    unsafe { (*stack).frames[n] = word };
    w.hash = fnv(w.hash, word);
    w.code_hash = fnv(w.code_hash, code);
    w.n = n as u32 + 1;
    w.frame = back;
    0
}

/// Bytes of a frame the walk reads at once (a power of two).
const FRAME_BUF_BYTES: usize = 256;

/// The `T` at byte `off` of the frame's copy, 0 outside it.
#[inline(always)]
fn field<T: Copy + Default>(buf: &[u8; FRAME_BUF_BYTES], off: u32) -> T {
    let off = off as usize;
    if off > FRAME_BUF_BYTES - core::mem::size_of::<T>() {
        return T::default();
    }
    // SAFETY: `off + size_of::<T>()` is within the buffer (checked above); `T` is a plain
    // integer, valid for any bytes.
    unsafe { core::ptr::read_unaligned(buf.as_ptr().add(off).cast::<T>()) }
}

/// How many bytes of a frame hold every field the walk reads; `None` when that is more
/// than the buffer (no version's is).
#[inline(always)]
fn frame_span(o: &PyOffsets) -> Option<u32> {
    let end = |off: u32, len: u32| {
        if off == ABSENT {
            0
        } else {
            off.saturating_add(len)
        }
    };
    let span = end(o.frame_back, 8)
        .max(end(o.frame_code, 8))
        .max(end(o.frame_instr, 8))
        .max(end(o.frame_is_entry, 1))
        .max(end(o.frame_owner, 1));
    (span > 0 && span < FRAME_BUF_BYTES as u32).then_some(span)
}

/// The byte offset of a frame's instruction in its bytecode (0 before the first
/// instruction).
#[inline(always)]
fn instr_offset(o: &PyOffsets, buf: &[u8; FRAME_BUF_BYTES], code: u64) -> u64 {
    if o.instr_kind == instr::POINTER {
        let ptr = field::<u64>(buf, o.frame_instr);
        let start = at(code, o.code_code_adaptive);
        if ptr < start { 0 } else { ptr - start }
    } else {
        let lasti = field::<u32>(buf, o.frame_instr) as i32;
        if lasti < 0 {
            0
        } else if o.instr_kind == instr::LASTI_UNITS {
            (lasti as u64) * 2
        } else {
            lasti as u64
        }
    }
}
