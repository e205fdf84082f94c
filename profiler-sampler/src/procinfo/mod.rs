//! Process and container labelling: who a sample belongs to, beyond its pid.
//!
//! Input: a sample's pid, tid and thread `comm` (from the eBPF program). Output:
//! [`profiler_model::Labels`] naming the process (`comm`, `exe`), the thread, its cgroup
//! and, when the cgroup path says so, the container (id, runtime) and Kubernetes pod
//! (UID, QoS class); the pod's name and namespace come from the container's own files
//! ([`read_pod_names`], through `/proc/PID/root`, no Kubernetes API, with the symbolizer's
//! checks for files chosen by another process: `symbolizer::RootFiles`).
//!
//! - [`parse_cgroup_path`] is pure: cgroup path → [`ContainerInfo`].
//! - [`read_cgroup`] picks one path out of `/proc/PID/cgroup` (v2, v1 or hybrid).
//! - [`ProcessTable`] caches `/proc` reads per pid, keyed by the process start time so
//!   a reused pid is re-read.
//!
//! Invariants: nothing here fails because a process went away; a vanished pid yields
//! `None` (or labels without process details), never an error or a panic. Pid 0 is the
//! idle task and is never looked up in `/proc`.

mod cgroup;
mod container;
mod kube;
mod table;

pub use cgroup::{parse_proc_cgroup, read_cgroup};
pub use container::{ContainerInfo, Qos, Runtime, parse_cgroup_path};
pub use kube::{
    HOSTNAME_FILE, MAX_FILE, NAMESPACE_FILE, POD_NAMES_WAIT, PodNames, PodNamesReader,
    pod_names_reader, read_pod_names,
};
pub use table::{ProcessInfo, ProcessTable};

/// Whether process `pid` exists (its `/proc` entry is there).
#[must_use]
pub fn process_exists(pid: u32) -> bool {
    symbolizer::procfs::Procfs::default().exists(pid)
}

/// Label names added by this module; they are declared with the others in
/// [`profiler_model::keys`], where filters check names against them.
pub mod label {
    pub use profiler_model::keys::{
        CGROUP, CONTAINER_ID, EXE, NAMESPACE, POD, POD_UID, QOS, RUNTIME,
    };
}
