//! The C-visible types: plain `#[repr(C)]` data, no behaviour.
//!
//! Integers that C passes *in* and that select a variant are plain `u32`
//! fields (documented with the enum to use), never Rust enums: a C caller
//! can put any value in an `enum`, and an out-of-range Rust enum is
//! undefined behaviour. Enums only travel *out*, where Rust writes them.

use core::ptr;

/// A byte string that the other side reads: `ptr` to `len` bytes.
///
/// Not NUL-terminated unless documented; print with `"%.*s", (int)len, ptr`.
/// An absent value is `{NULL, 0}`. As an input, `{NULL, n > 0}` is refused
/// with `PAYWALL_AUTH_STATUS_NULL_POINTER`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct paywall_auth_bytes {
    /// First byte (may be NULL when `len` is 0).
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl paywall_auth_bytes {
    /// `{NULL, 0}`.
    pub const NONE: Self = Self {
        ptr: ptr::null(),
        len: 0,
    };

    /// A view of `s` (valid as long as `s` is).
    pub fn of(s: &[u8]) -> Self {
        Self {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }
}

/// Result of every entry point. `0` is success; the values are stable.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum paywall_auth_status {
    /// Success.
    Ok = 0,
    /// `poll_output`/`poll_timeout`: nothing to report.
    Empty = 1,
    /// `http_response_feed`: the response is not complete yet; feed more.
    Incomplete = 2,
    /// `trace_replay`: the trace was read and replayed, and today's machine
    /// behaves differently; the report says where.
    TraceDiverged = 3,
    /// A required pointer was NULL (or a `{NULL, n > 0}` byte string).
    NullPointer = -1,
    /// The memory is not aligned to the `_align()` of its type.
    Misaligned = -2,
    /// The memory or buffer is smaller than required.
    BufferTooSmall = -3,
    /// The handle was not initialised (or was deinitialised).
    NotInitialized = -4,
    /// The configuration was refused (`invalid_config`): empty paywall id,
    /// a byte outside `[A-Za-z0-9._~-]`, too long, or an unknown store
    /// format.
    InvalidConfig = -5,
    /// An argument is out of its domain (unknown enum value, overlapping
    /// buffers).
    InvalidArgument = -6,
    /// A text argument is not valid UTF-8.
    InvalidUtf8 = -7,
    /// A value exceeds a compile-time capacity of the core (email,
    /// password, captcha, user_meta...), or an output did not fit the
    /// machine's encode buffer (see `paywall_auth_machine_poll_output`).
    Capacity = -8,
    /// An input arrived while outputs were still queued (drain
    /// `poll_output` until `EMPTY` first), or while a store operation
    /// awaits its acknowledgement; the input was not applied.
    NotDrained = -9,
    /// `trace_replay`: the bytes are not a trace this build reads (not
    /// UTF-8, not JSON lines of the expected shape, another format
    /// version, no header, a field the machine refuses).
    TraceInvalid = -10,
    /// HTTP writer: the method is not a token.
    HttpInvalidMethod = -20,
    /// HTTP writer: the host is empty or has whitespace/control bytes.
    HttpInvalidHost = -21,
    /// HTTP writer: the path is empty or has whitespace/control bytes.
    HttpInvalidPath = -22,
    /// HTTP writer: a header name is not a token.
    HttpInvalidHeaderName = -23,
    /// HTTP writer: a header value has CR, LF, NUL or another control byte.
    HttpInvalidHeaderValue = -24,
    /// HTTP writer: a header the writer sets itself (`Host`,
    /// `Content-Length`, `Transfer-Encoding`, `Connection`).
    HttpReservedHeader = -25,
    /// HTTP reader: the peer closed before the response was complete.
    HttpUnexpectedEof = -30,
    /// HTTP reader: the head does not fit the buffer or has too many fields.
    HttpHeadTooLarge = -31,
    /// HTTP reader: not an HTTP/1.x response head.
    HttpBadHead = -32,
    /// HTTP reader: untrustworthy `Content-Length`/`Transfer-Encoding`.
    HttpBadFraming = -33,
    /// HTTP reader: the body does not fit the buffer (never truncated).
    HttpBodyTooLarge = -34,
    /// HTTP reader: malformed chunked body.
    HttpBadChunk = -35,
}

/// Settings of a machine. Fill with `paywall_auth_config_default`, then
/// change what you need.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct paywall_auth_config {
    /// The paywall id (`[A-Za-z0-9._~-]`, not NUL-terminated). Copied at
    /// init; the bytes need not outlive the call.
    pub paywall_id: paywall_auth_bytes,
    /// A `paywall_auth_store_format`: how records are encoded.
    pub store_format: u32,
    /// A token with less than this left is stale (default 60 000).
    pub leeway_ms: u64,
    /// Refresh this long before expiry; 0 refreshes only lazily
    /// (default 120 000).
    pub proactive_refresh_ms: u64,
    /// First retry delay of a failed proactive refresh or storage write
    /// (default 2 000); doubles up to `retry_max_ms` (default 300 000).
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// Fail a request unanswered this long as a timeout; 0 leaves
    /// timeouts to the host (default 0).
    pub request_timeout_ms: u64,
    /// Non-zero when the storage reports the machine's own writes back
    /// through `handle_external_change` (default 0).
    pub echoes_own_writes: u8,
}

