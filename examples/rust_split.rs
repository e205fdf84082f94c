//! rust-split-nofp: split.c's 70/30 profile in Rust, built like a default release binary
//! (`-C opt-level=3`, no forced frame pointers), so only unwind tables give its callers.
//!
//! main -> work -> fn_a (70 % of CPU time) / fn_b (30 %): rounds of ten equal units, seven
//! in fn_a and three in fn_b, the fn_b positions drawn from a fixed-seed generator so the
//! pattern has no period for a sampler to lock onto (see split.c).
//!
//! Build: rustc --edition 2021 -C opt-level=3 rust_split.rs

use std::hint::black_box;
use std::time::{Duration, Instant};

const UNIT_ITERS: u64 = 400_000;

/// One unit: a multiply chain through memory, the same cost in fn_a and fn_b.
#[inline(never)]
fn fn_a(sink: &mut u64) {
    let mut acc = black_box(1u64);
    for i in 0..UNIT_ITERS {
        acc = black_box(acc.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i));
    }
    *sink ^= acc;
}

#[inline(never)]
fn fn_b(sink: &mut u64) {
    let mut acc = black_box(2u64);
    for i in 0..UNIT_ITERS {
        acc = black_box(acc.wrapping_mul(0xbf58_476d_1ce4_e5b9).wrapping_add(i));
    }
    *sink ^= acc;
}

#[inline(never)]
fn work(deadline: Instant) -> (u64, u64) {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut sink = 0u64;
    let mut rounds = 0u64;
    loop {
        let mut is_b = [false; 10];
        let mut placed = 0;
        while placed < 3 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let slot = (rng % 10) as usize;
            if !is_b[slot] {
                is_b[slot] = true;
                placed += 1;
            }
        }
        for b in is_b {
            if b {
                fn_b(&mut sink);
            } else {
                fn_a(&mut sink);
            }
        }
        rounds += 1;
        if Instant::now() >= deadline {
            return (rounds, sink);
        }
    }
}

fn main() {
    let seconds = match std::env::args().nth(1) {
        None => 5.0,
        Some(a) => match a.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => s,
            _ => {
                eprintln!("usage: rust-split-nofp [seconds]  (got '{a}')");
                std::process::exit(2);
            }
        },
    };
    let start = Instant::now();
    let (rounds, sink) = work(start + Duration::from_secs_f64(seconds));
    black_box(sink);
    eprintln!(
        "rust-split-nofp: {rounds} rounds in {:.2} s",
        start.elapsed().as_secs_f64()
    );
}
