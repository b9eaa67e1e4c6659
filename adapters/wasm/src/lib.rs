//! `paywall-auth-wasm`: the paywall anonymous sign-in client for JavaScript,
//! a thin wasm-bindgen loop around the sans-IO core (`paywall-auth`).
//!
//! The core decides everything (which request, which header, what to store,
//! which event); this crate only moves bytes between it and JavaScript:
//! `fetch` for requests, a storage adapter for records, `setTimeout` for the
//! core's deadline, Promises for completions and callbacks for auth events.
//! See `src/driver.rs` for the loop and README.md for the JS API; the package's
//! `client.js` adds the `PaywallError` class and the default storage.

// The shipped wasm has no std: std's panic handler formats a message and a
// source location it then cannot print anywhere (wasm32-unknown-unknown has
// no stderr), and that machinery (`core::fmt`, integer printing, the file
// paths of every panic site) was ~10 % of the binary. A panic here traps
// instead, which the JS side sees as a `RuntimeError: unreachable`, as it
// did before. Only with the `panic-trap` feature, which build.sh turns on:
// test builds link std through their dev-dependencies (whose `std` features
// then apply to every target of the build), and two panic handlers do not
// link.
#![cfg_attr(all(target_arch = "wasm32", feature = "panic-trap", not(test)), no_std)]

extern crate alloc;

mod buf;
mod driver;
mod js;
mod msg;
#[cfg(all(test, target_arch = "wasm32"))]
mod wasm_tests;

/// The heap of the wasm. Talc instead of the standard library's dlmalloc:
/// it is maintained, single-threaded wasm is one of its documented targets
/// (grows linear memory with `memory.grow` as needed), and its code is a
/// few kilobytes smaller than dlmalloc's (docs/wasm-measurements.md,
/// "Package size"). The client allocates a handful of buffers per request,
/// so allocator speed does not matter here; its size does (hence also
/// `disable-realloc-in-place`: a growing buffer is copied, ~150 B gzip less).
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// A panic traps (see the `no_std` note at the top).
#[cfg(all(target_arch = "wasm32", feature = "panic-trap", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use js_sys::Function;
use paywall_auth::origin::{self, InsecureHttp, Scheme};
use paywall_auth::{Command, Config, Machine, RecordKey};
use wasm_bindgen::prelude::*;

use driver::{Pending, Reply, Shared};
use js::{Errors, Host, StorageAdapter};

/// The client. Construct it through the package's `AuthClient` (which
/// supplies the default storage, `fetch` and the `PaywallError` class);
/// this raw class takes them explicitly.
#[wasm_bindgen]
pub struct AuthClient {
    shared: Shared,
}

impl fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthClient").finish_non_exhaustive()
    }
}

