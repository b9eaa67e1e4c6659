//! The backend's state and the synchronous logic of every route.
//!
//! Everything here runs under one mutex and never awaits, so each request is
//! applied atomically: two concurrent refreshes of the same token are
//! serialised exactly as a database transaction would serialise them, and the
//! outcome a test observes is deterministic for a given arrival order.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::EmulatorConfig;
use crate::model::{Fault, LoggedRequest, Route, SessionRecord, UserRecord};
use crate::tokens::{BadToken, Claims, Signer, random_refresh_token};

/// Credits every new user starts with (see [`UserRecord::balance`]).
pub(crate) const INITIAL_BALANCE: i64 = 10;

/// A complete JSON reply, before faults are applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
    /// Replayed from the idempotency store (no side effect happened).
    pub replayed: bool,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply {
            status: StatusCode::OK,
            body,
            replayed: false,
        }
    }

    pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Reply {
        Reply {
            status,
            body: json!({ "code": code, "message": message.into() }),
            replayed: false,
        }
    }
}

/// Early exits of the route logic are error replies; `?` keeps the happy
/// path of each route readable.
type Outcome<T> = Result<T, Reply>;

fn invalid_token(BadToken(why): BadToken) -> Reply {
    Reply::error(StatusCode::UNAUTHORIZED, "invalid_token", why)
}

fn invalid_refresh_token() -> Reply {
    Reply::error(
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
        "Refresh token is unknown, spent or revoked",
    )
}

#[derive(Debug)]
struct User {
    id: String,
    email: Option<String>,
    pending_email: Option<String>,
    password: Option<String>,
    created_at: u64,
    user_meta: Map<String, Value>,
    visitor_id: Option<String>,
    captcha_token: Option<String>,
}

impl User {
    /// Anonymity is derived, not stored: a user is anonymous exactly while no
    /// confirmed email is attached, so the two can never disagree.
    fn is_anonymous(&self) -> bool {
        self.email.is_none()
    }

    /// The user object of replies (AuthUser, docs/protocol.md §2.2).
    fn wire(&self) -> Value {
        json!({ "id": self.id, "email": self.email, "is_anonymous": self.is_anonymous() })
    }

    fn record(&self) -> UserRecord {
        UserRecord {
            id: self.id.clone(),
            email: self.email.clone(),
            is_anonymous: self.is_anonymous(),
            pending_email: self.pending_email.clone(),
            has_password: self.password.is_some(),
            created_at: self.created_at,
            balance: INITIAL_BALANCE,
            user_meta: self.user_meta.clone(),
            visitor_id: self.visitor_id.clone(),
            captcha_token: self.captcha_token.clone(),
        }
    }

    fn remember_client(
        &mut self,
        visitor_id: Option<String>,
        user_meta: Option<Map<String, Value>>,
    ) {
        if visitor_id.is_some() {
            self.visitor_id = visitor_id;
        }
        self.user_meta.extend(user_meta.unwrap_or_default());
    }
}

#[derive(Debug)]
struct Session {
    id: String,
    user_id: String,
    current: String,
    /// The token rotated out most recently and when (emulator ms): the only
    /// spent token the reuse interval forgives.
    parent: Option<(String, u64)>,
    spent: Vec<String>,
    revoked: bool,
    created_at: u64,
}

impl Session {
    fn record(&self) -> SessionRecord {
        SessionRecord {
            id: self.id.clone(),
            user_id: self.user_id.clone(),
            current_refresh_token: self.current.clone(),
            spent_refresh_tokens: self.spent.clone(),
            revoked: self.revoked,
            created_at: self.created_at,
        }
    }
}

/// Identity of a stored idempotent reply: the same key sent by another user
/// or to another route is a different request.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IdempotencyScope {
    route: Route,
    key: String,
    /// The Bearer's user id, or empty for routes without a Bearer.
    user: String,
}

#[derive(Debug)]
struct StoredReply {
    /// The parsed request body, to detect a key reused for a different
    /// request (answered 422, as Stripe-style idempotency does).
    request: Value,
    reply: Reply,
}

