//! The client: one request per connection, every step under a deadline.

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::endpoint::{Endpoint, Scheme};
use crate::error::{HttpError, TimeLimit};
use crate::response::{self, Collect, Head, KeepStart, ReadError};
use crate::tls::{self, TlsConfig};

/// The most of an error answer's body [`Client::get_to`] keeps (the server's message).
const ERROR_BODY: usize = 64 * 1024;

/// Time limits of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the TCP connection (each resolved address).
    pub connect: Duration,
    /// The longest silence while sending the request or reading the answer.
    pub read: Duration,
    /// The whole request, from connecting to the response's last byte.
    pub overall: Duration,
}

impl Default for Timeouts {
    /// 3 s to connect, 10 s of silence, 30 s in all.
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            read: Duration::from_secs(10),
            overall: Duration::from_secs(30),
        }
    }
}

/// How much a response may bring back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest body accepted, bytes (after chunked decoding).
    pub max_body: u64,
}

impl Default for Limits {
    /// 16 MiB of body.
    fn default() -> Self {
        Limits { max_body: 16 << 20 }
    }
}

/// A response with its body in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::response::find_header(&self.headers, name)
    }

    /// Whether the status is 2xx.
    #[must_use]
    pub fn is_success(&self) -> bool {
        crate::response::is_success(self.status)
    }
}

/// A blocking HTTP/1.1 client with time and size limits; cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    timeouts: Timeouts,
    limits: Limits,
    tls: Option<TlsConfig>,
}

impl Client {
    /// A client with these limits; `https://` endpoints are verified against the system's
    /// roots ([`TlsConfig::load`] without a private CA, loaded once per process).
    #[must_use]
    pub fn new(timeouts: Timeouts, limits: Limits) -> Client {
        Client {
            timeouts,
            limits,
            tls: None,
        }
    }

    /// The same client verifying `https://` endpoints with `tls` (a private CA).
    #[must_use]
    pub fn with_tls(mut self, tls: TlsConfig) -> Client {
        self.tls = Some(tls);
        self
    }

    /// Its time limits.
    #[must_use]
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Its size limits.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// `GET`s `path` (with its query; appended to the endpoint's base path) and returns the
    /// answer, whatever its status.
    ///
    /// # Errors
    /// [`HttpError`] when no complete answer within the limits arrived.
    pub fn get(
        &self,
        endpoint: &Endpoint,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response, HttpError> {
        self.collect("GET", endpoint, path, headers, None)
    }

    /// `POST`s `body` to `path` with `headers` and returns the answer, whatever its status.
    ///
    /// # Errors
    /// [`HttpError`] when no complete answer within the limits arrived.
    pub fn post(
        &self,
        endpoint: &Endpoint,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, HttpError> {
        self.collect("POST", endpoint, path, headers, Some(body))
    }

    /// `GET`s `path` and streams a 2xx answer's body to `sink` as it arrives (a file of
    /// tens of MB is never held in memory), still under [`Limits::max_body`]. Any other
    /// status's body is not written to `sink`: the returned [`Response`] holds its first
    /// 64 KiB (the server's message); for a 2xx its body is empty.
    ///
    /// On an error part of the body may have been written already: write to a temporary
    /// file and rename it once this returns a 2xx.
    ///
    /// # Errors
    /// [`HttpError`] when no complete answer within the limits arrived, or
    /// [`HttpError::Sink`] when `sink` failed.
    pub fn get_to(
        &self,
        endpoint: &Endpoint,
        path: &str,
        headers: &[(&str, &str)],
        sink: &mut dyn Write,
    ) -> Result<Response, HttpError> {
        let mut message = KeepStart::new(ERROR_BODY);
        let sinks = Sinks::Split {
            success: sink,
            other: &mut message,
        };
        let head = self.send("GET", endpoint, path, headers, None, sinks)?;
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body: message.buf,
        })
    }

