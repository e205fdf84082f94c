//! JIT symbols from perf map files, `/tmp/perf-<pid>.map`, as written by Node.js
//! (`--perf-basic-prof`), JVM perf-map agents and CPython 3.12+ (`-X perf`): one symbol
//! per line, `<start hex> <size hex> <name>`, where the name may contain spaces.
//!
//! A process in a container writes the file in its own `/tmp` under its own pid, so the
//! file is read as `/proc/<pid>/root/tmp/perf-<nspid>.map`, `nspid` being the innermost
//! pid of the `NSpid:` line of `/proc/<pid>/status`. Lines that do not parse are skipped,
//! counted and logged once per read. Later lines win over earlier ones for the same start
//! address (JITs reuse code space).

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// The symbols of one perf map, sorted by start address.
#[derive(Debug, Default)]
pub(crate) struct PerfMap {
    entries: Vec<(u64, u64, Arc<str>)>,
}

fn hex(field: &str) -> Option<u64> {
    let digits = field
        .strip_prefix("0x")
        .or_else(|| field.strip_prefix("0X"))
        .unwrap_or(field);
    u64::from_str_radix(digits, 16).ok()
}

impl PerfMap {
    /// Parses a perf map's text; returns it and the number of malformed lines skipped.
    pub(crate) fn parse(text: &str) -> (PerfMap, u64) {
        let mut skipped = 0;
        let mut entries: Vec<(u64, u64, Arc<str>)> = Vec::new();
        let mut first_bad = None;
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut parts = line.splitn(3, ' ');
            let parsed = (|| {
                let start = hex(parts.next()?)?;
                let size = hex(parts.next()?)?;
                let name = parts.next()?.trim();
                let end = start.checked_add(size)?;
                (size > 0 && !name.is_empty()).then(|| (start, end, Arc::<str>::from(name)))
            })();
            match parsed {
                Some(entry) => entries.push(entry),
                None => {
                    skipped += 1;
                    first_bad.get_or_insert(number + 1);
                }
            }
        }
        if let Some(line) = first_bad {
            tracing::debug!(
                first_bad_line = line,
                skipped,
                "skipped malformed perf map lines"
            );
        }
        // Stable sort, then keep the last entry of each start address.
        entries.sort_by_key(|e| e.0);
        let mut deduped: Vec<(u64, u64, Arc<str>)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match deduped.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => deduped.push(entry),
            }
        }
        (PerfMap { entries: deduped }, skipped)
    }

    /// The name of the JIT function containing `addr`.
    pub(crate) fn lookup(&self, addr: u64) -> Option<&Arc<str>> {
        let idx = self
            .entries
            .partition_point(|e| e.0 <= addr)
            .checked_sub(1)?;
        // An earlier, larger symbol may still cover the address when the one right
        // before it is small: look back a little.
        self.entries[..=idx]
            .iter()
            .rev()
            .take(8)
            .find(|e| addr < e.1)
            .map(|e| &e.2)
    }

    /// Number of symbols.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The innermost pid of `pid` (its pid inside its own pid namespace), from `NSpid:`.
fn ns_pid(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// Reads the perf map of process `pid`: through its root first, then the host's `/tmp`.
pub(crate) fn read(pid: u32) -> io::Result<(PerfMap, u64)> {
    let nspid = ns_pid(pid).unwrap_or(pid);
    let candidates = [
        PathBuf::from(format!("/proc/{pid}/root/tmp/perf-{nspid}.map")),
        PathBuf::from(format!("/tmp/perf-{pid}.map")),
    ];
    let mut last_err = io::Error::from(io::ErrorKind::NotFound);
    for path in candidates {
        match fs::read(&path) {
            Ok(bytes) => return Ok(PerfMap::parse(&String::from_utf8_lossy(&bytes))),
            Err(err) => last_err = err,
        }
    }
    Err(last_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_and_cpython_formats_and_skips_bad_lines() {
        let text = "\
7f0000001000 40 LazyCompile:*hotLoop /app/main.js:3:17\n\
7f0000001040 20 py::fib:/app/fib.py\n\
0x7f0000002000 0x100 Builtin:ArrayMap\n\
garbage line\n\
7f0000003000 zz bad-size\n\
7f0000004000 10\n\
\n\
7f0000005000 0 empty\n\
ffffffffffffffff 10 overflow\n\
7f0000001000 40 LazyCompile:*hotLoopAgain /app/main.js:3:17\n";
        let (map, skipped) = PerfMap::parse(text);
        assert_eq!(skipped, 5);
        assert_eq!(map.len(), 3);
        assert_eq!(
            map.lookup(0x7f00_0000_1010).map(|n| &**n),
            Some("LazyCompile:*hotLoopAgain /app/main.js:3:17")
        );
        assert_eq!(
            map.lookup(0x7f00_0000_1050).map(|n| &**n),
            Some("py::fib:/app/fib.py")
        );
        assert_eq!(
            map.lookup(0x7f00_0000_20ff).map(|n| &**n),
            Some("Builtin:ArrayMap")
        );
        assert_eq!(map.lookup(0x7f00_0000_2100), None);
        assert_eq!(map.lookup(0x7f00_0000_0fff), None);
        assert_eq!(map.lookup(0), None);
    }

    #[test]
    fn a_missing_perf_map_is_an_error_not_a_panic() {
        assert!(read(u32::MAX).is_err());
        let (map, skipped) = PerfMap::parse("\u{fffd}\u{0}\n   \n");
        assert_eq!((map.len(), skipped), (0, 1));
    }
}
