//! Function names from a Go binary's `.gopclntab`, for Go binaries without a symbol table
//! (`go build -ldflags='-s -w'`): the Go runtime needs the pclntab for tracebacks, so it
//! survives stripping.
//!
//! Only the Go 1.18+ layout is understood (magic `0xfffffff0`, Go 1.18–1.19, and
//! `0xfffffff1`, Go 1.20+): a header of eight pointer-sized fields after 8 bytes, a
//! function table of `(entry offset, func offset)` `u32` pairs sorted by entry (plus a
//! final end entry), and per function a `_func` record whose second `i32` is the offset of
//! its NUL-terminated name in the function-name table. Every read is bounds-checked; a
//! truncated or inconsistent table gives `None` (at parse) or no name (at lookup).

/// A parsed `.gopclntab`.
#[derive(Debug)]
pub(crate) struct GoTable {
    data: Vec<u8>,
    nfunc: usize,
    text_start: u64,
    funcname_off: usize,
    pcln_off: usize,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn word_at(b: &[u8], at: usize, ptr_size: usize) -> Option<u64> {
    match ptr_size {
        8 => Some(u64::from_le_bytes(
            b.get(at..at.checked_add(8)?)?.try_into().ok()?,
        )),
        4 => u32_at(b, at).map(u64::from),
        _ => None,
    }
}

impl GoTable {
    /// Parses the section's bytes; `text_fallback` (the `.text` address) is used when the
    /// header's text start is 0.
    pub(crate) fn parse(data: Vec<u8>, text_fallback: u64) -> Option<GoTable> {
        let magic = u32_at(&data, 0)?;
        if magic != 0xffff_fff0 && magic != 0xffff_fff1 {
            return None;
        }
        let ptr_size = usize::from(*data.get(7)?);
        let field = |k: usize| word_at(&data, 8 + k * ptr_size, ptr_size);
        let nfunc = usize::try_from(field(0)?).ok()?;
        let text_start = match field(2)? {
            0 => text_fallback,
            start => start,
        };
        let funcname_off = usize::try_from(field(3)?).ok()?;
        let pcln_off = usize::try_from(field(7)?).ok()?;
        // The function table (nfunc + 1 entries of 8 bytes) must fit.
        let table_end = nfunc
            .checked_add(1)?
            .checked_mul(8)?
            .checked_add(pcln_off)?;
        if table_end > data.len() || funcname_off > data.len() {
            return None;
        }
        Some(GoTable {
            data,
            nfunc,
            text_start,
            funcname_off,
            pcln_off,
        })
    }

    /// Bytes held in memory.
    pub(crate) fn bytes(&self) -> u64 {
        self.data.len() as u64
    }

    /// The number of functions in the table.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.nfunc
    }

    fn entry(&self, i: usize) -> Option<u32> {
        u32_at(&self.data, self.pcln_off.checked_add(i.checked_mul(8)?)?)
    }

    /// The name of the function containing virtual address `vaddr`.
    pub(crate) fn lookup(&self, vaddr: u64) -> Option<&str> {
        let rel = u32::try_from(vaddr.checked_sub(self.text_start)?).ok()?;
        if self.nfunc == 0 || rel < self.entry(0)? || rel >= self.entry(self.nfunc)? {
            return None;
        }
        // Largest i with entry(i) <= rel.
        let (mut lo, mut hi) = (0, self.nfunc);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid)? <= rel {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let funcoff =
            usize::try_from(u32_at(&self.data, self.pcln_off.checked_add(lo * 8 + 4)?)?).ok()?;
        let func = self.pcln_off.checked_add(funcoff)?;
        let name_off = usize::try_from(i32::from_le_bytes(
            self.data
                .get(func.checked_add(4)?..func.checked_add(8)?)?
                .try_into()
                .ok()?,
        ))
        .ok()?;
        let start = self.funcname_off.checked_add(name_off)?;
        let rest = self.data.get(start..)?;
        let name = &rest[..rest.iter().position(|&b| b == 0)?];
        std::str::from_utf8(name).ok().filter(|n| !n.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built Go 1.18 table: text at 0x401000, two functions and an end entry.
    fn table() -> Vec<u8> {
        let mut d = Vec::new();
        d.extend(0xffff_fff0u32.to_le_bytes());
        d.extend([0, 0, 1, 8]);
        let header_len = 8 + 8 * 8;
        let names = b"main.hot\0main.cold\0";
        let funcname_off = header_len as u64;
        let pcln_off = funcname_off + names.len() as u64;
        for v in [2u64, 0, 0x401000, funcname_off, 0, 0, 0, pcln_off] {
            d.extend(v.to_le_bytes());
        }
        d.extend(names);
        // functab: (entryoff, funcoff) x3; funcs follow at funcoff 24 and 32.
        for (entry, func) in [(0u32, 24u32), (0x100, 32), (0x180, 0)] {
            d.extend(entry.to_le_bytes());
            d.extend(func.to_le_bytes());
        }
        for (entry, name) in [(0u32, 0i32), (0x100, 9)] {
            d.extend(entry.to_le_bytes());
            d.extend(name.to_le_bytes());
        }
        d
    }

    #[test]
    fn finds_functions_by_address() {
        let t = GoTable::parse(table(), 0).expect("parse");
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(0x401000), Some("main.hot"));
        assert_eq!(t.lookup(0x4010ff), Some("main.hot"));
        assert_eq!(t.lookup(0x401100), Some("main.cold"));
        assert_eq!(t.lookup(0x40117f), Some("main.cold"));
        assert_eq!(t.lookup(0x401180), None);
        assert_eq!(t.lookup(0x400fff), None);
        assert_eq!(t.lookup(0), None);
        assert_eq!(t.lookup(u64::MAX), None);
    }

    #[test]
    fn truncated_or_corrupt_tables_never_panic() {
        let whole = table();
        for len in 0..whole.len() {
            if let Some(t) = GoTable::parse(whole[..len].to_vec(), 0) {
                for addr in (0x400f00..0x401200).step_by(0x40) {
                    let _ = t.lookup(addr);
                }
            }
        }
        // Flip every byte in turn: lookups may be wrong but must not panic.
        for i in 0..whole.len() {
            let mut bad = whole.clone();
            bad[i] ^= 0xff;
            if let Some(t) = GoTable::parse(bad, 0x401000) {
                for addr in (0x400f00..0x401200).step_by(0x40) {
                    let _ = t.lookup(addr);
                }
            }
        }
        let mut wrong_magic = whole;
        wrong_magic[0] = 0;
        assert!(GoTable::parse(wrong_magic, 0).is_none());
    }
}
