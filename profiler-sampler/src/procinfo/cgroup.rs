//! Which cgroup a process is in, from `/proc/PID/cgroup`.
//!
//! Each line is `hierarchy-id:controllers:path`. On pure cgroup v2 there is one line,
//! `0::/path`. On cgroup v1 there is one line per hierarchy. On a hybrid system (v1
//! controllers plus systemd's controller-less v2 hierarchy) there are both, and the
//! `0::` line only mirrors `name=systemd`; the v1 controllers are where runtimes put
//! containers, so they are preferred.
//!
//! Paths are relative to the reader's cgroup namespace: inside a container they may
//! all be `/`.

use std::{io, path::Path};

use symbolizer::procfs::Procfs;

/// Picks one path out of the text of a `/proc/PID/cgroup` file; the parser lives with the
/// other `/proc` parsers in [`symbolizer::procfs::parse_cgroup`], which documents which
/// line is chosen.
pub use symbolizer::procfs::parse_cgroup as parse_proc_cgroup;

/// The cgroup path of process `pid`, read from `/proc/PID/cgroup`.
///
/// See [`parse_proc_cgroup`] for which line is chosen.
///
/// # Errors
///
/// The read's error (`NotFound` once the process has gone), or `InvalidData` if no
/// line of the file could be parsed.
pub fn read_cgroup(pid: u32) -> io::Result<String> {
    read_cgroup_in(Path::new("/proc"), pid)
}

/// [`read_cgroup`] under another procfs mount (tests use a fake one).
pub(super) fn read_cgroup_in(proc_root: &Path, pid: u32) -> io::Result<String> {
    Procfs::at(proc_root).cgroup(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_v2() {
        let text = "0::/system.slice/docker-abc.scope\n";
        assert_eq!(
            parse_proc_cgroup(text),
            Some("/system.slice/docker-abc.scope")
        );
    }

    #[test]
    fn hybrid_prefers_a_non_root_v1_controller() {
        // This machine's own file, at the time of writing.
        let text = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n\
                    4:memory:/process_api/5d7a1201a4fced1210e7e9031d5b9e05\n3:cpuset:/\n\
                    2:cpuacct:/\n1:cpu:/\n0::/\n";
        assert_eq!(
            parse_proc_cgroup(text),
            Some("/process_api/5d7a1201a4fced1210e7e9031d5b9e05")
        );
    }

    #[test]
    fn v1_prefers_cpu_over_memory_over_others() {
        let text = "12:pids:/p\n11:memory:/m\n4:cpu,cpuacct:/c\n1:name=systemd:/s\n";
        assert_eq!(parse_proc_cgroup(text), Some("/c"));
        let text = "12:pids:/p\n11:memory:/m\n1:name=systemd:/s\n";
        assert_eq!(parse_proc_cgroup(text), Some("/m"));
        let text = "12:pids:/p\n1:name=systemd:/s\n";
        assert_eq!(parse_proc_cgroup(text), Some("/p"));
        let text = "1:name=systemd:/user.slice/session-3.scope\n";
        assert_eq!(parse_proc_cgroup(text), Some("/user.slice/session-3.scope"));
    }

    #[test]
    fn hybrid_session_falls_back_to_the_systemd_path() {
        let text = "4:cpu,cpuacct:/\n1:name=systemd:/user.slice/session-3.scope\n\
                    0::/user.slice/session-3.scope\n";
        assert_eq!(parse_proc_cgroup(text), Some("/user.slice/session-3.scope"));
    }

    #[test]
    fn all_root_is_root() {
        assert_eq!(parse_proc_cgroup("2:memory:/\n1:cpu:/\n0::/\n"), Some("/"));
    }

    #[test]
    fn docker_v1_cgroupfs() {
        let id = "ab".repeat(32);
        let text = format!(
            "5:memory:/docker/{id}\n4:cpu,cpuacct:/docker/{id}\n1:name=systemd:/docker/{id}\n"
        );
        assert_eq!(
            parse_proc_cgroup(&text),
            Some(format!("/docker/{id}").as_str())
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "garbage\n\nx:cpu:/bad-id\n3:cpu:relative\n0:cpu:/zero-with-controllers\n\
                    7:memory:/a:b:c\n";
        // Paths may contain `:`; only the first two separate fields.
        assert_eq!(parse_proc_cgroup(text), Some("/a:b:c"));
        assert_eq!(parse_proc_cgroup("nonsense"), None);
        assert_eq!(parse_proc_cgroup(""), None);
    }

    #[test]
    fn reads_own_cgroup() {
        let path = read_cgroup(std::process::id()).expect("our own /proc/self/cgroup is readable");
        assert!(path.starts_with('/'), "{path}");
    }

    #[test]
    fn vanished_pid_is_not_found() {
        // Above the kernel's pid_max limit (2^22), so never a live pid.
        let err = read_cgroup(u32::MAX).expect_err("no such process");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
