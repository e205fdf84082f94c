//! A per-pid cache of what `/proc` says about each sampled process.
//!
//! The first lookup of a pid in each pass (a drain: [`ProcessTable::next_pass`]) re-reads
//! the process start time (`/proc/PID/stat` field 22, in clock ticks since boot): pid plus
//! start time names one process for the whole uptime, so a reused pid is noticed and re-read, and a vanished one is kept until forgotten (its last samples are drained after it exits). The rest (`comm`,
//! `exe`, cgroup, pod names) is read once per process. Pod names are read from the
//! process's own root, off the caller's thread with a time bound
//! ([`read_pod_names`](super::read_pod_names)); one
//! that arrives late is filled in by a later lookup.

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use profiler_model::{Labels, keys};
use symbolizer::procfs::Procfs;
use tracing::debug;

use super::kube::{PodNamesReader, pod_names_reader};
use super::{ContainerInfo, cgroup::read_cgroup_in, label, parse_cgroup_path};

/// What `/proc` said about one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The process name (`/proc/PID/comm`: the main thread's name, at most 15 bytes).
    pub comm: Arc<str>,
    /// The executable (`readlink /proc/PID/exe`); `None` for kernel threads, or when
    /// the link is not readable (another user's process without `CAP_SYS_PTRACE`).
    pub exe: Option<Arc<str>>,
    /// The cgroup path (see [`read_cgroup`](super::read_cgroup)); `None` if unreadable.
    pub cgroup: Option<Arc<str>>,
    /// The container the cgroup path names, if any.
    pub container: Option<ContainerInfo>,
    /// The Kubernetes pod's name and namespace, read from the container's own files.
    pub pod: Option<super::PodNames>,
}

/// One cached process.
#[derive(Debug)]
struct Entry {
    /// Start time in clock ticks since boot: tells a reused pid from the original.
    start_time: u64,
    info: ProcessInfo,
    /// Found exited by a [`ProcessTable::retain_live`] call, which drops it at the next.
    exited: bool,
    /// The pass in which the start time was last checked.
    checked: u64,
}

/// A cache of [`ProcessInfo`] by pid.
///
/// Call [`ProcessTable::retain_live`] now and then (e.g. once per aggregation window)
/// to drop exited processes; [`ProcessTable::info`] keeps them, since their last samples
/// are drained after they exit.
#[derive(Debug)]
pub struct ProcessTable {
    proc_root: PathBuf,
    entries: HashMap<u32, Entry>,
    idle: ProcessInfo,
    /// Reads pod names off this thread, keyed by pid and start time.
    pods: PodNamesReader<(u32, u64)>,
    /// The current pass: a pid's start time is checked once per pass.
    pass: u64,
}

impl Default for ProcessTable {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessTable {
    /// An empty table reading `/proc`.
    #[must_use]
    pub fn new() -> Self {
        Self::with_proc_root("/proc")
    }

    /// An empty table reading another procfs mount (a host's `/proc` mounted into the
    /// agent's container, or a fake one in tests).
    #[must_use]
    pub fn with_proc_root(proc_root: impl Into<PathBuf>) -> Self {
        ProcessTable {
            proc_root: proc_root.into(),
            entries: HashMap::new(),
            idle: ProcessInfo {
                comm: Arc::from("swapper"),
                exe: None,
                cgroup: None,
                container: None,
                pod: None,
            },
            pods: pod_names_reader(),
            pass: 0,
        }
    }

    /// Starts a new pass (the aggregator's, once per drain): the next lookup of each pid
    /// checks again that the pid still names the cached process. Within a pass a pid's
    /// start time is read once, not once per thread sampled: a node's threads are many
    /// more than its processes, and each check is an open and read of `/proc/PID/stat`.
    pub fn next_pass(&mut self) {
        self.pass = self.pass.wrapping_add(1);
    }

