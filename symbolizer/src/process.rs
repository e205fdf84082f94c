//! What is cached about one process: its mappings, and for each executable mapping the
//! binary that backs it once that has been worked out.
//!
//! The mappings are read from `/proc/PID/maps` the first time the process is seen, and
//! re-read when an address falls outside all of them, which is how newly loaded libraries
//! are picked up: at most once per stack and once per [`MAPS_REREAD_EVERY`], since a stack
//! whose outermost frame is garbage (a frame-pointer walk past `clone3`) misses in every
//! sample. A re-read keeps what was worked out about the mappings that did not change. They are kept after the process exits, so
//! stacks sampled just before the exit still symbolize; [`Symbolizer::forget_process`]
//! drops them.
//!
//! [`Symbolizer::forget_process`]: crate::Symbolizer::forget_process

use std::time::{Duration, Instant};

use crate::binary::BinaryId;
use crate::maps::Mapping;

/// The least time between two reads of one process's mappings for addresses outside them.
pub(crate) const MAPS_REREAD_EVERY: Duration = Duration::from_millis(200);

/// Which binary backs a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Not looked at yet (non-executable mappings stay here: they are never opened).
    Unresolved,
    /// This registered binary.
    Binary(BinaryId),
    /// It could not be opened; its frames are `module+0xoffset`.
    Unavailable,
}

/// A mapping and what backs it.
#[derive(Debug)]
pub(crate) struct ProcMapping {
    /// The line from the maps file.
    pub(crate) mapping: Mapping,
    /// Its binary, resolved lazily.
    pub(crate) resolution: Resolution,
    /// The open file of that binary, kept so it can be registered again after an
    /// eviction even when the process is gone.
    pub(crate) file: Option<std::sync::Arc<std::fs::File>>,
}

/// Cached state of one process.
#[derive(Debug, Default)]
pub(crate) struct Process {
    /// Sorted by start address, non-overlapping (see `maps::parse`).
    pub(crate) mappings: Vec<ProcMapping>,
    /// The last attempt to read the maps found the process gone.
    pub(crate) gone: bool,
    /// When the mappings were last read from `/proc` (not set for a capture's).
    pub(crate) read_at: Option<Instant>,
}

impl Process {
    /// Replaces the mappings with freshly read ones; a mapping that is unchanged (same
    /// range, offset, permissions and file) keeps its resolved binary.
    pub(crate) fn set_mappings(&mut self, mappings: Vec<Mapping>) {
        let mut old = std::mem::take(&mut self.mappings).into_iter().peekable();
        self.mappings = mappings
            .into_iter()
            .map(|mapping| {
                // Both lists are sorted by start address.
                while old.next_if(|o| o.mapping.start < mapping.start).is_some() {}
                match old.next_if(|o| o.mapping == mapping) {
                    Some(kept) => kept,
                    None => ProcMapping {
                        mapping,
                        resolution: Resolution::Unresolved,
                        file: None,
                    },
                }
            })
            .collect();
    }

    /// Whether an address outside the mappings may have them read again now: not for a
    /// process found gone, and not again within [`MAPS_REREAD_EVERY`].
    pub(crate) fn may_reread(&self) -> bool {
        !self.gone
            && self
                .read_at
                .is_none_or(|at| at.elapsed() >= MAPS_REREAD_EVERY)
    }

    /// The index of the mapping containing `addr`.
    pub(crate) fn find(&self, addr: u64) -> Option<usize> {
        let idx = self
            .mappings
            .partition_point(|m| m.mapping.start <= addr)
            .checked_sub(1)?;
        (addr < self.mappings[idx].mapping.end).then_some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps;

    #[test]
    fn finds_the_mapping_containing_an_address() {
        let (mappings, _) =
            maps::parse("1000-2000 r-xp 00000000 00:00 0\n3000-4000 r-xp 00000000 00:00 0\n");
        let mut process = Process::default();
        process.set_mappings(mappings);
        assert_eq!(process.find(0), None);
        assert_eq!(process.find(0xfff), None);
        assert_eq!(process.find(0x1000), Some(0));
        assert_eq!(process.find(0x1fff), Some(0));
        assert_eq!(process.find(0x2000), None);
        assert_eq!(process.find(0x3abc), Some(1));
        assert_eq!(process.find(0x4000), None);
        assert_eq!(process.find(u64::MAX), None);
        assert_eq!(Process::default().find(0x1000), None);
    }

    #[test]
    fn a_reread_keeps_the_binaries_of_unchanged_mappings() {
        let text =
            "1000-2000 r-xp 00000000 08:01 11 /bin/a\n3000-4000 r-xp 00000000 08:01 12 /lib/b\n";
        let mut process = Process::default();
        process.set_mappings(maps::parse(text).0);
        process.mappings[0].resolution = Resolution::Unavailable;
        process.mappings[1].resolution = Resolution::Unavailable;
        // /lib/b was replaced by /lib/c at the same address; /lib/d is new.
        let text = "1000-2000 r-xp 00000000 08:01 11 /bin/a\n3000-4000 r-xp 00000000 08:01 13 /lib/c\n5000-6000 r-xp 00000000 08:01 14 /lib/d\n";
        process.set_mappings(maps::parse(text).0);
        let kept: Vec<Resolution> = process.mappings.iter().map(|m| m.resolution).collect();
        assert_eq!(
            kept,
            [
                Resolution::Unavailable,
                Resolution::Unresolved,
                Resolution::Unresolved
            ]
        );
    }
}
