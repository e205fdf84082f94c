//! CPython processes for the eBPF Python walker: registering them, and naming the code
//! objects of the stacks it walks (see `profiler_common::python` for the kernel side).
//!
//! A process is checked when it is announced (exec, first sample and the capture's
//! follow-ups, see `events.rs`): only a process that maps a file named `python…` or
//! `libpython…` is looked into, so other processes cost nothing more. A CPython of a supported version is registered in `PY_PROCS` with its
//! `_PyRuntime` address and offsets; from then on its samples carry Python stacks.
//!
//! Each new Python stack of a drain arrives on the `PY_EVENTS` ring, and the capture
//! thread reads its code objects' names at once ([`PythonProcs::name_event`]), while the
//! process still runs: a process that lived for 50 ms is still named at the drain. The
//! names are cached by (pid, start time, code address), so a recycled pid or address is
//! never misnamed.

use std::collections::HashMap as StdHashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use aya::maps::{HashMap, MapData};
use profiler_common::python::{PyProc, PyStackEvent, split_word};
use profiler_python::{CodeInfo, Interpreter, Memory, Namer};
use symbolizer::procfs::Procfs;

/// A Python frame as the aggregator shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PythonFrame {
    /// The function's qualified name (`Handler.get`).
    pub qualname: Arc<str>,
    /// Its file, relative to the script's directory or `site-packages` when under one.
    pub file: Arc<str>,
    /// The file as the interpreter has it.
    pub path: Arc<str>,
    /// The line being run, if known.
    pub line: Option<u32>,
}

/// A registered process.
struct Registered {
    interp: Interpreter,
    mem: Memory,
    /// The script's directory, which file names are shown relative to.
    script_dir: Option<PathBuf>,
}

struct Inner {
    map: Option<HashMap<MapData, u32, PyProc>>,
    procs: StdHashMap<u32, Registered>,
    /// Processes looked into and found not (yet) CPython: (start time, mapped files seen).
    not_python: StdHashMap<u32, (u64, usize)>,
    namer: Namer,
    procfs: Procfs,
}

/// The registry of CPython processes, shared by the capture thread and the aggregator.
pub struct PythonProcs {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for PythonProcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonProcs").finish_non_exhaustive()
    }
}

/// The directory of the script a Python process runs (`python3 app/main.py` → `app`,
/// made absolute with the process's working directory), if its command line names one.
fn script_dir(procfs: &Procfs, pid: u32) -> Option<PathBuf> {
    let cmdline = std::fs::read(procfs.path(pid, "cmdline")).ok()?;
    let script = cmdline
        .split(|&b| b == 0)
        .skip(1)
        .map(String::from_utf8_lossy)
        .find(|a| a.ends_with(".py"))?;
    let script = Path::new(&*script);
    let full = if script.is_absolute() {
        script.to_path_buf()
    } else {
        std::fs::read_link(procfs.path(pid, "cwd"))
            .ok()?
            .join(script)
    };
    full.parent().map(Path::to_path_buf)
}

