//! The machine: inputs in, outputs out, time as an argument. How to drive
//! it is documented on [`Machine`], the public face of this module.

mod anon;
mod restore;
mod signout;
mod tokens;

#[cfg(test)]
mod tests;

use heapless::{Deque, String, Vec};

use crate::command::{Command, CommandId, SignInOptions, UpgradeRequest};
use crate::config::Config;
use crate::error::{ApiError, CapacityError, DecodeError, Error, StorageError, TransportError};
use crate::limits::{EMAIL_MAX, OUTPUT_QUEUE, REQUESTS_IN_FLIGHT};
use crate::output::{AuthChange, Notice, Outcome, Output, Revocation};
use crate::request::{Body, Request, RequestId, Route};
use crate::session::{RefreshToken, Session};
use crate::storage::{RecordKey, RecordValue, StoreId, StoreOp};
use crate::time::Instant;

/// Commands accepted before storage has been restored; they run, in order,
/// right after [`Input::Restored`].
const EARLY_COMMANDS: usize = 4;

/// A command that arrived before restore. The large arguments are parked in
/// the slots their operation will use anyway (`queued`, `upgrade`), so the
/// early queue itself costs a few bytes per entry.
#[derive(Debug, Clone, Copy)]
enum Early {
    SignIn,
    Upgrade,
    SignOut(crate::command::SignOutOptions),
    Refresh,
    AccessToken,
}

/// "No deadline".
const NEVER: Instant = Instant(u64::MAX);

/// Longest visitor id kept from storage.
const VISITOR_ID_MAX: usize = 64;

/// An HTTP response to a request of the machine.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// HTTP status code.
    pub status: u16,
    /// Whether `Content-Type` contained `application/json`.
    pub content_type_json: bool,
    /// The complete body (de-chunked).
    pub body: &'a [u8],
    /// The status text as the transport reports it: the HTTP/1.1 reason
    /// phrase, `fetch`'s `statusText`; `""` when there is none (HTTP/2).
    /// It becomes the error message when the body carries none, as the
    /// reference's `response.statusText` does (§1.5).
    pub reason: &'a str,
}

impl<'a> Response<'a> {
    /// A JSON response without a status text.
    pub const fn json(status: u16, body: &'a [u8]) -> Self {
        Response {
            status,
            content_type_json: true,
            body,
            reason: "",
        }
    }

    /// The same response with the transport's status text.
    pub const fn with_reason(self, reason: &'a str) -> Self {
        Response { reason, ..self }
    }

    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

// `Command` makes one variant large; inputs are moved once and there is no
// allocator to box them.
#[allow(clippy::large_enum_variant)]
/// Every input of the machine as one value, for drivers that log and replay
/// input traces. The `handle_*` methods are shorthands for it.
#[derive(Debug, Clone)]
pub enum Input<'a> {
    /// The records found on storage at start (`None` = absent).
    Restored {
        /// Bytes of the session record.
        session: Option<&'a [u8]>,
        /// Bytes of the anonymous refresh-token record.
        anon_refresh_token: Option<&'a [u8]>,
        /// The global `pw-visitor-id`, if any.
        visitor_id: Option<&'a str>,
    },
    /// A user command; its id comes back from [`Machine::handle_input`].
    Command(Command),
    /// The response to a request.
    Response(RequestId, Response<'a>),
    /// A request failed below HTTP.
    TransportFailed(RequestId, TransportError),
    /// A storage operation finished.
    Stored(StoreId, Result<(), StorageError>),
    /// Another process or tab changed a record (`None` = removed).
    ExternalChange(RecordKey, Option<&'a [u8]>),
    /// The deadline of [`Machine::poll_timeout`] passed.
    Timeout,
}

/// An input arrived while outputs were still queued (see the drain
/// invariant on [`Machine`]); the input was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NotDrained;

impl core::error::Error for NotDrained {}

impl core::fmt::Display for NotDrained {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("outputs not drained: call poll_output until None before the next input")
    }
}

/// What a successful command reports; rendered into an [`Outcome`] at
/// poll time from the state the batch left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    Session,
    Upgraded,
    ConfirmationRequired,
    SignedOut(Revoke),
    AccessToken,
    NoAccessToken,
}

/// What became of a sign-out's revocation; see [`Revocation`]. Two bytes,
/// so a queued completion stays as small as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revoke {
    NotNeeded,
    Revoked,
    /// The server's error waits in [`Machine::api_error`].
    FailedApi,
    FailedNetwork(TransportError),
    /// The reply renewing a stale bearer was unusable.
    FailedInvalid,
    /// No request slot.
    FailedBusy,
}

/// One queued output. Small on purpose: the payloads are borrowed from the
/// machine when polled.
#[derive(Debug, Clone)]
enum Queued {
    Send(RequestId),
    Store {
        key: RecordKey,
        put: bool,
    },
    /// Writes `key` before request `.1` goes out; the request follows the
    /// write and is cancelled if it fails (nothing spent). Usually the
    /// record's current value, rewritten to prove the store can take the
    /// write the answer will need (`.2`: verify only); when `.2` is false
    /// the value is new (a guest record mirroring the session's token) and
    /// must really be written.
    Guard(RecordKey, RequestId, bool),
    Change(AuthChange),
    Complete(CommandId, Result<Done, Failure>),
    Notice(Notice),
}

/// An [`Error`] as queued: the one large variant, the server's
/// [`ApiError`], waits in [`Machine::api_error`] (one response per input, so
/// one per batch), keeping every queue slot small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Api,
    Network(TransportError),
    InvalidResponse(DecodeError),
    Capacity(CapacityError),
    Storage(StorageError),
    NotAuthenticated,
    NotAnonymous,
    UpgradeInProgress,
    Superseded,
    Busy,
}

impl Failure {
    fn into_error(self, api: Option<&ApiError>) -> Error {
        match self {
            Failure::Api => api.cloned().map_or(Error::Busy, Error::Api),
            Failure::Network(t) => Error::Network(t),
            Failure::InvalidResponse(d) => Error::InvalidResponse(d),
            Failure::Capacity(c) => Error::Capacity(c),
            Failure::Storage(s) => Error::Storage(s),
            Failure::NotAuthenticated => Error::NotAuthenticated,
            Failure::NotAnonymous => Error::NotAnonymous,
            Failure::UpgradeInProgress => Error::UpgradeInProgress,
            Failure::Superseded => Error::Superseded,
            Failure::Busy => Error::Busy,
        }
    }
}

