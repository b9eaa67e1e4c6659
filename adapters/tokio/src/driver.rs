//! The driver task: the one place the core [`Machine`] lives.
//!
//! ```text
//! restore: read records → handle_restored → drain
//! loop {
//!     re-arm the timer if poll_timeout() changed
//!     wait for the first of: a command, an HTTP answer, the timer, a store change
//!     read the wall clock, feed the input, drain:
//!         Send     → spawn the request; its answer comes back as an input
//!         Store    → the queue stalls; once drained, await the write and
//!                    acknowledge it (nothing else runs meanwhile), drain on
//!         Change   → every subscriber
//!         Complete → every caller waiting on that CommandId
//!         Notice   → log + notice subscribers
//! }
//! ```
//!
//! The driver decides nothing about auth: it moves bytes between the core
//! and the outside world, in the order the core emits them.
//!
//! Every input goes through [`Driver::feed`] and every drain ends in
//! [`Driver::end_line`], so a trace (`record_trace`) holds exactly what the
//! machine was given, at the `now` it was given, and what it answered.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use paywall_auth::{
    AccessToken, AuthChange, CapacityError, CommandId, Config, Input, Machine, NotDrained, Notice,
    Outcome, Output, RecordKey, RecordValue, Request, RequestId, Response, Route, Session,
    StorageError, StoreFormat, StoreId, TransportError,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Sleep;

use crate::client::AuthEvent;
use crate::error::Error;
use crate::store::{Store, StoreWatch};
use crate::trace::TraceSink;
use crate::transport::{HttpRequest, HttpResponse, Transport};

/// The global visitor id record (docs/protocol.md §6.2), read once at start.
pub(crate) const VISITOR_ID_KEY: &str = "pw-visitor-id";

/// First size tried for encoding a request body or a record; doubled on a
/// capacity error up to [`MAX_BUF`].
const INITIAL_BUF: usize = 8 * 1024;
const MAX_BUF: usize = 256 * 1024;

/// Shortest wait before re-running a deadline that fired without moving:
/// keeps a deadline the core cannot act on yet (a clock that jumped back)
/// from spinning the driver.
const MIN_REFIRE: Duration = Duration::from_millis(50);

/// The owned form of a command's successful [`Outcome`].
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    Session(Session),
    Upgraded(Session),
    ConfirmationRequired(String),
    SignedOut(crate::client::Revocation),
    AccessToken(Option<AccessToken>),
}

/// Why a command failed, cloneable for fan-out.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    Auth(paywall_auth::Error),
    /// A `storage_failed` from the core, with the store's own account of
    /// why (the OS error and the path, for a file store).
    Storage(paywall_auth::Error, std::sync::Arc<str>),
    Internal(&'static str),
}

pub(crate) type Waiter = oneshot::Sender<Result<Reply, Failure>>;

/// Everything the driver reacts to, except the timer and store changes,
/// on ONE channel: calls of the handles and answers of request tasks are
/// fed to the core in the order they arrived, so a call made before an
/// answer came in joins the operation that answer completes (the core's
/// collapsing then holds for "before the result was known", not for "before
/// the driver happened to look").
///
/// Commands travel by value (they hold the core's fixed-capacity strings);
/// boxing them would add an allocation per call for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Cmd {
    Command(paywall_auth::Command, Waiter),
    Subscribe(mpsc::UnboundedSender<AuthEvent>),
    SubscribeNotices(mpsc::UnboundedSender<Notice>),
    Shutdown(oneshot::Sender<()>),
    /// The last handle was dropped.
    Released,
    Answer(Answer),
}

/// What the handles can read without asking the driver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub session: Option<Session>,
    pub resumable_anonymous: bool,
    pub pending_confirmation: Option<String>,
    pub ready: bool,
    pub closing: bool,
    pub closed: bool,
}

/// The result of one request, coming back from its task.
pub(crate) struct Answer {
    id: RequestId,
    route: Route,
    elapsed: Duration,
    result: Result<HttpResponse, TransportError>,
}

/// One output, copied out of the machine so the borrow ends before it is
/// performed.
enum Action {
    Send(RequestId, Route, Result<HttpRequest, Unsendable>),
    Store {
        id: StoreId,
        key: RecordKey,
        value: Option<Result<Vec<u8>, CapacityError>>,
    },
    Event(AuthEvent),
    Complete(CommandId, Result<Reply, Failure>),
    Notice(Notice),
}

