//! The glue every board of this firmware shares: the SysTick time driver,
//! the auth client's configuration and flash layout, and stack painting.
//!
//! Two boards use it: `board.rs` (a placeholder Cortex-M4F whose network and
//! flash a real port replaces, measured for size by CI) and `qemu` (the
//! Arm MPS2 AN386 board that QEMU emulates, which runs the whole lifecycle
//! against the emulator; feature `qemu`).

#![no_std]

pub mod app;
pub mod stack;
pub mod time;

#[cfg(feature = "qemu")]
pub mod qemu;
