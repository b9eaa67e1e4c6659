//! The command line: flags, subcommands and their help.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

/// Shown under every `--help`: what a script can rely on.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  ok (also an upgrade that awaits email confirmation)
  1  generic failure or usage error
  2  not authenticated: no session (token, refresh, upgrade, status)
  3  the server refused the request (4xx API error, e.g. invalid_credentials)
  4  network or transient failure (network_error, invalid_response, 5xx, 429)
  5  storage failure (storage_failed, store_locked)
  6  anonymous sign-in is disabled for this paywall (anonymous_disabled)
  7  replay: today's client behaves differently from the trace (trace_diverged)

With --json every result or error is one JSON object per line on stdout, with
\"schema\":1; errors look like
{\"schema\":1,\"error\":{\"code\":\"…\",\"message\":\"…\",\"status\":403}}.

The store remembers the API origin and paywall id it was first used with:
after `paywall-auth --api-origin URL --paywall-id ID anon`, later commands
need no flags.";

/// Sign in anonymously to a paywall backend, upgrade to an email account,
/// and manage the stored session from a shell.
#[derive(Debug, Parser)]
#[command(
    name = "paywall-auth",
    version,
    after_help = EXIT_CODES_HELP,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Cmd,
}

/// Flags accepted before or after any subcommand.
#[derive(Debug, Args)]
pub struct Global {
    /// Origin of the paywall API (scheme://host, or scheme://host:port).
    /// Needed once per store: the store remembers it. Also read from
    /// PAYWALL_API_ORIGIN (the older name).
    #[arg(
        long,
        global = true,
        env = ENV_API_ORIGIN,
        hide_env_values = true,
        value_name = "URL"
    )]
    pub api_origin: Option<String>,

    /// Paywall whose users sign in (letters, digits, `_` and `-`). Needed
    /// once per store: the store remembers it. Also read from PAYWALL_ID
    /// (the older name).
    #[arg(
        long,
        global = true,
        env = ENV_PAYWALL_ID,
        hide_env_values = true,
        value_name = "ID"
    )]
    pub paywall_id: Option<String>,

    /// Directory holding the session and what it is bound to (default:
    /// $XDG_STATE_HOME/paywall-auth/default, else
    /// ~/.local/state/paywall-auth/default).
    #[arg(
        long,
        global = true,
        env = ENV_STORE,
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub store: Option<PathBuf>,

    /// Bind the store to the given --api-origin/--paywall-id although it is
    /// bound to others; the records of its previous binding are deleted.
    #[arg(long, global = true)]
    pub rebind: bool,

    /// Machine-readable output: one JSON object per line on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// Allow a plain http:// API origin whose host is not loopback. Every
    /// request carries a token or password, so without this flag such an
    /// origin is refused before anything is sent (http://localhost,
    /// 127.0.0.0/8 and [::1] are always allowed).
    #[arg(long, global = true)]
    pub allow_insecure_http: bool,

    /// Deadline of each HTTP request, in seconds (fractions allowed; default
    /// 30).
    #[arg(long, global = true, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,

    /// Record a trace of the client to FILE (created or truncated, mode
    /// 0600): what it fed the sans-IO core and what the core answered, one
    /// JSON line per input (docs/protocol.md §14). `paywall-auth replay
    /// FILE` replays it. Tokens, password and captcha token are replaced by
    /// placeholders unless --trace-secrets is given. For the commands that
    /// run a client: anon, upgrade, sign-out, refresh, token, watch
    /// --keep-alive.
    #[arg(long, global = true, value_name = "FILE")]
    pub trace: Option<PathBuf>,

    /// With --trace: keep the real refresh and access tokens, the password
    /// and the captcha token in the trace (record-secrets). The file is then
    /// a credential: whoever reads it can act as the user. Only for a trace
    /// that must be replayed against real tokens.
    #[arg(long, global = true, requires = "trace")]
    pub trace_secrets: bool,

    /// More log lines on stderr: -v info, -vv debug, -vvv trace (warnings
    /// are always shown). RUST_LOG, when set, decides instead.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
}

/// Environment variable of `--api-origin`.
pub const ENV_API_ORIGIN: &str = "PAYWALL_AUTH_API_ORIGIN";
/// Older name of [`ENV_API_ORIGIN`], still read.
pub const ENV_API_ORIGIN_OLD: &str = "PAYWALL_API_ORIGIN";
/// Environment variable of `--paywall-id`.
pub const ENV_PAYWALL_ID: &str = "PAYWALL_AUTH_PAYWALL_ID";
/// Older name of [`ENV_PAYWALL_ID`], still read.
pub const ENV_PAYWALL_ID_OLD: &str = "PAYWALL_ID";
/// Environment variable of `--store`.
pub const ENV_STORE: &str = "PAYWALL_AUTH_STORE";

impl Global {
    /// `--api-origin`, else its environment variable, else the older one.
    pub fn api_origin(&self) -> Option<String> {
        given(self.api_origin.as_deref(), ENV_API_ORIGIN_OLD)
    }

    /// `--paywall-id`, else its environment variable, else the older one.
    pub fn paywall_id(&self) -> Option<String> {
        given(self.paywall_id.as_deref(), ENV_PAYWALL_ID_OLD)
    }
}

