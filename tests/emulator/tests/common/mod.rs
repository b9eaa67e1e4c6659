//! Helpers shared by the integration tests: a JSON client over reqwest and a
//! raw TCP client that shows exactly what went over the wire.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use paywall_auth_emulator::{Emulator, EmulatorConfig, Route};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Config for tests: a short reuse interval so "after the interval" needs no
/// long sleep.
pub fn config() -> EmulatorConfig {
    EmulatorConfig {
        reuse_interval: Duration::from_millis(200),
        ..EmulatorConfig::default()
    }
}

pub async fn start() -> Emulator {
    Emulator::start(config()).await.unwrap()
}

/// Status and parsed JSON body of a reply (body `Null` if it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn str(&self, key: &str) -> String {
        self.body[key].as_str().unwrap().to_owned()
    }
}

/// POSTs to `route` of the emulator's paywall.
pub async fn post(
    emulator: &Emulator,
    route: Route,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    post_url(&emulator.url(route), bearer, headers, body)
        .await
        .unwrap()
}

pub async fn post_url(
    url: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> reqwest::Result<Reply> {
    let mut request = http().post(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.bytes().await?;
    Ok(Reply {
        status,
        content_type,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    })
}

pub async fn signin(emulator: &Emulator) -> Reply {
    let reply = post(
        emulator,
        Route::AnonymousSignIn,
        None,
        &[],
        Some(serde_json::json!({})),
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply
}

pub async fn refresh(emulator: &Emulator, token: &str) -> Reply {
    post(
        emulator,
        Route::Refresh,
        None,
        &[],
        Some(serde_json::json!({ "refresh_token": token })),
    )
    .await
}

/// What a raw HTTP/1.1 exchange produced: every byte the server sent before
/// closing, and whether the close was a reset rather than a clean FIN.
#[derive(Debug)]
pub struct Raw {
    pub bytes: Vec<u8>,
    pub reset: bool,
}

impl Raw {
    fn split(&self) -> Option<(&str, &[u8])> {
        let end = self.bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&self.bytes[..end]).ok()?;
        Some((head, &self.bytes[end + 4..]))
    }

    pub fn status(&self) -> Option<u16> {
        let (head, _) = self.split()?;
        head.split(' ').nth(1)?.parse().ok()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let (head, _) = self.split()?;
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    pub fn body(&self) -> &[u8] {
        self.split().map_or(&[][..], |(_, body)| body)
    }
}

/// Sends one request on a fresh connection (with `Connection: close`, so a
/// well-behaved reply also ends in EOF) and reads until the server closes.
pub async fn raw_post(addr: SocketAddr, path: &str, extra_headers: &str, body: &str) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    let mut reset = false;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionReset => {
                reset = true;
                break;
            }
            Ok(Err(err)) => panic!("read failed: {err}"),
            Err(_) => panic!("server neither answered nor closed within 5 s"),
        }
    }
    Raw { bytes, reset }
}

/// A plain-HTTP client. In a workspace build reqwest's features unify with
/// the tokio adapter's `rustls-no-provider`, and reqwest then insists on a
/// process-wide crypto provider even for `http://` URLs.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
