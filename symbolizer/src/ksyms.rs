//! The kernel's symbols as Ember keeps them for a boot: a sorted table of addresses and
//! names, written once into this boot's copy (`kernel_copy`) and mapped by every later
//! run.
//!
//! blazesym's kallsyms resolver reads 120,000 text lines, allocates a string for each
//! symbol and sorts them before the first kernel frame is named: 12–16 ms of a short
//! `ember record`, and 5–7 MiB of an agent's heap for as long as it runs. The copy is
//! written sorted instead, in a layout a lookup reads where it lies, so a later run maps
//! it, checks it in one pass and binary-searches it; its pages are the page cache's, not
//! the process's heap.
//!
//! Names are chosen as blazesym chooses them (`kernel`'s test
//! `the_running_kernels_copy_gives_the_live_names` holds the two to that on the running
//! kernel): the nearest symbol at or below the address, and of several at one address the
//! first in kallsyms.
//!
//! The layout, after the copy's first line (its key, ended by `\n`) and zeros up to a
//! multiple of 8 bytes: the number of symbols `n` and the length of the names (`u64`
//! each), the `n` addresses, ascending (`u64`), the end of each name in the names (`u32`),
//! and the names; all little-endian.

use std::fs::File;
use std::io::{self, BufRead, Write};

use memmap2::Mmap;

/// The most symbols a table holds (kallsyms has about 200,000 with many modules loaded).
const MOST_SYMBOLS: u64 = 1 << 24;

/// Symbols gathered for a table: names in one buffer, 16 bytes a symbol, so making the
/// copy costs little more memory than the table itself (the agent makes it at start).
#[derive(Debug, Default)]
pub(crate) struct SortedSymbols {
    /// (address, start of the name in `names`, its length)
    symbols: Vec<(u64, u32, u32)>,
    names: String,
}

impl SortedSymbols {
    /// Adds a symbol; one at address 0 (kallsyms hides an address so) is skipped.
    ///
    /// # Errors
    /// When the names would exceed 4 GiB, or the symbols [`MOST_SYMBOLS`].
    pub(crate) fn push(&mut self, addr: u64, name: &str) -> io::Result<()> {
        if addr == 0 {
            return Ok(());
        }
        let too_many = || invalid("too many kernel symbols to keep".to_owned());
        let (Ok(start), Ok(len)) = (u32::try_from(self.names.len()), u32::try_from(name.len()))
        else {
            return Err(too_many());
        };
        if start.checked_add(len).is_none() || self.symbols.len() as u64 >= MOST_SYMBOLS {
            return Err(too_many());
        }
        self.names.push_str(name);
        self.symbols.push((addr, start, len));
        Ok(())
    }

    /// Whether a symbol of this name was added.
    #[cfg(test)]
    pub(crate) fn has(&self, name: &str) -> bool {
        self.symbols
            .iter()
            .any(|&(_, start, len)| &self.names[start as usize..(start + len) as usize] == name)
    }

    /// Sorts the symbols by address, ties in the order the lines came.
    pub(crate) fn sort(&mut self) {
        self.symbols.sort_by_key(|s| s.0);
    }

    /// Number of symbols.
    pub(crate) fn len(&self) -> usize {
        self.symbols.len()
    }

    /// As [`KernelSymbols::find`]; the symbols must be sorted ([`SortedSymbols::sort`]).
    pub(crate) fn find(&self, addr: u64) -> Option<(&str, u64)> {
        let (i, at) = nearest_at_or_below(self.symbols.len(), |i| self.symbols[i].0, addr)?;
        let (_, start, len) = self.symbols[i];
        let name = self.names.get(start as usize..(start + len) as usize)?;
        Some((name, addr - at))
    }

