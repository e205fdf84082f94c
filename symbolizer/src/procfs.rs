//! Ember's one `/proc` reader: what the symbolizer, the sampler's unwind tables and its
//! process labels read about a process, read and parsed in one place.
//!
//! - `maps`: the text of `/proc/PID/maps` ([`Procfs::maps_text`]) and its lines
//!   ([`parse_maps_line`], [`Mapping`](crate::Mapping)); the executable mappings alone,
//!   asked of the kernel one by one ([`Procfs::exec_maps_text`]).
//! - `status`: the thread-group id, the uids and the innermost pid ([`Status`]).
//! - `cgroup`: the one path chosen out of `/proc/PID/cgroup` ([`parse_cgroup`]).
//! - `stat`: the start time, which tells a reused pid from the process it replaced.
//! - `comm` and the `exe` link.
//! - `mem` (another process's memory), `task` (its threads), and the list of processes.
//!
//! A [`Procfs`] reads under `/proc` ([`Procfs::default`]) or under another directory laid
//! out the same way ([`Procfs::at`]), so label and cache logic is tested on fake trees.
//! Parsers are pure functions of the file's text and never panic; readers return the
//! `io::Error` of the read (`NotFound` once the process is gone).
//!
//! It lives in the symbolizer because that is the lowest crate that reads `/proc` (maps
//! and status, for symbolizing); the sampler, which depends on it already, calls it.

use std::io;
use std::path::{Path, PathBuf};

pub use crate::maps::parse_line as parse_maps_line;

/// `_IOWR(PROCFS_IOCTL_MAGIC, 17, struct procmap_query)` (`linux/fs.h`).
const PROCMAP_QUERY: libc::c_ulong = 0xC068_6611;
const PROCMAP_QUERY_VMA_READABLE: u64 = 0x01;
const PROCMAP_QUERY_VMA_WRITABLE: u64 = 0x02;
const PROCMAP_QUERY_VMA_EXECUTABLE: u64 = 0x04;
const PROCMAP_QUERY_VMA_SHARED: u64 = 0x08;
const PROCMAP_QUERY_COVERING_OR_NEXT_VMA: u64 = 0x10;

/// `struct procmap_query` of `linux/fs.h`: the question (size, flags, address and the
/// name buffer) and the kernel's answer about the mapping found.
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

/// Where `/proc` is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Procfs {
    root: PathBuf,
}

impl Default for Procfs {
    /// The real `/proc`.
    fn default() -> Self {
        Procfs::at("/proc")
    }
}

