//! Builds `tests/c/lifecycle.c` with the system C compiler against this
//! crate's static library and runs the anonymous lifecycle against the
//! emulator, phase by phase (each phase a new process, so a new machine
//! over the same record files): once as is, once under AddressSanitizer and
//! UndefinedBehaviorSanitizer. Between phases the test checks the files
//! and the emulator's view of the wire, and the trace each phase recorded
//! through its C sink (docs/protocol.md §14): header first, it replays, and
//! it holds none of the refresh tokens of the record files.

// A test: a missing key or record is a failure, and panicking says which.
#![allow(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use paywall_auth_emulator::{Emulator, EmulatorConfig, Route};

const PID: &str = "pw_c_host";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The static library cargo built for this test run. `cargo test` leaves
/// it in `target/<profile>/deps/` (next to this test's executable); only
/// `cargo build` copies it up to `target/<profile>/`, so a fresh clone that
/// runs only the tests has it in `deps/` alone.
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("target/<profile>/deps/<test>");
    let candidates = [
        deps.join("libpaywall_auth_ffi.a"),
        deps.parent()
            .map(|profile| profile.join("libpaywall_auth_ffi.a"))
            .unwrap_or_default(),
    ];
    candidates
        .iter()
        .find(|lib| lib.is_file())
        .cloned()
        .unwrap_or_else(|| panic!("libpaywall_auth_ffi.a not built; looked at {candidates:?}"))
}

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".to_owned())
}

fn have_cc() -> bool {
    Command::new(cc())
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Compiles `source` as the host program `name`; `sanitize` adds ASan +
/// UBSan (aborting on the first report).
fn build(source: &Path, out: &Path, name: &str, sanitize: bool) -> PathBuf {
    let lib = static_lib();
    let exe = out.join(name);
    let mut cmd = Command::new(cc());
    cmd.args(["-std=c11", "-g", "-O1", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(crate_dir().join("include"));
    if sanitize {
        cmd.args([
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer",
        ]);
    }
    cmd.arg(source)
        .arg(&lib)
        // What `rustc --print native-static-libs` lists for a std staticlib.
        .args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
        ])
        .arg("-o")
        .arg(&exe);
    let status = cmd.status().expect("run the C compiler");
    assert!(
        status.success(),
        "compiling {} failed: {cmd:?}",
        source.display()
    );
    exe
}

/// How to start the host: the program, or a wrapper (valgrind) and its
/// arguments followed by the program.
type Runner<'a> = &'a [&'a OsStr];

/// Runs one phase; returns its `key=value` lines (last value wins).
fn phase(run: Runner<'_>, port: u16, dir: &Path, name: &str) -> BTreeMap<String, String> {
    let (program, args) = run.split_first().expect("a program");
    let out = Command::new(program)
        .args(args)
        .args([&port.to_string(), PID])
        .arg(dir)
        .arg(name)
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=86",
        )
        .env(
            "UBSAN_OPTIONS",
            "print_stacktrace=1:halt_on_error=1:exitcode=87",
        )
        .output()
        .expect("run the C host");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "phase {name} of {run:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        !stderr.contains("Sanitizer") && !stderr.contains("runtime error"),
        "sanitizer report in phase {name}:\n{stderr}"
    );
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn record(dir: &Path, suffix: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(format!("pw-{PID}-{suffix}"))).ok()
}

/// The stored anonymous refresh token (the reference stores it raw).
fn anon_token(dir: &Path) -> String {
    record(dir, "anon-rt-v1")
        .expect("anonymous record")
        .trim_matches('"')
        .to_owned()
}

/// The refresh tokens in the record files: the session record's and the
/// guest record's.
fn stored_tokens(dir: &Path) -> Vec<String> {
    let mut tokens = Vec::new();
    if let Some(session) = record(dir, "auth-v1") {
        let v: serde_json::Value = serde_json::from_str(&session).expect("session record is JSON");
        let token = v["refresh_token"]
            .as_str()
            .expect("a refresh token in the session record");
        tokens.push(token.to_owned());
    }
    if record(dir, "anon-rt-v1").is_some() {
        tokens.push(anon_token(dir));
    }
    assert!(
        tokens.iter().all(|t| t.len() >= 16),
        "real tokens: {tokens:?}"
    );
    tokens
}

