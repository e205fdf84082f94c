//! Demangling, once per distinct symbol name, and source paths, once per distinct file.
//!
//! blazesym can demangle, but does it again on every lookup, which was the largest single
//! cost of a warm lookup (a third of it, mostly Rust v0 names). The binaries' blazesym
//! resolvers therefore return raw names and the symbolizer demangles through this cache;
//! hot functions are looked up at many addresses, so most names hit.
//!
//! The scheme is chosen by the name's shape: `_R…` is Rust v0, `_ZN…17h<16 hex>E` Rust
//! legacy (printed without the hash and without compiler suffixes such as `.llvm.N`),
//! other `_Z…` names C++ (Itanium ABI); anything else (C) is kept as is, as is a name that
//! fails to demangle.
//!
//! A frame's source file is blazesym's directory and file name joined: [`PathCache`] makes
//! the joined `Arc<str>` once per distinct pair and finds it again from the borrowed parts,
//! where joining, checking the UTF-8 and allocating on every lookup cost a tenth of a warm
//! one. Both maps hash with foldhash: SipHash over ~100-byte mangled names was another.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use hashbrown::{Equivalent, HashMap};

use crate::binary::BinaryId;

/// Most entries each cache holds; a cache is cleared when it would grow past this.
const CAPACITY: usize = 262_144;

/// Raw symbol names to the names frames carry.
#[derive(Debug, Default)]
pub(crate) struct NameCache {
    map: HashMap<Box<str>, Arc<str>>,
    /// The same, by where a name lies in a binary's parsed data (see [`NameCache::get_in`]).
    by_place: HashMap<(BinaryId, usize, usize), Arc<str>>,
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
    // Printed into a buffer the size of the mangled name, about the size of what comes
    // out: `format!` grew it from nothing, a reallocation per doubling, and that was a
    // tenth of a cold lookup in a Rust binary.
    let print = |d: rustc_demangle::Demangle<'_>| {
        use std::fmt::Write;
        let mut out = String::with_capacity(name.len() + 16);
        write!(out, "{d:#}").ok().map(|()| out)
    };
    if let Some(legacy) = rust_legacy(name) {
        return rustc_demangle::try_demangle(legacy).ok().and_then(print);
    }
    if name.starts_with("_R") {
        return rustc_demangle::try_demangle(name).ok().and_then(print);
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
            by_place: HashMap::new(),
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
        remember(&mut self.map, raw.into(), name)
    }

    /// [`NameCache::get`] for a name borrowed from what blazesym parsed of `binary`, found
    /// by its address and length rather than by hashing and comparing its bytes (Rust
    /// names run to a hundred bytes and more).
    ///
    /// Sound because a borrowed name stays where it is, unchanged, as long as the binary's
    /// resolver lives, and that is as long as the binary is registered; a [`BinaryId`] is
    /// never reused, so the same address in a binary registered later is another key. The
    /// caller passes owned names (none with demangling off in blazesym, as here) to `get`.
    pub(crate) fn get_in(&mut self, binary: BinaryId, raw: &str) -> Arc<str> {
        let place = (binary, raw.as_ptr() as usize, raw.len());
        if let Some(name) = self.by_place.get(&place) {
            return Arc::clone(name);
        }
        let name = self.get(raw);
        remember(&mut self.by_place, place, name)
    }
}

/// Source paths frames carry, by the directory and file name blazesym reports.
#[derive(Debug, Default)]
pub(crate) struct PathCache {
    map: HashMap<PathKey, Arc<str>>,
    /// The same, by where the parts lie in a binary's parsed data (as
    /// [`NameCache::get_in`]): `(binary, dir address, dir length, file address, length)`.
    by_place: HashMap<(BinaryId, usize, usize, usize, usize), Arc<str>>,
}

/// A stored (directory, file name) pair.
type PathKey = (Option<Box<[u8]>>, Box<[u8]>);

/// The borrowed form of a [`PathKey`]: hashes as the tuple it stands for does
/// (`Box<[u8]>` and `&[u8]` hash as the bytes).
#[derive(Hash)]
struct PathQuery<'a>((Option<&'a [u8]>, &'a [u8]));

impl Equivalent<PathKey> for PathQuery<'_> {
    fn equivalent(&self, key: &PathKey) -> bool {
        let (dir, file) = self.0;
        dir == key.0.as_deref() && file == &*key.1
    }
}

impl PathCache {
    /// `dir` joined with `file` (as [`Path::join`] does: an absolute `file` stands alone),
    /// lossily as UTF-8.
    pub(crate) fn get(&mut self, dir: Option<&Path>, file: &OsStr) -> Arc<str> {
        let query = PathQuery((dir.map(|d| d.as_os_str().as_bytes()), file.as_bytes()));
        if let Some(path) = self.map.get(&query) {
            return Arc::clone(path);
        }
        let path: Arc<str> = match dir {
            Some(dir) => dir.join(file).to_string_lossy().into(),
            None => file.to_string_lossy().into(),
        };
        let (dir, file) = query.0;
        remember(&mut self.map, (dir.map(Box::from), Box::from(file)), path)
    }

