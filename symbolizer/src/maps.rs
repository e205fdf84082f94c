//! Reading and parsing `/proc/PID/maps`: which file (if any) backs each address of a process.
//!
//! We parse the maps file ourselves rather than letting blazesym's process source do it,
//! so that the parsed mappings can be cached per process (see `process.rs`) and every
//! address can be turned into a *(binary, file offset)* pair that is the same across
//! processes, which is what the symbol cache is keyed by.
//!
//! Invariants of [`read`]'s result: mappings are sorted by start address and do not
//! overlap (the kernel prints them that way), and every mapping has `start < end`.
//! Malformed lines are skipped and counted, never an error.

use std::io;
use std::sync::Arc;

/// Identifies a file the way `/proc/PID/maps` does: the device and inode of the mapped file.
///
/// While a file is held open its inode number cannot be reused, so as long as the binary
/// registry keeps the opened `File`, this key keeps naming the same file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// Device number as printed by the kernel (`major:minor`, both hex).
    pub major: u32,
    /// Minor device number.
    pub minor: u32,
    /// Inode number on that device.
    pub inode: u64,
}

impl FileKey {
    /// The key of the file `meta` describes, as `/proc/PID/maps` prints it.
    pub(crate) fn of(meta: &std::fs::Metadata) -> FileKey {
        use std::os::unix::fs::MetadataExt as _;
        let dev = meta.dev();
        FileKey {
            major: libc::major(dev),
            minor: libc::minor(dev),
            inode: meta.ino(),
        }
    }
}

/// What a mapping's pathname column says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// No pathname: anonymous memory (heap extensions, JIT code, thread stacks).
    Anonymous,
    /// A pseudo-path such as `[vdso]`, `[heap]`, `[stack]` or `[anon:name]`.
    Special(Arc<str>),
    /// A file, with the path as the process sees it (` (deleted)` suffix removed).
    File {
        /// The path, for display (`Frame::module`) and as the fallback way to open it.
        path: Arc<str>,
        /// Device and inode; `None` when the kernel reports inode 0.
        key: Option<FileKey>,
        /// The file was deleted (or replaced) after it was mapped.
        deleted: bool,
    },
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address of the mapping.
    pub end: u64,
    /// Offset into the backing file of `start`.
    pub pgoff: u64,
    /// Whether the mapping is executable (only such mappings can hold code addresses).
    pub exec: bool,
    /// What backs the mapping.
    pub backing: Backing,
}

impl Mapping {
    /// Whether this is the kernel's `[vsyscall]` gate page: shown executable in maps, but
    /// no mapping of the process (`PROCMAP_QUERY` does not report it).
    pub(crate) fn is_vsyscall(&self) -> bool {
        matches!(&self.backing, Backing::Special(name) if &**name == "[vsyscall]")
    }

    /// The offset into the backing file of `addr`, which must lie in `start..end`.
    ///
    /// `None` only for nonsensical page offsets that would overflow.
    pub(crate) fn file_offset(&self, addr: u64) -> Option<u64> {
        addr.checked_sub(self.start)?.checked_add(self.pgoff)
    }
}

