//! Compact x86-64 unwind tables for Ember's eBPF unwinder: part of stage 1, **sample**
//! (sample → aggregate → symbolize → store → query → render/export); `profiler-sampler`
//! loads the tables this crate builds into the maps the eBPF program walks stacks with.
//!
//! [`UnwindTable::from_elf`] reads a binary's call-frame information (`.eh_frame`, and
//! `.debug_frame` for functions `.eh_frame` does not cover) with `gimli` and turns it into
//! [`UnwindRow`]s sorted by PC: from each row's PC to the next one's, how to find the CFA
//! (`rsp`/`rbp` + offset, or the standard `.plt` expression), where the caller's `rbp` was
//! saved, and where the stack ends (`_start`'s undefined return address). Identical
//! neighbours are merged, and gaps between functions get a [`cfa::NONE`] row so the eBPF
//! side steps them with frame pointers. Rules the eBPF program cannot evaluate (other
//! DWARF expressions, other CFA registers, offsets beyond the row's fields) become
//! [`cfa::UNSUPPORTED`] rows: the walk stops there and marks the stack truncated.
//!
//! [`ElfInfo`] gives what the agent needs besides the rows: the build id (tables are shared
//! by build id) and the `PT_LOAD` segments (to turn a mapping into a load bias).
//!
//! ELF files are read by [`elf`], Ember's one ELF reader, which the symbolizer uses too.

pub mod elf;

use gimli::{
    BaseAddresses, CfaRule, CieOrFde, DebugFrame, EhFrame, EndianSlice, LittleEndian, RegisterRule,
    UnwindContext, UnwindSection, X86_64,
};
pub use profiler_common::unwind::{MAX_TABLE_ROWS, UnwindRow, cfa, rbp};

/// Why a binary has no table.
#[derive(Debug, thiserror::Error)]
pub enum UnwindError {
    /// Not an ELF file we can read (truncated, another format).
    #[error("not a readable x86-64 ELF file")]
    Elf(#[source] elf::ElfError),
    /// An ELF file for another machine.
    #[error("an ELF file for machine {0} (only x86-64 is supported)")]
    Machine(u16),
    /// Neither `.eh_frame` nor `.debug_frame`.
    #[error("no .eh_frame or .debug_frame section")]
    NoCfi,
    /// Malformed call-frame information.
    #[error("malformed {section}: {message}")]
    Cfi {
        /// The section.
        section: &'static str,
        /// What gimli said.
        message: String,
    },
    /// Addresses beyond 4 GiB or more rows than the eBPF search covers.
    #[error("table too large: {0}")]
    TooLarge(String),
}

/// Counts of what the builder saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// FDEs (functions) read.
    pub fdes: usize,
    /// FDEs taken from `.debug_frame` (not covered by `.eh_frame`).
    pub debug_frame_fdes: usize,
    /// Rows before merging identical neighbours.
    pub raw_rows: usize,
    /// Rows whose rule the eBPF side cannot evaluate.
    pub unsupported_rows: usize,
    /// Rows using the `.plt` expression.
    pub plt_rows: usize,
}

/// A binary's unwind rows, sorted by PC, ready to be copied into the eBPF map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnwindTable {
    /// Rows sorted by `pc`, no two with the same `pc`, no two neighbours with the same rule.
    pub rows: Vec<UnwindRow>,
    /// What was read.
    pub stats: TableStats,
}

/// A `PT_LOAD` segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// File offset.
    pub offset: u64,
    /// Virtual address.
    pub vaddr: u64,
    /// Size in the file.
    pub filesz: u64,
}

/// What the agent needs of a binary besides its rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfInfo {
    /// The GNU build id, if the binary has one.
    pub build_id: Option<Vec<u8>>,
    /// Loadable segments.
    pub segments: Vec<Segment>,
}

impl ElfInfo {
    /// Reads the build id and segments.
    ///
    /// # Errors
    /// [`UnwindError::Elf`] when `data` is not a readable ELF file.
    pub fn parse(data: &[u8]) -> Result<ElfInfo, UnwindError> {
        let file = parse_elf(data)?;
        let segments = file
            .loads
            .iter()
            .map(|l| Segment {
                offset: l.offset,
                vaddr: l.vaddr,
                filesz: l.filesz,
            })
            .collect();
        Ok(ElfInfo {
            build_id: file.build_id,
            segments,
        })
    }

