//! HTTP surface: the axum router, the logging/fault middleware, the
//! inspection API under `/__emulator/`, and the connection loop that can hang
//! up on a client.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{FromRequestParts, MatchedPath, Path, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body::Frame;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Shared;
use crate::model::{Fault, LoggedRequest, Route};
use crate::state::Reply;

/// Largest request body the emulator reads; the real requests are tiny.
const MAX_REQUEST_BODY: usize = 1 << 20;

/// How long a truncated body lingers after its first half before the
/// connection is cut: long enough for hyper to flush the partial bytes, so
/// the client really sees headers plus a short body rather than nothing.
const TRUNCATION_GRACE: Duration = Duration::from_millis(20);

type Emu = AxState<Arc<Shared>>;

/// Response extension asking the connection loop to close the TCP connection
/// instead of sending this response.
#[derive(Debug, Clone, Copy)]
struct DropConnection;

/// Response extension: the reply came from the idempotency store.
#[derive(Debug, Clone, Copy)]
struct Replayed;

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = json_response(self.status, &self.body);
        if self.replayed {
            response.extensions_mut().insert(Replayed);
        }
        response
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    Reply::error(status, code, message).into_response()
}

/// The `{pid}` path segment. axum's own `Path` rejection is a plain-text
/// 400 (e.g. for a percent-encoded invalid UTF-8 segment); no paywall has
/// such an id, so this answers the JSON 404 the protocol expects instead.
struct Pid(String);

impl<S: Send + Sync> FromRequestParts<S> for Pid {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(pid)) => Ok(Pid(pid)),
            Err(_) => Err(error_response(
                StatusCode::NOT_FOUND,
                "paywall_not_found",
                "Malformed paywall id",
            )),
        }
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            Route::AnonymousSignIn.path_template(),
            post(|emu: Emu, Pid(pid): Pid, body: Bytes| async move {
                emu.0.with_state(|s| s.anonymous_signin(&pid, &body))
            }),
        )
        .route(
            Route::Refresh.path_template(),
            post(|emu: Emu, Pid(pid): Pid, body: Bytes| async move {
                emu.0.with_state(|s| s.refresh(&pid, &body))
            }),
        )
        .route(
            Route::Upgrade.path_template(),
            post(
                |emu: Emu, Pid(pid): Pid, headers: HeaderMap, body: Bytes| async move {
                    emu.0.with_state(|s| s.upgrade(&pid, &headers, &body))
                },
            ),
        )
        .route(
            Route::SignOut.path_template(),
            post(|emu: Emu, Pid(pid): Pid, headers: HeaderMap| async move {
                emu.0.with_state(|s| s.signout(&pid, &headers))
            }),
        )
        .route(
            Route::RevokeAll.path_template(),
            post(|emu: Emu, Pid(pid): Pid, headers: HeaderMap| async move {
                emu.0.with_state(|s| s.revoke_all(&pid, &headers))
            }),
        )
        .route(
            Route::EmailSignIn.path_template(),
            post(
                |emu: Emu, Pid(pid): Pid, headers: HeaderMap, body: Bytes| async move {
                    emu.0.with_state(|s| s.email_signin(&pid, &headers, &body))
                },
            ),
        )
        .route("/__emulator/requests", get(inspect_requests))
        .route("/__emulator/users", get(inspect_users))
        .route("/__emulator/sessions", get(inspect_sessions))
        .route("/__emulator/counters", get(inspect_counters))
        .route("/__emulator/confirm", post(control_confirm))
        .route("/__emulator/faults", post(control_faults))
        .route(
            "/__emulator/config",
            get(inspect_config).post(control_config),
        )
        .route("/__emulator/reset-log", post(control_reset_log))
        .route("/__emulator/advance-clock", post(control_advance_clock))
        .route("/__emulator/expire-access-tokens", post(control_expire))
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "not_found", "No such route") })
        .method_not_allowed_fallback(|| async {
            error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            )
        })
        // Outermost, so every API request is logged and can be faulted,
        // whether or not a route matched.
        .layer(from_fn_with_state(shared.clone(), observe))
        // Outside the log: a preflight is the browser's, not the client's.
        .layer(from_fn_with_state(shared.clone(), crate::cors::layer))
        .with_state(shared)
}

