//! `paywall-auth-wasm`: the paywall anonymous sign-in client for JavaScript,
//! a thin wasm-bindgen loop around the sans-IO core (`paywall-auth`).
//!
//! The core decides everything (which request, which header, what to store,
//! which event); this crate only moves bytes between it and JavaScript:
//! `fetch` for requests, a storage adapter for records, `setTimeout` for the
//! core's deadline, Promises for completions and callbacks for auth events.
//! See `src/driver.rs` for the loop and README.md for the JS API; the package's
//! `client.js` adds the `PaywallError` class and the default storage.

mod buf;
mod driver;
mod js;
#[cfg(all(test, target_arch = "wasm32"))]
mod wasm_tests;

use std::fmt;
use std::rc::Rc;

use js_sys::{Function, Promise};
use paywall_auth::{Command, Config, Machine, RecordKey};
use wasm_bindgen::prelude::*;

use driver::{Pending, Reply, Shared};
use js::{Errors, StorageAdapter, Url};

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
    /// `new AuthClient({paywallId, apiOrigin, storage, fetch}, PaywallError)`.
    /// Throws a `PaywallError` with code `invalid_config` when the paywall
    /// id or the origin is missing or unusable, or `storage`/`fetch` are not
    /// what they should be.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue, error_class: Function) -> Result<AuthClient, JsValue> {
        let errors = Errors::new(error_class);
        let invalid = |message: &str| errors.make("invalid_config", message, None);

        let paywall_id = js::prop(&options, "paywallId")
            .as_string()
            .filter(|s| !s.is_empty());
        let paywall_id = paywall_id.ok_or_else(|| invalid("paywallId is required"))?;
        let api_origin = js::prop(&options, "apiOrigin")
            .as_string()
            .filter(|s| !s.is_empty());
        let api_origin = api_origin.ok_or_else(|| invalid("apiOrigin is required"))?;
        // docs/protocol.md §1.1: only scheme, host and port of apiOrigin count.
        let url = Url::new(&api_origin).map_err(|_| invalid("apiOrigin is not a valid URL"))?;
        if !matches!(url.protocol().as_str(), "http:" | "https:") {
            return Err(invalid("apiOrigin must be an http(s) URL"));
        }
        let mut config = Config::new(&paywall_id).map_err(|e| {
            let text = e.to_string();
            invalid(buf::strip_code_prefix(&text, "invalid_config"))
        })?;
        // A browser fetch can hang forever without failing: let the core
        // time requests out so no promise waits forever.
        config.request_timeout = Some(paywall_auth::Duration::from_secs(30));

        let storage = js::prop(&options, "storage");
        let complete = ["getItem", "setItem", "removeItem"]
            .iter()
            .all(|m| js::prop(&storage, m).is_function());
        if !complete {
            return Err(invalid(
                "storage must implement getItem, setItem and removeItem",
            ));
        }
        let fetch: Function = js::prop(&options, "fetch")
            .dyn_into()
            .map_err(|_| invalid("fetch must be a function"))?;

        let key = |k: RecordKey| k.storage_key(&paywall_id).map(|s| s.as_str().to_owned());
        let keys = [key(RecordKey::Session), key(RecordKey::AnonRefreshToken)];
        let [Ok(session_key), Ok(anon_key)] = keys else {
            return Err(invalid("paywallId is too long"));
        };

        let shared = driver::Driver::new(
            Machine::new(config),
            url.origin(),
            [session_key, anon_key],
            storage.unchecked_into::<StorageAdapter>(),
            fetch,
            errors,
        );
        driver::start(&shared);
        Ok(AuthClient { shared })
    }

    /// Signs in as a guest: resolves the current anonymous session, resumes
    /// the stored anonymous account, or creates one (docs/protocol.md §7.1).
    /// Options: `{ userMeta?, forceNewAnon?, captchaToken? }`.
    #[wasm_bindgen(js_name = signInAnonymously)]
    pub fn sign_in_anonymously(&self, options: JsValue) -> Promise {
        // The guest record is read fresh before a resume, as the reference
        // does (another tab may have rotated it).
        self.command_after_pull(
            RecordKey::AnonRefreshToken,
            js::sign_in_command(&options),
            Reply::Session,
        )
    }

    /// Attaches an email and password to the anonymous account. Options:
    /// `{ email, password, userMeta?, idempotencyKey? }`. Resolves
    /// `{kind: 'updated', session}` or `{kind: 'confirmation_required', email}`.
    #[wasm_bindgen(js_name = upgradeAnonymousToEmail)]
    pub fn upgrade_anonymous_to_email(&self, options: JsValue) -> Promise {
        self.command(js::upgrade_command(&options), Reply::Upgrade)
    }

    /// Signs out; `{ forgetAnonymous: true }` also forgets the anonymous
    /// account (a soft sign-out keeps it resumable).
    #[wasm_bindgen(js_name = signOut)]
    pub fn sign_out(&self, options: JsValue) -> Promise {
        self.command(Ok(js::sign_out_command(&options)), Reply::SignOut)
    }

    /// Rotates the tokens now. Resolves the new session, or `null` when
    /// there is no session or the server declared it dead (signed out).
    pub fn refresh(&self) -> Promise {
        self.command(Ok(Command::Refresh), Reply::Refresh)
    }

    /// A fresh access token (refreshing first if needed), or `null` when
    /// signed out.
    #[wasm_bindgen(js_name = getAccessToken)]
    pub fn get_access_token(&self) -> Promise {
        // Signed out here? Another tab may have signed in (§6.4 "pull").
        self.command_after_pull(
            RecordKey::Session,
            Ok(Command::AccessToken),
            Reply::AccessToken,
        )
    }

    /// The current session, or `null`. Synchronous.
    #[wasm_bindgen(js_name = getCachedSession)]
    pub fn get_cached_session(&self) -> JsValue {
        let mut d = self.shared.borrow_mut();
        let (machine, scratch) = d.scratch();
        machine
            .session()
            .map_or(JsValue::NULL, |s| js::session_value(s, scratch))
    }

    /// The current session's user, or `null`. Synchronous.
    #[wasm_bindgen(js_name = getCachedUser)]
    pub fn get_cached_user(&self) -> JsValue {
        let mut d = self.shared.borrow_mut();
        let (machine, scratch) = d.scratch();
        js::user_value(machine.session(), scratch)
    }

    /// Resolves once the stored session has been restored.
    pub fn ready(&self) -> Promise {
        let (promise, resolve, _) = deferred();
        let now = self.shared.borrow_mut().when_ready(resolve);
        if let Some(resolve) = now {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
        promise
    }

    /// Calls `callback(event, session)` on every auth change, starting with
    /// `INITIAL_SESSION`. Returns the function that unsubscribes it.
    #[wasm_bindgen(js_name = onAuthChange)]
    pub fn on_auth_change(&self, callback: Function) -> Function {
        let id = {
            let mut d = self.shared.borrow_mut();
            if d.destroyed {
                return Function::new_no_args("");
            }
            d.subscribe(callback)
        };
        // Delivered from a microtask: the caller holds its unsubscribe
        // function before the listener first runs.
        let weak = Rc::downgrade(&self.shared);
        wasm_bindgen_futures::spawn_local(async move {
            if let Some(shared) = weak.upgrade() {
                driver::pump(&shared);
            }
        });
        let weak = Rc::downgrade(&self.shared);
        Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = weak.upgrade() {
                shared.borrow_mut().unsubscribe(id);
            }
        })
        .into_js_value()
        .unchecked_into()
    }

    /// Stops timers, watches and listeners; pending calls reject with
    /// `aborted`, later ones too, and storage is not written any more.
    pub fn destroy(&self) {
        driver::destroy(&self.shared);
    }
}

