//! Refresh, access tokens and the upgrade to email: everything that uses or
//! rotates the tokens of the current session.

use crate::codec::json::{UpgradeResponse, decode_tokens_into, decode_upgrade};
use crate::codec::jwt::decode_claims;
use crate::command::{CommandId, UpgradeRequest};
use crate::error::{DecodeError, Error, TransportError};
use crate::output::AuthChange;
use crate::request::RequestId;
use crate::session::{AccessToken, Session, User};
use crate::storage::RecordKey;
use crate::time::Instant;

use super::{
    Done, Machine, Purpose, RefreshOp, Response, UpgradeOp, UpgradeStage, answer_error, api_error,
    next_backoff,
};

impl Machine {
    /// Decodes a token response into a session. The user comes from the
    /// response's `user`, else from the access token's claims (so a resumed
    /// or refreshed session knows its real id and email, §12.1/§12.2), else
    /// `fallback`.
    ///
    /// Decodes into `out` (scratch, e.g. a [`Session::blank`]): one session
    /// of stack per answer rather than one per frame it passes through.
    #[inline(never)]
    pub(super) fn session_into(
        &self,
        resp: &Response<'_>,
        fallback: Option<&User>,
        out: &mut Session,
    ) -> Result<(), Error> {
        if !resp.content_type_json {
            return Err(DecodeError::NotJson.into());
        }
        let meta = decode_tokens_into(resp.body, out)?;
        out.expires_at = meta.expiry(self.now)?;
        if meta.user {
            let user = &mut out.user;
            if let Some(old) = fallback.filter(|old| old.id == user.id) {
                // Keep profile fields the response left out.
                if user.name.is_none() {
                    user.name.clone_from(&old.name);
                }
                if user.avatar.is_none() {
                    user.avatar.clone_from(&old.avatar);
                }
                if user.country.is_none() {
                    user.country.clone_from(&old.country);
                }
            }
        } else {
            out.user = user_from_claims(&out.access_token, fallback)?;
        }
        Ok(())
    }

    pub(super) fn cmd_refresh(&mut self, for_token: bool) -> CommandId {
        let leeway = self.config.leeway.as_millis();
        let Some(session) = self.current() else {
            let id = self.command_id();
            let result = if for_token {
                Ok(Done::NoAccessToken)
            } else {
                Err(Error::NotAuthenticated)
            };
            self.complete(id, result);
            return id;
        };
        if for_token && session.is_fresh(self.now, leeway) && !self.stale_guest {
            let id = self.command_id();
            self.complete(id, Ok(Done::AccessToken));
            return id;
        }
        if let Some(op) = &self.refresh {
            let existing = if for_token {
                op.token_id
            } else {
                op.refresh_id
            };
            if let Some(id) = existing {
                return id;
            }
            let id = self.command_id();
            if let Some(op) = self.refresh.as_mut() {
                if for_token {
                    op.token_id = Some(id);
                } else {
                    op.refresh_id = Some(id);
                }
            }
            return id;
        }
        let id = self.command_id();
        if for_token {
            self.start_refresh(None, Some(id));
        } else {
            self.start_refresh(Some(id), None);
        }
        id
    }

    /// Starts the one refresh of the current session.
    pub(super) fn start_refresh(
        &mut self,
        refresh_id: Option<CommandId>,
        token_id: Option<CommandId>,
    ) {
        self.start_refresh_with(refresh_id, token_id, false);
    }

    /// [`Machine::start_refresh`]; `mirrored`: the guest record was just
    /// given the session's token in memory and must be written (not only
    /// verified) before the request goes out.
    fn start_refresh_with(
        &mut self,
        refresh_id: Option<CommandId>,
        token_id: Option<CommandId>,
        mirrored: bool,
    ) {
        let Some(session) = self.current() else {
            return;
        };
        if self.refresh.is_some() {
            return;
        }
        // An unsettled session (see `stale_guest`) presents the anonymous
        // record's newer token first.
        let presented = match &self.anon_token {
            Some(anon) if self.stale_guest => anon.fingerprint(),
            _ => session.refresh_token.fingerprint(),
        };
        let purpose = Purpose::Refresh {
            epoch: self.epoch,
            presented,
            guest_gen: session.is_anonymous().then_some(self.guest_gen),
        };
        // The answer rewrites the guest record first when it mirrors this
        // session, else the session record: prove that one can be written
        // before the token is spent (docs/protocol.md §13.2).
        let guarded = if self.anon_fingerprint() == presented {
            RecordKey::AnonRefreshToken
        } else {
            RecordKey::Session
        };
        let sent = if mirrored {
            self.send_after_write(purpose, RecordKey::AnonRefreshToken)
        } else {
            self.send_guarded(purpose, guarded)
        };
        match sent {
            Ok(request) => {
                self.refresh = Some(RefreshOp {
                    request,
                    refresh_id,
                    token_id,
                })
            }
            Err(e) => {
                let op = RefreshOp {
                    request: RequestId(0),
                    refresh_id,
                    token_id,
                };
                self.finish_refresh_waiters(&op, Err(e), false);
                self.fail_upgrade_waiting_for_token(Error::Busy);
                // Back off like any failed refresh, or a proactive deadline
                // already in the past would have the driver spin.
                self.refresh_backoff = next_backoff(self.refresh_backoff, &self.config);
                self.refresh_retry_at = Some(self.now.saturating_add_ms(self.refresh_backoff));
            }
        }
    }

