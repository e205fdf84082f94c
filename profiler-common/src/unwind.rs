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

/// Name of the `HashMap<FileKey, FileUnwind>`: each binary with a table, by the file the
/// kernel maps (device, inode, modification time), so that a process Ember has not
/// registered (one that just exec'd, a library just `dlopen`ed) finds its tables from the
/// file behind a PC (`bpf_find_vma`).
pub const FILE_UNWIND_MAP: &str = "FILE_UNWIND";

/// Name of the LRU `HashMap<u32, Learned>`: tgid → the file mappings the program found
/// for a process itself, with `bpf_find_vma`, before userspace registered it.
pub const LEARNED_MAP: &str = "LEARNED";

/// Name of the read-only global ([`VmaOffsets`]) that turns the file lookup on.
pub const FILE_LOOKUP_GLOBAL: &str = "FILE_LOOKUP";

/// Most mappings a process learns in the program; further ones replace the oldest.
pub const MAX_LEARNED: usize = 8;

/// The [`FILE_UNWIND_MAP`] key of the vDSO, which has no file: every 64-bit process of a
/// kernel maps the same image. No file has inode `u64::MAX` on device `u32::MAX`.
pub const VDSO_FILE: FileKey = FileKey {
    ino: u64::MAX,
    mtime: 0,
    dev: u32::MAX,
    _pad: 0,
};

/// Most loadable segments of a binary the file lookup computes a bias with.
pub const MAX_FILE_SEGMENTS: usize = 6;

/// Default entries of [`LEARNED_MAP`].
pub const DEFAULT_LEARNED_ENTRIES: u32 = 4_096;

/// A mapped file as the kernel knows it: `inode->i_sb->s_dev` (the kernel's encoding,
/// `major << 20 | minor`), `inode->i_ino`, and the inode's modification time in seconds (an
/// inode number reused by a new file is not taken for the old one).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FileKey {
    /// Inode number.
    pub ino: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Device, kernel encoding.
    pub dev: u32,
    /// Explicit padding.
    pub _pad: u32,
}

impl FileKey {
    /// The kernel's `dev_t` of a device `major:minor` (as `/proc/PID/maps` prints it).
    #[must_use]
    pub const fn kernel_dev(major: u32, minor: u32) -> u32 {
        (major << 20) | (minor & 0xf_ffff)
    }
}

/// One loadable segment: file offsets `offset..end` are loaded at `vaddr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FileSegment {
    /// File offset of the segment.
    pub offset: u64,
    /// One past its last byte in the file (at least `offset + 1`).
    pub end: u64,
    /// Its ELF virtual address.
    pub vaddr: u64,
}

/// A binary's table and the segments to compute a mapping's bias with.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FileUnwind {
    /// Index of the binary's first row in [`UNWIND_ROWS_MAP`].
    pub table_offset: u32,
    /// Number of rows.
    pub table_len: u32,
    /// Valid entries of `segments`.
    pub segments_len: u32,
    /// For the vDSO ([`VDSO_FILE`]): the length of the mapping the table is for (another
    /// size is another image: a 32-bit process's). 0 for files.
    pub map_len: u32,
    /// Loadable segments, in file order.
    pub segments: [FileSegment; MAX_FILE_SEGMENTS],
}

impl FileUnwind {
    /// Load bias of a mapping of this file that starts at `start` and maps file offset
    /// `offset`: the same rule as the per-process path's (the last segment whose first
    /// page holds `offset`, or that `offset` falls in). `None` when no segment does.
    #[inline(always)]
    #[must_use]
    pub fn bias(&self, start: u64, offset: u64) -> Option<u64> {
        let mut found = None;
        let mut i = 0;
        while i < MAX_FILE_SEGMENTS {
            if (i as u32) < self.segments_len {
                let s = &self.segments[i];
                if offset >= s.offset & !0xfff && offset < s.end {
                    found = Some(
                        start
                            .wrapping_sub(offset)
                            .wrapping_sub(s.vaddr)
                            .wrapping_add(s.offset),
                    );
                }
            }
            i += 1;
        }
        found
    }
}

