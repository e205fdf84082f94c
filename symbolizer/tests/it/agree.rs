//! Agreement with a peer: for 1,000 addresses sampled across the functions of the example
//! workloads (the Rust one has inlining), Ember's function names and inline chains must
//! equal `llvm-symbolizer-22`'s.
//!
//! Both sides demangle (blazesym; llvm-symbolizer's default). Names are compared after one
//! normalisation applied to both: a Rust legacy hash suffix (`::h0123456789abcdef`) is
//! dropped. Disagreements are classified and printed, so a failure says what kind it is.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use symbolizer::{Config, Symbolizer};

use crate::common::skip;

const PEER: &str = "/usr/bin/llvm-symbolizer-22";

/// The example workloads, built into a scratch directory.
fn examples() -> Result<PathBuf, String> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("symbolizer-examples");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let status = Command::new("make")
        .args(["-s", "-C"])
        .arg(&src)
        .arg(format!("OUT={}", out.display()))
        .status()
        .map_err(|e| format!("cannot run make: {e}"))?;
    if !status.success() {
        return Err(format!("make -C examples failed: {status}"));
    }
    Ok(out)
}

/// Function symbols (`nm -S`, text, non-zero size) as (address, size).
fn functions(binary: &Path) -> Vec<(u64, u64)> {
    let out = Command::new("nm")
        .args(["-S", "--defined-only"])
        .arg(binary)
        .output()
        .expect("run nm");
    let mut funcs: Vec<(u64, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let size = u64::from_str_radix(f.next()?, 16).ok()?;
            let kind = f.next()?;
            (matches!(kind, "t" | "T") && size > 0).then_some((addr, size))
        })
        .collect();
    funcs.sort_unstable();
    funcs.dedup();
    funcs
}

/// Demangled names of the function symbols at each address (`nm -C`): identical code
/// folding gives one body several names.
fn aliases(binary: &Path) -> BTreeMap<u64, Vec<String>> {
    let out = Command::new("nm")
        .args(["--defined-only", "-C"])
        .arg(binary)
        .output()
        .expect("run nm -C");
    let mut map: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.splitn(3, ' ');
        let (Some(addr), Some(kind), Some(name)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let (Ok(addr), "t" | "T") = (u64::from_str_radix(addr, 16), kind) {
            map.entry(addr).or_default().push(normalise(name));
        }
    }
    map
}

/// `n` addresses spread over the functions: every function in turn, at offsets drawn from
/// a fixed-seed generator.
fn sample_addresses(funcs: &[(u64, u64)], n: usize, seed: u64) -> Vec<u64> {
    let mut state = seed;
    (0..n)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let (addr, size) = funcs[i % funcs.len()];
            addr + (state >> 33) % size
        })
        .collect()
}

/// The load bias of `binary` in process `pid`: runtime address minus ELF address.
fn load_bias(pid: u32, binary: &Path) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let path = binary.to_string_lossy();
    let start = maps
        .lines()
        .find(|l| l.ends_with(&*path) && l.split_whitespace().nth(2) == Some("00000000"))
        .and_then(|l| u64::from_str_radix(l.split('-').next()?, 16).ok())
        .expect("the binary's first mapping");
    let readelf = Command::new("readelf")
        .arg("-lW")
        .arg(binary)
        .output()
        .expect("readelf");
    let first_vaddr = String::from_utf8_lossy(&readelf.stdout)
        .lines()
        .find(|l| l.trim_start().starts_with("LOAD"))
        .and_then(|l| {
            u64::from_str_radix(l.split_whitespace().nth(2)?.trim_start_matches("0x"), 16).ok()
        })
        .expect("a LOAD segment");
    start - (first_vaddr & !0xfff)
}

/// Drops a Rust legacy-mangling hash suffix.
fn normalise(name: &str) -> String {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head.to_owned()
        }
        _ => name.to_owned(),
    }
}