/// Why a maps file could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MapsError {
    /// The process does not exist (any more), or it is a zombie with no address space.
    #[error("process {pid} is gone")]
    Gone {
        /// The process.
        pid: u32,
    },
    /// Anything else (permissions, I/O).
    #[error("failed to read `/proc/{pid}/maps`")]
    Io {
        /// The process.
        pid: u32,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The mappings of process `pid` and the number of malformed lines skipped.
///
/// An empty maps file (a zombie, or a kernel thread) counts as [`MapsError::Gone`]: no
/// user address of such a process can be symbolized.
pub(crate) fn read(pid: u32) -> Result<(Vec<Mapping>, u64), MapsError> {
    read_with_text(pid).map(|(mappings, skipped, _)| (mappings, skipped))
}

/// [`read`], also returning the text read, for another reader of the same maps.
fn read_with_text(pid: u32) -> Result<(Vec<Mapping>, u64, String), MapsError> {
    read_text(pid, crate::procfs::Procfs::default().maps_text(pid))
}

/// The executable mappings of process `pid` (all its mappings on a kernel that cannot
/// be asked for those alone, [`Procfs::code_maps_text`](crate::procfs::Procfs::code_maps_text)),
/// the number of malformed lines skipped, and their text.
pub(crate) fn read_exec_with_text(pid: u32) -> Result<(Vec<Mapping>, u64, String), MapsError> {
    read_text(pid, crate::procfs::Procfs::default().code_maps_text(pid))
}

fn read_text(pid: u32, text: io::Result<String>) -> Result<(Vec<Mapping>, u64, String), MapsError> {
    let text = match text {
        Ok(text) => text,
        Err(err) if is_gone(&err) => return Err(MapsError::Gone { pid }),
        Err(source) => return Err(MapsError::Io { pid, source }),
    };
    let (mappings, skipped) = parse(&text);
    if mappings.is_empty() {
        return Err(MapsError::Gone { pid });
    }
    Ok((mappings, skipped, text))
}

/// Whether an error reading `/proc/PID/...` means the process no longer exists.
pub(crate) fn is_gone(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ESRCH))
}

/// Parses the text of a maps file, skipping malformed lines (and counting them).
///
/// The result is sorted by start address, without overlaps, whatever order the lines came in.
pub(crate) fn parse(text: &str) -> (Vec<Mapping>, u64) {
    let mut skipped = 0;
    let mut mappings = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        match parse_line(line) {
            Some(mapping) => mappings.push(mapping),
            None => skipped += 1,
        }
    }
    // The kernel prints mappings in address order; enforce it so the binary search in
    // `process.rs` is sound even for odd input.
    if !mappings.is_sorted_by_key(|m| m.start) {
        mappings.sort_by_key(|m| m.start);
    }
    let before = mappings.len();
    let mut last_end = 0;
    mappings.retain(|m| {
        let keep = m.start >= last_end;
        if keep {
            last_end = m.end;
        }
        keep
    });
    skipped += (before - mappings.len()) as u64;
    (mappings, skipped)
}

/// Splits off the next whitespace-delimited field.
fn next_field(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    Some(s.split_at(s.find(char::is_whitespace).unwrap_or(s.len())))
}

