//! `ember export`: a time range of stored profiles, written as folded stacks, pprof, a flame
//! graph SVG or speedscope JSON; and [`write_profile`], the one writer of those formats that
//! `ember record` uses too.
//!
//! The pipeline is **fetch → (transform) → write**:
//!
//! 1. [`fetch`]: the merged, filtered profile of `[from, to)`, either from the store on disk
//!    ([`Source::Store`], the agent's `--data-dir`, read through its own SQLite connection:
//!    the store runs in WAL mode, so this reads a consistent snapshot while an agent keeps
//!    writing) or from a running agent's HTTP API ([`Source::Agent`], `GET /api/v1/profile`
//!    as pprof, which keeps labels, modules, files, lines and addresses).
//! 2. `transform`: one profile in, one out (idle task removal today); a re-symbolization
//!    step belongs there, between fetching and writing.
//! 3. [`write_profile`] to a file or stdout.

pub mod http;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use profiler_model::{LabelFilter, Profile, folded, pprof, speedscope};

use crate::cli::{ExportArgs, OutputFormat};
use crate::record::output_format;
use profiler_store::{self as store, Query, Store, StoreConfig, StoreError};

/// Where `ember export` reads profiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The store directory of an agent (`--data-dir`).
    Store(PathBuf),
    /// A running agent's API (`--agent http://HOST:PORT`).
    Agent(String),
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
    /// Output format.
    pub format: OutputFormat,
    /// Output file, `-` for stdout.
    pub output: PathBuf,
    /// Keep the idle task (pid 0).
    pub include_idle: bool,
    /// Keep kernel frames.
    pub kernel: bool,
    /// Rename unnamed frames from debug files found by build-id in these directories
    /// (`--resymbolize`); `None` leaves names as stored.
    pub resymbolize: Option<Vec<PathBuf>>,
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
    Format(#[from] crate::record::RecordError),
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
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
    /// The agent could not be asked.
    #[error(transparent)]
    Agent(#[from] http::HttpError),
    /// The agent's answer is not a pprof profile.
    #[error("the agent at `{url}` sent a profile that does not decode: {source}")]
    Decode {
        /// The agent URL.
        url: String,
        /// Why.
        #[source]
        source: pprof::PprofError,
    },
    /// No sample matched.
    #[error(
        "no samples between {from} and {to} (unix s){filter}: widen --from/--to or check --filter"
    )]
    NoSamples {
        /// The range's start, unix seconds.
        from: String,
        /// The range's end, unix seconds.
        to: String,
        /// ` matching FILTER`, or nothing.
        filter: String,
    },
    /// Writing the output failed.
    #[error("cannot write `{path}`: {source}")]
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
        if args.from.0 >= args.to.0 {
            return Err(ExportError::EmptyRange {
                from_unix_ns: args.from.0,
                to_unix_ns: args.to.0,
            });
        }
        let format = output_format(&args.output, args.format)?;
        let source = match args.agent {
            Some(url) => Source::Agent(url),
            None => Source::Store(args.data_dir),
        };
        Ok(ExportConfig {
            source,
            from_unix_ns: args.from.0,
            to_unix_ns: args.to.0,
            filter: args.filter.unwrap_or_default(),
            format,
            output: args.output,
            include_idle: args.include_idle,
            kernel: !args.no_kernel,
            resymbolize: args.resymbolize.then_some(args.debug_dirs),
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
            from: unix_seconds(config.from_unix_ns),
            to: unix_seconds(config.to_unix_ns),
            filter: if config.filter.is_all() {
                String::new()
            } else {
                format!(" matching `{}`", config.filter)
            },
        });
    }
    let title = if config.filter.is_all() {
        "ember export".to_owned()
    } else {
        format!("ember export: {}", config.filter)
    };
    let options = WriteOptions {
        title,
        subtitle: format!(
            "{} to {} (unix s), {} samples",
            unix_seconds(config.from_unix_ns),
            unix_seconds(config.to_unix_ns),
            profile.total()
        ),
        folded: folded::Options::default().with_no_kernel(!config.kernel),
    };
    write_file(&config.output, config.format, &profile, &options).map_err(|source| {
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
                .with_filter(config.filter.clone());
            Ok(store.query(&query)?)
        }
        Source::Agent(url) => {
            let base = http::BaseUrl::parse(url)?;
            let mut path = format!(
                "/api/v1/profile?format=pprof&include_idle=true&from={}&to={}",
                unix_seconds(config.from_unix_ns),
                unix_seconds(config.to_unix_ns)
            );
            if !config.filter.is_all() {
                path.push_str("&filter=");
                path.push_str(&http::encode_query_value(&config.filter.to_string()));
            }
            let body = http::get(&base, &path)?;
            pprof::decode(&body[..]).map_err(|source| ExportError::Decode {
                url: url.clone(),
                source,
            })
        }
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
        Some(dirs) => resymbolize(&profile, dirs),
        None => profile,
    }
}

