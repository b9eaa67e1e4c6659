//! The anonymous lifecycle end to end: the embassy client over real TCP
//! (loopback) against the emulator, with its session on a RAM NOR flash that
//! survives simulated reboots (a new client over the same flash bytes).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use paywall_auth::{AuthChange, Error, SignInOptions, SignOutOptions, UpgradeRequest};
use paywall_auth_embassy::{Event, Upgrade};
use paywall_auth_emulator::Route;

/// Drops the client ("power off") and gives back its flash, powered again.
fn reboot<C: paywall_auth_embassy::Connect>(client: Client<'_, C>) -> RamFlash {
    let (_connector, flash) = client.into_parts();
    RamFlash::from_bytes(flash.bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_lifecycle_survives_reboots() {
    let emulator = emulator().await;
    let events = Recorder::default();

    // Boot 1: empty flash, fresh guest.
    let mut client = emulator_client(&emulator, &events);
    client.start().await;
    assert_eq!(
        events.take(),
        vec![Event::Auth {
            change: AuthChange::InitialSession,
            user: None
        }]
    );
    let session = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert!(session.user.is_anonymous);
    let user_id = session.user.id.to_string();
    assert_eq!(routes(&emulator), ["anonymous/signin"]);
    assert_eq!(emulator.users().len(), 1);
    assert_eq!(emulator.users()[0].id, user_id);
    assert_eq!(events.take_changes(), ["SIGNED_IN"]);

    // The request carried exactly the core's headers (plus Host and the
    // framing headers of the HTTP/1.1 writer).
    let request = &emulator.requests()[0];
    assert_eq!(request.header("x-paywall-id"), Some(PID));
    assert_eq!(request.header("accept"), Some("application/json"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.header("host"),
        Some(emulator.addr().to_string().as_str())
    );
    assert_eq!(request.header("connection"), Some("close"));
    assert!(request.header("authorization").is_none());

    // A second sign-in is a no-op; a fresh access token needs no request.
    client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let token = client
        .access_token()
        .await
        .unwrap()
        .unwrap()
        .expose()
        .to_owned();
    assert_eq!(routes(&emulator), ["anonymous/signin"]);

    // Boot 2: the session is back from flash, no request.
    let mut client = client_after(reboot(client), &emulator, &events).await;
    let boot_events = events.take();
    let Some(Event::Auth {
        change: AuthChange::InitialSession,
        user: Some(user),
    }) = boot_events.first()
    else {
        panic!("INITIAL_SESSION with the stored user expected, got {boot_events:?}")
    };
    assert_eq!(user.id, user_id.as_str());
    assert!(user.is_anonymous);
    assert_eq!(
        client.access_token().await.unwrap().unwrap().expose(),
        token
    );
    client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(routes(&emulator), ["anonymous/signin"]);

    // Soft sign-out: local only, the guest stays resumable.
    client.sign_out(SignOutOptions::default()).await.unwrap();
    assert!(client.session().is_none());
    assert!(client.has_resumable_anonymous());
    assert_eq!(events.take_changes(), ["SIGNED_OUT"]);
    assert_eq!(
        routes(&emulator),
        ["anonymous/signin"],
        "a soft sign-out must not call /auth/signout"
    );

    // Boot 3: signed out, and the guest resumes with the same id.
    let mut client = client_after(reboot(client), &emulator, &events).await;
    assert!(client.session().is_none());
    assert!(client.has_resumable_anonymous());
    let resumed = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(resumed.user.id, user_id.as_str());
    assert!(resumed.user.is_anonymous);
    assert_eq!(routes(&emulator), ["anonymous/signin", "refresh"]);
    assert_eq!(emulator.anonymous_users_created(), 1);
    assert_eq!(events.take_changes(), ["INITIAL_SESSION", "SIGNED_IN"]);

    // Rotation: the stored tokens follow the server's.
    let rotated = client
        .refresh()
        .await
        .unwrap()
        .refresh_token
        .expose()
        .to_owned();
    assert_eq!(events.take_changes(), ["TOKEN_REFRESHED"]);
    let family = emulator
        .sessions()
        .into_iter()
        .find(|s| s.user_id == user_id && !s.revoked)
        .unwrap();
    assert_eq!(family.current_refresh_token, rotated);

    // Boot 4: the rotated token was durable.
    let mut client = client_after(reboot(client), &emulator, &events).await;
    assert_eq!(client.session().unwrap().refresh_token.expose(), rotated);
    assert_eq!(events.take_changes(), ["INITIAL_SESSION"]);

    // Upgrade: same user id, now named; the anonymous copy is gone.
    let request =
        UpgradeRequest::new("kiosk@example.com", "correct horse", Some("upgrade-1")).unwrap();
    let Upgrade::Updated(named) = client.upgrade_anonymous_to_email(request).await.unwrap() else {
        panic!("the emulator upgrades without confirmation by default")
    };
    assert_eq!(named.user.id, user_id.as_str());
    assert_eq!(named.user.email.as_deref(), Some("kiosk@example.com"));
    assert!(!named.user.is_anonymous);
    assert!(!client.has_resumable_anonymous());
    assert_eq!(events.take_changes(), ["USER_UPDATED"]);
    let upgrade = emulator.requests().into_iter().last().unwrap();
    assert_eq!(upgrade.route, Some(Route::Upgrade));
    assert!(
        upgrade
            .header("authorization")
            .unwrap()
            .starts_with("Bearer ")
    );
    assert_eq!(upgrade.header("idempotency-key"), Some("upgrade-1"));
    let account = emulator.user(&user_id).unwrap();
    assert_eq!(account.email.as_deref(), Some("kiosk@example.com"));
    assert!(!account.is_anonymous);

    // Boot 5: the named session is back, nothing to resume as a guest.
    let mut client = client_after(reboot(client), &emulator, &events).await;
    assert_eq!(
        client.session().unwrap().user.email.as_deref(),
        Some("kiosk@example.com")
    );
    assert!(!client.has_resumable_anonymous());
    assert!(matches!(
        client.sign_in_anonymously(SignInOptions::default()).await,
        Err(Error::NotAnonymous)
    ));

    // Hard sign-out: revoked on the server, nothing left on flash.
    let before = emulator.requests().len();
    client
        .sign_out(SignOutOptions {
            forget_anonymous: true,
        })
        .await
        .unwrap();
    let log = emulator.requests();
    assert_eq!(log.len(), before + 1);
    assert_eq!(log[before].route, Some(Route::SignOut));
    assert!(log[before].status.is_some_and(|s| (200..300).contains(&s)));
    assert!(log[before].header("authorization").is_some());
    assert!(
        emulator
            .sessions()
            .iter()
            .filter(|s| s.user_id == user_id)
            .all(|s| s.revoked)
    );

    // Boot 6: nothing stored; a guest sign-in creates a new user.
    let mut client = client_after(reboot(client), &emulator, &events).await;
    assert!(client.session().is_none());
    assert!(!client.has_resumable_anonymous());
    let fresh = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_ne!(fresh.user.id, user_id.as_str());
    assert_eq!(emulator.anonymous_users_created(), 2);

    assert_eq!(
        routes(&emulator),
        [
            "anonymous/signin",
            "refresh",
            "refresh",
            "anonymous/upgrade",
            "signout",
            "anonymous/signin"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_sign_out_of_a_guest_revokes_it_and_forgets_it() {
    let emulator = emulator().await;
    let events = Recorder::default();
    let (mut client, first) = fresh_guest(&emulator, &events).await;

    client
        .sign_out(SignOutOptions {
            forget_anonymous: true,
        })
        .await
        .unwrap();
    assert_eq!(routes(&emulator), ["anonymous/signin", "signout"]);
    assert!(!client.has_resumable_anonymous());
    assert!(emulator.sessions().iter().all(|s| s.revoked));

    let mut client = client_after(reboot(client), &emulator, &events).await;
    assert!(client.session().is_none());
    assert!(!client.has_resumable_anonymous());
    let second = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_ne!(second.user.id, first.as_str());
    assert_eq!(
        routes(&emulator),
        ["anonymous/signin", "signout", "anonymous/signin"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_awaiting_confirmation_keeps_the_guest() {
    let emulator = emulator().await;
    emulator.set_confirm_email(true);
    let events = Recorder::default();
    let (mut client, id) = fresh_guest(&emulator, &events).await;

    let request = UpgradeRequest::new("later@example.com", "pw-pw-pw", None).unwrap();
    match client.upgrade_anonymous_to_email(request).await.unwrap() {
        Upgrade::ConfirmationRequired { email } => assert_eq!(email, "later@example.com"),
        Upgrade::Updated(_) => panic!("confirmation expected"),
    }
    assert!(client.session().unwrap().user.is_anonymous);
    assert_eq!(client.pending_confirmation(), Some("later@example.com"));

    // The link is clicked; the next refresh shows the named account.
    assert!(emulator.confirm_email("later@example.com"));
    let session = client.refresh().await.unwrap();
    assert_eq!(session.user.id, id.as_str());
    assert!(!session.user.is_anonymous);
    assert!(!client.has_resumable_anonymous());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proactive_refresh_runs_from_service_timers() {
    let emulator = emulator().await;
    // Two-second tokens: the core refreshes them half-way through their life.
    emulator.set_access_ttl(2);
    let events = Recorder::default();
    let mut client = emulator_client(&emulator, &events);
    let first = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap()
        .refresh_token
        .clone();
    events.take();
    let deadline = client.next_deadline().unwrap();
    let now = embassy_time::Instant::now();
    assert!(deadline > now && deadline <= now + embassy_time::Duration::from_secs(1));

    // Nothing is due yet: servicing does nothing.
    client.service_timers().await;
    assert_eq!(routes(&emulator), ["anonymous/signin"]);

    client.wait_deadline().await;
    client.service_timers().await;
    assert_eq!(routes(&emulator), ["anonymous/signin", "refresh"]);
    assert_eq!(events.take_changes(), ["TOKEN_REFRESHED"]);
    assert_ne!(client.session().unwrap().refresh_token, first);
    assert!(client.next_deadline().unwrap() > embassy_time::Instant::now());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_errors_come_back_typed_and_change_nothing() {
    let emulator = emulator().await;
    emulator.set_allow_anonymous(false);
    let events = Recorder::default();
    let mut client = emulator_client(&emulator, &events);
    let error = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "anonymous_disabled");
    assert_eq!(error.status(), Some(403));
    assert!(client.session().is_none());

    // The backend is down: a typed network error, nothing written.
    let flash = reboot(client);
    let pristine = flash.bytes.clone();
    let addr = emulator.addr();
    emulator.shutdown().await;
    let mut client = common::client(TokioConnector::to(addr), flash, &events);
    client.set_request_timeout(embassy_time::Duration::from_secs(2));
    let error = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "network_error");
    assert!(client.session().is_none());
    let (_, flash) = client.into_parts();
    assert!(
        flash.bytes == pristine,
        "a failed sign-in must not write flash"
    );
}

/// Boots a client over `flash` and starts it.
async fn client_after<'e>(
    flash: RamFlash,
    emulator: &paywall_auth_emulator::Emulator,
    events: &'e Recorder,
) -> Client<'e, TokioConnector> {
    let mut client = client(TokioConnector::new(emulator), flash, events);
    client.start().await;
    client
}
