//! A small, bounds-checked reader for the parts of ELF files the symbolizer needs itself:
//! program headers (file offset to virtual address), section headers (to find
//! `.gopclntab`, `.gnu_debuglink`, `.debug_info`), the GNU build-id and the debug link.
//!
//! blazesym parses symbols and DWARF; this module only answers questions blazesym does
//! not expose. Every read is checked against the file's size and against fixed caps, so a
//! truncated or hostile file gives an [`ElfError`], never a panic or a huge allocation.
//! Only 64-bit little-endian ELF (x86_64, aarch64) is understood.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Largest section this module will read into memory.
const MAX_SECTION: u64 = 512 << 20;
/// Most program or section headers accepted.
const MAX_HEADERS: u64 = 65_535;

/// Why an ELF file could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ElfError {
    /// The file could not be read.
    #[error("failed to read the ELF file")]
    Io(#[from] io::Error),
    /// The file is not a 64-bit little-endian ELF file, or its headers are inconsistent.
    #[error("malformed ELF file: {0}")]
    Malformed(&'static str),
}

/// A `PT_LOAD` segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Load {
    pub(crate) offset: u64,
    pub(crate) filesz: u64,
    pub(crate) vaddr: u64,
    pub(crate) memsz: u64,
    pub(crate) align: u64,
}

/// A section header, with its name resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Section {
    pub(crate) name: String,
    pub(crate) kind: u32,
    pub(crate) addr: u64,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

/// `SHT_NOBITS`: a section with no bytes in the file (`.bss`, or everything in a file
/// made by `objcopy --only-keep-debug` except the debug sections).
const SHT_NOBITS: u32 = 8;

/// What the symbolizer needs to know about one ELF file.
#[derive(Clone, Debug, Default)]
pub(crate) struct ElfInfo {
    pub(crate) loads: Vec<Load>,
    pub(crate) sections: Vec<Section>,
    pub(crate) build_id: Option<Vec<u8>>,
    /// `.gnu_debuglink`: the debug file's name and the CRC-32 of its contents.
    pub(crate) debuglink: Option<(String, u32)>,
}

impl ElfInfo {
    /// The virtual address that file offset `offset` is loaded at.
    pub(crate) fn vaddr_of(&self, offset: u64) -> Option<u64> {
        self.loads
            .iter()
            .find(|l| offset >= l.offset && offset - l.offset < l.filesz)
            .and_then(|l| l.vaddr.checked_add(offset - l.offset))
    }

    /// The program headers the original binary most likely had, for a debug file made by
    /// `objcopy --only-keep-debug` (which zeroes file sizes and rewrites file offsets).
    ///
    /// GNU ld and lld lay loadable segments out in address order, each at the lowest file
    /// offset past the previous one's bytes that is congruent to its address modulo its
    /// alignment (the ELF rule for loadable segments); the first starts at offset 0. File
    /// sizes are taken as memory sizes, which only differs for the last, writable segment
    /// (`.bss`), after all code. Used only when the original binary is not available.
    pub(crate) fn reconstructed_layout(&self) -> ElfInfo {
        let mut loads = self.loads.clone();
        loads.sort_by_key(|l| l.vaddr);
        let mut next = 0u64;
        for (i, load) in loads.iter_mut().enumerate() {
            let align = load.align.max(1);
            let offset = if i == 0 {
                load.vaddr % align
            } else {
                let want = load.vaddr % align;
                let base = next - next % align;
                let candidate = base.saturating_add(want);
                if candidate >= next {
                    candidate
                } else {
                    candidate.saturating_add(align)
                }
            };
            load.offset = offset;
            load.filesz = load.memsz;
            next = offset.saturating_add(load.memsz);
        }
        ElfInfo {
            loads,
            ..ElfInfo::default()
        }
    }

    /// The section called `name`, if it has bytes in the file.
    pub(crate) fn section(&self, name: &str) -> Option<&Section> {
        self.sections
            .iter()
            .find(|s| s.name == name && s.kind != SHT_NOBITS)
    }