impl Procfs {
    /// A procfs laid out under `root` (tests use a fake one).
    #[must_use]
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Procfs { root: root.into() }
    }

    /// `ROOT/PID/name`.
    #[must_use]
    pub fn path(&self, pid: u32, name: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(name)
    }

    fn read(&self, pid: u32, name: &str) -> io::Result<String> {
        std::fs::read_to_string(self.path(pid, name))
    }

    /// The text of `/proc/PID/maps`.
    ///
    /// # Errors
    /// The read's error.
    pub fn maps_text(&self, pid: u32) -> io::Result<String> {
        self.read(pid, "maps")
    }

    /// The executable mappings of `pid` as the lines of `/proc/PID/maps` they are, asked
    /// of the kernel one by one with the `PROCMAP_QUERY` ioctl on the maps file (Linux
    /// 6.11 and later); `Ok(None)` on a kernel without it.
    ///
    /// Reading the whole maps file formats every mapping's path, and a browser's or a
    /// JIT's processes have thousands of mappings, nearly none of them code: on a busy
    /// node that formatting was the largest part of the agent's CPU. Code is all a
    /// capture and the unwinder need.
    ///
    /// # Errors
    /// The open's error, or the ioctl's for other reasons than its absence.
    pub fn exec_maps_text(&self, pid: u32) -> io::Result<Option<String>> {
        use std::fmt::Write as _;
        use std::os::fd::AsRawFd as _;

        let maps = std::fs::File::open(self.path(pid, "maps"))?;
        let mut text = String::new();
        let mut name = vec![0u8; 4096];
        let mut addr = 0u64;
        loop {
            let mut query = ProcmapQuery {
                size: std::mem::size_of::<ProcmapQuery>() as u64,
                query_flags: PROCMAP_QUERY_COVERING_OR_NEXT_VMA | PROCMAP_QUERY_VMA_EXECUTABLE,
                query_addr: addr,
                vma_name_size: u32::try_from(name.len()).unwrap_or(u32::MAX),
                vma_name_addr: name.as_mut_ptr() as u64,
                ..ProcmapQuery::default()
            };
            // SAFETY: `query` is a `procmap_query` of the size it declares, and its name
            // buffer is `name`, writable for the `vma_name_size` bytes it declares; both
            // outlive the call. No build id is asked for (size and address 0).
            let ret = unsafe {
                libc::ioctl(
                    maps.as_raw_fd(),
                    PROCMAP_QUERY,
                    std::ptr::from_mut(&mut query),
                )
            };
            if ret < 0 {
                let err = io::Error::last_os_error();
                return match err.raw_os_error() {
                    // No mapping at or past `addr`: all were read.
                    Some(libc::ENOENT) => Ok(Some(text)),
                    // An older kernel.
                    Some(libc::ENOTTY | libc::EINVAL) if addr == 0 => Ok(None),
                    _ => Err(err),
                };
            }
            if query.vma_end <= addr {
                return Err(io::Error::other("PROCMAP_QUERY went backwards"));
            }
            let len = (query.vma_name_size as usize)
                .saturating_sub(1)
                .min(name.len());
            let path = String::from_utf8_lossy(&name[..len]);
            let flag = |bit: u64, set: char, unset: char| {
                if query.vma_flags & bit != 0 {
                    set
                } else {
                    unset
                }
            };
            // As `show_map_vma` prints it (`mangle_path` escapes a newline in a path).
            let _ = writeln!(
                text,
                "{:x}-{:x} {}{}{}{} {:08x} {:02x}:{:02x} {} {}",
                query.vma_start,
                query.vma_end,
                flag(PROCMAP_QUERY_VMA_READABLE, 'r', '-'),
                flag(PROCMAP_QUERY_VMA_WRITABLE, 'w', '-'),
                flag(PROCMAP_QUERY_VMA_EXECUTABLE, 'x', '-'),
                flag(PROCMAP_QUERY_VMA_SHARED, 's', 'p'),
                query.vma_offset,
                query.dev_major,
                query.dev_minor,
                query.inode,
                path.replace('\n', "\\012"),
            );
            addr = query.vma_end;
        }
    }

    /// Maps lines holding at least the executable mappings of `pid`: only those where the
    /// kernel can be asked for them ([`Procfs::exec_maps_text`]), else the whole file.
    ///
    /// # Errors
    /// The read's error.
    pub fn code_maps_text(&self, pid: u32) -> io::Result<String> {
        match self.exec_maps_text(pid)? {
            Some(text) => Ok(text),
            None => self.maps_text(pid),
        }
    }

    /// `/proc/PID/status`, parsed.
    ///
    /// # Errors
    /// The read's error.
    pub fn status(&self, pid: u32) -> io::Result<Status> {
        Ok(parse_status(&self.read(pid, "status")?))
    }

    /// The cgroup path of process `pid`, chosen by [`parse_cgroup`].
    ///
    /// # Errors
    /// The read's error, or `InvalidData` if no line of the file parses.
    pub fn cgroup(&self, pid: u32) -> io::Result<String> {
        let text = self.read(pid, "cgroup")?;
        parse_cgroup(&text).map(str::to_owned).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no cgroup line in `/proc/{pid}/cgroup`"),
            )
        })
    }

    /// The start time (field 22 of `/proc/PID/stat`, clock ticks since boot).
    ///
    /// # Errors
    /// The read's error, or `InvalidData` for a `stat` line without one.
    pub fn start_time(&self, pid: u32) -> io::Result<u64> {
        parse_start_time(&self.read(pid, "stat")?)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no start time in `stat`"))
    }

    /// The process's name, `/proc/PID/comm` without its newline.
    ///
    /// # Errors
    /// The read's error.
    pub fn comm(&self, pid: u32) -> io::Result<String> {
        let mut comm = self.read(pid, "comm")?;
        if comm.ends_with('\n') {
            comm.pop();
        }
        Ok(comm)
    }

    /// Where the `/proc/PID/exe` link points (the path of the executable, as the process
    /// sees it).
    ///
    /// # Errors
    /// The `readlink` error.
    pub fn exe(&self, pid: u32) -> io::Result<PathBuf> {
        std::fs::read_link(self.path(pid, "exe"))
    }

    /// The device and inode of the process's executable (following `/proc/PID/exe`).
    ///
    /// # Errors
    /// The `stat` error.
    pub fn exe_id(&self, pid: u32) -> io::Result<(u64, u64)> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(self.path(pid, "exe"))?;
        Ok((meta.dev(), meta.ino()))
    }

    /// `/proc/PID/mem`, opened for reading (`pread` at an address reads the process's
    /// memory there; the caller needs the right to ptrace it).
    ///
    /// # Errors
    /// The open's error.
    pub fn mem(&self, pid: u32) -> io::Result<std::fs::File> {
        std::fs::File::open(self.path(pid, "mem"))
    }

    /// The process ids under the root (its numeric entries), sorted.
    ///
    /// # Errors
    /// The directory read's error.
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        let mut pids: Vec<u32> = std::fs::read_dir(&self.root)?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// The thread ids of process `pid` (the entries of `/proc/PID/task`), sorted.
    ///
    /// # Errors
    /// The directory read's error.
    pub fn tasks(&self, pid: u32) -> io::Result<Vec<u32>> {
        let mut tids: Vec<u32> = std::fs::read_dir(self.path(pid, "task"))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        tids.sort_unstable();
        Ok(tids)
    }

    /// Whether `ROOT/PID` exists.
    #[must_use]
    pub fn exists(&self, pid: u32) -> bool {
        self.root.join(pid.to_string()).exists()
    }

    /// The directory read.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Opens the file behind an executable `mapping` of process `pid` as the symbolizer does:
