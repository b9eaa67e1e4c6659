//! HTTP/1.1 framing over `embedded-io`, for adapters that own a raw socket.
//!
//! The embassy adapter talks to the API through a bare TCP (or TLS) stream:
//! no HTTP client sits between it and the wire, so the core frames requests
//! and responses itself. Both halves are deliberately small and strict:
//!
//! - [`write_request`] writes one request with `Content-Length` framing and
//!   `Connection: close`, so a connection carries exactly one exchange and the
//!   response may be delimited by the server closing the stream. Every piece of
//!   caller data is validated before it reaches the wire (no header
//!   injection).
//! - [`read_response`] reads one response into a caller-provided buffer,
//!   without allocating: the head is parsed by `httparse`, the body is framed
//!   by `Content-Length`, `Transfer-Encoding: chunked` (decoded in place) or
//!   the end of the stream. Nothing is ever truncated: a response that does
//!   not fit is an error, never a shorter body.
//!
//! Each has an `async` twin over `embedded-io-async`
//! ([`write_request_async`], [`read_response_async`]). The framing logic
//! itself is sans-IO and shared: the blocking and async functions are thin
//! loops that move bytes between it and the stream.
//!
//! Memory: the request writer stages its head in a 128-byte stack buffer
//! ([`STAGING_LEN`]); the response reader keeps 32 `httparse` header slots
//! (about 512 bytes on a 32-bit target, 1 KiB on 64-bit) on the stack while a
//! head is parsed. The response buffer must hold the whole head plus the whole
//! (de-chunked) body.
//!
//! ```
//! use paywall_auth::codec::http1::{self, HeaderLine};
//!
//! // Write a request into a byte array (a socket in real use).
//! let mut out = [0u8; 256];
//! let mut w = &mut out[..];
//! let auth = HeaderLine { name: "Authorization", prefix: "Bearer ", value: "t0k3n" };
//! http1::write_request(&mut w, "POST", "api.example.com", "/auth/signout", [auth], b"")?;
//! let written = 256 - w.len();
//! assert_eq!(
//!     &out[..written],
//!     b"POST /auth/signout HTTP/1.1\r\n\
//!       Host: api.example.com\r\n\
//!       Authorization: Bearer t0k3n\r\n\
//!       Content-Length: 0\r\n\
//!       Connection: close\r\n\r\n"
//! );
//!
//! // Read a canned response (`&[u8]` implements `embedded_io::Read`).
//! let mut stream: &[u8] = b"HTTP/1.1 200 OK\r\n\
//!     Content-Type: application/json; charset=utf-8\r\n\
//!     Transfer-Encoding: chunked\r\n\r\n\
//!     4\r\n{\"ok\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n";
//! let mut buf = [0u8; 256];
//! let response = http1::read_response(&mut stream, &mut buf)?;
//! assert_eq!(response.status, 200);
//! assert_eq!(response.reason, "OK");
//! assert!(response.content_type_json);
//! assert_eq!(response.body, b"{\"ok\":1}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::convert::Infallible;
use core::fmt;
use core::ops::Range;

// ---------------------------------------------------------------------------
// Request writer
// ---------------------------------------------------------------------------

/// Size of the stack buffer in which [`write_request`] assembles the request
/// head before handing it to the writer.
///
/// The head is written in chunks of at most this many bytes, so a writer sees
/// a few medium-sized writes rather than one per header fragment; pieces at
/// least this long (a large body, a long token) are passed through without
/// being copied.
pub const STAGING_LEN: usize = 128;

/// One request header line.
///
/// The value is written as `prefix` followed by `value`, so a line such as
/// `Authorization: Bearer <token>` needs no buffer to concatenate the scheme
/// and the token. Use an empty `prefix` for a plain value.
///
/// `Debug` shows the length of `value`, not its bytes: it is often a token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HeaderLine<'a> {
    /// The field name, e.g. `Content-Type`. Must be an RFC 9110 token.
    pub name: &'a str,
    /// Written before `value`, e.g. `"Bearer "`; may be empty.
    pub prefix: &'a str,
    /// The field value (its tail after `prefix`).
    pub value: &'a str,
}

/// Why a request could not be written.
///
/// Every variant but [`Io`](Self::Io) is a caller bug caught before the
/// offending bytes reached the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Http1WriteError<E> {
    /// The writer failed.
    Io(E),
    /// The method is empty or not an RFC 9110 token.
    InvalidMethod,
    /// The host is empty or contains whitespace or a control character.
    InvalidHost,
    /// The path is empty or contains whitespace or a control character.
    InvalidPath,
    /// A header name is empty or not an RFC 9110 token.
    InvalidHeaderName,
    /// A header prefix or value contains CR, LF, NUL or another control
    /// character (tab excepted): written out, it could inject header lines.
    InvalidHeaderValue,
    /// A header tried to set `Host`, `Content-Length`, `Transfer-Encoding` or
    /// `Connection`, which the writer owns: a second copy would make the
    /// framing ambiguous.
    ReservedHeader,
}

impl fmt::Debug for HeaderLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderLine")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("value", &format_args!("<{} bytes>", self.value.len()))
            .finish()
    }
}

impl<E> Http1WriteError<E> {
    /// What went wrong, for the framing variants; `"I/O error"` for `Io`.
    const fn message(&self) -> &'static str {
        match self {
            Self::Io(_) => "I/O error",
            Self::InvalidMethod => "invalid request method",
            Self::InvalidHost => "invalid host",
            Self::InvalidPath => "invalid request path",
            Self::InvalidHeaderName => "invalid header name",
            Self::InvalidHeaderValue => "header value contains a control character",
            Self::ReservedHeader => "header is set by the HTTP/1.1 writer itself",
        }
    }
}

impl Http1WriteError<Infallible> {
    /// Widens a framing error of the sans-IO encoder to any writer's error.
    fn with_io<E>(self) -> Http1WriteError<E> {
        match self {
            Self::Io(never) => match never {},
            Self::InvalidMethod => Http1WriteError::InvalidMethod,
            Self::InvalidHost => Http1WriteError::InvalidHost,
            Self::InvalidPath => Http1WriteError::InvalidPath,
            Self::InvalidHeaderName => Http1WriteError::InvalidHeaderName,
            Self::InvalidHeaderValue => Http1WriteError::InvalidHeaderValue,
            Self::ReservedHeader => Http1WriteError::ReservedHeader,
        }
    }
}

impl<E: fmt::Display> fmt::Display for Http1WriteError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "I/O error while writing the request: {e}"),
            other => f.write_str(other.message()),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for Http1WriteError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(feature = "defmt")]
impl<E: embedded_io::Error> defmt::Format for Http1WriteError<E> {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Self::Io(e) => defmt::write!(f, "I/O error while writing the request: {}", e.kind()),
            other => defmt::write!(f, "{=str}", other.message()),
        }
    }
}

/// Writes one HTTP/1.1 request to `w`, then flushes it.
///
/// The bytes are `METHOD path HTTP/1.1`, `Host: host`, the `headers` in order,
/// `Content-Length: <body.len()>` (always, also `0`: a POST without a body
/// must still be delimited), `Connection: close`, the empty line and `body`.
/// Nothing else is added: a `Content-Type`, for instance, is sent only if it
/// is among `headers`.
///
/// The method, host and path are validated before anything is written; each
/// header is validated before its line is produced. A header error may
/// therefore surface after the beginning of the request was written: on any
/// error the connection is unusable and must be dropped.
///
/// # Errors
///
/// A framing variant of [`Http1WriteError`] if caller data is invalid (see its
/// variants), or [`Http1WriteError::Io`] if the writer fails.
pub fn write_request<'h, W: embedded_io::Write>(
    w: &mut W,
    method: &str,
    host: &str,
    path: &str,
    headers: impl IntoIterator<Item = HeaderLine<'h>>,
    body: &[u8],
) -> Result<(), Http1WriteError<W::Error>> {
    let mut encoder = RequestEncoder::new(method, host, path, headers.into_iter(), body)
        .map_err(Http1WriteError::with_io)?;
    loop {
        let chunk = encoder.next_chunk().map_err(Http1WriteError::with_io)?;
        if chunk.is_empty() {
            break;
        }
        w.write_all(chunk).map_err(Http1WriteError::Io)?;
    }
    w.flush().map_err(Http1WriteError::Io)
}

/// The `async` twin of [`write_request`], over `embedded_io_async::Write`;
/// same bytes, same validation, same contract.
///
/// # Errors
///
/// As [`write_request`].
pub async fn write_request_async<'h, W: embedded_io_async::Write>(
    w: &mut W,
    method: &str,
    host: &str,
    path: &str,
    headers: impl IntoIterator<Item = HeaderLine<'h>>,
    body: &[u8],
) -> Result<(), Http1WriteError<W::Error>> {
    let mut encoder = RequestEncoder::new(method, host, path, headers.into_iter(), body)
        .map_err(Http1WriteError::with_io)?;
    loop {
        let chunk = encoder.next_chunk().map_err(Http1WriteError::with_io)?;
        if chunk.is_empty() {
            break;
        }
        w.write_all(chunk).await.map_err(Http1WriteError::Io)?;
    }
    w.flush().await.map_err(Http1WriteError::Io)
}

