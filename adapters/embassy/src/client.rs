//! The client: the core's machine, a connector, a flash store and one buffer,
//! driven by the method that is running.

use embassy_time::{Duration, Instant as BootInstant, Timer, with_timeout};
use embedded_io_async::Write as _;
use embedded_storage_async::nor_flash::NorFlash;
use heapless::Vec;
use paywall_auth::codec::http1::{self, HeaderLine, Http1ReadError};
use paywall_auth::limits::{REFRESH_TOKEN_MAX, REQUESTS_IN_FLIGHT};
use paywall_auth::{
    AccessToken, Command, CommandId, Config, Error, Instant, Machine, Outcome, OutcomeKind, Output,
    RecordKey, Request, RequestId, Response, Session, SignInOptions, SignOutOptions, StorageError,
    StoreId, TransportError, UpgradeRequest,
};

use crate::connect::Connect;
use crate::events::{Event, EventSink, UserInfo};
use crate::store::{FlashStore, StorageFault};

/// Default size of the client's buffer: holds the largest response the core
/// accepts with the default capacities (a token response with a 2 KiB access
/// token, plus the response head) with room to spare.
pub const DEFAULT_BUF: usize = 4096;

/// Smallest `BUF` the client accepts: room for the anonymous refresh-token
/// record next to a session record at start-up.
pub const MIN_BUF: usize = ANON_SLOT + 1024;

/// Bytes of the buffer that hold the anonymous refresh-token record while the
/// session record is read at start-up (postcard: version byte, length
/// varint, token), rounded up to 32 so the rest stays word-aligned.
const ANON_SLOT: usize = (REFRESH_TOKEN_MAX + 8).next_multiple_of(32);

/// Timer deadlines handled back to back within one call before the client
/// stops and returns (a guard against a deadline that does not move).
const TIMER_ROUNDS: u32 = 4;

/// Default deadline of one HTTP exchange (connect, send, receive).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The result of [`AuthClient::upgrade_anonymous_to_email`].
#[derive(Debug, Clone, Copy)]
pub enum Upgrade<'a> {
    /// The account has the email now (same user id); the session is named.
    Updated(&'a Session),
    /// The backend sent a confirmation mail to `email`; the session stays
    /// anonymous until the email is confirmed and a refresh shows it.
    ConfirmationRequired {
        /// Where the confirmation mail went.
        email: &'a str,
    },
}

/// A request rendered into the front of the buffer, waiting for its turn.
#[derive(Debug, Clone, Copy)]
struct Outgoing {
    id: RequestId,
    /// Bytes at the front of the queue region; 0 when it could not be
    /// rendered (then it is answered `Connect` without connecting).
    len: usize,
}

/// The buffer, word-aligned for flash drivers that read into it directly.
#[repr(C, align(4))]
struct Buffer<const N: usize>([u8; N]);

/// An anonymous-auth client on embassy: the core's [`Machine`], a
/// [`Connect`]or to reach the API, a [`FlashStore`] for the session and one
/// `BUF`-byte buffer (requests, responses and flash records all pass
/// through it; see [`DEFAULT_BUF`]).
///
/// # Driving model
///
/// Single task: every `async` method feeds its command to the machine, then
/// runs the drive loop until the command's completion has arrived *and*
/// nothing is left to do (fire-and-forget requests such as the server-side
/// sign-out are sent before the method returns). The loop: drain the
/// machine's outputs — apply each storage operation (awaited to the end,
/// never raced against anything), render each request into the buffer,
/// publish events — then send the queued requests one by one (one
/// connection each, under the request timeout) and feed each response
/// back; handle a due deadline; repeat.
///
/// Between calls nothing runs: call [`service_timers`](Self::service_timers)
/// when [`wait_deadline`](Self::wait_deadline) fires (for proactive refresh
/// and storage-write retries). To use the client from several tasks, put it
/// in an `embassy_sync::mutex::Mutex`.
///
/// # Cancellation
///
/// Dropping a method's future never loses state: a request whose exchange
/// was cut is answered `ConnectionLost` and a storage operation whose write
/// was cut is acknowledged as failed (the core then rewrites it) at the start
/// of the next call. A write cut half-way is, for the flash, the same as a
/// power loss: `sequential-storage` ignores the incomplete item. Prefer to
/// race only [`wait_deadline`](Self::wait_deadline), which does no I/O.
pub struct AuthClient<'e, C: Connect, F: NorFlash, const BUF: usize = DEFAULT_BUF> {
    machine: Machine,
    connector: C,
    store: FlashStore<F>,
    events: &'e dyn EventSink,
    request_timeout: Duration,
    /// Added to the boot clock to get Unix time in ms.
    unix_offset_ms: u64,
    started: bool,
    /// A storage operation handed out and not yet acknowledged (only set
    /// while its write runs; left set if the future was dropped).
    unacked_store: Option<(StoreId, RecordKey)>,
    /// A request whose exchange runs (left set if the future was dropped).
    sending: Option<RequestId>,
    /// Rendered requests, stacked at the front of `buf`, oldest first.
    outbox: Vec<Outgoing, REQUESTS_IN_FLIGHT>,
    outbox_len: usize,
    buf: Buffer<BUF>,
}