    /// What is known about process `pid`, read from `/proc` unless cached for this
    /// very process. A process that has exited keeps its last known entry until
    /// [`ProcessTable::forget`] or [`ProcessTable::retain_live`]: the samples of its last
    /// moments are drained after it is gone and still belong to it. `None` if nothing was
    /// ever known about it.
    ///
    /// Pid 0 is the idle task (`swapper`) and is not looked up.
    pub fn info(&mut self, pid: u32) -> Option<&ProcessInfo> {
        if pid == 0 {
            return Some(&self.idle);
        }
        self.fill_late_pod_names();
        if self
            .entries
            .get(&pid)
            .is_some_and(|e| e.checked == self.pass)
        {
            return self.entries.get(&pid).map(|e| &e.info);
        }
        let Some(start_time) = self.start_time(pid) else {
            return self.entries.get(&pid).map(|e| &e.info);
        };
        let pass = self.pass;
        let cached = self.entries.get_mut(&pid).is_some_and(|e| {
            e.checked = pass;
            e.start_time == start_time
        });
        if !cached {
            let Some(info) = self.read(pid, start_time) else {
                self.entries.remove(&pid);
                return None;
            };
            self.entries.insert(
                pid,
                Entry {
                    start_time,
                    info,
                    exited: false,
                    checked: pass,
                },
            );
        }
        self.entries.get(&pid).map(|e| &e.info)
    }

    /// Drops what is cached about `pid` (e.g. on an exit event).
    pub fn forget(&mut self, pid: u32) {
        self.entries.remove(&pid);
        self.pods.forget(pid);
    }

    /// Files in processes' roots that were refused (or still being read after
    /// [`POD_NAMES_WAIT`](super::POD_NAMES_WAIT)) while reading pod names, by reason.
    #[must_use]
    pub fn files_refused(&self) -> symbolizer::Refused {
        self.pods.refused()
    }

    /// Puts the pod names that were read too late for their lookup where they belong, if
    /// that very process is still cached.
    fn fill_late_pod_names(&mut self) {
        for ((pid, start_time), pod) in self.pods.late() {
            if let Some(e) = self.entries.get_mut(&pid)
                && e.start_time == start_time
            {
                e.info.pod = pod;
            }
        }
    }

    /// Drops every process whose pid now names another process, and every process that
    /// had already exited at the previous call, and returns their pids, so caches
    /// elsewhere keyed by pid can drop them too.
    ///
    /// A process found exited is kept until the next call: its last samples may still be
    /// in the kernel's maps, to be drained before then (the agent calls this once per
    /// window, and drains at least once per window).
    pub fn retain_live(&mut self) -> Vec<u32> {
        let root = &self.proc_root;
        let mut dropped = Vec::new();
        self.entries.retain(|&pid, e| {
            let keep = match read_start_time(root, pid) {
                Some(t) => t == e.start_time,
                None => !std::mem::replace(&mut e.exited, true),
            };
            if !keep {
                dropped.push(pid);
            }
            keep
        });
        for &pid in &dropped {
            self.pods.forget(pid);
        }
        dropped
    }

    /// How many processes are cached.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no process is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The labels of a sample of thread `tid` (named `thread_comm`) in process `pid`:
    /// pid, tid, thread and, as far as known, comm, exe, cgroup, container id (short),
    /// runtime, pod UID, QoS class, pod name and namespace.
    ///
    /// If the process has gone, `comm` falls back to `thread_comm` only for the main
    /// thread (`tid == pid`), since another thread's name is not the process's.
    pub fn labels(&mut self, pid: u32, tid: u32, thread_comm: &str) -> Labels {
        let mut labels = Labels::new()
            .with(keys::PID, pid.to_string())
            .with(keys::TID, tid.to_string())
            .with(keys::THREAD, thread_comm);
        match self.info(pid) {
            Some(info) => {
                labels.set(keys::COMM, Arc::clone(&info.comm));
                if let Some(exe) = &info.exe {
                    labels.set(label::EXE, Arc::clone(exe));
                }
                if let Some(cgroup) = &info.cgroup {
                    labels.set(label::CGROUP, Arc::clone(cgroup));
                }
                if let Some(c) = &info.container {
                    labels.set(label::CONTAINER_ID, c.short_id());
                    labels.set(label::RUNTIME, c.runtime.as_str());
                    if let Some(uid) = &c.pod_uid {
                        labels.set(label::POD_UID, uid.as_str());
                    }
                    if let Some(qos) = c.qos {
                        labels.set(label::QOS, qos.as_str());
                    }
                }
                if let Some(p) = &info.pod {
                    if let Some(ns) = &p.namespace {
                        labels.set(label::NAMESPACE, ns.as_str());
                    }
                    if let Some(pod) = &p.pod {
                        labels.set(label::POD, pod.as_str());
                    }
                }
            }
            None if tid == pid => labels.set(keys::COMM, thread_comm),
            None => {}
        }
        labels
    }

