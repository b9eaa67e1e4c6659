//! `paywall-auth demo`: the anonymous sign-in lifecycle end to end, against
//! an in-process emulator and a fresh file store, checking every step.
//!
//! It is the project's smoke test as much as its showcase: each step states
//! what the protocol promises (same user id after a restart, one request
//! for twenty parallel sign-ins, no `/auth/signout` on a soft sign-out …),
//! checks it against what the client returned, the events it emitted and
//! the requests the emulator saw, and the command exits non-zero at the
//! first broken promise.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use paywall_auth_emulator::{Emulator, EmulatorConfig, Route};
use paywall_auth_tokio::{
    AuthClient, AuthEvents, FileStore, Session, SignInOptions, SignOutOptions, UpgradeOutcome,
    UpgradeRequest,
};
use serde_json::json;

use crate::commands::{event_of, ready_items};
use crate::emulator_cmd::short_path;
use crate::fail::Failure;
use crate::out::{self, Style};

const PAYWALL_ID: &str = "pw_demo";
const EMAIL: &str = "demo@example.com";
/// Only ever sent to the in-process emulator.
const PASSWORD: &str = "correct horse battery staple";
const PARALLEL_SIGN_INS: usize = 20;
const STEPS: usize = 8;
/// Deadline of each request: the emulator answers in microseconds, so
/// anything slower is a failure worth reporting quickly.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for a background request (the revocation of a hard
/// sign-out) to show up in the emulator's log.
const BACKGROUND_WAIT: Duration = Duration::from_secs(3);

/// What one step saw; printed whether it passed or not.
struct Seen {
    events: Vec<String>,
    requests: Vec<(String, Option<u16>)>,
}

struct Demo {
    emulator: Emulator,
    store: PathBuf,
    client: AuthClient,
    events: AuthEvents,
    json: bool,
    style: Style,
    total_requests: usize,
}

