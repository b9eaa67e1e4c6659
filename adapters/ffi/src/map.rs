//! Every mapping between the core's types and the C types, in one place:
//! when the core gains a variant (a `Notice`, an `Outcome` flag, an
//! `Error`), this is the only module to adapt.

use core::fmt::Write as _;

use paywall_auth::{
    AuthChange, CapacityError, Command, Error, Field, Notice, Outcome, Output, RecordKey,
    RecordValue, Revocation, Session, SignInOptions, SignOutOptions, StoreFormat, TransportError,
    UpgradeRequest, UserMeta,
};

use crate::types::*;

/// Bytes reserved for messages (errors, notices) in the encode arena.
pub const MESSAGE_MAX: usize = 192;

/// A bump allocator over the machine's encode buffer, reset at every
/// `poll_output`: the bytes it hands out live until the next call.
pub struct Arena<'a> {
    buf: &'a mut [u8],
    used: usize,
}

impl core::fmt::Debug for Arena<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Arena({}/{})", self.used, self.buf.len())
    }
}

fn full() -> CapacityError {
    CapacityError {
        field: Field::Buffer,
        capacity: crate::ENCODE_BUF,
        len: 0,
    }
}

impl<'a> Arena<'a> {
    /// An empty arena over `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, used: 0 }
    }

    /// The free tail.
    fn free(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.used..).unwrap_or_default()
    }

    /// Reserves `n` bytes written by the caller; returns their view.
    fn commit(&mut self, n: usize) -> paywall_auth_bytes {
        let start = self.used;
        self.used = self.used.saturating_add(n).min(self.buf.len());
        paywall_auth_bytes::of(self.buf.get(start..self.used).unwrap_or_default())
    }

    /// Copies the concatenation of `parts`, NUL-terminated if `nul` (the
    /// NUL is not counted).
    pub fn put(&mut self, parts: &[&[u8]], nul: bool) -> Result<paywall_auth_bytes, CapacityError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let free = self.free();
        let need = len + usize::from(nul);
        let dst = free.get_mut(..need).ok_or_else(full)?;
        let mut at = 0;
        for p in parts {
            if let Some(d) = dst.get_mut(at..at + p.len()) {
                d.copy_from_slice(p);
            }
            at += p.len();
        }
        if let Some(last) = dst.get_mut(len) {
            *last = 0;
        }
        let view = self.commit(need);
        Ok(paywall_auth_bytes { len, ..view })
    }

    /// Runs an encoder over the free tail; keeps the `n` bytes it reports.
    pub fn encode(
        &mut self,
        f: impl FnOnce(&mut [u8]) -> Result<usize, CapacityError>,
    ) -> Result<paywall_auth_bytes, CapacityError> {
        let n = f(self.free())?;
        Ok(self.commit(n))
    }

    /// Formats `args` as a NUL-terminated message of at most
    /// [`MESSAGE_MAX`] bytes, cut at a character boundary.
    pub fn message(&mut self, args: core::fmt::Arguments<'_>) -> paywall_auth_bytes {
        let free = self.free();
        let cap = free.len().min(MESSAGE_MAX).saturating_sub(1);
        let Some(dst) = free.get_mut(..cap) else {
            return paywall_auth_bytes::NONE;
        };
        let mut w = Cut { buf: dst, len: 0 };
        let _ = w.write_fmt(args);
        let len = w.len;
        if let Some(nul) = self.free().get_mut(len) {
            *nul = 0;
        }
        let view = self.commit(len + 1);
        paywall_auth_bytes { len, ..view }
    }
}

/// A `fmt::Write` into a slice that stops, at a character boundary, when
/// the slice is full.
struct Cut<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl core::fmt::Write for Cut<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len().saturating_sub(self.len);
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        if let (Some(dst), Some(src)) = (
            self.buf.get_mut(self.len..self.len + n),
            s.as_bytes().get(..n),
        ) {
            dst.copy_from_slice(src);
        }
        self.len += n;
        if n < s.len() {
            Err(core::fmt::Error)
        } else {
            Ok(())
        }
    }
}

