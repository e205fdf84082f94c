//! The on-disk cache of debug files fetched from debuginfod servers, and of their answers
//! that a build-id is unknown.
//!
//! Layout, under the cache directory:
//!
//! - `.build-id/xx/rest.debug`: a fetched debug file, named like Debian's `-dbgsym`
//!   packages name theirs, so the directory also works as a `--debug-dir` (for
//!   `ember export --resymbolize`, say);
//! - `.build-id/xx/rest.missing`: an empty file whose modification time is when every
//!   server answered 404; it counts until [`DiskCache::negative_ttl`] has passed;
//! - `tmp/`: downloads in progress, renamed into place once complete and verified.
//!
//! Every entry is checked when it is read: a debug file that is not ELF, or whose build-id
//! is not the one its name says (a truncated write, a disk error, someone's edit), is
//! removed and treated as absent, never used. A file is only ever stored after the same
//! check ([`DiskCache::insert`]), so a server answering with the wrong file is refused.
//!
//! The debug files together stay within [`DiskCache::max_bytes`]: after each insert the
//! least recently used are deleted (use is the modification time, refreshed at every hit),
//! the one just inserted always kept.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use unwinder::elf;

use super::hex;

/// What the cache knows of a build-id.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cached {
    /// Its debug file, verified.
    Hit(PathBuf),
    /// Every server said it has none, less than the negative TTL ago.
    Missing,
    /// Nothing (or only an expired or corrupt entry, now removed).
    Unknown,
}

/// Why a downloaded file was not stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InsertError {
    /// The file is not ELF.
    #[error("not an ELF file")]
    NotElf(#[source] elf::ElfError),
    /// The file's build-id is another.
    #[error("its build-id is `{found}`, not the one asked for")]
    BuildIdMismatch {
        /// The build-id the file has (hex), or `none`.
        found: String,
    },
    /// Writing the cache failed.
    #[error("cannot write the cache")]
    Io(#[from] io::Error),
}

/// The debug file cache in one directory.
#[derive(Clone, Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    /// The bound on the debug files' total size.
    pub(crate) max_bytes: u64,
    /// How long a 404 is believed.
    pub(crate) negative_ttl: Duration,
}

