//! What the machine asks of its adapter, and what it tells its users.

use crate::command::CommandId;
use crate::error::{DecodeError, Error};
use crate::request::Request;
use crate::session::{AccessToken, Session};
use crate::storage::{RecordKey, StoreOp};

/// An auth-change event (docs/protocol.md §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AuthChange {
    /// First event, always, once storage has been restored.
    InitialSession,
    /// A session began (anonymous sign-in, resume, another process signed in).
    SignedIn,
    /// The session ended.
    SignedOut,
    /// Same user, new tokens.
    TokenRefreshed,
    /// Same user id, new identity: an upgrade, or a confirmed email.
    UserUpdated,
}

impl AuthChange {
    /// The reference client's event name.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthChange::InitialSession => "INITIAL_SESSION",
            AuthChange::SignedIn => "SIGNED_IN",
            AuthChange::SignedOut => "SIGNED_OUT",
            AuthChange::TokenRefreshed => "TOKEN_REFRESHED",
            AuthChange::UserUpdated => "USER_UPDATED",
        }
    }
}

/// The successful result of a command.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// Sign-in or refresh: the session now current.
    Session(&'a Session),
    /// Upgrade answered `updated`: the session, now named.
    Upgraded(&'a Session),
    /// Upgrade answered `confirmation_required`: the session stays anonymous
    /// until the email is confirmed and a refresh shows it.
    ConfirmationRequired {
        /// Where the confirmation mail went.
        email: &'a str,
    },
    /// Signed out. Everything local (records, `SIGNED_OUT`) happened at
    /// once; the completion waits for the server's answer to
    /// `/auth/signout`, when one was sent, so it can say truthfully whether
    /// the session was revoked.
    SignedOut(Revocation<'a>),
    /// The answer to [`Command::AccessToken`](crate::Command::AccessToken):
    /// a fresh token, or `None` when signed out.
    AccessToken(Option<&'a AccessToken>),
}

/// Whether the server revoked the session a sign-out ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation<'a> {
    /// No server call was made: a soft sign-out of a guest (revoking would
    /// kill the very token kept to resume it), or nothing was signed in.
    NotNeeded,
    /// The server answered `/auth/signout` with success (or refused the
    /// session's refresh token as dead while a stale bearer was renewed
    /// for it: the session can no longer be renewed either way).
    Revoked,
    /// The server did not confirm. The local sign-out happened anyway (the
    /// user asked for it); the session lives on server-side until its
    /// tokens expire.
    Failed {
        /// The error code (`http_503`, `network_error`, …).
        code: &'a str,
        /// A human-readable reason.
        message: &'a str,
        /// The HTTP status, when the server answered.
        status: Option<u16>,
    },
}

impl Revocation<'_> {
    /// Whether the server confirmed the revocation (`None`: none was needed).
    pub fn revoked(&self) -> Option<bool> {
        match self {
            Revocation::NotNeeded => None,
            Revocation::Revoked => Some(true),
            Revocation::Failed { .. } => Some(false),
        }
    }
}

/// What an [`Outcome`] was, without its borrow of the machine: for drivers
/// that must feed the next input before they can act on a completion (the
/// session or token is then read back from [`Machine::session`]).
///
/// [`Machine::session`]: crate::Machine::session
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OutcomeKind {
    /// [`Outcome::Session`].
    Session,
    /// [`Outcome::Upgraded`].
    Upgraded,
    /// [`Outcome::ConfirmationRequired`].
    ConfirmationRequired,
    /// [`Outcome::SignedOut`]; whether the server confirmed a revocation
    /// (`None`: none was needed).
    SignedOut(Option<bool>),
    /// [`Outcome::AccessToken`]; whether it carried a token.
    AccessToken(bool),
}

impl Outcome<'_> {
    /// The kind of this outcome.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Session(_) => OutcomeKind::Session,
            Outcome::Upgraded(_) => OutcomeKind::Upgraded,
            Outcome::ConfirmationRequired { .. } => OutcomeKind::ConfirmationRequired,
            Outcome::SignedOut(r) => OutcomeKind::SignedOut(r.revoked()),
            Outcome::AccessToken(token) => OutcomeKind::AccessToken(token.is_some()),
        }
    }
}

/// Things worth telling the application that are not command results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Notice {
    /// A stored record could not be decoded at restore or on an external
    /// change. The machine starts signed out (or keeps its state); the record
    /// is left untouched on storage so nothing is destroyed.
    CorruptRecord {
        /// Which record.
        key: RecordKey,
        /// Why.
        error: DecodeError,
    },
    /// A storage operation failed; the machine keeps the state in memory and
    /// will write it again at [`Machine::poll_timeout`](crate::Machine::poll_timeout).
    StorageFailed {
        /// Which record.
        key: RecordKey,
    },
    /// The stored guest account has become a named account (its email was
    /// confirmed, here or on another device) and was about to be resumed
    /// by an anonymous sign-in. A guest sign-in never hands out a named
    /// account — on a shared device the next visitor would be in the
    /// previous user's account — so that session was revoked, the guest
    /// record forgotten and a new guest created (docs/protocol.md §13.1).
    /// The named account is intact; its owner signs in with their email.
    GuestAccountClaimed,
}

/// One output of the machine. Drain with
/// [`Machine::poll_output`](crate::Machine::poll_output) until `None` after
/// every input.
#[derive(Debug)]
pub enum Output<'a> {
    /// Send this request and feed back its response or transport error.
    Send(Request<'a>),
    /// Apply this storage operation, then acknowledge it. Nothing after it is
    /// released until the acknowledgement arrives.
    Store(StoreOp<'a>),
    /// The session changed.
    AuthChange {
        /// What happened.
        change: AuthChange,
        /// The session after the change.
        session: Option<&'a Session>,
    },
    /// A command finished. Every caller that was handed `id` gets this result.
    Complete {
        /// Which command(s).
        id: CommandId,
        /// The result.
        result: Result<Outcome<'a>, Error>,
    },
    /// Something the application should know.
    Notice(Notice),
}
