//! The API's view of the agent: queries go to reading connections of the store (SQLite
//! in WAL mode lets them read while the agent loop writes), metrics to the latest snapshot.
//!
//! The light queries (`/labels`) have a connection of their own, so they never wait behind
//! a heavy one holding a connection for seconds; heavy queries take one from a pool that
//! grows to as many as the API lets run at once (`web::api::Limits::concurrent`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use profiler_model::{Profile, ProfileKind};
use web::api::{Backend, BackendError, Health, LabelValues, ProfileQuery, TimelinePoint};

use super::metrics::AgentMetrics;
use profiler_store::{Query, Store, StoreConfig};

/// [`Backend`] over the agent's store.
pub(crate) struct StoreBackend {
    /// For the light queries.
    store: Mutex<Store>,
    /// Idle connections for the heavy queries.
    pool: Mutex<Vec<Store>>,
    /// Where more pool connections are opened from.
    open: (PathBuf, StoreConfig),
    metrics: Arc<Mutex<AgentMetrics>>,
}

impl std::fmt::Debug for StoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBackend").finish_non_exhaustive()
    }
}

impl StoreBackend {
    /// A backend reading `store` (and more connections to the same database, opened with
    /// `store`'s configuration, for heavy queries) and reporting `metrics`.
    #[must_use]
    pub(crate) fn new(store: Store, metrics: Arc<Mutex<AgentMetrics>>) -> Self {
        let dir = store
            .path()
            .parent()
            .map_or_else(PathBuf::new, std::path::Path::to_path_buf);
        let config = store.config().clone();
        StoreBackend {
            store: Mutex::new(store),
            pool: Mutex::new(Vec::new()),
            open: (dir, config),
            metrics,
        }
    }

    /// Runs `f` on an idle pool connection (a new one when none is idle) and puts it back.
    fn heavy<T>(&self, f: impl FnOnce(&Store) -> T) -> Result<T, BackendError> {
        let idle = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let store = match idle {
            Some(s) => s,
            None => Store::open_read_only(&self.open.0, self.open.1.clone()).map_err(err)?,
        };
        let out = f(&store);
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(store);
        Ok(out)
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock leaves the connection usable: SQLite keeps its own
        // consistency, and every call is one statement or one read transaction.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

impl Backend for StoreBackend {
    fn profile(&self, query: &ProfileQuery) -> Result<Profile, BackendError> {
        let q = Query::new(query.from_unix_ns, query.to_unix_ns)
            .with_filter(query.filter.clone())
            .with_kind(query.kind);
        self.heavy(|s| s.query(&q))?.map_err(err)
    }

    fn timeline(&self, query: &ProfileQuery) -> Result<Vec<TimelinePoint>, BackendError> {
        let windows = self
            .heavy(|s| {
                s.timeline(
                    &Query::new(query.from_unix_ns, query.to_unix_ns)
                        .with_filter(query.filter.clone())
                        .with_kind(query.kind),
                )
            })?
            .map_err(err)?;
        Ok(windows
            .into_iter()
            .map(|w| TimelinePoint {
                start_unix_ns: w.start_unix_ns,
                end_unix_ns: w.end_unix_ns,
                samples: w.samples,
            })
            .collect())
    }

    fn label_values(
        &self,
        kind: ProfileKind,
        from_unix_ns: u64,
        to_unix_ns: u64,
    ) -> Result<LabelValues, BackendError> {
        self.store()
            .label_values(kind, from_unix_ns, to_unix_ns)
            .map_err(err)
    }

    fn kinds(&self) -> Result<Vec<ProfileKind>, BackendError> {
        let mut kinds = self.store().kinds().map_err(err)?;
        if !kinds.contains(&ProfileKind::Cpu) {
            kinds.insert(0, ProfileKind::Cpu);
        }
        Ok(kinds)
    }

    fn metrics(&self) -> String {
        let snapshot = self
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        snapshot.prometheus()
    }

    fn version(&self) -> Option<u64> {
        // Windows written and windows kept: a write raises the first, retention and the
        // size cap lower the second. The snapshot follows each write (a request between
        // the two merges again at the next change, or after the API's age limit).
        let m = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        Some(
            m.store
                .windows_written
                .wrapping_mul(1_000_003)
                .wrapping_add(m.store.windows),
        )
    }

    fn health(&self) -> Health {
        let m = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        match &m.store_degraded {
            None => Health::Ok,
            Some(reason) => Health::Degraded(format!("store: {reason}")),
        }
    }
}
