//! The one way the symbolizer opens a file on behalf of another process: a perf map in a
//! process's `/tmp`, a debug file under its root or next to its binary, a binary reached
//! through `/proc/PID/root`, and anything read for a process later (JIT dumps).
//!
//! Ember runs as root, and every such path is chosen, in part or whole, by the process's
//! user: the perf map `/tmp/perf-PID.map` can be a FIFO (an `open` that never returns), a
//! 1 GiB sparse file (no disk, a gigabyte of memory), or a symlink to `/etc/shadow`. So:
//!
//! - The path is resolved **beneath** a root directory with `openat2`
//!   (`RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`): no symlink is
//!   followed on any component, and `..` cannot climb out. The root is `/proc/PID/root`
//!   (itself a magic link, opened as a directory and followed, which is what enters a
//!   container's mount namespace) or the host's `/`. Without `openat2` (kernels before 5.6,
//!   seccomp filters) the path is walked one component at a time with `O_NOFOLLOW`, which
//!   refuses the same symlinks.
//! - The last component is opened `O_PATH`, so nothing is actually opened (no FIFO
//!   rendezvous, no device side effects) until `fstat` has shown a **regular file** owned
//!   by **one of the process's uids** (`Uid:` of `/proc/PID/status`) **or root**. Only then
//!   is it reopened for reading, `O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY`.
//! - Contents are read with a **size cap** ([`PERF_MAP_MAX_BYTES`], [`DEBUG_FILE_MAX_BYTES`]),
//!   checked on the size `fstat` reports before a byte is read, and again while reading.
//! - Reads run on a [`Worker`] thread, and the caller waits for at most [`READ_WAIT`] (a
//!   perf map) or `BINARY_WAIT` (a binary with its debug file, `binary.rs`): a
//!   file on a slow or hung FUSE mount costs the drain thread that long once, after which
//!   its result is picked up whenever it arrives. At most [`MAX_STALLED`] reads may be
//!   outstanding; beyond that, reads are refused until one returns.
//! - Everything refused is counted ([`Refused`], exported in [`Stats::files_refused`]) and
//!   logged once per process, with the pid, the path and why ([`Refusals`]).
//!
//! - A file whose path inside a container runs through links as a matter of course (a
//!   container's host name, its service-account files) is found with [`find_in_root`]:
//!   the links are followed, but inside the process's root, as the process would follow
//!   them, and the rest of the checks are the same. Other crates (the sampler's pod names)
//!   read such files through [`RootFiles`], which runs them on a [`Worker`] with a time
//!   bound and counts and logs refusals.
//!
//! Files the agent's operator chose (the configured debug directories on the host, kallsyms)
//! are trusted and may be symlinks (Fedora's `.build-id` links are); they are still opened
//! non-blocking and must be regular files ([`open_trusted`]).
//!
//! [`Stats::files_refused`]: crate::Stats::files_refused

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path};
use std::sync::mpsc;
use std::time::Duration;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The largest perf map read, 64 MiB. Node.js with `--perf-basic-prof` writes about 100
/// bytes per compiled function, so this is over half a million functions; a bigger file is
/// refused once (per size and modification time) and its process's JIT frames stay unnamed.
pub(crate) const PERF_MAP_MAX_BYTES: u64 = 64 << 20;

/// The largest separate debug file accepted, 4 GiB. Debug files are mapped, not read, but
/// one found through `.gnu_debuglink` is checksummed in full, and the cache charges its
/// size; the debug info of the largest binaries (browsers) stays below this.
pub(crate) const DEBUG_FILE_MAX_BYTES: u64 = 4 << 30;

/// How long a caller waits for a read on the [`Worker`]; a local file is read in a few
/// milliseconds, so only a stalled file system makes anyone wait this long.
pub(crate) const READ_WAIT: Duration = Duration::from_millis(250);

/// Reads that may still be running after [`READ_WAIT`]; each holds a thread.
pub(crate) const MAX_STALLED: usize = 4;

/// Where a path is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Root {
    /// Beneath the root directory of process `pid`, `/proc/PID/root`.
    Process(u32),
    /// Beneath the host's `/`.
    Host,
}

/// Who may own a file read for a process: any of its uids, or root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owners([u32; 4]);

impl Owners {
    /// Root only: for a process whose uids could not be read (it exited).
    pub(crate) const ROOT: Owners = Owners([0; 4]);

    /// The real, effective, saved and file-system uids of process `pid`, from the `Uid:`
    /// line of `/proc/PID/status` (in the agent's user namespace, as `fstat` reports
    /// owners).
    pub(crate) fn of(pid: u32) -> io::Result<Owners> {
        crate::procfs::Procfs::default()
            .status(pid)?
            .uids
            .map(Owners)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no `Uid:` line"))
    }

    /// These uids (real, effective, saved, file-system) or root.
    pub(crate) fn from_uids(uids: [u32; 4]) -> Owners {
        Owners(uids)
    }

    fn allows(self, uid: u32) -> bool {
        uid == 0 || self.0.contains(&uid)
    }
}

