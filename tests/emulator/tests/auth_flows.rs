//! The protocol behaviour of every route, as a client observes it.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{post, post_url, refresh, signin, start};
use paywall_auth_emulator::{Emulator, EmulatorConfig, Route};
use serde_json::{Value, json};

fn claims(token: &str) -> Value {
    let key = jsonwebtoken::DecodingKey::from_secret(&EmulatorConfig::default().jwt_secret);
    let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims
}

async fn upgrade(
    emulator: &Emulator,
    access: &str,
    email: &str,
    key: Option<&str>,
) -> common::Reply {
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    post(
        emulator,
        Route::Upgrade,
        Some(access),
        &headers,
        Some(json!({ "email": email, "password": "hunter22" })),
    )
    .await
}

async fn email_signin(emulator: &Emulator, email: &str, password: &str) -> common::Reply {
    post(
        emulator,
        Route::EmailSignIn,
        None,
        &[],
        Some(json!({ "email": email, "password": password })),
    )
    .await
}

#[tokio::test]
async fn anonymous_signin_issues_tokens_and_records_the_user() {
    let emulator = start().await;
    let reply = post(
        &emulator,
        Route::AnonymousSignIn,
        None,
        &[("X-SDK-Version", "3.5.1")],
        Some(json!({
            "captcha_token": "cap",
            "visitor_id": "0123456789abcdef0123",
            "user_meta": { "source": "test" },
            "unknown_key": [1, 2, 3],
        })),
    )
    .await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, "application/json");
    let body = &reply.body;
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires_at = body["expires_at"].as_u64().unwrap();
    assert!(
        (now + 3599..=now + 3600).contains(&expires_at),
        "{expires_at} vs {now}"
    );
    assert_eq!(reply.str("refresh_token").len(), 32);
    assert_eq!(body["user"]["email"], Value::Null);
    assert_eq!(body["user"]["is_anonymous"], true);
    let id = reply.body["user"]["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);

    let claims = claims(&reply.str("access_token"));
    assert_eq!(claims["sub"], id);
    assert_eq!(claims["email"], Value::Null);
    assert_eq!(claims["is_anonymous"], true);
    assert_eq!(claims["role"], "authenticated");
    assert_eq!(claims["exp"].as_u64(), Some(expires_at));
    assert_eq!(claims["session_id"], emulator.sessions()[0].id.as_str());

    let user = emulator.user(id).unwrap();
    assert!(user.is_anonymous);
    assert_eq!(user.balance, 10);
    assert_eq!(user.captcha_token.as_deref(), Some("cap"));
    assert_eq!(user.visitor_id.as_deref(), Some("0123456789abcdef0123"));
    assert_eq!(user.user_meta["source"], "test");
    assert_eq!(emulator.anonymous_users_created(), 1);

    let log = emulator.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].route, Some(Route::AnonymousSignIn));
    assert_eq!(log[0].header("x-sdk-version"), Some("3.5.1"));
    assert!(
        log[0]
            .headers
            .keys()
            .all(|name| *name == name.to_lowercase())
    );
    assert!(log[0].body.starts_with("{\"captcha_token\":\"cap\""));
    assert_eq!(log[0].status, Some(200));
}

