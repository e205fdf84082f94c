//! The registry of opened binaries: each executable file is opened and parsed once per
//! [`Symbolizer`](crate::Symbolizer), however many processes map it.
//!
//! A binary is first identified by the device and inode printed in `/proc/PID/maps`
//! ([`FileKey`]). The first time a key is seen, the file is opened through
//! `/proc/PID/map_files/<start>-<end>`, which the kernel resolves to the very file that is
//! mapped, even inside another mount namespace or after the file was deleted. When that is
//! not permitted (it needs `CAP_SYS_ADMIN` or `CAP_CHECKPOINT_RESTORE`) the path is opened
//! under `/proc/PID/root`, and then only accepted if its device and inode match, so a file
//! replaced at the same path is never mistaken for the mapped one.
//!
//! The opened [`File`] is kept for the symbolizer's lifetime. That is what lets a process
//! be symbolized after it exited, and what keeps the [`FileKey`] unambiguous: an inode
//! number cannot be reused while a file is held open. blazesym is given the stable path
//! `/proc/self/fd/<fd>` of the kept file (and opens and maps it once, itself).
//!
//! Binaries are then deduplicated by GNU build-id: a file under a new key whose build-id is
//! already registered (the same library in two container images) is dropped and the
//! registered one is reused, so its symbols are parsed once. Files without a build-id are
//! known by their key only.
//!
//! Invariants: a [`BinaryId`] is an index into the registry's list and is never reused,
//! so results memoized per `(BinaryId, offset)` can never be attributed to another file;
//! each registered binary holds one open file (plus the one blazesym opens from its path).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Arc;

use crate::maps::{self, Backing, FileKey, Mapping};

/// Index of a registered binary.
pub(crate) type BinaryId = u32;

/// A binary that blazesym can symbolize.
#[derive(Debug)]
pub(crate) struct Binary {
    /// Keeps the file (and so its inode and the `fd_path`) alive.
    _file: File,
    /// `/proc/self/fd/<fd>` of `_file`: the path blazesym knows the binary by.
    pub(crate) fd_path: PathBuf,
    /// The GNU build-id, when the binary has one.
    pub(crate) build_id: Option<Arc<[u8]>>,
    /// The path under which the binary was first seen, for `Frame::module`.
    pub(crate) module: Arc<str>,
}

/// Why a binary could not be registered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// Neither `/proc/PID/map_files` nor `/proc/PID/root` gave access to the file.
    #[error("failed to open `{path}` of process {pid}")]
    Open {
        /// The process that maps the file.
        pid: u32,
        /// The path from its maps.
        path: Arc<str>,
        /// The error opening it through `/proc/PID/root`.
        #[source]
        source: io::Error,
    },
    /// The file at the mapped path is not the mapped file (it was replaced or deleted).
    #[error("`{path}` of process {pid} is no longer the file it mapped")]
    Replaced {
        /// The process that maps the file.
        pid: u32,
        /// The path from its maps.
        path: Arc<str>,
    },
    /// The file does not start with the ELF magic.
    #[error("`{path}` is not an ELF file")]
    NotElf {
        /// The path from the maps.
        path: Arc<str>,
    },
    /// The mapping is not backed by a file with a known device and inode.
    #[error("mapping is not backed by an identifiable file")]
    NoFile,
    /// The process has no vDSO that matches this symbolizer's own.
    #[error("no usable copy of the vDSO")]
    NoVdso,
}

/// What is known about the vDSO image.
#[derive(Debug)]
enum Vdso {
    /// Not looked at yet.
    Unknown,
    /// Our own vDSO, copied into a file; `len` is the size of its mapping.
    Ready { id: BinaryId, len: u64 },
    /// It could not be copied; don't try again.
    Unavailable,
}

/// All binaries opened so far, and the indexes to find them again.
#[derive(Debug)]
pub(crate) struct Binaries {
    list: Vec<Binary>,
    by_key: HashMap<FileKey, BinaryId>,
    by_build_id: HashMap<Arc<[u8]>, BinaryId>,
    vdso: Vdso,
}

/// What [`Binaries::open`] did, for the stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    /// A new binary was registered.
    New(BinaryId),
    /// The file's build-id was already registered; that binary is reused.
    Shared(BinaryId),
    /// Nothing was opened: the binary was registered before.
    Known(BinaryId),
}