/// Logs every API request and applies the fault queued for its route.
async fn observe(AxState(shared): Emu, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/__emulator/") {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|matched| Route::from_template(matched.as_str()));
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, MAX_REQUEST_BODY).await;
    let mut headers = BTreeMap::<String, String>::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let entry = LoggedRequest {
        seq: 0,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        route,
        headers,
        body: body
            .as_ref()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .unwrap_or_default(),
        status: None,
        fault: None,
        idempotent_replay: false,
    };
    // Only a POST to a known route consumes a fault: a stray GET from a
    // browser must not eat the fault a test queued for its client.
    let (seq, fault) = shared.with_state(|state| {
        let fault = route
            .filter(|_| parts.method == Method::POST)
            .and_then(|route| state.take_fault(route));
        let seq = state.log_request(LoggedRequest {
            fault: fault.clone(),
            ..entry
        });
        (seq, fault)
    });
    let finish = |response: Response| {
        let status = response
            .extensions()
            .get::<DropConnection>()
            .is_none()
            .then(|| response.status().as_u16());
        let replayed = response.extensions().get::<Replayed>().is_some();
        shared.with_state(|state| state.finish_request(seq, status, replayed));
        response
    };
    let Ok(body) = body else {
        return finish(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Request body too large or unreadable",
        ));
    };

    match &fault {
        Some(Fault::Latency(delay)) => tokio::time::sleep(*delay).await,
        Some(Fault::DropBeforeApply) => return finish(drop_connection()),
        Some(Fault::Status(status, code)) => return finish(injected_status(*status, code)),
        _ => {}
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let response = match fault {
        Some(Fault::DropAfterApply) => drop_connection(),
        Some(Fault::MalformedJson) => malformed_json(response).await,
        Some(Fault::WrongContentType) => wrong_content_type(response),
        Some(Fault::TruncatedBody) => truncated(response).await,
        Some(Fault::OversizeToken(kib)) => oversize_token(&shared, response, kib).await,
        _ => response,
    };
    finish(response)
}

fn drop_connection() -> Response {
    let mut response = Response::new(Body::empty());
    response.extensions_mut().insert(DropConnection);
    response
}

fn injected_status(status: u16, code: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code.is_empty() {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    } else {
        error_response(status, code, "injected fault")
    }
}

/// Buffers a response the emulator itself produced (always a full, small
/// JSON body, so reading it cannot fail in practice).
async fn into_parts_and_bytes(response: Response) -> (axum::http::response::Parts, Bytes) {
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    (parts, bytes)
}

