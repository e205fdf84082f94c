//! Prints the unwind table of each binary given: rows, bytes in the eBPF map, FDEs,
//! unsupported rows, and the time to build it (the benchmark's memory and load-time
//! figures; `bench/unwind_bench.py`).
//!
//! Usage: `unwind_table [--tsv] FILE...`

use std::time::Instant;

fn main() {
    let mut tsv = false;
    let mut failed = false;
    for arg in std::env::args().skip(1) {
        if arg == "--tsv" {
            tsv = true;
            continue;
        }
        let started = Instant::now();
        let data = match std::fs::read(&arg) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{arg}: {e}");
                failed = true;
                continue;
            }
        };
        let read = started.elapsed();
        match unwinder::UnwindTable::from_elf(&data) {
            Ok(t) => {
                let build = started.elapsed() - read;
                if tsv {
                    println!(
                        "{arg}\t{}\t{}\t{}\t{}\t{}\t{:.3}",
                        data.len(),
                        t.rows.len(),
                        t.bytes(),
                        t.stats.fdes,
                        t.stats.unsupported_rows,
                        build.as_secs_f64() * 1e3
                    );
                } else {
                    println!(
                        "{arg}: {} rows, {} bytes, {} FDEs, {} unsupported rows, built in {:.1} ms",
                        t.rows.len(),
                        t.bytes(),
                        t.stats.fdes,
                        t.stats.unsupported_rows,
                        build.as_secs_f64() * 1e3
                    );
                }
            }
            Err(e) => {
                eprintln!("{arg}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
