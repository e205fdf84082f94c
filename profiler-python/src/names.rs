//! Naming Python frames: a code object's qualified name, file and first line, read from
//! the process once and cached by (pid, process start time, code address), so a recycled
//! pid or address is never misnamed and a frame is still named after its process exited;
//! and the line of an instruction, decoded from the code object's line table (3.9's
//! `co_lnotab`, 3.10's `co_linetable`, the location table of 3.11+).

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

use profiler_common::python::{PyOffsets, linetable};

use crate::discover::Interpreter;
use crate::memory::Memory;
use crate::walk::{RawFrame, at};

/// Longest name or file name read, in characters.
const MAX_STRING: u64 = 4_096;
/// Largest line table read, in bytes.
const MAX_LINETABLE: u64 = 1 << 20;
/// Code objects cached before the cache is emptied.
const MAX_CACHED: usize = 1 << 16;

/// What a code object says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeInfo {
    /// `co_qualname` (3.11+) or `co_name`.
    pub qualname: String,
    /// `co_filename`, as the interpreter has it.
    pub file: String,
    /// `co_firstlineno`.
    pub first_line: u32,
    linetable: Vec<u8>,
    linetable_kind: u32,
    /// The object's name, file and line-table pointers and first line, read again on each
    /// cache hit: a code object freed and another allocated at its address (the class
    /// bodies and module code run once at import) differ there.
    fingerprint: Fingerprint,
}

/// What tells one code object from another at the same address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    qualname: u64,
    file: u64,
    linetable: u64,
    first_line: u32,
}

impl CodeInfo {
    /// The source line of the instruction at byte offset `instr_offset`, if the table has
    /// one.
    #[must_use]
    pub fn line(&self, instr_offset: u32) -> Option<u32> {
        let first = i64::from(self.first_line);
        let line = match self.linetable_kind {
            linetable::LNOTAB => lnotab_line(&self.linetable, first, instr_offset),
            linetable::PAIRS_310 => pairs_310_line(&self.linetable, first, instr_offset),
            _ => locations_line(&self.linetable, first, instr_offset / 2),
        }?;
        u32::try_from(line).ok().filter(|&l| l > 0)
    }
}

/// A named Python frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyFrame {
    /// The function's qualified name (`Handler.get`).
    pub qualname: String,
    /// Its file, as the interpreter has it.
    pub file: String,
    /// The line being run, if known.
    pub line: Option<u32>,
}

/// Why a frame could not be named.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    /// The interpreter's version has no offsets.
    #[error("python {version} is not supported")]
    Unsupported {
        /// The version.
        version: crate::Version,
    },
    /// The address does not hold a code object.
    #[error("no code object at {addr:#x}")]
    NotCode {
        /// The address.
        addr: u64,
    },
    /// A string or bytes object is not what the offsets say.
    #[error("malformed {what} at {addr:#x}")]
    Malformed {
        /// What was read.
        what: &'static str,
        /// Where.
        addr: u64,
    },
    /// A read of the process's memory failed.
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

/// Names frames, caching what each code object says.
#[derive(Debug, Default)]
pub struct Namer {
    cache: HashMap<(u32, u64, u64), Arc<CodeInfo>>,
}

impl Namer {
    /// An empty namer.
    #[must_use]
    pub fn new() -> Self {
        Namer::default()
    }

    /// Names `frame` of `interp`'s process, reading its code object unless cached.
    ///
    /// # Errors
    /// [`NameError`] when the code object cannot be read (or is not one).
    pub fn name(
        &mut self,
        mem: &Memory,
        interp: &Interpreter,
        frame: &RawFrame,
    ) -> Result<PyFrame, NameError> {
        let info = self.code(mem, interp, frame.code)?;
        Ok(PyFrame {
            qualname: info.qualname.clone(),
            file: info.file.clone(),
            line: info.line(frame.instr_offset),
        })
    }