impl<C: Connect, F: NorFlash, const BUF: usize> core::fmt::Debug for AuthClient<'_, C, F, BUF> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AuthClient")
            .field("machine", &self.machine)
            .field("started", &self.started)
            .field("outbox", &self.outbox)
            .finish_non_exhaustive()
    }
}

impl<'e, C: Connect, F: NorFlash> AuthClient<'e, C, F> {
    /// A client with the default [`DEFAULT_BUF`]-byte buffer that has not
    /// touched flash or network yet; the first method called restores the
    /// session from `store` ([`start`](Self::start)).
    ///
    /// `config` is used as given; on flash, build it with
    /// `.with_store_format(StoreFormat::Postcard)` (about a third of the
    /// JSON size). Events go to `events` ([`NoEvents`](crate::NoEvents) to
    /// ignore them).
    pub fn new(
        config: Config,
        connector: C,
        store: FlashStore<F>,
        events: &'e dyn EventSink,
    ) -> Self {
        Self::with_buffer(config, connector, store, events)
    }
}

impl<'e, C: Connect, F: NorFlash, const BUF: usize> AuthClient<'e, C, F, BUF> {
    /// [`new`](AuthClient::new) with a `BUF`-byte buffer, e.g.
    /// `AuthClient::<_, _, 3072>::with_buffer(..)` for tokens configured
    /// smaller than the defaults. `BUF` must hold the largest response and
    /// the largest record; a request or record that does not fit fails
    /// cleanly (`network_error` / `storage_failed`), never truncated. A `BUF`
    /// below [`MIN_BUF`] does not compile.
    pub fn with_buffer(
        config: Config,
        connector: C,
        store: FlashStore<F>,
        events: &'e dyn EventSink,
    ) -> Self {
        const {
            assert!(
                BUF >= MIN_BUF,
                "AuthClient buffer too small: BUF must be at least MIN_BUF"
            )
        };
        AuthClient {
            machine: Machine::new(config),
            connector,
            store,
            events,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            unix_offset_ms: 0,
            started: false,
            unacked_store: None,
            sending: None,
            outbox: Vec::new(),
            outbox_len: 0,
            buf: Buffer([0; BUF]),
        }
    }