/// Why a file was not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A component of the path, or the file itself, is a symbolic link.
    Symlink,
    /// The file is not a regular file (a FIFO, socket, device or directory).
    NotRegular(&'static str),
    /// The file is owned by a user other than the process's and root.
    Owner(u32),
    /// The file is larger than the cap for its kind.
    TooLarge {
        /// Its size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// Reading it took longer than the wait given (e.g. [`READ_WAIT`]); it is still being
    /// read, and used when it arrives.
    TimedOut(Duration),
    /// [`MAX_STALLED`] reads are still running; nothing more is read until one returns.
    Busy,
}

impl Refusal {
    fn from_mode(ft: std::fs::FileType) -> Option<Refusal> {
        if ft.is_file() {
            None
        } else if ft.is_symlink() {
            Some(Refusal::Symlink)
        } else {
            Some(Refusal::NotRegular(if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_dir() {
                "a directory"
            } else {
                "a device"
            }))
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Symlink => f.write_str("it is reached through a symbolic link"),
            Refusal::NotRegular(kind) => write!(f, "it is {kind}, not a regular file"),
            Refusal::Owner(uid) => {
                write!(
                    f,
                    "it is owned by uid {uid}, neither the process's user nor root"
                )
            }
            Refusal::TooLarge { size, cap } => {
                write!(f, "it is {size} bytes, over the {cap}-byte cap")
            }
            Refusal::TimedOut(wait) => write!(
                f,
                "reading it took over {} ms; it is used if the read ever completes",
                wait.as_millis()
            ),
            Refusal::Busy => write!(
                f,
                "{MAX_STALLED} earlier reads are still stalled; nothing more is read until one returns"
            ),
        }
    }
}

/// Counts of refused files, by reason; part of [`Stats`](crate::Stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refused {
    /// A symbolic link on the path, or the file itself one.
    pub symlink: u64,
    /// Not a regular file (FIFO, socket, device, directory).
    pub not_regular: u64,
    /// Owned by neither the process's user nor root.
    pub wrong_owner: u64,
    /// Over the size cap of its kind.
    pub too_large: u64,
    /// Still being read after the time bound (and used when the read completes).
    pub timed_out: u64,
    /// Not read because too many earlier reads were stalled.
    pub busy: u64,
}

impl Refused {
    /// Every count with its reason's name (`symlink`, `not_regular`, `wrong_owner`,
    /// `too_large`, `timed_out`, `busy`), for a labelled metric.
    #[must_use]
    pub fn by_reason(&self) -> [(&'static str, u64); 6] {
        [
            ("symlink", self.symlink),
            ("not_regular", self.not_regular),
            ("wrong_owner", self.wrong_owner),
            ("too_large", self.too_large),
            ("timed_out", self.timed_out),
            ("busy", self.busy),
        ]
    }

    /// The sum over all reasons.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.by_reason().iter().map(|(_, n)| n).sum()
    }

    fn add(&mut self, refusal: &Refusal) {
        let count = match refusal {
            Refusal::Symlink => &mut self.symlink,
            Refusal::NotRegular(_) => &mut self.not_regular,
            Refusal::Owner(_) => &mut self.wrong_owner,
            Refusal::TooLarge { .. } => &mut self.too_large,
            Refusal::TimedOut(_) => &mut self.timed_out,
            Refusal::Busy => &mut self.busy,
        };
        *count += 1;
    }
}

/// Refusals met where [`Refusals`] is not at hand (on a [`Worker`] thread), to be
/// [recorded](Refusals::record_all) by the thread that owns it.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog(Vec<(Option<u32>, std::path::PathBuf, Refusal)>);

impl RefusalLog {
    /// Notes that `path`, opened for process `pid`, was refused.
    pub(crate) fn record(&mut self, pid: Option<u32>, path: &Path, refusal: &Refusal) {
        self.0.push((pid, path.to_owned(), refusal.clone()));
    }

    /// The refusals noted, in order.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[(Option<u32>, std::path::PathBuf, Refusal)] {
        &self.0
    }
}

/// Counts refusals and logs the first one of each process.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    pub(crate) counts: Refused,
    warned: HashSet<u32>,
    warned_host: bool,
}

impl Refusals {
    /// Bound on the processes remembered as warned about (then it starts over).
    const MAX_WARNED: usize = 65_536;

    /// Records that `path`, opened for process `pid` (`None`: for no process in
    /// particular), was refused.
    pub(crate) fn record(&mut self, pid: Option<u32>, path: &Path, refusal: &Refusal) {
        self.counts.add(refusal);
        let first = match pid {
            Some(pid) => {
                if self.warned.len() >= Self::MAX_WARNED {
                    self.warned.clear();
                }
                self.warned.insert(pid)
            }
            None => !std::mem::replace(&mut self.warned_host, true),
        };
        if first {
            tracing::warn!(
                pid,
                path = %path.display(),
                reason = %refusal,
                "refused to read a file on behalf of a process (further refusals for it are only counted)"
            );
        } else {
            tracing::debug!(pid, path = %path.display(), reason = %refusal, "refused to read a file on behalf of a process");
        }
    }

