//! Who may talk to the API: the `Host` check against DNS rebinding, and the optional
//! bearer token.
//!
//! **Host.** A page a browser on the node loads from `attacker.example` can have that
//! name re-resolved to 127.0.0.1 and then read the API as its own origin. Every request
//! but `/healthz` must therefore name, in `Host`, one of: `localhost`, a loopback address
//! (`127.0.0.1`, `[::1]`), the address the API listens on, or a name given with
//! `--api-allowed-host`. When the API listens on every address (`0.0.0.0`, `[::]`) any IP
//! address is accepted too: an address cannot be rebound, only a name can. Anything else
//! answers `421 Misdirected Request` saying which flag allows the name. A request without
//! `Host` (HTTP/1.0 tools) is served: browsers always send one.
//!
//! **Token.** When the agent has a token (`--api-token-file` or `EMBER_API_TOKEN`), every
//! endpoint but `/healthz` and `/login` needs `Authorization: Bearer TOKEN`, compared in
//! constant time; otherwise `401` with `WWW-Authenticate: Bearer`. A browser opening `/`
//! without it gets a login form instead of the UI: the form posts the token to `/login`
//! (so it never lands in the address bar, history or a log), which sets it as the
//! `ember_token` cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` over TLS)
//! and sends the browser back to the page it asked for. The UI's own requests carry the
//! cookie; `SameSite=Strict` keeps other sites' pages from sending it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Form;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiError;

/// The cookie the login form sets.
const COOKIE: &str = "ember_token";

/// The shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// The API's bearer token. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

/// Why a token cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file cannot be read.
    #[error("cannot read the API token file `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token is too short or has characters a header or cookie cannot carry.
    #[error("the API token from {from} {problem}")]
    Invalid {
        /// Where it came from (the file, or `EMBER_API_TOKEN`).
        from: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl Token {
    /// A token from its text (surrounding whitespace, such as the newline ending a file,
    /// is dropped); `from` names where it came from, for the error.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] if it is shorter than [`MIN_TOKEN_LEN`] or has a character
    /// outside `A-Z a-z 0-9 - . _ ~ + / =` (what base64, hex and URL-safe tokens use, and
    /// what a cookie carries unquoted).
    pub fn new(text: &str, from: &str) -> Result<Token, TokenError> {
        let t = text.trim();
        let invalid = |problem: String| TokenError::Invalid {
            from: from.to_owned(),
            problem,
        };
        if let Some(c) = t
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-._~+/=".contains(*c)))
        {
            return Err(invalid(format!(
                "has the character {c:?}; use only A-Z a-z 0-9 - . _ ~ + / = (e.g. `openssl rand -hex 32`)"
            )));
        }
        if t.len() < MIN_TOKEN_LEN {
            return Err(invalid(format!(
                "is {} characters long; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)",
                t.len()
            )));
        }
        Ok(Token(t.to_owned()))
    }

    /// The token in the file at `path`.
    ///
    /// # Errors
    /// [`TokenError::Read`] or [`TokenError::Invalid`].
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_owned(),
            source,
        })?;
        Token::new(&text, &format!("`{}`", path.display()))
    }

    /// The token's text, for a client to send (`ember export --agent`).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the token, in time that depends on the token's length only.
    fn matches(&self, candidate: &[u8]) -> bool {
        let secret = self.0.as_bytes();
        let mut diff = secret.len() ^ candidate.len();
        for (i, s) in secret.iter().enumerate() {
            let c = candidate.get(i).copied().unwrap_or(0);
            diff |= usize::from(s ^ c);
        }
        std::hint::black_box(diff) == 0
    }
}

/// What [`check`] enforces, from the API's configuration.
#[derive(Debug)]
pub(crate) struct Access {
    pub(crate) token: Option<Token>,
    /// Extra names accepted in `Host`, lowercase, without a trailing dot.
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) listen: Option<SocketAddr>,
    /// The API is served over TLS: the cookie is `Secure`.
    pub(crate) tls: bool,
}

/// The host part of a `Host` value or an `--api-allowed-host` name (`name`, `name:port`,
/// `[v6]:port`), lowercase and without a trailing dot; `None` if it is malformed.
#[must_use]
pub fn host_part(value: &str) -> Option<String> {
    let host = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        inside
    } else {
        match value.split_once(':') {
            Some((h, port)) if is_port(port) => h,
            Some(_) => return None,
            None => value,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

impl Access {
    /// Whether `host` (from [`host_part`]) names this API.
    fn host_allowed(&self, host: &str) -> bool {
        if host == "localhost" || self.allowed_hosts.iter().any(|h| h == host) {
            return true;
        }
        let Ok(ip) = host.parse::<IpAddr>() else {
            return false;
        };
        ip.is_loopback()
            || self
                .listen
                .is_some_and(|l| l.ip().is_unspecified() || l.ip() == ip)
    }

    fn authorized(&self, token: &Token, headers: &HeaderMap) -> Result<bool, ApiError> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let value = value.as_bytes();
            let Some(candidate) = value
                .strip_prefix(b"Bearer ")
                .or_else(|| value.strip_prefix(b"bearer "))
            else {
                return Err(ApiError::Unauthorized(
                    "the `Authorization` header must be `Bearer TOKEN`".to_owned(),
                ));
            };
            return if token.matches(candidate) {
                Ok(true)
            } else {
                Err(ApiError::Unauthorized("wrong API token".to_owned()))
            };
        }
        let from_cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .any(|(name, value)| name == COOKIE && token.matches(value.as_bytes()));
        Ok(from_cookie)
    }
}

