//! Types of the table unwinder (`.eh_frame` unwinding in the eBPF program).
//!
//! Userspace turns each binary's call-frame information into [`UnwindRow`]s sorted by PC
//! and copies them into one shared array ([`UNWIND_ROWS_MAP`]); every binary owns a
//! contiguous range of it. For every process whose stacks the program should walk with
//! tables, [`PROC_UNWIND_MAP`] holds its executable mappings ([`ProcUnwind`]), sorted by
//! start address, each pointing at its binary's range of rows. The program walks the user
//! stack frame by frame: mapping → row (binary search) → CFA → return address and saved
//! `rbp`; a frame without a mapping or a row is stepped with the frame pointer instead.
//!
//! The walked stack goes into [`USER_STACKS_MAPS`]`[generation]` under a 31-bit hash of its
//! frames; the sample's key then carries [`crate::SAMPLE_FLAG_USER_STACK_CUSTOM`] and the
//! hash as its user stack id, and [`crate::SAMPLE_FLAG_USER_TRUNCATED`] when the walk gave up.

/// Name of the `Array<UnwindRow>` shared by every binary's table.
pub const UNWIND_ROWS_MAP: &str = "UNWIND_ROWS";

/// Name of the `HashMap<u32, ProcUnwind>`: tgid → the process's executable mappings.
pub const PROC_UNWIND_MAP: &str = "PROC_UNWIND";

/// Name of the one-entry `Array<u32>` of unwinder settings ([`UNWIND_STRICT`]).
pub const UNWIND_CONFIG_MAP: &str = "UNWIND_CONFIG";

/// [`UNWIND_CONFIG_MAP`] bit: walk every process's user stack in the program, with frame
/// pointers where it has no tables (yet), so stacks cut short are marked truncated rather
/// than silently short (`--unwinder dwarf`). Without it only processes with tables are
/// walked there and the others get the kernel's frame-pointer walk (`--unwinder auto`).
pub const UNWIND_STRICT: u32 = 1;

/// Name of the custom user-stack map of each generation (`HashMap<u32, UserStack>`).
pub const USER_STACKS_MAPS: [&str; 2] = ["USTACKS_0", "USTACKS_1"];

/// Name of the `sched_process_exec` raw tracepoint program that drops a process's
/// mappings when it execs (they describe the old image).
pub const EXEC_PROGRAM: &str = "ember_exec";

/// Most executable mappings with tables per process; further ones are stepped with frame
/// pointers.
pub const MAX_PROC_MAPPINGS: usize = 128;
const _: () = assert!(
    MAX_PROC_MAPPINGS.is_power_of_two(),
    "the eBPF side masks indices"
);

/// Most rows of one binary's table (the eBPF binary search takes 21 steps).
pub const MAX_TABLE_ROWS: usize = 1 << 21;

/// Deepest user stack the table walk records, in frames.
pub const MAX_UNWIND_DEPTH: usize = 127;

/// Default number of entries of [`PROC_UNWIND_MAP`] (processes with tables).
pub const DEFAULT_PROC_UNWIND_ENTRIES: u32 = 4_096;

/// How to find the canonical frame address (CFA: the caller's `rsp` before the call).
pub mod cfa {
    /// No rule: this PC is not covered (a gap between functions); step with frame pointers.
    pub const NONE: u8 = 0;
    /// CFA = `rsp` + offset.
    pub const RSP: u8 = 1;
    /// CFA = `rbp` + offset.
    pub const RBP: u8 = 2;
    /// The `.plt` stub expression: CFA = `rsp` + offset, + 8 more when `(rip & 15) >=`
    /// the row's `rbp_offset` (the push instruction of the lazy-binding stub has run).
    pub const PLT: u8 = 3;
    /// A rule the program cannot evaluate (a DWARF expression, another register): stop
    /// here and mark the stack truncated.
    pub const UNSUPPORTED: u8 = 4;
    /// The outermost frame (`_start`, `clone`): the return address is undefined and the
    /// stack is complete.
    pub const END: u8 = 5;
}

