//! `paywall-auth replay FILE`: runs a trace recorded with `--trace` (or by
//! any adapter, docs/protocol.md §14) through this build's core.
//!
//! The answer is a result, not an error, whichever way it goes: "identical"
//! exits 0, a divergence is printed like any other result (stdout, or one
//! JSON object with `--json`) and exits 7, so a script or a bisection can
//! branch on it. A file that is not a readable trace is an error (exit 1).

use std::path::Path;

use paywall_auth_tokio::trace::{Divergence, Replayed};
use paywall_auth_tokio::{ReplayFileError, replay_trace_file};
use serde_json::json;

use crate::fail::{Failure, exit};
use crate::out;

/// Replays `file` and prints the verdict; returns the exit code.
pub fn run(file: &Path, json_mode: bool) -> u8 {
    match replay_trace_file(file) {
        Ok(replayed) => {
            identical(&replayed, json_mode);
            exit::OK
        }
        Err(ReplayFileError::Diverged(divergence)) => {
            diverged(&divergence, json_mode);
            exit::TRACE_DIVERGED
        }
        Err(e) => {
            let failure = failure_of(&e);
            out::failure(json_mode, &failure);
            failure.exit_code()
        }
    }
}

fn identical(replayed: &Replayed, json_mode: bool) {
    if json_mode {
        out::json_line(&json!({
            "replay": "identical",
            "inputs": replayed.inputs,
            "outputs": replayed.outputs,
        }));
    } else {
        out::line(&format!(
            "replayed {} inputs, {} outputs: identical",
            replayed.inputs, replayed.outputs
        ));
    }
}

fn diverged(d: &Divergence, json_mode: bool) {
    if json_mode {
        out::json_line(&json!({
            "replay": "diverged",
            "line": d.line,
            "what": d.what,
            "input": d.input,
            "expected": d.expected,
            "actual": d.actual,
        }));
    } else {
        out::line(&format!(
            "diverged at trace line {}: {} differs\n  input:    {}\n  expected: {}\n  actual:   {}",
            d.line, d.what, d.input, d.expected, d.actual
        ));
    }
}

/// A file that could not be replayed at all.
fn failure_of(e: &ReplayFileError) -> Failure {
    match e {
        ReplayFileError::Io { .. } => Failure::new("trace_unreadable", e.to_string()),
        ReplayFileError::Diverged(_) => Failure::new("trace_diverged", e.to_string()),
        // `ReplayFileError` is non-exhaustive: anything else is a file
        // that is not a trace this build reads.
        _ => Failure::new("trace_invalid", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_and_invalid_traces_are_generic_failures() {
        let missing = failure_of(&ReplayFileError::Io {
            path: "/nope".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        assert_eq!(missing.code, "trace_unreadable");
        assert_eq!(missing.exit_code(), exit::GENERIC);
        assert!(missing.message.contains("/nope"), "{missing}");
        let invalid = failure_of(&ReplayFileError::Trace(
            paywall_auth_tokio::trace::TraceError::Empty,
        ));
        assert_eq!(invalid.code, "trace_invalid");
        assert_eq!(invalid.exit_code(), exit::GENERIC);
    }
}