/// Why a request was sent, and what its answer may still touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// `/auth/refresh` with the stored anonymous token.
    AnonResume { presented: u64, guest_gen: u32 },
    /// `/auth/anonymous/signin`.
    AnonCreate { guest_gen: u32 },
    /// `/auth/refresh` of the current session; `guest_gen` when it is a
    /// guest's.
    Refresh {
        epoch: u32,
        presented: u64,
        guest_gen: Option<u32>,
    },
    /// `/auth/anonymous/upgrade`.
    Upgrade { epoch: u32, refresh_fp: u64 },
    /// `/auth/refresh` of a session that was signed out with a stale access
    /// token, to get a bearer that `/auth/signout` will accept (§12.14).
    /// `caller` is the sign-out waiting to learn whether it revoked.
    SignOutRefresh { caller: Option<CommandId> },
    /// `/auth/signout`; `caller` as above (`None` for orphans revoked on
    /// the machine's own initiative).
    SignOut { caller: Option<CommandId> },
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    id: RequestId,
    purpose: Purpose,
    /// When it is failed as a timeout if still unanswered ([`NEVER`] when
    /// the adapter owns timeouts); once `timed_out`, when its slot is
    /// reclaimed.
    deadline: Instant,
    /// Its caller was already told `Timeout`; only a late answer's side
    /// effects (rotated tokens) still matter.
    timed_out: bool,
}

/// A storage operation handed out and not yet acknowledged.
#[derive(Debug, Clone, Copy)]
struct AwaitingStore {
    id: StoreId,
    key: RecordKey,
    /// Fingerprint of the refresh token written (0 for a removal), for the
    /// echo queue.
    written: u64,
    /// The request this write guards (see [`Queued::Guard`]).
    guards: Option<RequestId>,
    kind: WriteKind,
}

/// What a write handed out is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    /// The record's new value (or its removal).
    Value,
    /// A rewrite of the value the record holds (see [`Queued::Guard`]): if
    /// it fails, the record still holds that value, so nothing is dirty.
    Verify,
    /// The removal of another account's session record that goes before a
    /// guest record is written (see [`Machine::session_record_user`]): not
    /// the session's own write, so the record stays dirty if it was.
    ClearOther,
}

/// The anonymous sign-in in flight (at most one: never two sign-ups).
#[derive(Debug)]
struct AnonOp {
    id: CommandId,
    force: bool,
    /// Its caller was told `Superseded`; the request runs on only so that
    /// the account it creates or resumes is not lost.
    detached: bool,
    options: SignInOptions,
    /// Whether the live request is a resume (it presents `anon_token`).
    resuming: bool,
    request: RequestId,
}

/// A sign-in waiting for the one in flight to end (a forced call behind a
/// plain one, or any call behind a detached one).
#[derive(Debug)]
struct QueuedSignIn {
    id: CommandId,
    options: SignInOptions,
}

/// The refresh of the current session in flight (at most one).
#[derive(Debug)]
struct RefreshOp {
    request: RequestId,
    /// Callers of [`Command::Refresh`].
    refresh_id: Option<CommandId>,
    /// Callers of [`Command::AccessToken`].
    token_id: Option<CommandId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpgradeStage {
    /// Waiting for the refresh that gets a fresh bearer.
    AwaitingToken,
    Sent(RequestId),
}

#[derive(Debug)]
struct UpgradeOp {
    id: CommandId,
    request: UpgradeRequest,
    stage: UpgradeStage,
}

/// The deterministic, sans-IO anonymous-auth client.
///
/// # Driving it
///
/// ```text
/// loop {
///     while let Some(out) = machine.poll_output() { perform(out) }   // drain
///     wait for the first of: a response, a command, a storage ack, poll_timeout()
///     machine.handle_*(now, …)                                       // feed
/// }
/// ```
///
/// # The drain invariant
///
/// After every input, drain [`Machine::poll_output`] until it returns `None`
/// before the next input; any `handle_*` call made with outputs still queued
/// is refused with [`NotDrained`] and changes nothing. Outputs borrow the
/// machine's state, which is why this matters: a request or a stored record
/// is rendered from the state as it is *now*, and the invariant guarantees
/// that "now" is the state the outputs were queued for.
///
/// # Storage comes first
///
/// A [`Output::Store`] stalls the queue: nothing after it is released until
/// the adapter acknowledges the write with [`Machine::handle_stored`] (the
/// only input accepted meanwhile). Events and completions that depend on a
/// write are queued behind it, so no caller hears "success" before a rotated
/// refresh token is durable; if the write fails, those completions turn into
/// [`Error::Storage`] and the write is retried.
///
/// # Epochs
///
/// Every change of *who* is signed in (sign-in, sign-out, another process
/// switching users) starts a new epoch. Each request remembers the epoch it
/// was made in; a response from an older epoch is never applied to the
/// current session (the reference client's resurrection bugs, §12.5/§12.6),
/// but a refresh token it rotated is still saved if it belongs to the
/// resumable anonymous account (§12.7: nothing is dropped on the floor).
///
/// # Write order
///
/// A batch writes a guest's anonymous record before its session record,
/// and a failed write holds back the batch's later writes until its retry:
/// writes land in order or not at all. So after a crash or a failed write
/// the anonymous record is never the older of the two, and restore trusts
/// it when they disagree (the session record is set aside as a fallback).
/// A guest session written by another process (which may have died before
/// its own guest record) is mirrored into the guest record when adopted.
///
/// The crate README has a complete loop.
#[derive(Debug)]
pub struct Machine {
    config: Config,
    now: Instant,
    restored: bool,
    early: Vec<(CommandId, Early), EARLY_COMMANDS>,
    /// Id reserved for the early command being run.
    proposed: Option<CommandId>,

    /// The session: live, or retired by a sign-out and kept only until its
    /// revocation request has been rendered (saves a second token buffer).
    slot: Option<Session>,
    retired: bool,
    /// The slot holds a guest session record that restore found to
    /// disagree with the anonymous record (a crash between the two
    /// writes). Signed in but *unsettled*: not trusted as fresh, and its
    /// next refresh presents the anonymous record's (newer) token first,
    /// its own only if that one is dead. Once retired by a sign-out, its
    /// token is still the fallback of the next resume.
    stale_guest: bool,
    /// When the current tokens were received (bounds proactive refresh of
    /// short-lived tokens).
    tokens_since: Instant,
    epoch: u32,
    /// Mirror of the anonymous refresh-token record.
    anon_token: Option<RefreshToken>,
    visitor_id: Option<String<VISITOR_ID_MAX>>,
    /// Email of a `confirmation_required` upgrade not yet seen confirmed.
    pending_confirmation: Option<String<EMAIL_MAX>>,
    /// Fingerprints of refresh tokens this machine has spent, to recognise
    /// echoes of its own older writes (§12.9).
    spent: [u64; 4],
    spent_next: u8,