/// How records are encoded (`paywall_auth_config.store_format`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum paywall_auth_store_format {
    /// The reference client's JSON (byte-compatible with its storage).
    ReferenceJson = 0,
    /// postcard: about a third of the size, for flash.
    Postcard = 1,
}

/// What a command asks for (`paywall_auth_command.kind`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum paywall_auth_command_kind {
    /// Sign in as a guest (resume the stored guest, else create one).
    SignIn = 0,
    /// Attach an email and password to the current guest.
    Upgrade = 1,
    /// Sign out (soft unless `hard`).
    SignOut = 2,
    /// Rotate the tokens now.
    Refresh = 3,
    /// A fresh access token (after one shared refresh if needed).
    AccessToken = 4,
}

/// One `user_meta` entry (UTF-8 key and value).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct paywall_auth_meta_entry {
    /// Key.
    pub key: paywall_auth_bytes,
    /// Value.
    pub value: paywall_auth_bytes,
}

/// A user command. Zero-initialise it, set `kind` and the fields that kind
/// reads; every string is copied into the machine, so nothing needs to
/// outlive the call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct paywall_auth_command {
    /// A `paywall_auth_command_kind`.
    pub kind: u32,
    /// Sign-in: non-zero mints a new guest even if one is resumable.
    pub force_new: u8,
    /// Sign-out: non-zero is a hard sign-out (forget and revoke the guest).
    pub hard: u8,
    /// Sign-in: captcha token, `{NULL, 0}` for none.
    pub captcha_token: paywall_auth_bytes,
    /// Upgrade: the email.
    pub email: paywall_auth_bytes,
    /// Upgrade: the password.
    pub password: paywall_auth_bytes,
    /// Upgrade: idempotency key, `{NULL, 0}` for none.
    pub idempotency_key: paywall_auth_bytes,
    /// Sign-in and upgrade: `user_meta` entries (NULL when `user_meta_len`
    /// is 0).
    pub user_meta: *const paywall_auth_meta_entry,
    /// Number of `user_meta` entries.
    pub user_meta_len: usize,
}

/// How a request failed below HTTP (`handle_transport_error`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum paywall_auth_transport_error {
    /// No connection (DNS, refused, TLS handshake).
    Connect = 0,
    /// The host's deadline fired.
    Timeout = 1,
    /// The connection dropped after the request may have been sent.
    ConnectionLost = 2,
    /// The response could not be framed.
    BadFraming = 3,
    /// The response was larger than the host accepts (refused unread).
    TooLarge = 4,
}

/// Which output `paywall_auth_output` holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum paywall_auth_output_kind {
    /// `send`: send this request, answer with `handle_response` or
    /// `handle_transport_error`.
    Send = 1,
    /// `store`: apply this storage operation, then `handle_stored`.
    Store = 2,
    /// `auth_change`: the session changed.
    AuthChange = 3,
    /// `complete`: a command finished.
    Complete = 4,
    /// `notice`: something the application should know.
    Notice = 5,
}

/// One request header (name and full value, e.g. `Authorization` /
/// `Bearer <token>`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct paywall_auth_header {
    /// Name, in the reference casing.
    pub name: paywall_auth_bytes,
    /// Value.
    pub value: paywall_auth_bytes,
}

/// Most headers a request carries.
pub const PAYWALL_AUTH_HEADERS_MAX: usize = 6;

/// A request to send. Every pointer is valid until the next call on the
/// machine that produced it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct paywall_auth_request {
    /// Answer with this id.
    pub request_id: u32,
    /// `POST`.
    pub method: paywall_auth_bytes,
    /// Absolute path, e.g. `/api/v1/paywall/pw_demo/auth/refresh`.
    pub path: paywall_auth_bytes,
    /// `headers_len` headers in the reference order (Accept,
    /// X-SDK-Version, X-Paywall-Id, Content-Type, Authorization,
    /// Idempotency-Key; the last three only when they apply).
    pub headers: *const paywall_auth_header,
    /// Number of headers.
    pub headers_len: usize,
    /// The JSON body (`len` 0 for none).
    pub body: paywall_auth_bytes,
}

