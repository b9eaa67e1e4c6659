//! A firmware that drives the paywall-auth core through its whole anonymous
//! lifecycle on canned bytes — restore, sign-in, access token, refresh,
//! upgrade, soft sign-out, resume, hard sign-out — rendering every request
//! with the HTTP/1.1 writer, reading every reply with the HTTP/1.1 reader and
//! encoding every record (postcard, as on flash). Inputs go through
//! `black_box`, so nothing is constant-folded away: the linked size is what
//! a real firmware pays for the core.
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m as _;
use panic_halt as _;
use paywall_auth::codec::http1::{self, HeaderLine};
use paywall_auth::{
    Command, Config, Instant, Machine, Output, RecordKey, RequestId, Response, SignInOptions,
    SignOutOptions, StorageError, StoreFormat, UpgradeRequest,
};

/// `size_of` of the core's main types on this target, read back from the ELF
/// by `elf_sizes.py`: Machine, Session, Output.
#[used]
#[unsafe(no_mangle)]
static PAYWALL_AUTH_TYPE_SIZES: [u32; 3] = [
    core::mem::size_of::<Machine>() as u32,
    core::mem::size_of::<paywall_auth::Session>() as u32,
    core::mem::size_of::<Output<'static>>() as u32,
];

/// The machine state budget on the target.
const _: () = assert!(
    core::mem::size_of::<Machine>() < 8 * 1024,
    "Machine exceeds 8 KiB"
);

/// A 747-byte access token, GoTrue-shaped.
const JWT: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6IlhrM25QMXFhOVQyY0x3WXoiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJodHRwczovL2F1dGgucGF5d2FsbC5leGFtcGxlL2F1dGgvdjEiLCJzdWIiOiJhMTFjZTAwMC03YzJkLTRhOGUtOWYwMC0yYjZjMWQzZTRmNTAiLCJhdWQiOiJhdXRoZW50aWNhdGVkIiwiZXhwIjoxNzY3MjI5MjAwLCJpYXQiOjE3NjcyMjU2MDAsImVtYWlsIjoiIiwicGhvbmUiOiIiLCJhcHBfbWV0YWRhdGEiOnsicHJvdmlkZXIiOiJhbm9ueW1vdXMiLCJwcm92aWRlcnMiOlsiYW5vbnltb3VzIl19LCJ1c2VyX21ldGFkYXRhIjp7InBheXdhbGxfaWQiOiJwd19kZW1vIiwic291cmNlIjoia2lvc2stNyJ9LCJyb2xlIjoiYXV0aGVudGljYXRlZCIsImFhbCI6ImFhbDEiLCJhbXIiOlt7Im1ldGhvZCI6ImFub255bW91cyIsInRpbWVzdGFtcCI6MTc2NzIyNTYwMH1dLCJzZXNzaW9uX2lkIjoiNWU1NTEwMTEtN2MyZC00YThlLTlmMDAtMmI2YzFkM2U0ZjUwIiwiaXNfYW5vbnltb3VzIjp0cnVlLCJqdGkiOiIwYjlmNmMyZSJ9.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

/// Token reply (sign-in, refresh, resume) framed as HTTP/1.1.
fn token_reply(buf: &mut [u8], refresh: &str) -> usize {
    let mut body = [0u8; 1100];
    let mut n = 0;
    for part in [
        "{\"access_token\":\"",
        JWT,
        "\",\"token_type\":\"bearer\",\"expires_in\":3600,\"expires_at\":1767229200,\"refresh_token\":\"",
        refresh,
        "\",\"user\":{\"id\":\"a11ce000-7c2d-4a8e-9f00-2b6c1d3e4f50\",\"email\":null,\"is_anonymous\":true}}",
    ] {
        body[n..n + part.len()].copy_from_slice(part.as_bytes());
        n += part.len();
    }
    frame(buf, &body[..n])
}

fn frame(buf: &mut [u8], body: &[u8]) -> usize {
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
    buf[..head.len()].copy_from_slice(head);
    buf[head.len()..head.len() + body.len()].copy_from_slice(body);
    head.len() + body.len()
}

struct Device {
    m: Machine,
    now: u64,
    /// The flash records, postcard-encoded.
    session: [u8; 1400],
    session_len: usize,
    anon: [u8; 300],
    anon_len: usize,
    wire: [u8; 2048],
    sent: Option<RequestId>,
}

