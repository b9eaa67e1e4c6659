//! Every anonymous scenario end to end: the tokio client over real loopback
//! HTTP against the emulator, asserting the emulator's request log and user
//! table, the stored records and the events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use paywall_auth_emulator::Route;
use paywall_auth_tokio::{
    AuthChange, AuthClient, FileStore, MemoryStore, SignInOptions, SignOutOptions, UpgradeOutcome,
    UpgradeRequest,
};

#[tokio::test]
async fn fresh_sign_in_creates_one_guest_and_persists_it() {
    let emu = emulator().await;
    let store = MemoryStore::new();
    let client = client(&emu, store.clone()).await;
    let mut events = client.subscribe();
    let initial = next(&mut events).await.unwrap();
    assert_eq!(initial.change, AuthChange::InitialSession);
    assert_eq!(initial.session, None);

    let session = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert!(session.user.is_anonymous);
    assert_eq!(session.user.email, None);

    // One request, exactly as the core rendered it.
    let log = emu.requests();
    assert_eq!(log.len(), 1);
    let req = &log[0];
    assert_eq!(req.route, Some(Route::AnonymousSignIn));
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/v1/paywall/pw_demo/auth/anonymous/signin");
    assert_eq!(req.body, "{}");
    assert_eq!(req.header("accept"), Some("application/json"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-paywall-id"), Some("pw_demo"));
    assert_eq!(
        req.header("x-sdk-version"),
        Some(paywall_auth_tokio::paywall_auth::SDK_VERSION)
    );
    assert_eq!(req.header("authorization"), None);
    // Nothing but the core's headers and what HTTP/1.1 itself needs.
    let names: Vec<&str> = req.headers.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "accept",
            "content-length",
            "content-type",
            "host",
            "x-paywall-id",
            "x-sdk-version"
        ]
    );

    // The backend has exactly this user, anonymous.
    let users = emu.users();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].id, session.user.id.as_str());
    assert!(users[0].is_anonymous);

    // Both records are durable before the call returned.
    assert!(store.get_now(&session_key()).is_some());
    assert_eq!(
        store.get_now(&anon_key()).unwrap(),
        session.refresh_token.expose().as_bytes()
    );

    let signed_in = next(&mut events).await.unwrap();
    assert_eq!(signed_in.change, AuthChange::SignedIn);
    assert_eq!(signed_in.session.as_ref(), Some(&session));
    assert_eq!(client.session(), Some(session.clone()));
    assert_eq!(client.user().unwrap().id, session.user.id);
    assert!(client.has_resumable_anonymous());
    client.shutdown().await;
}

#[tokio::test]
async fn sign_in_when_already_a_guest_is_a_no_op() {
    let emu = emulator().await;
    let client = client(&emu, MemoryStore::new()).await;
    let first = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let mut events = client.subscribe();
    assert_eq!(
        next(&mut events).await.unwrap().change,
        AuthChange::InitialSession
    );

    let again = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(routes(&emu), [Route::AnonymousSignIn]);
    assert!(queued(&mut events).is_empty(), "a no-op emits nothing");
    client.shutdown().await;
}

#[tokio::test]
async fn restart_through_file_store_keeps_the_same_account() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();

    let first = client(&emu, FileStore::open(dir.path()).unwrap()).await;
    let created = first
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    first.shutdown().await;
    let user_row = emu.user(created.user.id.as_str()).unwrap();

    // Restart with the session on disk: restored before build returns,
    // announced by INITIAL_SESSION, and still alive server-side.
    let second = client(&emu, FileStore::open(dir.path()).unwrap()).await;
    assert_eq!(second.session(), Some(created.clone()));
    let mut events = second.subscribe();
    let initial = next(&mut events).await.unwrap();
    assert_eq!(initial.change, AuthChange::InitialSession);
    assert_eq!(initial.session, Some(created.clone()));
    let same = second
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(same, created, "already a guest: no request");
    let refreshed = second.refresh().await.unwrap();
    assert_eq!(refreshed.user.id, created.user.id);
    second.sign_out(SignOutOptions::default()).await.unwrap();
    second.shutdown().await;

    // Restart after a soft sign-out: the account is resumed through the
    // stored refresh token — same id, same balance row, no new user.
    let third = client(&emu, FileStore::open(dir.path()).unwrap()).await;
    assert_eq!(third.session(), None);
    assert!(third.has_resumable_anonymous());
    let resumed = third
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(resumed.user.id, created.user.id);
    assert!(resumed.user.is_anonymous);
    assert_eq!(emu.users().len(), 1);
    assert_eq!(emu.user(resumed.user.id.as_str()).unwrap(), user_row);
    assert_eq!(
        routes(&emu),
        [
            Route::AnonymousSignIn,
            Route::Refresh,
            Route::Refresh // the resume
        ]
    );
    let files = files(dir.path());
    assert_eq!(
        files[&anon_key()],
        resumed.refresh_token.expose().as_bytes(),
        "the resumable copy follows every rotation"
    );
    third.shutdown().await;
}

