//! Where a request goes: `http[s]://host[:port][/base]`, parsed once and printed without
//! surprises.

/// The URL scheme of an [`Endpoint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain `http://`.
    Http,
    /// `https://`: TLS, the server's certificate and host name verified.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The port used when the URL names none.
    #[must_use]
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A server's base URL: `http[s]://host[:port][/base]`. Requests name a path that is appended
/// to the base path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The scheme.
    pub scheme: Scheme,
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
    /// Neither `http://...` nor `https://...`.
    #[error("`{0}`: expected an http:// or https:// URL such as http://127.0.0.1:7070")]
    Scheme(String),
    /// No host, a bad port, credentials, a query or a fragment.
    #[error("`{0}`: expected http[s]://HOST[:PORT][/PATH] without user, query or fragment")]
    Malformed(String),
}

impl Endpoint {
    /// Parses `http[s]://host[:port][/path]`; the port defaults to the scheme's.
    ///
    /// # Errors
    /// [`EndpointError`] for another scheme or a malformed URL.
    pub fn parse(url: &str) -> Result<Endpoint, EndpointError> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            return Err(EndpointError::Scheme(url.to_owned()));
        };
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
                None if after.is_empty() => scheme.default_port(),
                None => return Err(bad()),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
                None => (authority.to_owned(), scheme.default_port()),
            }
        };
        if host.is_empty() || port == 0 || host.contains(|c: char| c.is_whitespace()) {
            return Err(bad());
        }
        Ok(Endpoint {
            scheme,
            host,
            port,
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The URL again (there are never credentials in it), for logs and metrics.
    #[must_use]
    pub fn url(&self) -> String {
        format!(
            "{}://{}:{}{}",
            self.scheme.as_str(),
            self.bracketed_host(),
            self.port,
            self.base_path
        )
    }

    /// The URL of `path` under the base path.
    #[must_use]
    pub fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.url())
    }

    /// The `Host` header: the port is left out when it is the scheme's default.
    #[must_use]
    pub fn host_header(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.bracketed_host()
        } else {
            format!("{}:{}", self.bracketed_host(), self.port)
        }
    }

    fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("http://pyroscope.obs:4040/").unwrap(),
            Endpoint {
                scheme: Scheme::Http,
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
        assert_eq!(e.host_header(), "[::1]:4318");
        let e = Endpoint::parse("http://agent/ember/").unwrap();
        assert_eq!((e.port, e.base_path.as_str()), (80, "/ember"));
        assert_eq!(e.host_header(), "agent");
        assert_eq!(e.url_of("/api"), "http://agent:80/ember/api");
        for bad in [
            "http://",
            "http://x:y",
            "http://u:p@x:1",
            "http://x:0",
            "http://x/?q",
            "http://x#f",
            "http://[::1",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(EndpointError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Endpoint::parse("127.0.0.1:7070"),
            Err(EndpointError::Scheme(_))
        ));
    }

    #[test]
    fn https_endpoints_default_to_443() {
        let e = Endpoint::parse("https://pyroscope.example/base/").unwrap();
        assert_eq!(
            (e.scheme, e.port, e.base_path.as_str()),
            (Scheme::Https, 443, "/base")
        );
        assert_eq!(e.host_header(), "pyroscope.example");
        assert_eq!(e.url(), "https://pyroscope.example:443/base");
        assert_eq!(
            Endpoint::parse("https://x:80").unwrap().host_header(),
            "x:80"
        );
        let err = Endpoint::parse("ftp://x").unwrap_err();
        assert!(err.to_string().contains("http:// or https://"), "{err}");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode_query_value("comm=my app,pid=7"),
            "comm%3Dmy%20app%2Cpid%3D7"
        );
        assert_eq!(encode_query_value("a-b_c.d~"), "a-b_c.d~");
    }
}
