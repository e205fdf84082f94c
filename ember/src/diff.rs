//! `ember diff BASE NEW`: what changed between two profiles, and regression gates for CI.
//!
//! Both inputs are read as folded stacks or pprof, told apart by content ([`load`]), and
//! reduced to their folded lines, so a folded file from `ember record` and a pprof file from
//! `ember export` of the same workload compare line for line (a pprof's `comm` label becomes
//! the first frame, as `record` writes it).
//!
//! **Normalization.** Every figure is a *share*: a function's samples over its profile's
//! total. Captures of different lengths or frequencies therefore compare: 30 of 100 samples
//! and 60 of 200 are the same 30 %. A change is the difference of two shares in
//! **percentage points** (`30 % → 35 %` is `+5` points), and a gate's `5%` is 5 such points.
//! The differential folded file scales BASE's counts to NEW's total for the same reason.
//!
//! **Gates.** `--fail-on-regression P` trips for every function whose *self* share (samples
//! whose leaf is the function) grows by more than `P` points: one report per regression,
//! where the time is spent. `--fail-on 'FUNC>+P%'` trips when FUNC's *total* share (samples
//! with FUNC anywhere on the stack) grows by more than `P` points: the function and all it
//! calls. Exit codes are [`EXIT_PASS`], [`EXIT_GATE`] and [`EXIT_ERROR`].

use std::fmt::{self, Write as _};
use std::fs;
use std::io::{self, BufWriter, Read as _, Write};
use std::path::{Path, PathBuf};

use profiler_model::analysis::{self, FunctionDiff};
use profiler_model::{Format, Profile, folded, keys, pprof};
use profiler_render::RenderOptions;

use crate::cli::{DiffArgs, FunctionGate};

/// Exit status when every gate passed (or there were none).
pub(crate) const EXIT_PASS: u8 = 0;
/// Exit status when a gate tripped.
pub(crate) const EXIT_GATE: u8 = 1;
/// Exit status for bad arguments or unreadable input.
pub(crate) const EXIT_ERROR: u8 = 2;

/// Slack for comparing shares: a share change equal to a limit (up to float rounding) does
/// not trip it.
const EPSILON_POINTS: f64 = 1e-9;

