//! Byte encodings of the store's rows: LEB128 varints, and the layouts of frames, stacks,
//! label sets and window payloads.
//!
//! Every layout starts with what it needs to be read back without outside help, and every
//! decoder checks lengths and tags, so a damaged row becomes a [`DecodeError`], never a panic.

use std::fmt;
use std::sync::Arc;

use profiler_model::{Frame, FrameKind, Location};

/// A row or payload whose bytes do not decode; the message says where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        // Truncation is the point: the low seven bits, with the continuation bit set.
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A cursor over bytes being decoded.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or(DecodeError("truncated varint"))?;
            self.buf = rest;
            if shift == 63 && b > 1 {
                return Err(DecodeError("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint longer than 10 bytes"))
    }

    /// A varint that must be a valid row id (positive, fits `i64`).
    pub(crate) fn id(&mut self) -> Result<i64, DecodeError> {
        i64::try_from(self.varint()?)
            .ok()
            .filter(|&id| id > 0)
            .ok_or(DecodeError("row id out of range"))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or(DecodeError("truncated byte"))?;
        self.buf = rest;
        Ok(b)
    }

    /// A length that cannot claim more items than bytes remain (each item takes at least one
    /// byte), so a damaged length cannot make us allocate gigabytes.
    pub(crate) fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.buf.len())
            .ok_or(DecodeError("length larger than the remaining bytes"))
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

fn put_id(out: &mut Vec<u8>, id: i64) {
    put_varint(out, id.unsigned_abs());
}

/// A frame with its strings replaced by string-row ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameRow {
    pub(crate) name: i64,
    pub(crate) kind: FrameKind,
    pub(crate) inlined: bool,
    pub(crate) module: Option<i64>,
    pub(crate) file: Option<i64>,
    pub(crate) line: Option<u32>,
    pub(crate) location: LocationRow,
}

/// A [`Location`] with the build-id replaced by a string-row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocationRow {
    Unknown,
    Kernel { addr: u64 },
    File { build_id: Option<i64>, offset: u64 },
    Virtual { addr: u64 },
}

const F_KERNEL: u8 = 1;
const F_INLINED: u8 = 2;
const F_MODULE: u8 = 4;
const F_FILE: u8 = 8;
const F_LINE: u8 = 16;
const F_BUILD_ID: u8 = 32;
/// A Python frame ([`FrameKind::Python`]); stores written before it have none.
const F_PYTHON: u8 = 64;

const L_UNKNOWN: u8 = 0;
const L_KERNEL: u8 = 1;
const L_FILE: u8 = 2;
const L_VIRTUAL: u8 = 3;

