//! The firmware of `main.rs` over HTTPS: the same board, client and boot
//! flow, with the connector wrapped in `TlsConnector` (TLS 1.3 with
//! embedded-tls, the server's certificate checked against a pinned CA, its
//! name and validity). Built with `--features tls`; it exists to measure
//! and budget what TLS costs (docs/embassy-measurements.md).
//!
//! Placeholders to replace on a real board, besides those of `board`:
//! `BoardRng` (use the chip's TRNG, e.g. `embassy_stm32::rng::Rng`) and
//! `wall_clock_ms` (an RTC or SNTP): without a wall clock the connector
//! refuses every certificate (`CertificateError::ClockNotSet`).

#![no_std]
#![no_main]

use cortex_m as _;
use defmt_rtt as _;
use panic_halt as _;

use defmt::{error, info, warn};
use embassy_executor::Spawner;
use embassy_net::Stack;
use paywall_auth_embassy::paywall_auth::SignInOptions;
use paywall_auth_embassy::{AuthClient, Remote, TcpConnector, TlsConnector, TlsFailure, Trust};
use paywall_auth_embassy_firmware::{app, board, net};
use static_cell::StaticCell;

/// The API: HTTPS to a host name, reached at an IP literal (no DNS).
const API_ORIGIN: &str = "https://api.example.com";
const API_PORT: u16 = 443;

/// The CA the backend's certificate chains to (DER). This one is a
/// throwaway generated for the example; put your backend's root here.
static CAS: [&[u8]; 1] = [include_bytes!("../../example-ca.der")];

/// Record buffers: 16 640 B read (any server), 1 KiB write; 4 KiB for the
/// certificate chain (the connector's defaults).
type Tls = TlsConnector<'static, TcpConnector<'static>, BoardRng>;
type Client = AuthClient<'static, Tls, board::RetainedFlash>;

static EVENTS: app::Events = app::Events::new();
static CLIENT: StaticCell<Client> = StaticCell::new();

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let board = board::init();
    info!("boot: warm reset {=bool}", board.warm_reset);
    let stack = net::up(spawner, board.net, board.seed).await;

    let client = client(stack, board.flash, board.seed);
    match wall_clock_ms() {
        Some(now) => client.set_unix_time(now),
        None => warn!("no wall clock: certificates cannot be checked until set_unix_time"),
    }
    client.start().await;

    match client.sign_in_anonymously(SignInOptions::default()).await {
        Ok(session) => info!("signed in: user {=str}", session.user.id),
        Err(e) => match client.connector().last_failure() {
            Some(TlsFailure::Certificate(reason)) => {
                error!("sign-in failed: {=str}", reason.as_str())
            }
            _ => error!("sign-in failed: {=str}", e.code()),
        },
    }

    app::serve(client, &EVENTS).await
}

/// The client, built in its static. Not inlined: the temporaries of the
/// build (the TLS buffers, ~38 KiB measured under QEMU) would otherwise be
/// part of the main task's stack frame for as long as it runs.
#[inline(never)]
fn client(stack: Stack<'static>, flash: board::RetainedFlash, seed: u64) -> &'static mut Client {
    CLIENT.init_with(|| {
        let tcp = TcpConnector::new(stack, Remote::Ip((net::API_ADDR, API_PORT).into()), "");
        let trust = Trust::pinned_cas(&CAS);
        let tls = match Tls::new(tcp, API_ORIGIN, trust, BoardRng(seed)) {
            Ok(tls) => tls,
            Err(e) => defmt::panic!("bad origin: {=str}", e.as_str()),
        };
        app::new_client(tls, flash, &EVENTS)
    })
}

/// The wall clock (ms since the Unix epoch): read the RTC or ask SNTP.
fn wall_clock_ms() -> Option<u64> {
    None
}

/// PLACEHOLDER, NOT RANDOM ENOUGH FOR TLS: a xorshift generator standing in
/// for the chip's true RNG, so the example links. The handshake's ephemeral
/// key comes from here; a predictable one lets an eavesdropper decrypt.
struct BoardRng(u64);

impl rand_core::RngCore for BoardRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for BoardRng {}
