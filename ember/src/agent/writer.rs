//! Closed windows into the store, and what the agent does when the store will not take
//! them.
//!
//! A window that cannot be written (a full disk, an unwritable or damaged store) is not
//! dropped: it waits in memory, in order, and every later window close retries the
//! waiting ones, oldest first, before the new one. Up to [`PENDING_MAX_BYTES`] (estimated)
//! wait; beyond that the oldest are dropped and counted as lost. Retention runs after every
//! failure (on a full disk it is what can make room) and every [`RETENTION_INTERVAL`]
//! otherwise; the size cap itself is enforced by the store after each write. While windows
//! wait, the agent is *degraded*: `/healthz` answers 503 with the reason and `/metrics`
//! has `ember_store_degraded 1`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use profiler_model::Profile;
use profiler_store::{Store, StoreError, Window};
use tracing::{debug, info, warn};

/// Estimated bytes of waiting windows kept in memory at most.
pub(super) const PENDING_MAX_BYTES: u64 = 64 << 20;
/// How often retention (age, downsampling) runs while writes succeed.
pub(super) const RETENTION_INTERVAL: Duration = Duration::from_secs(600);

/// Windows and samples written, waiting and lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WriteCounts {
    /// Windows written.
    pub windows_written: u64,
    /// Samples in written windows.
    pub samples_written: u64,
    /// Failed write attempts (a window retried three times counts three).
    pub write_errors: u64,
    /// Closed windows waiting in memory to be written.
    pub windows_pending: u64,
    /// Windows dropped unwritten: over the memory bound, invalid, or still waiting at exit.
    pub windows_lost: u64,
    /// Samples in lost windows.
    pub samples_lost: u64,
}

/// The agent's writing end of the store.
pub(crate) struct WindowWriter {
    store: Store,
    pending: VecDeque<(Window, u64)>,
    pending_bytes: u64,
    max_pending_bytes: u64,
    counts: WriteCounts,
    last_retention: Instant,
    degraded: Option<String>,
}

/// A rough size of a profile in memory: its stacks, frames and label sets.
fn estimate_bytes(p: &Profile) -> u64 {
    let stacks: usize = p.stacks().map(|s| 48 + 4 * s.frames.len()).sum();
    (stacks + 96 * p.frames().len() + 64 * p.label_sets().len()) as u64
}

/// The CPU samples of a window's profile: an off-CPU window's counts are microseconds,
/// not samples, and are left out of the sample counts.
fn cpu_samples(p: &Profile) -> u64 {
    if p.meta.kind == profiler_model::ProfileKind::Cpu {
        p.total()
    } else {
        0
    }
}

/// An error and its causes on one line (`StoreError`'s message leaves SQLite's to
/// `source()`).
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

impl WindowWriter {
    /// A writer over `store`.
    #[must_use]
    pub(crate) fn new(store: Store) -> Self {
        WindowWriter {
            store,
            pending: VecDeque::new(),
            pending_bytes: 0,
            max_pending_bytes: PENDING_MAX_BYTES,
            counts: WriteCounts::default(),
            last_retention: Instant::now(),
            degraded: None,
        }
    }

    /// Counts so far.
    #[must_use]
    pub(crate) fn counts(&self) -> WriteCounts {
        WriteCounts {
            windows_pending: self.pending.len() as u64,
            ..self.counts
        }
    }

    /// Why the store does not take windows, or `None` when it does.
    #[must_use]
    pub(crate) fn degraded(&self) -> Option<&str> {
        self.degraded.as_deref()
    }

    /// The store's counters.
    #[must_use]
    pub(crate) fn store_stats(&self) -> profiler_store::StoreStats {
        self.store.stats()
    }

    /// Writes `window` after the ones waiting, or keeps it waiting.
    pub(crate) fn close(&mut self, window: Window, now_unix_ns: u64) {
        let bytes = estimate_bytes(&window.profile);
        self.pending_bytes += bytes;
        self.pending.push_back((window, bytes));
        let result = match self.flush() {
            Ok(()) => Ok(()),
            Err(e) => {
                debug!(error = %error_chain(&e), "write failed; running retention before a retry");
                self.retention(now_unix_ns);
                self.flush()
            }
        };
        match result {
            Ok(()) => {
                if let Some(reason) = self.degraded.take() {
                    info!(was = %reason, "the store takes windows again; every waiting window is written");
                }
            }
            Err(e) => self.failed(&e),
        }
        if self.last_retention.elapsed() >= RETENTION_INTERVAL {
            self.retention(now_unix_ns);
        }
    }

