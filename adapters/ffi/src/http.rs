//! The core's HTTP/1.1 codec over the C ABI: a request writer into a caller
//! buffer and an incremental response parser in caller memory, so a host
//! with only a socket needs no HTTP library.

use core::convert::Infallible;
use core::mem::{align_of, size_of};
use core::ptr;

use paywall_auth::codec::http1::{
    self, HeaderLine, Http1ReadError, Http1WriteError, ResponseParser,
};

use crate::types::*;
use crate::{bytes, text};

fn write_error<E>(e: Http1WriteError<E>) -> paywall_auth_status {
    match e {
        Http1WriteError::Io(_) => paywall_auth_status::BufferTooSmall,
        Http1WriteError::InvalidMethod => paywall_auth_status::HttpInvalidMethod,
        Http1WriteError::InvalidHost => paywall_auth_status::HttpInvalidHost,
        Http1WriteError::InvalidPath => paywall_auth_status::HttpInvalidPath,
        Http1WriteError::InvalidHeaderName => paywall_auth_status::HttpInvalidHeaderName,
        Http1WriteError::InvalidHeaderValue => paywall_auth_status::HttpInvalidHeaderValue,
        Http1WriteError::ReservedHeader => paywall_auth_status::HttpReservedHeader,
        _ => paywall_auth_status::InvalidArgument,
    }
}

fn read_error(e: Http1ReadError<Infallible>) -> paywall_auth_status {
    match e {
        Http1ReadError::UnexpectedEof => paywall_auth_status::HttpUnexpectedEof,
        Http1ReadError::HeadTooLarge => paywall_auth_status::HttpHeadTooLarge,
        Http1ReadError::BadHead => paywall_auth_status::HttpBadHead,
        Http1ReadError::BadFraming => paywall_auth_status::HttpBadFraming,
        Http1ReadError::BodyTooLarge => paywall_auth_status::HttpBodyTooLarge,
        Http1ReadError::BadChunk => paywall_auth_status::HttpBadChunk,
        _ => paywall_auth_status::HttpBadHead,
    }
}

/// Whether two byte ranges share a byte.
fn overlap(a: *const u8, a_len: usize, b: *const u8, b_len: usize) -> bool {
    let (a, b) = (a.addr(), b.addr());
    a_len > 0 && b_len > 0 && a < b.saturating_add(b_len) && b < a.saturating_add(a_len)
}

