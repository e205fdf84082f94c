//! The web UI: a few static files (HTML, CSS, vanilla JS, an icon) compiled into the binary
//! and served by the agent at `/` and `/ui/*`. No build step and no CDN: the page talks only
//! to the API of the agent that served it. The API routes here; nothing here imports it.
//!
//! The page draws its own views from the API's JSON: the CPU chart from `/api/v1/cpu`, the
//! icicle flame graph (zoom, search, tooltip, colour by binary) from the call tree of
//! `/api/v1/flame`, the tables from `/api/v1/top` and `/api/v1/flame`, the label explorer
//! from `/api/v1/explore`. inferno stays the renderer of the SVG downloads. What is on
//! screen is described in `docs/ui.md`.
//!
//! Every file is served with `Cache-Control: no-cache` and a strong `ETag` (a hash of the
//! content fixed at compile time): browsers revalidate on each load and get a `304` until
//! the binary changes, so an upgraded agent never serves a stale script.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    etag: &'static str,
}

/// `"` + 16 hex digits + `"`, at compile time.
const fn etag_of(bytes: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let h = profiler_model::hash::fnv1a(bytes);
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((h >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($name:literal, $type:literal) => {{
        const BODY: &[u8] = include_bytes!($name);
        const TAG: [u8; 18] = etag_of(BODY);
        Asset {
            name: $name,
            content_type: $type,
            body: BODY,
            etag: match std::str::from_utf8(&TAG) {
                Ok(s) => s,
                Err(_) => panic!("an ETag is ASCII"),
            },
        }
    }};
}

static INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");
static FILES: [Asset; 3] = [
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = HeaderValue::from_static(asset.etag);
    let cache = HeaderValue::from_static("no-cache");
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    if fresh {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        asset.body,
    )
        .into_response()
}

/// `GET /`: the UI's page. Its state lives in the query string, which the page reads.
pub(crate) async fn index(request: HeaderMap) -> Response {
    serve(&INDEX, &request)
}

/// `GET /ui/{file}`: the script, the stylesheet and the icon.
pub(crate) async fn asset(Path(file): Path<String>, request: HeaderMap) -> Response {
    match FILES.iter().find(|a| a.name == file) {
        Some(a) => serve(a, &request),
        None => crate::not_found::response(&format!("/ui/{file}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_quoted_hex_and_differ_per_file() {
        for a in FILES.iter().chain([&INDEX]) {
            assert_eq!(a.etag.len(), 18, "{}", a.name);
            assert!(a.etag.starts_with('"') && a.etag.ends_with('"'));
            assert!(!a.body.is_empty(), "{} is empty", a.name);
        }
        assert_ne!(FILES[0].etag, FILES[1].etag);
    }
}
