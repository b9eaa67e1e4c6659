//! Firmware example: a Cortex-M4F device that signs in anonymously at boot,
//! resumes the same guest after a reset, and prints its user id over defmt.
//!
//! Everything board-specific is in `board`: a placeholder network driver
//! (link up, every frame dropped) and a placeholder NOR flash (RAM kept out
//! of the linker's reach, so it survives a warm reset but not a power
//! cycle). On a real board, replace them with the HAL's Ethernet/Wi-Fi
//! driver and its async flash driver (e.g. `embassy_stm32::flash::Flash`,
//! `embassy_nrf::nvmc`); the rest of this file stays as it is.
//!
//! Build: `cargo build --release` (the target is set in .cargo/config.toml).

#![no_std]
#![no_main]

mod board;

use cortex_m as _;
use defmt_rtt as _;
use panic_halt as _;

use defmt::{error, info, warn};
use embassy_executor::Spawner;
use embassy_futures::select::{Either, select};
use embassy_net::{Ipv4Address, Ipv4Cidr, StackResources, StaticConfigV4};
use paywall_auth_embassy::paywall_auth::SignInOptions;
use paywall_auth_embassy::{AuthClient, Event, Remote, TcpConnector};
use paywall_auth_embassy_firmware::app;
use static_cell::StaticCell;

/// The API: an IP literal (no DNS needed), port 8080, plain HTTP.
const API_ADDR: Ipv4Address = Ipv4Address::new(192, 0, 2, 1);
const API_PORT: u16 = 8080;
const API_HOST: &str = "192.0.2.1:8080";

type Client = AuthClient<'static, TcpConnector<'static>, board::RetainedFlash>;

static EVENTS: app::Events = app::Events::new();
static RESOURCES: StaticCell<StackResources<2>> = StaticCell::new();
static CLIENT: StaticCell<Client> = StaticCell::new();

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, board::NetDriver>) -> ! {
    runner.run().await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let board = board::init();
    info!(
        "boot: {}",
        if board.warm_reset {
            "warm reset"
        } else {
            "cold start"
        }
    );

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

    let client = CLIENT.init_with(|| {
        let connector = TcpConnector::new(stack, Remote::Ip((API_ADDR, API_PORT).into()), API_HOST);
        app::new_client(connector, board.flash, &EVENTS)
    });
    client.start().await;

    match client.sign_in_anonymously(SignInOptions::default()).await {
        Ok(session) => info!(
            "signed in: user {=str} (anonymous: {=bool})",
            session.user.id, session.user.is_anonymous
        ),
        Err(e) => error!("sign-in failed: {=str}", e.code()),
    }

    // From here on: keep the tokens fresh and report auth changes.
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
