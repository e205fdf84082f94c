//! Reading another process's memory: `pread` on `/proc/PID/mem` (opened by the
//! symbolizer's `procfs`), which fails cleanly on an unmapped address or a gone process.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;

/// The memory of one process.
#[derive(Debug)]
pub struct Memory {
    file: File,
}

impl Memory {
    /// Memory read through `file`, an open `/proc/PID/mem`.
    #[must_use]
    pub fn new(file: File) -> Self {
        Memory { file }
    }

    /// Fills `buf` from address `addr`.
    ///
    /// # Errors
    /// The read's error (`EIO` for an unmapped address, `ESRCH` once the process is gone).
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, addr)
    }

    /// The little-endian `u64` at `addr`.
    ///
    /// # Errors
    /// As [`Memory::read`].
    pub fn u64(&self, addr: u64) -> io::Result<u64> {
        let mut b = [0; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// The little-endian `u32` at `addr`.
    ///
    /// # Errors
    /// As [`Memory::read`].
    pub fn u32(&self, addr: u64) -> io::Result<u32> {
        let mut b = [0; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// The byte at `addr`.
    ///
    /// # Errors
    /// As [`Memory::read`].
    pub fn u8(&self, addr: u64) -> io::Result<u8> {
        let mut b = [0; 1];
        self.read(addr, &mut b)?;
        Ok(b[0])
    }

    /// `len` bytes at `addr`.
    ///
    /// # Errors
    /// As [`Memory::read`].
    pub fn bytes(&self, addr: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut b = vec![0; len];
        self.read(addr, &mut b)?;
        Ok(b)
    }
}
