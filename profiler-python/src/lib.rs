//! CPython support for Ember's profiler: the foundation of stage 1, **sample**, for Python
//! processes (sample → aggregate → symbolize → store → query → render/export).
//!
//! - [`discover`]: is a process CPython, which version, which file holds the interpreter,
//!   where is `_PyRuntime` ([`Interpreter`]); a process that is not Python costs one read
//!   of its maps.
//! - [`offsets`]: the version table of [`PyOffsets`] for 3.9–3.13, the struct the eBPF
//!   walker will read from a map.
//! - [`walk`]: every thread's Python frames, leaf first, from the process's memory
//!   ([`Memory`]) as ([`RawFrame`]) code object, instruction offset and entry flag.
//! - [`Namer`]: a code object's qualified name, file and the line of an instruction,
//!   cached by process and code address.
//!
//! Memory is read with `pread` on `/proc/PID/mem`, which needs the right to ptrace the
//! process (root, or the same user with `ptrace_scope` 0), but never stops it.
//!
//! ```no_run
//! use profiler_python::{Memory, Namer, discover, walk};
//! use symbolizer::procfs::Procfs;
//!
//! let procfs = Procfs::default();
//! let pid = 1234;
//! if let Some(interp) = discover(&procfs, pid)? {
//!     let mem = Memory::new(procfs.mem(pid)?);
//!     let mut namer = Namer::new();
//!     for thread in walk(&mem, &interp, 128)? {
//!         for frame in &thread.frames {
//!             let named = namer.name(&mem, &interp, frame)?;
//!             println!("{} ({}:{:?})", named.qualname, named.file, named.line);
//!         }
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod discover;
mod memory;
mod names;
pub mod offsets;
mod walk;

pub use discover::{DiscoverError, Interpreter, Version, discover, is_candidate, scan};
pub use memory::Memory;
pub use names::{CodeInfo, NameError, Namer, PyFrame, SHIM_FILE, display_file};
pub use profiler_common::python::PyOffsets;
pub use walk::{DEFAULT_MAX_DEPTH, MAX_THREADS, RawFrame, ThreadStack, WalkError, walk};
