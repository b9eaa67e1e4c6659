//! A local, faithful backend for the anonymous sign-in subset of the paywall
//! auth protocol (`docs/protocol.md` §3.1–3.6), with fault injection.
//!
//! It exists so the Rust client can be tested end to end against something
//! that behaves like the real server where it matters to a client: refresh
//! tokens rotate and die, reuse of a spent token is forgiven briefly and then
//! punished by revoking the family, an upgrade keeps the user id (and its
//! balance row), idempotency keys suppress second side effects, and the
//! transport can misbehave in every way docs/protocol.md §1.4–1.5 distinguishes
//! (HTTP errors, hang-ups before and after the request took effect, broken or
//! truncated bodies).
//!
//! Two ways to use it:
//! - in-process, from integration tests: [`Emulator::start`] binds
//!   `127.0.0.1:0` on the current tokio runtime; the test then drives the
//!   client at [`Emulator::origin`] and inspects or steers the backend
//!   through the [`Emulator`] handle;
//! - standalone, behind the `paywall-auth emulator --port P` CLI:
//!   [`serve_forever`], steered over HTTP under `/__emulator/` (see
//!   [`Emulator`] for the list of control routes).
//!
//! Everything is in memory and lost on shutdown.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use paywall_auth_emulator::{Emulator, EmulatorConfig, Fault, Route};
//!
//! let emulator = Emulator::start(EmulatorConfig::default()).await?;
//! // The client's next refresh takes effect but the reply never arrives.
//! emulator.inject(Route::Refresh, Fault::DropAfterApply, 1);
//! // ... drive the client at emulator.origin() ...
//! assert_eq!(emulator.count(Route::Refresh), 1);
//! emulator.shutdown().await;
//! # Ok(())
//! # }
//! ```

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

mod cors;
mod http;
mod model;
mod state;
mod tls;
mod tokens;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use model::{Fault, LoggedRequest, Route, SessionRecord, UserRecord};
pub use tls::{TlsIdentity, TlsOptions};

use state::State;

/// Backend settings. All of them except `paywall_id` and `jwt_secret` can be
/// changed while the emulator runs.
#[derive(Clone, PartialEq, Eq)]
pub struct EmulatorConfig {
    /// The only paywall id the routes accept; others get 404
    /// `paywall_not_found`.
    pub paywall_id: String,
    /// The paywall's `allow_anonymous` setting: when false, anonymous
    /// sign-in answers 403 `anonymous_disabled`.
    pub allow_anonymous: bool,
    /// When true, an upgrade stores the email as pending and answers
    /// `confirmation_required` until [`Emulator::confirm_email`].
    pub confirm_email: bool,
    /// Lifetime of access tokens (`expires_in`).
    pub access_ttl_secs: u64,
    /// How long after a rotation the rotated-out refresh token may be
    /// presented again and still get the current tokens (GoTrue's
    /// `REFRESH_TOKEN_REUSE_INTERVAL`). Zero disables the grace.
    pub reuse_interval: Duration,
    /// Whether `/auth/refresh` also enforces `allow_anonymous` for sessions of
    /// anonymous users (docs/protocol.md §12.17: without it, stored
    /// anonymous sessions keep resuming after the setting is turned off).
    pub refresh_checks_anonymous: bool,
    /// HS256 key of the access tokens. Fixed by default so an outside tool
    /// can decode them too.
    pub jwt_secret: Vec<u8>,
    /// Page origins (`http://127.0.0.1:5173`) whose browser `fetch`es get
    /// CORS answers: preflights and `Access-Control-Allow-Origin`. `"*"`
    /// allows any origin. Empty (the default): no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            paywall_id: "pw_demo".to_owned(),
            allow_anonymous: true,
            confirm_email: false,
            access_ttl_secs: 3600,
            reuse_interval: Duration::from_secs(10),
            refresh_checks_anonymous: false,
            jwt_secret: b"paywall-auth-emulator-insecure-secret".to_vec(),
            cors_allowed_origins: Vec::new(),
        }
    }
}

impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("paywall_id", &self.paywall_id)
            .field("allow_anonymous", &self.allow_anonymous)
            .field("confirm_email", &self.confirm_email)
            .field("access_ttl_secs", &self.access_ttl_secs)
            .field("reuse_interval", &self.reuse_interval)
            .field("refresh_checks_anonymous", &self.refresh_checks_anonymous)
            .field("jwt_secret", &"<redacted>")
            .field("cors_allowed_origins", &self.cors_allowed_origins)
            .finish()
    }
}

/// State shared by the handle and the server tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
}

impl Shared {
    /// Runs `f` with the state locked. The lock is never held across an
    /// await, and a panic while holding it cannot leave the state half
    /// updated in a way that matters to a test, so poisoning is ignored.
    pub(crate) fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }
}

