//! The API's view of the agent: queries go to a reading connection of the store (SQLite
//! in WAL mode lets it read while the agent loop writes), metrics to the latest snapshot.

use std::sync::{Arc, Mutex, PoisonError};

use profiler_model::Profile;
use web::api::{Backend, BackendError, Health, LabelValues, ProfileQuery, TimelinePoint};

use super::metrics::AgentMetrics;
use profiler_store::{Query, Store};

/// [`Backend`] over the agent's store.
pub struct StoreBackend {
    store: Mutex<Store>,
    metrics: Arc<Mutex<AgentMetrics>>,
}

impl std::fmt::Debug for StoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBackend").finish_non_exhaustive()
    }
}

impl StoreBackend {
    /// A backend reading `store` and reporting `metrics`.
    #[must_use]
    pub fn new(store: Store, metrics: Arc<Mutex<AgentMetrics>>) -> Self {
        StoreBackend {
            store: Mutex::new(store),
            metrics,
        }
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
        let q = Query::new(query.from_unix_ns, query.to_unix_ns).with_filter(query.filter.clone());
        self.store().query(&q).map_err(err)
    }

    fn timeline(&self, query: &ProfileQuery) -> Result<Vec<TimelinePoint>, BackendError> {
        let windows = self
            .store()
            .timeline(query.from_unix_ns, query.to_unix_ns, &query.filter)
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
        from_unix_ns: u64,
        to_unix_ns: u64,
    ) -> Result<LabelValues, BackendError> {
        self.store()
            .label_values(from_unix_ns, to_unix_ns)
            .map_err(err)
    }

    fn metrics(&self) -> String {
        let snapshot = self
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        snapshot.prometheus()
    }

    fn health(&self) -> Health {
        let m = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        match &m.store_degraded {
            None => Health::Ok,
            Some(reason) => Health::Degraded(format!("store: {reason}")),
        }
    }
}