/// Writes `request` (from a `SEND` output) as one HTTP/1.1 request into
/// `buf` (`cap` bytes) and stores its length in `*len`: request line,
/// `Host: host` (`host` is the authority, e.g. `api.example.com` or
/// `127.0.0.1:8080`), the request's headers, `Content-Length`,
/// `Connection: close`, the body. Send exactly those bytes, then read the
/// response until the server closes (or the parser says it is complete).
///
/// Every field is validated before it is written (no header injection):
/// `HTTP_INVALID_*`/`HTTP_RESERVED_HEADER` name the culprit,
/// `BUFFER_TOO_SMALL` means `cap` was not enough (nothing usable was
/// written). `buf` must not overlap the request's bytes.
///
/// # Safety
/// `host` as a byte string; `request` NULL or a request whose pointers are
/// valid (from `poll_output`, before the next call on that machine);
/// `buf` NULL or `cap` writable bytes; `len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_http_write_request(
    host: paywall_auth_bytes,
    request: *const paywall_auth_request,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> paywall_auth_status {
    crate::status((|| {
        if request.is_null() || buf.is_null() || len.is_null() {
            return Err(paywall_auth_status::NullPointer);
        }
        if request.align_offset(align_of::<paywall_auth_request>()) != 0
            || len.align_offset(align_of::<usize>()) != 0
        {
            return Err(paywall_auth_status::Misaligned);
        }
        if cap > isize::MAX as usize {
            return Err(paywall_auth_status::InvalidArgument);
        }
        // SAFETY: non-NULL, aligned (checked); plain data copied out.
        let r = unsafe { request.read() };
        if r.headers.is_null() && r.headers_len > 0 {
            return Err(paywall_auth_status::NullPointer);
        }
        if r.headers_len > PAYWALL_AUTH_HEADERS_MAX * 4 {
            return Err(paywall_auth_status::InvalidArgument);
        }
        let headers: &[paywall_auth_header] = if r.headers_len == 0 {
            &[]
        } else {
            if r.headers.align_offset(align_of::<paywall_auth_header>()) != 0 {
                return Err(paywall_auth_status::Misaligned);
            }
            // SAFETY: non-NULL, aligned, bounded count (checked); the caller
            // promises `headers_len` readable headers.
            unsafe { core::slice::from_raw_parts(r.headers, r.headers_len) }
        };
        for piece in [r.body, r.path]
            .into_iter()
            .chain(headers.iter().flat_map(|h| [h.name, h.value]))
        {
            if overlap(piece.ptr, piece.len, buf, cap) {
                return Err(paywall_auth_status::InvalidArgument);
            }
        }
        // Validate every header's text first, so the iterator cannot fail.
        for h in headers {
            // SAFETY: forwarded contract.
            unsafe {
                text(h.name)?;
                text(h.value)?;
            }
        }
        let lines = headers.iter().map(|h| {
            // SAFETY: as above; validated before.
            let (name, value) = unsafe { (text(h.name), text(h.value)) };
            HeaderLine {
                name: name.ok().flatten().unwrap_or(""),
                prefix: "",
                value: value.ok().flatten().unwrap_or(""),
            }
        });
        // SAFETY: forwarded contract on each byte string.
        let (host, method, path, body) = unsafe {
            (
                text(host)?.unwrap_or(""),
                text(r.method)?.unwrap_or(""),
                text(r.path)?.unwrap_or(""),
                bytes(r.body)?.unwrap_or_default(),
            )
        };
        // SAFETY: non-NULL, `cap` within `isize` (checked); the caller
        // promises `cap` writable bytes, and no input overlaps them
        // (checked above), so this is the only live reference to them.
        let out = unsafe { core::slice::from_raw_parts_mut(buf, cap) };
        let mut w: &mut [u8] = out;
        http1::write_request(&mut w, method, host, path, lines, body).map_err(write_error)?;
        let written = cap - w.len();
        // SAFETY: non-NULL, aligned (checked), caller promises writable.
        unsafe { len.write(written) };
        Ok(())
    })())
}

const PARSER_MAGIC: u64 = 0x7061_7977_6874_7431; // "paywhtt1"

/// An incremental HTTP/1.1 response parser in caller memory. Opaque:
/// allocate `paywall_auth_http_response_size()` bytes aligned to
/// `paywall_auth_http_response_align()`.
#[derive(Debug)]
pub struct paywall_auth_http_response {
    magic: u64,
    parser: ResponseParser,
    buf: *mut u8,
    cap: usize,
    /// The first error; every later call repeats it.
    failed: Option<paywall_auth_status>,
}

/// Bytes a response parser needs (a few dozen).
#[unsafe(no_mangle)]
pub extern "C" fn paywall_auth_http_response_size() -> usize {
    size_of::<paywall_auth_http_response>()
}

/// Alignment a response parser needs.
#[unsafe(no_mangle)]
pub extern "C" fn paywall_auth_http_response_align() -> usize {
    align_of::<paywall_auth_http_response>()
}

