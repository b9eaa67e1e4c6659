//! Public data types: routes, faults, and the records the inspection API hands out.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The backend routes the emulator implements, all `POST` under
/// `/api/v1/paywall/{pid}/auth/`.
///
/// A route is the unit of fault injection and of request counting, so it is
/// a closed enum rather than a path string: a typo in a test then fails to
/// compile instead of silently matching nothing. In JSON a route is named
/// after its path: `anonymous_signin`, `refresh`, `upgrade`, `signout`,
/// `revoke_all`, `email_signin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `anonymous/signin`: creates a fresh anonymous user and session.
    #[serde(rename = "anonymous_signin")]
    AnonymousSignIn,
    /// `refresh`: rotates a refresh token.
    Refresh,
    /// `anonymous/upgrade`: attaches email and password to an anonymous user.
    Upgrade,
    /// `signout`: revokes the Bearer's session.
    #[serde(rename = "signout")]
    SignOut,
    /// `revoke-all`: revokes every session of the Bearer's user.
    RevokeAll,
    /// `email/signin`: password sign-in to an upgraded (named) account.
    #[serde(rename = "email_signin")]
    EmailSignIn,
}

impl Route {
    /// Every route, in a stable order.
    pub const ALL: [Route; 6] = [
        Route::AnonymousSignIn,
        Route::Refresh,
        Route::Upgrade,
        Route::SignOut,
        Route::RevokeAll,
        Route::EmailSignIn,
    ];

    /// The axum path template of the route, with `{pid}` as the paywall id.
    pub const fn path_template(self) -> &'static str {
        match self {
            Route::AnonymousSignIn => "/api/v1/paywall/{pid}/auth/anonymous/signin",
            Route::Refresh => "/api/v1/paywall/{pid}/auth/refresh",
            Route::Upgrade => "/api/v1/paywall/{pid}/auth/anonymous/upgrade",
            Route::SignOut => "/api/v1/paywall/{pid}/auth/signout",
            Route::RevokeAll => "/api/v1/paywall/{pid}/auth/revoke-all",
            Route::EmailSignIn => "/api/v1/paywall/{pid}/auth/email/signin",
        }
    }

    /// The concrete path of the route for paywall `pid`.
    pub fn path(self, pid: &str) -> String {
        self.path_template().replace("{pid}", pid)
    }

    /// Maps an axum `MatchedPath` back to the route it was registered for.
    pub(crate) fn from_template(template: &str) -> Option<Route> {
        Route::ALL
            .into_iter()
            .find(|route| route.path_template() == template)
    }
}

/// One injected misbehaviour, consumed by one request to the route it was
/// queued for (see [`Emulator::inject`](crate::Emulator::inject)).
///
/// Faults come in two families, and the difference matters for the client
/// scenarios they model:
/// - *before apply* ([`Latency`](Fault::Latency) delays, then proceeds;
///   [`Status`](Fault::Status) and [`DropBeforeApply`](Fault::DropBeforeApply)
///   replace the request): the backend state is untouched, as when a proxy
///   or load balancer fails.
/// - *after apply* (all others): the request is fully processed, with its
///   side effects (a refresh rotates, an upgrade sticks, the reply is stored
///   for idempotent replay), and only the reply is damaged or withheld. This
///   is the nasty case for a client: it cannot tell from what it received
///   whether its request took effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "FaultSpec", from = "FaultSpec")]
pub enum Fault {
    /// Wait this long before handling the request, then handle it normally.
    Latency(Duration),
    /// Do not handle the request; answer this HTTP status with the error
    /// envelope `{"code":<code>,"message":"injected fault"}`. An empty code
    /// sends an empty body instead (the "bare 503 from a proxy" case).
    /// Statuses that `http` cannot represent are sent as 500.
    Status(u16, Cow<'static, str>),
    /// Close the TCP connection without a response and without handling the
    /// request.
    DropBeforeApply,
    /// Handle the request (side effects happen), then close the TCP
    /// connection without sending the response.
    DropAfterApply,
    /// Handle the request, then answer 200 with `Content-Type:
    /// application/json` and a syntactically invalid JSON body (a strict
    /// prefix of the real one).
    MalformedJson,
    /// Handle the request, then answer 200 with the real body but
    /// `Content-Type: text/plain`.
    WrongContentType,
    /// Handle the request, then send the real status and headers with a
    /// `Content-Length` of the full body, only the first half of the body,
    /// and close the connection.
    TruncatedBody,
    /// Handle the request and, if the reply carries an `access_token`, grow
    /// that token to at least this many KiB. The token stays a valid, signed
    /// JWT (the padding is an extra `pad` claim), so it still works as a
    /// Bearer: the fault tests size limits, not token validity.
    OversizeToken(usize),
}

impl Fault {
    /// Shorthand for [`Fault::Status`] with a borrowed or owned code.
    pub fn status(status: u16, code: impl Into<Cow<'static, str>>) -> Fault {
        Fault::Status(status, code.into())
    }
}

/// Wire form of [`Fault`] for the HTTP inspection API and the request log:
/// `{"kind":"latency","ms":250}`, `{"kind":"status","status":503,"code":"x"}`,
/// `{"kind":"drop_before_apply"}`, `{"kind":"oversize_token","kib":64}`, ...
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum FaultSpec {
    Latency { ms: u64 },
    Status { status: u16, code: String },
    DropBeforeApply,
    DropAfterApply,
    MalformedJson,
    WrongContentType,
    TruncatedBody,
    OversizeToken { kib: usize },
}

impl From<Fault> for FaultSpec {
    fn from(fault: Fault) -> Self {
        match fault {
            Fault::Latency(delay) => FaultSpec::Latency {
                ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            },
            Fault::Status(status, code) => FaultSpec::Status {
                status,
                code: code.into_owned(),
            },
            Fault::DropBeforeApply => FaultSpec::DropBeforeApply,
            Fault::DropAfterApply => FaultSpec::DropAfterApply,
            Fault::MalformedJson => FaultSpec::MalformedJson,
            Fault::WrongContentType => FaultSpec::WrongContentType,
            Fault::TruncatedBody => FaultSpec::TruncatedBody,
            Fault::OversizeToken(kib) => FaultSpec::OversizeToken { kib },
        }
    }
}

impl From<FaultSpec> for Fault {
    fn from(spec: FaultSpec) -> Self {
        match spec {
            FaultSpec::Latency { ms } => Fault::Latency(Duration::from_millis(ms)),
            FaultSpec::Status { status, code } => Fault::Status(status, Cow::Owned(code)),
            FaultSpec::DropBeforeApply => Fault::DropBeforeApply,
            FaultSpec::DropAfterApply => Fault::DropAfterApply,
            FaultSpec::MalformedJson => Fault::MalformedJson,
            FaultSpec::WrongContentType => Fault::WrongContentType,
            FaultSpec::TruncatedBody => Fault::TruncatedBody,
            FaultSpec::OversizeToken { kib } => Fault::OversizeToken(kib),
        }
    }
}

/// One request as the emulator saw it. Requests to `/__emulator/` are not
/// logged, so the log is exactly what a client sent to "the backend".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedRequest {
    /// Arrival order, starting at 1; never reused, not even after
    /// [`Emulator::clear_log`](crate::Emulator::clear_log).
    pub seq: u64,
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request path without the query string.
    pub path: String,
    /// The route the path matched, if any.
    pub route: Option<Route>,
    /// Headers with lowercase names; repeated headers are joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// The raw body (lossily decoded as UTF-8), for byte-exact assertions.
    pub body: String,
    /// Status sent, or `None` when the connection was dropped without a
    /// response (or the request is still being handled).
    pub status: Option<u16>,
    /// The fault this request consumed, if any.
    pub fault: Option<Fault>,
    /// True when the reply was replayed from the idempotency store instead of
    /// being computed, i.e. the request had no side effect.
    pub idempotent_replay: bool,
}

