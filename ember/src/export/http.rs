//! A minimal blocking HTTP/1.1 GET client, for `ember export --agent URL` and nothing else.
//!
//! The agent's API is plain HTTP on a loopback or cluster address, and `export` makes one
//! request per run, so a dependency-free client over [`TcpStream`] is enough: `http://` URLs
//! only (no TLS, no redirects, no proxies, no keep-alive), `Connection: close`, and a body
//! framed by `Content-Length`, chunked transfer coding, or the end of the connection. A body
//! shorter than its framing says is an error, never a silently truncated profile.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The longest response head (status line and headers) read.
const MAX_HEAD: u64 = 64 * 1024;

/// How long a request may take and how much it may bring back (`ember export --agent-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connecting, per address.
    pub connect_timeout: Duration,
    /// The longest silence while sending the request or reading the answer.
    pub read_timeout: Duration,
    /// The whole request, from connecting to the last byte of the body.
    pub total_timeout: Duration,
    /// The largest body accepted, bytes (after chunked decoding).
    pub max_body: u64,
}

impl Default for Limits {
    /// 10 s to connect, 60 s of silence, 5 min in all, 256 MiB of body.
    fn default() -> Self {
        Limits {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            total_timeout: Duration::from_secs(300),
            max_body: 256 << 20,
        }
    }
}