/// A file mapping a process learned in the program: `start..end` maps `file` from file
/// offset `offset`. A `file` of inode 0 is a mapping without a file (JIT code, the stack):
/// frame pointers there, and no second lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LearnedMapping {
    /// First address.
    pub start: u64,
    /// One past the last.
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    /// The file.
    pub file: FileKey,
}

/// The mappings one process learned ([`LEARNED_MAP`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Learned {
    /// Valid entries of `mappings`.
    pub len: u32,
    /// The entry the next mapping replaces once all are used.
    pub next: u32,
    /// The process's `mm_struct` when these were learned: an entry of another process
    /// with the same pid (a recycled pid that forked without exec) is not used.
    pub mm: u64,
    /// The mappings.
    pub mappings: [LearnedMapping; MAX_LEARNED],
}

/// Byte offsets of the kernel fields the file lookup reads, from the kernel's BTF, and
/// whether it is on. A read-only global of the program ([`FILE_LOOKUP_GLOBAL`]): with
/// `enabled` 0 the verifier drops the lookup's code.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VmaOffsets {
    /// 1: look files up; 0: only registered processes have tables.
    pub enabled: u32,
    /// `vm_area_struct.vm_start`.
    pub vm_start: u32,
    /// `vm_area_struct.vm_end`.
    pub vm_end: u32,
    /// `vm_area_struct.vm_pgoff`.
    pub vm_pgoff: u32,
    /// `vm_area_struct.vm_file`.
    pub vm_file: u32,
    /// `file.f_inode`.
    pub file_inode: u32,
    /// `inode.i_ino`.
    pub inode_ino: u32,
    /// `inode.i_sb`.
    pub inode_sb: u32,
    /// The seconds of the inode's modification time (`i_mtime_sec`, or `tv_sec` of
    /// `__i_mtime` / `i_mtime` on older kernels).
    pub inode_mtime: u32,
    /// `super_block.s_dev`.
    pub sb_dev: u32,
    /// `task_struct.mm`.
    pub task_mm: u32,
    /// `mm_struct.start_code`.
    pub mm_start_code: u32,
    /// `mm_struct.context.vdso`: where the process's vDSO is mapped.
    pub mm_vdso: u32,
    /// Explicit padding.
    pub _pad: u32,
}

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
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FileKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FileUnwind {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Learned {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::VmaOffsets {}
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
        assert_eq!(size_of::<FileKey>(), 24);
        assert_eq!(size_of::<FileUnwind>(), 16 + 24 * MAX_FILE_SEGMENTS);
        assert_eq!(size_of::<Learned>(), 16 + 48 * MAX_LEARNED);
        assert_eq!(size_of::<VmaOffsets>(), 56);
    }

    #[test]
    fn a_file_bias_comes_from_the_segment_the_mapping_starts_in() {
        // A PIE: headers at 0, text at file 0x1000 (vaddr 0x1000), data at 0x3de8 (vaddr
        // 0x4de8), the text mapped at 0x5555_5555_5000 from offset 0x1000.
        let mut f = FileUnwind {
            segments_len: 3,
            ..FileUnwind::default()
        };
        f.segments[0] = FileSegment {
            offset: 0,
            end: 0x628,
            vaddr: 0,
        };
        f.segments[1] = FileSegment {
            offset: 0x1000,
            end: 0x1185,
            vaddr: 0x1000,
        };
        f.segments[2] = FileSegment {
            offset: 0x3de8,
            end: 0x4010,
            vaddr: 0x4de8,
        };
        assert_eq!(f.bias(0x5555_5555_5000, 0x1000), Some(0x5555_5555_4000));
        // The data mapping starts in the page of the third segment.
        assert_eq!(f.bias(0x5555_5555_7000, 0x3000), Some(0x5555_5555_3000));
        assert_eq!(f.bias(0x5555_5555_9000, 0x9000), None);
        assert_eq!(FileKey::kernel_dev(259, 1), (259 << 20) | 1);
    }
}
