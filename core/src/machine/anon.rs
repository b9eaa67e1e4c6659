//! The anonymous sign-in ladder (docs/protocol.md §7.1) and its collapse rules.
//!
//! | in flight \ new call | plain                    | `force_new`                          |
//! |----------------------|--------------------------|--------------------------------------|
//! | nothing              | no-op / resume / create  | create                               |
//! | plain                | joins (same id)          | queued; creates after the plain ends |
//! | `force_new`          | joins (a fresh anonymous | joins (one fresh user for both)      |
//! |                      | session satisfies it)    |                                      |
//!
//! So a `force_new` caller always gets a user created after its call, a
//! plain caller always gets an anonymous session, and two sign-up requests
//! are never in flight at once (§12.3). Joining callers share the leader's
//! request; their own `user_meta`/captcha are not sent (the account they get
//! was already being created or resumed when they called).

use crate::command::{CommandId, SignInOptions};
use crate::error::{Error, TransportError};
use crate::output::{AuthChange, Notice};
use crate::session::{Session, User};
use crate::storage::RecordKey;

use super::{
    AnonOp, Done, Machine, Purpose, Queued, QueuedSignIn, Response, answer_error, api_error,
    next_backoff,
};
use crate::time::Instant;

impl Machine {
    pub(super) fn cmd_sign_in(&mut self, options: SignInOptions) -> CommandId {
        if let Some(op) = &self.anon {
            if !op.detached && (!options.force_new || op.force) {
                return op.id;
            }
            // Wait for the request in flight to end: never two sign-ups at
            // once. A forced call upgrades a queued plain one (a fresh guest
            // is still a guest).
            if let Some(q) = self.queued.as_mut() {
                if options.force_new {
                    q.options = options;
                }
                return q.id;
            }
            let id = self.command_id();
            self.queued = Some(QueuedSignIn { id, options });
            return id;
        }
        let id = self.command_id();
        if !options.force_new {
            match self.current() {
                // An unsettled guest (records that disagreed at restore) is
                // settled by resuming the newer anonymous record, so a
                // sign-in never hands back a guest the user gave up.
                Some(s) if s.is_anonymous() && self.stale_guest && self.anon_token.is_some() => {}
                // Idempotent: already a guest, nothing to do.
                Some(s) if s.is_anonymous() => {
                    self.complete(id, Ok(Done::Session));
                    return id;
                }
                // A named account is signed in: replacing it silently would
                // drop it without a sign-out (§12.4). Ask for intent.
                Some(_) => {
                    self.complete(id, Err(Error::NotAnonymous));
                    return id;
                }
                None => {}
            }
        }
        self.start_anon(id, options);
        id
    }

    /// The caller of the anonymous operation in flight no longer wants its
    /// result (sign-out, another account): tell it now, and let the request
    /// finish on its own so its tokens are not lost (`adopt_orphan_tokens`).
    pub(super) fn detach_anon(&mut self) {
        if let Some(op) = self.anon.as_mut().filter(|op| !op.detached) {
            op.detached = true;
            let id = op.id;
            self.complete(id, Err(Error::Superseded));
        }
        if let Some(q) = self.queued.take() {
            self.complete(q.id, Err(Error::Superseded));
        }
    }

    /// The request of the sign-in in flight timed out: its caller learns it
    /// now, but the request stays the one sign-up in flight until it is
    /// answered (its account, if created, is then adopted) or its slot is
    /// reclaimed; sign-ins made meanwhile wait behind it.
    pub(super) fn time_out_anon(&mut self, request: crate::request::RequestId) {
        if let Some(op) = self
            .anon
            .as_mut()
            .filter(|op| op.request == request && !op.detached)
        {
            op.detached = true;
            let id = op.id;
            self.complete(id, Err(Error::Network(TransportError::Timeout)));
        }
    }

    /// The slot of a timed-out request was reclaimed without an answer.
    pub(super) fn abandon_anon(&mut self, request: crate::request::RequestId) {
        self.end_orphan(request);
        self.retry_settle_later();
    }