/// Parses one line, `start-end perms offset major:minor inode [pathname]`.
pub fn parse_line(line: &str) -> Option<Mapping> {
    let (range, rest) = next_field(line)?;
    let (perms, rest) = next_field(rest)?;
    let (offset, rest) = next_field(rest)?;
    let (dev, rest) = next_field(rest)?;
    let (inode, rest) = next_field(rest)?;
    // The pathname is the rest of the line and may contain spaces.
    let pathname = rest.trim_start();

    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if start >= end {
        return None;
    }
    let perms = perms.as_bytes();
    if perms.len() != 4 {
        return None;
    }
    let exec = perms[2] == b'x';
    let pgoff = u64::from_str_radix(offset, 16).ok()?;
    let (major, minor) = dev.split_once(':')?;
    let major = u32::from_str_radix(major, 16).ok()?;
    let minor = u32::from_str_radix(minor, 16).ok()?;
    let inode = inode.parse::<u64>().ok()?;

    let backing = if pathname.is_empty() {
        Backing::Anonymous
    } else if pathname.starts_with('/') {
        let (path, deleted) = match pathname.strip_suffix(" (deleted)") {
            Some(path) => (path, true),
            None => (pathname, false),
        };
        Backing::File {
            path: path.into(),
            key: (inode != 0).then_some(FileKey {
                major,
                minor,
                inode,
            }),
            deleted,
        }
    } else {
        Backing::Special(pathname.into())
    };

    Some(Mapping {
        start,
        end,
        pgoff,
        exec,
        backing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55d0c8a00000-55d0c8a02000 r--p 00000000 fd:01 1835017                    /usr/bin/cat
55d0c8a02000-55d0c8a07000 r-xp 00002000 fd:01 1835017                    /usr/bin/cat
55d0c9c3e000-55d0c9c5f000 rw-p 00000000 00:00 0                          [heap]
7f1e2a000000-7f1e2a028000 r-xp 00028000 103:02 2626                      /tmp/with space/lib.so (deleted)
7f1e2b000000-7f1e2b001000 rw-p 00000000 00:00 0 
7ffd5a1f4000-7ffd5a1f6000 r-xp 00000000 00:00 0                          [vdso]
";

    #[test]
    fn parses_files_specials_and_anonymous_memory() {
        let (maps, skipped) = parse(SAMPLE);
        assert_eq!(skipped, 0);
        assert_eq!(maps.len(), 6);

        let text = &maps[1];
        assert_eq!(
            (text.start, text.end, text.pgoff),
            (0x55d0_c8a0_2000, 0x55d0_c8a0_7000, 0x2000)
        );
        assert!(text.exec);
        assert_eq!(
            text.backing,
            Backing::File {
                path: "/usr/bin/cat".into(),
                key: Some(FileKey {
                    major: 0xfd,
                    minor: 1,
                    inode: 1_835_017
                }),
                deleted: false,
            }
        );
        assert_eq!(text.file_offset(0x55d0_c8a0_2010), Some(0x2010));

        assert!(!maps[0].exec);
        assert_eq!(maps[2].backing, Backing::Special("[heap]".into()));
        assert_eq!(
            maps[3].backing,
            Backing::File {
                path: "/tmp/with space/lib.so".into(),
                key: Some(FileKey {
                    major: 0x103,
                    minor: 2,
                    inode: 2626
                }),
                deleted: true,
            }
        );
        assert_eq!(maps[4].backing, Backing::Anonymous);
        assert_eq!(maps[5].backing, Backing::Special("[vdso]".into()));
    }

    #[test]
    fn malformed_lines_are_skipped_and_counted() {
        let text = "\
garbage
10-5 r-xp 00000000 00:00 0
zz-30 r-xp 00000000 00:00 0
1000-2000 r-x 00000000 00:00 0
1000-2000 r-xp 0000000g 00:00 0
1000-2000 r-xp 00000000 0000 0
1000-2000 r-xp 00000000 00:00 -1
1000-2000 r-xp 00000000 00:00
3000-4000 r-xp ffffffffffffffff 08:01 12 /bin/x
";
        let (maps, skipped) = parse(text);
        assert_eq!(skipped, 8);
        assert_eq!(maps.len(), 1);
        // A page offset that would overflow yields no file offset rather than a panic.
        assert_eq!(maps[0].file_offset(0x3fff), None);
        assert_eq!(maps[0].file_offset(0x3000), Some(u64::MAX));
    }

    #[test]
    fn unsorted_and_overlapping_lines_are_normalized() {
        let text = "\
5000-6000 r-xp 00000000 00:00 0
1000-3000 r-xp 00000000 00:00 0
2000-4000 r-xp 00000000 00:00 0
";
        let (maps, skipped) = parse(text);
        assert_eq!(skipped, 1);
        let starts: Vec<u64> = maps.iter().map(|m| m.start).collect();
        assert_eq!(starts, [0x1000, 0x5000]);
    }

    #[test]
    fn this_process_has_an_executable_mapping_of_its_own_binary() {
        let (maps, _) = read(std::process::id()).expect("read own maps");
        let exe = std::fs::read_link("/proc/self/exe").expect("read /proc/self/exe");
        let exe = exe.to_string_lossy();
        assert!(
            maps.iter()
                .any(|m| m.exec
                    && matches!(&m.backing, Backing::File { path, .. } if **path == *exe))
        );
    }

    #[test]
    fn a_missing_process_is_gone() {
        // PIDs are at most 2^22, so this one cannot exist.
        assert!(matches!(read(u32::MAX), Err(MapsError::Gone { .. })));
    }
}