    /// Records the refusals of a [`RefusalLog`], as if each had been recorded here.
    pub(crate) fn record_all(&mut self, log: RefusalLog) {
        for (pid, path, refusal) in log.0 {
            self.record(pid, &path, &refusal);
        }
    }

    /// Forgets that process `pid` was warned about (its pid may be reused).
    pub(crate) fn forget(&mut self, pid: u32) {
        self.warned.remove(&pid);
    }
}

/// Why a file could not be used.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// It is not there, or not accessible: nothing hostile, nothing counted.
    Missing(io::Error),
    /// It is there and was refused.
    Refused(Refusal),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Missing(err) => write!(f, "{err}"),
            OpenError::Refused(refusal) => write!(f, "refused: {refusal}"),
        }
    }
}

impl From<io::Error> for OpenError {
    fn from(err: io::Error) -> Self {
        if err.raw_os_error() == Some(libc::ELOOP) {
            OpenError::Refused(Refusal::Symlink)
        } else {
            OpenError::Missing(err)
        }
    }
}

impl From<Errno> for OpenError {
    fn from(errno: Errno) -> Self {
        io::Error::from(errno).into()
    }
}

/// What identifies a version of a file: if none of these changed, neither did the file
/// (for files that are appended to or rewritten, as perf maps are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    pub(crate) fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// A file found and checked, not yet opened for reading.
#[derive(Debug)]
pub(crate) struct Found {
    path_fd: File,
    /// What `fstat` said about it.
    pub(crate) meta: Metadata,
}

impl Found {
    /// Opens it for reading, non-blocking, through `/proc/self/fd` (which reopens the very
    /// inode that was checked).
    pub(crate) fn open(&self) -> Result<File, OpenError> {
        let fd = rustix::fs::open(
            format!("/proc/self/fd/{}", self.path_fd.as_raw_fd()),
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )?;
        let file = File::from(fd);
        let meta = file.metadata()?;
        if meta.dev() != self.meta.dev() || meta.ino() != self.meta.ino() {
            return Err(OpenError::Missing(io::Error::other(
                "the file changed while it was opened",
            )));
        }
        if let Some(refusal) = Refusal::from_mode(meta.file_type()) {
            return Err(OpenError::Refused(refusal));
        }
        Ok(file)
    }
}

/// Finds `path` (absolute, as the process sees it) beneath `root` without following any
/// symlink, and checks it is a regular file owned by `owners` (`None`: by anyone; for
/// files identified otherwise, as binaries are by device and inode).
pub(crate) fn find(root: Root, path: &Path, owners: Option<Owners>) -> Result<Found, OpenError> {
    let rel = relative(path)?;
    let dir = open_root(root)?;
    let fd = match beneath(&dir, &rel) {
        Err(errno) if [Errno::NOSYS, Errno::PERM, Errno::INVAL].contains(&errno) => {
            walk(dir, &rel)?
        }
        other => other?,
    };
    check(File::from(fd), owners)
}

/// [`find`] and [`Found::open`] in one.
pub(crate) fn open(root: Root, path: &Path, owners: Option<Owners>) -> Result<File, OpenError> {
    find(root, path, owners)?.open()
}

/// Opens a path the operator chose (a configured debug directory on the host): symlinks
/// are followed, but it is opened non-blocking and must be a regular file.
pub(crate) fn open_trusted(path: &Path) -> Result<File, OpenError> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    if let Some(refusal) = Refusal::from_mode(meta.file_type()) {
        return Err(OpenError::Refused(refusal));
    }
    Ok(file)
}

/// Opens a magic link of procfs that must be followed (`/proc/PID/map_files/…`): it is
/// the kernel's own reference to a file, but that file may still be a device; so it is
/// opened non-blocking and must be a regular file.
pub(crate) fn open_magic_link(path: &Path) -> Result<File, OpenError> {
    open_trusted(path)
}

/// Reads all of `file`, refusing it if it is (or grows) larger than `cap` bytes.
pub(crate) fn read_capped(file: &File, cap: u64) -> Result<Vec<u8>, OpenError> {
    let size = file.metadata()?.size();
    if size > cap {
        return Err(OpenError::Refused(Refusal::TooLarge { size, cap }));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let read = file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if read as u64 > cap {
        return Err(OpenError::Refused(Refusal::TooLarge {
            size: read as u64,
            cap,
        }));
    }
    Ok(bytes)
}

/// Whether process `pid` has the same root directory as the agent (so paths beneath its
/// root are the host's).
pub(crate) fn shares_our_root(pid: u32) -> bool {
    let theirs = std::fs::metadata(format!("/proc/{pid}/root"));
    let ours = std::fs::metadata("/");
    matches!((theirs, ours), (Ok(a), Ok(b)) if a.dev() == b.dev() && a.ino() == b.ino())
}

/// `path` without its leading `/`, made only of normal components.
fn relative(path: &Path) -> Result<std::path::PathBuf, OpenError> {
    let mut rel = std::path::PathBuf::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => rel.push(name),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(OpenError::Missing(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "`..` in a path opened for a process",
                )));
            }
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(OpenError::Missing(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty path",
        )));
    }
    Ok(rel)
}

