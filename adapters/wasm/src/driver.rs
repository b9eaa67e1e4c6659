//! The driver loop: one [`Machine`] in an `Rc<RefCell<…>>`, fed one input at
//! a time, its outputs performed in order.
//!
//! - **Inputs queue.** Every input (a JS call, a fetch result, a storage
//!   change, the timer) is pushed onto `queue` and [`pump`] feeds them in
//!   arrival order. While the machine waits for a storage acknowledgement,
//!   is being restored, or a pump is already running further up the stack
//!   (a listener calling back into the client), inputs only queue: the core
//!   refuses them meanwhile, and feeding them later keeps the order.
//! - **Drain, then act.** Outputs are drained under the borrow into plain
//!   [`Effect`]s; user code (listeners, `fetch`, the storage adapter) only
//!   ever runs after the borrow is released, so it may call the client again.
//! - **Storage stalls.** A store is performed (awaited if the adapter returns
//!   a Promise) and acknowledged before anything queued behind it is
//!   drained, so no promise resolves and no event fires before the write
//!   that backs it is done.
//! - **One value per session.** A session is rendered to a JS object once
//!   (from the very string written to storage, when it was just stored) and
//!   that object is shared by the event, every joined caller and the
//!   synchronous getters until the session changes, so identity is stable.
//! - **One call per fan-out.** The listener list, `fetch` and the timer live
//!   in the JS `Host`; an event is one call, whatever the listener count.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use js_sys::Function;
use paywall_auth::{
    AuthChange, CommandId, Error, Instant, Machine, Notice, Outcome, Output, RecordKey,
    RecordValue, Request, RequestId, Response, Session, StorageError, StoreFormat, StoreId,
    StoreOp, TransportError,
};
use wasm_bindgen::prelude::*;

use crate::buf;
use crate::js::{self, Errors, Host, StorageAdapter};

pub type Shared = Rc<RefCell<Driver>>;

/// The global visitor id record (docs/protocol.md §6.2); read, never written.
const VISITOR_ID_KEY: &str = "pw-visitor-id";

/// How a completion is presented to the JS caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The session object.
    Session,
    /// `{kind: 'updated', session} | {kind: 'confirmation_required', email}`.
    Upgrade,
    /// `undefined`.
    SignOut,
    /// The session object, or `null` when there is none any more.
    Refresh,
    /// The access token string, or `null`.
    AccessToken,
}

struct Waiter {
    id: CommandId,
    reply: Reply,
    resolve: Function,
    reject: Function,
}

/// An input waiting for its turn.
pub enum Pending {
    Command {
        command: Box<paywall_auth::Command>,
        reply: Reply,
        resolve: Function,
        reject: Function,
    },
    Response {
        id: RequestId,
        status: u16,
        /// `statusText` (`""` when absent or not a string).
        status_text: String,
        json: bool,
        body: Vec<u8>,
    },
    Transport {
        id: RequestId,
        error: TransportError,
        /// Why, when the adapter knows better than the core's generic text
        /// (a refused redirect).
        note: Option<String>,
    },
    External {
        key: RecordKey,
        value: Option<String>,
    },
    Timeout,
    /// Deliver `INITIAL_SESSION` to a new listener.
    Initial(u32),
    /// Re-read a record before the command queued behind it, when there is
    /// no session (docs/protocol.md §6.4 "pull"): another tab or process may
    /// have signed in, or rotated the guest record, without a `watch`
    /// callback telling us (storages without `watch`, or a missed event).
    Pull(RecordKey),
}