pub(crate) struct Driver<S, T> {
    machine: Machine,
    format: StoreFormat,
    origin: String,
    session_key: String,
    anon_key: String,
    store: S,
    transport: Arc<T>,
    request_timeout: Duration,
    inputs: mpsc::UnboundedReceiver<Cmd>,
    /// For request tasks to answer on the same channel.
    inputs_tx: mpsc::WeakUnboundedSender<Cmd>,
    watch: Option<StoreWatch>,
    waiters: HashMap<CommandId, Vec<Waiter>>,
    subscribers: Vec<mpsc::UnboundedSender<AuthEvent>>,
    notice_subscribers: Vec<mpsc::UnboundedSender<Notice>>,
    /// Notices raised before `build` returned, replayed to every notice
    /// subscriber (nobody could have subscribed yet).
    early_notices: Vec<Notice>,
    state: watch::Sender<Snapshot>,
    state_dirty: bool,
    in_flight: usize,
    timer: Pin<Box<Sleep>>,
    /// The deadline the timer is set for; `None` when disarmed.
    armed: Option<paywall_auth::Instant>,
    /// The deadline that fired last, to detect one that did not move.
    fired: Option<paywall_auth::Instant>,
    closing: bool,
    shutdown_acks: Vec<oneshot::Sender<()>>,
    /// What the store said when a write last failed, for the message of a
    /// `storage_failed` completion.
    last_store_error: Option<Arc<str>>,
    /// The trace being recorded, if any; dropped (recording stops) at the
    /// first write that fails, so a full disk never breaks the client.
    trace: Option<TraceSink>,
}

/// The caller's wall clock as the core's [`Instant`](paywall_auth::Instant),
/// read at every input.
pub(crate) fn wall_clock() -> paywall_auth::Instant {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    paywall_auth::Instant(ms)
}

impl<S: Store, T: Transport> Driver<S, T> {
    pub(crate) fn new(
        config: Config,
        origin: String,
        store: S,
        transport: T,
        request_timeout: Duration,
        state: watch::Sender<Snapshot>,
        trace: Option<TraceSink>,
    ) -> Result<(Self, mpsc::UnboundedSender<Cmd>), Error> {
        let pid = config.paywall_id();
        let key = |k: RecordKey| {
            k.storage_key(pid)
                .map(|s| s.as_str().to_owned())
                .map_err(|e| Error::InvalidConfig(e.to_string()))
        };
        let session_key = key(RecordKey::Session)?;
        let anon_key = key(RecordKey::AnonRefreshToken)?;
        let (inputs_tx, inputs) = mpsc::unbounded_channel();
        let driver = Driver {
            format: config.store_format,
            machine: Machine::new(config),
            origin,
            session_key,
            anon_key,
            store,
            transport: Arc::new(transport),
            request_timeout,
            inputs,
            inputs_tx: inputs_tx.downgrade(),
            watch: None,
            waiters: HashMap::new(),
            subscribers: Vec::new(),
            notice_subscribers: Vec::new(),
            early_notices: Vec::new(),
            state,
            state_dirty: true,
            in_flight: 0,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
            fired: None,
            closing: false,
            shutdown_acks: Vec::new(),
            last_store_error: None,
            trace,
        };
        Ok((driver, inputs_tx))
    }

    /// Reads the records, restores the machine and performs what that
    /// asks (a repair write of the resumable copy, for instance).
    pub(crate) async fn restore(&mut self) -> Result<(), Error> {
        let session = self.store.get(&self.session_key).await?;
        let anon = self.store.get(&self.anon_key).await?;
        let visitor = self.store.get(VISITOR_ID_KEY).await?;
        let visitor = visitor.and_then(|v| String::from_utf8(v).ok());
        tracing::debug!(
            session = session.is_some(),
            anonymous = anon.is_some(),
            visitor = visitor.is_some(),
            "restoring from storage"
        );
        self.feed(
            wall_clock(),
            Input::Restored {
                session: session.as_deref(),
                anon_refresh_token: anon.as_deref(),
                visitor_id: visitor.as_deref(),
            },
        )
        .map_err(|_| Error::Internal("restore refused: outputs not drained"))?;
        // Notices of this drain are kept for `notices()` (see `drain`).
        self.drain().await;
        // Changes from now on; anything before was read above.
        self.watch = self.store.watch();
        self.state.send_modify(|s| s.ready = true);
        Ok(())
    }

