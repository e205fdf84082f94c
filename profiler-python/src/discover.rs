//! Discovery: whether a process runs CPython, which version, which file holds the
//! interpreter and where its `_PyRuntime` is.
//!
//! A process is a candidate only if one of its file mappings is named like an interpreter
//! (`libpython3.N…` or `python…`), so a process that is not Python costs one read of its
//! maps. The candidate file (a shared `libpython` before the executable, as pyenv builds
//! with `--enable-shared`; the executable itself for Debian's statically linked
//! `/usr/bin/python3.11`) is opened as the symbolizer opens binaries, through
//! `/proc/PID/map_files` or beneath `/proc/PID/root`, so interpreters in containers are
//! found too. Its dynamic symbol table (kept by stripped binaries) gives `_PyRuntime`,
//! `PyCode_Type` and, from 3.11 on, `Py_Version`, whose value is the version; earlier
//! versions are read off the file name. An interpreter whose version the table has no row
//! for is still reported, with no offsets, so `ember doctor` can say it is unsupported.
//! Interpreters renamed to something else (an embedding application with its own name
//! and a static interpreter) are not found.

use std::io;
use std::path::Path;

use profiler_common::python::PyOffsets;
use symbolizer::procfs::{self, Procfs};
use symbolizer::{Backing, Mapping};
use unwinder::elf;

use crate::offsets;

/// A CPython version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// 3.
    pub major: u8,
    /// 11 for 3.11.
    pub minor: u8,
    /// The patch level, when the binary says (`Py_Version`, 3.11+).
    pub micro: Option<u8>,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.micro {
            Some(micro) => write!(f, "{}.{}.{micro}", self.major, self.minor),
            None => write!(f, "{}.{}", self.major, self.minor),
        }
    }
}

/// A process found to run CPython.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interpreter {
    /// The process.
    pub pid: u32,
    /// Its start time (clock ticks since boot), which tells a reused pid apart.
    pub start_time: u64,
    /// The interpreter's version.
    pub version: Version,
    /// The file holding the interpreter, as the process sees it (`libpython3.N.so…` or the
    /// executable).
    pub path: String,
    /// Whether that file is a shared `libpython` (else the executable).
    pub shared: bool,
    /// The address of `_PyRuntime` in the process.
    pub runtime: u64,
    /// The address of `PyCode_Type`, by which code objects are recognized.
    pub code_type: Option<u64>,
    /// The offsets for this version; `None` when it is not supported.
    pub offsets: Option<&'static PyOffsets>,
}

impl Interpreter {
    /// Whether the version has offsets (frames can be walked).
    #[must_use]
    pub fn supported(&self) -> bool {
        self.offsets.is_some()
    }
}

/// Why discovery failed for a process.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// Its `/proc` files could not be read (most often: it is gone).
    #[error("cannot read `/proc/{pid}`")]
    Proc {
        /// The process.
        pid: u32,
        /// The read's error.
        #[source]
        source: io::Error,
    },
    /// A candidate interpreter file could not be opened.
    #[error("cannot open `{path}` of process {pid}")]
    Open {
        /// The process.
        pid: u32,
        /// The file.
        path: String,
        /// The open's error.
        #[source]
        source: io::Error,
    },
    /// A candidate interpreter file is not a readable ELF file.
    #[error("cannot read `{path}` as ELF")]
    Elf {
        /// The file.
        path: String,
        /// The reader's error.
        #[source]
        source: elf::ElfError,
    },
    /// It defines `_PyRuntime` but tells no version.
    #[error("`{path}` has `_PyRuntime` but no version (no `Py_Version`, no version in its name)")]
    NoVersion {
        /// The file.
        path: String,
    },
    /// Its load address could not be found from the mappings.
    #[error("no mapping of `{path}` matches its load segments")]
    NoBias {
        /// The file.
        path: String,
    },
}

/// Whether a mapped file's name is one discovery looks into (`libpython…`, `python…`):
/// a process that maps none is not CPython, and costs nothing more to find so.
#[must_use]
pub fn is_candidate(path: &str) -> bool {
    candidate_rank(path).is_some()
}

/// How a file name looks to discovery.
fn candidate_rank(path: &str) -> Option<u8> {
    let name = Path::new(path).file_name()?.to_str()?;
    if name.starts_with("libpython") {
        Some(0)
    } else if name.starts_with("python") {
        Some(1)
    } else {
        None
    }
}

/// `3.N` from a name such as `libpython3.9.so.1.0` or `python3.10`.
fn version_from_name(path: &str) -> Option<Version> {
    let name = Path::new(path).file_name()?.to_str()?;
    let rest = name
        .strip_prefix("lib")
        .unwrap_or(name)
        .strip_prefix("python")?;
    let (major, rest) = rest.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(Version {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        micro: None,
    })
}

/// `PY_VERSION_HEX` (the value of `Py_Version`) as a version.
fn version_from_hex(hex: u32) -> Version {
    let [major, minor, micro, _] = hex.to_be_bytes();
    Version {
        major,
        minor,
        micro: Some(micro),
    }
}