pub async fn run(json_mode: bool) -> Result<(), Failure> {
    let started = Instant::now();
    let style = Style::detect();
    let emulator = Emulator::start(EmulatorConfig {
        paywall_id: PAYWALL_ID.to_owned(),
        confirm_email: true,
        ..EmulatorConfig::default()
    })
    .await
    .map_err(|e| demo_failed(format!("cannot start the emulator: {e}")))?;
    let temp = tempfile::Builder::new()
        .prefix("paywall-auth-demo-")
        .tempdir()
        .map_err(|e| demo_failed(format!("cannot create a temporary store: {e}")))?;
    let store = temp.path().join("store");

    if json_mode {
        out::json_line(&json!({
            "demo": "started",
            "emulator": emulator.origin(),
            "paywall_id": PAYWALL_ID,
            "store": store.display().to_string(),
        }));
    } else {
        out::line(&format!(
            "{}\n  emulator  {} (paywall {PAYWALL_ID}, email confirmation on)\n  store     {} (fresh)\n",
            style.bold("paywall-auth demo: the anonymous sign-in lifecycle, end to end"),
            emulator.origin(),
            store.display(),
        ));
    }

    let (client, events) = open_client(&emulator, &store).await?;
    let mut demo = Demo {
        emulator: emulator.clone(),
        store,
        client,
        events,
        json: json_mode,
        style,
        total_requests: 0,
    };
    let result = demo.steps().await;
    demo.client.shutdown().await;
    emulator.shutdown().await;
    drop(temp);
    result?;

    let elapsed = started.elapsed();
    if json_mode {
        out::json_line(&json!({
            "demo": "passed",
            "steps": STEPS,
            "requests": demo.total_requests,
            "elapsed_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        }));
    } else {
        out::line(&format!(
            "\n{} all {STEPS} steps passed in {:.2} s ({} requests to the backend)",
            style.good("✓"),
            elapsed.as_secs_f64(),
            demo.total_requests,
        ));
    }
    Ok(())
}

async fn open_client(
    emulator: &Emulator,
    store: &Path,
) -> Result<(AuthClient, AuthEvents), Failure> {
    let store = FileStore::open(store).map_err(paywall_auth_tokio::Error::from)?;
    let client = AuthClient::builder(emulator.origin(), PAYWALL_ID)
        .store(store)
        .request_timeout(REQUEST_TIMEOUT)
        .build()
        .await?;
    let events = client.subscribe();
    Ok((client, events))
}

fn demo_failed(message: String) -> Failure {
    Failure::new("demo_failed", format!("demo_failed: {message}"))
}

/// `Err(message)` unless `condition`.
fn expect(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(message()) }
}

fn call<T>(what: &str, result: Result<T, paywall_auth_tokio::Error>) -> Result<T, String> {
    result.map_err(|e| format!("{what} failed: {e}"))
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

impl Demo {
    async fn steps(&mut self) -> Result<(), Failure> {
        // 1. A fresh store: the client creates a guest account.
        let r = async {
            let s = call(
                "sign_in_anonymously",
                self.client
                    .sign_in_anonymously(SignInOptions::default())
                    .await,
            )?;
            expect(s.user.is_anonymous, || {
                "the new session is not anonymous".into()
            })?;
            Ok(s)
        }
        .await;
        let seen = self.seen().await;
        let first = self.finish(1, "anonymous sign-in", r, &seen, |s| {
            format!("new guest {}", s.user.id)
        })?;
        self.expect_seen(
            1,
            &seen,
            &["INITIAL_SESSION", "SIGNED_IN"],
            &[Route::AnonymousSignIn],
        )?;
        let user = first.user.id.as_str().to_owned();

        // 2. Restart: a new client on the same directory is still that
        //    guest, without asking the backend anything.
        let r = async {
            self.client.shutdown().await;
            let (client, events) = open_client(&self.emulator, &self.store)
                .await
                .map_err(|e| format!("restart failed: {e}"))?;
            self.client = client;
            self.events = events;
            let s = call(
                "sign_in_anonymously",
                self.client
                    .sign_in_anonymously(SignInOptions::default())
                    .await,
            )?;
            expect(s.user.id == user.as_str(), || {
                format!("restart changed the user: {} -> {}", user, s.user.id)
            })?;
            Ok(s)
        }
        .await;
        let seen = self.seen().await;
        self.finish(2, "restart the client on the same store", r, &seen, |s| {
            format!("same user {}, already anonymous", short(&s.user.id))
        })?;
        self.expect_seen(2, &seen, &["INITIAL_SESSION"], &[])?;

        // 3. Soft sign-out, then twenty sign-ins at once: the core joins
        //    them into one resume of the stored guest account.
        let r = async {
            call(
                "sign_out",
                self.client.sign_out(SignOutOptions::default()).await,
            )?;
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..PARALLEL_SIGN_INS {
                let client = self.client.clone();
                tasks.spawn(
                    async move { client.sign_in_anonymously(SignInOptions::default()).await },
                );
            }
            let mut sessions: Vec<Session> = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                let result = joined.map_err(|e| format!("a sign-in task died: {e}"))?;
                sessions.push(call("sign_in_anonymously", result)?);
            }
            expect(sessions.iter().all(|s| s.user.id == user.as_str()), || {
                "the parallel sign-ins did not all resume the same user".into()
            })?;
            Ok(sessions.len())
        }
        .await;
        let seen = self.seen().await;
        self.finish(
            3,
            &format!("soft sign-out, then {PARALLEL_SIGN_INS} parallel sign-ins"),
            r,
            &seen,
            |n| format!("{n} callers, one resume, same user {}", short(&user)),
        )?;
        self.expect_seen(3, &seen, &["SIGNED_OUT", "SIGNED_IN"], &[Route::Refresh])?;

        // 4. The same, one caller: the stored refresh token resumes the
        //    account; the soft sign-out must not revoke it on the server.
        let r = async {
            call(
                "sign_out",
                self.client.sign_out(SignOutOptions::default()).await,
            )?;
            expect(self.client.has_resumable_anonymous(), || {
                "the soft sign-out did not keep the guest account resumable".into()
            })?;
            let s = call(
                "sign_in_anonymously",
                self.client
                    .sign_in_anonymously(SignInOptions::default())
                    .await,
            )?;
            expect(s.user.id == user.as_str(), || {
                format!("resume changed the user: {} -> {}", user, s.user.id)
            })?;
            Ok(s)
        }
        .await;
        let seen = self.seen().await;
        self.finish(4, "soft sign-out and resume", r, &seen, |s| {
            format!("same user {}, no /auth/signout", short(&s.user.id))
        })?;
        self.expect_seen(4, &seen, &["SIGNED_OUT", "SIGNED_IN"], &[Route::Refresh])?;

        // 5. Upgrade to an email account; the backend wants the address
        //    confirmed first, so nothing changes yet.
        let r = async {
            let request = UpgradeRequest::new(EMAIL, PASSWORD, Some("demo-upgrade-1"))
                .map_err(|e| format!("upgrade request: {e}"))?;
            let outcome = call(
                "upgrade_anonymous_to_email",
                self.client.upgrade_anonymous_to_email(request).await,
            )?;
            let UpgradeOutcome::ConfirmationRequired { email } = outcome else {
                return Err("expected confirmation_required, got updated".to_owned());
            };
            let still_guest = self.client.session().is_some_and(|s| s.user.is_anonymous);
            expect(still_guest, || {
                "the session stopped being anonymous before confirmation".into()
            })?;
            Ok(email)
        }
        .await;
        let seen = self.seen().await;
        self.finish(5, "upgrade to email", r, &seen, |email| {
            format!("confirmation_required ({email}), still anonymous")
        })?;
        self.expect_seen(5, &seen, &[], &[Route::Upgrade])?;

        // 6. The user clicks the link; a refresh shows the named account,
        //    same user id, as USER_UPDATED.
        let r = async {
            expect(self.emulator.confirm_email(EMAIL), || {
                format!("the emulator has no pending confirmation for {EMAIL}")
            })?;
            let s = call("refresh", self.client.refresh().await)?;
            expect(!s.user.is_anonymous, || {
                "still anonymous after confirmation".into()
            })?;
            expect(s.user.email.as_deref() == Some(EMAIL), || {
                format!("email is {:?} after confirmation", s.user.email)
            })?;
            expect(s.user.id == user.as_str(), || {
                format!("the upgrade changed the user: {} -> {}", user, s.user.id)
            })?;
            Ok(s)
        }
        .await;
        let seen = self.seen().await;
        self.finish(6, "confirm the email, then refresh", r, &seen, |s| {
            format!(
                "same user {}, now {} (is_anonymous=false)",
                short(&s.user.id),
                s.user.email.as_deref().unwrap_or("?")
            )
        })?;
        self.expect_seen(6, &seen, &["USER_UPDATED"], &[Route::Refresh])?;

        // 7. Hard sign-out: forget the guest account and revoke the session
        //    on the server (in the background).
        let r = async {
            call(
                "sign_out",
                self.client
                    .sign_out(SignOutOptions {
                        forget_anonymous: true,
                    })
                    .await,
            )?;
            expect(self.client.session().is_none(), || "still signed in".into())?;
            expect(!self.client.has_resumable_anonymous(), || {
                "the hard sign-out left a resumable guest account".into()
            })?;
            let deadline = Instant::now() + BACKGROUND_WAIT;
            while self.emulator.count(Route::SignOut) == 0 || self.pending_requests() {
                if Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(())
        }
        .await;
        let seen = self.seen().await;
        self.finish(7, "hard sign-out (forget_anonymous)", r, &seen, |()| {
            "signed out, account forgotten, session revoked".to_owned()
        })?;
        self.expect_seen(7, &seen, &["SIGNED_OUT"], &[Route::SignOut])?;

        // 8. With nothing to resume, a sign-in creates a new guest.
        let r = async {
            let s = call(
                "sign_in_anonymously",
                self.client
                    .sign_in_anonymously(SignInOptions::default())
                    .await,
            )?;
            expect(s.user.is_anonymous, || {
                "the new session is not anonymous".into()
            })?;
            expect(s.user.id != user.as_str(), || {
                "the hard sign-out did not forget the old account: same user id".into()
            })?;
            Ok(s)
        }
        .await;
        let seen = self.seen().await;
        self.finish(
            8,
            "anonymous sign-in after the hard sign-out",
            r,
            &seen,
            |s| format!("new guest {} (was {})", s.user.id, short(&user)),
        )?;
        self.expect_seen(8, &seen, &["SIGNED_IN"], &[Route::AnonymousSignIn])?;
        Ok(())
    }

    fn pending_requests(&self) -> bool {
        self.emulator
            .requests()
            .iter()
            .any(|r| r.status.is_none() && r.fault.is_none())
    }

    /// The events and requests of the step that just ran; clears the
    /// emulator's log for the next one.
    async fn seen(&mut self) -> Seen {
        // Events are queued before the completion that ended the step;
        // one turn of the scheduler delivers anything still on its way.
        tokio::task::yield_now().await;
        let events = ready_items(&mut self.events)
            .await
            .iter()
            .map(|e| event_of(e).name.to_owned())
            .collect();
        let requests: Vec<(String, Option<u16>)> = self
            .emulator
            .requests()
            .iter()
            .map(|r| (short_path(r).to_owned(), r.status))
            .collect();
        self.emulator.clear_log();
        self.total_requests += requests.len();
        Seen { events, requests }
    }

    /// Prints the step and turns a failed one into the demo's error.
    fn finish<T>(
        &self,
        n: usize,
        title: &str,
        result: Result<T, String>,
        seen: &Seen,
        describe: impl FnOnce(&T) -> String,
    ) -> Result<T, Failure> {
        let detail = match &result {
            Ok(value) => describe(value),
            Err(why) => why.clone(),
        };
        self.print(n, title, result.is_ok(), &detail, seen);
        result.map_err(|why| demo_failed(format!("step {n} ({title}): {why}")))
    }

    /// Checks the events and requests of step `n` against the protocol.
    fn expect_seen(
        &self,
        n: usize,
        seen: &Seen,
        events: &[&str],
        routes: &[Route],
    ) -> Result<(), Failure> {
        let wanted_routes: Vec<String> = routes
            .iter()
            .map(|r| {
                let template = r.path_template();
                template
                    .strip_prefix("/api/v1/paywall/{pid}")
                    .unwrap_or(template)
                    .to_owned()
            })
            .collect();
        let got_routes: Vec<String> = seen.requests.iter().map(|(r, _)| r.clone()).collect();
        let mut problems = Vec::new();
        if seen.events != events {
            problems.push(format!("expected events {events:?}, saw {:?}", seen.events));
        }
        if got_routes != wanted_routes {
            problems.push(format!(
                "expected requests {wanted_routes:?}, the emulator saw {got_routes:?}"
            ));
        }
        if let Some((route, status)) = seen
            .requests
            .iter()
            .find(|(_, status)| !status.is_some_and(|s| (200..300).contains(&s)))
        {
            problems.push(format!("{route} answered {status:?}"));
        }
        if problems.is_empty() {
            return Ok(());
        }
        let why = problems.join("; ");
        if self.json {
            out::json_line(&json!({ "step": n, "ok": false, "error": why }));
        } else {
            out::line(&format!("      {} {why}", self.style.bad("✗")));
        }
        Err(demo_failed(format!("step {n}: {why}")))
    }

    fn print(&self, n: usize, title: &str, ok: bool, detail: &str, seen: &Seen) {
        if self.json {
            let requests: Vec<_> = seen
                .requests
                .iter()
                .map(|(route, status)| json!({ "route": route, "status": status }))
                .collect();
            out::json_line(&json!({
                "step": n,
                "title": title,
                "ok": ok,
                "detail": detail,
                "events": seen.events,
                "requests": requests,
            }));
            return;
        }
        let mark = if ok {
            self.style.good("✓")
        } else {
            self.style.bad("✗")
        };
        let events = if seen.events.is_empty() {
            "none".to_owned()
        } else {
            seen.events.join(", ")
        };
        let requests = if seen.requests.is_empty() {
            "0".to_owned()
        } else {
            let list: Vec<String> = seen
                .requests
                .iter()
                .map(|(route, status)| match status {
                    Some(s) => format!("{route} → {s}"),
                    None => format!("{route} → no response"),
                })
                .collect();
            format!("{}  {}", seen.requests.len(), list.join(", "))
        };
        out::line(&format!(
            "{mark} {n}/{STEPS} {title}: {detail}\n      {} {events}\n      {} {requests}",
            self.style.dim("events  "),
            self.style.dim("requests"),
        ));
    }
}
