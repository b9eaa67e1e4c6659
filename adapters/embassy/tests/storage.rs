//! Start-up tells empty storage from corrupted storage: a record that does
//! not decode is the core's `CorruptRecord` notice, a map that cannot be
//! read is `StorageUnreadable`; either way the client starts signed out,
//! erases nothing by itself, and keeps working.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use paywall_auth::{AuthChange, Notice, RecordKey, SignInOptions};
use paywall_auth_embassy::{Event, StorageFault};
use sequential_storage::cache::Cache;
use sequential_storage::map::{MapConfig, MapStorage};

fn scripted_sign_in() -> Scripted {
    let body = r#"{"access_token":"a.b.c","refresh_token":"r1","expires_in":3600,"user":{"id":"guest-1","is_anonymous":true}}"#;
    Scripted::new([Reply::bytes(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))])
}

/// Writes raw `value` bytes under `key` with sequential-storage directly.
async fn put_raw(flash: RamFlash, key: RecordKey, value: &[u8]) -> RamFlash {
    let mut map = MapStorage::<u8, _, _>::new(
        flash,
        const { MapConfig::new(0..FLASH_SIZE as u32) },
        Cache::new_uncached(),
    );
    let mut buf = [0u8; 256];
    map.store_item(&mut buf, &key.tag(), &value).await.unwrap();
    map.destroy().0
}

#[tokio::test]
async fn empty_flash_is_signed_out_without_any_error() {
    let events = Recorder::default();
    let mut client = client(Scripted::default(), RamFlash::new(FLASH_SIZE), &events);
    client.start().await;
    assert_eq!(
        events.take(),
        [Event::Auth {
            change: AuthChange::InitialSession,
            user: None
        }]
    );
    assert!(!client.has_resumable_anonymous());
}

#[tokio::test]
async fn an_undecodable_record_is_a_notice_and_is_left_alone() {
    let flash = put_raw(
        RamFlash::new(FLASH_SIZE),
        RecordKey::Session,
        b"\x01garbage",
    )
    .await;
    let flash = put_raw(flash, RecordKey::AnonRefreshToken, b"\x09\xff").await;
    let pristine = flash.bytes.clone();
    let events = Recorder::default();
    let mut client = client(scripted_sign_in(), flash, &events);
    client.start().await;
    let seen = events.take();
    for key in [RecordKey::Session, RecordKey::AnonRefreshToken] {
        assert!(
            seen.iter().any(
                |e| matches!(e, Event::Notice(Notice::CorruptRecord { key: k, .. }) if *k == key)
            ),
            "{key:?}: {seen:?}"
        );
    }
    assert!(seen.contains(&Event::Auth {
        change: AuthChange::InitialSession,
        user: None
    }));
    assert!(client.session().is_none());
    let (connector, flash) = client.into_parts();
    assert!(
        flash.bytes == pristine,
        "nothing is erased or rewritten at start"
    );

    // The device still works: a sign-in replaces the bad records.
    let mut client = common::client(connector_or(connector), flash, &events);
    client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let (_, flash) = client.into_parts();
    let mut client = common::client(Scripted::default(), flash, &events);
    client.start().await;
    assert_eq!(client.session().unwrap().user.id, "guest-1");
}

fn connector_or(connector: Scripted) -> Scripted {
    if connector.replies.is_empty() {
        scripted_sign_in()
    } else {
        connector
    }
}

#[tokio::test]
async fn unreadable_flash_is_an_error_event_and_the_client_starts_signed_out() {
    let flash = RamFlash::new(FLASH_SIZE);
    let power = flash.power.clone();
    power.borrow_mut().fail_reads = true;
    let events = Recorder::default();
    let mut client = client(scripted_sign_in(), flash, &events);
    client.start().await;
    let seen = events.take();
    for key in [RecordKey::Session, RecordKey::AnonRefreshToken] {
        assert!(
            seen.contains(&Event::StorageUnreadable {
                key,
                fault: StorageFault::Flash
            }),
            "{seen:?}"
        );
    }
    assert!(seen.contains(&Event::Auth {
        change: AuthChange::InitialSession,
        user: None
    }));

    // The driver recovers (a transient bus error): the client works on.
    power.borrow_mut().fail_reads = false;
    client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(client.session().unwrap().user.id, "guest-1");
}

#[tokio::test]
async fn noise_on_flash_never_panics_and_the_device_recovers() {
    for seed in 1..=8u64 {
        // xorshift noise over the whole range.
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let bytes = (0..FLASH_SIZE)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let events = Recorder::default();
        let mut client = client(scripted_sign_in(), RamFlash::from_bytes(bytes), &events);
        client.start().await;
        assert!(client.session().is_none(), "seed {seed}");
        if events
            .take()
            .iter()
            .any(|e| matches!(e, Event::StorageUnreadable { .. }))
        {
            // The application decides to wipe it.
            client.erase_storage().await.unwrap();
        }
        let session = client.sign_in_anonymously(SignInOptions::default()).await;
        assert!(session.is_ok(), "seed {seed}: {session:?}");
        let (_, flash) = client.into_parts();
        let mut client = common::client(
            Scripted::default(),
            RamFlash::from_bytes(flash.bytes),
            &events,
        );
        client.start().await;
        assert_eq!(
            client.session().map(|s| s.user.id.as_str()),
            Some("guest-1"),
            "seed {seed}"
        );
    }
}
