//! Library target of the eBPF crate; the program itself is `src/main.rs` (`ember-sampler`),
//! the kernel side of stage 1, **sample** (sample → aggregate → symbolize → store → query →
//! render/export), loaded by `profiler-sampler`.
#![no_std]