/// llvm-symbolizer's inline chains (innermost first) for `addrs`.
fn peer(binary: &Path, addrs: &[u64]) -> Vec<Vec<String>> {
    let mut child = Command::new(PEER)
        .arg(format!("--obj={}", binary.display()))
        .args(["--functions=linkage", "--inlining", "--demangle"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn llvm-symbolizer");
    let mut stdin = child.stdin.take().expect("stdin");
    let input: String = addrs.iter().map(|a| format!("{a:#x}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("llvm-symbolizer output");
    writer.join().expect("writer").expect("write addresses");
    let text = String::from_utf8_lossy(&out.stdout);
    let chains: Vec<Vec<String>> = text
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            block
                .lines()
                .step_by(2)
                .map(|name| normalise(name.trim()))
                .collect()
        })
        .collect();
    assert_eq!(
        chains.len(),
        addrs.len(),
        "llvm-symbolizer answered {} of {}",
        chains.len(),
        addrs.len()
    );
    chains
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn function_names_and_inline_chains_agree_with_llvm_symbolizer() {
    let test = "function_names_and_inline_chains_agree_with_llvm_symbolizer";
    if !Path::new(PEER).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: {PEER} missing (bootstrap --test installs llvm-22)"
        );
        skip(test, "llvm-symbolizer-22 is not installed");
        return;
    }
    let dir = match examples() {
        Ok(dir) => dir,
        Err(err) => {
            assert!(std::env::var_os("CI").is_none(), "{test}: {err}");
            skip(test, &err);
            return;
        }
    };
    // 1,000 addresses: 500 from the Rust workload (inlining), 100 from each C workload.
    let plan = [
        ("rust-workload", 500),
        ("split", 100),
        ("recursion", 100),
        ("syscalls", 100),
        ("threads", 100),
        ("split-nofp", 100),
    ];
    let mut total = 0;
    let mut agree = 0;
    let mut inlined_sites = 0;
    let mut classes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (i, (name, n)) in plan.iter().enumerate() {
        let binary = dir.join(name);
        let funcs = functions(&binary);
        let names_at = aliases(&binary);
        assert!(!funcs.is_empty(), "{name} has no function symbols");
        let addrs = sample_addresses(&funcs, *n, 0x5eed + i as u64);
        let expected = peer(&binary, &addrs);
        let child = Running(
            Command::new(&binary)
                .arg("30")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn example"),
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
        let pid = child.0.id();
        let bias = load_bias(pid, &binary);
        let mut sym = Symbolizer::new(Config::default());
        for (addr, want) in addrs.iter().zip(&expected) {
            total += 1;
            let frames = sym.symbolize_user_stack(pid, &[addr + bias]);
            // Ours are root first (outer function, then inlined ones); the peer's innermost first.
            let got: Vec<String> = frames.iter().rev().map(|f| normalise(&f.name)).collect();
            if want.len() > 1 {
                inlined_sites += 1;
            }
            if &got == want {
                agree += 1;
                continue;
            }
            // The start of the function containing the address, and the names it has there.
            let start = funcs
                .iter()
                .rev()
                .find(|(a, size)| a <= addr && *addr < a + size)
                .map(|(a, _)| *a);
            let both_aliases = start.and_then(|a| names_at.get(&a)).is_some_and(|names| {
                got.last().is_some_and(|g| names.contains(g))
                    && want.last().is_some_and(|w| names.contains(w))
            });
            let same_but_outer =
                got.len() == want.len() && got[..got.len() - 1] == want[..want.len() - 1];
            let class = if want.iter().all(|w| w == "??") {
                "peer has no name"
            } else if both_aliases && same_but_outer {
                "folded code: outer function is another of the symbols at that address"
            } else if got.last() != want.last() {
                "different outer function"
            } else if got.len() != want.len() {
                "different inline depth"
            } else {
                "different inlined names"
            };
            classes
                .entry(class)
                .or_default()
                .push(format!("{name} {addr:#x}: ours {got:?}, llvm {want:?}"));
        }
    }
    eprintln!("agreement: {agree}/{total}, {inlined_sites} addresses with inlined frames");
    for (class, cases) in &classes {
        eprintln!("  {class}: {}", cases.len());
        for case in cases.iter().take(5) {
            eprintln!("    {case}");
        }
    }
    assert_eq!(total, 1000);
    assert!(
        inlined_sites >= 50,
        "too few inlined sites sampled: {inlined_sites}"
    );
    // Identical code folding leaves one body with several names (`nm` lists them all at
    // one address); which one a symbolizer reports is arbitrary, so those are counted
    // and reported, not failures. Every other disagreement fails.
    let folded = classes
        .get("folded code: outer function is another of the symbols at that address")
        .map_or(0, Vec::len);
    assert!(
        folded <= 20,
        "{folded} folded-code disagreements: too many to be chance"
    );
    assert_eq!(agree + folded, total, "disagreements: {classes:#?}");
}
