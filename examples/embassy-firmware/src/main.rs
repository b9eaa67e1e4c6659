//! Firmware example: a Cortex-M4F device that signs in anonymously at boot,
//! resumes the same guest after a reset, and prints its user id over defmt.
//!
//! Everything board-specific is in the library's `board`: a placeholder network driver
//! (link up, every frame dropped) and a placeholder NOR flash (RAM kept out
//! of the linker's reach, so it survives a warm reset but not a power
//! cycle). On a real board, replace them with the HAL's Ethernet/Wi-Fi
//! driver and its async flash driver (e.g. `embassy_stm32::flash::Flash`,
//! `embassy_nrf::nvmc`); the rest of this file stays as it is.
//!
//! Build: `cargo build --release` (the target is set in .cargo/config.toml).

#![no_std]
#![no_main]

use cortex_m as _;
use defmt_rtt as _;
use panic_halt as _;

use defmt::{error, info};
use embassy_executor::Spawner;
use paywall_auth_embassy::paywall_auth::SignInOptions;
use paywall_auth_embassy::{AuthClient, Remote, TcpConnector};
use paywall_auth_embassy_firmware::{app, board, net};
use static_cell::StaticCell;

/// The API: an IP literal (no DNS needed), port 8080, plain HTTP.
const API_PORT: u16 = 8080;
const API_HOST: &str = "192.0.2.1:8080";

type Client = AuthClient<'static, TcpConnector<'static>, board::RetainedFlash>;

static EVENTS: app::Events = app::Events::new();
static CLIENT: StaticCell<Client> = StaticCell::new();

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
    let stack = net::up(spawner, board.net, board.seed).await;

    let client = CLIENT.init_with(|| {
        let api = Remote::Ip((net::API_ADDR, API_PORT).into());
        app::new_client(
            TcpConnector::new(stack, api, API_HOST),
            board.flash,
            &EVENTS,
        )
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
    app::serve(client, &EVENTS).await
}
