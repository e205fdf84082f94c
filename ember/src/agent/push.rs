//! `ember agent`'s push to fleet backends: the flags and OpenTelemetry variables turned
//! into [`profiler_push`] destinations, the push threads started beside the API, and their
//! counters on `/metrics`.
//!
//! Secrets (basic-auth password, bearer token, OTLP headers) come from files or
//! environment variables and live in [`Secret`]s, which no log or `Debug` prints.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use profiler_push::{
    Compression, Destination, DestinationStats, Endpoint, EndpointError, PushConfig, Pusher,
    Secret, StatsHandle, Timeouts, TlsConfig, TlsError,
};
use profiler_store::StoreConfig;
use tracing::warn;
use web::prometheus::{Kind, Text};

use super::AgentMetrics;
use crate::cli::PushArgs;

/// A push set-up that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PushSetupError {
    /// An endpoint URL is not usable.
    #[error("invalid {flag}")]
    Endpoint {
        /// The flag or variable that gave it.
        flag: &'static str,
        /// Why.
        #[source]
        source: EndpointError,
    },
    /// A secret's file cannot be read.
    #[error("cannot read {flag} `{path}`")]
    SecretFile {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A secret was given twice, or half of basic auth is missing.
    #[error("{0}")]
    Conflict(&'static str),
    /// An OTLP headers list is malformed.
    #[error("invalid {origin}: expected name=value pairs separated by commas")]
    Headers {
        /// Where the list came from.
        origin: &'static str,
    },
    /// An OTLP compression variable names an unknown compression.
    #[error("invalid {var} `{value}`: expected `gzip` or `none`")]
    Compression {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// The CA roots for https:// endpoints cannot be loaded.
    #[error("cannot set up TLS for the push (--push-ca-file)")]
    Tls(#[source] TlsError),
    /// The push threads could not start.
    #[error(transparent)]
    Start(#[from] profiler_push::PushError),
}

/// Where windows are pushed and how: resolved from [`PushArgs`] and the environment.
#[derive(Clone, Debug, Default)]
pub(crate) struct PushSettings {
    /// The destinations (none: no push).
    pub destinations: Vec<Destination>,
    /// Pacing and the node's name.
    pub config: PushConfig,
}

impl PushSettings {
    /// Resolves the flags, with the process's environment for secrets and the OTel
    /// variables.
    ///
    /// # Errors
    /// [`PushSetupError`] for a bad URL, an unreadable secret file, or conflicting secrets.
    pub(crate) fn from_args(args: &PushArgs) -> Result<PushSettings, PushSetupError> {
        PushSettings::resolve(args, &|name| std::env::var(name).ok())
    }

    /// [`PushSettings::from_args`] with `env` standing for the environment.
    ///
    /// # Errors
    /// As [`PushSettings::from_args`].
    pub(crate) fn resolve(
        args: &PushArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PushSettings, PushSetupError> {
        let mut destinations = Vec::new();
        if let Some(url) = &args.pyroscope_endpoint {
            destinations.push(pyroscope(args, url, env)?);
        }
        if let Some(d) = otlp(args, env)? {
            destinations.push(d);
        }
        let https = destinations
            .iter()
            .any(|d| d.endpoint.scheme == profiler_push::Scheme::Https);
        // Loaded at start, so a missing bundle or a bad CA file stops the agent with its
        // reason rather than failing every push.
        let tls = if https || args.push_ca_file.is_some() {
            Some(TlsConfig::load(args.push_ca_file.as_deref()).map_err(PushSetupError::Tls)?)
        } else {
            None
        };
        let host_name = args
            .push_host_name
            .clone()
            .or_else(kernel_host_name)
            .unwrap_or_else(|| "unknown".to_owned());
        let config = PushConfig {
            host_name,
            batch_windows: usize::try_from(args.push_batch_windows).unwrap_or(6),
            min_interval: args.push_interval,
            backoff_initial: Duration::from_secs(1).min(args.push_max_backoff),
            backoff_max: args.push_max_backoff,
            timeouts: Timeouts {
                connect: args.push_timeout.min(Duration::from_secs(3)),
                read: args.push_timeout.min(Duration::from_secs(10)),
                overall: args.push_timeout,
            },
            tls,
            ..PushConfig::default()
        };
        Ok(PushSettings {
            destinations,
            config,
        })
    }
}

fn kernel_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn read_secret(flag: &'static str, path: &Path) -> Result<Secret, PushSetupError> {
    std::fs::read_to_string(path)
        .map(|s| Secret::new(s.trim_end_matches(['\n', '\r'])))
        .map_err(|source| PushSetupError::SecretFile {
            flag,
            path: path.to_owned(),
            source,
        })
}

/// The one secret of a file flag or an environment variable.
fn one_secret(
    file: Option<&Path>,
    flag: &'static str,
    var: &'static str,
    env: &dyn Fn(&str) -> Option<String>,
    both: &'static str,
) -> Result<Option<Secret>, PushSetupError> {
    match (file, env(var)) {
        (Some(_), Some(_)) => Err(PushSetupError::Conflict(both)),
        (Some(path), None) => read_secret(flag, path).map(Some),
        (None, Some(v)) => Ok(Some(Secret::new(v))),
        (None, None) => Ok(None),
    }
}

fn pyroscope(
    args: &PushArgs,
    url: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Destination, PushSetupError> {
    let endpoint = Endpoint::parse(url).map_err(|source| PushSetupError::Endpoint {
        flag: "--pyroscope-endpoint",
        source,
    })?;
    let mut d = Destination::pyroscope(endpoint);
    if let Some(tenant) = &args.pyroscope_tenant {
        d = d.with_header("X-Scope-OrgID", Secret::new(tenant.clone()));
    }
    let password = one_secret(
        args.pyroscope_password_file.as_deref(),
        "--pyroscope-password-file",
        "EMBER_PYROSCOPE_PASSWORD",
        env,
        "give the Pyroscope password once: with --pyroscope-password-file or with \
         EMBER_PYROSCOPE_PASSWORD, not both",
    )?;
    let token = one_secret(
        args.pyroscope_token_file.as_deref(),
        "--pyroscope-token-file",
        "EMBER_PYROSCOPE_TOKEN",
        env,
        "give the Pyroscope token once: with --pyroscope-token-file or with \
         EMBER_PYROSCOPE_TOKEN, not both",
    )?;
    let auth = match (&args.pyroscope_user, password, token) {
        (_, Some(_), Some(_)) | (Some(_), None, Some(_)) => {
            return Err(PushSetupError::Conflict(
                "give Pyroscope either basic auth (--pyroscope-user and a password) or a \
                 bearer token, not both",
            ));
        }
        (Some(user), Some(pass), None) => Some(format!(
            "Basic {}",
            base64(format!("{user}:{}", pass.expose()).as_bytes())
        )),
        (None, Some(_), None) => {
            return Err(PushSetupError::Conflict(
                "a Pyroscope password was given without --pyroscope-user",
            ));
        }
        (Some(_), None, None) => {
            return Err(PushSetupError::Conflict(
                "--pyroscope-user needs a password: --pyroscope-password-file PATH or \
                 EMBER_PYROSCOPE_PASSWORD",
            ));
        }
        (None, None, Some(token)) => Some(format!("Bearer {}", token.expose())),
        (None, None, None) => None,
    };
    if let Some(auth) = auth {
        d = d.with_header("Authorization", Secret::new(auth));
    }
    Ok(d)
}

fn otlp(
    args: &PushArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Destination>, PushSetupError> {
    let (url, flag, full) = if let Some(url) = &args.otlp_endpoint {
        (url.clone(), "--otlp-endpoint", false)
    } else if let Some(url) = env("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT") {
        (url, "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT", true)
    } else if let Some(url) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
        (url, "OTEL_EXPORTER_OTLP_ENDPOINT", false)
    } else {
        return Ok(None);
    };
    if let Some(p) =
        env("OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL").or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        && p != "http/protobuf"
    {
        warn!(protocol = %p, "OTLP protocol `{p}` asked for: ember sends http/protobuf");
    }
    let endpoint =
        Endpoint::parse(&url).map_err(|source| PushSetupError::Endpoint { flag, source })?;
    let compression = match [
        "OTEL_EXPORTER_OTLP_PROFILES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
    ]
    .into_iter()
    .find_map(|var| env(var).map(|v| (var, v)))
    {
        None => Compression::Gzip,
        Some((_, v)) if v.trim().eq_ignore_ascii_case("gzip") => Compression::Gzip,
        Some((_, v)) if v.trim().eq_ignore_ascii_case("none") => Compression::None,
        Some((var, value)) => return Err(PushSetupError::Compression { var, value }),
    };
    let mut d = Destination::otlp(endpoint, full).with_compression(compression);
    let mut lists = Vec::new();
    if let Some(v) = env("OTEL_EXPORTER_OTLP_HEADERS") {
        lists.push(("OTEL_EXPORTER_OTLP_HEADERS", v));
    }
    if let Some(v) = env("OTEL_EXPORTER_OTLP_PROFILES_HEADERS") {
        lists.push(("OTEL_EXPORTER_OTLP_PROFILES_HEADERS", v));
    }
    if let Some(path) = &args.otlp_headers_file {
        let text = read_secret("--otlp-headers-file", path)?;
        lists.push(("--otlp-headers-file", text.expose().trim().to_owned()));
    }
    for (origin, list) in lists {
        for (name, value) in parse_headers(&list).ok_or(PushSetupError::Headers { origin })? {
            // A later list (the profiles-specific one, the file) overrides an earlier one.
            d.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
            d = d.with_header(name, Secret::new(value));
        }
    }
    Ok(Some(d))
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `name=value` pairs, comma-separated, values
/// percent-encoded (W3C Baggage's format, as the OTel specification says).
fn parse_headers(list: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=')?;
        let name = name.trim();
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return None;
        }
        let value = percent_decode(value.trim())?;
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            return None;
        }
        out.push((name.to_owned(), value));
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A metric family of the push counters: name, type, help, value of one destination.
type Family = (
    &'static str,
    Kind,
    &'static str,
    fn(&DestinationStats) -> f64,
);

/// The push threads' counters as `/metrics` shows them (`None`: no push).
#[derive(Clone, Debug, Default)]
pub(crate) struct PushMetrics(Option<StatsHandle>);

impl PushMetrics {
    /// Appends the push families to `out`.
    pub(crate) fn write(&self, out: &mut Text) {
        let Some(handle) = &self.0 else { return };
        let stats = handle.snapshot();
        let families: [Family; 8] = [
            (
                "ember_push_windows_pushed_total",
                Kind::Counter,
                "Windows the backend accepted, by destination.",
                |s| s.pushed as f64,
            ),
            (
                "ember_push_windows_failed_total",
                Kind::Counter,
                "Windows the backend refused with a 4xx (logged and skipped), by destination.",
                |s| s.failed as f64,
            ),
            (
                "ember_push_retries_total",
                Kind::Counter,
                "Push requests that failed (refused connection, timeout, 5xx) and were retried, by destination.",
                |s| s.retried as f64,
            ),
            (
                "ember_push_windows_expired_total",
                Kind::Counter,
                "Windows deleted by retention before they could be pushed, by destination.",
                |s| s.expired as f64,
            ),
            (
                "ember_push_windows_pending",
                Kind::Gauge,
                "Closed windows not pushed yet, by destination.",
                |s| s.pending as f64,
            ),
            (
                "ember_push_lag_seconds",
                Kind::Gauge,
                "Age of the oldest window not pushed yet (0 when none is pending), by destination.",
                |s| (s.lag_seconds * 1000.0).round() / 1000.0,
            ),
            (
                "ember_push_bytes_sent_total",
                Kind::Counter,
                "Bytes of push request bodies sent, by destination.",
                |s| s.bytes_sent as f64,
            ),
            (
                "ember_push_up",
                Kind::Gauge,
                "1 while the last push request reached the backend, by destination.",
                |s| f64::from(u8::from(s.up)),
            ),
        ];
        for (name, kind, help, value) in families {
            let mut f = out.family(name, kind, help);
            for s in &stats {
                f.sample(&[("destination", &s.name), ("url", &s.url)], value(s));
            }
        }
    }
}

/// Starts pushing to `settings`' destinations from the store in `data_dir`, and shows
/// the counters in `metrics`; `None` when there is nowhere to push.
///
/// # Errors
/// [`PushSetupError::Start`].
pub(super) fn start(
    settings: &PushSettings,
    data_dir: &Path,
    store: &StoreConfig,
    metrics: &Arc<Mutex<AgentMetrics>>,
) -> Result<Option<Pusher>, PushSetupError> {
    if settings.destinations.is_empty() {
        return Ok(None);
    }
    let pusher = Pusher::start(
        data_dir,
        store,
        settings.destinations.clone(),
        &settings.config,
    )?;
    metrics.lock().unwrap_or_else(PoisonError::into_inner).push =
        PushMetrics(Some(pusher.stats_handle()));
    Ok(Some(pusher))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn header<'a>(d: &'a Destination, name: &str) -> Option<&'a str> {
        d.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.expose())
    }

    #[test]
    fn pyroscope_with_tenant_and_basic_auth_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("pass");
        std::fs::write(&pass, "s3cret\n").unwrap();
        let args = PushArgs {
            pyroscope_endpoint: Some("http://pyro:4040".to_owned()),
            pyroscope_tenant: Some("team-a".to_owned()),
            pyroscope_user: Some("ember".to_owned()),
            pyroscope_password_file: Some(pass),
            push_host_name: Some("node-7".to_owned()),
            ..PushArgs::default()
        };
        let s = PushSettings::resolve(&args, &env(&[])).unwrap();
        assert_eq!(s.destinations.len(), 1);
        let d = &s.destinations[0];
        assert_eq!(header(d, "X-Scope-OrgID"), Some("team-a"));
        assert_eq!(header(d, "Authorization"), Some("Basic ZW1iZXI6czNjcmV0"));
        assert!(!format!("{s:?}").contains("s3cret") && !format!("{s:?}").contains("ZW1i"));
        assert_eq!(s.config.host_name, "node-7");
        // The same password twice, or a token beside basic auth, is refused.
        let twice = PushSettings::resolve(&args, &env(&[("EMBER_PYROSCOPE_PASSWORD", "x")]));
        assert!(twice.unwrap_err().to_string().contains("once"));
        let both = PushSettings::resolve(&args, &env(&[("EMBER_PYROSCOPE_TOKEN", "t")]));
        assert!(both.unwrap_err().to_string().contains("not both"));
        let token_only = PushArgs {
            pyroscope_user: None,
            pyroscope_password_file: None,
            ..args
        };
        let s =
            PushSettings::resolve(&token_only, &env(&[("EMBER_PYROSCOPE_TOKEN", "t0k")])).unwrap();
        assert_eq!(
            header(&s.destinations[0], "Authorization"),
            Some("Bearer t0k")
        );
    }

    #[test]
    fn otlp_follows_the_opentelemetry_variables() {
        let none = PushSettings::resolve(&PushArgs::default(), &env(&[])).unwrap();
        assert!(none.destinations.is_empty());
        let base = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=abc%3D%3D, x-team=a"),
            ("OTEL_EXPORTER_OTLP_PROFILES_HEADERS", "x-team=b"),
        ]);
        let s = PushSettings::resolve(&PushArgs::default(), &base).unwrap();
        let d = &s.destinations[0];
        assert_eq!(d.url(), "http://collector:4318/v1development/profiles");
        assert_eq!(header(d, "api-key"), Some("abc=="));
        assert_eq!(header(d, "x-team"), Some("b"), "the profiles list wins");
        let full = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT",
                "http://other:9999/p",
            ),
        ]);
        let s = PushSettings::resolve(&PushArgs::default(), &full).unwrap();
        assert_eq!(s.destinations[0].url(), "http://other:9999/p");
        let flag = PushArgs {
            otlp_endpoint: Some("http://flag:4318".to_owned()),
            ..PushArgs::default()
        };
        let s = PushSettings::resolve(&flag, &full).unwrap();
        assert_eq!(
            s.destinations[0].url(),
            "http://flag:4318/v1development/profiles"
        );
        let bad = PushSettings::resolve(
            &PushArgs::default(),
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:1"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
            ]),
        );
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("OTEL_EXPORTER_OTLP_HEADERS")
        );
        let ftp = PushSettings::resolve(
            &PushArgs::default(),
            &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://c:1")]),
        );
        assert!(
            ftp.unwrap_err()
                .to_string()
                .contains("OTEL_EXPORTER_OTLP_ENDPOINT")
        );
    }

    #[test]
    fn https_endpoints_load_the_roots_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let s = PushSettings::resolve(
            &PushArgs::default(),
            &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")]),
        )
        .unwrap();
        assert_eq!(
            s.destinations[0].url(),
            "https://c:4318/v1development/profiles"
        );
        assert!(s.config.tls.is_some());
        let plain = PushArgs {
            pyroscope_endpoint: Some("http://pyro:4040".to_owned()),
            ..PushArgs::default()
        };
        assert!(
            PushSettings::resolve(&plain, &env(&[]))
                .unwrap()
                .config
                .tls
                .is_none()
        );
        let junk = dir.path().join("ca.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let bad = PushArgs {
            push_ca_file: Some(junk),
            ..plain
        };
        let err = PushSettings::resolve(&bad, &env(&[])).unwrap_err();
        let text = format!("{:#}", anyhow::Error::from(err));
        assert!(
            text.contains("--push-ca-file") && text.contains("ca.pem"),
            "{text}"
        );
    }

    #[test]
    fn otlp_bodies_are_gzipped_unless_told_otherwise() {
        let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
        let compression = |extra: &[(&str, &str)]| {
            let pairs: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
            PushSettings::resolve(&PushArgs::default(), &env(&pairs))
                .map(|s| s.destinations[0].compression)
        };
        assert_eq!(compression(&[]).unwrap(), Compression::Gzip);
        assert_eq!(
            compression(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "none")]).unwrap(),
            Compression::None
        );
        assert_eq!(
            compression(&[
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
                ("OTEL_EXPORTER_OTLP_PROFILES_COMPRESSION", "gzip"),
            ])
            .unwrap(),
            Compression::Gzip,
            "the profiles variable wins"
        );
        let err = compression(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]).unwrap_err();
        assert!(err.to_string().contains("`zstd`"), "{err}");
        let pyro = PushArgs {
            pyroscope_endpoint: Some("http://pyro:4040".to_owned()),
            ..PushArgs::default()
        };
        let s = PushSettings::resolve(&pyro, &env(&[])).unwrap();
        assert_eq!(s.destinations[0].compression, Compression::None);
    }

    #[test]
    fn metrics_show_each_destinations_figures() {
        let stats = |name: &str, url: &str, n: u64| {
            std::sync::Arc::new(std::sync::Mutex::new(DestinationStats {
                name: name.to_owned(),
                url: url.to_owned(),
                pushed: n,
                failed: n + 1,
                retried: n + 2,
                expired: n + 3,
                pending: n + 4,
                lag_seconds: 12.34567,
                bytes_sent: 1000 * n,
                up: n == 0,
            }))
        };
        let handle = StatsHandle::from_shared(vec![
            stats("pyroscope", "http://p:4040/push.v1.PusherService/Push", 0),
            stats("otlp", "https://o:4318/v1development/profiles", 5),
        ]);
        let mut text = Text::new();
        PushMetrics(Some(handle)).write(&mut text);
        let text = text.finish();
        let otlp = r#"{destination="otlp",url="https://o:4318/v1development/profiles"}"#;
        let pyro = r#"{destination="pyroscope",url="http://p:4040/push.v1.PusherService/Push"}"#;
        for line in [
            format!("ember_push_windows_pushed_total{otlp} 5"),
            format!("ember_push_windows_failed_total{otlp} 6"),
            format!("ember_push_retries_total{otlp} 7"),
            format!("ember_push_windows_expired_total{otlp} 8"),
            format!("ember_push_windows_pending{otlp} 9"),
            format!("ember_push_lag_seconds{otlp} 12.346"),
            format!("ember_push_bytes_sent_total{otlp} 5000"),
            format!("ember_push_up{otlp} 0"),
            format!("ember_push_windows_pushed_total{pyro} 0"),
            format!("ember_push_up{pyro} 1"),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert!(
            text.contains("# TYPE ember_push_windows_pending gauge"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE ember_push_retries_total counter"),
            "{text}"
        );
        let mut none = Text::new();
        PushMetrics(None).write(&mut none);
        assert!(!none.finish().contains("ember_push"));
    }

    #[test]
    fn base64_matches_the_rfc() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
