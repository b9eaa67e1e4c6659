//! Bad bytes from the socket: every malformed, oversize, truncated or hung
//! response gives a typed error, leaves the session and the flash exactly as
//! they were, and never panics. A scripted connection plays the server.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use paywall_auth::{Error, Session, SignInOptions, TransportError};

/// A well-formed token response for a guest.
fn tokens(access: &str, refresh: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"access_token":"{access}","refresh_token":"{refresh}","expires_in":3600,"expires_at":null,"token_type":"bearer","user":{{"id":"guest-1","email":null,"is_anonymous":true}}}}"#
    );
    ok_json(&body)
}

fn ok_json(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A client signed in as `guest-1` (through a scripted good response), with
/// `then` queued as the next reply.
async fn signed_in(events: &Recorder, then: Reply) -> Client<'_, Scripted> {
    let connector = Scripted::new([Reply::bytes(tokens("a.b.c", "r1")), then]);
    let mut client = client(connector, RamFlash::new(FLASH_SIZE), events);
    client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    client
}

/// The flash of a device signed in as `guest-1`, and its session.
async fn signed_in_flash() -> (Vec<u8>, Session) {
    let events = Recorder::default();
    let client = signed_in(&events, Reply::refused()).await;
    let session = client.session().cloned().unwrap();
    (client.into_parts().1.bytes, session)
}

/// Every way a response can be broken, with the transport error it must map to.
fn broken() -> Vec<(&'static str, Reply, TransportError)> {
    let good = tokens("a.b.c", "r2");
    let half = good[..good.len() / 2].to_vec();
    let head_only =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n".to_vec();
    let mut huge_head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..40 {
        huge_head.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "x".repeat(100)).as_bytes());
    }
    huge_head.extend_from_slice(b"Content-Length: 2\r\n\r\n{}");
    let huge_body = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{}",
        "x".repeat(5000)
    );
    let huge_chunked = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2000\r\n{}\r\n0\r\n\r\n",
        "y".repeat(0x2000)
    );
    vec![
        (
            "garbage status line",
            Reply::bytes(b"HTTP/1.1 OK 200 what\r\n\r\n".to_vec()),
            TransportError::BadFraming,
        ),
        (
            "not http at all",
            Reply::bytes(b"\x00\x01\x02 hello\r\n\r\n".to_vec()),
            TransportError::BadFraming,
        ),
        (
            "SSH banner",
            Reply::bytes(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()),
            TransportError::BadFraming,
        ),
        (
            "oversize headers",
            Reply::bytes(huge_head),
            TransportError::BadFraming,
        ),
        (
            "oversize body",
            Reply::bytes(huge_body),
            TransportError::BadFraming,
        ),
        (
            "oversize chunked body",
            Reply::bytes(huge_chunked),
            TransportError::BadFraming,
        ),
        (
            "bad chunk size",
            Reply::bytes(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
                    .to_vec(),
            ),
            TransportError::BadFraming,
        ),
        (
            "chunk without CRLF",
            Reply::bytes(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n".to_vec(),
            ),
            TransportError::BadFraming,
        ),
        (
            "chunked body cut",
            Reply::bytes(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"a\":".to_vec(),
            ),
            TransportError::ConnectionLost,
        ),
        (
            "unsupported transfer coding",
            Reply::bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec()),
            TransportError::BadFraming,
        ),
        (
            "conflicting lengths",
            Reply::bytes(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec(),
            ),
            TransportError::BadFraming,
        ),
        (
            "closed mid-body",
            Reply::bytes(half.clone()),
            TransportError::ConnectionLost,
        ),
        (
            "reset mid-body",
            Reply::bytes(half).end(End::Reset),
            TransportError::ConnectionLost,
        ),
        (
            "closed after the head",
            Reply::bytes(head_only),
            TransportError::ConnectionLost,
        ),
        (
            "closed before anything",
            Reply::bytes(Vec::new()),
            TransportError::ConnectionLost,
        ),
        (
            "hangs",
            Reply::bytes(b"HTTP/1.1 200 OK\r\n".to_vec()).end(End::Hang),
            TransportError::Timeout,
        ),
        ("refused", Reply::refused(), TransportError::Connect),
    ]
}

#[tokio::test]
async fn broken_refresh_responses_are_typed_errors_and_change_nothing() {
    let (pristine, before) = signed_in_flash().await;
    for (name, reply, expected) in broken() {
        let events = Recorder::default();
        let flash = RamFlash::from_bytes(pristine.clone());
        let mut client = client(Scripted::new([reply]), flash, &events);
        client.set_request_timeout(embassy_time::Duration::from_millis(300));
        client.start().await;
        assert_eq!(client.session(), Some(&before));
        events.take();
        let error = client.refresh().await.unwrap_err();
        assert_eq!(error, Error::Network(expected), "{name}");
        assert_eq!(client.session(), Some(&before), "{name}: session changed");
        assert!(
            events.take_changes().is_empty(),
            "{name}: no auth change expected"
        );
        // The records are what they were. (The bytes are not: before the
        // refresh, the machine rewrote the guest record with its own value
        // to prove the flash can take the rotated token — docs/protocol.md
        // §13.2 — which appends an item on NOR flash.)
        let (_, flash) = client.into_parts();
        let rebooted = Recorder::default();
        let mut after = client_on_flash(flash.bytes, &rebooted);
        after.start().await;
        assert_eq!(after.session(), Some(&before), "{name}: records changed");
        assert!(after.has_resumable_anonymous(), "{name}");
    }
}