/// Starts parsing one response into `buf` (`cap` bytes), which must hold
/// the whole head and (de-chunked) body and stay valid and untouched until
/// the response has been used. Use `(paywall_auth_http_response *)mem` as
/// the handle. Reinitialise for each response.
///
/// # Safety
/// `mem` NULL or `mem_size` writable bytes; `buf` NULL or `cap` writable
/// bytes, not overlapping `mem`, owned by the parser until its last use.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_http_response_init(
    mem: *mut core::ffi::c_void,
    mem_size: usize,
    buf: *mut u8,
    cap: usize,
) -> paywall_auth_status {
    if mem.is_null() || buf.is_null() {
        return paywall_auth_status::NullPointer;
    }
    let p = mem.cast::<paywall_auth_http_response>();
    if p.align_offset(align_of::<paywall_auth_http_response>()) != 0 {
        return paywall_auth_status::Misaligned;
    }
    if mem_size < size_of::<paywall_auth_http_response>() {
        return paywall_auth_status::BufferTooSmall;
    }
    if cap > isize::MAX as usize
        || overlap(
            buf,
            cap,
            mem.cast::<u8>(),
            size_of::<paywall_auth_http_response>(),
        )
    {
        return paywall_auth_status::InvalidArgument;
    }
    let value = paywall_auth_http_response {
        magic: PARSER_MAGIC,
        parser: ResponseParser::new(),
        buf,
        cap,
        failed: None,
    };
    // SAFETY: non-NULL, aligned, large enough (checked); `write` does not
    // read the old bytes.
    unsafe { p.write(value) };
    paywall_auth_status::Ok
}

/// Checks a parser handle and borrows it with its buffer.
///
/// # Safety
/// `p` NULL or a handle from `paywall_auth_http_response_init` whose buffer
/// is still valid and not otherwise referenced during the call.
unsafe fn parser<'a>(
    p: *mut paywall_auth_http_response,
) -> Result<(&'a mut paywall_auth_http_response, &'a mut [u8]), paywall_auth_status> {
    if p.is_null() {
        return Err(paywall_auth_status::NullPointer);
    }
    if p.align_offset(align_of::<paywall_auth_http_response>()) != 0 {
        return Err(paywall_auth_status::Misaligned);
    }
    // SAFETY: non-NULL, aligned (checked); the first field of memory the
    // caller promises is a parser's size.
    let magic = unsafe { ptr::addr_of!((*p).magic).read() };
    if magic != PARSER_MAGIC {
        return Err(paywall_auth_status::NotInitialized);
    }
    // SAFETY: the magic says `init` wrote a parser here; exclusive use for
    // the call is the caller's promise.
    let state = unsafe { &mut *p };
    if let Some(s) = state.failed {
        return Err(s);
    }
    // SAFETY: `buf`/`cap` were checked at init (non-NULL, within `isize`,
    // not overlapping the parser); the caller promises they are still
    // valid and only the parser touches them.
    let buf = unsafe { core::slice::from_raw_parts_mut(state.buf, state.cap) };
    Ok((state, buf))
}

fn view(r: http1::Response<'_>) -> paywall_auth_http_response_view {
    paywall_auth_http_response_view {
        status: r.status,
        content_type_json: u8::from(r.content_type_json),
        body: paywall_auth_bytes::of(r.body),
        reason: paywall_auth_bytes::of(r.reason.as_bytes()),
    }
}

/// Writes the response into `out`, if there is one and `out` is not NULL.
///
/// # Safety
/// `out` NULL or writable.
unsafe fn deliver(
    state: &paywall_auth_http_response,
    buf: &[u8],
    out: *mut paywall_auth_http_response_view,
) -> paywall_auth_status {
    match state.parser.response(buf) {
        None => paywall_auth_status::Incomplete,
        Some(_) if out.is_null() => paywall_auth_status::Ok,
        Some(_) if out.align_offset(align_of::<paywall_auth_http_response_view>()) != 0 => {
            paywall_auth_status::Misaligned
        }
        Some(r) => {
            // SAFETY: non-NULL, aligned (checked), caller promises writable.
            unsafe { out.write(view(r)) };
            paywall_auth_status::Ok
        }
    }
}

