//! Budgets for the heavy queries (`/api/v1/profile`, `top`, `timeline`, `diff`, and the
//! UI's `flame`, `cpu`, `explore`), so a burst of them cannot take the node's CPUs and
//! memory or starve the light endpoints.
//!
//! - **Concurrency.** At most [`Limits::concurrent`] heavy queries run at once (half the
//!   CPUs, rounded up, by default: the agent is a guest on the node, and a light query
//!   needs a CPU the heavy ones leave free), and at most [`Limits::queued`] more wait for a
//!   slot; beyond that a query answers `503` with `Retry-After` at once.
//! - **Time.** A query that has not answered [`Limits::time_budget`] after it arrived
//!   (waiting included) answers `503`. The blocking work cannot be killed, so it keeps
//!   its slot until it notices: rendering checks the deadline on every write.
//! - **Size.** A merged profile of more than [`Limits::max_stacks`] distinct stacks, or an
//!   answer of more than [`Limits::max_output_bytes`], answers `413` asking for a narrower
//!   range or a filter.
//!
//! The light endpoints (`/healthz`, `/labels`, `/metrics`, the UI) never wait here. When
//! the last heavy query of a burst ends, [`ApiConfig::after_burst`](super::ApiConfig) runs
//! (the agent returns freed memory to the system there).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::error::ApiError;

/// The budgets; see the module docs.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Heavy queries running at once.
    pub concurrent: usize,
    /// Heavy queries waiting for a slot, beyond which one answers 503.
    pub queued: usize,
    /// Time from arrival to answer.
    pub time_budget: Duration,
    /// Distinct stacks one answer may merge.
    pub max_stacks: usize,
    /// Bytes one answer may have.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Limits {
            concurrent: cpus.div_ceil(2),
            queued: (4 * cpus).max(8),
            time_budget: Duration::from_secs(30),
            max_stacks: 500_000,
            max_output_bytes: 128 << 20,
        }
    }
}

/// A hook run when no heavy query is left running.
pub(crate) type Hook = Arc<dyn Fn() + Send + Sync>;

/// The shared state of the budgets.
pub(crate) struct Limiter {
    limits: Limits,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    running: Arc<AtomicUsize>,
    after_burst: Option<Hook>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A running heavy query's slot and budget; dropping it frees the slot.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    running: Arc<AtomicUsize>,
    after_burst: Option<Hook>,
    pub(crate) budget: Budget,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(hook) = &self.after_burst
        {
            hook();
        }
    }
}

/// What one heavy query may use.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    pub(crate) deadline: std::time::Instant,
    pub(crate) time: Duration,
    pub(crate) max_stacks: usize,
    pub(crate) max_output_bytes: usize,
}

impl Budget {
    /// 503 if the deadline has passed.
    pub(crate) fn check_time(&self) -> Result<(), ApiError> {
        if std::time::Instant::now() >= self.deadline {
            Err(ApiError::OverTime { budget: self.time })
        } else {
            Ok(())
        }
    }

    /// 413 if a merged profile has more stacks than the budget.
    pub(crate) fn check_stacks(&self, stacks: usize) -> Result<(), ApiError> {
        if stacks > self.max_stacks {
            Err(ApiError::TooLarge(format!(
                "the answer would merge {stacks} distinct stacks, more than the {} one query \
                 may: narrow the range (`from`, `to`) or add a `filter`",
                self.max_stacks
            )))
        } else {
            Ok(())
        }
    }
}

/// Decrements the waiting count however the wait ends (the client may go away).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limiter {
    pub(crate) fn new(limits: Limits, after_burst: Option<Hook>) -> Self {
        Limiter {
            slots: Arc::new(Semaphore::new(limits.concurrent.max(1))),
            limits,
            waiting: AtomicUsize::new(0),
            running: Arc::new(AtomicUsize::new(0)),
            after_burst,
        }
    }

    /// How long a client is told to wait before retrying.
    fn retry_after(&self) -> u64 {
        (self.limits.time_budget.as_secs() / 10).clamp(1, 10)
    }

    /// A slot for a heavy query that arrived now: at once, after waiting in the queue,
    /// or a 503 when the queue is full or the wait eats the whole budget.
    pub(crate) async fn acquire(&self) -> Result<Slot, ApiError> {
        let arrived = Instant::now();
        let deadline = arrived + self.limits.time_budget;
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.limits.queued {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(ApiError::Busy {
                        running: self.limits.concurrent,
                        queued: self.limits.queued,
                        retry_after_s: self.retry_after(),
                    });
                }
                let _waiting = Waiting(&self.waiting);
                match tokio::time::timeout_at(deadline, Arc::clone(&self.slots).acquire_owned())
                    .await
                {
                    Ok(Ok(p)) => p,
                    Ok(Err(_closed)) => {
                        return Err(ApiError::Internal("the query limiter is closed".into()));
                    }
                    Err(_elapsed) => {
                        return Err(ApiError::OverTime {
                            budget: self.limits.time_budget,
                        });
                    }
                }
            }
        };
        self.running.fetch_add(1, Ordering::AcqRel);
        Ok(Slot {
            _permit: permit,
            running: Arc::clone(&self.running),
            after_burst: self.after_burst.clone(),
            budget: Budget {
                deadline: deadline.into_std(),
                time: self.limits.time_budget,
                max_stacks: self.limits.max_stacks,
                max_output_bytes: self.limits.max_output_bytes,
            },
        })
    }

    /// Heavy queries running and waiting now.
    pub(crate) fn load(&self) -> (usize, usize) {
        (
            self.running.load(Ordering::Acquire),
            self.waiting.load(Ordering::Acquire),
        )
    }

    /// The tokio deadline of a slot's budget.
    pub(crate) fn deadline(slot: &Slot) -> Instant {
        Instant::from_std(slot.budget.deadline)
    }
}

/// What stopped a [`BudgetWriter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stopped {
    TooLarge,
    OverTime,
}

/// A `Vec` that refuses to grow past the byte budget or past the deadline, so a render
/// that would be too large or too late stops early instead of finishing for nobody.
pub(crate) struct BudgetWriter {
    pub(crate) out: Vec<u8>,
    budget: Budget,
    pub(crate) stopped: Option<Stopped>,
}

impl BudgetWriter {
    pub(crate) fn new(budget: Budget) -> Self {
        BudgetWriter {
            out: Vec::new(),
            budget,
            stopped: None,
        }
    }

    /// The error a stop answers with.
    pub(crate) fn error(&self) -> Option<ApiError> {
        self.stopped.map(|s| match s {
            Stopped::TooLarge => ApiError::TooLarge(format!(
                "the answer is larger than {} MiB: narrow the range (`from`, `to`), add a \
                 `filter`, or ask for an SVG with a `width`",
                self.budget.max_output_bytes >> 20
            )),
            Stopped::OverTime => ApiError::OverTime {
                budget: self.budget.time,
            },
        })
    }
}

impl io::Write for BudgetWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() + buf.len() > self.budget.max_output_bytes {
            self.stopped = Some(Stopped::TooLarge);
            return Err(io::Error::other("over the output budget"));
        }
        if std::time::Instant::now() >= self.budget.deadline {
            self.stopped = Some(Stopped::OverTime);
            return Err(io::Error::other("over the time budget"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