fn client_on_flash(bytes: Vec<u8>, events: &Recorder) -> Client<'_, Scripted> {
    client(Scripted::new([]), RamFlash::from_bytes(bytes), events)
}

#[tokio::test]
async fn broken_sign_in_responses_leave_the_device_signed_out() {
    for (name, reply, expected) in broken() {
        let events = Recorder::default();
        let mut client = client(Scripted::new([reply]), RamFlash::new(FLASH_SIZE), &events);
        client.set_request_timeout(embassy_time::Duration::from_millis(300));
        client.start().await;
        events.take();
        let error = client
            .sign_in_anonymously(SignInOptions::default())
            .await
            .unwrap_err();
        assert_eq!(error, Error::Network(expected), "{name}");
        assert!(client.session().is_none(), "{name}");
        assert!(!client.has_resumable_anonymous(), "{name}");
        assert!(events.take_changes().is_empty(), "{name}");
        let (connector, flash) = client.into_parts();
        assert!(
            flash.bytes.iter().all(|b| *b == 0xFF),
            "{name}: nothing may be written"
        );
        assert!(
            connector.requests.len() <= 1,
            "{name}: one attempt, no retry"
        );
    }
}

#[tokio::test]
async fn bad_bodies_in_good_frames_are_invalid_responses() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("malformed JSON", ok_json(r#"{"access_token":"a.b"#), "invalid_response"),
        ("wrong content type", text_plain(tokens("a.b.c", "r2")), "invalid_response"),
        ("missing refresh token", ok_json(r#"{"access_token":"a.b.c","expires_in":60}"#), "invalid_response"),
        ("oversize token", tokens(&"t".repeat(paywall_auth::limits::ACCESS_TOKEN_MAX + 1), "r2"), "invalid_response"),
        (
            "server error envelope",
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 36\r\n\r\n{\"code\":\"upstream\",\"message\":\"down\"}".to_vec(),
            "upstream",
        ),
        ("bare 502", b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n".to_vec(), "http_502"),
    ];
    for (name, bytes, code) in cases {
        let events = Recorder::default();
        let mut client = signed_in(&events, Reply::bytes(bytes)).await;
        let before = client.session().cloned().unwrap();
        let error = client.refresh().await.unwrap_err();
        assert_eq!(error.code(), code, "{name}: {error}");
        assert_eq!(client.session(), Some(&before), "{name}");
    }
}

#[tokio::test]
async fn an_error_without_a_message_carries_the_servers_reason_phrase() {
    let events = Recorder::default();
    let bare = b"HTTP/1.1 503 Down For Maintenance\r\nContent-Length: 0\r\n\r\n".to_vec();
    let mut client = signed_in(&events, Reply::bytes(bare)).await;
    let Error::Api(api) = client.refresh().await.unwrap_err() else {
        panic!("an API error")
    };
    assert_eq!(
        (api.code.as_str(), api.message.as_str()),
        ("http_503", "Down For Maintenance")
    );
}

#[tokio::test]
async fn requests_are_plain_http11_with_the_core_headers() {
    let events = Recorder::default();
    let mut client = signed_in(&events, Reply::bytes(tokens("a.b.c", "r2"))).await;
    client.refresh().await.unwrap();
    let (connector, _) = client.into_parts();
    assert_eq!(
        connector.request_lines(),
        [
            "POST /api/v1/paywall/pw_demo/auth/anonymous/signin HTTP/1.1",
            "POST /api/v1/paywall/pw_demo/auth/refresh HTTP/1.1",
        ]
    );
    let refresh = String::from_utf8(connector.requests[1].clone()).unwrap();
    let (head, body) = refresh.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, r#"{"refresh_token":"r1"}"#);
    let lines: Vec<&str> = head.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "Host: api.test",
            "Accept: application/json",
            &format!("X-SDK-Version: {}", paywall_auth::SDK_VERSION),
            "X-Paywall-Id: pw_demo",
            "Content-Type: application/json",
            &format!("Content-Length: {}", body.len()),
            "Connection: close",
        ]
    );
}

fn text_plain(response: Vec<u8>) -> Vec<u8> {
    String::from_utf8(response)
        .unwrap()
        .replace("application/json", "text/plain")
        .into_bytes()
}
