//! Library target of the eBPF crate; the program itself is `src/main.rs` (`ember-sampler`).
#![no_std]
