//! The faults a real site has (docs/protocol.md §13), each over real
//! loopback HTTP: a guest account claimed by an email on another device, a
//! store that cannot be written, a captive portal's 401, a redirect, a
//! revocation the server refuses, and origins that would send secrets in
//! clear text.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use paywall_auth_emulator::{Fault, Route};
use paywall_auth_tokio::{
    AuthClient, MemoryStore, Notice, Revocation, SignInOptions, SignOutOptions, Store, StoreError,
    UpgradeOutcome, UpgradeRequest,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

#[tokio::test]
async fn a_guest_claimed_by_an_email_is_never_handed_to_the_next_visitor() {
    let emu = emulator().await;
    emu.set_confirm_email(true);
    let store = MemoryStore::new();
    let client = client(&emu, store.clone()).await;
    let mut notices = client.notices();
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let outcome = client
        .upgrade_anonymous_to_email(
            UpgradeRequest::new("visitor@example.com", "hunter2hunter2", Some("k1")).unwrap(),
        )
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        UpgradeOutcome::ConfirmationRequired { .. }
    ));
    // The user confirms on their phone; the kiosk never refreshes meanwhile.
    assert!(emu.confirm_email("visitor@example.com"));
    client.sign_out(SignOutOptions::default()).await.unwrap();
    let signouts_before = emu.count(Route::SignOut);

    // The next visitor taps "continue as guest".
    let next = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert!(next.user.is_anonymous, "a guest sign-in returns a guest");
    assert_ne!(next.user.id, guest.user.id, "not the claimed account");
    assert_eq!(next.user.email, None);
    // The named session the resume minted was revoked, the new guest's
    // token is the one stored, and the application was told.
    eventually("the revocation", || {
        emu.count(Route::SignOut) == signouts_before + 1
    })
    .await;
    assert_eq!(emu.count(Route::AnonymousSignIn), 2);
    let stored = store.get(&anon_key()).await.unwrap().unwrap();
    assert_eq!(stored, next.refresh_token.expose().as_bytes());
    let seen = queued(&mut notices);
    assert!(seen.contains(&Notice::GuestAccountClaimed), "{seen:?}");
    // The named account itself is intact.
    let named = emu.user(&guest.user.id).unwrap();
    assert_eq!(named.email.as_deref(), Some("visitor@example.com"));
    client.shutdown().await;
}

/// A store whose writes fail once armed, as a full disk or a read-only
/// mount does.
#[derive(Clone, Debug, Default)]
struct FailingStore {
    inner: MemoryStore,
    failing: Arc<AtomicBool>,
    writes: Arc<AtomicUsize>,
}

impl Store for FailingStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                op: "write",
                path: format!("/var/lib/kiosk/{key}.tmp").into(),
                source: std::io::Error::from_raw_os_error(28), // ENOSPC
            });
        }
        self.inner.set(key, value).await
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.inner.remove(key).await
    }
}

#[tokio::test]
async fn no_token_is_spent_that_cannot_be_saved() {
    let emu = emulator().await;
    let store = FailingStore::default();
    let client = client(&emu, store.clone()).await;
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let stored = store.inner.get(&anon_key()).await.unwrap();
    store.failing.store(true, Ordering::SeqCst);
    let refreshes = emu.count(Route::Refresh);

    // A refresh: refused before the request, naming the OS cause and path.
    let err = client.refresh().await.expect_err("the disk is full");
    assert_eq!(err.code(), "storage_failed");
    let message = err.to_string();
    assert!(
        message.contains("/var/lib/kiosk/") && message.contains("No space left"),
        "{message}"
    );
    // A stale token: the same.
    emu.expire_access_tokens();
    client.sign_out(SignOutOptions::default()).await.unwrap();
    // A resume: the same, and no new guest either.
    let err = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .expect_err("the disk is full");
    assert_eq!(err.code(), "storage_failed");
    assert_eq!(emu.count(Route::Refresh), refreshes, "no token was spent");
    assert_eq!(emu.count(Route::AnonymousSignIn), 1);
    assert_eq!(store.inner.get(&anon_key()).await.unwrap(), stored);

    // Once the disk has room again, the same guest comes back.
    store.failing.store(false, Ordering::SeqCst);
    let resumed = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(resumed.user.id, guest.user.id);
    client.shutdown().await;
}