/// Something to do once the borrow is released.
enum Effect {
    Send {
        id: RequestId,
        /// Why it could not be rendered, when it could not.
        target: Result<Target, &'static str>,
    },
    Emit {
        event: &'static str,
        session: JsValue,
    },
    Settle {
        callback: Function,
        value: JsValue,
    },
    /// Settles the callers the host attached to a sign-in in flight.
    Joined {
        ok: bool,
        value: JsValue,
    },
    Warn(&'static str),
}

/// A rendered request as one string (see `Host::send`): one string
/// crosses into JS once, where four cost four UTF-8 decodes.
struct Target {
    text: String,
    headers: u32,
}

enum Write {
    /// The value as a JS string (rendered once: the same string is written
    /// and, for a session, parsed into the session object).
    Set(JsValue),
    Remove,
    /// The record could not be encoded; acknowledged as a failed write.
    Unencodable,
}

struct StoreJob {
    id: StoreId,
    key: RecordKey,
    write: Write,
}

/// The session object JS holds, and the session it renders.
enum View {
    /// JS holds `undefined` (asks `syncSession` when it needs one).
    Stale,
    /// JS holds `null`.
    Empty,
    /// JS holds this object, rendered from the session with this
    /// [`Session::fingerprint`] (a copy would move a 16 KiB token buffer
    /// byte by byte on every change).
    Shown(u64, JsValue),
}

pub struct Driver {
    machine: Machine,
    origin: String,
    /// Storage keys of [`RecordKey::Session`] and [`RecordKey::AnonRefreshToken`],
    /// and the visitor id's, as JS strings ([`storage_keys`]).
    keys: [JsValue; 3],
    storage: StorageAdapter,
    pub host: Host,
    pub errors: Errors,
    queue: VecDeque<Pending>,
    waiters: Vec<Waiter>,
    ready_waiters: Vec<Function>,
    restoring: bool,
    /// An asynchronous pull is reading storage; the queue waits for it.
    pulling: bool,
    pumping: bool,
    storing: bool,
    pub destroyed: bool,
    /// The deadline the host was last told (see `arm_timer`).
    timer: Option<u64>,
    scratch: Vec<u8>,
    view: View,
    /// What the host was last told: `fresh_until` (ms), readiness, and
    /// whether a plain sign-in joins the one in flight.
    told: (u64, bool, bool),
    /// The sign-in the host may attach plain `signInAnonymously()` calls
    /// to (`Machine::sign_in_joins`, published by `tell_host`); its
    /// completion settles them too.
    joined: Option<paywall_auth::CommandId>,
    /// Counts inputs from outside (answers, storage, timer): a pull is
    /// skipped when the same record was already pulled in this turn (100
    /// joined calls read storage once, not 100 times).
    turn: u32,
    pulled: [u32; 2],
    /// The refused redirect behind the input being fed, for its error text.
    note: Option<String>,
    unwatch: Vec<Function>,
}

fn now() -> Instant {
    Instant(js_sys::Date::now() as u64)
}

/// The storage keys of a paywall ([`Driver::keys`]) as JS strings: taken
/// from `cache` when an earlier client left them there, else made (and left
/// there). A Rust string handed to JS is decoded anew every time; for the
/// three keys that was a tenth of a construction. `None`: the paywall id is
/// too long for a key.
pub fn storage_keys(paywall_id: &str, cache: Option<&js_sys::Array>) -> Option<[JsValue; 3]> {
    if let Some(cache) = cache
        && cache.length() == 3
    {
        return Some([cache.get(0), cache.get(1), cache.get(2)]);
    }
    let key = |k: RecordKey| {
        k.storage_key(paywall_id)
            .ok()
            .map(|s| JsValue::from_str(s.as_str()))
    };
    let keys = [
        key(RecordKey::Session)?,
        key(RecordKey::AnonRefreshToken)?,
        JsValue::from_str(VISITOR_ID_KEY),
    ];
    if let Some(cache) = cache {
        for k in &keys {
            cache.push(k);
        }
    }
    Some(keys)
}

fn key_index(key: RecordKey) -> usize {
    match key {
        RecordKey::Session => 0,
        RecordKey::AnonRefreshToken => 1,
    }
}

impl Driver {
    pub fn new(
        machine: Machine,
        origin: String,
        keys: [JsValue; 3],
        storage: StorageAdapter,
        host: Host,
        errors: Errors,
    ) -> Shared {
        Rc::new(RefCell::new(Driver {
            machine,
            origin,
            keys,
            storage,
            host,
            errors,
            queue: VecDeque::new(),
            waiters: Vec::new(),
            ready_waiters: Vec::new(),
            restoring: true,
            pulling: false,
            pumping: false,
            storing: false,
            destroyed: false,
            timer: None,
            scratch: Vec::new(),
            view: View::Stale,
            told: (0, false, false),
            joined: None,
            turn: 0,
            pulled: [u32::MAX; 2],
            note: None,
            unwatch: Vec::new(),
        }))
    }

    fn storage(&self) -> StorageAdapter {
        JsValue::clone(&self.storage).unchecked_into()
    }

    /// Resolves `callback` once storage has been restored.
    pub fn when_ready(&mut self, callback: Function) -> Option<Function> {
        if self.machine.is_ready() {
            return Some(callback);
        }
        self.ready_waiters.push(callback);
        None
    }