    /// Whether the file carries a symbol table or DWARF of its own.
    pub(crate) fn has_debug_info(&self) -> bool {
        self.section(".debug_info").is_some()
    }

    /// Bytes of the sections a symbolizer reads: symbol and string tables and DWARF.
    /// blazesym maps the whole file but only touches these (code is never read), and
    /// builds indexes proportional to them.
    pub(crate) fn symbol_bytes(&self) -> u64 {
        self.sections
            .iter()
            .filter(|s| s.kind != SHT_NOBITS)
            .filter(|s| {
                matches!(&*s.name, ".symtab" | ".strtab" | ".dynsym" | ".dynstr")
                    || s.name.starts_with(".debug_")
                    || s.name.starts_with(".zdebug_")
            })
            .map(|s| s.size)
            .sum()
    }

    /// Whether the file has a (non-dynamic) symbol table.
    pub(crate) fn has_symtab(&self) -> bool {
        self.section(".symtab").is_some()
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Reads `len` bytes at `offset`, refusing reads past the end of a `size`-byte file.
fn read_at(file: &File, size: u64, offset: u64, len: u64) -> Result<Vec<u8>, ElfError> {
    let end = offset
        .checked_add(len)
        .ok_or(ElfError::Malformed("offset overflows"))?;
    if end > size {
        return Err(ElfError::Malformed("data extends past the end of the file"));
    }
    if len > MAX_SECTION {
        return Err(ElfError::Malformed("section too large"));
    }
    let mut buf = vec![0; usize::try_from(len).map_err(|_| ElfError::Malformed("too large"))?];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Reads the bytes of `section`.
pub(crate) fn read_section(file: &File, section: &Section) -> Result<Vec<u8>, ElfError> {
    let size = file.metadata()?.len();
    read_at(file, size, section.offset, section.size)
}

/// Parses the headers, build-id and debug link of `file`.
pub(crate) fn parse(file: &File) -> Result<ElfInfo, ElfError> {
    let size = file.metadata()?.len();
    let header = read_at(file, size, 0, 64)?;
    if header[..4] != *b"\x7fELF" {
        return Err(ElfError::Malformed("no ELF magic"));
    }
    if header[4] != 2 || header[5] != 1 {
        return Err(ElfError::Malformed("not 64-bit little-endian"));
    }
    let bad = || ElfError::Malformed("truncated header");
    let phoff = u64_at(&header, 0x20).ok_or_else(bad)?;
    let shoff = u64_at(&header, 0x28).ok_or_else(bad)?;
    let phentsize = u64::from(u16_at(&header, 0x36).ok_or_else(bad)?);
    let phnum = u64::from(u16_at(&header, 0x38).ok_or_else(bad)?);
    let shentsize = u64::from(u16_at(&header, 0x3a).ok_or_else(bad)?);
    let shnum = u64::from(u16_at(&header, 0x3c).ok_or_else(bad)?);
    let shstrndx = u64::from(u16_at(&header, 0x3e).ok_or_else(bad)?);
    let mut info = ElfInfo::default();

    if phnum > 0 {
        if phentsize < 56 || phnum > MAX_HEADERS {
            return Err(ElfError::Malformed("bad program header size"));
        }
        let table = read_at(file, size, phoff, phentsize * phnum)?;
        for i in 0..phnum {
            let at = usize::try_from(i * phentsize).map_err(|_| bad())?;
            let kind = u32_at(&table, at).ok_or_else(bad)?;
            if kind == 1 {
                info.loads.push(Load {
                    offset: u64_at(&table, at + 8).ok_or_else(bad)?,
                    vaddr: u64_at(&table, at + 16).ok_or_else(bad)?,
                    filesz: u64_at(&table, at + 32).ok_or_else(bad)?,
                    memsz: u64_at(&table, at + 40).ok_or_else(bad)?,
                    align: u64_at(&table, at + 48).ok_or_else(bad)?,
                });
            }
        }
    }

    if shnum > 0 && shoff != 0 {
        if shentsize < 64 || shnum > MAX_HEADERS || shstrndx >= shnum {
            return Err(ElfError::Malformed("bad section header table"));
        }
        let table = read_at(file, size, shoff, shentsize * shnum)?;
        let field = |i: u64, off: usize, wide: bool| -> Option<u64> {
            let at = usize::try_from(i * shentsize).ok()? + off;
            if wide {
                u64_at(&table, at)
            } else {
                u32_at(&table, at).map(u64::from)
            }
        };
        let strtab_off = field(shstrndx, 0x18, true).ok_or_else(bad)?;
        let strtab_size = field(shstrndx, 0x20, true).ok_or_else(bad)?;
        let strtab = read_at(file, size, strtab_off, strtab_size.min(1 << 20))?;
        for i in 0..shnum {
            let name_off = field(i, 0, false).ok_or_else(bad)?;
            let name = usize::try_from(name_off)
                .ok()
                .and_then(|at| strtab.get(at..))
                .and_then(|rest| rest.split(|&b| b == 0).next())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            info.sections.push(Section {
                name,
                kind: u32::try_from(field(i, 4, false).ok_or_else(bad)?).unwrap_or(0),
                addr: field(i, 0x10, true).ok_or_else(bad)?,
                offset: field(i, 0x18, true).ok_or_else(bad)?,
                size: field(i, 0x20, true).ok_or_else(bad)?,
            });
        }
    }

    if let Some(notes) = info.section(".note.gnu.build-id") {
        let data = read_section(file, notes)?;
        info.build_id = parse_build_id_note(&data);
    }
    if let Some(link) = info.section(".gnu_debuglink") {
        let data = read_section(file, link)?;
        info.debuglink = parse_debuglink(&data);
    }
    Ok(info)
}

/// The descriptor of the first `NT_GNU_BUILD_ID` note in a notes section.
fn parse_build_id_note(mut data: &[u8]) -> Option<Vec<u8>> {
    while data.len() >= 12 {
        let namesz = usize::try_from(u32_at(data, 0)?).ok()?;
        let descsz = usize::try_from(u32_at(data, 4)?).ok()?;
        let kind = u32_at(data, 8)?;
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = name_end.checked_next_multiple_of(4)?;
        let desc_end = desc_start.checked_add(descsz)?;
        let name = data.get(12..name_end)?;
        let desc = data.get(desc_start..desc_end)?;
        if kind == 3 && name == b"GNU\0" {
            return Some(desc.to_vec());
        }
        data = data.get(desc_end.checked_next_multiple_of(4)?.min(data.len())..)?;
    }
    None
}

/// `.gnu_debuglink`: a NUL-terminated name, padding to 4 bytes, a little-endian CRC-32.
pub(crate) fn parse_debuglink(data: &[u8]) -> Option<(String, u32)> {
    let nul = data.iter().position(|&b| b == 0)?;
    if nul == 0 {
        return None;
    }
    let name = std::str::from_utf8(&data[..nul]).ok()?;
    if name.contains('/') {
        return None;
    }
    let crc_at = (nul + 1).next_multiple_of(4);
    Some((name.to_owned(), u32_at(data, crc_at)?))
}

/// The CRC-32 (IEEE, as `.gnu_debuglink` uses) of everything `file` holds.
pub(crate) fn file_crc32(file: &File) -> io::Result<u32> {
    let mut table = [0u32; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut c = u32::try_from(i).unwrap_or(0);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    let mut crc = !0u32;
    let mut buf = vec![0; 1 << 16];
    let mut offset = 0;
    loop {
        let n = file.read_at(&mut buf, offset)?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            crc = table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
        offset += n as u64;
    }
    Ok(!crc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn own_exe() -> File {
        File::open("/proc/self/exe").expect("open own exe")
    }

    #[test]
    fn reads_own_headers_and_build_id() {
        let info = parse(&own_exe()).expect("parse own exe");
        assert!(!info.loads.is_empty());
        assert!(info.section(".text").is_some());
        let id = info.build_id.expect("test binaries have a build-id");
        let blaze = blazesym::helper::read_elf_build_id("/proc/self/exe")
            .expect("blazesym build-id")
            .expect("some");
        assert_eq!(id, blaze.as_ref());
    }

    #[test]
    fn truncated_and_garbage_files_are_errors_not_panics() {
        let whole = std::fs::read("/proc/self/exe").expect("read own exe");
        for len in [0, 3, 4, 20, 63, 64, 65, 200, 4096, whole.len() / 2] {
            let mut tmp = tempfile::tempfile().expect("temp");
            tmp.write_all(&whole[..len.min(whole.len())])
                .expect("write");
            // Only must not panic; a prefix with headers intact may still parse.
            let _ = parse(&tmp);
        }
        let mut tmp = tempfile::tempfile().expect("temp");
        let mut junk = b"\x7fELF\x02\x01".to_vec();
        junk.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        tmp.write_all(&junk).expect("write");
        let _ = parse(&tmp);
        assert!(matches!(
            parse(&tempfile::tempfile().expect("temp")),
            Err(ElfError::Malformed(_))
        ));
    }

    #[test]
    fn crc32_matches_the_reference_value() {
        let mut tmp = tempfile::tempfile().expect("temp");
        tmp.write_all(b"123456789").expect("write");
        assert_eq!(file_crc32(&tmp).expect("crc"), 0xcbf4_3926);
    }

    #[test]
    fn debuglink_sections_parse_and_bad_ones_are_refused() {
        let mut data = b"app.debug\0\0\0".to_vec();
        data.extend(0x1234_5678u32.to_le_bytes());
        assert_eq!(
            parse_debuglink(&data),
            Some(("app.debug".to_owned(), 0x1234_5678))
        );
        assert_eq!(parse_debuglink(b"app.debug\0"), None);
        assert_eq!(parse_debuglink(b"\0\0\0\0\0\0\0\0"), None);
        assert_eq!(parse_debuglink(b"../x\0\0\0\0\x01\x02\x03\x04"), None);
    }

    #[test]
    fn the_original_layout_is_reconstructed_from_a_debug_file() {
        // The program headers of a small PIE built by GNU ld, and of its debug file.
        let load = |offset, filesz, vaddr, memsz| Load {
            offset,
            filesz,
            vaddr,
            memsz,
            align: 0x1000,
        };
        let original = [
            load(0, 0x6f8, 0, 0x6f8),
            load(0x1000, 0x275, 0x1000, 0x275),
            load(0x2000, 0x188, 0x2000, 0x188),
            load(0x2dd0, 0x260, 0x3dd0, 0x270),
        ];
        let debug = ElfInfo {
            loads: vec![
                load(0, 0x39c, 0, 0x6f8),
                load(0, 0, 0x1000, 0x275),
                load(0, 0, 0x2000, 0x188),
                load(0xdd0, 0, 0x3dd0, 0x270),
            ],
            ..ElfInfo::default()
        };
        let rebuilt = debug.reconstructed_layout();
        for (got, want) in rebuilt.loads.iter().zip(&original) {
            assert_eq!(got.offset, want.offset);
            assert_eq!(got.vaddr, want.vaddr);
        }
        assert_eq!(rebuilt.vaddr_of(0x1080), Some(0x1080));
        // Non-PIE: text at 0x401000 from file offset 0x1000.
        let non_pie = ElfInfo {
            loads: vec![load(0, 0, 0x400000, 0x500), load(0, 0, 0x401000, 0x2000)],
            ..ElfInfo::default()
        };
        assert_eq!(
            non_pie.reconstructed_layout().vaddr_of(0x1010),
            Some(0x401010)
        );
    }
}
