//! Ember's one ELF reader: the parts of ELF files that the unwinder (call-frame sections,
//! load segments, build-id) and the symbolizer (section headers, build-id, debug link,
//! the layout of a separate debug file) need, read the same way for both.
//!
//! [`parse`] reads the file header, the program headers (`PT_LOAD` segments), the section
//! headers with their names, the GNU build-id and the `.gnu_debuglink`, from any
//! [`Source`]: a [`File`] is read with `pread` (a binary of hundreds of megabytes is never
//! read whole), a byte slice in place. Section contents come from [`read_section`] (a
//! copy, capped) or [`Section::data`] (a sub-slice of a slice source).
//!
//! Every read is checked against the source's size and against fixed caps, and every
//! offset computation against overflow, so a truncated, corrupt or hostile file gives an
//! [`ElfError`], never a panic or a huge allocation. Only 64-bit little-endian ELF (x86_64,
//! aarch64) is understood; [`ElfFile::machine`] says which machine it was built for.
//!
//! blazesym parses symbols and DWARF for the symbolizer and gimli parses call-frame
//! information for the unwinder; this module only answers what they do not.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Largest section [`read_section`] reads into memory.
const MAX_SECTION: u64 = 512 << 20;
/// Most program or section headers accepted.
const MAX_HEADERS: u64 = 65_535;
/// Largest section-name string table read.
const MAX_NAMES: u64 = 1 << 20;
/// Largest note section or segment searched for a build-id.
const MAX_NOTES: u64 = 1 << 20;

/// `e_machine` of x86-64.
pub const EM_X86_64: u16 = 62;
/// `SHT_NOBITS`: a section with no bytes in the file (`.bss`, or everything in a file
/// made by `objcopy --only-keep-debug` except the debug sections).
pub const SHT_NOBITS: u32 = 8;
/// `SHT_NOTE`.
const SHT_NOTE: u32 = 7;
/// `SHF_COMPRESSED`: the section's bytes start with a compression header.
pub const SHF_COMPRESSED: u64 = 0x800;
/// `SHF_ALLOC`: the section is loaded into memory.
const SHF_ALLOC: u64 = 0x2;

/// `ELFCOMPRESS_ZLIB`: the compressed bytes are a zlib stream.
pub const ELFCOMPRESS_ZLIB: u32 = 1;

/// `ELFCOMPRESS_ZSTD`: the compressed bytes are a zstd frame.
pub const ELFCOMPRESS_ZSTD: u32 = 2;

/// The most a compressed section may decompress to (256 MiB; the `.debug_frame` of a
/// 1 GB debug build is a few tens of MB). A header claiming more is refused rather than
/// allocated: it is corrupt or hostile.
pub const MAX_DECOMPRESSED: u64 = 256 << 20;
/// `PT_LOAD`.
const PT_LOAD: u32 = 1;
/// `PT_NOTE`.
const PT_NOTE: u32 = 4;

/// Why an ELF file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// The file could not be read.
    #[error("failed to read the ELF file")]
    Io(#[from] io::Error),
    /// The file is not a 64-bit little-endian ELF file, or its headers are inconsistent.
    #[error("malformed ELF file: {0}")]
    Malformed(&'static str),
    /// A compressed section ([`SHF_COMPRESSED`]) that cannot be decompressed.
    #[error("compressed section `{section}`: {reason}")]
    Compressed {
        /// The section's name.
        section: String,
        /// Why: an unknown algorithm, a size beyond [`MAX_DECOMPRESSED`], corrupt data.
        reason: String,
    },
}

/// Something an ELF file can be read from: a [`File`] (with `pread`) or bytes in memory.
pub trait Source {
    /// The size in bytes.
    ///
    /// # Errors
    /// When the size cannot be found out (`fstat` failed).
    fn size(&self) -> io::Result<u64>;

    /// Fills `buf` from `offset`.
    ///
    /// # Errors
    /// When the bytes are not there or cannot be read.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl Source for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl Source for [u8] {
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// A `PT_LOAD` segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// File offset.
    pub offset: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Virtual address.
    pub vaddr: u64,
    /// Bytes in memory.
    pub memsz: u64,
    /// Alignment.
    pub align: u64,
}

/// A section header, with its name resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Its name (lossily UTF-8; empty when the name is out of the string table).
    pub name: String,
    /// `sh_type`.
    pub kind: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// Virtual address.
    pub addr: u64,
    /// File offset.
    pub offset: u64,
    /// Size (in the file, unless [`SHT_NOBITS`]).
    pub size: u64,
}

