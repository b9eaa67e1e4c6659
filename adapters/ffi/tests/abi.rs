//! Misuse of the C ABI is answered with typed status codes, never a crash;
//! the codec round-trips through its C entry points.
#![allow(
    clippy::indexing_slicing,
    unsafe_code,
    clippy::undocumented_unsafe_blocks
)]

use core::mem::size_of;
use core::ptr;
use std::mem::MaybeUninit;

use paywall_auth_ffi::*;

/// Machine memory with the strictest alignment any target asks for.
#[repr(C, align(16))]
struct Mem([u8; PAYWALL_AUTH_MACHINE_STORAGE]);

fn b(s: &[u8]) -> paywall_auth_bytes {
    paywall_auth_bytes {
        ptr: s.as_ptr(),
        len: s.len(),
    }
}

fn config(pid: &[u8]) -> paywall_auth_config {
    let mut cfg = MaybeUninit::<paywall_auth_config>::uninit();
    let s = unsafe { paywall_auth_config_default(cfg.as_mut_ptr(), pid.as_ptr(), pid.len()) };
    assert_eq!(s, paywall_auth_status::Ok);
    unsafe { cfg.assume_init() }
}

fn machine(mem: &mut Mem) -> *mut paywall_auth_machine {
    let cfg = config(b"pw_demo");
    let p = mem.0.as_mut_ptr().cast();
    assert_eq!(
        unsafe { paywall_auth_machine_init(p, mem.0.len(), &cfg) },
        paywall_auth_status::Ok
    );
    p.cast()
}

fn drain(m: *mut paywall_auth_machine) -> Vec<paywall_auth_output_kind> {
    let mut kinds = Vec::new();
    let mut out = MaybeUninit::<paywall_auth_output>::uninit();
    loop {
        match unsafe { paywall_auth_machine_poll_output(m, out.as_mut_ptr()) } {
            paywall_auth_status::Ok => kinds.push(unsafe { out.assume_init_ref() }.kind),
            paywall_auth_status::Empty => return kinds,
            s => panic!("poll_output: {s:?}"),
        }
    }
}

fn command(kind: paywall_auth_command_kind) -> paywall_auth_command {
    paywall_auth_command {
        kind: kind as u32,
        force_new: 0,
        hard: 0,
        captcha_token: paywall_auth_bytes::NONE,
        email: paywall_auth_bytes::NONE,
        password: paywall_auth_bytes::NONE,
        idempotency_key: paywall_auth_bytes::NONE,
        user_meta: ptr::null(),
        user_meta_len: 0,
    }
}

#[test]
fn init_validates_memory_and_config() {
    let mut mem = Box::new(Mem([0; PAYWALL_AUTH_MACHINE_STORAGE]));
    let size = paywall_auth_machine_size();
    assert!(size <= PAYWALL_AUTH_MACHINE_STORAGE);
    assert!(paywall_auth_machine_align() <= PAYWALL_AUTH_MAX_ALIGN);
    let cfg = config(b"pw_demo");
    let p = mem.0.as_mut_ptr();
    unsafe {
        assert_eq!(
            paywall_auth_machine_init(ptr::null_mut(), size, &cfg),
            paywall_auth_status::NullPointer
        );
        assert_eq!(
            paywall_auth_machine_init(p.cast(), size, ptr::null()),
            paywall_auth_status::NullPointer
        );
        assert_eq!(
            paywall_auth_machine_init(p.add(1).cast(), size, &cfg),
            paywall_auth_status::Misaligned
        );
        assert_eq!(
            paywall_auth_machine_init(p.cast(), size - 1, &cfg),
            paywall_auth_status::BufferTooSmall
        );
        for bad in [&b""[..], b"a/b", &[b'x'; 65][..]] {
            let c = paywall_auth_config {
                paywall_id: b(bad),
                ..cfg
            };
            assert_eq!(
                paywall_auth_machine_init(p.cast(), size, &c),
                paywall_auth_status::InvalidConfig
            );
        }
        let c = paywall_auth_config {
            paywall_id: b(&[0xff, 0xfe]),
            ..cfg
        };
        assert_eq!(
            paywall_auth_machine_init(p.cast(), size, &c),
            paywall_auth_status::InvalidUtf8
        );
        let c = paywall_auth_config {
            store_format: 7,
            ..cfg
        };
        assert_eq!(
            paywall_auth_machine_init(p.cast(), size, &c),
            paywall_auth_status::InvalidConfig
        );
        // Zeroed memory is not a machine.
        assert_eq!(
            paywall_auth_machine_handle_timeout(p.cast(), 0),
            paywall_auth_status::NotInitialized
        );
    }
}

