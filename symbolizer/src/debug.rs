//! Finding separate debug information for a binary, the way GDB and Debian's `-dbgsym`
//! packages lay it out:
//!
//! 1. by build-id: `<dir>/.build-id/<first byte>/<rest>.debug`, accepted only if that
//!    file's own build-id matches;
//! 2. by `.gnu_debuglink` name: next to the binary, in `.debug/` next to it, and under
//!    `<dir>/<binary's directory>/`, accepted only if the CRC-32 of the file matches the
//!    one recorded in the link.
//!
//! `<dir>` are the configured debug directories ([`Config::debug_dirs`], default
//! `/usr/lib/debug`). Every candidate is looked for first under the process's root
//! (`/proc/PID/root`, so a container's own debug files are used; skipped when that is the
//! host's root) and then on the host.
//!
//! Every path but those under a configured directory on the host is the process's user's
//! to choose, so it is opened through `untrusted.rs`: no symlinks, regular files of that
//! user or root only. Under the configured host directories symlinks are followed (Fedora's
//! `.build-id/` entries are symlinks); inside a container's root they are not, and such a
//! debug file is found by its `.gnu_debuglink` name instead. A debug file over
//! [`DEBUG_FILE_MAX_BYTES`] is refused (a debug link's CRC reads all of it).
//!
//! [`Config::debug_dirs`]: crate::Config::debug_dirs

use std::fs::File;
use std::path::{Path, PathBuf};

use unwinder::elf::{self, ElfFile};

use crate::untrusted::{self, DEBUG_FILE_MAX_BYTES, OpenError, Owners, Refusal, RefusalLog, Root};

/// A debug file that was found and verified.
#[derive(Debug)]
pub(crate) struct DebugFile {
    pub(crate) file: File,
    /// Where it was found, for logs.
    pub(crate) path: PathBuf,
}

/// How a candidate path is opened.
#[derive(Debug)]
enum Candidate {
    /// Under a configured debug directory on the host: the operator's, symlinks allowed.
    Configured(PathBuf),
    /// Anywhere else: the process's user chose it (`untrusted.rs`).
    Beneath(Root, PathBuf),
}

/// Joins `path` under directory `dir`, `path` being absolute or not.
fn under(dir: &Path, path: &Path) -> PathBuf {
    dir.join(path.strip_prefix("/").unwrap_or(path))
}

/// Where to look, in order, for the process `pid`'s (if any) debug files: first beneath
/// its root, unless that is the host's, then on the host.
fn roots(pid: Option<u32>) -> Vec<Option<Root>> {
    match pid {
        Some(pid) if !untrusted::shares_our_root(pid) => vec![Some(Root::Process(pid)), None],
        _ => vec![None],
    }
}

/// Opens a candidate; `None` if it is not there or was refused (and counted).
fn open(
    candidate: Candidate,
    pid: Option<u32>,
    owners: Owners,
    refusals: &mut RefusalLog,
) -> Option<(File, PathBuf)> {
    let (opened, path) = match candidate {
        Candidate::Configured(path) => (untrusted::open_trusted(&path), path),
        Candidate::Beneath(root, path) => {
            let shown = match root {
                Root::Process(pid) => under(Path::new(&format!("/proc/{pid}/root")), &path),
                Root::Host => path.clone(),
            };
            (untrusted::open(root, &path, Some(owners)), shown)
        }
    };
    let refusal = match opened {
        Ok(file) => match file.metadata() {
            Ok(meta) if meta.len() > DEBUG_FILE_MAX_BYTES => Refusal::TooLarge {
                size: meta.len(),
                cap: DEBUG_FILE_MAX_BYTES,
            },
            Ok(_) => return Some((file, path)),
            Err(_) => return None,
        },
        Err(OpenError::Missing(_)) => return None,
        Err(OpenError::Refused(refusal)) => refusal,
    };
    refusals.record(pid, &path, &refusal);
    None
}

/// Looks for the debug file of a binary with headers `info`, mapped at `module` (the path
/// the process sees) by process `pid` (`None`: by none in particular, so only the host is
/// looked at, and every path is trusted).
pub(crate) fn find(
    info: &ElfFile,
    module: &str,
    pid: Option<u32>,
    dirs: &[PathBuf],
    refusals: &mut RefusalLog,
) -> Option<DebugFile> {
    let owners = pid.map_or(Owners::ROOT, |pid| Owners::of(pid).unwrap_or(Owners::ROOT));
    let roots = roots(pid);
    // Outside the configured directories, host paths are the process's user's too.
    let beneath = |root: Option<Root>, path: PathBuf| match (root, pid) {
        (Some(root), _) => Candidate::Beneath(root, path),
        (None, Some(_)) => Candidate::Beneath(Root::Host, path),
        (None, None) => Candidate::Configured(path),
    };
    let configured = |root: Option<Root>, path: PathBuf| match root {
        Some(root) => Candidate::Beneath(root, path),
        None => Candidate::Configured(path),
    };

    if let Some(build_id) = info.build_id.as_deref().filter(|id| id.len() >= 2) {
        let hex: String = build_id[1..].iter().map(|b| format!("{b:02x}")).collect();
        let rel = format!(".build-id/{:02x}/{hex}.debug", build_id[0]);
        for &root in &roots {
            for dir in dirs {
                let candidate = configured(root, dir.join(&rel));
                let Some((file, path)) = open(candidate, pid, owners, refusals) else {
                    continue;
                };
                match elf::parse(&file) {
                    Ok(found) if found.build_id.as_deref() == Some(build_id) => {
                        return Some(DebugFile { file, path });
                    }
                    Ok(_) => {
                        tracing::debug!(path = %path.display(), "debug file has another build-id; ignored");
                    }
                    Err(err) => {
                        tracing::debug!(path = %path.display(), error = %crate::ErrorChain(&err), "unreadable debug file; ignored");
                    }
                }
            }
        }
    }

    let (name, crc) = info.debuglink.as_ref()?;
    let module_dir = Path::new(module).parent().unwrap_or(Path::new("/"));
    let own_name = Path::new(module).file_name();
    for &root in &roots {
        let mut candidates = Vec::with_capacity(2 + dirs.len());
        if own_name != Some(std::ffi::OsStr::new(name)) {
            candidates.push(beneath(root, module_dir.join(name)));
        }
        candidates.push(beneath(root, module_dir.join(".debug").join(name)));
        for dir in dirs {
            candidates.push(configured(root, under(dir, module_dir).join(name)));
        }
        for candidate in candidates {
            let Some((file, path)) = open(candidate, pid, owners, refusals) else {
                continue;
            };
            match elf::file_crc32(&file) {
                Ok(actual) if actual == *crc => {}
                Ok(actual) => {
                    tracing::debug!(path = %path.display(), expected = format_args!("{crc:#x}"), actual = format_args!("{actual:#x}"), "debug link CRC mismatch; ignored");
                    continue;
                }
                Err(err) => {
                    tracing::debug!(path = %path.display(), error = %err, "unreadable debug file; ignored");
                    continue;
                }
            }
            match elf::parse(&file) {
                Ok(_) => return Some(DebugFile { file, path }),
                Err(err) => {
                    tracing::debug!(path = %path.display(), error = %crate::ErrorChain(&err), "malformed debug file; ignored");
                }
            }
        }
    }
    None
}
