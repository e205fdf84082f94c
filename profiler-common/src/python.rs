//! Offsets of the CPython structures a Python frame walker reads, per interpreter version.
//!
//! CPython does not keep its internal structures stable across minor versions, so the walk
//! from `_PyRuntime` to a thread's frames is driven by one [`PyOffsets`] per version (the
//! table is `profiler_python::offsets`). Userspace finds the interpreter of a process and
//! its version, and the same values serve its own frame walker and, copied into a map, the
//! eBPF one. Every field is a byte offset into the structure named in its doc comment,
//! [`ABSENT`] when the version has no such field. The walk is:
//!
//! 1. `_PyRuntime` + [`runtime_interpreters_head`](PyOffsets::runtime_interpreters_head) →
//!    the first `PyInterpreterState`;
//! 2. the state + [`interp_threads_head`](PyOffsets::interp_threads_head) → the first `PyThreadState`,
//!    then [`tstate_next`](PyOffsets::tstate_next) for the others; each thread is told apart
//!    by [`tstate_native_thread_id`](PyOffsets::tstate_native_thread_id) (the kernel's tid,
//!    3.11+) or [`tstate_thread_id`](PyOffsets::tstate_thread_id) (its `pthread_t`);
//! 3. the thread + [`tstate_frame`](PyOffsets::tstate_frame) → the current frame, through the
//!    `_PyCFrame` at [`cframe_current_frame`](PyOffsets::cframe_current_frame) in 3.11 and
//!    3.12;
//! 4. from each frame, [`frame_code`](PyOffsets::frame_code) (the code object),
//!    [`frame_instr`](PyOffsets::frame_instr) (where it is, see [`PyOffsets::instr_kind`])
//!    and [`frame_back`](PyOffsets::frame_back) (the caller). Frames owned by the C stack
//!    ([`PyOffsets::frame_owner_cstack`], 3.12+) are the interpreter's entry shims: they are
//!    skipped, and the frame above one is where an `_PyEval_EvalFrameDefault` call began,
//!    as a set [`frame_is_entry`](PyOffsets::frame_is_entry) byte says in 3.11. In 3.9 and
//!    3.10 every frame is such a call.
//!
//! The code object's name, file and line table are read by userspace only.
//!
//! # The eBPF walker's maps
//!
//! Userspace registers each CPython process it finds in [`PY_PROCS_MAP`] (tgid →
//! [`PyProc`]: where `_PyRuntime` is and the version's offsets). For a sample of such a
//! process the program finds the sampled thread's `PyThreadState` by walking the
//! interpreter's thread list and matching the kernel's thread id (3.11+:
//! `native_thread_id`) or the thread's `pthread_t`, which is its FS base on x86-64
//! (3.9, 3.10: `thread_id`), never the GIL holder, which need not be the thread running.
//! The match is cached in [`PY_THREADS_MAP`] and checked again on each use. It then walks
//! the frames, leaf first, into a [`crate::unwind::UserStack`] of [`frame_word`]s in the
//! table unwinder's `USTACKS_<gen>` maps, and names it in
//! [`SampleKey::python_stack_id`](crate::SampleKey::python_stack_id). A stack new to the
//! generation is also sent, as a [`PyStackEvent`], down the [`PY_EVENTS_MAP`] ring, so
//! userspace reads the names of its code objects while the process still runs.

/// A field the version does not have.
pub const ABSENT: u32 = u32::MAX;

/// What [`PyOffsets::frame_instr`] holds.
pub mod instr {
    /// `int f_lasti`: the byte offset of the last instruction (3.9).
    pub const LASTI_BYTES: u32 = 0;
    /// `int f_lasti`: the index of the last instruction in 2-byte code units (3.10).
    pub const LASTI_UNITS: u32 = 1;
    /// A pointer into the code object's `co_code_adaptive` (3.11+: `prev_instr`, 3.13's
    /// `instr_ptr`); the offset is the pointer minus the code object's address minus
    /// [`PyOffsets::code_code_adaptive`](super::PyOffsets::code_code_adaptive).
    pub const POINTER: u32 = 2;
}

/// How the code object's line table at [`PyOffsets::code_linetable`] is encoded.
pub mod linetable {
    /// `co_lnotab`: (bytecode delta, line delta) byte pairs (3.9).
    pub const LNOTAB: u32 = 0;
    /// 3.10's `co_linetable`: (bytecode delta, line delta) pairs, line delta -128 for none.
    pub const PAIRS_310: u32 = 1;
    /// The location table of 3.11+ (`Objects/locations.md` in CPython).
    pub const LOCATIONS: u32 = 2;
}