/// Feeds `len` received bytes. Returns `INCOMPLETE` while more are needed,
/// `OK` once the response is complete (then `*out`, if not NULL, holds it;
/// bytes past its end are ignored), or an `HTTP_*` error (the connection is
/// unusable; every later call repeats the error).
///
/// # Safety
/// `p` a parser handle; `data` NULL or `len` readable bytes not inside the
/// parser's buffer; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_http_response_feed(
    p: *mut paywall_auth_http_response,
    data: *const u8,
    len: usize,
    out: *mut paywall_auth_http_response_view,
) -> paywall_auth_status {
    // SAFETY: forwarded contract.
    let (state, buf) = match unsafe { parser(p) } {
        Ok(x) => x,
        Err(s) => return s,
    };
    if overlap(data, len, buf.as_ptr(), buf.len()) {
        return paywall_auth_status::InvalidArgument;
    }
    // SAFETY: forwarded contract.
    let data = match unsafe { bytes(paywall_auth_bytes { ptr: data, len }) } {
        Ok(d) => d.unwrap_or_default(),
        Err(s) => return s,
    };
    if let Err(e) = state.parser.feed(buf, data) {
        let s = read_error(e);
        state.failed = Some(s);
        return s;
    }
    // SAFETY: forwarded contract.
    unsafe { deliver(state, buf, out) }
}

/// The peer closed the connection: completes a body delimited by the close
/// (`OK`, `*out` filled) or reports `HTTP_UNEXPECTED_EOF` when the response
/// was cut short.
///
/// # Safety
/// `p` a parser handle; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_http_response_finish(
    p: *mut paywall_auth_http_response,
    out: *mut paywall_auth_http_response_view,
) -> paywall_auth_status {
    // SAFETY: forwarded contract.
    let (state, buf) = match unsafe { parser(p) } {
        Ok(x) => x,
        Err(s) => return s,
    };
    if let Err(e) = state.parser.finish(buf) {
        let s = read_error(e);
        state.failed = Some(s);
        return s;
    }
    // SAFETY: forwarded contract.
    unsafe { deliver(state, buf, out) }
}

/// Text of a status code.
pub(crate) fn status_str(status: i32) -> &'static core::ffi::CStr {
    use paywall_auth_status as S;
    let all = [
        (S::Ok, c"ok"),
        (S::Empty, c"nothing to report"),
        (S::Incomplete, c"response incomplete: feed more bytes"),
        (S::NullPointer, c"a required pointer is NULL"),
        (S::Misaligned, c"memory is not aligned as required"),
        (S::BufferTooSmall, c"memory or buffer too small"),
        (S::NotInitialized, c"handle not initialised"),
        (
            S::InvalidConfig,
            c"invalid_config: paywall id or store format refused",
        ),
        (S::InvalidArgument, c"argument out of its domain"),
        (S::InvalidUtf8, c"text argument is not UTF-8"),
        (
            S::Capacity,
            c"capacity_exceeded: value larger than the core's capacity",
        ),
        (
            S::NotDrained,
            c"outputs not drained: poll_output until EMPTY first",
        ),
        (S::HttpInvalidMethod, c"invalid request method"),
        (S::HttpInvalidHost, c"invalid host"),
        (S::HttpInvalidPath, c"invalid request path"),
        (S::HttpInvalidHeaderName, c"invalid header name"),
        (
            S::HttpInvalidHeaderValue,
            c"header value contains a control character",
        ),
        (
            S::HttpReservedHeader,
            c"header is set by the HTTP/1.1 writer itself",
        ),
        (
            S::HttpUnexpectedEof,
            c"connection closed before the response was complete",
        ),
        (
            S::HttpHeadTooLarge,
            c"response head does not fit in the buffer",
        ),
        (S::HttpBadHead, c"malformed response head"),
        (
            S::HttpBadFraming,
            c"invalid Content-Length or unsupported Transfer-Encoding",
        ),
        (
            S::HttpBodyTooLarge,
            c"response body does not fit in the buffer",
        ),
        (S::HttpBadChunk, c"malformed chunked body"),
    ];
    // The trace codes come from host-only entry points: the firmware
    // library keeps its size without their texts.
    #[cfg(feature = "std")]
    let traces = [
        (
            S::TraceDiverged,
            c"trace replayed: the machine differs from it (see the report)",
        ),
        (
            S::TraceInvalid,
            c"not a trace this build reads (see the report)",
        ),
    ];
    #[cfg(not(feature = "std"))]
    let traces: [(S, &core::ffi::CStr); 0] = [];
    all.iter()
        .chain(traces.iter())
        .find(|(s, _)| *s as i32 == status)
        .map_or(c"unknown status", |(_, t)| t)
}