    /// Sets the deadline of one HTTP exchange (default 15 s).
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = timeout;
    }

    /// Tells the client the wall-clock time (ms since the Unix epoch, from an
    /// RTC or SNTP); it follows the embassy-time clock from there.
    ///
    /// Without it the client counts from boot. Token lifetimes are measured
    /// on this clock (`expires_in` is added to it), so that is fine while
    /// the device runs; but a stored session's expiry is only meaningful
    /// after a reboot if the clock is the same wall clock, so devices with an
    /// RTC should set it before the first call.
    pub fn set_unix_time(&mut self, unix_ms: u64) {
        self.unix_offset_ms = unix_ms.saturating_sub(BootInstant::now().as_millis());
        // The connector checks certificate validity against the same clock.
        self.connector.set_unix_time(unix_ms);
    }

    /// The current time as the core sees it.
    pub fn now(&self) -> Instant {
        unix_now(self.unix_offset_ms)
    }

    /// The session, if signed in.
    pub fn session(&self) -> Option<&Session> {
        self.machine.session()
    }

    /// Whether a soft-signed-out (or never signed-in this boot) anonymous
    /// account is stored and would be resumed by
    /// [`sign_in_anonymously`](Self::sign_in_anonymously).
    pub fn has_resumable_anonymous(&self) -> bool {
        self.machine.has_resumable_anonymous()
    }

    /// Email of an upgrade that awaits confirmation.
    pub fn pending_confirmation(&self) -> Option<&str> {
        self.machine.pending_confirmation()
    }

    /// Whether [`start`](Self::start) has run.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// The machine, for read-only views.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// The connector, e.g. to ask a `TlsConnector` why the last connection
    /// failed (the core only hears "could not connect").
    pub fn connector(&self) -> &C {
        &self.connector
    }

    /// Gives back the connector and the flash (to simulate a reboot in
    /// tests: build a new client over the same flash).
    pub fn into_parts(self) -> (C, F) {
        (self.connector, self.store.into_flash())
    }

    /// Restores the session from flash and publishes `INITIAL_SESSION`.
    /// Called by every method on first use; call it at boot to learn the
    /// stored state early. Idempotent.
    ///
    /// Storage that cannot be read is reported as
    /// [`Event::StorageUnreadable`] and the client starts without the
    /// record (signed out); records that read but do not decode are reported
    /// by the core as [`Notice::CorruptRecord`](paywall_auth::Notice).
    pub async fn start(&mut self) {
        if self.started {
            return;
        }
        // Both reads need a buffer the size of the largest item (the map
        // checks every item it walks past), so the small anonymous record is
        // read first and parked at the end of the buffer.
        let tail = BUF - ANON_SLOT;
        let base = self.buf.0.as_ptr() as usize;
        let anon = read_record(
            &mut self.store,
            self.events,
            RecordKey::AnonRefreshToken,
            &mut self.buf.0,
        )
        .await;
        let anon_len = match anon.map(|bytes| (bytes.as_ptr() as usize - base, bytes.len())) {
            Some((start, len)) if len <= ANON_SLOT => {
                self.buf.0.copy_within(start..start + len, tail);
                Some(len)
            }
            Some(_) => {
                self.events.publish(Event::StorageUnreadable {
                    key: RecordKey::AnonRefreshToken,
                    fault: StorageFault::BufferTooSmall,
                });
                None
            }
            None => None,
        };
        let (session_buf, anon_buf) = self.buf.0.split_at_mut(tail);
        let anon = anon_len.and_then(|len| anon_buf.get(..len));
        let session = read_record(
            &mut self.store,
            self.events,
            RecordKey::Session,
            session_buf,
        )
        .await;
        debug!(
            "restore: session {}, anonymous token {}",
            session.is_some(),
            anon.is_some()
        );
        if self
            .machine
            .handle_restored(unix_now(self.unix_offset_ms), session, anon, None)
            .is_err()
        {
            // Unreachable: nothing is fed to the machine before restore.
            warn!("restore refused by the machine");
        }
        self.started = true;
        self.drive(None).await;
    }

    /// Signs in as a guest: no request if already anonymous, else resumes
    /// the stored anonymous account, else creates one (docs/protocol.md §7.1).
    ///
    /// # Errors
    /// The core's [`Error`]: network, backend answer, storage, or
    /// `NotAnonymous` when a named account is signed in.
    pub async fn sign_in_anonymously(&mut self, options: SignInOptions) -> Result<&Session, Error> {
        match self.run(Command::SignInAnonymously(options)).await? {
            OutcomeKind::Session | OutcomeKind::Upgraded => {
                self.machine.session().ok_or(Error::Superseded)
            }
            _ => Err(Error::Superseded),
        }
    }

    /// Attaches an email and password to the current anonymous account
    /// (same user id).
    ///
    /// # Errors
    /// The core's [`Error`] (`NotAuthenticated`, `NotAnonymous`, backend
    /// errors such as `email_taken`, network, storage).
    pub async fn upgrade_anonymous_to_email(
        &mut self,
        request: UpgradeRequest,
    ) -> Result<Upgrade<'_>, Error> {
        match self.run(Command::UpgradeToEmail(request)).await? {
            OutcomeKind::Upgraded | OutcomeKind::Session => self
                .machine
                .session()
                .map(Upgrade::Updated)
                .ok_or(Error::Superseded),
            OutcomeKind::ConfirmationRequired => Ok(Upgrade::ConfirmationRequired {
                email: self.machine.pending_confirmation().unwrap_or(""),
            }),
            _ => Err(Error::Superseded),
        }
    }

    /// Signs out. Soft (the default) keeps the anonymous account resumable
    /// and makes no request for it; `forget_anonymous` also forgets it and
    /// revokes it on the server. The local sign-out stands whatever the
    /// server says; the result tells truthfully whether it revoked:
    /// `Some(true)` confirmed, `Some(false)` not confirmed (an HTTP error,
    /// a dropped connection), `None` no revocation was needed.
    ///
    /// # Errors
    /// `Storage` if the records could not be removed from flash (the core
    /// retries the removal).
    pub async fn sign_out(&mut self, options: SignOutOptions) -> Result<Option<bool>, Error> {
        match self.run(Command::SignOut(options)).await? {
            OutcomeKind::SignedOut(revoked) => Ok(revoked),
            _ => Ok(None),
        }
    }

    /// Rotates the tokens now.
    ///
    /// # Errors
    /// `NotAuthenticated` when signed out; network, backend or storage
    /// errors otherwise (a dead refresh token signs the client out).
    pub async fn refresh(&mut self) -> Result<&Session, Error> {
        match self.run(Command::Refresh).await? {
            OutcomeKind::Session | OutcomeKind::Upgraded => {
                self.machine.session().ok_or(Error::Superseded)
            }
            _ => Err(Error::Superseded),
        }
    }

    /// A fresh access token: immediately when the current one is fresh,
    /// else after one refresh. `None` when signed out.
    ///
    /// # Errors
    /// A refresh was needed and failed while the token had already expired.
    pub async fn access_token(&mut self) -> Result<Option<&AccessToken>, Error> {
        match self.run(Command::AccessToken).await? {
            OutcomeKind::AccessToken(true) | OutcomeKind::Session => {
                Ok(self.machine.session().map(|s| &s.access_token))
            }
            _ => Ok(None),
        }
    }

    /// When [`service_timers`](Self::service_timers) should next run
    /// (proactive refresh, storage-write retry), on the embassy-time clock.
    pub fn next_deadline(&self) -> Option<BootInstant> {
        let at = self.machine.poll_timeout()?;
        Some(BootInstant::from_millis(
            at.as_millis().saturating_sub(self.unix_offset_ms),
        ))
    }

    /// Waits until [`next_deadline`](Self::next_deadline); pending forever
    /// when there is none. Does no I/O and changes nothing, so it is safe to
    /// race in a `select` against the application's own events:
    ///
    /// ```no_run
    /// # use embassy_futures::select::{Either, select};
    /// # use embassy_sync::{blocking_mutex::raw::NoopRawMutex, signal::Signal};
    /// # use embedded_storage_async::nor_flash::NorFlash;
    /// # use paywall_auth_embassy::{AuthClient, Connect};
    /// # async fn run<C: Connect, F: NorFlash>(client: &mut AuthClient<'_, C, F>, button: &Signal<NoopRawMutex, ()>) {
    /// loop {
    ///     // Bound first: the select borrows the client until it is dropped.
    ///     let woke = select(client.wait_deadline(), button.wait()).await;
    ///     match woke {
    ///         Either::First(()) => client.service_timers().await,
    ///         Either::Second(()) => { client.refresh().await.ok(); }
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn wait_deadline(&self) {
        match self.next_deadline() {
            Some(at) => Timer::at(at).await,
            None => core::future::pending().await,
        }
    }

    /// Handles what is due now (a proactive refresh, a storage retry) and
    /// anything left over from a cancelled call, then returns.
    pub async fn service_timers(&mut self) {
        if !self.started {
            self.start().await;
        }
        self.recover().await;
        self.drive(None).await;
    }

    /// Erases the whole flash range, for flash reported as
    /// [`Event::StorageUnreadable`] (the client never erases on its own).
    /// The in-memory state is unchanged and written again on its next
    /// change; a stored anonymous account that could not be read is lost.
    ///
    /// # Errors
    /// The flash driver failed.
    pub async fn erase_storage(&mut self) -> Result<(), StorageFault> {
        self.store.erase_all().await
    }

    // ----- the drive loop -------------------------------------------------

    /// Feeds `command` and drives until it completes.
    async fn run(&mut self, command: Command) -> Result<OutcomeKind, Error> {
        self.service_timers().await;
        let id = match self.machine.handle_command(self.now(), command) {
            Ok(id) => id,
            Err(_) => {
                // `service_timers` leaves the machine drained; if it is not
                // (a store still unacknowledged), say so instead of waiting.
                warn!("machine not drained; command refused");
                return Err(Error::Busy);
            }
        };
        match self.drive(Some(id)).await {
            Some(result) => result,
            None => {
                warn!("command {} got no completion", id.0);
                Err(Error::Busy)
            }
        }
    }

    /// Settles what a dropped future left behind: a storage operation whose
    /// write may not have finished (acknowledged as failed, so the core
    /// writes it again), and a request whose exchange was cut (answered
    /// `ConnectionLost`: it may or may not have reached the server).
    async fn recover(&mut self) {
        if let Some((id, key)) = self.unacked_store.take() {
            debug!("recover: store {} was cut", id.0);
            let _ = self
                .machine
                .handle_stored(self.now(), id, Err(StorageError { key }));
        }
        if let Some(id) = self.sending.take() {
            debug!("recover: request {} was cut", id.0);
            self.drain(None, &mut None).await;
            let _ =
                self.machine
                    .handle_transport_error(self.now(), id, TransportError::ConnectionLost);
        }
    }

    /// Drains, sends, handles due deadlines, until nothing is left; returns
    /// the completion of `waiting` if it arrived.
    async fn drive(&mut self, waiting: Option<CommandId>) -> Option<Result<OutcomeKind, Error>> {
        let mut result = None;
        let mut timer_rounds = 0;
        loop {
            self.drain(waiting, &mut result).await;
            if !self.outbox.is_empty() {
                self.send_next().await;
                continue;
            }
            let due = self
                .machine
                .poll_timeout()
                .is_some_and(|at| at <= self.now());
            if due && timer_rounds < TIMER_ROUNDS {
                timer_rounds += 1;
                let _ = self.machine.handle_timeout(self.now());
                continue;
            }
            return result;
        }
    }

    /// Drains the machine: applies storage operations, renders requests into
    /// the outbox, publishes events, and keeps the completion of `waiting`.
    async fn drain(
        &mut self,
        waiting: Option<CommandId>,
        result: &mut Option<Result<OutcomeKind, Error>>,
    ) {
        let format = self.machine.config().store_format;
        let offset = self.unix_offset_ms;
        while let Some(output) = self.machine.poll_output() {
            match output {
                Output::Store(op) => {
                    let (id, key) = (op.id, op.key);
                    self.unacked_store = Some((id, key));
                    let free = self.buf.0.get_mut(self.outbox_len..).unwrap_or_default();
                    // Awaited to the end: a record write is never raced
                    // against a timeout or another event.
                    let written = self.store.write(key, op.value, format, free).await;
                    if let Err(fault) = written {
                        warn!(
                            "storing the {} record failed: {}",
                            key.name(),
                            fault.as_str()
                        );
                    }
                    let _ = self.machine.handle_stored(
                        unix_now(offset),
                        id,
                        written.map_err(|_| StorageError { key }),
                    );
                    self.unacked_store = None;
                }
                Output::Send(request) => {
                    let id = request.id;
                    let free = self.buf.0.get_mut(self.outbox_len..).unwrap_or_default();
                    let len = match render(&request, self.connector.host(), free) {
                        Some(len) => len,
                        None => {
                            warn!(
                                "request {} does not fit the buffer; failing it unsent",
                                id.0
                            );
                            0
                        }
                    };
                    self.outbox_len += len;
                    // Cannot overflow: the outbox holds the machine's requests
                    // in flight, which it caps at the same number.
                    let _ = self.outbox.push(Outgoing { id, len });
                }
                Output::AuthChange { change, session } => {
                    debug!("auth change: {}", change.as_str());
                    self.events.publish(Event::Auth {
                        change,
                        user: session.map(UserInfo::of),
                    });
                }
                Output::Notice(notice) => self.events.publish(Event::Notice(notice)),
                Output::Complete { id, result: r } => {
                    if Some(id) == waiting {
                        *result = Some(r.as_ref().map(Outcome::kind).map_err(Clone::clone));
                    }
                }
            }
        }
    }

    /// Sends the oldest queued request and feeds its answer to the machine.
    async fn send_next(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let Outgoing { id, len } = self.outbox.remove(0);
        // Rotate the request to the end of the queue region; the others
        // move to the front, so the response can be read over the request
        // once it is written out.
        let (buf, total) = (&mut self.buf.0, self.outbox_len);
        if let Some(queued) = buf.get_mut(..total) {
            queued.rotate_left(len);
        }
        self.outbox_len = total - len;
        let rest = self.outbox_len;
        if len == 0 {
            let _ = self
                .machine
                .handle_transport_error(self.now(), id, TransportError::Connect);
            return;
        }
        self.sending = Some(id);
        let region = self.buf.0.get_mut(rest..).unwrap_or_default();
        let answer = match with_timeout(
            self.request_timeout,
            exchange(&mut self.connector, region, len),
        )
        .await
        {
            Ok(answer) => answer,
            Err(_) => Err(TransportError::Timeout),
        };
        let now = unix_now(self.unix_offset_ms);
        let fed = match answer {
            Ok(r) => {
                debug!("request {}: HTTP {}", id.0, r.status);
                let response = Response {
                    status: r.status,
                    content_type_json: r.content_type_json,
                    body: r.body,
                    reason: r.reason,
                };
                self.machine.handle_response(now, id, response)
            }
            Err(e) => {
                debug!("request {}: {}", id.0, transport_name(e));
                self.machine.handle_transport_error(now, id, e)
            }
        };
        if fed.is_err() {
            warn!("answer to request {} refused by the machine", id.0);
        }
        self.sending = None;
    }
}

