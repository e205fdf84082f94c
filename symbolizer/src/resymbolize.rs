//! Naming a stored profile's frames again once debug information has appeared.
//!
//! Frames that could not be named when they were sampled keep their normalized address,
//! [`Location::File`] with the binary's build-id and the file offset. A [`Resymbolizer`]
//! looks each such build-id up in the debug directories (`<dir>/.build-id/xx/rest.debug`,
//! the layout of Debian's `-dbgsym` packages), and renames the frame from that debug file,
//! expanding inlined functions into frames of their own exactly as live symbolization
//! does. Named frames, kernel frames and frames without a build-id are left alone.
//!
//! The stored offset is a file offset of the *original* binary, which a debug file made by
//! `objcopy --only-keep-debug` no longer records (it rewrites segment offsets); when the
//! original binary is not at hand, its segment layout is reconstructed from the debug
//! file's program headers by the linkers' layout rule (see `elf.rs`). Pass the binaries
//! themselves with [`Resymbolizer::add_binary`] to use their exact layout.
//!
//! ```no_run
//! # fn demo(stored: &profiler_model::Profile) {
//! let mut resym = symbolizer::Resymbolizer::new(&symbolizer::Config::default());
//! let renamed = resym.resymbolize(stored);
//! println!("{} frames renamed", resym.frames_renamed());
//! # let _ = renamed;
//! # }
//! ```
//!
//! [`Location::File`]: profiler_model::Location::File

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer as Blaze};
use profiler_model::{Frame, FrameId, FrameKind, Location, Profile};
use unwinder::elf::{self, ElfFile};

use crate::config::Config;
use crate::debuginfod::{Debuginfod, DebuginfodConfig, WaitReport};

/// A debug file found for one build-id, with the original binary's segment layout.
struct DebugEntry {
    _file: File,
    fd_path: PathBuf,
    layout: ElfFile,
}

/// Renames unnamed frames of profiles from debug files found by build-id.
pub struct Resymbolizer {
    debug_dirs: Vec<PathBuf>,
    blaze: Blaze,
    entries: HashMap<Arc<[u8]>, Option<DebugEntry>>,
    layouts: HashMap<Vec<u8>, ElfFile>,
    renamed: u64,
}

impl std::fmt::Debug for Resymbolizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resymbolizer")
            .field("debug_dirs", &self.debug_dirs)
            .field("renamed", &self.renamed)
            .finish_non_exhaustive()
    }
}

impl Resymbolizer {
    /// A resymbolizer searching `config.debug_dirs`, naming as `config` says (inlined
    /// functions, demangling, source lines).
    #[must_use]
    pub fn new(config: &Config) -> Resymbolizer {
        Resymbolizer {
            debug_dirs: config.debug_dirs.clone(),
            blaze: Blaze::builder()
                .enable_auto_reload(false)
                .enable_code_info(config.code_info)
                .enable_inlined_fns(config.code_info && config.inlined_fns)
                .enable_demangling(config.demangle)
                .set_debug_dirs(Some::<&[PathBuf]>(&[]))
                .build(),
            entries: HashMap::new(),
            layouts: HashMap::new(),
            renamed: 0,
        }
    }

    /// Uses the exact segment layout of the binary at `path` for its build-id.
    ///
    /// # Errors
    /// When the file cannot be read as ELF or has no build-id.
    pub fn add_binary(&mut self, path: &Path) -> std::io::Result<()> {
        let file = File::open(path)?;
        let info = elf::parse(&file).map_err(std::io::Error::other)?;
        let build_id = info.build_id.clone().ok_or_else(|| {
            std::io::Error::other(format!("`{}` has no build-id", path.display()))
        })?;
        self.layouts.insert(build_id, info);
        Ok(())
    }

    /// Frames renamed so far (counted once per distinct frame per profile).
    #[must_use]
    pub fn frames_renamed(&self) -> u64 {
        self.renamed
    }

    /// Fetches from the debuginfod servers of `config` the debug files of `profile`'s
    /// unnamed frames that no debug directory holds, waiting at most `bound` for them
    /// (files in the disk cache arrive at once, build-ids a server said it lacks within
    /// the negative TTL are not asked again); the next [`Resymbolizer::resymbolize`] uses
    /// those that arrived. Each file's build-id is verified before it is used, as for live
    /// symbolization.
    ///
    /// # Errors
    /// When the cache directory cannot be created.
    pub fn fetch_missing(
        &mut self,
        profile: &Profile,
        config: &DebuginfodConfig,
        bound: Duration,
    ) -> std::io::Result<WaitReport> {
        let mut client = Debuginfod::new(config, crate::debuginfod::http_fetcher)?;
        let mut asked = false;
        for frame in profile.frames() {
            let Some(build_id) = unnamed_build_id(frame) else {
                continue;
            };
            if !self.entries.contains_key(build_id) {
                let entry = self.find(build_id);
                self.entries.insert(Arc::clone(build_id), entry);
            }
            if matches!(self.entries.get(build_id), Some(Some(_))) {
                continue;
            }
            asked = true;
            if let Some(path) = client.request(build_id) {
                self.insert_fetched(build_id, &path, None);
            }
        }
        if !asked {
            return Ok(WaitReport::default());
        }
        let (report, arrived) = client.wait(bound);
        for (build_id, path) in arrived {
            self.insert_fetched(&build_id, &path, None);
        }
        Ok(report)
    }

