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
//! (`/proc/PID/root`, so a container's own debug files are used) and then on the host.
//!
//! [`Config::debug_dirs`]: crate::Config::debug_dirs

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::elf::{self, ElfInfo};

/// A debug file that was found and verified.
#[derive(Debug)]
pub(crate) struct DebugFile {
    pub(crate) file: File,
    /// Where it was found, for logs.
    pub(crate) path: PathBuf,
}

/// Joins an absolute `path` under `root` (`root` = `""` for the host).
fn rooted(root: &Path, path: &Path) -> PathBuf {
    let rel = path.strip_prefix("/").unwrap_or(path);
    if root.as_os_str().is_empty() {
        Path::new("/").join(rel)
    } else {
        root.join(rel)
    }
}

/// Looks for the debug file of a binary with headers `info`, mapped at `module` (the path
/// the process sees) by a process whose root is `root` (`None`: the host's).
pub(crate) fn find(
    info: &ElfInfo,
    module: &str,
    root: Option<&Path>,
    dirs: &[PathBuf],
) -> Option<DebugFile> {
    let mut roots: Vec<&Path> = Vec::with_capacity(2);
    if let Some(root) = root {
        roots.push(root);
    }
    roots.push(Path::new(""));

    if let Some(build_id) = info.build_id.as_deref().filter(|id| id.len() >= 2) {
        let hex: String = build_id[1..].iter().map(|b| format!("{b:02x}")).collect();
        let rel = format!(".build-id/{:02x}/{hex}.debug", build_id[0]);
        for root in &roots {
            for dir in dirs {
                let path = rooted(root, &dir.join(&rel));
                let Ok(file) = File::open(&path) else {
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
    for root in &roots {
        let mut candidates = Vec::with_capacity(2 + dirs.len());
        if own_name != Some(std::ffi::OsStr::new(name)) {
            candidates.push(rooted(root, &module_dir.join(name)));
        }
        candidates.push(rooted(root, &module_dir.join(".debug").join(name)));
        for dir in dirs {
            let under = module_dir.strip_prefix("/").unwrap_or(module_dir);
            candidates.push(rooted(root, &dir.join(under).join(name)));
        }
        for path in candidates {
            let Ok(file) = File::open(&path) else {
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
