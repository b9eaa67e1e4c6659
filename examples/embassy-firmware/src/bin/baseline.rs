//! The firmware without the auth client: same board, executor, TCP/IP stack
//! and logging, but no paywall-auth. `footprint(firmware) - footprint(this)`
//! is what the adapter and the core cost (see docs/embassy-measurements.md).
//! It opens and closes one TCP connection so the stack's TCP client code is
//! linked in both binaries.

#![no_std]
#![no_main]

use cortex_m as _;
use defmt_rtt as _;
use panic_halt as _;

use defmt::info;
use embassy_executor::Spawner;
use embassy_net::tcp::TcpSocket;
use embedded_io_async::Write;
use paywall_auth_embassy_firmware::{board, net};

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let board = board::init();
    let stack = net::up(spawner, board.net, board.seed).await;

    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
    let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
    socket.set_timeout(Some(embassy_time::Duration::from_secs(10)));
    if socket.connect((net::API_ADDR, 8080)).await.is_ok() {
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