    /// Writes the table (see the module documentation), `offset` bytes into the file,
    /// sorted by address, ties in the order the lines came.
    ///
    /// # Errors
    /// When writing fails.
    pub(crate) fn write(mut self, out: &mut impl Write, offset: usize) -> io::Result<()> {
        self.sort();
        out.write_all(&[0; 8][..offset.next_multiple_of(8) - offset])?;
        out.write_all(&(self.symbols.len() as u64).to_le_bytes())?;
        out.write_all(&(self.names.len() as u64).to_le_bytes())?;
        for &(addr, _, _) in &self.symbols {
            out.write_all(&addr.to_le_bytes())?;
        }
        // Ends within `names`, below 4 GiB (`push`).
        let mut end = 0u32;
        for &(_, _, len) in &self.symbols {
            end += len;
            out.write_all(&end.to_le_bytes())?;
        }
        for &(_, start, len) in &self.symbols {
            out.write_all(&self.names.as_bytes()[start as usize..(start + len) as usize])?;
        }
        Ok(())
    }
}

/// A mapped table of kernel symbols.
#[derive(Debug)]
pub(crate) struct KernelSymbols {
    map: Mmap,
    count: usize,
    addrs: usize,
    ends: usize,
    names: usize,
}

impl KernelSymbols {
    /// Maps the table in copy `file`, after its first line, and checks it whole: the
    /// sizes against the file's, the addresses ascending and the names' ends in order.
    ///
    /// # Errors
    /// When the file cannot be mapped, or its table is not whole and in order.
    pub(crate) fn open(file: &File) -> io::Result<KernelSymbols> {
        // SAFETY: the copy is written to a temporary file and renamed into place, in a
        // directory only this user can write (`copies::write_private`), so the mapped
        // file is never changed or truncated by Ember; it is checked whole before use.
        let map = unsafe { Mmap::map(file)? };
        let bad = |what: &str| invalid(format!("the kernel symbols' copy is damaged: {what}"));
        let line_end = map
            .iter()
            .take(4096)
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("no key line"))?;
        let start = (line_end + 1).next_multiple_of(8);
        let word = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                map.get(at..at.checked_add(8)?)?.try_into().ok()?,
            ))
        };
        let (Some(count), Some(names_len)) = (word(start), word(start + 8)) else {
            return Err(bad("no table"));
        };
        if count > MOST_SYMBOLS || names_len > u64::from(u32::MAX) {
            return Err(bad("impossible sizes"));
        }
        // Both bounded above, so none of this overflows.
        let (count, names_len) = (count as usize, names_len as usize);
        let addrs = start + 16;
        let ends = addrs + 8 * count;
        let names = ends + 4 * count;
        if map.len() != names + names_len {
            return Err(bad("the sizes do not add up to the file's"));
        }
        let table = KernelSymbols {
            map,
            count,
            addrs,
            ends,
            names,
        };
        let mut last = (0u64, 0u32);
        for i in 0..count {
            let now = (table.addr(i), table.end(i));
            if now.0 < last.0 || now.1 < last.1 {
                return Err(bad("out of order"));
            }
            last = now;
        }
        if last.1 as usize != names_len {
            return Err(bad("the names' ends do not end the names"));
        }
        Ok(table)
    }

    fn addr(&self, i: usize) -> u64 {
        let at = self.addrs + 8 * i;
        self.map.get(at..at + 8).map_or(u64::MAX, |b| {
            u64::from_le_bytes(b.try_into().unwrap_or_default())
        })
    }

    fn end(&self, i: usize) -> u32 {
        let at = self.ends + 4 * i;
        self.map
            .get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    /// Number of symbols.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// The symbol at or nearest below `addr` (the first of several at one address), and
    /// how far `addr` is past it.
    pub(crate) fn find(&self, addr: u64) -> Option<(&str, u64)> {
        let (i, at) = nearest_at_or_below(self.count, |i| self.addr(i), addr)?;
        let start = if i == 0 { 0 } else { self.end(i - 1) as usize };
        let end = self.end(i) as usize;
        let name = self.map.get(self.names + start..self.names + end)?;
        Some((std::str::from_utf8(name).ok()?, addr - at))
    }
}

