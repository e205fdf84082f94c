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
//! A container's files are not the agent's, and the agent runs as root: they are read
//! through the symbolizer's one reader of files chosen by other processes
//! ([`symbolizer::RootFiles`]). A symbolic link in the container (`/var/run` → `/run` is
//! common, and a projected volume's files are links into `..data`) is followed inside the
//! container's root by the kernel, never in the agent's, so neither a link nor one swapped
//! in while the agent reads can make it read one of the node's files; only a regular file
//! owned by one of the process's uids or root, of at most [`MAX_FILE`] bytes, is read,
//! opened non-blocking; and the reads run on a thread of their own, the drain thread
//! waiting at most [`POD_NAMES_WAIT`] (a hung FUSE or NFS root costs it that, once).
//! Refusals are counted and logged once per process. The names are checked to be DNS
//! names (at most 253 bytes of `a-z0-9.-`) before they become labels.

use std::path::Path;
use std::time::Duration;

use symbolizer::{ProcessRoot, RootFiles};

/// Where the service account's namespace file is, inside the container.
pub const NAMESPACE_FILE: &str = "var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// The container's host name file.
pub const HOSTNAME_FILE: &str = "etc/hostname";
/// The longest DNS subdomain name, as Kubernetes names may be.
const MAX_NAME: usize = 253;
/// The largest name file read; a bigger one is refused (and logged) unread.
pub const MAX_FILE: u64 = 4096;
/// How long a lookup of a process's pod names may keep the caller (the drain thread)
/// waiting; a read still running then is used when it completes.
pub const POD_NAMES_WAIT: Duration = Duration::from_millis(250);

/// A pod's names, as read from one of its containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNames {
    /// The namespace (the service account's namespace file), when mounted.
    pub namespace: Option<String>,
    /// The pod's name (the container's host name).
    pub pod: Option<String>,
}

/// Reads processes' pod names off the caller's thread, keyed by `K`; see the module docs.
pub type PodNamesReader<K> = RootFiles<K, Option<PodNames>>;

/// A [`PodNamesReader`] waiting [`POD_NAMES_WAIT`] for each process.
#[must_use]
pub fn pod_names_reader<K: Copy + PartialEq>() -> PodNamesReader<K> {
    RootFiles::new("ember-pod-names", POD_NAMES_WAIT)
}

/// The pod names of the process whose root is `root`, a job for a [`PodNamesReader`].
///
/// The namespace comes from the service account's file. The host name is taken as the
/// pod's name when the namespace was found or `in_pod` says the cgroup is a pod's (a
/// host's or a plain container's host name is not a pod name). `None` when neither is
/// known.
#[must_use]
pub fn read_pod_names(root: &mut ProcessRoot, in_pod: bool) -> Option<PodNames> {
    let namespace = read_name(root, NAMESPACE_FILE);
    let pod = if namespace.is_some() || in_pod {
        read_name(root, HOSTNAME_FILE)
    } else {
        None
    };
    (namespace.is_some() || pod.is_some()).then_some(PodNames { namespace, pod })
}

