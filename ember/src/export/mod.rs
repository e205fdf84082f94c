//! `ember export`: a time range of stored profiles, written as folded stacks, pprof, a flame
//! graph SVG or speedscope JSON by `profiler-render`, the writer `ember record` and the API
//! use too.
//!
//! The pipeline is **fetch → (transform) → write**:
//!
//! 1. [`fetch`]: the merged, filtered profile of `[from, to)`, either from the store on disk
//!    ([`Source::Store`], the agent's `--data-dir`, read through its own SQLite connection:
//!    the store runs in WAL mode, so this reads a consistent snapshot while an agent keeps
//!    writing) or from a running agent's HTTP API ([`Source::Agent`], `GET /api/v1/profile`
//!    as pprof, which keeps labels, modules, files, lines and addresses, through
//!    [`profiler_http`] with every step of the request bounded in time and size).
//! 2. `transform`: one profile in, one out (idle task removal today); a re-symbolization
//!    step belongs there, between fetching and writing.
//! 3. [`crate::output::write_file`] to a file or stdout.

use std::io;
use std::path::PathBuf;

use profiler_http::{Client, Endpoint, EndpointError, HttpError, Limits, TimeLimit, Timeouts};
use profiler_model::human;
use profiler_model::time::format_seconds as unix_seconds;
use profiler_model::{Format, LabelFilter, Profile, ProfileKind, folded, pprof};
use profiler_render::RenderOptions;

use crate::cli::ExportArgs;
use crate::output::{self, UnknownFormat};
use profiler_store::{self as store, Query, Store, StoreConfig, StoreError};

/// Where `ember export` reads profiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The store directory of an agent (`--data-dir`).
    Store(PathBuf),
    /// A running agent's API (`--agent http://HOST:PORT`).
    Agent {
        /// The agent's URL.
        url: String,
        /// How long the request may take (`--agent-connect-timeout`,
        /// `--agent-read-timeout`, `--agent-timeout`).
        timeouts: Timeouts,
        /// How much it may bring back (`--agent-max-response`).
        limits: Limits,
        /// The API's bearer token (`--api-token-file` or `EMBER_API_TOKEN`).
        token: Option<web::api::Token>,
    },
}