impl Opened {
    /// The binary to use.
    pub(crate) fn id(self) -> BinaryId {
        match self {
            Opened::New(id) | Opened::Shared(id) | Opened::Known(id) => id,
        }
    }
}

impl Binaries {
    /// An empty registry.
    pub(crate) fn new() -> Self {
        Binaries {
            list: Vec::new(),
            by_key: HashMap::new(),
            by_build_id: HashMap::new(),
            vdso: Vdso::Unknown,
        }
    }

    /// The binary `id`, which [`Binaries::open`] or [`Binaries::lookup`] returned.
    pub(crate) fn get(&self, id: BinaryId) -> Option<&Binary> {
        self.list.get(id as usize)
    }

    /// The binary already registered for `key`.
    pub(crate) fn lookup(&self, key: &FileKey) -> Option<BinaryId> {
        self.by_key.get(key).copied()
    }

    /// Opens and registers the file backing `mapping` of process `pid`.
    ///
    /// Callers first try [`Binaries::lookup`]; this always opens the file.
    pub(crate) fn open(&mut self, pid: u32, mapping: &Mapping) -> Result<Opened, OpenError> {
        let Backing::File {
            path,
            key: Some(key),
            ..
        } = &mapping.backing
        else {
            return Err(OpenError::NoFile);
        };
        let file = open_mapped_file(pid, mapping, path, key)?;
        if !is_elf(&file) {
            return Err(OpenError::NotElf { path: path.clone() });
        }
        let opened = self.register(file, Arc::clone(path));
        self.by_key.insert(*key, opened.id());
        Ok(opened)
    }

    /// Registers an opened ELF file, or finds the binary with the same build-id.
    fn register(&mut self, file: File, module: Arc<str>) -> Opened {
        let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        let build_id = match blazesym::helper::read_elf_build_id(&fd_path) {
            Ok(build_id) => build_id.map(|id| Arc::<[u8]>::from(id.as_ref())),
            Err(err) => {
                tracing::debug!(module = %module, error = %err, "failed to read build-id");
                None
            }
        };
        if let Some(id) = build_id.as_ref().and_then(|b| self.by_build_id.get(b)) {
            return Opened::Shared(*id);
        }
        let id = BinaryId::try_from(self.list.len()).expect("fewer than 2^32 binaries");
        if let Some(build_id) = &build_id {
            self.by_build_id.insert(Arc::clone(build_id), id);
        }
        self.list.push(Binary {
            _file: file,
            fd_path,
            build_id,
            module,
        });
        Opened::New(id)
    }

    /// The binary holding a copy of the vDSO, for a `[vdso]` mapping of `len` bytes.
    ///
    /// Every process of a kind (64-bit, here) maps the same vDSO image, so our own copy
    /// stands in for all of them. A mapping of another size (a 32-bit process's vDSO) gets
    /// `None` rather than wrong names.
    pub(crate) fn vdso(&mut self, len: u64) -> Result<Opened, OpenError> {
        let mut opened = None;
        if let Vdso::Unknown = self.vdso {
            self.vdso = match copy_own_vdso() {
                Ok((file, vdso_len)) => {
                    let registered = self.register(file, "[vdso]".into());
                    opened = Some(registered);
                    Vdso::Ready {
                        id: registered.id(),
                        len: vdso_len,
                    }
                }
                Err(err) => {
                    tracing::debug!(error = %err, "failed to copy the vDSO; its frames stay unnamed");
                    Vdso::Unavailable
                }
            };
        }
        match self.vdso {
            Vdso::Ready { id, len: vdso_len } if vdso_len == len => {
                Ok(opened.unwrap_or(Opened::Known(id)))
            }
            _ => Err(OpenError::NoVdso),
        }
    }
}

