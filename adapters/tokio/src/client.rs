//! The public handle: [`AuthClient`] and its builder.

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use paywall_auth::origin::InsecureHttp;
use paywall_auth::trace::Secrets;
use paywall_auth::{
    AccessToken, AuthChange, Command, Config, Notice, Session, SignInOptions, SignOutOptions,
    StoreFormat, UpgradeRequest, User,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument as _;

use crate::driver::{Cmd, Driver, Failure, Reply, Snapshot};
use crate::error::Error;
use crate::store::{MemoryStore, Store};
use crate::trace::TraceSink;
use crate::transport::{DEFAULT_CONNECT_TIMEOUT, ReqwestTransport, Transport};

/// An auth-change event (docs/protocol.md §8), with the session as it is right
/// after the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthEvent {
    /// What happened (`change.as_str()` gives the reference name).
    pub change: AuthChange,
    /// The session after the change, `None` when signed out.
    pub session: Option<Session>,
}

/// What [`AuthClient::upgrade_anonymous_to_email`] achieved.
// Sessions are returned by value everywhere (the core's fixed-capacity
// types); boxing this one variant would only make it the odd one out.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpgradeOutcome {
    /// The account is named now (same user id); `USER_UPDATED` was emitted.
    Updated(Session),
    /// The backend sent a confirmation mail; the session stays anonymous
    /// until the address is confirmed and a refresh shows it (which then
    /// emits `USER_UPDATED`).
    ConfirmationRequired {
        /// Where the mail went.
        email: String,
    },
}

/// The stream of [`AuthClient::subscribe`]: `INITIAL_SESSION` first, then
/// every change in order. It ends when the client shuts down.
#[derive(Debug)]
pub struct AuthEvents {
    rx: mpsc::UnboundedReceiver<AuthEvent>,
}

impl Stream for AuthEvents {
    type Item = AuthEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<AuthEvent>> {
        self.rx.poll_recv(cx)
    }
}

/// The stream of [`AuthClient::notices`]: storage problems worth telling
/// the application about. It ends when the client shuts down.
#[derive(Debug)]
pub struct Notices {
    rx: mpsc::UnboundedReceiver<Notice>,
}

impl Stream for Notices {
    type Item = Notice;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Notice>> {
        self.rx.poll_recv(cx)
    }
}

/// An anonymous-auth client on tokio.
///
/// A cheap, cloneable handle to one driver task that owns the sans-IO
/// [`Machine`](paywall_auth::Machine) (the shape of quinn's connection
/// driver): every call becomes a command on a channel, the driver feeds it
/// to the core, performs what the core asks (HTTP requests on spawned
/// tasks, storage writes awaited in order), and hands each caller the
/// completion of its command. Any number of tasks may call concurrently;
/// which calls share one request (parallel sign-ins, parallel refreshes)
/// and in which order things happen is decided by the core.
///
/// The client stops when [`shutdown`](Self::shutdown) is called or the last
/// handle is dropped; it first waits for the requests already in flight (at
/// most the request timeout each) so that a rotated refresh token is never
/// lost on the way out.
#[derive(Clone)]
pub struct AuthClient {
    inner: Arc<Handle>,
}

/// Shared by the clones of one client; its drop (the last clone's) tells
/// the driver to close.
struct Handle {
    commands: mpsc::UnboundedSender<Cmd>,
    state: watch::Receiver<Snapshot>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.commands.send(Cmd::Released);
    }
}

impl fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.state.borrow();
        f.debug_struct("AuthClient")
            .field("ready", &state.ready)
            .field("closed", &state.closed)
            .field("user", &state.session.as_ref().map(|s| &s.user))
            .finish()
    }
}

impl AuthClient {
    /// Starts configuring a client for `paywall_id` on the backend at
    /// `api_origin` (e.g. `https://pay.vendor.com`).
    ///
    /// Only the scheme, host and port of `api_origin` are used: a path,
    /// query or fragment in it is dropped, as the reference client does
    /// when it resolves its absolute paths against the origin
    /// (docs/protocol.md §1.1), so `https://pay.vendor.com/app?x=1` sends to
    /// `https://pay.vendor.com/api/v1/paywall/…`.
    pub fn builder(
        api_origin: impl Into<String>,
        paywall_id: impl Into<String>,
    ) -> AuthClientBuilder {
        AuthClientBuilder {
            origin: api_origin.into(),
            paywall_id: paywall_id.into(),
            store: MemoryStore::new(),
            transport: Box::new(default_transport),
            request_timeout: crate::transport::DEFAULT_REQUEST_TIMEOUT,
            store_format: StoreFormat::default(),
            proactive_refresh: None,
            leeway: None,
            insecure_http: InsecureHttp::Refuse,
            trace: None,
            trace_secrets: Secrets::Redact,
        }
    }

