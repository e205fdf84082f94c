//! Demangling, once per distinct symbol name.
//!
//! blazesym can demangle, but does it again on every lookup, which was the largest single
//! cost of a warm lookup (a third of it, mostly Rust v0 names). The binaries' blazesym
//! instances therefore return raw names and the symbolizer demangles through this cache;
//! hot functions are looked up at many addresses, so most names hit.
//!
//! The scheme is chosen by the name's shape: `_R…` is Rust v0, `_ZN…17h<16 hex>E` Rust
//! legacy (printed without the hash and without compiler suffixes such as `.llvm.N`), other `_Z…` names C++ (Itanium ABI); anything else
//! (C) is kept as is, as is a name that fails to demangle.

use std::collections::HashMap;
use std::sync::Arc;

/// Most names remembered; the cache is cleared when it would grow past this.
const CAPACITY: usize = 262_144;

/// Raw symbol names to the names frames carry.
#[derive(Debug, Default)]
pub(crate) struct NameCache {
    map: HashMap<Box<str>, Arc<str>>,
    demangle: bool,
}

/// A Rust legacy name: `_ZN…17h<16 hex>E`, possibly followed by a compiler suffix
/// (`.llvm.1234`, `.cold`, `.isra.0`, …) that LTO and optimizations add. Routed to the C++
/// demangler, such a name came out as `…::poll::hfdfe44aad10fd082 [clone .llvm.158]`.
/// Returns the name without its suffix: functions split or cloned by the compiler keep the
/// name of the function they came from.
fn rust_legacy(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("_ZN")?;
    // The hash component ends the path: `17h`, 16 hex digits, `E`, then the end or a suffix.
    let bytes = rest.as_bytes();
    rest.match_indices("17h").find_map(|(i, _)| {
        let hex = i + 3;
        let end = hex + 16;
        (bytes.len() > end
            && bytes[hex..end].iter().all(u8::is_ascii_hexdigit)
            && bytes[end] == b'E'
            && bytes.get(end + 1).is_none_or(|&b| b == b'.'))
        .then(|| &name[..3 + end + 1])
    })
}

/// The demangled form of `name`, or `None` when it is not mangled (or not validly).
pub(crate) fn demangle(name: &str) -> Option<String> {
    if let Some(legacy) = rust_legacy(name) {
        return rustc_demangle::try_demangle(legacy)
            .ok()
            .map(|d| format!("{d:#}"));
    }
    if name.starts_with("_R") {
        return rustc_demangle::try_demangle(name)
            .ok()
            .map(|d| format!("{d:#}"));
    }
    if name.starts_with("_Z") {
        return cpp_demangle::Symbol::new(name)
            .ok()
            .and_then(|sym| sym.demangle().ok());
    }
    None
}

impl NameCache {
    /// A cache that demangles when `demangle` is set, else only interns.
    pub(crate) fn new(demangle: bool) -> Self {
        NameCache {
            map: HashMap::new(),
            demangle,
        }
    }

    /// The name frames should carry for the raw symbol name `raw`.
    pub(crate) fn get(&mut self, raw: &str) -> Arc<str> {
        if let Some(name) = self.map.get(raw) {
            return Arc::clone(name);
        }
        let name: Arc<str> = match self.demangle.then(|| demangle(raw)).flatten() {
            Some(demangled) => demangled.into(),
            None => raw.into(),
        };
        if self.map.len() >= CAPACITY {
            self.map.clear();
        }
        self.map.insert(raw.into(), Arc::clone(&name));
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_rust_and_cpp_and_keeps_c() {
        let mut cache = NameCache::new(true);
        assert_eq!(
            &*cache.get("_ZN3std2rt10lang_start17h0123456789abcdefE"),
            "std::rt::lang_start"
        );
        assert_eq!(&*cache.get("_ZN2ns5Point6lengthEv"), "ns::Point::length()");
        assert_eq!(&*cache.get("main"), "main");
        assert_eq!(&*cache.get("_Z"), "_Z");
        assert_eq!(&*cache.get("_RNvCs1234_7mycrate3foo"), "mycrate::foo");
        // Compiler suffixes after a Rust legacy name: still Rust, hash and suffix dropped.
        assert_eq!(
            &*cache.get(
                "_ZN5tokio7runtime4task3raw4poll17hfdfe44aad10fd082E.llvm.15864013562434312386"
            ),
            "tokio::runtime::task::raw::poll"
        );
        assert_eq!(
            &*cache.get(
                "_ZN71_$LT$core..hash..sip..Hasher$LT$S$GT$$u20$as$u20$core..hash..Hasher$GT$5write17h0123456789abcdefE.llvm.42"
            ),
            "<core::hash::sip::Hasher<S> as core::hash::Hasher>::write"
        );
        assert_eq!(
            &*cache.get("_ZN4core3ptr13drop_in_place17h0123456789abcdefE.cold"),
            "core::ptr::drop_in_place"
        );
        let again = cache.get("_ZN2ns5Point6lengthEv");
        assert!(Arc::ptr_eq(&again, &cache.get("_ZN2ns5Point6lengthEv")));
        let mut raw = NameCache::new(false);
        assert_eq!(&*raw.get("_ZN2ns5Point6lengthEv"), "_ZN2ns5Point6lengthEv");
    }

    /// The names of a real optimized Rust build: this test binary's dependencies are built
    /// at opt-level 2, so its string table holds legacy names with `.llvm.` suffixes. Each
    /// comes out as a Rust path: no hash, no suffix, no `$LT$` escapes, no `[clone`.
    #[test]
    fn llvm_suffixed_names_of_a_real_build_demangle_as_rust() {
        let exe = std::env::current_exe().expect("test binary path");
        let bytes = std::fs::read(exe).expect("read the test binary");
        let names: Vec<&str> = bytes
            .split(|&b| b == 0)
            .filter_map(|s| std::str::from_utf8(s).ok())
            .filter(|s| {
                // Exactly `<legacy name>.llvm.<digits>`, as the string table holds them.
                rust_legacy(s).is_some_and(|l| {
                    s[l.len()..]
                        .strip_prefix(".llvm.")
                        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                })
            })
            .collect();
        assert!(
            names.len() >= 10,
            "only {} LLVM-suffixed Rust names in the test binary",
            names.len()
        );
        let mut cache = NameCache::new(true);
        for raw in names {
            let name = cache.get(raw);
            assert!(
                !name.contains("[clone")
                    && !name.contains(".llvm.")
                    && !name.contains("$LT$")
                    && !name.contains("17h"),
                "{raw} -> {name}"
            );
            let last = name.rsplit("::").next().unwrap_or_default();
            assert!(
                !(last.len() == 17
                    && last.starts_with('h')
                    && last[1..].bytes().all(|b| b.is_ascii_hexdigit())),
                "{raw} kept its hash: {name}"
            );
        }
    }
}
