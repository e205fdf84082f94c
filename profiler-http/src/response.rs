//! Reading a response: the head (status line and headers) and the body, framed by
//! `Content-Length`, chunked transfer coding (RFC 9112 §7.1) or the end of the connection,
//! streamed to a writer under a size limit.

use std::io::{self, BufRead, Read, Write};

/// The longest response head (status line and headers) read, bytes.
pub const MAX_HEAD: usize = 64 * 1024;
/// The longest chunk-size line read, bytes.
const MAX_CHUNK_LINE: u64 = 4096;
/// The copy buffer.
const BLOCK: usize = 64 * 1024;

/// A response's status and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// HTTP status code.
    pub status: u16,
    /// Header names and values, in order (values trimmed).
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header called `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Whether the status is 2xx.
    #[must_use]
    pub fn is_success(&self) -> bool {
        is_success(self.status)
    }
}

/// The first of `headers` called `name` (case-insensitive).
pub(crate) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether `status` is 2xx.
pub(crate) fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// How the body's end is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(u64),
    Chunked,
    Close,
}

/// Why reading a response stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection failed or a time limit ran out.
    Io(io::Error),
    /// The body is larger than the limit.
    TooLarge,
    /// The response is not what HTTP/1.1 allows, or was cut off.
    Bad(String),
    /// The writer failed.
    Sink(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn bad(reason: impl Into<String>) -> ReadError {
    ReadError::Bad(reason.into())
}

/// Reads a response head; interim (1xx) responses are read past.
pub(crate) fn read_head(r: &mut impl BufRead, method: &str) -> Result<(Head, Framing), ReadError> {
    loop {
        let (head, framing) = read_one_head(r, method)?;
        if !(100..200).contains(&head.status) {
            return Ok((head, framing));
        }
    }
}

fn read_one_head(r: &mut impl BufRead, method: &str) -> Result<(Head, Framing), ReadError> {
    let mut raw = Vec::new();
    loop {
        let left = (MAX_HEAD - raw.len()) as u64;
        let n = r.by_ref().take(left).read_until(b'\n', &mut raw)?;
        if n == 0 {
            return Err(if raw.is_empty() {
                bad("the connection closed without an answer")
            } else if raw.len() >= MAX_HEAD {
                bad(format!("headers longer than {MAX_HEAD} bytes"))
            } else {
                bad("the connection closed inside the headers")
            });
        }
        if raw.ends_with(b"\r\n\r\n") || raw == b"\r\n" {
            break;
        }
    }
    let text = std::str::from_utf8(&raw[..raw.len().saturating_sub(4)])
        .map_err(|_| bad("headers are not text"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().unwrap_or_default().starts_with("HTTP/1.") {
        return Err(bad(format!("not an HTTP/1 status line: `{status_line}`")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| bad(format!("no status code in `{status_line}`")))?;
    let mut headers = Vec::new();
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(format!("malformed header line `{line}`")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| bad(format!("bad Content-Length `{value}`")))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("two different Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
        headers.push((name.trim().to_owned(), value.to_owned()));
    }
    // Chunked coding overrides a length (RFC 9112 §6.3); some answers have no body at all.
    let framing = if method == "HEAD" || matches!(status, 100..=199 | 204 | 304) {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    Ok((Head { status, headers }, framing))
}

/// Streams the body to `sink`, at most `max` bytes of it; returns its length.
pub(crate) fn read_body(
    r: &mut impl BufRead,
    framing: Framing,
    max: u64,
    sink: &mut dyn Write,
) -> Result<u64, ReadError> {
    match framing {
        Framing::Length(n) => {
            if n > max {
                return Err(ReadError::TooLarge);
            }
            let got = copy(&mut r.take(n), sink, max, 0)?;
            if got < n {
                return Err(bad(format!(
                    "the body was cut off: {got} of {n} bytes arrived"
                )));
            }
            Ok(n)
        }
        Framing::Close => copy(r, sink, max, 0),
        Framing::Chunked => read_chunked(r, max, sink),
    }
}

/// Copies `r` to its end into `sink`; [`ReadError::TooLarge`] once `done` plus what was
/// copied passes `max`. A connection reset or a TLS peer that closes without notice ends a
/// body framed by the connection's end as a clean close would.
fn copy(r: &mut impl Read, sink: &mut dyn Write, max: u64, done: u64) -> Result<u64, ReadError> {
    let mut block = vec![0u8; BLOCK];
    let mut copied = 0u64;
    loop {
        let n = match r.read(&mut block) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
                ) =>
            {
                return Ok(copied);
            }
            Err(e) => return Err(e.into()),
        };
        if done + copied + n as u64 > max {
            return Err(ReadError::TooLarge);
        }
        sink.write_all(&block[..n]).map_err(ReadError::Sink)?;
        copied += n as u64;
    }
}

/// Decodes a chunked body of at most `max` bytes into `sink`, ignoring chunk extensions
/// and trailers.
fn read_chunked(r: &mut impl BufRead, max: u64, sink: &mut dyn Write) -> Result<u64, ReadError> {
    let mut total = 0u64;
    loop {
        let mut line = Vec::new();
        r.by_ref()
            .take(MAX_CHUNK_LINE)
            .read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\r\n") {
            return Err(bad("the chunked body was cut off in a chunk size"));
        }
        let size_text =
            std::str::from_utf8(&line[..line.len() - 2]).map_err(|_| bad("bad chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| bad(format!("bad chunk size `{size_text}`")))?;
        if size == 0 {
            return Ok(total);
        }
        if total.saturating_add(size) > max {
            return Err(ReadError::TooLarge);
        }
        let got = copy(&mut r.take(size), sink, max, total)?;
        total += got;
        let mut crlf = [0u8; 2];
        if got < size || r.read_exact(&mut crlf).is_err() || &crlf != b"\r\n" {
            return Err(bad("the chunked body was cut off inside a chunk"));
        }
    }
}

/// A `Vec` that grows by at most what `max` leaves, so a body near the limit never
/// reserves much more than the limit (a doubling `Vec` would reserve twice).
pub(crate) struct Collect {
    pub(crate) buf: Vec<u8>,
    max: usize,
}

impl Collect {
    pub(crate) fn new(max: u64) -> Self {
        Collect {
            buf: Vec::new(),
            max: usize::try_from(max).unwrap_or(usize::MAX),
        }
    }
}

impl Write for Collect {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let len = self.buf.len();
        if self.buf.capacity() - len < data.len() {
            let grow = len.max(data.len()).min(self.max.saturating_sub(len));
            self.buf.reserve_exact(grow.max(data.len()));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps the first `keep` bytes written and drops the rest (an error status's message).
pub(crate) struct KeepStart {
    pub(crate) buf: Vec<u8>,
    keep: usize,
}

impl KeepStart {
    pub(crate) fn new(keep: usize) -> Self {
        KeepStart {
            buf: Vec::new(),
            keep,
        }
    }
}

impl Write for KeepStart {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.keep.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&data[..room.min(data.len())]);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(r: &[u8]) -> Result<(u16, Vec<u8>), String> {
        let mut r = r;
        let mut out = Vec::new();
        let result = read_head(&mut r, "GET").and_then(|(head, framing)| {
            read_body(&mut r, framing, 1 << 20, &mut out).map(|_| head)
        });
        match result {
            Ok(head) => Ok((head.status, out)),
            Err(ReadError::Bad(e)) => Err(e),
            Err(e) => Err(format!("{e:?}")),
        }
    }

    #[test]
    fn responses_are_framed_by_length_chunks_or_close() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloEXTRA";
        assert_eq!(parse(r).unwrap(), (200, b"hello".to_vec()));
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;x=y\r\n!\r\n0\r\n\r\n";
        assert_eq!(parse(r).unwrap(), (200, b"hello!".to_vec()));
        let r = b"HTTP/1.0 400 Bad Request\r\n\r\n{\"error\":\"x\"}";
        assert_eq!(parse(r).unwrap(), (400, b"{\"error\":\"x\"}".to_vec()));
        let r =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n";
        assert_eq!(parse(r).unwrap(), (204, Vec::new()));
    }

    #[test]
    fn cut_off_and_malformed_responses_are_errors() {
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nhello";
        assert!(parse(cut).unwrap_err().contains("cut off: 5 of 50"));
        let cut = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n50\r\nhello";
        assert!(parse(cut).unwrap_err().contains("cut off"));
        let cut = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello";
        assert!(parse(cut).unwrap_err().contains("cut off"));
        assert!(parse(b"").unwrap_err().contains("without an answer"));
        assert!(
            parse(b"HTTP/1.1 200 OK\r\nx: y")
                .unwrap_err()
                .contains("inside the headers")
        );
        assert!(
            parse(b"SSH-2.0\r\n\r\n")
                .unwrap_err()
                .contains("not an HTTP/1")
        );
        assert!(
            parse(b"HTTP/1.1 abc\r\n\r\n")
                .unwrap_err()
                .contains("no status")
        );
        assert!(parse(b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n").is_err());
        let two = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab";
        assert!(parse(two).unwrap_err().contains("two different"));
        let long = [b"HTTP/1.1 200 OK\r\nx: ".as_slice(), &[b'a'; MAX_HEAD]].concat();
        assert!(parse(&long).unwrap_err().contains("longer than"));
    }

    #[test]
    fn bodies_over_the_limit_are_refused() {
        for r in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\nabc"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffff\r\nabc",
        ] {
            assert_eq!(parse(r).unwrap_err(), "TooLarge");
        }
        let mut r = &b"HTTP/1.1 200 OK\r\n\r\n0123456789"[..];
        let (_, framing) = read_head(&mut r, "GET").unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            read_body(&mut r, framing, 9, &mut out),
            Err(ReadError::TooLarge)
        ));
    }

    #[test]
    fn keep_start_and_collect_hold_what_they_should() {
        let mut k = KeepStart::new(4);
        k.write_all(b"abc").unwrap();
        k.write_all(b"defgh").unwrap();
        assert_eq!(k.buf, b"abcd");
        let mut c = Collect::new(10);
        c.write_all(&[1; 6]).unwrap();
        c.write_all(&[2; 4]).unwrap();
        assert_eq!(c.buf.len(), 10);
        assert!(c.buf.capacity() <= 12, "{}", c.buf.capacity());
    }
}
