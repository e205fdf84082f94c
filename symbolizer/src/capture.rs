//! Capturing what symbolizing a process needs while it is still alive, for processes that
//! may exit before their samples are symbolized (a 20 ms compiler job, a shell pipeline).
//!
//! [`ProcessCapture::take`] reads the process's executable mappings (asked of the kernel
//! with `PROCMAP_QUERY`, or from `/proc/PID/maps` on an older kernel) and opens the file
//! behind every one through `/proc/PID/map_files` (or the process's root), keeping the
//! open files. Code is all its stacks are named from: an address elsewhere is not named
//! anyway. It is cheap (one maps read and a few `open`s, about 100 µs) and `Send`, so
//! a thread woken by the kernel the moment a new process is first sampled or execs can
//! take it at once and hand it to the thread that owns the [`Symbolizer`], which adopts it
//! with [`Symbolizer::add_capture`]: the process's mappings are set from the capture and
//! each binary not already cached is registered from the captured file, so the process is
//! symbolized later exactly as if it were still alive. Captured files of binaries already
//! cached (every child of a process storm is the same binary) are closed right away, so
//! captures cost no file descriptors beyond the cache's own and the capture thread's
//! [`CapturedFiles`].
//!
//! A capturing thread passes its [`CapturedFiles`] to [`ProcessCapture::take_with`]: a
//! file it opened for one process is shared with the next that maps the same device and
//! inode instead of opened again. On a busy node that matters: every Chromium process maps
//! dozens of files, and opening each through `map_files` for each new process was a sixth
//! of the agent's CPU.
//!
//! [`Symbolizer`]: crate::Symbolizer
//! [`Symbolizer::add_capture`]: crate::Symbolizer::add_capture

use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use crate::binary;
use crate::maps::{self, Backing, FileKey, Mapping, MapsError};

/// The mappings of a process and the opened files behind its executable mappings.
#[derive(Debug)]
pub struct ProcessCapture {
    pub(crate) pid: u32,
    pub(crate) mappings: Vec<Mapping>,
    pub(crate) files: Vec<(usize, FileKey, Arc<File>)>,
    pub(crate) lines_skipped: u64,
}

/// Why a process could not be captured.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct CaptureError(#[from] MapsError);

/// Files a capturing thread opened recently, by device and inode, shared with the next
/// captures of processes that map them.
///
/// An inode cannot be reused while a file of it is held open, so a key names the same
/// file as long as it is here. Bounded: at most [`CapturedFiles::MOST`] files, and none
/// held longer than [`CapturedFiles::HOLD`] (the set is emptied then), so a binary
/// deleted meanwhile is not kept on disk by the capture thread for long.
#[derive(Debug)]
pub struct CapturedFiles {
    files: HashMap<FileKey, Arc<File>>,
    since: Instant,
}

impl Default for CapturedFiles {
    fn default() -> Self {
        CapturedFiles {
            files: HashMap::new(),
            since: Instant::now(),
        }
    }
}

impl CapturedFiles {
    /// The most files held: file descriptors on top of the symbolizer cache's, under a
    /// service's default soft limit of 1,024 (a Chromium process maps about 40 files).
    pub const MOST: usize = 128;
    /// The longest a file is held.
    pub const HOLD: Duration = Duration::from_secs(30);

    /// Empties the set when it is full or old.
    fn expire(&mut self) {
        if self.files.len() >= Self::MOST || self.since.elapsed() >= Self::HOLD {
            self.files.clear();
            self.since = Instant::now();
        }
    }

    /// Number of files held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl ProcessCapture {
    /// Captures process `pid` now.
    ///
    /// # Errors
    /// When its maps cannot be read (it is already gone, or access is denied). Files that
    /// cannot be opened are left out (their frames are `module+0xoffset` later).
    pub fn take(pid: u32) -> Result<ProcessCapture, CaptureError> {
        Self::take_with(pid, &mut CapturedFiles::default()).map(|(capture, _)| capture)
    }

    /// [`ProcessCapture::take`], sharing the files `recent` holds and adding those it
    /// opens; also returns the text of the maps read, so that another reader of the
    /// process's mappings (the unwinder) need not read them again.
    ///
    /// # Errors
    /// As [`ProcessCapture::take`].
    pub fn take_with(
        pid: u32,
        recent: &mut CapturedFiles,
    ) -> Result<(ProcessCapture, String), CaptureError> {
        recent.expire();
        let (mappings, lines_skipped, text) = maps::read_exec_with_text(pid)?;
        let mut files: Vec<(usize, FileKey, Arc<File>)> = Vec::new();
        for (idx, mapping) in mappings.iter().enumerate() {
            let Backing::File {
                path,
                key: Some(key),
                ..
            } = &mapping.backing
            else {
                continue;
            };
            if !mapping.exec || files.iter().any(|(_, k, _)| k == key) {
                continue;
            }
            if let Some(file) = recent.files.get(key) {
                files.push((idx, *key, Arc::clone(file)));
                continue;
            }
            match binary::open_mapped_file(pid, mapping, path, key) {
                Ok(file) => {
                    let file = Arc::new(file);
                    recent.files.insert(*key, Arc::clone(&file));
                    files.push((idx, *key, file));
                }
                Err(err) => {
                    tracing::debug!(pid, error = %crate::ErrorChain(&err), "capture: binary not opened");
                }
            }
        }
        Ok((
            ProcessCapture {
                pid,
                mappings,
                files,
                lines_skipped,
            },
            text,
        ))
    }

    /// The captured process.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Number of executable mappings seen (a process still in its dynamic loader has
    /// fewer than it will have), the kernel's `[vsyscall]` page left out: it is not a
    /// mapping of the process (`PROCMAP_QUERY` does not report it), only shown in maps.
    #[must_use]
    pub fn exec_mappings(&self) -> usize {
        self.mappings
            .iter()
            .filter(|m| m.exec && !m.is_vsyscall())
            .count()
    }

    /// The paths of the files the process maps, as it sees them (duplicates included).
    pub fn mapped_paths(&self) -> impl Iterator<Item = &str> {
        self.mappings.iter().filter_map(|m| match &m.backing {
            Backing::File { path, .. } => Some(&**path),
            _ => None,
        })
    }

    /// Number of files held open by the capture.
    #[must_use]
    pub fn open_files(&self) -> usize {
        self.files.len()
    }
}