    /// A peer removed the session record of an unsettled guest (records
    /// that disagreed at restore): the session record may have held the
    /// only live token, which now lives in memory alone, as this machine's
    /// fallback. A resume nobody waits for settles it at once: if the
    /// guest record's token is live, its rotation is saved there; if it is
    /// dead, the guest record takes the fallback (`mirror_session_token`).
    /// Either way storage holds a live token again, so a restart no longer
    /// loses the guest (docs/protocol.md §13.7). Without an answer that
    /// decides it (offline, a 5xx), it is tried again on the refresh
    /// backoff (`retry_settle_later`); a sign-in settles it too.
    pub(super) fn settle_retired_guest(&mut self) {
        self.refresh_retry_at = None;
        if !self.needs_settling() || self.anon.is_some() {
            return;
        }
        let id = self.command_id();
        self.start_anon_as(id, SignInOptions::default(), true);
    }

    /// Signed out, with a retired unsettled guest whose token is held in
    /// memory only (see [`settle_retired_guest`](Self::settle_retired_guest)).
    pub(super) fn needs_settling(&self) -> bool {
        self.stale_guest
            && self.current().is_none()
            && self.anon_token.is_some()
            && self.slot.as_ref().is_some_and(Session::is_anonymous)
    }

    /// When the next attempt to settle a retired guest is due. The refresh
    /// retry fields serve it: they are unused without a session.
    pub(super) fn settle_deadline(&self) -> Option<Instant> {
        self.refresh_retry_at
            .filter(|_| self.anon.is_none() && self.needs_settling())
    }

    /// An attempt to settle failed without an answer that decides it
    /// (offline, a 5xx): try again later, backing off like a refresh.
    fn retry_settle_later(&mut self) {
        if self.needs_settling() {
            self.refresh_backoff = next_backoff(self.refresh_backoff, &self.config);
            self.refresh_retry_at = Some(self.now.saturating_add_ms(self.refresh_backoff));
        }
    }

    /// Sends the first request of the ladder for a new operation.
    fn start_anon(&mut self, id: CommandId, options: SignInOptions) {
        self.start_anon_as(id, options, false);
    }

    /// [`start_anon`](Self::start_anon); `detached`: nobody waits for it
    /// (its result is only saved, as an orphan's is).
    fn start_anon_as(&mut self, id: CommandId, options: SignInOptions, detached: bool) {
        let guest_gen = self.guest_gen;
        let resume = self
            .anon_token
            .as_ref()
            .filter(|_| !options.force_new)
            .map(|t| t.fingerprint());
        let resuming = resume.is_some();
        let purpose = match resume {
            Some(presented) => Purpose::AnonResume {
                presented,
                guest_gen,
            },
            None => Purpose::AnonCreate { guest_gen },
        };
        let force = options.force_new;
        self.anon = Some(AnonOp {
            id,
            force,
            detached,
            options,
            resuming,
            request: crate::request::RequestId(0),
        });
        // A resume rotates the stored token: prove its record can be
        // rewritten first (docs/protocol.md §13.2).
        let sent = if resuming {
            self.send_guarded(purpose, RecordKey::AnonRefreshToken)
        } else {
            self.send(purpose)
        };
        match sent {
            Ok(request) => {
                if let Some(op) = self.anon.as_mut() {
                    op.request = request;
                }
            }
            Err(e) => self.finish_anon(Err(e)),
        }
    }

    /// Fails the operation in flight before its request went out.
    pub(super) fn cancel_anon(&mut self, error: Error) {
        self.finish_anon(Err(error));
    }

    /// Ends the operation (completing it unless detached) and starts the
    /// sign-in that was waiting for it, if any.
    fn finish_anon(&mut self, result: Result<Done, Error>) {
        if let Some(op) = self.anon.take()
            && !op.detached
        {
            self.complete(op.id, result);
        }
        if let Some(q) = self.queued.take() {
            // Re-run the ladder: the state may have changed (a guest is now
            // signed in, or an orphaned account became resumable).
            self.proposed = Some(q.id);
            let got = self.cmd_sign_in(q.options);
            if self.proposed.take().is_some() && got != q.id {
                self.complete(q.id, Err(Error::Busy));
            }
        }
    }

    /// Whether `request` is still the live request of an operation whose
    /// caller still wants it (sign-outs and other accounts detach it; a
    /// session that merely expired meanwhile does not).
    fn anon_is_live(&self, request: crate::request::RequestId) -> bool {
        self.anon
            .as_ref()
            .is_some_and(|op| op.request == request && !op.detached)
    }

