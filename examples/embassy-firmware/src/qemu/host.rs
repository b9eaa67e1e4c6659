//! Semihosting: the firmware's line to the QEMU process (`-semihosting`).
//! Every call traps into QEMU, which performs it on the host.

use cortex_m_semihosting::{debug, syscall};

/// The command line QEMU was given with `-semihosting-config arg=…`,
/// NUL-terminated in `buf`; the text before the NUL.
pub fn command_line(buf: &mut [u8]) -> Option<&str> {
    let last = buf.len().checked_sub(1)?;
    buf[last] = 0;
    // SAFETY: SYS_GET_CMDLINE writes at most `len` bytes (NUL included)
    // into the buffer given, which is ours and that long.
    let status = unsafe { syscall!(GET_CMDLINE, buf.as_mut_ptr(), last) };
    if status != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&buf[..end]).ok()
}

/// Seconds since the Unix epoch on the host.
pub fn unix_time_secs() -> u64 {
    // SAFETY: SYS_TIME takes no argument and only returns a number.
    unsafe { syscall!(TIME) as u64 }
}

/// Prints a line on QEMU's standard output.
#[macro_export]
macro_rules! host_println {
    ($($arg:tt)*) => { ::cortex_m_semihosting::hprintln!($($arg)*) };
}

/// Ends QEMU with exit status 0 (`ok`) or 1.
pub fn exit(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    // Without -semihosting the call returns; nothing else to do.
    loop {
        cortex_m::asm::wfi();
    }
}

/// A host file opened through semihosting.
pub struct HostFile {
    handle: usize,
}

/// Modes of SYS_OPEN (ISO C `fopen` modes, by index).
const MODE_READ: usize = 1; // "rb"
const MODE_READ_WRITE: usize = 3; // "r+b"
const MODE_CREATE: usize = 7; // "w+b"

/// The longest host path the firmware takes (NUL excluded).
pub const MAX_PATH: usize = 399;

impl HostFile {
    /// Opens `path` for reading and writing, creating it (empty) when
    /// `create` is set and it does not exist.
    pub fn open(path: &str, create: bool) -> Option<HostFile> {
        HostFile::open_mode(path, if create { MODE_CREATE } else { MODE_READ_WRITE })
    }

    /// Opens `path` for reading only.
    pub fn open_read_only(path: &str) -> Option<HostFile> {
        HostFile::open_mode(path, MODE_READ)
    }

    fn open_mode(path: &str, mode: usize) -> Option<HostFile> {
        // Semihosting takes a NUL-terminated name.
        let mut buf = [0; MAX_PATH + 1];
        let name = buf.get_mut(..path.len())?;
        name.copy_from_slice(path.as_bytes());
        if name.contains(&0) {
            return None;
        }
        // SAFETY: SYS_OPEN reads `path.len()` bytes of the name in `buf`,
        // NUL-terminated there (`buf` is one longer than any name copied
        // in), which lives for the call.
        let handle = unsafe { syscall!(OPEN, buf.as_ptr(), mode, path.len()) };
        (handle as isize >= 0).then_some(HostFile { handle })
    }

    /// The file's size in bytes.
    pub fn size(&self) -> Option<usize> {
        // SAFETY: SYS_FLEN only reads the handle.
        let len = unsafe { syscall!(FLEN, self.handle) } as isize;
        usize::try_from(len).ok()
    }

    /// Reads `buf.len()` bytes at `offset`; false unless all were read.
    pub fn read_at(&mut self, offset: usize, buf: &mut [u8]) -> bool {
        // SAFETY: SYS_SEEK takes the handle and a position; SYS_READ writes
        // at most `buf.len()` bytes into `buf`, which is ours.
        unsafe {
            syscall!(SEEK, self.handle, offset) == 0
                && syscall!(READ, self.handle, buf.as_mut_ptr(), buf.len()) == 0
        }
    }

    /// Reads `buf.len()` bytes where the last read ended (for a stream
    /// such as `/dev/urandom`, which cannot seek); false unless all were
    /// read.
    pub fn read(&mut self, buf: &mut [u8]) -> bool {
        // SAFETY: SYS_READ writes at most `buf.len()` bytes into `buf`.
        unsafe { syscall!(READ, self.handle, buf.as_mut_ptr(), buf.len()) == 0 }
    }

    /// Writes `bytes` at `offset`; false unless all were written.
    pub fn write_at(&mut self, offset: usize, bytes: &[u8]) -> bool {
        // SAFETY: SYS_WRITE reads `bytes.len()` bytes of `bytes`.
        unsafe {
            syscall!(SEEK, self.handle, offset) == 0
                && syscall!(WRITE, self.handle, bytes.as_ptr(), bytes.len()) == 0
        }
    }
}
