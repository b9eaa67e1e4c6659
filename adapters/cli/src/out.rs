//! Output: human text on a terminal, or one JSON object per line.
//!
//! Tokens never pass through here except in `token`'s own line: the
//! session summary carries only who is signed in and until when.

use std::io::{self, IsTerminal as _, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::fail::Failure;

/// Who is signed in and until when; never any token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub user_id: String,
    pub email: Option<String>,
    pub is_anonymous: bool,
    /// Expiry of the access token, ms since the Unix epoch.
    pub expires_at_ms: u64,
}

impl Summary {
    pub fn of(session: &paywall_auth::Session) -> Self {
        Summary {
            user_id: session.user.id.as_str().to_owned(),
            email: session.user.email.as_ref().map(|e| e.as_str().to_owned()),
            is_anonymous: session.user.is_anonymous,
            expires_at_ms: session.expires_at.as_millis(),
        }
    }

    /// `expires_at` is in Unix seconds, as on the wire (docs/protocol.md §2.1).
    pub fn to_json(&self) -> Value {
        json!({
            "user_id": self.user_id,
            "email": self.email,
            "is_anonymous": self.is_anonymous,
            "expires_at": self.expires_at_ms / 1000,
        })
    }

    /// Aligned `key  value` lines, indented by `indent`.
    pub fn to_text(&self, indent: &str) -> String {
        let email = self.email.as_deref().unwrap_or("-");
        let anonymous = if self.is_anonymous { "yes" } else { "no" };
        format!(
            "{indent}user id    {}\n{indent}email      {email}\n{indent}anonymous  {anonymous}\n{indent}expires    {}",
            self.user_id,
            describe_expiry(self.expires_at_ms, now_ms()),
        )
    }
}

/// `Some(summary)` as JSON, `None` as `null`.
pub fn session_json(summary: Option<&Summary>) -> Value {
    summary.map_or(Value::Null, Summary::to_json)
}

/// Writes `line` and a newline to stdout and flushes. False when stdout is
/// gone (a closed pipe): the caller should stop producing output.
pub fn line(line: &str) -> bool {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_ok()
}

/// Writes one JSON object as a line.
pub fn json_line(value: &Value) -> bool {
    line(&value.to_string())
}

/// Prints a failure: the JSON envelope on stdout with `--json`, else
/// `error: …` on stderr.
pub fn failure(json_mode: bool, failure: &Failure) {
    if json_mode {
        json_line(&json!({
            "error": {
                "code": failure.code,
                "message": failure.message,
                "status": failure.status,
            }
        }));
    } else {
        let mut message = failure.message.clone();
        // Core and adapter messages already start with their code.
        if !message.starts_with(failure.code.as_str()) {
            message = format!("{}: {message}", failure.code);
        }
        let _ = writeln!(io::stderr().lock(), "error: {message}");
    }
}

/// Current wall-clock time in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `2026-11-26T19:30:00Z (in 59m)` / `(expired 3m ago)`.
pub fn describe_expiry(expires_at_ms: u64, now_ms: u64) -> String {
    let at = rfc3339(expires_at_ms / 1000);
    if expires_at_ms > now_ms {
        format!("{at} (in {})", span((expires_at_ms - now_ms) / 1000))
    } else {
        format!(
            "{at} (expired {} ago)",
            span((now_ms - expires_at_ms) / 1000)
        )
    }
}

/// A rough duration: `42s`, `59m`, `3h12m`, `2d4h`.
pub fn span(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => match (secs % 3600) / 60 {
            0 => format!("{}h", secs / 3600),
            m => format!("{}h{m}m", secs / 3600),
        },
        _ => match (secs % 86_400) / 3600 {
            0 => format!("{}d", secs / 86_400),
            h => format!("{}d{h}h", secs / 86_400),
        },
    }
}

/// Unix seconds as an RFC 3339 UTC timestamp.
pub fn rfc3339(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Gregorian date of the `days`-th day after 1970-01-01 (proleptic, UTC),
/// by counting 400-year eras of 146 097 days from 0000-03-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// ANSI styling for the demo, only on a terminal and without `NO_COLOR`.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    on: bool,
}

impl Style {
    pub fn detect() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            on: !no_color && io::stdout().is_terminal(),
        }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn good(self, text: &str) -> String {
        self.paint("32", text)
    }

    pub fn bad(self, text: &str) -> String {
        self.paint("31", text)
    }

    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_185_400), "2025-11-26T19:30:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn expiry_reads_naturally() {
        let now = 1_764_185_400_000;
        assert_eq!(
            describe_expiry(now + 3_540_000, now),
            "2025-11-26T20:29:00Z (in 59m)"
        );
        assert_eq!(
            describe_expiry(now - 5_000, now),
            "2025-11-26T19:29:55Z (expired 5s ago)"
        );
        assert_eq!(span(3600), "1h");
        assert_eq!(span(3 * 3600 + 12 * 60 + 5), "3h12m");
        assert_eq!(span(2 * 86_400 + 4 * 3600), "2d4h");
    }

    #[test]
    fn summaries_carry_no_tokens() {
        let summary = Summary {
            user_id: "u1".to_owned(),
            email: None,
            is_anonymous: true,
            expires_at_ms: 1_764_185_400_999,
        };
        assert_eq!(
            summary.to_json(),
            json!({"user_id":"u1","email":null,"is_anonymous":true,"expires_at":1_764_185_400})
        );
        let text = summary.to_text("");
        assert!(text.contains("user id    u1"), "{text}");
        assert!(text.contains("anonymous  yes"), "{text}");
    }
}
