//! How requests reach the backend: the [`Transport`] trait and the default
//! [`ReqwestTransport`] (rustls with the ring provider, no OpenSSL).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
pub use paywall_auth::TransportError;

/// One HTTP request, fully decided by the core: method, absolute URL, every
/// header and the body. A transport adds only what its HTTP stack requires
/// (`Host`, `Content-Length`).
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Always `POST` for the auth routes.
    pub method: &'static str,
    /// Origin of the client + the core's path.
    pub url: String,
    /// Header names and wire values, in the core's order.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body, empty for body-less requests (sign-out).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bearer and the body (refresh tokens, passwords) are secrets.
        struct Headers<'a>(&'a [(&'static str, String)]);
        impl fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut list = f.debug_list();
                for (name, value) in self.0 {
                    if name.eq_ignore_ascii_case("authorization") {
                        list.entry(&format_args!("{name}: <redacted>"));
                    } else {
                        list.entry(&format_args!("{name}: {value}"));
                    }
                }
                list.finish()
            }
        }
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &Headers(&self.headers))
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The complete answer to an [`HttpRequest`].
#[derive(Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// Whether `Content-Type` contains `application/json`
    /// (case-insensitive), the only condition under which the body is read
    /// as JSON (docs/protocol.md §1.4).
    pub content_type_json: bool,
    /// The whole body.
    pub body: Bytes,
    /// The status text (the HTTP/1.1 reason phrase; `""` when unknown). The
    /// error message when the body carries none (docs/protocol.md §1.5).
    pub reason: Cow<'static, str>,
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Token responses carry secrets: print only the size.
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("content_type_json", &self.content_type_json)
            .field("body_len", &self.body.len())
            .field("reason", &self.reason)
            .finish()
    }
}

/// Whether a `Content-Type` value declares JSON.
pub fn is_json_content_type(value: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"application/json";
    value
        .windows(NEEDLE.len())
        .any(|w| w.eq_ignore_ascii_case(NEEDLE))
}

/// Sends requests. Implement it to put the client on another HTTP stack
/// (or a test double); [`ReqwestTransport`] is the default.
///
/// The client calls `send` from a spawned task per request and answers the
/// core with the result, so `send` may take as long as it needs (the client
/// still bounds it by its request timeout). Map failures below HTTP onto
/// [`TransportError`]:
/// [`Connect`](TransportError::Connect) when the request certainly never
/// left (DNS, refused, TLS handshake), [`Timeout`](TransportError::Timeout)
/// for a deadline, [`ConnectionLost`](TransportError::ConnectionLost) when
/// it may have reached the server (reset, truncated body), and
/// [`BadFraming`](TransportError::BadFraming) for an unusable response.
pub trait Transport: Send + Sync + 'static {
    /// Sends one request and returns the complete response.
    fn send(
        &self,
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, TransportError>> + Send;
}

/// Largest response body [`ReqwestTransport`] reads by default. Token
/// replies are a few KiB; anything bigger than this is refused as
/// [`TransportError::TooLarge`] before it is buffered.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Default deadline to establish a connection (TCP + TLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default deadline for a whole request, connection to last body byte.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The default transport: reqwest over HTTP/1.1 with rustls and the `ring`
/// crypto provider (no OpenSSL, no aws-lc), certificates checked by the
/// platform verifier, a connect timeout and a total timeout per request,
/// and a cap on the response size.
#[derive(Clone, Debug)]
pub struct ReqwestTransport {
    client: reqwest::Client,
    max_response_bytes: usize,
}

impl ReqwestTransport {
    /// A transport with the default timeouts and size cap.
    pub fn new() -> Result<Self, reqwest::Error> {
        Self::with_timeouts(DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT)
    }

    /// A transport with these deadlines: `connect` for TCP + TLS, `total`
    /// for the whole exchange.
    ///
    /// The TLS configuration carries its own `ring` provider: nothing is
    /// installed process-wide, so an application that installs another
    /// rustls provider (aws-lc-rs) before or after is not disturbed.
    /// Redirects are never followed: a 3xx is answered to the core, which
    /// refuses it by name (a redirect would re-send refresh tokens and
    /// passwords to wherever it points, possibly over plain http).
    pub fn with_timeouts(connect: Duration, total: Duration) -> Result<Self, reqwest::Error> {
        let builder = reqwest::Client::builder()
            .connect_timeout(connect.min(total))
            .timeout(total)
            .redirect(reqwest::redirect::Policy::none());
        let builder = match tls_config() {
            Some(tls) => builder.use_preconfigured_tls(tls),
            // No platform roots could be loaded: fall back to reqwest's own
            // (it then needs a process default provider).
            None => {
                install_ring_provider();
                builder
            }
        };
        Ok(Self::from_client(builder.build()?))
    }

    /// Wraps a client configured elsewhere (proxies, extra roots …). If it
    /// uses rustls without a preconfigured TLS config, install a crypto
    /// provider first (see [`install_ring_provider`]). Give it
    /// `.redirect(reqwest::redirect::Policy::none())`: this client's
    /// requests carry secrets that must not follow a redirect.
    pub fn from_client(client: reqwest::Client) -> Self {
        ReqwestTransport {
            client,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// Changes the response size cap.
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max;
        self
    }

    async fn exchange(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let method =
            reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let mut builder = self.client.request(method, &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.as_str());
        }
        if !request.body.is_empty() {
            builder = builder.body(request.body);
        }
        let mut response = builder.send().await.map_err(|e| map_reqwest_error(&e))?;
        let status = response.status().as_u16();
        // reqwest does not expose the server's own phrase; the standard one
        // is what a browser's `statusText` shows for these statuses.
        let reason = Cow::Borrowed(response.status().canonical_reason().unwrap_or(""));
        let content_type_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| is_json_content_type(v.as_bytes()));
        if response
            .content_length()
            .is_some_and(|len| len > self.max_response_bytes as u64)
        {
            return Err(TransportError::TooLarge);
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| map_reqwest_error(&e))? {
            if body.len() + chunk.len() > self.max_response_bytes {
                // Too large for this adapter's buffer: refused unread.
                return Err(TransportError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            content_type_json,
            body: body.freeze(),
            reason,
        })
    }
}

impl Transport for ReqwestTransport {
    fn send(
        &self,
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, TransportError>> + Send {
        self.exchange(request)
    }
}

/// Maps a reqwest failure onto the core's transport errors: a failure to
/// connect (the request never left) is `Connect`, even when it was a connect
/// timeout; any other deadline is `Timeout`; a redirect loop is
/// `BadFraming`; everything else (reset, truncated body, broken chunking)
/// may have reached the server and is `ConnectionLost`.
pub fn map_reqwest_error(error: &reqwest::Error) -> TransportError {
    if error.is_connect() {
        TransportError::Connect
    } else if error.is_timeout() {
        TransportError::Timeout
    } else if error.is_redirect() {
        TransportError::BadFraming
    } else {
        TransportError::ConnectionLost
    }
}

/// A rustls client config with its own `ring` provider and the platform's
/// certificate verifier; `None` if the verifier cannot be set up.
fn tls_config() -> Option<rustls::ClientConfig> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_platform_verifier()
        .ok()?
        .with_no_client_auth();
    Some(config)
}

/// Installs rustls' `ring` crypto provider as the process default, unless
/// one is installed already. [`ReqwestTransport`] does not need it (its TLS
/// config names its provider); call it before building your own
/// rustls-based reqwest client without a preconfigured TLS config.
pub fn install_ring_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // `Err` means another thread installed one meanwhile: just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