/// through `/proc/PID/map_files` when permitted, else beneath `/proc/PID/root` without
/// following symlinks, non-blocking, a regular file only, and only if it is still the
/// mapped file (same device and inode). For anyone who reads a process's binaries (the
/// sampler's unwind tables).
///
/// # Errors
/// `NotFound` for a mapping not backed by a file, the open's error, or `InvalidData` for
/// a file refused or replaced since it was mapped.
pub fn open_mapped(pid: u32, mapping: &crate::Mapping) -> io::Result<std::fs::File> {
    let crate::Backing::File {
        path,
        key: Some(key),
        ..
    } = &mapping.backing
    else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "not backed by a file",
        ));
    };
    crate::binary::open_mapped_file(pid, mapping, path, key).map_err(|err| match err {
        crate::binary::OpenError::Open { source, .. } => source,
        err => io::Error::new(
            io::ErrorKind::InvalidData,
            crate::ErrorChain(&err).to_string(),
        ),
    })
}

/// What Ember reads of `/proc/PID/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// `Tgid:`, the process a thread belongs to (its own pid for a process).
    pub tgid: Option<u32>,
    /// `Uid:`, real, effective, saved and file-system uid.
    pub uids: Option<[u32; 4]>,
    /// The last field of `NSpid:`, the pid inside the process's own pid namespace.
    pub ns_pid: Option<u32>,
}

/// Parses the text of `/proc/PID/status`; a missing or malformed line is `None`.
#[must_use]
pub fn parse_status(text: &str) -> Status {
    let mut status = Status::default();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Tgid:") {
            status.tgid = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("Uid:") {
            let mut uids = [0; 4];
            let mut fields = v.split_whitespace();
            status.uids = uids
                .iter_mut()
                .all(|uid| {
                    fields
                        .next()
                        .and_then(|f| f.parse().ok())
                        .map(|u| *uid = u)
                        .is_some()
                })
                .then_some(uids);
        } else if let Some(v) = line.strip_prefix("NSpid:") {
            status.ns_pid = v.split_whitespace().last().and_then(|f| f.parse().ok());
        }
    }
    status
}

/// The start time from the text of `/proc/PID/stat`.
///
/// Field 2 is `(comm)` and `comm` may hold spaces and `)`, so fields are counted from
/// the last `)`: field 3 is the first after it, field 22 the twentieth.
#[must_use]
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

