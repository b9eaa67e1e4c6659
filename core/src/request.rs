//! Requests the machine asks the adapter to send.
//!
//! The core decides every byte that matters — path, headers, body — so all
//! adapters send the same requests; an adapter only adds the origin and moves
//! the bytes.

use heapless::String;

use crate::error::{CapacityError, Field};
use crate::limits::CAPTCHA_MAX;
use crate::limits::PAYWALL_ID_MAX;
use crate::secret::Secret;
use crate::session::{AccessToken, Password, RefreshToken, UserMeta};

/// The SDK version sent as `X-SDK-Version`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Longest path the core produces.
pub const PATH_MAX: usize = PAYWALL_ID_MAX + 48;

/// Identifies one request; answer it with exactly one of
/// [`Machine::handle_response`](crate::Machine::handle_response) or
/// [`Machine::handle_transport_error`](crate::Machine::handle_transport_error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RequestId(pub u32);

/// The backend routes this client uses (docs/protocol.md §3). All are `POST`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Route {
    /// `/auth/anonymous/signin`
    AnonymousSignIn,
    /// `/auth/refresh`
    Refresh,
    /// `/auth/anonymous/upgrade`
    AnonymousUpgrade,
    /// `/auth/signout`
    SignOut,
}

impl Route {
    /// The route below `/api/v1/paywall/{pid}/`.
    pub const fn suffix(self) -> &'static str {
        match self {
            Route::AnonymousSignIn => "auth/anonymous/signin",
            Route::Refresh => "auth/refresh",
            Route::AnonymousUpgrade => "auth/anonymous/upgrade",
            Route::SignOut => "auth/signout",
        }
    }
}

/// The JSON body of a request, still as data; [`Request::write_body`]
/// renders it.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// No body and no `Content-Type` (sign-out).
    Empty,
    /// `{captcha_token?, visitor_id?, user_meta?}`
    AnonymousSignIn {
        /// Sent only when non-empty.
        captcha_token: Option<&'a Secret<CAPTCHA_MAX>>,
        /// Sent only when at least 16 bytes (§3).
        visitor_id: Option<&'a str>,
        /// Sent only when non-empty.
        user_meta: Option<&'a UserMeta>,
    },
    /// `{refresh_token}`
    Refresh {
        /// The token being spent.
        refresh_token: &'a RefreshToken,
    },
    /// `{email, password, user_meta?}`
    AnonymousUpgrade {
        /// New email of the account.
        email: &'a str,
        /// New password.
        password: &'a Password,
        /// Sent only when non-empty.
        user_meta: Option<&'a UserMeta>,
    },
}

/// One header of a request. The value on the wire is `prefix` + `value`
/// (so `Authorization: Bearer <token>` needs no concatenation buffer).
#[derive(Clone, Copy)]
pub struct Header<'a> {
    /// Header name in the reference casing.
    pub name: &'static str,
    /// Fixed text before the value (`"Bearer "` or empty).
    pub prefix: &'static str,
    /// The value.
    pub value: &'a str,
}

impl Header<'_> {
    /// Whether the value can go on the wire: no CR, LF, NUL or other
    /// control character (tab excepted). Values come from the server (an
    /// access token) and the caller (an idempotency key); a line break would
    /// inject header lines. The HTTP/1.1 writer refuses such a value, and an
    /// adapter that hands headers to another HTTP stack (`fetch`, a tokio
    /// `Transport`) checks it here, so every adapter refuses the same
    /// requests.
    ///
    /// ```
    /// use paywall_auth::Header;
    /// let bearer = |value| Header { name: "Authorization", prefix: "Bearer ", value };
    /// assert!(bearer("a.b\tc").has_valid_value());
    /// assert!(!bearer("a\nX-Injected: 1").has_valid_value());
    /// assert!(!bearer("a\r").has_valid_value());
    /// ```
    pub fn has_valid_value(&self) -> bool {
        crate::codec::http1::is_field_text(self.value)
    }
}

impl core::fmt::Debug for Header<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The bearer is a secret; everything else is safe to print.
        if self.name == "Authorization" {
            write!(f, "{}: {}<redacted>", self.name, self.prefix)
        } else {
            write!(f, "{}: {}{}", self.name, self.prefix, self.value)
        }
    }
}

/// A request to send. Borrowed from the machine: encode it (path, headers,
/// body) before feeding the next input.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Answer with this id.
    pub id: RequestId,
    /// Which endpoint.
    pub route: Route,
    pub(crate) paywall_id: &'a str,
    pub(crate) bearer: Option<&'a AccessToken>,
    pub(crate) idempotency_key: Option<&'a str>,
    /// The body, as data.
    pub body: Body<'a>,
}

impl<'a> Request<'a> {
    /// Always `POST` for auth routes.
    pub const fn method(&self) -> &'static str {
        "POST"
    }

    /// Absolute path: `/api/v1/paywall/{pid}/auth/…`. The paywall id is
    /// interpolated verbatim, as the reference does; it was validated at
    /// configuration time to contain only URL-safe bytes.
    pub fn path(&self) -> Result<String<PATH_MAX>, CapacityError> {
        let too_long = CapacityError {
            field: Field::PaywallId,
            capacity: PAYWALL_ID_MAX,
            len: self.paywall_id.len(),
        };
        // Plain concatenation rather than `write!`: it keeps `core::fmt` out
        // of firmware that never formats anything else.
        crate::secret::concat([
            "/api/v1/paywall/",
            self.paywall_id,
            "/",
            self.route.suffix(),
        ])
        .ok_or(too_long)
    }

    /// Whether the request carries a JSON body (and so `Content-Type`).
    pub fn has_body(&self) -> bool {
        !matches!(self.body, Body::Empty)
    }

    /// The headers of docs/protocol.md §1.2, in the reference order: `Accept`,
    /// `X-SDK-Version`, `X-Paywall-Id`, `Content-Type` (only with a body),
    /// `Authorization` (only with a bearer), `Idempotency-Key` (only when the
    /// caller gave one).
    pub fn headers(&self) -> impl Iterator<Item = Header<'a>> + 'a {
        let h = |name, value| {
            Some(Header {
                name,
                prefix: "",
                value,
            })
        };
        [
            h("Accept", "application/json"),
            h("X-SDK-Version", SDK_VERSION),
            h("X-Paywall-Id", self.paywall_id),
            if self.has_body() {
                h("Content-Type", "application/json")
            } else {
                None
            },
            self.bearer.map(|t| Header {
                name: "Authorization",
                prefix: "Bearer ",
                value: t.expose(),
            }),
            self.idempotency_key.and_then(|k| h("Idempotency-Key", k)),
        ]
        .into_iter()
        .flatten()
    }

    /// The bearer token, when the route needs one.
    pub fn bearer(&self) -> Option<&'a AccessToken> {
        self.bearer
    }

    /// The `Idempotency-Key`, when the caller gave one.
    pub fn idempotency_key(&self) -> Option<&'a str> {
        self.idempotency_key
    }

    /// Renders the compact JSON body into `buf` and returns its length
    /// (0 for [`Body::Empty`]). Fails if `buf` is too small.
    pub fn write_body(&self, buf: &mut [u8]) -> Result<usize, CapacityError> {
        crate::codec::json::encode_body(&self.body, buf)
    }
}