/// Serves one canned HTTP answer to every connection; counts connections.
async fn canned(answer: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (origin, hits)
}

#[tokio::test]
async fn a_captive_portal_401_keeps_the_guest() {
    let emu = emulator().await;
    let store = MemoryStore::new();
    let first = client(&emu, store.clone()).await;
    let guest = first
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    first.shutdown().await;
    let before = store.keys();

    // The kiosk's network now lands on a hotel portal.
    let (portal, _) = canned(
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"hotel\"\r\n\
         Content-Type: text/html\r\nContent-Length: 27\r\nConnection: close\r\n\r\n\
         <html>log in first</html>\r\n",
    )
    .await;
    let behind_portal = AuthClient::builder(portal.as_str(), PID)
        .store(store.clone())
        .build()
        .await
        .unwrap();
    let err = behind_portal.refresh().await.expect_err("portal");
    assert_eq!(err.code(), "http_401");
    assert!(behind_portal.session().is_some(), "still signed in");
    assert_eq!(store.keys(), before, "both records kept");
    behind_portal.shutdown().await;

    // Back on the real network: the same guest.
    let back = client(&emu, store.clone()).await;
    back.sign_out(SignOutOptions::default()).await.unwrap();
    let resumed = back
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(resumed.user.id, guest.user.id);
    back.shutdown().await;
}

#[tokio::test]
async fn credentials_never_follow_a_redirect() {
    let (elsewhere, hits) = canned("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
    let redirect: &'static str = Box::leak(
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {elsewhere}/steal\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_boxed_str(),
    );
    let (origin, _) = canned(redirect).await;
    let client = AuthClient::builder(origin.as_str(), PID)
        .build()
        .await
        .unwrap();
    let err = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .expect_err("redirected");
    assert_eq!(err.code(), "redirect_refused");
    assert!(err.to_string().contains("redirect"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the target");
    client.shutdown().await;
}

#[tokio::test]
async fn a_hard_sign_out_says_whether_the_server_revoked() {
    for (fault, code) in [
        (Some(Fault::status(503, "")), Some("http_503")),
        (
            Some(Fault::status(429, "rate_limited")),
            Some("rate_limited"),
        ),
        (Some(Fault::DropBeforeApply), Some("network_error")),
        (None, None),
    ] {
        let emu = emulator().await;
        let store = MemoryStore::new();
        let client = client(&emu, store.clone()).await;
        client
            .sign_in_anonymously(SignInOptions::default())
            .await
            .unwrap();
        if let Some(fault) = fault {
            emu.inject(Route::SignOut, fault, 1);
        }
        let revocation = client
            .sign_out(SignOutOptions {
                forget_anonymous: true,
            })
            .await
            .unwrap();
        // Forgotten locally either way.
        assert!(store.keys().is_empty());
        match code {
            Some(code) => {
                assert_eq!(revocation.revoked(), Some(false), "{code}");
                assert!(
                    matches!(&revocation, Revocation::Failed { code: c, .. } if c == code),
                    "{revocation:?}"
                );
            }
            None => assert_eq!(revocation, Revocation::Revoked),
        }
        client.shutdown().await;
    }
}

#[tokio::test]
async fn plain_http_is_refused_for_remote_hosts_before_any_network_use() {
    let err = AuthClient::builder("http://pay.vendor.example", PID)
        .build()
        .await
        .expect_err("refused");
    assert_eq!(err.code(), "invalid_config");
    let message = err.to_string();
    assert!(message.contains("opt in"), "{message}");
    // Opting in builds (nothing is sent by building).
    AuthClient::builder("http://pay.vendor.example", PID)
        .allow_insecure_http(true)
        .build()
        .await
        .unwrap()
        .shutdown()
        .await;
}
