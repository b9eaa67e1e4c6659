//! `qemu-runner --firmware ELF [--tls]`: boots the embassy firmware under
//! `qemu-system-arm -M mps2-an386` once per lifecycle step, with its UART
//! bridged to an in-process emulator and its flash in one file kept across
//! the boots, and checks every step on the emulator's own records (users,
//! sessions, request log), not only on what the firmware prints.
//!
//! With `--tls` (firmware `qemu-tls`) the emulator serves HTTPS with a CA
//! and a leaf for `localhost` generated for this run; the runner writes the
//! CA (DER) to the work directory for the firmware to pin and passes the
//! host's `/dev/urandom` as its entropy. Two steps first check that the
//! firmware refuses the server when given another CA, or another host name.
//!
//! Prints one line per step and `qemu: N/N steps ok`; exits non-zero when a
//! step failed. Run by `examples/embassy-firmware/qemu-test.sh`.

mod bridge;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use paywall_auth_emulator::{Emulator, EmulatorConfig, Route, TlsOptions};

/// Bytes of the flash file: the firmware's session store (four 4 KiB pages).
const FLASH_SIZE: u64 = 16 * 1024;

struct Options {
    firmware: PathBuf,
    qemu: String,
    machine: String,
    timeout: Duration,
    work: PathBuf,
    tls: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        firmware: PathBuf::new(),
        qemu: "qemu-system-arm".to_owned(),
        machine: "mps2-an386".to_owned(),
        timeout: Duration::from_secs(60),
        work: std::env::temp_dir().join("paywall-auth-qemu"),
        tls: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--firmware" => options.firmware = PathBuf::from(value()?),
            "--qemu" => options.qemu = value()?,
            "--machine" => options.machine = value()?,
            "--work-dir" => options.work = PathBuf::from(value()?),
            "--tls" => options.tls = true,
            "--timeout-secs" => {
                let secs = value()?;
                let secs = secs
                    .parse()
                    .map_err(|_| format!("--timeout-secs: not a number: {secs}"))?;
                options.timeout = Duration::from_secs(secs);
            }
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    if options.firmware.as_os_str().is_empty() {
        return Err("usage: qemu-runner --firmware ELF [--tls] [--qemu BIN] [--machine NAME] [--timeout-secs N] [--work-dir DIR]".to_owned());
    }
    Ok(options)
}

/// What one boot printed and did.
#[derive(Debug, Default)]
struct Boot {
    exit_ok: bool,
    restored: Option<String>,
    user: Option<String>,
    stack: Option<(u64, u64)>,
    /// The slowest connect the firmware timed (TLS: handshake included).
    slowest_connect_ms: Option<u64>,
    output: String,
    connections: u32,
    elapsed: Duration,
}

impl Boot {
    fn value(&self, key: &str) -> Option<String> {
        self.output.lines().find_map(|line| {
            line.strip_prefix("fw: ")?
                .strip_prefix(key)?
                .strip_prefix(' ')
                .map(str::to_owned)
        })
    }
}

