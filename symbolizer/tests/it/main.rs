//! The symbolizer's integration tests: real processes, real binaries, real kallsyms.
//!
//! Run with `cargo test -p symbolizer`. Tests that need root skip (loudly) when not root,
//! unless `CI` is set, where they must run.

// The workspace's `unreachable_pub` is for the crates' code; the helpers here are shared
// between test modules with `pub` (symbolizer/ is being reworked on another branch).
#![expect(
    unreachable_pub,
    reason = "test helpers shared between modules of one test binary"
)]

// Helpers: privilege checks, fixture binaries compiled at test time, child processes.
mod common;
// Kernel stacks against the running kernel's kallsyms.
mod kernel;
// C and C++ fixtures in child processes: inlining, return addresses, demangling, caching,
// exited processes.
mod processes;
// This test process's own Rust functions, data and vDSO; garbage addresses.
mod own;
// Real-node cases: rebuilt binaries, the byte-bounded cache, mount namespaces, split
// debug info, Go, Node.js JIT frames, malformed inputs.
mod real;
// 1,000 addresses against llvm-symbolizer-22.
mod agree;
// Hostile perf maps (FIFO, 1 GiB sparse, symlink to a root-only file) from `jitspin`.
mod hostile;