/// Middleware: the `Host` check, then the token (see the module docs).
pub(crate) async fn check(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if path == "/healthz" {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned())
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    if let Some(host) = host {
        let allowed = host_part(&host).is_some_and(|h| access.host_allowed(&h));
        if !allowed {
            return ApiError::MisdirectedHost(host).into_response();
        }
    }
    let Some(token) = &access.token else {
        return next.run(request).await;
    };
    if path == "/login" {
        return next.run(request).await;
    }
    match access.authorized(token, request.headers()) {
        Ok(true) => next.run(request).await,
        // A browser opening the UI: the login form, then back to the same page.
        Ok(false) if path == "/" && request.method() == Method::GET => {
            let back = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            login_page(StatusCode::UNAUTHORIZED, &back, None)
        }
        Ok(false) => ApiError::Unauthorized(
            "this agent needs its API token: send `Authorization: Bearer TOKEN`, or log in \
             at `/` in a browser"
                .to_owned(),
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// The login form's fields.
#[derive(Deserialize)]
pub(crate) struct Login {
    token: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`: checks the token from the form and, when right, sets the cookie and sends
/// the browser back to `next` (a path on this agent).
pub(crate) async fn login(State(access): State<Arc<Access>>, Form(form): Form<Login>) -> Response {
    // Only a path of this agent: never `//other.example` or an absolute URL.
    let next = if form.next.starts_with('/')
        && !form.next.starts_with("//")
        && !form.next.contains('\\')
    {
        form.next.as_str()
    } else {
        "/"
    };
    let Some(token) = &access.token else {
        return redirect(next, None);
    };
    if !token.matches(form.token.trim().as_bytes()) {
        return login_page(StatusCode::UNAUTHORIZED, next, Some("Wrong token."));
    }
    let secure = if access.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/{secure}",
        token.0
    );
    redirect(next, Some(cookie))
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        headers.insert(header::LOCATION, v);
    } else {
        headers.insert(header::LOCATION, HeaderValue::from_static("/"));
    }
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::SET_COOKIE, v);
    }
    response
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A small self-contained page with the login form.
fn login_page(status: StatusCode, next: &str, message: Option<&str>) -> Response {
    let message = message.map_or(String::new(), |m| {
        format!("<p role=\"alert\">{}</p>", html_escape(m))
    });
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Ember: log in</title>\
         <style>body{{font:16px system-ui,sans-serif;max-width:28em;margin:4em auto}}\
         input{{font:inherit;width:100%;margin:.4em 0}}</style></head><body>\
         <h1>Ember</h1><p>This agent's API needs its token (the contents of \
         <code>--api-token-file</code>).</p>{message}\
         <form method=\"post\" action=\"/login\">\
         <label for=\"token\">API token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <input type=\"submit\" value=\"Log in\"></form></body></html>",
        html_escape(next)
    );
    let mut response = (status, Html(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parts() {
        assert_eq!(host_part("localhost:7070").as_deref(), Some("localhost"));
        assert_eq!(host_part("LocalHost.").as_deref(), Some("localhost"));
        assert_eq!(host_part("[::1]:7070").as_deref(), Some("::1"));
        assert_eq!(host_part("[::1]").as_deref(), Some("::1"));
        assert_eq!(host_part("10.0.0.7").as_deref(), Some("10.0.0.7"));
        assert_eq!(host_part("a:b:c"), None);
        assert_eq!(host_part("[::1]x"), None);
        assert_eq!(host_part(":80"), None);
    }

    #[test]
    fn tokens_are_checked_and_compared_whole() {
        let t = Token::new("0123456789abcdef\n", "test").expect("valid token");
        assert!(t.matches(b"0123456789abcdef"));
        assert!(!t.matches(b"0123456789abcde"));
        assert!(!t.matches(b"0123456789abcdefg"));
        assert!(!t.matches(b""));
        assert!(Token::new("short", "test").is_err());
        assert!(Token::new("0123456789abcdef;x", "test").is_err());
        assert_eq!(format!("{t:?}"), "Token(..)");
    }
}