impl Section {
    /// Whether its bytes are compressed ([`SHF_COMPRESSED`]).
    #[must_use]
    pub fn is_compressed(&self) -> bool {
        self.flags & SHF_COMPRESSED != 0
    }

    /// Its bytes within `data`, the whole file; `None` for a section without bytes in the
    /// file or one that extends past the end.
    #[must_use]
    pub fn data<'a>(&self, data: &'a [u8]) -> Option<&'a [u8]> {
        if self.kind == SHT_NOBITS {
            return Some(&[]);
        }
        let start = usize::try_from(self.offset).ok()?;
        let len = usize::try_from(self.size).ok()?;
        data.get(start..start.checked_add(len)?)
    }

    /// Its contents within `data`, the whole file, decompressed when it is compressed
    /// (`Elf64_Chdr` followed by zlib or zstd, as `gcc -gz` and `objcopy
    /// --compress-debug-sections` write), borrowed otherwise.
    ///
    /// # Errors
    /// [`ElfError::Malformed`] for a section past the end of the file;
    /// [`ElfError::Compressed`] for an unknown algorithm, a claimed size beyond
    /// [`MAX_DECOMPRESSED`], or data that does not decompress to exactly the claimed size.
    pub fn contents<'a>(&self, data: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, ElfError> {
        let bytes = self.data(data).ok_or(ElfError::Malformed(
            "a section extends past the end of the file",
        ))?;
        if !self.is_compressed() {
            return Ok(std::borrow::Cow::Borrowed(bytes));
        }
        decompress(&self.name, bytes).map(std::borrow::Cow::Owned)
    }
}

/// Decompresses a compressed section's bytes: `Elf64_Chdr` (type, reserved, size,
/// alignment), then the stream, read to at most the claimed size plus one byte.
fn decompress(section: &str, bytes: &[u8]) -> Result<Vec<u8>, ElfError> {
    use std::io::Read as _;
    let fail = |reason: String| ElfError::Compressed {
        section: section.to_owned(),
        reason,
    };
    if bytes.len() < 24 {
        return Err(fail("shorter than its compression header".into()));
    }
    let kind = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let mut size = [0_u8; 8];
    size.copy_from_slice(&bytes[8..16]);
    let size = u64::from_le_bytes(size);
    if size > MAX_DECOMPRESSED {
        return Err(fail(format!(
            "claims {size} bytes, more than the {MAX_DECOMPRESSED} Ember decompresses"
        )));
    }
    let stream = &bytes[24..];
    let mut out = Vec::new();
    let read = match kind {
        ELFCOMPRESS_ZLIB => flate2::read::ZlibDecoder::new(stream)
            .take(size + 1)
            .read_to_end(&mut out),
        ELFCOMPRESS_ZSTD => zstd::stream::read::Decoder::new(stream)
            .and_then(|d| d.take(size + 1).read_to_end(&mut out)),
        other => return Err(fail(format!("unknown compression type {other}"))),
    };
    read.map_err(|e| fail(format!("corrupt data: {e}")))?;
    if out.len() as u64 != size {
        return Err(fail(format!(
            "decompressed to {} bytes, not the {size} its header says",
            out.len()
        )));
    }
    Ok(out)
}

/// What Ember reads of one ELF file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfFile {
    /// `e_machine` ([`EM_X86_64`], ...).
    pub machine: u16,
    /// `e_entry`.
    pub entry: u64,
    /// The `PT_LOAD` segments, in header order.
    pub loads: Vec<Load>,
    /// The section headers, in header order.
    pub sections: Vec<Section>,
    /// The GNU build-id, from a note section (or a `PT_NOTE` segment when there are no
    /// section headers).
    pub build_id: Option<Vec<u8>>,
    /// `.gnu_debuglink`: the debug file's name and the CRC-32 of its contents.
    pub debuglink: Option<(String, u32)>,
}

