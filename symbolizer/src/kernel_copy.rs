//! A copy of the running kernel's symbols, kept on disk until the next boot.
//!
//! `/proc/kallsyms` is generated on every read: the kernel expands and formats about
//! 200,000 lines, which cost a short `ember record` more CPU than anything else it did
//! (about 0.08 s of a 5 s capture's 0.22 s on the test machine). The core kernel's symbols
//! cannot change before a reboot, and the modules' only when one is loaded or unloaded, so
//! a copy is valid for as long as the boot id (`/proc/sys/kernel/random/boot_id`) and
//! `/proc/modules` (names, sizes and load addresses) are unchanged; both are in the
//! copy's first line, a line of text. The symbols follow it as a sorted table that later
//! runs map (`ksyms`).
//!
//! BPF programs and trampolines come and go within a boot, so their lines are not copied.
//! The copy is trusted only for addresses in the core kernel's text (`_stext` to `_etext`,
//! and the init text, `_sinittext` to `_einittext`)
//! and in a module's range from `/proc/modules`; the kernel symbolizer reads the live file
//! for any other address, so a name never comes from a stale copy.
//!
//! The copy is written by the user who runs Ember, into a directory only that user can
//! enter, and is used only if that user owns it and nobody else can write it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write as _};
use std::ops::Range;
use std::path::Path;

use crate::copies::{fnv1a, is_private, private_dir, write_private};
use crate::ksyms::{KernelSymbols, SortedSymbols, each_line};

/// Identifies the boot.
pub(crate) const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// The loaded modules, with their sizes and load addresses.
pub(crate) const MODULES: &str = "/proc/modules";

/// The copy's name in its directory.
const COPY_NAME: &str = "kallsyms";
/// The start of the copy's first line; the version changes with the line's format.
const HEADER: &str = "# ember kallsyms copy v3";
/// More than any kallsyms (about 5 MiB with a distribution kernel's modules); a file past
/// it is not copied.
pub(crate) const MAX_KALLSYMS_BYTES: u64 = 256 << 20;
/// `/proc/modules` is read whole for the key; a few kilobytes normally.
const MAX_MODULES_BYTES: u64 = 16 << 20;

/// What a copy must match to be used: this boot and these modules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    boot_id: String,
    /// FNV-1a of `/proc/modules`.
    modules_hash: u64,
    /// Each module's `[address, address + size)`, sorted.
    modules: Vec<Range<u64>>,
}

impl Key {
    /// The running kernel's key, from [`BOOT_ID`] and [`MODULES`] (or the given files).
    pub(crate) fn read(boot_id: &Path, modules: &Path) -> io::Result<Key> {
        let boot = read_bounded(boot_id, 4096)?;
        let modules = match read_bounded(modules, MAX_MODULES_BYTES) {
            // A kernel built without module support.
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            other => other?,
        };
        Key::parse(&boot, &modules)
    }

