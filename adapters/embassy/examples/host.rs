//! The embassy adapter on the host: the same client code as the firmware,
//! run by embassy-executor (std), against the emulator over loopback TCP.
//!
//! The emulator is an axum server; it runs on a tokio runtime in the
//! background. The connector opens tokio TCP streams on that runtime and
//! hands them to the client as `embedded-io-async` streams, polled from the
//! embassy executor's thread. The flash is a RAM NOR flash; a "reboot" is a
//! new client over the same bytes.
//!
//! `cargo run -p paywall-auth-embassy --example host`

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;

use common::{FLASH_SIZE, RamFlash, Recorder};
use embassy_executor::Spawner;
use embedded_io_adapters::tokio_1::FromTokio;
use paywall_auth::{SignInOptions, SignOutOptions};
use paywall_auth_embassy::{AuthClient, Connect, Event};
use paywall_auth_emulator::{Emulator, EmulatorConfig};
use tokio::net::TcpStream;
use tokio::runtime::Handle;

/// Tokio TCP streams opened on the emulator's runtime, used from embassy.
struct HostConnector {
    runtime: Handle,
    addr: SocketAddr,
    host: String,
}

impl Connect for HostConnector {
    type Error = std::io::Error;
    type Connection<'a> = FromTokio<TcpStream>;

    fn host(&self) -> &str {
        &self.host
    }

    async fn connect(&mut self) -> Result<FromTokio<TcpStream>, std::io::Error> {
        // Registered with the runtime's reactor; polled from any thread after.
        let stream = self.runtime.spawn(TcpStream::connect(self.addr)).await??;
        Ok(FromTokio::new(stream))
    }
}

fn print_events(events: &Recorder) {
    for event in events.take() {
        match event {
            Event::Auth {
                change,
                user: Some(user),
            } => {
                println!(
                    "  event {:<16} user {} (anonymous: {})",
                    change.as_str(),
                    user.id,
                    user.is_anonymous
                )
            }
            Event::Auth { change, user: None } => {
                println!("  event {:<16} signed out", change.as_str())
            }
            other => println!("  event {other:?}"),
        }
    }
}

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    let runtime = Box::leak(Box::new(tokio::runtime::Runtime::new().unwrap()));
    let emulator: Emulator = runtime
        .block_on(Emulator::start(EmulatorConfig::default()))
        .unwrap();
    println!("emulator at {}", emulator.origin());
    let connector = || HostConnector {
        runtime: runtime.handle().clone(),
        addr: emulator.addr(),
        host: emulator.addr().to_string(),
    };
    let events = Recorder::default();

    println!("boot 1 (empty flash)");
    let mut client = AuthClient::new(
        common::config(),
        connector(),
        common::store(RamFlash::new(FLASH_SIZE)),
        &events,
    );
    let future = client.sign_in_anonymously(SignInOptions::default());
    let future_size = std::mem::size_of_val(&future);
    let id = future.await.unwrap().user.id.to_string();
    println!("  signed in as guest {id}");
    print_events(&events);

    println!("boot 2 (same flash)");
    let (_, flash) = client.into_parts();
    let mut client = AuthClient::new(
        common::config(),
        connector(),
        common::store(RamFlash::from_bytes(flash.bytes)),
        &events,
    );
    let resumed = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(resumed.user.id, id.as_str());
    println!(
        "  still guest {} (no request: the session was on flash)",
        resumed.user.id
    );
    client.sign_out(SignOutOptions::default()).await.unwrap();
    println!(
        "  soft sign-out; resumable: {}",
        client.has_resumable_anonymous()
    );
    print_events(&events);

    println!("boot 3 (same flash)");
    let (_, flash) = client.into_parts();
    let mut client = AuthClient::new(
        common::config(),
        connector(),
        common::store(RamFlash::from_bytes(flash.bytes)),
        &events,
    );
    let resumed = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(resumed.user.id, id.as_str());
    println!("  resumed guest {}", resumed.user.id);
    print_events(&events);

    let log: Vec<String> = emulator.requests().iter().map(|r| r.path.clone()).collect();
    println!("emulator saw {} requests: {log:?}", log.len());
    println!(
        "sizes on this host: client {} B, sign-in future {} B",
        std::mem::size_of_val(&client),
        future_size
    );
    std::process::exit(0);
}
