//! Reading and clearing a whole hash map in a few `bpf(2)` calls.
//!
//! A drain used to take three syscalls per count-map key (`GET_NEXT_KEY`, `LOOKUP_ELEM`,
//! `DELETE_ELEM`); `BPF_MAP_LOOKUP_AND_DELETE_BATCH` (Linux 5.6) returns and removes up to
//! a chunk of entries per call. aya 0.14 does not wrap the batch commands, so this is a
//! small raw wrapper over the map's fd. Whether the kernel takes the command is probed on
//! the first call and remembered: a kernel that refuses it gets `Ok(false)`, and the
//! caller falls back to the per-key path.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU8, Ordering};

use aya::Pod;
use tracing::debug;

/// `BPF_MAP_LOOKUP_AND_DELETE_BATCH` in `enum bpf_cmd` (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_AND_DELETE_BATCH: libc::c_long = 25;
/// The kernel's internal "operation not supported" (`ENOTSUPP`), which map types without
/// batch operations return to user space.
const ENOTSUPP: i32 = 524;

/// Entries asked for per call: enough for a drain of the default count map (16,384) in a
/// few calls, small enough that the buffers stay modest (48-byte keys: 192 KiB).
const CHUNK: u32 = 4096;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Whether the kernel takes the batch command: not probed yet, yes, no.
static SUPPORT: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

/// Moves every entry of the hash map `fd` (keys `K`, values `V`, as the map was created
/// with: the caller's typed map checked the sizes) into `out`, in a few syscalls.
///
/// Returns `Ok(false)`, having read nothing, when the kernel has no batch operations for
/// this map; the caller then reads the map key by key.
///
/// # Errors
/// When a call fails for another reason; the entries returned before it are in `out`,
/// those of the failing call are lost (the kernel deleted them).
pub(crate) fn take_all<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    out: &mut Vec<(K, V)>,
) -> io::Result<bool> {
    if SUPPORT.load(Ordering::Relaxed) == NO {
        return Ok(false);
    }
    let mut chunk = CHUNK;
    let mut keys: Vec<K> = Vec::with_capacity(chunk as usize);
    let mut values: Vec<V> = Vec::with_capacity(chunk as usize);
    // The position token: a bucket index (u32) for hash maps; 8 bytes leave room.
    let mut token_in = 0u64;
    let mut token_out = 0u64;
    let mut first = true;
    loop {
        keys.reserve(chunk as usize);
        values.reserve(chunk as usize);
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::from_ref(&token_in) as u64
            },
            out_batch: std::ptr::from_mut(&mut token_out) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk,
            map_fd: fd.as_raw_fd().unsigned_abs(),
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid `bpf_attr.batch` of the size passed; `keys` and
        // `values` have room for `count` elements of the map's key and value sizes (the
        // typed map checked them against `K` and `V`), and the kernel writes at most
        // `count` of each and 4 bytes of `token_out`.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_AND_DELETE_BATCH,
                std::ptr::from_mut(&mut attr),
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let err = (r < 0).then(io::Error::last_os_error);
        let errno = err.as_ref().and_then(io::Error::raw_os_error);
        // The kernel writes the count back on success, at the end (`ENOENT`) and when the
        // chunk is too small (`ENOSPC`, count 0); after other errors it may not have.
        let n = match errno {
            None | Some(libc::ENOENT | libc::ENOSPC) => attr.count.min(chunk) as usize,
            Some(_) => 0,
        };
        // SAFETY: the kernel initialized the first `n` keys and values (see above); any
        // bit pattern is a valid `K`/`V` (`Pod`).
        unsafe {
            keys.set_len(n);
            values.set_len(n);
        }
        out.extend(keys.drain(..).zip(values.drain(..)));
        match errno {
            None => {}
            // The end of the map.
            Some(libc::ENOENT) => break,
            // The next bucket holds more entries than asked for: ask for more.
            Some(libc::ENOSPC) if n == 0 => {
                chunk = chunk.saturating_mul(2);
                continue;
            }
            Some(e)
                if first
                    && n == 0
                    && matches!(e, libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP | libc::ENOSYS)
                    && SUPPORT.load(Ordering::Relaxed) == UNKNOWN =>
            {
                debug!(errno = e, "no batch map operations: draining key by key");
                SUPPORT.store(NO, Ordering::Relaxed);
                return Ok(false);
            }
            Some(_) => return Err(err.unwrap_or_else(io::Error::last_os_error)),
        }
        SUPPORT.store(YES, Ordering::Relaxed);
        first = false;
        token_in = token_out;
    }
    SUPPORT.store(YES, Ordering::Relaxed);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    use super::*;

    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
    const BPF_MAP_TYPE_HASH: u32 = 1;

    #[repr(C)]
    #[derive(Default)]
    struct CreateAttr {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    }

    #[repr(C)]
    #[derive(Default)]
    struct ElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }

    fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> i64 {
        // SAFETY: `attr` is a valid, initialized prefix of `bpf_attr` for `cmd`.
        unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                std::ptr::from_mut(attr),
                std::mem::size_of::<T>(),
            )
        }
    }

    #[test]
    fn takes_and_clears_every_entry() {
        let mut create = CreateAttr {
            map_type: BPF_MAP_TYPE_HASH,
            key_size: 8,
            value_size: 8,
            max_entries: 10_000,
        };
        let fd = bpf(BPF_MAP_CREATE, &mut create);
        if fd < 0 {
            let e = io::Error::last_os_error();
            assert!(
                std::env::var_os("CI").is_none(),
                "creating a BPF map failed in CI: {e}"
            );
            eprintln!("skipping: cannot create a BPF map ({e}); needs root");
            return;
        }
        // SAFETY: `fd` is a fresh map fd that nothing else owns.
        let map = unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).expect("fd fits i32")) };
        // More entries than one chunk, so the token is followed across calls.
        for k in 0..9_000u64 {
            let v = k * 3;
            let mut attr = ElemAttr {
                map_fd: map.as_raw_fd().unsigned_abs(),
                key: std::ptr::from_ref(&k) as u64,
                value: std::ptr::from_ref(&v) as u64,
                ..ElemAttr::default()
            };
            assert_eq!(bpf(BPF_MAP_UPDATE_ELEM, &mut attr), 0, "update {k}");
        }
        let mut got: Vec<(u64, u64)> = Vec::new();
        let batched = take_all(map.as_fd(), &mut got).expect("batch read");
        assert!(batched, "this kernel (5.6+) has batch operations");
        got.sort_unstable();
        assert_eq!(got.len(), 9_000);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, &(k, v))| k == i as u64 && v == k * 3)
        );
        // The map is empty now: there is no first key.
        let mut next = 0u64;
        let mut attr = ElemAttr {
            map_fd: map.as_raw_fd().unsigned_abs(),
            key: 0,
            value: std::ptr::from_mut(&mut next) as u64,
            ..ElemAttr::default()
        };
        assert!(bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) < 0, "the map is empty");
        // And an empty map gives nothing, in one call.
        let mut again: Vec<(u64, u64)> = Vec::new();
        assert!(take_all(map.as_fd(), &mut again).expect("batch read"));
        assert!(again.is_empty());
    }
}