/// Byte offsets into CPython's structures for one interpreter version (x86-64).
///
/// Written by userspace from its version table; read by userspace's frame walker and, as
/// a map value, by the eBPF walker. All fields are `u32`, so the layout has no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PyOffsets {
    /// `PY_VERSION_HEX >> 16` of the version described: `0x030b` for 3.11.
    pub version: u32,
    /// `_PyRuntimeState.interpreters.head`.
    pub runtime_interpreters_head: u32,
    /// `PyInterpreterState.tstate_head` (3.9, 3.10) or `.threads.head`.
    pub interp_threads_head: u32,
    /// `PyThreadState.next`.
    pub tstate_next: u32,
    /// `PyThreadState.thread_id` (`pthread_self()`).
    pub tstate_thread_id: u32,
    /// `PyThreadState.native_thread_id` (the kernel's tid), [`ABSENT`] before 3.11.
    pub tstate_native_thread_id: u32,
    /// `PyThreadState.frame` (3.9, 3.10), `.cframe` (3.11, 3.12) or `.current_frame` (3.13).
    pub tstate_frame: u32,
    /// `_PyCFrame.current_frame` (3.11, 3.12); [`ABSENT`] when
    /// [`tstate_frame`](Self::tstate_frame) points at the frame itself.
    pub cframe_current_frame: u32,
    /// `PyFrameObject.f_back` (3.9, 3.10) or `_PyInterpreterFrame.previous`.
    pub frame_back: u32,
    /// `PyFrameObject.f_code`, `_PyInterpreterFrame.f_code` or (3.13) `.f_executable`.
    pub frame_code: u32,
    /// `PyFrameObject.f_lasti`, `_PyInterpreterFrame.prev_instr` or (3.13) `.instr_ptr`,
    /// as [`instr_kind`](Self::instr_kind) says.
    pub frame_instr: u32,
    /// One of the [`instr`] constants.
    pub instr_kind: u32,
    /// `_PyInterpreterFrame.is_entry` (a `bool`, 3.11 only).
    pub frame_is_entry: u32,
    /// `_PyInterpreterFrame.owner` (a `char`, 3.11+).
    pub frame_owner: u32,
    /// The `owner` value of an entry shim, `FRAME_OWNED_BY_CSTACK` (3.12+).
    pub frame_owner_cstack: u32,
    /// `PyCodeObject.co_qualname` (3.11+) or `.co_name` (3.9, 3.10), a `str`.
    pub code_qualname: u32,
    /// `PyCodeObject.co_filename`, a `str`.
    pub code_filename: u32,
    /// `PyCodeObject.co_firstlineno`, an `int`.
    pub code_firstlineno: u32,
    /// `PyCodeObject.co_lnotab` (3.9) or `.co_linetable`, a `bytes`.
    pub code_linetable: u32,
    /// One of the [`linetable`] constants.
    pub linetable_kind: u32,
    /// `PyCodeObject.co_code_adaptive`, the inline bytecode (3.11+).
    pub code_code_adaptive: u32,
    /// `PyBytesObject.ob_size`, the length.
    pub bytes_size: u32,
    /// `PyBytesObject.ob_sval`, the first byte.
    pub bytes_data: u32,
    /// `PyASCIIObject.length`, in code points.
    pub unicode_length: u32,
    /// `PyASCIIObject.state`, the bit field of kind (bits 2..5), compact (5) and ascii (6).
    pub unicode_state: u32,
    /// First character of a compact ASCII string (`sizeof(PyASCIIObject)`).
    pub unicode_ascii_data: u32,
    /// First character of another compact string (`sizeof(PyCompactUnicodeObject)`).
    pub unicode_compact_data: u32,
}

/// Name of the `HashMap<u32, PyProc>` of registered CPython processes, by tgid.
pub const PY_PROCS_MAP: &str = "PY_PROCS";

/// Name of the `LruHashMap<u32, u64>` of thread ids to their `PyThreadState` address.
pub const PY_THREADS_MAP: &str = "PY_THREADS";

/// Name of the ring buffer of [`PyStackEvent`]s.
pub const PY_EVENTS_MAP: &str = "PY_EVENTS";

/// Name of the read-only global [`PyConfig`] of the program, set by the loader.
pub const PY_CONFIG_GLOBAL: &str = "PY_CONFIG";

