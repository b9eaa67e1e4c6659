//! The board: the parts a real port replaces with its HAL.
//!
//! - [`NetDriver`]: a placeholder `embassy-net` driver (medium IP, link up,
//!   every transmitted frame dropped, nothing ever received), so the stack
//!   runs and the client's connects time out. Replace with the HAL's driver.
//! - [`RetainedFlash`]: NOR-flash semantics (erase to 0xFF, writes only
//!   clear bits, 4-byte words, 4 KiB pages) over 16 KiB of RAM outside the
//!   linker's RAM region, so the stored session survives a warm reset.
//!   Replace with the HAL's async flash driver and a flash range.
//! - The SysTick time driver for embassy-time is [`crate::time`], shared
//!   with the QEMU board; the TCP/IP stack on [`NetDriver`] is [`crate::net`].

use core::task::Context;

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embedded_storage_async::nor_flash::{ErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash};

/// Bytes of the placeholder flash: exactly the session store.
pub const FLASH_SIZE: u32 = crate::app::STORE_SIZE;
const PAGE: usize = 4096;
/// Where the placeholder flash lives: right after the linker's RAM (see
/// layouts/board.x), followed by one word that marks it as initialised.
const RETAINED_BASE: usize = 0x2001_B000;
const MAGIC: u32 = 0x5041_5957; // "PAYW"

/// Core clock after reset (STM32F4 HSI); SysTick ticks at 1 kHz from it.
const CORE_HZ: u32 = 16_000_000;

/// The board's parts, from [`init`].
pub struct Board {
    pub net: NetDriver,
    pub flash: RetainedFlash,
    /// Seed for the TCP stack's sequence numbers; take it from the chip's
    /// RNG on a real board.
    pub seed: u64,
    /// Whether the retained flash held data from before a reset.
    pub warm_reset: bool,
}

/// Starts SysTick and opens the retained flash. Call once.
pub fn init() -> Board {
    let Some(peripherals) = cortex_m::Peripherals::take() else {
        defmt::panic!("board::init runs once");
    };
    crate::time::init(peripherals.SYST, CORE_HZ);

    // SAFETY: the region is outside every section the linker places
    // (layouts/board.x ends RAM below it), this is the only reference ever made
    // to it (`init` runs once, checked above), and it is word-aligned RAM.
    let (memory, magic) = unsafe {
        (
            &mut *(RETAINED_BASE as *mut [u8; FLASH_SIZE as usize]),
            &mut *((RETAINED_BASE + FLASH_SIZE as usize) as *mut u32),
        )
    };
    let warm_reset = *magic == MAGIC;
    if !warm_reset {
        // Cold start: RAM holds noise. Start from an erased "flash".
        memory.fill(0xFF);
        *magic = MAGIC;
    }
    Board {
        net: NetDriver,
        flash: RetainedFlash { memory },
        seed: 0x0123_4567_89ab_cdef,
        warm_reset,
    }
}

// ---------------------------------------------------------------------------
// Network
// ---------------------------------------------------------------------------

/// A link that is up and loses everything.
pub struct NetDriver;

/// The one frame buffer of [`NetDriver`]: empty on receive, dropped on send.
pub struct Frame;

impl embassy_net_driver::RxToken for Frame {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        f(&mut [])
    }
}

impl embassy_net_driver::TxToken for Frame {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = [0u8; 1500];
        let len = len.min(frame.len());
        f(&mut frame[..len])
    }
}

impl embassy_net_driver::Driver for NetDriver {
    type RxToken<'a> = Frame;
    type TxToken<'a> = Frame;

    fn receive(&mut self, _cx: &mut Context<'_>) -> Option<(Frame, Frame)> {
        None
    }

    fn transmit(&mut self, _cx: &mut Context<'_>) -> Option<Frame> {
        Some(Frame)
    }

    fn link_state(&mut self, _cx: &mut Context<'_>) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = 1500;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ip
    }
}

// ---------------------------------------------------------------------------
// Flash
// ---------------------------------------------------------------------------

/// NOR flash semantics over retained RAM.
pub struct RetainedFlash {
    memory: &'static mut [u8; FLASH_SIZE as usize],
}

impl RetainedFlash {
    fn range(
        &self,
        offset: u32,
        len: usize,
        align: usize,
    ) -> Result<core::ops::Range<usize>, NorFlashErrorKind> {
        let start = offset as usize;
        if !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(NorFlashErrorKind::NotAligned);
        }
        match start.checked_add(len) {
            Some(end) if end <= self.memory.len() => Ok(start..end),
            _ => Err(NorFlashErrorKind::OutOfBounds),
        }
    }
}

impl ErrorType for RetainedFlash {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for RetainedFlash {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), NorFlashErrorKind> {
        let range = self.range(offset, bytes.len(), 1)?;
        bytes.copy_from_slice(&self.memory[range]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.memory.len()
    }
}

impl NorFlash for RetainedFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = PAGE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), NorFlashErrorKind> {
        let len = to.checked_sub(from).ok_or(NorFlashErrorKind::OutOfBounds)? as usize;
        let range = self.range(from, len, PAGE)?;
        self.memory[range].fill(0xFF);
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), NorFlashErrorKind> {
        let range = self.range(offset, bytes.len(), 4)?;
        for (cell, byte) in self.memory[range].iter_mut().zip(bytes) {
            *cell &= *byte;
        }
        Ok(())
    }
}