impl DiskCache {
    /// The cache in `dir`, created if needed.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub(crate) fn open(dir: &Path, max_bytes: u64, negative_ttl: Duration) -> io::Result<Self> {
        fs::create_dir_all(dir.join(".build-id"))?;
        fs::create_dir_all(dir.join("tmp"))?;
        let cache = DiskCache {
            dir: dir.to_owned(),
            max_bytes,
            negative_ttl,
        };
        cache.remove_stale_downloads();
        Ok(cache)
    }

    fn entry(&self, build_id: &[u8], suffix: &str) -> PathBuf {
        let (first, rest) = build_id.split_at(1.min(build_id.len()));
        self.dir
            .join(".build-id")
            .join(hex(first))
            .join(format!("{}.{suffix}", hex(rest)))
    }

    /// Where the debug file of `build_id` is kept.
    pub(crate) fn debug_path(&self, build_id: &[u8]) -> PathBuf {
        self.entry(build_id, "debug")
    }

    fn missing_path(&self, build_id: &[u8]) -> PathBuf {
        self.entry(build_id, "missing")
    }

    /// What is cached for `build_id`; a hit is marked recently used.
    pub(crate) fn lookup(&self, build_id: &[u8]) -> Cached {
        let path = self.debug_path(build_id);
        match File::open(&path) {
            Ok(file) => match check(&file, build_id) {
                Ok(()) => {
                    let _ = file.set_modified(SystemTime::now());
                    return Cached::Hit(path);
                }
                Err(err) => {
                    tracing::debug!(path = %path.display(), error = %crate::ErrorChain(&err), "corrupt debuginfod cache entry removed");
                    let _ = fs::remove_file(&path);
                }
            },
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::debug!(path = %path.display(), error = %err, "unreadable debuginfod cache entry");
            }
        }
        let missing = self.missing_path(build_id);
        let Ok(meta) = fs::metadata(&missing) else {
            return Cached::Unknown;
        };
        let age = meta
            .modified()
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok());
        match age {
            Some(age) if age < self.negative_ttl => Cached::Missing,
            // Expired, or dated in the future (a clock step): asked again.
            _ => {
                let _ = fs::remove_file(&missing);
                Cached::Unknown
            }
        }
    }

    /// A new file to download into, deleted unless [`DiskCache::insert`]ed.
    ///
    /// # Errors
    /// When it cannot be created.
    pub(crate) fn download(&self) -> io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix("fetch-")
            .tempfile_in(self.dir.join("tmp"))
    }

    /// Stores the download `file` as the debug file of `build_id` if it is one, then
    /// evicts least recently used files over the bound. Returns where it is.
    ///
    /// # Errors
    /// When the file is not ELF, has another build-id, or cannot be moved into place.
    pub(crate) fn insert(
        &self,
        build_id: &[u8],
        file: tempfile::NamedTempFile,
    ) -> Result<PathBuf, InsertError> {
        check(file.as_file(), build_id)?;
        let path = self.debug_path(build_id);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        file.persist(&path)
            .map_err(|err| InsertError::Io(err.error))?;
        let _ = fs::remove_file(self.missing_path(build_id));
        self.evict(&path);
        Ok(path)
    }

    /// Remembers that no server has `build_id`.
    ///
    /// # Errors
    /// When the marker cannot be written.
    pub(crate) fn insert_missing(&self, build_id: &[u8]) -> io::Result<()> {
        let path = self.missing_path(build_id);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        File::create(&path)?.set_modified(SystemTime::now())
    }

    /// The cached debug files with their sizes and last use.
    fn files(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let mut out = Vec::new();
        let Ok(dirs) = fs::read_dir(self.dir.join(".build-id")) else {
            return out;
        };
        for dir in dirs.flatten() {
            let Ok(entries) = fs::read_dir(dir.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_none_or(|e| e != "debug") {
                    continue;
                }
                if let Ok(meta) = entry.metadata()
                    && meta.is_file()
                {
                    let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    out.push((path, meta.len(), used));
                }
            }
        }
        out
    }

    /// The debug files' total size, bytes.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.files().iter().map(|f| f.1).sum()
    }

    /// Deletes least recently used debug files, never `keep`, until within the bound.
    fn evict(&self, keep: &Path) {
        let mut files = self.files();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort_by_key(|f| f.2);
        for (path, len, _) in files {
            if total <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            if fs::remove_file(&path).is_ok() {
                tracing::debug!(path = %path.display(), bytes = len, "debuginfod cache entry evicted");
                total = total.saturating_sub(len);
            }
        }
    }

    /// Removes downloads left behind by a process that died mid-fetch (an hour old: a
    /// download of another process sharing the cache may be in progress).
    fn remove_stale_downloads(&self) {
        let Ok(entries) = fs::read_dir(self.dir.join("tmp")) else {
            return;
        };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Whether `file` is an ELF file with build-id `build_id`.
fn check(file: &File, build_id: &[u8]) -> Result<(), InsertError> {
    let info = elf::parse(file).map_err(InsertError::NotElf)?;
    if info.build_id.as_deref() == Some(build_id) {
        Ok(())
    } else {
        Err(InsertError::BuildIdMismatch {
            found: info.build_id.as_deref().map_or_else(|| "none".into(), hex),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// This test binary: an ELF file with a build-id, and that build-id.
    fn own_elf() -> (Vec<u8>, Vec<u8>) {
        let bytes = fs::read("/proc/self/exe").expect("read own exe");
        let info = elf::parse(&File::open("/proc/self/exe").expect("open own exe"))
            .expect("parse own exe");
        (
            bytes,
            info.build_id.expect("the test binary has a build-id"),
        )
    }

    fn download(cache: &DiskCache, bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = cache.download().expect("download file");
        file.write_all(bytes).expect("write download");
        file
    }

    #[test]
    fn a_verified_file_is_a_hit_and_another_build_id_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = DiskCache::open(dir.path(), u64::MAX, Duration::from_secs(600)).expect("open");
        let (bytes, build_id) = own_elf();
        assert_eq!(cache.lookup(&build_id), Cached::Unknown);

        // The right file under another build-id: refused, nothing stored.
        let mut other = build_id.clone();
        other[0] ^= 0xff;
        let err = cache
            .insert(&other, download(&cache, &bytes))
            .expect_err("mismatch refused");
        assert!(matches!(err, InsertError::BuildIdMismatch { .. }), "{err}");
        assert_eq!(cache.lookup(&other), Cached::Unknown);
        // Not ELF at all: refused.
        let err = cache
            .insert(&build_id, download(&cache, b"<html>not found</html>"))
            .expect_err("not ELF refused");
        assert!(matches!(err, InsertError::NotElf(_)), "{err}");

        let path = cache
            .insert(&build_id, download(&cache, &bytes))
            .expect("stored");
        assert!(path.ends_with(format!(
            ".build-id/{}/{}.debug",
            hex(&build_id[..1]),
            hex(&build_id[1..])
        )));
        assert_eq!(cache.lookup(&build_id), Cached::Hit(path));
        // Nothing left behind in tmp/.
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
            0
        );
    }

    #[test]
    fn a_corrupt_cache_file_is_removed_and_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = DiskCache::open(dir.path(), u64::MAX, Duration::from_secs(600)).expect("open");
        let (bytes, build_id) = own_elf();
        let path = cache
            .insert(&build_id, download(&cache, &bytes))
            .expect("stored");
        // Truncated on disk (a crash mid-write by another tool, a full disk).
        fs::write(&path, &bytes[..64]).expect("truncate");
        assert_eq!(cache.lookup(&build_id), Cached::Unknown);
        assert!(!path.exists(), "the corrupt entry is removed");
        // Garbage: the same.
        fs::write(&path, b"garbage").expect("garbage");
        assert_eq!(cache.lookup(&build_id), Cached::Unknown);
    }

    #[test]
    fn negative_entries_count_until_they_expire_and_a_fetch_replaces_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cache =
            DiskCache::open(dir.path(), u64::MAX, Duration::from_secs(600)).expect("open");
        let (bytes, build_id) = own_elf();
        cache.insert_missing(&build_id).expect("negative entry");
        assert_eq!(cache.lookup(&build_id), Cached::Missing);
        // Older than the TTL: asked again, and the marker is gone.
        let marker = cache.missing_path(&build_id);
        File::options()
            .write(true)
            .open(&marker)
            .expect("open marker")
            .set_modified(SystemTime::now() - Duration::from_secs(601))
            .expect("age marker");
        assert_eq!(cache.lookup(&build_id), Cached::Unknown);
        assert!(!marker.exists());
        // A zero TTL never believes a 404.
        cache.negative_ttl = Duration::ZERO;
        cache.insert_missing(&build_id).expect("negative entry");
        assert_eq!(cache.lookup(&build_id), Cached::Unknown);
        // A file that arrives later wins over an old 404.
        cache.negative_ttl = Duration::from_secs(600);
        cache.insert_missing(&build_id).expect("negative entry");
        let path = cache
            .insert(&build_id, download(&cache, &bytes))
            .expect("stored");
        assert_eq!(cache.lookup(&build_id), Cached::Hit(path));
        assert!(!marker.exists());
    }

    /// An ELF file with build-id `id`: the test binary's own bytes with its build-id note
    /// overwritten, so several distinct valid entries can be made.
    fn elf_with_build_id(bytes: &[u8], own: &[u8], id: &[u8]) -> Vec<u8> {
        let at = bytes
            .windows(own.len())
            .position(|w| w == own)
            .expect("build-id bytes in the file");
        let mut out = bytes.to_vec();
        out[at..at + id.len()].copy_from_slice(id);
        out
    }

    #[test]
    fn the_size_bound_evicts_the_least_recently_used_and_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (bytes, own) = own_elf();
        let len = bytes.len() as u64;
        // Room for two files, not three.
        let cache =
            DiskCache::open(dir.path(), 2 * len + len / 2, Duration::from_secs(600)).expect("open");
        let ids: Vec<Vec<u8>> = (1..=3_u8)
            .map(|n| {
                let mut id = own.clone();
                id[0] = n;
                id
            })
            .collect();
        let now = SystemTime::now();
        let mut paths = Vec::new();
        for (n, id) in ids.iter().take(2).enumerate() {
            let path = cache
                .insert(id, download(&cache, &elf_with_build_id(&bytes, &own, id)))
                .expect("stored");
            // Distinct last uses: the first is the oldest.
            File::options()
                .write(true)
                .open(&path)
                .expect("open")
                .set_modified(now - Duration::from_secs(100 - 10 * n as u64))
                .expect("date");
            paths.push(path);
        }
        // The first is used again: now the second is the least recently used.
        assert!(matches!(cache.lookup(&ids[0]), Cached::Hit(_)));
        let third = cache
            .insert(
                &ids[2],
                download(&cache, &elf_with_build_id(&bytes, &own, &ids[2])),
            )
            .expect("stored");
        assert!(paths[0].exists(), "recently used, kept");
        assert!(!paths[1].exists(), "least recently used, evicted");
        assert!(third.exists(), "the newest is always kept");
        assert!(cache.bytes() <= cache.max_bytes);
        assert_eq!(cache.lookup(&ids[1]), Cached::Unknown);

        // A bound smaller than one file keeps just the newest.
        let tiny = DiskCache::open(dir.path(), 1, Duration::from_secs(600)).expect("open");
        let path = tiny.insert(&own, download(&tiny, &bytes)).expect("stored");
        assert_eq!(tiny.bytes(), len);
        assert!(path.exists());
    }
}
