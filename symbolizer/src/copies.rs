//! Files kept between runs to save later runs work, in [`Config::copy_dir`]: the kernel's
//! symbols for this boot (`kernel/`, see `kernel_copy.rs`) and decompressed copies of
//! compressed debug files (`debug/`).
//!
//! Distribution debug files are zlib-compressed (Debian's `-dbgsym` and `libc6-dbg`):
//! blazesym inflates every DWARF section of one before the first lookup in it, which took a
//! 5 s `record --all` about 0.035 s of CPU for libc alone, every run. A copy written with
//! the sections decompressed (`unwinder::elf::write_decompressed`) is mapped instead. It is
//! named by build-id and by the file it copies (device, inode, size, mtime), and used only
//! if its own build-id is that one. The copies together are kept under
//! [`DEBUG_COPIES_BYTES`]: past it the least recently used are deleted, and a file that
//! would decompress to more than that on its own is not copied.
//!
//! Whoever can write these directories can choose the names Ember reports, so they are
//! made mode 0700, and a directory or file that is not the running user's alone is not used.
//!
//! [`Config::copy_dir`]: crate::Config::copy_dir

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::SystemTime;

use unwinder::elf;

/// The kernel's symbols, under the copy directory.
pub(crate) const KERNEL_DIR: &str = "kernel";
/// Decompressed debug files, under the copy directory.
pub(crate) const DEBUG_DIR: &str = "debug";

/// The most the decompressed debug files may take together: 1 GiB.
pub const DEBUG_COPIES_BYTES: u64 = 1 << 30;

/// A decompressed copy in `dir` of the debug file `file`, made if there is none yet;
/// `None` when `file` has no compressed DWARF or no build-id (nothing to gain, or nothing
/// to name the copy by).
///
/// # Errors
/// When `dir` is not private or cannot be made, or the copy cannot be written: the caller
/// uses `file` as it is.
pub(crate) fn decompressed_debug(dir: &Path, file: &File) -> io::Result<Option<File>> {
    decompressed_debug_within(dir, file, DEBUG_COPIES_BYTES)
}

fn decompressed_debug_within(dir: &Path, file: &File, budget: u64) -> io::Result<Option<File>> {
    let info = elf::parse(file).map_err(io::Error::other)?;
    let Some(build_id) = info.build_id.as_deref().filter(|id| !id.is_empty()) else {
        return Ok(None);
    };
    if !elf::has_compressed_debug(&info) {
        return Ok(None);
    }
    private_dir(dir)?;
    let hex: String = build_id.iter().map(|b| format!("{b:02x}")).collect();
    // Named by build-id and by which file it copies: another debug file with the same
    // build-id (reinstalled, or a different one a test made) gets its own copy.
    let meta = file.metadata()?;
    let source: Vec<u8> = [meta.dev(), meta.ino(), meta.len()]
        .into_iter()
        .chain([meta.mtime(), meta.mtime_nsec()].map(i64::cast_unsigned))
        .flat_map(u64::to_le_bytes)
        .collect();
    let source = fnv1a(&source);
    let path = dir.join(format!("{hex}-{source:016x}.debug"));
    if let Some(copy) = usable(&path, build_id) {
        // Its time of last use, for the eviction order.
        let _ = copy.set_modified(SystemTime::now());
        return Ok(Some(copy));
    }
    let len = usize::try_from(meta.len()).map_err(io::Error::other)?;
    let mut data = vec![0; len];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut data, 0)?;
    // A copy cut short by a crash has no section header table (written last) or a size
    // of 0, so `usable` refuses it and it is made again.
    write_private(&path, |out| {
        elf::write_decompressed(&data, out, budget).map_err(io::Error::other)?;
        Ok(())
    })?;
    evict(dir, &path, &hex, budget);
    tracing::debug!(copy = %path.display(), "kept a decompressed copy of a debug file");
    usable(&path, build_id)
        .map(Some)
        .ok_or_else(|| io::Error::other("the decompressed copy does not read back"))
}

/// The copy at `path` if it is private, ELF, of `build_id` and decompressed.
fn usable(path: &Path, build_id: &[u8]) -> Option<File> {
    let copy = File::open(path).ok()?;
    let meta = copy.metadata().ok()?;
    if !meta.is_file() || !is_private(&meta) {
        return None;
    }
    let info = elf::parse(&copy).ok()?;
    (info.build_id.as_deref() == Some(build_id) && !elf::has_compressed_debug(&info))
        .then_some(copy)
}

/// Deletes the other copies of build-id `hex` (made from a file since replaced), then the
/// least recently used copies in `dir` until they fit `budget`; never `keep`.
fn evict(dir: &Path, keep: &Path, hex: &str, budget: u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut copies: Vec<(SystemTime, u64, std::path::PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "debug"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len(), e.path()))
        })
        .collect();
    let mut total: u64 = copies.iter().map(|c| c.1).sum();
    copies.sort();
    let same_id = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{hex}-")))
    };
    for (_, len, path) in copies {
        if path != keep && (total > budget || same_id(&path)) && fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
}

