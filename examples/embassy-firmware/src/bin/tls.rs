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

#[path = "../board.rs"]
mod board;

use cortex_m as _;
use defmt_rtt as _;
use panic_halt as _;

use defmt::{error, info, warn};
use embassy_executor::Spawner;
use embassy_futures::select::{Either, select};
use embassy_net::{Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use paywall_auth_embassy::paywall_auth::{Config, SignInOptions, StoreFormat};
use paywall_auth_embassy::{
    AuthClient, Event, EventChannel, FlashStore, Remote, TcpConnector, TlsConnector, TlsFailure,
    Trust,
};
use static_cell::StaticCell;

/// The API: HTTPS to a host name, reached at an IP literal (no DNS).
const API_ORIGIN: &str = "https://api.example.com";
const API_ADDR: Ipv4Address = Ipv4Address::new(192, 0, 2, 1);
const API_PORT: u16 = 443;
const PAYWALL_ID: &str = "pw_demo";

/// The CA the backend's certificate chains to (DER). This one is a
/// throwaway generated for the example; put your backend's root here.
static CAS: [&[u8]; 1] = [include_bytes!("../../example-ca.der")];

/// Record buffers: 16 640 B read (any server), 1 KiB write; 4 KiB for the
/// certificate chain (the connector's defaults).
type Tls = TlsConnector<'static, TcpConnector<'static>, BoardRng>;
type Client = AuthClient<'static, Tls, board::RetainedFlash>;

static EVENTS: EventChannel<CriticalSectionRawMutex, 4> = EventChannel::new();
static RESOURCES: StaticCell<StackResources<2>> = StaticCell::new();
static CLIENT: StaticCell<Client> = StaticCell::new();

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, board::NetDriver>) -> ! {
    runner.run().await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let board = board::init();
    info!("boot: warm reset {=bool}", board.warm_reset);
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(192, 0, 2, 2), 24),
        gateway: None,
        dns_servers: heapless::Vec::new(),
    });
    let (stack, runner) = embassy_net::new(
        board.net,
        config,
        RESOURCES.init(StackResources::new()),
        board.seed,
    );
    spawner.spawn(net_task(runner).expect("the net task is spawned once"));
    stack.wait_config_up().await;

    let client = CLIENT.init_with(|| new_client(stack, board.flash, board.seed));
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

    loop {
        match select(client.wait_deadline(), EVENTS.receive()).await {
            Either::First(()) => client.service_timers().await,
            Either::Second(Event::Auth { change, user }) => match user {
                Some(user) => info!("{=str}: user {=str}", change.as_str(), user.id),
                None => info!("{=str}: signed out", change.as_str()),
            },
            Either::Second(other) => warn!("{}", other),
        }
    }
}

fn new_client(stack: Stack<'static>, flash: board::RetainedFlash, seed: u64) -> Client {
    let config = match Config::new(PAYWALL_ID) {
        Ok(config) => config.with_store_format(StoreFormat::Postcard),
        Err(_) => defmt::panic!("invalid paywall id"),
    };
    let tcp = TcpConnector::new(stack, Remote::Ip((API_ADDR, API_PORT).into()), "");
    let connector = match Tls::new(tcp, API_ORIGIN, Trust::pinned_cas(&CAS), BoardRng(seed)) {
        Ok(connector) => connector,
        Err(e) => defmt::panic!("bad origin: {=str}", e.as_str()),
    };
    let store = match FlashStore::new(flash, 0..board::FLASH_SIZE) {
        Ok(store) => store,
        Err(_) => defmt::panic!("flash range must be page-aligned and span two pages"),
    };
    AuthClient::new(config, connector, store, &EVENTS)
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