/// The line of the request an encoder is producing.
#[derive(Clone, Copy, Debug)]
enum Line<'h> {
    /// `METHOD path HTTP/1.1` and `Host: host`.
    Start,
    /// One caller header.
    Header(HeaderLine<'h>),
    /// `Content-Length`, `Connection: close`, the empty line, then the body.
    Framing,
    /// Everything was produced.
    Done,
}

/// Most pieces a [`Line`] is made of.
const PIECES_PER_LINE: usize = 6;

/// The request as a sequence of byte pieces, one line at a time. (No
/// `Debug`: it holds tokens.)
struct RequestSource<'a, 'h, I> {
    method: &'a str,
    host: &'a str,
    path: &'a str,
    headers: I,
    body: &'a [u8],
    content_length: Decimal,
    line: Line<'h>,
}

impl<'h, I: Iterator<Item = HeaderLine<'h>>> RequestSource<'_, 'h, I> {
    /// The pieces of the current line, in order (unused slots are empty).
    fn pieces(&self) -> [&[u8]; PIECES_PER_LINE] {
        match self.line {
            Line::Start => [
                self.method.as_bytes(),
                b" ",
                self.path.as_bytes(),
                b" HTTP/1.1\r\nHost: ",
                self.host.as_bytes(),
                b"\r\n",
            ],
            Line::Header(h) => [
                h.name.as_bytes(),
                b": ",
                h.prefix.as_bytes(),
                h.value.as_bytes(),
                b"\r\n",
                b"",
            ],
            Line::Framing => [
                b"Content-Length: ",
                self.content_length.as_bytes(),
                b"\r\nConnection: close\r\n\r\n",
                self.body,
                b"",
                b"",
            ],
            Line::Done => [b""; PIECES_PER_LINE],
        }
    }

    /// Moves to the next line, validating it if it is a caller header;
    /// `Ok(false)` once the request is complete.
    fn next_line(&mut self) -> Result<bool, Http1WriteError<Infallible>> {
        self.line = match self.line {
            Line::Start | Line::Header(_) => match self.headers.next() {
                Some(header) => {
                    validate_header(&header)?;
                    Line::Header(header)
                }
                None => Line::Framing,
            },
            Line::Framing => Line::Done,
            Line::Done => return Ok(false),
        };
        Ok(true)
    }
}

/// Sans-IO request encoder: hands out the request in chunks, so the blocking
/// and async writers share every byte of formatting and validation. (No
/// `Debug`: it holds tokens.)
struct RequestEncoder<'a, 'h, I> {
    source: RequestSource<'a, 'h, I>,
    /// Index into `source.pieces()` of the piece being copied.
    piece: usize,
    /// Bytes of that piece already handed out.
    offset: usize,
    staging: [u8; STAGING_LEN],
}

impl<'a, 'h, I: Iterator<Item = HeaderLine<'h>>> RequestEncoder<'a, 'h, I> {
    fn new(
        method: &'a str,
        host: &'a str,
        path: &'a str,
        headers: I,
        body: &'a [u8],
    ) -> Result<Self, Http1WriteError<Infallible>> {
        if !is_token(method) {
            return Err(Http1WriteError::InvalidMethod);
        }
        if !is_visible(host) {
            return Err(Http1WriteError::InvalidHost);
        }
        if !is_visible(path) {
            return Err(Http1WriteError::InvalidPath);
        }
        Ok(Self {
            source: RequestSource {
                method,
                host,
                path,
                headers,
                body,
                content_length: Decimal::new(body.len()),
                line: Line::Start,
            },
            piece: 0,
            offset: 0,
            staging: [0; STAGING_LEN],
        })
    }

    /// The next bytes to write; empty once the whole request was handed out.
    fn next_chunk(&mut self) -> Result<&[u8], Http1WriteError<Infallible>> {
        let mut len = 0;
        // A piece long enough to be worth a write of its own is handed out
        // as is, without a copy: (index, offset) of its unwritten rest.
        let mut direct = None;
        while len < STAGING_LEN {
            if self.piece >= PIECES_PER_LINE {
                if !self.source.next_line()? {
                    break;
                }
                self.piece = 0;
                self.offset = 0;
                continue;
            }
            let piece = self
                .source
                .pieces()
                .get(self.piece)
                .copied()
                .unwrap_or_default();
            let rest = piece.get(self.offset..).unwrap_or_default();
            if rest.len() >= STAGING_LEN {
                if len == 0 {
                    direct = Some((self.piece, self.offset));
                    self.piece += 1;
                    self.offset = 0;
                }
                // Otherwise hand out what is staged; the piece goes next.
                break;
            }
            let space = self.staging.get_mut(len..).unwrap_or_default();
            let n = rest.len().min(space.len());
            if let (Some(dst), Some(src)) = (space.get_mut(..n), rest.get(..n)) {
                dst.copy_from_slice(src);
            }
            len += n;
            self.offset += n;
            if self.offset >= piece.len() {
                self.piece += 1;
                self.offset = 0;
            }
        }
        if let Some((piece, offset)) = direct {
            let pieces = self.source.pieces();
            return Ok(pieces
                .get(piece)
                .copied()
                .and_then(|p| p.get(offset..))
                .unwrap_or_default());
        }
        Ok(self.staging.get(..len).unwrap_or_default())
    }
}

/// A `usize` in decimal ASCII, without a buffer from the caller.
#[derive(Clone, Copy, Debug)]
struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    fn new(mut n: usize) -> Self {
        let mut digits = [b'0'; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            if let Some(d) = digits.get_mut(start) {
                // `n % 10 < 10`, so the cast is lossless.
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || start == 0 {
                break;
            }
        }
        Self { digits, start }
    }

    fn as_bytes(&self) -> &[u8] {
        self.digits.get(self.start..).unwrap_or_default()
    }
}

/// RFC 9110 `tchar`.
const fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
        | b'^' | b'_' | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// A non-empty RFC 9110 `token` (methods and field names).
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Non-empty, without space, DEL or any control character: what may stand
/// in the request line or the `Host` value.
fn is_visible(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b > b' ' && b != 0x7f)
}

/// Free of control characters other than horizontal tab: a field value that
/// cannot end its line early or smuggle a NUL.
pub(crate) fn is_field_text(s: &str) -> bool {
    s.bytes().all(|b| (b >= b' ' || b == b'\t') && b != 0x7f)
}

/// Fields the writer sets itself; a caller copy would contradict them.
const RESERVED: [&str; 4] = ["host", "content-length", "transfer-encoding", "connection"];

fn validate_header(h: &HeaderLine<'_>) -> Result<(), Http1WriteError<Infallible>> {
    if !is_token(h.name) {
        return Err(Http1WriteError::InvalidHeaderName);
    }
    if RESERVED.iter().any(|r| h.name.eq_ignore_ascii_case(r)) {
        return Err(Http1WriteError::ReservedHeader);
    }
    if !is_field_text(h.prefix) || !is_field_text(h.value) {
        return Err(Http1WriteError::InvalidHeaderValue);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Response reader
// ---------------------------------------------------------------------------

/// Number of header fields a response head may carry; more is
/// [`Http1ReadError::HeadTooLarge`].
pub const MAX_HEADERS: usize = 32;

/// How the body of a response is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BodyLength {
    /// Exactly this many bytes follow the head. Also used, with `0`, for the
    /// responses that never have a body: 1xx, 204 and 304.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`; wins over any `Content-Length`.
    Chunked,
    /// Neither header: the body ends when the server closes the connection.
    UntilClose,
}

/// A parsed response head: what the caller needs to act on a response and
/// what the reader needs to find the end of its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ResponseHead<'b> {
    /// The status code, e.g. `200`.
    pub status: u16,
    /// The reason phrase, e.g. `OK`; empty if absent or not valid text. Used
    /// as the error message when the body carries none.
    pub reason: &'b str,
    /// Whether a `Content-Type` contains `application/json`, compared without
    /// regard to ASCII case. The body is parsed as JSON only if it does,
    /// matching the reference client (docs/protocol.md §1.4).
    pub content_type_json: bool,
    /// How the body is delimited.
    pub body_len: BodyLength,
}

/// A complete response, borrowed from the buffer it was read into.
///
/// `Debug` and `defmt::Format` show the length of the body, not its bytes: it
/// often carries tokens.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Response<'b> {
    /// The final status code (interim 1xx responses are skipped).
    pub status: u16,
    /// See [`ResponseHead::content_type_json`].
    pub content_type_json: bool,
    /// The whole body, de-chunked; empty for 204 and 304.
    pub body: &'b [u8],
    /// See [`ResponseHead::reason`].
    pub reason: &'b str,
}