fn open_root(root: Root) -> Result<OwnedFd, OpenError> {
    let path = match root {
        Root::Process(pid) => format!("/proc/{pid}/root"),
        Root::Host => "/".to_owned(),
    };
    // `/proc/PID/root` is a magic link: following it is what enters the process's mount
    // namespace and root, beneath which everything else is resolved.
    Ok(rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The last component opened `O_PATH`: a symlink there is returned as itself (and refused
/// by [`check`]), nothing is opened for real.
const LAST: OFlags = OFlags::PATH.union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

fn beneath(dir: &OwnedFd, rel: &Path) -> Result<OwnedFd, Errno> {
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let mut attempts = 0;
    loop {
        match rustix::fs::openat2(dir, rel, LAST, Mode::empty(), resolve) {
            // A concurrent rename anywhere on the system; the kernel asks to retry.
            Err(Errno::AGAIN) if attempts < 8 => attempts += 1,
            other => return other,
        }
    }
}

/// The fallback of [`beneath`]: one component at a time, each opened `O_NOFOLLOW`.
fn walk(dir: OwnedFd, rel: &Path) -> Result<OwnedFd, OpenError> {
    let components: Vec<&OsStr> = rel.iter().collect();
    let mut current = dir;
    for (i, name) in components.iter().enumerate() {
        let fd = rustix::fs::openat(&current, *name, LAST, Mode::empty())?;
        if i + 1 < components.len() {
            let stat = rustix::fs::fstat(&fd)?;
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {}
                FileType::Symlink => return Err(OpenError::Refused(Refusal::Symlink)),
                _ => return Err(io::Error::from_raw_os_error(libc::ENOTDIR).into()),
            }
        }
        current = fd;
    }
    Ok(current)
}

fn check(path_fd: File, owners: Option<Owners>) -> Result<Found, OpenError> {
    let meta = path_fd.metadata()?;
    if let Some(refusal) = Refusal::from_mode(meta.file_type()) {
        return Err(OpenError::Refused(refusal));
    }
    if let Some(owners) = owners
        && !owners.allows(meta.uid())
    {
        return Err(OpenError::Refused(Refusal::Owner(meta.uid())));
    }
    Ok(Found { path_fd, meta })
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread of a [`Worker`].
#[derive(Debug)]
struct Thread {
    jobs: mpsc::Sender<Job>,
}

impl Thread {
    fn spawn(name: &str) -> io::Result<Thread> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // Ends when the worker drops its sender: when it is dropped itself, or
                // gave up on this thread's last job and that job finished.
                while let Ok(job) = queue.recv() {
                    job();
                }
            })?;
        Ok(Thread { jobs })
    }
}

/// What became of a job given to [`Worker::run`].
#[derive(Debug)]
pub(crate) enum Run<R> {
    /// It finished within the wait.
    Done(R),
    /// It is still running; its result comes out of [`Worker::late`] once it finishes.
    Late,
    /// It was not started: [`MAX_STALLED`] jobs are still running.
    Busy,
    /// It could not be run (no thread could be started), or it panicked.
    Failed,
}

/// Runs jobs (reads of untrusted files) on a thread of its own, waiting for each a bounded
/// time: the thread that owns the worker (the agent's drain thread) is never blocked for
/// longer than the wait, whatever the file system does.
///
/// One job runs at a time on the worker's thread. When a job outlives its wait, its thread
/// is set aside (it finishes the job, hands the result over, and exits) and the next job
/// gets a fresh thread; at most [`MAX_STALLED`] are set aside at once.
pub(crate) struct Worker<K, R> {
    name: &'static str,
    idle: Option<Thread>,
    stalled: Vec<(K, Thread, mpsc::Receiver<R>)>,
}

impl<K, R> fmt::Debug for Worker<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("stalled", &self.stalled.len())
            .finish_non_exhaustive()
    }
}