/// A validated `ember export`.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// Where the profiles are.
    pub source: Source,
    /// Start of the range, nanoseconds since the Unix epoch (inclusive).
    pub from_unix_ns: u64,
    /// End of the range, nanoseconds since the Unix epoch (exclusive).
    pub to_unix_ns: u64,
    /// Which samples to keep.
    pub filter: LabelFilter,
    /// Which profile: CPU samples or off-CPU time (`--type`).
    pub kind: ProfileKind,
    /// Output format.
    pub format: Format,
    /// Output file, `-` for stdout.
    pub output: PathBuf,
    /// Keep the idle task (pid 0).
    pub include_idle: bool,
    /// Keep kernel frames.
    pub kernel: bool,
    /// Rename unnamed frames from debug files found by build-id in these directories
    /// (`--resymbolize`); `None` leaves names as stored.
    pub resymbolize: Option<Vec<PathBuf>>,
    /// And from the debug files these debuginfod servers have (`--debuginfod`, or
    /// `DEBUGINFOD_URLS` with `--resymbolize`).
    pub debuginfod: Option<symbolizer::DebuginfodConfig>,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// `--from` is not before `--to`.
    #[error("`--from` must be before `--to` ({from_unix_ns} ns >= {to_unix_ns} ns)")]
    EmptyRange {
        /// The range's start.
        from_unix_ns: u64,
        /// The range's end.
        to_unix_ns: u64,
    },
    /// The output format cannot be told from the file name.
    #[error(transparent)]
    Format(#[from] UnknownFormat),
    /// `-o -` with stdout closed.
    #[error(transparent)]
    StdoutClosed(#[from] output::StdoutClosed),
    /// There is no store in the data directory.
    #[error(
        "no Ember store in `{dir}` (no {file}): point --data-dir at the directory `ember agent` \
         writes, or use --agent URL"
    )]
    NoStore {
        /// The directory.
        dir: PathBuf,
        /// The database file name looked for.
        file: &'static str,
    },
    /// The store could not be read.
    #[error("reading the store")]
    Store(#[from] StoreError),
    /// The agent URL is not usable.
    #[error("bad agent URL")]
    AgentUrl(#[source] EndpointError),
    /// The agent could not be reached (resolving, connecting, sending, receiving).
    #[error("cannot reach the agent at `{url}`")]
    Unreachable {
        /// The agent URL.
        url: String,
        /// Why.
        #[source]
        source: HttpError,
    },
    /// The agent did not answer in time.
    #[error("no answer from the agent at `{url}`: {reason} ({flag})")]
    AgentTimedOut {
        /// The agent URL.
        url: String,
        /// Which limit ran out, and after how long.
        reason: String,
        /// The flag that sets it.
        flag: &'static str,
    },
    /// The answer is larger than `--agent-max-response`.
    #[error(
        "the agent at `{url}` sent more than {limit} bytes; raise --agent-max-response if the \
         profile is genuine, or narrow --from/--to or --filter"
    )]
    AgentTooLarge {
        /// The agent URL.
        url: String,
        /// The limit, bytes.
        limit: u64,
    },
    /// The agent's answer is not HTTP.
    #[error("the agent at `{url}` sent a bad answer")]
    AgentAnswer {
        /// The agent URL.
        url: String,
        /// What is wrong.
        #[source]
        source: HttpError,
    },
    /// The agent answered with an error status.
    #[error("the agent at `{url}` answered {status}: {body}")]
    AgentStatus {
        /// The agent URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body (the API's JSON error message).
        body: String,
    },
    /// The API token cannot be read or used.
    #[error(transparent)]
    Token(#[from] web::api::TokenError),
    /// Both a token file and `EMBER_API_TOKEN` were given.
    #[error("give the API token once: with --api-token-file or with EMBER_API_TOKEN, not both")]
    TwoTokens,
    /// The agent wants a token and none was given.
    #[error(
        "the agent at `{url}` needs its API token (401): give it with --api-token-file PATH or \
         the EMBER_API_TOKEN environment variable"
    )]
    TokenNeeded {
        /// The agent URL.
        url: String,
    },
    /// The agent did not accept the token given.
    #[error(
        "the agent at `{url}` refused the API token (401): check the file given with \
         --api-token-file or EMBER_API_TOKEN against the agent's"
    )]
    TokenRefused {
        /// The agent URL.
        url: String,
    },
    /// The agent's answer is not a pprof profile.
    #[error("the agent at `{url}` sent a profile that does not decode")]
    Decode {
        /// The agent URL.
        url: String,
        /// Why.
        #[source]
        source: pprof::PprofError,
    },
    /// No sample matched.
    #[error("no samples in {range}{filter}: widen --from/--to or check --filter")]
    NoSamples {
        /// The range, as people read it (`2027-01-15 08:00:00 to 08:15:00 UTC (15 min)`).
        range: String,
        /// ` matching FILTER`, or nothing.
        filter: String,
    },
    /// Writing the output failed.
    #[error("cannot write `{path}`")]
    Write {
        /// The output path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl ExportConfig {
    /// Validates `ember export`'s arguments.
    ///
    /// # Errors
    /// An empty range or an output whose format cannot be told.
    pub fn from_args(args: ExportArgs) -> Result<Self, ExportError> {
        Self::from_args_and_env(args, std::env::var("EMBER_API_TOKEN").ok())
    }

    /// [`ExportConfig::from_args`] with the value of `EMBER_API_TOKEN` given.
    ///
    /// # Errors
    /// An empty range, an output whose format cannot be told, or a token that cannot be
    /// read, is malformed or is given twice.
    pub fn from_args_and_env(
        args: ExportArgs,
        token_env: Option<String>,
    ) -> Result<Self, ExportError> {
        if args.from.0 >= args.to.0 {
            return Err(ExportError::EmptyRange {
                from_unix_ns: args.from.0,
                to_unix_ns: args.to.0,
            });
        }
        let format = output::format_for(&args.output, args.format)?;
        output::check_writable(&args.output)?;
        let source = match args.agent {
            Some(url) => Source::Agent {
                url,
                timeouts: Timeouts {
                    connect: args.agent_connect_timeout,
                    read: args.agent_read_timeout,
                    overall: args.agent_timeout,
                },
                limits: Limits {
                    max_body: args.agent_max_response,
                },
                // The same rules as the agent's own token (`ember agent`): a file or the
                // environment, never a flag value `ps` would show.
                token: match (&args.api_token_file, &token_env) {
                    (Some(_), Some(_)) => return Err(ExportError::TwoTokens),
                    (Some(path), None) => Some(web::api::Token::from_file(path)?),
                    (None, Some(text)) => Some(web::api::Token::new(text, "EMBER_API_TOKEN")?),
                    (None, None) => None,
                },
            },
            // The store is read directly: no token is involved.
            None => Source::Store(args.data_dir),
        };
        Ok(ExportConfig {
            source,
            from_unix_ns: args.from.0,
            to_unix_ns: args.to.0,
            filter: args.filter.unwrap_or_default(),
            kind: args.profile_type,
            format,
            output: args.output,
            include_idle: args.include_idle,
            kernel: !args.no_kernel,
            // Naming servers on the command line asks for renaming; the environment's
            // servers are used only when it is asked for.
            resymbolize: (args.resymbolize || !args.debuginfod.urls.is_empty())
                .then_some(args.debug_dirs),
            debuginfod: args.debuginfod.config(
                args.resymbolize
                    .then(|| std::env::var(symbolizer::DEBUGINFOD_URLS).ok())
                    .flatten()
                    .as_deref(),
                crate::cli::user_cache_dir().join("debuginfod"),
            ),
        })
    }
}