    next_id: u32,
    in_flight: Vec<InFlight, REQUESTS_IN_FLIGHT>,
    anon: Option<AnonOp>,
    queued: Option<QueuedSignIn>,
    /// Bumped whenever the user gives up the resumable guest account (hard
    /// sign-out, `force_new`). A guest's tokens that arrive for a request
    /// made under an older generation are revoked, not adopted.
    guest_gen: u32,
    /// Fingerprints of refresh tokens of the last eight distinct session
    /// records this machine wrote, to recognise echoes of its own writes
    /// (§12.9) — storage that echoes writes does so within a few writes.
    written: [u64; 8],
    written_next: u8,
    refresh: Option<RefreshOp>,
    upgrade: Option<UpgradeOp>,

    outputs: Deque<Queued, OUTPUT_QUEUE>,
    /// The server error the queued completions of this batch refer to.
    api_error: Option<ApiError>,
    /// The store operation handed out and not yet acknowledged.
    awaiting_store: Option<AwaitingStore>,
    /// Own writes whose echo is still to come (with `echoes_own_writes`),
    /// each an [`echo_tag`] of the record and the fingerprint of the
    /// refresh token written: eight fit where six key/fingerprint pairs did
    /// (a guest switch writes three records in one batch).
    echoes: Deque<u64, 8>,
    /// Records whose last write failed, retried at `storage_retry_at`.
    dirty: [bool; 2],
    /// Fingerprint of the user id the session record on storage holds, as
    /// far as this machine knows (0: no record). A guest record is never
    /// written beside another account's session record: a client that
    /// trusts the session record (the reference one) would refresh that
    /// account and overwrite the guest record with its token, and a crash
    /// would leave restore two guests to choose from. So switching guests
    /// removes the old session record first (docs/protocol.md §13.8).
    session_record_user: u32,
    storage_retry_at: Option<Instant>,
    storage_backoff: u64,
    /// When a failed proactive refresh may be retried.
    refresh_retry_at: Option<Instant>,
    refresh_backoff: u64,
}

impl Machine {
    /// A machine that has not yet seen storage. Feed it
    /// [`Input::Restored`] first; commands given before are queued
    /// (at most two, identical ones collapse).
    pub fn new(config: Config) -> Self {
        Machine {
            config,
            now: Instant(0),
            restored: false,
            early: Vec::new(),
            proposed: None,
            slot: None,
            retired: false,
            stale_guest: false,
            tokens_since: Instant(0),
            epoch: 0,
            anon_token: None,
            visitor_id: None,
            pending_confirmation: None,
            spent: [0; 4],
            spent_next: 0,
            next_id: 1,
            in_flight: Vec::new(),
            anon: None,
            queued: None,
            guest_gen: 0,
            written: [0; 8],
            written_next: 0,
            refresh: None,
            upgrade: None,
            outputs: Deque::new(),
            api_error: None,
            awaiting_store: None,
            echoes: Deque::new(),
            dirty: [false; 2],
            session_record_user: 0,
            storage_retry_at: None,
            storage_backoff: 0,
            refresh_retry_at: None,
            refresh_backoff: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current session.
    pub fn session(&self) -> Option<&Session> {
        self.current()
    }

    fn current(&self) -> Option<&Session> {
        self.slot.as_ref().filter(|_| !self.retired)
    }

    fn current_mut(&mut self) -> Option<&mut Session> {
        self.slot.as_mut().filter(|_| !self.retired)
    }

    /// A signed-out session kept for its revocation.
    fn retired_session(&self) -> Option<&Session> {
        self.slot.as_ref().filter(|_| self.retired)
    }

    /// Whether storage has been restored (and `INITIAL_SESSION` emitted).
    pub fn is_ready(&self) -> bool {
        self.restored
    }

    /// The command a plain anonymous sign-in (no `force_new`) would join if
    /// it were handed in now: the sign-in in flight, whose completion
    /// answers every caller that joined it (docs/protocol.md §7.1). `None`
    /// when such a call would do anything else: nothing in flight, its
    /// caller detached (a sign-out came between), or restore not done.
    ///
    /// An adapter may attach callers to that completion without handing in
    /// the command, as long as no other input reaches the machine first:
    /// the wasm package does, so 100 joined calls cost 100 Promises rather
    /// than 100 trips through the machine.
    ///
    /// ```
    /// use paywall_auth::{Command, Config, Instant, Machine, SignInOptions};
    /// let mut m = Machine::new(Config::new("pw_1").unwrap());
    /// m.handle_restored(Instant(0), None, None, None).unwrap();
    /// while m.poll_output().is_some() {}
    /// assert_eq!(m.sign_in_joins(), None);
    /// let leader = m
    ///     .handle_command(Instant(0), Command::SignInAnonymously(SignInOptions::default()))
    ///     .unwrap();
    /// assert_eq!(m.sign_in_joins(), Some(leader));
    /// ```
    pub fn sign_in_joins(&self) -> Option<CommandId> {
        self.anon
            .as_ref()
            .filter(|op| self.restored && !op.detached)
            .map(|op| op.id)
    }

    /// Whether an anonymous account can be resumed from storage.
    pub fn has_resumable_anonymous(&self) -> bool {
        self.anon_token.is_some()
    }

    /// The refresh token of the guest record as the machine holds it: on
    /// storage, or about to be (a write waiting for its retry). For
    /// simulations and diagnostics; like [`Machine::session`], the secret
    /// never prints.
    pub fn anonymous_refresh_token(&self) -> Option<&RefreshToken> {
        self.anon_token.as_ref()
    }

    /// Email of an upgrade that awaits confirmation.
    pub fn pending_confirmation(&self) -> Option<&str> {
        self.pending_confirmation.as_deref()
    }

    // ----- inputs ------------------------------------------------------

    /// Feeds one input. Returns the id of a command input (shared by every
    /// command that collapsed into the same operation).
    pub fn handle_input(
        &mut self,
        now: Instant,
        input: Input<'_>,
    ) -> Result<Option<CommandId>, NotDrained> {
        let is_ack = matches!(input, Input::Stored(..));
        if self.awaiting_store.is_some() != is_ack || (!is_ack && !self.outputs.is_empty()) {
            return Err(NotDrained);
        }
        // Time never runs backwards for the machine, whatever the clock does.
        self.now = self.now.max(now);
        match input {
            Input::Restored {
                session,
                anon_refresh_token,
                visitor_id,
            } => {
                self.on_restored(session, anon_refresh_token, visitor_id);
                Ok(None)
            }
            Input::Command(cmd) => Ok(Some(self.on_command(cmd))),
            Input::Response(id, resp) => {
                self.on_answer(id, Ok(resp));
                Ok(None)
            }
            Input::TransportFailed(id, err) => {
                self.on_answer(id, Err(err));
                Ok(None)
            }
            Input::Stored(id, result) => {
                self.on_stored(id, result);
                Ok(None)
            }
            Input::ExternalChange(key, value) => {
                self.on_external(key, value);
                Ok(None)
            }
            Input::Timeout => {
                self.on_timeout();
                Ok(None)
            }
        }
    }

    /// Storage was read at start. See [`Input::Restored`].
    pub fn handle_restored(
        &mut self,
        now: Instant,
        session: Option<&[u8]>,
        anon_refresh_token: Option<&[u8]>,
        visitor_id: Option<&str>,
    ) -> Result<(), NotDrained> {
        self.handle_input(
            now,
            Input::Restored {
                session,
                anon_refresh_token,
                visitor_id,
            },
        )
        .map(drop)
    }

    /// A user command; returns the id its completion will carry.
    pub fn handle_command(
        &mut self,
        now: Instant,
        command: Command,
    ) -> Result<CommandId, NotDrained> {
        self.handle_input(now, Input::Command(command))
            .map(|id| id.unwrap_or(CommandId(0)))
    }

    /// The response to request `id`.
    pub fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: Response<'_>,
    ) -> Result<(), NotDrained> {
        self.handle_input(now, Input::Response(id, response))
            .map(drop)
    }

    /// Request `id` failed below HTTP.
    pub fn handle_transport_error(
        &mut self,
        now: Instant,
        id: RequestId,
        error: TransportError,
    ) -> Result<(), NotDrained> {
        self.handle_input(now, Input::TransportFailed(id, error))
            .map(drop)
    }

    /// Storage operation `id` finished.
    pub fn handle_stored(
        &mut self,
        now: Instant,
        id: StoreId,
        result: Result<(), StorageError>,
    ) -> Result<(), NotDrained> {
        self.handle_input(now, Input::Stored(id, result)).map(drop)
    }

    /// Another process changed a record.
    pub fn handle_external_change(
        &mut self,
        now: Instant,
        key: RecordKey,
        value: Option<&[u8]>,
    ) -> Result<(), NotDrained> {
        self.handle_input(now, Input::ExternalChange(key, value))
            .map(drop)
    }

    /// The deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), NotDrained> {
        self.handle_input(now, Input::Timeout).map(drop)
    }