impl fmt::Debug for Response<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("content_type_json", &self.content_type_json)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .field("reason", &self.reason)
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Response<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Response {{ status: {=u16}, content_type_json: {=bool}, body: <{=usize} bytes>, reason: {=str} }}",
            self.status,
            self.content_type_json,
            self.body.len(),
            self.reason,
        );
    }
}

/// Why a response could not be read.
///
/// Every variant but [`Io`](Self::Io) means the connection is unusable: drop
/// it. None of them carries response bytes, so logging one leaks nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Http1ReadError<E> {
    /// The reader failed.
    Io(E),
    /// The connection was closed before the response was complete (before
    /// the end of the head, the `Content-Length` or the last chunk).
    UnexpectedEof,
    /// The head (status line and fields) does not fit in the buffer, or has
    /// more than [`MAX_HEADERS`] fields.
    HeadTooLarge,
    /// The head is not HTTP/1.x: garbage status line, malformed field, or an
    /// unrequested `101 Switching Protocols`.
    BadHead,
    /// The framing fields cannot be trusted: a `Content-Length` that is not a
    /// number or disagrees with another one, or a `Transfer-Encoding` other
    /// than `chunked` (nothing else is requested, so nothing else is decoded).
    BadFraming,
    /// The body does not fit in what the head left of the buffer. The body is
    /// never truncated.
    BodyTooLarge,
    /// The chunked body is malformed: a chunk size that is not hexadecimal or
    /// overflows, or a missing CRLF.
    BadChunk,
}

impl<E> Http1ReadError<E> {
    /// What went wrong, for the framing variants; `"I/O error"` for `Io`.
    const fn message(&self) -> &'static str {
        match self {
            Self::Io(_) => "I/O error",
            Self::UnexpectedEof => "connection closed before the response was complete",
            Self::HeadTooLarge => "response head does not fit in the buffer",
            Self::BadHead => "malformed response head",
            Self::BadFraming => "invalid Content-Length or unsupported Transfer-Encoding",
            Self::BodyTooLarge => "response body does not fit in the buffer",
            Self::BadChunk => "malformed chunked body",
        }
    }
}

impl Http1ReadError<Infallible> {
    /// Widens a framing error of the sans-IO decoder to any reader's error.
    fn with_io<E>(self) -> Http1ReadError<E> {
        match self {
            Self::Io(never) => match never {},
            Self::UnexpectedEof => Http1ReadError::UnexpectedEof,
            Self::HeadTooLarge => Http1ReadError::HeadTooLarge,
            Self::BadHead => Http1ReadError::BadHead,
            Self::BadFraming => Http1ReadError::BadFraming,
            Self::BodyTooLarge => Http1ReadError::BodyTooLarge,
            Self::BadChunk => Http1ReadError::BadChunk,
        }
    }
}

impl<E: fmt::Display> fmt::Display for Http1ReadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "I/O error while reading the response: {e}"),
            other => f.write_str(other.message()),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for Http1ReadError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(feature = "defmt")]
impl<E: embedded_io::Error> defmt::Format for Http1ReadError<E> {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Self::Io(e) => defmt::write!(f, "I/O error while reading the response: {}", e.kind()),
            other => defmt::write!(f, "{=str}", other.message()),
        }
    }
}

/// Parses a response head from the start of `buf`, without reading anything.
///
/// Returns `Ok(None)` while the head is incomplete, and `Ok(Some((head,
/// len)))` once it is, `len` being the length of the head (the body starts at
/// `buf[len]`). Interim 1xx heads are returned like any other; skipping them
/// is up to the caller ([`read_response`] does). Responses to `HEAD` requests
/// are not supported: their `Content-Length` would be taken as a body length.
///
/// # Errors
///
/// [`Http1ReadError::BadHead`], [`Http1ReadError::HeadTooLarge`] (more than
/// [`MAX_HEADERS`] fields) or [`Http1ReadError::BadFraming`].
pub fn parse_head(
    buf: &[u8],
) -> Result<Option<(ResponseHead<'_>, usize)>, Http1ReadError<Infallible>> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Http1ReadError::HeadTooLarge),
        Err(_) => return Err(Http1ReadError::BadHead),
    };
    let status = response.code.ok_or(Http1ReadError::BadHead)?;
    // Three digits are not enough: 0xx is not a status class (RFC 9110 §15).
    if status < 100 {
        return Err(Http1ReadError::BadHead);
    }
    let reason = response.reason.unwrap_or_default();

    let mut content_type_json = false;
    let mut chunked = Coding::Absent;
    let mut content_length = Ok(None);
    for field in response.headers.iter() {
        if field.name.eq_ignore_ascii_case("content-type") {
            content_type_json |= contains_ignore_ascii_case(field.value, b"application/json");
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = chunked.add(field.value);
        } else if field.name.eq_ignore_ascii_case("content-length") {
            content_length =
                content_length.and_then(|known| merge_content_length(known, field.value));
        }
    }

    let body_len = if matches!(status, 100..=199 | 204 | 304) {
        BodyLength::ContentLength(0)
    } else {
        match chunked {
            Coding::Chunked => BodyLength::Chunked,
            Coding::Unsupported => return Err(Http1ReadError::BadFraming),
            // Only without a Transfer-Encoding does Content-Length count
            // (RFC 9112 §6.3), malformed or not.
            Coding::Absent => match content_length {
                Ok(Some(n)) => BodyLength::ContentLength(n),
                Ok(None) => BodyLength::UntilClose,
                Err(()) => return Err(Http1ReadError::BadFraming),
            },
        }
    };
    Ok(Some((
        ResponseHead {
            status,
            reason,
            content_type_json,
            body_len,
        },
        len,
    )))
}

/// The transfer codings seen so far across `Transfer-Encoding` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coding {
    /// No `Transfer-Encoding` field.
    Absent,
    /// Exactly one coding overall, `chunked`.
    Chunked,
    /// Anything else: a coding we never asked for, `chunked` twice, or an
    /// empty list.
    Unsupported,
}

impl Coding {
    /// Folds in one `Transfer-Encoding` field value (a comma-separated list).
    fn add(self, value: &[u8]) -> Self {
        let mut codings = value
            .split(|&b| b == b',')
            .map(trim_ows)
            .filter(|c| !c.is_empty());
        match (self, codings.next(), codings.next()) {
            (Self::Absent, Some(only), None) if only.eq_ignore_ascii_case(b"chunked") => {
                Self::Chunked
            }
            _ => Self::Unsupported,
        }
    }
}

/// Folds one `Content-Length` field value (a comma-separated list, RFC 9110
/// §8.6) into the length known so far; every number must agree.
fn merge_content_length(mut known: Option<u64>, value: &[u8]) -> Result<Option<u64>, ()> {
    for item in value.split(|&b| b == b',').map(trim_ows) {
        let n = parse_decimal(item).ok_or(())?;
        if known.is_some_and(|k| k != n) {
            return Err(());
        }
        known = Some(n);
    }
    Ok(known)
}

/// A non-empty run of ASCII digits as a `u64`; `None` on anything else or on
/// overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let d = char::from(b).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// Strips optional whitespace (space, tab) from both ends.
fn trim_ows(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Reads one response from `r` into `buf` and returns it, borrowed from
/// `buf`.
///
/// Reads until the head is complete, skipping interim 1xx responses, then
/// until the body is: `Content-Length` bytes, the last chunk and trailer
/// section of a chunked body (de-chunked in place, extensions and trailer
/// fields ignored), or the end of the stream when neither is given. Bytes
/// received after the end of the body are ignored (the request said
/// `Connection: close`, so nothing else may follow); once the head is parsed,
/// no read asks for more than the rest of a `Content-Length` body.
///
/// `buf` must hold the head and the whole body; its contents on entry are
/// irrelevant, and after an error unspecified.
///
/// # Errors
///
/// [`Http1ReadError::Io`] if the reader fails, otherwise a framing variant:
/// see [`Http1ReadError`].
pub fn read_response<'b, R: embedded_io::Read>(
    r: &mut R,
    buf: &'b mut [u8],
) -> Result<Response<'b>, Http1ReadError<R::Error>> {
    let mut decoder = ResponseDecoder::new();
    let parts = loop {
        match decoder.poll(buf).map_err(Http1ReadError::with_io)? {
            Poll::Read(target) => {
                let n = r.read(target).map_err(Http1ReadError::Io)?;
                decoder.on_read(n).map_err(Http1ReadError::with_io)?;
            }
            Poll::Done(parts) => break parts,
        }
    };
    Ok(parts.resolve(buf))
}

