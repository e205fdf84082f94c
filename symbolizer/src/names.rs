//! Demangling, once per distinct symbol name.
//!
//! blazesym can demangle, but does it again on every lookup, which was the largest single
//! cost of a warm lookup (a third of it, mostly Rust v0 names). The binaries' blazesym
//! instances therefore return raw names and the symbolizer demangles through this cache;
//! hot functions are looked up at many addresses, so most names hit.
//!
//! The scheme is chosen by the name's shape: `_R…` is Rust v0, `_ZN…17h<16 hex>E` Rust
//! legacy (printed without the hash), other `_Z…` names C++ (Itanium ABI); anything else
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

fn is_rust_legacy(name: &str) -> bool {
    let Some(body) = name.strip_prefix("_ZN").and_then(|n| n.strip_suffix('E')) else {
        return false;
    };
    body.len() > 19
        && body[body.len() - 19..].starts_with("17h")
        && body[body.len() - 16..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
}

/// The demangled form of `name`, or `None` when it is not mangled (or not validly).
pub(crate) fn demangle(name: &str) -> Option<String> {
    if name.starts_with("_R") || is_rust_legacy(name) {
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
        let again = cache.get("_ZN2ns5Point6lengthEv");
        assert!(Arc::ptr_eq(&again, &cache.get("_ZN2ns5Point6lengthEv")));
        let mut raw = NameCache::new(false);
        assert_eq!(&*raw.get("_ZN2ns5Point6lengthEv"), "_ZN2ns5Point6lengthEv");
    }
}