/// Unix-ms time from the boot clock.
fn unix_now(unix_offset_ms: u64) -> Instant {
    Instant(
        BootInstant::now()
            .as_millis()
            .saturating_add(unix_offset_ms),
    )
}

/// Reads one record at start; a map that cannot be read is published as
/// [`Event::StorageUnreadable`] and treated as absent.
async fn read_record<'b, F: NorFlash>(
    store: &mut FlashStore<F>,
    events: &dyn EventSink,
    key: RecordKey,
    buf: &'b mut [u8],
) -> Option<&'b [u8]> {
    match store.read(key, buf).await {
        Ok(bytes) => bytes,
        Err(fault) => {
            warn!(
                "reading the {} record failed: {}",
                key.name(),
                fault.as_str()
            );
            events.publish(Event::StorageUnreadable { key, fault });
            None
        }
    }
}

/// Renders `request` as HTTP/1.1 bytes into `out`; `None` if it does not fit.
///
/// The body is rendered at the end of `out` first, then the whole request
/// (head, then a copy of the body) from the start.
fn render(request: &Request<'_>, host: &str, out: &mut [u8]) -> Option<usize> {
    let path = request.path().ok()?;
    let body_len = request.write_body(out).ok()?;
    let split = out.len().checked_sub(body_len)?;
    out.copy_within(..body_len, split);
    let (head, body) = out.split_at_mut(split);
    let capacity = head.len();
    let mut w: &mut [u8] = head;
    let headers = request.headers().map(|h| HeaderLine {
        name: h.name,
        prefix: h.prefix,
        value: h.value,
    });
    http1::write_request(&mut w, request.method(), host, &path, headers, body).ok()?;
    Some(capacity - w.len())
}

