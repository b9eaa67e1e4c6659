//! Faults at every step of every flow — an HTTP 5xx, a timeout, a
//! connection dropped before or after the backend applied the request —
//! and what must hold afterwards: the guest account is still resumable with
//! the same user id unless the user asked otherwise, the stored records are
//! never left half-updated, and nothing comes back after a sign-out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use paywall_auth_emulator::{Emulator, Fault, Route};
use paywall_auth_tokio::{
    AuthChange, AuthClient, MemoryStore, SignInOptions, SignOutOptions, UpgradeOutcome,
    UpgradeRequest,
};

/// Request deadline of these tests: the latency fault exceeds it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// (name, fault, expected error code)
fn faults() -> Vec<(&'static str, Fault, &'static str)> {
    vec![
        (
            "503 with a code",
            Fault::status(503, "upstream_down"),
            "upstream_down",
        ),
        ("bare 503", Fault::status(503, ""), "http_503"),
        (
            "timeout",
            Fault::Latency(REQUEST_TIMEOUT * 2),
            "network_error",
        ),
        ("drop before apply", Fault::DropBeforeApply, "network_error"),
        ("drop after apply", Fault::DropAfterApply, "network_error"),
    ]
}

async fn client_on(emu: &Emulator, store: MemoryStore) -> AuthClient {
    AuthClient::builder(emu.origin(), PID)
        .store(store)
        .request_timeout(REQUEST_TIMEOUT)
        .build()
        .await
        .unwrap()
}

/// A client on `store`, signed in as a new guest.
async fn guest_on(emu: &Emulator, store: MemoryStore) -> (AuthClient, paywall_auth_tokio::Session) {
    let client = client_on(emu, store).await;
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    (client, guest)
}

/// A soft sign-out, then a sign-in, gives back the same guest.
async fn assert_soft_sign_out_resumes(
    client: &AuthClient,
    guest: &paywall_auth_tokio::Session,
    name: &str,
) {
    client.sign_out(SignOutOptions::default()).await.unwrap();
    let resumed = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(resumed.user.id, guest.user.id, "{name}");
}

