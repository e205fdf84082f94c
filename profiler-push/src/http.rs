//! A small blocking HTTP/1.1 client: one `POST` per connection, with connect, read and
//! overall timeouts. The push stage sends one request every few seconds from its own
//! thread, so a connection pool or an async runtime would buy nothing.
//!
//! Only `http://` is spoken; an `https://` endpoint is refused when the agent starts (put
//! a local collector or proxy in front of a TLS backend).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The most of a response body kept (the backend's error message).
const MAX_BODY: usize = 64 * 1024;
/// The most of a response's head read.
const MAX_HEAD: usize = 16 * 1024;

/// An `http://host:port/base` endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address (brackets removed from IPv6 literals).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path prefix without a trailing `/` (empty for none).
    pub base_path: String,
}

/// An endpoint URL that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    /// Not `http://...`.
    #[error(
        "`{0}`: only http:// endpoints are supported (put a local collector or TLS proxy in \
         front of an https:// backend)"
    )]
    Scheme(String),
    /// No host or a bad port.
    #[error("`{0}`: expected http://HOST[:PORT][/PATH]")]
    Malformed(String),
}

impl Endpoint {
    /// Parses `http://host[:port][/path]`; the port defaults to 80.
    ///
    /// # Errors
    /// [`EndpointError`] for another scheme or a malformed URL.
    pub fn parse(url: &str) -> Result<Endpoint, EndpointError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| EndpointError::Scheme(url.to_owned()))?;
        let bad = || EndpointError::Malformed(url.to_owned());
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) || authority.contains('@') {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => 80,
                None => return Err(bad()),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
                None => (authority.to_owned(), 80),
            }
        };
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Endpoint {
            host,
            port,
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The URL again, without credentials (there are none), for logs and metrics.
    #[must_use]
    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{}{}", self.host, self.port, self.base_path)
        } else {
            format!("http://{}:{}{}", self.host, self.port, self.base_path)
        }
    }
}

/// Time limits of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the TCP connection (each resolved address).
    pub connect: Duration,
    /// Waiting for any one read or write.
    pub read: Duration,
    /// The whole request, from resolution to the response's last byte.
    pub overall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            read: Duration::from_secs(10),
            overall: Duration::from_secs(30),
        }
    }
}

/// A response: the status and (the start of) the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body, at most 64 KiB of it.
    pub body: Vec<u8>,
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The host name did not resolve.
    #[error("cannot resolve `{host}`")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No address accepted a connection.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// Why (refused, unreachable, timed out).
        #[source]
        source: io::Error,
    },
    /// A read or write failed or timed out.
    #[error("request to {addr} failed")]
    Io {
        /// The peer.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The request took longer than the overall timeout.
    #[error("no complete response from {addr} within {overall:?}")]
    Timeout {
        /// The peer.
        addr: SocketAddr,
        /// The overall timeout.
        overall: Duration,
    },
    /// The response is not HTTP/1.x.
    #[error("malformed HTTP response from {addr}: {what}")]
    Malformed {
        /// The peer.
        addr: SocketAddr,
        /// What is wrong.
        what: &'static str,
    },
}

/// `POST`s `body` to `path` (appended to the endpoint's base path) with `headers`, and
/// returns the response, whatever its status.
///
/// # Errors
/// [`HttpError`] when no complete response arrived.
pub fn post(
    endpoint: &Endpoint,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeouts: Timeouts,
) -> Result<Response, HttpError> {
    let deadline = Instant::now() + timeouts.overall;
    let addrs: Vec<SocketAddr> = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .map_err(|source| HttpError::Resolve {
            host: endpoint.host.clone(),
            source,
        })?
        .collect();
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeouts.connect) {
            Ok(s) => {
                stream = Some((s, addr));
                break;
            }
            Err(e) => last = Some((addr, e)),
        }
    }
    let (mut stream, addr) = match (stream, last) {
        (Some(s), _) => s,
        (None, Some((addr, source))) => return Err(HttpError::Connect { addr, source }),
        (None, None) => {
            return Err(HttpError::Resolve {
                host: endpoint.host.clone(),
                source: io::Error::new(io::ErrorKind::NotFound, "no address"),
            });
        }
    };
    let _ = stream.set_nodelay(true);
    let mut head = format!(
        "POST {}{} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         User-Agent: ember/{}\r\n",
        endpoint.base_path,
        path,
        host_header(endpoint),
        body.len(),
        env!("CARGO_PKG_VERSION"),
    );
    for (k, v) in headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut io = Deadline {
        stream: &mut stream,
        deadline,
        read: timeouts.read,
    };
    io.write_all(head.as_bytes())
        .and_then(|()| io.write_all(body))
        .map_err(|e| timed_out(e, addr, timeouts.overall, deadline))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (status, header_end, framing) = loop {
        let n = io
            .read(&mut buf)
            .map_err(|e| timed_out(e, addr, timeouts.overall, deadline))?;
        if n == 0 {
            return Err(HttpError::Malformed {
                addr,
                what: "connection closed before the response's head",
            });
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&raw, b"\r\n\r\n") {
            let (status, framing) = parse_head(&raw[..end]).ok_or(HttpError::Malformed {
                addr,
                what: "bad status line or headers",
            })?;
            break (status, end + 4, framing);
        }
        if raw.len() > MAX_HEAD {
            return Err(HttpError::Malformed {
                addr,
                what: "response head too long",
            });
        }
    };
    let mut rest = raw.split_off(header_end);
    let complete = |rest: &[u8]| match framing {
        Framing::Length(n) => rest.len() >= n || rest.len() >= MAX_BODY,
        Framing::Chunked => dechunk(rest).is_some() || rest.len() >= MAX_BODY,
        Framing::Close => rest.len() >= MAX_BODY,
    };
    while !complete(&rest) {
        let n = io
            .read(&mut buf)
            .map_err(|e| timed_out(e, addr, timeouts.overall, deadline))
            .or_else(|e| match framing {
                // A peer may reset instead of closing once it has answered.
                Framing::Close => Ok(0),
                _ => Err(e),
            })?;
        if n == 0 {
            break;
        }
        rest.extend_from_slice(&buf[..n]);
    }
    let mut body = match framing {
        Framing::Chunked => dechunk(&rest).unwrap_or(rest),
        Framing::Length(n) => {
            rest.truncate(n);
            rest
        }
        Framing::Close => rest,
    };
    body.truncate(MAX_BODY);
    Ok(Response { status, body })
}

