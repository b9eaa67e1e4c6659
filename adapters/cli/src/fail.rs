//! Failures as a shell sees them: a stable code, a message, an HTTP status,
//! and the exit code a script branches on.

use std::fmt;
use std::process::ExitCode;

/// Exit codes (also documented in `--help` and the README).
pub mod exit {
    /// Success, including an upgrade that awaits email confirmation.
    pub const OK: u8 = 0;
    /// Anything else, including usage errors.
    pub const GENERIC: u8 = 1;
    /// No session: `not_authenticated`.
    pub const NOT_AUTHENTICATED: u8 = 2;
    /// The server refused the request (4xx other than 429).
    pub const REFUSED: u8 = 3;
    /// Network or transient failure: worth retrying later.
    pub const TRANSIENT: u8 = 4;
    /// The session could not be read or written.
    pub const STORAGE: u8 = 5;
    /// The paywall does not allow anonymous sign-in.
    pub const ANONYMOUS_DISABLED: u8 = 6;
    /// `replay`: the trace and today's core disagree (`trace_diverged`).
    /// Its own code, so that CI bisecting a behaviour change can tell "the
    /// machine changed" from "the trace could not be read" (1).
    pub const TRACE_DIVERGED: u8 = 7;
}

/// A failed command, ready to be printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// docs/protocol.md §4 code (`network_error`, `anonymous_disabled`,
    /// `http_503`, …) or one of the CLI's own (`usage`, `invalid_config`,
    /// `store_locked`, `demo_failed`, …).
    pub code: String,
    /// One line for humans.
    pub message: String,
    /// HTTP status when the backend answered.
    pub status: Option<u16>,
}

impl Failure {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Failure {
            code: code.to_owned(),
            message: message.into(),
            status: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new("usage", message)
    }

    pub fn invalid_config(message: impl Into<String>) -> Self {
        Failure::new("invalid_config", message)
    }

    pub fn not_authenticated(message: impl Into<String>) -> Self {
        Failure::new("not_authenticated", message)
    }

    /// The exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        exit_code_for(&self.code, self.status)
    }

    pub fn exit(&self) -> ExitCode {
        ExitCode::from(self.exit_code())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The exit code of an error `code` that came with HTTP `status`.
///
/// The status decides first, because the backend's codes are open-ended:
/// any 4xx is a refusal except 429 (rate limits pass), any 5xx is transient.
/// Client-side codes have no status and are matched by name.
pub fn exit_code_for(code: &str, status: Option<u16>) -> u8 {
    if code == "anonymous_disabled" {
        return exit::ANONYMOUS_DISABLED;
    }
    match status {
        Some(429) => return exit::TRANSIENT,
        Some(s) if (500..600).contains(&s) => return exit::TRANSIENT,
        Some(s) if (400..500).contains(&s) => return exit::REFUSED,
        _ => {}
    }
    match code {
        "not_authenticated" => exit::NOT_AUTHENTICATED,
        "network_error" | "invalid_response" => exit::TRANSIENT,
        c if c.starts_with("http_5") || c == "http_429" => exit::TRANSIENT,
        "storage_failed" | "store_locked" => exit::STORAGE,
        "trace_diverged" => exit::TRACE_DIVERGED,
        _ => exit::GENERIC,
    }
}

impl From<paywall_auth_tokio::Error> for Failure {
    fn from(e: paywall_auth_tokio::Error) -> Self {
        // `StorageFailed` carries the store's own account (OS error, path)
        // beyond the core's error: keep it.
        let store_cause = matches!(e, paywall_auth_tokio::Error::StorageFailed { .. });
        if let (Some(core), false) = (e.as_auth(), store_cause) {
            return Failure::from(core.clone());
        }
        Failure {
            code: e.code().to_owned(),
            message: e.to_string(),
            status: e.status(),
        }
    }
}

impl From<paywall_auth::Error> for Failure {
    fn from(e: paywall_auth::Error) -> Self {
        let message = match &e {
            // The tokio transport refuses a body over its cap unread.
            paywall_auth::Error::Network(paywall_auth::TransportError::TooLarge) => format!(
                "network_error: response too large (more than {} KiB)",
                paywall_auth_tokio::DEFAULT_MAX_RESPONSE_BYTES / 1024
            ),
            e => e.to_string(),
        };
        Failure {
            code: e.code().to_owned(),
            message,
            status: e.status(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_documented_table() {
        assert_eq!(exit_code_for("anonymous_disabled", Some(403)), 6);
        assert_eq!(exit_code_for("anonymous_disabled", None), 6);
        assert_eq!(exit_code_for("invalid_credentials", Some(400)), 3);
        assert_eq!(exit_code_for("invalid_refresh_token", Some(401)), 3);
        assert_eq!(exit_code_for("rate_limited", Some(429)), 4);
        assert_eq!(exit_code_for("http_429", Some(429)), 4);
        assert_eq!(exit_code_for("upstream", Some(503)), 4);
        assert_eq!(exit_code_for("http_500", Some(500)), 4);
        assert_eq!(exit_code_for("network_error", None), 4);
        assert_eq!(exit_code_for("invalid_response", None), 4);
        assert_eq!(exit_code_for("not_authenticated", None), 2);
        assert_eq!(exit_code_for("storage_failed", None), 5);
        assert_eq!(exit_code_for("store_locked", None), 5);
        assert_eq!(exit_code_for("usage", None), 1);
        assert_eq!(exit_code_for("not_anonymous", None), 1);
        assert_eq!(exit_code_for("superseded", None), 1);
        assert_eq!(exit_code_for("binding_mismatch", None), 1);
        assert_eq!(exit_code_for("trace_diverged", None), 7);
        assert_eq!(exit_code_for("trace_invalid", None), 1);
        assert_eq!(exit_code_for("trace_unreadable", None), 1);
    }

    #[test]
    fn a_response_over_the_cap_says_response_too_large() {
        let failure = Failure::from(paywall_auth::Error::Network(
            paywall_auth::TransportError::TooLarge,
        ));
        assert_eq!(failure.code, "network_error");
        assert_eq!(failure.exit_code(), exit::TRANSIENT);
        assert!(
            failure
                .message
                .contains("response too large (more than 64 KiB)"),
            "{failure}"
        );
    }
}