    fn collect(
        &self,
        method: &str,
        endpoint: &Endpoint,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response, HttpError> {
        let mut out = Collect::new(self.limits.max_body);
        let head = self.send(method, endpoint, path, headers, body, Sinks::One(&mut out))?;
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body: out.buf,
        })
    }

    /// Sends one request and streams the answer's body to the writer `sinks` picks once
    /// the head is known.
    fn send(
        &self,
        method: &str,
        endpoint: &Endpoint,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        sinks: Sinks<'_>,
    ) -> Result<Head, HttpError> {
        let url = endpoint.url_of(path);
        let request = request_head(method, endpoint, path, headers, body.map(<[u8]>::len))?;
        let start = Instant::now();
        let tls = match endpoint.scheme {
            Scheme::Http => None,
            Scheme::Https => Some(self.tls_session(endpoint, &url)?),
        };
        let stream = self.connect(endpoint, &url)?;
        let _ = stream.set_nodelay(true);
        let socket = Deadlined {
            stream,
            deadline: start + self.timeouts.overall,
            read: self.timeouts.read,
        };
        let mut conn = match tls {
            None => Conn::Plain(socket),
            Some(session) => Conn::Tls(Box::new(rustls::StreamOwned::new(session, socket))),
        };
        let io_err = |source: io::Error| self.io_error(&url, source);
        conn.write_all(request.as_bytes()).map_err(io_err)?;
        if let Some(body) = body {
            conn.write_all(body).map_err(io_err)?;
        }
        conn.flush().map_err(io_err)?;
        let mut reader = BufReader::with_capacity(16 * 1024, conn);
        let read_err = |e: ReadError| match e {
            ReadError::Io(source) => self.io_error(&url, source),
            ReadError::TooLarge => HttpError::TooLarge {
                url: url.clone(),
                limit: self.limits.max_body,
            },
            ReadError::Bad(reason) => HttpError::Malformed {
                url: url.clone(),
                reason,
            },
            ReadError::Sink(source) => HttpError::Sink {
                url: url.clone(),
                source,
            },
        };
        let (head, framing) = response::read_head(&mut reader, method).map_err(read_err)?;
        let sink = match sinks {
            Sinks::One(sink) => sink,
            Sinks::Split { success, .. } if head.is_success() => success,
            Sinks::Split { other, .. } => other,
        };
        response::read_body(&mut reader, framing, self.limits.max_body, sink).map_err(read_err)?;
        Ok(head)
    }

    /// A TLS session for `endpoint`, its host name to be verified.
    fn tls_session(
        &self,
        endpoint: &Endpoint,
        url: &str,
    ) -> Result<rustls::ClientConnection, HttpError> {
        let config = match &self.tls {
            Some(tls) => tls.config.clone(),
            None => {
                TlsConfig::system_default()
                    .map_err(|reason| HttpError::TlsSetup {
                        url: url.to_owned(),
                        reason,
                    })?
                    .config
            }
        };
        let name =
            rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|_| {
                HttpError::Tls {
                    url: url.to_owned(),
                    source: rustls::Error::General(format!(
                        "`{}` is not a host name TLS can verify",
                        endpoint.host
                    )),
                }
            })?;
        rustls::ClientConnection::new(config, name).map_err(|source| HttpError::Tls {
            url: url.to_owned(),
            source,
        })
    }

    fn connect(&self, endpoint: &Endpoint, url: &str) -> Result<TcpStream, HttpError> {
        let addrs: Vec<SocketAddr> = (endpoint.host.as_str(), endpoint.port)
            .to_socket_addrs()
            .map_err(|source| HttpError::Resolve {
                host: endpoint.host.clone(),
                source,
            })?
            .collect();
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeouts.connect) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some((addr, e)),
            }
        }
        match last {
            Some((_, e)) if e.kind() == io::ErrorKind::TimedOut => Err(HttpError::TimedOut {
                url: url.to_owned(),
                limit: TimeLimit::Connect,
                after: self.timeouts.connect,
            }),
            Some((addr, source)) => Err(HttpError::Connect {
                url: url.to_owned(),
                addr,
                source,
            }),
            None => Err(HttpError::Resolve {
                host: endpoint.host.clone(),
                source: io::Error::new(io::ErrorKind::NotFound, "the host has no address"),
            }),
        }
    }

    fn io_error(&self, url: &str, source: io::Error) -> HttpError {
        if let Some(e) = tls::rustls_error(&source) {
            return HttpError::Tls {
                url: url.to_owned(),
                source: e.clone(),
            };
        }
        match source.get_ref().and_then(|e| e.downcast_ref::<Expired>()) {
            Some(Expired(limit)) => HttpError::TimedOut {
                url: url.to_owned(),
                limit: *limit,
                after: match limit {
                    TimeLimit::Connect => self.timeouts.connect,
                    TimeLimit::Read => self.timeouts.read,
                    TimeLimit::Overall => self.timeouts.overall,
                },
            },
            None => HttpError::Io {
                url: url.to_owned(),
                source,
            },
        }
    }
}

