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
        run.json()["session"]["user_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// The binary with a clean environment for its own variables.
fn command(origin: &str, store: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("PAYWALL_API_ORIGIN")
        .env_remove("PAYWALL_ID")
        .env_remove("PAYWALL_AUTH_STORE")
        .env("NO_COLOR", "1")
        .arg("--api-origin")
        .arg(origin)
        .arg("--store")
        .arg(store)
        .args(args);
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
    assert_eq!(session["is_anonymous"], true);
    assert_eq!(session["email"], Value::Null);
    assert!(session["expires_at"].as_u64().unwrap() > 1_600_000_000);
    let second = env.run(&["anon", "--json"]).ok().json();
    assert_eq!(first["session"]["user_id"], second["session"]["user_id"]);
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
    let run =
        finish(command(&closed_origin(), &env.store, &["status", "--json"]).stdin(Stdio::null()))
            .ok();
    let status = run.json();
    assert_eq!(status["session"]["user_id"], user.as_str());
    assert_eq!(status["session"]["is_anonymous"], true);
    assert_eq!(status["resumable_anonymous"], true);
    assert_eq!(status["store"], env.store.display().to_string());
    let text = finish(command(&closed_origin(), &env.store, &["status"]).stdin(Stdio::null())).ok();
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
    assert_eq!(json["session"]["user_id"], user.as_str());
    assert_eq!(json["session"]["is_anonymous"], false);
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
    assert_eq!(status["session"]["is_anonymous"], false);
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
    assert_eq!(json["session"]["is_anonymous"], true);

    assert!(env.emulator.confirm_email("c@example.com"));
    let refreshed = env.run(&["refresh", "--json"]).ok().json();
    assert_eq!(refreshed["session"]["user_id"], user.as_str());
    assert_eq!(refreshed["session"]["is_anonymous"], false);
    assert_eq!(refreshed["session"]["email"], "c@example.com");
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
    assert_eq!(signed_in["session"]["user_id"], user.as_str());

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
    assert_eq!(initial["session"]["user_id"], user.as_str());

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
    ] {
        assert!(run.stdout.contains(code), "{code}:\n{}", run.stdout);
    }
    for flag in [
        "--api-origin",
        "--paywall-id",
        "--store",
        "--json",
        "--timeout",
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