#[tokio::test]
async fn faults_on_the_first_sign_in() {
    for (name, fault, code) in faults() {
        let emu = emulator().await;
        let store = MemoryStore::new();
        let client = client_on(&emu, store.clone()).await;
        emu.inject(Route::AnonymousSignIn, fault, 1);

        let err = client
            .sign_in_anonymously(SignInOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{name}");
        if name == "bare 503" {
            // No message in the body: the status text, as `statusText` is
            // in the reference client.
            let Some(paywall_auth::Error::Api(api)) = err.as_auth() else {
                panic!("{name}: {err:?}")
            };
            assert_eq!(api.message.as_str(), "Service Unavailable");
        }
        assert_eq!(client.session(), None, "{name}");
        assert!(store.keys().is_empty(), "{name}: nothing stored");

        // A retry gets a guest, and that guest is the one resumed later.
        let guest = client
            .sign_in_anonymously(SignInOptions::default())
            .await
            .unwrap();
        assert_soft_sign_out_resumes(&client, &guest, name).await;
        client.shutdown().await;
    }
}

#[tokio::test]
async fn faults_on_the_resume_never_create_a_new_guest() {
    for (name, fault, code) in faults() {
        let emu = emulator().await;
        let store = MemoryStore::new();
        let (client, guest) = guest_on(&emu, store.clone()).await;
        client.sign_out(SignOutOptions::default()).await.unwrap();
        let kept = store.get_now(&anon_key()).unwrap();
        emu.inject(Route::Refresh, fault, 1);

        let err = client
            .sign_in_anonymously(SignInOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{name}");
        assert_eq!(client.session(), None, "{name}");
        assert_eq!(store.get_now(&session_key()), None, "{name}");
        assert_eq!(
            store.get_now(&anon_key()).unwrap(),
            kept,
            "{name}: token kept"
        );
        assert_eq!(emu.count(Route::AnonymousSignIn), 1, "{name}: no new guest");

        // Even when the backend rotated the token and the answer was lost,
        // the kept token is still honoured (reuse interval).
        let resumed = client
            .sign_in_anonymously(SignInOptions::default())
            .await
            .unwrap();
        assert_eq!(resumed.user.id, guest.user.id, "{name}");
        assert_eq!(emu.users().len(), 1, "{name}");
        client.shutdown().await;
    }
}

#[tokio::test]
async fn faults_on_a_refresh_keep_the_session_and_the_account() {
    for (name, fault, code) in faults() {
        let emu = emulator().await;
        let store = MemoryStore::new();
        let (client, guest) = guest_on(&emu, store.clone()).await;
        let records = (store.get_now(&session_key()), store.get_now(&anon_key()));
        emu.inject(Route::Refresh, fault, 1);

        let err = client.refresh().await.unwrap_err();
        assert_eq!(err.code(), code, "{name}");
        assert_eq!(
            client.session(),
            Some(guest.clone()),
            "{name}: session kept"
        );
        assert_eq!(
            (store.get_now(&session_key()), store.get_now(&anon_key())),
            records,
            "{name}: records unchanged"
        );
        // The token has not expired: it is still handed out.
        assert_eq!(
            client.access_token().await.unwrap(),
            Some(guest.access_token.clone())
        );

        let refreshed = client.refresh().await.unwrap();
        assert_eq!(refreshed.user.id, guest.user.id, "{name}");
        assert_soft_sign_out_resumes(&client, &guest, name).await;
        assert_eq!(emu.users().len(), 1, "{name}");
        client.shutdown().await;
    }
}

#[tokio::test]
async fn faults_on_an_upgrade_are_retried_safely_with_the_same_key() {
    for (name, fault, code) in faults() {
        let emu = emulator().await;
        let store = MemoryStore::new();
        let (client, guest) = guest_on(&emu, store.clone()).await;
        emu.inject(Route::Upgrade, fault, 1);
        let request = UpgradeRequest::new("carol@example.com", "pw-carol", Some("k-1")).unwrap();

        let err = client
            .upgrade_anonymous_to_email(request.clone())
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{name}");
        assert_eq!(
            client.session(),
            Some(guest.clone()),
            "{name}: still a guest"
        );
        assert!(store.get_now(&anon_key()).is_some(), "{name}");

        let UpgradeOutcome::Updated(named) =
            client.upgrade_anonymous_to_email(request).await.unwrap()
        else {
            panic!("{name}: expected updated");
        };
        assert_eq!(named.user.id, guest.user.id, "{name}");
        assert_eq!(named.user.email.as_deref(), Some("carol@example.com"));
        assert_eq!(emu.users().len(), 1, "{name}");
        assert_eq!(
            emu.users()[0].email.as_deref(),
            Some("carol@example.com"),
            "{name}"
        );
        assert_eq!(store.get_now(&anon_key()), None, "{name}");
        client.shutdown().await;
    }
}

#[tokio::test]
async fn faults_on_a_hard_sign_out_still_sign_out_for_good() {
    for (name, fault, _) in faults() {
        let emu = emulator().await;
        let store = MemoryStore::new();
        let (client, guest) = guest_on(&emu, store.clone()).await;
        emu.inject(Route::SignOut, fault, 1);

        client
            .sign_out(SignOutOptions {
                forget_anonymous: true,
            })
            .await
            .unwrap();
        assert_eq!(client.session(), None, "{name}");
        assert!(store.keys().is_empty(), "{name}");
        eventually("the sign-out request", || emu.count(Route::SignOut) == 1).await;

        let next_guest = client
            .sign_in_anonymously(SignInOptions::default())
            .await
            .unwrap();
        assert_ne!(next_guest.user.id, guest.user.id, "{name}: forgotten");
        assert_eq!(emu.count(Route::Refresh), 0, "{name}: no resume attempted");
        client.shutdown().await;
    }
}

/// Signs a guest in, holds its next refresh at the backend, signs out
/// (`forget_anonymous` as given) while that refresh is in flight, and
/// waits until the late answer has been processed. Returns the guest and
/// the events that followed the sign-in.
async fn sign_out_during_a_refresh(
    emu: &Emulator,
    client: &AuthClient,
    forget_anonymous: bool,
) -> (
    paywall_auth_tokio::Session,
    Vec<paywall_auth_tokio::AuthEvent>,
) {
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let mut events = client.subscribe();
    next(&mut events).await.unwrap();
    emu.inject(
        Route::Refresh,
        Fault::Latency(Duration::from_millis(500)),
        1,
    );

    let refreshing = tokio::spawn({
        let client = client.clone();
        async move { client.refresh().await }
    });
    eventually("the refresh to reach the backend", || {
        emu.count(Route::Refresh) == 1
    })
    .await;
    client
        .sign_out(SignOutOptions { forget_anonymous })
        .await
        .unwrap();
    let err = guard("the refresh", refreshing).await.unwrap().unwrap_err();
    assert_eq!(err.code(), "superseded");
    eventually("every answer", || {
        emu.requests().iter().all(|r| r.status.is_some())
    })
    .await;
    // Let the driver process the answer: any call goes after it.
    assert_eq!(client.access_token().await.unwrap(), None);
    (guest, queued(&mut events))
}

/// A refresh still in flight when the user signs out must not bring the
/// session back (docs/protocol.md §12.5); after a soft sign-out the rotated
/// tokens it brings keep the guest resumable.
#[tokio::test]
async fn a_refresh_landing_after_a_soft_sign_out_resurrects_nothing() {
    let emu = emulator().await;
    let store = MemoryStore::new();
    let client = client(&emu, store.clone()).await;
    let (guest, seen) = sign_out_during_a_refresh(&emu, &client, false).await;

    assert_eq!(client.session(), None);
    assert_eq!(store.get_now(&session_key()), None);
    assert_eq!(change_names(&seen), ["SIGNED_OUT"]);

    let resumed = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(resumed.user.id, guest.user.id);
    assert_eq!(emu.users().len(), 1);
    client.shutdown().await;
}

#[tokio::test]
async fn a_refresh_landing_after_a_hard_sign_out_resurrects_nothing() {
    let emu = emulator().await;
    let store = MemoryStore::new();
    let client = client(&emu, store.clone()).await;
    let (guest, seen) = sign_out_during_a_refresh(&emu, &client, true).await;

    assert_eq!(client.session(), None);
    assert!(store.keys().is_empty());
    assert!(!client.has_resumable_anonymous());
    assert_eq!(change_names(&seen), ["SIGNED_OUT"]);

    let next_guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_ne!(next_guest.user.id, guest.user.id);
    // Whatever the late refresh minted is revoked, not kept.
    eventually("the old account's sessions to be revoked", || {
        emu.sessions()
            .iter()
            .filter(|s| s.user_id == guest.user.id.as_str())
            .all(|s| s.revoked)
    })
    .await;
    client.shutdown().await;
}

/// With a refresh failing transiently, a caller of `access_token()` on a
/// token that has not expired yet still gets it; the events show nothing
/// changed.
#[tokio::test]
async fn a_failing_refresh_changes_nothing_visible() {
    let emu = emulator().await;
    emu.set_access_ttl(30); // stale at once, but valid for 30 s
    let client = AuthClient::builder(emu.origin(), PID)
        .proactive_refresh(None)
        .request_timeout(REQUEST_TIMEOUT)
        .build()
        .await
        .unwrap();
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let mut events = client.subscribe();
    next(&mut events).await.unwrap();
    emu.inject(Route::Refresh, Fault::status(502, ""), 1);
    assert_eq!(
        client.access_token().await.unwrap(),
        Some(guest.access_token.clone())
    );
    assert_eq!(emu.count(Route::Refresh), 1);
    assert!(queued(&mut events).is_empty());
    assert_eq!(client.session(), Some(guest));
    // The next call refreshes for real.
    let token = client.access_token().await.unwrap().unwrap();
    assert_eq!(emu.count(Route::Refresh), 2);
    assert_eq!(token, client.session().unwrap().access_token);
    assert_eq!(
        next(&mut events).await.unwrap().change,
        AuthChange::TokenRefreshed
    );
    client.shutdown().await;
}
