//! What one sign-in, resume, refresh or token lookup costs in the core, end
//! to end as an adapter drives it: the command, rendering the request (path,
//! every header, the JSON body), decoding the reply, encoding the records,
//! the events and the completion. Plus the decoders on their own.
//!
//! Canned replies are realistic in size: a 747-byte GoTrue-shaped JWT.
//! `cargo bench -p paywall-auth --bench machine` (add `-- --sample-count 200`
//! for tighter figures).

use std::hint::black_box;

use divan::Bencher;
use paywall_auth::codec::http1::{self, HeaderLine};
use paywall_auth::codec::json::{decode_api_error, decode_tokens};
use paywall_auth::codec::jwt::decode_claims;
use paywall_auth::codec::record::{decode_session, encode_session};
use paywall_auth::{
    Command, Config, Instant, Machine, Output, RequestId, Response, SignInOptions, SignOutOptions,
    StoreFormat,
};

fn main() {
    divan::main();
}

const JWT: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6IlhrM25QMXFhOVQyY0x3WXoiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJodHRwczovL2F1dGgucGF5d2FsbC5leGFtcGxlL2F1dGgvdjEiLCJzdWIiOiJhMTFjZTAwMC03YzJkLTRhOGUtOWYwMC0yYjZjMWQzZTRmNTAiLCJhdWQiOiJhdXRoZW50aWNhdGVkIiwiZXhwIjoxNzY3MjI5MjAwLCJpYXQiOjE3NjcyMjU2MDAsImVtYWlsIjoiIiwicGhvbmUiOiIiLCJhcHBfbWV0YWRhdGEiOnsicHJvdmlkZXIiOiJhbm9ueW1vdXMiLCJwcm92aWRlcnMiOlsiYW5vbnltb3VzIl19LCJ1c2VyX21ldGFkYXRhIjp7InBheXdhbGxfaWQiOiJwd19kZW1vIiwic291cmNlIjoia2lvc2stNyJ9LCJyb2xlIjoiYXV0aGVudGljYXRlZCIsImFhbCI6ImFhbDEiLCJhbXIiOlt7Im1ldGhvZCI6ImFub255bW91cyIsInRpbWVzdGFtcCI6MTc2NzIyNTYwMH1dLCJzZXNzaW9uX2lkIjoiNWU1NTEwMTEtN2MyZC00YThlLTlmMDAtMmI2YzFkM2U0ZjUwIiwiaXNfYW5vbnltb3VzIjp0cnVlLCJqdGkiOiIwYjlmNmMyZSJ9.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
const NOW: u64 = 1_767_225_600_000;

fn token_reply(refresh: &str) -> Vec<u8> {
    format!(
        r#"{{"access_token":"{JWT}","token_type":"bearer","expires_in":3600,"expires_at":1767229200,"refresh_token":"{refresh}","user":{{"id":"a11ce000-7c2d-4a8e-9f00-2b6c1d3e4f50","aud":"authenticated","email":null,"is_anonymous":true,"created_at":"2026-01-01T00:00:00Z"}}}}"#
    )
    .into_bytes()
}

/// Drains like an adapter: renders every request completely, encodes and
/// acknowledges every record, looks at every event and completion. Returns
/// the last request sent.
fn drain(m: &mut Machine, format: StoreFormat) -> Option<RequestId> {
    let mut sent = None;
    let mut wire = [0u8; 4096];
    let mut record = [0u8; 4096];
    loop {
        let mut ack = None;
        match m.poll_output() {
            None => break,
            Some(Output::Send(req)) => {
                let mut body = [0u8; 1024];
                let n = req.write_body(&mut body).expect("body fits");
                let path = req.path().expect("path fits");
                let headers = req.headers().map(|h| HeaderLine {
                    name: h.name,
                    prefix: h.prefix,
                    value: h.value,
                });
                let mut w = &mut wire[..];
                http1::write_request(
                    &mut w,
                    req.method(),
                    "api.paywall.example",
                    &path,
                    headers,
                    &body[..n],
                )
                .expect("request fits");
                sent = Some(req.id);
            }
            Some(Output::Store(op)) => {
                if let Some(v) = op.value {
                    black_box(v.encode(format, &mut record).expect("record fits"));
                }
                ack = Some(op.id);
            }
            Some(other) => {
                black_box(&other);
            }
        }
        if let Some(id) = ack {
            m.handle_stored(Instant(NOW), id, Ok(())).expect("drained");
        }
    }
    black_box(&wire);
    sent
}

fn started(format: StoreFormat) -> Machine {
    let mut m = Machine::new(
        Config::new("pw_demo")
            .expect("valid")
            .with_store_format(format),
    );
    m.handle_restored(
        Instant(NOW),
        None,
        None,
        Some("3f7c2a9e-8d41-4b6a-9e0f-5c1d2e3f4a5b"),
    )
    .expect("first input");
    drain(&mut m, format);
    m
}

fn signed_in(format: StoreFormat, reply: &[u8]) -> Machine {
    let mut m = started(format);
    m.handle_command(
        Instant(NOW),
        Command::SignInAnonymously(SignInOptions::default()),
    )
    .expect("drained");
    let id = drain(&mut m, format).expect("sign-in request");
    m.handle_response(Instant(NOW), id, Response::json(200, reply))
        .expect("drained");
    drain(&mut m, format);
    assert!(m.session().is_some());
    m
}

