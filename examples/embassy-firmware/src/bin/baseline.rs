//! The firmware without the auth client: same board, executor, TCP/IP stack
//! and logging, but no paywall-auth. `footprint(firmware) - footprint(this)`
//! is what the adapter and the core cost (see docs/embassy-measurements.md).
//! It opens and closes one TCP connection so the stack's TCP client code is
//! linked in both binaries.

#![no_std]
#![no_main]

#[path = "../board.rs"]
mod board;

use cortex_m as _;
use defmt_rtt as _;
use panic_halt as _;

use defmt::info;
use embassy_executor::Spawner;
use embassy_net::tcp::TcpSocket;
use embassy_net::{Ipv4Address, Ipv4Cidr, StackResources, StaticConfigV4};
use embedded_io_async::Write;
use static_cell::StaticCell;

static RESOURCES: StaticCell<StackResources<2>> = StaticCell::new();

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, board::NetDriver>) -> ! {
    runner.run().await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let board = board::init();
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

    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
    let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
    socket.set_timeout(Some(embassy_time::Duration::from_secs(10)));
    if socket
        .connect((Ipv4Address::new(192, 0, 2, 1), 8080))
        .await
        .is_ok()
    {
        let _ = socket.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
        let mut buf = [0u8; 64];
        let _ = socket.read(&mut buf).await;
        socket.close();
        let _ = socket.flush().await;
    }
    let _ = (board.flash, board.warm_reset);
    loop {
        info!("tick");
        embassy_time::Timer::after_secs(60).await;
    }
}
