//! The board QEMU emulates as `mps2-an386` (Arm MPS2 FPGA board, AN386
//! image: a Cortex-M4 at 25 MHz, CMSDK APB UARTs), wired so that the
//! firmware signs in for real:
//!
//! - [`uart`]: UART0, interrupt-driven, lossless (receive backpressure
//!   reaches the host through QEMU's character device);
//! - [`link`]: the adapter's `Connect` over that UART: each connection is
//!   opened, fed and closed by frames of `paywall-auth-qemu-link`, and the
//!   host bridge (`examples/qemu-runner`) turns them into TCP connections
//!   to the emulator;
//! - [`flash`]: NOR flash backed by a host file through semihosting, so the
//!   stored session survives QEMU exiting like it survives a power cycle;
//! - [`host`]: the rest of semihosting (command line, wall clock, console,
//!   exit code, and the host files of the TLS run);
//! - [`boot`] and [`lifecycle`]: what the `qemu` binaries run, one
//!   lifecycle step per boot, over any connector;
//! - `tls` (feature `tls`): the link wrapped in TLS 1.3, with the CA and the
//!   entropy (the board has no TRNG) from the host at run time.

pub mod boot;
pub mod flash;
pub mod host;
pub mod lifecycle;
pub mod link;
#[cfg(feature = "tls")]
pub mod tls;
pub mod uart;

/// The board's core clock (QEMU's MPS2 `SYSCLK_FRQ`), which SysTick counts.
pub const CORE_HZ: u32 = 25_000_000;
