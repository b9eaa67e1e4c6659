//! The `paywall-auth` binary, run as a script would run it, against an
//! emulator started in the test.
//!
//! Each test runs on a multi-thread runtime: the emulator serves from a
//! worker thread while the test body blocks on the child process.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use paywall_auth_emulator::{Emulator, EmulatorConfig, Fault, Route};
use serde_json::Value;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_paywall-auth");

/// A finished run of the binary.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The only line of stdout, as JSON.
    fn json(&self) -> Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "expected one JSON line: {self:?}");
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
}

/// An emulator and a fresh store directory.
struct Env {
    emulator: Emulator,
    _dir: TempDir,
    store: PathBuf,
}

impl Env {
    async fn start(config: EmulatorConfig) -> Env {
        let emulator = Emulator::start(config).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        Env {
            emulator,
            _dir: dir,
            store,
        }
    }

    async fn new() -> Env {
        Env::start(EmulatorConfig::default()).await
    }

    fn cmd(&self, args: &[&str]) -> Command {
        command(&self.emulator.origin(), &self.store, args)
    }

    fn run(&self, args: &[&str]) -> Run {
        finish(self.cmd(args).stdin(Stdio::null()))
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }

    fn anon_user(&self) -> String {
        let run = self.run(&["anon", "--json"]).ok();
        run.json()["session"]["user"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// The paywall of the emulators started here (their default).
const PID: &str = "pw_demo";

/// The binary with a clean environment for its own variables, nothing
/// else given.
fn bare() -> Command {
    let mut cmd = Command::new(BIN);
    for var in [
        "PAYWALL_AUTH_API_ORIGIN",
        "PAYWALL_API_ORIGIN",
        "PAYWALL_AUTH_PAYWALL_ID",
        "PAYWALL_ID",
        "PAYWALL_AUTH_STORE",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// The binary on `store`, with nothing but the store given.
fn on_store(store: &Path, args: &[&str]) -> Command {
    let mut cmd = bare();
    cmd.arg("--store").arg(store).args(args);
    cmd
}

/// The binary on `store` for the emulator at `origin` (and its paywall,
/// unless `args` name one).
fn command(origin: &str, store: &Path, args: &[&str]) -> Command {
    let mut cmd = on_store(store, &["--api-origin", origin]);
    if !args.contains(&"--paywall-id") {
        cmd.args(["--paywall-id", PID]);
    }
    cmd.args(args);
    cmd
}

fn finish(cmd: &mut Command) -> Run {
    let output = cmd.output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// A loopback origin nothing listens on.
fn closed_origin() -> String {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn error_of(run: &Run) -> (String, Value) {
    let json = run.json();
    let error = &json["error"];
    assert!(error.is_object(), "{run:?}");
    assert!(error["message"].is_string(), "{run:?}");
    (
        error["code"].as_str().unwrap().to_owned(),
        error["status"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn anon_twice_is_the_same_user_and_one_request() {
    let env = Env::new().await;
    let first = env.run(&["anon", "--json"]).ok().json();
    let session = &first["session"];
    assert_eq!(session["user"]["is_anonymous"], true);
    assert_eq!(session["user"]["email"], Value::Null);
    assert!(session["expires_at"].as_u64().unwrap() > 1_600_000_000_000);
    let second = env.run(&["anon", "--json"]).ok().json();
    assert_eq!(
        first["session"]["user"]["id"],
        second["session"]["user"]["id"]
    );
    assert_eq!(env.emulator.count(Route::AnonymousSignIn), 1);
    assert_eq!(
        env.emulator.requests().len(),
        1,
        "the second anon is a no-op"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn human_output_never_shows_tokens() {
    let env = Env::new().await;
    let run = env.run(&["anon"]).ok();
    assert!(run.stdout.contains("anonymous  yes"), "{run:?}");
    let token = env.run(&["token"]).ok().stdout;
    let token = token.trim();
    for args in [
        &["anon"][..],
        &["status"],
        &["refresh"],
        &["anon", "--json"],
    ] {
        let run = env.run(args);
        assert!(!run.stdout.contains(token), "{args:?} printed the token");
        assert!(!run.stderr.contains(token), "{args:?} printed the token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn status_reads_the_store_without_the_network() {
    let env = Env::new().await;
    let before = env.run(&["status", "--json"]);
    assert_eq!(before.code, 2, "signed out is exit 2: {before:?}");
    assert_eq!(before.json()["session"], Value::Null);
    assert_eq!(before.json()["resumable_anonymous"], false);
    assert!(!env.store.exists(), "status creates nothing");

    let user = env.anon_user();
    env.emulator.clone().shutdown().await;
    let requests = env.emulator.requests().len();

    // Nothing listens at the origin any more: status does not care.
    let run = finish(on_store(&env.store, &["status", "--json"]).stdin(Stdio::null())).ok();
    let status = run.json();
    assert_eq!(status["session"]["user"]["id"], user.as_str());
    assert_eq!(status["session"]["user"]["is_anonymous"], true);
    assert_eq!(status["resumable_anonymous"], true);
    assert_eq!(status["store"], env.store.display().to_string());
    assert_eq!(status["api_origin"], env.emulator.origin().as_str());
    assert_eq!(status["paywall_id"], PID);
    let text = finish(on_store(&env.store, &["status"]).stdin(Stdio::null())).ok();
    assert!(text.stdout.contains(&user), "{text:?}");
    assert_eq!(env.emulator.requests().len(), requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn soft_sign_out_then_anon_resumes_the_same_user() {
    let env = Env::new().await;
    let user = env.anon_user();
    let out = env.run(&["sign-out", "--json"]).ok().json();
    assert_eq!(out["signed_out"], true);
    assert_eq!(out["was_signed_in"], true);
    assert_eq!(out["resumable_anonymous"], true);

    let status = env.run(&["status", "--json"]);
    assert_eq!(status.code, 2);
    assert_eq!(status.json()["resumable_anonymous"], true);

    assert_eq!(env.anon_user(), user);
    assert_eq!(env.emulator.count(Route::AnonymousSignIn), 1);
    assert_eq!(env.emulator.count(Route::Refresh), 1, "resumed");
    assert_eq!(
        env.emulator.count(Route::SignOut),
        0,
        "a soft sign-out revokes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn hard_sign_out_revokes_and_the_next_anon_is_a_new_user() {
    let env = Env::new().await;
    let user = env.anon_user();
    let out = env.run(&["sign-out", "--forget", "--json"]).ok().json();
    assert_eq!(out["forgot_anonymous"], true);
    assert_eq!(out["resumable_anonymous"], false);
    // The revocation runs in the background; the CLI waits for it on exit.
    assert_eq!(env.emulator.count(Route::SignOut), 1);
    assert_ne!(env.anon_user(), user);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn upgrade_reads_the_password_from_stdin() {
    let env = Env::new().await;
    let user = env.anon_user();
    let run = env
        .run_with_stdin(
            &[
                "upgrade",
                "--email",
                "Ann@Example.com",
                "--password-stdin",
                "--idempotency-key",
                "k-1",
                "--json",
            ],
            "s3cret pass\r\n",
        )
        .ok();
    let json = run.json();
    assert_eq!(json["upgrade"], "updated");
    assert_eq!(json["session"]["user"]["id"], user.as_str());
    assert_eq!(json["session"]["user"]["is_anonymous"], false);
    let request = env
        .emulator
        .requests()
        .into_iter()
        .find(|r| r.route == Some(Route::Upgrade))
        .unwrap();
    assert_eq!(request.header("idempotency-key"), Some("k-1"));
    let body: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(body["password"], "s3cret pass", "line ending stripped");
    assert!(env.emulator.user(&user).unwrap().has_password);

    let status = env.run(&["status", "--json"]).ok().json();
    assert_eq!(status["session"]["user"]["is_anonymous"], false);
    assert_eq!(
        status["resumable_anonymous"], false,
        "a named account is not resumable"
    );

    // A named account is not replaced by a guest behind the user's back.
    let run = env.run(&["anon", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let (code, _) = error_of(&run);
    assert_eq!(code, "not_anonymous");
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("sign-out"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn upgrade_with_confirmation_required_exits_zero_and_stays_anonymous() {
    let env = Env::start(EmulatorConfig {
        confirm_email: true,
        ..EmulatorConfig::default()
    })
    .await;
    let user = env.anon_user();
    let run = env
        .run_with_stdin(
            &["upgrade", "--email", "c@example.com", "--password-stdin"],
            "pw-123456\n",
        )
        .ok();
    assert!(run.stdout.starts_with("confirmation_required"), "{run:?}");
    let json = env
        .run_with_stdin(
            &[
                "upgrade",
                "--email",
                "c@example.com",
                "--password-stdin",
                "--json",
            ],
            "pw-123456\n",
        )
        .ok()
        .json();
    assert_eq!(json["upgrade"], "confirmation_required");
    assert_eq!(json["email"], "c@example.com");
    assert_eq!(json["session"]["user"]["is_anonymous"], true);

    assert!(env.emulator.confirm_email("c@example.com"));
    let refreshed = env.run(&["refresh", "--json"]).ok().json();
    assert_eq!(refreshed["session"]["user"]["id"], user.as_str());
    assert_eq!(refreshed["session"]["user"]["is_anonymous"], false);
    assert_eq!(refreshed["session"]["user"]["email"], "c@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn upgrade_refuses_an_empty_stdin_before_any_request() {
    let env = Env::new().await;
    env.anon_user();
    let run = env.run_with_stdin(
        &[
            "upgrade",
            "--email",
            "e@example.com",
            "--password-stdin",
            "--json",
        ],
        "",
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(error_of(&run).0, "usage");
    assert_eq!(env.emulator.count(Route::Upgrade), 0);

    // Passwords are never taken from the command line.
    let run = env.run(&["upgrade", "--email", "e@example.com", "--password", "x"]);
    assert_eq!(run.code, 1, "{run:?}");
    let run = env.run(&["upgrade", "--email", "e@example.com"]);
    assert_eq!(run.code, 1, "--password-stdin is required: {run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn token_prints_the_access_token_alone() {
    let env = Env::new().await;
    env.anon_user();
    let run = env.run(&["token"]).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{run:?}");
    assert_eq!(lines[0].split('.').count(), 3, "a JWT: {run:?}");
    assert!(run.stderr.is_empty(), "{run:?}");
    let json = env.run(&["token", "--json"]).ok().json();
    assert_eq!(json["access_token"], lines[0]);
    assert_eq!(
        env.emulator.requests().len(),
        1,
        "a fresh token needs no request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn no_session_is_exit_2_for_token_refresh_and_upgrade() {
    let env = Env::new().await;
    for args in [&["token", "--json"][..], &["refresh", "--json"]] {
        let run = env.run(args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        let (code, status) = error_of(&run);
        assert_eq!(code, "not_authenticated");
        assert_eq!(status, Value::Null);
    }
    let run = env.run_with_stdin(
        &[
            "upgrade",
            "--email",
            "x@example.com",
            "--password-stdin",
            "--json",
        ],
        "pw\n",
    );
    assert_eq!(run.code, 2, "{run:?}");
    // Human mode: the error goes to stderr, stdout stays empty.
    let run = env.run(&["token"]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr.starts_with("error: not_authenticated"),
        "{run:?}"
    );
    assert!(env.emulator.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn anonymous_disabled_is_exit_6() {
    let env = Env::start(EmulatorConfig {
        allow_anonymous: false,
        ..EmulatorConfig::default()
    })
    .await;
    let run = env.run(&["anon", "--json"]);
    assert_eq!(run.code, 6, "{run:?}");
    let (code, status) = error_of(&run);
    assert_eq!(code, "anonymous_disabled");
    assert_eq!(status, 403);
    let human = env.run(&["anon"]);
    assert_eq!(human.code, 6);
    assert!(human.stderr.contains("anonymous_disabled"), "{human:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_closed_port_is_a_network_error_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let run = finish(
        command(
            &closed_origin(),
            dir.path(),
            &["anon", "--json", "--timeout", "5"],
        )
        .stdin(Stdio::null()),
    );
    assert_eq!(run.code, 4, "{run:?}");
    let (code, status) = error_of(&run);
    assert_eq!(code, "network_error");
    assert_eq!(status, Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn server_errors_map_to_refused_or_transient() {
    let env = Env::new().await;
    env.anon_user();
    let cases = [
        (Fault::status(400, "weak_password"), 3, "weak_password"),
        (Fault::status(422, ""), 3, "http_422"),
        (
            Fault::status(429, "over_request_rate_limit"),
            4,
            "over_request_rate_limit",
        ),
        (Fault::status(503, "upstream"), 4, "upstream"),
    ];
    for (fault, exit, code) in cases {
        env.emulator.inject(Route::Upgrade, fault, 1);
        let run = env.run_with_stdin(
            &[
                "upgrade",
                "--email",
                "f@example.com",
                "--password-stdin",
                "--json",
            ],
            "pw-123456\n",
        );
        assert_eq!(run.code, exit, "{run:?}");
        assert_eq!(error_of(&run).0, code);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn store_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = Env::new().await;
    env.anon_user();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env.store), 0o700);
    let mut records = 0;
    for entry in std::fs::read_dir(&env.store).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        records += 1;
    }
    assert!(records >= 2, "session and resumable copy");
}

/// Lines of a running child's stdout, with a deadline per line.
struct Lines {
    rx: mpsc::Receiver<String>,
}

impl Lines {
    fn of(child: &mut Child) -> Lines {
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx }
    }

    fn next_json(&self) -> Value {
        let line = self
            .rx
            .recv_timeout(Duration::from_secs(10))
            .expect("no line within 10 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }
}

fn terminate(child: &mut Child) -> i32 {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap().code().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn watch_reports_changes_made_by_other_commands() {
    let env = Env::new().await;
    let mut watch = env
        .cmd(&["watch", "--json", "--interval", "0.05"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::of(&mut watch);
    let initial = lines.next_json();
    assert_eq!(initial["event"], "INITIAL_SESSION");
    assert_eq!(initial["session"], Value::Null);

    // watch holds no lock: other commands work meanwhile.
    let user = env.anon_user();
    let signed_in = lines.next_json();
    assert_eq!(signed_in["event"], "SIGNED_IN");
    assert_eq!(signed_in["session"]["user"]["id"], user.as_str());

    env.run(&["sign-out"]).ok();
    let signed_out = lines.next_json();
    assert_eq!(signed_out["event"], "SIGNED_OUT");
    assert_eq!(signed_out["session"], Value::Null);

    assert_eq!(terminate(&mut watch), 0, "SIGTERM is a clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn watch_keep_alive_owns_the_store_until_sigterm() {
    let env = Env::new().await;
    let user = env.anon_user();
    let mut watch = env
        .cmd(&["watch", "--keep-alive", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::of(&mut watch);
    let initial = lines.next_json();
    assert_eq!(initial["event"], "INITIAL_SESSION");
    assert_eq!(initial["session"]["user"]["id"], user.as_str());

    // The session belongs to the watcher now; a second writer is refused.
    let run = env.run(&["anon", "--json"]);
    assert_eq!(run.code, 5, "{run:?}");
    assert_eq!(error_of(&run).0, "store_locked");

    assert_eq!(terminate(&mut watch), 0);
    // The lock went with it.
    assert_eq!(env.anon_user(), user);
}

#[test]
fn the_demo_passes() {
    let run = finish(
        Command::new(BIN)
            .arg("demo")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null()),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("all 8 steps passed"), "{run:?}");
    for n in 1..=8 {
        assert!(
            run.stdout.contains(&format!("✓ {n}/8 ")),
            "step {n}: {run:?}"
        );
    }
    assert!(!run.stdout.contains('\x1b'), "NO_COLOR is respected");
}

#[test]
fn the_demo_speaks_json_too() {
    let run = finish(
        Command::new(BIN)
            .args(["demo", "--json"])
            .stdin(Stdio::null()),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<&Value> = lines.iter().filter(|l| l.get("step").is_some()).collect();
    assert_eq!(steps.len(), 8);
    assert!(steps.iter().all(|s| s["ok"] == true));
    assert_eq!(
        steps[2]["requests"].as_array().unwrap().len(),
        1,
        "20 sign-ins, 1 request"
    );
    assert_eq!(lines.last().unwrap()["demo"], "passed");
}

#[test]
fn help_lists_every_subcommand_and_the_exit_codes() {
    let run = finish(Command::new(BIN).arg("--help").stdin(Stdio::null())).ok();
    for sub in [
        "anon", "upgrade", "sign-out", "refresh", "token", "status", "watch", "emulator", "demo",
        "replay",
    ] {
        assert!(
            run.stdout.lines().any(|l| l.trim_start().starts_with(sub)),
            "{sub} missing from --help:\n{}",
            run.stdout
        );
    }
    for code in [
        "0  ok",
        "2  not authenticated",
        "6  anonymous sign-in is disabled",
        "7  replay",
    ] {
        assert!(run.stdout.contains(code), "{code}:\n{}", run.stdout);
    }
    for flag in [
        "--api-origin",
        "--paywall-id",
        "--store",
        "--json",
        "--timeout",
        "--trace",
        "--trace-secrets",
    ] {
        assert!(run.stdout.contains(flag), "{flag}");
    }
}

#[test]
fn usage_errors_exit_1() {
    let run = finish(Command::new(BIN).arg("frobnicate").stdin(Stdio::null()));
    assert_eq!(run.code, 1, "{run:?}");
    let run = finish(
        Command::new(BIN)
            .args(["frobnicate", "--json"])
            .stdin(Stdio::null()),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(error_of(&run).0, "usage");
    let run = finish(Command::new(BIN).stdin(Stdio::null()));
    assert_eq!(run.code, 1, "no subcommand: {run:?}");
    let dir = tempfile::tempdir().unwrap();
    let run =
        finish(command("ftp://nowhere", dir.path(), &["anon", "--json"]).stdin(Stdio::null()));
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(error_of(&run).0, "invalid_config");
    let run = finish(
        command(
            "http://127.0.0.1:1",
            dir.path(),
            &["status", "--paywall-id", "a/b"],
        )
        .stdin(Stdio::null()),
    );
    assert_eq!(run.code, 1, "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_emulator_subcommand_serves_until_sigterm() {
    let port = {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut emulator = Command::new(BIN)
        .args([
            "emulator",
            "--port",
            &port.to_string(),
            "--no-anonymous",
            "--json",
        ])
        .env_remove("PAYWALL_ID")
        .env_remove("PAYWALL_AUTH_PAYWALL_ID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::of(&mut emulator);
    let banner = lines.next_json();
    let origin = format!("http://127.0.0.1:{port}");
    assert_eq!(banner["emulator"]["origin"], origin.as_str());
    assert_eq!(banner["emulator"]["allow_anonymous"], false);

    let run = finish(command(&origin, dir.path(), &["anon", "--json"]).stdin(Stdio::null()));
    assert_eq!(run.code, 6, "{run:?}");
    let logged = lines.next_json();
    assert_eq!(logged["request"]["route"], "anonymous_signin");
    assert_eq!(logged["request"]["status"], 403);

    assert_eq!(terminate(&mut emulator), 0);
}

// ---------------------------------------------------------------------------
// The store remembers its backend (issue 10, item 4)
// ---------------------------------------------------------------------------

fn binding_of(store: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(store.join("binding.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_store_remembers_its_backend_after_first_use() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = Env::new().await;
    let user = env.anon_user();
    let binding = binding_of(&env.store);
    assert_eq!(binding["schema"], 1);
    assert_eq!(binding["api_origin"], env.emulator.origin().as_str());
    assert_eq!(binding["paywall_id"], PID);
    let mode = std::fs::metadata(env.store.join("binding.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Later commands name only the store.
    let run = |args: &[&str]| finish(on_store(&env.store, args).stdin(Stdio::null()));
    let status = run(&["status", "--json"]).ok().json();
    assert_eq!(status["session"]["user"]["id"], user.as_str());
    run(&["refresh"]).ok();
    run(&["sign-out"]).ok();
    let again = run(&["anon", "--json"]).ok().json();
    assert_eq!(again["session"]["user"]["id"], user.as_str(), "resumed");
    assert_eq!(env.emulator.count(Route::AnonymousSignIn), 1);
    assert_eq!(env.emulator.count(Route::Refresh), 2);
    assert_eq!(binding_of(&env.store), binding, "unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_default_store_needs_no_flags_after_the_first_command() {
    let env = Env::new().await;
    let home = tempfile::tempdir().unwrap();
    let in_home = |args: &[&str]| {
        let mut cmd = bare();
        cmd.env("HOME", home.path())
            .env_remove("XDG_STATE_HOME")
            .args(args)
            .stdin(Stdio::null());
        finish(&mut cmd)
    };
    let origin = env.emulator.origin();
    let first = in_home(&[
        "--api-origin",
        &origin,
        "--paywall-id",
        PID,
        "anon",
        "--json",
    ])
    .ok()
    .json();
    let status = in_home(&["status", "--json"]).ok().json();
    assert_eq!(
        status["session"]["user"]["id"],
        first["session"]["user"]["id"]
    );
    assert_eq!(
        status["store"],
        home.path()
            .join(".local/state/paywall-auth/default")
            .display()
            .to_string()
    );
    in_home(&["token"]).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_store_refuses_another_backend_unless_rebind() {
    let env = Env::new().await;
    let other = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let user = env.anon_user();

    for args in [
        vec!["--paywall-id", "pw_other", "anon", "--json"],
        vec!["--api-origin", other.origin().leak(), "anon", "--json"],
        vec!["--api-origin", other.origin().leak(), "status", "--json"],
    ] {
        let run = finish(on_store(&env.store, &args).stdin(Stdio::null()));
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert_eq!(error_of(&run).0, "binding_mismatch");
        let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
        let bound = format!("paywall {PID} at {}", env.emulator.origin());
        assert!(message.contains(&bound), "{message}");
        assert!(message.contains("--rebind"), "{message}");
        assert!(
            message.contains("pw_other") || message.contains(&other.origin()),
            "names the refused backend: {message}"
        );
    }
    assert!(
        other.requests().is_empty(),
        "nothing reached the other backend"
    );
    assert_eq!(env.emulator.requests().len(), 1);

    // --rebind: the old backend's records are deleted first, so its refresh
    // token never reaches the new one, and the store is the new one's.
    let run = finish(
        on_store(
            &env.store,
            &[
                "--api-origin",
                &other.origin(),
                "--rebind",
                "anon",
                "--json",
            ],
        )
        .stdin(Stdio::null()),
    )
    .ok();
    assert_ne!(run.json()["session"]["user"]["id"], user.as_str());
    assert!(run.stderr.contains("deleted"), "{run:?}");
    let routes: Vec<_> = other.requests().into_iter().map(|r| r.route).collect();
    assert_eq!(routes, [Some(Route::AnonymousSignIn)]);
    assert_eq!(
        binding_of(&env.store)["api_origin"],
        other.origin().as_str()
    );
    let status = finish(on_store(&env.store, &["status", "--json"]).stdin(Stdio::null()))
        .ok()
        .json();
    assert_eq!(status["api_origin"], other.origin().as_str());
    assert_eq!(
        env.emulator.requests().len(),
        1,
        "the old backend saw nothing more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_failed_first_use_leaves_the_store_unbound() {
    let env = Env::new().await;
    // A mistyped paywall id: the backend does not know it.
    let run = env.run(&["--paywall-id", "pw_typo", "anon", "--json"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        !env.store.join("binding.json").exists(),
        "not bound to the typo"
    );
    let run = env.run(&["--paywall-id", "pw_typo", "token", "--json"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(!env.store.join("binding.json").exists());
    // The right one needs no --rebind.
    env.anon_user();
    assert_eq!(binding_of(&env.store)["paywall_id"], PID);
    // Once bound, a failing command leaves the binding alone.
    env.emulator
        .inject(Route::Refresh, Fault::status(503, "upstream"), 1);
    assert_eq!(env.run(&["refresh"]).code, 4);
    assert_eq!(binding_of(&env.store)["paywall_id"], PID);
}

#[test]
fn missing_configuration_is_a_usage_error_naming_flag_and_variable() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let run = finish(on_store(&store, &["anon", "--json"]).stdin(Stdio::null()));
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(error_of(&run).0, "usage");
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    for needle in [
        "--api-origin",
        "PAYWALL_AUTH_API_ORIGIN",
        "--paywall-id",
        "PAYWALL_AUTH_PAYWALL_ID",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    assert!(!store.exists(), "nothing created");

    let run = finish(on_store(&store, &["--paywall-id", PID, "token"]).stdin(Stdio::null()));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("--api-origin URL (or set PAYWALL_AUTH_API_ORIGIN)"),
        "{run:?}"
    );
    let run = finish(on_store(&store, &["status"]).stdin(Stdio::null()));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("--paywall-id ID (or set PAYWALL_AUTH_PAYWALL_ID)"),
        "{run:?}"
    );
    // No silent localhost default any more; the emulator keeps its own.
    let run = finish(on_store(&store, &["--paywall-id", PID, "anon"]).stdin(Stdio::null()));
    assert_eq!(run.code, 1, "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn environment_variables_new_names_and_old_aliases() {
    let env = Env::new().await;
    let origin = env.emulator.origin();
    // The old names.
    let old = finish(
        on_store(&env.store, &["anon", "--json"])
            .env("PAYWALL_API_ORIGIN", &origin)
            .env("PAYWALL_ID", PID)
            .stdin(Stdio::null()),
    )
    .ok();
    assert_eq!(binding_of(&env.store)["api_origin"], origin.as_str());
    // The new names, on another store; they win over the old ones.
    let dir = tempfile::tempdir().unwrap();
    let new = finish(
        bare()
            .env("PAYWALL_AUTH_STORE", dir.path())
            .env("PAYWALL_AUTH_API_ORIGIN", &origin)
            .env("PAYWALL_AUTH_PAYWALL_ID", PID)
            .env("PAYWALL_API_ORIGIN", closed_origin())
            .env("PAYWALL_ID", "pw_wrong")
            .args(["anon", "--json"])
            .stdin(Stdio::null()),
    )
    .ok();
    assert_ne!(
        old.json()["session"]["user"]["id"],
        new.json()["session"]["user"]["id"]
    );
    assert_eq!(binding_of(dir.path())["paywall_id"], PID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn json_output_carries_schema_1_and_the_sdk_session_shape() {
    let env = Env::new().await;
    let before = out::now_ms_for_tests();
    let json = env.run(&["anon", "--json"]).ok().json();
    assert_eq!(json["schema"], 1);
    let session = &json["session"];
    let keys: Vec<&String> = session.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["expires_at", "user"], "no tokens: {session}");
    let user = session["user"].as_object().unwrap();
    for key in ["id", "email", "is_anonymous", "name", "avatar", "country"] {
        assert!(user.contains_key(key), "{key}: {session}");
    }
    assert!(!user["id"].as_str().unwrap().is_empty());
    // Milliseconds since the epoch, about an hour ahead (the emulator's
    // tokens live 3600 s).
    let expires_at = session["expires_at"].as_u64().unwrap();
    assert!(
        expires_at > before + 3_000_000 && expires_at < before + 3_700_000,
        "{expires_at} vs now {before}"
    );

    for args in [
        &["status", "--json"][..],
        &["refresh", "--json"],
        &["sign-out", "--json"],
    ] {
        assert_eq!(env.run(args).ok().json()["schema"], 1, "{args:?}");
    }
    let error = env.run(&["token", "--json"]);
    assert_eq!(error.code, 2);
    assert_eq!(error.json()["schema"], 1);
    let usage = finish(bare().args(["frobnicate", "--json"]).stdin(Stdio::null()));
    assert_eq!(usage.json()["schema"], 1);
}

mod out {
    pub fn now_ms_for_tests() -> u64 {
        u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap()
    }
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let run = finish(bare().args(["completions", shell]).stdin(Stdio::null())).ok();
        assert!(run.stdout.len() > 1000, "{shell}: {run:?}");
        for word in [
            "paywall-auth",
            "sign-out",
            "api-origin",
            "rebind",
            "replay",
            "trace-secrets",
        ] {
            assert!(run.stdout.contains(word), "{shell}: {word} missing");
        }
    }
    let run = finish(bare().args(["completions", "tcsh"]).stdin(Stdio::null()));
    assert_eq!(run.code, 1, "{run:?}");
}

// ---------------------------------------------------------------------------
// Field safety, the CLI's share (issue 9, item 8)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_store_directory_others_can_read_is_a_warning() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = Env::new().await;
    std::fs::create_dir(&env.store).unwrap();
    std::fs::set_permissions(&env.store, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = env.run(&["anon"]).ok();
    let warning = format!(
        "warning: store directory {} is accessible to other users (mode 0755)",
        env.store.display()
    );
    assert!(run.stderr.contains(&warning), "{run:?}");
    assert!(run.stderr.contains("chmod 700"), "{run:?}");
    let status = finish(on_store(&env.store, &["status"]).stdin(Stdio::null())).ok();
    assert!(status.stderr.contains(&warning), "{status:?}");

    std::fs::set_permissions(&env.store, std::fs::Permissions::from_mode(0o700)).unwrap();
    let quiet = env.run(&["anon"]).ok();
    assert!(quiet.stderr.is_empty(), "{quiet:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_origin_path_is_ignored_with_a_warning_and_credentials_are_refused() {
    let env = Env::new().await;
    let origin = env.emulator.origin();
    let run = finish(
        command(
            &format!("{origin}/base/?q=1#top"),
            &env.store,
            &["anon", "--json"],
        )
        .stdin(Stdio::null()),
    )
    .ok();
    assert!(
        run.stderr.contains(&format!(
            "warning: the API origin's path, query and fragment are ignored: using {origin}"
        )),
        "{run:?}"
    );
    assert_eq!(binding_of(&env.store)["api_origin"], origin.as_str());

    let with_credentials = origin.replacen("http://", "http://kiosk:hunter2@", 1);
    let dir = tempfile::tempdir().unwrap();
    for json in [true, false] {
        let mut args = vec!["anon"];
        if json {
            args.push("--json");
        }
        let run = finish(command(&with_credentials, dir.path(), &args).stdin(Stdio::null()));
        assert_eq!(run.code, 1, "{run:?}");
        let text = format!("{}{}", run.stdout, run.stderr);
        assert!(text.contains("credentials"), "{run:?}");
        assert!(text.contains("invalid_config"), "{run:?}");
        assert!(
            !text.contains("hunter2"),
            "the password is never printed: {run:?}"
        );
    }
    assert_eq!(env.emulator.count(Route::AnonymousSignIn), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn verbosity_and_rust_log_control_the_log_lines_and_no_level_shows_a_token() {
    let env = Env::new().await;
    let quiet = env.run(&["anon"]).ok();
    assert!(
        quiet.stderr.is_empty(),
        "warnings only by default: {quiet:?}"
    );
    let token = env.run(&["token"]).ok().stdout.trim().to_owned();

    let debug = env.run(&["-vv", "refresh"]).ok();
    assert!(
        debug.stderr.contains("debug: [paywall_auth_tokio"),
        "{debug:?}"
    );
    assert!(debug.stderr.contains("file store opened"), "{debug:?}");
    let info = env.run(&["anon", "-v"]).ok();
    assert!(info.stderr.contains("info: "), "{info:?}");
    assert!(!info.stderr.contains("debug: "), "{info:?}");

    let logged = finish(
        env.cmd(&["status"])
            .env("RUST_LOG", "paywall_auth=debug")
            .stdin(Stdio::null()),
    );
    assert_eq!(logged.code, 0, "{logged:?}");
    let logged = finish(
        env.cmd(&["refresh"])
            .env("RUST_LOG", "paywall_auth_tokio=debug")
            .stdin(Stdio::null()),
    )
    .ok();
    assert!(logged.stderr.contains("file store opened"), "{logged:?}");

    // The most verbose level never shows a secret.
    for args in [
        &["-vvv", "token"][..],
        &["-vvv", "refresh"],
        &["-vvv", "anon"],
    ] {
        let run = env.run(args).ok();
        let fresh = env.run(&["token"]).ok().stdout.trim().to_owned();
        for secret in [&token, &fresh] {
            assert!(
                !run.stderr.contains(secret.as_str()),
                "{args:?} logged a token"
            );
        }
    }
}

/// The uid owning `/proc/<pid>/status`: the process's own uid while it is
/// dumpable, root once it is not (the kernel's `task_dump_owner`; the
/// directory `/proc/<pid>` itself keeps the process's uid).
fn proc_owner(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(format!("/proc/{pid}/status"))
        .ok()
        .map(|m| m.uid())
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn no_core_dump_while_the_password_is_read() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;
    let env = Env::new().await;
    // Root owns /proc/<pid>/status of a root child either way: as root, run
    // the child as nobody, from a copy of the binary in a directory nobody
    // can enter (the build directory may be under a private home).
    let as_root = proc_owner(std::process::id()) == Some(0);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let args = command(
        &env.emulator.origin(),
        &dir.path().join("store"),
        &["upgrade", "--email", "e@example.com", "--password-stdin"],
    );
    let mut cmd = if as_root {
        let copy = dir.path().join("paywall-auth");
        std::fs::copy(BIN, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cmd = Command::new(copy);
        cmd.args(args.get_args()).uid(65_534).gid(65_534);
        cmd
    } else {
        args
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The child waits for the password line: look at it meanwhile.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (mut owner, mut limits) = (None, String::new());
    while std::time::Instant::now() < deadline {
        owner = proc_owner(pid);
        limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>());
        if owner == Some(0)
            && core.as_deref() == Some(&["Max", "core", "file", "size", "0", "0", "bytes"][..])
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let still_waiting = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        still_waiting,
        "the child exited early: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(owner, Some(0), "PR_SET_DUMPABLE is not 0");
    assert!(
        limits
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["Max", "core", "file", "size", "0", "0", "bytes"]),
        "RLIMIT_CORE is not 0/0:\n{limits}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn local_reads_are_bounded_and_never_block() {
    let env = Env::new().await;
    env.anon_user();
    let session = env.store.join(format!("pw-{PID}-auth-v1"));
    std::fs::remove_file(&session).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(&session)
        .status()
        .unwrap();
    assert!(status.success());
    // Both the lock-free reader and a locking command: refused at once.
    for args in [&["status", "--json"][..], &["anon", "--json"]] {
        let mut child = env
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let blocked = child.try_wait().unwrap().is_none();
        if blocked {
            child.kill().unwrap();
        }
        let output = child.wait_with_output().unwrap();
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        };
        assert!(!blocked, "{args:?} blocked on a FIFO");
        assert_eq!(run.code, 5, "{args:?}: {run:?}");
        assert_eq!(error_of(&run).0, "storage_failed");
        let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains(&session.display().to_string()),
            "{message}"
        );
        assert!(message.contains("not a regular file (a FIFO)"), "{message}");
    }

    std::fs::remove_file(&session).unwrap();
    std::fs::write(&session, vec![b' '; 70_000]).unwrap();
    let run = env.run(&["status", "--json"]);
    assert_eq!(run.code, 5, "{run:?}");
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("record too large (70000 bytes; at most 65536)"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_password_line_is_capped() {
    let env = Env::new().await;
    env.anon_user();
    let run = env.run_with_stdin(
        &[
            "upgrade",
            "--email",
            "e@example.com",
            "--password-stdin",
            "--json",
        ],
        &format!("{}\n", "p".repeat(5000)),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(error_of(&run).0, "usage");
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("longer than 1024 bytes"), "{message}");
    assert_eq!(env.emulator.count(Route::Upgrade), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_header_breaking_idempotency_key_is_a_usage_error() {
    let env = Env::new().await;
    env.anon_user();
    for key in ["k\r\nX-Injected: 1", "k\n", "tab\there", "\u{7f}"] {
        let run = env.run_with_stdin(
            &[
                "upgrade",
                "--email",
                "e@example.com",
                "--password-stdin",
                "--idempotency-key",
                key,
                "--json",
            ],
            "pw-123456\n",
        );
        assert_eq!(run.code, 1, "{key:?}: {run:?}");
        assert_eq!(error_of(&run).0, "usage", "{key:?}");
    }
    assert_eq!(env.emulator.count(Route::Upgrade), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_oversize_response_says_response_too_large() {
    let env = Env::new().await;
    env.emulator
        .inject(Route::AnonymousSignIn, Fault::OversizeToken(100), 1);
    let run = env.run(&["anon", "--json"]);
    assert_eq!(run.code, 4, "{run:?}");
    let (code, _) = error_of(&run);
    assert_eq!(code, "network_error");
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("response too large"), "{message}");
}

#[test]
fn paywall_ids_outside_the_protocol_charset_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for id in [".", "..", "a/b", "../x", "a.b", "a~b", "a b", "pw\u{e9}"] {
        let run = finish(
            on_store(dir.path(), &["--paywall-id", id, "status", "--json"]).stdin(Stdio::null()),
        );
        assert_eq!(run.code, 1, "{id:?}: {run:?}");
        assert_eq!(error_of(&run).0, "invalid_config", "{id:?}");
    }
    // Empty is missing: the usage error that says where to set it.
    let run = finish(
        on_store(dir.path(), &["--paywall-id", "", "status", "--json"]).stdin(Stdio::null()),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("PAYWALL_AUTH_PAYWALL_ID"), "{run:?}");
    // The emulator's id is checked too.
    let run = finish(
        bare()
            .args(["emulator", "--paywall-id", "..", "--port", "0"])
            .stdin(Stdio::null()),
    );
    assert_eq!(run.code, 1, "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_failed_write_shows_the_path_and_the_os_cause() {
    let env = Env::new().await;
    env.anon_user();
    env.run(&["sign-out", "--forget"]).ok();
    // No file may grow past 0 bytes (EFBIG instead of SIGXFSZ): every
    // record write fails, as on a full disk.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "trap '' XFSZ; ulimit -f 0; exec \"$@\"", "sh"])
        .arg(BIN)
        .args(env.cmd(&["anon", "--json"]).get_args())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    let run = finish(&mut cmd);
    assert_eq!(run.code, 5, "{run:?}");
    assert_eq!(error_of(&run).0, "storage_failed");
    let text = format!("{}{}", run.stdout, run.stderr);
    assert!(text.contains(&env.store.display().to_string()), "{run:?}");
    assert!(text.contains("File too large (os error 27)"), "{run:?}");
}

/// Runs `args` with every file write failing (`ulimit -f 0`), as on a full
/// disk.
fn on_full_disk(env: &Env, args: &[&str]) -> Run {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "trap '' XFSZ; ulimit -f 0; exec \"$@\"", "sh"])
        .arg(BIN)
        .args(env.cmd(args).get_args())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    finish(&mut cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_full_disk_spends_no_token_and_the_guest_comes_back() {
    // docs/protocol.md §13.2: refresh, a stale token and a resume are
    // refused before the request when the rotated token could not be saved.
    let env = Env::new().await;
    let user = env.anon_user();
    let refreshes = env.emulator.count(Route::Refresh);
    for args in [&["refresh", "--json"][..], &["token", "--json"][..]] {
        env.emulator.expire_access_tokens();
        let run = on_full_disk(&env, args);
        if args[0] == "token" && run.code == 0 {
            // Still valid on the local clock: handed out, nothing spent.
            continue;
        }
        assert_eq!(run.code, 5, "{args:?}: {run:?}");
        assert_eq!(error_of(&run).0, "storage_failed", "{args:?}");
    }
    env.run(&["sign-out"]).ok();
    let run = on_full_disk(&env, &["anon", "--json"]);
    assert_eq!(run.code, 5, "{run:?}");
    assert_eq!(
        env.emulator.count(Route::Refresh),
        refreshes,
        "no token was spent on the full disk"
    );
    assert_eq!(env.anon_user(), user, "the same guest, once there is room");
}

#[test]
fn plain_http_to_a_remote_host_needs_allow_insecure_http() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let run = finish(
        command("http://pay.example.invalid", &store, &["anon", "--json"]).stdin(Stdio::null()),
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(error_of(&run).0, "invalid_config");
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("--allow-insecure-http"), "{message}");
    // Opted in: the origin is accepted and the request is attempted (the
    // .invalid host then fails to resolve: a network error, not a refusal).
    let run = finish(
        command(
            "http://pay.example.invalid",
            &store,
            &["--allow-insecure-http", "anon", "--json"],
        )
        .stdin(Stdio::null()),
    );
    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(error_of(&run).0, "network_error");
}

// ---------------------------------------------------------------------------
// Traces: --trace FILE, --trace-secrets, `replay FILE`
// ---------------------------------------------------------------------------

/// `replay FILE`, nothing else given (it needs no store and no backend).
fn replay(file: &Path, json: bool) -> Run {
    let mut cmd = bare();
    cmd.arg("replay").arg(file);
    if json {
        cmd.arg("--json");
    }
    finish(cmd.stdin(Stdio::null()))
}

/// The refresh token of the resumable guest, as the store holds it.
fn stored_refresh_token(store: &Path) -> String {
    std::fs::read_to_string(store.join(format!("pw-{PID}-anon-rt-v1"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn anon_with_trace_writes_a_redacted_trace_that_replay_accepts() {
    let env = Env::new().await;
    let traces = tempfile::tempdir().unwrap();
    let trace = traces.path().join("anon.jsonl");
    let trace_arg = trace.to_str().unwrap();
    let user = env
        .run(&["anon", "--json", "--trace", trace_arg])
        .ok()
        .json()["session"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let header: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(header["paywall_auth_trace"], 1, "{text}");
    assert_eq!(header["secrets"], false);
    assert_eq!(header["config"]["paywall_id"], PID);
    // The request the emulator got is the one the trace says was sent.
    let requests = env.emulator.requests();
    assert_eq!(requests.len(), 1);
    assert!(
        text.contains(&format!("\"path\":\"{}\"", requests[0].path)),
        "{text}"
    );
    assert!(text.contains(&user), "user ids are kept");
    let refresh = stored_refresh_token(&env.store);
    assert!(refresh.len() >= 16);
    assert!(
        !text.contains(&refresh),
        "the trace holds the refresh token"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&trace).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let run = replay(&trace, false).ok();
    let outputs: usize = lines[1..]
        .iter()
        .map(|l| {
            let line: Value = serde_json::from_str(l).unwrap();
            line["outputs"].as_array().unwrap().len()
        })
        .sum();
    assert_eq!(
        run.stdout,
        format!(
            "replayed {} inputs, {outputs} outputs: identical\n",
            lines.len() - 1
        )
    );
    let json = replay(&trace, true).ok().json();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["replay"], "identical");
    assert_eq!(json["inputs"], lines.len() - 1);
    assert_eq!(json["outputs"], outputs);

    // A second run (a restart resuming the guest) overwrites the file with
    // its own trace, which starts from the stored records.
    env.run(&["sign-out"]).ok();
    env.run(&["anon", "--trace", trace_arg]).ok();
    let text = std::fs::read_to_string(&trace).unwrap();
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .contains("\"kind\":\"restored\"")
    );
    assert!(text.contains("/auth/refresh"), "the resume: {text}");
    assert!(!text.contains(&refresh));
    assert!(!text.contains(&stored_refresh_token(&env.store)));
    replay(&trace, false).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn trace_secrets_keeps_the_tokens() {
    let env = Env::new().await;
    env.run(&["anon"]).ok();
    let traces = tempfile::tempdir().unwrap();
    let trace = traces.path().join("token.jsonl");
    let run = env
        .run(&[
            "refresh",
            "--trace",
            trace.to_str().unwrap(),
            "--trace-secrets",
        ])
        .ok();
    assert!(run.stdout.contains("refreshed"), "{run:?}");
    let text = std::fs::read_to_string(&trace).unwrap();
    assert!(text.starts_with('{') && text.contains("\"secrets\":true"));
    assert!(text.contains(&stored_refresh_token(&env.store)));
    replay(&trace, false).ok();
    // --trace-secrets alone is a usage error, and so is --trace on a
    // command that runs no client.
    let run = env.run(&["anon", "--trace-secrets"]);
    assert_eq!(run.code, 1, "{run:?}");
    let run = env.run(&["status", "--json", "--trace", trace.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(error_of(&run).0, "usage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_tampered_trace_exits_7_and_names_the_line() {
    let env = Env::new().await;
    let traces = tempfile::tempdir().unwrap();
    let trace = traces.path().join("anon.jsonl");
    env.run(&["anon", "--trace", trace.to_str().unwrap()]).ok();
    let text = std::fs::read_to_string(&trace).unwrap();
    // The line that sends the sign-in now claims another path.
    let index = text
        .lines()
        .position(|l| l.contains("/auth/anonymous/signin"))
        .unwrap();
    let tampered: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let l = if i == index {
                l.replace("/auth/anonymous/signin", "/auth/anonymous/signup")
            } else {
                l.to_owned()
            };
            l + "\n"
        })
        .collect();
    std::fs::write(&trace, tampered).unwrap();

    let run = replay(&trace, false);
    assert_eq!(run.code, 7, "{run:?}");
    let line = index + 1;
    assert!(
        run.stdout
            .starts_with(&format!("diverged at trace line {line}: output ")),
        "{run:?}"
    );
    assert!(run.stdout.contains("expected: ") && run.stdout.contains("signup"));
    assert!(run.stdout.contains("actual:   ") && run.stdout.contains("signin"));
    let run = replay(&trace, true);
    assert_eq!(run.code, 7, "{run:?}");
    let json = run.json();
    assert_eq!(json["replay"], "diverged");
    assert_eq!(json["line"], line);
    assert!(json["expected"].as_str().unwrap().contains("signup"));
    assert!(json["actual"].as_str().unwrap().contains("signin"));
}

#[test]
fn replay_of_a_missing_or_garbage_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.jsonl");
    let run = replay(&missing, false);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr
            .starts_with("error: trace_unreadable: cannot read ")
            && run.stderr.contains("missing.jsonl"),
        "{run:?}"
    );
    let garbage = dir.path().join("garbage.jsonl");
    for content in [
        "",
        "hello\n",
        "{\"paywall_auth_trace\":99}\n",
        "\u{0}\u{ff}",
    ] {
        std::fs::write(&garbage, content).unwrap();
        let run = replay(&garbage, false);
        assert_eq!(run.code, 1, "{content:?}: {run:?}");
        assert!(!run.stderr.contains("panicked"), "{run:?}");
        assert!(
            run.stderr.starts_with("error: trace_invalid: ")
                || run.stderr.starts_with("error: trace_unreadable: "),
            "{content:?}: {run:?}"
        );
        let run = replay(&garbage, true);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(error_of(&run).0.starts_with("trace_"), "{run:?}");
    }
}
