//! What every QEMU binary does at boot: paint the stack, start SysTick and
//! UART0, read the command line QEMU was given, open the flash file.

use static_cell::StaticCell;

use super::flash::FileFlash;
use super::{CORE_HZ, host, uart};
use crate::{app, host_println, stack, time};

static COMMAND_LINE: StaticCell<[u8; 1024]> = StaticCell::new();

/// The words of the command line after the program's name
/// (`-semihosting-config arg=…`).
pub struct Args {
    words: core::str::SplitAsciiWhitespace<'static>,
    usage: &'static str,
}

impl Args {
    /// The next word; a missing one fails the boot with the usage line.
    pub fn take(&mut self) -> &'static str {
        match self.words.next() {
            Some(word) => word,
            None => fail(self.usage),
        }
    }
}

/// Boots the board and returns its command line. `usage` is printed when
/// an argument is missing. Call once, first thing.
pub fn start(usage: &'static str) -> Args {
    stack::paint();
    let Some(peripherals) = cortex_m::Peripherals::take() else {
        fail("peripherals taken twice")
    };
    time::init(peripherals.SYST, CORE_HZ);
    uart::init();
    let Some(line) = host::command_line(COMMAND_LINE.init([0; 1024])) else {
        fail("no semihosting command line")
    };
    let mut words = line.split_ascii_whitespace();
    words.next();
    Args { words, usage }
}

/// The flash file at `path`, with the session store's size.
pub fn flash(path: &str) -> FileFlash {
    match FileFlash::open(path, app::STORE_SIZE as usize) {
        Ok(flash) => flash,
        Err(e) => {
            host_println!("fw: error flash {:?}", e);
            host::exit(false)
        }
    }
}

/// Ends the boot as failed, saying why.
pub fn fail(why: &str) -> ! {
    host_println!("fw: error {}", why);
    host::exit(false)
}

/// The interrupt and panic handlers every QEMU binary needs: UART0's
/// receive interrupt (IRQ 0), and panics reported on the console as a
/// failed step. Invoke once, at the binary's top level.
#[macro_export]
macro_rules! qemu_handlers {
    () => {
        #[cortex_m_rt::exception]
        unsafe fn DefaultHandler(irqn: i16) {
            if irqn == 0 {
                $crate::qemu::uart::on_interrupt();
            }
        }

        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
            $crate::host_println!("fw: panic {}", info);
            $crate::qemu::host::exit(false)
        }
    };
}