/// Runs `ember export` and returns the profile it wrote.
///
/// # Errors
/// [`ExportError`] naming what could not be read or written.
pub fn run(config: &ExportConfig) -> Result<Profile, ExportError> {
    let profile = transform(fetch(config)?, config);
    if profile.is_empty() {
        return Err(ExportError::NoSamples {
            range: human::range(config.from_unix_ns, config.to_unix_ns),
            filter: if config.filter.is_all() {
                String::new()
            } else {
                format!(" matching `{}`", config.filter)
            },
        });
    }
    let what = match config.kind {
        ProfileKind::Cpu => "ember export",
        ProfileKind::OffCpu => "ember export (off-CPU time)",
    };
    let title = if config.filter.is_all() {
        what.to_owned()
    } else {
        format!("{what}: {}", config.filter)
    };
    let amount = match profile.meta.kind {
        ProfileKind::Cpu => human::samples(profile.total(), profile.meta.frequency_hz),
        ProfileKind::OffCpu => format!(
            "{} µs ({}) off CPU",
            profile.total(),
            human::duration(profile.total().saturating_mul(1000))
        ),
    };
    let options = RenderOptions::titled(title)
        .with_subtitle(format!(
            "{}, {amount}",
            human::range(config.from_unix_ns, config.to_unix_ns),
        ))
        .with_folded(folded::Options::default().with_no_kernel(!config.kernel));
    output::write_file(&config.output, config.format, &profile, &options).map_err(|source| {
        ExportError::Write {
            path: config.output.clone(),
            source,
        }
    })?;
    Ok(profile)
}