/// Picks one path out of the text of a `/proc/PID/cgroup` file.
///
/// Each line is `hierarchy-id:controllers:path`. On pure cgroup v2 there is one line,
/// `0::/path`. On cgroup v1 there is one line per hierarchy. On a hybrid system (v1
/// controllers plus systemd's controller-less v2 hierarchy) there are both, and the
/// `0::` line only mirrors `name=systemd`; the v1 controllers are where runtimes put
/// containers, so they are preferred. Paths are relative to the reader's cgroup
/// namespace: inside a container they may all be `/`.
///
/// - Only a `0::` line (cgroup v2): its path.
/// - v1 or hybrid: the first path that is not `/` among, in this order, the `cpu` or
///   `cpuacct` hierarchy, `memory`, the other named controllers, the v2 line, and
///   `name=` hierarchies (`name=systemd`); if all are `/`, `/`. A non-root path is
///   preferred because some setups move processes in only some hierarchies.
///
/// Malformed lines are skipped; `None` if no line parses.
#[must_use]
pub fn parse_cgroup(text: &str) -> Option<&str> {
    let mut best: Option<(u8, &str)> = None; // best root-or-not candidate by rank
    let mut best_non_root: Option<(u8, &str)> = None;
    let mut any_v1 = false;
    let mut unified = None;

    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(id) = id.parse::<u32>() else { continue };
        if !path.starts_with('/') {
            continue;
        }
        if id == 0 && controllers.is_empty() {
            unified = Some(path);
        } else if id != 0 {
            any_v1 = true;
        } else {
            continue;
        }
        let rank = cgroup_rank(controllers);
        if best.is_none_or(|(r, _)| rank < r) {
            best = Some((rank, path));
        }
        if path != "/" && best_non_root.is_none_or(|(r, _)| rank < r) {
            best_non_root = Some((rank, path));
        }
    }

    if !any_v1 {
        return unified;
    }
    best_non_root.or(best).map(|(_, path)| path)
}

/// Preference of a hierarchy's controller list; lower is better.
fn cgroup_rank(controllers: &str) -> u8 {
    if controllers.is_empty() {
        return 3; // the v2 hierarchy of a hybrid system
    }
    let mut rank = 4; // only `name=` hierarchies
    for c in controllers.split(',') {
        let r = match c {
            "cpu" | "cpuacct" => 0,
            "memory" => 1,
            c if c.starts_with("name=") => 4,
            _ => 2,
        };
        rank = rank.min(r);
    }
    rank
}