/// Why `ember diff` could not compare.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiffError {
    /// The file could not be read.
    #[error("cannot read `{path}`")]
    Read {
        /// The input.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is empty or has no samples.
    #[error("`{path}` has no samples{detail}")]
    Empty {
        /// The input.
        path: PathBuf,
        /// ` (empty file)` or nothing.
        detail: &'static str,
    },
    /// A folded line is malformed.
    #[error("`{path}` is not valid folded stacks")]
    Folded {
        /// The input.
        path: PathBuf,
        /// The line and what is wrong with it.
        #[source]
        source: folded::ParseError,
    },
    /// `--type` was given for folded input, which holds one profile of no stated type.
    #[error(
        "`{}` is folded stacks, which hold one profile of no stated type: --type picks a \
         profile of a pprof input; leave it out for folded input",
        path.display()
    )]
    TypeOfFolded {
        /// The input.
        path: PathBuf,
    },
    /// The pprof input does not decode.
    #[error("`{path}` is not a valid pprof profile")]
    Pprof {
        /// The input.
        path: PathBuf,
        /// Why.
        #[source]
        source: pprof::PprofError,
    },
    /// The file is binary but not a pprof profile.
    #[error(
        "`{path}` is neither folded stacks nor a pprof profile: byte {offset} is {byte:#04x} \
         (binary data that is not profile.proto)"
    )]
    Neither {
        /// The input.
        path: PathBuf,
        /// Where the first byte that text does not hold is.
        offset: usize,
        /// That byte.
        byte: u8,
    },
    /// The pprof input is larger than `--max-input-size` (decompressed).
    #[error(
        "`{path}` is larger than --max-input-size ({limit} bytes){after}; raise \
         --max-input-size if it is a genuine profile"
    )]
    TooLarge {
        /// The input.
        path: PathBuf,
        /// The limit, bytes.
        limit: u64,
        /// ` once decompressed`, or nothing.
        after: &'static str,
    },
    /// A `--fail-on` gate names a function neither profile has.
    #[error(
        "--fail-on `{gate}`: no function `{name}` in either profile (use the names folded stacks \
         show, as in the table; kernel functions end in _[k])"
    )]
    UnknownFunction {
        /// The gate as given.
        gate: String,
        /// The function name.
        name: String,
    },
    /// An output could not be written.
    #[error("cannot write `{path}`")]
    Write {
        /// The output.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// How many bytes of an input are looked at to tell its format.
const SNIFF_LEN: u64 = 4096;

/// Reads a profile file, folded or pprof, into a label-less profile of its folded lines.
///
/// The format is told from the first 4 KiB ([`Format::from_content`]): text is folded
/// stacks, gzip or `profile.proto` fields are pprof, anything else is refused. Folded input
/// is streamed (memory grows with the distinct stacks, not with the file); pprof input is
/// read up to `max_input_size` bytes, after decompression.
///
/// # Errors
/// [`DiffError`] naming the file, and for folded input the line.
pub(crate) fn load(
    path: &Path,
    max_input_size: u64,
    kind: Option<profiler_model::ProfileKind>,
) -> Result<Profile, DiffError> {
    let read_err = |source| DiffError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = fs::File::open(path).map_err(read_err)?;
    let mut head = Vec::with_capacity(SNIFF_LEN as usize);
    (&mut file)
        .take(SNIFF_LEN)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    if head.is_empty() {
        return Err(DiffError::Empty {
            path: path.to_owned(),
            detail: " (empty file)",
        });
    }
    let input = (&head[..]).chain(file);
    let folded_err = |source| DiffError::Folded {
        path: path.to_owned(),
        source,
    };
    let profile = match Format::from_content(&head) {
        Some(Format::Pprof) => {
            let p = pprof::decode_kind_limited(input, kind, max_input_size).map_err(|source| {
                match source {
                    pprof::PprofError::TooLarge { limit, after } => DiffError::TooLarge {
                        path: path.to_owned(),
                        limit,
                        after,
                    },
                    source => DiffError::Pprof {
                        path: path.to_owned(),
                        source,
                    },
                }
            })?;
            let has_comm = p.label_sets().iter().any(|l| l.get(keys::COMM).is_some());
            let root = if has_comm {
                folded::Root::Comm
            } else {
                folded::Root::None
            };
            let mut text = Vec::new();
            for (line, count) in folded::lines(&p, folded::Options::default().with_root(root)) {
                let _ = writeln!(text, "{line} {count}");
            }
            folded::parse(&text[..]).map_err(folded_err)?
        }
        Some(_) if kind.is_some() => {
            return Err(DiffError::TypeOfFolded {
                path: path.to_owned(),
            });
        }
        Some(_) => {
            folded::parse(io::BufReader::with_capacity(64 * 1024, input)).map_err(folded_err)?
        }
        None => {
            let offset = profiler_model::first_binary_byte(&head).unwrap_or(0);
            return Err(DiffError::Neither {
                path: path.to_owned(),
                offset,
                byte: head[offset],
            });
        }
    };
    if profile.is_empty() {
        return Err(DiffError::Empty {
            path: path.to_owned(),
            detail: "",
        });
    }
    Ok(profile)
}

/// One gate that tripped.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GateFailure {
    /// The gate as given (`--fail-on-regression 5%` or `--fail-on 'fn_b>+5%'`).
    pub gate: String,
    /// The function.
    pub function: String,
    /// `self` or `total`.
    pub share: &'static str,
    /// Share in BASE, percent.
    pub base_pct: f64,
    /// Share in NEW, percent.
    pub new_pct: f64,
    /// The limit, percentage points.
    pub limit_points: f64,
}

impl fmt::Display for GateFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: `{}` {} share {:.2}% -> {:.2}% ({:+.2} points, limit +{} points)",
            self.gate,
            self.function,
            self.share,
            self.base_pct,
            self.new_pct,
            self.new_pct - self.base_pct,
            self.limit_points
        )
    }
}

/// The gates of one `ember diff`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Gates {
    /// `--fail-on-regression`, points.
    pub any_self: Option<f64>,
    /// `--fail-on`.
    pub functions: Vec<FunctionGate>,
}

impl Gates {
    /// How many gates there are.
    #[must_use]
    pub(crate) fn len(&self) -> usize {
        usize::from(self.any_self.is_some()) + self.functions.len()
    }

