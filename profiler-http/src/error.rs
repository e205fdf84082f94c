//! Why a request got no usable response.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Which of the [`crate::Timeouts`] ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeLimit {
    /// Establishing the connection.
    Connect,
    /// The longest silence while sending or receiving.
    Read,
    /// The whole request.
    Overall,
}

impl TimeLimit {
    /// What ran out, in words: `nothing arrived for 500 ms`.
    #[must_use]
    pub fn describe(self, after: Duration) -> String {
        let after = human(after);
        match self {
            TimeLimit::Connect => format!("could not connect within {after}"),
            TimeLimit::Read => format!("nothing arrived for {after}"),
            TimeLimit::Overall => format!("the answer took longer than {after}"),
        }
    }
}

/// `1.5 s`, `300 ms`: a duration for a message.
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

/// Why a request failed. Every variant names the URL; none prints a credential (header
/// values never appear in errors).
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
    #[error("cannot connect to `{url}` ({addr})")]
    Connect {
        /// The URL requested.
        url: String,
        /// The last address tried.
        addr: SocketAddr,
        /// Why (refused, unreachable).
        #[source]
        source: io::Error,
    },
    /// Sending the request or receiving the answer failed.
    #[error("request to `{url}` failed")]
    Io {
        /// The URL requested.
        url: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A time limit ran out.
    #[error("no answer from `{url}`: {}", limit.describe(*after))]
    TimedOut {
        /// The URL requested.
        url: String,
        /// Which limit.
        limit: TimeLimit,
        /// Its value.
        after: Duration,
    },
    /// The body is larger than [`crate::Limits::max_body`].
    #[error("`{url}` sent more than {limit} bytes")]
    TooLarge {
        /// The URL requested.
        url: String,
        /// The limit, bytes.
        limit: u64,
    },
    /// The answer is not valid HTTP/1.x, or was cut off.
    #[error("bad HTTP response from `{url}`: {reason}")]
    Malformed {
        /// The URL requested.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The writer a body was streamed to failed.
    #[error("cannot write the body of `{url}`")]
    Sink {
        /// The URL requested.
        url: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake or session failed: an untrusted or expired certificate, a host
    /// name the certificate does not name, a peer that does not speak TLS.
    #[error("TLS with `{url}` failed")]
    Tls {
        /// The URL requested.
        url: String,
        /// Why (rustls' words: `invalid peer certificate: UnknownIssuer`).
        #[source]
        source: rustls::Error,
    },
    /// No TLS configuration was given and the system's roots cannot be loaded.
    #[error("cannot verify `{url}`: {reason}")]
    TlsSetup {
        /// The URL requested.
        url: String,
        /// Why the system's roots cannot be loaded.
        reason: String,
    },
    /// A request header would break the request's framing.
    #[error("request header `{name}` holds a line break")]
    BadHeader {
        /// The header's name.
        name: String,
    },
}