/// The merged profile of the range and filter, from the store or the agent.
///
/// # Errors
/// A missing or unreadable store, or an unreachable agent or undecodable answer.
pub fn fetch(config: &ExportConfig) -> Result<Profile, ExportError> {
    match &config.source {
        Source::Store(dir) => {
            // Say "no store here" rather than SQLite's "unable to open database file".
            if !dir.join(store::DB_FILE_NAME).is_file() {
                return Err(ExportError::NoStore {
                    dir: dir.clone(),
                    file: store::DB_FILE_NAME,
                });
            }
            // Read-only: an export writes nothing, so it works on a read-only mount, for a
            // user who may only read the store, and beside a running agent (no lock).
            let store = Store::open_read_only(dir, StoreConfig::default())?;
            let query = Query::new(config.from_unix_ns, config.to_unix_ns)
                .with_filter(config.filter.clone())
                .with_kind(config.kind);
            Ok(store.query(&query)?)
        }
        Source::Agent {
            url,
            timeouts,
            limits,
            token,
        } => {
            let endpoint = Endpoint::parse(url).map_err(ExportError::AgentUrl)?;
            let mut path = format!(
                "/api/v1/profile?format=pprof&include_idle=true&type={}&from={}&to={}",
                config.kind.name(),
                unix_seconds(config.from_unix_ns),
                unix_seconds(config.to_unix_ns)
            );
            if !config.filter.is_all() {
                path.push_str("&filter=");
                path.push_str(&profiler_http::encode_query_value(
                    &config.filter.to_string(),
                ));
            }
            let authorization = token.as_ref().map(|t| format!("Bearer {}", t.as_str()));
            let headers: Vec<(&str, &str)> = authorization
                .iter()
                .map(|a| ("Authorization", a.as_str()))
                .collect();
            let response = Client::new(*timeouts, *limits)
                .get(&endpoint, &path, &headers)
                .map_err(|err| agent_error(url, err))?;
            match response.status {
                200 => {}
                401 if token.is_some() => {
                    return Err(ExportError::TokenRefused { url: url.clone() });
                }
                401 => return Err(ExportError::TokenNeeded { url: url.clone() }),
                status => {
                    let text = String::from_utf8_lossy(&response.body);
                    return Err(ExportError::AgentStatus {
                        url: url.clone(),
                        status,
                        body: text.trim().chars().take(500).collect(),
                    });
                }
            }
            pprof::decode_limited(&response.body[..], limits.max_body).map_err(
                |source| match source {
                    pprof::PprofError::TooLarge { limit, .. } => ExportError::AgentTooLarge {
                        url: url.clone(),
                        limit,
                    },
                    source => ExportError::Decode {
                        url: url.clone(),
                        source,
                    },
                },
            )
        }
    }
}

/// A failed request to the agent, in the words of the flags that bound it.
fn agent_error(url: &str, err: HttpError) -> ExportError {
    let url = url.to_owned();
    match err {
        HttpError::TimedOut { limit, after, .. } => ExportError::AgentTimedOut {
            url,
            reason: limit.describe(after),
            flag: match limit {
                TimeLimit::Connect => "--agent-connect-timeout",
                TimeLimit::Read => "--agent-read-timeout",
                TimeLimit::Overall => "--agent-timeout",
            },
        },
        HttpError::TooLarge { limit, .. } => ExportError::AgentTooLarge { url, limit },
        source @ (HttpError::Resolve { .. } | HttpError::Connect { .. } | HttpError::Io { .. }) => {
            ExportError::Unreachable { url, source }
        }
        source => ExportError::AgentAnswer { url, source },
    }
}

/// Turns the fetched profile into the one written: one profile in, one out. Each step is a
/// pure function of the profile and the configuration, so steps such as re-symbolizing
/// frames from their stored locations slot in here without touching fetching or writing.
fn transform(profile: Profile, config: &ExportConfig) -> Profile {
    let profile = if config.include_idle {
        profile
    } else {
        profile.without_idle()
    };
    match &config.resymbolize {
        Some(dirs) => resymbolize(&profile, dirs, config.debuginfod.as_ref()),
        None => profile,
    }
}

