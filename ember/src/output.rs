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
pub(crate) struct UnknownFormat {
    /// The output path.
    pub path: PathBuf,
}

/// `-` was asked for but stdout is closed: nothing could be written.
#[derive(Debug, thiserror::Error)]
#[error(
    "stdout is closed, so `-o -` has nowhere to write; redirect it to a file or pipe, or name \
     an output file with -o"
)]
pub(crate) struct StdoutClosed;

/// Checks that `path` can be written before anything is recorded or read: for `-`, that
/// stdout was open when ember started.
///
/// A process started with stdout closed gets `/dev/null` there from Rust's runtime
/// (opened read-write, before `main`), so its writes would vanish and the run would end
/// "successfully" having written nothing. A shell's `> /dev/null` opens it write-only, so
/// a read-write `/dev/null` on stdout is taken for a closed one.
///
/// # Errors
/// [`StdoutClosed`].
pub(crate) fn check_writable(path: &Path) -> Result<(), StdoutClosed> {
    if path != Path::new("-") {
        return Ok(());
    }
    // SAFETY: F_GETFL reads the descriptor's status flags; nothing is changed.
    let flags = unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_GETFL) };
    if flags < 0 {
        return Err(StdoutClosed);
    }
    if flags & libc::O_ACCMODE != libc::O_RDWR {
        return Ok(());
    }
    let null = std::fs::metadata("/dev/null").map(|m| {
        use std::os::unix::fs::MetadataExt as _;
        m.rdev()
    });
    // SAFETY: fstat fills `st` for an open descriptor; `st` is a plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::fstat(libc::STDOUT_FILENO, &raw mut st) } == 0;
    if ok && (st.st_mode & libc::S_IFMT) == libc::S_IFCHR && null.is_ok_and(|r| r == st.st_rdev) {
        return Err(StdoutClosed);
    }
    Ok(())
}

/// Whether `err`'s chain holds a broken pipe: the reader of stdout went away (`| head`),
/// which ends a run quietly, as it does for other Unix tools.
#[must_use]
pub(crate) fn is_broken_pipe(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The format of `path`: `flag` when given, folded for stdout (`-`), otherwise what the
/// extension implies.
///
/// # Errors
/// [`UnknownFormat`] when neither tells.
pub(crate) fn format_for(path: &Path, flag: Option<FormatArg>) -> Result<Format, UnknownFormat> {
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
pub(crate) fn write_file(
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

/// [`write_file`] for an off-CPU profile with the CPU profile of the same capture: pprof
/// carries both (`off_cpu/nanoseconds` first, then the CPU sample types); every other
/// format holds one profile, the off-CPU one.
pub(crate) fn write_off_cpu_file(
    path: &Path,
    format: Format,
    off_cpu: &Profile,
    cpu: &Profile,
    options: &RenderOptions,
) -> io::Result<()> {
    if format != Format::Pprof {
        return write_file(path, format, off_cpu, options);
    }
    let mut out: Box<dyn Write> = if path == Path::new("-") {
        Box::new(BufWriter::new(io::stdout().lock()))
    } else {
        Box::new(BufWriter::new(File::create(path)?))
    };
    profiler_model::pprof::encode_with_cpu(off_cpu, cpu, &mut out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pipes_are_found_in_the_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot write `-`")]
        struct Outer(#[source] io::Error);
        let pipe = Outer(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&pipe));
        let other = Outer(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!is_broken_pipe(&other));
        let wrapped = anyhow::Error::from(pipe).context("ember record");
        assert!(is_broken_pipe(wrapped.as_ref()));
        assert!(check_writable(Path::new("x.svg")).is_ok());
    }

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
