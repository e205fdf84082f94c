//! Interpreters, scripts and helpers shared by the tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use profiler_python::{Interpreter, Memory, Namer, PyFrame, ThreadStack, discover, walk};
use symbolizer::procfs::Procfs;

/// An interpreter to test with.
#[derive(Clone, Debug)]
pub(crate) struct Python {
    /// Where it is.
    pub(crate) path: PathBuf,
    /// The version it is (major, minor), from where it is installed.
    pub(crate) minor: (u8, u8),
}

const PYENV: &str = "/root/.pyenv/versions";
const DEBIAN: &str = "/usr/bin/python3.11";

/// pyenv's interpreters of `major.minor` for minor in `minors`, and Debian's 3.11.
pub(crate) fn pythons(minors: std::ops::RangeInclusive<u8>) -> Vec<Python> {
    let mut found = Vec::new();
    if minors.contains(&11) && Path::new(DEBIAN).exists() {
        found.push(Python {
            path: DEBIAN.into(),
            minor: (3, 11),
        });
    }
    let mut pyenv: Vec<(u8, PathBuf)> = std::fs::read_dir(PYENV)
        .map(|dir| {
            dir.filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().into_string().ok()?;
                let minor: u8 = name.strip_prefix("3.")?.split('.').next()?.parse().ok()?;
                let bin = e.path().join(format!("bin/python3.{minor}"));
                (minors.contains(&minor) && bin.exists()).then_some((minor, bin))
            })
            .collect()
        })
        .unwrap_or_default();
    pyenv.sort();
    found.extend(pyenv.into_iter().map(|(minor, path)| Python {
        path,
        minor: (3, minor),
    }));
    // CI must test 3.11 both ways (Debian's stripped build and pyenv's) whenever 3.11 is
    // asked for.
    if std::env::var_os("CI").is_some() && minors.contains(&11) {
        assert!(
            found.iter().any(|p| p.path == Path::new(DEBIAN)),
            "CI needs Debian's {DEBIAN}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.minor == (3, 11) && p.path.starts_with(PYENV)),
            "CI needs pyenv's 3.11 under {PYENV}"
        );
    }
    found
}

/// `examples/python`.
pub(crate) fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/python")
        .canonicalize()
        .expect("examples/python exists")
}

/// A running script, killed when dropped.
pub(crate) struct Script {
    pub(crate) child: Child,
    pub(crate) source: Vec<String>,
}

impl Script {
    /// Runs `python script seconds` from the scripts' directory.
    pub(crate) fn start(python: &Python, script: &str, seconds: &str) -> Script {
        let dir = scripts_dir();
        let source = std::fs::read_to_string(dir.join(script))
            .expect("script reads")
            .lines()
            .map(str::to_owned)
            .collect();
        let child = Command::new(&python.path)
            .arg(script)
            .arg(seconds)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("interpreter starts");
        Script { child, source }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The text of 1-based `line`.
    pub(crate) fn line(&self, line: u32) -> &str {
        self.source
            .get(usize::try_from(line).expect("small") - 1)
            .map_or("", String::as_str)
    }

    /// The lines of the body of `def name(`: (its `def` line, its last line).
    pub(crate) fn body(&self, name: &str) -> (u32, u32) {
        let def = format!("def {name}(");
        let start = self
            .source
            .iter()
            .position(|l| l.trim_start().starts_with(&def))
            .expect("function in script");
        let end = self.source[start + 1..]
            .iter()
            .position(|l| l.starts_with("def ") || l.starts_with("if __name__"))
            .map_or(self.source.len(), |n| start + 1 + n);
        (
            u32::try_from(start + 1).expect("small"),
            u32::try_from(end).expect("small"),
        )
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A walked thread with its frames named.
pub(crate) struct Named {
    pub(crate) stack: ThreadStack,
    pub(crate) frames: Vec<PyFrame>,
}

impl Named {
    /// Qualified names, leaf first.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.frames.iter().map(|f| f.qualname.as_str()).collect()
    }
}

/// A discovered process with its memory open and a namer.
pub(crate) struct Walker {
    pub(crate) interp: Interpreter,
    pub(crate) mem: Memory,
    pub(crate) namer: Namer,
}

impl Walker {
    /// Discovers `pid`, retrying until its interpreter is mapped (at most 10 s).
    pub(crate) fn attach(pid: u32) -> Walker {
        let procfs = Procfs::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(interp)) = discover(&procfs, pid) {
                let mem = Memory::new(procfs.mem(pid).expect("mem opens"));
                return Walker {
                    interp,
                    mem,
                    namer: Namer::new(),
                };
            }
            assert!(
                Instant::now() < deadline,
                "process {pid} never looked like python"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Walks and names every thread; `None` if a read failed (a frame torn down as it was
    /// read: the process runs on while it is walked).
    pub(crate) fn walk(&mut self) -> Option<Vec<Named>> {
        let stacks = walk(&self.mem, &self.interp, 128).ok()?;
        let mut named = Vec::new();
        for stack in stacks {
            let frames = stack
                .frames
                .iter()
                .map(|f| self.namer.name(&self.mem, &self.interp, f))
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            named.push(Named { stack, frames });
        }
        Some(named)
    }

    /// Stops the process (`SIGSTOP`, every thread), walks it, and lets it go on: the
    /// frames of a stopped thread are consistent, as they are for the eBPF walker, which
    /// reads a thread while it is interrupted. A running process may be read mid-call.
    pub(crate) fn walk_stopped(&mut self) -> Option<Vec<Named>> {
        let pid = self.interp.pid;
        signal("STOP", pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_stopped(pid) {
            assert!(Instant::now() < deadline, "process {pid} did not stop");
            std::thread::sleep(Duration::from_millis(1));
        }
        let walked = self.walk();
        signal("CONT", pid);
        walked
    }

    /// Walks until some thread has a frame named `name` (at most 20 s).
    pub(crate) fn wait_for(&mut self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self
                .walk()
                .is_some_and(|ts| ts.iter().any(|t| t.names().contains(&name)))
            {
                return;
            }
            assert!(Instant::now() < deadline, "no frame `{name}` appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn signal(name: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Whether every thread of `pid` is stopped (state `T` in its `stat`).
fn all_stopped(pid: u32) -> bool {
    let procfs = Procfs::default();
    procfs.tasks(pid).is_ok_and(|tasks| {
        tasks.iter().all(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, rest)| rest.trim_start().starts_with('T'))
                })
                .unwrap_or(false)
        })
    })
}