// ----- C -> core ----------------------------------------------------------

/// `paywall_auth_config.store_format`.
pub fn store_format(v: u32) -> Option<StoreFormat> {
    match v {
        0 => Some(StoreFormat::ReferenceJson),
        1 => Some(StoreFormat::Postcard),
        _ => None,
    }
}

/// `handle_transport_error`'s kind.
pub fn transport_error(v: u32) -> Option<TransportError> {
    match v {
        0 => Some(TransportError::Connect),
        1 => Some(TransportError::Timeout),
        2 => Some(TransportError::ConnectionLost),
        3 => Some(TransportError::BadFraming),
        4 => Some(TransportError::TooLarge),
        _ => None,
    }
}

/// `handle_stored`'s key, from a tag.
pub fn record_key(tag: u8) -> Option<RecordKey> {
    RecordKey::from_tag(tag)
}

/// The parts of a [`paywall_auth_command`] as Rust strings, already
/// checked for NULL and UTF-8 by the caller.
#[derive(Debug)]
pub struct CommandArgs<'a, M: Iterator<Item = (&'a str, &'a str)>> {
    /// `kind`.
    pub kind: u32,
    /// `force_new`.
    pub force_new: bool,
    /// `hard`.
    pub hard: bool,
    /// `captcha_token`.
    pub captcha: Option<&'a str>,
    /// `email`.
    pub email: &'a str,
    /// `password`.
    pub password: &'a str,
    /// `idempotency_key`.
    pub idempotency_key: Option<&'a str>,
    /// `user_meta`.
    pub meta: M,
}

/// Why a command could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// Unknown kind.
    UnknownKind,
    /// A value exceeded a capacity.
    Capacity(CapacityError),
}

impl From<CapacityError> for CommandError {
    fn from(e: CapacityError) -> Self {
        CommandError::Capacity(e)
    }
}

/// Builds the core's [`Command`].
pub fn command<'a, M: Iterator<Item = (&'a str, &'a str)>>(
    args: CommandArgs<'a, M>,
) -> Result<Command, CommandError> {
    let mut meta = UserMeta::new();
    let mut entries = args.meta;
    Ok(match args.kind {
        0 => {
            let mut options = SignInOptions {
                force_new: args.force_new,
                ..SignInOptions::default()
            };
            if let Some(c) = args.captcha.filter(|c| !c.is_empty()) {
                options = options.with_captcha(c)?;
            }
            for (k, v) in entries.by_ref() {
                meta.insert(k, v)?;
            }
            options.user_meta = meta;
            Command::SignInAnonymously(options)
        }
        1 => {
            let mut request = UpgradeRequest::new(
                args.email,
                args.password,
                args.idempotency_key.filter(|k| !k.is_empty()),
            )?;
            for (k, v) in entries.by_ref() {
                meta.insert(k, v)?;
            }
            request.user_meta = meta;
            Command::UpgradeToEmail(request)
        }
        2 => Command::SignOut(SignOutOptions {
            forget_anonymous: args.hard,
        }),
        3 => Command::Refresh,
        4 => Command::AccessToken,
        _ => return Err(CommandError::UnknownKind),
    })
}

// ----- core -> C ----------------------------------------------------------

/// The view of a session (no tokens); pointers into the machine.
pub fn session_view(session: Option<&Session>) -> paywall_auth_session_view {
    match session {
        None => paywall_auth_session_view::NONE,
        Some(s) => paywall_auth_session_view {
            present: 1,
            user_id: paywall_auth_bytes::of(s.user.id.as_bytes()),
            email: s.user.email.as_ref().map_or(paywall_auth_bytes::NONE, |e| {
                paywall_auth_bytes::of(e.as_bytes())
            }),
            is_anonymous: u8::from(s.user.is_anonymous),
            expires_at_ms: s.expires_at.as_millis(),
        },
    }
}

fn event(change: AuthChange) -> paywall_auth_event {
    match change {
        AuthChange::InitialSession => paywall_auth_event::InitialSession,
        AuthChange::SignedIn => paywall_auth_event::SignedIn,
        AuthChange::SignedOut => paywall_auth_event::SignedOut,
        AuthChange::TokenRefreshed => paywall_auth_event::TokenRefreshed,
        AuthChange::UserUpdated => paywall_auth_event::UserUpdated,
    }
}