    fn parse(boot_id: &str, modules: &str) -> io::Result<Key> {
        let boot_id = boot_id.trim();
        if boot_id.is_empty() || !boot_id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(invalid(format!("boot id {boot_id:?} is not a UUID")));
        }
        let mut ranges = Vec::new();
        for line in modules.lines() {
            // name size refcount dependencies state address [taints]
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let (Some(size), Some(addr)) = (fields.get(1), fields.get(5)) else {
                continue;
            };
            let size: u64 = size
                .parse()
                .map_err(|_| invalid(format!("module line {line:?}")))?;
            let addr = addr
                .strip_prefix("0x")
                .and_then(|a| u64::from_str_radix(a, 16).ok())
                .ok_or_else(|| invalid(format!("module line {line:?}")))?;
            if addr == 0 {
                // Addresses hidden from this process: the modules cannot be told apart.
                return Err(invalid("module addresses are hidden".to_owned()));
            }
            ranges.push(addr..addr.saturating_add(size));
        }
        ranges.sort_by_key(|r| r.start);
        Ok(Key {
            boot_id: boot_id.to_owned(),
            modules_hash: fnv1a(modules.as_bytes()),
            modules: ranges,
        })
    }

    fn header(&self, core: &[Range<u64>]) -> String {
        let ranges: Vec<String> = core
            .iter()
            .map(|r| format!("{:x}-{:x}", r.start, r.end))
            .collect();
        format!(
            "{HEADER} boot={} modules={:016x} core={}\n",
            self.boot_id,
            self.modules_hash,
            ranges.join(",")
        )
    }

    /// The core text ranges a copy's first line states, if the line is this key's.
    fn matches(&self, line: &str) -> Option<Vec<Range<u64>>> {
        let rest = line.trim_end().strip_prefix(HEADER)?.strip_prefix(' ')?;
        let mut fields = rest.split(' ');
        let boot = fields.next()?.strip_prefix("boot=")?;
        let modules = fields.next()?.strip_prefix("modules=")?;
        let core = fields.next()?.strip_prefix("core=")?;
        if fields.next().is_some()
            || boot != self.boot_id
            || u64::from_str_radix(modules, 16).ok()? != self.modules_hash
        {
            return None;
        }
        core.split(',')
            .map(|r| {
                let (start, end) = r.split_once('-')?;
                let r = u64::from_str_radix(start, 16).ok()?..u64::from_str_radix(end, 16).ok()?;
                (r.start < r.end).then_some(r)
            })
            .collect()
    }
}

/// The addresses a copy names: the core kernel's text (with its init text, where the
/// idle task of the boot CPU keeps `x86_64_start_kernel` on its stack) and the modules'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Coverage {
    core: Vec<Range<u64>>,
    modules: Vec<Range<u64>>,
}

impl Coverage {
    /// Whether the copy holds every symbol that could name `addr`.
    pub(crate) fn contains(&self, addr: u64) -> bool {
        if self.core.iter().any(|r| r.contains(&addr)) {
            return true;
        }
        let i = self.modules.partition_point(|r| r.start <= addr);
        i > 0 && self.modules[i - 1].contains(&addr)
    }
}

/// The copy in `dir` for `key`, mapped, and what it covers: the one there if it is this
/// boot's and these modules' and whole, else a new one made from `live` (normally
/// [`KALLSYMS`](crate::kernel::KALLSYMS)).
///
/// # Errors
/// When `dir` or the copy cannot be used or written, or `live` cannot be read or lacks
/// `_stext`/`_etext`: the caller then reads `live` itself.
pub(crate) fn open_or_make(
    dir: &Path,
    live: &Path,
    key: &Key,
) -> io::Result<(KernelSymbols, Coverage)> {
    private_dir(dir)?;
    let path = dir.join(COPY_NAME);
    if let Some((file, core)) = existing(&path, key)? {
        match KernelSymbols::open(&file) {
            Ok(table) => {
                tracing::debug!(
                    copy = %path.display(),
                    symbols = table.len(),
                    "kernel symbols from this boot's copy"
                );
                return Ok((table, coverage(core, key)));
            }
            Err(err) => tracing::warn!(
                copy = %path.display(),
                error = %err,
                "making the copy of the kernel's symbols again"
            ),
        }
    }
    let (core, kept) = filter(BufReader::new(File::open(live)?))?;
    let header = key.header(&core);
    // A crash means a reboot, and a new boot id makes any copy stale.
    write_private(&path, |out| {
        out.write_all(header.as_bytes())?;
        kept.write(out, header.len())
    })?;
    tracing::debug!(copy = %path.display(), "kept a copy of the kernel's symbols for this boot");
    let table = KernelSymbols::open(&File::open(&path)?)?;
    Ok((table, coverage(core, key)))
}

fn coverage(core: Vec<Range<u64>>, key: &Key) -> Coverage {
    Coverage {
        core,
        modules: key.modules.clone(),
    }
}

/// The copy at `path`, open, and the core text ranges its key line names, if it is this
/// user's alone and its key is `key`.
fn existing(path: &Path, key: &Key) -> io::Result<Option<(File, Vec<Range<u64>>)>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !is_private(&file.metadata()?) {
        tracing::debug!(copy = %path.display(), "replacing a copy others could write");
        return Ok(None);
    }
    let mut first = String::new();
    BufReader::new((&mut file).take(4096)).read_line(&mut first)?;
    Ok(key.matches(&first).map(|core| (file, core)))
}