    // ----- outputs -----------------------------------------------------

    /// The next output, or `None` when drained (or stalled on a storage
    /// acknowledgement).
    pub fn poll_output(&mut self) -> Option<Output<'_>> {
        if self.awaiting_store.is_some() {
            return None;
        }
        if self.outputs.is_empty() {
            self.run_early_command();
        }
        let item = self.outputs.pop_front()?;
        if self.writes_beside_other_account(&item) {
            // Put it back: it goes once the other account's session record
            // is gone.
            if self.outputs.push_front(item).is_err() {
                warn!("output queue full");
            }
            let id = StoreId(self.fresh_id());
            self.awaiting_store = Some(AwaitingStore {
                id,
                key: RecordKey::Session,
                written: 0,
                guards: None,
                kind: WriteKind::ClearOther,
            });
            return Some(Output::Store(StoreOp {
                id,
                key: RecordKey::Session,
                value: None,
                verify_only: false,
            }));
        }
        let (item, guards) = match item {
            Queued::Guard(key, request, verify_only) => (
                Queued::Store { key, put: true },
                Some((request, verify_only)),
            ),
            other => (other, None),
        };
        // A record whose last write failed holds an older value: rewriting
        // it is a real write.
        let verify_only = guards.is_some_and(|(_, verify_only)| verify_only)
            && !matches!(item, Queued::Store { key, .. } if self.dirty.get(key_index(key)).copied().unwrap_or(false));
        Some(match item {
            Queued::Send(id) => Output::Send(self.render_request(id)),
            Queued::Guard(..) => return None,
            Queued::Store { key, put } => {
                let id = StoreId(self.fresh_id());
                if put && key == RecordKey::Session {
                    let written = self.current().map_or(0, |s| s.refresh_token.fingerprint());
                    self.remember_written(written);
                }
                let written = match (put, key) {
                    (false, _) => 0,
                    (true, RecordKey::Session) => {
                        self.current().map_or(0, |s| s.refresh_token.fingerprint())
                    }
                    (true, RecordKey::AnonRefreshToken) => self.anon_fingerprint(),
                };
                self.awaiting_store = Some(AwaitingStore {
                    id,
                    key,
                    written,
                    guards: guards.map(|(request, _)| request),
                    kind: if verify_only {
                        WriteKind::Verify
                    } else {
                        WriteKind::Value
                    },
                });
                let value = if put {
                    match key {
                        RecordKey::Session => self.current().map(RecordValue::Session),
                        RecordKey::AnonRefreshToken => {
                            self.anon_token.as_ref().map(RecordValue::AnonRefreshToken)
                        }
                    }
                } else {
                    None
                };
                Output::Store(StoreOp {
                    id,
                    key,
                    value,
                    verify_only,
                })
            }
            Queued::Change(change) => Output::AuthChange {
                change,
                session: self.current(),
            },
            Queued::Complete(id, result) => {
                let result = match result {
                    Ok(done) => Ok(self.outcome(done)),
                    Err(f) => Err(f.into_error(self.api_error.as_ref())),
                };
                Output::Complete { id, result }
            }
            Queued::Notice(n) => Output::Notice(n),
        })
    }

