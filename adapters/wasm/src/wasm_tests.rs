//! Tests of the bindings themselves, run under Node by
//! `wasm-bindgen-test-runner` (`cargo test -p paywall-auth-wasm --target
//! wasm32-unknown-unknown`): the raw exported class driven from Rust with a
//! JS stub backend and storage. The package as users see it (entry points,
//! defaults, PaywallError class) is tested by `tests/*.test.mjs`.

#![allow(clippy::unwrap_used)]

use std::rc::Rc;

use js_sys::{Function, JSON, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use crate::AuthClient;

// The package's own JS half, not a copy of it.
#[wasm_bindgen(module = "/js/host.js")]
extern "C" {
    #[wasm_bindgen(js_name = Host)]
    type PackageHost;
    #[wasm_bindgen(constructor, js_class = "Host")]
    fn new() -> PackageHost;
}

#[wasm_bindgen(inline_js = r#"
export class TestError extends Error {
  constructor(code, message, status) { super(message); this.code = code; this.status = status; }
}
export function errorClass() { return TestError; }

// A backend that answers every route from `replies[route]` (a list, used in
// order) and records what it was asked; a storage over a Map that records writes.
export function env(replies, initial) {
  const requests = [];
  const writes = [];
  const data = new Map(Object.entries(initial || {}));
  const fetch = async (url, init) => {
    const route = url.replace(/^.*\/api\/v1\/paywall\/[^/]+\//, '');
    requests.push({ url, route, init });
    const r = (replies[route] || []).shift();
    if (!r) throw new TypeError('offline');
    return new Response(JSON.stringify(r.body), { status: r.status || 200, headers: { 'content-type': 'application/json' } });
  };
  const storage = {
    getItem: (k) => (data.has(k) ? data.get(k) : null),
    setItem: (k, v) => { writes.push(['set', k, v]); data.set(k, v); },
    removeItem: (k) => { writes.push(['remove', k]); data.delete(k); },
  };
  return { fetch, storage, requests, writes, data };
}

export function options(env, extra) {
  return Object.assign({ paywallId: 'pw_1', apiOrigin: 'https://api.test', fetch: env.fetch, storage: env.storage }, extra || {});
}

// Wires a Host to a test's fetch and to the client's answer entry points
// (client.js points it at the wasm object).
export function attach(host, fetch, response, transport, timeout) {
  host.fetch = fetch;
  host.client = { __response: response, __transport: transport, __timeout: timeout };
}

export function tokens(id, refresh) {
  return { access_token: 'at-' + refresh, refresh_token: refresh, expires_in: 3600, expires_at: null,
           token_type: 'bearer', user: { id, email: null, is_anonymous: true } };
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = errorClass)]
    fn error_class() -> Function;
    fn env(replies: &JsValue, initial: &JsValue) -> JsValue;
    fn options(env: &JsValue, extra: &JsValue) -> JsValue;
    fn tokens(id: &str, refresh: &str) -> JsValue;
    fn attach(
        host: &JsValue,
        fetch: &JsValue,
        response: &JsValue,
        transport: &JsValue,
        timeout: &JsValue,
    );
}

fn get(v: &JsValue, path: &str) -> JsValue {
    path.split('.').fold(v.clone(), |v, k| {
        Reflect::get(&v, &JsValue::from_str(k)).unwrap()
    })
}

fn json(v: &JsValue) -> String {
    JSON::stringify(v).unwrap().as_string().unwrap()
}

fn obj(text: &str) -> JsValue {
    JSON::parse(text).unwrap()
}