/// The `async` twin of [`read_response`], over `embedded_io_async::Read`;
/// same framing, same contract.
///
/// # Errors
///
/// As [`read_response`].
pub async fn read_response_async<'b, R: embedded_io_async::Read>(
    r: &mut R,
    buf: &'b mut [u8],
) -> Result<Response<'b>, Http1ReadError<R::Error>> {
    let mut decoder = ResponseDecoder::new();
    let parts = loop {
        match decoder.poll(buf).map_err(Http1ReadError::with_io)? {
            Poll::Read(target) => {
                let n = r.read(target).await.map_err(Http1ReadError::Io)?;
                decoder.on_read(n).map_err(Http1ReadError::with_io)?;
            }
            Poll::Done(parts) => break parts,
        }
    };
    Ok(parts.resolve(buf))
}

/// What the response decoder needs next.
#[derive(Debug)]
enum Poll<'a> {
    /// Read into this (non-empty) slice, then report the count with
    /// [`ResponseDecoder::on_read`].
    Read(&'a mut [u8]),
    /// The response is complete.
    Done(Parts),
}

/// A complete response as positions in the buffer.
#[derive(Clone, Debug)]
struct Parts {
    status: u16,
    reason: Range<usize>,
    content_type_json: bool,
    body: Range<usize>,
}

impl Parts {
    fn resolve(self, buf: &[u8]) -> Response<'_> {
        let reason = buf
            .get(self.reason)
            .and_then(|r| core::str::from_utf8(r).ok());
        Response {
            status: self.status,
            content_type_json: self.content_type_json,
            body: buf.get(self.body).unwrap_or_default(),
            reason: reason.unwrap_or_default(),
        }
    }
}

/// The final head, once parsed, as positions in the buffer.
#[derive(Clone, Debug)]
struct Head {
    status: u16,
    reason: Range<usize>,
    content_type_json: bool,
    /// Where the body starts: right after the head.
    body_start: usize,
}

impl Head {
    fn done(&self, body_end: usize) -> Parts {
        Parts {
            status: self.status,
            reason: self.reason.clone(),
            content_type_json: self.content_type_json,
            body: self.body_start..body_end,
        }
    }
}

/// How the decoder finds the end of the body, in buffer terms.
#[derive(Clone, Copy, Debug)]
enum Framing {
    /// `Content-Length`: the body ends at this buffer index.
    Length { end: usize },
    /// Chunked: decoded in place until the last chunk.
    Chunked(Chunked),
    /// Delimited by the end of the stream.
    UntilClose,
}

#[derive(Clone, Debug)]
enum State {
    /// Waiting for the head; `buf[..scanned]` was already searched for a
    /// line end, so the head is re-parsed only when a new line arrives.
    Head { scanned: usize },
    /// Reading the body of the final response.
    Body(Head, Framing),
}

/// Sans-IO response decoder over a caller buffer: tells its driver where to
/// read, and when the response is complete.
#[derive(Debug)]
struct ResponseDecoder {
    state: State,
    /// `buf[..filled]` holds received bytes (for a chunked body: decoded
    /// bytes, then a gap, then raw bytes).
    filled: usize,
    /// Length of the slice last handed out to read into.
    requested: usize,
    /// The last read went to `probe` rather than the buffer.
    probing: bool,
    /// The reader reported the end of the stream.
    eof: bool,
    /// Where to read when the buffer is full but a body delimited by the
    /// end of the stream may still be complete: one more byte means it was
    /// not.
    probe: [u8; 1],
}

/// `poll`'s answer before it is turned into a borrowed slice.
enum Next {
    Read(Range<usize>),
    Probe,
    Done(Parts),
}

impl ResponseDecoder {
    const fn new() -> Self {
        Self {
            state: State::Head { scanned: 0 },
            filled: 0,
            requested: 0,
            probing: false,
            eof: false,
            probe: [0],
        }
    }

    /// Makes all the progress `buf[..filled]` allows, then says what to do.
    fn poll<'a>(&'a mut self, buf: &'a mut [u8]) -> Result<Poll<'a>, Http1ReadError<Infallible>> {
        match self.advance(buf)? {
            Next::Done(parts) => Ok(Poll::Done(parts)),
            Next::Probe => {
                self.probing = true;
                self.requested = self.probe.len();
                Ok(Poll::Read(&mut self.probe))
            }
            Next::Read(range) => {
                self.probing = false;
                self.requested = range.len();
                match buf.get_mut(range) {
                    Some(target) if !target.is_empty() => Ok(Poll::Read(target)),
                    // Unreachable by construction; never hand out an empty
                    // slice, whose `Ok(0)` would read as end of stream.
                    _ => Err(Http1ReadError::BodyTooLarge),
                }
            }
        }
    }

    /// Records that the last read returned `n` bytes (`0`: end of stream).
    fn on_read(&mut self, n: usize) -> Result<(), Http1ReadError<Infallible>> {
        if n == 0 {
            self.eof = true;
        } else if self.probing {
            return Err(Http1ReadError::BodyTooLarge);
        } else {
            // A reader claiming more than it was given is clamped, not trusted.
            self.filled = self.filled.saturating_add(n.min(self.requested));
        }
        Ok(())
    }

    fn advance(&mut self, buf: &mut [u8]) -> Result<Next, Http1ReadError<Infallible>> {
        let cap = buf.len();
        loop {
            match &mut self.state {
                State::Head { scanned } => {
                    let data = buf.get(..self.filled).unwrap_or_default();
                    let new_line = data.get(*scanned..).unwrap_or_default().contains(&b'\n');
                    *scanned = self.filled;
                    if new_line || self.eof || self.filled >= cap {
                        let parsed = parse_head(data)?.map(|(head, len)| {
                            let reason =
                                subslice_range(data, head.reason.as_bytes()).unwrap_or(0..0);
                            let content_type_json = head.content_type_json;
                            (
                                Head {
                                    status: head.status,
                                    reason,
                                    content_type_json,
                                    body_start: len,
                                },
                                head.body_len,
                            )
                        });
                        if let Some((head, body_len)) = parsed {
                            self.on_head(buf, head, body_len)?;
                            continue;
                        }
                    }
                    if self.eof {
                        return Err(Http1ReadError::UnexpectedEof);
                    }
                    if self.filled >= cap {
                        return Err(Http1ReadError::HeadTooLarge);
                    }
                    return Ok(Next::Read(self.filled..cap));
                }
                State::Body(head, Framing::Length { end }) => {
                    if self.filled >= *end {
                        return Ok(Next::Done(head.done(*end)));
                    }
                    if self.eof {
                        return Err(Http1ReadError::UnexpectedEof);
                    }
                    return Ok(Next::Read(self.filled..*end));
                }
                State::Body(head, Framing::UntilClose) => {
                    if self.eof {
                        return Ok(Next::Done(head.done(self.filled)));
                    }
                    if self.filled >= cap {
                        return Ok(Next::Probe);
                    }
                    return Ok(Next::Read(self.filled..cap));
                }
                State::Body(head, Framing::Chunked(chunked)) => {
                    if chunked.decode(buf, self.filled)? {
                        return Ok(Next::Done(head.done(chunked.out)));
                    }
                    if self.eof {
                        return Err(Http1ReadError::UnexpectedEof);
                    }
                    if self.filled >= cap {
                        // Reclaim the gap between decoded and raw bytes
                        // (`out <= raw <= filled` always holds).
                        move_down(buf, chunked.out, chunked.raw, self.filled);
                        self.filled -= chunked.raw - chunked.out;
                        chunked.raw = chunked.out;
                    }
                    if self.filled >= cap {
                        return Err(Http1ReadError::BodyTooLarge);
                    }
                    return Ok(Next::Read(self.filled..cap));
                }
            }
        }
    }

    /// Acts on a complete head occupying `buf[..head.body_start]`.
    fn on_head(
        &mut self,
        buf: &mut [u8],
        head: Head,
        body_len: BodyLength,
    ) -> Result<(), Http1ReadError<Infallible>> {
        let len = head.body_start;
        match head.status {
            101 => return Err(Http1ReadError::BadHead),
            100..=199 => {
                // Interim: drop it, keep whatever followed.
                move_down(buf, 0, len, self.filled);
                self.filled = self.filled.saturating_sub(len);
                self.state = State::Head { scanned: 0 };
                return Ok(());
            }
            _ => {}
        }
        let framing = match body_len {
            BodyLength::ContentLength(n) => {
                let end = usize::try_from(n).ok().and_then(|n| len.checked_add(n));
                match end {
                    Some(end) if end <= buf.len() => Framing::Length { end },
                    _ => return Err(Http1ReadError::BodyTooLarge),
                }
            }
            BodyLength::Chunked => Framing::Chunked(Chunked {
                out: len,
                raw: len,
                step: ChunkStep::Size,
            }),
            BodyLength::UntilClose => Framing::UntilClose,
        };
        self.state = State::Body(head, framing);
        Ok(())
    }
}

