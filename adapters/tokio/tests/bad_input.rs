//! Bad input from the server — malformed JSON, missing fields, an oversize
//! token, a wrong content type, a truncated body, a non-JSON error page —
//! gives a typed error and leaves the stored records byte for byte as they
//! were.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use paywall_auth_emulator::{Fault, Route};
use paywall_auth_tokio::{
    AuthClient, FileStore, HttpResponse, MemoryStore, SignInOptions, TransportError,
};

/// (name, fault, expected error code)
fn bad_replies() -> Vec<(&'static str, Fault, &'static str)> {
    vec![
        ("malformed JSON", Fault::MalformedJson, "invalid_response"),
        (
            "wrong content type",
            Fault::WrongContentType,
            "invalid_response",
        ),
        ("truncated body", Fault::TruncatedBody, "network_error"),
        // Bigger than the core's access-token capacity (2 KiB).
        (
            "oversize token",
            Fault::OversizeToken(8),
            "invalid_response",
        ),
        // Bigger than the transport's response cap (64 KiB): never buffered.
        ("huge token", Fault::OversizeToken(256), "network_error"),
        ("HTML error page", Fault::status(502, ""), "http_502"),
    ]
}

#[tokio::test]
async fn bad_token_replies_on_refresh_leave_the_files_untouched() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let client = client(&emu, FileStore::open(dir.path()).unwrap()).await;
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let before = files(dir.path());
    assert_eq!(before.len(), 2);

    for (name, fault, code) in bad_replies() {
        emu.inject(Route::Refresh, fault, 1);
        let err = client.refresh().await.unwrap_err();
        assert_eq!(err.code(), code, "{name}: {err}");
        assert_eq!(files(dir.path()), before, "{name}: files changed");
        assert_eq!(client.session(), Some(guest.clone()), "{name}");
    }
    // The backend rotated on every after-apply fault; the token the files
    // hold is still honoured (reuse interval), so nothing was lost.
    let refreshed = client.refresh().await.unwrap();
    assert_eq!(refreshed.user.id, guest.user.id);
    assert_ne!(files(dir.path()), before);
    client.shutdown().await;
}

#[tokio::test]
async fn bad_token_replies_on_sign_in_store_nothing() {
    for (name, fault, code) in bad_replies() {
        let emu = emulator().await;
        let dir = tempfile::tempdir().unwrap();
        let client = client(&emu, FileStore::open(dir.path()).unwrap()).await;
        emu.inject(Route::AnonymousSignIn, fault, 1);
        let err = client
            .sign_in_anonymously(SignInOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{name}: {err}");
        assert!(files(dir.path()).is_empty(), "{name}");
        assert_eq!(client.session(), None, "{name}");
        client
            .sign_in_anonymously(SignInOptions::default())
            .await
            .unwrap();
        client.shutdown().await;
    }
}

#[tokio::test]
async fn bad_resume_replies_keep_the_resumable_token() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let client = client(&emu, FileStore::open(dir.path()).unwrap()).await;
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    client
        .sign_out(paywall_auth_tokio::SignOutOptions::default())
        .await
        .unwrap();
    let before = files(dir.path());
    for (name, fault, code) in bad_replies() {
        emu.inject(Route::Refresh, fault, 1);
        let err = client
            .sign_in_anonymously(SignInOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{name}: {err}");
        assert_eq!(files(dir.path()), before, "{name}");
    }
    let resumed = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(resumed.user.id, guest.user.id);
    assert_eq!(emu.users().len(), 1);
    client.shutdown().await;
}

/// Shapes the emulator cannot produce, through a fake transport.
#[tokio::test]
async fn missing_fields_and_odd_shapes_are_typed_errors() {
    let replies: Vec<(&str, Result<HttpResponse, TransportError>, &str)> = vec![
        (
            "no refresh_token",
            json(
                200,
                r#"{"access_token":"a","expires_in":3600,"token_type":"bearer"}"#,
            ),
            "invalid_response",
        ),
        (
            "no expiry",
            json(
                200,
                r#"{"access_token":"a","refresh_token":"r","token_type":"bearer","user":{"id":"u","email":null}}"#,
            ),
            "invalid_response",
        ),
        ("JSON null", json(200, "null"), "invalid_response"),
        ("empty body", json(200, ""), "invalid_response"),
        ("array", json(200, "[1,2]"), "invalid_response"),
        (
            "slug error",
            json(429, r#"{"error":"rate_limited"}"#),
            "rate_limited",
        ),
        (
            "sentence error",
            json(400, r#"{"error":"That did not work."}"#),
            "http_400",
        ),
        (
            "bad framing",
            Err(TransportError::BadFraming),
            "network_error",
        ),
        ("refused", Err(TransportError::Connect), "network_error"),
    ];
    for (name, reply, code) in replies {
        let store = MemoryStore::new();
        let transport = FakeTransport::new(move |_| reply.clone());
        let client = AuthClient::builder("https://backend.invalid", PID)
            .store(store.clone())
            .transport(transport.clone())
            .build()
            .await
            .unwrap();
        let err = client
            .sign_in_anonymously(SignInOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{name}: {err}");
        assert!(store.keys().is_empty(), "{name}");
        assert_eq!(transport.requests().len(), 1, "{name}");
        client.shutdown().await;
    }
}

/// A custom transport that never answers is still bounded by the client's
/// request timeout.
#[tokio::test]
async fn a_hung_transport_times_out() {
    struct Hung;
    impl paywall_auth_tokio::Transport for Hung {
        async fn send(
            &self,
            _: paywall_auth_tokio::HttpRequest,
        ) -> Result<HttpResponse, TransportError> {
            std::future::pending().await
        }
    }
    let client = AuthClient::builder("https://backend.invalid", PID)
        .transport(Hung)
        .request_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let err = guard(
        "the timeout",
        client.sign_in_anonymously(SignInOptions::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "network_error");
    assert_eq!(
        err.as_auth(),
        Some(&paywall_auth_tokio::paywall_auth::Error::Network(
            TransportError::Timeout
        ))
    );
    client.shutdown().await;
}

/// A server access token holding a line break would inject a header line
/// (`X-Injected: 1`) into a transport that writes HTTP/1.1 itself. The
/// core keeps the token (it is the server's), but the upgrade that would
/// carry it as `Authorization` is never handed to the transport: it fails
/// `network_error`, and the stored records stay byte for byte as they were.
#[tokio::test]
async fn a_server_token_with_a_line_break_never_reaches_the_transport() {
    let store = MemoryStore::new();
    let transport = FakeTransport::new(|_| json(200, &token_body("a\\nX-Injected: 1", "r1", "u1")));
    let client = AuthClient::builder("https://backend.invalid", PID)
        .store(store.clone())
        .transport(transport.clone())
        .build()
        .await
        .unwrap();
    let session = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(session.access_token.expose(), "a\nX-Injected: 1");
    let records = (store.get_now(&session_key()), store.get_now(&anon_key()));
    assert!(records.0.is_some() && records.1.is_some());

    let request = paywall_auth_tokio::UpgradeRequest::new("a@b.c", "pw", Some("k-1")).unwrap();
    let err = client
        .upgrade_anonymous_to_email(request)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "network_error", "{err}");
    let sent = transport.requests();
    assert_eq!(sent.len(), 1, "only the sign-in went out");
    assert!(
        sent[0].url.ends_with("/auth/anonymous/signin"),
        "{}",
        sent[0].url
    );
    assert_eq!(
        (store.get_now(&session_key()), store.get_now(&anon_key())),
        records
    );
    client.shutdown().await;
}