/// The core kernel's text ranges, and the symbols worth keeping, from kallsyms read line
/// by line (at most [`MAX_KALLSYMS_BYTES`]).
fn filter(kallsyms: impl BufRead) -> io::Result<(Vec<Range<u64>>, SortedSymbols)> {
    let mut kept = SortedSymbols::default();
    let (mut stext, mut etext, mut sinit, mut einit) = (None, None, None, None);
    each_line(kallsyms, MAX_KALLSYMS_BYTES, |line| {
        match line.module {
            // BPF programs, ftrace and kprobe trampolines: loaded and freed at any time.
            Some(m) if m == "[bpf]" || m.starts_with("[__builtin") => return Ok(()),
            Some(_) => {}
            None => match line.name {
                "_stext" => stext = Some(line.addr),
                "_etext" => etext = Some(line.addr),
                "_sinittext" => sinit = Some(line.addr),
                "_einittext" => einit = Some(line.addr),
                _ => {}
            },
        }
        kept.push(line.addr, line.name)
    })?;
    let mut core = Vec::with_capacity(2);
    match (stext, etext) {
        (Some(s), Some(e)) if s != 0 && s < e => core.push(s..e),
        _ => return Err(invalid("kallsyms has no _stext.._etext".to_owned())),
    }
    if let (Some(s), Some(e)) = (sinit, einit)
        && s != 0
        && s < e
    {
        core.push(s..e);
    }
    Ok((core, kept))
}