/// Where a body goes.
enum Sinks<'a> {
    /// Whatever the status.
    One(&'a mut dyn Write),
    /// A 2xx body to `success`, any other to `other`.
    Split {
        success: &'a mut dyn Write,
        other: &'a mut dyn Write,
    },
}

/// The request line and headers.
fn request_head(
    method: &str,
    endpoint: &Endpoint,
    path: &str,
    headers: &[(&str, &str)],
    body_len: Option<usize>,
) -> Result<String, HttpError> {
    let path = if endpoint.base_path.is_empty() && path.is_empty() {
        "/"
    } else {
        path
    };
    let mut head = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ember/{}\r\nAccept: */*\r\n\
         Connection: close\r\n",
        endpoint.base_path,
        endpoint.host_header(),
        env!("CARGO_PKG_VERSION"),
    );
    if let Some(n) = body_len {
        head.push_str(&format!("Content-Length: {n}\r\n"));
    }
    for (name, value) in headers {
        if name.contains(['\r', '\n', ':']) || value.contains(['\r', '\n']) {
            return Err(HttpError::BadHeader {
                name: name.escape_debug().to_string(),
            });
        }
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    Ok(head)
}

/// The payload of a timed-out read or write: which limit ran out.
#[derive(Debug)]
struct Expired(TimeLimit);

impl std::fmt::Display for Expired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} timeout", self.0)
    }
}

impl std::error::Error for Expired {}

fn expired(limit: TimeLimit) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, Expired(limit))
}

/// A connection, plain or TLS over a [`Deadlined`] socket (so every TLS record read or
/// written is timed too).
enum Conn {
    Plain(Deadlined),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, Deadlined>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// A socket whose every read and write waits at most the read timeout and never past the
/// deadline.
struct Deadlined {
    stream: TcpStream,
    deadline: Instant,
    read: Duration,
}

impl Deadlined {
    /// The wait for the next read or write, and the limit that bounds it.
    fn wait(&self) -> io::Result<(Duration, TimeLimit)> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(expired(TimeLimit::Overall));
        }
        Ok(if left < self.read {
            (left, TimeLimit::Overall)
        } else {
            (self.read, TimeLimit::Read)
        })
    }
}

fn timed_out(e: io::Error, limit: TimeLimit) -> io::Error {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        expired(limit)
    } else {
        e
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (wait, limit) = self.wait()?;
        self.stream.set_read_timeout(Some(wait))?;
        self.stream.read(buf).map_err(|e| timed_out(e, limit))
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (wait, limit) = self.wait()?;
        self.stream.set_write_timeout(Some(wait))?;
        self.stream.write(buf).map_err(|e| timed_out(e, limit))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread::JoinHandle;

    use super::*;

    fn client() -> Client {
        Client::new(Timeouts::default(), Limits::default())
    }

    /// A server that reads one request (head and `Content-Length` body), answers `reply`
    /// and returns what it read.
    fn serve_once(reply: &'static [u8]) -> (Endpoint, JoinHandle<Vec<u8>>) {
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
        let headers = [("X-Scope-OrgID", "team-a")];
        let r = client().post(&e, "/push", &headers, b"hello").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        assert_eq!(r.header("content-length"), Some("2"));
        let sent = String::from_utf8(t.join().unwrap()).unwrap();
        assert!(sent.starts_with("POST /base/push HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("\r\nContent-Length: 5\r\n"), "{sent}");
        assert!(sent.contains("X-Scope-OrgID: team-a\r\n") && sent.ends_with("\r\n\r\nhello"));
        let (e, _t) = serve_once(
            b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbad \r\n5\r\nlabel\r\n0\r\n\r\n",
        );
        let r = client().post(&e, "/push", &[], b"x").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (400, &b"bad label"[..]));
    }

    #[test]
    fn a_get_sends_its_path_query_and_headers() {
        let (e, t) = serve_once(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 7\r\n\r\nbad from");
        let r = client()
            .get(
                &e,
                "/api?x=1",
                &[("Authorization", "Bearer 0123456789abcdef")],
            )
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (401, &b"bad fro"[..]));
        let sent = String::from_utf8(t.join().unwrap()).unwrap();
        assert!(sent.starts_with("GET /base/api?x=1 HTTP/1.1\r\n"), "{sent}");
        assert!(
            sent.contains("\r\nAuthorization: Bearer 0123456789abcdef\r\n"),
            "{sent}"
        );
        assert!(sent.contains("\r\nConnection: close\r\n") && !sent.contains("Content-Length"));
    }

    #[test]
    fn a_header_with_a_line_break_is_refused_before_connecting() {
        let e = Endpoint::parse("http://127.0.0.1:1").unwrap();
        let err = client()
            .get(&e, "/", &[("X-Evil", "a\r\nHost: other")])
            .unwrap_err();
        assert!(matches!(err, HttpError::BadHeader { .. }), "{err}");
    }

    #[test]
    fn refused_and_silent_peers_are_errors() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = client().post(&e, "/", &[], b"").unwrap_err();
        assert!(matches!(err, HttpError::Connect { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("cannot connect to `http://127.0.0.1:"),
            "{err}"
        );
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = Endpoint::parse(&format!("http://{}", silent.local_addr().unwrap())).unwrap();
        let t = Timeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_millis(200),
            overall: Duration::from_millis(300),
        };
        let started = Instant::now();
        let err = Client::new(t, Limits::default())
            .post(&e, "/", &[], b"")
            .unwrap_err();
        assert!(matches!(err, HttpError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// A loopback server that answers one connection with `answer(stream)` and then holds
    /// it open (at most 10 s, or until the test is done), as a stalled or hostile peer
    /// does.
    fn hostile(
        answer: impl FnOnce(&mut TcpStream) + Send + 'static,
    ) -> (Endpoint, mpsc::Sender<()>, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (done, wait) = mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            answer(&mut s);
            let _ = wait.recv_timeout(Duration::from_secs(10));
        });
        (
            Endpoint::parse(&format!("http://{addr}")).unwrap(),
            done,
            server,
        )
    }

    fn quick() -> Client {
        Client::new(
            Timeouts {
                connect: Duration::from_secs(2),
                read: Duration::from_millis(300),
                overall: Duration::from_secs(5),
            },
            Limits { max_body: 1 << 20 },
        )
    }

    /// Runs a GET against a hostile server and returns its error and how long it took.
    fn against(
        client: &Client,
        answer: impl FnOnce(&mut TcpStream) + Send + 'static,
    ) -> (HttpError, Duration) {
        let (endpoint, done, server) = hostile(answer);
        let start = Instant::now();
        let err = client.get(&endpoint, "/api/v1/profile", &[]).unwrap_err();
        let took = start.elapsed();
        let _ = done.send(());
        server.join().unwrap();
        (err, took)
    }

    #[test]
    fn a_server_that_stalls_after_the_status_line_times_out() {
        let (err, took) = against(&quick(), |s| {
            s.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        });
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert!(
            matches!(err, HttpError::TimedOut { limit: TimeLimit::Read, after, .. } if after == Duration::from_millis(300)),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.ends_with("nothing arrived for 300 ms"), "{msg}");
    }

    #[test]
    fn a_short_body_under_a_larger_content_length_times_out() {
        let (err, took) = against(&quick(), |s| {
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly this")
                .unwrap();
        });
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert!(matches!(err, HttpError::TimedOut { .. }), "{err}");
    }

    #[test]
    fn a_trickling_server_meets_the_overall_timeout() {
        let client = Client::new(
            Timeouts {
                overall: Duration::from_millis(800),
                ..quick().timeouts()
            },
            quick().limits(),
        );
        let (err, took) = against(&client, |s| {
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
        assert!(msg.ends_with("the answer took longer than 800 ms"), "{msg}");
    }

    #[test]
    fn oversized_answers_are_refused_without_being_read() {
        // A Content-Length of 1 GB is refused from the headers.
        let (err, took) = against(&quick(), |s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\nabc");
        });
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert!(
            matches!(err, HttpError::TooLarge { limit, .. } if limit == 1 << 20),
            "{err}"
        );
        // A body framed by the end of the connection stops at the limit.
        let (err, _) = against(&quick(), |s| {
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
        let (err, _) = against(&quick(), |s| {
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

    /// Counts what is written without keeping it.
    #[derive(Default)]
    struct Counter {
        bytes: u64,
        writes: u64,
    }

    impl Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.bytes += buf.len() as u64;
            self.writes += 1;
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_large_body_streams_to_a_writer_under_the_limit() {
        // 40 MiB in chunks: it arrives in pieces of at most 64 KiB, never held whole.
        let (endpoint, done, server) = hostile(|s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
            let block = vec![7u8; 1 << 20];
            for _ in 0..40 {
                if s.write_all(b"100000\r\n").is_err()
                    || s.write_all(&block).is_err()
                    || s.write_all(b"\r\n").is_err()
                {
                    return;
                }
            }
            let _ = s.write_all(b"0\r\n\r\n");
        });
        let client = Client::new(Timeouts::default(), Limits { max_body: 64 << 20 });
        let mut sink = Counter::default();
        let r = client
            .get_to(&endpoint, "/buildid/ab/debuginfo", &[], &mut sink)
            .unwrap();
        let _ = done.send(());
        server.join().unwrap();
        assert_eq!((r.status, r.body.len()), (200, 0));
        assert_eq!(sink.bytes, 40 << 20);
        assert!(sink.writes >= 640, "{}", sink.writes);
        // Over the limit, it stops.
        let (endpoint, done, server) = hostile(|s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3000000\r\n\r\n");
            let _ = s.write_all(&vec![0u8; 3_000_000]);
        });
        let mut sink = Counter::default();
        let err = quick().get_to(&endpoint, "/x", &[], &mut sink).unwrap_err();
        let _ = done.send(());
        server.join().unwrap();
        assert!(matches!(err, HttpError::TooLarge { .. }), "{err}");
        assert_eq!(sink.bytes, 0, "refused from the Content-Length");
    }

    #[test]
    fn an_error_answer_is_not_written_to_the_writer() {
        let (e, _t) = serve_once(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found");
        let mut sink = Counter::default();
        let r = client().get_to(&e, "/x", &[], &mut sink).unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), sink.bytes),
            (404, &b"not found"[..], 0)
        );
    }

    #[test]
    fn a_failing_writer_is_its_own_error() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (e, _t) = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        let err = client().get_to(&e, "/x", &[], &mut Full).unwrap_err();
        assert!(matches!(err, HttpError::Sink { .. }), "{err}");
    }
}