/// Default number of CPython processes registered at once.
pub const DEFAULT_PY_PROCS: u32 = 4_096;

/// Deepest Python stack walked, in frames: the rest is marked truncated.
pub const MAX_PY_DEPTH: usize = 96;

/// Most threads of one interpreter the walker looks through for the sampled one.
pub const MAX_PY_THREADS: u32 = 256;

/// Code objects sent in one [`PyStackEvent`] (the deepest stack's).
pub const MAX_PY_EVENT_FRAMES: usize = MAX_PY_DEPTH;

/// A registered CPython process, in [`PY_PROCS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PyProc {
    /// The address of `_PyRuntime` in the process.
    pub runtime: u64,
    /// The version's offsets.
    pub offsets: PyOffsets,
    /// Zero.
    pub _pad: u32,
}

/// What the loader tells the Python walker, a read-only global of the program.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PyConfig {
    /// Non-zero: walk Python stacks of registered processes.
    pub enabled: u32,
    /// Offset of `thread.fsbase` in `struct task_struct` (from BTF), by which a 3.9 or
    /// 3.10 thread is matched to its `PyThreadState`; 0 when unknown, and then those
    /// versions' threads are not walked.
    pub task_fsbase: u32,
}

/// A new Python stack, sent for naming: its process and its code objects, leaf first.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PyStackEvent {
    /// The process.
    pub tgid: u32,
    /// Valid entries in `frames`.
    pub len: u32,
    /// [`frame_word`]s.
    pub frames: [u64; MAX_PY_EVENT_FRAMES],
}

/// Bits of a [`frame_word`] that hold the code object's address (user addresses on
/// x86-64 have 47).
pub const WORD_CODE_MASK: u64 = (1 << 48) - 1;
/// Largest instruction index (in 2-byte code units) a [`frame_word`] holds; larger ones
/// are clamped to it.
pub const WORD_MAX_UNITS: u64 = (1 << 15) - 1;
/// The [`frame_word`] bit set on the frame an `_PyEval_EvalFrameDefault` call began at.
pub const WORD_ENTRY: u64 = 1 << 63;

/// One Python frame as the eBPF walker records it: the code object's address in the low
/// 48 bits, the instruction's index in 2-byte code units in bits 48–62 (clamped to
/// [`WORD_MAX_UNITS`]), and [`WORD_ENTRY`].
#[must_use]
pub const fn frame_word(code: u64, instr_offset_bytes: u64, entry: bool) -> u64 {
    let units = instr_offset_bytes / 2;
    let units = if units > WORD_MAX_UNITS {
        WORD_MAX_UNITS
    } else {
        units
    };
    (code & WORD_CODE_MASK) | (units << 48) | if entry { WORD_ENTRY } else { 0 }
}

/// The parts of a [`frame_word`]: `(code, instruction offset in bytes, entry)`.
#[must_use]
pub const fn split_word(word: u64) -> (u64, u32, bool) {
    (
        word & WORD_CODE_MASK,
        (((word >> 48) & WORD_MAX_UNITS) * 2) as u32,
        word & WORD_ENTRY != 0,
    )
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: `repr(C)`, `Copy`, integers only with explicit padding.
    unsafe impl aya::Pod for super::PyProc {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PyConfig {}
    // SAFETY: `repr(C)`, `Copy`, only `u32` fields (no padding), so every bit pattern is a
    // valid value.
    unsafe impl aya::Pod for super::PyOffsets {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn layout_matches_the_ebpf_side() {
        assert_eq!(size_of::<PyOffsets>(), 27 * 4);
        assert_eq!(align_of::<PyOffsets>(), 4);
        assert_eq!(size_of::<PyProc>(), 8 + 27 * 4 + 4);
        assert_eq!(align_of::<PyProc>(), 8);
        assert_eq!(size_of::<PyStackEvent>(), 8 + 8 * MAX_PY_EVENT_FRAMES);
    }

    #[test]
    fn frame_words_round_trip_and_clamp() {
        let w = frame_word(0x7f12_3456_7890, 84, true);
        assert_eq!(split_word(w), (0x7f12_3456_7890, 84, true));
        assert_eq!(split_word(frame_word(0x1000, 0, false)), (0x1000, 0, false));
        // Odd byte offsets do not exist (2-byte code units); huge ones clamp.
        assert_eq!(split_word(frame_word(0x1000, 1 << 20, false)).1, 65_534);
    }
}