/// Writes the file at `path` (mode 0600) through `write`: into a temporary file beside
/// it, renamed into place when complete, so a reader never sees a part of it, and nothing
/// is left behind when `write` fails.
///
/// Not synced: an fsync on a busy node's ext4 waits for other files' dirty data (it took
/// the agent's first libc lookup past its 1 s wait right after a build). Each caller says
/// why a copy a crash cut short is harmless.
pub(crate) fn write_private(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut out = BufWriter::new(file);
        write(&mut out)?;
        out.into_inner().map_err(io::IntoInnerError::into_error)?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// FNV-1a of `bytes`: the copies' keys, not a defence against anyone.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Makes `dir` (mode 0700) if it is missing; refuses one that is not this user's alone,
/// since whoever can write it can put names in the copies.
pub(crate) fn private_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() || !is_private(&meta) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory only this user can write",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Owned by this user and writable by nobody else.
pub(crate) fn is_private(meta: &fs::Metadata) -> bool {
    meta.uid() == rustix::process::geteuid().as_raw() && meta.mode() & 0o022 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small program with DWARF, and its zlib-compressed twin (as `objcopy` makes it).
    fn compressed_program(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let src = dir.join("p.c");
        fs::write(
            &src,
            "int twice(int x) { return 2 * x; }\nint main(void) { return twice(0); }\n",
        )
        .expect("source");
        let (plain, packed) = (dir.join("p"), dir.join("p.gz"));
        let run = |c: &mut std::process::Command| {
            assert!(c.status().expect("gcc/objcopy").success(), "{c:?}");
        };
        run(std::process::Command::new("gcc")
            .args(["-O1", "-g", "-o"])
            .arg(&plain)
            .arg(&src));
        run(std::process::Command::new("objcopy")
            .arg("--compress-debug-sections=zlib")
            .arg(&plain)
            .arg(&packed));
        (plain, packed)
    }

    #[test]
    fn a_compressed_debug_file_is_decompressed_once_and_reused() {
        let dir = tempfile::tempdir().expect("dir");
        let (plain, packed) = compressed_program(dir.path());
        let copies = dir.path().join("copies/debug");
        let packed_file = File::open(&packed).expect("packed");
        let copy = decompressed_debug(&copies, &packed_file)
            .expect("copy")
            .expect("made");
        let info = elf::parse(&copy).expect("copy is ELF");
        assert!(!elf::has_compressed_debug(&info));
        assert_eq!(
            info.build_id,
            elf::parse(&packed_file).expect("packed").build_id
        );
        assert_eq!(fs::metadata(&copies).expect("dir").mode() & 0o777, 0o700);
        let made: Vec<_> = fs::read_dir(&copies).expect("list").collect();
        assert_eq!(made.len(), 1, "one copy, no temporary file left");
        let path = made[0].as_ref().expect("entry").path();
        let first = fs::metadata(&path).expect("copy").ino();
        // Asked again: the same file, not made again.
        decompressed_debug(&copies, &packed_file)
            .expect("again")
            .expect("reused");
        assert_eq!(fs::metadata(&path).expect("copy").ino(), first);
        // Another file with the same build-id (here: the same bytes, written again) gets a
        // copy of its own, which replaces the first.
        let again = dir.path().join("p.gz.again");
        fs::copy(&packed, &again).expect("copy");
        decompressed_debug(&copies, &File::open(&again).expect("again"))
            .expect("made")
            .expect("copy");
        let names: Vec<_> = fs::read_dir(&copies)
            .expect("list")
            .map(|e| e.expect("e").path())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_ne!(names[0], path);
        let path = decompressed_debug(&copies, &packed_file)
            .expect("back")
            .map(|_| ());
        assert!(path.is_some());
        let names: Vec<_> = fs::read_dir(&copies)
            .expect("list")
            .map(|e| e.expect("e").path())
            .collect();
        assert_eq!(names.len(), 1);
        let path = names[0].clone();
        // An uncompressed file needs no copy.
        let plain_file = File::open(&plain).expect("plain");
        assert!(
            decompressed_debug(&copies, &plain_file)
                .expect("plain")
                .is_none()
        );
        // A copy someone else could write is made again, privately.
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .expect("chmod");
        decompressed_debug(&copies, &packed_file)
            .expect("remade")
            .expect("copy");
        assert_eq!(fs::metadata(&path).expect("copy").mode() & 0o777, 0o600);
        // Past the budget the oldest copy goes, never the one just made.
        let old = copies.join("00.debug");
        fs::write(&old, b"old").expect("old");
        let long_ago = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1);
        File::options()
            .write(true)
            .open(&old)
            .expect("old")
            .set_modified(long_ago)
            .expect("mtime");
        let size = fs::metadata(&path).expect("copy").len();
        fs::remove_file(&path).expect("rm");
        decompressed_debug_within(&copies, &packed_file, size)
            .expect("made")
            .expect("copy");
        assert!(!old.exists() && path.exists());
        // A file that would decompress past the budget is not copied at all.
        fs::remove_file(&path).expect("rm");
        assert!(decompressed_debug_within(&copies, &packed_file, size - 1).is_err());
        let left = fs::read_dir(&copies).expect("list").count();
        assert_eq!(left, 0, "no temporary file left");
    }
}