fn read_all(mut from: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn accept_until(
    listener: &TcpListener,
    child: &mut Child,
    deadline: Instant,
) -> Result<TcpStream, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("serial listener: {e}"))?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream
                    .set_nonblocking(false)
                    .map_err(|e| format!("serial stream: {e}"))?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("serial accept: {e}")),
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "QEMU exited ({status}) before opening the serial port"
            ));
        }
        if Instant::now() > deadline {
            return Err("QEMU did not open the serial port in time".to_owned());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Boots the firmware once with `args` (its command line), bridging its
/// UART to `api`.
fn boot(options: &Options, args: &[String], api: SocketAddr) -> Result<Boot, String> {
    let started = Instant::now();
    let deadline = started + options.timeout;
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("serial listener: {e}"))?;
    let serial_port = listener
        .local_addr()
        .map_err(|e| format!("serial listener: {e}"))?
        .port();
    let mut semihosting = "enable=on,target=native".to_owned();
    for arg in args {
        if arg.contains([',', ' ']) {
            return Err(format!("firmware argument with a comma or space: {arg}"));
        }
        semihosting.push_str(",arg=");
        semihosting.push_str(arg);
    }
    let mut child = Command::new(&options.qemu)
        .args([
            "-machine",
            &options.machine,
            "-display",
            "none",
            "-monitor",
            "none",
        ])
        .args(["-serial", &format!("tcp:127.0.0.1:{serial_port}")])
        .args(["-semihosting-config", &semihosting])
        .arg("-kernel")
        .arg(&options.firmware)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", options.qemu))?;
    let stdout = read_all(child.stdout.take().ok_or("no QEMU stdout")?);
    let stderr = read_all(child.stderr.take().ok_or("no QEMU stderr")?);

    let link = match accept_until(&listener, &mut child, deadline) {
        Ok(serial) => Some(thread::spawn(move || bridge::serve(serial, api))),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{e}\n{}", stderr.join().unwrap_or_default()));
        }
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for QEMU: {e}")),
        }
    };
    let mut output = stdout.join().unwrap_or_default();
    output.push_str(&stderr.join().unwrap_or_default());
    let stats = match link.map(JoinHandle::join) {
        Some(Ok(Ok(stats))) => stats,
        Some(Ok(Err(e))) => return Err(format!("serial link failed: {e}\n{output}")),
        _ => return Err(format!("serial bridge panicked\n{output}")),
    };
    let Some(status) = status else {
        return Err(format!(
            "QEMU hung: killed after {} s\n{output}",
            options.timeout.as_secs()
        ));
    };
    let mut boot = Boot {
        exit_ok: status.success(),
        output,
        connections: stats.connections,
        elapsed: started.elapsed(),
        ..Boot::default()
    };
    boot.restored = boot.value("restored").filter(|id| id != "none");
    boot.user = boot
        .value("user")
        .and_then(|rest| rest.split(' ').next().map(str::to_owned));
    boot.stack = boot.value("stack").and_then(|rest| {
        let (used, size) = rest.split_once(" of ")?;
        Some((used.parse().ok()?, size.parse().ok()?))
    });
    boot.slowest_connect_ms = boot.value("connects").and_then(|rest| {
        let (_, ms) = rest.split_once(" slowest ")?;
        ms.strip_suffix(" ms")?.parse().ok()
    });
    Ok(boot)
}

/// What the TLS firmware is told to trust for a step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// The emulator's CA and host name: the handshake must succeed.
    Emulator,
    /// A CA from another emulator: the chain must be refused.
    OtherCa,
    /// The emulator's CA, but an origin with a host the certificate does
    /// not name: the name must be refused.
    OtherHost,
}

/// What a step expects of the firmware and of the emulator.
struct Step {
    name: &'static str,
    /// The firmware command (`fresh`, `resume`, `soft`, `hard`, `refused`).
    command: &'static str,
    what: &'static str,
    trust: Trust,
    /// For `refused`: the `CertificateError` the firmware must report.
    refusal: Option<&'static str>,
}

/// Steps of the TLS run before the lifecycle: verification is on.
const TLS_REFUSALS: [Step; 2] = [
    Step {
        name: "other-ca",
        command: "refused",
        what: "TLS, another CA pinned: server refused",
        trust: Trust::OtherCa,
        refusal: Some("UntrustedChain"),
    },
    Step {
        name: "other-host",
        command: "refused",
        what: "TLS, another host name: server refused",
        trust: Trust::OtherHost,
        refusal: Some("HostnameMismatch"),
    },
];

const STEPS: [Step; 5] = [
    Step {
        name: "fresh",
        command: "fresh",
        what: "new flash: a new anonymous guest",
        trust: Trust::Emulator,
        refusal: None,
    },
    Step {
        name: "reboot",
        command: "resume",
        what: "reboot, flash kept: the same guest, refreshed",
        trust: Trust::Emulator,
        refusal: None,
    },
    Step {
        name: "soft-sign-out",
        command: "soft",
        what: "soft sign-out, sign in: the same guest resumed",
        trust: Trust::Emulator,
        refusal: None,
    },
    Step {
        name: "hard-sign-out",
        command: "hard",
        what: "hard sign-out, sign in: a new guest",
        trust: Trust::Emulator,
        refusal: None,
    },
    Step {
        name: "reboot-again",
        command: "resume",
        what: "reboot: the new guest, refreshed",
        trust: Trust::Emulator,
        refusal: None,
    },
];