impl<K: Copy + PartialEq, R: Send + 'static> Worker<K, R> {
    /// A worker whose threads are called `name`; no thread is started until the first job.
    pub(crate) fn new(name: &'static str) -> Self {
        Worker {
            name,
            idle: None,
            stalled: Vec::new(),
        }
    }

    /// Runs `job` for `key`, waiting at most `wait` for it.
    pub(crate) fn run(
        &mut self,
        key: K,
        job: impl FnOnce() -> R + Send + 'static,
        wait: Duration,
    ) -> Run<R> {
        if self.stalled.len() >= MAX_STALLED {
            return Run::Busy;
        }
        let thread = match self.idle.take() {
            Some(thread) => thread,
            None => match Thread::spawn(self.name) {
                Ok(thread) => thread,
                Err(err) => {
                    tracing::debug!(error = %err, "cannot start a reader thread");
                    return Run::Failed;
                }
            },
        };
        let (done, result) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = done.send(job());
        });
        if thread.jobs.send(job).is_err() {
            // The thread is gone (a job panicked); the next run starts another.
            return Run::Failed;
        }
        match result.recv_timeout(wait) {
            Ok(r) => {
                self.idle = Some(thread);
                Run::Done(r)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.stalled.push((key, thread, result));
                Run::Late
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Run::Failed,
        }
    }

    /// Whether a job for `key` is still running after its wait.
    pub(crate) fn is_running(&self, key: K) -> bool {
        self.stalled.iter().any(|(k, _, _)| *k == key)
    }

    /// Jobs still running after their wait.
    #[cfg(test)]
    pub(crate) fn stalled(&self) -> usize {
        self.stalled.len()
    }

    /// The results of jobs that outlived their wait and have finished since.
    pub(crate) fn late(&mut self) -> Vec<(K, R)> {
        let mut out = Vec::new();
        self.stalled
            .retain(|(key, _, result)| match result.try_recv() {
                Ok(r) => {
                    out.push((*key, r));
                    false
                }
                Err(mpsc::TryRecvError::Empty) => true,
                Err(mpsc::TryRecvError::Disconnected) => false,
            });
        out
    }
}

/// Symbolic links followed at most while resolving one path inside a root (as the kernel's
/// own limit).
const MAX_LINKS: usize = 40;

/// Finds `path` (absolute, as the process sees it) inside the directory `root_dir` (its
/// root, `/proc/PID/root`, followed as the magic link it is) the way the process itself
/// would: symbolic links on the way are followed, but **inside the root**, an absolute
/// target starting again at `root_dir` and `..` stopping there, so no link can lead out
/// of it; procfs magic links are refused. Then it must be a regular file owned by
/// `owners`, as for [`find`].
///
/// For files whose place inside a container is reached through links as a matter of
/// course (`/var/run` → `/run`, the `..data` links of a Kubernetes projected volume). The
/// kernel resolves the whole path at once (`openat2` with `RESOLVE_IN_ROOT`), so a link
/// swapped in meanwhile can change which of the container's files is found, never make it
/// one outside the container. Without `openat2` the path is walked one component at a
/// time from directory descriptors, each opened `O_NOFOLLOW`, and each link read and
/// resolved by hand with the same rules.
pub(crate) fn find_in_root(
    root_dir: &Path,
    path: &Path,
    owners: Option<Owners>,
) -> Result<Found, OpenError> {
    let rel = relative(path)?;
    let dir = rustix::fs::open(
        root_dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let mut attempts = 0;
    let fd = loop {
        match rustix::fs::openat2(&dir, &rel, FOLLOW, Mode::empty(), resolve) {
            // A concurrent rename anywhere on the system; the kernel asks to retry.
            Err(Errno::AGAIN) if attempts < 8 => attempts += 1,
            Err(errno) if [Errno::NOSYS, Errno::PERM, Errno::INVAL].contains(&errno) => {
                break walk_in_root(dir, &rel)?;
            }
            other => break other?,
        }
    };
    check(File::from(fd), owners)
}

/// The last component of [`find_in_root`], opened `O_PATH` (nothing is opened for real)
/// with a final link followed, beneath the root.
const FOLLOW: OFlags = OFlags::PATH.union(OFlags::CLOEXEC);

/// The fallback of [`find_in_root`]: one component at a time from directory descriptors,
/// links read and resolved by hand inside the root.
fn walk_in_root(root: OwnedFd, rel: &Path) -> Result<OwnedFd, OpenError> {
    // Directories from the root down; the root itself is never popped.
    let mut dirs: Vec<OwnedFd> = vec![root];
    let mut pending: Vec<std::ffi::OsString> = rel.iter().rev().map(OsStr::to_owned).collect();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            if dirs.len() > 1 {
                dirs.pop();
            }
            continue;
        }
        if name == "." {
            continue;
        }
        let parent = dirs.last().expect("the root is never popped");
        let fd = rustix::fs::openat(parent, &name, LAST, Mode::empty())?;
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
        if kind == FileType::Symlink {
            links += 1;
            if links > MAX_LINKS {
                return Err(OpenError::Refused(Refusal::Symlink));
            }
            let target = rustix::fs::readlinkat(parent, &name, Vec::new())?;
            let target = Path::new(OsStr::from_bytes(target.as_bytes())).to_owned();
            if target.is_absolute() {
                dirs.truncate(1);
            }
            pending.extend(target.components().rev().filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_owned()),
                Component::ParentDir => Some(OsStr::new("..").to_owned()),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
            }));
            continue;
        }
        if pending.is_empty() {
            return Ok(fd);
        }
        if kind != FileType::Directory {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR).into());
        }
        dirs.push(fd);
    }
    // The path ended in `..` or a link to a directory: not a file.
    let dir = dirs.pop().expect("the root is never popped");
    Ok(dir)
}

