//! The session commands: `anon`, `upgrade`, `sign-out`, `refresh`, `token`,
//! `status`, `watch`.
//!
//! Each one opens the store, builds an [`AuthClient`] on it, issues one
//! call, prints the result and shuts the client down (which waits for a
//! background revocation and releases the store's lock). `status` and the
//! default `watch` never build a client: they read the store through
//! [`local::Observer`].

use std::io::{self, BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use paywall_auth_tokio::{
    AuthClient, AuthEvent, FileStore, Notice, RecordKey, Revocation, SignInOptions, SignOutOptions,
    Store as _, UpgradeOutcome, UpgradeRequest, UserMeta,
};
use serde_json::json;
use tokio_stream::{Stream, StreamExt as _};

use crate::binding::{self, Given, Need, Plan};
use crate::cli::{AnonArgs, Cmd, Global, UpgradeArgs, WatchArgs};
use crate::fail::{Failure, exit};
use crate::local::{self, Event, Observer};
use crate::out::{self, Summary, session_json};

/// How long a command waits for another `paywall-auth` process to release
/// the store (a script running two commands back to back, say) before
/// failing with `store_locked`.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Longest password line `upgrade --password-stdin` reads (1 KiB; the
/// core's own limit is lower): a stream without a newline must not grow
/// the process without bound.
pub const PASSWORD_MAX: usize = 1024;

/// What every session command needs to know.
#[derive(Debug)]
pub struct Ctx {
    /// What the flags and the environment asked for.
    given: Given,
    /// The configuration, from what was given and what the store is bound
    /// to (read without the lock; re-checked under it before any request).
    plan: Plan,
    pub store: PathBuf,
    pub json: bool,
    pub timeout: Option<Duration>,
    /// `--allow-insecure-http`.
    pub allow_insecure_http: bool,
    /// `--trace FILE`: the client records its trace there.
    pub trace: Option<PathBuf>,
    /// `--trace-secrets` (record-secrets).
    pub trace_secrets: bool,
}

impl Ctx {
    /// Resolves the configuration for a command that needs `need`, or
    /// fails before anything is locked, read from stdin or sent.
    pub fn new(global: &Global, need: Need) -> Result<Ctx, Failure> {
        let given = Given::from_global(global)?;
        let store = local::store_dir(global.store.as_deref())?;
        let plan = binding::merge(&given, binding::read_unlocked(&store)?, need, &store)?;
        Ok(Ctx {
            given,
            plan,
            store,
            json: global.json,
            timeout: global.timeout,
            allow_insecure_http: global.allow_insecure_http,
            trace: global.trace.clone(),
            trace_secrets: global.trace_secrets,
        })
    }

    pub fn paywall_id(&self) -> &str {
        &self.plan.paywall_id
    }

    /// A client on the store, which this binds on first use (or
    /// `--rebind`). One-shot commands do exactly what was asked: no
    /// proactive refresh timer (`token` still refreshes a stale token).
    async fn client(&self, keep_alive: bool) -> Result<(AuthClient, Plan), Failure> {
        let store = FileStore::open_wait(&self.store, LOCK_WAIT)
            .await
            .map_err(paywall_auth_tokio::Error::from)?;
        // Under the lock: another process may have bound the store since.
        let plan = binding::merge(
            &self.given,
            binding::read_locked(&store).await?,
            Need::Backend,
            &self.store,
        )?;
        binding::apply(&plan, &store).await?;
        let Some(api_origin) = plan.api_origin.as_deref() else {
            return Err(Failure::new("internal_error", "no API origin after merge"));
        };
        tracing::info!(
            "store {}: paywall {} at {api_origin}",
            self.store.display(),
            plan.paywall_id
        );
        let mut builder = AuthClient::builder(api_origin, plan.paywall_id.as_str())
            .store(store)
            .allow_insecure_http(self.allow_insecure_http);
        if let Some(timeout) = self.timeout {
            builder = builder.request_timeout(timeout);
        }
        if !keep_alive {
            builder = builder.proactive_refresh(None);
        }
        if let Some(path) = &self.trace {
            builder = builder
                .record_trace(path)
                .record_trace_secrets(self.trace_secrets);
        }
        let client = match builder.build().await {
            Ok(client) => client,
            Err(e) => {
                if plan.write.is_some() {
                    self.unbind_if_unused(&plan).await;
                }
                let mut failure = Failure::from(e);
                if failure.message.contains("clear text") {
                    failure.message.push_str(" (--allow-insecure-http)");
                }
                return Err(failure);
            }
        };
        warn_notices(&client).await;
        Ok((client, plan))
    }

    /// Takes back the binding this command wrote, after the command failed
    /// without leaving a record of its paywall: a first try with a
    /// mistyped paywall id or origin must not tie the store to it. Best
    /// effort: if someone else holds the store by now, it stays bound.
    async fn unbind_if_unused(&self, plan: &Plan) {
        let Ok(store) = FileStore::open(&self.store) else {
            return;
        };
        for key in [RecordKey::Session, RecordKey::AnonRefreshToken] {
            let Ok(name) = key.storage_key(&plan.paywall_id) else {
                return;
            };
            if !matches!(store.get(name.as_str()).await, Ok(None)) {
                return;
            }
        }
        match store.remove(binding::BINDING_KEY).await {
            Ok(()) => tracing::info!(
                "the command failed before anything was stored: {} is not bound",
                self.store.display()
            ),
            Err(e) => tracing::warn!("could not take back the binding: {e}"),
        }
    }
}

/// Runs a session command; `Ok` is the exit code.
pub async fn run(ctx: &Ctx, command: &Cmd) -> Result<u8, Failure> {
    match command {
        Cmd::Status => status(ctx),
        Cmd::Watch(args) if !args.keep_alive => watch_store(ctx, args).await,
        command => {
            // Read before the client exists: nothing to clean up on a bad
            // password, and nothing waits on the terminal with a lock held.
            let password = match command {
                Cmd::Upgrade(_) => Some(read_password()?),
                _ => None,
            };
            let (client, plan) = ctx.client(matches!(command, Cmd::Watch(_))).await?;
            let result = with_client(ctx, &client, command, password).await;
            client.shutdown().await;
            if result.is_err() && plan.write.is_some() {
                ctx.unbind_if_unused(&plan).await;
            }
            result
        }
    }
}

async fn with_client(
    ctx: &Ctx,
    client: &AuthClient,
    command: &Cmd,
    password: Option<String>,
) -> Result<u8, Failure> {
    match command {
        Cmd::Anon(args) => anon(ctx, client, args).await,
        Cmd::Upgrade(args) => {
            let password = password.unwrap_or_default();
            upgrade(ctx, client, args, &password).await
        }
        Cmd::SignOut(args) => {
            let was_signed_in = client.session().is_some();
            let revocation = client
                .sign_out(SignOutOptions {
                    forget_anonymous: args.forget,
                })
                .await?;
            let resumable = client.has_resumable_anonymous();
            // The local sign-out stands either way; a revocation the server
            // did not confirm is reported, never claimed (exit 4: retrying
            // later cannot help this session, but the operator must know it
            // lives on server-side until it expires).
            let (revoked, reason) = match &revocation {
                Revocation::NotNeeded => (None, None),
                Revocation::Revoked => (Some(true), None),
                Revocation::Failed { code, message, .. } => {
                    (Some(false), Some(format!("{code}: {message}")))
                }
            };
            if ctx.json {
                out::json_line(&json!({
                    "signed_out": true,
                    "was_signed_in": was_signed_in,
                    "forgot_anonymous": args.forget,
                    "resumable_anonymous": resumable,
                    "revoked": revoked,
                    "revocation_error": reason,
                }));
            } else {
                let what = match (was_signed_in, args.forget, revoked) {
                    (false, false, _) => "already signed out",
                    (false, true, _) => "already signed out; the anonymous account is forgotten",
                    (true, true, Some(true)) => {
                        "signed out; the anonymous account is forgotten and revoked"
                    }
                    (true, true, _) => "signed out; the anonymous account is forgotten",
                    (true, false, Some(true)) => "signed out; the session is revoked",
                    (true, false, _) => "signed out",
                };
                let hint = if resumable {
                    "\nthe anonymous account stays resumable: `paywall-auth anon` signs it back in"
                } else {
                    ""
                };
                out::line(&format!("{what}{hint}"));
            }
            if let Some(reason) = reason {
                warn(&format!(
                    "the server did not confirm the revocation ({reason}); the session stays valid there until it expires"
                ));
                return Ok(exit::TRANSIENT);
            }
            Ok(exit::OK)
        }
        Cmd::Refresh => {
            let session = client.refresh().await?;
            print_session(ctx, "refreshed", &Summary::of(&session));
            Ok(exit::OK)
        }
        Cmd::Token => match client.access_token().await? {
            Some(token) => {
                if ctx.json {
                    out::json_line(&json!({ "access_token": token.expose() }));
                } else {
                    out::line(token.expose());
                }
                Ok(exit::OK)
            }
            None => Err(no_session()),
        },
        Cmd::Watch(_) => watch_client(ctx, client).await,
        Cmd::Status | Cmd::Emulator(_) | Cmd::Demo | Cmd::Completions(_) | Cmd::Replay(_) => Err(
            Failure::new("internal_error", "this command does not run on a client"),
        ),
    }
}

fn no_session() -> Failure {
    Failure::not_authenticated("not_authenticated: no session (run `paywall-auth anon` first)")
}

async fn anon(ctx: &Ctx, client: &AuthClient, args: &AnonArgs) -> Result<u8, Failure> {
    let mut options = SignInOptions {
        force_new: args.force,
        ..SignInOptions::default()
    };
    let mut meta = UserMeta::new();
    for (key, value) in &args.meta {
        meta.insert(key, value).map_err(capacity)?;
    }
    options.user_meta = meta;
    if let Some(captcha) = &args.captcha {
        options = options.with_captcha(captcha).map_err(capacity)?;
    }
    // Subscribed before the call: a notice raised during it (a guest
    // account claimed by an email) is for the operator to see.
    let mut notices = client.notices();
    tokio::task::yield_now().await;
    let session =
        client
            .sign_in_anonymously(options)
            .await
            .map_err(|e| match Failure::from(e) {
                f if f.code == "not_anonymous" => Failure {
                    message: format!("{} (run `paywall-auth sign-out` first)", f.message),
                    ..f
                },
                f => f,
            })?;
    for notice in ready_items(&mut notices).await {
        if notice == Notice::GuestAccountClaimed {
            warn(
                "the stored guest account was claimed by an email address; \
                 it was signed out and a new guest was created",
            );
        }
    }
    print_session(ctx, "signed in", &Summary::of(&session));
    Ok(exit::OK)
}

async fn upgrade(
    ctx: &Ctx,
    client: &AuthClient,
    args: &UpgradeArgs,
    password: &str,
) -> Result<u8, Failure> {
    let request = UpgradeRequest::new(&args.email, password, args.idempotency_key.as_deref())
        .map_err(capacity)?;
    match client.upgrade_anonymous_to_email(request).await? {
        UpgradeOutcome::Updated(session) => {
            let summary = Summary::of(&session);
            if ctx.json {
                out::json_line(&json!({ "upgrade": "updated", "session": summary.to_json() }));
            } else {
                out::line(&format!(
                    "updated: the account now signs in as {}\n{}",
                    args.email,
                    summary.to_text("  ")
                ));
            }
        }
        UpgradeOutcome::ConfirmationRequired { email } => {
            let current = client.session().map(|s| Summary::of(&s));
            if ctx.json {
                out::json_line(&json!({
                    "upgrade": "confirmation_required",
                    "email": email,
                    "session": session_json(current.as_ref()),
                }));
            } else {
                out::line(&format!(
                    "confirmation_required: a confirmation link was sent to {email}\n\
                     the account stays anonymous until it is confirmed; then run `paywall-auth refresh`"
                ));
            }
        }
    }
    Ok(exit::OK)
}

fn status(ctx: &Ctx) -> Result<u8, Failure> {
    local::warn_if_shared(&ctx.store);
    let (mut observer, _) = Observer::open(&ctx.store, ctx.paywall_id())?;
    for warning in observer.take_warnings() {
        warn(&warning);
    }
    let session = observer.session();
    let resumable = observer.has_resumable_anonymous();
    if ctx.json {
        out::json_line(&json!({
            "session": session_json(session.as_ref()),
            "resumable_anonymous": resumable,
            "store": ctx.store.display().to_string(),
            "api_origin": ctx.plan.api_origin,
            "paywall_id": ctx.paywall_id(),
        }));
    } else {
        let head = match &session {
            Some(s) => format!("signed in\n{}", s.to_text("  ")),
            None => "signed out".to_owned(),
        };
        let resume = match (resumable, session.as_ref().is_some_and(|s| s.is_anonymous)) {
            (true, true) => "yes (this session)",
            (true, false) => "yes (`paywall-auth anon` resumes it)",
            (false, _) => "no",
        };
        out::line(&format!(
            "{head}\nresumable anonymous account: {resume}\nstore: {} (paywall {} at {})",
            ctx.store.display(),
            ctx.paywall_id(),
            ctx.plan
                .api_origin
                .as_deref()
                .unwrap_or("an origin not bound yet"),
        ));
    }
    Ok(if session.is_some() {
        exit::OK
    } else {
        exit::NOT_AUTHENTICATED
    })
}

/// `watch`: observes the store files until Ctrl-C/SIGTERM, printing the
/// events the core derives from each change. Takes no lock.
async fn watch_store(ctx: &Ctx, args: &WatchArgs) -> Result<u8, Failure> {
    let mut stop = crate::StopSignal::install();
    local::warn_if_shared(&ctx.store);
    let (mut observer, events) = Observer::open(&ctx.store, ctx.paywall_id())?;
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events = events;
    loop {
        for warning in observer.take_warnings() {
            warn(&warning);
        }
        for event in &events {
            if !print_event(ctx, event) {
                return Ok(exit::OK);
            }
        }
        tokio::select! {
            () = stop.recv() => return Ok(exit::OK),
            _ = tick.tick() => {}
        }
        events = observer.poll()?;
    }
}

/// `watch --keep-alive`: this process owns the session, refreshes it
/// before it expires, and prints its own events.
async fn watch_client(ctx: &Ctx, client: &AuthClient) -> Result<u8, Failure> {
    let mut stop = crate::StopSignal::install();
    let mut events = client.subscribe();
    loop {
        let event = tokio::select! {
            () = stop.recv() => return Ok(exit::OK),
            event = events.next() => event,
        };
        let Some(event) = event else {
            return Err(Failure::new(
                "client_closed",
                "client_closed: the auth client stopped",
            ));
        };
        if !print_event(ctx, &event_of(&event)) {
            return Ok(exit::OK);
        }
    }
}

pub fn event_of(event: &AuthEvent) -> Event {
    Event {
        name: event.change.as_str(),
        session: event.session.as_ref().map(Summary::of),
    }
}

fn print_event(ctx: &Ctx, event: &Event) -> bool {
    let at = out::rfc3339(out::now_ms() / 1000);
    if ctx.json {
        out::json_line(&json!({
            "event": event.name,
            "at": at,
            "session": session_json(event.session.as_ref()),
        }))
    } else {
        let who = match &event.session {
            None => "signed out".to_owned(),
            Some(s) => format!(
                "user {}{}",
                s.user_id,
                match (&s.email, s.is_anonymous) {
                    (_, true) => " (anonymous)".to_owned(),
                    (Some(email), false) => format!(" <{email}>"),
                    (None, false) => String::new(),
                }
            ),
        };
        out::line(&format!("{at}  {:<16} {who}", event.name))
    }
}

fn print_session(ctx: &Ctx, what: &str, summary: &Summary) {
    if ctx.json {
        out::json_line(&json!({ "session": summary.to_json() }));
    } else {
        out::line(&format!("{what}\n{}", summary.to_text("  ")));
    }
}

fn capacity(e: paywall_auth::CapacityError) -> Failure {
    Failure::from(paywall_auth::Error::Capacity(e))
}

fn warn(message: &str) {
    tracing::warn!("{message}");
}

/// Prints the storage notices the client raised while restoring (a record
/// it could not decode), without waiting for any later one.
async fn warn_notices(client: &AuthClient) {
    let mut notices = client.notices();
    // The subscription is answered by the driver task: let it run once.
    tokio::task::yield_now().await;
    for notice in ready_items(&mut notices).await {
        match notice {
            Notice::CorruptRecord { key, error } => {
                warn(&format!(
                    "the stored {} record is unreadable ({error}); it is left as it is",
                    key.name()
                ));
            }
            Notice::StorageFailed { key } => {
                warn(&format!("could not write the {} record", key.name()));
            }
            Notice::GuestAccountClaimed => {
                warn(
                    "the stored guest account was claimed by an email address; \
                     it was signed out and a new guest was created",
                );
            }
        }
    }
}

/// Every item the stream has ready now, without waiting for more.
pub async fn ready_items<S: Stream + Unpin>(stream: &mut S) -> Vec<S::Item> {
    let mut items = Vec::new();
    std::future::poll_fn(|cx| {
        while let Poll::Ready(Some(item)) = Pin::new(&mut *stream).poll_next(cx) {
            items.push(item);
        }
        Poll::Ready(())
    })
    .await;
    items
}

/// The password for `upgrade --password-stdin`: the first line of stdin,
/// without its line ending, at most [`PASSWORD_MAX`] bytes. On a terminal,
/// a prompt goes to stderr first. Read before the store is locked, so
/// nothing waits on stdin while holding the lock.
fn read_password() -> Result<String, Failure> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        let _ = write!(
            io::stderr().lock(),
            "password (read from stdin; it will be echoed, prefer a pipe): "
        );
        let _ = io::stderr().flush();
    }
    let password = read_password_line(&mut stdin.lock())?;
    if password.is_empty() {
        return Err(Failure::usage(
            "no password on stdin (pipe it: `printf '%s\\n' \"$PW\" | paywall-auth upgrade --email … --password-stdin`)",
        ));
    }
    Ok(password)
}

