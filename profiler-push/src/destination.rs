//! Where windows go: a backend's protocol, endpoint and headers.

use std::fmt;

use profiler_http::Endpoint;

use crate::{otlp, pyroscope};

/// The protocol a destination speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Grafana Pyroscope's Connect push API.
    Pyroscope,
    /// OTLP/HTTP profiles (protobuf).
    Otlp,
}

impl Protocol {
    /// The destination's name in logs and metrics.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Pyroscope => "pyroscope",
            Protocol::Otlp => "otlp",
        }
    }
}

/// How request bodies are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// As encoded.
    None,
    /// gzip, sent with `Content-Encoding: gzip` (OTLP/HTTP allows it; the OTel SDKs'
    /// default).
    Gzip,
}

/// A header value that is never printed (credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the request only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// One backend windows are pushed to.
#[derive(Clone, Debug)]
pub struct Destination {
    /// Its protocol.
    pub protocol: Protocol,
    /// Where it listens.
    pub endpoint: Endpoint,
    /// The path after the endpoint's base path.
    pub path: String,
    /// Extra headers (tenant, authorization, `OTEL_EXPORTER_OTLP_HEADERS`); values are
    /// secret.
    pub headers: Vec<(String, Secret)>,
    /// How bodies are compressed on the wire (OTLP: gzip unless told otherwise; a
    /// Pyroscope body is mostly gzip pprof already).
    pub compression: Compression,
}

impl Destination {
    /// A Pyroscope destination at `endpoint` (the server's base URL).
    #[must_use]
    pub fn pyroscope(endpoint: Endpoint) -> Self {
        Destination {
            protocol: Protocol::Pyroscope,
            endpoint,
            path: pyroscope::PUSH_PATH.to_owned(),
            headers: Vec::new(),
            compression: Compression::None,
        }
    }

    /// An OTLP destination: `endpoint` is a base URL (`/v1development/profiles` is
    /// appended), or with `full_url` the export URL itself, as
    /// `OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT` gives it.
    #[must_use]
    pub fn otlp(endpoint: Endpoint, full_url: bool) -> Self {
        let mut endpoint = endpoint;
        let path = if full_url {
            std::mem::take(&mut endpoint.base_path)
        } else {
            otlp::EXPORT_PATH.to_owned()
        };
        Destination {
            protocol: Protocol::Otlp,
            endpoint,
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path
            },
            headers: Vec::new(),
            compression: Compression::Gzip,
        }
    }

    /// The same destination compressing bodies with `compression`.
    #[must_use]
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: Secret) -> Self {
        self.headers.push((name.into(), value));
        self
    }

    /// The URL requests go to.
    #[must_use]
    pub fn url(&self) -> String {
        format!("{}{}", self.endpoint.url(), self.path)
    }

    /// The key of this destination's cursor in the store: protocol and URL, so pointing
    /// the agent at another backend starts a cursor of its own.
    #[must_use]
    pub fn cursor_key(&self) -> String {
        format!("{} {}", self.protocol.name(), self.url())
    }

    /// The content type of request bodies.
    #[must_use]
    pub fn content_type(&self) -> &'static str {
        match self.protocol {
            Protocol::Pyroscope => pyroscope::CONTENT_TYPE,
            Protocol::Otlp => otlp::CONTENT_TYPE,
        }
    }

    /// The body of a request carrying `windows`.
    #[must_use]
    pub fn encode(&self, windows: &[crate::StoredWindow], host_name: &str) -> Vec<u8> {
        match self.protocol {
            Protocol::Pyroscope => pyroscope::encode(windows, host_name),
            Protocol::Otlp => otlp::encode(windows, host_name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_secrets() {
        let e = Endpoint::parse("http://collector:4318").unwrap();
        let d = Destination::otlp(e.clone(), false)
            .with_header("Authorization", Secret::new("Bearer s3cret"));
        assert_eq!(d.url(), "http://collector:4318/v1development/profiles");
        assert!(!format!("{d:?}").contains("s3cret"));
        let full = Destination::otlp(
            Endpoint::parse("http://collector:4318/custom/profiles").unwrap(),
            true,
        );
        assert_eq!(full.url(), "http://collector:4318/custom/profiles");
        let p = Destination::pyroscope(Endpoint::parse("http://pyro:4040/").unwrap());
        assert_eq!(p.url(), "http://pyro:4040/push.v1.PusherService/Push");
        assert_eq!(
            p.cursor_key(),
            "pyroscope http://pyro:4040/push.v1.PusherService/Push"
        );
    }
}