/// Routes of the requests logged after `after`, with their statuses.
fn new_requests(emulator: &Emulator, after: u64) -> Vec<(Option<Route>, Option<u16>)> {
    emulator
        .requests()
        .into_iter()
        .filter(|r| r.seq > after)
        .map(|r| (r.route, r.status))
        .collect()
}

fn count(requests: &[(Option<Route>, Option<u16>)], route: Route, status: u16) -> usize {
    requests
        .iter()
        .filter(|(r, s)| *r == Some(route) && *s == Some(status))
        .count()
}

struct Lifecycle {
    first: Option<String>,
    second: Option<String>,
}

/// Checks `boot` of `step` on the emulator; `Ok(detail)` or why not.
fn check(
    step: &Step,
    boot: &Boot,
    emulator: &Emulator,
    log_before: u64,
    flash: &Path,
    ids: &mut Lifecycle,
) -> Result<String, String> {
    if !boot.exit_ok {
        return Err("the firmware reported a failure".to_owned());
    }
    let requests = new_requests(emulator, log_before);
    let created = emulator.anonymous_users_created();
    if let Some(expected) = step.refusal {
        return check_refused(boot, expected, &requests, created, flash);
    }
    let user = boot.user.clone().ok_or("the firmware printed no user")?;
    let known = emulator.users().into_iter().find(|u| u.id == user);
    let Some(known) = known else {
        return Err(format!("user {user} is not on the emulator"));
    };
    if !known.is_anonymous {
        return Err(format!("user {user} is not anonymous on the emulator"));
    }
    let live_sessions = |id: &str| {
        emulator
            .sessions()
            .into_iter()
            .filter(|s| s.user_id == id && !s.revoked)
            .count()
    };
    match step.name {
        "fresh" => {
            if boot.restored.is_some() {
                return Err("a session was restored from a new flash file".to_owned());
            }
            if created != 1 || count(&requests, Route::AnonymousSignIn, 200) != 1 {
                return Err(format!(
                    "expected one anonymous sign-in, emulator saw {requests:?}"
                ));
            }
            let len = std::fs::metadata(flash)
                .map_err(|e| format!("flash file: {e}"))?
                .len();
            let bytes = std::fs::read(flash).map_err(|e| format!("flash file: {e}"))?;
            if len != FLASH_SIZE || bytes.iter().all(|&b| b == 0xFF) {
                return Err(format!(
                    "flash file is {len} bytes, erased: the session was not stored"
                ));
            }
            ids.first = Some(user.clone());
        }
        "reboot" | "reboot-again" => {
            let expected = if step.name == "reboot" {
                &ids.first
            } else {
                &ids.second
            };
            if boot.restored.as_ref() != expected.as_ref() || Some(&user) != expected.as_ref() {
                return Err(format!(
                    "expected guest {expected:?} restored and refreshed, got restored {:?}, user {user}",
                    boot.restored
                ));
            }
            if count(&requests, Route::Refresh, 200) != 1
                || count(&requests, Route::AnonymousSignIn, 200) != 0
            {
                return Err(format!(
                    "expected one refresh and no sign-in, emulator saw {requests:?}"
                ));
            }
        }
        "soft-sign-out" => {
            if Some(&user) != ids.first.as_ref() || created != 1 {
                return Err(format!(
                    "expected guest {:?} resumed, got {user} ({created} created)",
                    ids.first
                ));
            }
            if count(&requests, Route::Refresh, 200) != 1
                || requests.iter().any(|(r, _)| *r == Some(Route::SignOut))
            {
                return Err(format!(
                    "expected one refresh and no sign-out request, emulator saw {requests:?}"
                ));
            }
        }
        "hard-sign-out" => {
            let old = ids.first.clone().unwrap_or_default();
            if user == old || created != 2 {
                return Err(format!(
                    "expected a new guest, got {user} ({created} created)"
                ));
            }
            if count(&requests, Route::AnonymousSignIn, 200) != 1
                || !requests
                    .iter()
                    .any(|(r, s)| *r == Some(Route::SignOut) && s.is_some_and(|s| s < 300))
            {
                return Err(format!(
                    "expected sign-out then one sign-in, emulator saw {requests:?}"
                ));
            }
            if live_sessions(&old) != 0 {
                return Err(format!("the old guest {old} still has a live session"));
            }
            ids.second = Some(user.clone());
        }
        _ => return Err(format!("no check for step {}", step.name)),
    }
    if live_sessions(&user) == 0 {
        return Err(format!("user {user} has no live session on the emulator"));
    }
    Ok(format!(
        "user {user}, {} request(s), {} ms",
        requests.len(),
        boot.elapsed.as_millis()
    ))
}

