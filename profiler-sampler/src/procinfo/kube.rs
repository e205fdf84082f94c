//! Kubernetes pod and namespace names without the Kubernetes API: read from what the
//! container itself holds, through `/proc/PID/root`.
//!
//! The kubelet gives every container of a pod the pod's name as host name (`/etc/hostname`,
//! unless the pod sets `spec.hostname`) and, unless `automountServiceAccountToken: false`,
//! mounts the service account's files at `/var/run/secrets/kubernetes.io/serviceaccount`,
//! whose `namespace` file names the pod's namespace. Reading them needs no RBAC and no
//! connection to the API server; it needs what the agent already has to read
//! `/proc/PID/root` (root, `CAP_SYS_PTRACE`).
//!
//! A container's files are not the agent's: a symbolic link in the container (`/var/run` →
//! `/run` is common) is resolved inside the container's root, never in the agent's, so a
//! container cannot make the agent read one of the node's files. The names are checked
//! to be DNS names (at most 253 bytes of `a-z0-9.-`) before they become labels.

use std::ffi::OsStr;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Component, Path, PathBuf};

/// Where the service account's namespace file is, inside the container.
pub const NAMESPACE_FILE: &str = "var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// The container's host name file.
pub const HOSTNAME_FILE: &str = "etc/hostname";
/// Symbolic links followed at most while resolving one path.
const MAX_LINKS: usize = 40;
/// The longest DNS subdomain name, as Kubernetes names may be.
const MAX_NAME: usize = 253;

/// A pod's names, as read from one of its containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNames {
    /// The namespace (the service account's namespace file), when mounted.
    pub namespace: Option<String>,
    /// The pod's name (the container's host name).
    pub pod: Option<String>,
}

/// The pod names of the process whose `/proc` directory is `proc_pid` (e.g. `/proc/42`).
///
/// The namespace comes from the service account's file. The host name is taken as the
/// pod's name when the namespace was found or `in_pod` says the cgroup is a pod's (a
/// host's or a plain container's host name is not a pod name). `None` when neither is
/// known.
#[must_use]
pub fn read_pod_names(proc_pid: &Path, in_pod: bool) -> Option<PodNames> {
    let root = proc_pid.join("root");
    let namespace = read_name(&root, NAMESPACE_FILE);
    let pod = if namespace.is_some() || in_pod {
        read_name(&root, HOSTNAME_FILE)
    } else {
        None
    };
    (namespace.is_some() || pod.is_some()).then_some(PodNames { namespace, pod })
}

/// The DNS name held by `rel` inside `root`, or `None` (missing, unreadable, not a name).
fn read_name(root: &Path, rel: &str) -> Option<String> {
    let path = resolve_in_root(root, Path::new(rel))?;
    // A container controls these files: a FIFO or a device would block or never end, so
    // only a regular file is read, opened without blocking and without following a link
    // swapped in since it was resolved.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_NAME as u64 + 2)
        .read_to_string(&mut text)
        .ok()?;
    let name = text.trim();
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    valid.then(|| name.to_owned())
}

/// `rel` inside `root` with every symbolic link resolved as the container would resolve
/// it: absolute targets start again at `root`, `..` stops at `root`. `None` for a loop or
/// a missing component.
fn resolve_in_root(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> = components(rel);
    pending.reverse();
    let mut done: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            done.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&done);
        candidate.push(&part);
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return None;
                }
                let target = fs::read_link(&candidate).ok()?;
                if target.is_absolute() {
                    done.clear();
                }
                let mut parts = components(&target);
                parts.reverse();
                pending.extend(parts);
            }
            Ok(_) => done.push(part),
            Err(_) => return None,
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&done);
    Some(out)
}

/// The normal and `..` components of `path` (root and `.` dropped).
fn components(path: &Path) -> Vec<std::ffi::OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_owned()),
            Component::ParentDir => Some(OsStr::new("..").to_owned()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn pod_root(dir: &Path, namespace: Option<&str>, hostname: &str) {
        fs::create_dir_all(dir.join("root/etc")).unwrap();
        fs::write(dir.join("root/etc/hostname"), format!("{hostname}\n")).unwrap();
        if let Some(ns) = namespace {
            let sa = dir.join("root/run/secrets/kubernetes.io/serviceaccount");
            fs::create_dir_all(&sa).unwrap();
            fs::write(sa.join("namespace"), ns).unwrap();
            fs::create_dir_all(dir.join("root/var")).unwrap();
            // `/var/run -> /run`, absolute, as many images have it.
            symlink("/run", dir.join("root/var/run")).unwrap();
        }
    }

    #[test]
    fn a_pod_container_gives_namespace_and_pod() {
        let dir = tempfile::tempdir().unwrap();
        pod_root(dir.path(), Some("shop"), "checkout-7d9f8b6c5-x2x4q");
        assert_eq!(
            read_pod_names(dir.path(), false),
            Some(PodNames {
                namespace: Some("shop".to_owned()),
                pod: Some("checkout-7d9f8b6c5-x2x4q".to_owned()),
            })
        );
    }

    #[test]
    fn a_host_name_alone_is_a_pod_name_only_in_a_pod_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        pod_root(dir.path(), None, "node-7");
        assert_eq!(read_pod_names(dir.path(), false), None);
        assert_eq!(
            read_pod_names(dir.path(), true),
            Some(PodNames {
                namespace: None,
                pod: Some("node-7".to_owned()),
            })
        );
    }

    #[test]
    fn links_resolve_inside_the_container_and_odd_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("namespace"), "agents-own").unwrap();
        fs::create_dir_all(dir.path().join("root/var/run/secrets/kubernetes.io")).unwrap();
        // A link that would leave the root if resolved by the agent.
        symlink(
            "../../../../../outside",
            dir.path()
                .join("root/var/run/secrets/kubernetes.io/serviceaccount"),
        )
        .unwrap();
        fs::create_dir_all(dir.path().join("root/etc")).unwrap();
        fs::write(dir.path().join("root/etc/hostname"), "Not A Name!\n").unwrap();
        assert_eq!(read_pod_names(dir.path(), true), None);
        // A FIFO is not read (it would block the agent).
        fs::remove_file(dir.path().join("root/etc/hostname")).unwrap();
        let fifo =
            std::ffi::CString::new(dir.path().join("root/etc/hostname").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(read_name(&dir.path().join("root"), HOSTNAME_FILE), None);
        // A loop ends.
        symlink("loop", dir.path().join("root/loop")).unwrap();
        assert_eq!(
            resolve_in_root(&dir.path().join("root"), Path::new("loop/x")),
            None
        );
    }
}