async fn malformed_json(response: Response) -> Response {
    let (mut parts, bytes) = into_parts_and_bytes(response).await;
    // A strict, non-empty prefix of a JSON object is never valid JSON: the
    // closing brace is missing.
    let body = if bytes.len() >= 2 {
        bytes.slice(..bytes.len() / 2)
    } else {
        Bytes::from_static(b"{")
    };
    parts.status = StatusCode::OK;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

fn wrong_content_type(mut response: Response) -> Response {
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn truncated(response: Response) -> Response {
    let (mut parts, bytes) = into_parts_and_bytes(response).await;
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let half = bytes.slice(..bytes.len() / 2);
    Response::from_parts(parts, Body::new(TruncatedBody::new(half)))
}

async fn oversize_token(shared: &Shared, response: Response, kib: usize) -> Response {
    let (mut parts, bytes) = into_parts_and_bytes(response).await;
    let mut body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let padded = body
        .get("access_token")
        .and_then(Value::as_str)
        .and_then(|token| {
            shared.with_state(|state| state.pad_access_token(token, kib.saturating_mul(1024)))
        });
    let bytes = match padded {
        Some(token) => {
            body["access_token"] = Value::String(token);
            Bytes::from(body.to_string())
        }
        // Not a token reply (an error, a sign-out ack): nothing to grow.
        None => bytes,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}

/// A body that yields its first part, waits [`TRUNCATION_GRACE`], then fails,
/// which makes hyper abort the connection short of the declared
/// `Content-Length`.
struct TruncatedBody {
    head: Option<Bytes>,
    grace: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TruncatedBody {
    fn new(head: Bytes) -> TruncatedBody {
        TruncatedBody {
            head: Some(head),
            grace: None,
        }
    }
}

#[derive(Debug)]
struct Truncated;

impl std::fmt::Display for Truncated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("body truncated by fault injection")
    }
}

impl std::error::Error for Truncated {}

impl http_body::Body for TruncatedBody {
    type Data = Bytes;
    type Error = Truncated;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Truncated>>> {
        if let Some(head) = self.head.take()
            && !head.is_empty()
        {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        let grace = self
            .grace
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(TRUNCATION_GRACE)));
        ready!(grace.as_mut().poll(cx));
        Poll::Ready(Some(Err(Truncated)))
    }
}

// ---- inspection and control API -------------------------------------------

fn parse_control<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|err| {
        Reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("Malformed control request: {err}"),
        )
    })
}

fn json_ok(value: impl serde::Serialize) -> Response {
    match serde_json::to_value(value) {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(err) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &err.to_string(),
        ),
    }
}

async fn inspect_requests(AxState(shared): Emu) -> Response {
    json_ok(shared.with_state(|s| s.requests()))
}

async fn inspect_users(AxState(shared): Emu) -> Response {
    json_ok(shared.with_state(|s| s.users()))
}

async fn inspect_sessions(AxState(shared): Emu) -> Response {
    json_ok(shared.with_state(|s| s.sessions()))
}

async fn inspect_counters(AxState(shared): Emu) -> Response {
    json_ok(json!({
        "anonymous_users_created": shared.with_state(|s| s.anonymous_users_created()),
    }))
}

async fn control_confirm(AxState(shared): Emu, body: Bytes) -> Response {
    #[derive(Deserialize)]
    struct Confirm {
        email: String,
    }
    let request: Confirm = match parse_control(&body) {
        Ok(request) => request,
        Err(reply) => return reply.into_response(),
    };
    if shared.with_state(|s| s.confirm_email(&request.email)) {
        json_ok(json!({ "confirmed": true }))
    } else {
        error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "No user is waiting for confirmation of this email",
        )
    }
}

async fn control_faults(AxState(shared): Emu, body: Bytes) -> Response {
    /// `{"route":"refresh","fault":{"kind":"drop_after_apply"},"times":2}`,
    /// or `{"clear":true}` to drop every queued fault.
    #[derive(Deserialize)]
    struct Inject {
        #[serde(default)]
        clear: bool,
        route: Option<Route>,
        fault: Option<Fault>,
        times: Option<usize>,
    }
    let request: Inject = match parse_control(&body) {
        Ok(request) => request,
        Err(reply) => return reply.into_response(),
    };
    if request.clear {
        shared.with_state(|s| s.clear_faults());
        return json_ok(json!({ "ok": true }));
    }
    let (Some(route), Some(fault)) = (request.route, request.fault) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Expected `route` and `fault`, or `clear`",
        );
    };
    shared.with_state(|s| s.inject(route, fault, request.times.unwrap_or(1)));
    json_ok(json!({ "ok": true }))
}

fn config_view(shared: &Shared) -> Response {
    shared.with_state(|s| {
        json_ok(json!({
            "paywall_id": s.config.paywall_id,
            "allow_anonymous": s.config.allow_anonymous,
            "confirm_email": s.config.confirm_email,
            "access_ttl_secs": s.config.access_ttl_secs,
            "reuse_interval_ms": u64::try_from(s.config.reuse_interval.as_millis()).unwrap_or(u64::MAX),
            "refresh_checks_anonymous": s.config.refresh_checks_anonymous,
        }))
    })
}