    /// Queues a new listener's `INITIAL_SESSION` behind every input already
    /// waiting, so it is the first thing it hears.
    pub fn subscribe(&mut self, listener: u32) {
        self.queue.push_back(Pending::Initial(listener));
    }

    pub fn enqueue(&mut self, input: Pending) {
        if matches!(input, Pending::Command { .. } | Pending::Pull(_)) {
            // A call from JS: client.js stopped attaching sign-ins itself
            // before making it (`Host.join` is false until told again).
            self.told.2 = false;
        } else {
            self.turn = self.turn.wrapping_add(1);
        }
        self.queue.push_back(input);
        // The host may not answer from its cache while an input waits.
        self.told.0 = 0;
    }

    /// Tells the host what its synchronous getters may answer: the session
    /// object, and until when the core would answer `getAccessToken` from
    /// it (0 while inputs wait, so the cache never overtakes the queue).
    /// `render`: render the session if JS has none (it asked for it).
    fn tell_host(&mut self, render: bool) {
        let idle = self.queue.is_empty()
            && !self.storing
            && !self.pulling
            && !self.restoring
            && !self.destroyed;
        let ready = self.machine.is_ready();
        let leeway = self.machine.config().leeway.as_millis();
        // A plain sign-in joins the one in flight: the host may attach such
        // calls itself while nothing else waits, and only after this turn's
        // read of the guest record (which the full path would do first).
        let join = self
            .machine
            .sign_in_joins()
            .filter(|_| idle && self.pulled.get(1) == Some(&self.turn));
        if join.is_some() {
            self.joined = join;
        }
        let Driver {
            machine,
            view,
            scratch,
            told,
            host,
            ..
        } = self;
        let session = machine.session();
        let changed = match (session, &*view) {
            (None, View::Empty) => false,
            (None, _) => {
                *view = View::Empty;
                true
            }
            (Some(s), View::Shown(f, _)) if *f == s.fingerprint() => false,
            (Some(_), View::Stale) if !render => false,
            (Some(s), _) if render => {
                show(view, scratch, s);
                true
            }
            (Some(_), _) => {
                *view = View::Stale;
                true
            }
        };
        let fresh_until = match (session, &*view) {
            (Some(s), View::Shown(..)) if idle => s.fresh_until(leeway).as_millis(),
            _ => 0,
        };
        let join = join.is_some();
        if !changed && *told == (fresh_until, ready, join) {
            return;
        }
        *told = (fresh_until, ready, join);
        let value = match &*view {
            View::Shown(_, v) => v.clone(),
            View::Empty => JsValue::NULL,
            View::Stale => JsValue::UNDEFINED,
        };
        host.state(&value, fresh_until as f64, ready, join);
    }

    /// Renders the current session for the host (its getters found it stale).
    pub fn sync_session(&mut self) {
        self.told = (u64::MAX, false, false); // always answer
        self.tell_host(true);
    }