    /// Signs in as a guest: returns the current session if it is already
    /// anonymous, else resumes the stored anonymous account (same user id),
    /// else creates one; with [`SignInOptions::force_new`], always creates
    /// a new one. Fails with `not_anonymous` if a named account is signed
    /// in (sign out first).
    pub async fn sign_in_anonymously(&self, options: SignInOptions) -> Result<Session, Error> {
        match self.call(Command::SignInAnonymously(options)).await? {
            Reply::Session(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// Attaches an email and password to the current anonymous account,
    /// keeping its user id. Pass an idempotency key to make retries safe.
    pub async fn upgrade_anonymous_to_email(
        &self,
        request: UpgradeRequest,
    ) -> Result<UpgradeOutcome, Error> {
        match self.call(Command::UpgradeToEmail(request)).await? {
            Reply::Upgraded(s) => Ok(UpgradeOutcome::Updated(s)),
            Reply::ConfirmationRequired(email) => {
                Ok(UpgradeOutcome::ConfirmationRequired { email })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Signs out locally at once. A soft sign-out of a guest keeps the
    /// account resumable and calls nothing; a hard one
    /// ([`SignOutOptions::forget_anonymous`]) forgets it and revokes it on
    /// the server in the background, as does signing out a named account.
    ///
    /// It returns once the server has answered `/auth/signout` (when one
    /// is sent), saying truthfully whether the session was revoked there;
    /// the local sign-out has happened either way.
    pub async fn sign_out(&self, options: SignOutOptions) -> Result<Revocation, Error> {
        match self.call(Command::SignOut(options)).await? {
            Reply::SignedOut(revocation) => Ok(revocation),
            other => Err(unexpected(other)),
        }
    }

    /// Rotates the tokens now (concurrent calls share one request).
    pub async fn refresh(&self) -> Result<Session, Error> {
        match self.call(Command::Refresh).await? {
            Reply::Session(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// A usable access token: immediately when the current one is fresh,
    /// else after one shared refresh; `None` when signed out. If the
    /// refresh fails transiently while the old token has not expired yet,
    /// the old token is returned.
    pub async fn access_token(&self) -> Result<Option<AccessToken>, Error> {
        match self.call(Command::AccessToken).await? {
            Reply::AccessToken(t) => Ok(t),
            Reply::SignedOut(_) => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// The current session (no I/O).
    pub fn session(&self) -> Option<Session> {
        self.inner.state.borrow().session.clone()
    }

    /// The current user (no I/O).
    pub fn user(&self) -> Option<User> {
        self.inner
            .state
            .borrow()
            .session
            .as_ref()
            .map(|s| s.user.clone())
    }

    /// Whether a guest account can be resumed from storage (no I/O).
    pub fn has_resumable_anonymous(&self) -> bool {
        self.inner.state.borrow().resumable_anonymous
    }

    /// The email of an upgrade waiting for confirmation (no I/O).
    pub fn pending_confirmation(&self) -> Option<String> {
        self.inner.state.borrow().pending_confirmation.clone()
    }

    /// Resolves once storage has been restored. [`AuthClientBuilder::build`]
    /// only returns restored clients, so this is immediate; it exists for
    /// parity with the reference client's `ready` promise.
    pub async fn ready(&self) -> Result<(), Error> {
        let mut state = self.inner.state.clone();
        state
            .wait_for(|s| s.ready)
            .await
            .map(drop)
            .map_err(|_| Error::Closed)
    }

    /// Whether the client has stopped taking calls (shut down).
    pub fn is_closed(&self) -> bool {
        let state = self.inner.state.borrow();
        state.closing || state.closed
    }

    /// Auth-change events: first `INITIAL_SESSION` with the session current
    /// when this subscription reaches the driver, then every change in the
    /// order the core made it. Each subscriber has its own unbounded queue;
    /// the driver never waits for a slow one.
    pub fn subscribe(&self) -> AuthEvents {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Err(mpsc::error::SendError(Cmd::Subscribe(tx))) =
            self.inner.commands.send(Cmd::Subscribe(tx))
        {
            // Closed: the subscriber still hears the last known state.
            let session = self.inner.state.borrow().session.clone();
            let _ = tx.send(AuthEvent {
                change: AuthChange::InitialSession,
                session,
            });
        }
        AuthEvents { rx }
    }

    /// Storage notices: a record that could not be decoded (left untouched
    /// on storage; the client starts signed out or keeps its state) or a
    /// write that failed (kept in memory and retried). Notices raised while
    /// the client was being built are delivered first.
    pub fn notices(&self) -> Notices {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.inner.commands.send(Cmd::SubscribeNotices(tx));
        Notices { rx }
    }

    /// Stops the client: new calls fail with `client_closed`, requests in
    /// flight are awaited (bounded by the request timeout) and their
    /// results stored, then the store is released (a [`FileStore`] lock
    /// too) and this returns. Other handles see the client closed.
    ///
    /// [`FileStore`]: crate::FileStore
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.commands.send(Cmd::Shutdown(tx)).is_ok() {
            // Err: the driver is gone already, which is what we wanted.
            let _ = rx.await;
        }
    }

    async fn call(&self, command: Command) -> Result<Reply, Error> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Cmd::Command(command, tx))
            .map_err(|_| Error::Closed)?;
        match rx.await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(Failure::Auth(e))) => Err(Error::from(e)),
            Ok(Err(Failure::Storage(e, cause))) => Err(Error::StorageFailed {
                core: Box::new(e),
                cause: cause.to_string(),
            }),
            Ok(Err(Failure::Internal(why))) => Err(Error::Internal(why)),
            Err(_) => Err(Error::Closed),
        }
    }
}

fn unexpected(reply: Reply) -> Error {
    tracing::error!(
        ?reply,
        "the core completed a command with an outcome of another command"
    );
    Error::Internal("unexpected outcome for this command")
}

type MakeTransport<T> = Box<dyn FnOnce(Duration) -> Result<T, Error> + Send>;

fn default_transport(request_timeout: Duration) -> Result<ReqwestTransport, Error> {
    ReqwestTransport::with_timeouts(DEFAULT_CONNECT_TIMEOUT, request_timeout)
        .map_err(|e| Error::InvalidConfig(format!("cannot build the HTTP client: {e}")))
}

/// Whether the server revoked the session a sign-out ended (what
/// [`AuthClient::sign_out`] returns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// No server call was needed: a soft sign-out of a guest (revoking
    /// would kill the token kept to resume it), or nothing was signed in.
    NotNeeded,
    /// The server confirmed it.
    Revoked,
    /// The server did not confirm (an HTTP error, a dropped connection, a
    /// timeout). Signed out locally all the same; the session lives on
    /// server-side until its tokens expire.
    Failed {
        /// The error code (`http_503`, `network_error`, …).
        code: String,
        /// Why, for people.
        message: String,
        /// The HTTP status, when the server answered.
        status: Option<u16>,
    },
}

impl Revocation {
    pub(crate) fn of(r: paywall_auth::Revocation<'_>) -> Self {
        match r {
            paywall_auth::Revocation::NotNeeded => Revocation::NotNeeded,
            paywall_auth::Revocation::Revoked => Revocation::Revoked,
            paywall_auth::Revocation::Failed {
                code,
                message,
                status,
            } => Revocation::Failed {
                code: code.to_owned(),
                message: message.to_owned(),
                status,
            },
        }
    }

    /// `Some(true)` revoked, `Some(false)` not confirmed, `None` not needed.
    pub fn revoked(&self) -> Option<bool> {
        match self {
            Revocation::NotNeeded => None,
            Revocation::Revoked => Some(true),
            Revocation::Failed { .. } => Some(false),
        }
    }
}

/// Configures an [`AuthClient`]; see [`AuthClient::builder`].
pub struct AuthClientBuilder<S = MemoryStore, T = ReqwestTransport> {
    origin: String,
    paywall_id: String,
    store: S,
    transport: MakeTransport<T>,
    request_timeout: Duration,
    store_format: StoreFormat,
    proactive_refresh: Option<Option<Duration>>,
    leeway: Option<Duration>,
    insecure_http: InsecureHttp,
    trace: Option<PathBuf>,
    trace_secrets: Secrets,
}

impl<S: fmt::Debug, T> fmt::Debug for AuthClientBuilder<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthClientBuilder")
            .field("origin", &self.origin)
            .field("paywall_id", &self.paywall_id)
            .field("store", &self.store)
            .field("request_timeout", &self.request_timeout)
            .field("store_format", &self.store_format)
            .field("trace", &self.trace)
            .field("trace_secrets", &self.trace_secrets)
            .finish_non_exhaustive()
    }
}

impl<S: Store, T: Transport> AuthClientBuilder<S, T> {
    /// Where the session is kept (default: a fresh [`MemoryStore`]).
    pub fn store<S2: Store>(self, store: S2) -> AuthClientBuilder<S2, T> {
        AuthClientBuilder {
            origin: self.origin,
            paywall_id: self.paywall_id,
            store,
            transport: self.transport,
            request_timeout: self.request_timeout,
            store_format: self.store_format,
            proactive_refresh: self.proactive_refresh,
            leeway: self.leeway,
            insecure_http: self.insecure_http,
            trace: self.trace,
            trace_secrets: self.trace_secrets,
        }
    }

    /// How requests are sent (default: a [`ReqwestTransport`] with the
    /// request timeout).
    pub fn transport<T2: Transport>(self, transport: T2) -> AuthClientBuilder<S, T2> {
        AuthClientBuilder {
            origin: self.origin,
            paywall_id: self.paywall_id,
            store: self.store,
            transport: Box::new(move |_| Ok(transport)),
            request_timeout: self.request_timeout,
            store_format: self.store_format,
            proactive_refresh: self.proactive_refresh,
            leeway: self.leeway,
            insecure_http: self.insecure_http,
            trace: self.trace,
            trace_secrets: self.trace_secrets,
        }
    }

    /// Allows a plain `http://` origin whose host is not loopback. Every
    /// request carries a secret (refresh token, password, bearer), so
    /// without this switch such an origin is refused by
    /// [`build`](Self::build) before any network use; loopback hosts
    /// (`localhost`, `127.0.0.0/8`, `[::1]`) are always allowed.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.insecure_http = if allow {
            InsecureHttp::Allow
        } else {
            InsecureHttp::Refuse
        };
        self
    }

    /// Deadline of each request, connection to last byte (default 30 s).
    /// It configures the default transport and also bounds any custom
    /// transport: a request still running then is answered to the core as
    /// a `Timeout`.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Encoding of the stored records (default: the reference client's
    /// JSON, so records written by the JS SDK are read as they are).
    pub fn store_format(mut self, format: StoreFormat) -> Self {
        self.store_format = format;
        self
    }

    /// Refresh this long before expiry on a timer; `None` refreshes only
    /// when a token is asked for (default: the core's, 120 s).
    pub fn proactive_refresh(mut self, lead: Option<Duration>) -> Self {
        self.proactive_refresh = Some(lead);
        self
    }

    /// A token with less than this left is refreshed before use (default:
    /// the core's, 60 s as in the reference client).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// Records a trace of this client to `path` (docs/protocol.md §14):
    /// every input the driver feeds the core, with its time, and every
    /// output the core answers, one JSON line per input after a header.
    /// [`replay_trace_file`](crate::replay_trace_file) (or `paywall-auth
    /// replay FILE`) runs it through today's core and names the first line
    /// where it behaves differently: a field problem becomes a
    /// reproducible case.
    ///
    /// The file is created or truncated (one trace is one client from its
    /// start), mode `0600` on Unix; lines are written as they end, so a
    /// crash leaves a trace that still replays up to there. Refresh
    /// tokens, access-token signatures, passwords and captcha tokens are
    /// replaced by placeholders unless
    /// [`record_trace_secrets`](Self::record_trace_secrets) says otherwise.
    /// A file that cannot be created fails [`build`](Self::build)
    /// (`invalid_config`); a write that fails later is logged once and
    /// stops the recording, never the client.
    pub fn record_trace(mut self, path: impl Into<PathBuf>) -> Self {
        self.trace = Some(path.into());
        self
    }

    /// record-secrets: keep the real tokens, password and captcha token in
    /// the trace instead of placeholders (default `false`: traces get
    /// attached to bug reports). Only for a trace that must replay against
    /// real credentials; **the file is then a credential**: whoever reads
    /// it can sign in as the user. No effect without
    /// [`record_trace`](Self::record_trace).
    pub fn record_trace_secrets(mut self, keep: bool) -> Self {
        self.trace_secrets = if keep { Secrets::Keep } else { Secrets::Redact };
        self
    }

    /// Builds the client: checks the configuration, reads the stored
    /// records and restores the session from them, then starts the driver
    /// task on the current tokio runtime.
    ///
    /// An unreadable store is an error ([`Error::Store`]), never an empty
    /// session; a record that is present but cannot be decoded is left as
    /// it is and reported through [`AuthClient::notices`].
    ///
    /// # Panics
    /// Outside a tokio runtime (the driver is spawned on it).
    pub async fn build(self) -> Result<AuthClient, Error> {
        let origin = parse_origin(&self.origin, self.insecure_http)?;
        let mut config = Config::new(&self.paywall_id)
            .map_err(|e| Error::InvalidConfig(e.to_string()))?
            .with_store_format(self.store_format);
        if let Some(lead) = self.proactive_refresh {
            config.proactive_refresh = lead.map(core_duration);
        }
        if let Some(leeway) = self.leeway {
            config.leeway = core_duration(leeway);
        }
        let transport = (self.transport)(self.request_timeout)?;
        let trace = match &self.trace {
            None => None,
            Some(path) => {
                let sink = TraceSink::create(path, &config, self.trace_secrets).map_err(|e| {
                    Error::InvalidConfig(format!(
                        "cannot create the trace file {}: {e}",
                        path.display()
                    ))
                })?;
                match self.trace_secrets {
                    Secrets::Keep => tracing::warn!(
                        path = %path.display(),
                        "recording a trace WITH secrets (record-secrets): the file is a credential"
                    ),
                    Secrets::Redact => {
                        tracing::info!(path = %path.display(), "recording a trace")
                    }
                }
                Some(sink)
            }
        };
        let (state_tx, state) = watch::channel(Snapshot::default());
        let span = tracing::info_span!("paywall_auth", paywall_id = %self.paywall_id);
        let (mut driver, commands) = Driver::new(
            config,
            origin,
            self.store,
            transport,
            self.request_timeout,
            state_tx,
            trace,
        )?;
        driver.restore().instrument(span.clone()).await?;
        tokio::spawn(driver.run().instrument(span));
        Ok(AuthClient {
            inner: Arc::new(Handle { commands, state }),
        })
    }
}

fn core_duration(d: Duration) -> paywall_auth::Duration {
    paywall_auth::Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `scheme://host[:port]` of `origin`; everything after it is dropped
/// (docs/protocol.md §1.1).
pub(crate) fn parse_origin(origin: &str, insecure: InsecureHttp) -> Result<String, Error> {
    // The core's rule first (https, or http to loopback, or opted in; no
    // credentials), so every adapter refuses the same origins.
    paywall_auth::origin::check(origin, insecure).map_err(|e| match e {
        // Never echo credentials into an error message (or a log).
        paywall_auth::origin::OriginError::Credentials => {
            Error::InvalidConfig(format!("api origin: {}", e.message()))
        }
        _ => Error::InvalidConfig(format!("api origin {origin:?}: {}", e.message())),
    })?;
    let url = url::Url::parse(origin)
        .map_err(|e| Error::InvalidConfig(format!("api origin {origin:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::InvalidConfig(format!(
            "api origin {origin:?}: scheme must be http or https"
        )));
    }
    if url.host().is_none() {
        return Err(Error::InvalidConfig(format!(
            "api origin {origin:?}: no host"
        )));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        tracing::warn!(
            origin,
            "the path, query and fragment of the API origin are ignored"
        );
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_keeps_scheme_host_and_port_only() {
        let ok =
            |o: &str| parse_origin(o, InsecureHttp::Refuse).unwrap_or_else(|e| panic!("{o}: {e}"));
        assert_eq!(ok("https://pay.vendor.com"), "https://pay.vendor.com");
        assert_eq!(ok("https://pay.vendor.com/"), "https://pay.vendor.com");
        assert_eq!(
            ok("https://pay.vendor.com/app/v2?x=1#top"),
            "https://pay.vendor.com"
        );
        assert_eq!(ok("http://127.0.0.1:8080/base"), "http://127.0.0.1:8080");
        assert_eq!(ok("https://pay.vendor.com:443/"), "https://pay.vendor.com");
        assert_eq!(ok("http://[::1]:9/x"), "http://[::1]:9");
        for bad in [
            "",
            "pay.vendor.com",
            "ftp://pay.vendor.com",
            "file:///etc/passwd",
            "http://",
            // Credentials in the origin end up in logs; never sent.
            "http://user:pw@[::1]:9/x",
        ] {
            let err = parse_origin(bad, InsecureHttp::Allow).err();
            assert_eq!(
                err.as_ref().map(Error::code),
                Some("invalid_config"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn plain_http_to_a_remote_host_is_refused_unless_opted_in() {
        let err = parse_origin("http://pay.vendor.com", InsecureHttp::Refuse)
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("clear text") && err.contains("opt in"),
            "{err}"
        );
        assert_eq!(
            parse_origin("http://pay.vendor.com", InsecureHttp::Allow).unwrap(),
            "http://pay.vendor.com"
        );
        assert_eq!(
            parse_origin("http://localhost:8787", InsecureHttp::Refuse).unwrap(),
            "http://localhost:8787"
        );
    }
}