impl PythonProcs {
    /// A registry writing to the program's `PY_PROCS` map (`None`: names only, for tests).
    #[must_use]
    pub fn new(map: Option<HashMap<MapData, u32, PyProc>>) -> Self {
        PythonProcs {
            inner: Mutex::new(Inner {
                map,
                procs: StdHashMap::new(),
                not_python: StdHashMap::new(),
                namer: Namer::new(),
                procfs: Procfs::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain data behind: go on.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks process `pid`, whose mapped files are `paths`, and registers it if it is a
    /// supported CPython. Cheap for processes that map no candidate file, and for
    /// processes already registered or already found not Python with as many mappings.
    pub fn check<'a>(&self, pid: u32, paths: impl Iterator<Item = &'a str>) {
        let mut mapped = 0usize;
        let mut candidate = false;
        for p in paths {
            mapped += 1;
            candidate |= profiler_python::is_candidate(p);
        }
        if !candidate {
            return;
        }
        let mut inner = self.lock();
        inner.check(pid, mapped);
    }

    /// Names the code objects of a new stack while its process runs (the capture
    /// thread, for each `PY_EVENTS` record).
    pub fn name_event(&self, event: &PyStackEvent) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(reg) = inner.procs.get(&event.tgid) else {
            return;
        };
        let len = (event.len as usize).min(event.frames.len());
        for &word in &event.frames[..len] {
            let (code, _, _) = split_word(word);
            if let Err(err) = inner.namer.code(&reg.mem, &reg.interp, code) {
                tracing::trace!(pid = event.tgid, error = %err, "python code object not named");
            }
        }
    }

    /// The frames of the Python stack `words` (leaf first) of process `pid`, named from
    /// the cache (filled while the process ran), else read now; `None` for a frame that
    /// cannot be named.
    pub fn frames(&self, pid: u32, words: &[u64]) -> Vec<Option<PythonFrame>> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(reg) = inner.procs.get(&pid) else {
            return vec![None; words.len()];
        };
        let dirs: Vec<&Path> = reg.script_dir.as_deref().into_iter().collect();
        words
            .iter()
            .map(|&word| {
                let (code, offset, _) = split_word(word);
                let info: Arc<CodeInfo> =
                    match inner
                        .namer
                        .cached(reg.interp.pid, reg.interp.start_time, code)
                    {
                        Some(info) => info,
                        None => inner.namer.code(&reg.mem, &reg.interp, code).ok()?,
                    };
                Some(PythonFrame {
                    qualname: info.qualname.as_str().into(),
                    file: profiler_python::display_file(&info.file, &dirs).into(),
                    path: info.file.as_str().into(),
                    line: info.line(offset),
                })
            })
            .collect()
    }

    /// Forgets process `pid` (it exited): its map entry, its memory and its names.
    pub fn forget(&self, pid: u32) {
        let mut inner = self.lock();
        inner.not_python.remove(&pid);
        inner.unregister(pid);
    }
}

impl Inner {
    /// Drops a registered process's map entry, memory and names.
    fn unregister(&mut self, pid: u32) {
        if self.procs.remove(&pid).is_some() {
            if let Some(map) = self.map.as_mut() {
                let _ = map.remove(&pid);
            }
            self.namer.forget(pid);
        }
    }

    fn check(&mut self, pid: u32, mapped: usize) {
        let start = self.procfs.start_time(pid).unwrap_or(0);
        if let Some(reg) = self.procs.get(&pid) {
            // The kernel side drops a process at its exec. A registration made while the
            // exec was under way (announced by a sample just before it) is gone from the
            // map by the time the exec's own announcement is checked: made again.
            if reg.interp.start_time == start
                && self.map.as_ref().is_none_or(|map| map.get(&pid, 0).is_ok())
            {
                return;
            }
            // A new process with a recycled pid, or a new image.
            self.unregister(pid);
        }
        if let Some(&(s, seen)) = self.not_python.get(&pid)
            && s == start
            && seen >= mapped
        {
            return;
        }
        let found = match profiler_python::discover(&self.procfs, pid) {
            Ok(found) => found,
            Err(err) => {
                tracing::debug!(pid, error = %err, "python discovery failed");
                None
            }
        };
        let Some(interp) = found.filter(Interpreter::supported) else {
            self.not_python.insert(pid, (start, mapped));
            return;
        };
        let Some(offsets) = interp.offsets else {
            return;
        };
        let mem = match self.procfs.mem(pid) {
            Ok(file) => Memory::new(file),
            Err(err) => {
                tracing::debug!(pid, error = %err, "cannot open the memory of a python process");
                return;
            }
        };
        if let Some(map) = self.map.as_mut() {
            let value = PyProc {
                runtime: interp.runtime,
                offsets: *offsets,
                _pad: 0,
            };
            if let Err(err) = map.insert(pid, value, 0) {
                tracing::warn!(pid, error = %err, "cannot register a python process: its Python frames are not walked");
                return;
            }
        }
        tracing::debug!(pid, version = %interp.version, path = %interp.path, "python process registered");
        self.not_python.remove(&pid);
        let script_dir = script_dir(&self.procfs, pid);
        self.procs.insert(
            pid,
            Registered {
                interp,
                mem,
                script_dir,
            },
        );
    }
}