    /// Load bias (runtime address − virtual address) of a mapping of this file that starts
    /// at `start` and maps file offset `offset`, or `None` when no segment holds `offset`.
    #[must_use]
    pub fn bias(&self, start: u64, offset: u64) -> Option<u64> {
        // The last segment that starts in or before the mapping's first page: a segment
        // whose file range ends in that page too (the read-only headers before `.text`)
        // is not the one the mapping was made for.
        self.segments
            .iter()
            .rev()
            .find(|s| {
                let page_start = s.offset & !0xfff;
                offset >= page_start && offset < s.offset + s.filesz.max(1)
            })
            .map(|s| {
                start
                    .wrapping_sub(offset)
                    .wrapping_sub(s.vaddr)
                    .wrapping_add(s.offset)
            })
    }
}

fn parse_elf(data: &[u8]) -> Result<elf::ElfFile, UnwindError> {
    let file = elf::parse(data).map_err(UnwindError::Elf)?;
    if file.machine != elf::EM_X86_64 {
        return Err(UnwindError::Machine(file.machine));
    }
    Ok(file)
}

/// `row` at `pc`, a row before packing. Rows are collected as the 8-byte rows the eBPF side
/// reads, not wider ones: the collected rows of a large binary (millions, before merging)
/// were most of the agent's peak heap. `read_section` refuses a function beyond 4 GiB, so
/// every `pc` fits.
fn at(pc: u64, row: UnwindRow) -> UnwindRow {
    UnwindRow {
        pc: u32::try_from(pc).unwrap_or(u32::MAX),
        ..row
    }
}

/// The `.plt` stub CFA expression GCC and the linkers emit:
/// `DW_OP_breg7 (rsp) N; DW_OP_breg16 (rip) 0; DW_OP_lit15; DW_OP_and; DW_OP_litK;
/// DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus`, i.e. CFA = rsp + N + 8·((rip & 15) ≥ K).
/// Returns `(N, K)`.
fn plt_expression(bytes: &[u8]) -> Option<(i64, u8)> {
    let (&op, rest) = bytes.split_first()?;
    if op != 0x77 {
        return None;
    }
    // N is a signed LEB128; PLT stubs use a small one.
    let (&n, rest) = rest.split_first()?;
    if n & 0x80 != 0 {
        return None;
    }
    let n = i64::from(((n << 1) as i8) >> 1);
    match rest {
        [0x80, 0x00, 0x3f, 0x1a, lit, 0x2a, 0x33, 0x24, 0x22] if (0x30..=0x4f).contains(lit) => {
            Some((n, lit - 0x30))
        }
        _ => None,
    }
}

/// `offset` in units of 8 bytes, if it is a multiple of 8.
fn eighths(offset: i64) -> Option<i64> {
    (offset % 8 == 0).then_some(offset / 8)
}

fn unsupported(pc: u64) -> UnwindRow {
    at(
        pc,
        UnwindRow {
            pc: 0,
            cfa_offset: 0,
            rbp_offset: 0,
            kinds: UnwindRow::pack_kinds(cfa::UNSUPPORTED, rbp::SAME),
        },
    )
}