/// Finds the CPython interpreter of process `pid`, if it runs one.
///
/// # Errors
/// [`DiscoverError`] when `/proc` or a candidate file cannot be read; a process with no
/// candidate file, or whose candidates do not define `_PyRuntime`, is `Ok(None)`.
pub fn discover(procfs: &Procfs, pid: u32) -> Result<Option<Interpreter>, DiscoverError> {
    let proc_err = |source| DiscoverError::Proc { pid, source };
    let text = procfs.maps_text(pid).map_err(proc_err)?;
    let maps: Vec<Mapping> = text.lines().filter_map(procfs::parse_maps_line).collect();
    let mut candidates: Vec<(u8, &str)> = Vec::new();
    for m in &maps {
        if let Backing::File { path, .. } = &m.backing
            && let Some(rank) = candidate_rank(path)
            && !candidates.iter().any(|(_, p)| *p == &**path)
        {
            candidates.push((rank, path));
        }
    }
    if candidates.is_empty() {
        return Ok(None);
    }
    candidates.sort_by_key(|(rank, _)| *rank);
    for (rank, path) in candidates {
        if let Some(found) = inspect(pid, &maps, path, rank == 0)? {
            let start_time = procfs.start_time(pid).map_err(proc_err)?;
            return Ok(Some(Interpreter {
                start_time,
                ..found
            }));
        }
    }
    Ok(None)
}

/// Every CPython process under `procfs`, with the candidates that could not be inspected
/// (a file that would not open or parse); processes that vanish while scanned are left
/// out. One read of the maps per process that is not Python.
///
/// # Errors
/// The error of listing the processes.
pub fn scan(procfs: &Procfs) -> io::Result<Vec<Result<Interpreter, DiscoverError>>> {
    Ok(procfs
        .pids()?
        .into_iter()
        .filter_map(|pid| match discover(procfs, pid) {
            Ok(found) => found.map(Ok),
            Err(DiscoverError::Proc { .. }) => None,
            Err(err) => Some(Err(err)),
        })
        .collect())
}

/// Looks at one candidate file of process `pid`.
fn inspect(
    pid: u32,
    maps: &[Mapping],
    path: &str,
    shared: bool,
) -> Result<Option<Interpreter>, DiscoverError> {
    let mine: Vec<&Mapping> = maps
        .iter()
        .filter(|m| matches!(&m.backing, Backing::File { path: p, .. } if &**p == path))
        .collect();
    let Some(first) = mine.first() else {
        return Ok(None);
    };
    let file = procfs::open_mapped(pid, first).map_err(|source| DiscoverError::Open {
        pid,
        path: path.to_owned(),
        source,
    })?;
    let elf_err = |source| DiscoverError::Elf {
        path: path.to_owned(),
        source,
    };
    let parsed = elf::parse(&file).map_err(elf_err)?;
    let symbols =
        elf::dynamic_symbols(&file, &parsed, &["_PyRuntime", "Py_Version", "PyCode_Type"])
            .map_err(elf_err)?;
    let Some(runtime) = symbols[0] else {
        return Ok(None);
    };
    let version = match symbols[1] {
        Some(sym) => {
            let bytes = elf::read_vaddr(&file, &parsed, sym.value, 4).map_err(elf_err)?;
            let hex = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            version_from_hex(hex)
        }
        None => version_from_name(path).ok_or_else(|| DiscoverError::NoVersion {
            path: path.to_owned(),
        })?,
    };
    let bias = load_bias(&parsed, &mine).ok_or_else(|| DiscoverError::NoBias {
        path: path.to_owned(),
    })?;
    Ok(Some(Interpreter {
        pid,
        start_time: 0,
        version,
        path: path.to_owned(),
        shared,
        runtime: runtime.value.wrapping_add(bias),
        code_type: symbols[2].map(|s| s.value.wrapping_add(bias)),
        offsets: offsets::for_version(version.major, version.minor),
    }))
}

/// What to add to the file's virtual addresses to get the process's: a mapping whose
/// page offset is a load segment's page gives it (0 for a non-PIE executable).
fn load_bias(parsed: &elf::ElfFile, mappings: &[&Mapping]) -> Option<u64> {
    const PAGE: u64 = 4096;
    for load in &parsed.loads {
        let page_offset = load.offset - load.offset % PAGE;
        let page_vaddr = load.vaddr.checked_sub(load.offset - page_offset)?;
        if let Some(m) = mappings.iter().find(|m| m.pgoff == page_offset) {
            return Some(m.start.wrapping_sub(page_vaddr));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_names_and_hex() {
        let v = |major, minor| Version {
            major,
            minor,
            micro: None,
        };
        assert_eq!(
            version_from_name("/usr/lib/libpython3.9.so.1.0"),
            Some(v(3, 9))
        );
        assert_eq!(
            version_from_name("/root/.pyenv/versions/3.10.13/bin/python3.10"),
            Some(v(3, 10))
        );
        assert_eq!(version_from_name("/usr/bin/python3"), None);
        assert_eq!(version_from_name("/usr/bin/pythonx.y"), None);
        assert_eq!(version_from_name(""), None);
        let hex = version_from_hex(0x030b_07f0);
        assert_eq!((hex.major, hex.minor, hex.micro), (3, 11, Some(7)));
        assert_eq!(hex.to_string(), "3.11.7");
        assert_eq!(v(3, 9).to_string(), "3.9");
    }

    #[test]
    fn only_interpreter_names_are_candidates() {
        assert_eq!(
            candidate_rank("/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"),
            Some(0)
        );
        assert_eq!(candidate_rank("/usr/bin/python3.11"), Some(1));
        assert_eq!(candidate_rank("/usr/bin/bash"), None);
        assert_eq!(candidate_rank("/opt/python3/lib/libc.so.6"), None);
    }

    #[test]
    fn a_process_that_is_not_python_is_none() {
        let me = std::process::id();
        assert_eq!(discover(&Procfs::default(), me).expect("own maps"), None);
        assert!(matches!(
            discover(&Procfs::default(), u32::MAX),
            Err(DiscoverError::Proc { .. })
        ));
    }
}