#[wasm_bindgen]
impl AuthClient {
    /// `new AuthClient(paywallId, apiOrigin, allowInsecureHttp, storage,
    /// watch, PaywallError, host)`: the package's `AuthClient` reads its options
    /// object and checks `storage` and `fetch` (a property read from wasm
    /// costs a string conversion each, the largest part of a construction);
    /// the decisions stay here. Throws a `PaywallError` with code
    /// `invalid_config` when the paywall id or the origin is missing or
    /// unusable (plain `http://` to a host that is not loopback without
    /// `allowInsecureHttp: true` included). `storage` must have `getItem`,
    /// `setItem` and `removeItem` (a missing one fails each call like a
    /// failing storage); `watch` is its `watch` method, if it has one;
    /// `host` is the package's `Host` (host.js); `keys`, if given, an array
    /// the package keeps per paywall id, where the client leaves its
    /// storage key strings for the next one (see `driver::storage_keys`).
    #[wasm_bindgen(constructor)]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        paywall_id: Option<String>,
        api_origin: Option<String>,
        allow_insecure_http: bool,
        storage: JsValue,
        watch: Option<Function>,
        error_class: Function,
        host: Host,
        keys: Option<js_sys::Array>,
    ) -> Result<AuthClient, JsValue> {
        let errors = Errors::new(error_class);
        let invalid = |message: &str| errors.make("invalid_config", message, None);

        let paywall_id = paywall_id.filter(|s| !s.is_empty());
        let paywall_id = paywall_id.ok_or_else(|| invalid("paywallId is required"))?;
        let api_origin = api_origin.filter(|s| !s.is_empty());
        let api_origin = api_origin.ok_or_else(|| invalid("apiOrigin is required"))?;
        // The core's rule, the same in every adapter (docs/protocol.md
        // §13.4), checked before any network use: https, or http to
        // loopback, or http anywhere when the app says so by name.
        let insecure = if allow_insecure_http {
            InsecureHttp::Allow
        } else {
            InsecureHttp::Refuse
        };
        let checked = origin::check(&api_origin, insecure).map_err(|e| {
            let mut message = String::from(buf::strip_code_prefix(e.message(), "invalid_config"));
            if e == origin::OriginError::InsecureHttp {
                message.push_str(" (pass allowInsecureHttp: true to the AuthClient options)");
            }
            invalid(&message)
        })?;
        if checked.ignored_suffix {
            js::console_warn(
                "paywall-auth: apiOrigin has a path, query or fragment; only its origin is used",
            );
        }
        let origin = origin_string(&checked);
        let mut config = Config::new(&paywall_id).map_err(|e| invalid(&msg::config(&e)))?;
        // A browser fetch can hang forever without failing: let the core
        // time requests out so no promise waits forever.
        config.request_timeout = Some(paywall_auth::Duration::from_secs(30));

        let keys = driver::storage_keys(&paywall_id, keys.as_ref())
            .ok_or_else(|| invalid("paywallId is too long"))?;

        let shared = driver::Driver::new(
            Machine::new(config),
            origin,
            keys,
            storage.unchecked_into::<StorageAdapter>(),
            host,
            errors,
        );
        driver::start(&shared, watch);
        Ok(AuthClient { shared })
    }

    /// Signs in as a guest: resolves the current anonymous session, resumes
    /// the stored anonymous account, or creates one (docs/protocol.md §7.1).
    /// Options: `{ userMeta?, forceNewAnon?, captchaToken? }`.
    #[wasm_bindgen(js_name = signInAnonymously)]
    pub fn sign_in_anonymously(&self, options: JsValue, resolve: Function, reject: Function) {
        // The guest record is read fresh before a resume, as the reference
        // does (another tab may have rotated it).
        self.command_after_pull(
            RecordKey::AnonRefreshToken,
            js::sign_in_command(&options),
            (Reply::Session, resolve, reject),
        );
    }

    /// Attaches an email and password to the anonymous account. Options:
    /// `{ email, password, userMeta?, idempotencyKey? }`. Resolves
    /// `{kind: 'updated', session}` or `{kind: 'confirmation_required', email}`.
    #[wasm_bindgen(js_name = upgradeAnonymousToEmail)]
    pub fn upgrade_anonymous_to_email(
        &self,
        options: JsValue,
        resolve: Function,
        reject: Function,
    ) {
        self.command(
            js::upgrade_command(&options),
            (Reply::Upgrade, resolve, reject),
        );
    }

    /// Signs out; `{ forgetAnonymous: true }` also forgets the anonymous
    /// account (a soft sign-out keeps it resumable).
    #[wasm_bindgen(js_name = signOut)]
    pub fn sign_out(&self, options: JsValue, resolve: Function, reject: Function) {
        self.command(
            Ok(js::sign_out_command(&options)),
            (Reply::SignOut, resolve, reject),
        );
    }

    /// Rotates the tokens now. Resolves the new session, or `null` when
    /// there is no session or the server declared it dead (signed out).
    pub fn refresh(&self, resolve: Function, reject: Function) {
        self.command(Ok(Command::Refresh), (Reply::Refresh, resolve, reject));
    }

    /// A fresh access token (refreshing first if needed), or `null` when
    /// signed out. The package answers from its cache first while the
    /// core's `fresh_until` has not passed; this is the full path.
    #[wasm_bindgen(js_name = getAccessToken)]
    pub fn get_access_token(&self, resolve: Function, reject: Function) {
        // Signed out here? Another tab may have signed in (§6.4 "pull").
        self.command_after_pull(
            RecordKey::Session,
            Ok(Command::AccessToken),
            (Reply::AccessToken, resolve, reject),
        );
    }

    /// Renders the current session into the host's cache (`_state`), for
    /// the synchronous getters when they found it not rendered yet.
    #[wasm_bindgen(js_name = syncSession)]
    pub fn sync_session(&self) {
        if let Ok(mut d) = self.shared.try_borrow_mut() {
            d.sync_session();
        }
    }

    /// Calls `resolve` once the stored session has been restored.
    pub fn ready(&self, resolve: Function) {
        let now = self.shared.borrow_mut().when_ready(resolve);
        if let Some(resolve) = now {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    }

    /// Queues `INITIAL_SESSION` for the host's listener `id`, delivered
    /// from a microtask (the caller holds its unsubscribe function before
    /// the listener first runs) behind every input already waiting.
    #[wasm_bindgen(js_name = addListener)]
    pub fn add_listener(&self, id: u32) {
        {
            let mut d = self.shared.borrow_mut();
            if d.destroyed {
                return;
            }
            d.subscribe(id);
        }
        let weak = Rc::downgrade(&self.shared);
        let host: Host = JsValue::clone(&self.shared.borrow().host).unchecked_into();
        js::when_settled(&host, &JsValue::UNDEFINED, move |_| {
            if let Some(shared) = weak.upgrade() {
                driver::pump(&shared);
            }
        });
    }

    /// The answer to request `id` (from the host's `fetch`).
    #[wasm_bindgen(js_name = __response)]
    pub fn response(
        &self,
        id: u32,
        status: u16,
        status_text: String,
        content_type: Option<String>,
        body: Vec<u8>,
    ) {
        driver::resume(
            &self.shared,
            Pending::Response {
                id: paywall_auth::RequestId(id),
                status,
                status_text,
                json: buf::is_json_content_type(content_type.as_deref()),
                body,
            },
        );
    }

    /// Request `id` failed below HTTP: `kind` 0 no connection, 1 lost after
    /// sending, 2 malformed answer; `note` replaces the generic text (a
    /// refused redirect says so).
    #[wasm_bindgen(js_name = __transport)]
    pub fn transport(&self, id: u32, kind: u8, note: Option<String>) {
        let error = match kind {
            0 => paywall_auth::TransportError::Connect,
            1 => paywall_auth::TransportError::ConnectionLost,
            _ => paywall_auth::TransportError::BadFraming,
        };
        driver::resume(
            &self.shared,
            Pending::Transport {
                id: paywall_auth::RequestId(id),
                error,
                note,
            },
        );
    }

    /// The host's timer fired.
    #[wasm_bindgen(js_name = __timeout)]
    pub fn timeout(&self) {
        driver::resume(&self.shared, Pending::Timeout);
    }

    /// Stops timers, watches and listeners; pending calls reject with
    /// `aborted`, later ones too, and storage is not written any more.
    pub fn destroy(&self) {
        driver::destroy(&self.shared, driver::End::Destroy);
    }
}