    pub(crate) async fn run(mut self) {
        loop {
            if self.closing && self.in_flight == 0 {
                break;
            }
            self.arm_timer();
            let timer_armed = self.armed.is_some();
            let watching = self.watch.is_some() && !self.closing;
            tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(input) => self.on_input(input).await,
                    // Only weak senders are left: no handle, no request.
                    None => break,
                },
                () = &mut self.timer, if timer_armed => self.on_timer().await,
                change = next_change(&mut self.watch), if watching => match change {
                    Some(change) => self.on_store_change(change.key, change.value).await,
                    None => self.watch = None,
                },
            }
        }
        tracing::debug!("auth client stopped");
        let acks = std::mem::take(&mut self.shutdown_acks);
        let state = self.state.clone();
        // Callers still waiting learn `client_closed`; subscriber streams
        // end; the store (and a file store's lock) is released.
        drop(self);
        state.send_modify(|s| s.closed = true);
        for ack in acks {
            let _ = ack.send(());
        }
    }

    fn begin_close(&mut self, why: &'static str) {
        if !self.closing {
            tracing::debug!(why, in_flight = self.in_flight, "auth client closing");
            self.closing = true;
            self.state.send_modify(|s| s.closing = true);
        }
    }

    /// Re-arms the timer when the core's deadline changed (or fired).
    fn arm_timer(&mut self) {
        let deadline = if self.closing {
            None
        } else {
            self.machine.poll_timeout()
        };
        if deadline == self.armed {
            return;
        }
        self.armed = deadline;
        if let Some(at) = deadline {
            let mut wait =
                Duration::from_millis(at.as_millis().saturating_sub(wall_clock().as_millis()));
            if self.fired == Some(at) {
                wait = wait.max(MIN_REFIRE);
            }
            tracing::trace!(wait_ms = wait.as_millis() as u64, "timer armed");
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::now() + wait);
        }
    }

    async fn on_timer(&mut self) {
        self.fired = self.armed.take();
        tracing::trace!("deadline reached");
        if self.feed(wall_clock(), Input::Timeout).is_err() {
            tracing::error!("timeout refused: outputs not drained");
        }
        self.drain().await;
    }

    async fn on_input(&mut self, input: Cmd) {
        match input {
            Cmd::Answer(answer) => self.on_answer(answer).await,
            Cmd::Released => self.begin_close("every handle was dropped"),
            Cmd::Shutdown(ack) => {
                self.shutdown_acks.push(ack);
                self.begin_close("shutdown requested");
            }
            // Closing: a call is dropped unanswered, which its caller sees
            // as `client_closed`.
            Cmd::Command(..) if self.closing => {}
            Cmd::Command(command, waiter) => {
                let kind = command_name(&command);
                match self.feed(wall_clock(), Input::Command(command)) {
                    Ok(Some(id)) => {
                        tracing::debug!(command = kind, command_id = id.0, "command");
                        self.waiters.entry(id).or_default().push(waiter);
                    }
                    // A command input always yields its id.
                    Ok(None) => {
                        tracing::error!(command = kind, "command accepted without an id");
                        let _ = waiter.send(Err(Failure::Internal("command without an id")));
                    }
                    Err(_) => {
                        tracing::error!(command = kind, "command refused: outputs not drained");
                        let _ = waiter.send(Err(Failure::Internal("outputs not drained")));
                    }
                }
                self.drain().await;
            }
            Cmd::Subscribe(tx) => {
                let initial = AuthEvent {
                    change: AuthChange::InitialSession,
                    session: self.machine.session().cloned(),
                };
                if tx.send(initial).is_ok() {
                    self.subscribers.push(tx);
                }
            }
            Cmd::SubscribeNotices(tx) => {
                if self.early_notices.iter().all(|n| tx.send(*n).is_ok()) {
                    self.notice_subscribers.push(tx);
                }
            }
        }
    }

    async fn on_answer(&mut self, answer: Answer) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Answer {
            id,
            route,
            elapsed,
            result,
        } = answer;
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let now = wall_clock();
        let fed = match &result {
            Ok(response) => {
                tracing::debug!(
                    request_id = id.0,
                    route = route.suffix(),
                    status = response.status,
                    bytes = response.body.len(),
                    elapsed_ms,
                    "response"
                );
                self.feed(
                    now,
                    Input::Response(
                        id,
                        Response {
                            status: response.status,
                            content_type_json: response.content_type_json,
                            body: &response.body,
                            reason: &response.reason,
                        },
                    ),
                )
            }
            Err(error) => {
                tracing::warn!(
                    request_id = id.0,
                    route = route.suffix(),
                    ?error,
                    elapsed_ms,
                    "request failed below HTTP"
                );
                self.feed(now, Input::TransportFailed(id, *error))
            }
        };
        if fed.is_err() {
            tracing::error!(request_id = id.0, "answer refused: outputs not drained");
        }
        self.drain().await;
    }

    async fn on_store_change(&mut self, key: String, value: Option<Vec<u8>>) {
        let record = if key == self.session_key {
            RecordKey::Session
        } else if key == self.anon_key {
            RecordKey::AnonRefreshToken
        } else {
            return;
        };
        tracing::debug!(
            key = record.name(),
            removed = value.is_none(),
            "external store change"
        );
        if self
            .feed(
                wall_clock(),
                Input::ExternalChange(record, value.as_deref()),
            )
            .is_err()
        {
            tracing::error!("external change refused: outputs not drained");
        }
        self.drain().await;
    }

    /// Feeds one input to the machine, recording it first when a trace is
    /// on. The only way in: the trace then holds every input with the very
    /// `now` the machine got (read once by the caller).
    fn feed(
        &mut self,
        now: paywall_auth::Instant,
        input: Input<'_>,
    ) -> Result<Option<CommandId>, NotDrained> {
        if let Some(trace) = self.trace.as_mut() {
            trace.input(now, &input);
        }
        self.machine.handle_input(now, input)
    }

    /// Closes the trace line of the last input: its outputs are all polled
    /// (`poll_output` gave `None`), so the deadline now is the one a
    /// replay must find. A failed write stops the recording, not the
    /// client.
    fn end_line(&mut self) {
        let Some(trace) = self.trace.as_mut() else {
            return;
        };
        if let Err(error) = trace.end(self.machine.poll_timeout()) {
            tracing::warn!(
                path = %trace.path().display(),
                %error,
                "cannot write the trace; recording stopped (the client carries on)"
            );
            self.trace = None;
        }
    }

    /// Performs every output the core has queued, in order.
    ///
    /// A storage operation stalls the core's queue until it is
    /// acknowledged: it is performed once `poll_output` says `None` (which
    /// it does right after a store output), and its acknowledgement is the
    /// next input, whose outputs this drains in turn. So each input's
    /// outputs end where the core stopped giving them, which is where its
    /// trace line ends.
    async fn drain(&mut self) {
        let mut stalled_on = None;
        loop {
            let action = match self.machine.poll_output() {
                None => {
                    self.end_line();
                    match stalled_on.take() {
                        Some((id, key, value)) => {
                            self.store(id, key, value).await;
                            continue;
                        }
                        None => break,
                    }
                }
                Some(output) => {
                    if let Some(trace) = self.trace.as_mut() {
                        trace.output(&output);
                    }
                    action_of(output, &self.origin, self.format)
                }
            };
            match action {
                Action::Send(id, route, request) => self.send(id, route, request),
                Action::Store { id, key, value } => stalled_on = Some((id, key, value)),
                Action::Event(event) => {
                    tracing::debug!(
                        event = event.change.as_str(),
                        user_id = event.session.as_ref().map(|s| s.user.id.as_str()),
                        "auth change"
                    );
                    self.state_dirty = true;
                    self.publish_state();
                    self.subscribers.retain(|s| s.send(event.clone()).is_ok());
                }
                Action::Complete(id, result) => {
                    let result = match result {
                        Err(Failure::Auth(e @ paywall_auth::Error::Storage(_))) => {
                            match &self.last_store_error {
                                Some(cause) => Err(Failure::Storage(e, cause.clone())),
                                None => Err(Failure::Auth(e)),
                            }
                        }
                        other => other,
                    };
                    if let Err(e) = &result {
                        tracing::debug!(command_id = id.0, error = ?e, "command failed");
                    }
                    if !matches!(result, Ok(Reply::AccessToken(_))) {
                        self.state_dirty = true;
                    }
                    // A caller that reads `session()` after its call
                    // returned sees at least the state it completed in.
                    self.publish_state();
                    for waiter in self.waiters.remove(&id).unwrap_or_default() {
                        // Err: that caller stopped waiting (its future was
                        // dropped); the others still get the result.
                        let _ = waiter.send(result.clone());
                    }
                }
                Action::Notice(notice) => {
                    tracing::debug!(?notice, "storage notice");
                    self.state_dirty = true;
                    self.publish_state();
                    if !self.state.borrow().ready {
                        self.early_notices.push(notice);
                    }
                    self.notice_subscribers.retain(|s| s.send(notice).is_ok());
                }
            }
        }
        self.publish_state();
    }

    /// Updates what the handles read without asking (`session()` …) if
    /// anything that feeds it may have changed. Called before every
    /// completion or event is delivered, so nobody hears of a change before
    /// the snapshot shows it.
    fn publish_state(&mut self) {
        if !std::mem::take(&mut self.state_dirty) {
            return;
        }
        let session = self.machine.session();
        let resumable = self.machine.has_resumable_anonymous();
        let pending = self.machine.pending_confirmation();
        self.state.send_if_modified(|s| {
            let changed = s.session.as_ref() != session
                || s.resumable_anonymous != resumable
                || s.pending_confirmation.as_deref() != pending;
            if changed {
                s.session = session.cloned();
                s.resumable_anonymous = resumable;
                s.pending_confirmation = pending.map(str::to_owned);
            }
            changed
        });
    }

    /// Sends a request on its own task; the answer comes back through
    /// `answers` (bounded by the request timeout whatever the transport
    /// does).
    fn send(&mut self, id: RequestId, route: Route, request: Result<HttpRequest, Unsendable>) {
        self.in_flight += 1;
        let transport = self.transport.clone();
        // Upgraded while the request runs: the driver holds the receiver,
        // so this succeeds as long as anybody will read the answer.
        let answers = self.inputs_tx.upgrade();
        let timeout = self.request_timeout;
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let result = match request {
                Ok(request) => {
                    tracing::debug!(request_id = id.0, route = route.suffix(), "request");
                    tokio::time::timeout(timeout, transport.send(request))
                        .await
                        .unwrap_or(Err(TransportError::Timeout))
                }
                Err(Unsendable::Capacity(e)) => {
                    // Not reachable with the core's capacities; the core
                    // still gets exactly one answer for the request.
                    tracing::error!(request_id = id.0, error = %e, "request could not be encoded");
                    Err(TransportError::BadFraming)
                }
                Err(Unsendable::HeaderValue(header)) => {
                    // Never handed to the transport, so `Connect`: the
                    // request did not leave.
                    tracing::warn!(
                        request_id = id.0,
                        header,
                        "request not sent: a header value holds a control character"
                    );
                    Err(TransportError::Connect)
                }
            };
            // Err: the driver is gone; nobody needs the answer.
            if let Some(answers) = answers {
                let _ = answers.send(Cmd::Answer(Answer {
                    id,
                    route,
                    elapsed: started.elapsed(),
                    result,
                }));
            }
        });
    }

    /// Applies one storage operation and acknowledges it.
    async fn store(
        &mut self,
        id: StoreId,
        key: RecordKey,
        value: Option<Result<Vec<u8>, CapacityError>>,
    ) {
        let name = match key {
            RecordKey::Session => self.session_key.as_str(),
            RecordKey::AnonRefreshToken => self.anon_key.as_str(),
        };
        let result = match &value {
            Some(Ok(bytes)) => self.store.set(name, bytes).await,
            None => self.store.remove(name).await,
            Some(Err(e)) => Err(crate::store::StoreError::backend(e.to_string())),
        };
        let result = match result {
            Ok(()) => {
                tracing::debug!(
                    key = key.name(),
                    op = if value.is_some() { "write" } else { "remove" },
                    "stored"
                );
                Ok(())
            }
            Err(error) => {
                tracing::warn!(key = key.name(), %error, "storage operation failed");
                self.last_store_error = Some(error.to_string().into());
                Err(StorageError { key })
            }
        };
        self.state_dirty = true;
        if self.feed(wall_clock(), Input::Stored(id, result)).is_err() {
            tracing::error!("storage acknowledgement refused");
        }
    }
}