/// A value clap found (flag or new variable), else the old variable; empty
/// counts as unset.
fn given(parsed: Option<&str>, old_env: &str) -> Option<String> {
    parsed
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .or_else(|| std::env::var(old_env).ok().filter(|v| !v.is_empty()))
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Sign in as a guest: keeps the current anonymous session, else resumes
    /// the stored anonymous account, else creates one.
    Anon(AnonArgs),
    /// Attach an email and password to the current anonymous account
    /// (password read from stdin).
    Upgrade(UpgradeArgs),
    /// Sign out. Softly by default: the anonymous account stays resumable by
    /// the next `anon`.
    SignOut(SignOutArgs),
    /// Rotate the tokens now and print the refreshed session.
    Refresh,
    /// Print a fresh access token (refreshing it if needed) on stdout; the
    /// only command that prints a secret.
    Token,
    /// Show the stored session without touching the network (exit 2 when
    /// signed out).
    Status,
    /// Print auth events as they happen until Ctrl-C or SIGTERM.
    Watch(WatchArgs),
    /// Run the local backend emulator in the foreground.
    Emulator(EmulatorArgs),
    /// Walk through the whole anonymous flow against an in-process emulator,
    /// checking every step (exit 1 if one fails).
    Demo,
    /// Replay a trace recorded with --trace through this build's client
    /// core and say whether it behaves identically (exit 0) or where it
    /// first differs (exit 7). No network, no store.
    Replay(ReplayArgs),
    /// Print a shell completion script on stdout.
    ///
    /// For example:
    /// `paywall-auth completions bash > ~/.local/share/bash-completion/completions/paywall-auth`.
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The trace file (JSON lines, as written by --trace).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct AnonArgs {
    /// Create a new anonymous user even if one is signed in or resumable
    /// (the previous guest account is forgotten).
    #[arg(long)]
    pub force: bool,

    /// user_meta entry sent when a user is created (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, String)>,

    /// Captcha token forwarded to the backend.
    #[arg(long, value_name = "TOKEN")]
    pub captcha: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Email to attach to the anonymous account.
    #[arg(long, value_name = "EMAIL")]
    pub email: String,

    /// Read the password from the first line of stdin (required: passwords
    /// are never taken from the command line).
    #[arg(long, required = true)]
    pub password_stdin: bool,

    /// Makes a retried upgrade safe: the backend answers a repeated key with
    /// its first answer. Printable ASCII (it is sent as a header).
    #[arg(long, value_name = "KEY", value_parser = parse_header_value)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct SignOutArgs {
    /// Hard sign-out: also forget (and revoke) the anonymous account, so the
    /// next `anon` creates a new user.
    #[arg(long)]
    pub forget: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Own the store while watching: keep the session fresh (proactive
    /// refresh) and report this process's events. Other commands on the
    /// same store fail with store_locked meanwhile. Without it, `watch` only
    /// observes the store files, so other commands keep working.
    #[arg(long)]
    pub keep_alive: bool,

    /// How often the store files are checked for changes, in seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "0.2")]
    pub interval: Duration,
}

#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// TCP port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8787)]
    pub port: u16,

    /// Upgrades answer confirmation_required until the email is confirmed
    /// (POST /__emulator/confirm {"email":"…"}).
    #[arg(long)]
    pub confirm_email: bool,

    /// Anonymous sign-in answers 403 anonymous_disabled.
    #[arg(long)]
    pub no_anonymous: bool,

    /// Do not print a line per request received.
    #[arg(long)]
    pub quiet: bool,

    /// Serve HTTPS (TLS 1.3) with a CA and a certificate for `localhost`
    /// generated at start; the CA is written next to the other temp files
    /// and its path, and the server key's SPKI pin, are printed.
    #[arg(long)]
    pub tls: bool,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        return Err("must be more than 0 and at most 86400 seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A value sent as an HTTP header: printable ASCII only. A CR or LF would
/// split the header (and the HTTP stack refuses it only once the request is
/// being sent, as an opaque network error), so it is a usage error here.
fn parse_header_value(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if let Some(c) = s.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!(
            "must be printable ASCII (it is sent as an HTTP header); found {:?}",
            c
        ));
    }
    Ok(s.to_owned())
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_accept_fractions_and_refuse_nonsense() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("NaN").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn meta_splits_at_the_first_equals_sign() {
        assert_eq!(parse_meta("a=b=c"), Ok(("a".to_owned(), "b=c".to_owned())));
        assert_eq!(parse_meta("k="), Ok(("k".to_owned(), String::new())));
        assert!(parse_meta("=v").is_err());
        assert!(parse_meta("novalue").is_err());
    }

    #[test]
    fn header_values_are_printable_ascii() {
        assert_eq!(parse_header_value("k-1 2~"), Ok("k-1 2~".to_owned()));
        for bad in [
            "",
            "a\r\nX-Evil: 1",
            "a\nb",
            "tab\there",
            "nul\0",
            "del\u{7f}",
            "é",
        ] {
            assert!(parse_header_value(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["paywall-auth", "emulator", "--paywall-id", "pw_x", "--json"])
                .unwrap();
        assert_eq!(cli.global.paywall_id.as_deref(), Some("pw_x"));
        assert!(cli.global.json);
    }

    #[test]
    fn trace_secrets_needs_a_trace() {
        assert!(Cli::try_parse_from(["paywall-auth", "anon", "--trace-secrets"]).is_err());
        let cli = Cli::try_parse_from([
            "paywall-auth",
            "anon",
            "--trace",
            "t.jsonl",
            "--trace-secrets",
        ])
        .unwrap();
        assert_eq!(cli.global.trace, Some(PathBuf::from("t.jsonl")));
        assert!(cli.global.trace_secrets);
    }
}
