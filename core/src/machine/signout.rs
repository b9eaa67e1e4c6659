//! Sign-out, soft and hard (docs/protocol.md §7.3), and revocation.
//!
//! | session   | `forget_anonymous` | `/auth/signout`         | anonymous record |
//! |-----------|--------------------|-------------------------|------------------|
//! | none      | any                | no                      | removed if hard  |
//! | anonymous | soft               | **no** (it would revoke the token kept for resume) | kept |
//! | anonymous | hard               | yes                     | removed          |
//! | named     | any                | yes                     | removed if hard  |
//!
//! Unlike the reference client, a stale access token is refreshed before
//! `/auth/signout` is called, so the server really revokes the session
//! (§12.14). Everything local happens first and never waits for the
//! server; the command's completion does, so it can report truthfully
//! whether the server revoked ([`Revocation`](crate::Revocation),
//! docs/protocol.md §13.6).

use crate::codec::json::decode_tokens_into;
use crate::command::{CommandId, SignOutOptions};
use crate::error::{DecodeError, TransportError};
use crate::output::AuthChange;
use crate::session::Session;
use crate::storage::RecordKey;

use super::{Done, Machine, Purpose, Queued, Response, Revoke, api_error};

/// A bearer with less than this left is refreshed before it is sent to
/// `/auth/signout`.
const SIGNOUT_MIN_VALIDITY_MS: u64 = 10_000;

impl Machine {
    pub(super) fn cmd_sign_out(&mut self, options: SignOutOptions) -> CommandId {
        let id = self.command_id();
        // A sign-in still in flight loses its caller: the user wants out.
        self.detach_anon();
        let old = self.current().map(|s| (s.is_anonymous(), s.expires_at));
        // An unsettled guest's session record may hold the newer of its two
        // tokens (a peer that writes the session first died between its
        // writes): a soft sign-out keeps it on storage, or the account
        // would survive only in memory. The price, in that rare state: a
        // restart shows the guest signed in again (unsettled), which the
        // next sign-in settles.
        let keep_record = self.stale_guest
            && !options.forget_anonymous
            && self.current().is_some_and(|s| {
                self.anon_token
                    .as_ref()
                    .is_some_and(|a| a.fingerprint() != s.refresh_token.fingerprint())
            });
        // The old session stays in the slot, retired, for its revocation.
        self.end_epoch();
        if old.is_some() && !keep_record {
            self.store_remove(RecordKey::Session);
        }
        if options.forget_anonymous {
            // The token of an unsettled session kept as a resume fallback
            // is a guest's too (its record went with the session's).
            self.stale_guest = false;
            self.guest_gen = self.guest_gen.wrapping_add(1);
            self.anon_token = None;
            self.store_remove(RecordKey::AnonRefreshToken);
        }
        if old.is_some() {
            self.change(AuthChange::SignedOut);
        }

        let revoke = match old {
            Some((anonymous, _)) => !anonymous || options.forget_anonymous,
            None => false,
        };
        let Some((_, expires_at)) = old.filter(|_| revoke) else {
            self.complete(id, Ok(Done::SignedOut(Revoke::NotNeeded)));
            return id;
        };
        if expires_at.as_millis() > self.now.as_millis().saturating_add(SIGNOUT_MIN_VALIDITY_MS) {
            self.revoke_retired(Some(id));
        } else {
            if let Some(retired) = self.retired_session() {
                let spent = retired.refresh_token.fingerprint();
                self.remember_spent(spent);
            }
            if self
                .send(Purpose::SignOutRefresh { caller: Some(id) })
                .is_err()
            {
                warn!("no request slot to revoke the signed-out session");
                self.complete(id, Ok(Done::SignedOut(Revoke::FailedBusy)));
            }
        }
        id
    }

    /// `/auth/signout` with the retired session's bearer; `caller` learns
    /// whether it worked.
    pub(super) fn revoke_retired(&mut self, caller: Option<CommandId>) {
        let failed = |m: &mut Self| {
            if let Some(id) = caller {
                m.complete(id, Ok(Done::SignedOut(Revoke::FailedBusy)));
            }
        };
        if self.retired_session().is_none() {
            return failed(self);
        }
        let pending = self.outputs.iter().any(|q| match q {
            Queued::Send(id) => self
                .in_flight
                .iter()
                .any(|f| f.id == *id && matches!(f.purpose, Purpose::SignOut { .. })),
            _ => false,
        });
        if pending {
            // The retired slot holds one session; a second revocation in the
            // same batch would render the wrong bearer. Not reachable through
            // a single input today.
            warn!("second revocation in one batch skipped");
            return failed(self);
        }
        if self.send(Purpose::SignOut { caller }).is_err() {
            warn!("no request slot for /auth/signout; session left to expire");
            failed(self);
        }
    }

    /// Revokes tokens nobody will use (an orphan the user asked to forget,
    /// a named account a guest sign-in must not hand out). Needs the slot:
    /// skipped if a live session occupies it, in which case the orphan
    /// simply expires unused on the server.
    pub(super) fn revoke_orphan(&mut self, session: &Session) {
        if self.current().is_some() {
            debug!("orphaned session left to expire");
            return;
        }
        self.slot = Some(session.clone());
        self.retired = true;
        self.stale_guest = false;
        self.revoke_retired(None);
    }

    /// The answer to `/auth/signout`.
    pub(super) fn on_signout(
        &mut self,
        caller: Option<CommandId>,
        answer: Result<Response<'_>, TransportError>,
    ) {
        let Some(id) = caller else { return };
        let revoke = match answer {
            Ok(resp) if resp.is_success() => Revoke::Revoked,
            Ok(resp) => {
                self.api_error = Some(api_error(&resp));
                Revoke::FailedApi
            }
            Err(t) => Revoke::FailedNetwork(t),
        };
        self.complete(id, Ok(Done::SignedOut(revoke)));
    }

    /// The answer to the refresh that renews a stale bearer for
    /// `/auth/signout`.
    #[inline(never)]
    pub(super) fn on_signout_refresh(
        &mut self,
        caller: Option<CommandId>,
        answer: Result<Response<'_>, TransportError>,
    ) {
        let finish = |m: &mut Self, revoke| {
            if let Some(id) = caller {
                m.complete(id, Ok(Done::SignedOut(revoke)));
            }
        };
        let resp = match answer {
            Ok(resp) => resp,
            Err(t) => return finish(self, Revoke::FailedNetwork(t)),
        };
        if !resp.is_success() {
            let error = api_error(&resp);
            let dead = error.is_dead_token();
            self.api_error = Some(error);
            // A refresh token the server calls dead cannot renew the session
            // any more: as good as revoked.
            let revoke = if dead {
                Revoke::Revoked
            } else {
                Revoke::FailedApi
            };
            return finish(self, revoke);
        }
        let mut tokens = Session::blank();
        let decoded = if resp.content_type_json {
            decode_tokens_into(resp.body, &mut tokens).map(drop)
        } else {
            Err(DecodeError::NotJson)
        };
        if decoded.is_err() {
            return finish(self, Revoke::FailedInvalid);
        }
        match self.slot.as_mut().filter(|_| self.retired) {
            Some(retired) => {
                retired.access_token = tokens.access_token;
                retired.refresh_token = tokens.refresh_token;
                self.revoke_retired(caller);
            }
            None => finish(self, Revoke::FailedBusy),
        }
    }
}
