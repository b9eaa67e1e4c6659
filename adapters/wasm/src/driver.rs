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
//! - **Completions fan out.** Each JS call registers a waiter under the
//!   [`CommandId`] the core returned; commands the core collapsed share an
//!   id, so one completion settles them all.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use js_sys::{Function, Object, Promise, Uint8Array};
use paywall_auth::{
    AuthChange, CommandId, Error, Instant, Machine, Notice, Outcome, Output, RecordKey, Request,
    RequestId, Response, StorageError, StoreFormat, StoreId, StoreOp, TransportError,
};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};

use crate::buf;
use crate::js::{self, Errors, FetchHeaders, FetchResponse, StorageAdapter};

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

struct Listener {
    id: u32,
    callback: Function,
    /// Has had its `INITIAL_SESSION`; only live listeners hear transitions.
    live: bool,
}

/// Something to do once the borrow is released.
enum Effect {
    Send {
        id: RequestId,
        target: Option<(String, Object)>,
    },
    Emit {
        event: &'static str,
        session: JsValue,
    },
    Settle {
        callback: Function,
        value: JsValue,
    },
    Warn(&'static str),
}

enum Write {
    Set(String),
    Remove,
    /// The record could not be encoded; acknowledged as a failed write.
    Unencodable,
}

struct StoreJob {
    id: StoreId,
    key: RecordKey,
    write: Write,
}

pub struct Driver {
    machine: Machine,
    origin: String,
    /// Storage keys of [`RecordKey::Session`] and [`RecordKey::AnonRefreshToken`].
    keys: [String; 2],
    storage: StorageAdapter,
    fetch: Function,
    pub errors: Errors,
    queue: VecDeque<Pending>,
    waiters: Vec<Waiter>,
    listeners: Vec<Listener>,
    next_listener: u32,
    ready_waiters: Vec<Function>,
    restoring: bool,
    /// An asynchronous pull is reading storage; the queue waits for it.
    pulling: bool,
    pumping: bool,
    storing: bool,
    pub destroyed: bool,
    timer: Option<(JsValue, u64)>,
    timer_callback: Option<Closure<dyn FnMut()>>,
    unwatch: Vec<Function>,
    scratch: Vec<u8>,
}

fn now() -> Instant {
    Instant(js_sys::Date::now() as u64)
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
        keys: [String; 2],
        storage: StorageAdapter,
        fetch: Function,
        errors: Errors,
    ) -> Shared {
        let shared = Rc::new(RefCell::new(Driver {
            machine,
            origin,
            keys,
            storage,
            fetch,
            errors,
            queue: VecDeque::new(),
            waiters: Vec::new(),
            listeners: Vec::new(),
            next_listener: 1,
            ready_waiters: Vec::new(),
            restoring: true,
            pulling: false,
            pumping: false,
            storing: false,
            destroyed: false,
            timer: None,
            timer_callback: None,
            unwatch: Vec::new(),
            scratch: Vec::new(),
        }));
        let weak = Rc::downgrade(&shared);
        let on_timer = Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = weak.upgrade() {
                {
                    let mut d = shared.borrow_mut();
                    d.timer = None;
                    d.queue.push_back(Pending::Timeout);
                }
                pump(&shared);
            }
        });
        shared.borrow_mut().timer_callback = Some(on_timer);
        shared
    }

    fn storage(&self) -> StorageAdapter {
        JsValue::clone(&self.storage).unchecked_into()
    }

    pub fn scratch(&mut self) -> (&Machine, &mut Vec<u8>) {
        (&self.machine, &mut self.scratch)
    }

    /// Resolves `callback` once storage has been restored.
    pub fn when_ready(&mut self, callback: Function) -> Option<Function> {
        if self.machine.is_ready() {
            return Some(callback);
        }
        self.ready_waiters.push(callback);
        None
    }

    /// Registers a listener; its `INITIAL_SESSION` is queued behind every
    /// input already waiting, so it is the first thing it hears.
    pub fn subscribe(&mut self, callback: Function) -> u32 {
        let id = self.next_listener;
        self.next_listener = self.next_listener.wrapping_add(1);
        self.listeners.push(Listener {
            id,
            callback,
            live: false,
        });
        self.queue.push_back(Pending::Initial(id));
        id
    }

    pub fn unsubscribe(&mut self, id: u32) {
        self.listeners.retain(|l| l.id != id);
    }

    pub fn enqueue(&mut self, input: Pending) {
        self.queue.push_back(input);
    }

    /// Drains every output the machine has ready.
    fn drain(&mut self) -> (Vec<Effect>, Option<StoreJob>) {
        let Driver {
            machine,
            origin,
            waiters,
            errors,
            scratch,
            ready_waiters,
            ..
        } = self;
        let format = machine.config().store_format;
        let mut effects = Vec::new();
        let mut store = None;
        while let Some(out) = machine.poll_output() {
            match out {
                Output::Send(req) => effects.push(render_send(&req, origin, scratch)),
                // The machine stalls behind a store: nothing follows it.
                Output::Store(op) => store = Some(encode_store(&op, format, scratch)),
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
                    let session = session.map_or(JsValue::NULL, |s| js::session_value(s, scratch));
                    effects.push(Effect::Emit {
                        event: change.as_str(),
                        session,
                    });
                }
                Output::Complete { id, result } => {
                    let mut i = 0;
                    while i < waiters.len() {
                        if waiters.get(i).is_some_and(|w| w.id == id) {
                            let w = waiters.remove(i);
                            effects.push(settle(&w, &result, errors, scratch));
                        } else {
                            i += 1;
                        }
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

    /// (Re-)arms the one `setTimeout` for [`Machine::poll_timeout`].
    fn arm_timer(&mut self) {
        let want = self.machine.poll_timeout().map(Instant::as_millis);
        if want == self.timer.as_ref().map(|(_, at)| *at) {
            return;
        }
        if let Some((handle, _)) = self.timer.take() {
            js::clear_timeout(&handle);
        }
        if let (Some(at), Some(callback)) = (want, &self.timer_callback) {
            let handle =
                js::set_timeout(callback.as_ref(), buf::timer_delay(at, now().as_millis()));
            // Under Node, a refresh an hour away must not keep the process
            // alive; browsers have no `unref` and need none.
            if let Some(unref) = js::prop(&handle, "unref").dyn_ref::<Function>() {
                let _ = unref.call0(&handle);
            }
            self.timer = Some((handle, at));
        }
    }
}

/// A completion for one waiter.
fn settle(
    w: &Waiter,
    result: &Result<Outcome<'_>, Error>,
    errors: &Errors,
    scratch: &mut Vec<u8>,
) -> Effect {
    match result {
        Ok(outcome) => Effect::Settle {
            callback: w.resolve.clone(),
            value: outcome_value(w.reply, outcome, scratch),
        },
        // `refresh()` resolves `null` when there is no session to refresh
        // or the session died (the core has signed out by then), as the
        // reference client does; other failures reject.
        Err(Error::NotAuthenticated) if w.reply == Reply::Refresh => Effect::Settle {
            callback: w.resolve.clone(),
            value: JsValue::NULL,
        },
        Err(Error::Api(api)) if w.reply == Reply::Refresh && api.is_dead_token() => {
            Effect::Settle {
                callback: w.resolve.clone(),
                value: JsValue::NULL,
            }
        }
        Err(e) => Effect::Settle {
            callback: w.reject.clone(),
            value: errors.of(e),
        },
    }
}

fn outcome_value(reply: Reply, outcome: &Outcome<'_>, scratch: &mut Vec<u8>) -> JsValue {
    match (reply, outcome) {
        (Reply::Upgrade, Outcome::Upgraded(s)) => {
            let o = Object::new();
            js::set(&o, "kind", &JsValue::from_str("updated"));
            js::set(&o, "session", &js::session_value(s, scratch));
            o.into()
        }
        (Reply::Upgrade, Outcome::ConfirmationRequired { email }) => {
            let o = Object::new();
            js::set(&o, "kind", &JsValue::from_str("confirmation_required"));
            js::set(&o, "email", &JsValue::from_str(email));
            o.into()
        }
        (_, Outcome::Session(s) | Outcome::Upgraded(s)) => js::session_value(s, scratch),
        (_, Outcome::AccessToken(Some(token))) => JsValue::from_str(token.expose()),
        (Reply::Refresh | Reply::AccessToken | Reply::Session, _) => JsValue::NULL,
        (Reply::SignOut | Reply::Upgrade, _) => JsValue::UNDEFINED,
    }
}

/// URL and `fetch` init of a request: exactly the core's method, headers
/// and body, cookies omitted (docs/protocol.md §1.2).
fn render_send(req: &Request<'_>, origin: &str, scratch: &mut Vec<u8>) -> Effect {
    let target = (|| {
        let path = req.path().ok()?;
        let init = Object::new();
        js::set(&init, "method", &JsValue::from_str(req.method()));
        let headers = Object::new();
        for h in req.headers() {
            let mut value = String::with_capacity(h.prefix.len() + h.value.len());
            value.push_str(h.prefix);
            value.push_str(h.value);
            js::set(&headers, h.name, &JsValue::from_str(&value));
        }
        js::set(&init, "headers", &headers);
        js::set(&init, "credentials", &JsValue::from_str("omit"));
        let body = buf::encode_growing(scratch, |b| req.write_body(b)).ok()?;
        if !body.is_empty() {
            js::set(&init, "body", &JsValue::from_str(body));
        }
        let mut url = String::with_capacity(origin.len() + path.len());
        url.push_str(origin);
        url.push_str(&path);
        Some((url, init))
    })();
    Effect::Send { id: req.id, target }
}

fn encode_store(op: &StoreOp<'_>, format: StoreFormat, scratch: &mut Vec<u8>) -> StoreJob {
    let write = match &op.value {
        None => Write::Remove,
        Some(value) => {
            match buf::encode_growing(scratch, |b| value.encode(format, b).map(<[u8]>::len)) {
                Ok(text) => Write::Set(text.to_owned()),
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
        let (effects, store) = shared.borrow_mut().drain();
        deliver(shared, effects);
        if shared.borrow().destroyed {
            break;
        }
        if let Some(job) = store {
            if store_now(shared, job) {
                continue;
            }
            // The write is asynchronous: its completion resumes the pump.
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
    }
}

fn feed(shared: &Shared, input: Pending) {
    let t = now();
    let mut d = shared.borrow_mut();
    let refused = match input {
        Pending::Command {
            command,
            reply,
            resolve,
            reject,
        } => match d.machine.handle_command(t, *command) {
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
            let _ = d.machine.handle_response(t, id, response);
            None
        }
        Pending::Transport { id, error } => {
            let _ = d.machine.handle_transport_error(t, id, error);
            None
        }
        Pending::External { key, value } => {
            let _ = d
                .machine
                .handle_external_change(t, key, value.as_deref().map(str::as_bytes));
            None
        }
        Pending::Timeout => {
            let _ = d.machine.handle_timeout(t);
            None
        }
        Pending::Pull(key) => {
            if d.machine.session().is_some() {
                return;
            }
            let name = d.keys.get(key_index(key)).cloned().unwrap_or_default();
            // A read that fails says nothing about the record: it must not
            // pass for "absent" (that would forget the guest record).
            let Ok(read) = d.storage().get_item(&name) else {
                return;
            };
            if js::is_thenable(&read) {
                // Hold the queue: the command behind the pull must see it.
                d.pulling = true;
                drop(d);
                let weak = Rc::downgrade(shared);
                spawn_local(async move {
                    let read = JsFuture::from(Promise::resolve(&read)).await;
                    if let Some(shared) = weak.upgrade() {
                        {
                            let mut d = shared.borrow_mut();
                            d.pulling = false;
                            if let Some(value) = read.ok().and_then(|v| record_value(&v)) {
                                d.queue.push_front(Pending::External { key, value });
                            }
                        }
                        pump(&shared);
                    }
                });
                return;
            }
            if let Some(value) = record_value(&read) {
                let _ =
                    d.machine
                        .handle_external_change(t, key, value.as_deref().map(str::as_bytes));
            }
            None
        }
        Pending::Initial(listener) => {
            let Driver {
                listeners,
                machine,
                scratch,
                ..
            } = &mut *d;
            let Some(l) = listeners.iter_mut().find(|l| l.id == listener && !l.live) else {
                return;
            };
            l.live = true;
            let callback = l.callback.clone();
            let session = machine
                .session()
                .map_or(JsValue::NULL, |s| js::session_value(s, scratch));
            drop(d);
            call_listener(&callback, "INITIAL_SESSION", &session);
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
fn record_value(v: &JsValue) -> Option<Option<String>> {
    if v.is_null() || v.is_undefined() {
        Some(None)
    } else {
        v.as_string().map(Some)
    }
}

fn deliver(shared: &Shared, effects: Vec<Effect>) {
    for effect in effects {
        match effect {
            Effect::Settle { callback, value } => {
                let _ = callback.call1(&JsValue::UNDEFINED, &value);
            }
            Effect::Warn(text) => js::console_warn(text),
            _ if shared.borrow().destroyed => {}
            Effect::Send { id, target } => start_fetch(shared, id, target),
            Effect::Emit { event, session } => emit(shared, event, &session),
        }
    }
}

/// Calls every live listener registered when the emit began, in
/// subscription order, skipping those removed meanwhile.
fn emit(shared: &Shared, event: &'static str, session: &JsValue) {
    let ids: Vec<u32> = shared
        .borrow()
        .listeners
        .iter()
        .filter(|l| l.live)
        .map(|l| l.id)
        .collect();
    for id in ids {
        let callback = {
            let d = shared.borrow();
            if d.destroyed {
                return;
            }
            d.listeners
                .iter()
                .find(|l| l.id == id && l.live)
                .map(|l| l.callback.clone())
        };
        if let Some(callback) = callback {
            call_listener(&callback, event, session);
        }
    }
}

fn call_listener(callback: &Function, event: &str, session: &JsValue) {
    if let Err(e) = callback.call2(&JsValue::UNDEFINED, &JsValue::from_str(event), session) {
        js::console_error("paywall-auth: an onAuthChange listener threw", &e);
    }
}

/// Performs a storage write. Returns `true` when it completed (and was
/// acknowledged) synchronously.
fn store_now(shared: &Shared, job: StoreJob) -> bool {
    let (storage, key) = {
        let d = shared.borrow();
        (
            d.storage(),
            d.keys.get(key_index(job.key)).cloned().unwrap_or_default(),
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
            spawn_local(async move {
                let ok = JsFuture::from(Promise::resolve(&pending)).await.is_ok();
                let Some(shared) = weak.upgrade() else { return };
                {
                    let mut d = shared.borrow_mut();
                    d.storing = false;
                    if d.destroyed {
                        return;
                    }
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

fn start_fetch(shared: &Shared, id: RequestId, target: Option<(String, Object)>) {
    let weak = Rc::downgrade(shared);
    let Some((url, init)) = target else {
        // The core could not render its own request (cannot happen within
        // its capacities): answer it so the operation ends.
        shared.borrow_mut().enqueue(Pending::Transport {
            id,
            error: TransportError::BadFraming,
        });
        return;
    };
    let fetch = shared.borrow().fetch.clone();
    let called = fetch.call2(&JsValue::UNDEFINED, &JsValue::from_str(&url), &init);
    spawn_local(async move {
        let input = match called {
            Ok(pending) => answer(id, pending).await,
            Err(_) => Pending::Transport {
                id,
                error: TransportError::Connect,
            },
        };
        resume(&weak, input);
    });
}

/// Reads a `fetch` result into an input: status, JSON-ness, whole body.
async fn answer(id: RequestId, pending: JsValue) -> Pending {
    let Ok(resp) = JsFuture::from(Promise::resolve(&pending)).await else {
        return Pending::Transport {
            id,
            error: TransportError::Connect,
        };
    };
    let resp: FetchResponse = resp.unchecked_into();
    let status = resp
        .status()
        .as_f64()
        .filter(|s| (100.0..=599.0).contains(s));
    let Some(status) = status else {
        return Pending::Transport {
            id,
            error: TransportError::BadFraming,
        };
    };
    let status_text = resp.status_text().as_string().unwrap_or_default();
    let headers: FetchHeaders = resp.headers().unchecked_into();
    let content_type = headers.get("content-type").ok().and_then(|v| v.as_string());
    let json = buf::is_json_content_type(content_type.as_deref());
    let body = match resp.array_buffer() {
        Ok(p) => JsFuture::from(Promise::resolve(&p)).await,
        Err(e) => Err(e),
    };
    match body {
        Ok(bytes) => Pending::Response {
            id,
            status: status as u16,
            status_text,
            json,
            body: Uint8Array::new(&bytes).to_vec(),
        },
        // Headers arrived, the body did not (docs/protocol.md §1.4).
        Err(_) => Pending::Transport {
            id,
            error: TransportError::ConnectionLost,
        },
    }
}

/// Queues an input from an asynchronous task and pumps.
pub fn resume(weak: &Weak<RefCell<Driver>>, input: Pending) {
    if let Some(shared) = weak.upgrade() {
        shared.borrow_mut().enqueue(input);
        pump(&shared);
    }
}

/// Subscribes to the adapter's `watch` (if any), then reads the records and
/// restores the machine — synchronously when the adapter is synchronous
/// (`localStorage`), so the cached session is there right after `new`.
pub fn start(shared: &Shared) {
    let (storage, keys) = {
        let d = shared.borrow();
        (d.storage(), d.keys.clone())
    };
    if let Some(watch) = js::prop(&storage, "watch").dyn_ref::<Function>() {
        for key in RecordKey::ALL {
            let weak = Rc::downgrade(shared);
            let on_change = Closure::<dyn FnMut(JsValue)>::new(move |value: JsValue| {
                if value.is_null() || value.is_undefined() || value.is_string() {
                    resume(
                        &weak,
                        Pending::External {
                            key,
                            value: value.as_string(),
                        },
                    );
                }
            })
            .into_js_value();
            let name = JsValue::from_str(keys.get(key_index(key)).map_or("", String::as_str));
            if let Ok(unsubscribe) = watch.call2(&storage, &name, &on_change)
                && let Some(f) = unsubscribe.dyn_ref::<Function>()
            {
                shared.borrow_mut().unwatch.push(f.clone());
            }
        }
    }
    let [session_key, anon_key] = &keys;
    let reads: Vec<JsValue> = [session_key.as_str(), anon_key.as_str(), VISITOR_ID_KEY]
        .iter()
        .map(|k| storage.get_item(k).unwrap_or(JsValue::NULL))
        .collect();
    if reads.iter().any(js::is_thenable) {
        let weak = Rc::downgrade(shared);
        spawn_local(async move {
            let mut values = Vec::with_capacity(reads.len());
            for r in &reads {
                values.push(
                    JsFuture::from(Promise::resolve(r))
                        .await
                        .ok()
                        .and_then(|v| v.as_string()),
                );
            }
            if let Some(shared) = weak.upgrade() {
                restored(&shared, values);
            }
        });
    } else {
        restored(shared, reads.iter().map(JsValue::as_string).collect());
    }
}

fn restored(shared: &Shared, values: Vec<Option<String>>) {
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
    }
    pump(shared);
}

/// Stops everything: timer, watches, listeners; pending calls reject with
/// `aborted`, and nothing is written to storage any more.
pub fn destroy(shared: &Shared) {
    let (waiters, queue, unwatch, ready, error) = {
        let mut d = shared.borrow_mut();
        if d.destroyed {
            return;
        }
        d.destroyed = true;
        if let Some((handle, _)) = d.timer.take() {
            js::clear_timeout(&handle);
        }
        d.listeners.clear();
        let error = d.errors.make("aborted", "the client was destroyed", None);
        (
            std::mem::take(&mut d.waiters),
            std::mem::take(&mut d.queue),
            std::mem::take(&mut d.unwatch),
            std::mem::take(&mut d.ready_waiters),
            error,
        )
    };
    for f in unwatch {
        let _ = f.call0(&JsValue::UNDEFINED);
    }
    for w in waiters {
        let _ = w.reject.call1(&JsValue::UNDEFINED, &error);
    }
    for input in queue {
        if let Pending::Command { reject, .. } = input {
            let _ = reject.call1(&JsValue::UNDEFINED, &error);
        }
    }
    for f in ready {
        let _ = f.call0(&JsValue::UNDEFINED);
    }
}
