//! paywall-auth on a NUCLEO-F429ZI: Ethernet (the board's LAN8742A PHY over
//! RMII) with DHCP, anonymous sign-in at boot, the session in the chip's
//! own flash, so a reset or a power cycle resumes the same guest.
//!
//! `cargo run --release` flashes the board through its ST-LINK (probe-rs)
//! and prints the defmt log. Set the API below to a machine on your LAN
//! that runs the backend or `paywall-auth emulator` (see README.md).

#![no_std]
#![no_main]

use defmt::{error, info, warn};
use embassy_executor::Spawner;
use embassy_futures::select::{Either, select};
use embassy_net::{Ipv4Address, StackResources};
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue};
use embassy_stm32::flash::Flash;
use embassy_stm32::peripherals::{ETH, ETH_SMA};
use embassy_stm32::rng::Rng;
use embassy_stm32::time::Hertz;
use embassy_stm32::{Config, bind_interrupts, eth, flash, peripherals, rng};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use paywall_auth_embassy::paywall_auth::{Config as AuthConfig, SignInOptions, StoreFormat};
use paywall_auth_embassy::{AuthClient, Event, EventChannel, FlashStore, Remote, TcpConnector};
use static_cell::StaticCell;
use {defmt_rtt as _, panic_probe as _};

/// The API: an IP literal on your LAN and its port, plain HTTP. Put the
/// address of the machine that runs the backend (or the emulator) here.
/// For HTTPS, wrap the connector in TLS (see adapters/embassy/README.md).
const API_ADDR: Ipv4Address = Ipv4Address::new(192, 168, 1, 10);
const API_PORT: u16 = 8787;
/// The `Host` header: the authority of the API origin.
const API_HOST: &str = "192.168.1.10:8787";
const PAYWALL_ID: &str = "pw_demo";

/// The session store: the first four 16 KiB sectors of flash bank 2
/// (sectors 12..15, 0x0810_0000..0x0811_0000). memory.x keeps the program
/// in bank 1, so this range is never code.
const STORE: core::ops::Range<u32> = 0..64 * 1024;

/// Locally administered MAC address; use the one your product is assigned.
const MAC: [u8; 6] = [0x02, 0x00, 0x5a, 0x11, 0x22, 0x33];

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    HASH_RNG => rng::InterruptHandler<peripherals::RNG>;
    FLASH => flash::InterruptHandler;
});

type Device = Ethernet<'static, ETH, GenericPhy<embassy_stm32::eth::Sma<'static, ETH_SMA>>>;
type Store = embassy_stm32::flash::Bank2Region1<'static>;
type Client = AuthClient<'static, TcpConnector<'static>, Store>;

static EVENTS: EventChannel<CriticalSectionRawMutex, 4> = EventChannel::new();
static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
static RESOURCES: StaticCell<StackResources<3>> = StaticCell::new();
static CLIENT: StaticCell<Client> = StaticCell::new();

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

/// 180 MHz from the 8 MHz clock the ST-LINK feeds the chip (HSE bypass);
/// Ethernet needs HCLK of at least 25 MHz.
fn clocks() -> Config {
    let mut config = Config::default();
    use embassy_stm32::rcc::{
        AHBPrescaler, APBPrescaler, Hse, HseMode, Pll, PllMul, PllPDiv, PllPreDiv, PllSource,
        Sysclk,
    };
    config.rcc.hse = Some(Hse {
        freq: Hertz(8_000_000),
        mode: HseMode::Bypass,
    });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL180,
        divp: Some(PllPDiv::DIV2),
        divq: None,
        divr: None,
    });
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.sys = Sysclk::PLL1_P;
    config
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_stm32::init(clocks());

    let mut rng = Rng::new(p.RNG, Irqs);
    let mut seed = [0; 8];
    if rng.async_fill_bytes(&mut seed).await.is_err() {
        defmt::panic!("the RNG failed its self-test");
    }

    // NUCLEO-144 RMII pins: REF_CLK PA1, CRS_DV PA7, RXD0 PC4, RXD1 PC5,
    // TXD0 PG13, TXD1 PB13, TX_EN PG11; MDIO PA2, MDC PC1.
    let device = Ethernet::new(
        PACKETS.init(PacketQueue::new()),
        p.ETH,
        Irqs,
        p.PA1,
        p.PA7,
        p.PC4,
        p.PC5,
        p.PG13,
        p.PB13,
        p.PG11,
        MAC,
        p.ETH_SMA,
        p.PA2,
        p.PC1,
    );
    let (stack, runner) = embassy_net::new(
        device,
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        u64::from_le_bytes(seed),
    );
    spawner.spawn(net_task(runner).expect("the net task is spawned once"));
    info!("waiting for a DHCP lease");
    stack.wait_config_up().await;
    if let Some(config) = stack.config_v4() {
        info!("address {}", config.address);
    }

    let flash = Flash::new(p.FLASH, Irqs).into_regions().bank2_region1;
    let client = CLIENT.init_with(|| {
        let config = match AuthConfig::new(PAYWALL_ID) {
            Ok(config) => config.with_store_format(StoreFormat::Postcard),
            Err(_) => defmt::panic!("invalid paywall id"),
        };
        let connector = TcpConnector::new(stack, Remote::Ip((API_ADDR, API_PORT).into()), API_HOST);
        let store = match FlashStore::new(flash, STORE) {
            Ok(store) => store,
            Err(_) => defmt::panic!("the store range must be whole sectors, at least two"),
        };
        AuthClient::new(config, connector, store, &EVENTS)
    });

    // Restores the stored session; resumes the same guest after a reset.
    client.start().await;
    match client.sign_in_anonymously(SignInOptions::default()).await {
        Ok(session) => info!(
            "signed in: user {=str} (anonymous: {=bool})",
            session.user.id, session.user.is_anonymous
        ),
        Err(e) => error!("sign-in failed: {=str}", e.code()),
    }

    // Keep the tokens fresh and report auth changes.
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
