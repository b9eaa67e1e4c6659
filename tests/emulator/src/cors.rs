//! CORS for browser clients: a page served from another origin (a test
//! page on `http://127.0.0.1:<port>`) calls the emulator with `fetch`, and
//! the browser first sends a preflight `OPTIONS` because the requests carry
//! JSON and custom headers. Only origins listed in
//! [`EmulatorConfig::cors_allowed_origins`](crate::EmulatorConfig) get
//! CORS headers (`*` allows any); by default none does, so non-browser
//! tests see exactly the responses they always did.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::Shared;

/// Request headers the paywall client sends (docs/protocol.md §1.2).
const ALLOWED_HEADERS: &str =
    "accept, authorization, content-type, idempotency-key, x-paywall-id, x-sdk-version";

/// Answers preflights and marks responses for allowed origins; everything
/// else passes through untouched (outermost layer: a preflight is neither
/// logged nor faulted, as a real gateway answers it before the app).
pub(crate) async fn layer(
    AxState(shared): AxState<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let allowed = origin
        .as_ref()
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| {
            shared.with_state(|s| {
                s.config
                    .cors_allowed_origins
                    .iter()
                    .any(|a| a == "*" || a.eq_ignore_ascii_case(o))
            })
        });
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut response = Response::new(Body::empty());
        if allowed {
            *response.status_mut() = StatusCode::NO_CONTENT;
            let h = response.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, GET"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOWED_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        } else {
            *response.status_mut() = StatusCode::FORBIDDEN;
        }
        return mark(response, origin.filter(|_| allowed));
    }
    let response = next.run(request).await;
    mark(response, origin.filter(|_| allowed))
}

fn mark(mut response: Response, origin: Option<HeaderValue>) -> Response {
    let h = response.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    response
}