/// A `refused` step: the firmware reached the server (a connection was
/// bridged), refused it for `expected`, and sent no request; nothing was
/// created or stored.
fn check_refused(
    boot: &Boot,
    expected: &str,
    requests: &[(Option<Route>, Option<u16>)],
    created: u64,
    flash: &Path,
) -> Result<String, String> {
    let refused = boot.value("refused");
    if refused.as_deref() != Some(expected) {
        return Err(format!("expected refusal {expected}, got {refused:?}"));
    }
    if boot.connections == 0 {
        return Err("no connection reached the emulator".to_owned());
    }
    if !requests.is_empty() || created != 0 {
        return Err(format!(
            "a refused server got requests: {requests:?} ({created} users created)"
        ));
    }
    let bytes = std::fs::read(flash).map_err(|e| format!("flash file: {e}"))?;
    if bytes.iter().any(|&b| b != 0xFF) {
        return Err("the flash was written by a refused sign-in".to_owned());
    }
    Ok(format!(
        "refused: {expected}, no request, {} ms",
        boot.elapsed.as_millis()
    ))
}

/// What the TLS firmware needs to trust the emulator, and what it must not
/// trust.
struct TlsFiles {
    /// `https://localhost:PORT`.
    origin: String,
    /// The same port, a host the certificate does not name.
    other_origin: String,
    ca: PathBuf,
    other_ca: PathBuf,
}

/// Writes the emulator's CA and another emulator's CA (DER) to `work`.
fn tls_files(
    runtime: &tokio::runtime::Runtime,
    emulator: &Emulator,
    work: &Path,
) -> Result<TlsFiles, String> {
    let identity = emulator
        .tls_identity()
        .ok_or("the emulator serves no TLS")?;
    let other = runtime
        .block_on(Emulator::start_tls(
            EmulatorConfig::default(),
            TlsOptions::for_host("localhost"),
        ))
        .map_err(|e| format!("second emulator: {e}"))?;
    let other_ca_der = other
        .tls_identity()
        .map(|i| i.ca_der.clone())
        .ok_or("the second emulator serves no TLS")?;
    runtime.block_on(other.shutdown());
    let ca = work.join("ca.der");
    let other_ca = work.join("other-ca.der");
    std::fs::write(&ca, &identity.ca_der).map_err(|e| format!("{}: {e}", ca.display()))?;
    std::fs::write(&other_ca, other_ca_der).map_err(|e| format!("{}: {e}", other_ca.display()))?;
    let port = emulator.addr().port();
    Ok(TlsFiles {
        origin: emulator.origin(),
        other_origin: format!("https://other-host.invalid:{port}"),
        ca,
        other_ca,
    })
}

