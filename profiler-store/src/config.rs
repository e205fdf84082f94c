//! How the store keeps data: retention, size bound, downsampling, caches, durability.

use std::time::Duration;

/// Merge windows older than `after` into windows of `resolution` (for example: windows
/// older than an hour become one-minute windows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Downsample {
    /// Age (from a window's end to "now") after which windows are merged.
    pub after: Duration,
    /// Length of the merged windows; buckets are aligned to multiples of it since the epoch.
    pub resolution: Duration,
}

/// How `synchronous` is set on the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL` (the default): a commit survives the writer being killed, and the
    /// database is never corrupted, but a power loss can drop the last commits. For a
    /// profiler, losing a few seconds of samples to a power cut is fine, and it saves an
    /// `fsync` per window.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is `fsync`ed and survives power loss too.
    Full,
}

/// Configuration of a [`Store`](super::Store).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Windows that ended longer ago than this are deleted (default 7 days).
    pub retention: Duration,
    /// The store's files (the database, its write-ahead log and its shared-memory index;
    /// not the few bytes of the lock file) are kept under this many bytes, checked after
    /// every window written, by deleting the oldest windows (default 2 GiB). The newest
    /// window is always kept, so a cap smaller than one window is exceeded by that window.
    pub max_bytes: u64,
    /// Older windows merged into coarser ones (default: after 1 hour, into 1 minute).
    pub downsample: Option<Downsample>,
    /// Decoded rows kept in memory per kind (strings, frames, stacks, label sets), in each
    /// of the cache's two generations (default 100,000).
    pub cache_entries: usize,
    /// Commit durability (default [`Durability::Normal`]).
    pub durability: Durability,
    /// How long the writer's integrity check at open may take before it is stopped and the
    /// store opens anyway (default 2 s: `quick_check` read a 33 MB store in 0.24 s here, so
    /// stores up to about 250 MB are checked whole).
    pub integrity_check_budget: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            retention: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 2 << 30,
            downsample: Some(Downsample {
                after: Duration::from_secs(3600),
                resolution: Duration::from_secs(60),
            }),
            cache_entries: 100_000,
            durability: Durability::Normal,
            integrity_check_budget: Duration::from_secs(2),
        }
    }
}

impl StoreConfig {
    /// Sets [`StoreConfig::retention`].
    #[must_use]
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Sets [`StoreConfig::max_bytes`].
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets [`StoreConfig::downsample`]; `None` keeps every window as written.
    #[must_use]
    pub fn with_downsample(mut self, downsample: Option<Downsample>) -> Self {
        self.downsample = downsample;
        self
    }
}
