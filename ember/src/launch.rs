//! Starting `ember record -- CMD` so that CMD is sampled from its first instruction even
//! when the kernel cannot follow forks for us (no BTF for the fork hook's offsets).
//!
//! The child is held between fork and exec: it sends its pid over a pipe and waits on a
//! second pipe while the caller makes it a target ([`spawn_admitted`]'s `admit`); only then
//! does it exec the command. Everything the held child runs is async-signal-safe (`getpid`,
//! `write`, `read`, `close`).

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command};
use std::time::Duration;

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into a two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Spawns `cmd`, calls `admit(pid)` while the child is held before its exec, and lets it
/// exec only if `admit` succeeded.
///
/// # Errors
/// The spawn's error (the command does not exist, ...), or `admit`'s, in which case the
/// child exits without running the command.
pub(crate) fn spawn_admitted<E>(
    cmd: &mut Command,
    admit: impl FnOnce(u32) -> Result<(), E>,
) -> Result<Result<Child, io::Error>, E> {
    let pipes = pipe().and_then(|a| Ok((a, pipe()?)));
    let ((pid_r, pid_w), (go_r, go_w)) = match pipes {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let (pid_w_raw, pid_r_raw) = (pid_w.as_raw_fd(), pid_r.as_raw_fd());
    let (go_r_raw, go_w_raw) = (go_r.as_raw_fd(), go_w.as_raw_fd());
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls on descriptors the child inherited.
    unsafe {
        cmd.pre_exec(move || {
            libc::close(pid_r_raw);
            libc::close(go_w_raw);
            let pid = libc::getpid().to_ne_bytes();
            if libc::write(pid_w_raw, pid.as_ptr().cast(), pid.len()) != 4 {
                return Err(io::Error::last_os_error());
            }
            let mut go = 0u8;
            loop {
                match libc::read(go_r_raw, (&raw mut go).cast(), 1) {
                    1 => return Ok(()),
                    -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                    _ => {
                        return Err(io::Error::other(
                            "ember could not make the command a sampling target",
                        ));
                    }
                }
            }
        });
    }
    std::thread::scope(|scope| {
        let spawned = scope.spawn(|| cmd.spawn());
        // Wait for the child's pid, or for the spawn to fail before it ran (then no pid
        // comes: the write end is still open here, so watch the spawn thread too).
        let mut pid = None;
        while pid.is_none() && !spawned.is_finished() {
            let mut pfd = libc::pollfd {
                fd: pid_r.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one valid descriptor.
            let ready = unsafe { libc::poll(&raw mut pfd, 1, 20) };
            if ready == 1 {
                let mut buf = [0u8; 4];
                // SAFETY: reads at most 4 bytes into a 4-byte buffer.
                let n = unsafe { libc::read(pid_r.as_raw_fd(), buf.as_mut_ptr().cast(), 4) };
                if n == 4 {
                    pid = Some(u32::from_ne_bytes(buf));
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let admitted = pid.map(admit);
        if matches!(admitted, Some(Ok(()))) {
            // SAFETY: a one-byte write on our own pipe.
            let _ = unsafe { libc::write(go_w.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        }
        // Closing our end unblocks a child that was not admitted: it exits.
        drop(go_w);
        let child = spawned
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the spawning thread panicked")));
        match admitted {
            Some(Err(e)) => {
                if let Ok(mut c) = child {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                Err(e)
            }
            _ => Ok(child),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_runs_only_after_admission() {
        let admitted = std::cell::Cell::new(0u32);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo $$"])
            .stdout(std::process::Stdio::piped());
        let child = spawn_admitted::<()>(&mut cmd, |pid| {
            admitted.set(pid);
            Ok(())
        })
        .expect("admitted")
        .expect("spawned");
        let out = child.wait_with_output().expect("sh ran");
        let printed: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a pid");
        // The pid admitted is the command's own: exec keeps it.
        assert_eq!(printed, admitted.get());
    }

    #[test]
    fn a_refused_child_never_runs_the_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("ran");
        let mut cmd = Command::new("touch");
        cmd.arg(&marker);
        let r = spawn_admitted(&mut cmd, |_| Err("full"));
        assert!(matches!(r, Err("full")));
        assert!(
            !marker.exists(),
            "the command ran although it was not admitted"
        );
    }

    #[test]
    fn a_missing_command_is_the_spawn_error() {
        let mut cmd = Command::new("/nonexistent/ember-test-command");
        let r = spawn_admitted::<()>(&mut cmd, |_| Ok(()));
        let err = r.expect("admitted").expect_err("no such command");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