    /// When [`Machine::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let storage = self
            .storage_retry_at
            .filter(|_| self.dirty.iter().any(|d| *d));
        let refresh = self.refresh_deadline().or_else(|| self.settle_deadline());
        let request = self
            .in_flight
            .iter()
            .map(|f| f.deadline)
            .filter(|d| *d != NEVER)
            .min();
        [storage, refresh, request].into_iter().flatten().min()
    }

    fn outcome(&self, done: Done) -> Outcome<'_> {
        match (done, self.current()) {
            (Done::Session, Some(s)) => Outcome::Session(s),
            (Done::Upgraded, Some(s)) => Outcome::Upgraded(s),
            (Done::AccessToken, Some(s)) => Outcome::AccessToken(Some(&s.access_token)),
            // A token caller always gets a token answer, `None` when the
            // batch ended the session (a refresh refused as dead).
            (Done::AccessToken | Done::NoAccessToken, _) => Outcome::AccessToken(None),
            (Done::ConfirmationRequired, _) => Outcome::ConfirmationRequired {
                email: self.pending_confirmation.as_deref().unwrap_or(""),
            },
            // Batches never end a session after completing a sign-in or an
            // upgrade with it, so the remaining cases are "signed out".
            (Done::SignedOut(revoke), _) => Outcome::SignedOut(self.revocation(revoke)),
            (_, None) => Outcome::SignedOut(Revocation::NotNeeded),
        }
    }

    fn revocation(&self, revoke: Revoke) -> Revocation<'_> {
        match revoke {
            Revoke::NotNeeded => Revocation::NotNeeded,
            Revoke::Revoked => Revocation::Revoked,
            Revoke::FailedApi => match &self.api_error {
                Some(api) => Revocation::Failed {
                    code: &api.code,
                    message: &api.message,
                    status: Some(api.status),
                },
                None => Revocation::Failed {
                    code: "busy",
                    message: "no answer to keep",
                    status: None,
                },
            },
            Revoke::FailedNetwork(t) => Revocation::Failed {
                code: "network_error",
                message: t.describe(),
                status: None,
            },
            Revoke::FailedInvalid => Revocation::Failed {
                code: "invalid_response",
                message: "the bearer could not be renewed for /auth/signout",
                status: None,
            },
            Revoke::FailedBusy => Revocation::Failed {
                code: "busy",
                message: "no request slot for /auth/signout",
                status: None,
            },
        }
    }

    fn render_request(&self, id: RequestId) -> Request<'_> {
        let purpose = self
            .in_flight
            .iter()
            .find(|f| f.id == id)
            .map(|f| f.purpose);
        let mut req = Request {
            id,
            route: Route::SignOut,
            paywall_id: self.config.paywall_id(),
            bearer: None,
            idempotency_key: None,
            body: Body::Empty,
        };
        match purpose {
            Some(Purpose::AnonCreate { .. }) => {
                req.route = Route::AnonymousSignIn;
                let opts = self.anon.as_ref().map(|a| &a.options);
                req.body = Body::AnonymousSignIn {
                    captcha_token: opts
                        .and_then(|o| o.captcha_token.as_ref())
                        .filter(|c| !c.is_empty()),
                    visitor_id: self.visitor_id.as_deref(),
                    user_meta: opts.map(|o| &o.user_meta).filter(|m| !m.is_empty()),
                };
            }
            Some(Purpose::AnonResume { .. }) => {
                // Rendered in the batch that sent it: the stored token is
                // still the one presented.
                if let Some(token) = self
                    .anon_token
                    .as_ref()
                    .filter(|_| self.anon.as_ref().is_some_and(|a| a.resuming))
                {
                    req.route = Route::Refresh;
                    req.body = Body::Refresh {
                        refresh_token: token,
                    };
                }
            }
            Some(Purpose::Refresh { presented, .. }) => {
                // Rendered in the batch that sent it: the session (or, for an
                // unsettled one, the anonymous record) still holds the token
                // being presented.
                let anon = self
                    .anon_token
                    .as_ref()
                    .filter(|t| t.fingerprint() == presented);
                if let Some(token) = anon.or(self.current().map(|s| &s.refresh_token)) {
                    req.route = Route::Refresh;
                    req.body = Body::Refresh {
                        refresh_token: token,
                    };
                }
            }
            Some(Purpose::SignOutRefresh { .. }) => {
                if let Some(retired) = self.retired_session() {
                    req.route = Route::Refresh;
                    req.body = Body::Refresh {
                        refresh_token: &retired.refresh_token,
                    };
                }
            }
            Some(Purpose::Upgrade { .. }) => {
                if let Some(op) = &self.upgrade {
                    req.route = Route::AnonymousUpgrade;
                    req.bearer = self.current().map(|s| &s.access_token);
                    req.idempotency_key = op.request.idempotency_key.as_deref();
                    req.body = Body::AnonymousUpgrade {
                        email: &op.request.email,
                        password: &op.request.password,
                        user_meta: Some(&op.request.user_meta).filter(|m| !m.is_empty()),
                    };
                }
            }
            Some(Purpose::SignOut { .. }) | None => {
                req.bearer = self.retired_session().map(|s| &s.access_token);
            }
        }
        req
    }

    // ----- plumbing shared by the flows ----------------------------------

    fn fresh_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// The id for a new operation or waiter: the id an early caller was
    /// already given, else a fresh one.
    fn command_id(&mut self) -> CommandId {
        match self.proposed.take() {
            Some(id) => id,
            None => CommandId(self.fresh_id()),
        }
    }

    /// Queues an output. The queue is sized for the largest batch one input
    /// can produce; if a misconfigured capacity ever makes it overflow, the
    /// item is dropped with a warning rather than panicking.
    fn push(&mut self, item: Queued) {
        if self.outputs.push_back(item).is_err() {
            warn!("output queue full; raise PAYWALL_AUTH_OUTPUT_QUEUE");
        }
    }

    fn change(&mut self, change: AuthChange) {
        self.push(Queued::Change(change));
    }

    fn complete(&mut self, id: CommandId, result: Result<Done, Error>) {
        let result = result.map_err(|e| match e {
            Error::Api(api) => {
                self.api_error = Some(api);
                Failure::Api
            }
            Error::Network(t) => Failure::Network(t),
            Error::InvalidResponse(d) => Failure::InvalidResponse(d),
            Error::Capacity(c) => Failure::Capacity(c),
            Error::Storage(s) => Failure::Storage(s),
            Error::NotAuthenticated => Failure::NotAuthenticated,
            Error::NotAnonymous => Failure::NotAnonymous,
            Error::UpgradeInProgress => Failure::UpgradeInProgress,
            Error::Superseded => Failure::Superseded,
            Error::Busy => Failure::Busy,
        });
        self.push(Queued::Complete(id, result));
    }

    fn store_put(&mut self, key: RecordKey) {
        self.push(Queued::Store { key, put: true });
    }

    fn store_remove(&mut self, key: RecordKey) {
        self.push(Queued::Store { key, put: false });
    }

    /// Registers a request and queues it for sending.
    fn send(&mut self, purpose: Purpose) -> Result<RequestId, Error> {
        let id = self.register(purpose)?;
        self.push(Queued::Send(id));
        trace!("send request {}", id.0);
        Ok(id)
    }

    /// Registers a request that will rotate a refresh token, and queues it
    /// behind a rewrite of `key` (the record its answer will update) with
    /// the value it holds: if the store cannot take that write, the request
    /// is cancelled before anything is spent (docs/protocol.md §13.2). A
    /// token rotated on the server that cannot be saved is an account lost
    /// once the reuse window closes.
    fn send_guarded(&mut self, purpose: Purpose, key: RecordKey) -> Result<RequestId, Error> {
        if !self.config.verify_storage_before_rotation || !self.holds(key) {
            return self.send(purpose);
        }
        let id = self.register(purpose)?;
        self.push(Queued::Guard(key, id, true));
        self.push(Queued::Send(id));
        Ok(id)
    }

    /// Registers a request that will rotate the token `key` now holds in
    /// memory but not yet on storage, and queues it behind that write: the
    /// token goes out only once a copy of it is durable, and not at all if
    /// the write fails. Used when a guest record takes over the session's
    /// token (`mirror_session_token`), whatever
    /// [`Config::verify_storage_before_rotation`] says: the write is needed
    /// anyway, and guarding it costs nothing.
    fn send_after_write(&mut self, purpose: Purpose, key: RecordKey) -> Result<RequestId, Error> {
        let id = self.register(purpose)?;
        self.push(Queued::Guard(key, id, false));
        self.push(Queued::Send(id));
        Ok(id)
    }

    /// The guest record takes over the session's own token: the record's
    /// token was just proven dead, and the session's is the last live way
    /// back into the account. Until it is written, that token would be
    /// durable only in the session record, which a peer's sign-out may
    /// remove at any moment (docs/protocol.md §13.7). Returns the token's
    /// fingerprint, or `None` if there is no live candidate.
    fn mirror_session_token(&mut self, dead: u64) -> Option<u64> {
        // Only an unsettled session's: any other guest session mirrors its
        // token already, or was given up (`force_new`) and must not come
        // back.
        let token = self
            .slot
            .as_ref()
            .filter(|s| self.stale_guest && s.is_anonymous())
            .map(|s| &s.refresh_token)
            .filter(|t| t.fingerprint() != dead && !self.is_spent(t.fingerprint()))?
            .clone();
        let fingerprint = token.fingerprint();
        self.stale_guest = false;
        self.anon_token = Some(token);
        Some(fingerprint)
    }

    /// Takes a request slot for `purpose`, with its deadline.
    fn register(&mut self, purpose: Purpose) -> Result<RequestId, Error> {
        let id = RequestId(self.fresh_id());
        let deadline = self.config.request_timeout.map_or(NEVER, |t| self.now + t);
        self.in_flight
            .push(InFlight {
                id,
                purpose,
                deadline,
                timed_out: false,
            })
            .map_err(|_| Error::Busy)?;
        Ok(id)
    }

    /// A guard write failed: the request it guarded is taken back unsent
    /// and its operation fails with `storage_failed`.
    fn cancel_guarded(&mut self, request: RequestId, error: StorageError) {
        for _ in 0..self.outputs.len() {
            match self.outputs.pop_front() {
                Some(Queued::Send(id)) if id == request => {}
                Some(other) => {
                    let _ = self.outputs.push_back(other);
                }
                None => break,
            }
        }
        let Some(purpose) = self.take_in_flight(request) else {
            return;
        };
        let error = Error::Storage(error);
        match purpose {
            Purpose::AnonResume { .. }
                if self.anon.as_ref().is_some_and(|op| op.request == request) =>
            {
                self.cancel_anon(error);
            }
            Purpose::Refresh { .. }
                if self
                    .refresh
                    .as_ref()
                    .is_some_and(|op| op.request == request) =>
            {
                self.fail_refresh(error);
            }
            _ => {}
        }
    }

    fn take_in_flight(&mut self, id: RequestId) -> Option<Purpose> {
        let pos = self.in_flight.iter().position(|f| f.id == id)?;
        Some(self.in_flight.swap_remove(pos).purpose)
    }

    fn remember_spent(&mut self, fingerprint: u64) {
        if let Some(slot) = self.spent.get_mut(usize::from(self.spent_next)) {
            *slot = fingerprint;
        }
        self.spent_next = (self.spent_next + 1) % 4;
    }

    fn is_spent(&self, fingerprint: u64) -> bool {
        fingerprint != 0 && self.spent.contains(&fingerprint)
    }

    fn remember_written(&mut self, fingerprint: u64) {
        if self.was_written(fingerprint) {
            return;
        }
        if let Some(slot) = self.written.get_mut(usize::from(self.written_next)) {
            *slot = fingerprint;
        }
        self.written_next = (self.written_next + 1) % 8;
    }

    /// Whether an external change is the echo of one of our own writes
    /// (only with [`Config::echoes_own_writes`]); consumes it if so.
    fn take_echo(&mut self, key: RecordKey, value: Option<&[u8]>) -> bool {
        if !self.config.echoes_own_writes {
            return false;
        }
        let format = self.config.store_format;
        let fingerprint = match (key, value) {
            (_, None) => 0,
            (RecordKey::Session, Some(bytes)) => {
                crate::codec::record::decode_session(bytes, format)
                    .map_or(u64::MAX, |s| s.refresh_token.fingerprint())
            }
            (RecordKey::AnonRefreshToken, Some(bytes)) => {
                crate::codec::record::decode_anon_token(bytes, format)
                    .ok()
                    .flatten()
                    .map_or(u64::MAX, |t| t.fingerprint())
            }
        };
        let tag = echo_tag(key, fingerprint);
        let Some(pos) = self.echoes.iter().position(|e| *e == tag) else {
            return false;
        };
        // Echoes come in order: everything older than this one was either
        // echoed already or never will be.
        for _ in 0..=pos {
            self.echoes.pop_front();
        }
        true
    }

    fn was_written(&self, fingerprint: u64) -> bool {
        fingerprint != 0 && self.written.contains(&fingerprint)
    }

    fn anon_fingerprint(&self) -> u64 {
        self.anon_token.as_ref().map_or(0, |t| t.fingerprint())
    }

    /// Installs `session` as the new signed-in session (a new epoch) and
    /// detaches every operation that belonged to the previous one.
    ///
    /// Takes the session by value but never wraps it in a temporary
    /// `Option`: that would put a second ~3 KiB copy on the caller's stack.
    fn begin_epoch(&mut self, session: Session) {
        match &mut self.slot {
            Some(slot) => *slot = session,
            None => self.slot = Some(session),
        }
        self.retired = false;
        self.stale_guest = false;
        self.tokens_since = self.now;
        self.next_epoch();
    }

    /// Signs out into a new epoch: the old session stays in the slot,
    /// retired, until something replaces it (its revocation may still need
    /// it).
    fn end_epoch(&mut self) {
        self.retired = true;
        self.next_epoch();
    }

    /// Detaches every operation that belonged to the previous epoch.
    fn next_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.pending_confirmation = None;
        self.refresh_retry_at = None;
        self.refresh_backoff = 0;
        if let Some(op) = self.refresh.take() {
            // The request stays in flight (its rotated token may still need
            // saving); its callers learn now that it no longer concerns them.
            self.finish_refresh_waiters(&op, Err(Error::Superseded), false);
        }
        if let Some(op) = self.upgrade.take() {
            self.complete(op.id, Err(Error::Superseded));
        }
    }

    fn on_command(&mut self, cmd: Command) -> CommandId {
        if !self.restored {
            return self.queue_early(cmd);
        }
        match cmd {
            Command::SignInAnonymously(opts) => self.cmd_sign_in(opts),
            Command::UpgradeToEmail(req) => self.cmd_upgrade(req),
            Command::SignOut(opts) => self.cmd_sign_out(opts),
            Command::Refresh => self.cmd_refresh(false),
            Command::AccessToken => self.cmd_refresh(true),
        }
    }

    fn queue_early(&mut self, cmd: Command) -> CommandId {
        let kind = match &cmd {
            Command::SignInAnonymously(_) => Early::SignIn,
            Command::UpgradeToEmail(_) => Early::Upgrade,
            Command::SignOut(o) => Early::SignOut(*o),
            Command::Refresh => Early::Refresh,
            Command::AccessToken => Early::AccessToken,
        };
        let joins = |e: &Early| {
            matches!(
                (e, kind),
                (Early::SignIn, Early::SignIn)
                    | (Early::Upgrade, Early::Upgrade)
                    | (Early::Refresh, Early::Refresh)
                    | (Early::AccessToken, Early::AccessToken)
            )
        };
        let existing = self.early.iter().find(|(_, e)| joins(e)).map(|(id, _)| *id);
        match (cmd, existing) {
            // Early sign-ins collapse into one; a forced one makes it forced
            // (a fresh guest still satisfies the plain callers).
            (Command::SignInAnonymously(options), Some(id)) => {
                if let Some(parked) = self.queued.as_mut().filter(|_| options.force_new) {
                    parked.options = options;
                }
                id
            }
            (Command::UpgradeToEmail(request), Some(id)) => {
                let same = self.upgrade.as_ref().is_some_and(|op| {
                    op.request.idempotency_key.is_some()
                        && op.request.idempotency_key == request.idempotency_key
                        && op.request.email == request.email
                });
                if same {
                    return id;
                }
                let id = CommandId(self.fresh_id());
                self.complete(id, Err(Error::UpgradeInProgress));
                id
            }
            (_, Some(id)) => id,
            (cmd, None) => {
                let id = CommandId(self.fresh_id());
                if self.early.push((id, kind)).is_err() {
                    self.complete(id, Err(Error::Busy));
                    return id;
                }
                match cmd {
                    Command::SignInAnonymously(options) => {
                        self.queued = Some(QueuedSignIn { id, options })
                    }
                    Command::UpgradeToEmail(request) => {
                        self.upgrade = Some(UpgradeOp {
                            id,
                            request,
                            stage: UpgradeStage::AwaitingToken,
                        })
                    }
                    _ => {}
                }
                id
            }
        }
    }

    /// Runs the next command that arrived before restore, once the previous
    /// one's batch has been drained (each batch reflects one state).
    fn run_early_command(&mut self) {
        if !self.restored || self.early.is_empty() {
            return;
        }
        let (id, kind) = self.early.remove(0);
        let cmd = match kind {
            Early::SignIn => match self.queued.take() {
                Some(parked) => Command::SignInAnonymously(parked.options),
                None => return,
            },
            Early::Upgrade => match self.upgrade.take() {
                Some(parked) => Command::UpgradeToEmail(parked.request),
                None => return,
            },
            Early::SignOut(o) => Command::SignOut(o),
            Early::Refresh => Command::Refresh,
            Early::AccessToken => Command::AccessToken,
        };
        // The caller already holds `id`: the operation this command starts
        // takes it over (see `command_id`).
        self.proposed = Some(id);
        let got = self.on_command(cmd);
        if self.proposed.take().is_some() && got != id {
            // Unreachable with the early-queue dedupe (joins are collapsed
            // before restore); never leave a caller waiting regardless.
            self.complete(id, Err(Error::Busy));
        }
    }

    fn on_answer(&mut self, id: RequestId, answer: Result<Response<'_>, TransportError>) {
        let Some(purpose) = self.take_in_flight(id) else {
            debug!("answer for unknown request {}", id.0);
            return;
        };
        self.dispatch(id, purpose, answer);
    }

    /// Hands an answer (or a timeout) to the flow that sent the request.
    fn dispatch(
        &mut self,
        id: RequestId,
        purpose: Purpose,
        answer: Result<Response<'_>, TransportError>,
    ) {
        match purpose {
            Purpose::AnonResume {
                presented,
                guest_gen,
            } => self.on_anon_resume(id, presented, guest_gen, answer),
            Purpose::AnonCreate { guest_gen } => self.on_anon_create(id, guest_gen, answer),
            Purpose::Refresh {
                epoch,
                presented,
                guest_gen,
            } => self.on_refresh(id, epoch, presented, guest_gen, answer),
            Purpose::Upgrade { epoch, refresh_fp } => {
                self.on_upgrade(id, epoch, refresh_fp, answer)
            }
            Purpose::SignOutRefresh { caller } => self.on_signout_refresh(caller, answer),
            Purpose::SignOut { caller } => self.on_signout(caller, answer),
        }
    }

    fn on_stored(&mut self, id: StoreId, result: Result<(), StorageError>) {
        let Some(AwaitingStore {
            id: waiting,
            key,
            written,
            guards,
            kind,
        }) = self.awaiting_store
        else {
            return;
        };
        if waiting != id {
            return;
        }
        self.awaiting_store = None;
        let slot = key_index(key);
        match result {
            Ok(()) => {
                if self.config.echoes_own_writes {
                    if self.echoes.is_full() {
                        // Echoes this late are beyond what any store does;
                        // forget the oldest rather than grow.
                        self.echoes.pop_front();
                    }
                    let _ = self.echoes.push_back(echo_tag(key, written));
                }
                if key == RecordKey::Session {
                    // Nothing else is fed while a write is unacknowledged,
                    // so the session is still the one written (`written`
                    // is 0 for a removal).
                    self.session_record_user = match self.current() {
                        Some(s) if written != 0 => user_fingerprint(s),
                        _ => 0,
                    };
                }
                if kind == WriteKind::ClearOther {
                    // Not the session's own write: whatever was dirty stays.
                    return;
                }
                if let Some(d) = self.dirty.get_mut(slot) {
                    *d = false;
                }
                if !self.dirty.iter().any(|d| *d) {
                    self.storage_backoff = 0;
                    self.storage_retry_at = None;
                } else {
                    // The store took a write again: the records still
                    // waiting for their retry go now, ahead of anything
                    // queued. Waiting for the timer would leave storage
                    // half-updated (a new guest record beside an old session
                    // record) for a peer to act on meanwhile.
                    self.flush_dirty_first();
                }
            }
            Err(_) => {
                warn!("storage write failed; keeping state in memory and retrying");
                if let Some(request) = guards {
                    self.cancel_guarded(request, StorageError { key });
                }
                if kind != WriteKind::Verify
                    && let Some(d) = self.dirty.get_mut(slot)
                {
                    *d = true;
                }
                self.storage_backoff = next_backoff(self.storage_backoff, &self.config);
                self.storage_retry_at = Some(self.now.saturating_add_ms(self.storage_backoff));
                // Whatever this batch was about to report as success was not
                // durable: say so.
                for item in self.outputs.iter_mut() {
                    if let Queued::Complete(_, result @ Ok(_)) = item
                        && !matches!(result, Ok(Done::AccessToken | Done::NoAccessToken))
                    {
                        *result = Err(Failure::Storage(StorageError { key }));
                    }
                }
                // Writes land in order or not at all: the batch's later
                // writes wait for the retry too. Restore relies on it (a
                // guest's anonymous record is written first, so it is never
                // older than the session record). A request guarded by a
                // later write is taken back unsent: its proof cannot come
                // before the writes ahead of it.
                let mut cancelled: Vec<(RecordKey, RequestId), REQUESTS_IN_FLIGHT> = Vec::new();
                for _ in 0..self.outputs.len() {
                    match self.outputs.pop_front() {
                        Some(Queued::Store { key, .. }) => {
                            if let Some(d) = self.dirty.get_mut(key_index(key)) {
                                *d = true;
                            }
                        }
                        Some(Queued::Guard(key, request, _)) => {
                            if let Some(d) = self.dirty.get_mut(key_index(key)) {
                                *d = true;
                            }
                            // One guard per request in flight at most.
                            let _ = cancelled.push((key, request));
                        }
                        Some(other) => {
                            let _ = self.outputs.push_back(other);
                        }
                        None => break,
                    }
                }
                for (key, request) in cancelled {
                    self.cancel_guarded(request, StorageError { key });
                }
                let notice = Queued::Notice(Notice::StorageFailed { key });
                if self.outputs.push_front(notice).is_err() {
                    warn!("output queue full");
                }
            }
        }
    }

    /// Whether `item` writes the guest record with a new value while the
    /// session record holds another account (see `session_record_user`).
    fn writes_beside_other_account(&self, item: &Queued) -> bool {
        let real_write = match item {
            Queued::Store {
                key: RecordKey::AnonRefreshToken,
                put: true,
            } => true,
            Queued::Guard(RecordKey::AnonRefreshToken, _, verify_only) => {
                !verify_only
                    || self
                        .dirty
                        .get(key_index(RecordKey::AnonRefreshToken))
                        .copied()
                        .unwrap_or(false)
            }
            _ => false,
        };
        let guest = self
            .slot
            .as_ref()
            .filter(|s| s.is_anonymous())
            .map(user_fingerprint);
        real_write
            && self.session_record_user != 0
            && guest.is_some_and(|g| g != self.session_record_user)
    }

    /// Whether the machine holds a value for `key` (else the record is to
    /// be removed).
    fn holds(&self, key: RecordKey) -> bool {
        match key {
            RecordKey::Session => self.current().is_some(),
            RecordKey::AnonRefreshToken => self.anon_token.is_some(),
        }
    }

    /// Queues the writes of every record still marked dirty at the front of
    /// the queue, in [`WRITE_ORDER`], unless one is queued already.
    fn flush_dirty_first(&mut self) {
        for key in WRITE_ORDER.into_iter().rev() {
            let dirty = self.dirty.get(key_index(key)).copied().unwrap_or(false);
            let queued = self.outputs.iter().any(
                |q| matches!(q, Queued::Store { key: k, .. } | Queued::Guard(k, ..) if *k == key),
            );
            if dirty && !queued {
                let put = self.holds(key);
                if self.outputs.push_front(Queued::Store { key, put }).is_err() {
                    warn!("output queue full");
                }
            }
        }
    }

    fn on_timeout(&mut self) {
        // Requests that outlived their deadline fail as timeouts (failures
        // below HTTP never end a session, so several in one batch are fine).
        // The request stays registered a while longer: the server may have
        // acted on it, and a late answer still goes through the orphan
        // paths so rotated tokens are not lost. After four more timeouts
        // the slot is reclaimed.
        let grace = self
            .config
            .request_timeout
            .map_or(0, |t| t.as_millis().saturating_mul(4));
        let now = self.now;
        let mut reclaimed: Vec<RequestId, REQUESTS_IN_FLIGHT> = Vec::new();
        let mut expired: Vec<(RequestId, Purpose), REQUESTS_IN_FLIGHT> = Vec::new();
        for f in self.in_flight.iter_mut().filter(|f| f.deadline <= now) {
            if f.timed_out {
                let _ = reclaimed.push(f.id);
            } else {
                f.timed_out = true;
                f.deadline = now.saturating_add_ms(grace);
                let _ = expired.push((f.id, f.purpose));
            }
        }
        for id in reclaimed {
            self.take_in_flight(id);
            self.abandon_anon(id);
        }
        for (id, purpose) in expired {
            debug!("request {} timed out", id.0);
            match purpose {
                // The one sign-up in flight stays so until it is answered.
                Purpose::AnonCreate { .. } | Purpose::AnonResume { .. } => self.time_out_anon(id),
                _ => self.dispatch(id, purpose, Err(TransportError::Timeout)),
            }
        }
        if self.storage_retry_at.is_some_and(|t| t <= self.now) {
            self.storage_retry_at = None;
            for key in WRITE_ORDER {
                if self.dirty.get(key_index(key)).copied().unwrap_or(false) {
                    let put = self.holds(key);
                    self.push(Queued::Store { key, put });
                }
            }
        }
        if self.refresh_deadline().is_some_and(|t| t <= self.now) {
            self.start_refresh(None, None);
        }
        if self.settle_deadline().is_some_and(|t| t <= self.now) {
            self.settle_retired_guest();
        }
    }
}