#[tokio::test]
async fn resume_with_a_dead_token_creates_a_new_guest() {
    let emu = emulator().await;
    let store = MemoryStore::new();
    store.set_now(&anon_key(), b"revoked-or-unknown-token");
    let client = client(&emu, store.clone()).await;
    assert!(client.has_resumable_anonymous());

    let session = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(routes(&emu), [Route::Refresh, Route::AnonymousSignIn]);
    assert_eq!(emu.requests()[0].status, Some(401));
    assert_eq!(emu.users().len(), 1);
    assert_eq!(emu.users()[0].id, session.user.id.as_str());
    assert_eq!(
        store.get_now(&anon_key()).unwrap(),
        session.refresh_token.expose().as_bytes()
    );
    client.shutdown().await;
}

#[tokio::test]
async fn anonymous_disabled_is_a_typed_error_and_changes_nothing() {
    let emu = emulator().await;
    emu.set_allow_anonymous(false);
    let store = MemoryStore::new();
    let client = client(&emu, store.clone()).await;
    let err = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "anonymous_disabled");
    assert_eq!(err.status(), Some(403));
    assert_eq!(client.session(), None);
    assert!(store.keys().is_empty());
    assert!(emu.users().is_empty());
    client.shutdown().await;
}

#[tokio::test]
async fn force_new_replaces_the_guest_with_a_new_one() {
    let emu = emulator().await;
    let store = MemoryStore::new();
    let client = client(&emu, store.clone()).await;
    let old = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let mut events = client.subscribe();
    next(&mut events).await.unwrap();

    let new = client
        .sign_in_anonymously(SignInOptions::force_new())
        .await
        .unwrap();
    assert_ne!(new.user.id, old.user.id);
    assert_eq!(
        routes(&emu),
        [Route::AnonymousSignIn, Route::AnonymousSignIn]
    );
    assert_eq!(emu.users().len(), 2);
    assert_eq!(
        store.get_now(&anon_key()).unwrap(),
        new.refresh_token.expose().as_bytes()
    );
    let signed_in = next(&mut events).await.unwrap();
    assert_eq!(signed_in.change, AuthChange::SignedIn);
    assert_eq!(signed_in.session.unwrap().user.id, new.user.id);

    // The old guest is not what a later sign-in resumes.
    client.sign_out(SignOutOptions::default()).await.unwrap();
    let resumed = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(resumed.user.id, new.user.id);
    client.shutdown().await;
}

#[tokio::test]
async fn upgrade_updated_names_the_same_account() {
    let emu = emulator().await;
    let store = MemoryStore::new();
    let client = client(&emu, store.clone()).await;
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let balance_row = emu.user(guest.user.id.as_str()).unwrap().balance;
    let mut events = client.subscribe();
    next(&mut events).await.unwrap();

    let request = UpgradeRequest::new("Ann@Example.com", "s3cret-pass", Some("upgrade-1")).unwrap();
    let UpgradeOutcome::Updated(named) = client.upgrade_anonymous_to_email(request).await.unwrap()
    else {
        panic!("expected updated");
    };
    assert_eq!(named.user.id, guest.user.id);
    assert_eq!(named.user.email.as_deref(), Some("ann@example.com"));
    assert!(!named.user.is_anonymous);

    let log = emu.requests();
    let upgrade = log.last().unwrap();
    assert_eq!(upgrade.route, Some(Route::Upgrade));
    assert_eq!(
        upgrade.header("authorization").unwrap(),
        format!("Bearer {}", guest.access_token.expose())
    );
    assert_eq!(upgrade.header("idempotency-key"), Some("upgrade-1"));

    let row = emu.user(guest.user.id.as_str()).unwrap();
    assert!(!row.is_anonymous);
    assert_eq!(row.email.as_deref(), Some("ann@example.com"));
    assert_eq!(row.balance, balance_row);
    assert_eq!(emu.users().len(), 1);

    let updated = next(&mut events).await.unwrap();
    assert_eq!(updated.change, AuthChange::UserUpdated);
    assert_eq!(updated.session.as_ref(), Some(&named));
    // A named account is never resumed as a guest.
    assert_eq!(store.get_now(&anon_key()), None);
    assert!(!client.has_resumable_anonymous());
    client.shutdown().await;
}