/// `free()` (or garbage collection of the JS object) ends the client like
/// `destroy()`: the timer must not outlive the closure it calls.
impl Drop for AuthClient {
    fn drop(&mut self) {
        driver::destroy(&self.shared, driver::End::Free);
    }
}

/// A JS call's reply kind and its Promise's settle functions.
type Settle = (Reply, Function, Function);

impl AuthClient {
    /// [`command`](Self::command), with `key` re-read first when there is
    /// no session (see `Pending::Pull`).
    fn command_after_pull(
        &self,
        key: RecordKey,
        command: Result<Command, js::ArgError>,
        settle: Settle,
    ) {
        if command.is_ok() && !self.shared.borrow().destroyed {
            self.shared.borrow_mut().enqueue(Pending::Pull(key));
        }
        self.command(command, settle);
    }

    /// Queues a command (its arguments already converted) and pumps; the
    /// Promise settles when the core completes it.
    fn command(&self, command: Result<Command, js::ArgError>, settle: Settle) {
        let (reply, resolve, reject) = settle;
        let refusal = {
            let mut d = self.shared.borrow_mut();
            match command {
                _ if d.destroyed => {
                    Some(d.errors.make("aborted", "the client was destroyed", None))
                }
                Err((code, message)) => Some(d.errors.make(code, &message, None)),
                Ok(command) => {
                    d.enqueue(Pending::Command {
                        command: Box::new(command),
                        reply,
                        resolve,
                        reject: reject.clone(),
                    });
                    None
                }
            }
        };
        match refusal {
            Some(error) => {
                let _ = reject.call1(&JsValue::UNDEFINED, &error);
            }
            None => driver::pump(&self.shared),
        }
    }
}

/// `scheme://host[:port]` as a browser's `URL.origin` spells it: lower
/// case, the default port left out.
fn origin_string(o: &origin::Origin<'_>) -> String {
    let (scheme, default) = match o.scheme {
        Scheme::Https => ("https://", 443),
        Scheme::Http => ("http://", 80),
    };
    let mut s = String::with_capacity(scheme.len() + o.host.len() + 6);
    s.push_str(scheme);
    s.push_str(&o.host.to_ascii_lowercase());
    if let Some(port) = o.port.filter(|p| *p != default) {
        s.push(':');
        msg::push_decimal(&mut s, usize::from(port));
    }
    s
}
