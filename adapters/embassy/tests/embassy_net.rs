//! `TcpConnector` over a real embassy-net stack, without hardware: one stack
//! on an in-process loopback driver carries both the client's socket and a
//! small relay socket that forwards each request to the emulator and the
//! answer back. So the feature's connect, DNS-free addressing, streaming and
//! graceful close all run through smoltcp's TCP.
//!
//! Needs the `embassy-net` feature: `cargo test -p paywall-auth-embassy
//! --features embassy-net --test embassy_net` (the CI step runs it).

#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Waker};

use common::*;
use embassy_futures::select::{Either, select};
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpEndpoint, Ipv4Address, Ipv4Cidr, StackResources, StaticConfigV4};
use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embedded_io_async::Write as _;
use paywall_auth::{SignInOptions, SignOutOptions};
use paywall_auth_embassy::{Remote, TcpConnector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Frames sent are frames received: an IP-medium loopback.
#[derive(Clone, Default)]
struct Loopback {
    frames: Rc<RefCell<VecDeque<Vec<u8>>>>,
    waker: Rc<RefCell<Option<Waker>>>,
}

struct Rx(Vec<u8>);
struct Tx(Loopback);

impl embassy_net_driver::RxToken for Rx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, f: F) -> R {
        f(&mut self.0)
    }
}

impl embassy_net_driver::TxToken for Tx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        self.0.frames.borrow_mut().push_back(frame);
        if let Some(waker) = self.0.waker.borrow_mut().take() {
            waker.wake();
        }
        result
    }
}

impl embassy_net_driver::Driver for Loopback {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, cx: &mut Context<'_>) -> Option<(Rx, Tx)> {
        match self.frames.borrow_mut().pop_front() {
            Some(frame) => Some((Rx(frame), Tx(self.clone()))),
            None => {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                None
            }
        }
    }

    fn transmit(&mut self, _cx: &mut Context<'_>) -> Option<Tx> {
        Some(Tx(self.clone()))
    }

    fn link_state(&mut self, _cx: &mut Context<'_>) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = 1500;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ip
    }
}

const RELAY_PORT: u16 = 8080;

/// Accepts one connection after another on the stack and relays each
/// request to the emulator over OS TCP, then the response back.
async fn relay(stack: embassy_net::Stack<'_>, emulator: std::net::SocketAddr) {
    let (mut rx, mut tx) = ([0u8; 2048], [0u8; 2048]);
    loop {
        let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
        socket.accept(RELAY_PORT).await.unwrap();
        let request = read_request(&mut socket).await;
        let mut upstream = tokio::net::TcpStream::connect(emulator).await.unwrap();
        upstream.write_all(&request).await.unwrap();
        let mut response = Vec::new();
        upstream.read_to_end(&mut response).await.unwrap();
        socket.write_all(&response).await.unwrap();
        socket.close();
        let _ = socket.flush().await;
    }
}

/// One request: the head, then `Content-Length` bytes of body.
async fn read_request(socket: &mut TcpSocket<'_>) -> Vec<u8> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if request.len() >= end + 4 + length {
                return request;
            }
        }
        let n = socket.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed before its request was complete");
        request.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connector_runs_the_lifecycle_over_embassy_net() {
    let emulator = emulator().await;
    let address = Ipv4Address::new(192, 0, 2, 1);
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(address, 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    let mut resources = StackResources::<4>::new();
    let (stack, mut runner) = embassy_net::new(Loopback::default(), config, &mut resources, 7);

    let events = Recorder::default();
    let connector: TcpConnector<'_> = TcpConnector::new(
        stack,
        Remote::Ip(IpEndpoint::new(address.into(), RELAY_PORT)),
        "192.0.2.1:8080",
    );
    let mut flash = Some(RamFlash::new(FLASH_SIZE));
    let mut connector = Some(connector);

    let scenario = async {
        stack.wait_config_up().await;
        let mut client = client(connector.take().unwrap(), flash.take().unwrap(), &events);
        let id = client
            .sign_in_anonymously(SignInOptions::default())
            .await
            .unwrap()
            .user
            .id
            .to_string();
        client.sign_out(SignOutOptions::default()).await.unwrap();
        let resumed = client
            .sign_in_anonymously(SignInOptions::default())
            .await
            .unwrap();
        assert_eq!(resumed.user.id, id.as_str());
        client.refresh().await.unwrap();
        id
    };
    let run = select(
        runner.run(),
        select(relay(stack, emulator.addr()), scenario),
    );
    let id = match tokio::time::timeout(std::time::Duration::from_secs(20), run)
        .await
        .unwrap()
    {
        Either::Second(Either::Second(id)) => id,
        _ => unreachable!("the runner and the relay never finish"),
    };

    assert_eq!(
        routes(&emulator),
        ["anonymous/signin", "refresh", "refresh"]
    );
    let request = &emulator.requests()[0];
    assert_eq!(request.header("host"), Some("192.0.2.1:8080"));
    assert_eq!(emulator.users()[0].id, id);
    assert_eq!(
        events.take_changes(),
        [
            "INITIAL_SESSION",
            "SIGNED_IN",
            "SIGNED_OUT",
            "SIGNED_IN",
            "TOKEN_REFRESHED"
        ]
    );
}
