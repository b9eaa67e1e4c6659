//! The glue every board of this firmware shares: the SysTick time driver,
//! the auth client's configuration and flash layout, and stack painting;
//! and the boards themselves, so that each binary is only its boot flow.
//!
//! Two boards: [`board`] (a placeholder Cortex-M4F whose network and flash a
//! real port replaces, measured for size by CI; [`net`] is its TCP/IP
//! stack) and `qemu` (the Arm MPS2 AN386 board that QEMU emulates, which
//! runs the whole lifecycle against the emulator; feature `qemu`).

#![no_std]

pub mod app;
pub mod board;
pub mod net;
pub mod stack;
pub mod time;

#[cfg(feature = "qemu")]
pub mod qemu;