    /// [`PathCache::get`] for parts borrowed from what blazesym parsed of `binary` (sound
    /// for the reasons [`NameCache::get_in`] gives); owned parts are looked up by content.
    #[expect(clippy::ptr_arg, reason = "whether a part is borrowed decides the key")]
    pub(crate) fn get_in(
        &mut self,
        binary: BinaryId,
        dir: Option<&Cow<'_, Path>>,
        file: &Cow<'_, OsStr>,
    ) -> Arc<str> {
        let borrowed = match (dir, file) {
            (None, Cow::Borrowed(file)) => Some((0, 0, *file)),
            (Some(Cow::Borrowed(dir)), Cow::Borrowed(file)) => {
                let dir = dir.as_os_str().as_bytes();
                Some((dir.as_ptr() as usize, dir.len(), *file))
            }
            _ => None,
        };
        let Some((dir_at, dir_len, file_part)) = borrowed else {
            return self.get(dir.map(|d| &**d), file);
        };
        let file_part = file_part.as_bytes();
        let place = (
            binary,
            dir_at,
            dir_len,
            file_part.as_ptr() as usize,
            file_part.len(),
        );
        if let Some(path) = self.by_place.get(&place) {
            return Arc::clone(path);
        }
        let path = self.get(dir.map(|d| &**d), file);
        remember(&mut self.by_place, place, path)
    }
}

/// Stores `value` under `key` in one of the caches, emptying it first when it holds
/// [`CAPACITY`] entries; returns `value`.
fn remember<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Arc<str>>,
    key: K,
    value: Arc<str>,
) -> Arc<str> {
    if map.len() >= CAPACITY {
        map.clear();
    }
    map.insert(key, Arc::clone(&value));
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_name_in_a_binary_is_found_by_its_place_and_shares_the_demangled_name() {
        let mut cache = NameCache::new(true);
        let data = String::from("_ZN3std2rt10lang_start17h0123456789abcdefE");
        let first = cache.get_in(1, &data);
        assert_eq!(&*first, "std::rt::lang_start");
        assert!(Arc::ptr_eq(&first, &cache.get_in(1, &data)));
        // Another binary with the same name: its own key, the same demangled name.
        let copy = data.clone();
        assert!(Arc::ptr_eq(&first, &cache.get_in(2, &copy)));
        assert_eq!(cache.by_place.len(), 2);
        assert_eq!(cache.map.len(), 1);
        // A prefix at the same address is another name.
        assert_eq!(&*cache.get_in(1, &data[..3]), "_ZN");
    }

    #[test]
    fn source_paths_are_joined_once_and_found_from_their_parts() {
        let mut paths = PathCache::default();
        let dir = Path::new("/src/crate");
        let a = paths.get(Some(dir), OsStr::new("lib.rs"));
        assert_eq!(&*a, "/src/crate/lib.rs");
        assert!(Arc::ptr_eq(&a, &paths.get(Some(dir), OsStr::new("lib.rs"))));
        // The same file name in another directory, or with none, is another path.
        assert_eq!(
            &*paths.get(Some(Path::new("/src/other")), OsStr::new("lib.rs")),
            "/src/other/lib.rs"
        );
        assert_eq!(&*paths.get(None, OsStr::new("lib.rs")), "lib.rs");
        // An absolute file name is not under the directory; invalid UTF-8 is replaced.
        assert_eq!(
            &*paths.get(Some(dir), OsStr::new("/usr/include/x.h")),
            "/usr/include/x.h"
        );
        assert_eq!(
            &*paths.get(None, OsStr::from_bytes(b"a\xffb.c")),
            "a\u{fffd}b.c"
        );
        assert_eq!(paths.map.len(), 5);
        // By place: borrowed parts are found again by where they lie; owned ones by content.
        let (dir, file) = (Cow::Borrowed(dir), Cow::Borrowed(OsStr::new("lib.rs")));
        assert!(Arc::ptr_eq(&a, &paths.get_in(1, Some(&dir), &file)));
        assert!(Arc::ptr_eq(&a, &paths.get_in(1, Some(&dir), &file)));
        assert_eq!(paths.by_place.len(), 1);
        let owned: Cow<'_, Path> = Cow::Owned(PathBuf::from("/src/crate"));
        assert!(Arc::ptr_eq(&a, &paths.get_in(1, Some(&owned), &file)));
        assert_eq!(paths.by_place.len(), 1);
    }

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