/// Owns the server task; stopping it when the last handle goes away keeps
/// forgotten emulators from outliving their test.
#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    /// Set when serving HTTPS.
    tls: Option<TlsIdentity>,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// A running emulator. Cheap to clone; all clones steer the same backend, and
/// the server stops when the last clone is dropped or on [`shutdown`].
///
/// # HTTP control API (standalone mode)
/// Not logged, not subject to faults, any paywall:
/// - `GET /__emulator/requests`, `GET /__emulator/users`,
///   `GET /__emulator/sessions`, `GET /__emulator/counters`,
///   `GET /__emulator/config`: JSON views of [`requests`], [`users`],
///   [`sessions`], [`anonymous_users_created`] and the configuration;
/// - `POST /__emulator/confirm` `{"email":"…"}`: [`confirm_email`] (404 if no
///   user waits for that address);
/// - `POST /__emulator/faults` `{"route":"refresh","fault":{"kind":"status",
///   "status":503,"code":"upstream"},"times":2}` ([`Fault`] documents the
///   other kinds), or `{"clear":true}`;
/// - `POST /__emulator/config` with any of `allow_anonymous`,
///   `confirm_email`, `access_ttl_secs`, `reuse_interval_ms`,
///   `refresh_checks_anonymous`; answers the resulting configuration;
/// - `POST /__emulator/reset-log`, `POST /__emulator/advance-clock`
///   `{"secs":N}`, `POST /__emulator/expire-access-tokens`.
///
/// [`shutdown`]: Emulator::shutdown
/// [`requests`]: Emulator::requests
/// [`users`]: Emulator::users
/// [`sessions`]: Emulator::sessions
/// [`anonymous_users_created`]: Emulator::anonymous_users_created
/// [`confirm_email`]: Emulator::confirm_email
#[derive(Debug, Clone)]
pub struct Emulator {
    shared: Arc<Shared>,
    server: Arc<Server>,
}

impl Emulator {
    /// Starts an emulator on `127.0.0.1` with an OS-chosen port, on the
    /// current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        Emulator::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts an emulator listening on `addr`, on the current tokio runtime.
    pub async fn start_on(addr: SocketAddr, config: EmulatorConfig) -> std::io::Result<Emulator> {
        Emulator::start_with(addr, config, None).await
    }