    /// What the code object at `code` says, read unless cached.
    ///
    /// # Errors
    /// As [`Namer::name`].
    pub fn code(
        &mut self,
        mem: &Memory,
        interp: &Interpreter,
        code: u64,
    ) -> Result<Arc<CodeInfo>, NameError> {
        let key = (interp.pid, interp.start_time, code);
        let o = interp.offsets.ok_or(NameError::Unsupported {
            version: interp.version,
        })?;
        if let Some(info) = self.cache.get(&key) {
            // A process that exited keeps its names; a live one proves the entry current.
            match fingerprint(mem, o, code) {
                Ok(now) if now == info.fingerprint => return Ok(Arc::clone(info)),
                Ok(_) => {}
                Err(NameError::Read { .. }) => return Ok(Arc::clone(info)),
                Err(err) => return Err(err),
            }
        }
        let info = Arc::new(read_code(mem, o, interp.code_type, code)?);
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        self.cache.insert(key, Arc::clone(&info));
        Ok(info)
    }

    /// The cached description of `code` in the process `(pid, start_time)`, without
    /// reading memory (for processes that have exited).
    #[must_use]
    pub fn cached(&self, pid: u32, start_time: u64, code: u64) -> Option<Arc<CodeInfo>> {
        self.cache.get(&(pid, start_time, code)).cloned()
    }

    /// Forgets everything cached for process `pid`.
    pub fn forget(&mut self, pid: u32) {
        self.cache.retain(|(p, _, _), _| *p != pid);
    }
}

fn read<T>(
    what: &'static str,
    addr: u64,
    f: impl FnOnce(u64) -> io::Result<T>,
) -> Result<T, NameError> {
    f(addr).map_err(|source| NameError::Read { what, addr, source })
}

/// `ob_type` of every object.
const OB_TYPE: u32 = 8;