    /// Drains every output the machine has ready.
    fn drain(&mut self) -> (Vec<Effect>, Option<StoreJob>) {
        let format = self.machine.config().store_format;
        let Driver {
            machine,
            origin,
            scratch,
            ready_waiters,
            waiters,
            errors,
            note,
            view,
            joined,
            ..
        } = self;
        let mut effects = Vec::new();
        let mut store = None;
        while let Some(out) = machine.poll_output() {
            match out {
                Output::Send(req) => effects.push(render_send(&req, origin, scratch)),
                // The machine stalls behind a store: nothing follows it.
                Output::Store(op) => {
                    let job = encode_store(&op, format, scratch);
                    // A session just written is parsed from that very
                    // string: rendered once per change, no second encode.
                    if let (Some(RecordValue::Session(s)), Write::Set(text)) =
                        (&op.value, &job.write)
                        && format == StoreFormat::ReferenceJson
                        && let print = s.fingerprint()
                        && !matches!(view, View::Shown(f, _) if *f == print)
                        && let Ok(value) = js::json_parse(text)
                    {
                        *view = View::Shown(print, value);
                    }
                    store = Some(job);
                }
                Output::AuthChange {
                    change: AuthChange::InitialSession,
                    ..
                } => {
                    // Each listener gets its own INITIAL_SESSION (see
                    // `subscribe`); the core's marks the end of restore.
                    for callback in ready_waiters.drain(..) {
                        effects.push(Effect::Settle {
                            callback,
                            value: JsValue::UNDEFINED,
                        });
                    }
                }
                Output::AuthChange { change, session } => {
                    let session = session.map_or(JsValue::NULL, |s| show(view, scratch, s));
                    effects.push(Effect::Emit {
                        event: change.as_str(),
                        session,
                    });
                }
                Output::Complete { id, result } => {
                    // One value for every joined caller.
                    let mut shared = Shared1::default();
                    let mut ctx = SettleCtx {
                        errors,
                        note: note.as_deref(),
                        view,
                        scratch,
                        shared: &mut shared,
                    };
                    let mut i = 0;
                    while i < waiters.len() {
                        if waiters.get(i).is_some_and(|w| w.id == id) {
                            let w = waiters.remove(i);
                            effects.push(settle(&w, &result, &mut ctx));
                        } else {
                            i += 1;
                        }
                    }
                    // The callers the host attached to this sign-in without
                    // entering wasm (`Machine::sign_in_joins`).
                    if *joined == Some(id) {
                        *joined = None;
                        let (ok, value) = completion_value(Reply::Session, &result, &mut ctx);
                        effects.push(Effect::Joined { ok, value });
                    }
                }
                Output::Notice(Notice::CorruptRecord { .. }) => {
                    effects.push(Effect::Warn(
                        "paywall-auth: ignored a stored auth record that could not be decoded",
                    ));
                }
                Output::Notice(Notice::StorageFailed { .. }) => {
                    effects.push(Effect::Warn(
                        "paywall-auth: storage write failed; it will be retried",
                    ));
                }
                Output::Notice(Notice::GuestAccountClaimed) => {
                    effects.push(Effect::Warn(
                        "paywall-auth: the stored guest account was claimed by an email; a new guest was created",
                    ));
                }
            }
        }
        *note = None;
        (effects, store)
    }

    fn acknowledge(&mut self, id: StoreId, key: RecordKey, ok: bool) {
        let result = if ok {
            Ok(())
        } else {
            Err(StorageError { key })
        };
        let _ = self.machine.handle_stored(now(), id, result);
    }

    /// Tells the host [`Machine::poll_timeout`] when it changed.
    fn arm_timer(&mut self) {
        let want = self.machine.poll_timeout().map(Instant::as_millis);
        if want == self.timer {
            return;
        }
        self.timer = want;
        self.host.timer(want.map_or(-1.0, |at| at as f64));
    }
}

/// The session object JS holds for `session`: the shown one when it
/// renders this very session, else rendered now and shown from then on.
fn show(view: &mut View, scratch: &mut Vec<u8>, session: &Session) -> JsValue {
    let print = session.fingerprint();
    if let View::Shown(shown, value) = view
        && *shown == print
    {
        return value.clone();
    }
    let value = js::session_value(session, scratch);
    *view = View::Shown(print, value.clone());
    value
}

/// The values built for one completion, handed to every joined caller.
#[derive(Default)]
struct Shared1 {
    resolved: Option<(Reply, JsValue)>,
    rejected: Option<JsValue>,
}

struct SettleCtx<'a> {
    errors: &'a Errors,
    note: Option<&'a str>,
    view: &'a mut View,
    scratch: &'a mut Vec<u8>,
    shared: &'a mut Shared1,
}

/// A completion for one waiter.
fn settle(w: &Waiter, result: &Result<Outcome<'_>, Error>, ctx: &mut SettleCtx<'_>) -> Effect {
    let (ok, value) = completion_value(w.reply, result, ctx);
    Effect::Settle {
        callback: if ok { &w.resolve } else { &w.reject }.clone(),
        value,
    }
}