/// Copies an output out of the machine.
fn action_of(output: Output<'_>, origin: &str, format: StoreFormat) -> Action {
    match output {
        Output::Send(request) => {
            Action::Send(request.id, request.route, http_request(&request, origin))
        }
        Output::Store(op) => Action::Store {
            id: op.id,
            key: op.key,
            value: op.value.map(|v| encode_record(&v, format)),
        },
        Output::AuthChange { change, session } => Action::Event(AuthEvent {
            change,
            session: session.cloned(),
        }),
        Output::Complete { id, result } => Action::Complete(
            id,
            match result {
                Ok(outcome) => Ok(reply_of(outcome)),
                Err(e) => Err(Failure::Auth(e)),
            },
        ),
        Output::Notice(notice) => Action::Notice(notice),
    }
}

fn reply_of(outcome: Outcome<'_>) -> Reply {
    match outcome {
        Outcome::Session(s) => Reply::Session(s.clone()),
        Outcome::Upgraded(s) => Reply::Upgraded(s.clone()),
        Outcome::ConfirmationRequired { email } => Reply::ConfirmationRequired(email.to_owned()),
        Outcome::SignedOut(r) => Reply::SignedOut(crate::client::Revocation::of(r)),
        Outcome::AccessToken(t) => Reply::AccessToken(t.cloned()),
    }
}

