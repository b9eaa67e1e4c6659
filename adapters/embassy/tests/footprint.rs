//! RAM of the client on this host: the client itself and the future of each
//! method (futures are created and dropped, not run). Run with
//! `--nocapture` to see the figures; docs/embassy-measurements.md has the
//! thumbv7em ones, read from the firmware's symbols.

#![allow(clippy::unwrap_used)]

mod common;

use std::mem::{size_of, size_of_val};

use common::*;
use paywall_auth::{Machine, SignInOptions, SignOutOptions, UpgradeRequest};
use paywall_auth_embassy::{DEFAULT_BUF, Event, EventChannel};

#[test]
fn client_and_futures_stay_small() {
    let events = Recorder::default();
    let mut client = client(Scripted::default(), RamFlash::new(FLASH_SIZE), &events);
    let client_size = size_of_val(&client);
    let machine = size_of::<Machine>();

    let start = size_of_val(&client.start());
    let sign_in = size_of_val(&client.sign_in_anonymously(SignInOptions::default()));
    let upgrade = size_of_val(
        &client.upgrade_anonymous_to_email(UpgradeRequest::new("a@b.c", "pw", None).unwrap()),
    );
    let sign_out = size_of_val(&client.sign_out(SignOutOptions::default()));
    let refresh = size_of_val(&client.refresh());
    let access_token = size_of_val(&client.access_token());
    let service_timers = size_of_val(&client.service_timers());
    let wait_deadline = size_of_val(&client.wait_deadline());
    let futures = [
        ("start", start),
        ("sign_in_anonymously", sign_in),
        ("upgrade_anonymous_to_email", upgrade),
        ("sign_out", sign_out),
        ("refresh", refresh),
        ("access_token", access_token),
        ("service_timers", service_timers),
        ("wait_deadline", wait_deadline),
    ];
    let largest = futures.iter().map(|(_, size)| *size).max().unwrap();
    println!(
        "machine {machine} B, buffer {DEFAULT_BUF} B, client {client_size} B (scripted connector, RAM flash)"
    );
    for (name, size) in futures {
        println!("future {name:<28} {size:>6} B");
    }
    println!(
        "event {} B; EventChannel<_, 4> {} B",
        size_of::<Event>(),
        size_of::<EventChannel<embassy_sync::blocking_mutex::raw::NoopRawMutex, 4>>()
    );

    // Budget: client state and buffers under 16 KiB; the largest future
    // under 6 KiB (64-bit host; a thumbv7em build is smaller).
    assert!(client_size < 16 * 1024, "client {client_size} B");
    assert!(largest < 6 * 1024, "largest future {largest} B");
}