fn host_header(e: &Endpoint) -> String {
    let host = if e.host.contains(':') {
        format!("[{}]", e.host)
    } else {
        e.host.clone()
    };
    if e.port == 80 {
        host
    } else {
        format!("{host}:{}", e.port)
    }
}

fn timed_out(e: io::Error, addr: SocketAddr, overall: Duration, deadline: Instant) -> HttpError {
    if Instant::now() >= deadline {
        HttpError::Timeout { addr, overall }
    } else {
        HttpError::Io { addr, source: e }
    }
}

/// A stream whose every read and write waits at most `read` and ends by `deadline`.
struct Deadline<'a> {
    stream: &'a mut TcpStream,
    deadline: Instant,
    read: Duration,
}

impl Deadline<'_> {
    fn limit(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "overall timeout"));
        }
        Ok(left.min(self.read))
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.limit()?))?;
        self.stream.read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.limit()?))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The status and body framing of a response head.
fn parse_head(head: &[u8]) -> Option<(u16, Framing)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let mut framing = Framing::Close;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            framing = Framing::Length(value.parse().ok()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
            break;
        }
    }
    if status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    Some((status, framing))
}

/// A complete chunked body decoded, or `None` while it is incomplete.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = find(raw, b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[end + 2..];
        if size == 0 {
            return Some(out);
        }
        if raw.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("http://pyroscope.obs:4040/").unwrap(),
            Endpoint {
                host: "pyroscope.obs".to_owned(),
                port: 4040,
                base_path: String::new(),
            }
        );
        let e = Endpoint::parse("http://[::1]:4318/otlp").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.base_path.as_str()),
            ("::1", 4318, "/otlp")
        );
        assert_eq!(e.url(), "http://[::1]:4318/otlp");
        assert_eq!(Endpoint::parse("http://collector").unwrap().port, 80);
        assert!(matches!(
            Endpoint::parse("https://x:1"),
            Err(EndpointError::Scheme(_))
        ));
        for bad in [
            "http://",
            "http://x:y",
            "http://u:p@x:1",
            "http://x:0",
            "http://x/?q",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    fn serve_once(reply: &'static [u8]) -> (Endpoint, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s);
            let mut len = 0;
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                head.extend_from_slice(line.as_bytes());
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            head.extend_from_slice(&body);
            r.get_mut().write_all(reply).unwrap();
            head
        });
        let e = Endpoint::parse(&format!("http://127.0.0.1:{port}/base")).unwrap();
        (e, t)
    }

    #[test]
    fn a_post_gets_its_response_with_either_framing() {
        let (e, t) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let headers = [("X-Scope-OrgID".to_owned(), "team-a".to_owned())];
        let r = post(&e, "/push", &headers, b"hello", Timeouts::default()).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        let sent = String::from_utf8(t.join().unwrap()).unwrap();
        assert!(sent.starts_with("POST /base/push HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("X-Scope-OrgID: team-a\r\n") && sent.ends_with("\r\n\r\nhello"));
        let (e, _t) = serve_once(
            b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbad \r\n5\r\nlabel\r\n0\r\n\r\n",
        );
        let r = post(&e, "/push", &[], b"x", Timeouts::default()).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (400, &b"bad label"[..]));
    }

    #[test]
    fn refused_and_silent_peers_are_errors() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = post(&e, "/", &[], b"", Timeouts::default()).unwrap_err();
        assert!(matches!(err, HttpError::Connect { .. }), "{err}");
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = Endpoint::parse(&format!("http://{}", silent.local_addr().unwrap())).unwrap();
        let t = Timeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_millis(200),
            overall: Duration::from_millis(300),
        };
        let started = Instant::now();
        assert!(post(&e, "/", &[], b"", t).is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