impl FrameRow {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut flags = 0;
        match self.kind {
            FrameKind::Kernel => flags |= F_KERNEL,
            FrameKind::Python => flags |= F_PYTHON,
            FrameKind::User => {}
        }
        if self.inlined {
            flags |= F_INLINED;
        }
        if self.module.is_some() {
            flags |= F_MODULE;
        }
        if self.file.is_some() {
            flags |= F_FILE;
        }
        if self.line.is_some() {
            flags |= F_LINE;
        }
        if let LocationRow::File {
            build_id: Some(_), ..
        } = self.location
        {
            flags |= F_BUILD_ID;
        }
        out.push(flags);
        put_id(out, self.name);
        if let Some(m) = self.module {
            put_id(out, m);
        }
        if let Some(f) = self.file {
            put_id(out, f);
        }
        if let Some(l) = self.line {
            put_varint(out, u64::from(l));
        }
        match self.location {
            LocationRow::Unknown => out.push(L_UNKNOWN),
            LocationRow::Kernel { addr } => {
                out.push(L_KERNEL);
                put_varint(out, addr);
            }
            LocationRow::File { build_id, offset } => {
                out.push(L_FILE);
                if let Some(b) = build_id {
                    put_id(out, b);
                }
                put_varint(out, offset);
            }
            LocationRow::Virtual { addr } => {
                out.push(L_VIRTUAL);
                put_varint(out, addr);
            }
        }
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<FrameRow, DecodeError> {
        let mut r = Reader::new(buf);
        let flags = r.u8()?;
        if flags & !(F_KERNEL | F_INLINED | F_MODULE | F_FILE | F_LINE | F_BUILD_ID | F_PYTHON) != 0
            || flags & (F_KERNEL | F_PYTHON) == F_KERNEL | F_PYTHON
        {
            return Err(DecodeError("unknown frame flags"));
        }
        let name = r.id()?;
        let module = (flags & F_MODULE != 0).then(|| r.id()).transpose()?;
        let file = (flags & F_FILE != 0).then(|| r.id()).transpose()?;
        let line = (flags & F_LINE != 0)
            .then(|| {
                r.varint().and_then(|l| {
                    u32::try_from(l).map_err(|_| DecodeError("line number out of range"))
                })
            })
            .transpose()?;
        let location = match r.u8()? {
            L_UNKNOWN => LocationRow::Unknown,
            L_KERNEL => LocationRow::Kernel { addr: r.varint()? },
            L_FILE => {
                let build_id = (flags & F_BUILD_ID != 0).then(|| r.id()).transpose()?;
                LocationRow::File {
                    build_id,
                    offset: r.varint()?,
                }
            }
            L_VIRTUAL => LocationRow::Virtual { addr: r.varint()? },
            _ => return Err(DecodeError("unknown location tag")),
        };
        r.finish()?;
        Ok(FrameRow {
            name,
            kind: if flags & F_KERNEL != 0 {
                FrameKind::Kernel
            } else if flags & F_PYTHON != 0 {
                FrameKind::Python
            } else {
                FrameKind::User
            },
            inlined: flags & F_INLINED != 0,
            module,
            file,
            line,
            location,
        })
    }

    /// The model frame, given the decoded strings this row names.
    pub(crate) fn into_frame(
        self,
        mut string: impl FnMut(i64) -> Option<Arc<[u8]>>,
    ) -> Result<Frame, DecodeError> {
        let mut text = |id| -> Result<Arc<str>, DecodeError> {
            let bytes = string(id).ok_or(DecodeError("missing or corrupt string row"))?;
            std::str::from_utf8(&bytes)
                .map(Arc::from)
                .map_err(|_| DecodeError("string row is not UTF-8"))
        };
        let name = text(self.name)?;
        let module = self.module.map(&mut text).transpose()?;
        let file = self.file.map(&mut text).transpose()?;
        let location = match self.location {
            LocationRow::Unknown => Location::Unknown,
            LocationRow::Kernel { addr } => Location::Kernel { addr },
            LocationRow::Virtual { addr } => Location::Virtual { addr },
            LocationRow::File { build_id, offset } => Location::File {
                build_id: build_id
                    .map(|id| string(id).ok_or(DecodeError("missing or corrupt build-id row")))
                    .transpose()?,
                offset,
            },
        };
        Ok(Frame {
            name,
            kind: self.kind,
            inlined: self.inlined,
            module,
            file,
            line: self.line,
            location,
        })
    }
}

/// A stack row: frame-row ids, root first.
pub(crate) fn encode_ids(ids: &[i64], out: &mut Vec<u8>) {
    put_varint(out, ids.len() as u64);
    for &id in ids {
        put_id(out, id);
    }
}

pub(crate) fn decode_ids(buf: &[u8]) -> Result<Vec<i64>, DecodeError> {
    let mut r = Reader::new(buf);
    let n = r.len()?;
    let ids = (0..n).map(|_| r.id()).collect::<Result<Vec<_>, _>>()?;
    r.finish()?;
    Ok(ids)
}

/// A label-set row: `(name, value)` string-row id pairs, sorted by name as [`Labels`] keeps
/// them. Encoded as a flat id list.
///
/// [`Labels`]: profiler_model::Labels
pub(crate) fn encode_pairs(pairs: &[(i64, i64)], out: &mut Vec<u8>) {
    put_varint(out, pairs.len() as u64);
    for &(k, v) in pairs {
        put_id(out, k);
        put_id(out, v);
    }
}

pub(crate) fn decode_pairs(buf: &[u8]) -> Result<Vec<(i64, i64)>, DecodeError> {
    let mut r = Reader::new(buf);
    let n = r.len()?;
    let pairs = (0..n)
        .map(|_| Ok((r.id()?, r.id()?)))
        .collect::<Result<Vec<_>, DecodeError>>()?;
    r.finish()?;
    Ok(pairs)
}