/// What a caller expecting `reply` gets from `result`: `(true, value)` to
/// resolve, `(false, error)` to reject. Built once per completion and kind
/// (`ctx.shared`), whatever the number of callers.
fn completion_value(
    reply: Reply,
    result: &Result<Outcome<'_>, Error>,
    ctx: &mut SettleCtx<'_>,
) -> (bool, JsValue) {
    match result {
        Ok(outcome) => {
            if let Some((shared, value)) = &ctx.shared.resolved
                && *shared == reply
            {
                return (true, value.clone());
            }
            let value = outcome_value(reply, outcome, ctx.view, ctx.scratch);
            ctx.shared.resolved = Some((reply, value.clone()));
            (true, value)
        }
        // `refresh()` resolves `null` when there is no session to refresh
        // or the session died (the core has signed out by then), as the
        // reference client does; other failures reject.
        Err(Error::NotAuthenticated) if reply == Reply::Refresh => (true, JsValue::NULL),
        Err(Error::Api(api)) if reply == Reply::Refresh && api.is_dead_token() => {
            (true, JsValue::NULL)
        }
        Err(e) => {
            let value = match &ctx.shared.rejected {
                Some(v) => v.clone(),
                None => {
                    let v = match (e, ctx.note) {
                        (Error::Network(_), Some(note)) => {
                            ctx.errors.make("network_error", note, None)
                        }
                        _ => ctx.errors.of(e),
                    };
                    ctx.shared.rejected = Some(v.clone());
                    v
                }
            };
            (false, value)
        }
    }
}

fn outcome_value(
    reply: Reply,
    outcome: &Outcome<'_>,
    view: &mut View,
    scratch: &mut Vec<u8>,
) -> JsValue {
    match (reply, outcome) {
        (Reply::Upgrade, Outcome::Upgraded(s)) => {
            let o = js_sys::Object::new();
            js::set(&o, "kind", &JsValue::from_str("updated"));
            js::set(&o, "session", &show(view, scratch, s));
            o.into()
        }
        (Reply::Upgrade, Outcome::ConfirmationRequired { email }) => {
            let o = js_sys::Object::new();
            js::set(&o, "kind", &JsValue::from_str("confirmation_required"));
            js::set(&o, "email", &JsValue::from_str(email));
            o.into()
        }
        (Reply::SignOut, Outcome::SignedOut(revocation)) => {
            // `{ revoked: true | false | null, reason? }`: the reference
            // resolves `undefined`; callers that ignore the value see no
            // difference, callers that care learn whether the server
            // revoked (docs/protocol.md §13.6).
            let o = js_sys::Object::new();
            let revoked = revocation
                .revoked()
                .map_or(JsValue::NULL, JsValue::from_bool);
            js::set(&o, "revoked", &revoked);
            if let paywall_auth::Revocation::Failed { code, message, .. } = revocation {
                // Concatenated, not formatted: no `core::fmt` in the wasm.
                let reason = [code, ": ", message].concat();
                js::set(&o, "reason", &JsValue::from_str(&reason));
            }
            o.into()
        }
        (_, Outcome::Session(s) | Outcome::Upgraded(s)) => show(view, scratch, s),
        (_, Outcome::AccessToken(Some(token))) => JsValue::from_str(token.expose()),
        (Reply::Refresh | Reply::AccessToken | Reply::Session, _) => JsValue::NULL,
        (Reply::SignOut | Reply::Upgrade, _) => JsValue::UNDEFINED,
    }
}

/// Method, URL, headers and body of a request: exactly the core's.
fn render_send(req: &Request<'_>, origin: &str, scratch: &mut Vec<u8>) -> Effect {
    // Beyond the core's capacities: cannot happen.
    const UNRENDERABLE: &str = "request not sent: it does not fit the client's buffers";
    let target = (|| {
        let path = req.path().map_err(|_| UNRENDERABLE)?;
        let body = buf::encode_growing(scratch, |b| req.write_body(b)).map_err(|_| UNRENDERABLE)?;
        let mut text = String::with_capacity(origin.len() + path.len() + body.len() + 256);
        let mut headers = 0;
        text.push_str(req.method());
        text.push('\n');
        text.push_str(origin);
        text.push_str(&path);
        text.push('\n');
        for h in req.headers() {
            // The core's rule for every adapter (a line break would also
            // shift every line after it in `text`): not sent at all.
            if !h.has_valid_value() {
                return Err("request not sent: a header value holds a control character");
            }
            text.push_str(h.name);
            text.push('\n');
            text.push_str(h.prefix);
            text.push_str(h.value);
            text.push('\n');
            headers += 1;
        }
        text.push_str(body);
        Ok(Target { text, headers })
    })();
    Effect::Send { id: req.id, target }
}

fn encode_store(op: &StoreOp<'_>, format: StoreFormat, scratch: &mut Vec<u8>) -> StoreJob {
    let write = match &op.value {
        None => Write::Remove,
        Some(value) => {
            match buf::encode_growing(scratch, |b| value.encode(format, b).map(<[u8]>::len)) {
                Ok(text) => Write::Set(JsValue::from_str(text)),
                Err(_) => Write::Unencodable,
            }
        }
    };
    StoreJob {
        id: op.id,
        key: op.key,
        write,
    }
}