async fn inspect_config(AxState(shared): Emu) -> Response {
    config_view(&shared)
}

async fn control_config(AxState(shared): Emu, body: Bytes) -> Response {
    /// Every key optional; absent keys keep their value. The paywall id and
    /// the JWT secret are fixed for the emulator's lifetime.
    #[derive(Deserialize)]
    struct Patch {
        allow_anonymous: Option<bool>,
        confirm_email: Option<bool>,
        access_ttl_secs: Option<u64>,
        reuse_interval_ms: Option<u64>,
        refresh_checks_anonymous: Option<bool>,
    }
    let patch: Patch = match parse_control(&body) {
        Ok(patch) => patch,
        Err(reply) => return reply.into_response(),
    };
    shared.with_state(|s| {
        let config = &mut s.config;
        config.allow_anonymous = patch.allow_anonymous.unwrap_or(config.allow_anonymous);
        config.confirm_email = patch.confirm_email.unwrap_or(config.confirm_email);
        config.access_ttl_secs = patch.access_ttl_secs.unwrap_or(config.access_ttl_secs);
        if let Some(ms) = patch.reuse_interval_ms {
            config.reuse_interval = Duration::from_millis(ms);
        }
        config.refresh_checks_anonymous = patch
            .refresh_checks_anonymous
            .unwrap_or(config.refresh_checks_anonymous);
    });
    config_view(&shared)
}

async fn control_reset_log(AxState(shared): Emu) -> Response {
    shared.with_state(|s| s.clear_log());
    json_ok(json!({ "ok": true }))
}

async fn control_advance_clock(AxState(shared): Emu, body: Bytes) -> Response {
    #[derive(Deserialize)]
    struct Advance {
        secs: u64,
    }
    match parse_control::<Advance>(&body) {
        Ok(advance) => {
            shared.with_state(|s| s.advance_clock(Duration::from_secs(advance.secs)));
            json_ok(json!({ "ok": true }))
        }
        Err(reply) => reply.into_response(),
    }
}

async fn control_expire(AxState(shared): Emu) -> Response {
    shared.with_state(|s| s.expire_access_tokens());
    json_ok(json!({ "ok": true }))
}

// ---- connection loop ---------------------------------------------------------

/// Error returned to hyper to make it close a connection without a response.
#[derive(Debug)]
struct HangUp;

impl std::fmt::Display for HangUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for HangUp {}

/// Accepts connections until `shutdown` fires (or its sender is dropped).
///
/// This is a hand-written loop rather than `axum::serve` because a fault has
/// to be able to close one TCP connection with no HTTP response on it, which
/// `axum::serve` cannot express: here each connection is a hyper
/// `serve_connection` whose service turns a response marked
/// [`DropConnection`] into an error, and hyper answers a service error by
/// closing the socket without writing anything.
///
/// With `tls`, each connection first completes a TLS handshake in its own
/// task; a client that aborts the handshake (say, because it refused the
/// certificate) never reaches the router, so nothing is logged for it.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Replies are small and the tests measure latency.
                    let _ = stream.set_nodelay(true);
                    let app = app.clone();
                    match tls.clone() {
                        None => connections.spawn(serve_connection(stream, app)),
                        Some(acceptor) => connections.spawn(async move {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_connection(stream, app).await;
                            }
                        }),
                    };
                }
                // Typically EMFILE under a connection storm: back off instead
                // of spinning, then keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    // Dropping the set aborts every connection task, closing their sockets.
    connections.shutdown().await;
}

async fn serve_connection<S>(stream: S, app: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let mut app = app.clone();
            async move {
                let response = match tower::Service::call(&mut app, request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                if response.extensions().get::<DropConnection>().is_some() {
                    Err(HangUp)
                } else {
                    Ok::<_, HangUp>(response)
                }
            }
        });
    // An error here is either our own HangUp or a client going away; both
    // simply end the connection.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}
