//! Stack high-water mark by painting: fill the free stack with a pattern at
//! boot, and later find the deepest word that no longer holds it.
//!
//! This measures what the firmware really used (interrupt frames included),
//! next to `tools/stack_depth.py`'s static estimate of the deepest direct
//! call chain. It is a lower bound of the worst case too: only the paths
//! this run took are measured.

use core::ptr::{addr_of, read_volatile, write_volatile};

/// The paint. Any value a real stack rarely holds in a long run will do.
const PAINT: u32 = 0xC5AC_CE55;

/// Bytes just below the stack pointer left unpainted: `paint`'s own frame
/// and whatever the call into it still uses.
const MARGIN: usize = 256;

unsafe extern "C" {
    // cortex-m-rt's linker script: the stack grows down from `_stack_start`
    // (the end of RAM) to `_stack_end` (the end of .bss/.uninit).
    static _stack_start: u32;
    static _stack_end: u32;
}

fn bounds() -> (usize, usize) {
    // Only the addresses of the linker symbols are taken, never their values.
    (
        addr_of!(_stack_end) as usize,
        addr_of!(_stack_start) as usize,
    )
}

/// Paints the stack below the current stack pointer. Call once, first
/// thing, before interrupts are enabled.
pub fn paint() {
    let (bottom, _) = bounds();
    let sp = cortex_m::register::msp::read() as usize;
    let top = sp.saturating_sub(MARGIN) & !3;
    cortex_m::interrupt::free(|_| {
        let mut addr = bottom;
        while addr < top {
            // SAFETY: [bottom, top) is the unused part of the stack: below
            // the stack pointer (with a margin for this frame), above every
            // static (`_stack_end`), word-aligned, and no interrupt can
            // push a frame into it while it is painted.
            unsafe { write_volatile(addr as *mut u32, PAINT) };
            addr += 4;
        }
    });
}

/// The stack's high-water mark: `(used, size)` in bytes, where `used`
/// counts from the top of RAM to the deepest word that lost its paint.
pub fn high_water() -> (usize, usize) {
    let (bottom, top) = bounds();
    let mut addr = bottom;
    // SAFETY: reads of word-aligned RAM inside the stack region; a word
    // the stack is using right now reads as whatever it holds, which is
    // exactly what the scan wants to find.
    while addr < top && unsafe { read_volatile(addr as *const u32) } == PAINT {
        addr += 4;
    }
    (top - addr, top - bottom)
}