/// How to find the caller's `rbp`.
pub mod rbp {
    /// `rbp` is unchanged in the caller (not saved by this function yet, or not at all).
    pub const SAME: u8 = 0;
    /// The caller's `rbp` is saved at CFA + `rbp_offset`.
    pub const AT_CFA: u8 = 1;
    /// A rule the program cannot evaluate: the caller's `rbp` is unknown (the walk goes
    /// on; a later frame that needs `rbp` then gives up).
    pub const UNKNOWN: u8 = 2;
}

/// One unwind row: from `pc` up to the next row's `pc`, how to find the caller's frame.
/// The return address is always at CFA − 8 (x86-64 System V).
///
/// Eight bytes, the element size of the BPF array that holds every row. Offsets are in
/// units of 8 bytes (x86-64 keeps the stack 8-byte aligned), so frames of up to 256 KiB
/// fit; a rule whose offsets do not fit is stored as [`cfa::UNSUPPORTED`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UnwindRow {
    /// First PC the row covers, as an ELF virtual address of the binary.
    pub pc: u32,
    /// Offset added to the CFA register, in units of 8 bytes.
    pub cfa_offset: i16,
    /// Offset of the saved `rbp` from the CFA ([`rbp::AT_CFA`]) in units of 8 bytes, or
    /// the PLT threshold in bytes.
    pub rbp_offset: i8,
    /// One of [`cfa`] in the low four bits, one of [`rbp`] in the high four.
    pub kinds: u8,
}

impl UnwindRow {
    /// The CFA rule, one of [`cfa`].
    #[must_use]
    pub const fn cfa_kind(&self) -> u8 {
        self.kinds & 0xf
    }

    /// The `rbp` rule, one of [`rbp`].
    #[must_use]
    pub const fn rbp_kind(&self) -> u8 {
        self.kinds >> 4
    }

    /// Packs the two rule kinds.
    #[must_use]
    pub const fn pack_kinds(cfa_kind: u8, rbp_kind: u8) -> u8 {
        (cfa_kind & 0xf) | (rbp_kind << 4)
    }
}

/// One executable mapping of a process.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ProcMapping {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Load bias: runtime address − ELF virtual address.
    pub bias: u64,
    /// Index of the binary's first row in [`UNWIND_ROWS_MAP`].
    pub table_offset: u32,
    /// Number of rows (0: no table, step with frame pointers).
    pub table_len: u32,
}

/// The executable mappings of one process, sorted by `start`; only the first `len` are valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcUnwind {
    /// Number of valid entries in `mappings`.
    pub len: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// The mappings, sorted by `start`, not overlapping.
    pub mappings: [ProcMapping; MAX_PROC_MAPPINGS],
}

impl Default for ProcUnwind {
    fn default() -> Self {
        ProcUnwind {
            len: 0,
            _pad: 0,
            mappings: [ProcMapping::default(); MAX_PROC_MAPPINGS],
        }
    }
}

/// A user stack walked by the table unwinder: leaf first, `len` valid frames.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserStack {
    /// Number of valid frames.
    pub len: u32,
    /// The high 32 bits of the stack's 64-bit hash (the low 31 are its key), so that two
    /// stacks whose keys collide are told apart.
    pub hash_hi: u32,
    /// The frames: the sampled instruction, then return addresses.
    pub frames: [u64; MAX_UNWIND_DEPTH],
}

impl Default for UserStack {
    fn default() -> Self {
        UserStack {
            len: 0,
            hash_hi: 0,
            frames: [0; MAX_UNWIND_DEPTH],
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: `repr(C)`, `Copy`, integers only with explicit padding: any bit pattern is
    // a valid value.
    unsafe impl aya::Pod for super::UnwindRow {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProcMapping {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProcUnwind {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::UserStack {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_match_the_ebpf_side() {
        assert_eq!(size_of::<UnwindRow>(), 8);
        assert_eq!(size_of::<ProcMapping>(), 32);
        assert_eq!(size_of::<ProcUnwind>(), 8 + 32 * MAX_PROC_MAPPINGS);
        assert_eq!(size_of::<UserStack>(), 8 + 8 * MAX_UNWIND_DEPTH);
    }
}
