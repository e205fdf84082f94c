//! A minimal blocking HTTP/1.1 GET client, for `ember export --agent URL` and nothing else.
//!
//! The agent's API is plain HTTP on a loopback or cluster address, and `export` makes one
//! request per run, so a dependency-free client over [`TcpStream`] is enough: `http://` URLs
//! only (no TLS, no redirects, no proxies, no keep-alive), `Connection: close`, and a body
//! framed by `Content-Length`, chunked transfer coding, or the end of the connection. A body
//! shorter than its framing says is an error, never a silently truncated profile.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long connecting, and each read or write, may take.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The largest response accepted (a node-wide profile of a day is a few MiB of pprof).
const MAX_RESPONSE: u64 = 1 << 30;

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
    #[error("cannot reach the agent at `{url}`: {source}")]
    Io {
        /// The URL requested.
        url: String,
        /// Why.
        #[source]
        source: io::Error,
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

/// GETs `path_and_query` (starting with `/`) from `base` and returns the body of a 200
/// answer.
///
/// # Errors
/// [`HttpError`] for connection failures, malformed or truncated responses and any status
/// other than 200 (with the start of the body, where the API explains itself).
pub fn get(base: &BaseUrl, path_and_query: &str) -> Result<Vec<u8>, HttpError> {
    let url = format!("http://{}{}{path_and_query}", base.authority, base.prefix);
    let io_err = |source| HttpError::Io {
        url: url.clone(),
        source,
    };
    let addrs: Vec<_> = base.authority.to_socket_addrs().map_err(io_err)?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or_else(|| io_err(last))?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
    let request = format!(
        "GET {}{path_and_query} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ember/{}\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        base.prefix,
        base.authority,
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(request.as_bytes()).map_err(io_err)?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut response)
        .map_err(io_err)?;
    let (status, body) = parse_response(&response).map_err(|reason| HttpError::BadResponse {
        url: url.clone(),
        reason,
    })?;
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

/// Splits a complete response into its status code and decoded body.
fn parse_response(response: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            if response.is_empty() {
                "the connection closed without an answer".to_owned()
            } else {
                "no end of headers".to_owned()
            }
        })?;
    let head = std::str::from_utf8(&response[..head_end])
        .map_err(|_| "headers are not text".to_owned())?;
    let body = &response[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 status line: `{status_line}`"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status code in `{status_line}`"))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed header line `{line}`"));
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
        decode_chunked(body)?
    } else if let Some(n) = length {
        if body.len() < n {
            return Err(format!(
                "the body was cut off: {} of {n} bytes arrived",
                body.len()
            ));
        }
        body[..n].to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

/// Decodes a chunked body (RFC 9112 §7.1), ignoring chunk extensions and trailers.
fn decode_chunked(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("the chunked body was cut off in a chunk size")?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size `{size_text}`"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("the chunked body was cut off inside a chunk".to_owned());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
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
        assert_eq!(get(&base, "/api?x=1").unwrap(), b"abc");
        let err = get(&base, "/api?x=1").unwrap_err().to_string();
        assert!(err.contains("answered 400: bad fro"), "{err}");
        server.join().unwrap();
    }
}
