//! Misuse of the C ABI is answered with typed status codes, never a crash;
//! the codec round-trips through its C entry points.
#![allow(
    clippy::indexing_slicing,
    unsafe_code,
    clippy::undocumented_unsafe_blocks
)]

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