/// Reads small files inside other processes' roots, for crates other than the symbolizer
/// (the sampler reads a container's host name and service-account namespace): every file
/// goes through the same checks as the symbolizer's own (`find_in_root`: links followed
/// only inside the process's root, a regular file owned by one of its uids or root, opened
/// non-blocking, a size cap), on a `Worker` thread, so the caller waits at most the
/// wait given; what is refused is counted ([`RootFiles::refused`]) and logged once per
/// process.
///
/// Each job gets a [`ProcessRoot`] to read its files through; a job that outlives the
/// wait is counted as `timed_out`, and its result comes out of [`RootFiles::late`] once it
/// finishes.
pub struct RootFiles<K, R> {
    worker: Worker<K, (R, RefusalLog)>,
    refusals: Refusals,
    wait: Duration,
}

impl<K, R> fmt::Debug for RootFiles<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootFiles")
            .field("worker", &self.worker)
            .field("refused", &self.refusals.counts)
            .field("wait", &self.wait)
            .finish()
    }
}

/// One process's root, handed to a [`RootFiles`] job to read files beneath.
#[derive(Debug)]
pub struct ProcessRoot {
    pid: u32,
    dir: std::path::PathBuf,
    owners: Owners,
    log: RefusalLog,
}

impl ProcessRoot {
    /// The contents of `path` (as the process sees it; relative paths are taken from its
    /// root), at most `cap` bytes. `None` when it is missing or refused; a refusal is
    /// counted and logged by the [`RootFiles`] that ran the job.
    pub fn read(&mut self, path: &Path, cap: u64) -> Option<Vec<u8>> {
        let read = find_in_root(&self.dir, path, Some(self.owners))
            .and_then(|found| found.open())
            .and_then(|file| read_capped(&file, cap));
        match read {
            Ok(bytes) => Some(bytes),
            Err(OpenError::Refused(refusal)) => {
                self.log
                    .record(Some(self.pid), &self.dir.join(path), &refusal);
                None
            }
            Err(OpenError::Missing(err)) => {
                tracing::trace!(pid = self.pid, path = %path.display(), error = %err, "not read");
                None
            }
        }
    }
}