/// The order a batch writes a guest's two records in: the anonymous record
/// first, so that after a crash or a failed write it is never older than
/// the session record (restore trusts it when they disagree).
const WRITE_ORDER: [RecordKey; 2] = [RecordKey::AnonRefreshToken, RecordKey::Session];

/// One entry of the echo ledger: the fingerprint of the refresh token
/// written (0 for a removal) with its lowest bit replaced by the record key.
/// Losing one bit of a 64-bit fingerprint costs nothing that matters here.
fn echo_tag(key: RecordKey, fingerprint: u64) -> u64 {
    (fingerprint & !1) | key_index(key) as u64
}

/// Fingerprint of a session's user id (see `Machine::session_record_user`);
/// 32 bits tell the few accounts of one device apart, and keep the machine
/// within its 8 KiB.
fn user_fingerprint(session: &Session) -> u32 {
    // Never 0, which means "no record".
    (crate::secret::fingerprint(session.user.id.as_bytes()) as u32).max(1)
}

fn key_index(key: RecordKey) -> usize {
    match key {
        RecordKey::Session => 0,
        RecordKey::AnonRefreshToken => 1,
    }
}

fn next_backoff(current: u64, config: &Config) -> u64 {
    if current == 0 {
        config.retry_base.as_millis()
    } else {
        current.saturating_mul(2).min(config.retry_max.as_millis())
    }
}

/// The error a failed answer maps to.
fn answer_error(answer: &Result<Response<'_>, TransportError>) -> Error {
    match answer {
        Ok(resp) => Error::Api(api_error(resp)),
        Err(t) => Error::Network(*t),
    }
}

fn api_error(resp: &Response<'_>) -> ApiError {
    crate::codec::json::decode_api_error(
        resp.status,
        resp.reason,
        resp.content_type_json,
        resp.body,
    )
}
