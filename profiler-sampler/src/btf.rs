//! Kernel structure offsets from the kernel's own BTF (`/sys/kernel/btf/vmlinux`).
//!
//! The fork hook reads one field of the child's `struct task_struct`; its offset differs
//! between kernel builds, and the kernel describes its own types in BTF. Reading the offset
//! from there (instead of from a tracefs format file, or a table of kernel versions) means a
//! new kernel cannot break the hook and nothing has to be mounted.
//!
//! Only the parts of the format this needs are decoded: the header, the string section,
//! and each type's fixed part and trailing data (to step to the next type), with `STRUCT`
//! members read in full. Any malformed input is an error, never a panic.

use std::path::Path;

use profiler_common::unwind::VmaOffsets;

/// Where the running kernel exposes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

/// Why an offset could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The file could not be read.
    #[error("cannot read `{path}`")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The data is not BTF, or is cut short.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// No struct of that name has that member.
    #[error("BTF has no member `{member}` in `struct {ty}`")]
    NotFound {
        /// The struct.
        ty: String,
        /// The member.
        member: String,
    },
}

/// Byte offsets of the `task_struct` fields the eBPF programs read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskOffsets {
    /// `task_struct.tgid`.
    pub tgid: u32,
    /// `task_struct.pid` (the thread id).
    pub pid: u32,
    /// `task_struct.thread.fsbase` (x86-64: a thread's `pthread_t`), by which the Python
    /// walker matches a 3.9 or 3.10 thread; 0 when the kernel has no such field.
    pub fsbase: u32,
}

/// Reads [`TaskOffsets`] from the running kernel's BTF.
///
/// # Errors
/// [`BtfError`] when the file is missing or unreadable (a kernel built without
/// `CONFIG_DEBUG_INFO_BTF`, or a container that hides `/sys`), or malformed.
pub fn task_offsets(path: &Path) -> Result<TaskOffsets, BtfError> {
    read_offsets(path).map(|(task, _)| task)
}

