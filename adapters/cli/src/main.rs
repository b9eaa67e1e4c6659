//! `paywall-auth`: the anonymous sign-in flow of a paywall backend from a
//! shell, on top of the tokio adapter (`paywall-auth-tokio`), plus a local
//! backend emulator and the end-to-end demo.
//!
//! Output goes to stdout (one JSON object per line with `--json`), errors to
//! stderr (or, with `--json`, as an error object on stdout), and the exit
//! code tells a script what kind of failure it was (see [`fail::exit`]).

mod binding;
mod cli;
mod commands;
mod demo;
mod emulator_cmd;
mod fail;
mod harden;
mod local;
mod logging;
mod out;
mod replay;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory as _, Parser as _};

use crate::binding::Need;
use crate::cli::{Cli, Cmd};
use crate::fail::Failure;

/// The paywall of `demo` and `emulator`, the only commands with a default.
const DEMO_PAYWALL_ID: &str = "pw_demo";

fn main() -> ExitCode {
    // Before anything can hold a secret.
    let hardened = harden::disable_core_dumps();
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e, &args),
    };
    logging::init(cli.global.verbose);
    if let Err(why) = hardened {
        tracing::warn!("{why}: secrets of this process could end up in a core dump");
    }
    let json_mode = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let failure = Failure::new("internal_error", format!("cannot start tokio: {e}"));
            out::failure(json_mode, &failure);
            return failure.exit();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            out::failure(json_mode, &failure);
            failure.exit()
        }
    }
}

/// Runs the subcommand; `Ok` carries the exit code of a command that
/// printed its own result (`status` exits 2 when signed out).
async fn run(cli: Cli) -> Result<u8, Failure> {
    let global = &cli.global;
    if global.trace.is_some() && !runs_client(&cli.command) {
        return Err(Failure::usage(
            "--trace records the client of anon, upgrade, sign-out, refresh, token and \
             watch --keep-alive; this command runs none",
        ));
    }
    match &cli.command {
        Cmd::Emulator(args) => {
            let paywall_id = global
                .paywall_id()
                .unwrap_or_else(|| DEMO_PAYWALL_ID.to_owned());
            binding::validate_paywall_id(&paywall_id)?;
            emulator_cmd::run(args, &paywall_id, global.json).await?;
            Ok(fail::exit::OK)
        }
        Cmd::Demo => demo::run(global.json).await.map(|()| fail::exit::OK),
        Cmd::Replay(args) => Ok(replay::run(&args.file, global.json)),
        Cmd::Completions(args) => {
            let mut stdout = std::io::stdout().lock();
            clap_complete::generate(args.shell, &mut Cli::command(), "paywall-auth", &mut stdout);
            Ok(fail::exit::OK)
        }
        command => {
            let need = match command {
                Cmd::Status => Need::PaywallId,
                Cmd::Watch(args) if !args.keep_alive => Need::PaywallId,
                _ => Need::Backend,
            };
            let ctx = commands::Ctx::new(global, need)?;
            commands::run(&ctx, command).await
        }
    }
}

/// Whether `command` builds an `AuthClient` (whose driver `--trace`
/// records). `demo` builds several in one process, which one file cannot
/// hold (a trace is one machine from its start).
fn runs_client(command: &Cmd) -> bool {
    match command {
        Cmd::Anon(_) | Cmd::Upgrade(_) | Cmd::SignOut(_) | Cmd::Refresh | Cmd::Token => true,
        Cmd::Watch(args) => args.keep_alive,
        Cmd::Status | Cmd::Emulator(_) | Cmd::Demo | Cmd::Replay(_) | Cmd::Completions(_) => false,
    }
}

/// clap's verdict on the command line: help and version go to stdout with
/// exit 0; a usage error exits 1 (clap's own 2 means "not authenticated"
/// here), as a JSON error object when `--json` was among the arguments.
fn usage_error(e: &clap::Error, args: &[OsString]) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // `paywall-auth` alone: the help, on stderr, as a usage error.
        let _ = e.print();
        return ExitCode::from(fail::exit::GENERIC);
    }
    let json_mode = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json");
    if json_mode {
        let text = e.to_string();
        let message = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("invalid command line");
        let message = message.strip_prefix("error: ").unwrap_or(message);
        out::failure(true, &Failure::usage(message));
    } else {
        let _ = e.print();
    }
    ExitCode::from(fail::exit::GENERIC)
}

/// Ctrl-C or, on Unix, SIGTERM: the polite ways to stop `watch` and
/// `emulator`.
///
/// The handlers are installed by [`StopSignal::install`], not on first
/// poll, so a command installs them before it prints its first line: a
/// supervisor that waits for that line and then sends SIGTERM never kills
/// the process before it can stop cleanly.
#[derive(Debug)]
pub struct StopSignal {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignal {
    /// Installs the handlers (inside the runtime).
    pub fn install() -> StopSignal {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let unix = signal(SignalKind::interrupt())
                .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
                .ok();
            StopSignal { unix }
        }
        #[cfg(not(unix))]
        {
            StopSignal {}
        }
    }

    /// Resolves when a stop signal arrives.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some((int, term)) = &mut self.unix {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