    /// Uses the fetched (verified) debug file `path` for `build_id`, with the original
    /// binary's segment layout: `exact` when the caller has it, else the one
    /// [`Resymbolizer::add_binary`] gave, else the layout reconstructed from the debug file.
    pub(crate) fn insert_fetched(
        &mut self,
        build_id: &Arc<[u8]>,
        path: &Path,
        exact: Option<&ElfFile>,
    ) {
        let Ok(file) = File::open(path) else {
            return;
        };
        let layout = match exact.or_else(|| self.layouts.get(&build_id[..])) {
            Some(exact) => exact.clone(),
            None => match elf::parse(&file) {
                Ok(debug) => debug.reconstructed_layout(),
                Err(err) => {
                    tracing::debug!(path = %path.display(), error = %crate::ErrorChain(&err), "unreadable fetched debug file");
                    return;
                }
            },
        };
        let entry = DebugEntry {
            fd_path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
            _file: file,
            layout,
        };
        self.entries.insert(Arc::clone(build_id), Some(entry));
    }

    /// A copy of `profile` in which every unnamed user frame with a build-id whose debug
    /// file can now be found is named; everything else is copied unchanged.
    pub fn resymbolize(&mut self, profile: &Profile) -> Profile {
        let mut replacements: HashMap<FrameId, Vec<Frame>> = HashMap::new();
        for (id, frame) in profile.frames().iter().enumerate() {
            if let Some(frames) = self.rename(frame) {
                self.renamed += 1;
                replacements.insert(FrameId::try_from(id).unwrap_or(FrameId::MAX), frames);
            }
        }
        let mut out = Profile::new(profile.meta.clone());
        for stack in profile.stacks() {
            let mut frames = Vec::with_capacity(stack.frames.len());
            for &id in stack.frames {
                match replacements.get(&id) {
                    Some(named) => frames.extend(named.iter().cloned()),
                    None => frames.push(profile.frame(id).clone()),
                }
            }
            out.add(stack.labels, &frames, stack.count);
        }
        out
    }

    fn rename(&mut self, frame: &Frame) -> Option<Vec<Frame>> {
        let build_id = unnamed_build_id(frame)?;
        let Location::File { offset, .. } = &frame.location else {
            return None;
        };
        if !self.entries.contains_key(build_id) {
            let entry = self.find(build_id);
            self.entries.insert(Arc::clone(build_id), entry);
        }
        let entry = self.entries.get(build_id)?.as_ref()?;
        let vaddr = entry.layout.vaddr_of(*offset)?;
        let mut elf = Elf::new(entry.fd_path.clone());
        elf.debug_syms = true;
        match self
            .blaze
            .symbolize_single(&Source::Elf(elf), Input::VirtOffset(vaddr))
        {
            Ok(Symbolized::Sym(sym)) if !sym.name.is_empty() => {
                let module = frame.module.clone().unwrap_or_else(crate::unknown_name);
                Some(crate::symbolizer::frames_from_sym(
                    &sym.name,
                    sym.code_info.as_deref(),
                    &sym.inlined,
                    &module,
                    &frame.location,
                    &mut |n| n.as_ref().into(),
                    &mut |info| info.to_path().to_string_lossy().into(),
                ))
            }
            Ok(_) => None,
            Err(err) => {
                tracing::debug!(error = %err, "re-symbolization failed");
                None
            }
        }
    }

    fn find(&self, build_id: &[u8]) -> Option<DebugEntry> {
        let info = ElfFile {
            build_id: Some(build_id.to_vec()),
            ..ElfFile::default()
        };
        let found = crate::debug::find(
            &info,
            "/",
            None,
            &self.debug_dirs,
            &mut crate::untrusted::RefusalLog::default(),
        )?;
        let layout = match self.layouts.get(build_id) {
            Some(exact) => exact.clone(),
            None => match elf::parse(&found.file) {
                Ok(debug)
                    if debug.loads.iter().any(|l| l.filesz > 0 && l.align > 1)
                        && debug.has_symtab()
                        && debug.section(".text").is_some() =>
                {
                    debug
                }
                Ok(debug) => debug.reconstructed_layout(),
                Err(err) => {
                    tracing::debug!(path = %found.path.display(), error = %crate::ErrorChain(&err), "unreadable debug file");
                    return None;
                }
            },
        };
        Some(DebugEntry {
            fd_path: PathBuf::from(format!("/proc/self/fd/{}", found.file.as_raw_fd())),
            _file: found.file,
            layout,
        })
    }
}

/// The build-id of an unnamed user frame stored with its file location: what a debug file
/// could name.
fn unnamed_build_id(frame: &Frame) -> Option<&Arc<[u8]>> {
    if frame.kind != FrameKind::User || !frame.is_unnamed() {
        return None;
    }
    match &frame.location {
        Location::File {
            build_id: Some(build_id),
            ..
        } => Some(build_id),
        _ => None,
    }
}
