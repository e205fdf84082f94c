//! The userspace frame walker: every thread of a Python process, with its Python frames
//! leaf first, read from the process's memory with the version's [`PyOffsets`].
//!
//! This is the walk the eBPF unwinder reproduces (see `profiler_common::python` for the
//! steps), and what the tests use to prove the offsets on real interpreters. A frame is
//! what the eBPF side can record cheaply: the code object's address, the instruction
//! offset and whether an `_PyEval_EvalFrameDefault` call began there (to splice the frames
//! into a native stack); [`crate::Namer`] turns it into a name, file and line. The walk is
//! bounded (threads and frames) and marks a stack it cut short; a read that fails (the
//! process exited, a frame being torn down) ends that thread's walk with an error.

use std::io;

use profiler_common::python::{ABSENT, PyOffsets, instr};

use crate::discover::Interpreter;
use crate::memory::Memory;

/// Most threads walked per process.
pub const MAX_THREADS: usize = 4_096;

/// The default deepest Python stack recorded, in frames.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// One Python frame, as the walk finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RawFrame {
    /// The address of the frame's code object.
    pub code: u64,
    /// The byte offset of the frame's current (3.13) or last-started instruction in its
    /// bytecode.
    pub instr_offset: u32,
    /// An `_PyEval_EvalFrameDefault` call began at this frame (every frame before 3.11).
    pub is_entry: bool,
}

/// The Python stack of one thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadStack {
    /// The address of its `PyThreadState`.
    pub tstate: u64,
    /// `thread_id`: its `pthread_t`.
    pub thread_id: u64,
    /// `native_thread_id`: the kernel's tid (3.11+).
    pub native_thread_id: Option<u32>,
    /// Its frames, leaf first.
    pub frames: Vec<RawFrame>,
    /// The walk stopped at the depth limit with frames left.
    pub truncated: bool,
}

/// Why a process could not be walked.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// Its interpreter's version has no offsets.
    #[error("python {version} is not supported")]
    Unsupported {
        /// The version.
        version: crate::Version,
    },
    /// A read of its memory failed.
    #[error("cannot read {what} at {addr:#x}")]
    Read {
        /// What was read.
        what: &'static str,
        /// Where.
        addr: u64,
        /// The read's error.
        #[source]
        source: io::Error,
    },
}

fn read<T>(
    what: &'static str,
    addr: u64,
    f: impl FnOnce(u64) -> io::Result<T>,
) -> Result<T, WalkError> {
    f(addr).map_err(|source| WalkError::Read { what, addr, source })
}

/// The address `offset` bytes past `base` (a struct field), wrapping as the target's
/// pointer arithmetic would rather than panicking on a hostile pointer.
pub(crate) fn at(base: u64, offset: u32) -> u64 {
    base.wrapping_add(u64::from(offset))
}

/// Walks every thread of `interp`'s main interpreter state, keeping at most `max_depth`
/// frames per thread.
///
/// # Errors
/// [`WalkError::Unsupported`] for a version without offsets, [`WalkError::Read`] when the
/// process's memory cannot be read.
pub fn walk(
    mem: &Memory,
    interp: &Interpreter,
    max_depth: usize,
) -> Result<Vec<ThreadStack>, WalkError> {
    let o = interp.offsets.ok_or(WalkError::Unsupported {
        version: interp.version,
    })?;
    let head = at(interp.runtime, o.runtime_interpreters_head);
    let state = read("interpreters.head", head, |a| mem.u64(a))?;
    if state == 0 {
        return Ok(Vec::new());
    }
    let mut tstate = read("threads.head", at(state, o.interp_threads_head), |a| {
        mem.u64(a)
    })?;
    let mut threads = Vec::new();
    while tstate != 0 && threads.len() < MAX_THREADS {
        threads.push(walk_thread(mem, o, tstate, max_depth)?);
        tstate = read("PyThreadState.next", at(tstate, o.tstate_next), |a| {
            mem.u64(a)
        })?;
    }
    Ok(threads)
}