    fn start_time(&self, pid: u32) -> Option<u64> {
        read_start_time(&self.proc_root, pid)
    }

    /// Reads a process's details; `None` if it is gone or was replaced meanwhile.
    fn read(&mut self, pid: u32, start_time: u64) -> Option<ProcessInfo> {
        let procfs = Procfs::at(&self.proc_root);
        let comm = match procfs.comm(pid) {
            Ok(c) => Arc::from(c),
            Err(e) => {
                debug!(pid, error = %e, "process gone before its `comm` was read");
                return None;
            }
        };
        let exe = procfs
            .exe(pid)
            .inspect_err(|e| debug!(pid, error = %e, "no `exe` link"))
            .ok()
            .map(|p| Arc::from(p.to_string_lossy().as_ref()));
        let cgroup = read_cgroup_in(&self.proc_root, pid)
            .inspect_err(|e| debug!(pid, error = %e, "no cgroup"))
            .ok();
        let container = cgroup.as_deref().and_then(parse_cgroup_path);
        let in_pod = container.as_ref().is_some_and(|c| c.pod_uid.is_some());
        // The process's own uids may own its files (else only root's are read).
        let uids = procfs.status(pid).ok().and_then(|s| s.uids);
        let pod = self
            .pods
            .run(
                (pid, start_time),
                pid,
                &procfs.path(pid, "root"),
                uids,
                move |root| super::read_pod_names(root, in_pod),
            )
            .flatten();
        // The pid may have been reused while we read; then the details are not its.
        if self.start_time(pid) != Some(start_time) {
            debug!(pid, "process replaced while being read");
            return None;
        }
        Some(ProcessInfo {
            comm,
            exe,
            cgroup: cgroup.map(Arc::from),
            container,
            pod,
        })
    }
}

/// Field 22 of `/proc/PID/stat`; `None` if the process is gone or the file is odd.
fn read_start_time(proc_root: &Path, pid: u32) -> Option<u64> {
    match Procfs::at(proc_root).start_time(pid) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            debug!(pid, error = %e, "unreadable `stat`");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::process::Command;

    use symbolizer::procfs::parse_start_time;

    use super::*;

    fn stat_line(comm: &str, start_time: u64) -> String {
        format!(
            "42 ({comm}) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 {start_time} 1000 10 \
             18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
        )
    }

    #[test]
    fn start_time_survives_odd_comms() {
        assert_eq!(parse_start_time(&stat_line("sh", 12345)), Some(12345));
        assert_eq!(parse_start_time(&stat_line("a) b (c", 7)), Some(7));
        assert_eq!(parse_start_time("42 (x) S 1"), None);
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn own_process() {
        let mut table = ProcessTable::new();
        let pid = std::process::id();
        let info = table.info(pid).expect("we are alive").clone();
        assert!(!info.comm.is_empty());
        let exe = std::env::current_exe().expect("test binary path");
        assert_eq!(info.exe.as_deref(), Some(exe.to_string_lossy().as_ref()));
        let cgroup = info.cgroup.as_deref().expect("own cgroup is readable");
        assert!(cgroup.starts_with('/'), "{cgroup}");
        assert_eq!(table.len(), 1);

        let labels = table.labels(pid, pid, "worker");
        assert_eq!(labels.pid(), Some(pid));
        assert_eq!(labels.get(keys::TID), Some(pid.to_string().as_str()));
        assert_eq!(labels.get(keys::COMM), Some(&*info.comm));
        assert_eq!(labels.get(keys::THREAD), Some("worker"));
        assert_eq!(labels.get(label::EXE), info.exe.as_deref());
        assert_eq!(labels.get(label::CGROUP), Some(cgroup));

        table.retain_live();
        assert_eq!(table.len(), 1, "we are still alive");
        table.forget(pid);
        assert!(table.is_empty());
    }

    #[test]
    fn vanished_process() {
        let mut child = Command::new("true").spawn().expect("spawn `true`");
        let pid = child.id();
        child.wait().expect("wait for `true`");
        // Reaped, so the pid is free (reuse this quickly is very unlikely).
        let mut table = ProcessTable::new();
        assert_eq!(table.info(pid), None);
        assert!(table.is_empty());

        let labels = table.labels(pid, pid + 1, "gone-thread");
        assert_eq!(labels.pid(), Some(pid));
        assert_eq!(labels.get(keys::THREAD), Some("gone-thread"));
        assert_eq!(labels.get(keys::COMM), None, "not the main thread");
        assert_eq!(labels.get(label::EXE), None);
        let labels = table.labels(pid, pid, "true");
        assert_eq!(labels.get(keys::COMM), Some("true"));
    }

    #[test]
    fn an_exited_process_keeps_its_last_known_labels() {
        let mut child = Command::new("sleep")
            .arg("0.2")
            .spawn()
            .expect("spawn `sleep`");
        let pid = child.id();
        let mut table = ProcessTable::new();
        assert_eq!(
            table.info(pid).map(|i| i.comm.to_string()).as_deref(),
            Some("sleep")
        );
        child.wait().expect("wait for `sleep`");
        // Its last samples are drained after it exits: they still get its name.
        let labels = table.labels(pid, pid + 1, "worker");
        assert_eq!(labels.get(keys::COMM), Some("sleep"));
        // Kept for one more round: samples taken before it exited may still be undrained.
        assert_eq!(table.retain_live(), Vec::<u32>::new());
        let labels = table.labels(pid, pid, "sleep");
        assert_eq!(labels.get(keys::COMM), Some("sleep"));
        assert_eq!(
            table.retain_live(),
            vec![pid],
            "the exited pid is reported as dropped"
        );
        assert!(table.is_empty());
    }

    #[test]
    fn idle_task_is_not_looked_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut table = ProcessTable::with_proc_root(dir.path());
        let info = table.info(0).expect("pid 0 always exists");
        assert_eq!(&*info.comm, "swapper");
        let labels = table.labels(0, 0, "swapper/3");
        assert!(labels.is_idle());
        assert_eq!(labels.get(keys::COMM), Some("swapper"));
        assert_eq!(labels.get(keys::THREAD), Some("swapper/3"));
        assert_eq!(labels.get(label::CGROUP), None);
        assert!(table.is_empty());
    }

    /// Writes a fake `/proc/PID` with the given start time, comm and cgroup file.
    fn fake_process(root: &Path, pid: u32, start_time: u64, comm: &str, cgroup: &str) {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(&dir).expect("create fake /proc/PID");
        fs::write(dir.join("stat"), stat_line(comm, start_time)).expect("write stat");
        fs::write(dir.join("comm"), format!("{comm}\n")).expect("write comm");
        fs::write(dir.join("cgroup"), cgroup).expect("write cgroup");
        // The files the test makes are this user's: the process's own, as its uids say.
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        fs::write(
            dir.join("status"),
            format!("Uid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
        )
        .expect("write status");
        let exe = dir.join("exe");
        let _ = fs::remove_file(&exe);
        std::os::unix::fs::symlink(format!("/usr/bin/{comm}"), exe).expect("link exe");
    }

    #[test]
    fn container_labels_and_pid_reuse() {
        let id = "4f8a1c2b3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd";
        let root = tempfile::tempdir().expect("tempdir");
        let cgroup = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/\
             kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-{id}.scope\n"
        );
        fake_process(root.path(), 42, 100, "nginx", &cgroup);
        let mut table = ProcessTable::with_proc_root(root.path());

        let labels = table.labels(42, 43, "nginx-worker");
        let pairs: Vec<_> = labels.iter().collect();
        assert_eq!(
            pairs,
            [
                (label::CGROUP, cgroup.trim_start_matches("0::").trim_end()),
                (keys::COMM, "nginx"),
                (label::CONTAINER_ID, "4f8a1c2b3d4e"),
                (label::EXE, "/usr/bin/nginx"),
                (keys::PID, "42"),
                (label::POD_UID, "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"),
                (label::QOS, "Burstable"),
                (label::RUNTIME, "containerd"),
                (keys::THREAD, "nginx-worker"),
                (keys::TID, "43"),
            ]
        );

        // Same pid, new process: re-read, not served from the cache.
        fake_process(
            root.path(),
            42,
            200,
            "bash",
            "0::/user.slice/session-3.scope\n",
        );
        // Within one pass (a drain) the pid is checked once: still the cached process.
        assert_eq!(&*table.info(42).expect("cached").comm, "nginx");
        table.next_pass();
        let info = table.info(42).expect("the new process");
        assert_eq!(&*info.comm, "bash");
        assert_eq!(info.container, None);
        assert_eq!(info.cgroup.as_deref(), Some("/user.slice/session-3.scope"));

        // Gone: dropped by `retain_live`, and `info` says `None`.
        fake_process(root.path(), 7, 300, "sleep", "0::/\n");
        assert!(table.info(7).is_some());
        assert_eq!(table.len(), 2);
        fs::remove_dir_all(root.path().join("42")).expect("remove fake process");
        assert_eq!(
            table.retain_live(),
            Vec::<u32>::new(),
            "kept one more round"
        );
        assert_eq!(table.len(), 2);
        assert_eq!(table.retain_live(), vec![42]);
        assert_eq!(table.len(), 1);
        assert_eq!(table.info(42), None);
    }

    #[test]
    fn pod_and_namespace_come_from_the_containers_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let cgroup = "0::/kubepods.slice/kubepods-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/\
             cri-containerd-4f8a1c2b3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd.scope\n";
        fake_process(root.path(), 42, 100, "nginx", cgroup);
        let croot = root.path().join("42/root");
        let sa = croot.join("var/run/secrets/kubernetes.io/serviceaccount");
        fs::create_dir_all(&sa).expect("sa dir");
        fs::write(sa.join("namespace"), "shop").expect("namespace");
        fs::create_dir_all(croot.join("etc")).expect("etc");
        fs::write(croot.join("etc/hostname"), "web-0\n").expect("hostname");
        let mut table = ProcessTable::with_proc_root(root.path());
        let labels = table.labels(42, 42, "nginx");
        assert_eq!(labels.get(label::NAMESPACE), Some("shop"));
        assert_eq!(labels.get(label::POD), Some("web-0"));
        assert_eq!(
            labels.get(label::POD_UID),
            Some("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901")
        );
        // A host process: no pod cgroup, no service account, so its host name is no pod.
        fake_process(
            root.path(),
            7,
            300,
            "sshd",
            "0::/system.slice/ssh.service\n",
        );
        fs::create_dir_all(root.path().join("7/root/etc")).expect("etc");
        fs::write(root.path().join("7/root/etc/hostname"), "node-7\n").expect("hostname");
        let labels = table.labels(7, 7, "sshd");
        assert_eq!(labels.get(label::POD), None);
        assert_eq!(labels.get(label::NAMESPACE), None);
    }

    #[test]
    fn unreadable_exe_and_cgroup_are_none() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("5");
        fs::create_dir_all(&dir).expect("create fake /proc/5");
        fs::write(dir.join("stat"), stat_line("kworker/0:1", 9)).expect("write stat");
        fs::write(dir.join("comm"), "kworker/0:1\n").expect("write comm");
        let mut table = ProcessTable::with_proc_root(root.path());
        let info = table.info(5).expect("comm and stat are enough");
        assert_eq!(&*info.comm, "kworker/0:1");
        assert_eq!(info.exe, None);
        assert_eq!(info.cgroup, None);
    }
}
