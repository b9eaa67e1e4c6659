use alloc::string::String;
use alloc::vec::Vec;

use super::*;
use crate::{Command, Config, Input, Instant, Machine, SignInOptions, UpgradeRequest};

const BODY: &str = r#"{"access_token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMCwiaXNfYW5vbnltb3VzIjp0cnVlfQ.c2lnbmF0dXJlLXNlY3JldC1ieXRlcw","token_type":"bearer","expires_in":3600,"refresh_token":"refresh-secret-0001","user":{"id":"u1","email":null,"is_anonymous":true}}"#;

/// A driver with its recorder: feeds one input, drains, ends the line.
struct Driver {
    m: Machine,
    rec: Recorder,
    trace: String,
    now: u64,
}

impl Driver {
    /// Feeds `input` and returns the ids of the writes and requests it
    /// released.
    fn feed(&mut self, input: Input<'_>) -> (Vec<StoreId>, Vec<RequestId>) {
        self.now += 1;
        self.rec.input(Instant(self.now), &input);
        self.m.handle_input(Instant(self.now), input).unwrap();
        let (mut stores, mut sends) = (Vec::new(), Vec::new());
        while let Some(out) = self.m.poll_output() {
            self.rec.output(&out);
            match out {
                Output::Store(op) => stores.push(op.id),
                Output::Send(req) => sends.push(req.id),
                _ => {}
            }
        }
        self.trace.push_str(&self.rec.end(self.m.poll_timeout()));
        (stores, sends)
    }

    /// Feeds `input`, acknowledges every write it leads to and answers
    /// every request with a token reply, until nothing is left.
    fn settle(&mut self, input: Input<'_>) {
        let (mut stores, mut sends) = self.feed(input);
        loop {
            if let Some(id) = stores.pop() {
                let (more, new) = self.feed(Input::Stored(id, Ok(())));
                stores.extend(more);
                sends.extend(new);
            } else if let Some(id) = sends.pop() {
                let (more, new) =
                    self.feed(Input::Response(id, Response::json(200, BODY.as_bytes())));
                stores.extend(more);
                sends.extend(new);
            } else {
                break;
            }
        }
    }
}

/// Drives a sign-in, an upgrade, a refresh and a timeout, recording as a
/// driver does.
fn record(secrets: Secrets, format: StoreFormat) -> String {
    let config = Config::new("pw_trace").unwrap().with_store_format(format);
    let rec = Recorder::new(&config, secrets);
    let mut d = Driver {
        m: Machine::new(config),
        trace: rec.header(),
        rec,
        now: 1_000,
    };
    d.settle(Input::Restored {
        session: None,
        anon_refresh_token: None,
        visitor_id: None,
    });
    d.settle(Input::Command(Command::SignInAnonymously(
        SignInOptions::default(),
    )));
    d.settle(Input::Command(Command::UpgradeToEmail(
        UpgradeRequest::new("a@example.com", "hunter2-password", Some("k1")).unwrap(),
    )));
    d.settle(Input::Command(Command::Refresh));
    d.settle(Input::Timeout);
    d.trace
}

#[test]
fn a_redacted_trace_hides_every_secret_and_still_replays() {
    for format in [StoreFormat::ReferenceJson, StoreFormat::Postcard] {
        let trace = record(Secrets::Redact, format);
        for secret in [
            "refresh-secret-0001",
            "c2lnbmF0dXJlLXNlY3JldC1ieXRlcw",
            "hunter2-password",
        ] {
            assert!(!trace.contains(secret), "{secret} leaked into\n{trace}");
        }
        // The upgrade went out (its body held the password).
        assert!(trace.contains("/auth/anonymous/upgrade"), "{trace}");
        // The claims the machine reads are kept.
        assert!(
            trace.contains("eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMCwiaXNfYW5vbnltb3VzIjp0cnVlfQ")
        );
        let done = replay(&trace).unwrap_or_else(|e| panic!("{e}\n{trace}"));
        assert!(done.inputs > 8 && done.outputs > 8, "{done:?}");
    }
}

#[test]
fn a_trace_with_secrets_kept_holds_them_and_replays() {
    let trace = record(Secrets::Keep, StoreFormat::ReferenceJson);
    assert!(trace.contains("refresh-secret-0001"));
    assert!(trace.contains(r#""secrets":true"#));
    replay(&trace).unwrap();
}

#[test]
fn the_first_divergence_is_reported_with_its_line() {
    let trace = record(Secrets::Redact, StoreFormat::ReferenceJson);
    // Change what the machine answered to the sign-in: the path of the
    // first request it sent.
    let tampered = trace.replacen("/auth/anonymous/signin", "/auth/anonymous/other", 1);
    match replay(&tampered) {
        Err(ReplayError::Diverged(d)) => {
            assert_eq!(d.line, 3, "{d}");
            assert_eq!(d.what, "output 1");
            assert!(d.expected.contains("/auth/anonymous/other"));
            assert!(d.actual.contains("/auth/anonymous/signin"));
        }
        other => panic!("{other:?}"),
    }
    // A deadline that moved is a divergence too.
    let mut lines: alloc::vec::Vec<String> = trace.lines().map(String::from).collect();
    let last = lines.len() - 1;
    lines[last] = lines[last].replace(r#""timeout":"#, r#""timeout":1,"x":"#);
    let tampered = lines.join("\n");
    assert!(matches!(
        replay(&tampered),
        Err(ReplayError::Diverged(Divergence { ref what, .. })) if what == "timeout"
    ));
}

#[test]
fn bad_traces_are_typed_errors_not_panics() {
    assert_eq!(replay(""), Err(ReplayError::Trace(TraceError::Empty)));
    assert!(matches!(
        replay("not json"),
        Err(ReplayError::Trace(TraceError::Syntax(1, _)))
    ));
    let header = Recorder::new(&Config::new("pw_x").unwrap(), Secrets::Redact).header();
    let future = header.replace(r#""paywall_auth_trace":1"#, r#""paywall_auth_trace":99"#);
    assert_eq!(
        replay(&future),
        Err(ReplayError::Trace(TraceError::Version(99)))
    );
    let broken = format!("{header}{{\"now\":1,\"input\":{{\"kind\":\"nope\"}}}}\n");
    assert!(matches!(
        replay(&broken),
        Err(ReplayError::Trace(TraceError::Syntax(2, _)))
    ));
    let bad_hex = format!(
        "{header}{}\n",
        r#"{"now":1,"input":{"kind":"restored","session":{"hex":"zz"},"anon_refresh_token":null,"visitor_id":null},"outputs":[],"timeout":null}"#
    );
    assert_eq!(
        replay(&bad_hex),
        Err(ReplayError::Trace(TraceError::Invalid("hex bytes")))
    );
}

#[test]
fn the_header_is_the_one_the_protocol_doc_shows() {
    let header = Recorder::new(&Config::new("pw_demo").unwrap(), Secrets::Redact).header();
    let doc = include_str!("../../../docs/protocol.md");
    assert!(
        doc.contains(header.trim_end()),
        "docs/protocol.md §14.1 should show\n{header}"
    );
}
