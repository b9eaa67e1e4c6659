//! NOR flash kept in a host file: the board's "flash chip" survives QEMU
//! exiting, so a reboot is a new QEMU run on the same file.
//!
//! Semantics are those of real NOR flash, so `sequential-storage` sees what
//! it would on a chip: erased bytes read 0xFF, a write can only clear bits
//! (the new bytes are ANDed into the old ones), writes are 4-byte aligned,
//! erases cover whole 4 KiB pages. Every write goes to the file at once:
//! QEMU killed mid-run leaves what a power cut would.

use embedded_storage_async::nor_flash::{ErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash};

use super::host::HostFile;

const PAGE: usize = 4096;
const WORD: usize = 4;
/// Bytes moved per semihosting call when merging a write.
const CHUNK: usize = 64;

/// The flash file.
pub struct FileFlash {
    file: HostFile,
    size: usize,
}

/// Why the flash file could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum OpenError {
    /// The file could not be opened or created.
    Open,
    /// The file exists with a size other than the flash's.
    WrongSize,
    /// Writing the erased image of a new file failed.
    Write,
}

impl FileFlash {
    /// Opens the flash file at `path`, or creates it
    /// erased (`size` bytes of 0xFF) when there is none. `size` is a whole
    /// number of pages.
    ///
    /// # Errors
    /// [`OpenError`].
    pub fn open(path: &str, size: usize) -> Result<FileFlash, OpenError> {
        if let Some(file) = HostFile::open(path, false) {
            return match file.size() {
                Some(len) if len == size => Ok(FileFlash { file, size }),
                _ => Err(OpenError::WrongSize),
            };
        }
        let mut file = HostFile::open(path, true).ok_or(OpenError::Open)?;
        let erased = [0xFF; CHUNK];
        for offset in (0..size).step_by(CHUNK) {
            if !file.write_at(offset, &erased) {
                return Err(OpenError::Write);
            }
        }
        Ok(FileFlash { file, size })
    }

    fn check(&self, offset: u32, len: usize, align: usize) -> Result<usize, NorFlashErrorKind> {
        let start = offset as usize;
        if !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(NorFlashErrorKind::NotAligned);
        }
        match start.checked_add(len) {
            Some(end) if end <= self.size => Ok(start),
            _ => Err(NorFlashErrorKind::OutOfBounds),
        }
    }
}

impl ErrorType for FileFlash {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for FileFlash {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), NorFlashErrorKind> {
        let start = self.check(offset, bytes.len(), 1)?;
        if self.file.read_at(start, bytes) {
            Ok(())
        } else {
            Err(NorFlashErrorKind::Other)
        }
    }

    fn capacity(&self) -> usize {
        self.size
    }
}

impl NorFlash for FileFlash {
    const WRITE_SIZE: usize = WORD;
    const ERASE_SIZE: usize = PAGE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), NorFlashErrorKind> {
        let len = to.checked_sub(from).ok_or(NorFlashErrorKind::OutOfBounds)? as usize;
        let start = self.check(from, len, PAGE)?;
        let erased = [0xFF; CHUNK];
        for offset in (start..start + len).step_by(CHUNK) {
            if !self.file.write_at(offset, &erased) {
                return Err(NorFlashErrorKind::Other);
            }
        }
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), NorFlashErrorKind> {
        let start = self.check(offset, bytes.len(), WORD)?;
        let mut merged = [0; CHUNK];
        for (i, new) in bytes.chunks(CHUNK).enumerate() {
            let at = start + i * CHUNK;
            let old = &mut merged[..new.len()];
            if !self.file.read_at(at, old) {
                return Err(NorFlashErrorKind::Other);
            }
            for (cell, byte) in old.iter_mut().zip(new) {
                *cell &= *byte;
            }
            if !self.file.write_at(at, old) {
                return Err(NorFlashErrorKind::Other);
            }
        }
        Ok(())
    }
}