#[tokio::test]
async fn upgrade_with_confirmation_flips_after_confirm_and_refresh() {
    let emu = emulator().await;
    emu.set_confirm_email(true);
    let store = MemoryStore::new();
    let client = client(&emu, store.clone()).await;
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let mut events = client.subscribe();
    next(&mut events).await.unwrap();

    let request = UpgradeRequest::new("bob@example.com", "pw-123456", None).unwrap();
    let outcome = client.upgrade_anonymous_to_email(request).await.unwrap();
    assert_eq!(
        outcome,
        UpgradeOutcome::ConfirmationRequired {
            email: "bob@example.com".to_owned()
        }
    );
    // Nothing changes until the address is confirmed.
    assert_eq!(client.session(), Some(guest.clone()));
    assert_eq!(
        client.pending_confirmation().as_deref(),
        Some("bob@example.com")
    );
    assert!(store.get_now(&anon_key()).is_some());
    assert!(queued(&mut events).is_empty());

    assert!(emu.confirm_email("bob@example.com"));
    let refreshed = client.refresh().await.unwrap();
    assert_eq!(refreshed.user.id, guest.user.id);
    assert!(!refreshed.user.is_anonymous);
    assert_eq!(refreshed.user.email.as_deref(), Some("bob@example.com"));
    let updated = next(&mut events).await.unwrap();
    assert_eq!(updated.change, AuthChange::UserUpdated);
    assert_eq!(updated.session.unwrap().user, refreshed.user);
    assert_eq!(store.get_now(&anon_key()), None);
    assert_eq!(client.pending_confirmation(), None);
    assert_eq!(emu.users().len(), 1);
    client.shutdown().await;
}

#[tokio::test]
async fn soft_sign_out_keeps_the_guest_resumable() {
    let emu = emulator().await;
    let store = MemoryStore::new();
    let client = client(&emu, store.clone()).await;
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let mut events = client.subscribe();
    next(&mut events).await.unwrap();

    client.sign_out(SignOutOptions::default()).await.unwrap();
    assert_eq!(client.session(), None);
    assert_eq!(store.get_now(&session_key()), None);
    assert!(store.get_now(&anon_key()).is_some());
    let out = next(&mut events).await.unwrap();
    assert_eq!(out.change, AuthChange::SignedOut);
    assert_eq!(out.session, None);
    // No /auth/signout: it would revoke the token kept for the resume.
    assert_eq!(routes(&emu), [Route::AnonymousSignIn]);

    let resumed = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(resumed.user.id, guest.user.id);
    assert_eq!(routes(&emu), [Route::AnonymousSignIn, Route::Refresh]);
    assert_eq!(emu.users().len(), 1);
    assert_eq!(
        next(&mut events).await.unwrap().change,
        AuthChange::SignedIn
    );
    client.shutdown().await;
}

#[tokio::test]
async fn hard_sign_out_revokes_and_the_next_sign_in_is_a_new_guest() {
    let emu = emulator().await;
    let store = MemoryStore::new();
    let client = client(&emu, store.clone()).await;
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();

    client
        .sign_out(SignOutOptions {
            forget_anonymous: true,
        })
        .await
        .unwrap();
    assert_eq!(client.session(), None);
    assert!(store.keys().is_empty());
    assert!(!client.has_resumable_anonymous());
    // The revocation runs in the background.
    eventually("the /auth/signout call", || emu.count(Route::SignOut) == 1).await;
    let signout = emu
        .requests()
        .into_iter()
        .find(|r| r.route == Some(Route::SignOut))
        .unwrap();
    assert_eq!(
        signout.header("authorization").unwrap(),
        format!("Bearer {}", guest.access_token.expose())
    );
    assert_eq!(signout.body, "");
    assert_eq!(signout.header("content-type"), None);
    eventually("the revocation", || {
        emu.sessions().iter().all(|s| s.revoked)
    })
    .await;

    let next_guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_ne!(next_guest.user.id, guest.user.id);
    assert_eq!(
        routes(&emu),
        [
            Route::AnonymousSignIn,
            Route::SignOut,
            Route::AnonymousSignIn
        ]
    );
    assert_eq!(emu.users().len(), 2);
    client.shutdown().await;
}