/// Feeds queued inputs and performs outputs until the queue is empty or the
/// machine waits on an asynchronous storage write. Never re-enters: a call
/// from inside a listener only queues, and the running pump picks it up.
pub fn pump(shared: &Shared) {
    {
        let Ok(mut d) = shared.try_borrow_mut() else {
            return;
        };
        if d.pumping || d.storing || d.restoring || d.pulling || d.destroyed {
            return;
        }
        d.pumping = true;
    }
    loop {
        let (effects, store) = {
            let mut d = shared.borrow_mut();
            let drained = d.drain();
            // Listeners reading `getCachedSession()` see what they hear.
            if !drained.0.is_empty() {
                d.tell_host(false);
            }
            drained
        };
        deliver(shared, effects);
        if shared.borrow().destroyed {
            break;
        }
        if let Some(job) = store {
            if store_now(shared, job) {
                continue;
            }
            // The write is asynchronous: its completion resumes the pump.
            shared.borrow_mut().tell_host(false);
            return;
        }
        let next = {
            let mut d = shared.borrow_mut();
            // An asynchronous pull holds the queue until it is read.
            if d.pulling { None } else { d.queue.pop_front() }
        };
        match next {
            Some(input) => feed(shared, input),
            None => break,
        }
    }
    let mut d = shared.borrow_mut();
    d.pumping = false;
    if !d.destroyed {
        d.arm_timer();
        d.tell_host(false);
    }
}

fn feed(shared: &Shared, input: Pending) {
    // The clock is read where an input reaches the core, not for the
    // pulls and listeners that do not (a crossing into JS each).
    let mut d = shared.borrow_mut();
    let refused = match input {
        Pending::Command {
            command,
            reply,
            resolve,
            reject,
        } => match d.machine.handle_command(now(), *command) {
            Ok(id) => {
                d.waiters.push(Waiter {
                    id,
                    reply,
                    resolve,
                    reject,
                });
                None
            }
            Err(_) => Some(reject),
        },
        Pending::Response {
            id,
            status,
            status_text,
            json,
            body,
        } => {
            let response = Response {
                status,
                content_type_json: json,
                body: &body,
                reason: &status_text,
            };
            let _ = d.machine.handle_response(now(), id, response);
            None
        }
        Pending::Transport { id, error, note } => {
            d.note = note;
            let _ = d.machine.handle_transport_error(now(), id, error);
            None
        }
        Pending::External { key, value } => {
            let _ =
                d.machine
                    .handle_external_change(now(), key, value.as_deref().map(str::as_bytes));
            None
        }
        Pending::Timeout => {
            // The host dropped the deadline it fired for: whatever the core
            // wants next is told again, even the same instant.
            d.timer = None;
            let _ = d.machine.handle_timeout(now());
            None
        }
        Pending::Pull(key) => {
            let k = key_index(key);
            if d.machine.session().is_some() || d.pulled.get(k) == Some(&d.turn) {
                return;
            }
            let turn = d.turn;
            if let Some(p) = d.pulled.get_mut(k) {
                *p = turn;
            }
            let name = d.keys.get(k).cloned().unwrap_or(JsValue::UNDEFINED);
            // A read that fails says nothing about the record: it must not
            // pass for "absent" (that would forget the guest record).
            let Ok(read) = d.storage().get_item(&name) else {
                return;
            };
            if js::is_thenable(&read) {
                // Hold the queue: the command behind the pull must see it.
                d.pulling = true;
                let host: Host = JsValue::clone(&d.host).unchecked_into();
                drop(d);
                let weak = Rc::downgrade(shared);
                js::when_settled(&host, &read, move |read| {
                    if let Some(shared) = weak.upgrade() {
                        {
                            let mut d = shared.borrow_mut();
                            d.pulling = false;
                            let value = read.ok().and_then(|v| record_value(&d.host, &v));
                            if let Some(value) = value {
                                d.queue.push_front(Pending::External { key, value });
                            }
                        }
                        pump(&shared);
                    }
                });
                return;
            }
            if let Some(value) = record_value(&d.host, &read) {
                let _ = d.machine.handle_external_change(
                    now(),
                    key,
                    value.as_deref().map(str::as_bytes),
                );
            }
            None
        }
        Pending::Initial(listener) => {
            let Driver {
                machine,
                view,
                scratch,
                host,
                ..
            } = &mut *d;
            let session = machine
                .session()
                .map_or(JsValue::NULL, |s| show(view, scratch, s));
            let host: Host = JsValue::clone(host).unchecked_into();
            drop(d);
            host.initial(listener, &session);
            return;
        }
    };
    if let Some(reject) = refused {
        // Unreachable while the pump keeps the drain invariant; never leave
        // a caller hanging regardless.
        let error = d
            .errors
            .make("busy", "the client was not ready for this call", None);
        drop(d);
        let _ = reject.call1(&JsValue::UNDEFINED, &error);
    }
}