impl ElfFile {
    /// The virtual address that file offset `offset` is loaded at.
    #[must_use]
    pub fn vaddr_of(&self, offset: u64) -> Option<u64> {
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
    #[must_use]
    pub fn reconstructed_layout(&self) -> ElfFile {
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
        ElfFile {
            loads,
            ..ElfFile::default()
        }
    }

    /// The section called `name`, if it has bytes in the file.
    #[must_use]
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections
            .iter()
            .find(|s| s.name == name && s.kind != SHT_NOBITS)
    }

    /// The section called `name`, with or without bytes in the file (for its address).
    #[must_use]
    pub fn section_header(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Whether the file carries DWARF of its own.
    #[must_use]
    pub fn has_debug_info(&self) -> bool {
        self.section(".debug_info").is_some()
    }

    /// Whether the file has a (non-dynamic) symbol table.
    #[must_use]
    pub fn has_symtab(&self) -> bool {
        self.section(".symtab").is_some()
    }

    /// Bytes of the sections a symbolizer reads: symbol and string tables and DWARF.
    /// blazesym maps the whole file but only touches these (code is never read), and
    /// builds indexes proportional to them.
    #[must_use]
    pub fn symbol_bytes(&self) -> u64 {
        self.sections
            .iter()
            .filter(|s| s.kind != SHT_NOBITS)
            .filter(|s| {
                matches!(&*s.name, ".symtab" | ".strtab" | ".dynsym" | ".dynstr")
                    || s.name.starts_with(".debug_")
                    || s.name.starts_with(".zdebug_")
            })
            .fold(0u64, |sum, s| sum.saturating_add(s.size))
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Reads `len` bytes at `offset`, refusing reads past the end of a `size`-byte source or
/// larger than `cap`.
fn read_at<S: Source + ?Sized>(
    src: &S,
    size: u64,
    offset: u64,
    len: u64,
    cap: u64,
) -> Result<Vec<u8>, ElfError> {
    let end = offset
        .checked_add(len)
        .ok_or(ElfError::Malformed("offset overflows"))?;
    if end > size {
        return Err(ElfError::Malformed("data extends past the end of the file"));
    }
    if len > cap {
        return Err(ElfError::Malformed("section too large"));
    }
    let mut buf = vec![0; usize::try_from(len).map_err(|_| ElfError::Malformed("too large"))?];
    src.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Reads the bytes of `section` (at most 512 MiB).
///
/// # Errors
/// A section past the end of the file, over the cap, or a failed read.
pub fn read_section<S: Source + ?Sized>(src: &S, section: &Section) -> Result<Vec<u8>, ElfError> {
    if section.kind == SHT_NOBITS {
        return Ok(Vec::new());
    }
    read_at(src, src.size()?, section.offset, section.size, MAX_SECTION)
}

/// Parses the headers, build-id and debug link of an ELF file.
///
/// # Errors
/// [`ElfError::Malformed`] for anything but a consistent 64-bit little-endian ELF file,
/// [`ElfError::Io`] when it cannot be read.
pub fn parse<S: Source + ?Sized>(src: &S) -> Result<ElfFile, ElfError> {
    let size = src.size()?;
    if size < 64 {
        return Err(ElfError::Malformed("shorter than an ELF header"));
    }
    let header = read_at(src, size, 0, 64, 64)?;
    if header[..4] != *b"\x7fELF" {
        return Err(ElfError::Malformed("no ELF magic"));
    }
    if header[4] != 2 || header[5] != 1 {
        return Err(ElfError::Malformed("not 64-bit little-endian"));
    }
    let bad = || ElfError::Malformed("truncated header");
    let mut elf = ElfFile {
        machine: u16_at(&header, 0x12).ok_or_else(bad)?,
        entry: u64_at(&header, 0x18).ok_or_else(bad)?,
        ..ElfFile::default()
    };
    let phoff = u64_at(&header, 0x20).ok_or_else(bad)?;
    let shoff = u64_at(&header, 0x28).ok_or_else(bad)?;
    let phentsize = u64::from(u16_at(&header, 0x36).ok_or_else(bad)?);
    let phnum = u64::from(u16_at(&header, 0x38).ok_or_else(bad)?);
    let shentsize = u64::from(u16_at(&header, 0x3a).ok_or_else(bad)?);
    let shnum = u64::from(u16_at(&header, 0x3c).ok_or_else(bad)?);
    let shstrndx = u64::from(u16_at(&header, 0x3e).ok_or_else(bad)?);

    let mut notes = Vec::new();
    if phnum > 0 {
        if phentsize < 56 || phnum > MAX_HEADERS {
            return Err(ElfError::Malformed("bad program header size"));
        }
        let table = read_at(src, size, phoff, phentsize * phnum, phentsize * MAX_HEADERS)?;
        for i in 0..phnum {
            let at = usize::try_from(i * phentsize).map_err(|_| bad())?;
            let field = |off: usize| u64_at(&table, at + off).ok_or_else(bad);
            match u32_at(&table, at).ok_or_else(bad)? {
                PT_LOAD => elf.loads.push(Load {
                    offset: field(8)?,
                    vaddr: field(16)?,
                    filesz: field(32)?,
                    memsz: field(40)?,
                    align: field(48)?,
                }),
                PT_NOTE => notes.push((field(8)?, field(32)?)),
                _ => {}
            }
        }
    }

    if shnum > 0 && shoff != 0 {
        if shentsize < 64 || shnum > MAX_HEADERS || shstrndx >= shnum {
            return Err(ElfError::Malformed("bad section header table"));
        }
        let table = read_at(src, size, shoff, shentsize * shnum, shentsize * MAX_HEADERS)?;
        let field = |i: u64, off: usize, wide: bool| -> Option<u64> {
            let at = usize::try_from(i * shentsize).ok()?.checked_add(off)?;
            if wide {
                u64_at(&table, at)
            } else {
                u32_at(&table, at).map(u64::from)
            }
        };
        let names_off = field(shstrndx, 0x18, true).ok_or_else(bad)?;
        let names_size = field(shstrndx, 0x20, true).ok_or_else(bad)?;
        let names = read_at(src, size, names_off, names_size.min(MAX_NAMES), MAX_NAMES)?;
        for i in 0..shnum {
            let name_off = field(i, 0, false).ok_or_else(bad)?;
            let name = usize::try_from(name_off)
                .ok()
                .and_then(|at| names.get(at..))
                .and_then(|rest| rest.split(|&b| b == 0).next())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            elf.sections.push(Section {
                name,
                kind: u32::try_from(field(i, 4, false).ok_or_else(bad)?).unwrap_or(0),
                flags: field(i, 8, true).ok_or_else(bad)?,
                addr: field(i, 0x10, true).ok_or_else(bad)?,
                offset: field(i, 0x18, true).ok_or_else(bad)?,
                size: field(i, 0x20, true).ok_or_else(bad)?,
            });
        }
    }

    // The build-id: `.note.gnu.build-id` first, then any other note section, then (for a
    // file without section headers) the note segments.
    let mut note_ranges: Vec<(u64, u64)> = Vec::new();
    if let Some(s) = elf.section(".note.gnu.build-id") {
        note_ranges.push((s.offset, s.size));
    }
    note_ranges.extend(
        elf.sections
            .iter()
            .filter(|s| s.kind == SHT_NOTE && s.name != ".note.gnu.build-id")
            .map(|s| (s.offset, s.size)),
    );
    if elf.sections.is_empty() {
        note_ranges.extend(notes);
    }
    for (offset, len) in note_ranges {
        // A note out of the file loses the build-id only, not the file.
        let Ok(data) = read_at(src, size, offset, len.min(MAX_NOTES), MAX_NOTES) else {
            continue;
        };
        if let Some(id) = parse_build_id_note(&data) {
            elf.build_id = Some(id);
            break;
        }
    }
    if let Some(link) = elf.section(".gnu_debuglink") {
        let data = read_at(src, size, link.offset, link.size, MAX_NOTES)?;
        elf.debuglink = parse_debuglink(&data);
    }
    Ok(elf)
}

/// A symbol of the dynamic symbol table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// `st_value`: the virtual address (before any load bias).
    pub value: u64,
    /// `st_size`.
    pub size: u64,
}

/// Looks `names` up in the dynamic symbol table (`.dynsym` and its `.dynstr`), which
/// stripped binaries keep; one pass over the table for all of them. The result has one
/// entry per name, `None` for a name that is not defined there (undefined symbols, whose
/// section index is 0, are skipped).
///
/// # Errors
/// A table past the end of the file, over the caps, or a failed read.
pub fn dynamic_symbols<S: Source + ?Sized>(
    src: &S,
    elf: &ElfFile,
    names: &[&str],
) -> Result<Vec<Option<Symbol>>, ElfError> {
    let mut found = vec![None; names.len()];
    let (Some(dynsym), Some(dynstr)) = (elf.section(".dynsym"), elf.section(".dynstr")) else {
        return Ok(found);
    };
    let size = src.size()?;
    let symbols = read_at(src, size, dynsym.offset, dynsym.size, MAX_SECTION)?;
    let strings = read_at(src, size, dynstr.offset, dynstr.size, MAX_SECTION)?;
    for entry in symbols.chunks_exact(24) {
        let (Some(name_off), Some(shndx), Some(value), Some(sym_size)) = (
            u32_at(entry, 0),
            u16_at(entry, 6),
            u64_at(entry, 8),
            u64_at(entry, 16),
        ) else {
            continue;
        };
        if shndx == 0 {
            continue;
        }
        let Some(name) = usize::try_from(name_off)
            .ok()
            .and_then(|at| strings.get(at..))
            .and_then(|rest| rest.split(|&b| b == 0).next())
        else {
            continue;
        };
        if let Some(i) = names.iter().position(|n| n.as_bytes() == name) {
            found[i].get_or_insert(Symbol {
                value,
                size: sym_size,
            });
        }
    }
    Ok(found)
}

/// Reads `len` bytes (at most 1 MiB) at virtual address `vaddr` from the file's `PT_LOAD`
/// segments: the initial value of a variable, the contents of a constant.
///
/// # Errors
/// [`ElfError::Malformed`] when the range is not all in one segment's file bytes, or a
/// failed read.
pub fn read_vaddr<S: Source + ?Sized>(
    src: &S,
    elf: &ElfFile,
    vaddr: u64,
    len: u64,
) -> Result<Vec<u8>, ElfError> {
    let load = elf
        .loads
        .iter()
        .find(|l| {
            vaddr >= l.vaddr
                && vaddr
                    .checked_add(len)
                    .is_some_and(|end| end - l.vaddr <= l.filesz)
        })
        .ok_or(ElfError::Malformed("address not in the file's segments"))?;
    let offset = load
        .offset
        .checked_add(vaddr - load.vaddr)
        .ok_or(ElfError::Malformed("offset overflows"))?;
    read_at(src, src.size()?, offset, len, MAX_NOTES)
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
/// A name with a `/` (which could point anywhere) is refused.
#[must_use]
pub fn parse_debuglink(data: &[u8]) -> Option<(String, u32)> {
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

/// The CRC-32 (IEEE, as `.gnu_debuglink` records it) of everything `file` holds.
///
/// # Errors
/// When the file cannot be read.
pub fn file_crc32(file: &File) -> io::Result<u32> {
    let mut table = [0u32; 256];
    for (i, slot) in (0u32..).zip(table.iter_mut()) {
        let mut c = i;
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

/// Whether any section of `elf` is compressed DWARF (`.debug_*` with `SHF_COMPRESSED`).
#[must_use]
pub fn has_compressed_debug(elf: &ElfFile) -> bool {
    elf.sections
        .iter()
        .any(|s| s.is_compressed() && s.name.starts_with(".debug_"))
}

/// Writes `data`, a whole ELF file, to `out` with every compressed section decompressed
/// (as `objcopy --decompress-debug-sections` does): the header and program headers as they
/// were, the sections in file order at new offsets, then the section header table with the
/// new offsets and sizes and `SHF_COMPRESSED` cleared. Returns the bytes written, which
/// are never more than `max_bytes` (a file whose sections claim more is refused before
/// anything is written: a small file can claim gigabytes).
///
/// A symbolizer maps such a file instead of inflating megabytes of DWARF on every run.
///
/// # Errors
/// As [`parse`] and [`Section::contents`], [`ElfError::Malformed`] for a section header
/// table that is not 64-byte entries or that section data overlaps, and [`ElfError::Io`]
/// when writing fails.
pub fn write_decompressed(
    data: &[u8],
    out: &mut impl io::Write,
    max_bytes: u64,
) -> Result<u64, ElfError> {
    let elf = parse(data)?;
    let bad = ElfError::Malformed;
    let shoff = u64_at(data, 0x28).ok_or(bad("truncated header"))?;
    if u16_at(data, 0x3a) != Some(64) || elf.sections.is_empty() {
        return Err(bad("no 64-byte section headers"));
    }
    let shoff = usize::try_from(shoff).map_err(|_| bad("section headers out of the file"))?;
    let table_len = elf.sections.len() * 64;
    let mut table = data
        .get(shoff..shoff.saturating_add(table_len))
        .ok_or(bad("section headers out of the file"))?
        .to_vec();
    // Everything before the first compressed section (the ELF header, program headers
    // and loaded sections) keeps its offset and is copied as it is; what follows is laid
    // out again.
    let first = elf
        .sections
        .iter()
        .filter(|s| s.is_compressed() && s.kind != SHT_NOBITS)
        .map(|s| s.offset)
        .min()
        .ok_or(bad("no compressed section"))?;
    let mut order: Vec<usize> = (0..elf.sections.len())
        .filter(|&i| {
            let s = &elf.sections[i];
            s.kind != SHT_NOBITS && s.size > 0 && s.offset >= first
        })
        .collect();
    order.sort_by_key(|&i| elf.sections[i].offset);
    if order
        .iter()
        .any(|&i| elf.sections[i].flags & SHF_ALLOC != 0)
    {
        return Err(bad("a loaded section follows a compressed one"));
    }
    let first = usize::try_from(first).map_err(|_| bad("section out of the file"))?;
    if first < 64 || first > data.len() {
        return Err(bad("a compressed section overlaps the ELF header"));
    }
    let mut header = data[..first].to_vec();
    // First the layout, from the sizes the compression headers claim (each is checked
    // when the section is decompressed below); then the bytes.
    let align_up = |at: u64, align: u64| at.div_ceil(align.max(1)) * align.max(1);
    let mut at = first as u64;
    let mut end_before = 0_u64;
    for &i in &order {
        let section = &elf.sections[i];
        if section.offset < end_before {
            return Err(bad("section data overlaps"));
        }
        end_before = section.offset.saturating_add(section.size);
        let entry = &mut table[i * 64..(i + 1) * 64];
        let (mut align, mut size) = (u64_at(entry, 0x30).unwrap_or(1), section.size);
        if section.is_compressed() {
            // Elf64_Chdr: type, reserved, the uncompressed size and alignment.
            let raw = section
                .data(data)
                .ok_or(bad("a section extends past the end"))?;
            size = u64_at(raw, 8).ok_or(bad("a compression header is truncated"))?;
            align = u64_at(raw, 16).unwrap_or(1);
            if size > MAX_DECOMPRESSED {
                return Err(bad("a compressed section claims too many bytes"));
            }
            let flags = section.flags & !SHF_COMPRESSED;
            entry[0x08..0x10].copy_from_slice(&flags.to_le_bytes());
            entry[0x30..0x38].copy_from_slice(&align.to_le_bytes());
        }
        at = align_up(at, align);
        entry[0x18..0x20].copy_from_slice(&at.to_le_bytes());
        entry[0x20..0x28].copy_from_slice(&size.to_le_bytes());
        at += size;
    }
    let table_at = align_up(at, 8);
    if table_at.saturating_add(table.len() as u64) > max_bytes {
        return Err(bad("the decompressed file would be larger than allowed"));
    }
    header[0x28..0x30].copy_from_slice(&table_at.to_le_bytes());
    out.write_all(&header)?;
    let mut written = header.len() as u64;
    for &i in &order {
        let entry = &table[i * 64..(i + 1) * 64];
        let offset = u64_at(entry, 0x18).unwrap_or(0);
        let gap = offset - written;
        out.write_all(&vec![0; usize::try_from(gap).unwrap_or(0)])?;
        let bytes = elf.sections[i].contents(data)?;
        out.write_all(&bytes)?;
        written = offset + bytes.len() as u64;
    }
    out.write_all(&vec![0; usize::try_from(table_at - written).unwrap_or(0)])?;
    out.write_all(&table)?;
    Ok(table_at + table.len() as u64)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn own_exe() -> Vec<u8> {
        std::fs::read("/proc/self/exe").expect("read own exe")
    }

    /// A deterministic byte stream (xorshift), for corrupting headers.
    fn noise(seed: u64) -> impl Iterator<Item = u8> {
        let mut x = seed | 1;
        std::iter::from_fn(move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Some((x >> 24) as u8)
        })
    }

    #[test]
    fn reads_own_headers_the_same_from_a_file_and_from_bytes() {
        let bytes = own_exe();
        let file = File::open("/proc/self/exe").expect("open own exe");
        let from_file = parse(&file).expect("parse own exe");
        let from_bytes = parse(&bytes[..]).expect("parse own bytes");
        assert_eq!(from_file, from_bytes);
        assert_eq!(from_file.machine, EM_X86_64);
        assert!(!from_file.loads.is_empty());
        let text = from_file.section(".text").expect(".text");
        assert!(from_file.vaddr_of(text.offset).is_some());
        assert_eq!(
            text.data(&bytes).map(<[u8]>::len),
            Some(usize::try_from(text.size).expect("size"))
        );
        assert_eq!(
            read_section(&file, text).expect("read .text"),
            text.data(&bytes).expect("in bytes")
        );
        // Rust test binaries are linked with a build-id on Linux.
        assert!(from_file.build_id.as_ref().is_some_and(|id| id.len() >= 8));
        assert!(from_file.entry != 0);
    }

    #[test]
    fn every_truncation_is_an_error_or_a_consistent_prefix_never_a_panic() {
        let whole = own_exe();
        let whole_info = parse(&whole[..]).expect("whole");
        let mut lens: Vec<usize> = (0..=200).collect();
        lens.extend((1..64).map(|i| i * whole.len() / 64));
        for len in lens {
            let cut = &whole[..len];
            match parse(cut) {
                Ok(info) => {
                    // Only once every header is in; what it found is what the whole has.
                    assert_eq!(info.loads, whole_info.loads, "cut at {len}");
                }
                Err(ElfError::Malformed(_)) => {}
                Err(err) => panic!("cut at {len}: {err}"),
            }
        }
        assert!(matches!(parse(&[][..]), Err(ElfError::Malformed(_))));
        let empty = tempfile::tempfile().expect("temp");
        assert!(matches!(parse(&empty), Err(ElfError::Malformed(_))));
    }

    #[test]
    fn corrupt_header_fields_are_errors_never_panics() {
        let whole = own_exe();
        // Each header field overwritten with extreme and random values.
        let fields: [(usize, usize); 9] = [
            (0x20, 8), // e_phoff
            (0x28, 8), // e_shoff
            (0x36, 2), // e_phentsize
            (0x38, 2), // e_phnum
            (0x3a, 2), // e_shentsize
            (0x3c, 2), // e_shnum
            (0x3e, 2), // e_shstrndx
            (0x04, 1), // EI_CLASS
            (0x05, 1), // EI_DATA
        ];
        let mut rng = noise(0x5eed);
        for (at, width) in fields {
            for value in [0u64, 1, 0xff, u64::MAX, u64::MAX / 2].into_iter().chain(
                (0..16)
                    .map(|_| u64::from_le_bytes(std::array::from_fn(|_| rng.next().unwrap_or(0)))),
            ) {
                let mut bad = whole[..4096.min(whole.len())].to_vec();
                bad[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
                let _ = parse(&bad[..]);
                let mut full = whole.clone();
                full[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
                let _ = parse(&full[..]);
            }
        }
        // Every section header's offset and size pointed far away.
        let info = parse(&whole[..]).expect("whole");
        let shoff = usize::try_from(u64_at(&whole, 0x28).expect("shoff")).expect("shoff");
        for i in 0..info.sections.len() {
            let mut bad = whole.clone();
            let at = shoff + i * 64;
            bad[at + 0x18..at + 0x20].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
            bad[at + 0x20..at + 0x28].copy_from_slice(&u64::MAX.to_le_bytes());
            let _ = parse(&bad[..]);
        }
        // Random bytes after a valid identification.
        for seed in 1..64 {
            let mut junk = b"\x7fELF\x02\x01\x01\0".to_vec();
            junk.extend(noise(seed).take(4096));
            let _ = parse(&junk[..]);
        }
        assert!(matches!(
            parse(&b"#!/bin/sh\nexit 0\n".repeat(8)[..]),
            Err(ElfError::Malformed("no ELF magic"))
        ));
    }

    #[test]
    fn dynamic_symbols_of_the_c_library_are_found_and_read() {
        // Every process here links the C library; `environ` is a variable, `strlen` a
        // function, and neither name is a prefix of a longer one that would match too.
        let libc = std::fs::read_to_string("/proc/self/maps")
            .expect("own maps")
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5).map(str::to_owned))
            .find(|p| p.contains("/libc.so"))
            .expect("the C library is mapped");
        let file = File::open(&libc).expect("libc opens");
        let elf = parse(&file).expect("libc parses");
        let found = dynamic_symbols(&file, &elf, &["strlen", "no_such_symbol_here", "environ"])
            .expect("dynsym reads");
        assert!(found[0].is_some_and(|s| s.value > 0), "{found:?}");
        assert_eq!(found[1], None);
        let environ = found[2].expect("environ");
        assert_eq!(environ.size, 8);
        // Code has file bytes; an address in no segment is an error.
        let strlen = found[0].expect("strlen");
        assert_eq!(
            read_vaddr(&file, &elf, strlen.value, 4)
                .expect("code")
                .len(),
            4
        );
        assert!(read_vaddr(&file, &elf, u64::MAX - 2, 4).is_err());
        // No dynamic symbols at all: every name is `None`.
        let none = dynamic_symbols(&file, &ElfFile::default(), &["strlen"]).expect("empty");
        assert_eq!(none, vec![None]);
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
    fn build_id_notes_parse_and_bad_ones_are_none() {
        let mut note = Vec::new();
        note.extend(4u32.to_le_bytes());
        note.extend(3u32.to_le_bytes());
        note.extend(3u32.to_le_bytes());
        note.extend(b"GNU\0\xaa\xbb\xcc\0");
        assert_eq!(parse_build_id_note(&note), Some(vec![0xaa, 0xbb, 0xcc]));
        let mut huge = note.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_build_id_note(&huge), None);
        assert_eq!(parse_build_id_note(&note[..13]), None);
        assert_eq!(parse_build_id_note(&[]), None);
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
        let debug = ElfFile {
            loads: vec![
                load(0, 0x39c, 0, 0x6f8),
                load(0, 0, 0x1000, 0x275),
                load(0, 0, 0x2000, 0x188),
                load(0xdd0, 0, 0x3dd0, 0x270),
            ],
            ..ElfFile::default()
        };
        let rebuilt = debug.reconstructed_layout();
        for (got, want) in rebuilt.loads.iter().zip(&original) {
            assert_eq!(got.offset, want.offset);
            assert_eq!(got.vaddr, want.vaddr);
        }
        assert_eq!(rebuilt.vaddr_of(0x1080), Some(0x1080));
        // Non-PIE: text at 0x401000 from file offset 0x1000.
        let non_pie = ElfFile {
            loads: vec![load(0, 0, 0x400000, 0x500), load(0, 0, 0x401000, 0x2000)],
            ..ElfFile::default()
        };
        assert_eq!(
            non_pie.reconstructed_layout().vaddr_of(0x1010),
            Some(0x401010)
        );
    }
}
