//! Scenario tests: every flow of docs/protocol.md asserted at the wire (path,
//! headers, body), at storage (keys, values) and in event order.

extern crate std;

use std::collections::BTreeMap;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{
    AuthChange, Command, CommandId, Config, Error, Input, Instant, Machine, NotDrained, Notice,
    Outcome, Output, RecordKey, RequestId, Response, Revocation, SignInOptions, SignOutOptions,
    StorageError, StoreFormat, TransportError, UpgradeRequest,
};

const PID: &str = "pw_1";
const T0: u64 = 1_767_225_600_000;

/// An unsigned JWT whose claims name the user, as the backend would send.
pub(crate) fn jwt(sub: &str, email: Option<&str>, anonymous: bool) -> String {
    let claims = match email {
        Some(e) => format!(r#"{{"sub":"{sub}","email":"{e}","is_anonymous":{anonymous},"exp":1}}"#),
        None => format!(r#"{{"sub":"{sub}","is_anonymous":{anonymous},"exp":1}}"#),
    };
    let mut buf = [0u8; 1024];
    let n = URL_SAFE_NO_PAD
        .encode_slice(claims.as_bytes(), &mut buf)
        .unwrap();
    format!(
        "eyJhbGciOiJIUzI1NiJ9.{}.c2ln",
        std::str::from_utf8(&buf[..n]).unwrap()
    )
}

fn tokens(sub: &str, rt: &str, user: Option<(&str, Option<&str>, bool)>) -> String {
    let at = jwt(sub, user.and_then(|u| u.1), user.is_none_or(|u| u.2));
    let user = match user {
        Some((id, email, anon)) => format!(
            r#","user":{{"id":"{id}","email":{},"is_anonymous":{anon}}}"#,
            email.map_or("null".to_string(), |e| format!("\"{e}\""))
        ),
        None => String::new(),
    };
    format!(
        r#"{{"access_token":"{at}","refresh_token":"{rt}","expires_in":3600,"expires_at":null,"token_type":"bearer"{user}}}"#
    )
}

/// A recorded output, owned, in the order it was emitted.
#[derive(Debug, Clone, PartialEq)]
enum Rec {
    Send {
        id: RequestId,
        path: String,
        headers: Vec<(String, String)>,
        body: String,
    },
    Put(String, String),
    Remove(String),
    Event(AuthChange, Option<String>),
    Done(CommandId, Result<String, String>),
    Notice(Notice),
}

/// Drives a machine like an adapter would, with an in-memory store.
struct Harness {
    m: Machine,
    now: u64,
    store: BTreeMap<String, Vec<u8>>,
    log: Vec<Rec>,
    /// Storage writes to fail, by key.
    fail_writes: Vec<RecordKey>,
    /// Keys of verify-only writes (the check before a token is spent).
    verified: Vec<String>,
}

impl Harness {
    fn new() -> Self {
        Harness::with_format(StoreFormat::ReferenceJson)
    }

    fn with_format(format: StoreFormat) -> Self {
        Harness {
            m: Machine::new(Config::new(PID).unwrap().with_store_format(format)),
            now: T0,
            store: BTreeMap::new(),
            log: Vec::new(),
            fail_writes: Vec::new(),
            verified: Vec::new(),
        }
    }

    fn key(k: RecordKey) -> String {
        k.storage_key(PID).unwrap().to_string()
    }

    /// A started machine over the current store.
    fn started() -> Self {
        let mut h = Harness::new();
        h.restore();
        h.take();
        h
    }

    fn restore(&mut self) {
        let s = self.store.get(&Self::key(RecordKey::Session)).cloned();
        let a = self
            .store
            .get(&Self::key(RecordKey::AnonRefreshToken))
            .cloned();
        self.m
            .handle_restored(Instant(self.now), s.as_deref(), a.as_deref(), None)
            .unwrap();
        self.drain();
    }

    /// A new machine over the same storage: a process restart.
    fn restart(&mut self) {
        self.m = Machine::new(self.m.config().clone());
        self.log.clear();
        self.restore();
    }

    fn input(&mut self, input: Input<'_>) -> Option<CommandId> {
        let id = self.m.handle_input(Instant(self.now), input).unwrap();
        self.drain();
        id
    }

    fn cmd(&mut self, c: Command) -> CommandId {
        self.input(Input::Command(c)).unwrap()
    }

    fn sign_in(&mut self) -> CommandId {
        self.cmd(Command::SignInAnonymously(SignInOptions::default()))
    }

    fn respond(&mut self, id: RequestId, status: u16, body: &str) {
        self.input(Input::Response(id, Response::json(status, body.as_bytes())));
    }

    /// A response that is not JSON (a proxy's page, a redirect).
    fn respond_plain(&mut self, id: RequestId, status: u16, body: &[u8], reason: &str) {
        self.input(Input::Response(
            id,
            Response {
                status,
                content_type_json: false,
                body,
                reason,
            },
        ));
    }

    /// Guest `u1` with session token `r1`, restarted after `anon` landed in
    /// the guest record but not the session record (a crash between the
    /// two writes): an unsettled session (docs/protocol.md §13.7).
    fn unsettled(anon: &str) -> Self {
        let mut h = Harness::guest("u1", "r1");
        h.store.insert(
            Harness::key(RecordKey::AnonRefreshToken),
            anon.as_bytes().to_vec(),
        );
        h.restart();
        h
    }

    fn fail(&mut self, id: RequestId, e: TransportError) {
        self.input(Input::TransportFailed(id, e));
    }

    fn drain(&mut self) {
        loop {
            let format = self.m.config().store_format;
            let mut ack = None;
            match self.m.poll_output() {
                None => break,
                Some(Output::Send(req)) => {
                    let mut buf = [0u8; 4096];
                    let n = req.write_body(&mut buf).unwrap();
                    self.log.push(Rec::Send {
                        id: req.id,
                        path: req.path().unwrap().to_string(),
                        headers: req
                            .headers()
                            .map(|h| (h.name.to_string(), format!("{}{}", h.prefix, h.value)))
                            .collect(),
                        body: String::from_utf8(buf[..n].to_vec()).unwrap(),
                    });
                }
                Some(Output::Store(op)) => {
                    let key = Self::key(op.key);
                    let failed = self.fail_writes.contains(&op.key);
                    if op.verify_only {
                        // Not logged: the scenarios assert the writes that
                        // change records; `verified` counts these.
                        self.verified.push(key.clone());
                        if let (false, Some(v)) = (failed, op.value) {
                            let mut buf = [0u8; 4096];
                            let bytes = v.encode(format, &mut buf).unwrap().to_vec();
                            assert_eq!(
                                self.store.get(&key),
                                Some(&bytes),
                                "a verify-only write must rewrite the value the record holds"
                            );
                        }
                        ack = Some((
                            op.id,
                            if failed {
                                Err(StorageError { key: op.key })
                            } else {
                                Ok(())
                            },
                        ));
                    } else {
                        match op.value {
                            Some(v) => {
                                let mut buf = [0u8; 4096];
                                let bytes = v.encode(format, &mut buf).unwrap().to_vec();
                                self.log.push(Rec::Put(
                                    key.clone(),
                                    String::from_utf8_lossy(&bytes).into_owned(),
                                ));
                                if !failed {
                                    self.store.insert(key, bytes);
                                }
                            }
                            None => {
                                self.log.push(Rec::Remove(key.clone()));
                                if !failed {
                                    self.store.remove(&key);
                                }
                            }
                        }
                        ack = Some((
                            op.id,
                            if failed {
                                Err(StorageError { key: op.key })
                            } else {
                                Ok(())
                            },
                        ));
                    }
                }
                Some(Output::AuthChange { change, session }) => {
                    self.log
                        .push(Rec::Event(change, session.map(|s| s.user.id.to_string())));
                }
                Some(Output::Complete { id, result }) => {
                    let r = result
                        .map(|o| match o {
                            Outcome::Session(s) => format!("session {}", s.user.id),
                            Outcome::Upgraded(s) => {
                                format!("upgraded {} {:?}", s.user.id, s.user.email)
                            }
                            Outcome::ConfirmationRequired { email } => format!("confirm {email}"),
                            Outcome::SignedOut(r) => match r {
                                Revocation::NotNeeded => "signed out".to_string(),
                                Revocation::Revoked => "signed out revoked".to_string(),
                                Revocation::Failed { code, .. } => {
                                    format!("signed out unrevoked {code}")
                                }
                            },
                            Outcome::AccessToken(t) => {
                                format!("token {}", t.map_or("none", |t| t.expose()))
                            }
                        })
                        .map_err(|e| e.code().to_string());
                    self.log.push(Rec::Done(id, r));
                }
                Some(Output::Notice(n)) => self.log.push(Rec::Notice(n)),
            }
            if let Some((id, result)) = ack {
                self.m.handle_stored(Instant(self.now), id, result).unwrap();
            }
        }
    }

    fn take(&mut self) -> Vec<Rec> {
        core::mem::take(&mut self.log)
    }

    /// The requests in `log`.
    fn sends(log: &[Rec]) -> Vec<(RequestId, String, String)> {
        log.iter()
            .filter_map(|r| match r {
                Rec::Send { id, path, body, .. } => Some((*id, path.clone(), body.clone())),
                _ => None,
            })
            .collect()
    }

    fn one_send(log: &[Rec]) -> (RequestId, String, String) {
        let s = Self::sends(log);
        assert_eq!(s.len(), 1, "expected one request in {log:#?}");
        s.into_iter().next().unwrap()
    }

    fn stored(&self, k: RecordKey) -> Option<String> {
        self.store
            .get(&Self::key(k))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Upgrades the guest to `a@b.c` and answers the upgrade request with a
    /// 200 `reply`; returns the command id (its completion is in the log).
    fn upgrade_answered(&mut self, reply: &str) -> CommandId {
        let id = self.cmd(Command::UpgradeToEmail(
            UpgradeRequest::new("a@b.c", "pw", None).unwrap(),
        ));
        let (req, _, _) = Self::one_send(&self.take());
        self.respond(req, 200, reply);
        id
    }

    /// Signs in a fresh guest `sub` with refresh token `rt`.
    fn guest(sub: &str, rt: &str) -> Self {
        let mut h = Harness::started();
        h.sign_in();
        let (req, _, _) = Self::one_send(&h.take());
        h.respond(req, 200, &tokens(sub, rt, Some((sub, None, true))));
        h.take();
        h
    }
}

fn path(route: &str) -> String {
    format!("/api/v1/paywall/{PID}/auth/{route}")
}

fn done_ok(id: CommandId, s: &str) -> Rec {
    Rec::Done(id, Ok(s.to_string()))
}

fn done_err(id: CommandId, code: &str) -> Rec {
    Rec::Done(id, Err(code.to_string()))
}

// ----- start-up and events ----------------------------------------------

#[test]
fn initial_session_is_the_first_event_even_for_commands_sent_before_restore() {
    let mut h = Harness::new();
    let id = h.sign_in();
    assert!(
        h.take().is_empty(),
        "nothing may happen before storage is restored"
    );
    h.restore();
    let log = h.take();
    assert_eq!(log[0], Rec::Event(AuthChange::InitialSession, None));
    let (_, p, _) = Harness::one_send(&log);
    assert_eq!(p, path("anonymous/signin"));
    assert!(!log.iter().any(|r| matches!(r, Rec::Done(i, _) if *i == id)));
}

#[test]
fn parallel_commands_before_restore_collapse() {
    let mut h = Harness::new();
    let a = h.sign_in();
    let b = h.sign_in();
    assert_eq!(a, b);
    h.restore();
    let log = h.take();
    assert_eq!(Harness::sends(&log).len(), 1);
}

#[test]
fn inputs_are_refused_until_outputs_are_drained() {
    let mut m = Machine::new(Config::new(PID).unwrap());
    m.handle_restored(Instant(T0), None, None, None).unwrap();
    // INITIAL_SESSION is still queued.
    assert_eq!(
        m.handle_command(Instant(T0), Command::Refresh),
        Err(NotDrained)
    );
    while m.poll_output().is_some() {}
    assert!(m.handle_command(Instant(T0), Command::Refresh).is_ok());
}

#[test]
fn a_store_stalls_the_queue_until_acknowledged() {
    let mut m = Machine::new(Config::new(PID).unwrap());
    m.handle_restored(Instant(T0), None, None, None).unwrap();
    while m.poll_output().is_some() {}
    m.handle_command(
        Instant(T0),
        Command::SignInAnonymously(SignInOptions::default()),
    )
    .unwrap();
    let req = match m.poll_output() {
        Some(Output::Send(r)) => r.id,
        other => panic!("{other:?}"),
    };
    assert!(m.poll_output().is_none());
    let body = tokens("u1", "r1", Some(("u1", None, true)));
    m.handle_response(Instant(T0), req, Response::json(200, body.as_bytes()))
        .unwrap();
    let store = match m.poll_output() {
        Some(Output::Store(op)) => op.id,
        other => panic!("{other:?}"),
    };
    // Stalled: the event waits for the write.
    assert!(m.poll_output().is_none());
    assert_eq!(
        m.handle_command(Instant(T0), Command::Refresh),
        Err(NotDrained)
    );
    m.handle_stored(Instant(T0), store, Ok(())).unwrap();
    assert!(matches!(m.poll_output(), Some(Output::Store(_))));
}

// ----- anonymous sign-in ladder -------------------------------------------

#[test]
fn fresh_anonymous_sign_in_sends_exact_request_then_stores_then_announces() {
    let mut h = Harness::started();
    let id = h.sign_in();
    let log = h.take();
    let Rec::Send {
        id: req,
        path: p,
        headers,
        body,
    } = &log[0]
    else {
        panic!("{log:?}")
    };
    assert_eq!(p, &path("anonymous/signin"));
    assert_eq!(body, "{}");
    let expected: Vec<(String, String)> = [
        ("Accept", "application/json"),
        ("X-SDK-Version", crate::SDK_VERSION),
        ("X-Paywall-Id", PID),
        ("Content-Type", "application/json"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(headers, &expected);

    h.respond(*req, 200, &tokens("u1", "r1", Some(("u1", None, true))));
    let log = h.take();
    let session_key = Harness::key(RecordKey::Session);
    let anon_key = Harness::key(RecordKey::AnonRefreshToken);
    // The guest record first: after a crash it is never the older one.
    assert_eq!(log[0], Rec::Put(anon_key, "r1".into()));
    assert!(
        matches!(&log[1], Rec::Put(k, v) if *k == session_key && v.contains(r#""refresh_token":"r1""#))
    );
    assert_eq!(log[2], Rec::Event(AuthChange::SignedIn, Some("u1".into())));
    assert_eq!(log[3], done_ok(id, "session u1"));
    assert_eq!(log.len(), 4);
    let stored = h.stored(RecordKey::Session).unwrap();
    assert!(stored.contains(r#""expires_at":1767229200000"#), "{stored}");
    assert!(
        stored.contains(r#""user":{"id":"u1","email":null,"is_anonymous":true"#),
        "{stored}"
    );
}

#[test]
fn sign_in_when_already_anonymous_is_a_no_op() {
    let mut h = Harness::guest("u1", "r1");
    let id = h.sign_in();
    assert_eq!(h.take(), [done_ok(id, "session u1")]);
}

#[test]
fn sign_in_resumes_the_stored_account_and_learns_its_id_from_the_token() {
    let mut h = Harness::guest("u1", "r1");
    h.cmd(Command::SignOut(SignOutOptions::default()));
    h.take();
    h.restart();
    h.take();
    let id = h.sign_in();
    let (req, p, body) = Harness::one_send(&h.take());
    assert_eq!(p, path("refresh"));
    assert_eq!(body, r#"{"refresh_token":"r1"}"#);
    // The refresh reply carries no user: the id comes from the JWT (§12.1).
    h.respond(req, 200, &tokens("u1", "r2", None));
    let log = h.take();
    assert!(log.contains(&Rec::Put(
        Harness::key(RecordKey::AnonRefreshToken),
        "r2".into()
    )));
    assert!(log.contains(&Rec::Event(AuthChange::SignedIn, Some("u1".into()))));
    assert!(log.contains(&done_ok(id, "session u1")));
    assert!(
        h.stored(RecordKey::Session)
            .unwrap()
            .contains(r#""id":"u1""#)
    );
}

#[test]
fn resume_with_dead_token_forgets_it_and_creates_a_new_account() {
    let mut h = Harness::started();
    h.store
        .insert(Harness::key(RecordKey::AnonRefreshToken), b"dead".to_vec());
    h.restart();
    h.take();
    let id = h.sign_in();
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond(
        req,
        401,
        r#"{"code":"invalid_refresh_token","message":"gone"}"#,
    );
    let log = h.take();
    assert_eq!(
        log[0],
        Rec::Remove(Harness::key(RecordKey::AnonRefreshToken))
    );
    let (req2, p, _) = Harness::one_send(&log);
    assert_eq!(p, path("anonymous/signin"));
    h.respond(req2, 200, &tokens("u2", "n1", Some(("u2", None, true))));
    assert!(h.take().contains(&done_ok(id, "session u2")));
}

#[test]
fn resume_failing_transiently_keeps_the_token_and_creates_nothing() {
    let mut h = Harness::started();
    h.store
        .insert(Harness::key(RecordKey::AnonRefreshToken), b"r1".to_vec());
    h.restart();
    h.take();
    let id = h.sign_in();
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond(req, 503, "");
    assert_eq!(h.take(), [done_err(id, "http_503")]);
    assert_eq!(h.stored(RecordKey::AnonRefreshToken).as_deref(), Some("r1"));
    let id = h.sign_in();
    let (req, _, _) = Harness::one_send(&h.take());
    h.fail(req, TransportError::Timeout);
    assert_eq!(h.take(), [done_err(id, "network_error")]);
    assert_eq!(h.stored(RecordKey::AnonRefreshToken).as_deref(), Some("r1"));
}

#[test]
fn anonymous_disabled_surfaces_as_its_code() {
    let mut h = Harness::started();
    let id = h.sign_in();
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond(
        req,
        403,
        r#"{"code":"anonymous_disabled","message":"Anonymous sign-in is disabled"}"#,
    );
    assert_eq!(h.take(), [done_err(id, "anonymous_disabled")]);
    assert!(h.m.session().is_none());
}

#[test]
fn parallel_sign_ins_collapse_into_one_request() {
    let mut h = Harness::started();
    let ids: Vec<_> = (0..5).map(|_| h.sign_in()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]));
    assert_eq!(Harness::sends(&h.take()).len(), 1);
}

#[test]
fn force_new_waits_for_a_plain_sign_in_and_then_mints_a_new_user() {
    let mut h = Harness::started();
    let plain = h.sign_in();
    let (r1, _, _) = Harness::one_send(&h.take());
    let forced = h.cmd(Command::SignInAnonymously(SignInOptions::force_new()));
    assert_ne!(plain, forced);
    assert!(
        Harness::sends(&h.take()).is_empty(),
        "never two sign-ups in flight"
    );
    h.respond(r1, 200, &tokens("u1", "r1", Some(("u1", None, true))));
    let log = h.take();
    assert!(log.contains(&done_ok(plain, "session u1")));
    let (r2, p, _) = Harness::one_send(&log);
    assert_eq!(p, path("anonymous/signin"));
    h.respond(r2, 200, &tokens("u2", "r2", Some(("u2", None, true))));
    let log = h.take();
    assert!(log.contains(&done_ok(forced, "session u2")));
    assert_eq!(h.stored(RecordKey::AnonRefreshToken).as_deref(), Some("r2"));
}

#[test]
fn plain_sign_in_joins_a_forced_one() {
    let mut h = Harness::guest("u1", "r1");
    let forced = h.cmd(Command::SignInAnonymously(SignInOptions::force_new()));
    let (req, p, _) = Harness::one_send(&h.take());
    assert_eq!(
        p,
        path("anonymous/signin"),
        "force_new skips no-op and resume"
    );
    assert_eq!(h.sign_in(), forced);
    h.respond(req, 200, &tokens("u2", "r2", Some(("u2", None, true))));
    assert!(h.take().contains(&done_ok(forced, "session u2")));
}

#[test]
fn plain_sign_in_never_replaces_a_named_session() {
    let mut h = upgraded();
    let id = h.sign_in();
    assert_eq!(h.take(), [done_err(id, "not_anonymous")]);
}

#[test]
fn sign_in_body_carries_captcha_meta_and_visitor_id() {
    let mut h = Harness::new();
    h.m.handle_restored(Instant(T0), None, None, Some("visitor-0123456789"))
        .unwrap();
    h.drain();
    h.take();
    let mut opts = SignInOptions::default().with_captcha("cap").unwrap();
    opts.user_meta.insert("src", "kiosk \"7\"").unwrap();
    h.cmd(Command::SignInAnonymously(opts));
    let (_, _, body) = Harness::one_send(&h.take());
    assert_eq!(
        body,
        r#"{"captcha_token":"cap","visitor_id":"visitor-0123456789","user_meta":{"src":"kiosk \"7\""}}"#
    );
}

// ----- sign-out -----------------------------------------------------------

#[test]
fn soft_sign_out_of_a_guest_calls_no_server_and_keeps_the_account() {
    let mut h = Harness::guest("u1", "r1");
    let id = h.cmd(Command::SignOut(SignOutOptions::default()));
    assert_eq!(
        h.take(),
        [
            Rec::Remove(Harness::key(RecordKey::Session)),
            Rec::Event(AuthChange::SignedOut, None),
            done_ok(id, "signed out"),
        ]
    );
    assert_eq!(h.stored(RecordKey::AnonRefreshToken).as_deref(), Some("r1"));
    // And the next sign-in resumes the same user.
    h.sign_in();
    let (req, p, body) = Harness::one_send(&h.take());
    assert_eq!(
        (p.as_str(), body.as_str()),
        (path("refresh").as_str(), r#"{"refresh_token":"r1"}"#)
    );
    h.respond(req, 200, &tokens("u1", "r2", None));
    assert_eq!(h.m.session().unwrap().user.id, "u1");
}

#[test]
fn hard_sign_out_revokes_and_forgets_the_guest() {
    let mut h = Harness::guest("u1", "r1");
    let access = h.m.session().unwrap().access_token.expose().to_string();
    let id = h.cmd(Command::SignOut(SignOutOptions {
        forget_anonymous: true,
    }));
    let log = h.take();
    assert_eq!(log[0], Rec::Remove(Harness::key(RecordKey::Session)));
    assert_eq!(
        log[1],
        Rec::Remove(Harness::key(RecordKey::AnonRefreshToken))
    );
    assert_eq!(log[2], Rec::Event(AuthChange::SignedOut, None));
    let Rec::Send {
        id: req,
        path: p,
        headers,
        body,
    } = &log[3]
    else {
        panic!("{log:?}")
    };
    assert_eq!(log.len(), 4, "the completion waits for the server: {log:?}");
    assert_eq!(p, &path("signout"));
    assert_eq!(body, "");
    assert!(headers.contains(&("Authorization".into(), format!("Bearer {access}"))));
    assert!(
        !headers.iter().any(|(n, _)| n == "Content-Type"),
        "no body, no Content-Type"
    );
    let req = *req;
    h.respond(req, 200, r#"{"ok":true}"#);
    assert_eq!(h.take(), [done_ok(id, "signed out revoked")]);
    assert_eq!(h.stored(RecordKey::AnonRefreshToken), None);
    // The next sign-in creates a new user.
    h.sign_in();
    assert_eq!(Harness::one_send(&h.take()).1, path("anonymous/signin"));
}

#[test]
fn sign_out_with_a_stale_token_refreshes_first_so_the_server_really_revokes() {
    let mut h = upgraded();
    h.now += 3_600_000; // expired
    h.cmd(Command::SignOut(SignOutOptions::default()));
    let (req, p, _) = Harness::one_send(&h.take());
    assert_eq!(p, path("refresh"));
    h.respond(req, 200, &tokens("u1", "r9", None));
    let log = h.take();
    let Rec::Send {
        path: p, headers, ..
    } = &log[0]
    else {
        panic!("{log:?}")
    };
    assert_eq!(p, &path("signout"));
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "Authorization" && v.starts_with("Bearer ey"))
    );
    assert!(
        h.m.session().is_none(),
        "the refresh did not resurrect the session"
    );
    assert_eq!(h.stored(RecordKey::Session), None);
}

// ----- refresh and access tokens -------------------------------------------

#[test]
fn access_token_on_a_fresh_session_needs_no_request() {
    let mut h = Harness::guest("u1", "r1");
    for _ in 0..100 {
        let id = h.cmd(Command::AccessToken);
        let log = h.take();
        assert_eq!(log.len(), 1);
        assert!(matches!(&log[0], Rec::Done(i, Ok(t)) if *i == id && t.starts_with("token ey")));
    }
}

#[test]
fn stale_access_token_callers_share_one_refresh_and_the_rotation_is_stored_first() {
    let mut h = Harness::guest("u1", "r1");
    h.now += 3_560_000; // 40 s left: inside the 60 s leeway
    let a = h.cmd(Command::AccessToken);
    let b = h.cmd(Command::AccessToken);
    let r = h.cmd(Command::Refresh);
    assert_eq!(a, b);
    let (req, p, body) = Harness::one_send(&h.take());
    assert_eq!(
        (p, body),
        (path("refresh"), r#"{"refresh_token":"r1"}"#.to_string())
    );
    h.respond(req, 200, &tokens("u1", "r2", None));
    let log = h.take();
    assert_eq!(
        log[0],
        Rec::Put(Harness::key(RecordKey::AnonRefreshToken), "r2".into())
    );
    assert!(matches!(&log[1], Rec::Put(k, _) if *k == Harness::key(RecordKey::Session)));
    assert_eq!(
        log[2],
        Rec::Event(AuthChange::TokenRefreshed, Some("u1".into()))
    );
    assert!(log.contains(&done_ok(r, "session u1")));
    assert!(
        log.iter()
            .any(|x| matches!(x, Rec::Done(i, Ok(_)) if *i == a))
    );
}

#[test]
fn refresh_rejected_with_401_signs_out_and_drops_the_dead_guest_token() {
    let mut h = Harness::guest("u1", "r1");
    h.now += 3_560_000; // stale: the token caller joins the refresh
    let r = h.cmd(Command::Refresh);
    let t = h.cmd(Command::AccessToken);
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond(req, 401, r#"{"error":"invalid_refresh_token"}"#);
    let log = h.take();
    assert_eq!(
        log,
        [
            Rec::Remove(Harness::key(RecordKey::AnonRefreshToken)),
            Rec::Remove(Harness::key(RecordKey::Session)),
            Rec::Event(AuthChange::SignedOut, None),
            done_err(r, "invalid_refresh_token"),
            done_ok(t, "token none"),
        ]
    );
    assert!(h.store.is_empty(), "both records gone");
}

#[test]
fn gotrue_invalid_grant_counts_as_a_dead_token() {
    let mut h = upgraded();
    h.cmd(Command::Refresh);
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond(
        req,
        400,
        r#"{"error":"invalid_grant","error_description":"Refresh Token Not Found"}"#,
    );
    assert!(h.take().contains(&Rec::Event(AuthChange::SignedOut, None)));
}

#[test]
fn transient_refresh_failure_keeps_the_session_and_hands_out_a_still_valid_token() {
    let mut h = Harness::guest("u1", "r1");
    h.now += 3_560_000;
    let t = h.cmd(Command::AccessToken);
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond(req, 500, r#"{"code":"upstream","message":"boom"}"#);
    let log = h.take();
    assert!(matches!(&log[..], [Rec::Done(i, Ok(tok))] if *i == t && tok.starts_with("token ")));
    assert!(h.m.session().is_some());
    // Expired for real: the caller gets the error instead.
    h.now += 3_600_000;
    let t = h.cmd(Command::AccessToken);
    let (req, _, _) = Harness::one_send(&h.take());
    h.fail(req, TransportError::Connect);
    assert_eq!(h.take(), [done_err(t, "network_error")]);
}

#[test]
fn success_payloads_are_validated_and_bad_ones_change_nothing() {
    let mut h = Harness::guest("u1", "r1");
    let before = h.store.clone();
    for body in [
        "not json",
        r#"{"access_token":"a","refresh_token":"b"}"#,
        r#"{"access_token":"a","refresh_token":"b","expires_in":-5,"expires_at":null}"#,
        r#"{"refresh_token":"b","expires_in":3600}"#,
    ] {
        let r = h.cmd(Command::Refresh);
        let (req, _, _) = Harness::one_send(&h.take());
        h.respond(req, 200, body);
        assert_eq!(h.take(), [done_err(r, "invalid_response")], "{body}");
        assert_eq!(h.store, before);
    }
    let r = h.cmd(Command::Refresh);
    let (req, _, _) = Harness::one_send(&h.take());
    h.input(Input::Response(
        req,
        Response {
            status: 200,
            content_type_json: false,
            body: b"{}",
            reason: "OK",
        },
    ));
    assert_eq!(h.take(), [done_err(r, "invalid_response")]);
}

#[test]
fn proactive_refresh_fires_at_the_reported_deadline() {
    let mut h = Harness::guest("u1", "r1");
    let deadline = h.m.poll_timeout().unwrap();
    assert_eq!(deadline, Instant(T0 + 3_600_000 - 120_000));
    h.now = deadline.as_millis();
    h.input(Input::Timeout);
    let (_, p, _) = Harness::one_send(&h.take());
    assert_eq!(p, path("refresh"));
    assert_eq!(
        h.m.poll_timeout(),
        None,
        "no second refresh while one is in flight"
    );
}

// ----- late responses -------------------------------------------------------

#[test]
fn refresh_landing_after_soft_sign_out_saves_the_rotated_guest_token_without_resurrecting() {
    let mut h = Harness::guest("u1", "r1");
    let r = h.cmd(Command::Refresh);
    let (req, _, _) = Harness::one_send(&h.take());
    h.cmd(Command::SignOut(SignOutOptions::default()));
    let log = h.take();
    assert!(log.contains(&done_err(r, "superseded")));
    h.respond(req, 200, &tokens("u1", "r2", None));
    assert_eq!(
        h.take(),
        [Rec::Put(
            Harness::key(RecordKey::AnonRefreshToken),
            "r2".into()
        )]
    );
    assert!(h.m.session().is_none());
    assert_eq!(h.stored(RecordKey::Session), None);
}

#[test]
fn refresh_landing_after_hard_sign_out_is_revoked_not_saved() {
    let mut h = Harness::guest("u1", "r1");
    h.cmd(Command::Refresh);
    let (req, _, _) = Harness::one_send(&h.take());
    h.cmd(Command::SignOut(SignOutOptions {
        forget_anonymous: true,
    }));
    h.take();
    h.respond(req, 200, &tokens("u1", "r2", None));
    let log = h.take();
    let (_, p, _) = Harness::one_send(&log);
    assert_eq!(p, path("signout"));
    assert_eq!(h.stored(RecordKey::AnonRefreshToken), None);
    assert!(h.m.session().is_none());
}

#[test]
fn sign_in_landing_after_soft_sign_out_keeps_the_new_account_resumable() {
    let mut h = Harness::started();
    let id = h.sign_in();
    let (req, _, _) = Harness::one_send(&h.take());
    h.cmd(Command::SignOut(SignOutOptions::default()));
    assert!(h.take().contains(&done_err(id, "superseded")));
    // A new sign-in waits for the orphan instead of minting a second user.
    let again = h.sign_in();
    assert!(Harness::sends(&h.take()).is_empty());
    h.respond(req, 200, &tokens("u1", "r1", Some(("u1", None, true))));
    let log = h.take();
    assert_eq!(
        log[0],
        Rec::Put(Harness::key(RecordKey::AnonRefreshToken), "r1".into())
    );
    let (req, p, body) = Harness::one_send(&log);
    assert_eq!(
        (p, body),
        (path("refresh"), r#"{"refresh_token":"r1"}"#.to_string())
    );
    h.respond(req, 200, &tokens("u1", "r2", None));
    assert!(h.take().contains(&done_ok(again, "session u1")));
}

// ----- upgrade ----------------------------------------------------------------

fn upgraded() -> Harness {
    let mut h = Harness::guest("u1", "r1");
    let id = h.upgrade_answered(
        r#"{"status":"updated","user":{"id":"u1","email":"a@b.c","is_anonymous":false}}"#,
    );
    assert!(
        h.take()
            .contains(&done_ok(id, r#"upgraded u1 Some("a@b.c")"#))
    );
    h
}

#[test]
fn upgrade_updated_keeps_the_id_flips_the_session_and_forgets_the_guest_key() {
    let mut h = Harness::guest("u1", "r1");
    let access = h.m.session().unwrap().access_token.expose().to_string();
    let req = UpgradeRequest::new("a@b.c", "hunter2", Some("idem-1")).unwrap();
    let id = h.cmd(Command::UpgradeToEmail(req));
    let log = h.take();
    let Rec::Send {
        id: rid,
        path: p,
        headers,
        body,
    } = &log[0]
    else {
        panic!("{log:?}")
    };
    assert_eq!(p, &path("anonymous/upgrade"));
    assert_eq!(body, r#"{"email":"a@b.c","password":"hunter2"}"#);
    assert!(headers.contains(&("Authorization".into(), format!("Bearer {access}"))));
    assert!(headers.contains(&("Idempotency-Key".into(), "idem-1".into())));
    h.respond(
        *rid,
        200,
        r#"{"status":"updated","user":{"id":"u1","email":"a@b.c","is_anonymous":false}}"#,
    );
    let log = h.take();
    assert_eq!(
        log[0],
        Rec::Remove(Harness::key(RecordKey::AnonRefreshToken))
    );
    assert!(
        matches!(&log[1], Rec::Put(k, v) if *k == Harness::key(RecordKey::Session) && v.contains(r#""email":"a@b.c","is_anonymous":false"#))
    );
    assert_eq!(
        log[2],
        Rec::Event(AuthChange::UserUpdated, Some("u1".into()))
    );
    assert_eq!(log[3], done_ok(id, r#"upgraded u1 Some("a@b.c")"#));
}

/// What the session record holds of the user (builds that keep the
/// server's user object, `PAYWALL_AUTH_USER_JSON_MAX` > 0).
#[cfg(paywall_auth_user_json)]
fn stored_user(h: &Harness) -> String {
    let record = h.stored(RecordKey::Session).unwrap();
    let at = record.find(r#""user":"#).unwrap() + 7;
    record[at..record.len() - 1].to_string()
}

#[cfg(paywall_auth_user_json)]
#[test]
fn the_backends_user_object_is_stored_as_sent_through_refreshes() {
    let mut h = Harness::guest("u1", "r1");
    assert_eq!(
        stored_user(&h),
        r#"{"id":"u1","email":null,"is_anonymous":true}"#
    );
    // A reply whose user carries keys the core does not know, and `null`s.
    let user = r#"{"id":"u1","email":null,"is_anonymous":true,"created_at":"2026-11-27","app_metadata":{"provider":null}}"#;
    h.cmd(Command::Refresh);
    let (req, _, _) = Harness::one_send(&h.take());
    let reply =
        tokens("u1", "r2", None).replace(r#""token_type":"bearer""#, &format!(r#""user":{user}"#));
    h.respond(req, 200, &reply);
    assert_eq!(stored_user(&h), user);
    // A rotation without a `user` keeps the account and its spelling.
    h.cmd(Command::Refresh);
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond(req, 200, &tokens("u1", "r3", None));
    assert_eq!(stored_user(&h), user);
    assert!(
        h.stored(RecordKey::Session)
            .unwrap()
            .contains(r#""refresh_token":"r3""#)
    );
}

#[cfg(paywall_auth_user_json)]
#[test]
fn an_upgrade_stores_the_named_user_as_the_backend_spelled_it() {
    // Complete: stored verbatim, no `is_anonymous` invented.
    let mut h = Harness::guest("u1", "r1");
    let named = r#"{"id":"u1","email":"a@b.c","plan":"trial","phone":null}"#;
    h.upgrade_answered(&format!(r#"{{"status":"updated","user":{named}}}"#));
    assert_eq!(stored_user(&h), named);
    assert!(!h.m.session().unwrap().is_anonymous());

    // Without the email the machine fills in the requested one: the known
    // fields are written from the session, the other keys kept.
    let mut h = Harness::guest("u1", "r1");
    h.upgrade_answered(
        r#"{"status":"updated","user":{"id":"u1","is_anonymous":false,"plan":"trial"}}"#,
    );
    assert_eq!(
        stored_user(&h),
        r#"{"id":"u1","email":"a@b.c","is_anonymous":false,"plan":"trial"}"#
    );
}

#[test]
fn confirmation_required_changes_nothing_until_a_refresh_shows_the_confirmed_email() {
    let mut h = Harness::guest("u1", "r1");
    let id = h.upgrade_answered(r#"{"status":"confirmation_required","email":"a@b.c"}"#);
    assert_eq!(h.take(), [done_ok(id, "confirm a@b.c")]);
    assert!(h.m.session().unwrap().is_anonymous());
    assert_eq!(h.m.pending_confirmation(), Some("a@b.c"));
    // The user clicked the link; the next refresh shows it in the token (§12.2).
    h.cmd(Command::Refresh);
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond(
        req,
        200,
        &tokens("u1", "r2", Some(("u1", Some("a@b.c"), false))),
    );
    let log = h.take();
    assert!(log.contains(&Rec::Remove(Harness::key(RecordKey::AnonRefreshToken))));
    assert!(log.contains(&Rec::Event(AuthChange::UserUpdated, Some("u1".into()))));
    let s = h.m.session().unwrap();
    assert!(!s.is_anonymous());
    assert_eq!(s.user.email.as_deref(), Some("a@b.c"));
    // A soft sign-out now revokes the named session on the server.
    h.cmd(Command::SignOut(SignOutOptions::default()));
    assert_eq!(Harness::one_send(&h.take()).1, path("signout"));
}

#[test]
fn upgrade_needs_an_anonymous_session() {
    let mut h = Harness::started();
    let id = h.cmd(Command::UpgradeToEmail(
        UpgradeRequest::new("a@b.c", "pw", None).unwrap(),
    ));
    assert_eq!(h.take(), [done_err(id, "not_authenticated")]);
    let mut h = upgraded();
    let id = h.cmd(Command::UpgradeToEmail(
        UpgradeRequest::new("x@b.c", "pw", None).unwrap(),
    ));
    assert_eq!(h.take(), [done_err(id, "not_anonymous")]);
}

#[test]
fn upgrade_with_a_stale_token_refreshes_first() {
    let mut h = Harness::guest("u1", "r1");
    h.now += 3_590_000;
    h.cmd(Command::UpgradeToEmail(
        UpgradeRequest::new("a@b.c", "pw", None).unwrap(),
    ));
    let (req, p, _) = Harness::one_send(&h.take());
    assert_eq!(p, path("refresh"));
    h.respond(req, 200, &tokens("u1", "r2", None));
    let log = h.take();
    let new_access = h.m.session().unwrap().access_token.expose().to_string();
    let send = log.iter().find_map(|r| match r {
        Rec::Send {
            path: p, headers, ..
        } if *p == path("anonymous/upgrade") => Some(headers.clone()),
        _ => None,
    });
    assert!(
        send.unwrap()
            .contains(&("Authorization".into(), format!("Bearer {new_access}")))
    );
}

#[test]
fn concurrent_upgrades_join_by_key_and_refuse_another_key() {
    let mut h = Harness::guest("u1", "r1");
    let a = h.cmd(Command::UpgradeToEmail(
        UpgradeRequest::new("a@b.c", "pw", Some("k1")).unwrap(),
    ));
    let b = h.cmd(Command::UpgradeToEmail(
        UpgradeRequest::new("a@b.c", "pw", Some("k1")).unwrap(),
    ));
    let c = h.cmd(Command::UpgradeToEmail(
        UpgradeRequest::new("a@b.c", "pw", Some("k2")).unwrap(),
    ));
    assert_eq!(a, b);
    let log = h.take();
    assert_eq!(Harness::sends(&log).len(), 1);
    assert!(log.contains(&done_err(c, "upgrade_in_progress")));
}

#[test]
fn upgrade_answer_after_sign_out_patches_nothing() {
    let mut h = Harness::guest("u1", "r1");
    let id = h.cmd(Command::UpgradeToEmail(
        UpgradeRequest::new("a@b.c", "pw", None).unwrap(),
    ));
    let (req, _, _) = Harness::one_send(&h.take());
    h.cmd(Command::SignOut(SignOutOptions::default()));
    assert!(h.take().contains(&done_err(id, "superseded")));
    h.respond(
        req,
        200,
        r#"{"status":"updated","user":{"id":"u1","email":"a@b.c","is_anonymous":false}}"#,
    );
    // The account is named now: the guest key must not resume it.
    assert_eq!(
        h.take(),
        [Rec::Remove(Harness::key(RecordKey::AnonRefreshToken))]
    );
    assert!(h.m.session().is_none());
}

// ----- storage ------------------------------------------------------------------

#[test]
fn a_failed_write_fails_the_command_keeps_memory_and_retries() {
    let mut h = Harness::started();
    h.fail_writes.push(RecordKey::AnonRefreshToken);
    let id = h.sign_in();
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond(req, 200, &tokens("u1", "r1", Some(("u1", None, true))));
    let log = h.take();
    assert!(log.contains(&Rec::Notice(Notice::StorageFailed {
        key: RecordKey::AnonRefreshToken
    })));
    assert!(log.contains(&done_err(id, "storage_failed")));
    assert_eq!(
        log.iter().filter(|r| matches!(r, Rec::Put(..))).count(),
        1,
        "only the failed guest write was attempted; the session record waits for it (writes land in order): {log:#?}"
    );
    assert_eq!(h.stored(RecordKey::Session), None);
    assert!(
        h.m.session().is_some(),
        "the live session is kept in memory"
    );
    h.fail_writes.clear();
    let retry = h.m.poll_timeout().unwrap();
    h.now = retry.as_millis();
    h.input(Input::Timeout);
    let log = h.take();
    assert_eq!(
        log[0],
        Rec::Put(Harness::key(RecordKey::AnonRefreshToken), "r1".into())
    );
    assert!(matches!(&log[1], Rec::Put(k, _) if *k == Harness::key(RecordKey::Session)));
    assert_eq!(log.len(), 2);
    assert_eq!(h.stored(RecordKey::AnonRefreshToken).as_deref(), Some("r1"));
    assert!(h.stored(RecordKey::Session).is_some());
}

#[test]
fn corrupted_storage_starts_signed_out_and_is_left_untouched() {
    let mut h = Harness::new();
    h.store.insert(
        Harness::key(RecordKey::Session),
        b"{\"access_token\":".to_vec(),
    );
    h.restore();
    let log = h.take();
    assert!(matches!(
        log[0],
        Rec::Notice(Notice::CorruptRecord {
            key: RecordKey::Session,
            ..
        })
    ));
    assert_eq!(log[1], Rec::Event(AuthChange::InitialSession, None));
    assert_eq!(
        h.stored(RecordKey::Session).as_deref(),
        Some("{\"access_token\":")
    );
}

#[test]
fn a_session_written_by_the_reference_client_is_restored_with_its_real_id() {
    let mut h = Harness::new();
    let at = jwt("u7", None, true);
    let js = format!(
        r#"{{"access_token":"{at}","refresh_token":"r7","expires_at":{},"user":{{"id":"","email":null,"is_anonymous":true}}}}"#,
        T0 + 3_600_000
    );
    h.store
        .insert(Harness::key(RecordKey::Session), js.into_bytes());
    h.store
        .insert(Harness::key(RecordKey::AnonRefreshToken), b"r7".to_vec());
    h.restore();
    assert_eq!(
        h.take(),
        [Rec::Event(AuthChange::InitialSession, Some("u7".into()))]
    );
}

/// An unsettled guest (`Harness::unsettled("r0")`, session token `r1`)
/// presents its guest record's `r0`; the server says it is dead. The guest
/// record must take over `r1` before `r1` goes out as the fallback (not a
/// sign-out). Returns the fallback request.
fn dead_guest_record_falls_back_mirrored(h: &mut Harness) -> RequestId {
    let (req, _, body) = Harness::one_send(&h.take());
    assert_eq!(body, r#"{"refresh_token":"r0"}"#);
    h.respond(req, 401, r#"{"code":"invalid_refresh_token"}"#);
    let log = h.take();
    assert_eq!(
        log[0],
        Rec::Put(Harness::key(RecordKey::AnonRefreshToken), "r1".into()),
        "mirrored before it is presented"
    );
    let (req, p, body) = Harness::one_send(&log[1..]);
    assert_eq!(
        (p, body),
        (path("refresh"), r#"{"refresh_token":"r1"}"#.to_string()),
        "the fallback, not a sign-out"
    );
    req
}

#[test]
fn a_crash_between_the_two_writes_keeps_the_guest_signed_in_and_settles_it_with_the_newer_token() {
    // The guest record is newer (written first; a crash or a failed write
    // came before the session record): the session stays signed in — a
    // crash must not read as a sign-out (§13.7) — but unsettled: nothing is
    // written at restore, and its next refresh presents the guest record.
    let mut h = Harness::unsettled("r5");
    assert_eq!(
        h.take(),
        [Rec::Event(AuthChange::InitialSession, Some("u1".into()))],
        "signed in, and neither record is touched"
    );
    assert_eq!(
        h.m.poll_timeout(),
        Some(Instant(h.now)),
        "settled at once by a proactive refresh"
    );
    // Its access token is not handed out as fresh: a token request refreshes
    // with the guest record's (newer) token.
    let id = h.cmd(Command::AccessToken);
    let (req, _, body) = Harness::one_send(&h.take());
    assert_eq!(body, r#"{"refresh_token":"r5"}"#);
    h.respond(req, 200, &tokens("u1", "r6", Some(("u1", None, true))));
    let log = h.take();
    assert_eq!(
        log[0],
        Rec::Put(Harness::key(RecordKey::AnonRefreshToken), "r6".into())
    );
    assert!(
        matches!(&log[1], Rec::Put(k, v) if *k == Harness::key(RecordKey::Session) && v.contains(r#""refresh_token":"r6""#))
    );
    assert_eq!(
        log[2],
        Rec::Event(AuthChange::TokenRefreshed, Some("u1".into()))
    );
    assert!(matches!(&log[3], Rec::Done(i, Ok(t)) if *i == id && t.starts_with("token ")));
    // Settled: the next token comes from memory.
    h.cmd(Command::AccessToken);
    assert!(Harness::sends(&h.take()).is_empty());

    // A plain sign-in settles it the same way (resume), never handing back
    // the session record's guest unverified. The guest record turned out to
    // be another guest (a `force_new` caught between its writes): the old
    // guest's session record goes before the new guest record is written,
    // so the two never sit side by side (§13.8).
    let mut h = Harness::unsettled("r5");
    h.take();
    let id = h.sign_in();
    let (req, _, body) = Harness::one_send(&h.take());
    assert_eq!(body, r#"{"refresh_token":"r5"}"#);
    h.respond(req, 200, &tokens("u5", "r6", Some(("u5", None, true))));
    let log = h.take();
    assert_eq!(log[0], Rec::Remove(Harness::key(RecordKey::Session)));
    assert_eq!(
        log[1],
        Rec::Put(Harness::key(RecordKey::AnonRefreshToken), "r6".into())
    );
    assert!(
        matches!(&log[2], Rec::Put(k, v) if *k == Harness::key(RecordKey::Session) && v.contains(r#""refresh_token":"r6""#))
    );
    assert_eq!(log[3], Rec::Event(AuthChange::SignedIn, Some("u5".into())));
    assert_eq!(log[4], done_ok(id, "session u5"));

    // The guest record's token is dead (a record written by a client that
    // writes the session first, caught between its writes): the session's
    // own token is tried before the session is given up, and the guest
    // record takes it over first, so a peer's sign-out (which removes the
    // session record) cannot leave it in memory alone.
    let mut h = Harness::unsettled("r0");
    h.take();
    let id = h.cmd(Command::Refresh);
    let req = dead_guest_record_falls_back_mirrored(&mut h);
    h.respond(req, 200, &tokens("u1", "r2", Some(("u1", None, true))));
    let log = h.take();
    assert_eq!(
        log[0],
        Rec::Put(Harness::key(RecordKey::AnonRefreshToken), "r2".into())
    );
    assert!(log.contains(&done_ok(id, "session u1")));

    // After a soft sign-out, the next sign-in also falls back to it.
    let mut h = Harness::unsettled("r0");
    h.cmd(Command::SignOut(SignOutOptions::default()));
    h.take();
    let id = h.sign_in();
    let req = dead_guest_record_falls_back_mirrored(&mut h);
    h.respond(req, 200, &tokens("u1", "r2", Some(("u1", None, true))));
    assert!(h.take().contains(&done_ok(id, "session u1")));

    // Both dead: only then a new guest.
    let mut h = Harness::unsettled("r0");
    h.take();
    h.sign_in();
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond(req, 401, r#"{"code":"invalid_refresh_token"}"#);
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond(req, 401, r#"{"code":"invalid_refresh_token"}"#);
    let (_, p, _) = Harness::one_send(&h.take());
    assert_eq!(p, path("anonymous/signin"));
}

#[test]
fn an_unsettled_guest_whose_mirror_write_fails_spends_nothing() {
    // The guest record's token is dead and the session's own is the
    // fallback: the guest record takes it over first. If that write fails,
    // the fallback is not sent (the token stays unspent in the session
    // record) and the caller learns why.
    let mut h = Harness::unsettled("r0");
    h.take();
    let id = h.cmd(Command::Refresh);
    let (req, _, _) = Harness::one_send(&h.take());
    h.fail_writes.push(RecordKey::AnonRefreshToken);
    h.respond(req, 401, r#"{"code":"invalid_refresh_token"}"#);
    let log = h.take();
    assert_eq!(
        log[0],
        Rec::Put(Harness::key(RecordKey::AnonRefreshToken), "r1".into())
    );
    assert!(Harness::sends(&log).is_empty(), "nothing spent: {log:?}");
    assert!(
        log.iter()
            .any(|r| matches!(r, Rec::Done(i, Err(e)) if *i == id && e.contains("storage_failed"))),
        "{log:?}"
    );
    assert!(
        !log.iter()
            .any(|r| matches!(r, Rec::Event(AuthChange::SignedOut, _))),
        "not a sign-out"
    );
    assert_eq!(
        h.store
            .get(&Harness::key(RecordKey::Session))
            .map(|v| !v.is_empty()),
        Some(true),
        "the session record, with the live token, is untouched"
    );
    assert!(
        String::from_utf8_lossy(&h.store[&Harness::key(RecordKey::Session)])
            .contains(r#""refresh_token":"r1""#)
    );
    // Once the store works again, the retry writes the mirror and the next
    // refresh presents the live token.
    h.fail_writes.clear();
    h.now += 60_000;
    h.input(Input::Timeout);
    let log = h.take();
    assert!(
        log.contains(&Rec::Put(
            Harness::key(RecordKey::AnonRefreshToken),
            "r1".into()
        )),
        "{log:?}"
    );
}

#[test]
fn a_new_guest_record_never_lands_beside_the_old_guests_session_record() {
    // B6 of the property suite, and the peer-refresh loss after it: U0 signed
    // in; force_new mints U1. Writing U1's guest record while the session
    // record still holds U0 would let a peer refresh U0 and overwrite it,
    // and leave restore two guests to choose from. So U0's session record is
    // removed first; while that removal fails, U1's records wait, the caller
    // learns it, and storage keeps one consistent guest.
    let mut h = Harness::guest("u0", "r0");
    h.fail_writes.push(RecordKey::Session);
    let id = h.cmd(Command::SignInAnonymously(SignInOptions {
        force_new: true,
        ..SignInOptions::default()
    }));
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond(req, 200, &tokens("u1", "r1", Some(("u1", None, true))));
    let log = h.take();
    assert_eq!(log[0], Rec::Remove(Harness::key(RecordKey::Session)));
    assert!(
        !log.iter().any(|r| matches!(r, Rec::Put(..))),
        "nothing written beside U0's session record: {log:?}"
    );
    assert!(log.contains(&done_err(id, "storage_failed")), "{log:?}");
    assert_eq!(h.stored(RecordKey::AnonRefreshToken).as_deref(), Some("r0"));
    assert!(
        h.stored(RecordKey::Session)
            .unwrap()
            .contains(r#""refresh_token":"r0""#)
    );

    // The store recovers: the retry removes U0's session record, then
    // writes U1's two records in order.
    h.fail_writes.clear();
    h.now += 60_000;
    h.input(Input::Timeout);
    let log = h.take();
    let writes: Vec<&Rec> = log
        .iter()
        .filter(|r| matches!(r, Rec::Put(..) | Rec::Remove(..)))
        .collect();
    assert_eq!(writes[0], &Rec::Remove(Harness::key(RecordKey::Session)));
    assert_eq!(
        writes[1],
        &Rec::Put(Harness::key(RecordKey::AnonRefreshToken), "r1".into())
    );
    assert!(
        matches!(writes[2], Rec::Put(k, v) if *k == Harness::key(RecordKey::Session) && v.contains(r#""refresh_token":"r1""#))
    );

    // Had the process died before the retry, restore would have found U0's
    // consistent records; after it, U1's.
    h.restart();
    assert_eq!(
        h.take(),
        [Rec::Event(AuthChange::InitialSession, Some("u1".into()))]
    );
}

#[test]
fn a_hard_sign_out_also_forgets_a_set_aside_guest_session() {
    let mut h = Harness::unsettled("r5");
    h.take();
    h.cmd(Command::SignOut(SignOutOptions {
        forget_anonymous: true,
    }));
    let log = h.take();
    assert!(log.contains(&Rec::Remove(Harness::key(RecordKey::Session))));
    assert!(log.contains(&Rec::Remove(Harness::key(RecordKey::AnonRefreshToken))));
    assert_eq!(h.stored(RecordKey::Session), None);
    assert_eq!(h.stored(RecordKey::AnonRefreshToken), None);
    h.restart();
    assert_eq!(h.take(), [Rec::Event(AuthChange::InitialSession, None)]);
    assert!(!h.m.has_resumable_anonymous());
}

#[test]
fn postcard_records_round_trip_through_a_restart() {
    let mut h = Harness::with_format(StoreFormat::Postcard);
    h.restore();
    h.take();
    h.sign_in();
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond(req, 200, &tokens("u1", "r1", Some(("u1", None, true))));
    h.restart();
    assert_eq!(
        h.take(),
        [Rec::Event(AuthChange::InitialSession, Some("u1".into()))]
    );
}

// ----- other processes --------------------------------------------------------

#[test]
fn external_changes_are_classified_and_echoes_ignored() {
    let mut h = Harness::guest("u1", "r1");
    let own = h.stored(RecordKey::Session).unwrap();
    h.input(Input::ExternalChange(
        RecordKey::Session,
        Some(own.as_bytes()),
    ));
    assert!(h.take().is_empty(), "an echo of our own write");

    // Another tab refreshed the same user.
    let mut other = Harness::guest("u1", "r1b");
    let theirs = other.stored(RecordKey::Session).unwrap();
    other.take();
    h.input(Input::ExternalChange(
        RecordKey::Session,
        Some(theirs.as_bytes()),
    ));
    // The guest record is brought in step first: had the other tab died
    // between its two writes, the session record would be the only copy.
    assert_eq!(
        h.take(),
        [
            Rec::Put(Harness::key(RecordKey::AnonRefreshToken), "r1b".into()),
            Rec::Event(AuthChange::TokenRefreshed, Some("u1".into()))
        ]
    );

    // Another tab signed in someone else.
    let third = Harness::guest("u9", "r9")
        .stored(RecordKey::Session)
        .unwrap();
    h.input(Input::ExternalChange(
        RecordKey::Session,
        Some(third.as_bytes()),
    ));
    assert_eq!(
        h.take(),
        [
            Rec::Put(Harness::key(RecordKey::AnonRefreshToken), "r9".into()),
            Rec::Event(AuthChange::SignedIn, Some("u9".into()))
        ]
    );

    h.input(Input::ExternalChange(RecordKey::Session, Some(b"garbage")));
    assert!(matches!(
        &h.take()[..],
        [Rec::Notice(Notice::CorruptRecord { .. })]
    ));
    assert_eq!(h.m.session().unwrap().user.id, "u9");

    h.input(Input::ExternalChange(RecordKey::Session, None));
    assert_eq!(h.take(), [Rec::Event(AuthChange::SignedOut, None)]);
}

#[test]
fn an_echo_of_an_older_write_does_not_roll_tokens_back() {
    let mut h = Harness::guest("u1", "r1");
    let old = h.stored(RecordKey::Session).unwrap();
    h.cmd(Command::Refresh);
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond(req, 200, &tokens("u1", "r2", None));
    h.take();
    h.input(Input::ExternalChange(
        RecordKey::Session,
        Some(old.as_bytes()),
    ));
    assert!(h.take().is_empty());
    assert_eq!(h.m.session().unwrap().refresh_token.expose(), "r2");
}

// ----- secrets and determinism ------------------------------------------------

#[test]
fn debug_output_never_contains_tokens_or_passwords() {
    let mut h = Harness::guest("u1", "secret-refresh");
    h.cmd(Command::UpgradeToEmail(
        UpgradeRequest::new("a@b.c", "hunter2", None).unwrap(),
    ));
    let dump = format!("{:?}", h.m);
    assert!(!dump.contains("secret-refresh"));
    assert!(!dump.contains("hunter2"));
    assert!(!dump.contains("eyJ"));
    let err = Error::NotAuthenticated;
    assert_eq!(err.code(), "not_authenticated");
}

#[test]
fn the_same_trace_yields_the_same_outputs() {
    let run = || {
        let mut h = Harness::guest("u1", "r1");
        h.cmd(Command::Refresh);
        let (req, _, _) = Harness::one_send(&h.take());
        h.respond(req, 200, &tokens("u1", "r2", None));
        h.cmd(Command::SignOut(SignOutOptions {
            forget_anonymous: true,
        }));
        format!("{:?}", h.take())
    };
    assert_eq!(run(), run());
}

#[test]
fn machine_state_fits_the_8_kib_budget_with_default_capacities() {
    // The footprint promise of the README; `examples/footprint.rs` prints the
    // breakdown. A host build that keeps the server's user object
    // (`USER_JSON_MAX` > 0) adds it once: the machine holds exactly one user.
    let kept = crate::limits::USER_JSON_MAX;
    assert!(
        core::mem::size_of::<Machine>() <= 8 * 1024 + kept,
        "{}",
        core::mem::size_of::<Machine>()
    );
}

#[test]
fn early_sign_ins_collapse_and_a_forced_one_wins() {
    let mut h = Harness::guest("u1", "r1");
    h.restart();
    h.take();
    let mut h2 = Harness {
        m: Machine::new(h.m.config().clone()),
        ..Harness::new()
    };
    h2.store = h.store.clone();
    let plain = h2.sign_in();
    let forced = h2.cmd(Command::SignInAnonymously(SignInOptions::force_new()));
    let token = h2.cmd(Command::AccessToken);
    assert_eq!(plain, forced);
    h2.restore();
    let log = h2.take();
    assert_eq!(
        log[0],
        Rec::Event(AuthChange::InitialSession, Some("u1".into()))
    );
    // Forced: a new user even though a guest session exists.
    let (req, p, _) = Harness::one_send(&log);
    assert_eq!(p, path("anonymous/signin"));
    assert!(
        log.iter()
            .any(|r| matches!(r, Rec::Done(i, Ok(_)) if *i == token))
    );
    h2.respond(req, 200, &tokens("u2", "r2", Some(("u2", None, true))));
    assert!(h2.take().contains(&done_ok(plain, "session u2")));
}

#[test]
fn a_refresh_reply_with_an_oversize_user_still_saves_the_rotated_token() {
    let mut h = Harness::guest("u1", "r1");
    h.cmd(Command::Refresh);
    let (req, _, _) = Harness::one_send(&h.take());
    let avatar = "x".repeat(5000);
    let body = tokens("u1", "r2", None).replace(
        r#""token_type":"bearer""#,
        &format!(r#""token_type":"bearer","user":{{"id":"u1","avatar":"{avatar}"}}"#),
    );
    h.respond(req, 200, &body);
    let log = h.take();
    assert!(log.contains(&Rec::Put(
        Harness::key(RecordKey::AnonRefreshToken),
        "r2".into()
    )));
    assert_eq!(h.m.session().unwrap().user.id, "u1");
}

#[test]
fn short_lived_tokens_are_refreshed_half_way_not_in_a_loop() {
    let mut h = Harness::started();
    h.sign_in();
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond(
        req,
        200,
        &tokens("u1", "r1", Some(("u1", None, true))).replace("3600", "60"),
    );
    h.take();
    assert_eq!(h.m.poll_timeout(), Some(Instant(T0 + 30_000)));
}

#[test]
fn a_request_the_transport_never_answers_fails_at_its_deadline_and_its_late_answer_still_counts() {
    let mut h = Harness::guest("u1", "r1");
    h.m.config.request_timeout = Some(crate::Duration::from_secs(30));
    let a = h.cmd(Command::Refresh);
    let (req, _, _) = Harness::one_send(&h.take());
    h.now += 30_000;
    assert_eq!(h.m.poll_timeout(), Some(Instant(h.now)));
    h.input(Input::Timeout);
    assert_eq!(h.take(), [done_err(a, "network_error")]);
    // The server did rotate: its late answer is still applied, so the
    // rotated token is not lost (its caller was already answered).
    h.respond(req, 200, &tokens("u1", "r2", None));
    let log = h.take();
    assert!(log.contains(&Rec::Put(
        Harness::key(RecordKey::AnonRefreshToken),
        "r2".into()
    )));
    assert!(log.contains(&Rec::Event(AuthChange::TokenRefreshed, Some("u1".into()))));
    assert!(!log.iter().any(|r| matches!(r, Rec::Done(..))));
}

#[test]
fn a_resume_answered_after_its_timeout_keeps_the_rotated_guest_token() {
    let mut h = Harness::guest("u1", "r1");
    h.m.config.request_timeout = Some(crate::Duration::from_secs(30));
    h.cmd(Command::SignOut(SignOutOptions::default()));
    h.take();
    let id = h.sign_in();
    let (req, _, _) = Harness::one_send(&h.take());
    h.now += 30_000;
    h.input(Input::Timeout);
    assert_eq!(h.take(), [done_err(id, "network_error")]);
    h.respond(req, 200, &tokens("u1", "r2", None));
    assert_eq!(
        h.take(),
        [Rec::Put(
            Harness::key(RecordKey::AnonRefreshToken),
            "r2".into()
        )]
    );
    // The next sign-in resumes with the token the late answer carried.
    h.sign_in();
    let (_, _, body) = Harness::one_send(&h.take());
    assert_eq!(body, r#"{"refresh_token":"r2"}"#);
}

#[test]
fn a_refresh_refused_for_lack_of_request_slots_backs_off_instead_of_spinning() {
    let mut h = Harness::guest("u1", "r1");
    // Occupy every request slot (as a burst of sign-out revocations would).
    while h.m.in_flight.len() < crate::limits::REQUESTS_IN_FLIGHT {
        let id = RequestId(900 + h.m.in_flight.len() as u32);
        h.m.in_flight
            .push(super::InFlight {
                deadline: super::NEVER,
                timed_out: false,
                id,
                purpose: super::Purpose::SignOut { caller: None },
            })
            .unwrap();
    }
    h.now = h.m.poll_timeout().unwrap().as_millis();
    h.input(Input::Timeout);
    assert!(Harness::sends(&h.take()).is_empty());
    assert!(
        h.m.poll_timeout().unwrap() > Instant(h.now),
        "the deadline moved on"
    );
}

#[test]
fn a_resume_rejected_because_a_late_refresh_rotated_the_record_resumes_again() {
    let mut h = Harness::guest("u1", "r1");
    h.cmd(Command::Refresh);
    let (refresh, _, _) = Harness::one_send(&h.take());
    h.cmd(Command::SignOut(SignOutOptions::default()));
    h.take();
    h.sign_in();
    let (resume, _, body) = Harness::one_send(&h.take());
    assert_eq!(body, r#"{"refresh_token":"r1"}"#);
    // The late refresh lands first and rotates the record; the resume that
    // presented the old token is then refused.
    h.respond(refresh, 200, &tokens("u1", "r2", None));
    h.take();
    h.respond(resume, 401, r#"{"code":"invalid_refresh_token"}"#);
    let (again, p, body) = Harness::one_send(&h.take());
    assert_eq!(
        (p, body),
        (path("refresh"), r#"{"refresh_token":"r2"}"#.to_string())
    );
    h.respond(again, 200, &tokens("u1", "r3", None));
    assert_eq!(
        h.m.session().unwrap().user.id,
        "u1",
        "the same guest, not a new one"
    );
}

#[test]
fn an_upgrade_reply_naming_another_user_is_not_applied() {
    let mut h = Harness::guest("u1", "r1");
    let id = h.upgrade_answered(
        r#"{"status":"updated","user":{"id":"u2","email":"a@b.c","is_anonymous":false}}"#,
    );
    assert_eq!(h.take(), [done_err(id, "invalid_response")]);
    assert!(h.m.session().unwrap().is_anonymous());
}

// ----- field safety (docs/protocol.md §13) --------------------------------

#[test]
fn a_resume_that_answers_with_a_named_account_never_completes_the_guest_sign_in() {
    // Guest u1 upgraded; the email was confirmed on another device; soft
    // sign-out; the next visitor's anonymous sign-in resumes the record.
    let mut h = Harness::guest("u1", "r1");
    let id = h.upgrade_answered(r#"{"status":"confirmation_required","email":"a@b.c"}"#);
    assert!(h.take().contains(&done_ok(id, "confirm a@b.c")));
    h.cmd(Command::SignOut(SignOutOptions::default()));
    h.take();
    let id = h.sign_in();
    let (req, _, body) = Harness::one_send(&h.take());
    assert_eq!(body, r#"{"refresh_token":"r1"}"#);
    // The backend now says the account is named.
    let named = tokens("u1", "r2", Some(("u1", Some("a@b.c"), false)));
    h.respond(req, 200, &named);
    let log = h.take();
    // The guest record is forgotten first (it opens a named account now) ...
    assert_eq!(
        log[0],
        Rec::Remove(Harness::key(RecordKey::AnonRefreshToken))
    );
    assert_eq!(h.stored(RecordKey::AnonRefreshToken), None);
    // ... the named session the resume minted is revoked with its own bearer ...
    let sends: Vec<_> = log
        .iter()
        .filter_map(|r| match r {
            Rec::Send { path, headers, .. } => Some((path.clone(), headers.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 2, "{log:#?}");
    assert_eq!(sends[0].0, path("signout"));
    let named_access = jwt("u1", Some("a@b.c"), false);
    assert!(
        sends[0]
            .1
            .contains(&("Authorization".into(), format!("Bearer {named_access}")))
    );
    // ... and a new guest is created, with a notice for the application.
    assert_eq!(sends[1].0, path("anonymous/signin"));
    assert!(log.contains(&Rec::Notice(Notice::GuestAccountClaimed)));
    assert!(
        !log.iter()
            .any(|r| matches!(r, Rec::Done(..) | Rec::Event(..))),
        "nothing completes with the named account: {log:#?}"
    );
    assert_eq!(h.stored(RecordKey::Session), None);
    let create = Harness::sends(&log)[1].0;
    h.respond(create, 200, &tokens("u9", "r9", Some(("u9", None, true))));
    let log = h.take();
    assert!(log.contains(&Rec::Event(AuthChange::SignedIn, Some("u9".into()))));
    assert!(log.contains(&done_ok(id, "session u9")));
    assert_eq!(h.stored(RecordKey::AnonRefreshToken).as_deref(), Some("r9"));
    assert!(h.m.session().unwrap().is_anonymous());
}

#[test]
fn a_store_that_cannot_be_written_refuses_the_refresh_before_any_token_is_spent() {
    let mut h = Harness::guest("u1", "r1");
    h.fail_writes.push(RecordKey::AnonRefreshToken);
    let id = h.cmd(Command::Refresh);
    let log = h.take();
    assert!(
        Harness::sends(&log).is_empty(),
        "no request: the rotated token could not be saved: {log:#?}"
    );
    assert_eq!(h.verified, [Harness::key(RecordKey::AnonRefreshToken)]);
    assert!(log.contains(&done_err(id, "storage_failed")));
    assert!(log.contains(&Rec::Notice(Notice::StorageFailed {
        key: RecordKey::AnonRefreshToken
    })));
    // The records are as they were, and the session is kept.
    assert_eq!(h.stored(RecordKey::AnonRefreshToken).as_deref(), Some("r1"));
    assert_eq!(h.m.session().unwrap().refresh_token.expose(), "r1");
    // Once the store works again, the refresh goes out behind a proof.
    h.fail_writes.clear();
    h.verified.clear();
    h.cmd(Command::Refresh);
    let (_, p, body) = Harness::one_send(&h.take());
    assert_eq!(
        (p, body),
        (path("refresh"), r#"{"refresh_token":"r1"}"#.into())
    );
    assert_eq!(h.verified, [Harness::key(RecordKey::AnonRefreshToken)]);
}

#[test]
fn a_stale_token_request_on_a_full_store_is_refused_with_nothing_spent() {
    let mut h = Harness::guest("u1", "r1");
    h.now += 3_600_000; // expired
    h.fail_writes.push(RecordKey::AnonRefreshToken);
    let id = h.cmd(Command::AccessToken);
    let log = h.take();
    assert!(Harness::sends(&log).is_empty(), "{log:#?}");
    assert!(log.contains(&done_err(id, "storage_failed")));
}

#[test]
fn a_resume_on_a_read_only_store_is_refused_with_nothing_spent() {
    let mut h = Harness::guest("u1", "r1");
    h.cmd(Command::SignOut(SignOutOptions::default()));
    h.take();
    h.fail_writes.push(RecordKey::AnonRefreshToken);
    let id = h.sign_in();
    let log = h.take();
    assert!(Harness::sends(&log).is_empty(), "{log:#?}");
    assert!(log.contains(&done_err(id, "storage_failed")));
    assert_eq!(h.stored(RecordKey::AnonRefreshToken).as_deref(), Some("r1"));
    assert!(h.m.has_resumable_anonymous());
}

#[test]
fn a_captive_portal_401_keeps_both_records() {
    // An HTML 401 from a proxy: transient, not "dead".
    let mut h = Harness::guest("u1", "r1");
    let id = h.cmd(Command::Refresh);
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond_plain(
        req,
        401,
        b"<html>Please log in to the hotel Wi-Fi</html>",
        "Unauthorized",
    );
    let log = h.take();
    assert!(!log.iter().any(|r| matches!(r, Rec::Remove(_))), "{log:#?}");
    assert!(log.contains(&done_err(id, "http_401")));
    assert_eq!(h.stored(RecordKey::AnonRefreshToken).as_deref(), Some("r1"));
    assert!(h.stored(RecordKey::Session).is_some());
    assert!(h.m.session().is_some());

    // The same on a resume: the guest record stays, no new guest is minted.
    h.cmd(Command::SignOut(SignOutOptions::default()));
    h.take();
    let id = h.sign_in();
    let (req, _, _) = Harness::one_send(&h.take());
    h.input(Input::Response(
        req,
        Response::json(401, br#"{"portal":"login required"}"#),
    ));
    let log = h.take();
    assert!(Harness::sends(&log).is_empty(), "{log:#?}");
    assert!(log.contains(&done_err(id, "http_401")));
    assert_eq!(h.stored(RecordKey::AnonRefreshToken).as_deref(), Some("r1"));
}

#[test]
fn a_redirect_is_an_error_that_says_so_and_spends_nothing_locally() {
    let mut h = Harness::guest("u1", "r1");
    let id = h.cmd(Command::Refresh);
    let (req, _, _) = Harness::one_send(&h.take());
    h.respond_plain(req, 307, b"", "Temporary Redirect");
    let log = h.take();
    assert!(log.contains(&done_err(id, "redirect_refused")));
    assert!(!log.iter().any(|r| matches!(r, Rec::Remove(_))));
    assert_eq!(h.stored(RecordKey::AnonRefreshToken).as_deref(), Some("r1"));
}

#[test]
fn a_hard_sign_out_reports_a_revocation_the_server_did_not_confirm() {
    for (answer, expected) in [
        (Ok((503, "")), "signed out unrevoked http_503"),
        (
            Ok((429, r#"{"code":"rate_limited"}"#)),
            "signed out unrevoked rate_limited",
        ),
        (Ok((403, "")), "signed out unrevoked http_403"),
        (
            Err(TransportError::ConnectionLost),
            "signed out unrevoked network_error",
        ),
        (
            Err(TransportError::Timeout),
            "signed out unrevoked network_error",
        ),
        (Ok((200, r#"{"ok":true}"#)), "signed out revoked"),
    ] {
        let mut h = Harness::guest("u1", "r1");
        let id = h.cmd(Command::SignOut(SignOutOptions {
            forget_anonymous: true,
        }));
        let log = h.take();
        // Local effects happen at once, whatever the server says.
        assert!(log.contains(&Rec::Event(AuthChange::SignedOut, None)));
        assert_eq!(h.stored(RecordKey::AnonRefreshToken), None);
        let (req, p, _) = Harness::one_send(&log);
        assert_eq!(p, path("signout"));
        match answer {
            Ok((status, body)) => h.respond(req, status, body),
            Err(e) => h.fail(req, e),
        }
        assert_eq!(h.take(), [done_ok(id, expected)], "{expected}");
    }
    // A soft sign-out of a guest needs no revocation and says so.
    let mut h = Harness::guest("u1", "r1");
    let id = h.cmd(Command::SignOut(SignOutOptions::default()));
    let log = h.take();
    assert!(Harness::sends(&log).is_empty());
    assert!(log.contains(&done_ok(id, "signed out")));
}