/// A fault queued for a route with its remaining number of uses.
#[derive(Debug)]
struct QueuedFault {
    fault: Fault,
    remaining: usize,
}

#[derive(Debug)]
pub(crate) struct State {
    pub config: EmulatorConfig,
    signer: Signer,
    clock_offset: Duration,
    users: Vec<User>,
    sessions: Vec<Session>,
    /// Every refresh token ever issued (current and spent) → session index.
    refresh_index: HashMap<String, usize>,
    log: Vec<LoggedRequest>,
    next_seq: u64,
    faults: HashMap<Route, VecDeque<QueuedFault>>,
    idempotency: HashMap<IdempotencyScope, StoredReply>,
    anonymous_users_created: u64,
    next_jti: u64,
    /// Access tokens with a serial below this are expired early; set by
    /// [`Emulator::expire_access_tokens`](crate::Emulator::expire_access_tokens)
    /// so tests can force the "stale access token" path without moving the
    /// clock (which would also age refresh-token reuse windows).
    min_jti: u64,
}

// ---- request bodies -------------------------------------------------------
// Unknown keys are ignored (serde's default); absent and `null` optional keys
// both mean "not given".

#[derive(Debug, Default, Deserialize)]
struct AnonymousSignInBody {
    captcha_token: Option<String>,
    visitor_id: Option<String>,
    user_meta: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

#[derive(Debug, Deserialize)]
struct CredentialsBody {
    email: String,
    password: String,
    visitor_id: Option<String>,
    user_meta: Option<Map<String, Value>>,
}

/// Parses a request body that must be a JSON object. Returns the parsed
/// value too, as the fingerprint of idempotent requests.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Outcome<(Value, T)> {
    let malformed = |why: String| {
        Reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("Malformed request body: {why}"),
        )
    };
    let value: Value = serde_json::from_slice(body).map_err(|err| malformed(err.to_string()))?;
    // serde would happily read a struct from a JSON array, by position.
    if !value.is_object() {
        return Err(malformed("expected a JSON object".to_owned()));
    }
    let parsed = T::deserialize(&value).map_err(|err| malformed(err.to_string()))?;
    Ok((value, parsed))
}

/// Lowercased, trimmed email, as GoTrue stores it; `None` if it cannot be
/// an address at all.
fn normalize_email(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then_some(email)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .filter(|key| !key.is_empty())
}

impl State {
    pub fn new(config: EmulatorConfig) -> State {
        State {
            signer: Signer::new(&config.jwt_secret),
            config,
            clock_offset: Duration::ZERO,
            users: Vec::new(),
            sessions: Vec::new(),
            refresh_index: HashMap::new(),
            log: Vec::new(),
            next_seq: 1,
            faults: HashMap::new(),
            idempotency: HashMap::new(),
            anonymous_users_created: 0,
            next_jti: 1,
            min_jti: 0,
        }
    }

    // ---- clock ----------------------------------------------------------

    /// Emulator time in Unix milliseconds: the system clock plus whatever
    /// the test advanced it by.
    pub fn now_ms(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(self.clock_offset);
        u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
    }

    fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    pub fn advance_clock(&mut self, by: Duration) {
        self.clock_offset = self.clock_offset.saturating_add(by);
    }

    pub fn expire_access_tokens(&mut self) {
        self.min_jti = self.next_jti;
    }

    // ---- inspection -----------------------------------------------------

    pub fn users(&self) -> Vec<UserRecord> {
        self.users.iter().map(User::record).collect()
    }

    pub fn sessions(&self) -> Vec<SessionRecord> {
        self.sessions.iter().map(Session::record).collect()
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.clone()
    }

    pub fn clear_log(&mut self) {
        self.log.clear();
    }

    pub fn anonymous_users_created(&self) -> u64 {
        self.anonymous_users_created
    }

    /// "Clicks the confirmation link" sent to `email`.
    pub fn confirm_email(&mut self, email: &str) -> bool {
        let Some(email) = normalize_email(email) else {
            return false;
        };
        let Some(user) = self
            .users
            .iter_mut()
            .find(|user| user.pending_email.as_deref() == Some(email.as_str()))
        else {
            return false;
        };
        user.email = user.pending_email.take();
        true
    }