/// A storage operation. Apply it durably, then acknowledge it with
/// `handle_stored(store_id, ok)`; nothing else is accepted meanwhile.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct paywall_auth_store_op {
    /// Acknowledge with this id.
    pub store_id: u32,
    /// 1 = session record, 2 = anonymous refresh-token record (a one-byte
    /// tag for flash key-value stores).
    pub key_tag: u8,
    /// The reference client's key, e.g. `pw-pw_demo-auth-v1`;
    /// NUL-terminated (the NUL is not counted in `len`).
    pub key: paywall_auth_bytes,
    /// Non-zero: remove the record; `value` is then `{NULL, 0}`.
    pub remove: u8,
    /// The record, encoded in the configured `store_format`.
    pub value: paywall_auth_bytes,
    /// Non-zero: `value` is what the record already holds; the write is
    /// asked for only to prove the store can take it before a request
    /// rotates a refresh token (docs/protocol.md §13.2). Write it durably
    /// like any record; a failure cancels that request with nothing spent.
    pub verify_only: u8,
}

/// A read-only view of a session (no tokens).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct paywall_auth_session_view {
    /// 0: no session; the other fields are empty.
    pub present: u8,
    /// The backend user id (stable across resume, refresh and upgrade).
    pub user_id: paywall_auth_bytes,
    /// The email; `{NULL, 0}` for guests.
    pub email: paywall_auth_bytes,
    /// Non-zero for a guest account.
    pub is_anonymous: u8,
    /// When the access token expires, on the caller's clock (ms).
    pub expires_at_ms: u64,
}

/// An auth-change event.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum paywall_auth_event {
    /// First event, always, once storage has been restored.
    InitialSession = 0,
    /// A session began.
    SignedIn = 1,
    /// The session ended.
    SignedOut = 2,
    /// Same user, new tokens.
    TokenRefreshed = 3,
    /// Same user, new identity (upgrade, confirmed email).
    UserUpdated = 4,
}

/// `paywall_auth_output.auth_change`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct paywall_auth_auth_change {
    /// What happened.
    pub event: paywall_auth_event,
    /// The reference client's name of the event, e.g. `SIGNED_IN`.
    pub event_name: paywall_auth_bytes,
    /// The session after the change.
    pub session: paywall_auth_session_view,
}

/// What a successful command produced.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum paywall_auth_outcome {
    /// Sign-in or refresh: `session` is current.
    Session = 0,
    /// Upgrade answered `updated`: `session` is now named.
    Upgraded = 1,
    /// Upgrade answered `confirmation_required`: `email` got a mail.
    ConfirmationRequired = 2,
    /// Signed out (everything local happened at once); `revocation` says
    /// whether the server revoked the session.
    SignedOut = 3,
    /// Access token: `access_token` holds it, or `{NULL, 0}` when signed
    /// out.
    AccessToken = 4,
}

/// Why a command failed; `paywall_auth_error_code_str` gives the
/// protocol's string code of each kind.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum paywall_auth_error_kind {
    /// The backend answered non-2xx; `code` is the server's code (e.g.
    /// `anonymous_disabled`, `http_503`), `http_status` its status.
    Api = 1,
    /// `network_error`: no usable HTTP response.
    Network = 2,
    /// `invalid_response`: a 2xx whose body could not be used.
    InvalidResponse = 3,
    /// `capacity_exceeded`: a value exceeded a compile-time capacity.
    Capacity = 4,
    /// `not_authenticated`: no session.
    NotAuthenticated = 5,
    /// `not_anonymous`: the session is a named account.
    NotAnonymous = 6,
    /// `upgrade_in_progress`: another upgrade with another key runs.
    UpgradeInProgress = 7,
    /// `superseded`: the session changed while the request was in flight.
    Superseded = 8,
    /// `storage_failed`: a write failed (it is retried).
    Storage = 9,
    /// `busy`: too many requests in flight.
    Busy = 10,
    /// A kind this binding does not know yet (a newer core); read `code`.
    Other = 99,
}

/// The error of a failed command.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct paywall_auth_error {
    /// The kind.
    pub kind: paywall_auth_error_kind,
    /// The protocol's string code, NUL-terminated.
    pub code: paywall_auth_bytes,
    /// A human-readable message, NUL-terminated (never contains tokens).
    pub message: paywall_auth_bytes,
    /// The HTTP status for `API` errors, else 0.
    pub http_status: u16,
}

/// `paywall_auth_output.complete`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct paywall_auth_completion {
    /// The id `handle_command` returned (shared by collapsed commands).
    pub command_id: u32,
    /// Non-zero on success (`outcome` is set), zero on failure (`error`).
    pub ok: u8,
    /// What succeeded.
    pub outcome: paywall_auth_outcome,
    /// The current session for `SESSION` and `UPGRADED`.
    pub session: paywall_auth_session_view,
    /// The token for `ACCESS_TOKEN` (`{NULL, 0}` when signed out).
    pub access_token: paywall_auth_bytes,
    /// Where the mail went, for `CONFIRMATION_REQUIRED`.
    pub email: paywall_auth_bytes,
    /// Why it failed, when `ok` is 0; for `SIGNED_OUT` with `revocation`
    /// `FAILED`, why the server did not confirm the revocation.
    pub error: paywall_auth_error,
    /// For `SIGNED_OUT`: whether the server revoked the session.
    pub revocation: paywall_auth_revocation,
}