async fn settle(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

fn replies(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (route, reply) in pairs {
        let list = js_sys::Array::of1(reply);
        Reflect::set(&o, &JsValue::from_str(route), &list).unwrap();
    }
    o.into()
}

fn reply(status: u16, body: &JsValue) -> JsValue {
    let o = js_sys::Object::new();
    Reflect::set(&o, &"status".into(), &status.into()).unwrap();
    Reflect::set(&o, &"body".into(), body).unwrap();
    o.into()
}

/// The raw client plus the package's Host, driven as client.js does.
struct Client {
    raw: Rc<AuthClient>,
    host: JsValue,
}

fn host() -> crate::js::Host {
    JsValue::from(PackageHost::new()).unchecked_into()
}

fn new_client(options: JsValue) -> Result<Client, JsValue> {
    let host = host();
    // The option reading of client.js.
    let raw = Rc::new(AuthClient::new(
        get(&options, "paywallId").as_string(),
        get(&options, "apiOrigin").as_string(),
        get(&options, "allowInsecureHttp").is_truthy(),
        get(&options, "storage"),
        get(&options, "storage.watch").dyn_into().ok(),
        error_class(),
        JsValue::clone(&host).unchecked_into(),
        None,
    )?);
    let w = Rc::downgrade(&raw);
    let response = Closure::<dyn Fn(u32, u16, String, Option<String>, Vec<u8>)>::new(
        move |id, status, text, ct, body| {
            if let Some(c) = w.upgrade() {
                c.response(id, status, text, ct, body);
            }
        },
    );
    let w = Rc::downgrade(&raw);
    let transport = Closure::<dyn Fn(u32, u8, Option<String>)>::new(move |id, kind, note| {
        if let Some(c) = w.upgrade() {
            c.transport(id, kind, note);
        }
    });
    let w = Rc::downgrade(&raw);
    let timeout = Closure::<dyn Fn()>::new(move || {
        if let Some(c) = w.upgrade() {
            c.timeout();
        }
    });
    attach(
        &host,
        &get(&options, "fetch"),
        &response.into_js_value(),
        &transport.into_js_value(),
        &timeout.into_js_value(),
    );
    Ok(Client {
        raw,
        host: host.into(),
    })
}

fn client(e: &JsValue) -> Client {
    new_client(options(e, &JsValue::UNDEFINED)).unwrap()
}

/// A Promise settled by the callbacks a raw method takes.
fn call(f: impl FnOnce(Function, Function)) -> Promise {
    let mut f = Some(f);
    Promise::new(&mut |resolve, reject| {
        if let Some(f) = f.take() {
            f(resolve, reject);
        }
    })
}

impl Client {
    fn sign_in_anonymously(&self, o: JsValue) -> Promise {
        call(|r, j| self.raw.sign_in_anonymously(o, r, j))
    }
    fn upgrade_anonymous_to_email(&self, o: JsValue) -> Promise {
        call(|r, j| self.raw.upgrade_anonymous_to_email(o, r, j))
    }
    fn refresh(&self) -> Promise {
        call(|r, j| self.raw.refresh(r, j))
    }
    fn get_access_token(&self) -> Promise {
        call(|r, j| self.raw.get_access_token(r, j))
    }
    fn ready(&self) -> Promise {
        call(|r, _| self.raw.ready(r))
    }
    fn destroy(&self) {
        self.raw.destroy();
    }
    /// What the package's `getCachedSession()` returns.
    fn get_cached_session(&self) -> JsValue {
        if get(&self.host, "session").is_undefined() {
            self.raw.sync_session();
        }
        let s = get(&self.host, "session");
        if s.is_undefined() { JsValue::NULL } else { s }
    }
    fn get_cached_user(&self) -> JsValue {
        let s = self.get_cached_session();
        if s.is_null() { s } else { get(&s, "user") }
    }
}

#[wasm_bindgen_test]
fn constructor_refuses_bad_config_with_the_given_error_class() {
    let e = env(&replies(&[]), &JsValue::UNDEFINED);
    for extra in [
        r#"{"paywallId":""}"#,
        r#"{"apiOrigin":""}"#,
        r#"{"paywallId":"a b"}"#,
        r#"{"apiOrigin":"mailto:x@y"}"#,
    ] {
        let err = new_client(options(&e, &obj(extra))).err().unwrap();
        assert!(err.is_instance_of::<js_sys::Error>(), "{extra}");
        assert_eq!(get(&err, "code"), "invalid_config", "{extra}");
    }
}

#[wasm_bindgen_test]
async fn sign_in_sends_the_core_request_and_stores_both_records() {
    let e = env(
        &replies(&[("auth/anonymous/signin", reply(200, &tokens("u1", "r1")))]),
        &JsValue::UNDEFINED,
    );
    let c = client(&e);
    let session = settle(c.sign_in_anonymously(JsValue::UNDEFINED))
        .await
        .unwrap();
    assert_eq!(get(&session, "user.id"), "u1");
    assert_eq!(get(&session, "refresh_token"), "r1");
    assert!(get(&session, "expires_at").as_f64().unwrap() > js_sys::Date::now());

    let req = Reflect::get_u32(&get(&e, "requests"), 0).unwrap();
    assert_eq!(
        get(&req, "url"),
        "https://api.test/api/v1/paywall/pw_1/auth/anonymous/signin"
    );
    assert_eq!(
        json(&get(&req, "init")),
        r#"{"method":"POST","headers":{"Accept":"application/json","X-SDK-Version":"0.1.0","X-Paywall-Id":"pw_1","Content-Type":"application/json"},"credentials":"omit","redirect":"manual","body":"{}"}"#
    );
    let writes = json(&get(&e, "writes"));
    // The guest record first (the core's write order), then the session.
    assert!(
        writes.starts_with(r#"[["set","pw-pw_1-anon-rt-v1","r1"],["set","pw-pw_1-auth-v1","{\"access_token\":\"at-r1\""#),
        "{writes}"
    );
    assert!(writes.ends_with("}}\"]]"), "{writes}");
    assert_eq!(json(&c.get_cached_session()), json(&session));
    assert_eq!(
        json(&c.get_cached_user()),
        r#"{"id":"u1","email":null,"is_anonymous":true}"#
    );
}

#[wasm_bindgen_test]
async fn server_errors_become_error_class_instances() {
    let body = obj(r#"{"code":"anonymous_disabled","message":"Anonymous sign-in is disabled"}"#);
    let e = env(
        &replies(&[("auth/anonymous/signin", reply(403, &body))]),
        &JsValue::UNDEFINED,
    );
    let err = settle(client(&e).sign_in_anonymously(JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert!(err.is_instance_of::<js_sys::Error>());
    assert_eq!(get(&err, "code"), "anonymous_disabled");
    assert_eq!(get(&err, "message"), "Anonymous sign-in is disabled");
    assert_eq!(get(&err, "status"), 403);

    // No reply queued: fetch rejects.
    let e = env(&replies(&[]), &JsValue::UNDEFINED);
    let err = settle(client(&e).sign_in_anonymously(JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert_eq!(get(&err, "code"), "network_error");
    assert!(get(&err, "status").is_undefined());
}

#[wasm_bindgen_test]
async fn arguments_are_checked_before_anything_is_sent() {
    let e = env(&replies(&[]), &JsValue::UNDEFINED);
    let c = client(&e);
    let err = settle(c.sign_in_anonymously(obj(r#"{"userMeta":{"n":1}}"#)))
        .await
        .unwrap_err();
    assert_eq!(get(&err, "code"), "invalid_argument");
    let err = settle(c.sign_in_anonymously(obj(
        r#"{"userMeta":{"a":"1","b":"2","c":"3","d":"4","e":"5"}}"#,
    )))
    .await
    .unwrap_err();
    assert_eq!(get(&err, "code"), "capacity_exceeded");
    let err = settle(c.upgrade_anonymous_to_email(obj(r#"{"email":"a@b.c"}"#)))
        .await
        .unwrap_err();
    assert_eq!(get(&err, "code"), "invalid_argument");
    assert_eq!(js_sys::Array::from(&get(&e, "requests")).length(), 0);
}

#[wasm_bindgen_test]
async fn refresh_and_access_token_map_absence_to_null() {
    let e = env(&replies(&[]), &JsValue::UNDEFINED);
    let c = client(&e);
    assert!(settle(c.refresh()).await.unwrap().is_null());
    assert!(settle(c.get_access_token()).await.unwrap().is_null());
    assert!(c.get_cached_session().is_null());
    assert!(c.get_cached_user().is_null());
}

#[wasm_bindgen_test]
async fn upgrade_results_have_their_reference_shapes() {
    let e = env(
        &replies(&[
            ("auth/anonymous/signin", reply(200, &tokens("u1", "r1"))),
            (
                "auth/anonymous/upgrade",
                reply(
                    200,
                    &obj(r#"{"status":"confirmation_required","email":"a@b.c"}"#),
                ),
            ),
        ]),
        &JsValue::UNDEFINED,
    );
    let c = client(&e);
    settle(c.sign_in_anonymously(JsValue::UNDEFINED))
        .await
        .unwrap();
    let result = settle(c.upgrade_anonymous_to_email(obj(r#"{"email":"a@b.c","password":"pw"}"#)))
        .await
        .unwrap();
    assert_eq!(
        json(&result),
        r#"{"kind":"confirmation_required","email":"a@b.c"}"#
    );
}

#[wasm_bindgen_test]
async fn a_restored_session_is_served_without_a_request() {
    let stored = r#"{"access_token":"at-9","refresh_token":"r9","expires_at":99999999999999,"user":{"id":"u9","email":null,"is_anonymous":true}}"#;
    let initial = js_sys::Object::new();
    Reflect::set(&initial, &"pw-pw_1-auth-v1".into(), &stored.into()).unwrap();
    let e = env(&replies(&[]), &initial);
    let c = client(&e);
    // A synchronous adapter is read in the constructor.
    assert_eq!(json(&c.get_cached_session()), stored);
    settle(c.ready()).await.unwrap();
    assert_eq!(settle(c.get_access_token()).await.unwrap(), "at-9");
    let again = settle(c.sign_in_anonymously(JsValue::UNDEFINED))
        .await
        .unwrap();
    assert_eq!(json(&again), stored);
    assert_eq!(js_sys::Array::from(&get(&e, "requests")).length(), 0);
}

#[wasm_bindgen_test]
async fn destroy_rejects_later_calls() {
    let e = env(&replies(&[]), &JsValue::UNDEFINED);
    let c = client(&e);
    c.destroy();
    let err = settle(c.get_access_token()).await.unwrap_err();
    assert_eq!(get(&err, "code"), "aborted");
}