#[test]
fn inputs_are_validated_and_the_drain_invariant_holds() {
    let mut mem = Box::new(Mem([0; PAYWALL_AUTH_MACHINE_STORAGE]));
    let m = machine(&mut mem);
    let none = paywall_auth_bytes::NONE;
    unsafe {
        assert_eq!(
            paywall_auth_machine_handle_restored(m, 1, none, none, none),
            paywall_auth_status::Ok
        );
        // INITIAL_SESSION is queued: any input but a store ack is refused.
        assert_eq!(
            paywall_auth_machine_handle_timeout(m, 2),
            paywall_auth_status::NotDrained
        );
        assert_eq!(drain(m), [paywall_auth_output_kind::AuthChange]);

        let mut id = 0u32;
        let mut c = command(paywall_auth_command_kind::SignIn);
        c.kind = 42;
        assert_eq!(
            paywall_auth_machine_handle_command(m, 3, &c, &mut id),
            paywall_auth_status::InvalidArgument
        );
        let mut c = command(paywall_auth_command_kind::SignIn);
        c.captcha_token = paywall_auth_bytes {
            ptr: ptr::null(),
            len: 3,
        };
        assert_eq!(
            paywall_auth_machine_handle_command(m, 3, &c, &mut id),
            paywall_auth_status::NullPointer
        );
        let long = vec![b'c'; 100_000];
        c.captcha_token = b(&long);
        assert_eq!(
            paywall_auth_machine_handle_command(m, 3, &c, &mut id),
            paywall_auth_status::Capacity
        );
        let mut c = command(paywall_auth_command_kind::Upgrade);
        c.email = b(&[0xc3]);
        assert_eq!(
            paywall_auth_machine_handle_command(m, 3, &c, &mut id),
            paywall_auth_status::InvalidUtf8
        );
        c.user_meta_len = 2;
        assert_eq!(
            paywall_auth_machine_handle_command(m, 3, &c, &mut id),
            paywall_auth_status::NullPointer
        );
        assert_eq!(
            paywall_auth_machine_handle_transport_error(m, 3, 1, 99),
            paywall_auth_status::InvalidArgument
        );
        assert_eq!(
            paywall_auth_machine_handle_external_change(m, 3, 9, none),
            paywall_auth_status::InvalidArgument
        );
        assert_eq!(
            paywall_auth_machine_poll_output(m, ptr::null_mut()),
            paywall_auth_status::NullPointer
        );

        // Signed out: refresh fails with the protocol's code.
        let c = command(paywall_auth_command_kind::Refresh);
        assert_eq!(
            paywall_auth_machine_handle_command(m, 4, &c, &mut id),
            paywall_auth_status::Ok
        );
        let mut out = MaybeUninit::<paywall_auth_output>::uninit();
        assert_eq!(
            paywall_auth_machine_poll_output(m, out.as_mut_ptr()),
            paywall_auth_status::Ok
        );
        let out = out.assume_init();
        assert_eq!(out.kind, paywall_auth_output_kind::Complete);
        assert_eq!(out.complete.command_id, id);
        assert_eq!(out.complete.ok, 0);
        assert_eq!(
            out.complete.error.kind,
            paywall_auth_error_kind::NotAuthenticated
        );
        let code = std::slice::from_raw_parts(out.complete.error.code.ptr, 18);
        assert_eq!(code, b"not_authenticated\0");
        assert_eq!(drain(m), []);

        let mut deadline = 0u64;
        assert_eq!(
            paywall_auth_machine_poll_timeout(m, &mut deadline),
            paywall_auth_status::Empty
        );
        assert_eq!(paywall_auth_machine_deinit(m), paywall_auth_status::Ok);
        assert_eq!(
            paywall_auth_machine_handle_timeout(m, 5),
            paywall_auth_status::NotInitialized
        );
        assert_eq!(
            paywall_auth_machine_deinit(m),
            paywall_auth_status::NotInitialized
        );
    }
}