/// Names the frames that were stored as `module+0xOFFSET` from debug files that can be
/// found now, and says how many it named.
fn resymbolize(profile: &Profile, debug_dirs: &[PathBuf]) -> Profile {
    let config = symbolizer::Config::default().with_debug_dirs(debug_dirs.to_vec());
    let mut resym = symbolizer::Resymbolizer::new(&config);
    let renamed = resym.resymbolize(profile);
    let dirs = debug_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "ember export: --resymbolize named {} frame(s) from debug files under {dirs}",
        resym.frames_renamed()
    );
    renamed
}

/// `secs.nnnnnnnnn`, exact: what the API's time parameters read back to the nanosecond.
fn unix_seconds(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// What goes into a written profile besides its stacks.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// Flame graph title; speedscope's profile name.
    pub title: String,
    /// Flame graph subtitle.
    pub subtitle: String,
    /// Folded-line options (root frame, kernel frames) for folded and SVG output.
    pub folded: folded::Options,
}

/// Writes `profile` in `format` to `w`. Kernel frames are dropped from every format when
/// `options.folded.no_kernel` is set.
///
/// # Errors
/// Whatever writing to `w` returns.
pub fn write_profile(
    profile: &Profile,
    format: OutputFormat,
    options: &WriteOptions,
    mut w: impl Write,
) -> io::Result<()> {
    let without_kernel;
    let profile = if options.folded.no_kernel {
        without_kernel = strip_kernel(profile);
        &without_kernel
    } else {
        profile
    };
    match format {
        OutputFormat::Folded => folded::write(profile, options.folded, w),
        OutputFormat::Pprof => pprof::encode(profile, w),
        OutputFormat::Speedscope => speedscope::write(profile, &options.title, w),
        OutputFormat::Svg => {
            if profile.is_empty() {
                // inferno refuses an empty profile; an empty SVG still says what happened.
                writeln!(
                    w,
                    r#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="600" height="60"><text x="10" y="30">{}: no samples</text></svg>"#,
                    options.title.replace(['<', '>', '&'], "_")
                )
            } else {
                let svg = web::render::SvgOptions::titled(options.title.clone())
                    .with_subtitle(options.subtitle.clone())
                    .with_folded(options.folded);
                web::render::flamegraph_svg(profile, &svg, w)
            }
        }
    }
}

/// `profile` without kernel frames (a stack of kernel frames only keeps no frames).
fn strip_kernel(profile: &Profile) -> Profile {
    let mut out = Profile::new(profile.meta.clone());
    for s in profile.stacks() {
        let frames: Vec<_> = s
            .frames
            .iter()
            .map(|&f| profile.frame(f))
            .filter(|f| f.kind == profiler_model::FrameKind::User)
            .cloned()
            .collect();
        out.add(s.labels, &frames, s.count);
    }
    out
}

/// Writes `profile` to `path` (`-` for stdout) in `format`.
///
/// # Errors
/// Creating or writing the file; the caller names the path.
pub fn write_file(
    path: &Path,
    format: OutputFormat,
    profile: &Profile,
    options: &WriteOptions,
) -> io::Result<()> {
    let mut out: Box<dyn Write> = if path == Path::new("-") {
        Box::new(BufWriter::new(io::stdout().lock()))
    } else {
        Box::new(BufWriter::new(File::create(path)?))
    };
    write_profile(profile, format, options, &mut out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_model::{Frame, FrameKind, Labels, keys};

    fn profile() -> Profile {
        let mut p = Profile::default();
        let l = Labels::new().with(keys::COMM, "app").with(keys::PID, "3");
        let main = Frame::named("main", FrameKind::User);
        let k = Frame::named("irq", FrameKind::Kernel);
        p.add(&l, &[main.clone(), k.clone()], 4);
        p.add(&l, &[main], 6);
        p.add(&l, &[k], 1);
        p
    }

    #[test]
    fn no_kernel_applies_to_every_format() {
        let opts = WriteOptions {
            folded: folded::Options::default().with_no_kernel(true),
            ..WriteOptions::default()
        };
        let mut out = Vec::new();
        write_profile(&profile(), OutputFormat::Pprof, &opts, &mut out).unwrap();
        let back = pprof::decode(&out[..]).unwrap();
        assert!(back.frames().iter().all(|f| f.kind == FrameKind::User));
        assert_eq!(back.total(), 11);
        let lines = folded::lines(&back, folded::Options::default());
        assert_eq!(lines.get("app;main"), Some(&10));
        // The kernel-only stack keeps its sample, with no frames under the process.
        assert_eq!(lines.get("app"), Some(&1));
    }

    #[test]
    fn unix_seconds_are_exact() {
        assert_eq!(
            unix_seconds(1_700_000_000_123_456_789),
            "1700000000.123456789"
        );
        assert_eq!(unix_seconds(5), "0.000000005");
    }
}
