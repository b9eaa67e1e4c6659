//! The firmware on QEMU's `mps2-an386` board: one step of the auth
//! lifecycle per boot, against the emulator on the host.
//!
//! QEMU starts it with `-semihosting-config arg=qemu,arg=STEP,arg=FLASH,arg=HOST`:
//! - `fresh`: the flash file is new; sign in anonymously (a new guest);
//! - `resume`: a reboot; the session comes back from flash, and a refresh
//!   proves its refresh token still works on the server;
//! - `soft`: soft sign-out, then sign in: the same guest is resumed;
//! - `hard`: hard sign-out (revoked on the server), then sign in: a new
//!   guest.
//!
//! It prints `fw: …` lines on QEMU's standard output (semihosting), which
//! `examples/qemu-runner` checks against the emulator's records, and exits
//! QEMU with status 0 when the step did what it should. The network is
//! UART0 bridged to TCP by the runner; the flash is the file FLASH.

#![no_std]
#![no_main]

use defmt_rtt as _;

use cortex_m_rt::exception;
use embassy_executor::Spawner;
use paywall_auth_embassy::paywall_auth::{SignInOptions, SignOutOptions};
use paywall_auth_embassy::{AuthClient, Connect};
use paywall_auth_embassy_firmware::qemu::flash::FileFlash;
use paywall_auth_embassy_firmware::qemu::link::UartConnector;
use paywall_auth_embassy_firmware::qemu::{CORE_HZ, host, uart};
use paywall_auth_embassy_firmware::{app, host_println, stack, time};
use static_cell::StaticCell;

type Client = AuthClient<'static, UartConnector, FileFlash>;

static EVENTS: app::Events = app::Events::new();
static CLIENT: StaticCell<Client> = StaticCell::new();
static COMMAND_LINE: StaticCell<[u8; 512]> = StaticCell::new();
/// The flash path, NUL-terminated for semihosting.
static FLASH_PATH: StaticCell<[u8; 400]> = StaticCell::new();

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    stack::paint();
    let Some(peripherals) = cortex_m::Peripherals::take() else {
        fail("peripherals taken twice")
    };
    time::init(peripherals.SYST, CORE_HZ);
    uart::init();

    let Some(line) = host::command_line(COMMAND_LINE.init([0; 512])) else {
        fail("no semihosting command line")
    };
    let mut words = line.split_ascii_whitespace().skip(1);
    let (Some(step), Some(path), Some(api_host)) = (words.next(), words.next(), words.next())
    else {
        fail("usage: qemu STEP FLASH HOST")
    };
    let path_buf = FLASH_PATH.init([0; 400]);
    if path.len() >= path_buf.len() {
        fail("flash path too long");
    }
    path_buf[..path.len()].copy_from_slice(path.as_bytes());
    let flash = match FileFlash::open(&path_buf[..=path.len()], app::STORE_SIZE as usize) {
        Ok(flash) => flash,
        Err(e) => {
            host_println!("fw: error flash {:?}", e);
            host::exit(false)
        }
    };

    let client = CLIENT.init(app::new_client(
        UartConnector::new(api_host),
        flash,
        &EVENTS,
    ));
    client.set_unix_time(host::unix_time_secs() * 1000);
    client.start().await;
    let restored = client.session().map(|s| s.user.id.clone());
    match &restored {
        Some(id) => host_println!("fw: restored {}", id.as_str()),
        None => host_println!("fw: restored none"),
    }

    let ok = match step {
        "fresh" => restored.is_none() && sign_in(client).await,
        "resume" => restored.is_some() && refresh(client).await,
        "soft" => {
            restored.is_some()
                && sign_out(client, false).await
                && client.has_resumable_anonymous()
                && sign_in(client).await
        }
        "hard" => {
            restored.is_some()
                && sign_out(client, true).await
                && !client.has_resumable_anonymous()
                && sign_in(client).await
        }
        _ => fail("unknown step"),
    };

    let (used, size) = stack::high_water();
    host_println!("fw: stack {} of {}", used, size);
    host_println!("fw: step {} {}", step, if ok { "ok" } else { "failed" });
    host::exit(ok)
}

async fn sign_in<C: Connect>(client: &mut AuthClient<'static, C, FileFlash>) -> bool {
    match client.sign_in_anonymously(SignInOptions::default()).await {
        Ok(session) => {
            host_println!(
                "fw: user {} anonymous {}",
                session.user.id.as_str(),
                session.user.is_anonymous
            );
            true
        }
        Err(e) => {
            host_println!("fw: error sign-in {}", e.code());
            false
        }
    }
}

async fn refresh<C: Connect>(client: &mut AuthClient<'static, C, FileFlash>) -> bool {
    match client.refresh().await {
        Ok(session) => {
            host_println!(
                "fw: user {} anonymous {}",
                session.user.id.as_str(),
                session.user.is_anonymous
            );
            true
        }
        Err(e) => {
            host_println!("fw: error refresh {}", e.code());
            false
        }
    }
}

async fn sign_out<C: Connect>(client: &mut AuthClient<'static, C, FileFlash>, hard: bool) -> bool {
    let options = SignOutOptions {
        forget_anonymous: hard,
    };
    match client.sign_out(options).await {
        Ok(revoked) => {
            let kind = if hard { "hard" } else { "soft" };
            // A hard sign-out of a guest must be confirmed by the server; a
            // soft one needs no revocation (docs/protocol.md §13.6).
            let revocation = match revoked {
                Some(true) => "revoked",
                Some(false) => "not revoked",
                None => "no revocation needed",
            };
            host_println!("fw: signed out ({}, {})", kind, revocation);
            client.session().is_none() && revoked == hard.then_some(true)
        }
        Err(e) => {
            host_println!("fw: error sign-out {}", e.code());
            false
        }
    }
}

fn fail(why: &str) -> ! {
    host_println!("fw: error {}", why);
    host::exit(false)
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == 0 {
        uart::on_interrupt();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    host_println!("fw: panic {}", info);
    host::exit(false)
}
