//! The crate's tests against real interpreters: every CPython 3.9–3.13 present on the
//! machine runs the scripts of `examples/python`, and the walker must find and name their
//! frames. With `CI` set, Debian's `/usr/bin/python3.11` and pyenv's 3.11 must be there.

mod common;
mod walk;
