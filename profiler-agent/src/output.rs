//! Where `ember record` and `ember export` write a profile: a file, or stdout for `-`, in
//! the format `--format` names or the file name implies ([`Format::from_path`]), drawn by
//! `profiler-render`'s one writer.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use profiler_model::{Format, Profile};
use profiler_render::RenderOptions;

use crate::cli::FormatArg;

/// The output format cannot be told from the file name.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot tell the output format from `{path}`: name it .svg, .folded, .pb.gz or .json, \
     or pass --format svg|folded|pprof|speedscope"
)]
pub struct UnknownFormat {
    /// The output path.
    pub path: PathBuf,
}

/// The format of `path`: `flag` when given, folded for stdout (`-`), otherwise what the
/// extension implies.
///
/// # Errors
/// [`UnknownFormat`] when neither tells.
pub fn format_for(path: &Path, flag: Option<FormatArg>) -> Result<Format, UnknownFormat> {
    if let Some(FormatArg(f)) = flag {
        return Ok(f);
    }
    if path == Path::new("-") {
        return Ok(Format::Folded);
    }
    Format::from_path(path).ok_or_else(|| UnknownFormat {
        path: path.to_owned(),
    })
}

/// Writes `profile` to `path` (`-` for stdout) in `format`.
///
/// # Errors
/// Creating or writing the file; the caller names the path.
pub fn write_file(
    path: &Path,
    format: Format,
    profile: &Profile,
    options: &RenderOptions,
) -> io::Result<()> {
    let mut out: Box<dyn Write> = if path == Path::new("-") {
        Box::new(BufWriter::new(io::stdout().lock()))
    } else {
        Box::new(BufWriter::new(File::create(path)?))
    };
    profiler_render::write(profile, format, options, &mut out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_comes_from_flag_or_extension() {
        let f = |p: &str, flag: Option<Format>| format_for(Path::new(p), flag.map(FormatArg));
        assert_eq!(f("x.svg", None).unwrap(), Format::Svg);
        assert_eq!(f("x.SVG", None).unwrap(), Format::Svg);
        assert_eq!(f("x.folded", None).unwrap(), Format::Folded);
        assert_eq!(f("-", None).unwrap(), Format::Folded);
        assert_eq!(f("x.bin", Some(Format::Svg)).unwrap(), Format::Svg);
        let err = f("x.png", None).unwrap_err().to_string();
        assert!(
            err.contains("--format svg|folded|pprof|speedscope"),
            "{err}"
        );
        assert_eq!(f("cpu.pb.gz", None).unwrap(), Format::Pprof);
        assert_eq!(f("x.speedscope.json", None).unwrap(), Format::Speedscope);
    }
}