/// Reads every FDE of one section into `out`; returns the FDE address ranges.
fn read_section<'a, S>(
    section: &S,
    bases: &BaseAddresses,
    name: &'static str,
    skip: &[(u64, u64)],
    out: &mut Rows,
    stats: &mut TableStats,
) -> Result<Vec<(u64, u64)>, UnwindError>
where
    S: UnwindSection<EndianSlice<'a, LittleEndian>>,
{
    let err = |e: gimli::Error| UnwindError::Cfi {
        section: name,
        message: e.to_string(),
    };
    let mut ranges = Vec::new();
    let mut ctx = UnwindContext::new();
    let mut entries = section.entries(bases);
    while let Some(entry) = entries.next().map_err(err)? {
        let CieOrFde::Fde(partial) = entry else {
            continue;
        };
        let fde = match partial.parse(S::cie_from_offset) {
            Ok(f) => f,
            // One bad FDE loses that function only.
            Err(_) => continue,
        };
        let (start, end) = (fde.initial_address(), fde.end_address());
        if start == 0 || end <= start {
            continue; // discarded by the linker
        }
        if skip
            .binary_search_by(|&(s, e)| {
                if e <= start {
                    std::cmp::Ordering::Less
                } else if s > start {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
        {
            continue;
        }
        if end > u64::from(u32::MAX) {
            return Err(UnwindError::TooLarge(format!(
                "address {end:#x} beyond 4 GiB"
            )));
        }
        ranges.push((start, end));
        out.fde_starts.push(out.rows.len());
        stats.fdes += 1;
        if !skip.is_empty() {
            stats.debug_frame_fdes += 1;
        }
        let mut table = match fde.rows(section, bases, &mut ctx) {
            Ok(t) => t,
            Err(_) => {
                out.rows.push(unsupported(start));
                continue;
            }
        };
        loop {
            let row = match table.next_row() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(_) => {
                    break;
                }
            };
            stats.raw_rows += 1;
            let raw = convert(section, row, stats);
            out.rows.push(raw);
        }
        // The end of the function: a gap row unless another FDE starts right here.
        out.rows.push(at(
            end,
            UnwindRow {
                pc: 0,
                cfa_offset: 0,
                rbp_offset: 0,
                kinds: UnwindRow::pack_kinds(cfa::NONE, rbp::SAME),
            },
        ));
    }
    Ok(ranges)
}

fn convert<'a, S>(
    section: &S,
    row: &gimli::UnwindTableRow<usize>,
    stats: &mut TableStats,
) -> UnwindRow
where
    S: UnwindSection<EndianSlice<'a, LittleEndian>>,
{
    let pc = row.start_address();
    match row.register(X86_64::RA) {
        Some(RegisterRule::Undefined) => {
            return at(
                pc,
                UnwindRow {
                    pc: 0,
                    cfa_offset: 0,
                    rbp_offset: 0,
                    kinds: UnwindRow::pack_kinds(cfa::END, rbp::SAME),
                },
            );
        }
        Some(RegisterRule::Offset(-8)) | None => {}
        Some(_) => {
            stats.unsupported_rows += 1;
            return unsupported(pc);
        }
    }
    let (cfa_kind, cfa_offset, plt_threshold) = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            let kind = if *register == X86_64::RSP {
                cfa::RSP
            } else if *register == X86_64::RBP {
                cfa::RBP
            } else {
                stats.unsupported_rows += 1;
                return unsupported(pc);
            };
            (kind, *offset, 0)
        }
        CfaRule::Expression(expr) => match expr
            .get(section)
            .ok()
            .and_then(|e| plt_expression(e.0.slice()))
        {
            Some((n, k)) => {
                stats.plt_rows += 1;
                (cfa::PLT, n, i8::try_from(k).unwrap_or(i8::MAX))
            }
            None => {
                stats.unsupported_rows += 1;
                return unsupported(pc);
            }
        },
    };
    let Some(cfa_offset) = eighths(cfa_offset).and_then(|o| i16::try_from(o).ok()) else {
        stats.unsupported_rows += 1;
        return unsupported(pc);
    };
    let (rbp_kind, rbp_offset) = if cfa_kind == cfa::PLT {
        (rbp::SAME, plt_threshold)
    } else {
        match row.register(X86_64::RBP) {
            None | Some(RegisterRule::SameValue | RegisterRule::Undefined) => (rbp::SAME, 0),
            Some(RegisterRule::Offset(o)) => match eighths(o).and_then(|o| i8::try_from(o).ok()) {
                Some(o) => (rbp::AT_CFA, o),
                None => (rbp::UNKNOWN, 0),
            },
            Some(_) => (rbp::UNKNOWN, 0),
        }
    };
    at(
        pc,
        UnwindRow {
            pc: 0,
            cfa_offset,
            rbp_offset,
            kinds: UnwindRow::pack_kinds(cfa_kind, rbp_kind),
        },
    )
}

impl UnwindTable {
    /// Builds the table of an ELF file's contents.
    ///
    /// # Errors
    /// [`UnwindError`]: not an x86-64 ELF file, no call-frame information, malformed
    /// sections, or a table the eBPF side cannot search. Never panics on bad input.
    pub fn from_elf(data: &[u8]) -> Result<UnwindTable, UnwindError> {
        let file = parse_elf(data)?;
        let mut bases = BaseAddresses::default();
        if let Some(s) = file.section_header(".text") {
            bases = bases.set_text(s.addr);
        }
        if let Some(s) = file.section_header(".got") {
            bases = bases.set_got(s.addr);
        }
        let mut stats = TableStats::default();
        let mut raws = Rows::default();
        let mut have_cfi = false;
        let mut covered = Vec::new();
        if let Some(s) = file.section_header(".eh_frame") {
            let bytes = s
                .data(data)
                .ok_or(UnwindError::Elf(elf::ElfError::Malformed(
                    "`.eh_frame` extends past the end of the file",
                )))?;
            if !bytes.is_empty() {
                have_cfi = true;
                let bases = bases.clone().set_eh_frame(s.addr);
                let mut eh = EhFrame::new(bytes, LittleEndian);
                eh.set_address_size(8);
                covered = read_section(&eh, &bases, ".eh_frame", &[], &mut raws, &mut stats)?;
            }
        }
        if let Some(s) = file.section_header(".debug_frame") {
            // Compressed (`gcc -gz`, `objcopy --compress-debug-sections`) or not. One that
            // does not decompress is an error only when there is no `.eh_frame` to use.
            let bytes = match s.contents(data) {
                Ok(b) => b,
                Err(_) if have_cfi => std::borrow::Cow::Borrowed(&[][..]),
                Err(e) => return Err(UnwindError::Elf(e)),
            };
            let bytes: &[u8] = &bytes;
            if !bytes.is_empty() {
                have_cfi = true;
                covered.sort_unstable();
                let mut df = DebugFrame::new(bytes, LittleEndian);
                df.set_address_size(8);
                // A sentinel so that `skip` is never empty for this section.
                if covered.is_empty() {
                    covered.push((u64::MAX, u64::MAX));
                }
                read_section(&df, &bases, ".debug_frame", &covered, &mut raws, &mut stats)?;
            }
        }
        if !have_cfi {
            return Err(UnwindError::NoCfi);
        }
        let rows = pack(raws)?;
        Ok(UnwindTable { rows, stats })
    }

