//! What the HTTP API needs from whoever holds the profiles: the agent's store in
//! production, an in-memory fake in tests. The API never touches the store directly.

use std::collections::BTreeMap;

use profiler_model::{LabelFilter, Profile, ProfileKind};

/// A kind of profile, a time range and a label filter: which samples an answer is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileQuery {
    /// CPU samples or microseconds off CPU (`type=`).
    pub kind: ProfileKind,
    /// Start, nanoseconds since the Unix epoch (inclusive).
    pub from_unix_ns: u64,
    /// End, nanoseconds since the Unix epoch (exclusive).
    pub to_unix_ns: u64,
    /// Which label sets to keep.
    pub filter: LabelFilter,
}

/// One stored window's share of a timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimelinePoint {
    /// Window start, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// Window end, nanoseconds since the Unix epoch.
    pub end_unix_ns: u64,
    /// Samples in the window that match the filter (microseconds for off-CPU time).
    pub samples: u64,
}

/// A backend failure, already worded for the log; the API answers 500 and logs it once.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// Whether the backend does its job, as `/healthz` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Health {
    /// All is well: `200 ok`.
    #[default]
    Ok,
    /// Profiles are being lost or cannot be kept (a full disk, an unwritable store):
    /// `503 degraded: reason`.
    Degraded(String),
}

/// Label name → value → samples.
pub type LabelValues = BTreeMap<String, BTreeMap<String, u64>>;

/// The source of profiles behind the API. Calls may block (disk reads); the API runs
/// them on blocking threads.
pub trait Backend: Send + Sync + 'static {
    /// The merged profile of the samples `query` selects.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn profile(&self, query: &ProfileQuery) -> Result<Profile, BackendError>;

    /// Samples per stored window in the range, after the filter, oldest first.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn timeline(&self, query: &ProfileQuery) -> Result<Vec<TimelinePoint>, BackendError>;

    /// Label names and values with their counts in the windows of `kind` in `[from, to)`.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn label_values(
        &self,
        kind: ProfileKind,
        from_unix_ns: u64,
        to_unix_ns: u64,
    ) -> Result<LabelValues, BackendError>;

    /// The kinds of profile stored, in [`ProfileKind::ALL`]'s order; CPU is always
    /// listed (the default of `type=`, and what an empty store will hold).
    ///
    /// # Errors
    /// When the store cannot be read.
    fn kinds(&self) -> Result<Vec<ProfileKind>, BackendError> {
        Ok(vec![ProfileKind::Cpu])
    }

    /// Prometheus text-format lines about the backend itself (samples, losses, windows,
    /// store bytes, symbol cache, ...), each metric with `# HELP` and `# TYPE`. The API
    /// appends its own (requests, query latency).
    fn metrics(&self) -> String;

    /// Whether the backend is healthy; must not block (`/healthz` answers at once).
    fn health(&self) -> Health {
        Health::Ok
    }

    /// A number that changes whenever the stored profiles do (a window written or
    /// removed), so the API may reuse a merged profile while it stays the same; `None`
    /// (the default) when the backend cannot tell, and then nothing is reused. Must not
    /// block.
    fn version(&self) -> Option<u64> {
        None
    }
}
