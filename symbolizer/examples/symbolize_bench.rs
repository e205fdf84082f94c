//! Symbolization throughput, for `bench/symbolize_bench.py` (`scripts/bench.sh symbolize`).
//!
//! `symbolize_bench PID ADDRESS_FILE [ROUNDS]` symbolizes the runtime addresses in
//! ADDRESS_FILE (one hex address per line) of live process PID, each as a leaf, and prints
//! one JSON object with the seconds taken by:
//!
//! - `cold`: a fresh symbolizer (maps read, binary opened and parsed, DWARF indexed on
//!   first use) over every address once;
//! - `warm`: the same symbolizer again, with the result memo disabled, so every address is
//!   looked up in the already parsed binary (best of ROUNDS, default 5);
//! - `memo`: a symbolizer with the memo on, after one pass, over every address again: what
//!   a profile's repeated addresses cost (best of ROUNDS);
//!
//! and `named`, how many addresses got a function name, and `digest`, a hash of every
//! frame the cold pass made (name, inlined or not, file and line, in order), so two
//! builds of the symbolizer can be checked to name the addresses alike.

use std::hash::{Hash, Hasher};
use std::time::Instant;

use symbolizer::{Config, Symbolizer};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(pid), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: symbolize_bench PID ADDRESS_FILE [ROUNDS]");
        std::process::exit(2);
    };
    let pid: u32 = pid.parse().unwrap_or_else(|_| {
        eprintln!("symbolize_bench: bad pid `{pid}`");
        std::process::exit(2)
    });
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        eprintln!("symbolize_bench: reading {file}: {e}");
        std::process::exit(2)
    });
    let mut addrs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim().trim_start_matches("0x");
        if t.is_empty() {
            continue;
        }
        match u64::from_str_radix(t, 16) {
            Ok(a) => addrs.push(a),
            Err(e) => {
                eprintln!(
                    "symbolize_bench: {file}:{}: bad address `{line}`: {e}",
                    n + 1
                );
                std::process::exit(2);
            }
        }
    }

    let pass = |sym: &mut Symbolizer| -> usize {
        addrs
            .iter()
            .filter(|&&a| !sym.symbolize_user_stack(pid, &[a])[0].is_unnamed())
            .count()
    };

    // A fresh symbolizer with a copy directory that already holds what an earlier run
    // kept (the decompressed copy of a compressed debug file): what every run but the
    // first sees, as `ember record` and the agent keep their copies in the user's cache.
    let copies = std::env::temp_dir().join(format!("symbolize-bench-{}", std::process::id()));
    let kept_config = Config::default()
        .with_cache_entries(0)
        .with_copy_dir(Some(copies.clone()));
    pass(&mut Symbolizer::new(kept_config.clone()));
    let mut kept = Symbolizer::new(kept_config);
    let t = Instant::now();
    pass(&mut kept);
    let cold_kept = t.elapsed().as_secs_f64();
    drop(kept);
    let _ = std::fs::remove_dir_all(&copies);

    let mut sym = Symbolizer::new(Config::default().with_cache_entries(0));
    let t = Instant::now();
    let frames: Vec<_> = addrs
        .iter()
        .map(|&a| sym.symbolize_user_stack(pid, &[a]))
        .collect();
    let cold = t.elapsed().as_secs_f64();
    let named = frames.iter().filter(|f| !f[0].is_unnamed()).count();
    let mut digest = std::hash::DefaultHasher::new();
    for frame in frames.iter().flatten() {
        (&frame.name, frame.inlined, &frame.file, frame.line).hash(&mut digest);
    }
    drop(frames);
    let warm = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            pass(&mut sym);
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);

    let mut memo_sym = Symbolizer::new(Config::default());
    pass(&mut memo_sym);
    let memo = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            pass(&mut memo_sym);
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    println!(
        "{{\"addresses\": {}, \"named\": {named}, \"digest\": \"{:016x}\", \"cold\": {cold:.6}, \"cold_kept\": {cold_kept:.6}, \"warm\": {warm:.6}, \"memo\": {memo:.6}}}",
        addrs.len(),
        digest.finish()
    );
}