/// What a storage read says about a record: `Some(None)` absent, `Some(text)`
/// present, `None` unusable (not a string: says nothing).
fn record_value(host: &Host, v: &JsValue) -> Option<Option<String>> {
    if v.is_null() || v.is_undefined() {
        Some(None)
    } else {
        js::text(host, v).map(Some)
    }
}

fn deliver(shared: &Shared, effects: Vec<Effect>) {
    if effects.is_empty() {
        return;
    }
    let host: Host = JsValue::clone(&shared.borrow().host).unchecked_into();
    for effect in effects {
        match effect {
            Effect::Settle { callback, value } => {
                let _ = callback.call1(&JsValue::UNDEFINED, &value);
            }
            Effect::Warn(text) => js::console_warn(text),
            _ if shared.borrow().destroyed => {}
            Effect::Send { id, target } => match target {
                Ok(t) => host.send(id.0, &t.text, t.headers),
                // Answered like a request that never left, so the
                // operation ends, saying why.
                Err(why) => shared.borrow_mut().enqueue(Pending::Transport {
                    id,
                    error: TransportError::Connect,
                    note: Some(String::from(why)),
                }),
            },
            Effect::Emit { event, session } => host.emit(event, &session),
            Effect::Joined { ok, value } => host.joined(ok, &value),
        }
    }
}

/// Performs a storage write. Returns `true` when it completed (and was
/// acknowledged) synchronously.
fn store_now(shared: &Shared, job: StoreJob) -> bool {
    let (storage, key, host) = {
        let d = shared.borrow();
        (
            d.storage(),
            d.keys
                .get(key_index(job.key))
                .cloned()
                .unwrap_or(JsValue::UNDEFINED),
            JsValue::clone(&d.host).unchecked_into::<Host>(),
        )
    };
    let called = match &job.write {
        Write::Set(value) => storage.set_item(&key, value),
        Write::Remove => storage.remove_item(&key),
        Write::Unencodable => Err(JsValue::UNDEFINED),
    };
    match called {
        Ok(pending) if js::is_thenable(&pending) => {
            {
                let mut d = shared.borrow_mut();
                d.storing = true;
                d.pumping = false;
            }
            let weak = Rc::downgrade(shared);
            js::when_settled(&host, &pending, move |settled| {
                let ok = settled.is_ok();
                let Some(shared) = weak.upgrade() else { return };
                {
                    let mut d = shared.borrow_mut();
                    d.storing = false;
                    if d.destroyed {
                        return;
                    }
                    d.turn = d.turn.wrapping_add(1);
                    d.acknowledge(job.id, job.key, ok);
                }
                pump(&shared);
            });
            false
        }
        done => {
            shared
                .borrow_mut()
                .acknowledge(job.id, job.key, done.is_ok());
            true
        }
    }
}

/// Queues an input from outside and pumps.
pub fn resume(shared: &Shared, input: Pending) {
    shared.borrow_mut().enqueue(input);
    pump(shared);
}