    #[inline(never)]
    pub(super) fn on_anon_resume(
        &mut self,
        request: crate::request::RequestId,
        presented: u64,
        guest_gen: u32,
        answer: Result<Response<'_>, TransportError>,
    ) {
        let live = self.anon_is_live(request);
        match answer {
            Ok(resp) if resp.is_success() => {
                // The stored token belonged to a guest: that is the
                // assumption when neither the reply nor the token says more.
                let guest = User {
                    is_anonymous: true,
                    ..User::default()
                };
                let mut session = Session::blank();
                if let Err(e) = self.session_into(&resp, Some(&guest), &mut session) {
                    if live {
                        // The stored token is kept: the server may still
                        // honour it within its reuse window.
                        self.finish_anon(Err(e));
                    } else {
                        self.end_orphan(request);
                    }
                    return;
                }
                self.remember_spent(presented);
                if !session.is_anonymous() {
                    // The guest was upgraded and its email confirmed (here
                    // or on another device): the record now opens a named
                    // account. A guest sign-in never hands one out — on a
                    // shared device the next visitor would be in the
                    // previous user's account (docs/protocol.md §13.1).
                    self.give_up_claimed_guest(presented, &session);
                    if !live {
                        self.end_orphan(request);
                        return;
                    }
                    self.push(Queued::Notice(Notice::GuestAccountClaimed));
                    self.fall_back_to_create(guest_gen);
                    return;
                }
                if !live {
                    if self.anon_fingerprint() == presented {
                        // The guest record's token is proven live: the
                        // records are settled, and a session record that
                        // disagreed is no fallback any more.
                        self.stale_guest = false;
                    }
                    self.adopt_orphan_tokens(Some(guest_gen), &session);
                    self.end_orphan(request);
                    return;
                }
                // Settling an unsettled session of the same guest only
                // renews its tokens.
                let change = match self.current() {
                    Some(cur) if cur.user.id == session.user.id => AuthChange::TokenRefreshed,
                    _ => AuthChange::SignedIn,
                };
                self.begin_epoch(session);
                // The anonymous record first (see `WRITE_ORDER`).
                self.anon_token = self.current().map(|s| s.refresh_token.clone());
                self.store_put(RecordKey::AnonRefreshToken);
                self.store_put(RecordKey::Session);
                if change == AuthChange::TokenRefreshed {
                    self.change(change);
                    self.finish_anon(Ok(Done::Session));
                    return;
                }
                self.change(AuthChange::SignedIn);
                self.finish_anon(Ok(Done::Session));
            }
            Ok(resp) if api_error(&resp).is_dead_token() => {
                if self.anon_fingerprint() == presented {
                    // The stored account is gone server-side; the record is
                    // useless, and keeping it would make every sign-in fail.
                    // The session of a guest (signed in or signed out since)
                    // whose token differs — an unsettled one — is the last
                    // way back into an account: the guest record takes its
                    // token (written before it is presented), so that token
                    // never lives in the session record alone, which a
                    // peer's sign-out may remove at any moment.
                    if let Some(fallback) = self.mirror_session_token(presented) {
                        if !live {
                            self.store_put(RecordKey::AnonRefreshToken);
                            self.end_orphan(request);
                            return;
                        }
                        let purpose = Purpose::AnonResume {
                            presented: fallback,
                            guest_gen,
                        };
                        match self.send_after_write(purpose, RecordKey::AnonRefreshToken) {
                            Ok(req) => {
                                if let Some(op) = self.anon.as_mut() {
                                    op.request = req;
                                }
                            }
                            Err(e) => self.finish_anon(Err(e)),
                        }
                        return;
                    }
                    self.anon_token = None;
                    self.store_remove(RecordKey::AnonRefreshToken);
                }
                if !live {
                    self.end_orphan(request);
                    return;
                }
                // The record moved on while we waited (a late refresh of the
                // same guest rotated it): resume with what it holds now
                // rather than minting a second guest.
                if let Some(current) = self.anon_token.as_ref().map(|t| t.fingerprint())
                    && current != presented
                {
                    let purpose = Purpose::AnonResume {
                        presented: current,
                        guest_gen,
                    };
                    match self.send(purpose) {
                        Ok(req) => {
                            if let Some(op) = self.anon.as_mut() {
                                op.request = req;
                            }
                        }
                        Err(e) => self.finish_anon(Err(e)),
                    }
                    return;
                }
                // Fall through to a fresh account, same operation, same id.
                self.fall_back_to_create(guest_gen);
            }
            failed => {
                if live {
                    // Transient: the stored token is kept and no new account
                    // is created (that would orphan the stored one).
                    self.finish_anon(Err(answer_error(&failed)));
                } else {
                    self.end_orphan(request);
                    self.retry_settle_later();
                }
            }
        }
    }

