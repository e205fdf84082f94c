//! Capturing what symbolizing a process needs while it is still alive, for processes that
//! may exit before their samples are symbolized (a 20 ms compiler job, a shell pipeline).
//!
//! [`ProcessCapture::take`] reads `/proc/PID/maps` and opens the file behind every
//! executable mapping through `/proc/PID/map_files` (or the process's root), keeping the
//! open files. It is cheap (one maps read and a few `open`s, about 100 µs) and `Send`, so
//! a thread woken by the kernel the moment a new process is first sampled or execs can
//! take it at once and hand it to the thread that owns the [`Symbolizer`], which adopts it
//! with [`Symbolizer::add_capture`]: the process's mappings are set from the capture and
//! each binary not already cached is registered from the captured file, so the process is
//! symbolized later exactly as if it were still alive. Captured files of binaries already
//! cached (every child of a process storm is the same binary) are closed right away, so
//! captures cost no file descriptors beyond the cache's own.
//!
//! [`Symbolizer`]: crate::Symbolizer
//! [`Symbolizer::add_capture`]: crate::Symbolizer::add_capture

use std::fs::File;

use crate::binary;
use crate::maps::{self, Backing, FileKey, Mapping, MapsError};

/// The mappings of a process and the opened files behind its executable mappings.
#[derive(Debug)]
pub struct ProcessCapture {
    pub(crate) pid: u32,
    pub(crate) mappings: Vec<Mapping>,
    pub(crate) files: Vec<(usize, FileKey, File)>,
    pub(crate) lines_skipped: u64,
}

/// Why a process could not be captured.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct CaptureError(#[from] MapsError);

impl ProcessCapture {
    /// Captures process `pid` now.
    ///
    /// # Errors
    /// When its maps cannot be read (it is already gone, or access is denied). Files that
    /// cannot be opened are left out (their frames are `module+0xoffset` later).
    pub fn take(pid: u32) -> Result<ProcessCapture, CaptureError> {
        let (mappings, lines_skipped) = maps::read(pid)?;
        let mut files: Vec<(usize, FileKey, File)> = Vec::new();
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
            match binary::open_mapped_file(pid, mapping, path, key) {
                Ok(file) => files.push((idx, *key, file)),
                Err(err) => {
                    tracing::debug!(pid, error = %crate::ErrorChain(&err), "capture: binary not opened");
                }
            }
        }
        Ok(ProcessCapture {
            pid,
            mappings,
            files,
            lines_skipped,
        })
    }

    /// The captured process.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Number of executable mappings seen (a process still in its dynamic loader has
    /// fewer than it will have).
    #[must_use]
    pub fn exec_mappings(&self) -> usize {
        self.mappings.iter().filter(|m| m.exec).count()
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
