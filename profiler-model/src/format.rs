//! The formats Ember writes and reads, named once: what each is called on the command line
//! and in the API (`format=`), which file names imply it, its HTTP content type and file
//! extension, and how an input file is told apart by its content.
//!
//! The writers live with their formats ([`crate::folded`], [`crate::pprof`],
//! [`crate::speedscope`], [`crate::json`]); the SVG flame graph is drawn by
//! `profiler-render`, whose `write` is the one dispatch from a [`Format`] to its writer.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// An output (or, for [`Format::Folded`] and [`Format::Pprof`], input) format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Folded stacks (`comm;main;work;fn_a 42`), what inferno and flamegraph.pl read.
    Folded,
    /// An interactive flame graph SVG (inferno).
    Svg,
    /// gzip-compressed pprof `profile.proto` (go tool pprof, Pyroscope, Parca).
    Pprof,
    /// speedscope JSON, for the speedscope.app viewer.
    Speedscope,
    /// Ember's own JSON: frames once, stacks as frame ids ([`crate::json`]).
    Json,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 5] = [
        Format::Folded,
        Format::Svg,
        Format::Pprof,
        Format::Speedscope,
        Format::Json,
    ];

    /// The name the command line and the API use: `folded`, `svg`, `pprof`, `speedscope`,
    /// `json`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Format::Folded => "folded",
            Format::Svg => "svg",
            Format::Pprof => "pprof",
            Format::Speedscope => "speedscope",
            Format::Json => "json",
        }
    }

    /// The format called `name` ([`Format::name`]).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    /// One line saying what the format is, for help texts.
    #[must_use]
    pub fn description(self) -> &'static str {
        match self {
            Format::Folded => {
                "Folded stacks (`comm;main;work;fn_a 42`), what inferno and flamegraph.pl read"
            }
            Format::Svg => "An interactive flame graph SVG (inferno)",
            Format::Pprof => {
                "gzip-compressed pprof `profile.proto` (go tool pprof, Pyroscope, Parca)"
            }
            Format::Speedscope => "speedscope JSON, for the speedscope.app viewer",
            Format::Json => "Ember's JSON: frames once, stacks as frame ids",
        }
    }

    /// The format a file name implies, by its extension (any case): `.svg`; `.folded`,
    /// `.txt`, `.collapsed`; `.pb.gz`, `.pprof`, `.pb` (what `go tool pprof` users name
    /// them); `.json`, which is speedscope (whose own exports are `*.speedscope.json`).
    #[must_use]
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "svg" => Some(Format::Svg),
            "folded" | "txt" | "collapsed" => Some(Format::Folded),
            "gz" | "pprof" | "pb" => Some(Format::Pprof),
            "json" => Some(Format::Speedscope),
            _ => None,
        }
    }

    /// The format of an input file's bytes, as `ember diff` reads its inputs: pprof when
    /// they start with the gzip magic or hold control bytes other than whitespace in the
    /// first 4 KiB (a protobuf's field tags and lengths), otherwise folded stacks, so text
    /// in any encoding is read as folded.
    #[must_use]
    pub fn from_content(data: &[u8]) -> Self {
        let binary = data.starts_with(&[0x1f, 0x8b])
            || data
                .iter()
                .take(4096)
                .any(|&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t'));
        if binary {
            Format::Pprof
        } else {
            Format::Folded
        }
    }

    /// The HTTP `Content-Type` of the format.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Folded => "text/plain; charset=utf-8",
            Format::Svg => "image/svg+xml",
            Format::Pprof => "application/octet-stream",
            Format::Speedscope | Format::Json => "application/json",
        }
    }

    /// The extension a file of this format is given (without the dot): `folded`, `svg`,
    /// `pb.gz`, `speedscope.json`, `json`. [`Format::from_path`] reads each back.
    #[must_use]
    pub fn file_extension(self) -> &'static str {
        match self {
            Format::Folded => "folded",
            Format::Svg => "svg",
            Format::Pprof => "pb.gz",
            Format::Speedscope => "speedscope.json",
            Format::Json => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is not one of [`Format::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown format `{0}` (one of: folded, svg, pprof, speedscope, json)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::from_name(s).ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::from_name(f.name()), Some(f));
            assert_eq!(f.to_string().parse::<Format>(), Ok(f));
        }
        assert_eq!(
            "xml".parse::<Format>().unwrap_err().to_string(),
            "unknown format `xml` (one of: folded, svg, pprof, speedscope, json)"
        );
    }

    #[test]
    fn paths_imply_formats_by_extension() {
        let f = |p: &str| Format::from_path(Path::new(p));
        assert_eq!(f("x.svg"), Some(Format::Svg));
        assert_eq!(f("x.SVG"), Some(Format::Svg));
        assert_eq!(f("x.folded"), Some(Format::Folded));
        assert_eq!(f("x.txt"), Some(Format::Folded));
        assert_eq!(f("cpu.pb.gz"), Some(Format::Pprof));
        assert_eq!(f("cpu.pprof"), Some(Format::Pprof));
        assert_eq!(f("x.speedscope.json"), Some(Format::Speedscope));
        assert_eq!(f("x.png"), None);
        assert_eq!(f("-"), None);
        assert_eq!(f("noext"), None);
        // The extension each format is given reads back as that format, except Ember's
        // JSON, which a `.json` file name leaves to speedscope.
        for format in [
            Format::Folded,
            Format::Svg,
            Format::Pprof,
            Format::Speedscope,
        ] {
            assert_eq!(f(&format!("p.{}", format.file_extension())), Some(format));
        }
    }

    #[test]
    fn content_tells_pprof_from_folded() {
        assert_eq!(Format::from_content(&[0x1f, 0x8b, 8, 0]), Format::Pprof);
        assert_eq!(Format::from_content(b"\x12\x04main"), Format::Pprof);
        assert_eq!(Format::from_content(b"a;b 1\r\n\tc 2\n"), Format::Folded);
        assert_eq!(Format::from_content(b"app;caf\xe9 5\n"), Format::Folded);
    }
}
