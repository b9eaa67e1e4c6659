//! The TCP/IP stack (embassy-net) on the placeholder board's driver, as the
//! measured firmwares (`main.rs`, `bin/tls.rs`, `bin/baseline.rs`) bring it
//! up: a static IPv4 address on the API's /24, two sockets.

use embassy_executor::Spawner;
use embassy_net::{Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use static_cell::StaticCell;

use crate::board::NetDriver;

/// The device's address.
pub const DEVICE_ADDR: Ipv4Address = Ipv4Address::new(192, 0, 2, 2);
/// The API's address: an IP literal, so no DNS is needed.
pub const API_ADDR: Ipv4Address = Ipv4Address::new(192, 0, 2, 1);

static RESOURCES: StaticCell<StackResources<2>> = StaticCell::new();

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, NetDriver>) -> ! {
    runner.run().await
}

/// Starts the stack on `driver` (its task spawned on `spawner`), seeding
/// its TCP sequence numbers with `seed`, and waits until it is configured.
/// Call once.
pub async fn up(spawner: Spawner, driver: NetDriver, seed: u64) -> Stack<'static> {
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(DEVICE_ADDR, 24),
        gateway: None,
        dns_servers: heapless::Vec::new(),
    });
    let (stack, runner) =
        embassy_net::new(driver, config, RESOURCES.init(StackResources::new()), seed);
    spawner.spawn(net_task(runner).expect("the net task is spawned once"));
    stack.wait_config_up().await;
    stack
}