/// An HTTP request that failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not one this client handles.
    #[error("bad agent URL `{url}`: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Connecting, sending or receiving failed.
    #[error("cannot reach the agent at `{url}`")]
    Io {
        /// The URL requested.
        url: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The agent did not answer in time.
    #[error("no answer from the agent at `{url}`: {reason}")]
    TimedOut {
        /// The URL requested.
        url: String,
        /// Which limit, and the flag that sets it.
        reason: String,
    },
    /// The answer is larger than `--agent-max-response`.
    #[error(
        "the agent at `{url}` sent more than {limit} bytes; raise --agent-max-response if the \
         profile is genuine, or narrow --from/--to or --filter"
    )]
    TooLarge {
        /// The URL requested.
        url: String,
        /// The limit, bytes.
        limit: u64,
    },
    /// The response is not valid HTTP.
    #[error("bad HTTP response from `{url}`: {reason}")]
    BadResponse {
        /// The URL requested.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("the agent at `{url}` answered {status}: {body}")]
    Status {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body (the API's JSON error message).
        body: String,
    },
}

/// `http://host[:port][/prefix]` split into the address to connect to, the `Host` header and
/// the path prefix (without a trailing slash).
#[derive(Debug, PartialEq, Eq)]
pub struct BaseUrl {
    /// `host:port`.
    pub authority: String,
    /// Path prefix, empty or starting with `/`.
    pub prefix: String,
}

impl BaseUrl {
    /// Parses an agent URL.
    ///
    /// # Errors
    /// [`HttpError::BadUrl`] for anything but `http://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = |reason| HttpError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let rest = if let Some(r) = url.strip_prefix("http://") {
            r
        } else if url.starts_with("https://") {
            return Err(bad(
                "https is not supported; reach the agent over http (it listens on loopback by default)",
            ));
        } else {
            return Err(bad(
                "expected http://HOST:PORT, such as http://127.0.0.1:7070",
            ));
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        if authority.contains('@') || path.contains(['?', '#']) {
            return Err(bad(
                "expected http://HOST:PORT[/PATH] without user, query or fragment",
            ));
        }
        let has_port = match authority.rfind(']') {
            Some(bracket) => authority[bracket..].contains(':'),
            None => authority.contains(':'),
        };
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(BaseUrl {
            authority,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }
}

/// Percent-encodes a query-string value (everything but RFC 3986's unreserved characters).
#[must_use]
pub fn encode_query_value(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Why reading a response stopped.
#[derive(Debug)]
enum ReadError {
    /// The socket failed or a timeout passed.
    Io(io::Error),
    /// The body is larger than the limit.
    TooLarge,
    /// The response is not what HTTP/1.1 allows.
    Bad(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl From<String> for ReadError {
    fn from(e: String) -> Self {
        ReadError::Bad(e)
    }
}

impl From<&str> for ReadError {
    fn from(e: &str) -> Self {
        ReadError::Bad(e.to_owned())
    }
}

/// A timeout, said in the words of the flag that sets it.
#[derive(Debug)]
struct Timeout(String);

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Timeout {}

fn timeout(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, Timeout(reason))
}

/// A socket whose every read waits at most the read timeout and never past the deadline.
struct Deadlined {
    stream: TcpStream,
    deadline: Instant,
    limits: Limits,
}

impl Deadlined {
    fn overall(&self) -> io::Error {
        timeout(format!(
            "the answer took longer than {} (--agent-timeout)",
            humantime(self.limits.total_timeout)
        ))
    }

    fn silent(&self) -> io::Error {
        timeout(format!(
            "nothing arrived for {} (--agent-read-timeout)",
            humantime(self.limits.read_timeout)
        ))
    }

    /// The wait for the next read or write, or the overall timeout when none is left.
    fn wait(&self) -> io::Result<(Duration, bool)> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.overall());
        }
        Ok(if left < self.limits.read_timeout {
            (left, true)
        } else {
            (self.limits.read_timeout, false)
        })
    }

    fn timed_out(&self, e: io::Error, overall: bool) -> io::Error {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            if overall {
                self.overall()
            } else {
                self.silent()
            }
        } else {
            e
        }
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (wait, overall) = self.wait()?;
        self.stream.set_read_timeout(Some(wait))?;
        self.stream
            .read(buf)
            .map_err(|e| self.timed_out(e, overall))
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (wait, overall) = self.wait()?;
        self.stream.set_write_timeout(Some(wait))?;
        self.stream
            .write(buf)
            .map_err(|e| self.timed_out(e, overall))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// `1.5 s`, `300 ms`: a timeout for a message.
fn humantime(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

/// GETs `path_and_query` (starting with `/`) from `base` and returns the body of a 200
/// answer, within `limits`: each connect, each silence and the whole request are timed,
/// and a body larger than `limits.max_body` is refused (a `Content-Length` over it before
/// the body is read).
///
/// # Errors
/// [`HttpError`] for connection failures, timeouts, malformed, truncated or oversized
/// responses and any status other than 200 (with the start of the body, where the API
/// explains itself).
pub fn get(
    base: &BaseUrl,
    path_and_query: &str,
    limits: &Limits,
    bearer: Option<&str>,
) -> Result<Vec<u8>, HttpError> {
    let url = format!("http://{}{}{path_and_query}", base.authority, base.prefix);
    let start = Instant::now();
    let io_err = |source: io::Error| {
        let timed_out = source
            .get_ref()
            .and_then(|e| e.downcast_ref::<Timeout>())
            .map(ToString::to_string);
        match timed_out {
            Some(reason) => HttpError::TimedOut {
                url: url.clone(),
                reason,
            },
            None => HttpError::Io {
                url: url.clone(),
                source,
            },
        }
    };
    let addrs: Vec<_> = base.authority.to_socket_addrs().map_err(io_err)?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, limits.connect_timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                last = timeout(format!(
                    "could not connect within {} (--agent-connect-timeout)",
                    humantime(limits.connect_timeout)
                ));
            }
            Err(e) => last = e,
        }
    }
    let stream = stream.ok_or_else(|| io_err(last))?;
    let mut conn = Deadlined {
        stream,
        deadline: start + limits.total_timeout,
        limits: *limits,
    };
    let authorization = bearer.map_or_else(String::new, |token| {
        format!("Authorization: Bearer {token}\r\n")
    });
    let request = format!(
        "GET {}{path_and_query} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ember/{}\r\n\
         {authorization}Accept: */*\r\nConnection: close\r\n\r\n",
        base.prefix,
        base.authority,
        env!("CARGO_PKG_VERSION")
    );
    conn.write_all(request.as_bytes()).map_err(io_err)?;
    let mut reader = BufReader::new(conn);
    let (status, body) = match read_response(&mut reader, limits.max_body) {
        Ok(r) => r,
        Err(ReadError::Io(e)) => return Err(io_err(e)),
        Err(ReadError::TooLarge) => {
            return Err(HttpError::TooLarge {
                url,
                limit: limits.max_body,
            });
        }
        Err(ReadError::Bad(reason)) => return Err(HttpError::BadResponse { url, reason }),
    };
    if status != 200 {
        let text = String::from_utf8_lossy(&body);
        let text: String = text.trim().chars().take(500).collect();
        return Err(HttpError::Status {
            url,
            status,
            body: text,
        });
    }
    Ok(body)
}

