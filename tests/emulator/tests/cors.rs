//! CORS answers for browser clients (src/cors.rs): preflights and
//! `Access-Control-Allow-Origin` for configured origins only.

#![allow(clippy::unwrap_used)]

use paywall_auth_emulator::{Emulator, EmulatorConfig, Route};

const PAGE: &str = "http://127.0.0.1:5173";

/// A plain reqwest client (rustls needs a process provider installed).
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn start(origins: &[&str]) -> Emulator {
    Emulator::start(EmulatorConfig {
        cors_allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap()
}

async fn preflight(emu: &Emulator, origin: &str) -> reqwest::Response {
    http()
        .request(reqwest::Method::OPTIONS, emu.url(Route::AnonymousSignIn))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, x-paywall-id, x-sdk-version",
        )
        .send()
        .await
        .unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_allowed_origin_gets_its_preflight_and_the_allow_origin_header() {
    let emu = start(&[PAGE]).await;
    let r = preflight(&emu, PAGE).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(PAGE)
    );
    assert_eq!(
        header(&r, "access-control-allow-methods").as_deref(),
        Some("POST, GET")
    );
    let allowed = header(&r, "access-control-allow-headers").unwrap();
    for h in [
        "content-type",
        "x-paywall-id",
        "x-sdk-version",
        "authorization",
        "idempotency-key",
    ] {
        assert!(allowed.contains(h), "{allowed}");
    }
    // The preflight is not a client request: not logged.
    assert!(emu.requests().is_empty());

    let r = http()
        .post(emu.url(Route::AnonymousSignIn))
        .header("origin", PAGE)
        .header("content-type", "application/json")
        .header("x-paywall-id", emu.paywall_id())
        .header("x-sdk-version", "0.1.0")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some(PAGE)
    );
    assert_eq!(header(&r, "vary").as_deref(), Some("Origin"));
    assert_eq!(emu.requests().len(), 1);
}

#[tokio::test]
async fn other_origins_and_the_default_config_get_no_cors_headers() {
    let emu = start(&[PAGE]).await;
    let r = preflight(&emu, "http://evil.example").await;
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "access-control-allow-origin"), None);

    let emu = start(&[]).await;
    let r = preflight(&emu, PAGE).await;
    assert_eq!(r.status(), 403);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn a_wildcard_allows_any_origin() {
    let emu = start(&["*"]).await;
    let r = preflight(&emu, "http://localhost:1234").await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("http://localhost:1234")
    );
}