fn read_bounded(path: &Path, max: u64) -> io::Result<String> {
    let mut text = String::new();
    File::open(path)?.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(invalid(format!(
            "{} is larger than {max} bytes",
            path.display()
        )));
    }
    Ok(text)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    const BOOT: &str = "0b5c6f1e-7d1a-4c36-9d9e-2f5a1c2b3d4e\n";
    const MODULES_TEXT: &str = "virtio_net 77824 0 - Live 0xffffffffc0100000\n\
                                 ext4 1032192 1 - Live 0xffffffffc0200000 (E)\n";
    const LIVE: &str = "ffffffff81000000 T _stext\n\
                        ffffffff81001000 T do_syscall_64\n\
                        ffffffff81800000 T _etext\n\
                        ffffffff83000000 T _sinittext\n\
                        ffffffff83000100 T x86_64_start_kernel\n\
                        ffffffff83100000 T _einittext\n\
                        ffffffffc0100000 t virtnet_poll\t[virtio_net]\n\
                        ffffffffc0300000 t bpf_prog_6deef7357e7b4530_sample\t[bpf]\n\
                        ffffffffc0400000 t ftrace_trampoline\t[__builtin__ftrace]\n";

    #[test]
    fn a_key_is_this_boot_and_these_modules() {
        let key = Key::parse(BOOT, MODULES_TEXT).expect("key");
        assert_eq!(key.modules.len(), 2);
        let core = vec![
            0xffff_ffff_8100_0000..0xffff_ffff_8180_0000,
            0xffff_ffff_8300_0000..0xffff_ffff_8310_0000,
        ];
        assert_eq!(key.matches(&key.header(&core)), Some(core.clone()));
        let other_boot = Key::parse("1b5c6f1e-7d1a-4c36-9d9e-2f5a1c2b3d4e", MODULES_TEXT);
        assert_eq!(other_boot.expect("key").matches(&key.header(&core)), None);
        let unloaded = Key::parse(BOOT, "ext4 1032192 1 - Live 0xffffffffc0200000\n");
        assert_eq!(unloaded.expect("key").matches(&key.header(&core)), None);
        assert!(Key::parse(BOOT, "ext4 1032192 1 - Live 0x0000000000000000\n").is_err());
        assert!(Key::parse("", MODULES_TEXT).is_err());
        assert!(Key::parse(BOOT, "ext4 many 1 - Live 0xffffffffc0200000\n").is_err());
        // A kernel without module support has no /proc/modules.
        let dir = tempfile::tempdir().expect("dir");
        let boot = dir.path().join("boot_id");
        fs::write(&boot, BOOT).expect("boot id");
        let key = Key::read(&boot, &dir.path().join("modules")).expect("no modules");
        assert!(key.modules.is_empty());
    }

    #[test]
    fn the_copy_covers_core_text_and_modules_only() {
        let key = Key::parse(BOOT, MODULES_TEXT).expect("key");
        let (core, kept) = filter(LIVE.as_bytes()).expect("filter");
        assert!(!kept.has("bpf_prog_6deef7357e7b4530_sample") && !kept.has("ftrace_trampoline"));
        assert!(kept.has("virtnet_poll") && kept.has("do_syscall_64"));
        let c = coverage(core, &key);
        assert!(c.contains(0xffff_ffff_8100_1234));
        assert!(!c.contains(0xffff_ffff_8180_0000));
        assert!(c.contains(0xffff_ffff_8300_01d0), "init text");
        assert!(c.contains(0xffff_ffff_c010_0010));
        assert!(c.contains(0xffff_ffff_c020_0000 + 1_032_191));
        assert!(
            !c.contains(0xffff_ffff_c030_0000),
            "a BPF program's address"
        );
        assert!(!c.contains(0xffff_ffff_c000_0000));
        assert!(filter("ffffffff81001000 T do_syscall_64\n".as_bytes()).is_err());
    }

    #[test]
    fn a_copy_is_made_once_and_reused_while_its_key_holds() {
        let dir = tempfile::tempdir().expect("dir");
        let live = dir.path().join("live");
        fs::write(&live, LIVE).expect("live");
        let copies = dir.path().join("cache/kernel");
        let key = Key::parse(BOOT, MODULES_TEXT).expect("key");
        let (table, _) = open_or_make(&copies, &live, &key).expect("made");
        let path = copies.join(COPY_NAME);
        assert_eq!(
            table.find(0xffff_ffff_8100_1010),
            Some(("do_syscall_64", 0x10))
        );
        let mode = fs::metadata(&copies).expect("dir").mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(fs::metadata(&path).expect("copy").mode() & 0o777, 0o600);
        // The live file is not read again while the key holds.
        fs::remove_file(&live).expect("rm");
        let (again, _) = open_or_make(&copies, &live, &key).expect("reused");
        assert_eq!(again.find(0xffff_ffff_c010_0001), Some(("virtnet_poll", 1)));
        // A damaged copy is made again (from the live file, which is gone here).
        let whole = fs::read(&path).expect("copy");
        fs::write(&path, &whole[..whole.len() - 3]).expect("truncate");
        assert!(open_or_make(&copies, &live, &key).is_err());
        fs::write(&live, LIVE).expect("live");
        let (remade, _) = open_or_make(&copies, &live, &key).expect("remade");
        assert_eq!(remade.len(), 7);
        assert_eq!(fs::read(&path).expect("copy"), whole);
        fs::remove_file(&live).expect("rm");
        // A module loaded since: the copy is stale, and the live file is needed again.
        let loaded = Key::parse(BOOT, "kvm 1 0 - Live 0xffffffffc0500000\n").expect("key");
        assert!(open_or_make(&copies, &live, &loaded).is_err());
        fs::write(&live, LIVE).expect("live");
        open_or_make(&copies, &live, &loaded).expect("remade");
        let first = fs::read(&path).expect("copy");
        let first = first.split(|&b| b == b'\n').next().expect("header");
        assert!(
            loaded
                .matches(std::str::from_utf8(first).expect("text key"))
                .is_some()
        );
        // A copy others can write is made again; a directory others can write is refused.
        let shared = std::os::unix::fs::PermissionsExt::from_mode(0o666);
        fs::set_permissions(&path, shared).expect("chmod");
        open_or_make(&copies, &live, &loaded).expect("remade");
        assert_eq!(fs::metadata(&path).expect("copy").mode() & 0o777, 0o600);
        let shared = std::os::unix::fs::PermissionsExt::from_mode(0o777);
        fs::set_permissions(&copies, shared).expect("chmod");
        assert!(open_or_make(&copies, &live, &loaded).is_err());
    }
}