/// Reads a response's head and its body, as its framing says, up to `max_body` bytes.
fn read_response(r: &mut impl BufRead, max_body: u64) -> Result<(u16, Vec<u8>), ReadError> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = r
            .by_ref()
            .take(MAX_HEAD - before as u64)
            .read_until(b'\n', &mut head)?;
        if n == 0 {
            return Err(if head.is_empty() {
                "the connection closed without an answer".into()
            } else {
                "the connection closed inside the headers".into()
            });
        }
        if head.ends_with(b"\r\n\r\n") {
            break;
        }
        if head.len() as u64 >= MAX_HEAD {
            return Err(format!("headers longer than {MAX_HEAD} bytes").into());
        }
    }
    let head = std::str::from_utf8(&head[..head.len() - 4])
        .map_err(|_| "headers are not text".to_owned())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 status line: `{status_line}`").into());
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status code in `{status_line}`"))?;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed header line `{line}`").into());
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse()
                    .map_err(|_| format!("bad Content-Length `{value}`"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = if chunked {
        decode_chunked(r, max_body)?
    } else if let Some(n) = length {
        if n > max_body {
            return Err(ReadError::TooLarge);
        }
        let body = read_capped(&mut r.take(n), n)?;
        if (body.len() as u64) < n {
            return Err(
                format!("the body was cut off: {} of {n} bytes arrived", body.len()).into(),
            );
        }
        body
    } else {
        read_capped(r, max_body)?
    };
    Ok((status, body))
}

/// Reads `r` to its end, or [`ReadError::TooLarge`] past `max` bytes. The buffer grows
/// by at most what the limit leaves, so it never reserves much more than `max`.
fn read_capped(r: &mut impl Read, max: u64) -> Result<Vec<u8>, ReadError> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut body = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => return Ok(body),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if body.len().saturating_add(n) > max {
            return Err(ReadError::TooLarge);
        }
        if body.capacity() - body.len() < n {
            let grow = body.len().max(n).min(max - body.len());
            body.reserve_exact(grow.max(n));
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

/// Decodes a chunked body (RFC 9112 §7.1) of at most `max` bytes, ignoring chunk
/// extensions and trailers.
fn decode_chunked(r: &mut impl BufRead, max: u64) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    loop {
        let mut line = Vec::new();
        r.by_ref().take(4096).read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\r\n") {
            return Err("the chunked body was cut off in a chunk size".into());
        }
        let size_text =
            std::str::from_utf8(&line[..line.len() - 2]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size `{size_text}`"))?;
        if size == 0 {
            return Ok(out);
        }
        if out.len() as u64 + size > max {
            return Err(ReadError::TooLarge);
        }
        let before = out.len();
        r.take(size).read_to_end(&mut out)?;
        let mut crlf = [0u8; 2];
        if ((out.len() - before) as u64) < size || r.read_exact(&mut crlf).is_err() {
            return Err("the chunked body was cut off inside a chunk".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_https_is_refused_clearly() {
        assert_eq!(
            BaseUrl::parse("http://127.0.0.1:7070").unwrap(),
            BaseUrl {
                authority: "127.0.0.1:7070".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            BaseUrl::parse("http://agent/ember/").unwrap(),
            BaseUrl {
                authority: "agent:80".into(),
                prefix: "/ember".into()
            }
        );
        assert_eq!(
            BaseUrl::parse("http://[::1]:7070").unwrap().authority,
            "[::1]:7070"
        );
        let err = BaseUrl::parse("https://x").unwrap_err().to_string();
        assert!(err.contains("https is not supported"), "{err}");
        assert!(BaseUrl::parse("127.0.0.1:7070").is_err());
        assert!(BaseUrl::parse("http://").is_err());
    }

    fn parse_response(r: &[u8]) -> Result<(u16, Vec<u8>), String> {
        match read_response(&mut &r[..], 1 << 20) {
            Ok(r) => Ok(r),
            Err(ReadError::Bad(e)) => Err(e),
            Err(e) => Err(format!("{e:?}")),
        }
    }

    #[test]
    fn responses_are_framed_by_length_chunks_or_close() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloEXTRA";
        assert_eq!(parse_response(r).unwrap(), (200, b"hello".to_vec()));
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;x=y\r\n!\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), (200, b"hello!".to_vec()));
        let r = b"HTTP/1.0 400 Bad Request\r\n\r\n{\"error\":\"x\"}";
        assert_eq!(
            parse_response(r).unwrap(),
            (400, b"{\"error\":\"x\"}".to_vec())
        );
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nhello";
        assert!(parse_response(cut).unwrap_err().contains("cut off"));
        let cut = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n50\r\nhello";
        assert!(parse_response(cut).unwrap_err().contains("cut off"));
        assert!(
            parse_response(b"")
                .unwrap_err()
                .contains("without an answer")
        );
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode_query_value("comm=my app,pid=7"),
            "comm%3Dmy%20app%2Cpid%3D7"
        );
        assert_eq!(encode_query_value("a-b_c.d~"), "a-b_c.d~");
    }

    #[test]
    fn a_live_server_is_read_and_errors_carry_the_body() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for answer in [
                &b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc"[..],
                &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 7\r\n\r\nbad from"[..],
            ] {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                assert!(req.starts_with("GET /p/api?x=1 HTTP/1.1\r\n"), "{req}");
                s.write_all(answer).unwrap();
            }
        });
        let base = BaseUrl::parse(&format!("http://{addr}/p")).unwrap();
        assert_eq!(
            get(&base, "/api?x=1", &Limits::default(), None).unwrap(),
            b"abc"
        );
        let err = get(&base, "/api?x=1", &Limits::default(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("answered 400: bad fro"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn a_bearer_token_is_sent_only_when_given() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let answer: &[u8] =
                    if req.contains("\r\nAuthorization: Bearer 0123456789abcdef\r\n") {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                    } else {
                        b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\nno"
                    };
                s.write_all(answer).unwrap();
                requests.push(req);
            }
            requests
        });
        let base = BaseUrl::parse(&format!("http://{addr}")).unwrap();
        let err = get(&base, "/api", &Limits::default(), None).unwrap_err();
        assert!(
            matches!(err, HttpError::Status { status: 401, .. }),
            "{err}"
        );
        let body = get(&base, "/api", &Limits::default(), Some("0123456789abcdef")).unwrap();
        assert_eq!(body, b"ok");
        let requests = server.join().unwrap();
        assert!(!requests[0].contains("Authorization"), "{}", requests[0]);
    }

    /// A loopback server that answers one connection with `answer(stream)` and then holds
    /// it open (at most 10 s, or until the test is done), as a stalled or hostile agent
    /// does.
    fn hostile(
        answer: impl FnOnce(&mut TcpStream) + Send + 'static,
    ) -> (
        BaseUrl,
        std::sync::mpsc::Sender<()>,
        std::thread::JoinHandle<()>,
    ) {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            answer(&mut s);
            let _ = wait.recv_timeout(Duration::from_secs(10));
        });
        (
            BaseUrl::parse(&format!("http://{addr}")).unwrap(),
            done,
            server,
        )
    }

    fn quick() -> Limits {
        Limits {
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_millis(300),
            total_timeout: Duration::from_secs(5),
            max_body: 1 << 20,
        }
    }

    /// Runs `get` against a hostile server and returns its error and how long it took.
    fn against(
        limits: Limits,
        answer: impl FnOnce(&mut TcpStream) + Send + 'static,
    ) -> (HttpError, Duration) {
        let (base, done, server) = hostile(answer);
        let start = Instant::now();
        let err = get(&base, "/api/v1/profile", &limits, None).unwrap_err();
        let took = start.elapsed();
        let _ = done.send(());
        server.join().unwrap();
        (err, took)
    }

    #[test]
    fn a_server_that_stalls_after_the_status_line_times_out() {
        let (err, took) = against(quick(), |s| {
            s.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        });
        assert!(took < Duration::from_secs(3), "{took:?}");
        let msg = err.to_string();
        assert!(
            msg.ends_with("nothing arrived for 300 ms (--agent-read-timeout)"),
            "{msg}"
        );
    }

    #[test]
    fn a_short_body_under_a_larger_content_length_times_out() {
        let (err, took) = against(quick(), |s| {
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly this")
                .unwrap();
        });
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert!(matches!(err, HttpError::TimedOut { .. }), "{err}");
    }

    #[test]
    fn a_trickling_server_meets_the_overall_timeout() {
        let limits = Limits {
            total_timeout: Duration::from_millis(800),
            ..quick()
        };
        let (err, took) = against(limits, |s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
            for _ in 0..100 {
                std::thread::sleep(Duration::from_millis(100));
                if s.write_all(b"x").is_err() {
                    return;
                }
            }
        });
        assert!(took < Duration::from_secs(3), "{took:?}");
        let msg = err.to_string();
        assert!(
            msg.ends_with("the answer took longer than 800 ms (--agent-timeout)"),
            "{msg}"
        );
    }

    #[test]
    fn oversized_answers_are_refused_without_being_read() {
        // A Content-Length of 1 GB is refused from the headers.
        let (err, took) = against(quick(), |s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\nabc");
        });
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert!(
            matches!(err, HttpError::TooLarge { limit, .. } if limit == 1 << 20),
            "{err}"
        );
        assert!(err.to_string().contains("--agent-max-response"), "{err}");
        // A body framed by the end of the connection stops at the limit.
        let (err, _) = against(quick(), |s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            let block = vec![b'x'; 64 * 1024];
            for _ in 0..64 {
                if s.write_all(&block).is_err() {
                    return;
                }
            }
        });
        assert!(matches!(err, HttpError::TooLarge { .. }), "{err}");
        // So does a chunked one.
        let (err, _) = against(quick(), |s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
            let block = vec![b'x'; 0x10000];
            for _ in 0..64 {
                if s.write_all(b"10000\r\n").is_err()
                    || s.write_all(&block).is_err()
                    || s.write_all(b"\r\n").is_err()
                {
                    return;
                }
            }
        });
        assert!(matches!(err, HttpError::TooLarge { .. }), "{err}");
    }
}