/// One exchange: connect, write the `len` request bytes at the start of
/// `region`, read the response into `region`, close.
async fn exchange<'r, C: Connect>(
    connector: &mut C,
    region: &'r mut [u8],
    len: usize,
) -> Result<http1::Response<'r>, TransportError> {
    let mut connection = match connector.connect().await {
        Ok(c) => c,
        Err(_e) => {
            #[cfg(feature = "log")]
            log::debug!("connect failed: {_e:?}");
            return Err(TransportError::Connect);
        }
    };
    let request = region.get(..len).unwrap_or_default();
    if connection.write_all(request).await.is_err() || connection.flush().await.is_err() {
        return Err(TransportError::ConnectionLost);
    }
    let response = http1::read_response_async(&mut connection, region)
        .await
        .map_err(read_error);
    if response.is_ok() {
        C::close(&mut connection).await;
    }
    response
}

/// Maps a response-reading failure to what the core distinguishes.
fn read_error<E>(error: Http1ReadError<E>) -> TransportError {
    match error {
        Http1ReadError::Io(_) | Http1ReadError::UnexpectedEof => TransportError::ConnectionLost,
        _ => TransportError::BadFraming,
    }
}

fn transport_name(error: TransportError) -> &'static str {
    match error {
        TransportError::Connect => "could not connect",
        TransportError::Timeout => "timed out",
        TransportError::ConnectionLost => "connection lost",
        TransportError::BadFraming => "malformed response",
        _ => "transport error",
    }
}