    /// Bytes the rows take in the eBPF map.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.rows.len() * std::mem::size_of::<UnwindRow>()
    }

    /// The row that covers `pc` (the last row at or before it), as the eBPF side finds it.
    #[must_use]
    pub fn lookup(&self, pc: u64) -> Option<&UnwindRow> {
        let pc = u32::try_from(pc).ok()?;
        let i = self.rows.partition_point(|r| r.pc <= pc);
        i.checked_sub(1).map(|i| &self.rows[i])
    }
}

/// The rows of a binary's FDEs as they are read, before packing: each FDE's rows (its own
/// and the gap row at its end) in a row, in the sections' order.
#[derive(Default)]
struct Rows {
    rows: Vec<UnwindRow>,
    /// Where each FDE's rows start in `rows`, in reading order.
    fde_starts: Vec<usize>,
}

/// Within one PC, the gap row of the previous FDE comes first only if it was pushed
/// first: gap rows sort before real ones explicitly.
fn order_key(r: &UnwindRow) -> (u32, bool) {
    (r.pc, r.cfa_kind() != cfa::NONE)
}

impl Rows {
    /// The rows sorted by [`order_key`], stably. An FDE's rows come in PC order and FDEs
    /// do not overlap, so sorting the few thousand FDEs by their first row and copying
    /// their rows in that order sorts the hundreds of thousands of rows; a merge sort of
    /// the rows themselves was a third of a recording's CPU while it built tables. FDEs that
    /// overlap (malformed or duplicated) are caught by the check after, and sorted row by
    /// row.
    fn in_pc_order(self) -> Vec<UnwindRow> {
        let Rows {
            mut rows,
            fde_starts,
        } = self;
        if rows.is_sorted_by_key(order_key) {
            return rows;
        }
        let mut spans: Vec<(usize, usize)> = fde_starts
            .iter()
            .zip(
                fde_starts
                    .iter()
                    .skip(1)
                    .chain(std::iter::once(&rows.len())),
            )
            .map(|(&s, &e)| (s, e))
            .filter(|&(s, e)| s < e)
            .collect();
        // Stable: FDEs whose first rows tie keep their reading order.
        spans.sort_by_key(|&(s, _)| order_key(&rows[s]));
        let mut out = Vec::with_capacity(rows.len());
        for &(s, e) in &spans {
            out.extend_from_slice(&rows[s..e]);
        }
        if out.len() == rows.len() && out.is_sorted_by_key(order_key) {
            return out;
        }
        drop(out);
        rows.sort_by_key(order_key);
        rows
    }
}

/// Sorts, resolves rows with the same PC (a real rule beats a gap row), merges identical
/// neighbours and checks the table fits the eBPF side. In place: a large binary's rows are
/// millions, and a copy of them at each step was the agent's largest allocation.
fn pack(rows: Rows) -> Result<Vec<UnwindRow>, UnwindError> {
    let mut rows = rows.in_pc_order();
    // Same PC: the later (real) rule wins. `dedup_by` hands the later row first.
    rows.dedup_by(|later, kept| {
        let same = later.pc == kept.pc;
        if same {
            *kept = *later;
        }
        same
    });
    // Merge identical neighbours (the rule is the same, only the PC differs).
    rows.dedup_by(|later, kept| {
        later.kinds == kept.kinds
            && later.cfa_offset == kept.cfa_offset
            && later.rbp_offset == kept.rbp_offset
    });
    if rows.len() > MAX_TABLE_ROWS {
        return Err(UnwindError::TooLarge(format!(
            "{} rows (the eBPF search covers {MAX_TABLE_ROWS})",
            rows.len()
        )));
    }
    rows.shrink_to_fit();
    Ok(rows)
}

#[cfg(test)]
mod tests;