    /// Whether there is no gate.
    #[must_use]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The gates that trip on `diffs`, largest growth first within each gate.
    ///
    /// # Errors
    /// [`DiffError::UnknownFunction`] when a `--fail-on` names a function in neither
    /// profile (a typo must not pass silently).
    pub(crate) fn check(&self, diffs: &[FunctionDiff]) -> Result<Vec<GateFailure>, DiffError> {
        let mut out = Vec::new();
        if let Some(points) = self.any_self {
            let mut tripped: Vec<&FunctionDiff> = diffs
                .iter()
                .filter(|d| d.self_delta() * 100.0 > points + EPSILON_POINTS)
                .collect();
            tripped.sort_by(|a, b| b.self_delta().total_cmp(&a.self_delta()));
            out.extend(tripped.into_iter().map(|d| GateFailure {
                gate: format!("--fail-on-regression {points}%"),
                function: d.name.clone(),
                share: "self",
                base_pct: d.base_self_share * 100.0,
                new_pct: d.new_self_share * 100.0,
                limit_points: points,
            }));
        }
        for gate in &self.functions {
            let d = diffs.iter().find(|d| d.name == gate.name).ok_or_else(|| {
                DiffError::UnknownFunction {
                    gate: gate.text.clone(),
                    name: gate.name.clone(),
                }
            })?;
            if d.total_delta() * 100.0 > gate.points + EPSILON_POINTS {
                out.push(GateFailure {
                    gate: format!("--fail-on '{}'", gate.text),
                    function: d.name.clone(),
                    share: "total",
                    base_pct: d.base_total_share * 100.0,
                    new_pct: d.new_total_share * 100.0,
                    limit_points: gate.points,
                });
            }
        }
        Ok(out)
    }
}

/// The per-function changes, largest change of either share first.
#[must_use]
pub(crate) fn changes(base: &Profile, new: &Profile) -> Vec<FunctionDiff> {
    let mut diffs = analysis::diff_functions(base, new);
    // Rounded to 1e-9 points so float noise (0.5 - 0.3 vs 0.7 - 0.5) does not order ties.
    let size = |d: &FunctionDiff| (d.self_delta().abs().max(d.total_delta().abs()) * 1e11).round();
    diffs.sort_by(|a, b| {
        size(b)
            .total_cmp(&size(a))
            .then_with(|| a.name.cmp(&b.name))
    });
    diffs
}

/// The table of the `top` functions whose share changed most.
#[must_use]
pub(crate) fn table(diffs: &[FunctionDiff], base_total: u64, new_total: u64, top: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Share of all samples, BASE ({base_total} samples) -> NEW ({new_total} samples); \
         change in percentage points:"
    );
    let changed: Vec<&FunctionDiff> = diffs
        .iter()
        .filter(|d| d.self_delta() != 0.0 || d.total_delta() != 0.0)
        .take(top)
        .collect();
    if changed.is_empty() {
        out.push_str("  no function's share changed\n");
        return out;
    }
    out.push_str("  ------- self share -------   ------- total share ------\n");
    let _ = writeln!(
        out,
        "  {:>8} {:>8} {:>8}   {:>8} {:>8} {:>8}   function",
        "base", "new", "change", "base", "new", "change"
    );
    for d in changed {
        let _ = writeln!(
            out,
            "  {:>7.2}% {:>7.2}% {:>+8.2}   {:>7.2}% {:>7.2}% {:>+8.2}   {}",
            d.base_self_share * 100.0,
            d.new_self_share * 100.0,
            d.self_delta() * 100.0,
            d.base_total_share * 100.0,
            d.new_total_share * 100.0,
            d.total_delta() * 100.0,
            d.name
        );
    }
    out
}

/// A validated `ember diff`.
#[derive(Clone, Debug)]
pub(crate) struct DiffConfig {
    /// BASE.
    pub base: PathBuf,
    /// NEW.
    pub new: PathBuf,
    /// Differential SVG output.
    pub svg: Option<PathBuf>,
    /// Differential folded output.
    pub folded: Option<PathBuf>,
    /// Table rows.
    pub top: usize,
    /// The gates.
    pub gates: Gates,
    /// The largest pprof input read, bytes after decompression (`--max-input-size`).
    pub max_input_size: u64,
    /// Which profile of a pprof input (`--type`); `None`, its CPU samples if it has them.
    pub kind: Option<profiler_model::ProfileKind>,
}

impl From<DiffArgs> for DiffConfig {
    fn from(a: DiffArgs) -> Self {
        DiffConfig {
            base: a.base,
            new: a.new,
            svg: a.svg,
            folded: a.folded,
            top: a.top,
            gates: Gates {
                any_self: a.fail_on_regression,
                functions: a.fail_on,
            },
            max_input_size: a.max_input_size,
            kind: a.profile_type,
        }
    }
}

/// What `ember diff` found.
#[derive(Clone, Debug)]
pub(crate) struct DiffOutcome {
    /// The table for stdout (empty when `top` is 0).
    pub table: String,
    /// The gates that tripped.
    pub failures: Vec<GateFailure>,
}