    /// Starts an HTTPS emulator on `127.0.0.1` with an OS-chosen port: a
    /// CA and a leaf for `tls.host_names` are generated now, and
    /// [`tls_identity`](Self::tls_identity) gives what a client pins.
    /// TLS 1.3 only, ECDSA P-256.
    pub async fn start_tls(config: EmulatorConfig, tls: TlsOptions) -> std::io::Result<Emulator> {
        Emulator::start_tls_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config, tls).await
    }

    /// [`start_tls`](Self::start_tls) on `addr`.
    pub async fn start_tls_on(
        addr: SocketAddr,
        config: EmulatorConfig,
        tls: TlsOptions,
    ) -> std::io::Result<Emulator> {
        Emulator::start_with(addr, config, Some(tls)).await
    }

    async fn start_with(
        addr: SocketAddr,
        config: EmulatorConfig,
        tls: Option<TlsOptions>,
    ) -> std::io::Result<Emulator> {
        let (identity, acceptor) = match tls {
            Some(options) => {
                let (identity, acceptor) = tls::build(&options)?;
                (Some(identity), Some(acceptor))
            }
            None => (None, None),
        };
        // jsonwebtoken picks its crypto backend from cargo features and
        // refuses to sign if a workspace build unifies both backends; naming
        // one explicitly makes the emulator immune to that. An `Err` only
        // means a provider is already installed, which is just as good.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();

        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(config)),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let app = http::router(shared.clone());
        let task = tokio::spawn(http::serve(listener, app, acceptor, shutdown_rx));
        Ok(Emulator {
            shared,
            server: Arc::new(Server {
                addr,
                tls: identity,
                shutdown,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// The bound address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The API origin to hand to a client, e.g. `http://127.0.0.1:41234`.
    /// An IP-literal `http` origin also disables the client's edge failover
    /// (docs/protocol.md §10).
    ///
    /// Over HTTPS it is `https://<first host name>:<port>`: the name the
    /// certificate carries, which the client must send as SNI and verify
    /// (it need not resolve: connect to [`addr`](Self::addr)).
    pub fn origin(&self) -> String {
        match self.server.tls.as_ref().and_then(|t| t.host_names.first()) {
            Some(host) => format!("https://{host}:{}", self.server.addr.port()),
            None => format!("http://{}", self.server.addr),
        }
    }

    /// The CA, leaf and SPKI pin of an HTTPS emulator; `None` over HTTP.
    pub fn tls_identity(&self) -> Option<&TlsIdentity> {
        self.server.tls.as_ref()
    }

    /// The paywall id the routes accept.
    pub fn paywall_id(&self) -> String {
        self.shared.with_state(|s| s.config.paywall_id.clone())
    }

    /// Full URL of `route` for the configured paywall.
    pub fn url(&self, route: Route) -> String {
        format!("{}{}", self.origin(), route.path(&self.paywall_id()))
    }

    /// Every logged request since the last [`clear_log`](Self::clear_log),
    /// in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.with_state(|s| s.requests())
    }

    /// Number of logged requests to `route`, whatever their outcome
    /// (including dropped and fault-answered ones).
    pub fn count(&self, route: Route) -> usize {
        self.shared.with_state(|s| {
            s.requests()
                .iter()
                .filter(|request| request.route == Some(route))
                .count()
        })
    }

    /// Empties the request log; sequence numbers keep counting.
    pub fn clear_log(&self) {
        self.shared.with_state(|s| s.clear_log());
    }

    /// The users table, in creation order.
    pub fn users(&self) -> Vec<UserRecord> {
        self.shared.with_state(|s| s.users())
    }

    /// One user by id.
    pub fn user(&self, id: &str) -> Option<UserRecord> {
        self.users().into_iter().find(|user| user.id == id)
    }

    /// The sessions table (one row per refresh-token family), in creation
    /// order.
    pub fn sessions(&self) -> Vec<SessionRecord> {
        self.shared.with_state(|s| s.sessions())
    }

    /// How many anonymous users `anonymous/signin` has created.
    pub fn anonymous_users_created(&self) -> u64 {
        self.shared.with_state(|s| s.anonymous_users_created())
    }

    /// "Clicks the confirmation link" for a pending upgrade to `email`: the
    /// user gets the email and stops being anonymous, keeping its id.
    /// Returns false if no user waits for that address.
    pub fn confirm_email(&self, email: &str) -> bool {
        self.shared.with_state(|s| s.confirm_email(email))
    }

    /// The current configuration.
    pub fn config(&self) -> EmulatorConfig {
        self.shared.with_state(|s| s.config.clone())
    }

    /// Turns the paywall's `allow_anonymous` setting on or off.
    pub fn set_allow_anonymous(&self, allow: bool) {
        self.shared.with_state(|s| s.config.allow_anonymous = allow);
    }

    /// Turns email confirmation for upgrades on or off.
    pub fn set_confirm_email(&self, confirm: bool) {
        self.shared.with_state(|s| s.config.confirm_email = confirm);
    }

    /// See [`EmulatorConfig::refresh_checks_anonymous`].
    pub fn set_refresh_checks_anonymous(&self, check: bool) {
        self.shared
            .with_state(|s| s.config.refresh_checks_anonymous = check);
    }

    /// See [`EmulatorConfig::reuse_interval`].
    pub fn set_reuse_interval(&self, interval: Duration) {
        self.shared
            .with_state(|s| s.config.reuse_interval = interval);
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_access_ttl(&self, secs: u64) {
        self.shared.with_state(|s| s.config.access_ttl_secs = secs);
    }

    /// Queues `fault` for the next `times` POST requests to `route`, after
    /// any faults already queued for it. Each request consumes at most one
    /// fault. `times == 0` queues nothing; `usize::MAX` is "until cleared".
    pub fn inject(&self, route: Route, fault: Fault, times: usize) {
        self.shared.with_state(|s| s.inject(route, fault, times));
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        self.shared.with_state(|s| s.clear_faults());
    }

    /// Moves the emulator clock forward. Everything time-based follows it:
    /// access-token expiry, `expires_at`/`iat`/`exp` of new tokens, and the
    /// refresh-token reuse interval. Clients keep their own clock, so after
    /// this their idea of "fresh" and the server's differ, as in real life
    /// with clock skew.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.with_state(|s| s.advance_clock(by));
    }

    /// Makes every access token issued so far fail with 401 `invalid_token`
    /// (as if expired), without moving the clock. Refresh tokens are not
    /// affected.
    pub fn expire_access_tokens(&self) {
        self.shared.with_state(|s| s.expire_access_tokens());
    }

    /// Stops accepting connections, closes the open ones and waits for the
    /// server task to end. Other clones of the handle stay usable for
    /// inspection.
    pub async fn shutdown(self) {
        let _ = self.server.shutdown.send(true);
        let task = self
            .server
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            // A JoinError would mean the accept loop panicked; there is
            // nothing left to stop either way.
            let _ = task.await;
        }
    }
}

/// Runs an emulator on `addr` until the process ends; for the standalone
/// CLI, which does its own printing. Returns only if binding fails.
///
/// To learn the port when binding port 0, use [`Emulator::start_on`] and
/// keep the handle alive instead.
pub async fn serve_forever(addr: SocketAddr, config: EmulatorConfig) -> std::io::Result<()> {
    let _emulator = Emulator::start_on(addr, config).await?;
    std::future::pending::<()>().await;
    Ok(())
}
