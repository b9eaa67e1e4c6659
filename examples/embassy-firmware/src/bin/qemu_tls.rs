//! The firmware on QEMU's `mps2-an386` board over HTTPS: the `qemu`
//! binary's lifecycle steps with the UART link wrapped in TLS 1.3,
//! certificate verification on (pinned CA, host name, validity against the
//! wall clock).
//!
//! QEMU starts it with
//! `-semihosting-config arg=qemu-tls,arg=STEP,arg=FLASH,arg=ORIGIN,arg=CA,arg=ENTROPY`:
//! ORIGIN is `https://host:port` (the host the certificate must name), CA
//! the DER file of the CA to pin, ENTROPY the host's `/dev/urandom`
//! (TEST ONLY: the emulated board has no TRNG; see `qemu::tls`).

#![no_std]
#![no_main]

use defmt_rtt as _;

use embassy_executor::Spawner;
use paywall_auth_embassy::AuthClient;
use paywall_auth_embassy_firmware::app;
use paywall_auth_embassy_firmware::qemu::boot;
use paywall_auth_embassy_firmware::qemu::flash::FileFlash;
use paywall_auth_embassy_firmware::qemu::lifecycle::{self, Timed};
use paywall_auth_embassy_firmware::qemu::tls::{self, HostTls};
use static_cell::StaticCell;

type Client = AuthClient<'static, Timed<HostTls>, FileFlash>;

static EVENTS: app::Events = app::Events::new();
static CLIENT: StaticCell<Client> = StaticCell::new();

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    let mut args = boot::start("usage: qemu-tls STEP FLASH ORIGIN CA ENTROPY");
    let step = args.take();
    let client = client(&mut args);
    lifecycle::run(client, step).await
}

/// The client, built in its static from the command line. Not inlined: the
/// temporaries of the build (the TLS buffers, ~38 KiB) would otherwise be
/// part of the main task's stack frame for the whole run.
#[inline(never)]
fn client(args: &mut boot::Args) -> &'static mut Client {
    let flash = boot::flash(args.take());
    let (origin, ca, entropy) = (args.take(), args.take(), args.take());
    CLIENT.init_with(|| {
        let tls = tls::connector(origin, ca, entropy);
        app::new_client(Timed::new(tls), flash, &EVENTS)
    })
}

paywall_auth_embassy_firmware::qemu_handlers!();
