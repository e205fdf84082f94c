//! One merged profile for the requests that ask for the same one.
//!
//! The UI's first screen asks for the flame graph, the top table and the CPU figures of
//! one range and filter at once, in parallel; each used to merge the range's windows from
//! the store on its own, three decompressions and merges of the same data. [`Shared`]
//! wraps the [`Backend`]: a merge in progress is joined by the requests that arrive for
//! the same [`ProfileQuery`] while it runs, and its result is reused while the backend's
//! data is unchanged ([`Backend::version`]) and it is younger than [`MAX_AGE`].
//!
//! Memory stays bounded: at most [`CAPACITY`] profiles are kept, the oldest goes first,
//! and a backend that cannot say when its data changes (`version` is `None`) is never
//! cached at all. Failures are not kept: the next request tries again.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use profiler_model::{Profile, ProfileKind};

use super::backend::{Backend, BackendError, Health, LabelValues, ProfileQuery, TimelinePoint};

/// Profiles kept at once (each one range and filter's merge).
const CAPACITY: usize = 3;

/// How long a merged profile is reused at most, even if the backend says nothing changed
/// (a window's retention may end without a write).
const MAX_AGE: Duration = Duration::from_secs(10);

type Slot = Arc<OnceLock<Result<Arc<Profile>, BackendError>>>;

struct Entry {
    query: ProfileQuery,
    version: u64,
    made: Instant,
    slot: Slot,
}

/// A [`Backend`] whose merged profiles are shared between concurrent and close requests.
pub(super) struct Shared {
    inner: Arc<dyn Backend>,
    entries: Mutex<Vec<Entry>>,
}

impl Shared {
    /// Shares `inner`'s merged profiles.
    pub(super) fn new(inner: Arc<dyn Backend>) -> Self {
        Shared {
            inner,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The slot for `query` at `version`: an existing one still fresh, or a new one.
    fn slot(&self, query: &ProfileQuery, version: u64) -> Slot {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|e| e.version == version && e.made.elapsed() < MAX_AGE);
        if let Some(e) = entries.iter().find(|e| &e.query == query) {
            return Arc::clone(&e.slot);
        }
        if entries.len() >= CAPACITY {
            entries.remove(0);
        }
        let slot = Slot::default();
        entries.push(Entry {
            query: query.clone(),
            version,
            made: Instant::now(),
            slot: Arc::clone(&slot),
        });
        slot
    }

    /// Forgets `slot` (its merge failed), so the next request merges again.
    fn forget(&self, slot: &Slot) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|e| !Arc::ptr_eq(&e.slot, slot));
    }
}

impl Backend for Shared {
    fn profile(&self, query: &ProfileQuery) -> Result<Profile, BackendError> {
        let Some(version) = self.inner.version() else {
            return self.inner.profile(query);
        };
        let slot = self.slot(query, version);
        // The first caller merges; the others for the same query wait for it here.
        let result = slot.get_or_init(|| self.inner.profile(query).map(Arc::new));
        match result {
            Ok(profile) => Ok(Profile::clone(profile)),
            Err(e) => {
                self.forget(&slot);
                Err(BackendError(e.0.clone()))
            }
        }
    }

    fn timeline(&self, query: &ProfileQuery) -> Result<Vec<TimelinePoint>, BackendError> {
        self.inner.timeline(query)
    }

    fn label_values(
        &self,
        kind: ProfileKind,
        from_unix_ns: u64,
        to_unix_ns: u64,
    ) -> Result<LabelValues, BackendError> {
        self.inner.label_values(kind, from_unix_ns, to_unix_ns)
    }

    fn kinds(&self) -> Result<Vec<ProfileKind>, BackendError> {
        self.inner.kinds()
    }

    fn metrics(&self) -> String {
        self.inner.metrics()
    }

    fn health(&self) -> Health {
        self.inner.health()
    }