#[tokio::test]
async fn signed_out_calls_need_no_request() {
    let emu = emulator().await;
    let client = client(&emu, MemoryStore::new()).await;
    assert_eq!(client.access_token().await.unwrap(), None);
    assert_eq!(
        client.refresh().await.unwrap_err().code(),
        "not_authenticated"
    );
    let request = UpgradeRequest::new("a@b.c", "pw", None).unwrap();
    assert_eq!(
        client
            .upgrade_anonymous_to_email(request)
            .await
            .unwrap_err()
            .code(),
        "not_authenticated"
    );
    client.sign_out(SignOutOptions::default()).await.unwrap();
    assert!(emu.requests().is_empty());
    client.shutdown().await;
}

#[tokio::test]
async fn a_path_in_the_origin_is_dropped() {
    let emu = emulator().await;
    let client = AuthClient::builder(format!("{}/some/base?x=1#frag", emu.origin()), PID)
        .build()
        .await
        .unwrap();
    client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(
        emu.requests()[0].path,
        "/api/v1/paywall/pw_demo/auth/anonymous/signin"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn bad_configuration_is_refused_up_front() {
    let err = AuthClient::builder("not a url", PID)
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_config");
    let err = AuthClient::builder("http://127.0.0.1:9", "a/b")
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_config");
}

#[tokio::test]
async fn subscribers_start_with_the_current_session_and_see_every_change_in_order() {
    let emu = emulator().await;
    let client = client(&emu, MemoryStore::new()).await;
    let mut early = client.subscribe();
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let mut late = client.subscribe();
    let initial = next(&mut late).await.unwrap();
    assert_eq!(initial.change, AuthChange::InitialSession);
    assert_eq!(initial.session, Some(guest));

    client.refresh().await.unwrap();
    client.sign_out(SignOutOptions::default()).await.unwrap();
    client.shutdown().await;

    let mut seen = Vec::new();
    while let Some(event) = next(&mut early).await {
        seen.push(event);
    }
    assert_eq!(
        change_names(&seen),
        [
            "INITIAL_SESSION",
            "SIGNED_IN",
            "TOKEN_REFRESHED",
            "SIGNED_OUT"
        ]
    );
    let mut rest = Vec::new();
    while let Some(event) = next(&mut late).await {
        rest.push(event);
    }
    assert_eq!(change_names(&rest), ["TOKEN_REFRESHED", "SIGNED_OUT"]);
}

#[tokio::test]
async fn calls_after_shutdown_fail_with_client_closed() {
    let emu = emulator().await;
    let client = client(&emu, MemoryStore::new()).await;
    let other = client.clone();
    client.shutdown().await;
    assert!(other.is_closed());
    let err = other
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "client_closed");
    // A late subscriber still starts with INITIAL_SESSION, then ends.
    let mut events = other.subscribe();
    assert_eq!(
        next(&mut events).await.unwrap().change,
        AuthChange::InitialSession
    );
    assert!(next(&mut events).await.is_none());
    other.shutdown().await;
}

#[tokio::test]
async fn the_timer_refreshes_short_lived_tokens_on_its_own() {
    let emu = emulator().await;
    emu.set_access_ttl(4);
    let client = client(&emu, MemoryStore::new()).await;
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let mut events = client.subscribe();
    next(&mut events).await.unwrap();
    // Nobody calls anything: the driver's timer fires the core's deadline.
    let refreshed = next(&mut events).await.unwrap();
    assert_eq!(refreshed.change, AuthChange::TokenRefreshed);
    let session = refreshed.session.unwrap();
    assert_eq!(session.user.id, guest.user.id);
    assert_ne!(session.refresh_token, guest.refresh_token);
    assert!(emu.count(Route::Refresh) >= 1);
    client.shutdown().await;
}