/// Opens the file behind `mapping`: through `map_files` if allowed, else through the
/// process's root directory, checking that the latter is still the mapped file.
fn open_mapped_file(
    pid: u32,
    mapping: &Mapping,
    path: &Arc<str>,
    key: &FileKey,
) -> Result<File, OpenError> {
    let map_file = format!(
        "/proc/{pid}/map_files/{:x}-{:x}",
        mapping.start, mapping.end
    );
    match File::open(&map_file) {
        Ok(file) => return Ok(file),
        Err(err) => {
            tracing::trace!(path = %map_file, error = %err, "map_files not usable; trying the process root");
        }
    }
    let rooted = format!("/proc/{pid}/root{path}");
    let file = File::open(&rooted).map_err(|source| OpenError::Open {
        pid,
        path: path.clone(),
        source,
    })?;
    let same = file.metadata().is_ok_and(|meta| {
        let dev = meta.dev();
        meta.ino() == key.inode && libc::major(dev) == key.major && libc::minor(dev) == key.minor
    });
    if same {
        Ok(file)
    } else {
        Err(OpenError::Replaced {
            pid,
            path: path.clone(),
        })
    }
}

/// Whether `file` starts with the ELF magic.
fn is_elf(file: &File) -> bool {
    let mut magic = [0; 4];
    file.read_exact_at(&mut magic, 0).is_ok() && magic == *b"\x7fELF"
}

/// Copies this process's vDSO into an unnamed temporary file; returns it and its size.
fn copy_own_vdso() -> io::Result<(File, u64)> {
    let text = fs::read_to_string("/proc/self/maps")?;
    let (mappings, _) = maps::parse(&text);
    let vdso = mappings
        .iter()
        .find(|m| matches!(&m.backing, Backing::Special(name) if &**name == "[vdso]"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no `[vdso]` mapping"))?;
    let len = vdso.end - vdso.start;
    let mut image = vec![0; usize::try_from(len).map_err(io::Error::other)?];
    // Reading our own memory through /proc/self/mem needs no privileges and no unsafe code.
    File::open("/proc/self/mem")?.read_exact_at(&mut image, vdso.start)?;
    let file = tempfile::tempfile()?;
    file.write_all_at(&image, 0)?;
    Ok((file, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_exe_mapping() -> Mapping {
        let (maps, _) = maps::read(std::process::id()).expect("read own maps");
        let exe = fs::read_link("/proc/self/exe").expect("read /proc/self/exe");
        let exe = exe.to_string_lossy().into_owned();
        maps.into_iter()
            .find(|m| m.exec && matches!(&m.backing, Backing::File { path, .. } if **path == *exe))
            .expect("an executable mapping of the test binary")
    }

    #[test]
    fn a_binary_is_registered_once_per_build_id() {
        let mapping = own_exe_mapping();
        let mut binaries = Binaries::new();
        let first = binaries
            .open(std::process::id(), &mapping)
            .expect("open own binary");
        assert!(matches!(first, Opened::New(0)));
        let Backing::File { key: Some(key), .. } = &mapping.backing else {
            panic!("mapping has no file key");
        };
        assert_eq!(binaries.lookup(key), Some(0));
        // Opening it again (as if under another key) finds it by build-id; Rust test
        // binaries are linked with a build-id on Linux.
        let binary = binaries.get(0).expect("binary 0");
        assert!(binary.build_id.is_some(), "the test binary has no build-id");
        let again = binaries
            .open(std::process::id(), &mapping)
            .expect("open again");
        assert_eq!(again, Opened::Shared(0));
        assert_eq!(binaries.list.len(), 1);
    }

    #[test]
    fn a_replaced_file_is_refused() {
        let mut mapping = own_exe_mapping();
        if let Backing::File { key: Some(key), .. } = &mut mapping.backing {
            key.inode ^= 1;
        }
        // map_files would still open the right file, so make sure only the rooted path
        // can be tried: there is no mapping starting at 0.
        mapping.start = 0;
        let Backing::File {
            path,
            key: Some(key),
            ..
        } = &mapping.backing
        else {
            panic!("mapping has no file key");
        };
        let err = open_mapped_file(std::process::id(), &mapping, path, key)
            .expect_err("a mismatched inode must be refused");
        assert!(matches!(err, OpenError::Replaced { .. }), "{err}");
    }

    #[test]
    fn the_vdso_copy_is_an_elf_file_with_a_build_id() {
        let mut binaries = Binaries::new();
        let (file, len) = copy_own_vdso().expect("copy own vDSO");
        assert!(is_elf(&file));
        let opened = binaries.vdso(len).expect("vDSO binary");
        let binary = binaries.get(opened.id()).expect("registered");
        assert_eq!(&*binary.module, "[vdso]");
        assert!(binaries.vdso(len + 4096).is_err());
    }
}