    // ---- request log and faults ------------------------------------------

    /// Appends a log entry and returns its sequence number.
    pub fn log_request(&mut self, mut entry: LoggedRequest) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        entry.seq = seq;
        self.log.push(entry);
        seq
    }

    /// Fills in the outcome of a logged request. The entry may be gone if the
    /// test cleared the log meanwhile, which is fine.
    pub fn finish_request(&mut self, seq: u64, status: Option<u16>, replayed: bool) {
        if let Some(entry) = self.log.iter_mut().rev().find(|entry| entry.seq == seq) {
            entry.status = status;
            entry.idempotent_replay = replayed;
        }
    }

    pub fn inject(&mut self, route: Route, fault: Fault, times: usize) {
        if times > 0 {
            self.faults
                .entry(route)
                .or_default()
                .push_back(QueuedFault {
                    fault,
                    remaining: times,
                });
        }
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Takes one use of the oldest fault queued for `route`.
    pub fn take_fault(&mut self, route: Route) -> Option<Fault> {
        let queue = self.faults.get_mut(&route)?;
        let front = queue.front_mut()?;
        front.remaining -= 1;
        let fault = front.fault.clone();
        if front.remaining == 0 {
            queue.pop_front();
        }
        Some(fault)
    }

    /// Re-signs an access token with padding (for [`Fault::OversizeToken`]).
    pub fn pad_access_token(&self, token: &str, min_len: usize) -> Option<String> {
        self.signer.pad(token, min_len)
    }

    // ---- shared helpers --------------------------------------------------

    fn check_paywall(&self, pid: &str) -> Outcome<()> {
        if pid == self.config.paywall_id {
            Ok(())
        } else {
            Err(Reply::error(
                StatusCode::NOT_FOUND,
                "paywall_not_found",
                format!("No paywall with id {pid:?}"),
            ))
        }
    }

    fn user_index(&self, id: &str) -> Option<usize> {
        self.users.iter().position(|user| user.id == id)
    }

    /// Whether `email` is taken by a user other than `except`, confirmed or
    /// pending (a pending address is reserved so two confirmations cannot
    /// race for it).
    fn email_taken(&self, email: &str, except: &str) -> bool {
        self.users.iter().any(|user| {
            user.id != except
                && (user.email.as_deref() == Some(email)
                    || user.pending_email.as_deref() == Some(email))
        })
    }

    fn new_session(&mut self, user_id: String) -> usize {
        let token = unique_refresh_token(&self.refresh_index);
        let index = self.sessions.len();
        self.refresh_index.insert(token.clone(), index);
        self.sessions.push(Session {
            id: uuid::Uuid::new_v4().to_string(),
            user_id,
            current: token,
            parent: None,
            spent: Vec::new(),
            revoked: false,
            created_at: self.now_secs(),
        });
        index
    }

    /// RawTokens + `user` for the current refresh token of `session`, with a
    /// newly minted access token.
    fn token_reply(&mut self, session: usize) -> Reply {
        let now = self.now_secs();
        let ttl = self.config.access_ttl_secs;
        let jti = self.next_jti;
        self.next_jti += 1;
        let session = &self.sessions[session];
        let Some(user) = self.users.iter().find(|user| user.id == session.user_id) else {
            // Sessions are only created for existing users and users are
            // never deleted; stay total anyway.
            return Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "orphan session",
            );
        };
        let claims = Claims {
            sub: user.id.clone(),
            email: user.email.clone(),
            is_anonymous: user.is_anonymous(),
            exp: now.saturating_add(ttl),
            iat: now,
            session_id: session.id.clone(),
            role: "authenticated".to_owned(),
            jti: jti.to_string(),
            pad: None,
        };
        Reply::ok(json!({
            "access_token": self.signer.sign(&claims),
            "refresh_token": session.current,
            "expires_in": ttl,
            "expires_at": claims.exp,
            "token_type": "bearer",
            "user": user.wire(),
        }))
    }

    /// Resolves the Bearer to a live session and its user.
    fn authenticate(&self, headers: &HeaderMap) -> Outcome<(usize, usize)> {
        let token = bearer(headers)
            .ok_or(BadToken("missing Bearer token"))
            .map_err(invalid_token)?;
        let claims = self.signer.verify(token).map_err(invalid_token)?;
        if self.now_secs() >= claims.exp {
            return Err(invalid_token(BadToken("access token expired")));
        }
        if claims
            .jti
            .parse::<u64>()
            .map_or(true, |jti| jti < self.min_jti)
        {
            return Err(invalid_token(BadToken("access token expired")));
        }
        let session = self
            .sessions
            .iter()
            .position(|session| session.id == claims.session_id && !session.revoked)
            .ok_or_else(|| invalid_token(BadToken("session revoked")))?;
        let user = self
            .user_index(&claims.sub)
            .ok_or_else(|| invalid_token(BadToken("unknown user")))?;
        Ok((session, user))
    }

    /// Runs `apply` at most once per idempotency scope: a repeated key gets
    /// the stored reply back, flagged as a replay.
    fn idempotent(
        &mut self,
        route: Route,
        key: Option<String>,
        user: &str,
        request: Value,
        apply: impl FnOnce(&mut State) -> Reply,
    ) -> Reply {
        let Some(key) = key else {
            return apply(self);
        };
        let scope = IdempotencyScope {
            route,
            key,
            user: user.to_owned(),
        };
        if let Some(stored) = self.idempotency.get(&scope) {
            if stored.request != request {
                return Reply::error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "Idempotency-Key was already used with a different request body",
                );
            }
            return Reply {
                replayed: true,
                ..stored.reply.clone()
            };
        }
        let reply = apply(self);
        self.idempotency.insert(
            scope,
            StoredReply {
                request,
                reply: reply.clone(),
            },
        );
        reply
    }

    // ---- routes ------------------------------------------------------------

    pub fn anonymous_signin(&mut self, pid: &str, body: &[u8]) -> Reply {
        self.try_anonymous_signin(pid, body)
            .unwrap_or_else(|err| err)
    }

    fn try_anonymous_signin(&mut self, pid: &str, body: &[u8]) -> Outcome<Reply> {
        self.check_paywall(pid)?;
        // The reference client always sends at least `{}`; an empty body is
        // accepted as the same request rather than punished.
        let body: AnonymousSignInBody = if body.iter().all(u8::is_ascii_whitespace) {
            AnonymousSignInBody::default()
        } else {
            parse_body(body)?.1
        };
        if !self.config.allow_anonymous {
            return Err(Reply::error(
                StatusCode::FORBIDDEN,
                "anonymous_disabled",
                "Anonymous sign-in is disabled for this paywall",
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.users.push(User {
            id: id.clone(),
            email: None,
            pending_email: None,
            password: None,
            created_at: self.now_secs(),
            user_meta: body.user_meta.unwrap_or_default(),
            visitor_id: body.visitor_id,
            captcha_token: body.captcha_token,
        });
        self.anonymous_users_created += 1;
        let session = self.new_session(id);
        Ok(self.token_reply(session))
    }

    pub fn refresh(&mut self, pid: &str, body: &[u8]) -> Reply {
        self.try_refresh(pid, body).unwrap_or_else(|err| err)
    }

    fn try_refresh(&mut self, pid: &str, body: &[u8]) -> Outcome<Reply> {
        self.check_paywall(pid)?;
        let (_, RefreshBody { refresh_token }) = parse_body(body)?;
        let index = *self
            .refresh_index
            .get(&refresh_token)
            .ok_or_else(invalid_refresh_token)?;
        let now = self.now_ms();
        let reuse_ms = u64::try_from(self.config.reuse_interval.as_millis()).unwrap_or(u64::MAX);
        let session = &self.sessions[index];
        if session.revoked {
            return Err(invalid_refresh_token());
        }
        if self.config.refresh_checks_anonymous && !self.config.allow_anonymous {
            let anonymous = self
                .user_index(&session.user_id)
                .is_some_and(|user| self.users[user].is_anonymous());
            if anonymous {
                return Err(Reply::error(
                    StatusCode::FORBIDDEN,
                    "anonymous_disabled",
                    "Anonymous sessions are disabled for this paywall",
                ));
            }
        }
        let session = &mut self.sessions[index];
        if session.current == refresh_token {
            let child = unique_refresh_token(&self.refresh_index);
            self.refresh_index.insert(child.clone(), index);
            let spent = std::mem::replace(&mut session.current, child);
            session.spent.push(spent.clone());
            session.parent = Some((spent, now));
            return Ok(self.token_reply(index));
        }
        // A spent token. GoTrue forgives the immediate parent for a short
        // while (a client that lost the reply to its refresh retries), handing
        // back the child it already minted; anything else is treated as token
        // theft and kills the whole family.
        let forgiven = session.parent.as_ref().is_some_and(|(parent, spent_at)| {
            *parent == refresh_token && now.saturating_sub(*spent_at) <= reuse_ms
        });
        if forgiven {
            return Ok(self.token_reply(index));
        }
        session.revoked = true;
        Err(invalid_refresh_token())
    }

    pub fn upgrade(&mut self, pid: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
        self.try_upgrade(pid, headers, body)
            .unwrap_or_else(|err| err)
    }

    fn try_upgrade(&mut self, pid: &str, headers: &HeaderMap, body: &[u8]) -> Outcome<Reply> {
        self.check_paywall(pid)?;
        let (_, user) = self.authenticate(headers)?;
        let (request, credentials): (Value, CredentialsBody) = parse_body(body)?;
        let user_id = self.users[user].id.clone();
        let key = idempotency_key(headers);
        Ok(
            self.idempotent(Route::Upgrade, key, &user_id, request, |state| {
                state
                    .apply_upgrade(user, credentials)
                    .unwrap_or_else(|err| err)
            }),
        )
    }

    fn apply_upgrade(&mut self, user: usize, credentials: CredentialsBody) -> Outcome<Reply> {
        if !self.users[user].is_anonymous() {
            return Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "not_anonymous",
                "Only anonymous users can be upgraded",
            ));
        }
        let email = normalize_email(&credentials.email).ok_or_else(|| {
            Reply::error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Invalid email address",
            )
        })?;
        if credentials.password.is_empty() {
            return Err(Reply::error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "weak_password",
                "Password must not be empty",
            ));
        }
        if self.email_taken(&email, &self.users[user].id) {
            return Err(Reply::error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "email_exists",
                "A user with this email address already exists",
            ));
        }
        let confirm = self.config.confirm_email;
        let user = &mut self.users[user];
        // The password applies at once in both modes; only the email waits
        // for the link (docs/protocol.md §3.3).
        user.password = Some(credentials.password);
        user.remember_client(credentials.visitor_id, credentials.user_meta);
        if confirm {
            user.pending_email = Some(email.clone());
            Ok(Reply::ok(
                json!({ "status": "confirmation_required", "email": email }),
            ))
        } else {
            user.pending_email = None;
            user.email = Some(email);
            Ok(Reply::ok(
                json!({ "status": "updated", "user": user.wire() }),
            ))
        }
    }

    pub fn signout(&mut self, pid: &str, headers: &HeaderMap) -> Reply {
        self.try_signout(pid, headers).unwrap_or_else(|err| err)
    }

    fn try_signout(&mut self, pid: &str, headers: &HeaderMap) -> Outcome<Reply> {
        self.check_paywall(pid)?;
        let (session, _) = self.authenticate(headers)?;
        self.sessions[session].revoked = true;
        Ok(Reply::ok(json!({ "ok": true })))
    }

    pub fn revoke_all(&mut self, pid: &str, headers: &HeaderMap) -> Reply {
        self.try_revoke_all(pid, headers).unwrap_or_else(|err| err)
    }

    fn try_revoke_all(&mut self, pid: &str, headers: &HeaderMap) -> Outcome<Reply> {
        self.check_paywall(pid)?;
        let (_, user) = self.authenticate(headers)?;
        let user_id = &self.users[user].id;
        for session in self.sessions.iter_mut().filter(|s| s.user_id == *user_id) {
            session.revoked = true;
        }
        Ok(Reply::ok(json!({ "ok": true })))
    }

    pub fn email_signin(&mut self, pid: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
        self.try_email_signin(pid, headers, body)
            .unwrap_or_else(|err| err)
    }

    fn try_email_signin(&mut self, pid: &str, headers: &HeaderMap, body: &[u8]) -> Outcome<Reply> {
        self.check_paywall(pid)?;
        let (request, credentials): (Value, CredentialsBody) = parse_body(body)?;
        let key = idempotency_key(headers);
        Ok(
            self.idempotent(Route::EmailSignIn, key, "", request, |state| {
                state
                    .apply_email_signin(credentials)
                    .unwrap_or_else(|err| err)
            }),
        )
    }

    fn apply_email_signin(&mut self, credentials: CredentialsBody) -> Outcome<Reply> {
        let invalid = || {
            Reply::error(
                StatusCode::BAD_REQUEST,
                "invalid_credentials",
                "Invalid login credentials",
            )
        };
        let email = normalize_email(&credentials.email).ok_or_else(invalid)?;
        let password_matches =
            |user: &User| user.password.as_deref() == Some(credentials.password.as_str());
        let Some(user) = self
            .users
            .iter()
            .position(|user| user.email.as_deref() == Some(email.as_str()))
        else {
            let unconfirmed = self.users.iter().any(|user| {
                user.pending_email.as_deref() == Some(email.as_str()) && password_matches(user)
            });
            return Err(if unconfirmed {
                Reply::error(
                    StatusCode::BAD_REQUEST,
                    "email_not_confirmed",
                    "Email not confirmed",
                )
            } else {
                invalid()
            });
        };
        if !password_matches(&self.users[user]) {
            return Err(invalid());
        }
        self.users[user].remember_client(credentials.visitor_id, credentials.user_meta);
        let session = self.new_session(self.users[user].id.clone());
        Ok(self.token_reply(session))
    }
}