#[tokio::test]
async fn bad_input_gets_typed_json_errors() {
    let emulator = start().await;
    let url = emulator.url(Route::AnonymousSignIn);
    let client = common::http();
    for body in ["{not json", "[]", "{\"visitor_id\":5}"] {
        let response = client.post(&url).body(body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let json: Value = response.json().await.unwrap();
        assert_eq!(json["code"], "invalid_request", "{body}");
    }
    // An empty body is read as `{}`.
    let response = client.post(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let reply = post(&emulator, Route::Refresh, None, &[], Some(json!({}))).await;
    assert_eq!((reply.status, reply.code()), (400, "invalid_request"));

    let wrong_pid = format!("{}{}", emulator.origin(), Route::Refresh.path("pw_other"));
    let reply = post_url(&wrong_pid, None, &[], Some(json!({ "refresh_token": "x" })))
        .await
        .unwrap();
    assert_eq!((reply.status, reply.code()), (404, "paywall_not_found"));
    assert_eq!(reply.content_type, "application/json");

    let unknown = format!("{}/api/v1/paywall/pw_demo/auth/nope", emulator.origin());
    let reply = post_url(&unknown, None, &[], None).await.unwrap();
    assert_eq!((reply.status, reply.code()), (404, "not_found"));

    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["code"], "method_not_allowed");

    let raw = common::raw_post(
        emulator.addr(),
        "/api/v1/paywall/%FF/auth/refresh",
        "",
        "{}",
    )
    .await;
    assert_eq!(raw.status(), Some(404));
    assert_eq!(
        raw.header("content-type").as_deref(),
        Some("application/json")
    );

    // Every request above was logged, matched or not.
    assert_eq!(emulator.requests().len(), 9);
}

#[tokio::test]
async fn anonymous_disabled_blocks_signin_and_optionally_refresh() {
    let emulator = start().await;
    let first = signin(&emulator).await;
    emulator.set_allow_anonymous(false);

    let reply = post(
        &emulator,
        Route::AnonymousSignIn,
        None,
        &[],
        Some(json!({})),
    )
    .await;
    assert_eq!((reply.status, reply.code()), (403, "anonymous_disabled"));
    assert_eq!(emulator.anonymous_users_created(), 1);

    // By default the refresh route does not check the setting (docs/protocol.md §12.17).
    let second = refresh(&emulator, &first.str("refresh_token")).await;
    assert_eq!(second.status, 200);

    emulator.set_refresh_checks_anonymous(true);
    let blocked = refresh(&emulator, &second.str("refresh_token")).await;
    assert_eq!(
        (blocked.status, blocked.code()),
        (403, "anonymous_disabled")
    );
    // A 403 is not a rotation: the token is still the live one.
    emulator.set_allow_anonymous(true);
    assert_eq!(
        refresh(&emulator, &second.str("refresh_token"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn refresh_rotates_and_forgives_only_the_parent_within_the_interval() {
    let emulator = start().await;
    let r0 = signin(&emulator).await.str("refresh_token");

    let first = refresh(&emulator, &r0).await;
    assert_eq!(first.status, 200);
    let r1 = first.str("refresh_token");
    assert_ne!(r1, r0);
    assert_eq!(first.body["user"]["is_anonymous"], true);

    // A client that lost the reply retries with r0: it gets r1 again.
    let retry = refresh(&emulator, &r0).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.str("refresh_token"), r1);
    assert_eq!(
        emulator.sessions()[0].spent_refresh_tokens,
        vec![r0.clone()]
    );

    let r2 = refresh(&emulator, &r1).await.str("refresh_token");
    // r0 is now a grandparent: reuse means theft, and the family dies.
    let stolen = refresh(&emulator, &r0).await;
    assert_eq!(
        (stolen.status, stolen.code()),
        (401, "invalid_refresh_token")
    );
    assert!(emulator.sessions()[0].revoked);
    assert_eq!(refresh(&emulator, &r2).await.status, 401);

    let unknown = refresh(&emulator, "no-such-token").await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (401, "invalid_refresh_token")
    );
}

#[tokio::test]
async fn reusing_the_parent_after_the_interval_revokes_the_family() {
    let emulator = start().await; // reuse interval 200 ms
    let r0 = signin(&emulator).await.str("refresh_token");
    let r1 = refresh(&emulator, &r0).await.str("refresh_token");

    tokio::time::sleep(Duration::from_millis(250)).await;
    let late = refresh(&emulator, &r0).await;
    assert_eq!((late.status, late.code()), (401, "invalid_refresh_token"));
    assert_eq!(refresh(&emulator, &r1).await.status, 401);

    // The emulator clock drives the interval too, so tests need not sleep.
    let r0 = signin(&emulator).await.str("refresh_token");
    let r1 = refresh(&emulator, &r0).await.str("refresh_token");
    emulator.advance_clock(Duration::from_secs(1));
    assert_eq!(refresh(&emulator, &r0).await.status, 401);
    assert_eq!(refresh(&emulator, &r1).await.status, 401);
    assert!(emulator.sessions().iter().all(|session| session.revoked));
}

#[tokio::test]
async fn upgrade_without_confirmation_names_the_same_user() {
    let emulator = start().await;
    let anon = signin(&emulator).await;
    let id = anon.body["user"]["id"].as_str().unwrap().to_owned();
    let before = emulator.user(&id).unwrap();

    let reply = upgrade(
        &emulator,
        &anon.str("access_token"),
        "Ann@Example.com",
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        reply.body,
        json!({
            "status": "updated",
            "user": { "id": id, "email": "ann@example.com", "is_anonymous": false },
        })
    );
    let after = emulator.user(&id).unwrap();
    assert_eq!(after.email.as_deref(), Some("ann@example.com"));
    assert!(!after.is_anonymous && after.has_password);
    assert_eq!(
        (after.balance, after.created_at),
        (before.balance, before.created_at)
    );
    assert_eq!(emulator.users().len(), 1);

    // The refresh reply carries the current user state.
    let refreshed = refresh(&emulator, &anon.str("refresh_token")).await;
    assert_eq!(refreshed.body["user"]["email"], "ann@example.com");
    assert_eq!(
        claims(&refreshed.str("access_token"))["is_anonymous"],
        false
    );

    // Named users cannot upgrade again.
    let again = upgrade(
        &emulator,
        &refreshed.str("access_token"),
        "x@example.com",
        None,
    )
    .await;
    assert_eq!((again.status, again.code()), (400, "not_anonymous"));

    // Another anonymous user cannot take the address.
    let other = signin(&emulator).await;
    let taken = upgrade(
        &emulator,
        &other.str("access_token"),
        "ann@example.com",
        None,
    )
    .await;
    assert_eq!((taken.status, taken.code()), (422, "email_exists"));

    // The password works for email sign-in, into the same user.
    let named = email_signin(&emulator, "ann@example.com", "hunter22").await;
    assert_eq!(named.status, 200);
    assert_eq!(named.body["user"]["id"], id.as_str());
    assert_eq!(named.body["user"]["is_anonymous"], false);
    let wrong = email_signin(&emulator, "ann@example.com", "nope").await;
    assert_eq!((wrong.status, wrong.code()), (400, "invalid_credentials"));
}

#[tokio::test]
async fn upgrade_with_confirmation_waits_for_the_link() {
    let emulator = start().await;
    emulator.set_confirm_email(true);
    let anon = signin(&emulator).await;
    let id = anon.body["user"]["id"].as_str().unwrap().to_owned();

    let reply = upgrade(
        &emulator,
        &anon.str("access_token"),
        "bob@example.com",
        None,
    )
    .await;
    assert_eq!(
        reply.body,
        json!({ "status": "confirmation_required", "email": "bob@example.com" })
    );
    let pending = emulator.user(&id).unwrap();
    assert!(pending.is_anonymous && pending.has_password);
    assert_eq!(pending.pending_email.as_deref(), Some("bob@example.com"));
    let early = email_signin(&emulator, "bob@example.com", "hunter22").await;
    assert_eq!((early.status, early.code()), (400, "email_not_confirmed"));

    assert!(emulator.confirm_email("BOB@example.com"));
    assert!(
        !emulator.confirm_email("bob@example.com"),
        "already confirmed"
    );
    let confirmed = emulator.user(&id).unwrap();
    assert_eq!(confirmed.email.as_deref(), Some("bob@example.com"));
    assert!(!confirmed.is_anonymous && confirmed.pending_email.is_none());

    let refreshed = refresh(&emulator, &anon.str("refresh_token")).await;
    assert_eq!(
        refreshed.body["user"],
        json!({ "id": id, "email": "bob@example.com", "is_anonymous": false })
    );
    assert_eq!(
        email_signin(&emulator, "bob@example.com", "hunter22")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn bearer_routes_reject_missing_bad_expired_and_revoked_tokens() {
    let emulator = start().await;
    let anon = signin(&emulator).await;
    let access = anon.str("access_token");

    for bearer in [None, Some("garbage"), Some("a.b.c")] {
        let reply = post(&emulator, Route::SignOut, bearer, &[], None).await;
        assert_eq!(
            (reply.status, reply.code()),
            (401, "invalid_token"),
            "{bearer:?}"
        );
    }
    // Signed with another key.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims(&access),
        &jsonwebtoken::EncodingKey::from_secret(b"other"),
    )
    .unwrap();
    assert_eq!(
        post(&emulator, Route::RevokeAll, Some(&forged), &[], None)
            .await
            .status,
        401
    );

    emulator.expire_access_tokens();
    let reply = upgrade(&emulator, &access, "c@example.com", None).await;
    assert_eq!((reply.status, reply.code()), (401, "invalid_token"));
    // Refresh tokens survive; the new access token works.
    let fresh = refresh(&emulator, &anon.str("refresh_token"))
        .await
        .str("access_token");
    assert_eq!(
        post(&emulator, Route::SignOut, Some(&fresh), &[], None)
            .await
            .status,
        200
    );
    // ... until the session is revoked by that sign-out.
    assert_eq!(
        post(&emulator, Route::SignOut, Some(&fresh), &[], None)
            .await
            .status,
        401
    );

    // Real expiry, on the emulator clock.
    let other = signin(&emulator).await.str("access_token");
    emulator.advance_clock(Duration::from_secs(3600));
    assert_eq!(
        post(&emulator, Route::RevokeAll, Some(&other), &[], None)
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn signout_revokes_only_the_presented_session() {
    let emulator = start().await;
    let anon = signin(&emulator).await;
    upgrade(&emulator, &anon.str("access_token"), "d@example.com", None).await;
    let second = email_signin(&emulator, "d@example.com", "hunter22").await;

    let reply = post(
        &emulator,
        Route::SignOut,
        Some(&anon.str("access_token")),
        &[],
        None,
    )
    .await;
    assert_eq!((reply.status, &reply.body), (200, &json!({ "ok": true })));
    assert_eq!(
        refresh(&emulator, &anon.str("refresh_token")).await.status,
        401
    );
    // The other session lives on.
    assert_eq!(
        refresh(&emulator, &second.str("refresh_token"))
            .await
            .status,
        200
    );
    let sessions = emulator.sessions();
    assert_eq!(
        sessions.iter().map(|s| s.revoked).collect::<Vec<_>>(),
        vec![true, false]
    );
}

#[tokio::test]
async fn revoke_all_revokes_every_session_of_the_user_only() {
    let emulator = start().await;
    let anon = signin(&emulator).await;
    upgrade(&emulator, &anon.str("access_token"), "e@example.com", None).await;
    let second = email_signin(&emulator, "e@example.com", "hunter22").await;
    let bystander = signin(&emulator).await;

    let reply = post(
        &emulator,
        Route::RevokeAll,
        Some(&second.str("access_token")),
        &[],
        None,
    )
    .await;
    assert_eq!((reply.status, &reply.body), (200, &json!({ "ok": true })));
    assert_eq!(
        refresh(&emulator, &anon.str("refresh_token")).await.status,
        401
    );
    assert_eq!(
        refresh(&emulator, &second.str("refresh_token"))
            .await
            .status,
        401
    );
    assert_eq!(
        refresh(&emulator, &bystander.str("refresh_token"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn idempotency_key_replays_without_a_second_side_effect() {
    let emulator = start().await;
    let anon = signin(&emulator).await;
    let access = anon.str("access_token");

    let first = upgrade(&emulator, &access, "f@example.com", Some("key-1")).await;
    assert_eq!(first.body["status"], "updated");
    // Without the key this would be 400 not_anonymous: the replay proves the
    // upgrade was not applied a second time.
    let replay = upgrade(&emulator, &access, "f@example.com", Some("key-1")).await;
    assert_eq!((replay.status, &replay.body), (200, &first.body));
    let log = emulator.requests();
    assert_eq!(
        log.iter().map(|r| r.idempotent_replay).collect::<Vec<_>>(),
        vec![false, false, true]
    );
    // Same key, different request: refused rather than silently replayed.
    let misuse = upgrade(&emulator, &access, "g@example.com", Some("key-1")).await;
    assert_eq!(
        (misuse.status, misuse.code()),
        (422, "idempotency_key_reused")
    );

    // Email sign-in: the replay hands back the same session, no new one.
    let headers = [("Idempotency-Key", "key-2")];
    let body = json!({ "email": "f@example.com", "password": "hunter22" });
    let a = post(
        &emulator,
        Route::EmailSignIn,
        None,
        &headers,
        Some(body.clone()),
    )
    .await;
    let b = post(&emulator, Route::EmailSignIn, None, &headers, Some(body)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, b.body);
    assert_eq!(emulator.sessions().len(), 2);
}

#[tokio::test]
async fn http_control_api_mirrors_the_rust_api() {
    let emulator = start().await;
    let client = common::http();
    let control = |path: &str| format!("{}/__emulator/{path}", emulator.origin());

    let config: Value = client
        .post(control("config"))
        .json(&json!({ "confirm_email": true, "allow_anonymous": true }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["confirm_email"], true);
    assert_eq!(config["reuse_interval_ms"], 200);

    let anon = signin(&emulator).await;
    upgrade(&emulator, &anon.str("access_token"), "h@example.com", None).await;
    let confirm = client
        .post(control("confirm"))
        .json(&json!({ "email": "h@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), 200);
    let missing = client
        .post(control("confirm"))
        .json(&json!({ "email": "nobody@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let users: Value = client
        .get(control("users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users[0]["email"], "h@example.com");
    assert_eq!(users[0]["balance"], 10);
    let requests: Value = client
        .get(control("requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        requests.as_array().unwrap().len(),
        2,
        "control calls are not logged"
    );
    assert_eq!(requests[1]["route"], "upgrade");
    assert_eq!(requests[1]["headers"]["content-type"], "application/json");

    let injected = client
        .post(control("faults"))
        .json(&json!({
            "route": "anonymous_signin",
            "fault": { "kind": "status", "status": 429, "code": "rate_limited" },
            "times": 1,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(injected.status(), 200);
    let limited = post(
        &emulator,
        Route::AnonymousSignIn,
        None,
        &[],
        Some(json!({})),
    )
    .await;
    assert_eq!((limited.status, limited.code()), (429, "rate_limited"));

    let bad = client
        .post(control("faults"))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    client.post(control("reset-log")).send().await.unwrap();
    assert!(emulator.requests().is_empty());
    let counters: Value = client
        .get(control("counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["anonymous_users_created"], 1);
}