    /// When the next proactive refresh (or its retry) is due.
    pub(super) fn refresh_deadline(&self) -> Option<Instant> {
        let session = self.current()?;
        if self.refresh.is_some() {
            return None;
        }
        if let Some(retry) = self.refresh_retry_at {
            return Some(retry);
        }
        if self.stale_guest {
            // Settle it soon: until then its identity is a guess.
            return Some(self.tokens_since);
        }
        let lead = self.config.proactive_refresh?.as_millis();
        // Tokens that live shorter than the lead are refreshed half-way, not
        // immediately and forever.
        let lifetime = session.expires_at.millis_since(self.tokens_since);
        let lead = lead.min(lifetime / 2);
        Some(Instant(session.expires_at.as_millis().saturating_sub(lead)))
    }

    /// Completes the callers of a refresh. `Ok` means the session is fresh;
    /// on error, token callers still get a token that has not expired yet
    /// (`token_still_valid`), which is more useful offline than an error.
    pub(super) fn finish_refresh_waiters(
        &mut self,
        op: &RefreshOp,
        result: Result<Done, Error>,
        token_still_valid: bool,
    ) {
        if let Some(id) = op.refresh_id {
            self.complete(id, result.clone());
        }
        if let Some(id) = op.token_id {
            let token_result = match result {
                Ok(Done::Session) => Ok(Done::AccessToken),
                Ok(other) => Ok(other),
                Err(_) if token_still_valid => Ok(Done::AccessToken),
                Err(e) => Err(e),
            };
            self.complete(id, token_result);
        }
    }

    #[inline(never)]
    pub(super) fn on_refresh(
        &mut self,
        request: RequestId,
        epoch: u32,
        presented: u64,
        guest_gen: Option<u32>,
        answer: Result<Response<'_>, TransportError>,
    ) {
        // Same session, and either still the refresh in flight or one whose
        // callers were already told it timed out: its tokens are applied.
        let live =
            epoch == self.epoch && self.refresh.as_ref().is_none_or(|op| op.request == request);
        match answer {
            Ok(resp) if resp.is_success() => {
                let fallback = if live {
                    self.current().map(|s| &s.user)
                } else {
                    None
                };
                let mut session = Session::blank();
                if let Err(e) = self.session_into(&resp, fallback, &mut session) {
                    if live {
                        self.fail_refresh(e);
                    }
                    return;
                }
                self.remember_spent(presented);
                if !live {
                    self.adopt_orphan_tokens(guest_gen, &session);
                    return;
                }
                let op = self.refresh.take();
                // Compared before the replace, so the old session is never
                // moved out (it is ~3 KiB of stack on a microcontroller).
                let Some(cur) = self.current_mut() else {
                    return;
                };
                let change = if cur.user.id != session.user.id {
                    // Only an unsettled session can turn out to be another
                    // account (the anonymous record held a newer guest).
                    AuthChange::SignedIn
                } else if cur.user.same_identity(&session.user) {
                    AuthChange::TokenRefreshed
                } else {
                    AuthChange::UserUpdated
                };
                *cur = session;
                self.stale_guest = false;
                self.refresh_backoff = 0;
                self.refresh_retry_at = None;
                self.tokens_since = self.now;
                let now_anonymous = self.current().is_some_and(Session::is_anonymous);
                // The anonymous record first (see `WRITE_ORDER`).
                if now_anonymous {
                    // Keep the resumable copy in step with every rotation: a
                    // copy one rotation behind is a lost account (§5).
                    self.anon_token = self.current().map(|s| s.refresh_token.clone());
                    self.store_put(RecordKey::AnonRefreshToken);
                } else if !now_anonymous
                    && self.anon_token.is_some()
                    && self.anon_fingerprint() == presented
                {
                    // The guest confirmed its email: it is a named account
                    // now and must never be resumed as a guest (§12.2).
                    self.anon_token = None;
                    self.pending_confirmation = None;
                    self.store_remove(RecordKey::AnonRefreshToken);
                }
                self.store_put(RecordKey::Session);
                self.change(change);
                if let Some(op) = &op {
                    self.finish_refresh_waiters(op, Ok(Done::Session), true);
                }
                self.send_upgrade_if_waiting();
            }
            Ok(resp) if api_error(&resp).is_dead_token() => {
                if self.anon_fingerprint() == presented {
                    // Dead server-side: a copy of it can never resume
                    // anything. An unsettled session's own token (the
                    // anonymous record's was the older one, written
                    // session-first) is the way back: the guest record takes
                    // it over before it is presented (`mirror_session_token`).
                    if self.mirror_session_token(presented).is_some() {
                        if live && let Some(op) = self.refresh.take() {
                            debug!("unsettled session: falling back to its own token");
                            self.start_refresh_with(op.refresh_id, op.token_id, true);
                            return;
                        }
                        self.store_put(RecordKey::AnonRefreshToken);
                    } else {
                        self.anon_token = None;
                        self.store_remove(RecordKey::AnonRefreshToken);
                    }
                }
                if !live {
                    return;
                }
                let Some(op) = self.refresh.take() else {
                    return;
                };
                if self
                    .current()
                    .is_some_and(|s| s.refresh_token.fingerprint() != presented)
                {
                    // Another process rotated the session meanwhile and we
                    // adopted its tokens: our copy was spent, not the session.
                    self.finish_refresh_waiters(&op, Ok(Done::Session), true);
                    self.send_upgrade_if_waiting();
                    return;
                }
                self.end_epoch();
                self.store_remove(RecordKey::Session);
                self.change(AuthChange::SignedOut);
                let error = answer_error(&Ok(resp));
                if let Some(id) = op.refresh_id {
                    self.complete(id, Err(error));
                }
                if let Some(id) = op.token_id {
                    self.complete(id, Ok(Done::NoAccessToken));
                }
            }
            failed => {
                if live {
                    self.fail_refresh(answer_error(&failed));
                }
            }
        }
    }