/// Of `count` symbols sorted by address (`addr_of`), the index and address of the one at
/// or nearest below `addr`, and of several at that address the first.
fn nearest_at_or_below(
    count: usize,
    addr_of: impl Fn(usize) -> u64,
    addr: u64,
) -> Option<(usize, u64)> {
    // The first symbol above `addr`.
    let (mut lo, mut hi) = (0, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if addr_of(mid) <= addr {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let mut i = lo.checked_sub(1)?;
    let at = addr_of(i);
    while i > 0 && addr_of(i - 1) == at {
        i -= 1;
    }
    Some((i, at))
}

/// A symbol line of kallsyms: `address type name [module]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KallsymsLine<'a> {
    pub(crate) addr: u64,
    pub(crate) name: &'a str,
    /// The bracketed module (`[virtio_net]`, `[bpf]`), if any.
    pub(crate) module: Option<&'a str>,
}

impl<'a> KallsymsLine<'a> {
    /// The symbol `line` lists; `None` for any other line (a copy's key line, a line
    /// without a name or with a bad address).
    pub(crate) fn parse(line: &'a str) -> Option<Self> {
        let mut fields = line.split_ascii_whitespace();
        let (addr, _kind, name) = (fields.next()?, fields.next()?, fields.next()?);
        Some(KallsymsLine {
            addr: u64::from_str_radix(addr, 16).ok()?,
            name,
            module: fields.next(),
        })
    }
}

/// Calls `each` with every symbol line of `kallsyms`, read line by line, at most
/// `max_bytes` of it.
///
/// # Errors
/// When reading fails, the text is longer than `max_bytes`, or `each` fails.
pub(crate) fn each_line(
    mut kallsyms: impl BufRead,
    max_bytes: u64,
    mut each: impl FnMut(KallsymsLine<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let mut line = String::new();
    let mut total = 0u64;
    loop {
        line.clear();
        let n = kallsyms.read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        total += n as u64;
        if total > max_bytes {
            return Err(invalid(format!(
                "kallsyms is larger than {max_bytes} bytes"
            )));
        }
        if let Some(symbol) = KallsymsLine::parse(&line) {
            each(symbol)?;
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "# a key line\n";

    fn table_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(KEY.as_bytes()).expect("key");
        let mut symbols = SortedSymbols::default();
        each_line(text.as_bytes(), u64::MAX, |l| symbols.push(l.addr, l.name)).expect("push");
        symbols.write(&mut file, KEY.len()).expect("write");
        file
    }

    #[test]
    fn the_nearest_symbol_below_and_the_first_of_equals() {
        let file = table_file(
            "0000000000000000 A fixed_percpu_data\n\
             ffffffff81000000 T srso_alias_untrain_ret\n\
             ffffffff81000000 T _stext\n\
             ffffffff81001000 T do_syscall_64\n\
             ffffffffc0200000 t virtnet_poll\t[virtio_net]\n\
             ffffffffc0100000 t ext4_map\t[ext4]\n\
             not a line\n\
             zzzz T bad_address\n\
             ffffffff81002000 T\n\
             ffffffff81003000 T schedule\n",
        );
        let syms = KernelSymbols::open(file.as_file()).expect("open");
        assert_eq!(syms.len(), 6);
        assert_eq!(
            syms.find(0xffff_ffff_8100_0000),
            Some(("srso_alias_untrain_ret", 0))
        );
        assert_eq!(
            syms.find(0xffff_ffff_8100_0fff),
            Some(("srso_alias_untrain_ret", 0xfff))
        );
        assert_eq!(syms.find(0xffff_ffff_8100_1000), Some(("do_syscall_64", 0)));
        // The line without a name is skipped, so its address is do_syscall_64's.
        assert_eq!(
            syms.find(0xffff_ffff_8100_2010),
            Some(("do_syscall_64", 0x1010))
        );
        assert_eq!(syms.find(0xffff_ffff_8100_3001), Some(("schedule", 1)));
        // Modules out of order in kallsyms are sorted.
        assert_eq!(syms.find(0xffff_ffff_c010_0040), Some(("ext4_map", 0x40)));
        assert_eq!(syms.find(0xffff_ffff_c020_0000), Some(("virtnet_poll", 0)));
        assert_eq!(syms.find(0xffff_ffff_80ff_ffff), None);
        assert_eq!(syms.find(0), None);
        assert_eq!(syms.find(u64::MAX).map(|s| s.0), Some("virtnet_poll"));
    }

    #[test]
    fn gathered_symbols_name_as_the_written_table_does() {
        let mut syms = SortedSymbols::default();
        let text = "ffffffffc0300000 t second\t[bpf]\nffffffffc0200000 t first\t[bpf]\n\
                    ffffffffc0200000 t alias\t[bpf]\n";
        each_line(text.as_bytes(), u64::MAX, |l| syms.push(l.addr, l.name)).expect("push");
        syms.sort();
        assert_eq!(syms.len(), 3);
        assert_eq!(syms.find(0xffff_ffff_c020_0010), Some(("first", 0x10)));
        assert_eq!(syms.find(0xffff_ffff_c030_0000), Some(("second", 0)));
        assert_eq!(syms.find(0xffff_ffff_c01f_ffff), None);
    }

    #[test]
    fn an_empty_table_names_nothing() {
        let file = table_file("");
        let syms = KernelSymbols::open(file.as_file()).expect("open");
        assert_eq!((syms.len(), syms.find(0xffff_ffff_8100_0000)), (0, None));
    }

    #[test]
    fn a_damaged_table_is_refused_with_what_is_wrong() {
        let good = std::fs::read(
            table_file("ffffffff81000000 T _stext\nffffffff81001000 T do_syscall_64\n").path(),
        )
        .expect("read");
        let start = KEY.len().next_multiple_of(8);
        let refused = |bytes: &[u8], why: &str| {
            let mut file = tempfile::NamedTempFile::new().expect("temp file");
            file.write_all(bytes).expect("write");
            let err = KernelSymbols::open(file.as_file()).expect_err(why);
            assert!(err.to_string().contains(why), "{err}");
        };
        refused(b"", "no key line");
        refused(&[b'x'; 5000], "no key line");
        refused(&good[..start + 4], "no table");
        refused(&good[..good.len() - 1], "do not add up");
        let mut longer = good.clone();
        longer.push(b'x');
        refused(&longer, "do not add up");
        let mut huge = good.clone();
        huge[start..start + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        refused(&huge, "impossible sizes");
        // The two addresses swapped.
        let mut unsorted = good.clone();
        let addrs = start + 16;
        unsorted.copy_within(addrs..addrs + 8, addrs + 16);
        unsorted.copy_within(addrs + 8..addrs + 16, addrs);
        unsorted.copy_within(addrs + 16..addrs + 24, addrs + 8);
        refused(&unsorted, "out of order");
        // The last name's end short of the names' length.
        let mut short = good.clone();
        let last_end = addrs + 16 + 4;
        short[last_end] -= 1;
        refused(&short, "do not end the names");
        // A name that is not UTF-8 is not a name, and nothing panics.
        let mut binary = good;
        let first_name = addrs + 16 + 8;
        binary[first_name] = 0xff;
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(&binary).expect("write");
        let syms = KernelSymbols::open(file.as_file()).expect("sizes and order are fine");
        assert_eq!(syms.find(0xffff_ffff_8100_0010), None);
        assert_eq!(
            syms.find(0xffff_ffff_8100_1010),
            Some(("do_syscall_64", 0x10))
        );
    }
}
