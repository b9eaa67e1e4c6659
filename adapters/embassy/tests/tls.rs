//! HTTPS end to end: the embassy client over TLS 1.3 (embedded-tls, on
//! loopback TCP) against the emulator's rustls listener, with the
//! certificate checks the firmware would run. Every refused certificate
//! must fail with its own typed error before one request byte is sent:
//! the emulator's request log stays empty.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use paywall_auth::{AuthChange, SignInOptions, SignOutOptions};
use paywall_auth_embassy::{
    AuthClient, CertificateError, Connect, OriginError, TlsConnectError, TlsConnector, TlsFailure,
    Trust,
};
use paywall_auth_emulator::{Emulator, EmulatorConfig, Route, TlsOptions};
use rand_core::OsRng;

/// The name in the emulator's certificate; it does not resolve, the
/// connector reaches the emulator's address and sends this as SNI.
const HOST: &str = "emulator.test";

type Tls<'d> = TlsConnector<'d, TokioConnector, OsRng>;

async fn https_emulator(options: TlsOptions) -> Emulator {
    Emulator::start_tls(EmulatorConfig::default(), options)
        .await
        .unwrap()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A TLS connector to `emulator` for `origin`, the wall clock set.
fn connector<'d>(emulator: &Emulator, origin: &'d str, trust: Trust<'d>) -> Tls<'d> {
    let mut tls = Tls::new(TokioConnector::new(emulator), origin, trust, OsRng).unwrap();
    tls.set_unix_time(unix_ms());
    tls
}

/// A client over `connector` on `flash`, its clock set.
fn tls_client<'e, 'd>(
    connector: Tls<'d>,
    flash: RamFlash,
    events: &'e Recorder,
) -> AuthClient<'e, Tls<'d>, RamFlash> {
    let mut client = AuthClient::new(config(), connector, store(flash), events);
    client.set_unix_time(unix_ms());
    client
}

/// Powers the client off and gives back its flash and connector.
fn reboot<'d>(client: AuthClient<'_, Tls<'d>, RamFlash>) -> (Tls<'d>, RamFlash) {
    let (connector, flash) = client.into_parts();
    (connector, RamFlash::from_bytes(flash.bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_lifecycle_over_tls() {
    let emulator = https_emulator(TlsOptions::for_host(HOST)).await;
    let identity = emulator.tls_identity().unwrap().clone();
    let origin = emulator.origin();
    assert_eq!(origin, format!("https://{HOST}:{}", emulator.addr().port()));
    let cas = [identity.ca_der.as_slice()];
    let events = Recorder::default();

    // Boot 1: a fresh guest, over TLS.
    let connector = connector(&emulator, &origin, Trust::pinned_cas(&cas));
    let mut client = tls_client(connector, RamFlash::new(FLASH_SIZE), &events);
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap()
        .user
        .id
        .to_string();
    assert_eq!(routes(&emulator), ["anonymous/signin"]);
    let request = &emulator.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("host"), Some(&origin["https://".len()..]));
    assert_eq!(request.header("x-paywall-id"), Some(PID));
    assert_eq!(request.header("connection"), Some("close"));
    assert!(client.connector().last_failure().is_none());
    assert_eq!(events.take_changes(), ["INITIAL_SESSION", "SIGNED_IN"]);

    // Boot 2: the session comes back from flash; refresh rotates over TLS.
    let (connector, flash) = reboot(client);
    let mut client = tls_client(connector, flash, &events);
    client.start().await;
    assert_eq!(client.session().unwrap().user.id, guest.as_str());
    let rotated = client
        .refresh()
        .await
        .unwrap()
        .refresh_token
        .expose()
        .to_owned();
    assert_eq!(routes(&emulator), ["anonymous/signin", "refresh"]);
    let family = emulator
        .sessions()
        .into_iter()
        .find(|s| s.user_id == guest && !s.revoked)
        .unwrap();
    assert_eq!(family.current_refresh_token, rotated);

    // Soft sign-out: no request; the guest resumes after a reboot.
    client.sign_out(SignOutOptions::default()).await.unwrap();
    assert_eq!(routes(&emulator), ["anonymous/signin", "refresh"]);
    let (connector, flash) = reboot(client);
    let mut client = tls_client(connector, flash, &events);
    let resumed = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(resumed.user.id, guest.as_str());
    assert_eq!(
        routes(&emulator),
        ["anonymous/signin", "refresh", "refresh"]
    );
    assert_eq!(emulator.anonymous_users_created(), 1);

    // Hard sign-out: revoked on the server, then a new guest.
    events.take();
    client
        .sign_out(SignOutOptions {
            forget_anonymous: true,
        })
        .await
        .unwrap();
    assert_eq!(events.take_changes(), ["SIGNED_OUT"]);
    assert_eq!(
        routes(&emulator).last().map(String::as_str),
        Some("signout")
    );
    assert!(!client.has_resumable_anonymous());
    let fresh = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_ne!(fresh.user.id, guest.as_str());
    assert_eq!(emulator.anonymous_users_created(), 2);
    assert_eq!(events.take_changes(), [AuthChange::SignedIn.as_str()]);
    assert!(client.connector().last_failure().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_ca_plus_the_right_pin_connects() {
    let emulator = https_emulator(TlsOptions::for_host(HOST)).await;
    let identity = emulator.tls_identity().unwrap().clone();
    let origin = emulator.origin();
    let cas = [identity.ca_der.as_slice()];
    let trust = Trust::pinned_cas(&cas).with_spki_pin(identity.leaf_spki_sha256);
    let events = Recorder::default();
    let mut client = tls_client(
        connector(&emulator, &origin, trust),
        RamFlash::new(FLASH_SIZE),
        &events,
    );
    client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(emulator.count(Route::AnonymousSignIn), 1);
}

/// Connects with `trust` to `origin` (through the emulator's address) and
/// expects the certificate to be refused with `expected`: by the connector
/// itself, then through the client (network error, the reason kept by the
/// connector), with no request reaching the emulator either way.
async fn assert_refused(
    emulator: &Emulator,
    origin: &str,
    trust: Trust<'_>,
    set_clock: bool,
    expected: CertificateError,
) {
    let mut tls = Tls::new(TokioConnector::new(emulator), origin, trust, OsRng).unwrap();
    if set_clock {
        tls.set_unix_time(unix_ms());
    }
    match tls.connect().await {
        Err(TlsConnectError::Certificate(got)) => assert_eq!(got, expected),
        Err(other) => panic!("expected Certificate({expected:?}), got {other:?}"),
        Ok(_) => panic!("expected Certificate({expected:?}), the handshake succeeded"),
    }
    assert!(matches!(tls.last_failure(), Some(TlsFailure::Certificate(e)) if e == expected));
    assert_eq!(tls.inner().connects, 1, "the TCP connection was made");

    let events = Recorder::default();
    let mut client = AuthClient::new(config(), tls, store(RamFlash::new(FLASH_SIZE)), &events);
    if set_clock {
        client.set_unix_time(unix_ms());
    }
    let error = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "network_error");
    assert!(matches!(
        client.connector().last_failure(),
        Some(TlsFailure::Certificate(e)) if e == expected
    ));
    assert!(client.connector().inner().connects >= 2);
    assert!(
        emulator.requests().is_empty(),
        "no request byte may reach the server: {:?}",
        emulator.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_is_refused_before_any_request() {
    let emulator = https_emulator(TlsOptions::for_host(HOST)).await;
    let identity = emulator.tls_identity().unwrap().clone();
    let cas = [identity.ca_der.as_slice()];
    let mut wrong = identity.leaf_spki_sha256;
    wrong[31] ^= 1;
    let trust = Trust::pinned_cas(&cas).with_spki_pin(wrong);
    assert_refused(
        &emulator,
        &emulator.origin(),
        trust,
        true,
        CertificateError::PinMismatch,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_host_name_is_refused_before_any_request() {
    let emulator = https_emulator(TlsOptions::for_host(HOST)).await;
    let identity = emulator.tls_identity().unwrap().clone();
    let cas = [identity.ca_der.as_slice()];
    // The right CA, the right key (pinned), the wrong name.
    let trust = Trust::pinned_cas(&cas).with_spki_pin(identity.leaf_spki_sha256);
    let origin = format!("https://other.test:{}", emulator.addr().port());
    assert_refused(
        &emulator,
        &origin,
        trust,
        true,
        CertificateError::HostnameMismatch,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_before_any_request() {
    // Valid from 30 days ago until yesterday.
    assert_validity_refused(-30, -1, CertificateError::Expired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_the_future_is_refused() {
    // Valid from tomorrow for 30 days.
    assert_validity_refused(1, 30, CertificateError::NotYetValid).await;
}

/// A certificate of a trusted CA, valid only between `from` and `to` days
/// from now, is refused with `expected` before any request byte.
async fn assert_validity_refused(from: i64, to: i64, expected: CertificateError) {
    let day = |n: i64| Duration::from_secs(24 * 3600 * n.unsigned_abs());
    let at = |n: i64| {
        let now = SystemTime::now();
        if n < 0 { now - day(n) } else { now + day(n) }
    };
    let emulator = https_emulator(TlsOptions::for_host(HOST).valid_between(at(from), at(to))).await;
    let identity = emulator.tls_identity().unwrap().clone();
    let cas = [identity.ca_der.as_slice()];
    assert_refused(
        &emulator,
        &emulator.origin(),
        Trust::pinned_cas(&cas),
        true,
        expected,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_ca_is_refused_before_any_request() {
    let emulator = https_emulator(TlsOptions::for_host(HOST)).await;
    // A CA with the same name and another key: only the signature tells.
    let other = https_emulator(TlsOptions::for_host(HOST)).await;
    let other_ca = other.tls_identity().unwrap().ca_der.clone();
    let cas = [other_ca.as_slice()];
    assert_refused(
        &emulator,
        &emulator.origin(),
        Trust::pinned_cas(&cas),
        true,
        CertificateError::UntrustedChain,
    )
    .await;
    assert!(other.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_clock_the_certificate_is_refused_unless_allowed() {
    let emulator = https_emulator(TlsOptions::for_host(HOST)).await;
    let identity = emulator.tls_identity().unwrap().clone();
    let cas = [identity.ca_der.as_slice()];
    let origin = emulator.origin();
    assert_refused(
        &emulator,
        &origin,
        Trust::pinned_cas(&cas),
        false,
        CertificateError::ClockNotSet,
    )
    .await;

    // Opting in skips only the validity check.
    let trust = Trust::pinned_cas(&cas).allow_unknown_time();
    let tls = Tls::new(TokioConnector::new(&emulator), &origin, trust, OsRng).unwrap();
    let events = Recorder::default();
    let mut client = AuthClient::new(config(), tls, store(RamFlash::new(FLASH_SIZE)), &events);
    client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(emulator.count(Route::AnonymousSignIn), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_server_fails_the_handshake() {
    // The plain emulator answers the ClientHello with an HTTP 400: a
    // handshake error, not a certificate one.
    let emulator = emulator().await;
    let origin = format!("https://{HOST}:{}", emulator.addr().port());
    let cas: [&[u8]; 0] = [];
    let mut tls = connector(&emulator, &origin, Trust::pinned_cas(&cas));
    match tls.connect().await {
        Err(TlsConnectError::Handshake(_)) => {}
        Err(other) => panic!("expected a handshake error, got {other:?}"),
        Ok(_) => panic!("a plain HTTP server cannot complete a TLS handshake"),
    }
}

#[test]
fn origins_a_tls_connector_refuses() {
    let cas: [&[u8]; 0] = [];
    let new = |origin: &str| {
        Tls::new(
            TokioConnector::to("127.0.0.1:1".parse().unwrap()),
            origin,
            Trust::pinned_cas(&cas),
            OsRng,
        )
        .map(drop)
    };
    assert_eq!(new("http://emulator.test"), Err(OriginError::NotHttps));
    assert_eq!(
        new("https://127.0.0.1:443"),
        Err(OriginError::TlsNeedsHostName)
    );
    assert_eq!(
        new("https://emulator.test/api"),
        Err(OriginError::Malformed)
    );
    assert_eq!(new("https://emulator.test:443"), Ok(()));
}