/// Whether a sign-out's revocation was confirmed by the server.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum paywall_auth_revocation {
    /// No server call was needed (soft sign-out of a guest, or nothing was
    /// signed in).
    NotNeeded = 0,
    /// `/auth/signout` answered with success.
    Revoked = 1,
    /// The server did not confirm; `error` says why. Signed out locally
    /// all the same.
    Failed = 2,
}

/// What a notice reports.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum paywall_auth_notice_kind {
    /// A stored record could not be decoded (left untouched on storage).
    CorruptRecord = 1,
    /// A storage operation failed; it is retried at `poll_timeout`.
    StorageFailed = 2,
    /// The stored guest account was claimed by an email (confirmed on
    /// another device): it was revoked and forgotten, and a new guest was
    /// created instead (docs/protocol.md §13.1).
    GuestAccountClaimed = 3,
    /// A notice this binding does not know yet (a newer core).
    Other = 99,
}

/// `paywall_auth_output.notice`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct paywall_auth_notice {
    /// What.
    pub kind: paywall_auth_notice_kind,
    /// The record concerned (1 session, 2 anonymous token), 0 for none.
    pub key_tag: u8,
    /// A human-readable description, NUL-terminated.
    pub message: paywall_auth_bytes,
}

/// One output of the machine: a tagged struct, only the member named by
/// `kind` is meaningful. Pointers inside are valid until the next call on
/// the machine that produced it (they point into its memory).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct paywall_auth_output {
    /// Which member is set.
    pub kind: paywall_auth_output_kind,
    /// `SEND`.
    pub send: paywall_auth_request,
    /// `STORE`.
    pub store: paywall_auth_store_op,
    /// `AUTH_CHANGE`.
    pub auth_change: paywall_auth_auth_change,
    /// `COMPLETE`.
    pub complete: paywall_auth_completion,
    /// `NOTICE`.
    pub notice: paywall_auth_notice,
}

/// A complete HTTP response (`http_response_feed`/`_finish`). Pointers
/// point into the buffer given at `http_response_init`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct paywall_auth_http_response_view {
    /// Status code.
    pub status: u16,
    /// Non-zero when `Content-Type` contains `application/json`.
    pub content_type_json: u8,
    /// The body, de-chunked.
    pub body: paywall_auth_bytes,
    /// The reason phrase (may be empty).
    pub reason: paywall_auth_bytes,
}

impl paywall_auth_session_view {
    /// No session.
    pub const NONE: Self = Self {
        present: 0,
        user_id: paywall_auth_bytes::NONE,
        email: paywall_auth_bytes::NONE,
        is_anonymous: 0,
        expires_at_ms: 0,
    };
}

impl paywall_auth_error {
    /// No error.
    pub const NONE: Self = Self {
        kind: paywall_auth_error_kind::Other,
        code: paywall_auth_bytes::NONE,
        message: paywall_auth_bytes::NONE,
        http_status: 0,
    };
}

impl paywall_auth_output {
    /// An output of `kind` with every member empty.
    pub const fn empty(kind: paywall_auth_output_kind) -> Self {
        Self {
            kind,
            send: paywall_auth_request {
                request_id: 0,
                method: paywall_auth_bytes::NONE,
                path: paywall_auth_bytes::NONE,
                headers: ptr::null(),
                headers_len: 0,
                body: paywall_auth_bytes::NONE,
            },
            store: paywall_auth_store_op {
                store_id: 0,
                key_tag: 0,
                key: paywall_auth_bytes::NONE,
                remove: 0,
                value: paywall_auth_bytes::NONE,
                verify_only: 0,
            },
            auth_change: paywall_auth_auth_change {
                event: paywall_auth_event::InitialSession,
                event_name: paywall_auth_bytes::NONE,
                session: paywall_auth_session_view::NONE,
            },
            complete: paywall_auth_completion {
                command_id: 0,
                ok: 0,
                outcome: paywall_auth_outcome::Session,
                session: paywall_auth_session_view::NONE,
                access_token: paywall_auth_bytes::NONE,
                email: paywall_auth_bytes::NONE,
                error: paywall_auth_error::NONE,
                revocation: paywall_auth_revocation::NotNeeded,
            },
            notice: paywall_auth_notice {
                kind: paywall_auth_notice_kind::Other,
                key_tag: 0,
                message: paywall_auth_bytes::NONE,
            },
        }
    }
}