impl LoggedRequest {
    /// Header value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// A row of the users table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserRecord {
    /// UUID v4; never changes, not even on upgrade.
    pub id: String,
    /// Confirmed email (lowercased), `None` for anonymous users.
    pub email: Option<String>,
    /// True until an email is attached (directly, or by confirmation).
    pub is_anonymous: bool,
    /// Email waiting for [`Emulator::confirm_email`](crate::Emulator::confirm_email).
    pub pending_email: Option<String>,
    /// Whether a password was set by an upgrade.
    pub has_password: bool,
    /// Creation time, Unix seconds on the emulator clock.
    pub created_at: u64,
    /// Credits granted at creation; never changes. A test that sees the same
    /// balance row before and after an upgrade has proved the account (not
    /// just the id string) survived.
    pub balance: i64,
    /// `user_meta` sent at sign-in, merged with any sent at upgrade.
    pub user_meta: Map<String, Value>,
    /// Last `visitor_id` sent with a sign-in, if any.
    pub visitor_id: Option<String>,
    /// `captcha_token` sent with the anonymous sign-in, if any.
    pub captcha_token: Option<String>,
}

/// A row of the sessions table: one refresh-token family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionRecord {
    /// Session id, also carried in the access token's `session_id` claim.
    pub id: String,
    /// Owner of the session.
    pub user_id: String,
    /// The only refresh token of the family that rotates.
    pub current_refresh_token: String,
    /// Every token of the family already rotated out, oldest first.
    pub spent_refresh_tokens: Vec<String>,
    /// Set by sign-out, revoke-all, or reuse of a spent token outside the
    /// reuse interval. A revoked family accepts neither its refresh tokens
    /// nor its access tokens.
    pub revoked: bool,
    /// Creation time, Unix seconds on the emulator clock.
    pub created_at: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn fault_json_round_trips_every_kind() {
        let faults = [
            Fault::Latency(Duration::from_millis(250)),
            Fault::status(503, "upstream"),
            Fault::DropBeforeApply,
            Fault::DropAfterApply,
            Fault::MalformedJson,
            Fault::WrongContentType,
            Fault::TruncatedBody,
            Fault::OversizeToken(64),
        ];
        for fault in faults {
            let json = serde_json::to_value(&fault).unwrap();
            assert_eq!(serde_json::from_value::<Fault>(json).unwrap(), fault);
        }
        assert_eq!(
            serde_json::to_value(Fault::status(429, "rate_limited")).unwrap(),
            serde_json::json!({ "kind": "status", "status": 429, "code": "rate_limited" })
        );
    }

    #[test]
    fn routes_map_to_and_from_their_templates() {
        for route in Route::ALL {
            assert_eq!(Route::from_template(route.path_template()), Some(route));
        }
        assert_eq!(
            Route::RevokeAll.path("pw_1"),
            "/api/v1/paywall/pw_1/auth/revoke-all"
        );
        assert_eq!(
            serde_json::to_value(Route::AnonymousSignIn).unwrap(),
            "anonymous_signin"
        );
    }
}
