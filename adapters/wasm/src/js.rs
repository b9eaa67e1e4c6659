//! The JavaScript side: the objects the client talks to (storage adapter,
//! `fetch`, `Response`, timers) and the conversions between core values and
//! plain JS values.

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use js_sys::{Array, Function, JSON, Object, Reflect};
use paywall_auth::{
    Command, Error, RecordValue, Session, SignInOptions, SignOutOptions, StoreFormat,
    UpgradeRequest, UserMeta,
};
use wasm_bindgen::prelude::*;

use crate::{buf, msg};

#[wasm_bindgen]
extern "C" {
    /// A storage adapter: `getItem`/`setItem`/`removeItem`, each returning a
    /// value or a Promise of it, and an optional `watch(key, cb)`.
    pub type StorageAdapter;

    // Keys are JS strings made once per client: handing a Rust `&str` to
    // JS decodes it anew on every call.
    #[wasm_bindgen(method, catch, js_name = getItem)]
    pub fn get_item(this: &StorageAdapter, key: &JsValue) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(method, catch, js_name = setItem)]
    pub fn set_item(
        this: &StorageAdapter,
        key: &JsValue,
        value: &JsValue,
    ) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(method, catch, js_name = removeItem)]
    pub fn remove_item(this: &StorageAdapter, key: &JsValue) -> Result<JsValue, JsValue>;

    /// The package's JS half (`client.js`, class `Host`): it owns the
    /// listener list, the Promise-facing caches, `fetch` and the timer, so
    /// that each of those costs one call across the boundary, not one per
    /// listener or per property. None of these methods throws.
    pub type Host;

    /// Delivers an auth event to every live listener, in order.
    #[wasm_bindgen(method, js_name = _emit)]
    pub fn emit(this: &Host, event: &str, session: &JsValue);

    /// Delivers `INITIAL_SESSION` to the listener with this id (once).
    #[wasm_bindgen(method, js_name = _initial)]
    pub fn initial(this: &Host, listener: u32, session: &JsValue);

    /// The state the synchronous getters read: the session object (or
    /// `null`, or `undefined` for "not rendered yet: ask"), the instant
    /// until which the core answers `getAccessToken` from it (0: ask), and
    /// whether storage has been restored, and whether a plain
    /// `signInAnonymously()` joins the sign-in in flight (the host then
    /// attaches it without entering wasm; `_joined` settles those calls).
    #[wasm_bindgen(method, js_name = _state)]
    pub fn state(this: &Host, session: &JsValue, fresh_until: f64, ready: bool, join: bool);

    /// Settles the calls the host attached to the sign-in in flight:
    /// resolves them with `value` when `ok`, else rejects them with it.
    #[wasm_bindgen(method, js_name = _joined)]
    pub fn joined(this: &Host, ok: bool, value: &JsValue);

    /// Performs a request; its answer comes back through `__response` or
    /// `__transport`. `request` is `method\nurl\n`, then `headers` times
    /// `name\nvalue\n`, then the body (which may be empty or hold
    /// newlines; none of the others can).
    #[wasm_bindgen(method, js_name = _send)]
    pub fn send(this: &Host, id: u32, request: &str, headers: u32);

    /// Calls `done(ok, value)` from a microtask once `value` settles
    /// (fulfilled: `true` and its value; rejected: `false` and the reason).
    #[wasm_bindgen(method, js_name = _settle)]
    pub fn settle(this: &Host, value: &JsValue, done: &JsValue);

    /// The core's next deadline, in ms since the epoch (the clock `now()`
    /// reads): `__timeout` is called once it has passed. Negative: none.
    #[wasm_bindgen(method, js_name = _timer)]
    pub fn timer(this: &Host, at_ms: f64);

    /// Writes the UTF-8 of the string `text` into `into` (which has room
    /// for three bytes per UTF-16 unit) and returns the number of bytes.
    #[wasm_bindgen(method, js_name = _utf8)]
    fn utf8(this: &Host, text: &JsValue, into: &mut [u8]) -> u32;

    /// `JSON.parse` of a JS string (no copy through wasm memory).
    #[wasm_bindgen(catch, js_namespace = JSON, js_name = parse)]
    pub fn json_parse(text: &JsValue) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(js_namespace = console, js_name = warn)]
    pub fn console_warn(message: &str);

    #[wasm_bindgen(js_namespace = console, js_name = error)]
    pub fn console_error(message: &str, error: &JsValue);
}

