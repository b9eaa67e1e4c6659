//! Every fault kind, observed from the wire with a raw TCP client, plus the
//! side effects (or their absence) in the backend state.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{post, raw_post, refresh, signin, start};
use paywall_auth_emulator::{Fault, Route};
use serde_json::{Value, json};

const SIGNIN: &str = "/api/v1/paywall/pw_demo/auth/anonymous/signin";
const REFRESH: &str = "/api/v1/paywall/pw_demo/auth/refresh";

#[tokio::test]
async fn drop_before_apply_hangs_up_and_changes_nothing() {
    let emulator = start().await;
    emulator.inject(Route::AnonymousSignIn, Fault::DropBeforeApply, 2);

    let raw = raw_post(emulator.addr(), SIGNIN, "", "{}").await;
    assert!(
        raw.bytes.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&raw.bytes)
    );
    // A real HTTP client sees a transport error, not a status.
    let url = emulator.url(Route::AnonymousSignIn);
    let error = common::http()
        .post(&url)
        .json(&json!({}))
        .send()
        .await
        .unwrap_err();
    assert!(error.status().is_none(), "{error}");

    assert!(emulator.users().is_empty());
    assert_eq!(emulator.anonymous_users_created(), 0);
    let log = emulator.requests();
    assert_eq!(log.len(), 2);
    assert!(
        log.iter()
            .all(|r| r.status.is_none() && r.fault == Some(Fault::DropBeforeApply))
    );

    // The queue is used up: the next request is served.
    assert_eq!(signin(&emulator).await.status, 200);
}

#[tokio::test]
async fn drop_after_apply_rotates_the_token_the_client_never_sees() {
    let emulator = start().await;
    let r0 = signin(&emulator).await.str("refresh_token");
    emulator.inject(Route::Refresh, Fault::DropAfterApply, 1);

    let body = json!({ "refresh_token": r0 }).to_string();
    let raw = raw_post(emulator.addr(), REFRESH, "", &body).await;
    assert!(
        raw.bytes.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&raw.bytes)
    );

    // The rotation happened.
    let session = &emulator.sessions()[0];
    assert_eq!(session.spent_refresh_tokens, vec![r0.clone()]);
    let unseen = session.current_refresh_token.clone();
    assert_ne!(unseen, r0);
    // Retrying within the reuse interval recovers the token that was lost.
    let retry = refresh(&emulator, &r0).await;
    assert_eq!(retry.str("refresh_token"), unseen);
}

#[tokio::test]
async fn drop_after_apply_then_idempotent_retry_gets_the_stored_upgrade() {
    let emulator = start().await;
    let anon = signin(&emulator).await;
    emulator.inject(Route::Upgrade, Fault::DropAfterApply, 1);
    let headers = [("Idempotency-Key", "retry-me")];
    let body = json!({ "email": "i@example.com", "password": "pw" });

    let url = emulator.url(Route::Upgrade);
    let lost = common::post_url(
        &url,
        Some(&anon.str("access_token")),
        &headers,
        Some(body.clone()),
    )
    .await;
    assert!(lost.is_err());
    assert!(!emulator.users()[0].is_anonymous, "the upgrade was applied");

    let retry = post(
        &emulator,
        Route::Upgrade,
        Some(&anon.str("access_token")),
        &headers,
        Some(body),
    )
    .await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.body["status"], "updated");
    assert!(emulator.requests().last().unwrap().idempotent_replay);
}

#[tokio::test]
async fn status_faults_answer_the_error_envelope_in_queue_order() {
    let emulator = start().await;
    emulator.inject(Route::AnonymousSignIn, Fault::status(503, "upstream"), 1);
    emulator.inject(
        Route::AnonymousSignIn,
        Fault::status(429, "rate_limited"),
        1,
    );
    emulator.inject(Route::AnonymousSignIn, Fault::status(503, ""), 1);

    let raw = raw_post(emulator.addr(), SIGNIN, "", "{}").await;
    assert_eq!(raw.status(), Some(503));
    assert_eq!(
        raw.header("content-type").as_deref(),
        Some("application/json")
    );
    let body: Value = serde_json::from_slice(raw.body()).unwrap();
    assert_eq!(body["code"], "upstream");
    assert!(body["message"].is_string());

    let limited = post(
        &emulator,
        Route::AnonymousSignIn,
        None,
        &[],
        Some(json!({})),
    )
    .await;
    assert_eq!((limited.status, limited.code()), (429, "rate_limited"));

    let bare = raw_post(emulator.addr(), SIGNIN, "", "{}").await;
    assert_eq!(bare.status(), Some(503));
    assert!(bare.body().is_empty());

    // Faults replace the request: nobody was created.
    assert_eq!(emulator.anonymous_users_created(), 0);
    assert_eq!(signin(&emulator).await.status, 200);
    // Faults are per route.
    emulator.inject(Route::Refresh, Fault::status(500, "boom"), usize::MAX);
    assert_eq!(signin(&emulator).await.status, 200);
    emulator.clear_faults();
    assert_eq!(refresh(&emulator, "x").await.status, 401);
}