/// One phase that records a trace: besides [`phase`]'s checks, the trace
/// the C sink wrote to `DIR/trace-NAME.jsonl` starts with its header,
/// replays through a fresh machine (as the C side found with
/// `paywall_auth_trace_replay`), and holds none of the refresh tokens the
/// record files held before or after the phase (redacted by default).
/// Returns the phase's values and the trace.
fn traced_phase(
    run: Runner<'_>,
    port: u16,
    dir: &Path,
    name: &str,
) -> (BTreeMap<String, String>, String) {
    let mut secrets = stored_tokens(dir);
    let out = phase(run, port, dir, name);
    secrets.extend(stored_tokens(dir));
    let path = dir.join(format!("trace-{name}.jsonl"));
    assert_eq!(out["trace"], path.display().to_string());
    let trace = std::fs::read_to_string(&path).expect("the trace file exists");
    let first = trace.lines().next().expect("a first line");
    let header = paywall_auth::trace::read_header(first).expect("the first line is the header");
    assert_eq!(header.config.paywall_id, PID);
    assert!(!header.secrets, "redacted by default");
    let replayed = paywall_auth::trace::replay(&trace)
        .unwrap_or_else(|e| panic!("trace of phase {name} does not replay: {e}"));
    assert_eq!(replayed.inputs.to_string(), out["trace_inputs"]);
    assert_eq!(
        trace.lines().count(),
        replayed.inputs + 1,
        "one line per input"
    );
    for token in &secrets {
        assert!(
            !trace.contains(token.as_str()),
            "phase {name}: the trace holds the refresh token {token}"
        );
    }
    (out, trace)
}