impl Device {
    /// Drains the machine like an adapter: requests go to the wire buffer,
    /// records to "flash", events and completions are observed.
    fn drain(&mut self) {
        loop {
            let mut ack = None;
            match self.m.poll_output() {
                None => break,
                Some(Output::Send(req)) => {
                    let mut body = [0u8; 1024];
                    let n = req.write_body(&mut body).unwrap_or(0);
                    let path = req.path().unwrap_or_default();
                    let headers = req.headers().map(|h| HeaderLine {
                        name: h.name,
                        prefix: h.prefix,
                        value: h.value,
                    });
                    let mut w = &mut self.wire[..];
                    let _ = http1::write_request(
                        &mut w,
                        req.method(),
                        "api.paywall.example",
                        &path,
                        headers,
                        &body[..n],
                    );
                    self.sent = Some(req.id);
                }
                Some(Output::Store(op)) => {
                    let written = match (op.value, op.key) {
                        (Some(v), RecordKey::Session) => v
                            .encode(StoreFormat::Postcard, &mut self.session)
                            .map(|b| b.len()),
                        (Some(v), RecordKey::AnonRefreshToken) => v
                            .encode(StoreFormat::Postcard, &mut self.anon)
                            .map(|b| b.len()),
                        (None, _) => Ok(0),
                    };
                    match (written, op.key) {
                        (Ok(n), RecordKey::Session) => self.session_len = n,
                        (Ok(n), RecordKey::AnonRefreshToken) => self.anon_len = n,
                        (Err(_), _) => {}
                    }
                    ack = Some((
                        op.id,
                        written.map(drop).map_err(|_| StorageError { key: op.key }),
                    ));
                }
                Some(other) => {
                    black_box(&other);
                }
            }
            if let Some((id, result)) = ack {
                let _ = self.m.handle_stored(Instant(self.now), id, result);
            }
        }
    }

    fn command(&mut self, c: Command) {
        let _ = self.m.handle_command(Instant(self.now), c);
        self.drain();
    }

    /// Answers the last request with `raw` bytes read through the HTTP/1.1 reader.
    fn answer(&mut self, raw: &[u8]) {
        let Some(id) = self.sent.take() else { return };
        let mut stream = black_box(raw);
        let mut buf = [0u8; 1600];
        if let Ok(r) = http1::read_response(&mut stream, &mut buf) {
            let resp = Response {
                status: r.status,
                content_type_json: r.content_type_json,
                body: r.body,
                reason: r.reason,
            };
            let _ = self.m.handle_response(Instant(self.now), id, resp);
        }
        self.drain();
    }
}

#[cortex_m_rt::entry]
fn main() -> ! {
    let Ok(config) = Config::new(black_box("pw_demo")) else {
        loop {}
    };
    let mut d = Device {
        m: Machine::new(config.with_store_format(StoreFormat::Postcard)),
        now: black_box(1_767_225_600_000),
        session: [0; 1400],
        session_len: 0,
        anon: [0; 300],
        anon_len: 0,
        wire: [0; 2048],
        sent: None,
    };
    let _ = d.m.handle_restored(
        Instant(d.now),
        None,
        None,
        black_box(Some("3f7c2a9e-8d41-4b6a-9e0f-5c1d2e3f4a5b")),
    );
    d.drain();

    let mut reply = [0u8; 1400];
    d.command(Command::SignInAnonymously(SignInOptions::default()));
    let n = token_reply(&mut reply, black_box("v2x9kq3n7m1p"));
    d.answer(&reply[..n]);

    d.command(Command::AccessToken);
    d.now += black_box(3_500_000);
    d.command(Command::Refresh);
    let n = token_reply(&mut reply, black_box("h4c8r2w6z0t5"));
    d.answer(&reply[..n]);

    if let Ok(up) = UpgradeRequest::new(
        black_box("guest@example.com"),
        black_box("correct horse"),
        Some("idem-1"),
    ) {
        d.command(Command::UpgradeToEmail(up));
        let n = frame(
            &mut reply,
            black_box(b"{\"status\":\"confirmation_required\",\"email\":\"guest@example.com\"}"),
        );
        d.answer(&reply[..n]);
    }

    d.command(Command::SignOut(SignOutOptions {
        forget_anonymous: false,
    }));
    d.command(Command::SignInAnonymously(SignInOptions::default()));
    let n = token_reply(&mut reply, black_box("q1w2e3r4t5y6"));
    d.answer(&reply[..n]);
    d.command(Command::SignOut(SignOutOptions {
        forget_anonymous: true,
    }));
    d.answer(black_box(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"));

    // Restore from the records just written (the next boot).
    let mut next = Machine::new(d.m.config().clone());
    let _ = next.handle_restored(
        Instant(d.now),
        Some(&d.session[..d.session_len]),
        Some(&d.anon[..d.anon_len]),
        None,
    );
    d.m = next;
    d.drain();
    d.m.handle_timeout(Instant(d.now + 1)).ok();
    d.drain();
    loop {
        black_box(&d.m);
        black_box(&d.wire);
    }
}