/// One line of a window payload: samples of one stack row under one label-set row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    pub(crate) labels: i64,
    pub(crate) stack: i64,
    pub(crate) count: u64,
}

/// Version byte of the (uncompressed) window payload layout.
const PAYLOAD_V1: u8 = 1;

/// Encodes a window's entries, which must be sorted by `(labels, stack)`: label ids are
/// delta-coded, and stack ids too within one label set, so zstd sees small repeating numbers.
pub(crate) fn encode_entries(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 6 + 8);
    out.push(PAYLOAD_V1);
    put_varint(&mut out, entries.len() as u64);
    let (mut prev_labels, mut prev_stack) = (0_i64, 0_i64);
    for e in entries {
        let dl = e.labels - prev_labels;
        put_varint(&mut out, dl.unsigned_abs());
        let ds = if dl == 0 {
            e.stack - prev_stack
        } else {
            e.stack
        };
        put_varint(&mut out, ds.unsigned_abs());
        put_varint(&mut out, e.count);
        prev_labels = e.labels;
        prev_stack = e.stack;
    }
    out
}

pub(crate) fn decode_entries(buf: &[u8]) -> Result<Vec<Entry>, DecodeError> {
    let mut r = Reader::new(buf);
    if r.u8()? != PAYLOAD_V1 {
        return Err(DecodeError("unknown payload version"));
    }
    let n = r.len()?;
    let mut out = Vec::with_capacity(n);
    let (mut labels, mut stack) = (0_i64, 0_i64);
    for _ in 0..n {
        let dl = r.varint()?;
        let ds = r.varint()?;
        let count = r.varint()?;
        let next_labels = i64::try_from(dl)
            .ok()
            .and_then(|d| labels.checked_add(d))
            .ok_or(DecodeError("label id out of range"))?;
        let base = if dl == 0 { stack } else { 0 };
        stack = i64::try_from(ds)
            .ok()
            .and_then(|d| base.checked_add(d))
            .ok_or(DecodeError("stack id out of range"))?;
        labels = next_labels;
        if labels <= 0 || stack <= 0 {
            return Err(DecodeError("row id out of range"));
        }
        out.push(Entry {
            labels,
            stack,
            count,
        });
    }
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_truncation() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(Reader::new(&b).varint(), Ok(v));
            assert!(Reader::new(&b[..b.len() - 1]).varint().is_err());
        }
    }

    #[test]
    fn frame_rows_round_trip() {
        let row = FrameRow {
            name: 3,
            kind: FrameKind::User,
            inlined: true,
            module: Some(4),
            file: None,
            line: Some(42),
            location: LocationRow::File {
                build_id: Some(9),
                offset: 0x1234,
            },
        };
        let mut b = Vec::new();
        row.encode(&mut b);
        assert_eq!(FrameRow::decode(&b), Ok(row));
        assert!(FrameRow::decode(&b[..b.len() - 1]).is_err());
        // Python frames: a file and a line, no module or location.
        let py = FrameRow {
            name: 5,
            kind: FrameKind::Python,
            inlined: false,
            module: None,
            file: Some(6),
            line: Some(17),
            location: LocationRow::Unknown,
        };
        let mut b = Vec::new();
        py.encode(&mut b);
        assert_eq!(FrameRow::decode(&b), Ok(py));
        // Kernel and Python at once is no frame.
        b[0] |= F_KERNEL;
        assert!(FrameRow::decode(&b).is_err());
    }

    #[test]
    fn entries_round_trip_and_garbage_is_an_error() {
        let e = vec![
            Entry {
                labels: 1,
                stack: 5,
                count: 3,
            },
            Entry {
                labels: 1,
                stack: 9,
                count: 1,
            },
            Entry {
                labels: 4,
                stack: 2,
                count: 7,
            },
        ];
        let b = encode_entries(&e);
        assert_eq!(decode_entries(&b), Ok(e));
        assert!(decode_entries(&[1, 200, 1, 1]).is_err());
        assert!(decode_entries(&[]).is_err());
    }
}
