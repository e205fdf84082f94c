//! The protobuf wire format, the small part pprof needs: varints, length-delimited fields
//! and skipping what we do not know.

use super::PprofError;

/// Wire type of a varint field.
pub(super) const VARINT: u8 = 0;
/// Wire type of a fixed 64-bit field.
pub(super) const I64: u8 = 1;
/// Wire type of a length-delimited field (strings, messages, packed repeated scalars).
pub(super) const LEN: u8 = 2;
/// Wire type of a fixed 32-bit field.
pub(super) const I32: u8 = 5;

/// Appends protobuf fields to a buffer.
#[derive(Default)]
pub(super) struct Writer {
    pub(super) buf: Vec<u8>,
}

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    /// A varint field, left out when zero (proto3 default).
    pub(super) fn u64(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, VARINT);
            self.varint(v);
        }
    }

    /// An int64 field, left out when zero.
    pub(super) fn i64(&mut self, field: u32, v: i64) {
        self.u64(field, v as u64);
    }

    /// A bool field, left out when false.
    pub(super) fn bool(&mut self, field: u32, v: bool) {
        self.u64(field, u64::from(v));
    }

    /// A length-delimited field (always written, even when empty).
    pub(super) fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, LEN);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    /// A packed repeated varint field, left out when empty.
    pub(super) fn packed(&mut self, field: u32, vs: impl IntoIterator<Item = u64>) {
        let mut inner = Writer::default();
        for v in vs {
            inner.varint(v);
        }
        if !inner.buf.is_empty() {
            self.bytes(field, &inner.buf);
        }
    }

    /// An embedded message field, built by `f`.
    pub(super) fn message(&mut self, field: u32, f: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        f(&mut inner);
        self.bytes(field, &inner.buf);
    }
}

/// The value of one field as read.
#[derive(Clone, Copy, Debug)]
pub(super) enum Value<'a> {
    /// A varint (or a fixed-width value, widened).
    Int(u64),
    /// A length-delimited payload and the absolute offset where it starts.
    Bytes(&'a [u8], usize),
}

/// Reads the fields of one message.
pub(super) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Absolute offset of `data[0]` in the whole (uncompressed) profile.
    base: usize,
    /// What is being read, for error messages.
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(data: &'a [u8], base: usize, what: &'static str) -> Self {
        Reader {
            data,
            pos: 0,
            base,
            what,
        }
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn truncated(&self) -> PprofError {
        PprofError::Truncated {
            what: self.what,
            offset: self.offset(),
        }
    }

    fn varint(&mut self) -> Result<u64, PprofError> {
        let start = self.offset();
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.data.get(self.pos) else {
                return Err(self.truncated());
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(PprofError::Malformed {
                    what: self.what,
                    offset: start,
                    reason: "varint longer than 64 bits",
                });
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(PprofError::Malformed {
            what: self.what,
            offset: start,
            reason: "varint longer than 10 bytes",
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PprofError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| self.truncated())?;
        let b = &self.data[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    /// The next field: its number, its value and the absolute offset of its key.
    pub(super) fn next(&mut self) -> Result<Option<(u64, Value<'a>, usize)>, PprofError> {
        if self.pos >= self.data.len() {
            return Ok(None);
        }
        let at = self.offset();
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(PprofError::Malformed {
                what: self.what,
                offset: at,
                reason: "field number 0",
            });
        }
        let value = match (key & 7) as u8 {
            VARINT => Value::Int(self.varint()?),
            I64 => {
                let b = self.take(8)?;
                Value::Int(u64::from_le_bytes(b.try_into().expect("took 8 bytes")))
            }
            LEN => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| self.truncated())?;
                let start = self.offset();
                Value::Bytes(self.take(len)?, start)
            }
            I32 => {
                let b = self.take(4)?;
                Value::Int(u64::from(u32::from_le_bytes(
                    b.try_into().expect("took 4 bytes"),
                )))
            }
            _ => {
                return Err(PprofError::Malformed {
                    what: self.what,
                    offset: at,
                    reason: "unsupported wire type (groups or garbage)",
                });
            }
        };
        Ok(Some((field, value, at)))
    }
}

impl<'a> Value<'a> {
    /// The value as an integer; a length-delimited value is an error.
    pub(super) fn int(self, what: &'static str, at: usize) -> Result<u64, PprofError> {
        match self {
            Value::Int(v) => Ok(v),
            Value::Bytes(..) => Err(PprofError::Malformed {
                what,
                offset: at,
                reason: "expected a number, found a length-delimited field",
            }),
        }
    }

    /// The value as bytes with their absolute offset; an integer is an error.
    pub(super) fn bytes(
        self,
        what: &'static str,
        at: usize,
    ) -> Result<(&'a [u8], usize), PprofError> {
        match self {
            Value::Bytes(b, start) => Ok((b, start)),
            Value::Int(_) => Err(PprofError::Malformed {
                what,
                offset: at,
                reason: "expected a length-delimited field, found a number",
            }),
        }
    }

    /// A repeated varint field, packed or not: pushes its values onto `out`.
    pub(super) fn repeated(self, what: &'static str, out: &mut Vec<u64>) -> Result<(), PprofError> {
        match self {
            Value::Int(v) => out.push(v),
            Value::Bytes(b, start) => {
                let mut r = Reader::new(b, start, what);
                while r.pos < b.len() {
                    out.push(r.varint()?);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_including_negative_int64() {
        let mut w = Writer::default();
        w.u64(1, 300);
        w.i64(2, -5);
        w.u64(3, u64::MAX);
        w.packed(4, [1, 2, 150]);
        let mut r = Reader::new(&w.buf, 0, "test");
        let mut got = Vec::new();
        while let Some((f, v, _)) = r.next().unwrap() {
            if f == 4 {
                let mut xs = Vec::new();
                v.repeated("test", &mut xs).unwrap();
                assert_eq!(xs, [1, 2, 150]);
            } else {
                got.push((f, v.int("test", 0).unwrap()));
            }
        }
        assert_eq!(got, [(1, 300), (2, (-5i64) as u64), (3, u64::MAX)]);
    }

    #[test]
    fn overlong_varints_are_errors() {
        let bad = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ];
        let err = Reader::new(&bad, 0, "test").next().unwrap_err();
        assert!(err.to_string().contains("varint"), "{err}");
    }
}
