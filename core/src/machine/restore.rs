//! Start-up from storage, and records changed by another process or tab.

use crate::codec::record::{decode_anon_token, decode_session_into};
use crate::error::Field;
use crate::output::{AuthChange, Notice};
use crate::secret::bounded;
use crate::session::Session;
use crate::storage::RecordKey;

use super::{Machine, Queued, user_fingerprint};

impl Machine {
    #[inline(never)]
    pub(super) fn on_restored(
        &mut self,
        session: Option<&[u8]>,
        anon: Option<&[u8]>,
        visitor_id: Option<&str>,
    ) {
        if self.restored {
            debug!("restore after start ignored");
            return;
        }
        self.restored = true;
        let format = self.config.store_format;
        if let Some(bytes) = anon {
            match decode_anon_token(bytes, format) {
                Ok(token) => self.anon_token = token,
                Err(error) => self.push(Queued::Notice(Notice::CorruptRecord {
                    key: RecordKey::AnonRefreshToken,
                    error,
                })),
            }
        }
        if let Some(bytes) = session {
            // Straight into the slot: no session-sized value on the stack.
            let slot = self.slot.insert(Session::blank());
            match decode_session_into(bytes, format, slot) {
                Ok(()) => {
                    repair_user(slot);
                    self.session_record_user = user_fingerprint(slot);
                    self.retired = false;
                    self.stale_guest = false;
                    self.tokens_since = self.now;
                }
                Err(error) => {
                    self.slot = None;
                    self.push(Queued::Notice(Notice::CorruptRecord {
                        key: RecordKey::Session,
                        error,
                    }));
                }
            }
        }
        self.visitor_id = visitor_id
            .filter(|v| v.len() >= 16)
            .and_then(|v| bounded(v, Field::UserId).ok());

        // The two records of a guest disagree when a crash or a failed
        // write came between them. Writes land in order and the anonymous
        // record goes first (`WRITE_ORDER`), so it is usually the newer
        // one: the successor of the token a refresh spent just before a
        // crash (the common case), or a guest the user asked for with
        // `force_new` while the session record still holds the one given
        // up. Either way the session is the guest's and stays signed in —
        // a crash must not read as a sign-out (docs/protocol.md §13.7) —
        // but it is *unsettled*: its access token is not trusted as fresh,
        // and its next refresh presents the anonymous record's token first
        // (which also settles who the user is), falling back to the
        // session record's own token only if that one is dead (records
        // written session-first, as the reference client does). Neither
        // record is touched until then, so nothing is lost either way.
        let guest_token = self
            .current()
            .filter(|s| s.is_anonymous())
            .map(|s| s.refresh_token.clone());
        match (guest_token, &self.anon_token) {
            (Some(token), None) => {
                self.anon_token = Some(token);
                self.store_put(RecordKey::AnonRefreshToken);
            }
            (Some(token), Some(stored)) if token != *stored => {
                debug!("guest records disagree; the session is unsettled");
                self.stale_guest = true;
            }
            _ => {}
        }
        self.change(AuthChange::InitialSession);
    }

    #[inline(never)]
    pub(super) fn on_external(&mut self, key: RecordKey, value: Option<&[u8]>) {
        if !self.restored {
            // Restore will read the record as it is then.
            return;
        }
        if self.take_echo(key, value) {
            return;
        }
        let format = self.config.store_format;
        match key {
            RecordKey::AnonRefreshToken => match value.map(|b| decode_anon_token(b, format)) {
                None => {
                    self.anon_token = None;
                    // Nothing left to disagree with: the session's token is
                    // the only one, so a signed-in session is settled.
                    if self.current().is_some() {
                        self.stale_guest = false;
                    }
                }
                // An echo of an older write of ours: a token this machine has
                // already spent can resume nothing (§12.9).
                Some(Ok(Some(token))) if self.is_spent(token.fingerprint()) => {}
                Some(Ok(token)) => self.anon_token = token,
                Some(Err(error)) => self.push(Queued::Notice(Notice::CorruptRecord { key, error })),
            },
            RecordKey::Session => {
                let Some(bytes) = value else {
                    self.session_record_user = 0;
                    if self.current().is_some() {
                        self.detach_anon();
                        self.end_epoch();
                        self.change(AuthChange::SignedOut);
                        self.settle_retired_guest();
                    }
                    return;
                };
                let mut incoming = Session::blank();
                if let Err(error) = decode_session_into(bytes, format, &mut incoming) {
                    // Another writer's garbage never replaces a good session.
                    self.push(Queued::Notice(Notice::CorruptRecord { key, error }));
                    if self.stale_guest && self.current().is_some() {
                        // An unsettled session's record may hold the only
                        // copy of the live token (the guest record's may be
                        // the dead one): put it back.
                        self.store_put(RecordKey::Session);
                    }
                    return;
                }
                repair_user(&mut incoming);
                let fingerprint = incoming.refresh_token.fingerprint();
                if self.is_spent(fingerprint)
                    || self.was_written(fingerprint)
                    || self.current() == Some(&incoming)
                {
                    // An echo of our own write, possibly an older one, or of
                    // a session we have since signed out (§12.9).
                    return;
                }
                self.session_record_user = user_fingerprint(&incoming);
                if incoming.is_anonymous() {
                    if let Some(current) = self.current() {
                        let spent = current.refresh_token.fingerprint();
                        self.remember_spent(spent);
                    }
                    // A peer that wrote a guest session keeps the guest
                    // record in step, unless it died between its two writes
                    // (the reference writes the session first): then the
                    // session record would be the only durable copy of the
                    // live token, and a soft sign-out would delete it. So
                    // the mirror is written too; when the peer's own write
                    // landed, this one rewrites the same token.
                    if self.anon_fingerprint() != fingerprint {
                        self.anon_token = Some(incoming.refresh_token.clone());
                        self.store_put(RecordKey::AnonRefreshToken);
                    }
                }
                match self.current() {
                    Some(current) if current.user.id == incoming.user.id => {
                        let change = if current.user.same_identity(&incoming.user) {
                            AuthChange::TokenRefreshed
                        } else {
                            AuthChange::UserUpdated
                        };
                        self.slot = Some(incoming);
                        // A peer's newer write settles an unsettled session.
                        self.stale_guest = false;
                        self.tokens_since = self.now;
                        self.change(change);
                    }
                    _ => {
                        self.detach_anon();
                        self.begin_epoch(incoming);
                        self.change(AuthChange::SignedIn);
                    }
                }
            }
        }
    }
}

/// Sessions written by the reference client after a resume carry an empty
/// user id (§12.1); the access token knows the real one.
fn repair_user(session: &mut Session) {
    if session.user.id.is_empty()
        && let Ok(claims) = crate::codec::jwt::decode_claims(session.access_token.expose())
    {
        session.user.id = claims.sub;
        if session.user.email.is_none() {
            session.user.email = claims.email;
        }
    }
}