/// The whole lifecycle with `exe`, against a fresh emulator.
fn lifecycle(rt: &tokio::runtime::Runtime, exe: Runner<'_>, tag: &str) {
    let emulator = rt
        .block_on(Emulator::start(EmulatorConfig {
            paywall_id: PID.to_owned(),
            ..EmulatorConfig::default()
        }))
        .expect("emulator starts");
    let port = emulator.addr().port();
    let tmp = std::env::temp_dir().join(format!("paywall-auth-ffi-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let dir = tmp.as_path();

    // Fresh guest.
    let (fresh, _) = traced_phase(exe, port, dir, "fresh");
    let guest = fresh["user"].clone();
    assert_eq!(fresh["initial"], "", "no session before the first sign-in");
    assert_eq!(emulator.anonymous_users_created(), 1);
    let log = emulator.requests();
    assert_eq!(log.len(), 1);
    let signin = &log[0];
    assert_eq!(signin.method, "POST");
    assert_eq!(
        signin.path,
        format!("/api/v1/paywall/{PID}/auth/anonymous/signin")
    );
    assert_eq!(signin.headers["x-paywall-id"], PID);
    assert_eq!(signin.headers["accept"], "application/json");
    assert_eq!(signin.headers["content-type"], "application/json");
    assert!(signin.headers.contains_key("x-sdk-version"));
    assert!(!signin.headers.contains_key("authorization"));
    assert_eq!(signin.headers["connection"], "close");
    let session = record(dir, "auth-v1").expect("session record");
    assert!(
        session.contains(&format!("\"id\":\"{guest}\"")),
        "{session}"
    );
    assert!(session.contains("\"is_anonymous\":true"));
    let t0 = anon_token(dir);
    assert!(
        session.contains(&t0),
        "session and guest record share the token"
    );

    // Restart: the same guest, and a refresh rotates its token.
    emulator.clear_log();
    let (restart, trace) = traced_phase(exe, port, dir, "restart");
    assert_eq!(restart["initial"], guest, "restored from the files");
    // The trace saw the restored records and the rotation (so the tokens
    // it does not hold were there to redact).
    assert!(trace.contains(r#""kind":"restored","session":"#), "{trace}");
    assert!(trace.contains(&format!("/api/v1/paywall/{PID}/auth/refresh")));
    assert!(trace.contains(&format!(r#""user_id":"{guest}""#)));
    assert_eq!(restart["user"], guest);
    let t1 = anon_token(dir);
    assert_ne!(t1, t0, "the stored token rotated");
    let family = emulator
        .sessions()
        .into_iter()
        .find(|s| s.user_id == guest)
        .expect("the guest's session family");
    assert_eq!(family.current_refresh_token, t1);
    assert!(
        family.spent_refresh_tokens.contains(&t0),
        "t0 spent on the server"
    );
    let refresh = &emulator.requests()[0];
    assert_eq!(refresh.path, format!("/api/v1/paywall/{PID}/auth/refresh"));
    assert!(refresh.body.contains(&t0), "presented the stored token");

    // Soft sign-out, then sign-in resumes the same guest.
    emulator.clear_log();
    let (soft, _) = traced_phase(exe, port, dir, "soft");
    assert_eq!(soft["user"], guest);
    assert_eq!(emulator.count(Route::Refresh), 1);
    assert_eq!(emulator.count(Route::SignOut), 0);
    assert_eq!(emulator.anonymous_users_created(), 1);

    // Hard sign-out revokes; sign-in makes a new guest.
    emulator.clear_log();
    let (hard, _) = traced_phase(exe, port, dir, "hard");
    let second = hard["user"].clone();
    assert_ne!(second, guest);
    assert_eq!(emulator.anonymous_users_created(), 2);
    let signout = &emulator.requests()[0];
    assert!(signout.path.ends_with("/auth/signout"));
    assert!(
        signout.headers["authorization"].starts_with("Bearer "),
        "revocation carries the bearer"
    );
    assert!(
        emulator
            .sessions()
            .iter()
            .any(|s| s.user_id == guest && s.revoked)
    );

    // Parallel sign-ins collapse into one request and one command id.
    emulator.clear_log();
    let (parallel, _) = traced_phase(exe, port, dir, "parallel");
    let (a, b) = parallel["command_ids"].split_once(',').expect("two ids");
    assert_eq!(a, b);
    assert_eq!(emulator.count(Route::AnonymousSignIn), 1);
    assert_eq!(emulator.anonymous_users_created(), 3);
    let third = parallel["user"].clone();

    // Upgrade: updated.
    emulator.clear_log();
    let (upgrade, trace) = traced_phase(exe, port, dir, "upgrade");
    assert!(trace.contains("guest@example.com"));
    assert!(
        !trace.contains("correct horse battery"),
        "the password is redacted"
    );
    assert_eq!(upgrade["outcome"], "updated");
    assert_eq!(upgrade["user"], third, "same user id after the upgrade");
    let up = &emulator.requests()[0];
    assert!(up.path.ends_with("/auth/anonymous/upgrade"));
    assert_eq!(up.headers["idempotency-key"], "idem-u");
    assert!(up.headers["authorization"].starts_with("Bearer "));
    assert!(
        up.body.contains("\"email\":\"guest@example.com\""),
        "{}",
        up.body
    );
    assert!(up.body.contains("\"source\":\"c-host\""), "{}", up.body);
    let user = emulator.user(&third).expect("upgraded user");
    assert_eq!(user.email.as_deref(), Some("guest@example.com"));
    assert!(!user.is_anonymous);
    let session = record(dir, "auth-v1").expect("session record");
    assert!(
        session.contains("\"email\":\"guest@example.com\""),
        "{session}"
    );
    assert!(session.contains("\"is_anonymous\":false"));

    // Upgrade: confirmation required, when the backend asks for it.
    emulator.set_confirm_email(true);
    emulator.clear_log();
    let (confirm, _) = traced_phase(exe, port, dir, "confirm");
    assert_eq!(confirm["outcome"], "confirmation_required");
    let pending = emulator.user(&confirm["user"]).expect("forced guest");
    assert_eq!(
        pending.pending_email.as_deref(),
        Some("c-guest@example.com")
    );
    assert!(pending.is_anonymous);

    rt.block_on(emulator.shutdown());
    let _ = std::fs::remove_dir_all(&tmp);
}

fn works(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn c_host_drives_the_anonymous_lifecycle() {
    if !have_cc() {
        println!(
            "skipping the C host tests: no C compiler (`{}`) found",
            cc()
        );
        return;
    }
    let out = std::env::temp_dir().join(format!("paywall-auth-ffi-bin-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("build dir");
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let source = crate_dir().join("tests/c/lifecycle.c");

    let plain = build(&source, &out, "lifecycle", false);
    lifecycle(&rt, &[plain.as_os_str()], "plain");

    // The same program under AddressSanitizer + UndefinedBehaviorSanitizer,
    // linked against the same static library (sanitizer reports fail the
    // phase through their exit codes and the stderr check).
    let sanitized = build(&source, &out, "lifecycle-asan", true);
    lifecycle(&rt, &[sanitized.as_os_str()], "asan");

    // ASan does not instrument the Rust side; valgrind sees every load and
    // store of the library too.
    if works("valgrind") {
        let run = [
            OsStr::new("valgrind"),
            OsStr::new("--quiet"),
            OsStr::new("--error-exitcode=1"),
            plain.as_os_str(),
        ];
        lifecycle(&rt, &run, "valgrind");
    } else {
        println!("valgrind not installed: the lifecycle ran plain and under ASan+UBSan only");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// The C quick start of the README compiles as shown and signs a guest in.
#[test]
fn readme_quick_start_compiles_and_signs_in() {
    if !have_cc() {
        println!(
            "skipping the README quick start: no C compiler (`{}`) found",
            cc()
        );
        return;
    }
    let readme = std::fs::read_to_string(crate_dir().join("README.md")).expect("README");
    let start = readme.find("```c\n").expect("a C block in the README") + 5;
    let len = readme[start..].find("```").expect("the block ends");
    let out = std::env::temp_dir().join(format!("paywall-auth-ffi-qs-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("build dir");
    let source = out.join("quickstart.c");
    std::fs::write(&source, &readme[start..start + len]).expect("write the quick start");
    let exe = build(&source, &out, "quickstart", true);

    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let emulator = rt
        .block_on(Emulator::start(EmulatorConfig {
            paywall_id: PID.to_owned(),
            ..EmulatorConfig::default()
        }))
        .expect("emulator starts");
    let run = Command::new(&exe)
        .args([&emulator.addr().port().to_string(), PID])
        .output()
        .expect("run the quick start");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "quick start failed: {stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let users = emulator.users();
    assert_eq!(users.len(), 1);
    assert_eq!(stdout.trim(), format!("guest {}", users[0].id));
    assert_eq!(emulator.count(Route::AnonymousSignIn), 1);
    rt.block_on(emulator.shutdown());
    let _ = std::fs::remove_dir_all(&out);
}

/// The C block of the README's "Traces" section compiles as shown, records
/// a trace into a `FILE*`, and replays it (and reports a cut copy).
#[test]
fn readme_traces_snippet_records_and_replays() {
    if !have_cc() {
        println!(
            "skipping the README traces snippet: no C compiler (`{}`) found",
            cc()
        );
        return;
    }
    let readme = std::fs::read_to_string(crate_dir().join("README.md")).expect("README");
    let section = readme.find("\n## Traces\n").expect("a Traces section");
    let start = section + readme[section..].find("```c\n").expect("a C block in it") + 5;
    let len = readme[start..].find("```").expect("the block ends");
    let main = r#"
int main(void) {
    _Alignas(PAYWALL_AUTH_MAX_ALIGN) static uint8_t mem[PAYWALL_AUTH_MACHINE_STORAGE];
    paywall_auth_config cfg;
    paywall_auth_config_default(&cfg, (const uint8_t *)"pw_demo", 7);
    if (paywall_auth_machine_init(mem, sizeof mem, &cfg) != PAYWALL_AUTH_STATUS_OK) return 10;
    paywall_auth_machine *m = (paywall_auth_machine *)mem;
    FILE *f = tmpfile();
    if (!f || !start_trace(m, f)) return 11;
    paywall_auth_bytes none = {NULL, 0};
    paywall_auth_output out;
    if (paywall_auth_machine_handle_restored(m, 1000, none, none, none)) return 12;
    while (paywall_auth_machine_poll_output(m, &out) == PAYWALL_AUTH_STATUS_OK) {}
    paywall_auth_command c = {.kind = PAYWALL_AUTH_COMMAND_KIND_ACCESS_TOKEN};
    if (paywall_auth_machine_handle_command(m, 2000, &c, NULL)) return 13;
    while (paywall_auth_machine_poll_output(m, &out) == PAYWALL_AUTH_STATUS_OK) {}
    paywall_auth_machine_deinit(m);
    static uint8_t buf[65536];
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (!check_trace(buf, n)) return 14;
    if (check_trace(buf, n - 2)) return 15;
    printf("%zu\n", n);
    return 0;
}
"#;
    let out = std::env::temp_dir().join(format!("paywall-auth-ffi-tr-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("build dir");
    let source = out.join("traces.c");
    std::fs::write(&source, format!("{}{main}", &readme[start..start + len]))
        .expect("write the snippet");
    let exe = build(&source, &out, "traces", true);
    let run = Command::new(&exe).output().expect("run the snippet");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "snippet failed ({}): {stdout}{stderr}",
        run.status
    );
    assert!(
        stdout.trim().parse::<usize>().is_ok_and(|n| n > 200),
        "{stdout}"
    );
    assert!(
        stderr.starts_with("not a trace this build reads (see the report) (line 3): trace line 3:"),
        "the cut copy is reported at its last line: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
