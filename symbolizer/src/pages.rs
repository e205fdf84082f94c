//! Giving back the page-table entries of the files blazesym has mapped.
//!
//! blazesym maps every file it parses (binary or debug file) in its entirety, read-only and
//! shared, and reads its symbol tables, DWARF and line tables in place. Every page it ever
//! touched then stays mapped into the agent and counts in its resident set: on a busy node
//! that was 71 MiB of the agent's 127 MiB (libLLVM, libpython, libc's debug file, the
//! browser's binary), though almost none of it is read again once the memo knows the
//! addresses of a process's hot code.
//!
//! [`release`] drops those pages from the agent's page tables with `MADV_DONTNEED`. For a
//! read-only shared file mapping this discards no data (the page cache is the data): the
//! pages stay in the page cache, where other processes and the kernel's reclaim see them
//! as any unmapped file page, and the next read of one is a minor fault that maps it again.
//!
//! # Which mappings
//! Only blazesym's own mapping of a file is advised, never another mapping of the same file
//! (the dynamic loader's segments, whose relocated pages are private copies, or a mapping
//! another thread makes and may unmap at any moment). A mapping is released when it is
//! read-only and shared (`r--s`, as memmap2 maps for blazesym), starts at file offset 0, is
//! exactly as long as the file (page-rounded), its file is one an open resolver holds, and
//! it contains the address of a name that resolver returned (`MappedFile::inside`):
//! blazesym reads names in place, so that mapping is the resolver's. A name blazesym made
//! (from decompressed data, say) lies in no such mapping, and then nothing is released.
//! The mapping stays mapped while this runs, since resolvers are dropped on the
//! symbolizer's thread, which is this one.

use std::io;

use hashbrown::HashMap;

use crate::binary::MappedFile;
use crate::maps::{self, Backing, FileKey};

/// What one [`Symbolizer::release_file_pages`](crate::Symbolizer::release_file_pages) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReleasedPages {
    /// Mappings advised.
    pub mappings: u64,
    /// Their total length in bytes (mapped, not necessarily resident).
    pub bytes: u64,
}

/// Drops the pages of blazesym's mappings of `files` from this process's page tables.
///
/// # Errors
/// If `/proc/self/maps` cannot be read. A refused `madvise` only leaves that mapping as it
/// was.
pub(crate) fn release(files: &[MappedFile]) -> io::Result<ReleasedPages> {
    if files.is_empty() {
        return Ok(ReleasedPages::default());
    }
    let text = std::fs::read_to_string("/proc/self/maps")?;
    let ranges = whole_file_mappings(&text, files, page_size());
    let mut done = ReleasedPages::default();
    for (start, end) in ranges {
        let len = usize::try_from(end - start).unwrap_or(usize::MAX);
        // SAFETY: `start..end` is blazesym's read-only shared mapping of a file (see the
        // module documentation for why it is that mapping and why it stays mapped during
        // this call); MADV_DONTNEED on it only unmaps page-cache pages, which the next
        // access maps again from the same file.
        let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        if rc == 0 {
            done.mappings += 1;
            done.bytes += end - start;
        } else {
            tracing::debug!(
                start = format_args!("{start:#x}"),
                error = %io::Error::last_os_error(),
                "madvise(MADV_DONTNEED) refused; the mapping stays as it is"
            );
        }
    }
    Ok(done)
}

/// The address ranges in maps `text` that are blazesym's mappings of `files`: read-only,
/// shared, from offset 0 over a file's whole (page-rounded) length, and holding the
/// address the file's resolver returned a name from.
pub(crate) fn whole_file_mappings(text: &str, files: &[MappedFile], page: u64) -> Vec<(u64, u64)> {
    let mut by_key: HashMap<FileKey, Vec<&MappedFile>> = HashMap::new();
    for file in files {
        by_key.entry(file.key).or_default().push(file);
    }
    let mut ranges = Vec::new();
    for line in text.lines() {
        if line.split_ascii_whitespace().nth(1) != Some("r--s") {
            continue;
        }
        let Some(mapping) = maps::parse_line(line) else {
            continue;
        };
        let Backing::File { key: Some(key), .. } = mapping.backing else {
            continue;
        };
        let (start, end) = (mapping.start, mapping.end);
        let ours = by_key.get(&key).is_some_and(|files| {
            files.iter().any(|f| {
                let inside = f.inside as u64;
                mapping.pgoff == 0
                    && end - start == f.size.div_ceil(page).saturating_mul(page)
                    && (start..end).contains(&inside)
            })
        });
        if ours {
            ranges.push((start, end));
        }
    }
    ranges
}

pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .ok()
        .filter(|&p| p > 0)
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(inode: u64, size: u64, inside: usize) -> MappedFile {
        MappedFile {
            key: FileKey {
                major: 0xfd,
                minor: 1,
                inode,
            },
            size,
            inside,
        }
    }

    #[test]
    fn only_the_resolvers_whole_file_read_only_mapping_is_chosen() {
        let maps = "\
55d000000000-55d000002000 r--p 00000000 fd:01 7 /usr/bin/app
55d000002000-55d000005000 r-xp 00002000 fd:01 7 /usr/bin/app
7f0000000000-7f0000003000 r--s 00000000 fd:01 7 /usr/bin/app
7f0000010000-7f0000012000 r--s 00000000 fd:01 8 /usr/lib/libtwo.so
7f0000020000-7f0000022000 r--s 00000000 fd:01 8 /usr/lib/libtwo.so
7f0000030000-7f0000033000 rw-p 00000000 fd:01 9 /usr/lib/written
7f0000040000-7f0000043000 r--s 00001000 fd:01 10 /usr/lib/offset
7f0000050000-7f0000053000 r--s 00000000 fd:01 11 /usr/lib/not-ours
7f0000060000-7f0000063000 r--s 00000000 fd:02 12 /other/device
7f0000070000-7f0000073000 r--p 00000000 fd:01 13 /usr/lib/private
";
        let files = [
            // The loader's first segment (2 pages) is not the whole 3-page file; the
            // 3-page mapping holds the name.
            file(7, 0x2801, 0x7f00_0000_1234),
            // Two whole-file mappings of one file: the one holding the name.
            file(8, 0x2000, 0x7f00_0002_0010),
            // Writable, not from offset 0, private: never.
            file(9, 0x3000, 0x7f00_0003_0000),
            file(10, 0x3000, 0x7f00_0004_0000),
            file(13, 0x3000, 0x7f00_0007_0000),
            // The name lies elsewhere (a name blazesym made): not this mapping.
            file(11, 0x3000, 0x1000),
        ];
        assert_eq!(
            whole_file_mappings(maps, &files, 0x1000),
            vec![
                (0x7f00_0000_0000, 0x7f00_0000_3000),
                (0x7f00_0002_0000, 0x7f00_0002_2000)
            ]
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let maps = "garbage r--s\n\n7f0000000000-7f0000001000 r--s zz fd:01 7 /x\n";
        assert!(whole_file_mappings(maps, &[file(7, 1, 0x7f00_0000_0010)], 0x1000).is_empty());
    }
}