/// The firmware's command line for `step`.
fn firmware_args(
    step: &Step,
    flash: &Path,
    api: SocketAddr,
    tls: Option<&TlsFiles>,
) -> Vec<String> {
    let flash = flash.display().to_string();
    match tls {
        None => vec!["qemu".into(), step.command.into(), flash, api.to_string()],
        Some(files) => {
            let (origin, ca) = match step.trust {
                Trust::Emulator => (&files.origin, &files.ca),
                Trust::OtherCa => (&files.origin, &files.other_ca),
                Trust::OtherHost => (&files.other_origin, &files.ca),
            };
            vec![
                "qemu-tls".into(),
                step.command.into(),
                flash,
                origin.clone(),
                ca.display().to_string(),
                // TEST ONLY: the emulated board has no TRNG.
                "/dev/urandom".into(),
            ]
        }
    }
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("qemu-runner: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("qemu-runner: tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = if options.tls {
        runtime.block_on(Emulator::start_tls(
            EmulatorConfig::default(),
            TlsOptions::for_host("localhost"),
        ))
    } else {
        runtime.block_on(Emulator::start(EmulatorConfig::default()))
    };
    let emulator = match started {
        Ok(emulator) => emulator,
        Err(e) => {
            eprintln!("qemu-runner: emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::create_dir_all(&options.work) {
        eprintln!("qemu-runner: {}: {e}", options.work.display());
        return ExitCode::FAILURE;
    }
    let flash = options.work.join("flash.bin");
    let _ = std::fs::remove_file(&flash);
    let tls = if options.tls {
        match tls_files(&runtime, &emulator, &options.work) {
            Ok(files) => Some(files),
            Err(e) => {
                eprintln!("qemu-runner: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let steps: Vec<&Step> = if options.tls {
        TLS_REFUSALS.iter().chain(&STEPS).collect()
    } else {
        STEPS.iter().collect()
    };
    println!(
        "qemu: {} on {}, emulator at {}, flash file {}",
        options.firmware.display(),
        options.machine,
        emulator.origin(),
        flash.display()
    );

    let mut ids = Lifecycle {
        first: None,
        second: None,
    };
    let mut passed = 0;
    let mut stack_max = None::<(u64, u64)>;
    let mut connect_max = None::<u64>;
    for (n, step) in steps.iter().enumerate() {
        let log_before = emulator.requests().last().map_or(0, |r| r.seq);
        let args = firmware_args(step, &flash, emulator.addr(), tls.as_ref());
        let result = boot(&options, &args, emulator.addr()).and_then(|boot| {
            if let Some((used, size)) = boot.stack {
                stack_max = Some(stack_max.map_or((used, size), |(max, _)| (max.max(used), size)));
            }
            if step.refusal.is_none() {
                connect_max = connect_max.max(boot.slowest_connect_ms);
            }
            check(step, &boot, &emulator, log_before, &flash, &mut ids)
                .map(|detail| {
                    let stack = boot
                        .stack
                        .map_or("stack ?".to_owned(), |(used, _)| format!("stack {used} B"));
                    let connect = boot
                        .slowest_connect_ms
                        .map_or("connect ?".to_owned(), |ms| format!("connect <= {ms} ms"));
                    format!(
                        "{detail}, {} connection(s), {connect}, {stack}",
                        boot.connections
                    )
                })
                .map_err(|e| {
                    format!(
                        "{e} ({} connection(s) bridged)\n--- firmware output ---\n{}",
                        boot.connections,
                        boot.output.trim_end()
                    )
                })
        });
        match result {
            Ok(detail) => {
                passed += 1;
                println!(
                    "qemu: step {} {:<14} ok   {} ({detail})",
                    n + 1,
                    step.name,
                    step.what
                );
            }
            Err(e) => {
                println!(
                    "qemu: step {} {:<14} FAIL {}: {e}",
                    n + 1,
                    step.name,
                    step.what
                );
                break;
            }
        }
    }
    if let Some((used, size)) = stack_max {
        println!(
            "qemu: stack high-water mark {used} of {size} bytes (painted stack, deepest step)"
        );
    }
    if let Some(ms) = connect_max {
        let what = if options.tls {
            "UART open, TCP connect and TLS 1.3 handshake with certificate checks"
        } else {
            "UART open and TCP connect"
        };
        println!("qemu: slowest connect {ms} ms ({what}, lifecycle steps)");
    }
    println!("qemu: {passed}/{} steps ok", steps.len());
    runtime.block_on(emulator.shutdown());
    if passed == steps.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