/// Push-style twin of [`read_response`], for hosts that receive bytes in
/// callbacks rather than through a reader (a C host over the FFI, an event
/// loop): [`feed`](Self::feed) what arrives, [`finish`](Self::finish) when
/// the peer closes, then take the [`response`](Self::response). Same framing
/// and errors as [`read_response`], on the same decoder.
///
/// Every call must pass the same `buf`, unmodified in between: the parser
/// keeps positions in it, not a borrow (so it can live in memory the caller
/// owns). A different buffer yields a wrong response or an error, never a
/// panic.
#[derive(Debug)]
pub struct ResponseParser {
    decoder: ResponseDecoder,
    done: Option<Parts>,
}

impl Default for ResponseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseParser {
    /// A parser waiting for the first byte of a response.
    pub const fn new() -> Self {
        Self {
            decoder: ResponseDecoder::new(),
            done: None,
        }
    }

    /// Appends `data`, received from the peer, to the response in `buf`.
    /// Returns `Ok(true)` once the response is complete; bytes after its end
    /// are ignored, as [`read_response`] ignores them.
    ///
    /// # Errors
    ///
    /// A framing variant of [`Http1ReadError`]; the parser is then unusable.
    pub fn feed(
        &mut self,
        buf: &mut [u8],
        mut data: &[u8],
    ) -> Result<bool, Http1ReadError<Infallible>> {
        loop {
            if self.done.is_some() {
                return Ok(true);
            }
            match self.decoder.poll(buf)? {
                Poll::Done(parts) => self.done = Some(parts),
                Poll::Read(_) if data.is_empty() => return Ok(false),
                Poll::Read(target) => {
                    let n = target.len().min(data.len());
                    let (now, rest) = data.split_at(n);
                    if let Some(target) = target.get_mut(..n) {
                        target.copy_from_slice(now);
                    }
                    data = rest;
                    self.decoder.on_read(n)?;
                }
            }
        }
    }

    /// The peer closed the stream: completes a body delimited by the end of
    /// the stream, or reports the response as cut short.
    ///
    /// # Errors
    ///
    /// [`Http1ReadError::UnexpectedEof`] if the response was incomplete, or
    /// another framing variant.
    pub fn finish(&mut self, buf: &mut [u8]) -> Result<(), Http1ReadError<Infallible>> {
        if self.done.is_some() {
            return Ok(());
        }
        self.decoder.on_read(0)?;
        match self.decoder.poll(buf)? {
            Poll::Done(parts) => {
                self.done = Some(parts);
                Ok(())
            }
            Poll::Read(_) => Err(Http1ReadError::UnexpectedEof),
        }
    }

    /// The complete response, borrowed from `buf`; `None` until
    /// [`feed`](Self::feed) returned `true` or [`finish`](Self::finish)
    /// succeeded.
    pub fn response<'b>(&self, buf: &'b [u8]) -> Option<Response<'b>> {
        self.done.clone().map(|parts| parts.resolve(buf))
    }
}

/// Where `inner` lies in `outer`, if it is a subslice of it.
fn subslice_range(outer: &[u8], inner: &[u8]) -> Option<Range<usize>> {
    let start = inner.as_ptr().addr().checked_sub(outer.as_ptr().addr())?;
    let end = start.checked_add(inner.len())?;
    (end <= outer.len()).then_some(start..end)
}

/// Moves `buf[from..to]` down to start at `dest` (`dest <= from`). Arguments
/// out of range move nothing: callers uphold them, and a bug must not panic.
fn move_down(buf: &mut [u8], dest: usize, from: usize, to: usize) {
    if let (Some(window), Some(offset)) = (buf.get_mut(dest..to), from.checked_sub(dest))
        && offset <= window.len()
    {
        window.copy_within(offset.., 0);
    }
}

/// Where a chunked body decoder stands in the chunk grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkStep {
    /// Expecting `chunk-size [ chunk-ext ] CRLF`.
    Size,
    /// Inside chunk data, this many bytes to go.
    Data(usize),
    /// Expecting the CRLF that ends chunk data.
    DataEnd,
    /// After the last chunk: trailer fields until an empty line.
    Trailer,
}

/// In-place chunked decoder: decoded bytes are moved down to `buf[..out]`,
/// raw bytes wait in `buf[raw..filled]` (`out <= raw`).
#[derive(Clone, Copy, Debug)]
struct Chunked {
    out: usize,
    raw: usize,
    step: ChunkStep,
}

impl Chunked {
    /// Consumes what `buf[raw..filled]` allows; `Ok(true)` once the body is
    /// complete.
    fn decode(
        &mut self,
        buf: &mut [u8],
        filled: usize,
    ) -> Result<bool, Http1ReadError<Infallible>> {
        loop {
            let pending = buf.get(self.raw..filled).unwrap_or_default();
            match self.step {
                ChunkStep::Size => {
                    let Some(line) = crlf_line(pending)? else {
                        return Ok(false);
                    };
                    let size = parse_chunk_size(line).ok_or(Http1ReadError::BadChunk)?;
                    self.raw += line.len() + 2;
                    self.step = if size == 0 {
                        ChunkStep::Trailer
                    } else {
                        let size =
                            usize::try_from(size).map_err(|_| Http1ReadError::BodyTooLarge)?;
                        if self.out.checked_add(size).is_none_or(|end| end > buf.len()) {
                            return Err(Http1ReadError::BodyTooLarge);
                        }
                        ChunkStep::Data(size)
                    };
                }
                ChunkStep::Data(remaining) => {
                    let take = remaining.min(pending.len());
                    if take == 0 {
                        return Ok(false);
                    }
                    move_down(buf, self.out, self.raw, self.raw + take);
                    self.out += take;
                    self.raw += take;
                    self.step = match remaining - take {
                        0 => ChunkStep::DataEnd,
                        left => ChunkStep::Data(left),
                    };
                }
                ChunkStep::DataEnd => match pending {
                    [] | [b'\r'] => return Ok(false),
                    [b'\r', b'\n', ..] => {
                        self.raw += 2;
                        self.step = ChunkStep::Size;
                    }
                    _ => return Err(Http1ReadError::BadChunk),
                },
                ChunkStep::Trailer => {
                    let Some(line) = crlf_line(pending)? else {
                        return Ok(false);
                    };
                    self.raw += line.len() + 2;
                    if line.is_empty() {
                        return Ok(true);
                    }
                }
            }
        }
    }
}

/// The first CRLF-terminated line of `pending`, without its CRLF; `None`
/// while no LF has arrived; an error if the LF is not preceded by CR.
fn crlf_line(pending: &[u8]) -> Result<Option<&[u8]>, Http1ReadError<Infallible>> {
    let Some(lf) = pending.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    match pending.get(..lf).and_then(|line| line.split_last()) {
        Some((b'\r', line)) => Ok(Some(line)),
        _ => Err(Http1ReadError::BadChunk),
    }
}