/// The DNS name held by `rel` inside the root, or `None` (missing, refused, not a name).
fn read_name(root: &mut ProcessRoot, rel: &str) -> Option<String> {
    let bytes = root.read(Path::new(rel), MAX_FILE)?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let name = text.trim();
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    valid.then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::time::Instant;

    use symbolizer::Refused;

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

    /// This process's uids (files the tests make are its own).
    fn own_uids() -> Option<[u32; 4]> {
        symbolizer::procfs::Procfs::default()
            .status(std::process::id())
            .unwrap()
            .uids
    }

    /// The pod names under `dir/root` as a fresh reader finds them, and what it refused.
    fn read_with(dir: &Path, uids: Option<[u32; 4]>, in_pod: bool) -> (Option<PodNames>, Refused) {
        let mut reader = pod_names_reader::<u32>();
        let names = reader
            .run(1, 1, &dir.join("root"), uids, move |root| {
                read_pod_names(root, in_pod)
            })
            .expect("a local read finishes within the wait");
        (names, reader.refused())
    }

    fn read(dir: &Path, in_pod: bool) -> Option<PodNames> {
        read_with(dir, own_uids(), in_pod).0
    }

    fn pod_only(name: &str) -> Option<PodNames> {
        Some(PodNames {
            namespace: None,
            pod: Some(name.to_owned()),
        })
    }

    /// Says on the terminal (not only in captured output) that a test was skipped.
    fn skip(test: &str, why: &str) {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {test}: {why} ***\n");
    }

    #[test]
    fn a_pod_container_gives_namespace_and_pod() {
        let dir = tempfile::tempdir().unwrap();
        pod_root(dir.path(), Some("shop"), "checkout-7d9f8b6c5-x2x4q");
        assert_eq!(
            read(dir.path(), false),
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
        assert_eq!(read(dir.path(), false), None);
        assert_eq!(read(dir.path(), true), pod_only("node-7"));
    }

    #[test]
    fn links_resolve_inside_the_container_and_odd_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("namespace"), "agents-own").unwrap();
        fs::write(outside.join("hostname"), "agents-own").unwrap();
        fs::create_dir_all(dir.path().join("root/var/run/secrets/kubernetes.io")).unwrap();
        // A link that would leave the root if resolved by the agent, and one to the very
        // file on the host by its absolute path.
        symlink(
            "../../../../../outside",
            dir.path()
                .join("root/var/run/secrets/kubernetes.io/serviceaccount"),
        )
        .unwrap();
        fs::create_dir_all(dir.path().join("root/etc")).unwrap();
        symlink(
            outside.join("hostname"),
            dir.path().join("root/etc/hostname"),
        )
        .unwrap();
        assert_eq!(read(dir.path(), true), None);
        // A projected volume's links (`namespace -> ..data/namespace`, `..data -> ..v1`)
        // are followed, inside the root.
        fs::remove_file(
            dir.path()
                .join("root/var/run/secrets/kubernetes.io/serviceaccount"),
        )
        .unwrap();
        let sa = dir
            .path()
            .join("root/var/run/secrets/kubernetes.io/serviceaccount");
        fs::create_dir_all(sa.join("..v1")).unwrap();
        fs::write(sa.join("..v1/namespace"), "shop\n").unwrap();
        symlink("..v1", sa.join("..data")).unwrap();
        symlink("..data/namespace", sa.join("namespace")).unwrap();
        fs::remove_file(dir.path().join("root/etc/hostname")).unwrap();
        fs::write(dir.path().join("root/etc/hostname"), "Not A Name!\n").unwrap();
        assert_eq!(
            read(dir.path(), true),
            Some(PodNames {
                namespace: Some("shop".to_owned()),
                pod: None,
            })
        );
        // A loop ends, as a refusal.
        fs::remove_file(sa.join("namespace")).unwrap();
        symlink("namespace", sa.join("namespace")).unwrap();
        let (names, refused) = read_with(dir.path(), own_uids(), false);
        assert_eq!(names, None);
        assert_eq!(refused.symlink, 1, "{refused:?}");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("root/etc")).unwrap();
        let fifo =
            std::ffi::CString::new(dir.path().join("root/etc/hostname").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let start = Instant::now();
        let (names, refused) = read_with(dir.path(), own_uids(), true);
        assert_eq!(names, None);
        assert_eq!(refused.not_regular, 1, "{refused:?}");
        assert_eq!(refused.timed_out, 0, "{refused:?}");
        assert!(start.elapsed() < POD_NAMES_WAIT, "{:?}", start.elapsed());
    }

    #[test]
    fn an_oversized_file_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        pod_root(dir.path(), None, "web-0");
        // Sparse: a gigabyte that costs no disk, and must cost no memory either.
        let file = fs::File::create(dir.path().join("root/etc/hostname")).unwrap();
        file.set_len(1 << 30).unwrap();
        let start = Instant::now();
        let (names, refused) = read_with(dir.path(), own_uids(), true);
        assert_eq!(names, None);
        assert_eq!(refused.too_large, 1, "{refused:?}");
        assert!(start.elapsed() < POD_NAMES_WAIT, "{:?}", start.elapsed());
        // At the cap it is read (and then is no name, being all NUL bytes).
        file.set_len(MAX_FILE).unwrap();
        let (_, refused) = read_with(dir.path(), own_uids(), true);
        assert_eq!(refused.total(), 0, "{refused:?}");
    }

    #[test]
    fn a_file_of_another_user_is_refused() {
        let test = "a_file_of_another_user_is_refused";
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            skip(test, "needs root to give files to other users");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        pod_root(dir.path(), Some("shop"), "web-0");
        let hostname = dir.path().join("root/etc/hostname");
        std::os::unix::fs::chown(&hostname, Some(4242), Some(4242)).unwrap();
        // A process of uid 1000: root's namespace file is read, 4242's host name is not.
        let (names, refused) = read_with(dir.path(), Some([1000; 4]), false);
        assert_eq!(
            names,
            Some(PodNames {
                namespace: Some("shop".to_owned()),
                pod: None,
            })
        );
        assert_eq!(refused.wrong_owner, 1, "{refused:?}");
        // The process's own user may own it; unknown uids mean root's files only.
        let (names, _) = read_with(dir.path(), Some([1000, 4242, 4242, 4242]), false);
        assert_eq!(names.and_then(|n| n.pod).as_deref(), Some("web-0"));
        let (_, refused) = read_with(dir.path(), None, false);
        assert_eq!(refused.wrong_owner, 1, "{refused:?}");
    }

    /// A container that swaps `/etc` for a link to one of the node's directories, over
    /// and over, while the agent reads its host name: whatever the timing, the agent reads
    /// the container's file or nothing, never the node's. (Resolving the path first and
    /// then opening it by name, as before, read the node's file in this race.)
    #[test]
    fn a_link_swapped_in_while_reading_never_leads_out_of_the_container() {
        let dir = tempfile::tempdir().unwrap();
        pod_root(dir.path(), None, "pod-a");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("hostname"), "node-secret\n").unwrap();
        let etc = dir.path().join("root/etc");
        let swap = dir.path().join("root/etc-swap");
        symlink(&outside, &swap).unwrap();
        let (c_etc, c_swap) = (
            std::ffi::CString::new(etc.to_str().unwrap()).unwrap(),
            std::ffi::CString::new(swap.to_str().unwrap()).unwrap(),
        );
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut swaps = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // SAFETY: two valid NUL-terminated paths.
                    let rc = unsafe {
                        libc::renameat2(
                            libc::AT_FDCWD,
                            c_etc.as_ptr(),
                            libc::AT_FDCWD,
                            c_swap.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        )
                    };
                    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
                    swaps += 1;
                }
                swaps
            })
        };
        let mut reader = pod_names_reader::<u32>();
        let (mut ours, mut nothing) = (0, 0);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1500) {
            let names = reader
                .run(1, 1, &dir.path().join("root"), own_uids(), |root| {
                    read_pod_names(root, true)
                })
                .expect("a local read finishes within the wait");
            match names {
                None => nothing += 1,
                Some(n) if n == pod_only("pod-a").unwrap() => ours += 1,
                Some(n) => {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    panic!("the agent read a file outside the container: {n:?}");
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let swaps = swapper.join().unwrap();
        eprintln!("{ours} reads of the container's file, {nothing} of none, {swaps} swaps");
        assert!(ours > 0 && nothing > 0, "the race never happened");
    }
}
