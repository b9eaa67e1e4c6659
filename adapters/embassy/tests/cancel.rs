//! Dropping a method's future (a caller's timeout, a `select`) never wedges
//! the client or loses state: the next call answers the cut request as lost
//! and has the core rewrite the cut flash write.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use paywall_auth::SignInOptions;

fn tokens(refresh: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"access_token":"a.b.c","refresh_token":"{refresh}","expires_in":3600,"token_type":"bearer","user":{{"id":"guest-1","email":null,"is_anonymous":true}}}}"#
    );
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn a_call_dropped_mid_request_leaves_the_client_usable() {
    let events = Recorder::default();
    let connector = Scripted::new([
        Reply::bytes(Vec::new()).end(End::Hang),
        Reply::bytes(tokens("r1")),
    ]);
    let mut client = client(connector, RamFlash::new(FLASH_SIZE), &events);

    // The caller gives up long before the client's own request timeout.
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        client.sign_in_anonymously(SignInOptions::default()),
    )
    .await;
    assert!(dropped.is_err());
    assert!(client.session().is_none());

    // The next call settles the cut request (as lost) and signs in.
    let session = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(session.user.id, "guest-1");
    let (connector, flash) = client.into_parts();
    assert_eq!(connector.requests.len(), 2);

    // And it is durable.
    let mut client = common::client(
        Scripted::default(),
        RamFlash::from_bytes(flash.bytes),
        &events,
    );
    client.start().await;
    assert_eq!(client.session().unwrap().refresh_token.expose(), "r1");
}

#[tokio::test]
async fn a_call_dropped_mid_write_is_rewritten() {
    let events = Recorder::default();
    let flash = RamFlash::new(FLASH_SIZE);
    let power = flash.power.clone();
    let stalled = flash.lost.clone();
    let connector = Scripted::new([Reply::bytes(tokens("r1"))]);
    let mut client = client(connector, flash, &events);
    client.start().await;

    // The first record write hangs; the caller drops the call then.
    power.borrow_mut().stall_next_write = true;
    tokio::select! {
        _ = client.sign_in_anonymously(SignInOptions::default()) => panic!("the write never completes"),
        () = stalled.notified() => {}
    }

    // The core holds the session in memory; the cut write is acknowledged
    // as failed at the next call, and retried at the deadline it sets.
    assert!(client.session().is_some());
    let session = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(session.refresh_token.expose(), "r1");
    assert!(
        client.next_deadline().is_some(),
        "a storage retry is scheduled"
    );
    client.wait_deadline().await;
    client.service_timers().await;

    let (_, flash) = client.into_parts();
    let mut client = common::client(
        Scripted::default(),
        RamFlash::from_bytes(flash.bytes),
        &events,
    );
    client.start().await;
    assert_eq!(client.session().unwrap().refresh_token.expose(), "r1");
    assert!(client.has_resumable_anonymous());
}
