//! rust-workload: Rust-specific symbol shapes for the profiler's symbolizer.
//!
//! main -> run, and run spends its time in four functions:
//!   - `checksum::<u32>` and `checksum::<u64>`: one generic function, two instances. Built with
//!     v0 symbol mangling, each instance's symbol carries its type argument, so demangled names
//!     are `rust_workload::checksum::<u32>` and `rust_workload::checksum::<u64>`. (Legacy
//!     mangling, rustc's default, would demangle both to `rust_workload::checksum`.)
//!   - `hot_outer`: a real function whose loop body is `inlined_mix`, forced inline. The
//!     instructions belong to `hot_outer`'s symbol; only DWARF inline info (the
//!     DW_TAG_inlined_subroutine entries) says most of them come from `inlined_mix`.
//!   - `engine::Engine::step`: an inherent method inside a module, which demangles to
//!     `<rust_workload::engine::Engine>::step` (v0) and shows the path-shaped names.
//!
//! Each pass of run's loop does a fixed amount of work in each of the four, sized so that
//! each gets roughly a quarter of the samples (rough: the four bodies differ).
//!
//! Build: rustc --edition 2021 -C opt-level=2 -g -C force-frame-pointers=yes
//!              -C symbol-mangling-version=v0 rust_workload.rs

use std::hint::black_box;
use std::process::exit;
use std::time::{Duration, Instant};

const DEFAULT_SECONDS: f64 = 5.0;
/// Elements per checksum call; each element is one multiply on a serial dependency chain.
const CHECKSUM_LEN: usize = 1 << 16;
/// Iterations of `inlined_mix` per `hot_outer` call.
const MIX_ROUNDS: u64 = 1 << 15;
/// Cells in the engine; `step` makes one pass over them.
const ENGINE_CELLS: usize = 96 * 1024;

/// FNV-1a over the elements. The multiply chain can't be vectorized, so the cost per element
/// is the same for u32 and u64 and neither instance gets folded into the other.
#[inline(never)]
fn checksum<T: Copy + Into<u64>>(data: &[T]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in data {
        hash ^= x.into();
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Always inlined: its instructions live inside `hot_outer`, and only DWARF knows they are
/// `inlined_mix`'s. Several dependent steps so that most of `hot_outer`'s time is spent here.
#[inline(always)]
fn inlined_mix(state: u64, i: u64) -> u64 {
    let mut x = state ^ i;
    x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 32)
}

#[inline(never)]
fn hot_outer(seed: u64, rounds: u64) -> u64 {
    let mut state = seed;
    for i in 0..rounds {
        state = inlined_mix(state, black_box(i));
    }
    state
}

mod engine {
    /// A toy state machine; it exists so that a method with a module path gets samples.
    pub struct Engine {
        cells: Vec<u64>,
        generation: u64,
    }

    impl Engine {
        pub fn new(cells: usize) -> Self {
            Engine {
                cells: (0..cells as u64).collect(),
                generation: 0,
            }
        }

        /// One pass over the cells; each cell depends on the one before, so this is serial.
        #[inline(never)]
        pub fn step(&mut self) -> u64 {
            let mut carry = self.generation;
            for cell in self.cells.iter_mut() {
                carry = (*cell ^ carry).rotate_left(17).wrapping_add(0x2545_f491_4f6c_dd1d);
                *cell = carry;
            }
            self.generation += 1;
            carry
        }
    }
}

#[inline(never)]
fn run(seconds: f64) -> u64 {
    let data32: Vec<u32> = (0..CHECKSUM_LEN as u32).collect();
    let data64: Vec<u64> = (0..CHECKSUM_LEN as u64).map(|x| x << 32 | x).collect();
    let mut engine = engine::Engine::new(ENGINE_CELLS);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut passes = 0u64;
    let mut acc = 0u64;

    // One clock read per pass (about a millisecond of work), invisible at 99 Hz.
    loop {
        acc ^= checksum::<u32>(black_box(&data32));
        acc ^= checksum::<u64>(black_box(&data64));
        acc ^= hot_outer(black_box(acc), black_box(MIX_ROUNDS));
        acc ^= engine.step();
        passes += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    black_box(acc);
    passes
}

fn parse_seconds() -> f64 {
    let mut args = std::env::args().skip(1);
    match args.next() {
        None => DEFAULT_SECONDS,
        Some(arg) => match arg.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => s,
            _ => {
                eprintln!("usage: rust-workload [seconds]  (got '{arg}')");
                exit(2);
            }
        },
    }
}

fn main() {
    let seconds = parse_seconds();
    let start = Instant::now();
    let passes = run(seconds);
    eprintln!(
        "rust-workload: {passes} passes in {:.2} s",
        start.elapsed().as_secs_f64()
    );
}
