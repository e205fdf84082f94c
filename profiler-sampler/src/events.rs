//! Process announcements from the eBPF program, turned into symbolizer captures before
//! short-lived processes vanish.
//!
//! The program puts a process's tgid into the `PROC_EVENTS` ring buffer on its first
//! sample (tracked in the `SEEN_TGIDS` LRU map) and on every exec (`ember_exec`, a
//! `sched/sched_process_exec` tracepoint). A thread started by [`ProcEvents::spawn`] sleeps
//! in `poll(2)` on the ring buffer, and for each announced process immediately takes a
//! [`ProcessCapture`] (its maps and the opened files of its executable mappings, about
//! 100 µs) and sends it down a channel. The aggregator adopts the captures before each
//! drain is symbolized (`Aggregator::follow_captures`), so a process that lived for 20 ms
//! is named from what was captured while it ran.
//!
//! Everything here is best effort: an object without these maps (an older build), a
//! failed attach or a full ring only means short-lived processes may stay unnamed, which
//! is logged once and counted in the symbolizer's stats.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aya::Ebpf;
use aya::maps::{MapData, RingBuf};
use profiler_common::python::{PY_EVENTS_MAP, PyStackEvent};
use symbolizer::{CapturedFiles, ProcessCapture};

use super::Sampler;
use super::python::PythonProcs;
use super::unwind::UnwindRequester;

/// Name of the ring buffer of announced tgids (`u32` records).
pub(crate) const PROC_EVENTS_MAP: &str = "PROC_EVENTS";

/// The ring buffer of process announcements, before its reader thread starts.
pub struct ProcEvents {
    ring: RingBuf<MapData>,
    /// The Python walker's new stacks, and the registry that names them.
    python: Option<(RingBuf<MapData>, Arc<PythonProcs>)>,
}

impl std::fmt::Debug for ProcEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcEvents").finish_non_exhaustive()
    }
}

/// Takes the ring buffer (the loader attaches the exec tracepoint that also feeds it);
/// `None` (logged) if the object has none.
pub(super) fn setup(ebpf: &mut Ebpf, python: Option<Arc<PythonProcs>>) -> Option<ProcEvents> {
    let Some(map) = ebpf.take_map(PROC_EVENTS_MAP) else {
        tracing::warn!(
            "the eBPF object has no `{PROC_EVENTS_MAP}` map: short-lived processes may stay unnamed"
        );
        return None;
    };
    let ring = match RingBuf::try_from(map) {
        Ok(ring) => ring,
        Err(err) => {
            tracing::warn!(error = %err, "`{PROC_EVENTS_MAP}` is not a ring buffer");
            return None;
        }
    };
    let python = python.and_then(|procs| {
        let map = ebpf.take_map(PY_EVENTS_MAP)?;
        match RingBuf::try_from(map) {
            Ok(ring) => Some((ring, procs)),
            Err(err) => {
                tracing::warn!(error = %err, "`{PY_EVENTS_MAP}` is not a ring buffer");
                None
            }
        }
    });
    Some(ProcEvents { ring, python })
}

impl Sampler {
    /// The process announcements, once: start their capture thread with
    /// [`ProcEvents::spawn`].
    pub fn take_proc_events(&mut self) -> Option<ProcEvents> {
        self.proc_events.take()
    }

    /// Starts capturing announced processes (see the module documentation); `None`,
    /// logged, when that is not possible, or when the environment variable
    /// `EMBER_CAPTURES=off` asks not to (for measuring what captures are worth).
    pub fn start_captures(&mut self) -> Option<CaptureFeed> {
        if std::env::var_os("EMBER_CAPTURES").is_some_and(|v| v == "off") {
            tracing::info!("EMBER_CAPTURES=off: short-lived processes are not captured");
            return None;
        }
        let unwind = self
            .unwind
            .as_ref()
            .and_then(super::unwind::UnwindWorker::requester);
        match self.take_proc_events()?.spawn(unwind) {
            Ok(feed) => Some(feed),
            Err(err) => {
                tracing::warn!(error = %err, "cannot start the capture thread: short-lived processes may stay unnamed");
                None
            }
        }
    }
}