/// Reads the kernel's BTF once: the [`TaskOffsets`], and the file lookup's
/// [`VmaOffsets`] (or why this kernel has not got them).
///
/// # Errors
/// As [`task_offsets`].
pub fn read_offsets(path: &Path) -> Result<(TaskOffsets, Result<VmaOffsets, BtfError>), BtfError> {
    let data = BtfBytes::read(path).map_err(|source| BtfError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let btf = Btf::parse(data.bytes())?;
    let task = TaskOffsets {
        tgid: btf.member_offset("task_struct", "tgid")?,
        pid: btf.member_offset("task_struct", "pid")?,
        fsbase: btf
            .nested_offset("task_struct", "thread", "fsbase")
            .unwrap_or(0),
    };
    Ok((task, btf.vma_offsets()))
}

/// The kernel's BTF, mapped where the kernel allows it (Linux 6.16+ maps
/// `/sys/kernel/btf/vmlinux` privately, read-only), else read. Reading costs more than
/// the parse: sysfs hands out the 5 MiB a page per `read(2)`, into a heap buffer that
/// faults in page by page (2.9 ms against 0.2 ms mapped, measured on 6.18).
enum BtfBytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl BtfBytes {
    fn read(path: &Path) -> std::io::Result<BtfBytes> {
        let file = std::fs::File::open(path)?;
        // SAFETY: the kernel's BTF never changes while the kernel runs (and the test
        // blobs given as `path` are not written while they are read); the mapping is
        // private and read-only, and lives as long as the bytes borrowed from it.
        if let Ok(map) = unsafe { memmap2::MmapOptions::new().map_copy_read_only(&file) } {
            return Ok(BtfBytes::Mapped(map));
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut &file, &mut data)?;
        Ok(BtfBytes::Read(data))
    }

    fn bytes(&self) -> &[u8] {
        match self {
            BtfBytes::Mapped(m) => m,
            BtfBytes::Read(v) => v,
        }
    }
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

/// The NUL-terminated string at `off` in the string section.
fn name_at(strings: &[u8], off: u32) -> Option<&[u8]> {
    let rest = strings.get(off as usize..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(&rest[..end])
}

/// One type of a BTF blob: where its fixed part starts in the type section, and what it
/// says.
#[derive(Clone, Copy)]
struct Type {
    at: usize,
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// `size` or `type`, by kind.
    size_or_type: u32,
}

impl Type {
    /// The type whose 12-byte record starts at `at` (checked by [`Btf::parse`]).
    fn at(types_data: &[u8], at: usize) -> Option<Type> {
        let info = u32_at(types_data, at + 4)?;
        Some(Type {
            at: at + 12,
            name_off: u32_at(types_data, at)?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 != 0,
            size_or_type: u32_at(types_data, at + 8)?,
        })
    }
}

/// A BTF blob's types, indexed by id (id 0 is `void`, index 0 here is id 1).
///
/// Only where each type's record starts is kept (4 bytes a type: the kernel's 150,000
/// types took 6 MiB as decoded records), and the first struct of each name, so the dozen
/// offsets Ember reads do not each walk every type.
struct Btf<'a> {
    types_data: &'a [u8],
    strings: &'a [u8],
    starts: Vec<u32>,
    /// The first `STRUCT` of each name: its index in `starts`.
    structs: std::collections::HashMap<&'a [u8], u32>,
}

const KIND_UNION: u32 = 5;
/// TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG: a member's type seen through these.
const KIND_MODIFIERS: [u32; 5] = [8, 9, 10, 11, 18];

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Result<Btf<'a>, BtfError> {
        let bad = BtfError::Malformed;
        if u16_at(data, 0) != Some(BTF_MAGIC) {
            return Err(bad("bad magic (not little-endian BTF)"));
        }
        let hdr_len = u32_at(data, 4).ok_or(bad("short header"))? as usize;
        let type_off = u32_at(data, 8).ok_or(bad("short header"))? as usize;
        let type_len = u32_at(data, 12).ok_or(bad("short header"))? as usize;
        let str_off = u32_at(data, 16).ok_or(bad("short header"))? as usize;
        let str_len = u32_at(data, 20).ok_or(bad("short header"))? as usize;
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off)?;
            data.get(start..start.checked_add(len)?)
        };
        let types_data = section(type_off, type_len).ok_or(bad("type section out of bounds"))?;
        let strings = section(str_off, str_len).ok_or(bad("string section out of bounds"))?;
        let mut starts = Vec::new();
        let mut structs = std::collections::HashMap::new();
        let mut at = 0usize;
        while at < types_data.len() {
            let t = Type::at(types_data, at).ok_or(bad("truncated type"))?;
            let vlen = t.vlen;
            let extra = match t.kind {
                // VOID, PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG.
                0 | 2 | 7..=12 | 16 | 18 => 0,
                // FUNC_PROTO: a (name, type) pair per parameter.
                13 => vlen * 8,
                // INT, VAR, DECL_TAG: one u32.
                1 | 14 | 17 => 4,
                // ARRAY: element type, index type, count.
                3 => 12,
                // STRUCT, UNION, DATASEC, ENUM64: 12 bytes an entry.
                4 | 5 | 15 | 19 => vlen * 12,
                // ENUM: 8 bytes an entry.
                6 => vlen * 8,
                _ => return Err(bad("unknown type kind")),
            };
            let index = u32::try_from(starts.len()).map_err(|_| bad("too many types"))?;
            if t.kind == KIND_STRUCT
                && let Some(name) = name_at(strings, t.name_off)
            {
                structs.entry(name).or_insert(index);
            }
            starts.push(u32::try_from(at).map_err(|_| bad("type section too large"))?);
            at = at
                .checked_add(12 + extra)
                .ok_or(bad("type data overflows"))?;
            if at > types_data.len() {
                return Err(bad("truncated type data"));
            }
        }
        Ok(Btf {
            types_data,
            strings,
            starts,
            structs,
        })
    }

    /// The type at `index` of `starts` (id `index + 1`).
    fn get(&self, index: usize) -> Option<Type> {
        Type::at(self.types_data, *self.starts.get(index)? as usize)
    }

    /// The structs named `ty` (the first one by name, then every one in id order, for a
    /// blob with two structs of one name), with the first member of them found by `find`.
    fn first_struct_with<T>(
        &self,
        ty: &str,
        mut find: impl FnMut(Type) -> Result<Option<T>, BtfError>,
    ) -> Result<Option<T>, BtfError> {
        let Some(&first) = self.structs.get(ty.as_bytes()) else {
            return Ok(None);
        };
        if let Some(t) = self.get(first as usize)
            && let Some(found) = find(t)?
        {
            return Ok(Some(found));
        }
        for index in first as usize + 1..self.starts.len() {
            if let Some(t) = self.get(index)
                && t.kind == KIND_STRUCT
                && name_at(self.strings, t.name_off) == Some(ty.as_bytes())
                && let Some(found) = find(t)?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The type with id `id`, seen through typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Option<Type> {
        for _ in 0..16 {
            let t = self.get(usize::try_from(id).ok()?.checked_sub(1)?)?;
            if !KIND_MODIFIERS.contains(&t.kind) {
                return Some(t);
            }
            id = t.size_or_type;
        }
        None
    }

    /// Byte offset of `member` in the first `struct ty`.
    fn member_offset(&self, ty: &str, member: &str) -> Result<u32, BtfError> {
        self.first_struct_with(ty, |t| self.find_member(t, member, 0))?
            .map(|(off, _)| off)
            .ok_or_else(|| BtfError::NotFound {
                ty: ty.to_owned(),
                member: member.to_owned(),
            })
    }

    /// `member` of the struct or union `t`, looked for in its anonymous struct and union
    /// members too (`vm_area_struct.vm_start` and most of `mm_struct` sit in one), at most
    /// `depth` 4 deep.
    fn find_member(
        &self,
        t: Type,
        member: &str,
        depth: u32,
    ) -> Result<Option<(u32, u32)>, BtfError> {
        let truncated = || BtfError::Malformed("truncated member");
        for i in 0..t.vlen {
            let m = t.at + i * 12;
            let name = u32_at(self.types_data, m).ok_or_else(truncated)?;
            let ty = u32_at(self.types_data, m + 4).ok_or_else(truncated)?;
            let raw =
                u32_at(self.types_data, m + 8).ok_or(BtfError::Malformed("truncated member"))?;
            // With kind_flag set the low 24 bits are the bit offset and the high 8 the
            // bitfield size.
            let bits = if t.kind_flag { raw & 0x00ff_ffff } else { raw };
            if name == 0 && depth < 4 {
                if let Some(inner) = self.resolve(ty)
                    && matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                    && bits % 8 == 0
                    && let Some((off, found)) = self.find_member(inner, member, depth + 1)?
                {
                    return Ok(Some((off + bits / 8, found)));
                }
                continue;
            }
            if name_at(self.strings, name) != Some(member.as_bytes()) {
                continue;
            }
            if bits % 8 != 0 {
                return Ok(None);
            }
            return Ok(Some((bits / 8, ty)));
        }
        Ok(None)
    }

    /// Byte offset of `outer.inner` in the first `struct ty`: `inner` a member of the
    /// struct or union that `ty`'s member `outer` is (through typedefs:
    /// `mm_struct.context.vdso`, `context` an `mm_context_t`).
    fn nested_offset(&self, ty: &str, outer: &str, inner: &str) -> Result<u32, BtfError> {
        let not_found = || BtfError::NotFound {
            ty: ty.to_owned(),
            member: format!("{outer}.{inner}"),
        };
        let (off, member_ty) = self
            .first_struct_with(ty, |t| self.find_member(t, outer, 0))?
            .ok_or_else(not_found)?;
        let inner_ty = self
            .resolve(member_ty)
            .filter(|i| matches!(i.kind, KIND_STRUCT | KIND_UNION))
            .ok_or_else(not_found)?;
        let (inner_off, _) = self
            .find_member(inner_ty, inner, 0)?
            .ok_or_else(not_found)?;
        Ok(off + inner_off)
    }
}

/// Byte offset of `member` in the first `struct ty` of a (little-endian) BTF blob, found
/// in the struct's anonymous struct and union members too.
///
/// # Errors
/// [`BtfError::Malformed`] for data that is not BTF, [`BtfError::NotFound`] when no such
/// struct has such a member (or the member is a bitfield not on a byte boundary).
pub fn member_offset(data: &[u8], ty: &str, member: &str) -> Result<u32, BtfError> {
    Btf::parse(data)?.member_offset(ty, member)
}

/// Reads the [`VmaOffsets`] of the file lookup from the running kernel's BTF, with
/// `enabled` set.
///
/// # Errors
/// As [`task_offsets`], and [`BtfError::NotFound`] naming the first field this kernel
/// lacks.
pub fn vma_offsets(path: &Path) -> Result<VmaOffsets, BtfError> {
    read_offsets(path).and_then(|(_, vma)| vma)
}

impl Btf<'_> {
    fn vma_offsets(&self) -> Result<VmaOffsets, BtfError> {
        let at = |ty: &str, member: &str| self.member_offset(ty, member);
        // 6.11 split the modification time into seconds and nanoseconds; 6.7–6.10 call the
        // timespec `__i_mtime`, older kernels `i_mtime` (its seconds come first).
        let inode_mtime = at("inode", "i_mtime_sec")
            .or_else(|_| at("inode", "__i_mtime"))
            .or_else(|_| at("inode", "i_mtime"))?;
        Ok(VmaOffsets {
            enabled: 1,
            vm_start: at("vm_area_struct", "vm_start")?,
            vm_end: at("vm_area_struct", "vm_end")?,
            vm_pgoff: at("vm_area_struct", "vm_pgoff")?,
            vm_file: at("vm_area_struct", "vm_file")?,
            file_inode: at("file", "f_inode")?,
            inode_ino: at("inode", "i_ino")?,
            inode_sb: at("inode", "i_sb")?,
            inode_mtime,
            sb_dev: at("super_block", "s_dev")?,
            task_mm: at("task_struct", "mm")?,
            mm_start_code: at("mm_struct", "start_code")?,
            mm_vdso: self.nested_offset("mm_struct", "context", "vdso")?,
            _pad: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob: an INT, then `struct task_struct { int pid@8; int tgid@12; }` (byte
    /// offsets), preceded by a union of the same name that must not match.
    fn blob(tgid_bits: u32, kind_flag: bool) -> Vec<u8> {
        let strings = b"\0int\0task_struct\0pid\0tgid\0";
        let s = |name: &str| -> u32 {
            let pat = format!("\0{name}\0");
            u32::try_from(
                strings
                    .windows(pat.len())
                    .position(|w| w == pat.as_bytes())
                    .expect("name in table")
                    + 1,
            )
            .expect("small")
        };
        let mut types = Vec::new();
        let mut push = |v: u32| types.extend_from_slice(&v.to_le_bytes());
        // [1] INT "int" size 4, encoding word.
        push(s("int"));
        push(1 << 24);
        push(4);
        push(32);
        // [2] UNION "task_struct" with member tgid at 0 (a decoy).
        push(s("task_struct"));
        push((5 << 24) | 1);
        push(4);
        push(s("tgid"));
        push(1);
        push(0);
        // [3] STRUCT task_struct, 2 members.
        push(s("task_struct"));
        push((4 << 24) | (u32::from(kind_flag) << 31) | 2);
        push(16);
        push(s("pid"));
        push(1);
        push(64);
        push(s("tgid"));
        push(1);
        push(tgid_bits);
        let mut out = Vec::new();
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.push(1);
        out.push(0);
        for v in [
            24u32,
            0,
            u32::try_from(types.len()).expect("small"),
            u32::try_from(types.len()).expect("small"),
            u32::try_from(strings.len()).expect("small"),
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(strings);
        out
    }

    #[test]
    fn finds_a_struct_member_and_skips_a_union_of_the_same_name() {
        assert_eq!(
            member_offset(&blob(96, false), "task_struct", "tgid").ok(),
            Some(12)
        );
        assert_eq!(
            member_offset(&blob(96, false), "task_struct", "pid").ok(),
            Some(8)
        );
        // kind_flag: bitfield size in the high byte.
        let with_flag = blob((3 << 24) | 96, true);
        assert_eq!(
            member_offset(&with_flag, "task_struct", "tgid").ok(),
            Some(12)
        );
    }

    #[test]
    fn missing_members_and_bad_data_are_errors() {
        assert!(matches!(
            member_offset(&blob(96, false), "task_struct", "nope"),
            Err(BtfError::NotFound { .. })
        ));
        assert!(matches!(
            member_offset(&blob(97, false), "task_struct", "tgid"),
            Err(BtfError::NotFound { .. })
        ));
        assert!(matches!(
            member_offset(b"not btf at all", "task_struct", "tgid"),
            Err(BtfError::Malformed(_))
        ));
        // Every truncation of a valid blob is an error, never a panic.
        let full = blob(96, false);
        for len in 0..full.len() {
            assert!(
                member_offset(&full[..len], "task_struct", "tgid").is_err(),
                "{len}"
            );
        }
    }

    #[test]
    fn reads_the_running_kernels_task_struct() {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED reads_the_running_kernels_task_struct: no {VMLINUX_BTF} on this kernel"
            );
            return;
        }
        let offsets = task_offsets(path).expect("the kernel's BTF has task_struct.tgid");
        // pid and tgid sit next to each other, well inside the first few KiB.
        assert!(offsets.tgid > 0 && offsets.tgid < 16 * 1024, "{offsets:?}");
        let data = std::fs::read(path).expect("read BTF");
        let pid = member_offset(&data, "task_struct", "pid").expect("task_struct.pid");
        assert_eq!(offsets.tgid, pid + 4, "tgid follows pid (both pid_t)");
        assert_eq!(offsets.pid, pid);
    }

    #[test]
    fn reads_the_running_kernels_vma_file_and_inode_fields() {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED reads_the_running_kernels_vma_file_and_inode_fields: no {VMLINUX_BTF}"
            );
            return;
        }
        let o = vma_offsets(path).expect("the kernel's BTF has the file lookup's fields");
        // vm_start and vm_end sit in an anonymous struct at the start of vm_area_struct;
        // start_code inside mm_struct's anonymous struct.
        assert_eq!(o.vm_end, o.vm_start + 8, "{o:?}");
        assert!(o.vm_start < 64 && o.vm_pgoff > o.vm_end, "{o:?}");
        assert!(o.mm_start_code > 0 && o.mm_start_code < 4096, "{o:?}");
        assert!(o.mm_vdso > o.mm_start_code && o.mm_vdso < 4096, "{o:?}");
        assert!(
            o.task_mm > 0 && o.inode_ino > 0 && o.inode_mtime > 0,
            "{o:?}"
        );
        assert_eq!(o.enabled, 1);
    }
}