impl<K: Copy + PartialEq, R: Send + 'static> RootFiles<K, R> {
    /// Reads on threads called `thread_name`, waiting at most `wait` for each job.
    #[must_use]
    pub fn new(thread_name: &'static str, wait: Duration) -> Self {
        RootFiles {
            worker: Worker::new(thread_name),
            refusals: Refusals::default(),
            wait,
        }
    }

    /// Runs `job` for process `pid`, whose root directory is `root_dir` (`/proc/PID/root`)
    /// and whose uids (real, effective, saved, file-system; `None`: unknown, so only root's
    /// files are read) may own its files. `None` when the job did not finish within the
    /// wait (then its result comes out of [`RootFiles::late`]), or could not run: too many
    /// earlier jobs are still stalled, or no thread could be started.
    pub fn run(
        &mut self,
        key: K,
        pid: u32,
        root_dir: &Path,
        uids: Option<[u32; 4]>,
        job: impl FnOnce(&mut ProcessRoot) -> R + Send + 'static,
    ) -> Option<R> {
        let mut root = ProcessRoot {
            pid,
            dir: root_dir.to_owned(),
            owners: uids.map_or(Owners::ROOT, Owners::from_uids),
            log: RefusalLog::default(),
        };
        let run = self.worker.run(
            key,
            move || {
                let r = job(&mut root);
                (r, root.log)
            },
            self.wait,
        );
        match run {
            Run::Done((r, log)) => {
                self.refusals.record_all(log);
                Some(r)
            }
            Run::Late => {
                self.refusals
                    .record(Some(pid), root_dir, &Refusal::TimedOut(self.wait));
                None
            }
            Run::Busy => {
                self.refusals.record(Some(pid), root_dir, &Refusal::Busy);
                None
            }
            Run::Failed => None,
        }
    }

    /// The results of jobs that outlived their wait and have finished since.
    pub fn late(&mut self) -> Vec<(K, R)> {
        self.worker
            .late()
            .into_iter()
            .map(|(key, (r, log))| {
                self.refusals.record_all(log);
                (key, r)
            })
            .collect()
    }

    /// Files refused so far, by reason.
    #[must_use]
    pub fn refused(&self) -> Refused {
        self.refusals.counts
    }

    /// Forgets that process `pid` was warned about (its pid may be reused).
    pub fn forget(&mut self, pid: u32) {
        self.refusals.forget(pid);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::time::Instant;

    use super::*;
    use crate::test_support::have_root;

    /// A scratch directory on the host, as the process (this test) sees it.
    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    fn me() -> Owners {
        Owners::of(std::process::id()).expect("own uids")
    }

    fn refusal(result: Result<impl fmt::Debug, OpenError>) -> Refusal {
        match result {
            Err(OpenError::Refused(r)) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_regular_file_of_the_process_is_read() {
        let dir = scratch();
        let path = dir.path().join("perf-1.map");
        std::fs::write(&path, "1000 10 f\n").expect("write");
        for root in [Root::Host, Root::Process(std::process::id())] {
            let file = open(root, &path, Some(me())).expect("opened");
            let bytes = read_capped(&file, 100).expect("read");
            assert_eq!(bytes, b"1000 10 f\n");
        }
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = scratch();
        let path = dir.path().join("perf-2.map");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");
        let start = Instant::now();
        assert_eq!(
            refusal(open(Root::Process(std::process::id()), &path, Some(me()))),
            Refusal::NotRegular("a FIFO")
        );
        assert_eq!(refusal(open_trusted(&path)), Refusal::NotRegular("a FIFO"));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn symlinks_are_refused_on_every_component() {
        let dir = scratch();
        let target = dir.path().join("secret");
        std::fs::write(&target, "ffff 10 secret\n").expect("write");
        let link = dir.path().join("perf-3.map");
        symlink(&target, &link).expect("symlink");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::write(sub.join("perf-4.map"), "1 1 x\n").expect("write");
        let linked_dir = dir.path().join("linked");
        symlink(&sub, &linked_dir).expect("symlink dir");
        for root in [Root::Host, Root::Process(std::process::id())] {
            assert_eq!(refusal(open(root, &link, Some(me()))), Refusal::Symlink);
            assert_eq!(
                refusal(open(root, &linked_dir.join("perf-4.map"), Some(me()))),
                Refusal::Symlink
            );
            assert!(open(root, &sub.join("perf-4.map"), Some(me())).is_ok());
        }
        // The fallback without openat2 refuses the same links.
        for path in [&link, &linked_dir.join("perf-4.map")] {
            let rel = relative(path).expect("relative");
            let walked = walk(open_root(Root::Host).expect("root"), &rel)
                .and_then(|fd| check(File::from(fd), Some(me())));
            assert_eq!(refusal(walked), Refusal::Symlink, "{}", path.display());
        }
        let rel = relative(&sub.join("perf-4.map")).expect("relative");
        let fd = walk(open_root(Root::Host).expect("root"), &rel).expect("walked");
        assert!(check(File::from(fd), Some(me())).is_ok());
        // `..` never climbs anywhere.
        assert!(matches!(
            open(Root::Host, &sub.join("../secret"), None),
            Err(OpenError::Missing(_))
        ));
    }

    #[test]
    fn an_oversized_file_is_refused_before_it_is_read() {
        let dir = scratch();
        let path = dir.path().join("perf-5.map");
        let file = File::create(&path).expect("create");
        // Sparse: no disk, and nothing may be read from it.
        file.set_len(1 << 30).expect("truncate");
        let opened = open(Root::Host, &path, Some(me())).expect("opened");
        let start = Instant::now();
        assert_eq!(
            refusal(read_capped(&opened, PERF_MAP_MAX_BYTES)),
            Refusal::TooLarge {
                size: 1 << 30,
                cap: PERF_MAP_MAX_BYTES
            }
        );
        assert!(start.elapsed() < Duration::from_millis(100));
        // Exactly at the cap is fine; a byte over is not.
        std::fs::write(&path, "x".repeat(64)).expect("write");
        let opened = open(Root::Host, &path, Some(me())).expect("opened");
        assert_eq!(read_capped(&opened, 64).expect("read").len(), 64);
        assert!(matches!(
            read_capped(&opened, 63),
            Err(OpenError::Refused(Refusal::TooLarge { size: 64, cap: 63 }))
        ));
    }

    #[test]
    fn a_file_of_another_user_is_refused_but_roots_is_not() {
        let test = "a_file_of_another_user_is_refused_but_roots_is_not";
        if !have_root(test, "needs root to chown files to other users") {
            return;
        }
        let dir = scratch();
        let theirs = dir.path().join("theirs.map");
        std::fs::write(&theirs, "1 1 x\n").expect("write");
        std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).expect("chown");
        // The process (this one, as root) is uid 0: root's files are accepted, 4242's not.
        assert_eq!(
            refusal(open(Root::Host, &theirs, Some(me()))),
            Refusal::Owner(4242)
        );
        // A process running as 4242 may own it; one running as 4343 may not, but root's
        // file is fine for both.
        let as_4242 = Owners([4242; 4]);
        let as_4343 = Owners([4343; 4]);
        assert!(open(Root::Host, &theirs, Some(as_4242)).is_ok());
        assert_eq!(
            refusal(open(Root::Host, &theirs, Some(as_4343))),
            Refusal::Owner(4242)
        );
        let roots = dir.path().join("roots.map");
        std::fs::write(&roots, "1 1 x\n").expect("write");
        std::fs::set_permissions(&roots, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(open(Root::Host, &roots, Some(as_4343)).is_ok());
        let parse = |text| {
            crate::procfs::parse_status(text)
                .uids
                .map(Owners::from_uids)
        };
        assert_eq!(parse("Uid:\t1\t2\t3\t4\n"), Some(Owners([1, 2, 3, 4])));
        assert_eq!(parse("Uid:\t1\n"), None);
    }

    #[test]
    fn refusals_are_counted_each_time_and_logged_once_per_process() {
        let mut refusals = Refusals::default();
        let path = Path::new("/tmp/perf-1.map");
        refusals.record(Some(1), path, &Refusal::Symlink);
        refusals.record(Some(1), path, &Refusal::NotRegular("a FIFO"));
        refusals.record(Some(2), path, &Refusal::Owner(7));
        refusals.record(None, path, &Refusal::TooLarge { size: 2, cap: 1 });
        assert_eq!(refusals.counts.total(), 4);
        assert_eq!(refusals.counts.symlink, 1);
        assert_eq!(refusals.counts.not_regular, 1);
        assert_eq!(refusals.counts.wrong_owner, 1);
        assert_eq!(refusals.counts.too_large, 1);
        assert_eq!(refusals.warned.len(), 2);
        refusals.forget(1);
        assert_eq!(refusals.warned.len(), 1);
    }

    #[test]
    fn a_stalled_job_costs_one_wait_and_its_result_arrives_later() {
        let mut worker: Worker<u32, u32> = Worker::new("ember-test");
        assert!(matches!(
            worker.run(1, || 10, Duration::from_secs(5)),
            Run::Done(10)
        ));
        let (release, gate) = mpsc::channel::<()>();
        let start = Instant::now();
        let slow = worker.run(
            2,
            move || {
                let _ = gate.recv();
                20
            },
            Duration::from_millis(50),
        );
        assert!(matches!(slow, Run::Late));
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(worker.is_running(2));
        // Other jobs still run, on a fresh thread.
        assert!(matches!(
            worker.run(3, || 30, Duration::from_secs(5)),
            Run::Done(30)
        ));
        assert!(worker.late().is_empty());
        release.send(()).expect("release");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut late = Vec::new();
        while late.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            late = worker.late();
        }
        assert_eq!(late, [(2, 20)]);
        assert_eq!(worker.stalled(), 0);
    }

    #[test]
    fn too_many_stalled_jobs_make_the_worker_refuse_more() {
        let mut worker: Worker<u32, ()> = Worker::new("ember-test");
        let (release, gate) = mpsc::channel::<()>();
        let gate = std::sync::Arc::new(std::sync::Mutex::new(gate));
        for key in 0..MAX_STALLED as u32 {
            let gate = std::sync::Arc::clone(&gate);
            let run = worker.run(
                key,
                move || {
                    let _ = gate.lock().map(|g| g.recv());
                },
                Duration::from_millis(10),
            );
            assert!(matches!(run, Run::Late), "{key}");
        }
        assert!(matches!(
            worker.run(99, || (), Duration::from_secs(1)),
            Run::Busy
        ));
        drop(release);
        let deadline = Instant::now() + Duration::from_secs(5);
        while worker.stalled() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            worker.late();
        }
        assert_eq!(worker.stalled(), 0);
        assert!(matches!(
            worker.run(100, || (), Duration::from_secs(5)),
            Run::Done(())
        ));
    }

    #[test]
    fn links_are_followed_inside_a_root_with_or_without_openat2() {
        let dir = scratch();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("run/secrets")).expect("mkdir");
        std::fs::create_dir_all(root.join("var")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(root.join("run/secrets/ns"), "shop\n").expect("write");
        std::fs::write(outside.join("ns"), "node\n").expect("write");
        symlink("/run", root.join("var/run")).expect("symlink");
        symlink("../../../../outside/ns", root.join("run/up")).expect("symlink");
        symlink(outside.join("ns"), root.join("run/abs")).expect("symlink");
        symlink("loop", root.join("loop")).expect("symlink");
        let read = |found: Result<Found, OpenError>| -> Option<Vec<u8>> {
            let file = found.ok()?.open().ok()?;
            read_capped(&file, 100).ok()
        };
        let fallback = |path: &str| {
            let rel = relative(Path::new(path)).expect("relative");
            let dir = rustix::fs::open(
                &root,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .expect("root");
            walk_in_root(dir, &rel).and_then(|fd| check(File::from(fd), Some(me())))
        };
        for path in ["/var/run/secrets/ns", "/run/up", "/run/abs", "/loop"] {
            let by_kernel = read(find_in_root(&root, Path::new(path), Some(me())));
            let by_hand = read(fallback(path));
            assert_eq!(by_kernel, by_hand, "{path}");
            let want = (path == "/var/run/secrets/ns").then(|| b"shop\n".to_vec());
            assert_eq!(by_kernel, want, "{path}");
        }
        assert_eq!(refusal(fallback("/loop")), Refusal::Symlink);
    }

    #[test]
    fn a_stalled_read_in_a_root_costs_one_wait_and_is_counted() {
        let dir = scratch();
        let mut files: RootFiles<u32, u32> =
            RootFiles::new("ember-test", Duration::from_millis(50));
        let (release, gate) = mpsc::channel::<()>();
        let start = Instant::now();
        let stalled = files.run(1, 7, dir.path(), None, move |_| {
            let _ = gate.recv();
            10
        });
        assert_eq!(stalled, None);
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(files.refused().timed_out, 1);
        release.send(()).expect("release");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut late = Vec::new();
        while late.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            late = files.late();
        }
        assert_eq!(late, [(1, 10)]);
    }
}