/// Executable mappings a process has while its dynamic loader runs, before it maps the
/// first library: the executable's code, the loader's and the vDSO.
const LOADER_EXEC_MAPPINGS: usize = 3;

/// Delays after an announcement at which a process is captured again, if it still lives:
/// a process announced at exec, or sampled while still in its dynamic loader, maps its
/// libraries a millisecond or so later. A follow-up is only sent on when the process has
/// more executable mappings than at its previous capture, and the chain ends at one that
/// finds nothing new once the process maps more than [`LOADER_EXEC_MAPPINGS`].
const FOLLOW_UPS: [Duration; 3] = [
    Duration::from_millis(2),
    Duration::from_millis(8),
    Duration::from_millis(30),
];

/// Names the code objects of every new Python stack in the ring.
fn drain_python(ring: &mut RingBuf<MapData>, procs: &PythonProcs) {
    while let Some(item) = ring.next() {
        if item.len() < std::mem::size_of::<PyStackEvent>() {
            continue;
        }
        // SAFETY: the record holds a whole `PyStackEvent` (checked above), a plain-integer
        // type for which every bit pattern is valid; read unaligned.
        let event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<PyStackEvent>()) };
        procs.name_event(&event);
    }
}

/// What a new capture (an announcement, or a follow-up with more mappings) sets off at
/// once: the Python check of the process, and its unwind tables.
fn act_on(
    capture: &ProcessCapture,
    maps: String,
    python: Option<&PythonProcs>,
    unwind: Option<&UnwindRequester>,
) {
    if let Some(procs) = python {
        procs.check(capture.pid(), capture.mapped_paths());
    }
    if let Some(u) = unwind {
        u.ensure_with_maps(capture.pid(), maps);
    }
}