/// The frame a thread is running, or 0.
fn current_frame(mem: &Memory, o: &PyOffsets, tstate: u64) -> Result<u64, WalkError> {
    let first = read("PyThreadState frame", at(tstate, o.tstate_frame), |a| {
        mem.u64(a)
    })?;
    if o.cframe_current_frame == ABSENT || first == 0 {
        return Ok(first);
    }
    read(
        "_PyCFrame.current_frame",
        at(first, o.cframe_current_frame),
        |a| mem.u64(a),
    )
}

/// Walks one thread's frames from `tstate`.
fn walk_thread(
    mem: &Memory,
    o: &PyOffsets,
    tstate: u64,
    max_depth: usize,
) -> Result<ThreadStack, WalkError> {
    let thread_id = read("thread_id", at(tstate, o.tstate_thread_id), |a| mem.u64(a))?;
    let native_thread_id = if o.tstate_native_thread_id == ABSENT {
        None
    } else {
        let tid = read(
            "native_thread_id",
            at(tstate, o.tstate_native_thread_id),
            |a| mem.u64(a),
        )?;
        u32::try_from(tid).ok()
    };
    let mut stack = ThreadStack {
        tstate,
        thread_id,
        native_thread_id,
        frames: Vec::new(),
        truncated: false,
    };
    let mut frame = current_frame(mem, o, tstate)?;
    // Shims are not frames but cost a step each; a cycle of them must end too.
    let mut steps = 0usize;
    while frame != 0 {
        steps += 1;
        if stack.frames.len() >= max_depth || steps > max_depth.saturating_mul(2) + 2 {
            stack.truncated = true;
            break;
        }
        let back = read("frame back", at(frame, o.frame_back), |a| mem.u64(a))?;
        if o.frame_owner_cstack != ABSENT {
            let owner = read("frame owner", at(frame, o.frame_owner), |a| mem.u8(a))?;
            if u32::from(owner) == o.frame_owner_cstack {
                // The frame above a C-stack shim is where an evaluation call began.
                if let Some(last) = stack.frames.last_mut() {
                    last.is_entry = true;
                }
                frame = back;
                continue;
            }
        }
        let code = read("frame code", at(frame, o.frame_code), |a| mem.u64(a))?;
        let instr_offset = instr_offset(mem, o, frame, code)?;
        let is_entry = if o.frame_is_entry != ABSENT {
            read("frame is_entry", at(frame, o.frame_is_entry), |a| mem.u8(a))? != 0
        } else {
            // Before 3.11 each frame is its own evaluation call; from 3.12 a shim says.
            o.frame_owner_cstack == ABSENT
        };
        stack.frames.push(RawFrame {
            code,
            instr_offset,
            is_entry,
        });
        frame = back;
    }
    Ok(stack)
}

/// The byte offset of a frame's instruction in its bytecode (0 before the first one).
fn instr_offset(mem: &Memory, o: &PyOffsets, frame: u64, code: u64) -> Result<u32, WalkError> {
    let addr = at(frame, o.frame_instr);
    let offset = match o.instr_kind {
        instr::LASTI_BYTES | instr::LASTI_UNITS => {
            let raw = read("f_lasti", addr, |a| mem.u32(a))?;
            #[expect(clippy::cast_possible_wrap, reason = "f_lasti is a C int")]
            let lasti = i64::from(raw as i32).max(0);
            if o.instr_kind == instr::LASTI_UNITS {
                lasti * 2
            } else {
                lasti
            }
        }
        _ => {
            let ptr = read("instruction pointer", addr, |a| mem.u64(a))?;
            let start = at(code, o.code_code_adaptive);
            i64::try_from(ptr.saturating_sub(start)).unwrap_or(0)
        }
    };
    Ok(u32::try_from(offset).unwrap_or(u32::MAX))
}