/// An object's reference count and type, in one read.
fn header(mem: &Memory, what: &'static str, addr: u64) -> Result<(u64, u64), NameError> {
    let raw = read(what, addr, |a| mem.bytes(a, 16))?;
    let word = |i: usize| {
        raw.get(i..i + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    Ok((word(0), word(usize::try_from(OB_TYPE).unwrap_or(8))))
}

/// The file of a code object the interpreter made for itself, as 3.12 names it.
pub const SHIM_FILE: &str = "<shim>";

/// Whether a reference count is one a live object has. A freed pymalloc block's first
/// word is the free list's next pointer (an address, or 0 at the list's end), never a count
/// in `1..=u32::MAX` (3.12's immortal objects count `u32::MAX`, 3.14's `3 << 30`).
fn live(refcnt: u64) -> bool {
    (1..=u64::from(u32::MAX)).contains(&refcnt)
}

/// Reads the code object at `code`. The process runs on while it is read, and code run
/// once (module bodies, class bodies) is freed as it finishes, its strings with it: the
/// object must look alive before and unchanged after its strings are read, or what was
/// read may belong to whatever took the memory since (an exception's message read as a
/// file name).
fn read_code(
    mem: &Memory,
    o: &PyOffsets,
    code_type: Option<u64>,
    code: u64,
) -> Result<CodeInfo, NameError> {
    let not_code = NameError::NotCode { addr: code };
    if code == 0 {
        return Err(not_code);
    }
    let (refcnt, ty) = header(mem, "code object", code)?;
    if !live(refcnt) || code_type.is_some_and(|expected| ty != expected) {
        return Err(not_code);
    }
    let print = fingerprint(mem, o, code)?;
    let qualname = read_str(mem, o, print.qualname)?;
    // The interpreter's own shims (the `__init__` frame a specialised class call pushes)
    // have no file: 3.12 names it `<shim>`, 3.13 passes the name as the file too.
    let file = if print.file == print.qualname {
        SHIM_FILE.to_owned()
    } else {
        read_str(mem, o, print.file)?
    };
    let info = CodeInfo {
        qualname,
        file,
        first_line: print.first_line,
        linetable: read_bytes(mem, o, print.linetable)?,
        linetable_kind: o.linetable_kind,
        fingerprint: print,
    };
    let (refcnt_after, ty_after) = header(mem, "code object", code)?;
    if !live(refcnt_after) || ty_after != ty || fingerprint(mem, o, code)? != print {
        return Err(not_code);
    }
    Ok(info)
}

/// The code object's name, file and line-table pointers and first line, in one read.
fn fingerprint(mem: &Memory, o: &PyOffsets, code: u64) -> Result<Fingerprint, NameError> {
    let fields = [
        o.code_qualname,
        o.code_filename,
        o.code_linetable,
        o.code_firstlineno,
    ];
    let low = fields.iter().copied().min().unwrap_or(0);
    let high = fields.iter().copied().max().unwrap_or(0) + 8;
    let len = usize::try_from(high - low).map_err(|_| NameError::NotCode { addr: code })?;
    let raw = read("code object", at(code, low), |a| mem.bytes(a, len))?;
    let field = |offset: u32, width: usize| -> u64 {
        let at = usize::try_from(offset - low).unwrap_or(usize::MAX);
        raw.get(at..at.saturating_add(width)).map_or(0, |b| {
            b.iter().rev().fold(0, |v, &x| (v << 8) | u64::from(x))
        })
    };
    Ok(Fingerprint {
        qualname: field(o.code_qualname, 8),
        file: field(o.code_filename, 8),
        linetable: field(o.code_linetable, 8),
        first_line: u32::try_from(field(o.code_firstlineno, 4)).unwrap_or(0),
    })
}

/// A compact `str` object: ASCII, Latin-1, UCS-2 or UCS-4.
fn read_str(mem: &Memory, o: &PyOffsets, addr: u64) -> Result<String, NameError> {
    let malformed = NameError::Malformed { what: "str", addr };
    if addr == 0 || !live(header(mem, "str", addr)?.0) {
        return Err(malformed);
    }
    let length = read("str length", at(addr, o.unicode_length), |a| mem.u64(a))?;
    let state = read("str state", at(addr, o.unicode_state), |a| mem.u32(a))?;
    let kind = (state >> 2) & 7;
    let compact = state & (1 << 5) != 0;
    let ascii = state & (1 << 6) != 0;
    if !compact || !matches!(kind, 1 | 2 | 4) || length > MAX_STRING {
        return Err(malformed);
    }
    let data = at(
        addr,
        if ascii {
            o.unicode_ascii_data
        } else {
            o.unicode_compact_data
        },
    );
    let len = usize::try_from(length * u64::from(kind))
        .map_err(|_| NameError::Malformed { what: "str", addr })?;
    let raw = read("str data", data, |a| mem.bytes(a, len))?;
    let text = match kind {
        1 => raw.iter().map(|&b| char::from(b)).collect(),
        2 => raw
            .chunks_exact(2)
            .map(|c| {
                char::from_u32(u32::from(u16::from_le_bytes([c[0], c[1]]))).unwrap_or('\u{fffd}')
            })
            .collect(),
        _ => raw
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{fffd}')
            })
            .collect(),
    };
    Ok(text)
}

/// A `bytes` object's contents.
fn read_bytes(mem: &Memory, o: &PyOffsets, addr: u64) -> Result<Vec<u8>, NameError> {
    if addr == 0 {
        return Err(NameError::Malformed {
            what: "bytes",
            addr,
        });
    }
    let size = read("bytes size", at(addr, o.bytes_size), |a| mem.u64(a))?;
    if size > MAX_LINETABLE {
        return Err(NameError::Malformed {
            what: "bytes",
            addr,
        });
    }
    let len = usize::try_from(size).map_err(|_| NameError::Malformed {
        what: "bytes",
        addr,
    })?;
    read("bytes data", at(addr, o.bytes_data), |a| mem.bytes(a, len))
}

/// 3.9's `co_lnotab`: (bytecode delta, signed line delta) pairs (`PyCode_Addr2Line`).
fn lnotab_line(table: &[u8], first: i64, offset: u32) -> Option<i64> {
    let mut line = first;
    let mut addr = 0u32;
    for pair in table.chunks_exact(2) {
        addr = addr.saturating_add(u32::from(pair[0]));
        if addr > offset {
            break;
        }
        line += i64::from(i8::from_le_bytes([pair[1]]));
    }
    Some(line)
}

