//! Sign-out, soft and hard (docs/protocol.md §7.3).
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
//! (§12.14); everything local happens first and never waits for the server.

use crate::command::{CommandId, SignOutOptions};
use crate::output::AuthChange;
use crate::storage::RecordKey;

use super::{Done, Machine, Purpose};

/// A bearer with less than this left is refreshed before it is sent to
/// `/auth/signout`.
const SIGNOUT_MIN_VALIDITY_MS: u64 = 10_000;

impl Machine {
    pub(super) fn cmd_sign_out(&mut self, options: SignOutOptions) -> CommandId {
        let id = self.command_id();
        // A sign-in still in flight loses its caller: the user wants out.
        self.detach_anon();
        let old = self.current().map(|s| (s.is_anonymous(), s.expires_at));
        // The old session stays in the slot, retired, for its revocation.
        self.end_epoch();
        if old.is_some() {
            self.store_remove(RecordKey::Session);
        }
        if options.forget_anonymous && self.stale_guest {
            // The guest record restore set aside is a guest too.
            self.stale_guest = false;
            self.store_remove(RecordKey::Session);
        }
        if options.forget_anonymous {
            self.guest_gen = self.guest_gen.wrapping_add(1);
            self.anon_token = None;
            self.store_remove(RecordKey::AnonRefreshToken);
        }
        if old.is_some() {
            self.change(AuthChange::SignedOut);
        }
        self.complete(id, Ok(Done::SignedOut));

        let Some((anonymous, expires_at)) = old else {
            return id;
        };
        if anonymous && !options.forget_anonymous {
            return id;
        }
        if expires_at.as_millis() > self.now.as_millis().saturating_add(SIGNOUT_MIN_VALIDITY_MS) {
            self.revoke_retired();
        } else {
            if let Some(retired) = self.retired_session() {
                let spent = retired.refresh_token.fingerprint();
                self.remember_spent(spent);
            }
            if self.send(Purpose::SignOutRefresh).is_err() {
                warn!("no request slot to revoke the signed-out session");
            }
        }
        id
    }
}