/// Why a core request was not handed to the transport.
#[derive(Debug)]
enum Unsendable {
    Capacity(CapacityError),
    /// A header value (named) fails the core's `Header::has_valid_value`:
    /// a line break from the server's access token or the caller's
    /// idempotency key would inject header lines into a custom transport
    /// that writes HTTP/1.1 itself (reqwest refuses it, as a
    /// `ConnectionLost`-looking builder error).
    HeaderValue(&'static str),
}

impl From<CapacityError> for Unsendable {
    fn from(e: CapacityError) -> Self {
        Unsendable::Capacity(e)
    }
}

/// Renders a core request: origin + path, the core's headers as they are
/// (each checked by the core's rule), the core's body.
fn http_request(request: &Request<'_>, origin: &str) -> Result<HttpRequest, Unsendable> {
    let path = request.path()?;
    let headers = request
        .headers()
        .map(|h| {
            if h.has_valid_value() {
                Ok((h.name, format!("{}{}", h.prefix, h.value)))
            } else {
                Err(Unsendable::HeaderValue(h.name))
            }
        })
        .collect::<Result<_, _>>()?;
    let body = with_buffer(|buf| request.write_body(buf).map(|n| buf[..n].to_vec()))?;
    Ok(HttpRequest {
        method: request.method(),
        url: format!("{origin}{}", path.as_str()),
        headers,
        body,
    })
}

fn encode_record(value: &RecordValue<'_>, format: StoreFormat) -> Result<Vec<u8>, CapacityError> {
    with_buffer(|buf| value.encode(format, buf).map(<[u8]>::to_vec))
}

/// Runs `f` with a buffer that grows on capacity errors.
fn with_buffer<R>(
    mut f: impl FnMut(&mut [u8]) -> Result<R, CapacityError>,
) -> Result<R, CapacityError> {
    let mut size = INITIAL_BUF;
    loop {
        let mut buf = vec![0; size];
        match f(&mut buf) {
            Err(_) if size < MAX_BUF => size *= 2,
            other => return other,
        }
    }
}

fn next_change(
    watch: &mut Option<StoreWatch>,
) -> impl Future<Output = Option<crate::store::StoreChange>> + '_ {
    poll_fn(move |cx| match watch.as_mut() {
        Some(stream) => stream.as_mut().poll_next(cx),
        None => std::task::Poll::Pending,
    })
}

fn command_name(command: &paywall_auth::Command) -> &'static str {
    match command {
        paywall_auth::Command::SignInAnonymously(o) if o.force_new => {
            "sign_in_anonymously(force_new)"
        }
        paywall_auth::Command::SignInAnonymously(_) => "sign_in_anonymously",
        paywall_auth::Command::UpgradeToEmail(_) => "upgrade_to_email",
        paywall_auth::Command::SignOut(o) if o.forget_anonymous => "sign_out(forget_anonymous)",
        paywall_auth::Command::SignOut(_) => "sign_out",
        paywall_auth::Command::Refresh => "refresh",
        paywall_auth::Command::AccessToken => "access_token",
    }
}
