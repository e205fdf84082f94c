//! One `GET` of a debug file from one server, streamed into a file, through Ember's one
//! HTTP client (`profiler-http`): its deadlines bound the request, its body limit the file.

use std::fs::File;
use std::time::Duration;

use profiler_http::{Client, Endpoint, EndpointError, HttpError, Limits, Timeouts};

/// What a server answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The file, written out.
    Found,
    /// 404: it has no such file.
    NotFound,
}

/// Why a request gave no answer to use.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The server URL is not one the client speaks.
    #[error("bad debuginfod URL `{url}`")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        #[source]
        source: EndpointError,
    },
    /// The request failed or ran out of time or room.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// Neither the file nor a 404.
    #[error("`{url}` answered HTTP {status}")]
    Status {
        /// The URL requested.
        url: String,
        /// The status.
        status: u16,
    },
    /// The file that came is not the one asked for, or not ELF.
    #[error("`{url}` sent an unusable file: {reason}")]
    Refused {
        /// The URL requested.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The download could not be written to the cache.
    #[error("cannot write the download into the debuginfod cache")]
    Download(#[source] std::io::Error),
}

/// Fetches `path` from server `url` into `out` within `timeout`, refusing more than
/// `max_bytes`. A plain function so tests can stand in for the network.
pub(crate) type Fetcher = fn(
    url: &str,
    path: &str,
    timeout: Duration,
    max_bytes: u64,
    out: &mut File,
) -> Result<Answer, FetchError>;

/// The [`Fetcher`] that speaks HTTP.
pub(crate) fn http(
    url: &str,
    path: &str,
    timeout: Duration,
    max_bytes: u64,
    out: &mut File,
) -> Result<Answer, FetchError> {
    let endpoint = Endpoint::parse(url).map_err(|source| FetchError::BadUrl {
        url: url.to_owned(),
        source,
    })?;
    // One deadline for the whole request, as `--debuginfod-timeout` says; connecting and
    // each silence get the same (a server that accepts and never answers meets it).
    let client = Client::new(
        Timeouts {
            connect: timeout,
            read: timeout,
            overall: timeout,
        },
        Limits {
            max_body: max_bytes,
        },
    );
    let response = client.get_to(&endpoint, path, &[], out)?;
    match response.status {
        200..=299 => Ok(Answer::Found),
        404 => Ok(Answer::NotFound),
        status => Err(FetchError::Status {
            url: endpoint.url_of(path),
            status,
        }),
    }
}