#[tokio::test]
async fn latency_delays_then_serves() {
    let emulator = start().await;
    emulator.inject(
        Route::AnonymousSignIn,
        Fault::Latency(Duration::from_millis(150)),
        1,
    );
    let started = Instant::now();
    let reply = signin(&emulator).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(reply.status, 200);
    assert_eq!(
        emulator.requests()[0].fault,
        Some(Fault::Latency(Duration::from_millis(150)))
    );
}

#[tokio::test]
async fn malformed_json_is_a_200_with_a_broken_body_after_the_side_effect() {
    let emulator = start().await;
    emulator.inject(Route::AnonymousSignIn, Fault::MalformedJson, 1);
    let raw = raw_post(emulator.addr(), SIGNIN, "", "{}").await;
    assert_eq!(raw.status(), Some(200));
    assert_eq!(
        raw.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(raw.body().starts_with(b"{\""));
    assert!(serde_json::from_slice::<Value>(raw.body()).is_err());
    assert_eq!(emulator.anonymous_users_created(), 1);
}

#[tokio::test]
async fn wrong_content_type_keeps_the_real_body() {
    let emulator = start().await;
    emulator.inject(Route::AnonymousSignIn, Fault::WrongContentType, 1);
    let raw = raw_post(emulator.addr(), SIGNIN, "", "{}").await;
    assert_eq!(raw.status(), Some(200));
    assert!(
        raw.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let body: Value = serde_json::from_slice(raw.body()).unwrap();
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn truncated_body_stops_short_of_content_length_and_closes() {
    let emulator = start().await;
    emulator.inject(Route::AnonymousSignIn, Fault::TruncatedBody, 2);

    let raw = raw_post(emulator.addr(), SIGNIN, "", "{}").await;
    assert_eq!(raw.status(), Some(200));
    let declared: usize = raw.header("content-length").unwrap().parse().unwrap();
    let received = raw.body().len();
    assert!(
        received > 0 && received < declared,
        "{received} of {declared}"
    );

    // A real client gets the headers, then a body error.
    let response = common::http()
        .post(emulator.url(Route::AnonymousSignIn))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err());
    assert_eq!(emulator.anonymous_users_created(), 2);
}

#[tokio::test]
async fn oversize_token_is_big_and_still_valid() {
    let emulator = start().await;
    emulator.inject(Route::AnonymousSignIn, Fault::OversizeToken(64), 1);
    let reply = signin(&emulator).await;
    let access = reply.str("access_token");
    assert!(access.len() >= 64 * 1024, "{}", access.len());
    assert!(access.len() < 65 * 1024, "{}", access.len());

    let signout = post(&emulator, Route::SignOut, Some(&access), &[], None).await;
    assert_eq!(signout.status, 200);
}

#[tokio::test]
async fn faults_are_consumed_only_by_posts_to_their_route() {
    let emulator = start().await;
    emulator.inject(Route::AnonymousSignIn, Fault::DropBeforeApply, 1);
    let url = emulator.url(Route::AnonymousSignIn);
    let stray = common::http().get(&url).send().await.unwrap();
    assert_eq!(stray.status(), 405);
    refresh(&emulator, "x").await;
    let raw = raw_post(emulator.addr(), SIGNIN, "", "{}").await;
    assert!(raw.bytes.is_empty());
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let emulator = start().await;
    let addr = emulator.addr();
    let observer = emulator.clone();
    emulator.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // The state stays inspectable from other handles.
    assert!(observer.requests().is_empty());
}
