//! The version table: [`PyOffsets`] for CPython 3.9 to 3.13 on x86-64.
//!
//! Derived from each version's headers (`Include/cpython/pystate.h`, `frameobject.h`,
//! `code.h`, `unicodeobject.h`, `Include/internal/pycore_{runtime,interp,frame}.h`) and
//! checked against the interpreters on Ember's machines: a probe reading each
//! interpreter's own memory found every offset below, and 3.13's `_Py_DebugOffsets` (the
//! table CPython 3.13 embeds at the start of `_PyRuntime`) agrees with its row. The crate
//! tests walk real processes of every interpreter present and name their frames; the
//! versions they passed on are in [`VERIFIED`].

use profiler_common::python::{ABSENT, PyOffsets, instr, linetable};

/// The versions (major, minor) the table was verified on by walking real interpreters
/// (Debian's `python3.11`, pyenv's builds of 3.9.18, 3.10.13, 3.11.7, 3.12.1, 3.13.0).
pub const VERIFIED: &[(u8, u8)] = &[(3, 9), (3, 10), (3, 11), (3, 12), (3, 13)];

/// `PyBytesObject`, `PyASCIIObject` and `PyCompactUnicodeObject` up to 3.11 (with `wstr`).
const STRINGS_WSTR: (u32, u32, u32, u32, u32, u32) = (16, 32, 16, 32, 48, 72);
/// The same from 3.12 on (`wstr` removed).
const STRINGS: (u32, u32, u32, u32, u32, u32) = (16, 32, 16, 32, 40, 56);

const fn row(
    version: u32,
    chain: [u32; 7],
    frame: [u32; 7],
    code: [u32; 6],
    strings: (u32, u32, u32, u32, u32, u32),
) -> PyOffsets {
    PyOffsets {
        version,
        runtime_interpreters_head: chain[0],
        interp_threads_head: chain[1],
        tstate_next: chain[2],
        tstate_thread_id: chain[3],
        tstate_native_thread_id: chain[4],
        tstate_frame: chain[5],
        cframe_current_frame: chain[6],
        frame_back: frame[0],
        frame_code: frame[1],
        frame_instr: frame[2],
        instr_kind: frame[3],
        frame_is_entry: frame[4],
        frame_owner: frame[5],
        frame_owner_cstack: frame[6],
        code_qualname: code[0],
        code_filename: code[1],
        code_firstlineno: code[2],
        code_linetable: code[3],
        linetable_kind: code[4],
        code_code_adaptive: code[5],
        bytes_size: strings.0,
        bytes_data: strings.1,
        unicode_length: strings.2,
        unicode_state: strings.3,
        unicode_ascii_data: strings.4,
        unicode_compact_data: strings.5,
    }
}

/// `FRAME_OWNED_BY_CSTACK` (`pycore_frame.h`, 3.12 and 3.13).
const OWNED_BY_CSTACK: u32 = 3;

/// The table, one row per minor version of 3.x.
///
/// Columns of `chain`: interpreters.head, threads.head, next, thread_id,
/// native_thread_id, frame (or cframe, or current_frame), cframe.current_frame.
/// Of `frame`: back, code, instr, instr kind, is_entry, owner, owner value of a C-stack
/// shim. Of `code`: qualname (name), filename, firstlineno, linetable, its kind,
/// co_code_adaptive.
pub const TABLE: [PyOffsets; 5] = [
    row(
        0x0309,
        [32, 8, 8, 176, ABSENT, 24, ABSENT],
        [24, 32, 104, instr::LASTI_BYTES, ABSENT, ABSENT, ABSENT],
        [112, 104, 40, 120, linetable::LNOTAB, ABSENT],
        STRINGS_WSTR,
    ),
    row(
        0x030a,
        [32, 8, 8, 176, ABSENT, 24, ABSENT],
        [24, 32, 96, instr::LASTI_UNITS, ABSENT, ABSENT, ABSENT],
        [112, 104, 40, 120, linetable::PAIRS_310, ABSENT],
        STRINGS_WSTR,
    ),
    row(
        0x030b,
        [40, 16, 8, 152, 160, 56, 8],
        [48, 32, 56, instr::POINTER, 68, 69, ABSENT],
        [128, 112, 72, 136, linetable::LOCATIONS, 184],
        STRINGS_WSTR,
    ),
    row(
        0x030c,
        [40, 72, 8, 136, 144, 56, 0],
        [8, 0, 56, instr::POINTER, ABSENT, 70, OWNED_BY_CSTACK],
        [128, 112, 68, 136, linetable::LOCATIONS, 192],
        STRINGS,
    ),
    row(
        0x030d,
        [632, 7344, 8, 152, 160, 72, ABSENT],
        [8, 0, 56, instr::POINTER, ABSENT, 70, OWNED_BY_CSTACK],
        [128, 112, 68, 136, linetable::LOCATIONS, 200],
        STRINGS,
    ),
];

/// The offsets for CPython `major.minor`, if the table has them.
#[must_use]
pub fn for_version(major: u8, minor: u8) -> Option<&'static PyOffsets> {
    let version = (u32::from(major) << 8) | u32::from(minor);
    TABLE.iter().find(|o| o.version == version)
}

/// Whether `major.minor` is in [`VERIFIED`].
#[must_use]
pub fn is_verified(major: u8, minor: u8) -> bool {
    VERIFIED.contains(&(major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_found_by_its_version_and_others_are_not() {
        for minor in 9..=13 {
            let o = for_version(3, minor).expect("in the table");
            assert_eq!(o.version, 0x0300 | u32::from(minor));
        }
        assert!(for_version(3, 8).is_none());
        assert!(for_version(3, 14).is_none());
        assert!(for_version(2, 7).is_none());
    }

    #[test]
    fn each_row_has_one_way_to_reach_the_frame_and_to_tell_entries() {
        for o in &TABLE {
            // 3.11+ read a pointer into the inline bytecode, earlier versions `f_lasti`.
            assert_eq!(
                o.instr_kind == instr::POINTER,
                o.code_code_adaptive != ABSENT
            );
            // An entry is a flag (3.11) or a C-stack shim (3.12+), or every frame (< 3.11).
            assert!(o.frame_is_entry == ABSENT || o.frame_owner_cstack == ABSENT);
            assert_eq!(
                o.tstate_native_thread_id == ABSENT,
                o.version < 0x030b,
                "{o:?}"
            );
        }
    }
}
