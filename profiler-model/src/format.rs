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

    /// The format of an input file, from its first bytes (4 KiB is plenty), as `ember diff`
    /// reads its inputs: folded stacks when they are text (no control bytes other than
    /// whitespace, so text in any encoding is folded), pprof when they start with the gzip
    /// magic or read as `profile.proto` fields ([`crate::pprof::looks_like_pprof`]), and
    /// `None` for anything else (binary data that is neither).
    #[must_use]
    pub fn from_content(data: &[u8]) -> Option<Self> {
        if data.starts_with(&[0x1f, 0x8b]) {
            Some(Format::Pprof)
        } else if first_binary_byte(data).is_none() {
            Some(Format::Folded)
        } else if crate::pprof::looks_like_pprof(data) {
            Some(Format::Pprof)
        } else {
            None
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

/// The offset of the first byte in `data` that text does not hold: a control byte other
/// than tab, line feed and carriage return (a NUL, say).
#[must_use]
pub fn first_binary_byte(data: &[u8]) -> Option<usize> {
    data.iter()
        .position(|&b| (b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t')) || b == 0x7f)
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
        assert_eq!(
            Format::from_content(&[0x1f, 0x8b, 8, 0]),
            Some(Format::Pprof)
        );
        // A string table: "" and "main".
        assert_eq!(
            Format::from_content(b"\x32\x00\x32\x04main"),
            Some(Format::Pprof)
        );
        // A sample whose "fields" are text is not a sample.
        assert_eq!(Format::from_content(b"\x12\x04main"), None);
        assert_eq!(
            Format::from_content(b"a;b 1\r\n\tc 2\n"),
            Some(Format::Folded)
        );
        assert_eq!(
            Format::from_content(b"app;caf\xe9 5\n"),
            Some(Format::Folded)
        );
        // A folded file with a NUL in it is neither (it used to be read as a broken pprof).
        assert_eq!(Format::from_content(b"app;main;fn_a 1\0\napp;b 2\n"), None);
        assert_eq!(first_binary_byte(b"app;main;fn_a 1\0\n"), Some(15));
        // Zeros, and bytes that are not profile.proto fields.
        assert_eq!(Format::from_content(&[0; 4096]), None);
        assert_eq!(Format::from_content(b"\x01\x02\x03\xff\xfe"), None);
        // Ember's own pprof, uncompressed, is told by its fields.
        let mut p = crate::Profile::default();
        p.add(
            &crate::Labels::new(),
            &[crate::Frame::named("main", crate::FrameKind::User)],
            3,
        );
        let raw = crate::pprof::encode_uncompressed(&p);
        assert_eq!(Format::from_content(&raw), Some(Format::Pprof));
    }
}