    /// A refresh failed transiently: the session is kept, callers learn why,
    /// and proactive refresh backs off.
    pub(super) fn fail_refresh(&mut self, error: Error) {
        let Some(op) = self.refresh.take() else {
            return;
        };
        self.refresh_backoff = next_backoff(self.refresh_backoff, &self.config);
        self.refresh_retry_at = Some(self.now.saturating_add_ms(self.refresh_backoff));
        let still_valid = self.current().is_some_and(|s| s.expires_at > self.now);
        self.finish_refresh_waiters(&op, Err(error.clone()), still_valid);
        self.fail_upgrade_waiting_for_token(error);
    }

    // ----- upgrade -------------------------------------------------------

    pub(super) fn cmd_upgrade(&mut self, request: UpgradeRequest) -> CommandId {
        let leeway = self.config.leeway.as_millis();
        let rejection = match self.current() {
            None => Some(Error::NotAuthenticated),
            Some(s) if !s.is_anonymous() => Some(Error::NotAnonymous),
            Some(_) => None,
        };
        if let Some(error) = rejection {
            let id = self.command_id();
            self.complete(id, Err(error));
            return id;
        }
        if let Some(op) = &self.upgrade {
            let same = op.request.idempotency_key.is_some()
                && op.request.idempotency_key == request.idempotency_key
                && op.request.email == request.email;
            if same {
                return op.id;
            }
            let id = self.command_id();
            self.complete(id, Err(Error::UpgradeInProgress));
            return id;
        }
        let id = self.command_id();
        let fresh =
            self.current().is_some_and(|s| s.is_fresh(self.now, leeway)) && !self.stale_guest;
        self.upgrade = Some(UpgradeOp {
            id,
            request,
            stage: UpgradeStage::AwaitingToken,
        });
        if fresh {
            self.send_upgrade_if_waiting();
        } else {
            // A fresh bearer first; the upgrade goes out when it lands.
            self.start_refresh(None, None);
        }
        id
    }

    fn send_upgrade_if_waiting(&mut self) {
        if !self
            .upgrade
            .as_ref()
            .is_some_and(|op| op.stage == UpgradeStage::AwaitingToken)
        {
            return;
        }
        let refresh_fp = self.current().map_or(0, |s| s.refresh_token.fingerprint());
        match self.send(Purpose::Upgrade {
            epoch: self.epoch,
            refresh_fp,
        }) {
            Ok(request) => {
                if let Some(op) = self.upgrade.as_mut() {
                    op.stage = UpgradeStage::Sent(request);
                }
            }
            Err(e) => self.fail_upgrade_waiting_for_token(e),
        }
    }