#[test]
fn error_codes_and_status_texts() {
    let code = |k: paywall_auth_error_kind| unsafe {
        std::ffi::CStr::from_ptr(paywall_auth_error_code_str(k as u32))
            .to_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(code(paywall_auth_error_kind::Network), "network_error");
    assert_eq!(code(paywall_auth_error_kind::Storage), "storage_failed");
    assert_eq!(code(paywall_auth_error_kind::Busy), "busy");
    let text = |s: i32| unsafe {
        std::ffi::CStr::from_ptr(paywall_auth_status_str(s))
            .to_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(text(paywall_auth_status::NotDrained as i32).starts_with("outputs not drained"));
    assert_eq!(text(12345), "unknown status");
}

#[test]
fn http_writer_refuses_injection_and_small_buffers() {
    let headers = [paywall_auth_header {
        name: b(b"X-Evil"),
        value: b(b"a\r\nHost: other"),
    }];
    let mut request = paywall_auth_request {
        request_id: 1,
        method: b(b"POST"),
        path: b(b"/p"),
        headers: headers.as_ptr(),
        headers_len: 1,
        body: b(b"{}"),
    };
    let mut buf = [0u8; 256];
    let mut len = 0usize;
    let host = b(b"127.0.0.1:1");
    unsafe {
        assert_eq!(
            paywall_auth_http_write_request(host, &request, buf.as_mut_ptr(), 256, &mut len),
            paywall_auth_status::HttpInvalidHeaderValue
        );
        request.headers_len = 0;
        assert_eq!(
            paywall_auth_http_write_request(host, &request, buf.as_mut_ptr(), 10, &mut len),
            paywall_auth_status::BufferTooSmall
        );
        assert_eq!(
            paywall_auth_http_write_request(b(b"a b"), &request, buf.as_mut_ptr(), 256, &mut len),
            paywall_auth_status::HttpInvalidHost
        );
        assert_eq!(
            paywall_auth_http_write_request(host, &request, buf.as_mut_ptr(), 256, &mut len),
            paywall_auth_status::Ok
        );
        assert_eq!(
            &buf[..len],
            b"POST /p HTTP/1.1\r\nHost: 127.0.0.1:1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
        // The output buffer may not overlap the request's bytes.
        let body = buf.as_ptr();
        request.body = paywall_auth_bytes { ptr: body, len: 2 };
        assert_eq!(
            paywall_auth_http_write_request(host, &request, buf.as_mut_ptr(), 256, &mut len),
            paywall_auth_status::InvalidArgument
        );
    }
}

#[test]
fn http_parser_feeds_byte_by_byte_and_reports_errors() {
    #[repr(C, align(16))]
    struct P([u8; 256]);
    assert!(paywall_auth_http_response_size() <= 256);
    let mut mem = P([0; 256]);
    let mut buf = [0u8; 128];
    let wire = b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}trailing";
    let p = mem.0.as_mut_ptr();
    unsafe {
        assert_eq!(
            paywall_auth_http_response_init(p.cast(), 256, buf.as_mut_ptr(), buf.len()),
            paywall_auth_status::Ok
        );
        let mut view = MaybeUninit::<paywall_auth_http_response_view>::uninit();
        let mut last = paywall_auth_status::Incomplete;
        for byte in wire {
            last = paywall_auth_http_response_feed(p.cast(), byte, 1, view.as_mut_ptr());
            if last == paywall_auth_status::Ok {
                break;
            }
            assert_eq!(last, paywall_auth_status::Incomplete);
        }
        assert_eq!(last, paywall_auth_status::Ok);
        let v = view.assume_init();
        assert_eq!((v.status, v.content_type_json), (401, 1));
        assert_eq!(std::slice::from_raw_parts(v.body.ptr, v.body.len), b"{}");
        assert_eq!(
            std::slice::from_raw_parts(v.reason.ptr, v.reason.len),
            b"Unauthorized"
        );

        // Cut short: the close is an error, and it sticks.
        assert_eq!(
            paywall_auth_http_response_init(p.cast(), 256, buf.as_mut_ptr(), buf.len()),
            paywall_auth_status::Ok
        );
        let part = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab";
        assert_eq!(
            paywall_auth_http_response_feed(p.cast(), part.as_ptr(), part.len(), ptr::null_mut()),
            paywall_auth_status::Incomplete
        );
        assert_eq!(
            paywall_auth_http_response_finish(p.cast(), ptr::null_mut()),
            paywall_auth_status::HttpUnexpectedEof
        );
        assert_eq!(
            paywall_auth_http_response_feed(p.cast(), part.as_ptr(), 1, ptr::null_mut()),
            paywall_auth_status::HttpUnexpectedEof
        );
        // Garbage and a body larger than the buffer.
        assert_eq!(
            paywall_auth_http_response_init(p.cast(), 256, buf.as_mut_ptr(), buf.len()),
            paywall_auth_status::Ok
        );
        let junk = b"SMTP ready\r\n\r\n";
        assert_eq!(
            paywall_auth_http_response_feed(p.cast(), junk.as_ptr(), junk.len(), ptr::null_mut()),
            paywall_auth_status::HttpBadHead
        );
        assert_eq!(
            paywall_auth_http_response_init(p.cast(), 256, buf.as_mut_ptr(), buf.len()),
            paywall_auth_status::Ok
        );
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        assert_eq!(
            paywall_auth_http_response_feed(p.cast(), big.as_ptr(), big.len(), ptr::null_mut()),
            paywall_auth_status::HttpBodyTooLarge
        );
        assert_eq!(
            paywall_auth_http_response_init(p.add(1).cast(), 255, buf.as_mut_ptr(), 128),
            paywall_auth_status::Misaligned
        );
        assert_eq!(
            paywall_auth_http_response_feed(ptr::null_mut(), big.as_ptr(), 1, ptr::null_mut()),
            paywall_auth_status::NullPointer
        );
    }
}

/// A record too large for the encode buffer (a maximal token and user
/// fields made of control characters, each escaped to six bytes in JSON) is
/// reported as `CAPACITY` with its id, and acknowledging it as failed ends
/// the command with `storage_failed` instead of a hang or a truncated write.
#[test]
fn an_output_larger_than_the_encode_buffer_is_reported_not_truncated() {
    let mut mem = Box::new(Mem([0; PAYWALL_AUTH_MACHINE_STORAGE]));
    let m = machine(&mut mem);
    let none = paywall_auth_bytes::NONE;
    let ctl = |n: usize| "\\u0001".repeat(n);
    let token = format!(
        "a.{}.c",
        "b".repeat(paywall_auth::limits::ACCESS_TOKEN_MAX - 4)
    );
    let body = format!(
        r#"{{"access_token":"{token}","refresh_token":"{}","expires_in":3600,"expires_at":null,"token_type":"bearer","user":{{"id":"u1","email":null,"is_anonymous":true,"name":"{}","avatar":"{}","country":"{}"}}}}"#,
        "r".repeat(paywall_auth::limits::REFRESH_TOKEN_MAX),
        ctl(paywall_auth::limits::NAME_MAX),
        ctl(paywall_auth::limits::AVATAR_MAX),
        ctl(paywall_auth::limits::COUNTRY_MAX),
    );
    unsafe {
        assert_eq!(
            paywall_auth_machine_handle_restored(m, 1, none, none, none),
            paywall_auth_status::Ok
        );
        drain(m);
        let c = command(paywall_auth_command_kind::SignIn);
        let mut id = 0;
        assert_eq!(
            paywall_auth_machine_handle_command(m, 2, &c, &mut id),
            paywall_auth_status::Ok
        );
        let mut out = MaybeUninit::<paywall_auth_output>::uninit();
        assert_eq!(
            paywall_auth_machine_poll_output(m, out.as_mut_ptr()),
            paywall_auth_status::Ok
        );
        let request = out.assume_init_ref().send.request_id;
        assert_eq!(drain(m), []);
        assert_eq!(
            paywall_auth_machine_handle_response(
                m,
                3,
                request,
                200,
                1,
                body.as_ptr(),
                body.len(),
                none
            ),
            paywall_auth_status::Ok
        );
        let mut failed_stores = 0;
        let mut completion = None;
        loop {
            let s = paywall_auth_machine_poll_output(m, out.as_mut_ptr());
            if s == paywall_auth_status::Empty {
                break;
            }
            let o = out.assume_init_ref();
            match (s, o.kind) {
                (paywall_auth_status::Capacity, paywall_auth_output_kind::Store) => {
                    failed_stores += 1;
                    assert_eq!(
                        paywall_auth_machine_handle_stored(m, 4, o.store.store_id, 0),
                        paywall_auth_status::Ok
                    );
                }
                (paywall_auth_status::Ok, paywall_auth_output_kind::Store) => {
                    assert_eq!(
                        paywall_auth_machine_handle_stored(m, 4, o.store.store_id, 1),
                        paywall_auth_status::Ok
                    );
                }
                (paywall_auth_status::Ok, paywall_auth_output_kind::Complete) => {
                    completion =
                        Some((o.complete.command_id, o.complete.ok, o.complete.error.kind));
                }
                (paywall_auth_status::Ok, _) => {}
                (s, k) => panic!("unexpected {s:?} for {k:?}"),
            }
        }
        assert_eq!(failed_stores, 1, "the session record did not fit");
        assert_eq!(
            completion,
            Some((id, 0, paywall_auth_error_kind::Storage)),
            "the sign-in reports the record as not durable"
        );
    }
}

// ----- traces ---------------------------------------------------------------

/// A token reply whose refresh token and access-token signature are the
/// secrets a redacted trace must not hold.
const TOKENS: &str = r#"{"access_token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSIsImV4cCI6MjAwMDAwMDAwMCwiaXNfYW5vbnltb3VzIjp0cnVlfQ.c2lnbmF0dXJlLXNlY3JldC1ieXRlcw","token_type":"bearer","expires_in":3600,"refresh_token":"refresh-secret-0001","user":{"id":"u1","email":null,"is_anonymous":true}}"#;
const REFRESH_TOKEN: &str = "refresh-secret-0001";
const SIGNATURE: &str = "c2lnbmF0dXJlLXNlY3JldC1ieXRlcw";

/// The sink: `user` is a `Vec<String>` collecting the lines.
unsafe extern "C" fn collect(user: *mut core::ffi::c_void, line: *const u8, len: usize) {
    let lines = unsafe { &mut *user.cast::<Vec<String>>() };
    let bytes = unsafe { std::slice::from_raw_parts(line, len) };
    lines.push(String::from_utf8(bytes.to_vec()).expect("a trace line is UTF-8"));
}

/// Polls until `EMPTY`, acknowledging every store inside the loop (as the
/// C hosts do) at `now + 1`; returns the request id of a `SEND`, if any.
fn drain_acking(m: *mut paywall_auth_machine, now: u64) -> Option<u32> {
    let mut out = MaybeUninit::<paywall_auth_output>::uninit();
    let mut request = None;
    loop {
        match unsafe { paywall_auth_machine_poll_output(m, out.as_mut_ptr()) } {
            paywall_auth_status::Ok => {
                let o = unsafe { out.assume_init_ref() };
                match o.kind {
                    paywall_auth_output_kind::Send => request = Some(o.send.request_id),
                    paywall_auth_output_kind::Store => assert_eq!(
                        unsafe {
                            paywall_auth_machine_handle_stored(m, now + 1, o.store.store_id, 1)
                        },
                        paywall_auth_status::Ok
                    ),
                    _ => {}
                }
            }
            paywall_auth_status::Empty => return request,
            s => panic!("poll_output: {s:?}"),
        }
    }
}

/// Signs a guest in through the C ABI with a recording on; returns the
/// lines the sink got and the deadline the machine gave at the end.
fn record_sign_in(keep_secrets: i32) -> (Vec<String>, Option<u64>) {
    let mut mem = Box::new(Mem([0; PAYWALL_AUTH_MACHINE_STORAGE]));
    let m = machine(&mut mem);
    let mut lines: Vec<String> = Vec::new();
    let user = ptr::addr_of_mut!(lines).cast();
    let none = paywall_auth_bytes::NONE;
    unsafe {
        assert_eq!(
            paywall_auth_machine_record_trace(m, keep_secrets, Some(collect), user),
            paywall_auth_status::Ok
        );
        assert_eq!(lines.len(), 1, "the header is handed over at once");
        assert_eq!(
            paywall_auth_machine_handle_restored(m, 1_000, none, none, none),
            paywall_auth_status::Ok
        );
        assert_eq!(drain_acking(m, 1_000), None);
        let c = command(paywall_auth_command_kind::SignIn);
        let mut id = 0;
        assert_eq!(
            paywall_auth_machine_handle_command(m, 2_000, &c, &mut id),
            paywall_auth_status::Ok
        );
        // Refused (outputs queued): not recorded.
        assert_eq!(
            paywall_auth_machine_handle_timeout(m, 2_001),
            paywall_auth_status::NotDrained
        );
        let request = drain_acking(m, 2_000).expect("the sign-in request");
        assert_eq!(
            paywall_auth_machine_handle_response(
                m,
                3_000,
                request,
                200,
                1,
                TOKENS.as_ptr(),
                TOKENS.len(),
                b(b"OK")
            ),
            paywall_auth_status::Ok
        );
        assert_eq!(drain_acking(m, 3_000), None);
        let c = command(paywall_auth_command_kind::AccessToken);
        assert_eq!(
            paywall_auth_machine_handle_command(m, 4_000, &c, &mut id),
            paywall_auth_status::Ok
        );
        assert_eq!(drain_acking(m, 4_000), None);
        // A second EMPTY ends nothing more.
        assert_eq!(drain_acking(m, 4_000), None);
        let mut deadline = 0u64;
        let timeout = match paywall_auth_machine_poll_timeout(m, &mut deadline) {
            paywall_auth_status::Ok => Some(deadline),
            paywall_auth_status::Empty => None,
            s => panic!("poll_timeout: {s:?}"),
        };
        // Stopped: later inputs are not recorded.
        let recorded = lines.len();
        assert_eq!(
            paywall_auth_machine_record_trace(m, 0, None, ptr::null_mut()),
            paywall_auth_status::Ok
        );
        assert_eq!(
            paywall_auth_machine_handle_timeout(m, 5_000),
            paywall_auth_status::Ok
        );
        drain_acking(m, 5_000);
        assert_eq!(lines.len(), recorded);
        assert_eq!(paywall_auth_machine_deinit(m), paywall_auth_status::Ok);
        (lines, timeout)
    }
}

fn replay_c(trace: &[u8]) -> (paywall_auth_status, Box<paywall_auth_replay_report>) {
    let mut report = Box::new(MaybeUninit::<paywall_auth_replay_report>::uninit());
    let s = unsafe { paywall_auth_trace_replay(trace.as_ptr(), trace.len(), report.as_mut_ptr()) };
    (s, Box::new(unsafe { report.assume_init_read() }))
}

fn text(chars: &[core::ffi::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    assert!(bytes.len() < chars.len(), "NUL-terminated");
    String::from_utf8(bytes).expect("UTF-8 text")
}

#[test]
fn a_trace_recorded_through_the_abi_replays_identically() {
    let (lines, timeout) = record_sign_in(0);
    assert!(
        lines[0].starts_with(r#"{"paywall_auth_trace":1,"#)
            && lines[0].contains(r#""paywall_id":"pw_demo""#),
        "{}",
        lines[0]
    );
    assert!(
        lines
            .iter()
            .all(|l| l.ends_with('\n') && l.matches('\n').count() == 1)
    );
    let parsed: Vec<paywall_auth::trace::TraceLine> = lines[1..]
        .iter()
        .map(|l| serde_json::from_str(l).expect("a trace line"))
        .collect();
    // Every accepted input, with the `now` it was fed with: restored,
    // sign-in, response, the two store acks inside the drain (session and
    // guest records), the access-token command. The refused timeout is not
    // there.
    let nows: Vec<u64> = parsed.iter().map(|l| l.now).collect();
    assert_eq!(
        nows,
        [1_000, 2_000, 3_000, 3_001, 3_001, 4_000],
        "{lines:#?}"
    );
    assert!(matches!(
        parsed[0].input,
        paywall_auth::trace::TraceInput::Restored { .. }
    ));
    assert!(matches!(
        parsed[2].input,
        paywall_auth::trace::TraceInput::Response { status: 200, .. }
    ));
    assert!(matches!(
        parsed[3].input,
        paywall_auth::trace::TraceInput::Stored { .. }
    ));
    assert_eq!(parsed[1].outputs.len(), 1, "the sign-in request");
    assert_eq!(
        parsed.last().map(|l| l.timeout),
        Some(timeout),
        "the last line ends with poll_timeout at EMPTY"
    );
    let trace = lines.concat();
    assert!(
        !trace.contains(REFRESH_TOKEN) && !trace.contains(SIGNATURE),
        "{trace}"
    );
    assert!(trace.contains(r#""user_id":"u1""#));

    let replayed = paywall_auth::trace::replay(&trace).expect("replays in Rust");
    assert_eq!(replayed.inputs, 6);
    let (s, report) = replay_c(trace.as_bytes());
    assert_eq!(s, paywall_auth_status::Ok, "{}", text(&report.what));
    assert_eq!((report.inputs, report.outputs), (6, replayed.outputs));
    assert_eq!((report.line, text(&report.what)), (0, String::new()));
    let s = unsafe { paywall_auth_trace_replay(trace.as_ptr(), trace.len(), ptr::null_mut()) };
    assert_eq!(s, paywall_auth_status::Ok, "the report is optional");

    // Kept secrets are kept (and still replay).
    let (kept, _) = record_sign_in(1);
    let kept = kept.concat();
    assert!(kept.contains(REFRESH_TOKEN) && kept.contains(SIGNATURE));
    assert!(kept.starts_with(r#"{"paywall_auth_trace":1,"sdk_version":"#));
    assert_eq!(replay_c(kept.as_bytes()).0, paywall_auth_status::Ok);
}

#[test]
fn replay_of_a_tampered_trace_reports_the_line_that_diverges() {
    let (lines, _) = record_sign_in(0);
    // The first line that announces user u1 now says u9.
    let at = lines
        .iter()
        .position(|l| l.contains(r#""user_id":"u1""#))
        .expect("a line announcing u1");
    assert!(at >= 2, "after the header and the restore");
    let mut tampered = lines.clone();
    tampered[at] = tampered[at].replacen(r#""user_id":"u1""#, r#""user_id":"u9""#, 1);
    let (s, report) = replay_c(tampered.concat().as_bytes());
    assert_eq!(s, paywall_auth_status::TraceDiverged);
    assert_eq!(report.line, at + 1, "1-based, the header is line 1");
    assert!(
        text(&report.what).starts_with("output "),
        "{}",
        text(&report.what)
    );
    assert!(
        text(&report.expected).contains(r#""user_id":"u9""#),
        "{}",
        text(&report.expected)
    );
    assert!(
        text(&report.actual).contains(r#""user_id":"u1""#),
        "{}",
        text(&report.actual)
    );
    assert!(
        text(&report.input).starts_with(r#"{"kind":"#),
        "{}",
        text(&report.input)
    );
    assert_eq!((report.inputs, report.outputs), (0, 0));

    // The last line's deadline, moved by a millisecond.
    let last = lines.len() - 1;
    let mut line: paywall_auth::trace::TraceLine =
        serde_json::from_str(&lines[last]).expect("a trace line");
    line.timeout = Some(line.timeout.map_or(1, |t| t + 1));
    let mut tampered = lines.clone();
    tampered[last] = serde_json::to_string(&line).expect("serialises") + "\n";
    let (s, report) = replay_c(tampered.concat().as_bytes());
    assert_eq!(s, paywall_auth_status::TraceDiverged);
    assert_eq!(report.line, last + 1);
    assert_eq!(text(&report.what), "timeout");

    // A line dropped: the next input arrives where the machine expects
    // another, and the first difference is reported, not a crash.
    let mut dropped = lines.clone();
    dropped.remove(3);
    let (s, report) = replay_c(dropped.concat().as_bytes());
    assert_eq!(s, paywall_auth_status::TraceDiverged);
    assert!(report.line >= 3, "{}", report.line);
}

#[test]
fn replay_refuses_garbage_with_a_code_and_never_panics() {
    let (lines, _) = record_sign_in(0);
    let trace = lines.concat();
    unsafe {
        let mut report = MaybeUninit::<paywall_auth_replay_report>::uninit();
        assert_eq!(
            paywall_auth_trace_replay(ptr::null(), 5, report.as_mut_ptr()),
            paywall_auth_status::NullPointer
        );
        assert_eq!(
            paywall_auth_trace_replay(ptr::null(), 0, report.as_mut_ptr()),
            paywall_auth_status::TraceInvalid,
            "no header"
        );
        let r = report.assume_init_ref();
        assert_eq!(text(&r.what), "trace is empty (no header line)");
        let mut raw = vec![0u8; size_of::<paywall_auth_replay_report>() + 16];
        assert_eq!(
            paywall_auth_trace_replay(
                trace.as_ptr(),
                trace.len(),
                raw.as_mut_ptr()
                    .add(1 + raw.as_ptr().align_offset(8))
                    .cast()
            ),
            paywall_auth_status::Misaligned
        );
        assert_eq!(
            paywall_auth_machine_record_trace(ptr::null_mut(), 0, Some(collect), ptr::null_mut()),
            paywall_auth_status::NullPointer
        );
        let mut zeroed = Box::new(Mem([0; PAYWALL_AUTH_MACHINE_STORAGE]));
        assert_eq!(
            paywall_auth_machine_record_trace(
                zeroed.0.as_mut_ptr().cast(),
                0,
                None,
                ptr::null_mut()
            ),
            paywall_auth_status::NotInitialized
        );
    }

    // Not UTF-8 on the third line.
    let mut bytes = trace.clone().into_bytes();
    let third = lines[0].len() + lines[1].len() + 2;
    bytes[third] = 0xff;
    let (s, report) = replay_c(&bytes);
    assert_eq!(s, paywall_auth_status::TraceInvalid);
    assert_eq!(report.line, 3);
    assert_eq!(
        text(&report.what),
        format!("trace is not UTF-8 (byte {third})")
    );

    // Not JSON, another version, a bad second line.
    let (s, report) = replay_c(b"hello\n");
    assert_eq!((s, report.line), (paywall_auth_status::TraceInvalid, 1));
    assert!(
        text(&report.what).starts_with("trace line 1:"),
        "{}",
        text(&report.what)
    );
    let v2 = trace.replacen(r#""paywall_auth_trace":1"#, r#""paywall_auth_trace":2"#, 1);
    let (s, report) = replay_c(v2.as_bytes());
    assert_eq!(s, paywall_auth_status::TraceInvalid);
    assert!(
        text(&report.what).contains("version 2"),
        "{}",
        text(&report.what)
    );
    let bad = format!("{}{{\"now\":1}}\n", lines[0]);
    let (s, report) = replay_c(bad.as_bytes());
    assert_eq!((s, report.line), (paywall_auth_status::TraceInvalid, 2));

    // Every truncation and many byte changes of a real trace: a code, no
    // panic (this test runs with unwinding panics, which would fail it).
    let original = trace.as_bytes();
    let mut seen = [0usize; 3];
    for cut in (0..original.len()).step_by(7) {
        let (s, _) = replay_c(&original[..cut]);
        assert!(
            matches!(
                s,
                paywall_auth_status::Ok
                    | paywall_auth_status::TraceDiverged
                    | paywall_auth_status::TraceInvalid
            ),
            "cut at {cut}: {s:?}"
        );
    }
    for (i, at) in (0..original.len()).step_by(5).enumerate() {
        let mut mutated = original.to_vec();
        mutated[at] = [b'"', b'0', b'}', b'\n', 0xc3, b'x'][i % 6];
        let (s, _) = replay_c(&mutated);
        match s {
            paywall_auth_status::Ok => seen[0] += 1,
            paywall_auth_status::TraceDiverged => seen[1] += 1,
            paywall_auth_status::TraceInvalid => seen[2] += 1,
            s => panic!("byte {at}: {s:?}"),
        }
    }
    assert!(
        seen[1] > 0 && seen[2] > 0,
        "both failures exercised: {seen:?}"
    );
}