/// Runs `ember diff`: reads both inputs, writes the requested outputs, checks the gates.
///
/// # Errors
/// [`DiffError`] for unreadable inputs, unknown gate functions and unwritable outputs.
pub(crate) fn run(config: &DiffConfig) -> Result<DiffOutcome, DiffError> {
    let base = load(&config.base, config.max_input_size, config.kind)?;
    let new = load(&config.new, config.max_input_size, config.kind)?;
    let diffs = changes(&base, &new);
    let failures = config.gates.check(&diffs)?;
    // BASE's process names are not NEW's (a pprof's `comm` became the first frame of
    // each stack on loading), so the lines start at the stacks' own first frame.
    let options = RenderOptions::titled(format!(
        "ember diff: {} -> {}",
        config.base.display(),
        config.new.display()
    ))
    .with_subtitle(format!(
        "widths: NEW ({} samples); red grew, blue shrank against BASE ({} samples) scaled to the same total",
        new.total(),
        base.total()
    ))
    .with_folded(folded::Options::default().with_root(folded::Root::None));
    for (path, format) in [(&config.folded, Format::Folded), (&config.svg, Format::Svg)] {
        if let Some(path) = path {
            write_to(path, |w| {
                profiler_render::write_diff(&base, &new, format, &options, w).map_err(|e| match e {
                    profiler_render::RenderError::Io(e) => e,
                    other => io::Error::other(other),
                })
            })?;
        }
    }
    let table = if config.top == 0 {
        String::new()
    } else {
        table(&diffs, base.total(), new.total(), config.top)
    };
    Ok(DiffOutcome { table, failures })
}