/// 3.10's `co_linetable`: (bytecode delta, signed line delta) pairs; each pair is a range
/// of bytecode, a line delta of -128 marks a range with no line.
fn pairs_310_line(table: &[u8], first: i64, offset: u32) -> Option<i64> {
    let mut line = first;
    let mut end = 0u32;
    for pair in table.chunks_exact(2) {
        let start = end;
        end = end.saturating_add(u32::from(pair[0]));
        let delta = i8::from_le_bytes([pair[1]]);
        let this = if delta == -128 {
            None
        } else {
            line += i64::from(delta);
            Some(line)
        };
        if start <= offset && offset < end {
            return this;
        }
    }
    None
}

/// The location table of 3.11+ (CPython's `Objects/locations.md`): entries of a first
/// byte `1cccclll` (code `cccc`, `lll` + 1 code units) and code-dependent varints. `unit`
/// is the instruction's index in 2-byte code units.
fn locations_line(table: &[u8], first: i64, unit: u32) -> Option<i64> {
    let mut bytes = table.iter().copied().peekable();
    let mut line = first;
    let mut start = 0u32;
    let varint = |bytes: &mut std::iter::Peekable<std::iter::Copied<std::slice::Iter<'_, u8>>>| {
        let mut value = 0u64;
        let mut shift = 0u32;
        for b in bytes.by_ref() {
            if shift < 64 {
                value |= u64::from(b & 63) << shift;
            }
            shift += 6;
            if b & 64 == 0 {
                break;
            }
        }
        value
    };
    while let Some(head) = bytes.next() {
        if head & 0x80 == 0 {
            return None; // not at an entry's first byte: a table we do not understand
        }
        let code = (head >> 3) & 15;
        let len = u32::from(head & 7) + 1;
        let this = match code {
            15 => None,
            14 | 13 => {
                let raw = varint(&mut bytes);
                #[expect(clippy::cast_possible_wrap, reason = "a zigzag varint of a line delta")]
                let delta = if raw & 1 == 1 {
                    -((raw >> 1) as i64)
                } else {
                    (raw >> 1) as i64
                };
                line += delta;
                if code == 14 {
                    varint(&mut bytes); // end line delta
                    varint(&mut bytes); // column + 1
                    varint(&mut bytes); // end column + 1
                }
                Some(line)
            }
            10..=12 => {
                line += i64::from(code - 10);
                bytes.next();
                bytes.next();
                Some(line)
            }
            _ => {
                bytes.next();
                Some(line)
            }
        };
        let end = start.saturating_add(len);
        if start <= unit && unit < end {
            return this;
        }
        start = end;
        // Skip continuation bytes of a form we read fewer bytes of.
        while bytes.peek().is_some_and(|b| b & 0x80 == 0) {
            bytes.next();
        }
    }
    None
}

