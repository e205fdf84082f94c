//! Ember's one HTTP/1.1 client, used wherever Ember speaks to another server: the push
//! stage (`POST` to Pyroscope and OTLP backends), `ember export --agent` (`GET` from a
//! running agent's API) and debug-file fetching (`GET` of large files, streamed).
//!
//! It is small and blocking on purpose: each caller makes one request at a time from a
//! thread of its own, so neither a connection pool nor an async runtime would buy anything.
//! What it does guarantee, whatever the peer does:
//!
//! - **Time is bounded.** Each connect ([`Timeouts::connect`]), each silence while sending or
//!   receiving ([`Timeouts::read`]) and the whole request from resolution to the body's
//!   last byte ([`Timeouts::overall`]) are limited; a peer that trickles a byte at a time
//!   meets the overall deadline.
//! - **Memory is bounded.** The response head is at most [`MAX_HEAD`] bytes and the body at
//!   most [`Limits::max_body`] (after chunked decoding); a `Content-Length` over the limit
//!   is refused before the body is read, and [`Client::get_to`] streams a body to a writer
//!   without holding it.
//! - **Nothing is silently cut.** A body shorter than its `Content-Length` or its chunked
//!   framing is an error.
//!
//! Speaks `http://` and `https://` ([`TlsConfig`]: the system's CA bundle plus an optional
//! private CA, host names verified, no way to turn verification off); no redirects, no
//! proxies, no keep-alive (`Connection: close`).
//!
//! ```no_run
//! use profiler_http::{Client, Endpoint, Limits, Timeouts};
//!
//! let agent = Endpoint::parse("http://127.0.0.1:7070")?;
//! let client = Client::new(Timeouts::default(), Limits::default());
//! let response = client.get(&agent, "/api/v1/types", &[])?;
//! assert_eq!(response.status, 200);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod endpoint;
mod error;
mod response;
mod tls;

pub use client::{Client, Limits, Response, Timeouts};
pub use endpoint::{Endpoint, EndpointError, Scheme, encode_query_value};
pub use error::{HttpError, TimeLimit};
pub use response::{Head, MAX_HEAD};
pub use tls::{SYSTEM_CA_BUNDLE, TlsConfig, TlsError};