    #[inline(never)]
    pub(super) fn on_anon_create(
        &mut self,
        request: crate::request::RequestId,
        guest_gen: u32,
        answer: Result<Response<'_>, TransportError>,
    ) {
        let live = self.anon_is_live(request);
        match answer {
            Ok(resp) if resp.is_success() => {
                let mut session = Session::blank();
                if let Err(e) = self.session_into(&resp, None, &mut session) {
                    if live {
                        self.finish_anon(Err(e));
                    } else {
                        self.end_orphan(request);
                    }
                    return;
                }
                // The route only creates guests (reference behaviour).
                session.user.is_anonymous = true;
                if !live {
                    // A new account nobody is waiting for: it becomes the
                    // resumable guest only if there is no other one to keep
                    // (a superseded force_new leaves the old guest alone).
                    if self.anon_token.is_none() {
                        self.adopt_orphan_tokens(Some(guest_gen), &session);
                    } else {
                        self.revoke_orphan(&session);
                    }
                    self.end_orphan(request);
                    return;
                }
                // A new guest replaces the resumable one (the user asked for
                // it with force_new, or there was none).
                self.guest_gen = self.guest_gen.wrapping_add(1);
                self.begin_epoch(session);
                self.anon_token = self.current().map(|s| s.refresh_token.clone());
                // The anonymous record first (see `WRITE_ORDER`).
                self.store_put(RecordKey::AnonRefreshToken);
                self.store_put(RecordKey::Session);
                self.change(AuthChange::SignedIn);
                self.finish_anon(Ok(Done::Session));
            }
            failed => {
                if live {
                    self.finish_anon(Err(answer_error(&failed)));
                } else {
                    self.end_orphan(request);
                }
            }
        }
    }

    /// The resume of the operation in flight cannot go on: it creates a
    /// fresh guest instead, same operation, same caller id.
    fn fall_back_to_create(&mut self, guest_gen: u32) {
        if let Some(op) = self.anon.as_mut() {
            op.resuming = false;
        }
        match self.send(Purpose::AnonCreate { guest_gen }) {
            Ok(req) => {
                if let Some(op) = self.anon.as_mut() {
                    op.request = req;
                }
            }
            Err(e) => self.finish_anon(Err(e)),
        }
    }

    /// A resume answered with a named account: the guest record that led
    /// there belongs to that account's owner now. It is forgotten (never
    /// presented again) and the fresh session the resume minted is revoked
    /// (best effort: nobody here may use it).
    fn give_up_claimed_guest(&mut self, presented: u64, session: &Session) {
        if self.anon_fingerprint() == presented {
            self.anon_token = None;
            self.store_remove(RecordKey::AnonRefreshToken);
        }
        self.revoke_orphan(session);
    }

    /// The request of a detached operation has been answered: release the
    /// slot and run whatever sign-in waited for it.
    pub(super) fn end_orphan(&mut self, request: crate::request::RequestId) {
        if self.anon.as_ref().is_some_and(|op| op.request == request) {
            self.finish_anon(Err(Error::Superseded));
        }
    }

    /// Tokens that arrived after their caller was superseded (sign-out,
    /// another sign-in). A guest's tokens are never dropped on the floor:
    /// if the user has not given the guest up since the request was made
    /// (`guest_gen` is still current), they become the resumable account;
    /// otherwise — and for a named account that was signed out — the
    /// session is revoked on the server.
    pub(super) fn adopt_orphan_tokens(
        &mut self,
        guest_gen: Option<u32>,
        session: &crate::session::Session,
    ) {
        if session.refresh_token.fingerprint() == self.anon_fingerprint() {
            // A reuse-window answer carrying the very token the record
            // holds: it *is* the resumable account, nothing to do.
            return;
        }
        if guest_gen == Some(self.guest_gen) && session.is_anonymous() {
            self.anon_token = Some(session.refresh_token.clone());
            self.store_put(RecordKey::AnonRefreshToken);
        } else {
            self.revoke_orphan(session);
        }
    }
}