    fn fail_upgrade_waiting_for_token(&mut self, error: Error) {
        if self
            .upgrade
            .as_ref()
            .is_some_and(|op| op.stage == UpgradeStage::AwaitingToken)
            && let Some(op) = self.upgrade.take()
        {
            self.complete(op.id, Err(error));
        }
    }

    #[inline(never)]
    pub(super) fn on_upgrade(
        &mut self,
        request: RequestId,
        epoch: u32,
        refresh_fp: u64,
        answer: Result<Response<'_>, TransportError>,
    ) {
        // Same session, and either the upgrade in flight or one whose caller
        // was already told it timed out: its result is still applied.
        let live = epoch == self.epoch
            && self
                .upgrade
                .as_ref()
                .is_none_or(|op| op.stage == UpgradeStage::Sent(request));
        let decoded = match &answer {
            Ok(resp) if resp.is_success() => Some(if resp.content_type_json {
                decode_upgrade(resp.body).map_err(Error::from)
            } else {
                Err(DecodeError::NotJson.into())
            }),
            _ => None,
        };
        if !live {
            if let Some(Ok(UpgradeResponse::Updated(_))) = decoded {
                // The account we upgraded is named now, though we no longer
                // hold its session: never resume it as a guest (§12.6).
                if refresh_fp != 0 && self.anon_fingerprint() == refresh_fp {
                    self.anon_token = None;
                    self.store_remove(RecordKey::AnonRefreshToken);
                }
            }
            return;
        }
        let op = self.upgrade.take();
        let caller = op.as_ref().map(|op| op.id);
        let finish = |m: &mut Self, result| {
            if let Some(id) = caller {
                m.complete(id, result);
            }
        };
        match decoded {
            None => finish(self, Err(answer_error(&answer))),
            Some(Err(e)) => finish(self, Err(e)),
            Some(Ok(UpgradeResponse::ConfirmationRequired { email })) => {
                // Nothing changes until the email is confirmed; the refresh
                // that shows it flips the session (see `on_refresh`).
                self.pending_confirmation = Some(email);
                finish(self, Ok(Done::ConfirmationRequired));
            }
            Some(Ok(UpgradeResponse::Updated(user))) => {
                if !self.current().is_some_and(|s| s.is_anonymous()) {
                    // Already named (a late duplicate): nothing to patch.
                    finish(self, Ok(Done::Upgraded));
                    return;
                }
                if !user.id.is_empty() && self.current().is_some_and(|s| s.user.id != user.id) {
                    // An upgrade keeps the user id; a reply naming another
                    // user is not applied to this session's identity.
                    finish(
                        self,
                        Err(DecodeError::InvalidValue { field: "user.id" }.into()),
                    );
                    return;
                }
                let requested = op.as_ref().map(|op| op.request.email.clone());
                if let Some(session) = self.current_mut() {
                    // The server's newer spelling (its other keys) goes
                    // with the named user.
                    session.user.adopt_server_json(&user);
                    if !user.id.is_empty() {
                        session.user.id = user.id;
                    }
                    session.user.email = user.email.or(requested);
                    session.user.is_anonymous = user.is_anonymous;
                }
                self.pending_confirmation = None;
                if self.anon_fingerprint() == refresh_fp || self.anon_token.is_none() {
                    // The guest record pointed at this account, named now.
                    // (One holding another guest — records still being
                    // settled after a restart — is left alone.)
                    self.anon_token = None;
                    self.store_remove(RecordKey::AnonRefreshToken);
                }
                self.store_put(RecordKey::Session);
                self.change(AuthChange::UserUpdated);
                finish(self, Ok(Done::Upgraded));
            }
        }
    }
}

/// The user named by an access token's claims, on top of `fallback`.
fn user_from_claims(token: &AccessToken, fallback: Option<&User>) -> Result<User, Error> {
    match decode_claims(token.expose()) {
        Ok(claims) => {
            let mut user = fallback.cloned().unwrap_or_default();
            if user.id != claims.sub {
                // Another account than the fallback: keep only what the
                // caller knew about the route (a resume is a guest's).
                user = User {
                    is_anonymous: user.is_anonymous,
                    ..User::default()
                };
            }
            user.id = claims.sub;
            if let Some(anonymous) = claims.is_anonymous {
                user.is_anonymous = anonymous;
            }
            match claims.email {
                Some(email) => user.email = Some(email),
                None if user.is_anonymous => user.email = None,
                None => {}
            }
            Ok(user)
        }
        Err(e) => fallback.cloned().ok_or(Error::InvalidResponse(e)),
    }
}