/// `chunk-size [ BWS ";" chunk-ext ]` → the size; `None` if malformed or
/// larger than `u64`.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let (hex, rest) = line.split_at_checked(digits)?;
    if hex.is_empty() {
        return None;
    }
    let size = hex.iter().try_fold(0u64, |acc, &b| {
        let d = char::from(b).to_digit(16)?;
        acc.checked_mul(16)?.checked_add(u64::from(d))
    })?;
    match trim_ows(rest).split_first() {
        None => Some(size),
        // Extensions are ignored, but a stray CR or NUL is not an extension.
        Some((b';', ext)) if !ext.iter().any(|&b| b == b'\r' || b == 0) => Some(size),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    extern crate std;

    use super::*;
    use core::future::Future;
    use core::pin::pin;
    use core::task::{Context, Waker};
    use embedded_io::{ErrorKind, ErrorType};
    use std::string::String;
    use std::vec::Vec;

    use proptest::prelude::*;

    #[test]
    fn push_parser_matches_read_response_on_every_split() {
        let wire: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
            Transfer-Encoding: chunked\r\n\r\n4\r\n{\"ok\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n";
        for split in 0..=wire.len() {
            let mut buf = [0u8; 256];
            let mut p = ResponseParser::new();
            let (a, b) = wire.split_at(split);
            let first = p.feed(&mut buf, a).unwrap();
            assert!(!first || split == wire.len());
            assert!(p.feed(&mut buf, b).unwrap());
            let r = p.response(&buf).unwrap();
            assert_eq!((r.status, r.reason, r.content_type_json), (200, "OK", true));
            assert_eq!(r.body, b"{\"ok\":1}");
        }
        // Delimited by close: complete only at `finish`.
        let mut buf = [0u8; 64];
        let mut p = ResponseParser::new();
        assert!(!p.feed(&mut buf, b"HTTP/1.1 500 Oops\r\n\r\nbody").unwrap());
        assert!(p.response(&buf).is_none());
        p.finish(&mut buf).unwrap();
        assert_eq!(p.response(&buf).unwrap().body, b"body");
        // Cut short, and too large.
        let mut p = ResponseParser::new();
        p.feed(&mut buf, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab")
            .unwrap();
        assert_eq!(p.finish(&mut buf), Err(Http1ReadError::UnexpectedEof));
        let mut small = [0u8; 48];
        let mut p = ResponseParser::new();
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 90\r\n\r\n";
        assert_eq!(p.feed(&mut small, big), Err(Http1ReadError::BodyTooLarge));
    }

    // -- helpers ----------------------------------------------------------

    /// Drives a future that never waits on anything external to completion.
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let core::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
        }
    }

    /// A stream that hands out its data in pieces of the given sizes, in
    /// turn, to exercise every split of the input.
    struct Trickle<'d> {
        data: &'d [u8],
        sizes: &'static [usize],
        turn: usize,
    }

    impl<'d> Trickle<'d> {
        fn new(data: &'d [u8], sizes: &'static [usize]) -> Self {
            Self {
                data,
                sizes,
                turn: 0,
            }
        }

        fn take(&mut self, buf: &mut [u8]) -> usize {
            let size = self.sizes[self.turn % self.sizes.len()];
            self.turn += 1;
            let n = size.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            n
        }
    }

    impl ErrorType for Trickle<'_> {
        type Error = Infallible;
    }

    impl embedded_io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
            Ok(self.take(buf))
        }
    }

    impl embedded_io_async::Read for Trickle<'_> {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
            Ok(self.take(buf))
        }
    }

    /// A stream whose reads and writes fail.
    struct Broken;

    impl ErrorType for Broken {
        type Error = ErrorKind;
    }

    impl embedded_io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> Result<usize, ErrorKind> {
            Err(ErrorKind::ConnectionReset)
        }
    }

    impl embedded_io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> Result<usize, ErrorKind> {
            Err(ErrorKind::BrokenPipe)
        }
        fn flush(&mut self) -> Result<(), ErrorKind> {
            Ok(())
        }
    }

    /// A writer that records each `write` call separately.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushed: bool,
    }

    impl ErrorType for Recorder {
        type Error = Infallible;
    }

    impl embedded_io::Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
            self.writes.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> Result<(), Infallible> {
            self.flushed = true;
            Ok(())
        }
    }

    impl embedded_io_async::Write for Recorder {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
            self.writes.push(buf.to_vec());
            Ok(buf.len())
        }
        async fn flush(&mut self) -> Result<(), Infallible> {
            self.flushed = true;
            Ok(())
        }
    }

    fn header<'a>(name: &'a str, value: &'a str) -> HeaderLine<'a> {
        HeaderLine {
            name,
            prefix: "",
            value,
        }
    }

    /// Writes a request into a fixed `&mut [u8]` and returns what was
    /// written.
    fn request_bytes(
        method: &str,
        path: &str,
        headers: &[HeaderLine<'_>],
        body: &[u8],
    ) -> Result<Vec<u8>, Http1WriteError<embedded_io::SliceWriteError>> {
        let mut out = [0u8; 4096];
        let mut w = &mut out[..];
        write_request(
            &mut w,
            method,
            "api.example.com",
            path,
            headers.iter().copied(),
            body,
        )?;
        let written = 4096 - w.len();
        Ok(out[..written].to_vec())
    }

    type ReadResult = Result<(u16, bool, Vec<u8>, String), Http1ReadError<Infallible>>;

    /// Reads `wire` with every piece-size pattern and both twins, checks they
    /// all agree, and returns the common outcome.
    fn read_all_ways(wire: &[u8], buf_len: usize) -> ReadResult {
        let owned = |r: Result<Response<'_>, Http1ReadError<Infallible>>| {
            r.map(|r| {
                (
                    r.status,
                    r.content_type_json,
                    r.body.to_vec(),
                    String::from(r.reason),
                )
            })
        };
        let mut buf = std::vec![0u8; buf_len];
        let mut whole = wire;
        let expected = owned(read_response(&mut whole, &mut buf));
        for sizes in [&[1][..], &[3], &[1, 3], &[2, 7, 5]] {
            let mut buf = std::vec![0u8; buf_len];
            let got = owned(read_response(&mut Trickle::new(wire, sizes), &mut buf));
            assert_eq!(got, expected, "blocking, pieces of {sizes:?}");
            let mut buf = std::vec![0u8; buf_len];
            let got = owned(block_on(read_response_async(
                &mut Trickle::new(wire, sizes),
                &mut buf,
            )));
            assert_eq!(got, expected, "async, pieces of {sizes:?}");
        }
        expected
    }

    fn read_ok(wire: &[u8]) -> (u16, bool, Vec<u8>, String) {
        read_all_ways(wire, 512).unwrap()
    }

    fn read_err(wire: &[u8], buf_len: usize) -> Http1ReadError<Infallible> {
        read_all_ways(wire, buf_len).unwrap_err()
    }

    /// Chunk-encodes `body` with the given chunk sizes (cycled).
    fn chunk(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        let mut turn = 0;
        while !rest.is_empty() {
            let n = sizes[turn % sizes.len()].clamp(1, rest.len());
            turn += 1;
            out.extend_from_slice(std::format!("{n:x}\r\n").as_bytes());
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    // -- request writer ---------------------------------------------------

    #[test]
    fn post_with_body() {
        let body = br#"{"email":"a@b.c"}"#;
        let headers = [
            header("Accept", "application/json"),
            header("Content-Type", "application/json"),
            HeaderLine {
                name: "Authorization",
                prefix: "Bearer ",
                value: "abc.def",
            },
        ];
        let bytes = request_bytes("POST", "/auth/resend", &headers, body).unwrap();
        assert_eq!(
            bytes,
            b"POST /auth/resend HTTP/1.1\r\n\
              Host: api.example.com\r\n\
              Accept: application/json\r\n\
              Content-Type: application/json\r\n\
              Authorization: Bearer abc.def\r\n\
              Content-Length: 17\r\n\
              Connection: close\r\n\
              \r\n\
              {\"email\":\"a@b.c\"}"
        );
    }

    #[test]
    fn post_without_body_sends_content_length_zero_and_no_content_type() {
        let bytes = request_bytes(
            "POST",
            "/auth/signout",
            &[header("Accept", "application/json")],
            b"",
        )
        .unwrap();
        assert_eq!(
            bytes,
            b"POST /auth/signout HTTP/1.1\r\n\
              Host: api.example.com\r\n\
              Accept: application/json\r\n\
              Content-Length: 0\r\n\
              Connection: close\r\n\
              \r\n"
        );
    }

    #[test]
    fn get_without_headers() {
        let bytes = request_bytes("GET", "/auth/me?x=1", &[], b"").unwrap();
        assert_eq!(
            bytes,
            b"GET /auth/me?x=1 HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn long_pieces_are_chunked_and_passed_through() {
        let token = "t".repeat(300);
        let body = [b'x'; 1000];
        let auth = HeaderLine {
            name: "Authorization",
            prefix: "Bearer ",
            value: &token,
        };
        let mut rec = Recorder::default();
        write_request(&mut rec, "POST", "h", "/p", [auth], &body).unwrap();
        assert!(rec.flushed);
        assert!(rec.writes.iter().all(|w| !w.is_empty()));
        // The 1000-byte body goes out as one write, without a copy.
        assert!(rec.writes.iter().any(|w| w.len() == 1000));
        let joined: Vec<u8> = rec.writes.concat();
        let mut expected = std::format!(
            "POST /p HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token}\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        expected.extend_from_slice(&body);
        assert_eq!(joined, expected);
        let mut slice_out = std::vec![0u8; 4096];
        let mut w = &mut slice_out[..];
        write_request(&mut w, "POST", "h", "/p", [auth], &body).unwrap();
        let written = 4096 - w.len();
        assert_eq!(&slice_out[..written], &expected[..]);
    }

    #[test]
    fn async_writer_writes_the_same_bytes() {
        let headers = [
            header("Content-Type", "application/json"),
            header("X-Paywall-Id", "pw_1"),
        ];
        let body = b"{}";
        let blocking = request_bytes("POST", "/auth/anonymous", &headers, body).unwrap();
        let mut rec = Recorder::default();
        block_on(write_request_async(
            &mut rec,
            "POST",
            "api.example.com",
            "/auth/anonymous",
            headers,
            body,
        ))
        .unwrap();
        assert!(rec.flushed);
        assert_eq!(rec.writes.concat(), blocking);
    }

    #[test]
    fn header_injection_is_rejected() {
        use Http1WriteError as E;
        let cases: [(&str, &str, HeaderLine<'_>, E<_>); 12] = [
            (
                "GET",
                "/",
                header("X-A", "ok\r\nX-Evil: 1"),
                E::InvalidHeaderValue,
            ),
            (
                "GET",
                "/",
                header("X-A", "ok\nX-Evil: 1"),
                E::InvalidHeaderValue,
            ),
            ("GET", "/", header("X-A", "ok\rX"), E::InvalidHeaderValue),
            ("GET", "/", header("X-A", "nul\0"), E::InvalidHeaderValue),
            (
                "GET",
                "/",
                HeaderLine {
                    name: "X-A",
                    prefix: "Bearer\r\n",
                    value: "t",
                },
                E::InvalidHeaderValue,
            ),
            (
                "GET",
                "/",
                header("X-A\r\nX-Evil", "1"),
                E::InvalidHeaderName,
            ),
            ("GET", "/", header("X A", "1"), E::InvalidHeaderName),
            ("GET", "/", header("", "1"), E::InvalidHeaderName),
            ("GET", "/", header("content-length", "5"), E::ReservedHeader),
            (
                "GET",
                "/",
                header("Transfer-Encoding", "chunked"),
                E::ReservedHeader,
            ),
            ("GET", "/a\r\nX: 1", header("X-A", "1"), E::InvalidPath),
            ("GE T", "/", header("X-A", "1"), E::InvalidMethod),
        ];
        for (method, path, h, expected) in cases {
            let got = request_bytes(method, path, &[h], b"").unwrap_err();
            assert_eq!(got, expected, "{method:?} {path:?} {h:?}");
        }
        let mut out = [0u8; 256];
        let mut w = &mut out[..];
        let got = write_request(&mut w, "GET", "h\r\nX: 1", "/", [], b"").unwrap_err();
        assert_eq!(got, E::InvalidHost);
        assert_eq!(
            w.len(),
            256,
            "nothing is written for an invalid request line"
        );
        assert_eq!(
            request_bytes("GET", "", &[], b"").unwrap_err(),
            E::InvalidPath
        );
        // A tab is fine in a value.
        assert!(request_bytes("GET", "/", &[header("X-A", "a\tb")], b"").is_ok());
    }

    #[test]
    fn writer_io_errors_and_messages() {
        let got = write_request(&mut Broken, "GET", "h", "/", [], b"").unwrap_err();
        assert_eq!(got, Http1WriteError::Io(ErrorKind::BrokenPipe));
        assert_eq!(
            std::format!("{got}"),
            "I/O error while writing the request: BrokenPipe"
        );
        let mut small = [0u8; 10];
        let mut w = &mut small[..];
        let got = write_request(&mut w, "GET", "h", "/", [], b"").unwrap_err();
        assert_eq!(got, Http1WriteError::Io(embedded_io::SliceWriteError::Full));
        let got: Http1WriteError<Infallible> = Http1WriteError::ReservedHeader;
        assert_eq!(
            std::format!("{got}"),
            "header is set by the HTTP/1.1 writer itself"
        );
    }

    #[test]
    fn debug_output_redacts_tokens_and_bodies() {
        let auth = HeaderLine {
            name: "Authorization",
            prefix: "Bearer ",
            value: "s3cr3t",
        };
        let shown = std::format!("{auth:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<6 bytes>"), "{shown}");
        let response = Response {
            status: 200,
            content_type_json: true,
            body: b"{\"access_token\":\"s3cr3t\"}",
            reason: "OK",
        };
        let shown = std::format!("{response:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<25 bytes>"), "{shown}");
    }

    #[test]
    fn decimal_formats_edge_values() {
        for n in [0, 1, 9, 10, 99, 100, 12345, usize::MAX] {
            assert_eq!(Decimal::new(n).as_bytes(), std::format!("{n}").as_bytes());
        }
    }

    // -- response reader --------------------------------------------------

    #[test]
    fn content_length_body() {
        let wire = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"id\":\"u1\"}";
        let (status, json, body, reason) = read_ok(wire);
        assert_eq!(
            (status, json, &body[..], &reason[..]),
            (201, true, &b"{\"id\":\"u1\"}"[..], "Created")
        );
    }

    #[test]
    fn bytes_after_the_body_are_ignored() {
        assert_eq!(
            read_ok(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokTRAILING").2,
            b"ok"
        );
        let wire =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nTRAILING";
        assert_eq!(read_ok(wire).2, b"ok");
    }

    #[test]
    fn content_length_body_is_not_over_read() {
        // Once the head is parsed, reads stop at the end of the body.
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokTRAILING";
        let mut stream = Trickle::new(wire, &[1]);
        let mut buf = [0u8; 128];
        assert_eq!(read_response(&mut stream, &mut buf).unwrap().body, b"ok");
        assert_eq!(stream.data, b"TRAILING");
    }

    #[test]
    fn content_length_zero_and_no_body_statuses() {
        assert_eq!(
            read_ok(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").2,
            b""
        );
        // 204 and 304 have no body whatever the headers say, and do not wait
        // for the connection to close.
        let (status, _, body, _) = read_ok(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!((status, &body[..]), (204, &b""[..]));
        assert_eq!(
            read_ok(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n").2,
            b""
        );
    }

    #[test]
    fn repeated_and_listed_content_length() {
        assert_eq!(
            read_ok(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\ncontent-length: 3\r\n\r\nabc").2,
            b"abc"
        );
        assert_eq!(
            read_err(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
                512
            ),
            Http1ReadError::BadFraming
        );
        assert_eq!(
            read_err(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 512),
            Http1ReadError::BadFraming
        );
        assert_eq!(
            read_err(b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", 512),
            Http1ReadError::BadFraming
        );
        assert_eq!(
            read_err(
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                512
            ),
            Http1ReadError::BadFraming
        );
        // Within u64 but beyond the buffer: too large, never truncated.
        assert_eq!(
            read_err(
                b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n",
                512
            ),
            Http1ReadError::BodyTooLarge
        );
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let wire = b"HTTP/1.1 200 OK\r\n\
            Content-Type: application/json\r\n\
            Transfer-Encoding: chunked\r\n\r\n\
            5;name=value\r\n{\"a\":\r\n\
            A ; x=\"y;z\"\r\n\"01234567\"\r\n\
            1\r\n}\r\n\
            0;last\r\n\
            Expires: never\r\n\
            X-Trailer: 1\r\n\r\n";
        let (status, json, body, _) = read_ok(wire);
        assert_eq!(
            (status, json, &body[..]),
            (200, true, &b"{\"a\":\"01234567\"}"[..])
        );
    }

    #[test]
    fn chunked_wins_over_content_length() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(read_ok(wire).2, b"abc");
        // Even a malformed Content-Length is ignored next to chunked.
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(read_ok(wire).2, b"");
    }

    #[test]
    fn unsupported_transfer_codings() {
        for te in ["gzip", "gzip, chunked", "chunked, chunked", ""] {
            let wire = std::format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n");
            assert_eq!(
                read_err(wire.as_bytes(), 512),
                Http1ReadError::BadFraming,
                "{te:?}"
            );
        }
        let wire =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(read_err(wire, 512), Http1ReadError::BadFraming);
    }

    #[test]
    fn chunked_body_filling_the_buffer_exactly() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let body: Vec<u8> = (0..200u8).collect();
        let mut wire = head.to_vec();
        wire.extend(chunk(&body, &[7, 50, 1]));
        // Raw chunked bytes are longer than the buffer; the decoded body fits
        // exactly thanks to in-place compaction.
        let buf_len = head.len() + body.len() + b"0\r\n\r\n".len();
        assert!(wire.len() > buf_len);
        assert_eq!(read_all_ways(&wire, buf_len).unwrap().2, body);
        assert_eq!(
            read_err(&wire, head.len() + body.len() - 1),
            Http1ReadError::BodyTooLarge
        );
    }

    #[test]
    fn until_close_body() {
        let (status, json, body, reason) =
            read_ok(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello\r\nworld");
        assert_eq!(
            (status, json, &body[..], &reason[..]),
            (200, false, &b"hello\r\nworld"[..], "OK")
        );
    }

    #[test]
    fn until_close_body_filling_the_buffer() {
        let wire = b"HTTP/1.1 200 OK\r\n\r\n0123456789";
        assert_eq!(read_all_ways(wire, wire.len()).unwrap().2, b"0123456789");
        assert_eq!(read_err(wire, wire.len() - 1), Http1ReadError::BodyTooLarge);
    }

    #[test]
    fn interim_responses_are_skipped() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\n\
            HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
            HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let (status, _, body, reason) = read_ok(wire);
        assert_eq!((status, &body[..], &reason[..]), (200, &b"{}"[..], "OK"));
        // The buffer must hold one head at a time, not all of them.
        assert_eq!(read_all_ways(wire, 42).unwrap().0, 200);
        assert_eq!(
            read_err(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
                512
            ),
            Http1ReadError::BadHead
        );
        assert_eq!(
            read_err(b"HTTP/1.1 100 Continue\r\n\r\n", 512),
            Http1ReadError::UnexpectedEof
        );
    }

    #[test]
    fn garbage_status_lines() {
        for wire in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 099 Early\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
            b"\x00\x01\x02",
        ] {
            assert_eq!(read_err(wire, 512), Http1ReadError::BadHead, "{wire:?}");
        }
    }

    #[test]
    fn head_too_large() {
        let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
        wire.extend(std::iter::repeat_n(b"X-Filler: aaaaaaaaaaaaaaaaaaaa\r\n", 20).flatten());
        wire.extend(b"Content-Length: 0\r\n\r\n");
        assert_eq!(read_err(&wire, 256), Http1ReadError::HeadTooLarge);
        assert_eq!(read_all_ways(&wire, wire.len()).unwrap().0, 200);
        // More fields than slots is too large as well.
        let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
        wire.extend(std::iter::repeat_n(b"X: 1\r\n", MAX_HEADERS + 1).flatten());
        wire.extend(b"\r\n");
        assert_eq!(read_err(&wire, 1024), Http1ReadError::HeadTooLarge);
    }

    #[test]
    fn body_too_large() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
        assert_eq!(read_all_ways(wire, wire.len()).unwrap().2, b"0123456789");
        assert_eq!(read_err(wire, wire.len() - 1), Http1ReadError::BodyTooLarge);
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n";
        assert_eq!(read_err(wire, 512), Http1ReadError::BodyTooLarge);
    }

    #[test]
    fn eof_mid_head_or_body() {
        assert_eq!(read_err(b"", 512), Http1ReadError::UnexpectedEof);
        assert_eq!(
            read_err(b"HTTP/1.1 200 OK\r\nContent-Le", 512),
            Http1ReadError::UnexpectedEof
        );
        assert_eq!(
            read_err(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234", 512),
            Http1ReadError::UnexpectedEof
        );
    }

    #[test]
    fn eof_mid_chunk() {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        for tail in [
            "",
            "5",
            "5\r\n",
            "5\r\nab",
            "5\r\nabcde",
            "5\r\nabcde\r",
            "5\r\nabcde\r\n",
            "5\r\nabcde\r\n0\r\n",
            "5\r\nabcde\r\n0\r\nX: 1\r\n",
        ] {
            let wire = std::format!("{head}{tail}");
            assert_eq!(
                read_err(wire.as_bytes(), 512),
                Http1ReadError::UnexpectedEof,
                "{tail:?}"
            );
        }
    }

    #[test]
    fn bad_chunks() {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        for tail in [
            "xyz\r\n",
            "\r\n",
            "-1\r\n",
            "5 x\r\nabcde\r\n0\r\n\r\n",
            "5\nabcde\r\n0\r\n\r\n",
            "5\r\nabcdeXY0\r\n\r\n",
            "5\r\nabcde\n0\r\n\r\n",
            "5;a\rb\r\nabcde\r\n0\r\n\r\n",
            "0\r\nX: 1\n\r\n",
            "ffffffffffffffffff\r\n",
            "10000000000000000\r\n",
        ] {
            let wire = std::format!("{head}{tail}");
            assert_eq!(
                read_err(wire.as_bytes(), 512),
                Http1ReadError::BadChunk,
                "{tail:?}"
            );
        }
        // Largest u64: well-formed, just too large.
        let wire = std::format!("{head}ffffffffffffffff\r\n");
        assert_eq!(read_err(wire.as_bytes(), 512), Http1ReadError::BodyTooLarge);
        // Leading zeros do not overflow.
        let wire = std::format!("{head}0000000000000000000000003\r\nabc\r\n0\r\n\r\n");
        assert_eq!(read_ok(wire.as_bytes()).2, b"abc");
    }

    #[test]
    fn content_type_detection() {
        for (content_type, json) in [
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/json", true),
            ("text/plain", false),
            ("text/html; charset=utf-8", false),
        ] {
            let wire = std::format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: 0\r\n\r\n"
            );
            assert_eq!(read_ok(wire.as_bytes()).1, json, "{content_type}");
        }
        assert!(!read_ok(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").1);
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(
            read_ok(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").3,
            "Service Unavailable"
        );
        assert_eq!(read_ok(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").3, "");
        assert_eq!(read_ok(b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n").3, "");
    }

    #[test]
    fn parse_head_is_incremental() {
        let wire = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        let head_len = wire.len() - 2;
        for end in 0..head_len {
            assert_eq!(parse_head(&wire[..end]), Ok(None), "{end}");
        }
        let (head, len) = parse_head(wire).unwrap().unwrap();
        assert_eq!(len, head_len);
        assert_eq!(
            head,
            ResponseHead {
                status: 404,
                reason: "Not Found",
                content_type_json: true,
                body_len: BodyLength::ContentLength(2)
            }
        );
        let (head, _) = parse_head(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.body_len, BodyLength::UntilClose);
    }

    #[test]
    fn reader_io_error_and_messages() {
        let mut buf = [0u8; 64];
        let got = read_response(&mut Broken, &mut buf).unwrap_err();
        assert_eq!(got, Http1ReadError::Io(ErrorKind::ConnectionReset));
        assert_eq!(
            std::format!("{got}"),
            "I/O error while reading the response: ConnectionReset"
        );
        let got: Http1ReadError<Infallible> = Http1ReadError::BadChunk;
        assert_eq!(std::format!("{got}"), "malformed chunked body");
    }

    #[test]
    fn lying_reader_is_clamped() {
        /// Claims to have read more than it was given.
        struct Liar;
        impl ErrorType for Liar {
            type Error = Infallible;
        }
        impl embedded_io::Read for Liar {
            fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
                Ok(buf.len() + 100)
            }
        }
        let mut buf = [0u8; 64];
        assert_eq!(
            read_response(&mut Liar, &mut buf).unwrap_err(),
            Http1ReadError::BadHead
        );
    }

    // -- properties -------------------------------------------------------

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            wire in proptest::collection::vec(any::<u8>(), 0..600),
            buf_len in 0usize..700,
            split in 1usize..8,
        ) {
            let sizes: &'static [usize] = [&[1][..], &[2], &[3], &[1, 3], &[5], &[7, 1], &[64]][split % 7];
            let mut buf = std::vec![0u8; buf_len];
            let _ = read_response(&mut Trickle::new(&wire, sizes), &mut buf);
        }

        #[test]
        fn arbitrary_bodies_after_a_valid_head_never_panic(
            tail in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'0'), Just(b'f'), Just(b';'), any::<u8>()],
                0..300,
            ),
            framing in 0usize..3,
            buf_len in 40usize..400,
        ) {
            let head: &[u8] = match framing {
                0 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                1 => b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n",
                _ => b"HTTP/1.1 200 OK\r\n\r\n",
            };
            let mut wire = head.to_vec();
            wire.extend(tail);
            let mut buf = std::vec![0u8; buf_len];
            let _ = read_response(&mut Trickle::new(&wire, &[1, 3]), &mut buf);
        }

        #[test]
        fn chunked_round_trip(
            body in proptest::collection::vec(any::<u8>(), 0..800),
            sizes in proptest::collection::vec(1usize..100, 1..8),
        ) {
            let mut wire = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            wire.extend(chunk(&body, &sizes));
            let mut buf = std::vec![0u8; 1024];
            let response = read_response(&mut Trickle::new(&wire, &[1, 3, 64, 17]), &mut buf).unwrap();
            prop_assert_eq!(response.body, &body[..]);
            prop_assert!(response.content_type_json);
            // And through a plain slice, which hands over everything at once.
            let mut buf = std::vec![0u8; 1024];
            let mut stream = &wire[..];
            let response = read_response(&mut stream, &mut buf).unwrap();
            prop_assert_eq!(response.body, &body[..]);
        }

        #[test]
        fn written_requests_parse_back(
            path in "/[a-z0-9/?=&%-]{0,40}",
            value in "[ -~]{0,200}",
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut out = std::vec![0u8; 1024];
            let mut w = &mut out[..];
            write_request(&mut w, "POST", "api.example.com", &path, [header("X-Value", &value)], &body).unwrap();
            let written = 1024 - w.len();
            let bytes = &out[..written];
            let mut fields = [httparse::EMPTY_HEADER; 8];
            let mut request = httparse::Request::new(&mut fields);
            let httparse::Status::Complete(head_len) = request.parse(bytes).unwrap() else {
                panic!("incomplete request head");
            };
            prop_assert_eq!(request.method, Some("POST"));
            prop_assert_eq!(request.path, Some(&path[..]));
            let value_field = request.headers.iter().find(|h| h.name == "X-Value").unwrap();
            prop_assert_eq!(value_field.value, value.trim_matches(' ').as_bytes());
            prop_assert_eq!(&bytes[head_len..], &body[..]);
        }
    }
}