/// The integer kind of a core error.
pub fn error_kind(e: &Error) -> paywall_auth_error_kind {
    match e {
        Error::Api(_) => paywall_auth_error_kind::Api,
        Error::Network(_) => paywall_auth_error_kind::Network,
        Error::InvalidResponse(_) => paywall_auth_error_kind::InvalidResponse,
        Error::Capacity(_) => paywall_auth_error_kind::Capacity,
        Error::NotAuthenticated => paywall_auth_error_kind::NotAuthenticated,
        Error::NotAnonymous => paywall_auth_error_kind::NotAnonymous,
        Error::UpgradeInProgress => paywall_auth_error_kind::UpgradeInProgress,
        Error::Superseded => paywall_auth_error_kind::Superseded,
        Error::Storage(_) => paywall_auth_error_kind::Storage,
        Error::Busy => paywall_auth_error_kind::Busy,
        _ => paywall_auth_error_kind::Other,
    }
}

/// The protocol's string code of an error kind (NUL-terminated statics).
pub fn error_code_str(kind: u32) -> &'static core::ffi::CStr {
    match kind {
        1 => c"api_error",
        2 => c"network_error",
        3 => c"invalid_response",
        4 => c"capacity_exceeded",
        5 => c"not_authenticated",
        6 => c"not_anonymous",
        7 => c"upgrade_in_progress",
        8 => c"superseded",
        9 => c"storage_failed",
        10 => c"busy",
        _ => c"unknown",
    }
}

/// What `poll_output` could not render into the arena: the output is
/// still reported (with its id), and the host answers it as failed.
#[derive(Debug)]
pub struct Unrendered;