fn write_to(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), DiffError> {
    let err = |source| DiffError::Write {
        path: path.to_owned(),
        source,
    };
    let mut w = BufWriter::new(fs::File::create(path).map_err(err)?);
    f(&mut w).map_err(err)?;
    w.flush().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_gate;

    fn folded(text: &str) -> Profile {
        folded::parse(text.as_bytes()).unwrap()
    }

    fn find<'a>(diffs: &'a [FunctionDiff], name: &str) -> &'a FunctionDiff {
        diffs.iter().find(|d| d.name == name).unwrap()
    }

    /// `ember record --off-cpu` writes a pprof with the off-CPU profile first and the CPU
    /// samples beside it; `--type` picks which one a diff compares.
    #[test]
    fn type_picks_the_profile_of_a_pprof_with_both() {
        let dir = tempfile::tempdir().unwrap();
        let off_cpu = folded("app;main;wait 9000\n");
        let cpu = folded("app;main;work 7\napp;main;wait 1\n");
        let path = dir.path().join("both.pb.gz");
        let mut gz = Vec::new();
        pprof::encode_with_cpu(&off_cpu, &cpu, &mut gz).unwrap();
        fs::write(&path, gz).unwrap();
        let total = |kind| {
            load(&path, pprof::DEFAULT_MAX_DECODED, kind)
                .unwrap()
                .total()
        };
        assert_eq!(
            total(None),
            8,
            "the CPU samples by default, as every pprof reader"
        );
        assert_eq!(total(Some(profiler_model::ProfileKind::OffCpu)), 9000);
        assert_eq!(total(Some(profiler_model::ProfileKind::Cpu)), 8);
        let text = dir.path().join("one.folded");
        fs::write(&text, "app;main;work 3\n").unwrap();
        let e = load(
            &text,
            pprof::DEFAULT_MAX_DECODED,
            Some(profiler_model::ProfileKind::Cpu),
        )
        .unwrap_err();
        assert!(matches!(e, DiffError::TypeOfFolded { .. }), "{e}");
        assert!(e.to_string().contains("one.folded"), "{e}");
    }

    #[test]
    fn inputs_are_told_apart_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let folded_profile = folded("app;main;fn_a 3\napp;main;fn_b 1\n");
        let raw = pprof::encode_uncompressed(&folded_profile);
        let mut gz = Vec::new();
        pprof::encode(&folded_profile, &mut gz).unwrap();
        // Latin-1 text is still folded stacks, not a broken pprof.
        let latin1 = b"app;caf\xe9 5\n".to_vec();
        for (name, data, total) in [
            ("raw.folded", raw, 4),
            ("gz.txt", gz, 4),
            ("latin1.folded", latin1, 0),
        ] {
            let path = dir.path().join(name);
            fs::write(&path, data).unwrap();
            match load(&path, pprof::DEFAULT_MAX_DECODED, None) {
                Ok(p) => {
                    assert_eq!(p.total(), total, "{name}");
                    let lines =
                        folded::lines(&p, folded::Options::default().with_root(folded::Root::None));
                    assert_eq!(lines.get("app;main;fn_a"), Some(&3), "{name}");
                }
                Err(e) => {
                    assert_eq!(name, "latin1.folded");
                    let msg = e.to_string();
                    assert!(msg.contains("is not valid folded stacks"), "{msg}");
                }
            }
        }
    }

    #[test]
    fn same_shares_at_different_lengths_are_no_change() {
        let base = folded("app;main;fn_a 70\napp;main;fn_b 30\n");
        let new = folded("app;main;fn_a 140\napp;main;fn_b 60\n");
        let diffs = changes(&base, &new);
        assert!(
            diffs
                .iter()
                .all(|d| d.self_delta() == 0.0 && d.total_delta() == 0.0)
        );
        let gates = Gates {
            any_self: Some(0.0),
            functions: vec![parse_gate("fn_b>+0%").unwrap()],
        };
        assert_eq!(gates.check(&diffs).unwrap(), []);
        let lines = analysis::diff_folded(
            &base,
            &new,
            folded::Options::default().with_root(folded::Root::None),
        );
        assert_eq!(
            analysis::diff_folded_text(&lines),
            "app;main;fn_a 140 140\napp;main;fn_b 60 60\n"
        );
        assert!(table(&diffs, 100, 200, 10).contains("no function's share changed"));
    }

    #[test]
    fn shares_and_points_are_computed_per_profile() {
        // BASE: fn_b 30 of 100 (30 %). NEW: fn_b 100 of 200 (50 %), of which 20 in a
        // callee `hash`, so fn_b's self share is 40 % and its total share 50 %.
        let base = folded("app;main;fn_a 70\napp;main;fn_b 30\n");
        let new = folded("app;main;fn_a 100\napp;main;fn_b 80\napp;main;fn_b;hash 20\n");
        let diffs = changes(&base, &new);
        let b = find(&diffs, "fn_b");
        assert!((b.self_delta() * 100.0 - 10.0).abs() < 1e-9);
        assert!((b.total_delta() * 100.0 - 20.0).abs() < 1e-9);
        let a = find(&diffs, "fn_a");
        assert!((a.self_delta() * 100.0 + 20.0).abs() < 1e-9);
        // Sorted by the larger of the two changes: fn_a (-20/-20) and fn_b (+10/+20) tie
        // at 20 and sort by name; hash (+10) follows.
        let order: Vec<&str> = diffs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(&order[..3], ["fn_a", "fn_b", "hash"]);

        // Self gate: fn_b +10 and hash +10 trip 9.99, not 10 (strictly greater).
        let at = |p: f64| Gates {
            any_self: Some(p),
            functions: vec![],
        };
        let tripped = at(9.99).check(&diffs).unwrap();
        let names: Vec<&str> = tripped.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"fn_b") && names.contains(&"hash"));
        assert_eq!(at(10.0).check(&diffs).unwrap(), []);

        // Named gate on the total share: +20 points.
        let named = |g: &str| Gates {
            any_self: None,
            functions: vec![parse_gate(g).unwrap()],
        };
        let f = named("fn_b>+19.5%").check(&diffs).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].to_string(),
            "--fail-on 'fn_b>+19.5%': `fn_b` total share 30.00% -> 50.00% (+20.00 points, limit +19.5 points)"
        );
        assert_eq!(named("fn_b>+20%").check(&diffs).unwrap(), []);
        // A shrinking function never trips.
        assert_eq!(named("fn_a>+0%").check(&diffs).unwrap(), []);
        let err = named("fn_c>+1%").check(&diffs).unwrap_err().to_string();
        assert!(err.contains("no function `fn_c`"), "{err}");

        // The differential folded file scales BASE to NEW's total (x2).
        let lines = analysis::diff_folded(
            &base,
            &new,
            folded::Options::default().with_root(folded::Root::None),
        );
        assert_eq!(
            analysis::diff_folded_text(&lines),
            "app;main;fn_a 140 100\napp;main;fn_b 60 80\napp;main;fn_b;hash 0 20\n"
        );
        let t = table(&diffs, 100, 200, 2);
        assert!(t.contains("BASE (100 samples) -> NEW (200 samples)"), "{t}");
        assert!(t.contains("30.00%   50.00%   +20.00   fn_b"), "{t}");
        assert!(!t.contains("hash"), "top 2 only: {t}");
    }
}