/// The first line of `input` without `\n` or `\r\n`, reading at most
/// [`PASSWORD_MAX`] bytes of it plus the line ending.
fn read_password_line(input: &mut impl io::BufRead) -> Result<String, Failure> {
    let mut line = Vec::new();
    input
        .take(PASSWORD_MAX as u64 + 2)
        .read_until(b'\n', &mut line)
        .map_err(|e| Failure::usage(format!("cannot read the password from stdin: {e}")))?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > PASSWORD_MAX {
        return Err(Failure::usage(format!(
            "the password line on stdin is longer than {PASSWORD_MAX} bytes"
        )));
    }
    String::from_utf8(line).map_err(|_| Failure::usage("the password on stdin is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_line_is_capped() {
        let read = |input: &[u8]| read_password_line(&mut io::Cursor::new(input.to_vec()));
        assert_eq!(read(b"pw\r\nnext line").unwrap(), "pw");
        assert_eq!(read(b"no newline").unwrap(), "no newline");
        let max = "x".repeat(PASSWORD_MAX);
        assert_eq!(read(format!("{max}\r\n").as_bytes()).unwrap(), max);
        assert_eq!(read(max.as_bytes()).unwrap(), max);
        let err = read(format!("{max}x\n").as_bytes()).unwrap_err();
        assert_eq!(err.code, "usage");
        assert!(err.message.contains("longer than 1024 bytes"), "{err}");
        // An endless stream without a newline stops at the cap.
        let err = read_password_line(&mut io::BufReader::new(io::repeat(b'x'))).unwrap_err();
        assert!(err.message.contains("longer than"), "{err}");
        assert_eq!(read(b"\xff\n").unwrap_err().code, "usage");
    }
}