/// Command → request → reply → records → SIGNED_IN → completion.
#[divan::bench(args = [StoreFormat::ReferenceJson, StoreFormat::Postcard])]
fn fresh_anonymous_sign_in_cycle(bencher: Bencher<'_, '_>, format: StoreFormat) {
    let reply = token_reply("v2x9kq3n7m1p");
    bencher
        .with_inputs(|| started(format))
        .bench_local_values(|mut m| {
            m.handle_command(
                Instant(NOW),
                Command::SignInAnonymously(SignInOptions::default()),
            )
            .expect("drained");
            let id = drain(&mut m, format).expect("request");
            m.handle_response(Instant(NOW), id, Response::json(200, black_box(&reply)))
                .expect("drained");
            drain(&mut m, format);
            m
        });
}

/// Soft sign-out (record removed, SIGNED_OUT) then sign-in again, which
/// resumes the same account through /auth/refresh.
#[divan::bench(args = [StoreFormat::ReferenceJson, StoreFormat::Postcard])]
fn soft_sign_out_and_resume_cycle(bencher: Bencher<'_, '_>, format: StoreFormat) {
    let first = token_reply("v2x9kq3n7m1p");
    let resumed = token_reply("h4c8r2w6z0t5");
    bencher
        .with_inputs(|| signed_in(format, &first))
        .bench_local_values(|mut m| {
            m.handle_command(Instant(NOW), Command::SignOut(SignOutOptions::default()))
                .expect("drained");
            drain(&mut m, format);
            m.handle_command(
                Instant(NOW),
                Command::SignInAnonymously(SignInOptions::default()),
            )
            .expect("drained");
            let id = drain(&mut m, format).expect("resume request");
            m.handle_response(Instant(NOW), id, Response::json(200, black_box(&resumed)))
                .expect("drained");
            drain(&mut m, format);
            m
        });
}

/// Refresh: request → rotated tokens → session + anonymous copy written →
/// TOKEN_REFRESHED → completion.
#[divan::bench(args = [StoreFormat::ReferenceJson, StoreFormat::Postcard])]
fn refresh_cycle(bencher: Bencher<'_, '_>, format: StoreFormat) {
    let first = token_reply("v2x9kq3n7m1p");
    let rotated = token_reply("h4c8r2w6z0t5");
    bencher
        .with_inputs(|| signed_in(format, &first))
        .bench_local_values(|mut m| {
            m.handle_command(Instant(NOW), Command::Refresh)
                .expect("drained");
            let id = drain(&mut m, format).expect("refresh request");
            m.handle_response(Instant(NOW), id, Response::json(200, black_box(&rotated)))
                .expect("drained");
            drain(&mut m, format);
            m
        });
}

/// The common call: a token for an API request while the session is fresh.
#[divan::bench]
fn access_token_on_a_fresh_session(bencher: Bencher<'_, '_>) {
    let mut m = signed_in(StoreFormat::ReferenceJson, &token_reply("v2x9kq3n7m1p"));
    bencher.bench_local(|| {
        m.handle_command(Instant(NOW), Command::AccessToken)
            .expect("drained");
        drain(&mut m, StoreFormat::ReferenceJson)
    });
}

#[divan::bench_group]
mod decoders {
    use super::*;

    #[divan::bench]
    fn token_reply_json(bencher: Bencher<'_, '_>) {
        let body = token_reply("v2x9kq3n7m1p");
        bencher.bench(|| decode_tokens(black_box(&body)).expect("valid"));
    }

    #[divan::bench]
    fn jwt_claims(bencher: Bencher<'_, '_>) {
        bencher.bench(|| decode_claims(black_box(JWT)).expect("valid"));
    }

    #[divan::bench]
    fn error_envelope(bencher: Bencher<'_, '_>) {
        let body = br#"{"error":"refresh_failed","code":"invalid_refresh_token","message":"Invalid Refresh Token: Already Used"}"#;
        bencher.bench(|| decode_api_error(401, "Unauthorized", true, black_box(body)));
    }

    #[divan::bench(args = [StoreFormat::ReferenceJson, StoreFormat::Postcard])]
    fn session_record(bencher: Bencher<'_, '_>, format: StoreFormat) {
        let m = signed_in(format, &token_reply("v2x9kq3n7m1p"));
        let mut buf = [0u8; 4096];
        let n = encode_session(m.session().expect("signed in"), format, &mut buf).expect("fits");
        let bytes = buf[..n].to_vec();
        bencher.bench(|| decode_session(black_box(&bytes), format).expect("valid"));
    }

    #[divan::bench(args = [StoreFormat::ReferenceJson, StoreFormat::Postcard])]
    fn session_record_encode(bencher: Bencher<'_, '_>, format: StoreFormat) {
        let m = signed_in(format, &token_reply("v2x9kq3n7m1p"));
        let session = m.session().expect("signed in").clone();
        let mut buf = [0u8; 4096];
        bencher
            .bench_local(|| encode_session(black_box(&session), format, &mut buf).expect("fits"));
    }

    #[divan::bench]
    fn http1_response(bencher: Bencher<'_, '_>) {
        let body = token_reply("v2x9kq3n7m1p");
        let mut raw = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        let mut buf = [0u8; 4096];
        bencher.bench_local(|| {
            let mut stream: &[u8] = black_box(&raw);
            http1::read_response(&mut stream, &mut buf)
                .map(|r| r.body.len())
                .expect("valid")
        });
    }
}
