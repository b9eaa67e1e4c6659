//! Helpers shared by the integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::{Future, poll_fn};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_core::Stream;
use paywall_auth_emulator::{Emulator, EmulatorConfig, Route};
use paywall_auth_tokio::{
    AuthClient, AuthEvent, HttpRequest, HttpResponse, RecordKey, Store, Transport, TransportError,
};

pub const PID: &str = "pw_demo";

/// Failure guard for anything that should happen "soon"; never a timing
/// assertion.
pub const GUARD: Duration = Duration::from_secs(30);

pub fn session_key() -> String {
    RecordKey::Session
        .storage_key(PID)
        .unwrap()
        .as_str()
        .to_owned()
}

pub fn anon_key() -> String {
    RecordKey::AnonRefreshToken
        .storage_key(PID)
        .unwrap()
        .as_str()
        .to_owned()
}

pub async fn emulator() -> Emulator {
    emulator_with(EmulatorConfig::default()).await
}

pub async fn emulator_with(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.unwrap()
}

/// A client on `store`, with the defaults of the crate except a request
/// timeout that only guards against a hung test.
pub async fn client<S: Store>(emulator: &Emulator, store: S) -> AuthClient {
    AuthClient::builder(emulator.origin(), PID)
        .store(store)
        .request_timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap()
}

/// Routes of the requests the emulator saw, in order.
pub fn routes(emulator: &Emulator) -> Vec<Route> {
    emulator
        .requests()
        .iter()
        .map(|r| r.route.expect("unknown route"))
        .collect()
}

/// Awaits `future` or fails the test after [`GUARD`].
pub async fn guard<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(GUARD, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Polls `condition` until it holds (failure guard: [`GUARD`]).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    guard(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// The next item of a stream, guarded.
pub async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    guard(
        "the next stream item",
        poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)),
    )
    .await
}

/// Items already queued on a stream, without waiting.
pub fn queued<S: Stream + Unpin>(stream: &mut S) -> Vec<S::Item> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut items = Vec::new();
    while let std::task::Poll::Ready(Some(item)) = Pin::new(&mut *stream).poll_next(&mut cx) {
        items.push(item);
    }
    items
}

pub fn change_names(events: &[AuthEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.change.as_str()).collect()
}

/// Every record file of a file store directory (the lock file excluded),
/// for byte comparisons.
/// The permission bits of a file (records and traces must be 0600).
#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != ".lock")
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

type Handler = dyn Fn(&HttpRequest) -> Result<HttpResponse, TransportError> + Send + Sync;

/// A transport answered by a closure, recording every request.
#[derive(Clone)]
pub struct FakeTransport {
    handler: Arc<Handler>,
    pub log: Arc<Mutex<Vec<HttpRequest>>>,
}

impl FakeTransport {
    pub fn new(
        handler: impl Fn(&HttpRequest) -> Result<HttpResponse, TransportError> + Send + Sync + 'static,
    ) -> Self {
        FakeTransport {
            handler: Arc::new(handler),
            log: Arc::default(),
        }
    }

    pub fn requests(&self) -> Vec<HttpRequest> {
        self.log.lock().unwrap().clone()
    }
}

impl Transport for FakeTransport {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        self.log.lock().unwrap().push(request.clone());
        (self.handler)(&request)
    }
}

pub fn json(status: u16, body: &str) -> Result<HttpResponse, TransportError> {
    Ok(HttpResponse {
        status,
        content_type_json: true,
        body: body.as_bytes().to_vec().into(),
        reason: "".into(),
    })
}

/// A token reply for a guest, as the backend sends it.
pub fn token_body(access: &str, refresh: &str, user_id: &str) -> String {
    format!(
        r#"{{"access_token":"{access}","refresh_token":"{refresh}","expires_in":3600,"expires_at":null,"token_type":"bearer","user":{{"id":"{user_id}","email":null,"is_anonymous":true}}}}"#
    )
}

/// The default transport behind a gate: no request leaves before the test
/// opens it. Lets a test queue many commands first, deterministically.
#[derive(Clone)]
pub struct GatedTransport {
    inner: paywall_auth_tokio::ReqwestTransport,
    gate: Arc<tokio::sync::Semaphore>,
}

impl GatedTransport {
    pub fn closed() -> Self {
        GatedTransport {
            inner: paywall_auth_tokio::ReqwestTransport::new().unwrap(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }

    /// Lets `n` more requests through.
    pub fn open(&self, n: usize) {
        self.gate.add_permits(n);
    }
}

impl Transport for GatedTransport {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        if let Ok(permit) = self.gate.acquire().await {
            permit.forget();
        }
        self.inner.send(request).await
    }
}

/// Polls every future once (so each call has handed its command to the
/// driver: `AuthClient` methods send before their first await), then runs
/// `between`, then awaits them all.
pub async fn start_all_then<F: Future>(futures: Vec<F>, between: impl FnOnce()) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut done: Vec<Option<F::Output>> = Vec::new();
    for f in &mut futures {
        done.push(match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        });
    }
    between();
    let mut outputs = Vec::new();
    for (f, out) in futures.into_iter().zip(done) {
        outputs.push(match out {
            Some(out) => out,
            None => guard("a started call", f).await,
        });
    }
    outputs
}