/// Names the frames that were stored as `module+0xOFFSET` from debug files that can be
/// found now, under `debug_dirs` or, for the rest, on `debuginfod`'s servers, and says how
/// many it named and what the servers did not have.
fn resymbolize(
    profile: &Profile,
    debug_dirs: &[PathBuf],
    debuginfod: Option<&symbolizer::DebuginfodConfig>,
) -> Profile {
    let config = symbolizer::Config::default().with_debug_dirs(debug_dirs.to_vec());
    let mut resym = symbolizer::Resymbolizer::new(&config);
    let mut from = debug_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(d) = debuginfod {
        match resym.fetch_missing(profile, d, d.timeout) {
            Ok(report) => {
                for line in &report.failed {
                    eprintln!(
                        "ember export: debuginfod: no debug file for build-id {line}; its frames stay `module+0x...`"
                    );
                }
                for urls in &report.outstanding {
                    eprintln!(
                        "ember export: debuginfod: timed out after {:.1} s (--debuginfod-timeout) waiting for {urls}; its frames stay `module+0x...`",
                        report.waited.as_secs_f64()
                    );
                }
                from = format!(
                    "{from} and debuginfod ({} file(s) found, {} build-id(s) unknown to {})",
                    report.found,
                    report.not_found,
                    d.urls.join(" ")
                );
            }
            Err(e) => eprintln!(
                "ember export: debuginfod: cannot use the cache `{}`: {e}; naming from debug directories only",
                d.cache_dir.display()
            ),
        }
    }
    let renamed = resym.resymbolize(profile);
    eprintln!(
        "ember export: --resymbolize named {} frame(s) from debug files under {from}",
        resym.frames_renamed()
    );
    renamed
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(extra: &[&str]) -> ExportArgs {
        let mut argv = vec!["ember", "export", "--from", "-1h"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Export(args) => args,
            other => panic!("not an export: {other:?}"),
        }
    }

    fn token_of(config: &ExportConfig) -> Option<&str> {
        match &config.source {
            Source::Agent { token, .. } => token.as_ref().map(web::api::Token::as_str),
            Source::Store(_) => None,
        }
    }

    #[test]
    fn the_api_token_comes_from_a_file_or_the_environment_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("token");
        std::fs::write(&file, "0123456789abcdef0123\n").expect("write token");
        let file = file.to_str().expect("utf-8 path");
        let agent = ["--agent", "http://127.0.0.1:7070"];

        let from_file = ExportConfig::from_args_and_env(
            args(&[&agent[..], &["--api-token-file", file]].concat()),
            None,
        )
        .expect("token file");
        assert_eq!(token_of(&from_file), Some("0123456789abcdef0123"));
        let from_env =
            ExportConfig::from_args_and_env(args(&agent), Some("fedcba9876543210".into()))
                .expect("token env");
        assert_eq!(token_of(&from_env), Some("fedcba9876543210"));
        let none = ExportConfig::from_args_and_env(args(&agent), None).expect("no token");
        assert_eq!(token_of(&none), None);

        let both = ExportConfig::from_args_and_env(
            args(&[&agent[..], &["--api-token-file", file]].concat()),
            Some("fedcba9876543210".into()),
        );
        assert!(matches!(both, Err(ExportError::TwoTokens)), "{both:?}");
        let short = ExportConfig::from_args_and_env(args(&agent), Some("short".into()));
        let err = short.expect_err("a short token is refused").to_string();
        assert!(
            err.contains("EMBER_API_TOKEN") && err.contains("16"),
            "{err}"
        );
        let missing = ExportConfig::from_args_and_env(
            args(&[&agent[..], &["--api-token-file", "/nonexistent/token"]].concat()),
            None,
        );
        assert!(matches!(missing, Err(ExportError::Token(_))), "{missing:?}");
        // There is no flag that takes the token itself.
        assert!(Cli::try_parse_from(["ember", "export", "--api-token", "x"]).is_err());
    }
}
