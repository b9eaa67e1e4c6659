//! UART0 of the MPS2 board (an Arm CMSDK APB UART at 0x4000_4000): a
//! register-level driver, because no HAL covers this FPGA board.
//!
//! The UART holds one received byte. The receive interrupt (IRQ 0) moves
//! bytes into a ring; when the ring is full it masks itself, so the byte
//! stays in the UART, QEMU stops reading the host socket, and nothing is
//! ever dropped. Reading from the ring unmasks it again. Transmission polls
//! the one-byte transmit buffer, which QEMU empties as soon as it is
//! written.
//!
//! Reads are cancel-safe: `read_some` takes bytes out of the ring only in
//! the poll that returns them.

use core::cell::RefCell;
use core::future::poll_fn;
use core::ptr::{read_volatile, write_volatile};
use core::task::Poll;

use cortex_m::interrupt::InterruptNumber;
use critical_section::{CriticalSection, Mutex};
use embassy_sync::waitqueue::AtomicWaker;
use heapless::Deque;

const BASE: usize = 0x4000_4000;
const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const INTCLEAR: usize = 0x0C;
const BAUDDIV: usize = 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;
const CTRL_RX_INT_EN: u32 = 1 << 3;
const INT_RX: u32 = 1 << 1;

/// 115 200 baud from the 25 MHz peripheral clock. QEMU does not pace the
/// bytes, but it only transmits with a valid divider (at least 16).
const BAUD_DIVIDER: u32 = super::CORE_HZ / 115_200;

/// Bytes received and not yet read: two frames' worth.
const RING: usize = 2048;

static RX: Mutex<RefCell<Deque<u8, RING>>> = Mutex::new(RefCell::new(Deque::new()));
static RX_WAKER: AtomicWaker = AtomicWaker::new();

/// The UART0 receive interrupt: IRQ 0 on the AN385/AN386 images.
#[derive(Clone, Copy)]
pub struct Uart0Rx;

// SAFETY: 0 is UART0's receive interrupt line of the board's NVIC.
unsafe impl InterruptNumber for Uart0Rx {
    fn number(self) -> u16 {
        0
    }
}

fn read(offset: usize) -> u32 {
    // SAFETY: BASE + offset is a register of UART0; reads have no effect
    // other than DATA popping the received byte, which only `drain` does.
    unsafe { read_volatile((BASE + offset) as *const u32) }
}

fn write(offset: usize, value: u32) {
    // SAFETY: BASE + offset is a register of UART0, which only this module
    // touches.
    unsafe { write_volatile((BASE + offset) as *mut u32, value) }
}

/// Enables the UART (8N1, 115 200 baud) and its receive interrupt.
pub fn init() {
    write(BAUDDIV, BAUD_DIVIDER);
    write(CTRL, CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN);
    // SAFETY: the handler (`on_interrupt`) only touches state guarded by
    // critical sections, so unmasking cannot break a critical section.
    unsafe { cortex_m::peripheral::NVIC::unmask(Uart0Rx) };
}

/// Moves received bytes into the ring; masks the receive interrupt when the
/// ring is full (backpressure) and unmasks it otherwise.
fn drain(cs: CriticalSection<'_>) {
    let mut ring = RX.borrow_ref_mut(cs);
    let mut got = false;
    loop {
        while read(STATE) & STATE_RX_FULL != 0 && !ring.is_full() {
            // Cannot fail: the ring is not full.
            let _ = ring.push_back(read(DATA) as u8);
            got = true;
        }
        if ring.is_full() {
            // Leave the byte in the UART; `read_some` re-arms after popping.
            write(CTRL, CTRL_TX_EN | CTRL_RX_EN);
            break;
        }
        write(CTRL, CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN);
        // A byte that arrived while the interrupt was masked raised none:
        // take it now. One arriving from here on raises the interrupt.
        if read(STATE) & STATE_RX_FULL == 0 {
            break;
        }
    }
    if got {
        RX_WAKER.wake();
    }
}

/// Call from the board's handler of IRQ 0.
pub fn on_interrupt() {
    write(INTCLEAR, INT_RX);
    critical_section::with(drain);
}

/// Moves up to `buf.len()` bytes from the ring into `buf`; how many.
fn pop(cs: CriticalSection<'_>, buf: &mut [u8]) -> usize {
    let mut ring = RX.borrow_ref_mut(cs);
    let mut n = 0;
    while n < buf.len() {
        match ring.pop_front() {
            Some(byte) => {
                buf[n] = byte;
                n += 1;
            }
            None => break,
        }
    }
    n
}

/// Reads at least one byte into `buf` (unless it is empty), waiting for
/// the host to send some.
pub async fn read_some(buf: &mut [u8]) -> usize {
    if buf.is_empty() {
        return 0;
    }
    poll_fn(|cx| {
        critical_section::with(|cs| {
            let mut n = pop(cs, buf);
            // Room again: take what waited in the UART, re-arm the interrupt.
            drain(cs);
            if n == 0 {
                // Bytes `drain` just moved in raised no interrupt, and its
                // wake went to the waker of an earlier poll (none on the
                // first read of a boot): take them now, or this task would
                // sleep on a non-empty ring until its request timeout.
                n = pop(cs, buf);
                drain(cs);
            }
            if n == 0 {
                RX_WAKER.register(cx.waker());
                Poll::Pending
            } else {
                Poll::Ready(n)
            }
        })
    })
    .await
}

/// Sends `bytes`, busy-waiting while the one-byte transmit buffer is full.
///
/// Not async on purpose: a frame must reach the wire whole, and a future
/// dropped between two bytes (a request timeout) would cut one and put the
/// host bridge out of step. On QEMU the buffer empties as soon as it is
/// written, so the wait is nil.
pub fn write_all(bytes: &[u8]) {
    for &byte in bytes {
        while read(STATE) & STATE_TX_FULL != 0 {
            core::hint::spin_loop();
        }
        write(DATA, u32::from(byte));
    }
}