/// A refresh token that was never issued before, so a token can never belong
/// to two families.
fn unique_refresh_token(issued: &HashMap<String, usize>) -> String {
    loop {
        let token = random_refresh_token();
        if !issued.contains_key(&token) {
            return token;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn emails_are_normalised_and_checked_for_shape() {
        assert_eq!(
            normalize_email(" Ann@Example.COM ").as_deref(),
            Some("ann@example.com")
        );
        assert_eq!(normalize_email("no-at-sign"), None);
        assert_eq!(normalize_email("@example.com"), None);
        assert_eq!(normalize_email("ann@"), None);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_token_required() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn faults_are_consumed_in_queue_order() {
        let mut state = State::new(EmulatorConfig::default());
        state.inject(Route::Refresh, Fault::DropBeforeApply, 2);
        state.inject(Route::Refresh, Fault::MalformedJson, 0);
        state.inject(Route::Refresh, Fault::TruncatedBody, 1);
        assert_eq!(state.take_fault(Route::SignOut), None);
        assert_eq!(
            state.take_fault(Route::Refresh),
            Some(Fault::DropBeforeApply)
        );
        assert_eq!(
            state.take_fault(Route::Refresh),
            Some(Fault::DropBeforeApply)
        );
        assert_eq!(state.take_fault(Route::Refresh), Some(Fault::TruncatedBody));
        assert_eq!(state.take_fault(Route::Refresh), None);
    }

    #[test]
    fn padded_tokens_stay_verifiable() {
        let mut state = State::new(EmulatorConfig::default());
        let reply = state.anonymous_signin("pw_demo", b"{}");
        let token = reply.body["access_token"].as_str().unwrap();
        let padded = state.pad_access_token(token, 10_000).unwrap();
        assert!(
            padded.len() >= 10_000 && padded.len() < 10_100,
            "{}",
            padded.len()
        );
        assert_eq!(
            state.signer.verify(&padded).unwrap().sub,
            state.signer.verify(token).unwrap().sub
        );
        assert_eq!(state.pad_access_token("not-a-jwt", 10_000), None);
    }
}