fn capture_loop(
    ring: &mut RingBuf<MapData>,
    mut python: Option<(RingBuf<MapData>, Arc<PythonProcs>)>,
    tx: &Sender<ProcessCapture>,
    unwind: Option<&UnwindRequester>,
    stop: &StopSignal,
) {
    let fd = ring.as_raw_fd();
    // With the stop's eventfd to wake it, an idle loop sleeps until something happens
    // (ten wake-ups a second were a fifth of a quiet recording's steady-state CPU);
    // without one it looks at the stop flag every 100 ms.
    let idle = if stop.fd.is_some() {
        Duration::from_secs(5)
    } else {
        Duration::from_millis(100)
    };
    let stop_fd = stop.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    let py_fd = python.as_ref().map_or(-1, |(r, _)| r.as_raw_fd());
    // (due, pid, follow-up index, exec mappings at the last capture sent)
    let mut pending: Vec<(Instant, u32, usize, usize)> = Vec::new();
    // Files opened for one capture, shared with the next captures that map them.
    let mut recent = CapturedFiles::default();
    while !stop.flag.load(Ordering::Relaxed) {
        let now = Instant::now();
        let timeout = pending
            .iter()
            .map(|p| p.0.saturating_duration_since(now))
            .min()
            .unwrap_or(idle)
            .min(idle);
        let mut pfds = [
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
            // A negative fd is ignored by poll.
            libc::pollfd {
                fd: py_fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop_fd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Rounded up: a follow-up due in 0.9 ms made a 0 ms poll, and the thread spun
        // until it was due (on a busy node a sixth of the agent's CPU was in `poll`).
        let timeout_ms = i32::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(100);
        // SAFETY: three valid pollfds for the duration of the call.
        let ready = unsafe { libc::poll(pfds.as_mut_ptr(), 3, timeout_ms) };
        if ready < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                tracing::warn!(error = %err, "polling process announcements failed; captures stop");
                return;
            }
        }
        let mut announced = Vec::new();
        while let Some(item) = ring.next() {
            if let Some(bytes) = item.get(..4) {
                let mut raw = [0; 4];
                raw.copy_from_slice(bytes);
                announced.push(u32::from_ne_bytes(raw));
            }
        }
        let now = Instant::now();
        for pid in announced {
            pending.retain(|p| p.1 != pid);
            match ProcessCapture::take_with(pid, &mut recent) {
                Ok((capture, maps)) => {
                    act_on(&capture, maps, python.as_ref().map(|(_, p)| &**p), unwind);
                    pending.push((now + FOLLOW_UPS[0], pid, 0, capture.exec_mappings()));
                    if tx.send(capture).is_err() {
                        return;
                    }
                }
                Err(err) => {
                    tracing::trace!(pid, error = %err, "process gone before capture");
                }
            }
        }
        if let Some((ring, procs)) = python.as_mut() {
            drain_python(ring, procs);
        }
        let mut i = 0;
        while i < pending.len() {
            let (due, pid, step, seen) = pending[i];
            if due > now {
                i += 1;
                continue;
            }
            pending.swap_remove(i);
            let Ok((capture, maps)) = ProcessCapture::take_with(pid, &mut recent) else {
                continue;
            };
            let exec = capture.exec_mappings();
            // A process past its dynamic loader that mapped nothing new since the last
            // capture is done: its later follow-ups would read the same maps again (a
            // Chromium process's run to thousands of lines; its forked children are
            // announced with everything mapped already).
            let done = exec <= seen && seen > LOADER_EXEC_MAPPINGS;
            if let Some(delay) = FOLLOW_UPS.get(step + 1).filter(|_| !done) {
                pending.push((now + *delay, pid, step + 1, exec.max(seen)));
            }
            if exec > seen {
                act_on(&capture, maps, python.as_ref().map(|(_, p)| &**p), unwind);
                if tx.send(capture).is_err() {
                    return;
                }
            }
        }
    }
}

/// How the capture thread is told to stop: a flag, and an eventfd (when the kernel gave
/// one) that wakes its `poll` at once.
#[derive(Debug)]
struct StopSignal {
    flag: AtomicBool,
    fd: Option<std::os::fd::OwnedFd>,
}

impl StopSignal {
    fn new() -> StopSignal {
        // SAFETY: eventfd(2) with valid flags; a non-negative result is a new fd we own.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        let fd = (raw >= 0).then(|| {
            // SAFETY: `raw` is an open fd nothing else owns.
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) }
        });
        StopSignal {
            flag: AtomicBool::new(false),
            fd,
        }
    }

    fn raise(&self) {
        self.flag.store(true, Ordering::Relaxed);
        if let Some(fd) = &self.fd {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
            let _ = unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), 8) };
        }
    }
}

/// Captures flowing from the capture thread; stops and joins it when dropped.
#[derive(Debug)]
pub struct CaptureFeed {
    /// Captures in the order they were taken.
    pub captures: Receiver<ProcessCapture>,
    stop: Arc<StopSignal>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for CaptureFeed {
    fn drop(&mut self) {
        self.stop.raise();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl ProcEvents {
    /// Starts the thread that captures every announced process, and asks `unwind` (the
    /// table unwinder, if any) to load the process's tables at the same moment.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn spawn(self, unwind: Option<UnwindRequester>) -> std::io::Result<CaptureFeed> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(StopSignal::new());
        let stop_thread = Arc::clone(&stop);
        let mut ring = self.ring;
        let python = self.python;
        let handle = std::thread::Builder::new()
            .name("ember-capture".into())
            .spawn(move || capture_loop(&mut ring, python, &tx, unwind.as_ref(), &stop_thread))?;
        Ok(CaptureFeed {
            captures: rx,
            stop,
            handle: Some(handle),
        })
    }
}
