//! The default transport against raw sockets: what goes on the wire, and
//! how each way of failing maps onto the core's `TransportError`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::guard;
use paywall_auth_tokio::{
    HttpRequest, ReqwestTransport, Transport, TransportError, is_json_content_type,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn request(url: String) -> HttpRequest {
    HttpRequest {
        method: "POST",
        url,
        headers: vec![
            ("Accept", "application/json".to_owned()),
            ("Content-Type", "application/json".to_owned()),
            ("Authorization", "Bearer tok.en".to_owned()),
        ],
        body: br#"{"refresh_token":"r"}"#.to_vec(),
    }
}

/// A one-connection server: reads the request head and body, then does
/// whatever `reply` does with the socket. Returns the URL and the raw
/// request it read.
async fn server<F, Fut>(reply: F) -> (String, tokio::task::JoinHandle<String>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/api/v1/paywall/pw/auth/refresh",
        listener.local_addr().unwrap()
    );
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        // Head, then as much body as Content-Length says.
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if raw.len() >= end + 4 + len {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        reply(socket).await;
        String::from_utf8_lossy(&raw).into_owned()
    });
    (url, task)
}

fn transport() -> ReqwestTransport {
    ReqwestTransport::with_timeouts(Duration::from_secs(5), Duration::from_secs(10)).unwrap()
}

#[tokio::test]
async fn sends_exactly_the_core_headers_and_reads_the_reply() {
    let (url, raw) = server(|mut s| async move {
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: Application/JSON; charset=utf-8\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
            .await
            .unwrap();
    })
    .await;
    let response = guard("the reply", transport().send(request(url)))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert!(response.content_type_json);
    assert_eq!(&response.body[..], b"{\"ok\":true}");

    let raw = raw.await.unwrap();
    let mut lines: Vec<String> = raw
        .split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.to_ascii_lowercase())
        .collect();
    lines.sort();
    let host = lines
        .iter()
        .find(|l| l.starts_with("host: "))
        .unwrap()
        .clone();
    assert_eq!(
        lines,
        [
            "accept: application/json".to_owned(),
            "authorization: bearer tok.en".to_owned(),
            "content-length: 21".to_owned(),
            "content-type: application/json".to_owned(),
            host,
        ]
    );
    assert!(raw.starts_with("POST /api/v1/paywall/pw/auth/refresh HTTP/1.1\r\n"));
    assert!(raw.ends_with(r#"{"refresh_token":"r"}"#));
}

#[tokio::test]
async fn a_refused_connection_is_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    drop(listener);
    let err = guard("the failure", transport().send(request(url)))
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::Connect);
}

#[tokio::test]
async fn a_server_that_never_answers_is_timeout() {
    let (url, _raw) = server(|s| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    })
    .await;
    let transport =
        ReqwestTransport::with_timeouts(Duration::from_secs(5), Duration::from_millis(300))
            .unwrap();
    let err = guard("the timeout", transport.send(request(url)))
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::Timeout);
}

#[tokio::test]
async fn a_hang_up_after_the_request_is_connection_lost() {
    let (url, _raw) = server(|s| async move { drop(s) }).await;
    let err = guard("the failure", transport().send(request(url)))
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::ConnectionLost);
}

#[tokio::test]
async fn a_truncated_body_is_connection_lost() {
    let (url, _raw) = server(|mut s| async move {
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"access_")
            .await
            .unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    })
    .await;
    let err = guard("the failure", transport().send(request(url)))
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::ConnectionLost);
}

#[tokio::test]
async fn an_oversize_body_is_refused_unread() {
    // Declared too long.
    let (url, _raw) = server(|mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    })
    .await;
    let err = guard("the failure", transport().send(request(url)))
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::TooLarge);

    // Chunked, growing past the cap.
    let (url, _raw) = server(|mut s| async move {
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        let chunk = format!("{:x}\r\n{}\r\n", 4096, "x".repeat(4096));
        for _ in 0..64 {
            if s.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
    })
    .await;
    let small = transport().max_response_bytes(16 * 1024);
    let err = guard("the failure", small.send(request(url)))
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::TooLarge);
}

#[test]
fn json_content_types() {
    assert!(is_json_content_type(b"application/json"));
    assert!(is_json_content_type(b"Application/JSON; charset=utf-8"));
    assert!(!is_json_content_type(b"text/plain"));
    assert!(!is_json_content_type(b"application/problem+json"));
    assert!(!is_json_content_type(b""));
}

#[test]
fn debug_output_never_shows_secrets() {
    let req = request("http://h/x".to_owned());
    let shown = format!("{req:?}");
    assert!(shown.contains("Authorization: <redacted>"), "{shown}");
    assert!(!shown.contains("tok.en"), "{shown}");
    assert!(!shown.contains("refresh_token"), "{shown}");
}