    /// A last try at the waiting windows; what is still waiting is lost.
    pub(crate) fn finish(mut self) -> WriteCounts {
        if let Err(e) = self.flush() {
            warn!(error = %error_chain(&e), "the last windows cannot be written");
        }
        while let Some((w, bytes)) = self.pending.pop_front() {
            self.lose(&w, bytes);
        }
        self.counts()
    }

    /// Writes waiting windows, oldest first, until one fails.
    fn flush(&mut self) -> Result<(), StoreError> {
        while let Some((w, bytes)) = self.pending.front() {
            let bytes = *bytes;
            match self.store.write_window(w) {
                Ok(id) => {
                    let samples = cpu_samples(&w.profile);
                    debug!(?id, samples, "window written");
                    self.counts.windows_written += 1;
                    self.counts.samples_written += samples;
                    self.pending_bytes -= bytes;
                    self.pending.pop_front();
                }
                // No retry makes it valid.
                Err(e @ StoreError::InvalidWindow { .. }) => {
                    self.counts.write_errors += 1;
                    warn!(error = %e, "a window is invalid and is dropped");
                    if let Some((w, bytes)) = self.pending.pop_front() {
                        self.lose(&w, bytes);
                    }
                }
                Err(e) => {
                    self.counts.write_errors += 1;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn lose(&mut self, w: &Window, bytes: u64) {
        self.counts.windows_lost += 1;
        self.counts.samples_lost += cpu_samples(&w.profile);
        self.pending_bytes = self.pending_bytes.saturating_sub(bytes);
    }

    /// Keeps the waiting windows within the memory bound and says why they wait.
    fn failed(&mut self, e: &StoreError) {
        while self.pending_bytes > self.max_pending_bytes && self.pending.len() > 1 {
            if let Some((w, bytes)) = self.pending.pop_front() {
                warn!(
                    start_unix_ns = w.start_unix_ns,
                    samples = w.profile.total(),
                    "the oldest waiting window is dropped: over the memory bound for windows the store did not take"
                );
                self.lose(&w, bytes);
            }
        }
        let cause = error_chain(e);
        let reason = format!(
            "{} closed windows not written, {} lost: {cause}",
            self.pending.len(),
            self.counts.windows_lost
        );
        warn!(
            error = %cause,
            waiting = self.pending.len(),
            lost = self.counts.windows_lost,
            "windows cannot be written to the store; keeping them in memory and retrying at each window"
        );
        self.degraded = Some(reason);
    }

    fn retention(&mut self, now_unix_ns: u64) {
        self.last_retention = Instant::now();
        match self.store.enforce_retention(now_unix_ns) {
            Ok(report) => debug!(?report, "retention"),
            Err(e) => warn!(error = %error_chain(&e), "retention failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use profiler_model::{Frame, FrameKind, Labels, ProfileMeta};
    use profiler_store::{Query, StoreConfig};

    use super::*;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_893_456_000 * S;

    fn window(i: u64) -> Window {
        let mut p = Profile::new(ProfileMeta {
            start_unix_ns: T0 + i * S,
            duration_ns: S,
            frequency_hz: 99,
            ..ProfileMeta::default()
        });
        let labels = Labels::new().with("comm", "fill");
        for j in 0..100 {
            let name = format!("fn_{i}_{j}_{}", "x".repeat(60));
            p.add(
                &labels,
                &[
                    Frame::named("main", FrameKind::User),
                    Frame::named(name, FrameKind::User),
                ],
                1,
            );
        }
        Window {
            start_unix_ns: T0 + i * S,
            end_unix_ns: T0 + (i + 1) * S,
            profile: p,
        }
    }

    struct Tmpfs(std::path::PathBuf);

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }

    fn fill(dir: &Path) -> std::path::PathBuf {
        use std::io::Write as _;
        let filler = dir.join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        while f.write_all(&[0; 16 * 1024]).is_ok() {}
        filler
    }

    /// Mounts a tmpfs of `size` in a scratch directory, or says why not (not root).
    fn small_tmpfs(test: &str, size: &str) -> Option<(tempfile::TempDir, Tmpfs)> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test} must run as root in CI"
            );
            // Straight to the terminal: the harness captures `eprintln!`, not `io::stderr()`.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("SKIPPED {test}: needs root to mount a small tmpfs\n").as_bytes(),
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mnt = dir.path().join("small");
        std::fs::create_dir(&mnt).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .status()
            .expect("mount");
        assert!(ok.success());
        Some((dir, Tmpfs(mnt)))
    }

    /// Issue 13 item 8, the probe's own case: `--store-max-size 1MiB` on a 2 MiB disk, the
    /// store's own growth (not another file) filling it. It never recovered: retention ran
    /// only after successful writes. Now the cap holds at every write, so the disk never
    /// fills and no window is lost.
    #[test]
    fn a_store_capped_below_its_disk_keeps_taking_windows() {
        let test = "a_store_capped_below_its_disk_keeps_taking_windows";
        let Some((_dir, tmpfs)) = small_tmpfs(test, "2m") else {
            return;
        };
        let config = StoreConfig::default()
            .with_downsample(None)
            .with_max_bytes(1 << 20);
        let store = Store::open(&tmpfs.0.join("d"), config).expect("open");
        let mut w = WindowWriter::new(store);
        // About 7 KiB of new names a window: 3 MiB in all, past both the cap and the disk.
        for i in 0..450 {
            w.close(window(i), T0 + i * S);
            assert!(w.degraded().is_none(), "window {i}: {:?}", w.degraded());
        }
        let c = w.finish();
        assert_eq!((c.windows_written, c.windows_lost), (450, 0), "{c:?}");
        let store =
            Store::open_read_only(&tmpfs.0.join("d"), StoreConfig::default()).expect("read");
        let tl = store.timeline(&Query::new(0, u64::MAX)).expect("timeline");
        // The newest windows are kept, the oldest gave way.
        assert_eq!(tl.last().map(|s| (s.start_unix_ns - T0) / S), Some(449));
        assert!(tl.len() < 450, "nothing gave way: {} windows", tl.len());
    }

    /// Issue 13 item 8 at the agent's writer: a full disk keeps windows waiting (in order,
    /// within the bound, the oldest dropped and counted past it), says why, and writes
    /// them all once space is back.
    #[test]
    fn a_full_disk_keeps_windows_waiting_within_a_bound_and_writes_them_in_order_later() {
        let test =
            "a_full_disk_keeps_windows_waiting_within_a_bound_and_writes_them_in_order_later";
        let Some((_dir, tmpfs)) = small_tmpfs(test, "1m") else {
            return;
        };
        let mnt = tmpfs.0.clone();
        let store = Store::open(&mnt.join("d"), StoreConfig::default().with_downsample(None))
            .expect("open");
        let mut w = WindowWriter::new(store);
        w.max_pending_bytes = 4 * estimate_bytes(&window(0).profile);
        w.close(window(0), T0);
        assert_eq!(w.counts().windows_written, 1);
        let filler = fill(&mnt);
        for i in 1..=8 {
            w.close(window(i), T0);
        }
        let c = w.counts();
        let reason = w.degraded().expect("degraded").to_owned();
        assert!(reason.contains("disk full"), "{reason}");
        assert!(c.windows_pending >= 1 && c.windows_pending <= 5, "{c:?}");
        assert_eq!(
            c.windows_written + c.windows_pending + c.windows_lost,
            9,
            "every window is written, waiting or counted lost: {c:?}"
        );
        assert!(c.windows_lost > 0, "the bound dropped the oldest: {c:?}");
        assert_eq!(c.samples_lost, 100 * c.windows_lost);
        std::fs::remove_file(filler).expect("free the space");
        w.close(window(9), T0);
        assert!(w.degraded().is_none());
        let c = w.finish();
        assert_eq!(c.windows_pending, 0);
        assert_eq!(c.windows_written + c.windows_lost, 10, "{c:?}");
        let store = Store::open_read_only(&mnt.join("d"), StoreConfig::default()).expect("read");
        let tl = store.timeline(&Query::new(0, u64::MAX)).expect("timeline");
        let starts: Vec<u64> = tl.iter().map(|s| (s.start_unix_ns - T0) / S).collect();
        // Written in the order they closed: ids grow with the start times.
        let ids: Vec<i64> = tl.iter().map(|s| s.id.0).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(ids, sorted, "{starts:?}");
        assert_eq!(starts.first(), Some(&0));
        assert_eq!(starts.last(), Some(&9));
        let lost = c.windows_lost;
        assert_eq!(starts.len() as u64, 10 - lost);
    }
}
