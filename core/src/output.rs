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
    /// Sign-out finished locally (any server call continues on its own).
    SignedOut,
    /// The answer to [`Command::AccessToken`](crate::Command::AccessToken):
    /// a fresh token, or `None` when signed out.
    AccessToken(Option<&'a AccessToken>),
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
    /// [`Outcome::SignedOut`].
    SignedOut,
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
            Outcome::SignedOut => OutcomeKind::SignedOut,
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