/// Renders one output. `Err` leaves `out.kind` and the id set.
pub fn output(
    o: Output<'_>,
    format: StoreFormat,
    paywall_id: &str,
    headers: &mut [paywall_auth_header; PAYWALL_AUTH_HEADERS_MAX],
    arena: &mut Arena<'_>,
    out: &mut paywall_auth_output,
) -> Result<(), Unrendered> {
    match o {
        Output::Send(request) => {
            *out = paywall_auth_output::empty(paywall_auth_output_kind::Send);
            out.send.request_id = request.id.0;
            let path = request.path().map_err(|_| Unrendered)?;
            let mut n = 0;
            for (slot, h) in headers.iter_mut().zip(request.headers()) {
                let value = if h.prefix.is_empty() {
                    paywall_auth_bytes::of(h.value.as_bytes())
                } else {
                    arena
                        .put(&[h.prefix.as_bytes(), h.value.as_bytes()], false)
                        .map_err(|_| Unrendered)?
                };
                *slot = paywall_auth_header {
                    name: paywall_auth_bytes::of(h.name.as_bytes()),
                    value,
                };
                n += 1;
            }
            out.send.method = paywall_auth_bytes::of(request.method().as_bytes());
            out.send.path = arena
                .put(&[path.as_bytes()], true)
                .map_err(|_| Unrendered)?;
            out.send.headers = headers.as_ptr();
            out.send.headers_len = n;
            out.send.body = arena
                .encode(|b| request.write_body(b))
                .map_err(|_| Unrendered)?;
        }
        Output::Store(op) => {
            *out = paywall_auth_output::empty(paywall_auth_output_kind::Store);
            out.store.store_id = op.id.0;
            out.store.key_tag = op.key.tag();
            let key = op.key.storage_key(paywall_id).map_err(|_| Unrendered)?;
            out.store.key = arena.put(&[key.as_bytes()], true).map_err(|_| Unrendered)?;
            out.store.verify_only = u8::from(op.verify_only);
            match op.value {
                None => out.store.remove = 1,
                Some(value) => {
                    out.store.value = arena
                        .encode(|b| value_encode(&value, format, b))
                        .map_err(|_| Unrendered)?;
                }
            }
        }
        Output::AuthChange { change, session } => {
            *out = paywall_auth_output::empty(paywall_auth_output_kind::AuthChange);
            out.auth_change = paywall_auth_auth_change {
                event: event(change),
                event_name: paywall_auth_bytes::of(change.as_str().as_bytes()),
                session: session_view(session),
            };
        }
        Output::Complete { id, result } => {
            *out = paywall_auth_output::empty(paywall_auth_output_kind::Complete);
            let c = &mut out.complete;
            c.command_id = id.0;
            match result {
                Ok(outcome) => {
                    c.ok = 1;
                    match outcome {
                        Outcome::Session(s) => {
                            c.outcome = paywall_auth_outcome::Session;
                            c.session = session_view(Some(s));
                        }
                        Outcome::Upgraded(s) => {
                            c.outcome = paywall_auth_outcome::Upgraded;
                            c.session = session_view(Some(s));
                        }
                        Outcome::ConfirmationRequired { email } => {
                            c.outcome = paywall_auth_outcome::ConfirmationRequired;
                            c.email = paywall_auth_bytes::of(email.as_bytes());
                        }
                        Outcome::SignedOut(revocation) => {
                            c.outcome = paywall_auth_outcome::SignedOut;
                            c.revocation = match revocation {
                                Revocation::NotNeeded => paywall_auth_revocation::NotNeeded,
                                Revocation::Revoked => paywall_auth_revocation::Revoked,
                                Revocation::Failed {
                                    code,
                                    message,
                                    status,
                                } => {
                                    c.error.http_status = status.unwrap_or(0);
                                    c.error.code = arena
                                        .put(&[code.as_bytes()], true)
                                        .unwrap_or(paywall_auth_bytes::NONE);
                                    c.error.message = arena
                                        .put(&[message.as_bytes()], true)
                                        .unwrap_or(paywall_auth_bytes::NONE);
                                    paywall_auth_revocation::Failed
                                }
                            };
                        }
                        Outcome::AccessToken(token) => {
                            c.outcome = paywall_auth_outcome::AccessToken;
                            c.access_token = token.map_or(paywall_auth_bytes::NONE, |t| {
                                paywall_auth_bytes::of(t.expose().as_bytes())
                            });
                        }
                    }
                }
                Err(e) => {
                    c.ok = 0;
                    c.error.kind = error_kind(&e);
                    c.error.http_status = e.status().unwrap_or(0);
                    // The code first: it is short and must survive a full
                    // arena better than the message.
                    c.error.code = arena
                        .put(&[e.code().as_bytes()], true)
                        .unwrap_or(paywall_auth_bytes::NONE);
                    c.error.message = match &e {
                        Error::Api(api) => arena.message(format_args!("{}", api.message)),
                        other => arena.message(format_args!("{other}")),
                    };
                }
            }
        }
        Output::Notice(notice) => {
            *out = paywall_auth_output::empty(paywall_auth_output_kind::Notice);
            let n = &mut out.notice;
            match notice {
                Notice::CorruptRecord { key, error } => {
                    n.kind = paywall_auth_notice_kind::CorruptRecord;
                    n.key_tag = key.tag();
                    n.message = arena.message(format_args!(
                        "stored {} record is unreadable: {error}",
                        key.name()
                    ));
                }
                Notice::StorageFailed { key } => {
                    n.kind = paywall_auth_notice_kind::StorageFailed;
                    n.key_tag = key.tag();
                    n.message = arena.message(format_args!(
                        "storing the {} record failed; it will be retried",
                        key.name()
                    ));
                }
                Notice::GuestAccountClaimed => {
                    n.kind = paywall_auth_notice_kind::GuestAccountClaimed;
                    n.message = arena.message(format_args!(
                        "the stored guest account was claimed by an email; a new guest was created"
                    ));
                }
            }
        }
    }
    Ok(())
}

fn value_encode(
    value: &RecordValue<'_>,
    format: StoreFormat,
    buf: &mut [u8],
) -> Result<usize, CapacityError> {
    value.encode(format, buf).map(|b| b.len())
}