/// `file` as Ember shows it: relative to the first of `dirs` it lies beneath, or to the
/// `site-packages`/`dist-packages` directory it is in, else as it is.
#[must_use]
pub fn display_file(file: &str, dirs: &[&Path]) -> String {
    let path = Path::new(file);
    for dir in dirs {
        if let Ok(rest) = path.strip_prefix(dir) {
            return rest.to_string_lossy().into_owned();
        }
    }
    for marker in ["/site-packages/", "/dist-packages/"] {
        if let Some((_, rest)) = file.rsplit_once(marker) {
            return rest.to_owned();
        }
    }
    file.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnotab_pairs_accumulate_up_to_the_offset() {
        // Lines 10 (bytes 0..6), 11 (6..10), 13 (10..), as `compile` writes them.
        let table = [6, 1, 4, 2];
        assert_eq!(lnotab_line(&table, 10, 0), Some(10));
        assert_eq!(lnotab_line(&table, 10, 5), Some(10));
        assert_eq!(lnotab_line(&table, 10, 6), Some(11));
        assert_eq!(lnotab_line(&table, 10, 12), Some(13));
        // A negative delta (a loop's condition at its top).
        assert_eq!(lnotab_line(&[4, 3, 2, 0xfe], 1, 7), Some(2));
        assert_eq!(lnotab_line(&[], 7, 100), Some(7));
    }

    #[test]
    fn pairs_310_ranges_and_lines_without_a_number() {
        // 0..4 at first+1, 4..8 no line, 8..14 at first+3.
        let table = [4, 1, 4, 0x80, 6, 2];
        assert_eq!(pairs_310_line(&table, 20, 0), Some(21));
        assert_eq!(pairs_310_line(&table, 20, 3), Some(21));
        assert_eq!(pairs_310_line(&table, 20, 4), None);
        assert_eq!(pairs_310_line(&table, 20, 8), Some(23));
        assert_eq!(pairs_310_line(&table, 20, 14), None);
        assert_eq!(pairs_310_line(&[1], 20, 0), None);
    }

    #[test]
    fn location_entries_of_every_form() {
        let table = [
            0x80 | (13 << 3) | 1, // no columns, 2 units, line delta +1 (zigzag 2)
            2,
            0x80 | (3 << 3), // short form, 1 unit, same line
            0x11,
            0x80 | (11 << 3) | 2, // one-line form, 3 units, +1
            4,
            9,
            0x80 | (15 << 3),     // no location, 1 unit
            0x80 | (14 << 3) | 1, // long form, 2 units, -2 (zigzag 5), 2-byte varint for column
            5,
            0,
            0x41,
            0x01,
            3,
        ];
        assert_eq!(locations_line(&table, 100, 0), Some(101));
        assert_eq!(locations_line(&table, 100, 1), Some(101));
        assert_eq!(locations_line(&table, 100, 2), Some(101));
        assert_eq!(locations_line(&table, 100, 3), Some(102));
        assert_eq!(locations_line(&table, 100, 5), Some(102));
        assert_eq!(locations_line(&table, 100, 6), None);
        assert_eq!(locations_line(&table, 100, 7), Some(100));
        assert_eq!(locations_line(&table, 100, 8), Some(100));
        assert_eq!(locations_line(&table, 100, 9), None);
        // Garbage never panics.
        assert_eq!(locations_line(&[0x01, 0xff, 0xff], 1, 3), None);
        assert_eq!(locations_line(&[0xff; 3], 1, 30), None);
    }

    /// A fake 3.11 process memory: a file in which offsets are addresses.
    struct FakeMemory(std::fs::File);

    impl FakeMemory {
        fn new() -> Self {
            let file = tempfile::tempfile().expect("temp file");
            file.set_len(0x4000).expect("size");
            FakeMemory(file)
        }
        fn put(&self, addr: u64, bytes: &[u8]) {
            std::os::unix::fs::FileExt::write_all_at(&self.0, bytes, addr).expect("write");
        }
        fn put_u64(&self, addr: u64, value: u64) {
            self.put(addr, &value.to_le_bytes());
        }
        fn put_str(&self, addr: u64, text: &str) {
            self.put_u64(addr, 1);
            self.put_u64(addr + 16, text.len() as u64);
            self.put(
                addr + 32,
                &((1u32 << 2) | (1 << 5) | (1 << 6)).to_le_bytes(),
            );
            self.put(addr + 48, text.as_bytes());
        }
        /// A code object at `addr` with reference count `refcnt`, type `0xc0de` and
        /// these name, file and line-table pointers.
        fn put_code(&self, o: &PyOffsets, addr: u64, refcnt: u64, name: u64, file: u64) {
            self.put_u64(addr, refcnt);
            self.put_u64(addr + 8, 0xc0de);
            self.put_u64(addr + u64::from(o.code_qualname), name);
            self.put_u64(addr + u64::from(o.code_filename), file);
            self.put_u64(addr + u64::from(o.code_linetable), 0x2200);
        }
        fn memory(&self) -> Memory {
            Memory::new(self.0.try_clone().expect("clone"))
        }
    }

    #[test]
    fn the_cache_notices_a_new_code_object_at_an_old_address_and_outlives_the_process() {
        let o = crate::offsets::for_version(3, 11).expect("3.11");
        let fake = FakeMemory::new();
        let code = 0x1000;
        fake.put_u64(code, 1);
        fake.put_u64(code + 8, 0xc0de);
        fake.put_u64(code + u64::from(o.code_qualname), 0x2000);
        fake.put_u64(code + u64::from(o.code_filename), 0x2100);
        fake.put(code + u64::from(o.code_firstlineno), &10u32.to_le_bytes());
        fake.put_u64(code + u64::from(o.code_linetable), 0x2200);
        fake.put_str(0x2000, "Handler.get");
        fake.put_str(0x2100, "app/server.py");
        fake.put_u64(0x2200 + 16, 2);
        fake.put(0x2200 + 32, &[0x80 | (13 << 3), 2]); // one unit at line + 1
        let interp = Interpreter {
            pid: 7,
            start_time: 99,
            version: crate::Version {
                major: 3,
                minor: 11,
                micro: Some(7),
            },
            path: "/usr/bin/python3.11".into(),
            shared: false,
            runtime: 0,
            code_type: Some(0xc0de),
            offsets: Some(o),
        };
        let frame = RawFrame {
            code,
            instr_offset: 0,
            is_entry: true,
        };
        let mut namer = Namer::new();
        let mem = fake.memory();
        let named = namer.name(&mem, &interp, &frame).expect("names");
        assert_eq!(
            named,
            PyFrame {
                qualname: "Handler.get".into(),
                file: "app/server.py".into(),
                line: Some(11)
            }
        );
        // Another code object at the same address: its name pointer differs.
        fake.put_u64(code + u64::from(o.code_qualname), 0x2300);
        fake.put_str(0x2300, "other");
        assert_eq!(
            namer.name(&mem, &interp, &frame).expect("names").qualname,
            "other"
        );
        // Not a code object at all.
        fake.put_u64(0x3000 + 8, 0xbad);
        let bad = RawFrame {
            code: 0x3000,
            ..frame
        };
        assert!(matches!(
            namer.name(&mem, &interp, &bad),
            Err(NameError::NotCode { .. })
        ));
        // A freed code object keeps its type, but its first word is the free list's next
        // block: not a count.
        let freed = 0x3400;
        fake.put_u64(freed, 0x7f55_3b8e_a4c0);
        fake.put_u64(freed + 8, 0xc0de);
        assert!(matches!(
            namer.name(
                &mem,
                &interp,
                &RawFrame {
                    code: freed,
                    ..frame
                }
            ),
            Err(NameError::NotCode { .. })
        ));
        // A 3.13 shim: its name is its file.
        let shim = 0x3c00;
        fake.put_code(o, shim, 1, 0x3e00, 0x3e00);
        fake.put_str(0x3e00, "__init__");
        let named = namer.name(
            &mem,
            &interp,
            &RawFrame {
                code: shim,
                ..frame
            },
        );
        assert_eq!(named.expect("a shim").file, SHIM_FILE);
        // A live code object whose file name was freed under it.
        fake.put_code(o, freed, 3, 0x2000, 0x3800);
        fake.put_str(0x3800, "gone.py");
        fake.put_u64(0x3800, 0);
        assert!(matches!(
            namer.name(
                &mem,
                &interp,
                &RawFrame {
                    code: freed,
                    ..frame
                }
            ),
            Err(NameError::Malformed { what: "str", .. })
        ));
        // The process is gone: its memory reads nothing, the cache still names it.
        let gone = Memory::new(tempfile::tempfile().expect("empty"));
        assert_eq!(
            namer.name(&gone, &interp, &frame).expect("cached").qualname,
            "other"
        );
        assert_eq!(namer.cached(7, 99, code).expect("cached").first_line, 10);
        assert!(
            namer.cached(7, 100, code).is_none(),
            "another process with the pid"
        );
        namer.forget(7);
        assert!(namer.cached(7, 99, code).is_none());
        assert!(matches!(
            namer.name(&gone, &interp, &frame),
            Err(NameError::Read { .. })
        ));
    }

    #[test]
    fn files_are_shown_relative_to_the_script_or_site_packages() {
        let dir = Path::new("/srv/app");
        assert_eq!(
            display_file("/srv/app/pkg/server.py", &[dir]),
            "pkg/server.py"
        );
        assert_eq!(
            display_file("/usr/lib/python3/dist-packages/requests/api.py", &[dir]),
            "requests/api.py"
        );
        assert_eq!(
            display_file("/v/lib/python3.11/site-packages/a/site-packages/b.py", &[]),
            "b.py"
        );
        assert_eq!(display_file("<frozen runpy>", &[dir]), "<frozen runpy>");
    }
}