/// This process's own vDSO image, read from its own memory (`/proc/self/mem` needs no
/// privileges and no unsafe code). Every 64-bit process on a kernel maps the same image, so
/// the symbolizer and the unwinder take the vDSO's symbols and unwind table from this copy.
///
/// # Errors
/// No `[vdso]` mapping, one larger than 1 MiB (a vDSO is a few pages), or a failed read.
pub fn own_vdso() -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let text = std::fs::read_to_string("/proc/self/maps")?;
    let (mappings, _) = crate::maps::parse(&text);
    let vdso = mappings
        .iter()
        .find(|m| matches!(&m.backing, crate::maps::Backing::Special(name) if &**name == "[vdso]"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no `[vdso]` mapping"))?;
    let len = usize::try_from(vdso.end - vdso.start).map_err(io::Error::other)?;
    if len > 1 << 20 {
        return Err(io::Error::other("a `[vdso]` mapping of over 1 MiB"));
    }
    let mut image = vec![0; len];
    std::fs::File::open("/proc/self/mem")?.read_exact_at(&mut image, vdso.start)?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exec_mappings_asked_one_by_one_are_the_maps_files_exec_lines() {
        let procfs = Procfs::default();
        let pid = std::process::id();
        let Some(asked) = procfs.exec_maps_text(pid).expect("PROCMAP_QUERY") else {
            eprintln!("this kernel has no PROCMAP_QUERY: nothing to compare");
            return;
        };
        let read = procfs.maps_text(pid).expect("maps");
        let exec_lines: Vec<_> = read
            .lines()
            .filter_map(parse_maps_line)
            // The kernel's gate page is shown in maps but is no mapping of the process.
            .filter(|m| m.exec && !m.is_vsyscall())
            .collect();
        let asked: Vec<_> = asked
            .lines()
            .map(|l| parse_maps_line(l).expect(l))
            .collect();
        assert!(asked.len() >= 3, "{asked:?}");
        assert_eq!(asked.len(), exec_lines.len(), "{asked:#?}\n{exec_lines:#?}");
        for (a, r) in asked.iter().zip(&exec_lines) {
            assert_eq!(a, r);
        }
        assert!(
            asked.iter().any(
                |m| matches!(&m.backing, crate::maps::Backing::Special(n) if &**n == "[vdso]")
            ),
            "{asked:?}"
        );
        // A process that does not exist: the open's error.
        assert!(procfs.exec_maps_text(u32::MAX).is_err());
    }

    #[test]
    fn status_lines_parse_and_bad_ones_are_none() {
        let text = "Name:\tsh\nTgid:\t42\nNgid:\t0\nPid:\t43\nUid:\t1000\t1001\t1002\t1003\n\
                    NSpid:\t43\t7\n";
        assert_eq!(
            parse_status(text),
            Status {
                tgid: Some(42),
                uids: Some([1000, 1001, 1002, 1003]),
                ns_pid: Some(7),
            }
        );
        assert_eq!(
            parse_status("Tgid: x\nUid:\t1\t2\nNSpid:\n"),
            Status::default()
        );
        assert_eq!(parse_status(""), Status::default());
        assert_eq!(parse_status("\u{0}\u{fffd}:\n:::"), Status::default());
    }

    #[test]
    fn start_time_survives_odd_comms() {
        let fields: Vec<String> = (3..=30).map(|i| i.to_string()).collect();
        let line = format!("1 (a b) c) {}\n", fields.join(" "));
        assert_eq!(parse_start_time(&line), Some(22));
        assert_eq!(parse_start_time("1 (x) R 1"), None);
        assert_eq!(parse_start_time(""), None);
    }

    #[test]
    fn cgroup_v2_v1_and_hybrid() {
        assert_eq!(
            parse_cgroup("0::/system.slice/docker-abc.scope\n"),
            Some("/system.slice/docker-abc.scope")
        );
        let hybrid = "12:cpu,cpuacct:/kubepods/pod1/abc\n1:name=systemd:/x\n0::/x\n";
        assert_eq!(parse_cgroup(hybrid), Some("/kubepods/pod1/abc"));
        assert_eq!(parse_cgroup("3:memory:/\n2:cpu:/\n"), Some("/"));
        assert_eq!(parse_cgroup("garbage\n:::\nx:y:/z\n"), None);
    }

    #[test]
    fn the_own_process_reads_back() {
        let procfs = Procfs::default();
        let me = std::process::id();
        let status = procfs.status(me).expect("own status");
        assert_eq!(status.tgid, Some(me));
        assert!(status.uids.is_some());
        assert!(procfs.maps_text(me).expect("own maps").contains("r-xp"));
        assert!(procfs.start_time(me).expect("own start time") > 0);
        assert!(!procfs.comm(me).expect("own comm").ends_with('\n'));
        assert_eq!(
            procfs.exe(me).expect("own exe"),
            std::env::current_exe().expect("current exe")
        );
        assert!(procfs.exe_id(me).is_ok());
        assert!(procfs.exists(me));
        assert!(procfs.pids().expect("pids").contains(&me));
        let tasks = procfs.tasks(me).expect("own tasks");
        assert!(tasks.contains(&me), "{tasks:?}");
        let mem = procfs.mem(me).expect("own memory");
        let value = 0x5eed_u64;
        let mut buf = [0u8; 8];
        std::os::unix::fs::FileExt::read_exact_at(&mem, &mut buf, &raw const value as u64)
            .expect("own memory reads");
        assert_eq!(u64::from_ne_bytes(buf), value);
        let text = procfs.maps_text(me).expect("own maps");
        let exe = std::env::current_exe().expect("current exe");
        let mapping = text
            .lines()
            .filter_map(parse_maps_line)
            .find(|m| {
                m.exec
                    && matches!(&m.backing, crate::Backing::File { path, .. }
                        if std::path::Path::new(&**path) == exe)
            })
            .expect("own executable mapping");
        let file = open_mapped(me, &mapping).expect("own binary opens");
        assert!(file.metadata().expect("stat").is_file());
        let gone = u32::MAX;
        assert!(!procfs.exists(gone));
        assert_eq!(
            procfs.status(gone).map_err(|e| e.kind()),
            Err(io::ErrorKind::NotFound)
        );
    }
}
