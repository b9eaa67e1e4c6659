//! docs/protocol.md §13 on a microcontroller: the flash store is proved
//! before a token is spent, and a guest claimed by an email on another
//! device is never handed to the next visitor.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use paywall_auth::{Error, SignInOptions, SignOutOptions, UpgradeRequest};
use paywall_auth_embassy::Upgrade;
use paywall_auth_emulator::Route;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_that_cannot_be_written_spends_no_token() {
    let emulator = emulator().await;
    let events = Recorder::default();
    let flash = RamFlash::new(FLASH_SIZE);
    let power = flash.power.clone();
    let mut client = client(TokioConnector::new(&emulator), flash, &events);
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap()
        .user
        .id
        .to_string();
    power.borrow_mut().fail_writes = true;
    let refreshes = emulator.count(Route::Refresh);
    assert!(matches!(client.refresh().await, Err(Error::Storage(_))));
    client.sign_out(SignOutOptions::default()).await.ok();
    assert!(matches!(
        client.sign_in_anonymously(SignInOptions::default()).await,
        Err(Error::Storage(_))
    ));
    assert_eq!(emulator.count(Route::Refresh), refreshes, "nothing spent");
    // The flash works again: the same guest.
    power.borrow_mut().fail_writes = false;
    let resumed = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(resumed.user.id.as_str(), guest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_claimed_by_an_email_is_never_resumed_as_a_guest() {
    let emulator = emulator().await;
    emulator.set_confirm_email(true);
    let events = Recorder::default();
    let (mut client, guest) = fresh_guest(&emulator, &events).await;
    let upgrade = client
        .upgrade_anonymous_to_email(
            UpgradeRequest::new("owner@example.com", "pw-12345678", None).unwrap(),
        )
        .await
        .unwrap();
    assert!(matches!(upgrade, Upgrade::ConfirmationRequired { .. }));
    assert!(emulator.confirm_email("owner@example.com"));
    client.sign_out(SignOutOptions::default()).await.unwrap();
    let next = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert!(next.user.is_anonymous);
    assert_ne!(next.user.id.as_str(), guest);
    assert_eq!(emulator.count(Route::AnonymousSignIn), 2);
    assert!(
        emulator.count(Route::SignOut) >= 1,
        "the named session is revoked"
    );
}