    fn version(&self) -> Option<u64> {
        self.inner.version()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use profiler_model::{Frame, FrameKind, LabelFilter, Labels};

    use super::*;

    /// A backend that counts its merges and whose data changes when told.
    #[derive(Default)]
    struct Counting {
        merges: AtomicU64,
        version: AtomicU64,
        versioned: bool,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Backend for Counting {
        fn profile(&self, _: &ProfileQuery) -> Result<Profile, BackendError> {
            self.merges.fetch_add(1, Ordering::SeqCst);
            // Slow enough that concurrent requests overlap.
            std::thread::sleep(Duration::from_millis(50));
            if self.fail.load(Ordering::SeqCst) {
                return Err(BackendError("disk on fire".into()));
            }
            let mut p = Profile::default();
            p.add(
                &Labels::new(),
                &[Frame::named("fn_a", FrameKind::User)],
                self.version.load(Ordering::SeqCst) + 1,
            );
            Ok(p)
        }
        fn timeline(&self, _: &ProfileQuery) -> Result<Vec<TimelinePoint>, BackendError> {
            Ok(Vec::new())
        }
        fn label_values(
            &self,
            _: ProfileKind,
            _: u64,
            _: u64,
        ) -> Result<LabelValues, BackendError> {
            Ok(LabelValues::new())
        }
        fn metrics(&self) -> String {
            String::new()
        }
        fn version(&self) -> Option<u64> {
            self.versioned.then(|| self.version.load(Ordering::SeqCst))
        }
    }

    fn query(from: u64) -> ProfileQuery {
        ProfileQuery {
            kind: ProfileKind::Cpu,
            from_unix_ns: from,
            to_unix_ns: from + 10,
            filter: LabelFilter::default(),
        }
    }

    fn merges(b: &Counting) -> u64 {
        b.merges.load(Ordering::SeqCst)
    }

    #[test]
    fn concurrent_requests_for_one_query_share_one_merge() {
        let inner = Arc::new(Counting {
            versioned: true,
            ..Counting::default()
        });
        let shared = Arc::new(Shared::new(Arc::clone(&inner) as Arc<dyn Backend>));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let s = Arc::clone(&shared);
                std::thread::spawn(move || s.profile(&query(0)).map(|p| p.total()))
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap(), 1);
        }
        assert_eq!(merges(&inner), 1);
        // Another query is its own merge.
        shared.profile(&query(5)).unwrap();
        assert_eq!(merges(&inner), 2);
    }

    #[test]
    fn new_data_is_merged_again_and_failures_are_not_kept() {
        let inner = Arc::new(Counting {
            versioned: true,
            ..Counting::default()
        });
        let shared = Shared::new(Arc::clone(&inner) as Arc<dyn Backend>);
        assert_eq!(shared.profile(&query(0)).unwrap().total(), 1);
        assert_eq!(shared.profile(&query(0)).unwrap().total(), 1);
        assert_eq!(merges(&inner), 1);
        inner.version.store(1, Ordering::SeqCst);
        assert_eq!(
            shared.profile(&query(0)).unwrap().total(),
            2,
            "a window was written"
        );
        assert_eq!(merges(&inner), 2);

        inner.fail.store(true, Ordering::SeqCst);
        inner.version.store(2, Ordering::SeqCst);
        assert!(shared.profile(&query(0)).is_err());
        inner.fail.store(false, Ordering::SeqCst);
        assert_eq!(
            shared.profile(&query(0)).unwrap().total(),
            3,
            "the failure was not kept"
        );
        assert_eq!(merges(&inner), 4);
    }

    #[test]
    fn at_most_capacity_profiles_are_kept_and_unversioned_backends_are_not_cached() {
        let inner = Arc::new(Counting {
            versioned: true,
            ..Counting::default()
        });
        let shared = Shared::new(Arc::clone(&inner) as Arc<dyn Backend>);
        for from in 0..=CAPACITY as u64 {
            shared.profile(&query(from * 100)).unwrap();
        }
        assert_eq!(
            shared.entries.lock().unwrap().len(),
            CAPACITY,
            "the oldest went"
        );
        shared.profile(&query(0)).unwrap();
        assert_eq!(
            merges(&inner),
            CAPACITY as u64 + 2,
            "the first one was evicted"
        );

        let plain = Arc::new(Counting::default());
        let shared = Shared::new(Arc::clone(&plain) as Arc<dyn Backend>);
        shared.profile(&query(0)).unwrap();
        shared.profile(&query(0)).unwrap();
        assert_eq!(merges(&plain), 2);
        assert!(shared.entries.lock().unwrap().is_empty());
    }
}
