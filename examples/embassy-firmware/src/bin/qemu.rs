//! The firmware on QEMU's `mps2-an386` board, plain HTTP: one step of the
//! auth lifecycle per boot, against the emulator on the host.
//!
//! QEMU starts it with `-semihosting-config arg=qemu,arg=STEP,arg=FLASH,arg=HOST`:
//! STEP is one of `qemu::lifecycle`'s steps, FLASH the flash file, HOST the
//! `Host` header. The network is UART0 bridged to TCP by
//! `examples/qemu-runner`. `qemu-tls` is the same over HTTPS.

#![no_std]
#![no_main]

use defmt_rtt as _;

use embassy_executor::Spawner;
use paywall_auth_embassy::AuthClient;
use paywall_auth_embassy_firmware::app;
use paywall_auth_embassy_firmware::qemu::boot;
use paywall_auth_embassy_firmware::qemu::flash::FileFlash;
use paywall_auth_embassy_firmware::qemu::lifecycle::{self, Timed};
use paywall_auth_embassy_firmware::qemu::link::UartConnector;
use static_cell::StaticCell;

type Client = AuthClient<'static, Timed<UartConnector>, FileFlash>;

static EVENTS: app::Events = app::Events::new();
static CLIENT: StaticCell<Client> = StaticCell::new();

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    let mut args = boot::start("usage: qemu STEP FLASH HOST");
    let step = args.take();
    let client = client(&mut args);
    lifecycle::run(client, step).await
}

/// The client, built in its static from the command line. Not inlined, so
/// that the build's temporaries stay out of the main task's stack frame.
#[inline(never)]
fn client(args: &mut boot::Args) -> &'static mut Client {
    let (flash, host) = (boot::flash(args.take()), args.take());
    CLIENT.init_with(|| app::new_client(Timed::new(UartConnector::new(host)), flash, &EVENTS))
}

paywall_auth_embassy_firmware::qemu_handlers!();
