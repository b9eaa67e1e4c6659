//! Log lines on stderr: warnings always, more with `-v`, or whatever
//! `RUST_LOG` asks for.
//!
//! The SDK logs through `tracing` (store warnings, failed writes with their
//! path and OS cause, request routes and statuses, never a token); without
//! a subscriber those lines were lost. Lines read like the CLI's own errors:
//! `warning: …`, and below warnings `debug: [target] …`.

use std::fmt;
use std::io::{self, IsTerminal as _};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the stderr logger: `RUST_LOG` when set (its syntax:
/// `debug`, `paywall_auth_tokio=trace,warn`, …), else warnings plus, per
/// `-v`, info, debug or trace lines of this project's crates (other crates,
/// e.g. the HTTP stack, stay at warnings).
pub fn init(verbose: u8) {
    let mut bad_rust_log = None;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            bad_rust_log = Some(e.to_string());
            EnvFilter::new(default_directives(verbose))
        }),
        _ => EnvFilter::new(default_directives(verbose)),
    };
    let installed = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(false)
        .with_env_filter(filter)
        .event_format(Lines {
            color: io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        })
        .try_init()
        .is_ok();
    if let (true, Some(why)) = (installed, bad_rust_log) {
        tracing::warn!("RUST_LOG ignored ({why})");
    }
}

/// `warn`, or `warn` plus this project's crates at the `-v` level. The
/// binary's own target is `paywall_auth` (from its name), like the core's.
fn default_directives(verbose: u8) -> String {
    let ours = match verbose {
        0 => return "warn".to_owned(),
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    format!("warn,paywall_auth={ours},paywall_auth_tokio={ours}")
}

/// One line per event: `warning: message key=value`.
struct Lines {
    color: bool,
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let (label, color, with_target) = match *meta.level() {
            Level::ERROR => ("error", "31", false),
            Level::WARN => ("warning", "33", false),
            Level::INFO => ("info", "2", true),
            Level::DEBUG => ("debug", "2", true),
            _ => ("trace", "2", true),
        };
        if self.color {
            write!(writer, "\x1b[{color}m{label}:\x1b[0m ")?;
        } else {
            write!(writer, "{label}: ")?;
        }
        if with_target {
            write!(writer, "[{}] ", meta.target())?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_raises_only_our_crates() {
        assert_eq!(default_directives(0), "warn");
        assert_eq!(
            default_directives(2),
            "warn,paywall_auth=debug,paywall_auth_tokio=debug"
        );
        assert_eq!(
            default_directives(9),
            "warn,paywall_auth=trace,paywall_auth_tokio=trace"
        );
        for v in 0..4 {
            assert!(EnvFilter::try_new(default_directives(v)).is_ok());
        }
    }
}
