//! Ember's end-to-end tests: the real `ember` binary, real eBPF, the workloads of
//! `examples/` with known CPU profiles.
//!
//! Tests that need root (to load eBPF) skip loudly when not root and `CI` is unset; in CI
//! they must run. They take a global lock, so one capture runs at a time on this small
//! machine and the workloads' shares are not skewed by each other.

mod common;
// A node as it is: no tracefs, features probed (one hidden), least privilege.
mod node;
// `ember agent`: windows in the store, crash safety.
mod agent;
// The store under a full disk, two agents, damage, and exports it may not write.
mod durability;
// The API as exposed: the wildcard-listen refusal, HTTPS with a token, a burst of queries.
mod api;
// `ember record`: shares, stacks, names, targets, signals, errors.
mod record;
// `ember record --off-cpu`: time waited, against what the workloads measured.
mod offcpu;
// Symbolization on a real node: process storms, mount namespaces.
mod symbolize;
// The sampler as a library: the drain protocol's exact accounting.
mod sampler;
mod ui;
// `ember export`: every format from a store, bad arguments, a live agent's API and store.
mod export;
// `ember diff`: normalization, outputs, gates' exit codes and messages, bad inputs.
mod diff;
// Hostile and oversized inputs and flags: bombs, endless files, stalled agents, closed
// pipes, full maps; each bounded in time and memory.
mod inputs;
// The README's CI recipe (examples/ci) on split and its slowed variant.
mod ci_recipe;
// The .eh_frame unwinder: complete stacks without frame pointers.
mod unwind;
// Tables found by file: storms and late starters complete from their first sample.
mod first_sample;
// Python frames walked in BPF, named, and spliced into the native stacks.
mod python;
// Packaging (deploy/): the systemd unit, the Kubernetes manifests against the API schemas,
// and one capability set across the unit, the DaemonSet and the image.
mod deploy;
// Push to fleet backends (Pyroscope, OTLP) through a receiver using the official schemas:
// shares, labels, outages, kill -9, refused windows, simulated pods.
mod push;
// debuginfod: stripped binaries named from a real server on loopback; a 404 cached; a
// server that never answers.
mod debuginfod;
// A local user against the root agent: FIFO, huge and symlinked perf maps from `jitspin`.
mod hostile;