/// The text of `value` if it is a string. Through `TextEncoder.encodeInto`
/// straight into wasm memory: wasm-bindgen's own conversion walks ASCII
/// text one character at a time in JS, ~6x slower for a stored session.
pub fn text(host: &Host, value: &JsValue) -> Option<String> {
    let units = value.dyn_ref::<js_sys::JsString>()?.length();
    let mut bytes = alloc::vec![0; usize::try_from(units).ok()?.checked_mul(3)?];
    let written = host.utf8(value, &mut bytes);
    bytes.truncate(usize::try_from(written).ok()?);
    String::from_utf8(bytes).ok()
}

/// `obj[key]`, `undefined` when `obj` is not an object or the read throws.
pub fn prop(obj: &JsValue, key: &str) -> JsValue {
    if !obj.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// `obj[key] = value` on an object we created (cannot throw).
pub fn set(obj: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// Runs `then` from a microtask once `value` settles: `Ok` with its value,
/// `Err` with the rejection. A plain JS Promise callback instead of a Rust
/// future executor (`spawn_local`): the client only ever waits for one
/// value at a time, and the executor was ~4 KB of the wasm.
pub fn when_settled<F>(host: &Host, value: &JsValue, then: F)
where
    F: FnOnce(Result<JsValue, JsValue>) + 'static,
{
    settle_boxed(host, value, Box::new(then));
}

/// [`when_settled`]'s body, not generic: one set of wasm-bindgen closure
/// shims for every caller instead of one per call site.
fn settle_boxed(host: &Host, value: &JsValue, then: Box<dyn FnOnce(Result<JsValue, JsValue>)>) {
    let done = Closure::once_into_js(move |ok: bool, v: JsValue| {
        then(if ok { Ok(v) } else { Err(v) });
    });
    host.settle(value, &done);
}

/// Whether `v` is a thenable (a Promise or anything awaitable).
pub fn is_thenable(v: &JsValue) -> bool {
    v.is_object() && prop(v, "then").is_function()
}

/// Builds a `PaywallError` through the class the JS wrapper handed in.
#[derive(Debug, Clone)]
pub struct Errors {
    class: Function,
}

impl Errors {
    pub fn new(class: Function) -> Self {
        Errors { class }
    }

    /// `new PaywallError(code, message, status)`; a plain `Error` if the
    /// class itself throws.
    pub fn make(&self, code: &str, message: &str, status: Option<u16>) -> JsValue {
        let status = status.map_or(JsValue::UNDEFINED, JsValue::from);
        let args = Array::of3(
            &JsValue::from_str(code),
            &JsValue::from_str(message),
            &status,
        );
        Reflect::construct(&self.class, &args).unwrap_or_else(|_| {
            let mut text = String::from(code);
            text.push_str(": ");
            text.push_str(message);
            js_sys::Error::new(&text).into()
        })
    }

    /// The error of a failed command, as the reference client reports it:
    /// the server's own message for HTTP errors, the core's description
    /// otherwise.
    pub fn of(&self, error: &Error) -> JsValue {
        match error {
            Error::Api(api) => self.make(error.code(), &api.message, Some(api.status)),
            other => self.make(other.code(), &msg::error(other), other.status()),
        }
    }
}

/// A session as the plain object of docs/protocol.md §2.3 — the reference
/// client's stored shape, rendered by the core's own record encoder so the
/// two can never disagree.
pub fn session_value(session: &Session, scratch: &mut Vec<u8>) -> JsValue {
    let value = RecordValue::Session(session);
    match buf::encode_growing(scratch, |b| {
        value.encode(StoreFormat::ReferenceJson, b).map(|s| s.len())
    }) {
        Ok(json) => JSON::parse(json).unwrap_or(JsValue::NULL),
        Err(_) => JsValue::NULL,
    }
}

/// Why an argument object was refused: `(code, message)`.
pub type ArgError = (&'static str, String);

fn invalid(message: &str) -> ArgError {
    ("invalid_argument", message.to_owned())
}

fn capacity(e: paywall_auth::CapacityError) -> ArgError {
    let mut message = String::new();
    msg::capacity(&mut message, &e);
    ("capacity_exceeded", message)
}

/// `{ userMeta?, forceNewAnon?, captchaToken? }`
pub fn sign_in_command(options: &JsValue) -> Result<Command, ArgError> {
    let mut opts = SignInOptions {
        force_new: prop(options, "forceNewAnon").is_truthy(),
        ..SignInOptions::default()
    };
    if let Some(token) = optional_string(options, "captchaToken")?
        && !token.is_empty()
    {
        opts = opts.with_captcha(&token).map_err(capacity)?;
    }
    opts.user_meta = user_meta(&prop(options, "userMeta"))?;
    Ok(Command::SignInAnonymously(opts))
}

/// `{ email, password, userMeta?, idempotencyKey? }`
pub fn upgrade_command(options: &JsValue) -> Result<Command, ArgError> {
    let email = optional_string(options, "email")?.ok_or_else(|| invalid("email is required"))?;
    let password =
        optional_string(options, "password")?.ok_or_else(|| invalid("password is required"))?;
    let key = optional_string(options, "idempotencyKey")?;
    // It travels as a header: a control character (CR, LF) would make
    // `fetch` throw, or split the header list the host rebuilds.
    if key
        .as_deref()
        .is_some_and(|k| k.bytes().any(|b| b < 0x20 || b == 0x7f))
    {
        return Err(invalid(
            "idempotencyKey must not contain control characters",
        ));
    }
    let mut req = UpgradeRequest::new(&email, &password, key.as_deref()).map_err(capacity)?;
    req.user_meta = user_meta(&prop(options, "userMeta"))?;
    Ok(Command::UpgradeToEmail(req))
}

/// `{ forgetAnonymous? }`
pub fn sign_out_command(options: &JsValue) -> Command {
    Command::SignOut(SignOutOptions {
        forget_anonymous: prop(options, "forgetAnonymous").is_truthy(),
    })
}

/// A string field; absent, `undefined` and `null` are "not given".
fn optional_string(options: &JsValue, key: &str) -> Result<Option<String>, ArgError> {
    let v = prop(options, key);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.as_string().map(Some).ok_or_else(|| {
        let mut message = String::from(key);
        message.push_str(" must be a string");
        invalid(&message)
    })
}

/// `user_meta` is a string→string object (docs/protocol.md §3.1).
fn user_meta(v: &JsValue) -> Result<UserMeta, ArgError> {
    let mut meta = UserMeta::new();
    if v.is_undefined() || v.is_null() {
        return Ok(meta);
    }
    let Some(obj) = v.dyn_ref::<Object>() else {
        return Err(invalid("userMeta must be an object of strings"));
    };
    for entry in Object::entries(obj).iter() {
        let key = Reflect::get_u32(&entry, 0).ok().and_then(|k| k.as_string());
        let value = Reflect::get_u32(&entry, 1).ok().and_then(|v| v.as_string());
        match (key, value) {
            (Some(k), Some(v)) => meta.insert(&k, &v).map_err(capacity)?,
            _ => return Err(invalid("userMeta values must be strings")),
        }
    }
    Ok(meta)
}