/// `free()` (or garbage collection of the JS object) ends the client like
/// `destroy()`: the timer must not outlive the closure it calls.
impl Drop for AuthClient {
    fn drop(&mut self) {
        driver::destroy(&self.shared);
    }
}

impl AuthClient {
    /// Queues a command (its arguments already converted) and pumps; the
    /// Promise settles when the core completes it.
    /// [`command`](Self::command), with `key` re-read first when there is
    /// no session (see `Pending::Pull`).
    fn command_after_pull(
        &self,
        key: RecordKey,
        command: Result<Command, js::ArgError>,
        reply: Reply,
    ) -> Promise {
        if command.is_ok() && !self.shared.borrow().destroyed {
            self.shared.borrow_mut().enqueue(Pending::Pull(key));
        }
        self.command(command, reply)
    }

    fn command(&self, command: Result<Command, js::ArgError>, reply: Reply) -> Promise {
        let (promise, resolve, reject) = deferred();
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
        promise
    }
}

/// A pending Promise and its two settle functions.
fn deferred() -> (Promise, Function, Function) {
    let mut slots: Option<(Function, Function)> = None;
    let promise = Promise::new(&mut |resolve, reject| slots = Some((resolve, reject)));
    let (resolve, reject) =
        slots.unwrap_or_else(|| (Function::new_no_args(""), Function::new_no_args("")));
    (promise, resolve, reject)
}