/// Subscribes to the adapter's `watch` (if any), then reads the records and
/// restores the machine — synchronously when the adapter is synchronous
/// (`localStorage`), so the cached session is there right after `new`.
pub fn start(shared: &Shared, watch: Option<Function>) {
    let (storage, keys, host) = {
        let d = shared.borrow();
        (
            d.storage(),
            d.keys.clone(),
            JsValue::clone(&d.host).unchecked_into::<Host>(),
        )
    };
    if let Some(watch) = watch {
        for key in RecordKey::ALL {
            let weak = Rc::downgrade(shared);
            let on_change = Closure::<dyn FnMut(JsValue)>::new(move |value: JsValue| {
                if (value.is_null() || value.is_undefined() || value.is_string())
                    && let Some(shared) = weak.upgrade()
                {
                    resume(
                        &shared,
                        Pending::External {
                            key,
                            value: value.as_string(),
                        },
                    );
                }
            })
            .into_js_value();
            let Some(name) = keys.get(key_index(key)) else {
                continue;
            };
            if let Ok(unsubscribe) = watch.call2(&storage, name, &on_change)
                && let Some(f) = unsubscribe.dyn_ref::<Function>()
            {
                shared.borrow_mut().unwatch_push(f.clone());
            }
        }
    }
    let reads = keys
        .each_ref()
        .map(|key| storage.get_item(key).unwrap_or(JsValue::NULL));
    if reads.iter().any(js::is_thenable) {
        // Each read settles on its own (a failed one reads as absent); the
        // last one to settle restores.
        type Gathered = RefCell<([Option<String>; 3], usize)>;
        let gathered: Rc<Gathered> = Rc::new(RefCell::new(Default::default()));
        for (i, r) in reads.iter().enumerate() {
            let weak = Rc::downgrade(shared);
            let gathered = Rc::clone(&gathered);
            let h: Host = JsValue::clone(&host).unchecked_into();
            js::when_settled(&host, r, move |read| {
                let values = {
                    let mut g = gathered.borrow_mut();
                    if let Some(slot) = g.0.get_mut(i) {
                        *slot = read.ok().and_then(|v| js::text(&h, &v));
                    }
                    g.1 += 1;
                    if g.1 < g.0.len() {
                        return;
                    }
                    core::mem::take(&mut g.0)
                };
                if let Some(shared) = weak.upgrade() {
                    restored(&shared, &values);
                }
            });
        }
    } else {
        restored(shared, &reads.map(|r| js::text(&host, &r)));
    }
}

fn restored(shared: &Shared, values: &[Option<String>]) {
    {
        let mut d = shared.borrow_mut();
        if d.destroyed {
            return;
        }
        let value = |i: usize| values.get(i).and_then(Option::as_deref);
        let _ = d.machine.handle_restored(
            now(),
            value(0).map(str::as_bytes),
            value(1).map(str::as_bytes),
            value(2),
        );
        d.restoring = false;
        d.turn = d.turn.wrapping_add(1);
    }
    pump(shared);
}

impl Driver {
    fn unwatch_push(&mut self, f: Function) {
        self.unwatch.push(f);
    }
}

/// How a client ends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `destroy()`: the object stays, and its cached session readable.
    Destroy,
    /// `free()` or collection: nothing can read the host's caches again.
    Free,
}

/// Stops everything: timer, watches, listeners; pending calls reject with
/// `aborted`, and nothing is written to storage any more.
pub fn destroy(shared: &Shared, end: End) {
    let (waiters, queue, unwatch, ready, errors, host, joined) = {
        let Ok(mut d) = shared.try_borrow_mut() else {
            return;
        };
        if d.destroyed {
            return;
        }
        d.destroyed = true;
        if d.timer.take().is_some() {
            d.host.timer(-1.0);
        }
        let host: Host = JsValue::clone(&d.host).unchecked_into();
        (
            core::mem::take(&mut d.waiters),
            core::mem::take(&mut d.queue),
            core::mem::take(&mut d.unwatch),
            core::mem::take(&mut d.ready_waiters),
            d.errors.clone(),
            host,
            d.joined.take().is_some(),
        )
    };
    // The session stays readable; the token cache does not answer any more.
    if end == End::Destroy {
        host.state(&JsValue::UNDEFINED, 0.0, true, false);
    }
    for f in unwatch {
        let _ = f.call0(&JsValue::UNDEFINED);
    }
    let rejects: Vec<Function> = waiters
        .into_iter()
        .map(|w| w.reject)
        .chain(queue.into_iter().filter_map(|input| match input {
            Pending::Command { reject, .. } => Some(reject),
            _ => None,
        }))
        .collect();
    // An Error (with its stack trace) only when someone will see it.
    if !rejects.is_empty() || joined {
        let error = errors.make("aborted", "the client was destroyed", None);
        for reject in rejects {
            let _ = reject.call1(&JsValue::UNDEFINED, &error);
        }
        // The calls the host attached to the sign-in in flight (a no-op
        // when client.js settled them first).
        if joined {
            host.joined(false, &error);
        }
    }
    for f in ready {
        let _ = f.call0(&JsValue::UNDEFINED);
    }
}
