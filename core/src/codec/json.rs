//! The JSON of the wire: request bodies the core sends (docs/protocol.md §1.3, §3)
//! and the response bodies it reads (§1.4, §1.5, §2).
//!
//! The reader and writer are a few hundred lines written for this crate
//! rather than `serde-json-core`, because the backend's JSON needs things that
//! crate cannot give without an allocator:
//!
//! - **Per-field capacity errors, escapes included.** A string is located
//!   zero-copy in the input and unescaped straight into the bounded string of
//!   its field, so a 5000-byte `access_token` (escaped or not) is reported as
//!   [`Field::AccessToken`], never as a generic parse failure, and no shared
//!   unescape buffer has to be sized for the largest possible field.
//! - **Unknown keys of any size are skipped** without being copied anywhere
//!   (GoTrue users carry `app_metadata`, `identities`, … that we ignore).
//! - **A value whose JSON type is not known in advance**: the error envelope's
//!   `code` may be a string or a number (§1.5), and serde-json-core has no
//!   `deserialize_any`.
//! - Nesting is bounded (32 levels), so hostile input cannot exhaust the
//!   stack of a microcontroller.
//!
//! Every decoder returns a typed [`DecodeError`] for any input and never
//! panics: no indexing that can go out of bounds, no `unwrap`.

use heapless::String;
use heapless::string::StringView;

use crate::error::{ApiError, CapacityError, DecodeError, Field};
use crate::limits::{EMAIL_MAX, ERROR_CODE_MAX, ERROR_MESSAGE_MAX, USER_JSON_MAX};
use crate::request::Body;
use crate::secret::{Secret, bounded, fill};
use crate::session::{AccessToken, RefreshToken, Session, User, UserMeta};
use crate::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------

/// Renders a request body as compact JSON into `buf` and returns its length.
///
/// The bytes are what the reference client's `JSON.stringify` produces
/// (§1.3): no whitespace, keys in the order of the §3 tables, optional fields
/// omitted (never `null`), strings escaped the way `JSON.stringify` escapes
/// them (`\"`, `\\`, `\b \f \n \r \t`, other control characters as `\u00xx`;
/// everything else, non-ASCII included, verbatim). Byte-exact bodies keep
/// server-side idempotency keys and request signatures stable across SDKs.
///
/// - `AnonymousSignIn`: `{"captcha_token"?,"visitor_id"?,"user_meta"?}`; the
///   captcha only when non-empty, the visitor id only when at least 16 UTF-16
///   units long (the reference's `length >= 16`), `user_meta` only when it
///   has entries. Nothing to send gives `{}`.
/// - `Refresh`: `{"refresh_token":"…"}`.
/// - `AnonymousUpgrade`: `{"email":"…","password":"…","user_meta"?}`.
/// - `Empty`: zero bytes (sign-out sends no body and no `Content-Type`).
///
/// A `buf` too small gives `CapacityError { field: Field::Buffer, capacity:
/// buf.len(), len: 0 }` (the needed size is not computed); what was written
/// so far is garbage.
pub fn encode_body(body: &Body<'_>, buf: &mut [u8]) -> Result<usize, CapacityError> {
    let capacity = buf.len();
    let mut w = Writer::new(buf);
    write_body(body, &mut w).map_err(|Full| CapacityError {
        field: Field::Buffer,
        capacity,
        len: 0,
    })?;
    Ok(w.len())
}

fn write_body(body: &Body<'_>, w: &mut Writer<'_>) -> Result<(), Full> {
    match *body {
        Body::Empty => Ok(()),
        Body::AnonymousSignIn {
            captcha_token,
            visitor_id,
            user_meta,
        } => {
            let mut o = w.object()?;
            if let Some(c) = captcha_token.filter(|c| !c.is_empty()) {
                o.key(w, "captcha_token")?;
                w.string(c.expose())?;
            }
            if let Some(v) = visitor_id.filter(|v| v.encode_utf16().count() >= 16) {
                o.key(w, "visitor_id")?;
                w.string(v)?;
            }
            write_meta(w, &mut o, user_meta)?;
            o.end(w)
        }
        Body::Refresh { refresh_token } => {
            let mut o = w.object()?;
            o.key(w, "refresh_token")?;
            w.string(refresh_token.expose())?;
            o.end(w)
        }
        Body::AnonymousUpgrade {
            email,
            password,
            user_meta,
        } => {
            let mut o = w.object()?;
            o.key(w, "email")?;
            w.string(email)?;
            o.key(w, "password")?;
            w.string(password.expose())?;
            write_meta(w, &mut o, user_meta)?;
            o.end(w)
        }
    }
}

fn write_meta(w: &mut Writer<'_>, o: &mut Obj, meta: Option<&UserMeta>) -> Result<(), Full> {
    let Some(meta) = meta.filter(|m| !m.is_empty()) else {
        return Ok(());
    };
    o.key(w, "user_meta")?;
    let mut m = w.object()?;
    for (k, v) in meta.iter() {
        m.key(w, k)?;
        w.string(v)?;
    }
    m.end(w)
}

/// The writer ran out of buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

/// Appends JSON to a caller-provided buffer, never past its end.
pub(crate) struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

/// An open JSON object: remembers whether a comma is due before the next key.
pub(crate) struct Obj {
    first: bool,
}

impl Obj {
    /// Writes `,` if needed, then `"name":`.
    pub(crate) fn key(&mut self, w: &mut Writer<'_>, name: &str) -> Result<(), Full> {
        if !self.first {
            w.raw(b",")?;
        }
        self.first = false;
        w.string(name)?;
        w.raw(b":")
    }

    /// Writes `,` if needed, then `"name":` with `name` already escaped
    /// (a key copied from validated JSON).
    pub(crate) fn key_escaped(&mut self, w: &mut Writer<'_>, name: &str) -> Result<(), Full> {
        if !self.first {
            w.raw(b",")?;
        }
        self.first = false;
        w.raw(b"\"")?;
        w.raw(name.as_bytes())?;
        w.raw(b"\":")
    }

    /// Closes the object.
    pub(crate) fn end(self, w: &mut Writer<'_>) -> Result<(), Full> {
        w.raw(b"}")
    }
}

impl<'b> Writer<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Writer { buf, len: 0 }
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends bytes verbatim.
    pub(crate) fn raw(&mut self, bytes: &[u8]) -> Result<(), Full> {
        let end = self.len.checked_add(bytes.len()).ok_or(Full)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(Full)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Opens an object.
    pub(crate) fn object(&mut self) -> Result<Obj, Full> {
        self.raw(b"{")?;
        Ok(Obj { first: true })
    }

    /// Appends `s` as a quoted, escaped JSON string, escaped exactly as
    /// `JSON.stringify` does.
    pub(crate) fn string(&mut self, s: &str) -> Result<(), Full> {
        self.raw(b"\"")?;
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let short: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                0x08 => b"\\b",
                0x0c => b"\\f",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x00..=0x1f => b"",
                _ => continue,
            };
            // Every byte that needs escaping is ASCII, so `start..i` never
            // splits a UTF-8 sequence.
            self.raw(bytes.get(start..i).unwrap_or_default())?;
            if short.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                let lo = HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
                self.raw(&[b'\\', b'u', b'0', b'0', hi, lo])?;
            } else {
                self.raw(short)?;
            }
            start = i + 1;
        }
        self.raw(bytes.get(start..).unwrap_or_default())?;
        self.raw(b"\"")
    }

    /// Appends an unsigned integer.
    pub(crate) fn u64(&mut self, mut v: u64) -> Result<(), Full> {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            if let Some(d) = digits.get_mut(at) {
                *d = b'0' + (v % 10) as u8;
            }
            v /= 10;
            if v == 0 || at == 0 {
                break;
            }
        }
        self.raw(digits.get(at..).unwrap_or_default())
    }

    /// Appends `true` or `false`.
    pub(crate) fn bool(&mut self, v: bool) -> Result<(), Full> {
        self.raw(if v { b"true" } else { b"false" })
    }
}

// ---------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------

/// Deepest nesting of objects and arrays accepted. Far beyond what the
/// backend sends (a GoTrue user nests 4 levels), small enough that the
/// recursive skip cannot exhaust a microcontroller's stack.
pub(crate) const MAX_DEPTH: u8 = 32;

/// The JSON type of the next value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

/// A value read without regard to its type; objects and arrays are skipped.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scalar<'a> {
    Str(JsonStr<'a>),
    /// The number's text, already checked against the JSON grammar.
    Num(&'a str),
    Bool(bool),
    Null,
    Composite,
}

/// A zero-copy, strict JSON reader over a byte slice.
///
/// It is a pull parser: [`members`](Self::members) opens an object whose
/// keys [`Members::next`] hands out one by one; the caller consumes exactly
/// one value after each (with [`scalar`](Self::scalar),
/// [`skip`](Self::skip), a nested [`members`](Self::members), …). Syntax
/// errors become
/// [`DecodeError::Malformed`] naming `what` was being decoded.
pub(crate) struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    depth: u8,
    what: &'static str,
}

impl<'a> Parser<'a> {
    /// A parser at the start of `bytes` (a UTF-8 byte-order mark is skipped,
    /// as `fetch().json()` does).
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        let i = if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
            3
        } else {
            0
        };
        Parser {
            b: bytes,
            i,
            depth: 0,
            what,
        }
    }

    /// A parser positioned at byte `at` of `bytes` (to re-read a value found
    /// by an earlier pass).
    pub(crate) fn at(bytes: &'a [u8], at: usize, what: &'static str) -> Self {
        Parser {
            b: bytes,
            i: at,
            depth: 0,
            what,
        }
    }

    /// Current byte offset.
    pub(crate) fn pos(&self) -> usize {
        self.i
    }

    /// The input between two offsets this parser reported, as text (the
    /// spelling of a value it has validated; `""` for offsets that do not
    /// bound one).
    pub(crate) fn text(&self, from: usize, to: usize) -> &'a str {
        self.b
            .get(from..to)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    /// Skips whitespace and returns the offset of the next value.
    pub(crate) fn value_start(&mut self) -> usize {
        self.skip_ws();
        self.i
    }

    /// The syntax error of this parser.
    pub(crate) fn malformed(&self) -> DecodeError {
        DecodeError::Malformed { what: self.what }
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn bump(&mut self) {
        self.i = self.i.saturating_add(1);
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.bump();
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), DecodeError> {
        self.skip_ws();
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.malformed())
        }
    }

    fn enter(&mut self) -> Result<(), DecodeError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.malformed());
        }
        self.depth += 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// The type of the next value (after whitespace); `Malformed` if no
    /// value starts here.
    pub(crate) fn kind(&mut self) -> Result<Kind, DecodeError> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => Ok(Kind::Object),
            Some(b'[') => Ok(Kind::Array),
            Some(b'"') => Ok(Kind::String),
            Some(b'-' | b'0'..=b'9') => Ok(Kind::Number),
            Some(b't' | b'f') => Ok(Kind::Bool),
            Some(b'n') => Ok(Kind::Null),
            _ => Err(self.malformed()),
        }
    }

    /// Opens an object (after whitespace). Walk its members with
    /// [`Members::next`], consuming each value before asking for the next
    /// key.
    ///
    /// A cursor rather than a callback per key: the member loop is then one
    /// function shared by every decoder, instead of a copy monomorphized
    /// into each of them.
    pub(crate) fn members(&mut self) -> Result<Members, DecodeError> {
        self.expect(b'{')?;
        self.enter()?;
        Ok(Members { first: true })
    }

    fn array_skip(&mut self) -> Result<(), DecodeError> {
        self.expect(b'[')?;
        self.enter()?;
        self.skip_ws();
        if !self.eat(b']') {
            loop {
                self.skip()?;
                self.skip_ws();
                if self.eat(b',') {
                    continue;
                }
                if self.eat(b']') {
                    break;
                }
                return Err(self.malformed());
            }
        }
        self.leave();
        Ok(())
    }

    /// Skips one value of any type, checking its syntax.
    pub(crate) fn skip(&mut self) -> Result<(), DecodeError> {
        match self.kind()? {
            Kind::Object => {
                let mut m = self.members()?;
                while m.next(self)?.is_some() {
                    self.skip()?;
                }
                Ok(())
            }
            Kind::Array => self.array_skip(),
            _ => self.scalar().map(|_| ()),
        }
    }

    /// Reads a string, returning its raw (still escaped) text. Escapes are
    /// checked, raw control characters and invalid UTF-8 rejected.
    pub(crate) fn string(&mut self) -> Result<JsonStr<'a>, DecodeError> {
        self.expect(b'"')?;
        let start = self.i;
        let mut escaped = false;
        let end = loop {
            // Skip the plain run up to the next byte that needs a look in
            // one tight scan: tokens are hundreds of plain bytes, and a
            // call per byte is what a size-optimised build makes of the
            // byte-wise loop.
            let rest = self.b.get(self.i..).unwrap_or_default();
            let run = rest
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .ok_or_else(|| self.malformed())?;
            self.i = self.i.saturating_add(run);
            let at = self.i;
            let c = self.peek().ok_or_else(|| self.malformed())?;
            self.bump();
            match c {
                b'"' => break at,
                b'\\' => {
                    escaped = true;
                    let e = self.peek().ok_or_else(|| self.malformed())?;
                    self.bump();
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            for _ in 0..4 {
                                match self.peek() {
                                    Some(h) if h.is_ascii_hexdigit() => self.bump(),
                                    _ => return Err(self.malformed()),
                                }
                            }
                        }
                        _ => return Err(self.malformed()),
                    }
                }
                // A raw control character.
                _ => return Err(self.malformed()),
            }
        };
        let raw = self.b.get(start..end).ok_or_else(|| self.malformed())?;
        let raw = core::str::from_utf8(raw).map_err(|_| self.malformed())?;
        Ok(JsonStr { raw, escaped })
    }

    fn digits(&mut self) -> usize {
        let mut n = 0;
        while let Some(b'0'..=b'9') = self.peek() {
            self.bump();
            n += 1;
        }
        n
    }

    /// Reads a number, returning its text (checked against the JSON grammar:
    /// no leading zeros, no `+`, no `NaN`/`Infinity`).
    pub(crate) fn number(&mut self) -> Result<&'a str, DecodeError> {
        self.skip_ws();
        let start = self.i;
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.bump(),
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.malformed()),
        }
        if self.eat(b'.') && self.digits() == 0 {
            return Err(self.malformed());
        }
        if self.eat(b'e') || self.eat(b'E') {
            let _ = self.eat(b'+') || self.eat(b'-');
            if self.digits() == 0 {
                return Err(self.malformed());
            }
        }
        let text = self.b.get(start..self.i).ok_or_else(|| self.malformed())?;
        core::str::from_utf8(text).map_err(|_| self.malformed())
    }

    fn literal(&mut self, lit: &[u8]) -> Result<(), DecodeError> {
        let end = self.i.saturating_add(lit.len());
        if self.b.get(self.i..end) == Some(lit) {
            self.i = end;
            Ok(())
        } else {
            Err(self.malformed())
        }
    }

    /// Reads any value; objects and arrays are skipped and reported as
    /// [`Scalar::Composite`].
    pub(crate) fn scalar(&mut self) -> Result<Scalar<'a>, DecodeError> {
        match self.kind()? {
            Kind::String => self.string().map(Scalar::Str),
            Kind::Number => self.number().map(Scalar::Num),
            Kind::Bool => {
                if self.peek() == Some(b't') {
                    self.literal(b"true").map(|()| Scalar::Bool(true))
                } else {
                    self.literal(b"false").map(|()| Scalar::Bool(false))
                }
            }
            Kind::Null => self.literal(b"null").map(|()| Scalar::Null),
            Kind::Object | Kind::Array => self.skip().map(|()| Scalar::Composite),
        }
    }

    /// Checks that only whitespace follows the top-level value.
    pub(crate) fn finish(&mut self) -> Result<(), DecodeError> {
        self.skip_ws();
        if self.i == self.b.len() {
            Ok(())
        } else {
            Err(self.malformed())
        }
    }

    /// If the next value is an object, skips it and returns its offset (to
    /// re-read it later with [`Parser::at`]); `null` gives `None`; any other
    /// type is `InvalidValue { field }`.
    pub(crate) fn object_offset(
        &mut self,
        field: &'static str,
    ) -> Result<Option<usize>, DecodeError> {
        match self.kind()? {
            Kind::Object => {
                let at = self.pos();
                self.skip()?;
                Ok(Some(at))
            }
            Kind::Null => self.scalar().map(|_| None),
            _ => Err(DecodeError::InvalidValue { field }),
        }
    }

    /// A string or `null`; any other type is `InvalidValue { field }`.
    pub(crate) fn opt_str(
        &mut self,
        field: &'static str,
    ) -> Result<Option<JsonStr<'a>>, DecodeError> {
        match self.scalar()? {
            Scalar::Str(s) => Ok(Some(s)),
            Scalar::Null => Ok(None),
            _ => Err(DecodeError::InvalidValue { field }),
        }
    }

    /// A number (as text) or `null`; any other type is `InvalidValue`.
    pub(crate) fn opt_num(&mut self, field: &'static str) -> Result<Option<&'a str>, DecodeError> {
        match self.scalar()? {
            Scalar::Num(n) => Ok(Some(n)),
            Scalar::Null => Ok(None),
            _ => Err(DecodeError::InvalidValue { field }),
        }
    }

    /// A boolean or `null`; any other type is `InvalidValue`.
    pub(crate) fn opt_bool(&mut self, field: &'static str) -> Result<Option<bool>, DecodeError> {
        match self.scalar()? {
            Scalar::Bool(b) => Ok(Some(b)),
            Scalar::Null => Ok(None),
            _ => Err(DecodeError::InvalidValue { field }),
        }
    }
}

/// The members of an object opened by [`Parser::members`].
pub(crate) struct Members {
    first: bool,
}

impl Members {
    /// The next key, with the parser right before its value (which the
    /// caller must consume); `None` once the closing `}` is read.
    pub(crate) fn next<'a>(
        &mut self,
        p: &mut Parser<'a>,
    ) -> Result<Option<JsonStr<'a>>, DecodeError> {
        p.skip_ws();
        if self.first {
            self.first = false;
            if p.eat(b'}') {
                p.leave();
                return Ok(None);
            }
        } else if !p.eat(b',') {
            if p.eat(b'}') {
                p.leave();
                return Ok(None);
            }
            return Err(p.malformed());
        }
        let key = p.string()?;
        p.expect(b':')?;
        Ok(Some(key))
    }
}

/// A JSON string as found in the input: its raw text between the quotes,
/// validated but still escaped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JsonStr<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> JsonStr<'a> {
    /// Text that is not JSON-escaped (a postcard string), so it is copied
    /// verbatim.
    pub(crate) fn plain(raw: &'a str) -> Self {
        JsonStr {
            raw,
            escaped: false,
        }
    }

    /// The unescaped characters.
    pub(crate) fn chars(&self) -> Unescape<'a> {
        Unescape {
            rest: self.raw.chars(),
        }
    }

    /// Whether the unescaped text equals `lit`.
    pub(crate) fn is(&self, lit: &str) -> bool {
        if self.escaped {
            self.chars().eq(lit.chars())
        } else {
            self.raw == lit
        }
    }

    /// The text between the quotes, still escaped.
    pub(crate) fn escaped_text(&self) -> &'a str {
        self.raw
    }

    /// Whether the string is `""` (an escape always yields a character).
    pub(crate) fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Length in bytes of the unescaped UTF-8 text.
    pub(crate) fn len(&self) -> usize {
        if self.escaped {
            self.chars().map(char::len_utf8).sum()
        } else {
            self.raw.len()
        }
    }

    /// Unescapes into a bounded string, or names `field` in the error.
    pub(crate) fn to_bounded<const N: usize>(
        self,
        field: Field,
    ) -> Result<String<N>, CapacityError> {
        let mut s = String::new();
        self.unescape_into(s.as_mut_view(), field)?;
        Ok(s)
    }

    /// The body of [`to_bounded`](Self::to_bounded), on the capacity-erased
    /// view so that one copy serves every field.
    fn unescape_into(self, dst: &mut StringView, field: Field) -> Result<(), CapacityError> {
        if !self.escaped {
            return fill(dst, self.raw, field);
        }
        for c in self.chars() {
            if dst.push(c).is_err() {
                return Err(CapacityError {
                    field,
                    capacity: dst.capacity(),
                    len: self.len(),
                });
            }
        }
        Ok(())
    }

    /// Unescapes into `dst` in place (its old content is gone either way).
    pub(crate) fn unescape_to_secret<const N: usize>(
        self,
        dst: &mut Secret<N>,
        field: Field,
    ) -> Result<(), CapacityError> {
        self.unescape_into(dst.refill(), field)
    }

    /// Unescapes into `dst` in place (its old content is gone either way).
    fn unescape_to<const N: usize>(
        self,
        dst: &mut String<N>,
        field: Field,
    ) -> Result<(), CapacityError> {
        dst.clear();
        self.unescape_into(dst.as_mut_view(), field)
    }
}

/// Iterator over the characters of a validated JSON string.
///
/// `\uXXXX` escapes are decoded, surrogate pairs combined; a lone surrogate
/// (which JavaScript tolerates but UTF-8 cannot hold) becomes U+FFFD.
pub(crate) struct Unescape<'a> {
    rest: core::str::Chars<'a>,
}

impl Unescape<'_> {
    fn hex4(&mut self) -> Option<u16> {
        let mut v: u16 = 0;
        for _ in 0..4 {
            let d = self.rest.next()?.to_digit(16)?;
            v = (v << 4) | d as u16;
        }
        Some(v)
    }

    fn unicode(&mut self) -> char {
        let Some(hi) = self.hex4() else {
            return char::REPLACEMENT_CHARACTER;
        };
        match hi {
            0xD800..=0xDBFF => {
                let save = self.rest.clone();
                if self.rest.next() == Some('\\')
                    && self.rest.next() == Some('u')
                    && let Some(lo @ 0xDC00..=0xDFFF) = self.hex4()
                {
                    let cp = 0x1_0000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(lo) - 0xDC00);
                    return char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER);
                }
                self.rest = save;
                char::REPLACEMENT_CHARACTER
            }
            v => char::from_u32(u32::from(v)).unwrap_or(char::REPLACEMENT_CHARACTER),
        }
    }
}

impl Iterator for Unescape<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let c = self.rest.next()?;
        if c != '\\' {
            return Some(c);
        }
        Some(match self.rest.next()? {
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => self.unicode(),
            other => other,
        })
    }
}

/// A JSON number as a non-negative integer: exact for integer literals up to
/// `u64::MAX`, floored for fractions and exponents. `None` for negative,
/// malformed or too large values.
pub(crate) fn number_to_u64(text: &str) -> Option<u64> {
    scaled_decimal(text, 0)
}

/// `floor(value × 10^scale)` of a JSON number, for non-negative values that
/// fit a `u64`; `None` otherwise (`-0` is 0).
///
/// Written out rather than `str::parse::<f64>` because float parsing links
/// about 17 KiB of tables and code into every firmware, for numbers (token
/// lifetimes, timestamps) that are integers or short decimals.
///
/// Exact without wide arithmetic: the value is the digit string with its
/// decimal point moved by the exponent (and `scale`), so its floor is just
/// the digits left of that point. Any digit beyond the 20th integer digit
/// overflows a `u64` (a checked multiply says so), and the digits right of
/// the point are only looked at to tell `-0` from a negative value.
fn scaled_decimal(text: &str, scale: i32) -> Option<u64> {
    let mut rest = text.as_bytes();
    let negative = eat_byte(&mut rest, b'-');
    let int = take_digits(&mut rest);
    let frac = if eat_byte(&mut rest, b'.') {
        take_digits(&mut rest)
    } else {
        &[]
    };
    let mut exponent: i64 = 0;
    if eat_byte(&mut rest, b'e') || eat_byte(&mut rest, b'E') {
        let exp_negative = eat_byte(&mut rest, b'-');
        if !exp_negative {
            eat_byte(&mut rest, b'+');
        }
        let digits = take_digits(&mut rest);
        if digits.is_empty() {
            return None;
        }
        for &d in digits {
            exponent = (exponent * 10 + i64::from(d - b'0')).min(100_000);
        }
        if exp_negative {
            exponent = -exponent;
        }
    }
    if !rest.is_empty() || int.len() + frac.len() == 0 {
        return None;
    }
    // Digits still to go left of the decimal point.
    let mut left = i64::try_from(int.len())
        .ok()?
        .saturating_add(exponent)
        .saturating_add(i64::from(scale));
    let mut value: u64 = 0;
    let mut nonzero = false;
    for &d in int.iter().chain(frac) {
        nonzero |= d != b'0';
        if left > 0 {
            value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            left -= 1;
        }
    }
    if negative && nonzero {
        return None;
    }
    while left > 0 && value != 0 {
        value = value.checked_mul(10)?;
        left -= 1;
    }
    Some(value)
}

/// Consumes `b` if `rest` starts with it.
fn eat_byte(rest: &mut &[u8], b: u8) -> bool {
    match rest.split_first() {
        Some((&first, tail)) if first == b => {
            *rest = tail;
            true
        }
        _ => false,
    }
}

/// Consumes the ASCII digits `rest` starts with, and returns them.
fn take_digits<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (digits, tail) = rest.split_at_checked(n).unwrap_or((rest, &[]));
    *rest = tail;
    digits
}

/// A number of seconds from a token reply, as whole milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Seconds {
    /// The value in milliseconds (floored).
    Millis(u64),
    /// Negative, or too large for any clock.
    Unusable,
}

// ---------------------------------------------------------------------------
// Users and tokens
// ---------------------------------------------------------------------------

/// Reads an AuthUser object (§2.2) at the parser's position.
///
/// `id` is required (a string, possibly empty: the reference stores `""` for
/// resumed anonymous sessions, §12.1); `email` `null`/absent/`""` is `None`
/// (the reference treats an empty email as missing); `is_anonymous`
/// absent/`null` is `false`; `name`, `avatar`, `country` are optional. Extra
/// keys are ignored. Strings longer than their capacity give
/// [`DecodeError::Capacity`] naming the field; a field of the wrong JSON type
/// gives `InvalidValue`.
pub(crate) fn read_user(p: &mut Parser<'_>) -> Result<User, DecodeError> {
    Ok(read_user_parts(p)?.build(true)?)
}

/// The syntax half of [`read_user`]: locates the fields without copying
/// them.
pub(crate) fn read_user_parts<'a>(p: &mut Parser<'a>) -> Result<UserParts<'a>, DecodeError> {
    let start = p.value_start();
    let mut id = None;
    let mut email = None;
    let mut is_anonymous = None;
    let mut name = None;
    let mut avatar = None;
    let mut country = None;
    let mut m = p.members()?;
    while let Some(key) = m.next(p)? {
        if key.is("id") {
            id = p.opt_str("user.id")?;
        } else if key.is("email") {
            email = p.opt_str("user.email")?;
        } else if key.is("is_anonymous") {
            is_anonymous = p.opt_bool("user.is_anonymous")?;
        } else if key.is("name") {
            name = p.opt_str("user.name")?;
        } else if key.is("avatar") {
            avatar = p.opt_str("user.avatar")?;
        } else if key.is("country") {
            country = p.opt_str("user.country")?;
        } else {
            p.skip()?;
        }
    }
    Ok(UserParts {
        id: id.ok_or(DecodeError::MissingField { field: "user.id" })?,
        email,
        is_anonymous: is_anonymous.unwrap_or(false),
        name,
        avatar,
        country,
        // Only a build that keeps it pays for the UTF-8 check.
        json: if USER_JSON_MAX != 0 {
            p.text(start, p.pos())
        } else {
            ""
        },
    })
}

/// A user's fields located in the input (a JSON body or a postcard
/// record), not yet copied into their bounded homes. Both record formats
/// and every reply build their [`User`] through this one copy routine.
#[derive(Clone, Copy)]
pub(crate) struct UserParts<'a> {
    pub(crate) id: JsonStr<'a>,
    pub(crate) email: Option<JsonStr<'a>>,
    pub(crate) is_anonymous: bool,
    pub(crate) name: Option<JsonStr<'a>>,
    pub(crate) avatar: Option<JsonStr<'a>>,
    pub(crate) country: Option<JsonStr<'a>>,
    /// The whole object as spelled in a JSON input; `""` for postcard and
    /// in builds that keep none (`USER_JSON_MAX` 0).
    pub(crate) json: &'a str,
}

impl UserParts<'_> {
    /// Copies the fields in order (the first oversize one is the error).
    /// An optional `""` is `None` when `empty_is_none` (JSON, where the
    /// reference treats an empty email as missing); postcard keeps it, so
    /// its records round-trip exactly.
    pub(crate) fn build(self, empty_is_none: bool) -> Result<User, CapacityError> {
        let mut user = User::default();
        self.build_into(&mut user, empty_is_none)?;
        Ok(user)
    }

    /// [`build`](Self::build) in place: `dst` is overwritten field by field
    /// (and left half-written on error, so it must be scratch).
    pub(crate) fn build_into(
        self,
        dst: &mut User,
        empty_is_none: bool,
    ) -> Result<(), CapacityError> {
        self.id.unescape_to(&mut dst.id, Field::UserId)?;
        opt_into(&mut dst.email, self.email, Field::Email, empty_is_none)?;
        dst.is_anonymous = self.is_anonymous;
        opt_into(&mut dst.name, self.name, Field::Name, empty_is_none)?;
        opt_into(&mut dst.avatar, self.avatar, Field::Avatar, empty_is_none)?;
        opt_into(
            &mut dst.country,
            self.country,
            Field::Country,
            empty_is_none,
        )?;
        if USER_JSON_MAX != 0 {
            // Kept whole or not at all: a cut object would not be JSON, and
            // the known fields above are enough to decide with.
            dst.server_json.clear();
            if dst.server_json.push_str(self.json).is_err() {
                dst.server_json.clear();
            }
        }
        Ok(())
    }
}

/// An optional string field copied into `dst`; `""` gives `None` when
/// `empty_is_none`.
fn opt_into<const N: usize>(
    dst: &mut Option<String<N>>,
    s: Option<JsonStr<'_>>,
    field: Field,
    empty_is_none: bool,
) -> Result<(), CapacityError> {
    match s {
        Some(s) if !(empty_is_none && s.is_empty()) => {
            s.unescape_to(dst.get_or_insert_with(String::new), field)
        }
        _ => {
            *dst = None;
            Ok(())
        }
    }
}

/// Decodes a standalone AuthUser object (§2.2), e.g. the `user` of a
/// response kept aside by an adapter. Same rules as the `user` inside
/// [`decode_tokens`]; trailing bytes other than whitespace are an error.
pub fn decode_user(body: &[u8]) -> Result<User, DecodeError> {
    let mut p = Parser::new(body, "user");
    let user = read_user(&mut p)?;
    p.finish()?;
    Ok(user)
}

/// The 2xx body of a token-issuing route (RawTokens + `user`, §2.1).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TokenResponse {
    /// The new access token.
    pub access_token: AccessToken,
    /// The new refresh token (the presented one is now spent).
    pub refresh_token: RefreshToken,
    /// Lifetime in seconds, as sent (`None` when absent or `null`).
    pub expires_in: Option<Seconds>,
    /// Expiry in Unix seconds on the *server's* clock, as sent.
    pub expires_at: Option<Seconds>,
    /// The user, when the route sent one (`null`/absent gives `None`).
    pub user: Option<User>,
}

/// Ten years in milliseconds: no access token lives that long, so a larger
/// lifetime is a unit mix-up (ms sent as s) or garbage.
const MAX_LIFETIME_MS: u64 = 3_652 * 24 * 3_600 * 1_000;

fn secs_to_ms(secs: Seconds) -> Option<u64> {
    match secs {
        Seconds::Millis(ms) => Some(ms),
        Seconds::Unusable => None,
    }
}

impl TokenResponse {
    /// When the access token expires, on the caller's clock.
    ///
    /// Prefers `now + expires_in`: `now` and every later comparison come
    /// from the same device clock, so the expiry is right even when that
    /// clock is minutes or years off (a board without an RTC boots in 1970),
    /// whereas `expires_at` is an absolute instant on the *server's* clock.
    /// This deliberately departs from the reference (which prefers
    /// `expires_at`) and fixes docs/protocol.md §12.12, where a missing expiry
    /// became `NaN` and a silent logout: here it is a typed error.
    ///
    /// `expires_at × 1000` (seconds, maybe fractional, floored to ms) is used
    /// when `expires_in` is absent or unusable. A source is unusable when it
    /// is negative, NaN, infinite or absurd (a lifetime over ten years from
    /// `now`). Neither present → `MissingField { field: "expires_in" }`;
    /// present but unusable → `InvalidValue` naming the first bad one.
    pub fn expiry(&self, now: Instant) -> Result<Instant, DecodeError> {
        expiry(self.expires_in, self.expires_at, now)
    }
}

/// What a token reply says besides the tokens and the user, which
/// [`decode_tokens_into`] writes into the session directly.
pub(crate) struct TokenMeta {
    pub(crate) expires_in: Option<Seconds>,
    pub(crate) expires_at: Option<Seconds>,
    /// The reply carried a user the core could hold (it is in the session).
    pub(crate) user: bool,
}

impl TokenMeta {
    /// See [`TokenResponse::expiry`].
    pub(crate) fn expiry(&self, now: Instant) -> Result<Instant, DecodeError> {
        expiry(self.expires_in, self.expires_at, now)
    }
}

/// The body of [`TokenResponse::expiry`].
fn expiry(
    expires_in: Option<Seconds>,
    expires_at: Option<Seconds>,
    now: Instant,
) -> Result<Instant, DecodeError> {
    let mut err = None;
    if let Some(secs) = expires_in {
        match secs_to_ms(secs) {
            Some(ms) if ms <= MAX_LIFETIME_MS => return Ok(now + Duration::from_millis(ms)),
            _ => {
                err = Some(DecodeError::InvalidValue {
                    field: "expires_in",
                })
            }
        }
    }
    if let Some(secs) = expires_at {
        match secs_to_ms(secs) {
            Some(ms) if ms <= now.as_millis().saturating_add(MAX_LIFETIME_MS) => {
                return Ok(Instant(ms));
            }
            _ => {
                err.get_or_insert(DecodeError::InvalidValue {
                    field: "expires_at",
                });
            }
        }
    }
    Err(err.unwrap_or(DecodeError::MissingField {
        field: "expires_in",
    }))
}

/// A field's number of seconds.
fn num_seconds(n: Option<&str>, field: &'static str) -> Result<Option<Seconds>, DecodeError> {
    match n {
        None => Ok(None),
        Some(text) if text.starts_with('-') && scaled_decimal(text, 3) != Some(0) => {
            Ok(Some(Seconds::Unusable))
        }
        Some(text) => match scaled_decimal(text, 3) {
            Some(ms) => Ok(Some(Seconds::Millis(ms))),
            None if text
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
            {
                Ok(Some(Seconds::Unusable))
            }
            None => Err(DecodeError::InvalidValue { field }),
        },
    }
}

/// Decodes the 2xx body of `/auth/anonymous/signin` or `/auth/refresh`
/// (§2.1, §3.1, §3.2).
///
/// Required: `access_token` and `refresh_token`, non-empty strings (a
/// missing or `null` one is `MissingField`, an empty one `InvalidValue`; the
/// reference stored whatever came, §12.12). `expires_in`/`expires_at` are
/// kept as sent and resolved by [`TokenResponse::expiry`]. `user` is decoded
/// when present (see [`decode_user`]); `token_type` and unknown keys are
/// ignored, keys may come in any order, duplicate keys keep the last value
/// (as `JSON.parse`).
///
/// The whole body is syntax-checked before any field is copied, so a broken
/// body is `Malformed` even if an earlier field was too long; then an
/// oversize field is `Capacity` naming it (e.g. [`Field::AccessToken`]).
pub fn decode_tokens(body: &[u8]) -> Result<TokenResponse, DecodeError> {
    let mut s = Session::blank();
    let meta = decode_tokens_into(body, &mut s)?;
    Ok(TokenResponse {
        access_token: s.access_token,
        refresh_token: s.refresh_token,
        expires_in: meta.expires_in,
        expires_at: meta.expires_at,
        user: meta.user.then_some(s.user),
    })
}

/// [`decode_tokens`] in place: the tokens and the user go straight into
/// `out` (scratch: half-written on error, `expires_at` untouched), so a
/// reply costs one session of stack, not several.
pub(crate) fn decode_tokens_into(body: &[u8], out: &mut Session) -> Result<TokenMeta, DecodeError> {
    const WHAT: &str = "token response";
    let mut p = Parser::new(body, WHAT);
    let mut access = None;
    let mut refresh = None;
    let mut expires_in = None;
    let mut expires_at = None;
    let mut user_at = None;
    let mut m = p.members()?;
    while let Some(key) = m.next(&mut p)? {
        if key.is("access_token") {
            access = p.opt_str("access_token")?;
        } else if key.is("refresh_token") {
            refresh = p.opt_str("refresh_token")?;
        } else if key.is("expires_in") {
            expires_in = p.opt_num("expires_in")?;
        } else if key.is("expires_at") {
            expires_at = p.opt_num("expires_at")?;
        } else if key.is("user") {
            user_at = p.object_offset("user")?;
        } else {
            p.skip()?;
        }
    }
    p.finish()?;

    let access = access.ok_or(DecodeError::MissingField {
        field: "access_token",
    })?;
    let refresh = refresh.ok_or(DecodeError::MissingField {
        field: "refresh_token",
    })?;
    if access.is_empty() {
        return Err(DecodeError::InvalidValue {
            field: "access_token",
        });
    }
    if refresh.is_empty() {
        return Err(DecodeError::InvalidValue {
            field: "refresh_token",
        });
    }
    // The tokens are what must not be lost: the server has already spent the
    // presented refresh token. A `user` the core cannot hold (an avatar URL
    // over its capacity, say) is dropped, and the machine learns the user
    // from the access token's claims instead.
    let user = user_at.is_some_and(|at| {
        read_user_parts(&mut Parser::at(body, at, WHAT))
            .is_ok_and(|parts| parts.build_into(&mut out.user, true).is_ok())
    });
    access.unescape_to_secret(&mut out.access_token, Field::AccessToken)?;
    refresh.unescape_to_secret(&mut out.refresh_token, Field::RefreshToken)?;
    Ok(TokenMeta {
        expires_in: num_seconds(expires_in, "expires_in")?,
        expires_at: num_seconds(expires_at, "expires_at")?,
        user,
    })
}

// ---------------------------------------------------------------------------
// Upgrade
// ---------------------------------------------------------------------------

/// The 2xx answer of `/auth/anonymous/upgrade` (§3.3).
///
/// `Updated` is much larger than `ConfirmationRequired`; without an
/// allocator there is no box to even them out, and the value is short-lived.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum UpgradeResponse {
    /// `{"status":"updated","user":{…}}`: the account is named now; the
    /// machine patches id, email and `is_anonymous` (`false` when absent).
    Updated(User),
    /// `{"status":"confirmation_required","email":"…"}`: nothing changes
    /// until the link in the mail is clicked.
    ConfirmationRequired {
        /// Where the confirmation mail went.
        email: String<EMAIL_MAX>,
    },
}

/// Decodes the 2xx body of `/auth/anonymous/upgrade`.
///
/// `status` decides the shape; a missing or unknown `status` is
/// `InvalidValue { field: "status" }` (guessing would either drop a real
/// upgrade or invent one). Only the field the variant needs is decoded, so
/// junk in the other one does not fail the upgrade: `updated` needs a `user`
/// (`MissingField { field: "user" }`), `confirmation_required` a non-empty
/// `email` string (`MissingField { field: "email" }`).
pub fn decode_upgrade(body: &[u8]) -> Result<UpgradeResponse, DecodeError> {
    const WHAT: &str = "upgrade response";
    let mut p = Parser::new(body, WHAT);
    let mut status = None;
    let mut user_at = None;
    let mut email = None;
    let mut m = p.members()?;
    while let Some(key) = m.next(&mut p)? {
        if key.is("status") {
            status = p.opt_str("status")?;
        } else if key.is("user") {
            user_at = match p.kind()? {
                Kind::Object => {
                    let at = p.pos();
                    p.skip()?;
                    Some(at)
                }
                _ => {
                    p.skip()?;
                    None
                }
            };
        } else if key.is("email") {
            email = match p.scalar()? {
                Scalar::Str(s) => Some(s),
                _ => None,
            };
        } else {
            p.skip()?;
        }
    }
    p.finish()?;

    let status = status.ok_or(DecodeError::InvalidValue { field: "status" })?;
    if status.is("updated") {
        let at = user_at.ok_or(DecodeError::MissingField { field: "user" })?;
        Ok(UpgradeResponse::Updated(read_user(&mut Parser::at(
            body, at, WHAT,
        ))?))
    } else if status.is("confirmation_required") {
        let email = email
            .filter(|e| !e.is_empty())
            .ok_or(DecodeError::MissingField { field: "email" })?;
        Ok(UpgradeResponse::ConfirmationRequired {
            email: email.to_bounded(Field::Email)?,
        })
    } else {
        Err(DecodeError::InvalidValue { field: "status" })
    }
}

// ---------------------------------------------------------------------------
// Error envelope
// ---------------------------------------------------------------------------

/// The parts of an error body that §1.5 reads.
#[derive(Default)]
struct Envelope<'a> {
    code: Option<Scalar<'a>>,
    error: Option<JsonStr<'a>>,
    message: Option<JsonStr<'a>>,
}

fn scan_envelope(body: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    let mut p = Parser::new(body, "error body");
    let mut env = Envelope::default();
    if p.kind()? != Kind::Object {
        // Valid JSON that is not an object carries no fields.
        p.skip()?;
        p.finish()?;
        return Ok(env);
    }
    let mut m = p.members()?;
    while let Some(key) = m.next(&mut p)? {
        if key.is("code") {
            env.code = Some(p.scalar()?);
        } else if key.is("error") {
            env.error = match p.scalar()? {
                Scalar::Str(s) => Some(s),
                _ => None,
            };
        } else if key.is("message") {
            env.message = match p.scalar()? {
                Scalar::Str(s) => Some(s),
                _ => None,
            };
        } else {
            p.skip()?;
        }
    }
    p.finish()?;
    Ok(env)
}

/// Whether `s` matches `^[a-z0-9_.-]{1,64}$` case-insensitively (§1.5).
fn is_slug(s: &JsonStr<'_>) -> bool {
    let mut n = 0usize;
    for c in s.chars() {
        n += 1;
        if n > 64 || !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return false;
        }
    }
    n > 0
}

fn http_code(status: u16) -> String<ERROR_CODE_MAX> {
    // Decimal digits by hand rather than `write!`, which would pull
    // `core::fmt` into firmware for this one string.
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut rest = status;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let mut s = String::new();
    // "http_65535" is 10 bytes; a smaller ERROR_CODE_MAX keeps the prefix.
    for c in "http_".bytes().chain(digits[at..].iter().copied()) {
        if s.push(char::from(c)).is_err() {
            break;
        }
    }
    s
}

/// `String(n)` of JavaScript for ordinary numbers: integers without a
/// fraction (`400`, `1e3` → `1000`), others as Rust prints them.
/// A numeric `code` as JavaScript's `String()` prints an integer. Codes
/// with a fraction or exponent are not codes anyone sends; they fall back to
/// `http_<status>` rather than pulling float formatting into the firmware.
fn number_code(text: &str) -> Option<String<ERROR_CODE_MAX>> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let zeros = digits.bytes().take_while(|&b| b == b'0').count();
    let digits = digits.get(zeros..).unwrap_or_default();
    let mut s = String::new();
    if digits.is_empty() {
        s.push('0').ok()?;
    } else {
        if negative {
            s.push('-').ok()?;
        }
        s.push_str(digits).ok()?;
    }
    Some(s)
}

fn pick_code(status: u16, env: &Envelope<'_>) -> String<ERROR_CODE_MAX> {
    let fallback = || http_code(status);
    match env.code {
        Some(Scalar::Str(s)) if !s.is_empty() => {
            return s.to_bounded(Field::Buffer).unwrap_or_else(|_| fallback());
        }
        Some(Scalar::Num(n)) => return number_code(n).unwrap_or_else(fallback),
        Some(Scalar::Bool(b)) => {
            return bounded(if b { "true" } else { "false" }, Field::Buffer)
                .unwrap_or_else(|_| fallback());
        }
        _ => {}
    }
    match env.error {
        Some(e) if is_slug(&e) => e.to_bounded(Field::Buffer).unwrap_or_else(|_| fallback()),
        _ => fallback(),
    }
}

/// Copies `chars`, cutting at a char boundary and ending with `…` if they
/// do not fit: the one documented truncation of the crate (a human-readable
/// message is still useful cut short; a code or token is not).
fn cut_message(chars: impl Iterator<Item = char>) -> String<ERROR_MESSAGE_MAX> {
    let mut s = String::new();
    for c in chars {
        if s.push(c).is_err() {
            while s.len() + '…'.len_utf8() > ERROR_MESSAGE_MAX {
                if s.pop().is_none() {
                    break;
                }
            }
            let _ = s.push('…');
            break;
        }
    }
    s
}

fn pick_message(reason: &str, env: &Envelope<'_>) -> String<ERROR_MESSAGE_MAX> {
    if let Some(m) = env.message.filter(|m| !m.is_empty()) {
        return cut_message(m.chars());
    }
    if let Some(e) = env.error.filter(|e| !e.is_empty() && !is_slug(e)) {
        return cut_message(e.chars());
    }
    let text = if reason.is_empty() {
        "Request failed"
    } else {
        reason
    };
    cut_message(text.chars())
}

/// Maps a non-2xx response to an [`ApiError`] exactly as docs/protocol.md §1.5.
///
/// `code`: body `code` if present, not `null` and non-empty (a number is
/// stringified, a boolean too, as `String()` would); else body `error` if it
/// is a slug (`^[a-z0-9_.-]{1,64}$`, case-insensitive); else `http_<status>`.
/// A chosen code longer than [`ERROR_CODE_MAX`] also falls back to
/// `http_<status>`: a cut code would be a different code.
///
/// `message`: body `message` if a non-empty string; else body `error` if a
/// non-empty non-slug string (a sentence); else `reason`, the status text
/// the transport reported (the reference's `response.statusText`: the HTTP/1
/// reason phrase, empty over HTTP/2); else `Request failed`. A longer message than
/// [`ERROR_MESSAGE_MAX`] is cut at a char boundary and ends with `…`.
///
/// The body is read only when `content_type_json` (§1.4); a body that is not
/// valid JSON counts as no body at all, like `JSON.parse` failing. Never
/// panics, whatever the bytes.
pub fn decode_api_error(
    status: u16,
    reason: &str,
    content_type_json: bool,
    body: &[u8],
) -> ApiError {
    let env = if content_type_json {
        scan_envelope(body).unwrap_or_default()
    } else {
        Envelope::default()
    };
    let from_backend = env.code.is_some() || env.error.is_some();
    if (300..400).contains(&status) {
        // Never followed (docs/protocol.md §13.3): say so rather than pass
        // off a `Location` as the server's answer.
        return ApiError {
            status,
            code: bounded("redirect_refused", Field::Buffer).unwrap_or_default(),
            // Fits ERROR_MESSAGE_MAX's smallest sensible setting.
            message: bounded(
                "redirect refused: the auth client never follows redirects",
                Field::Buffer,
            )
            .unwrap_or_default(),
            from_backend,
        };
    }
    ApiError {
        status,
        code: pick_code(status, &env),
        message: pick_message(reason, &env),
        from_backend,
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    extern crate std;

    use std::string::String as StdString;
    use std::vec::Vec;
    use std::{format, vec};

    use proptest::prelude::*;

    use super::*;
    use crate::limits::{ACCESS_TOKEN_MAX, CAPTCHA_MAX, REFRESH_TOKEN_MAX};
    use crate::session::Password;

    fn body(b: &Body<'_>) -> StdString {
        let mut buf = [0u8; 4096];
        let n = encode_body(b, &mut buf).unwrap();
        StdString::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn rt(s: &str) -> RefreshToken {
        Secret::new(s, Field::RefreshToken).unwrap()
    }

    // --- bodies -------------------------------------------------------------

    #[test]
    fn refresh_body_is_byte_exact() {
        let t = rt("r1");
        assert_eq!(
            body(&Body::Refresh { refresh_token: &t }),
            r#"{"refresh_token":"r1"}"#
        );
    }

    #[test]
    fn anonymous_signin_with_nothing_is_empty_object() {
        let b = Body::AnonymousSignIn {
            captcha_token: None,
            visitor_id: None,
            user_meta: None,
        };
        assert_eq!(body(&b), "{}");
    }

    #[test]
    fn anonymous_signin_omits_empty_and_short_fields() {
        let captcha: Secret<CAPTCHA_MAX> = Secret::new("", Field::CaptchaToken).unwrap();
        let meta = UserMeta::new();
        let b = Body::AnonymousSignIn {
            captcha_token: Some(&captcha),
            visitor_id: Some("0123456789abcde"), // 15
            user_meta: Some(&meta),
        };
        assert_eq!(body(&b), "{}");
    }

    #[test]
    fn anonymous_signin_with_everything_in_order() {
        let captcha: Secret<CAPTCHA_MAX> = Secret::new("cap", Field::CaptchaToken).unwrap();
        let mut meta = UserMeta::new();
        meta.insert("source", "kiosk").unwrap();
        meta.insert("a", "b").unwrap();
        let b = Body::AnonymousSignIn {
            captcha_token: Some(&captcha),
            visitor_id: Some("0123456789abcdef"), // 16
            user_meta: Some(&meta),
        };
        assert_eq!(
            body(&b),
            r#"{"captcha_token":"cap","visitor_id":"0123456789abcdef","user_meta":{"source":"kiosk","a":"b"}}"#
        );
    }

    #[test]
    fn visitor_id_length_counts_utf16_units_like_js() {
        // 8 astral chars = 16 UTF-16 units (JS length 16), 8 chars.
        let v = "😀😀😀😀😀😀😀😀";
        let b = Body::AnonymousSignIn {
            captcha_token: None,
            visitor_id: Some(v),
            user_meta: None,
        };
        assert_eq!(body(&b), format!(r#"{{"visitor_id":"{v}"}}"#));
    }

    #[test]
    fn upgrade_body_with_and_without_meta() {
        let pw: Password = Secret::new("p\"w", Field::Password).unwrap();
        let b = Body::AnonymousUpgrade {
            email: "a@b.c",
            password: &pw,
            user_meta: None,
        };
        assert_eq!(body(&b), r#"{"email":"a@b.c","password":"p\"w"}"#);
        let mut meta = UserMeta::new();
        meta.insert("k", "v").unwrap();
        let b = Body::AnonymousUpgrade {
            email: "a@b.c",
            password: &pw,
            user_meta: Some(&meta),
        };
        assert_eq!(
            body(&b),
            r#"{"email":"a@b.c","password":"p\"w","user_meta":{"k":"v"}}"#
        );
    }

    #[test]
    fn empty_body_is_zero_bytes() {
        let mut buf = [0u8; 0];
        assert_eq!(encode_body(&Body::Empty, &mut buf), Ok(0));
    }

    #[test]
    fn escaping_matches_json_stringify() {
        let t = rt("q\"b\\s/\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}é€😀\u{2028}");
        assert_eq!(
            body(&Body::Refresh { refresh_token: &t }),
            "{\"refresh_token\":\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}é€😀\u{2028}\"}"
        );
    }

    #[test]
    fn escaping_is_decoded_back_by_serde_json_core() {
        // An independent decoder agrees with our escaping.
        let mut s = StdString::new();
        for b in 0u8..0x80 {
            s.push(char::from(b));
        }
        s.push_str("é€😀");
        let t = rt(&s);
        let mut buf = [0u8; 1024];
        let n = encode_body(&Body::Refresh { refresh_token: &t }, &mut buf).unwrap();
        #[derive(serde::Deserialize)]
        struct R {
            refresh_token: heapless::String<256>,
        }
        let mut scratch = [0u8; 256];
        let (r, _): (R, usize) =
            serde_json_core::from_slice_escaped(&buf[..n], &mut scratch).unwrap();
        assert_eq!(r.refresh_token.as_str(), s);
    }

    #[test]
    fn small_buffer_is_a_buffer_capacity_error_at_every_size() {
        let t = rt("r1");
        let b = Body::Refresh { refresh_token: &t };
        let full = body(&b).len();
        for cap in 0..full {
            let mut buf = vec![0u8; cap];
            assert_eq!(
                encode_body(&b, &mut buf),
                Err(CapacityError {
                    field: Field::Buffer,
                    capacity: cap,
                    len: 0
                })
            );
        }
        let mut buf = vec![0u8; full];
        assert_eq!(encode_body(&b, &mut buf), Ok(full));
    }

    #[test]
    fn writer_u64() {
        for v in [0u64, 7, 10, 1_767_225_600_000, u64::MAX] {
            let mut buf = [0u8; 20];
            let mut w = Writer::new(&mut buf);
            w.u64(v).unwrap();
            let n = w.len();
            assert_eq!(core::str::from_utf8(&buf[..n]).unwrap(), format!("{v}"));
        }
    }

    // --- tokens -------------------------------------------------------------

    const TOKENS: &str = r#"{"access_token":"eyJ.a.b","token_type":"bearer","expires_in":3600,"expires_at":1767225600,"refresh_token":"r1","user":{"id":"u1","email":null,"is_anonymous":true}}"#;

    #[test]
    fn decodes_a_token_response() {
        let t = decode_tokens(TOKENS.as_bytes()).unwrap();
        assert_eq!(t.access_token.expose(), "eyJ.a.b");
        assert_eq!(t.refresh_token.expose(), "r1");
        assert_eq!(t.expires_in, Some(Seconds::Millis(3_600_000)));
        assert_eq!(t.expires_at, Some(Seconds::Millis(1_767_225_600_000)));
        let u = t.user.unwrap();
        assert_eq!(u.id.as_str(), "u1");
        assert_eq!(u.email, None);
        assert!(u.is_anonymous);
    }

    #[test]
    fn token_response_tolerates_order_unknown_keys_whitespace_and_bom() {
        let body = "\u{feff} {\n \"user\" : {\"identities\":[{\"a\":[1,2,{\"b\":null}]}],\"id\":\"u\",\"app_metadata\":{\"provider\":\"anonymous\",\"x\":\"\\\"\\u00e9\"},\"created_at\":\"2026-01-01\"},\n\"weird\":[true,false,null,-1.5e-3,\"\"],\"refresh_token\":\"r\",\t\"expires_at\":null,\"access_token\":\"a\",\"expires_in\":60.5 }\r\n";
        let t = decode_tokens(body.as_bytes()).unwrap();
        assert_eq!(t.access_token.expose(), "a");
        assert_eq!(t.expires_at, None);
        assert_eq!(t.expires_in, Some(Seconds::Millis(60_500)));
        let u = t.user.unwrap();
        assert_eq!(u.id.as_str(), "u");
        assert!(!u.is_anonymous, "absent is_anonymous is false");
    }

    #[test]
    fn unknown_key_with_a_huge_escaped_string_is_skipped() {
        let big = "\\\"x".repeat(10_000);
        let body =
            format!(r#"{{"noise":"{big}","access_token":"a","refresh_token":"r","expires_in":1}}"#);
        assert!(decode_tokens(body.as_bytes()).is_ok());
    }

    #[test]
    fn escaped_strings_decode_to_their_text() {
        let body = r#"{"access_token":"a\/b","refresh_token":"r","expires_in":1,"user":{"id":"u\u0031","email":"jos\u00e9\"q\"@x.io","name":"Ren\u00e9e \ud83d\ude00 \\o/","country":"\u00c9"}}"#;
        let u = decode_tokens(body.as_bytes()).unwrap().user.unwrap();
        assert_eq!(u.id.as_str(), "u1");
        assert_eq!(u.email.as_deref(), Some("josé\"q\"@x.io"));
        assert_eq!(u.name.as_deref(), Some("Renée 😀 \\o/"));
        assert_eq!(u.country.as_deref(), Some("É"));
    }

    #[test]
    fn escaped_keys_are_recognised() {
        let body = r#"{"acc\u0065ss_token":"a","refresh_token":"r","expires_in":1}"#;
        assert_eq!(
            decode_tokens(body.as_bytes())
                .unwrap()
                .access_token
                .expose(),
            "a"
        );
    }

    #[test]
    fn lone_surrogate_becomes_replacement_char() {
        let body = r#"{"id":"a\ud800b\udc00c\ud83d\u0041"}"#;
        assert_eq!(
            decode_user(body.as_bytes()).unwrap().id.as_str(),
            "a\u{fffd}b\u{fffd}c\u{fffd}A"
        );
    }

    #[test]
    fn oversize_access_token_names_its_field() {
        let tok = "x".repeat(5000);
        let body = format!(r#"{{"access_token":"{tok}","refresh_token":"r","expires_in":1}}"#);
        assert_eq!(
            decode_tokens(body.as_bytes()),
            Err(DecodeError::Capacity(CapacityError {
                field: Field::AccessToken,
                capacity: ACCESS_TOKEN_MAX,
                len: 5000
            }))
        );
        // Escaped: the reported length is the unescaped one.
        let tok = "\\u0078".repeat(3000);
        let body = format!(r#"{{"access_token":"{tok}","refresh_token":"r","expires_in":1}}"#);
        assert_eq!(
            decode_tokens(body.as_bytes()),
            Err(DecodeError::Capacity(CapacityError {
                field: Field::AccessToken,
                capacity: ACCESS_TOKEN_MAX,
                len: 3000
            }))
        );
    }

    #[test]
    fn oversize_fields_name_their_field() {
        let long = "y".repeat(1000);
        let cases: [(&str, Field); 6] = [
            ("refresh_token", Field::RefreshToken),
            ("id", Field::UserId),
            ("email", Field::Email),
            ("name", Field::Name),
            ("avatar", Field::Avatar),
            ("country", Field::Country),
        ];
        for (key, field) in cases {
            let body = if key == "refresh_token" {
                format!(r#"{{"access_token":"a","refresh_token":"{long}","expires_in":1}}"#)
            } else {
                let id = if key == "id" {
                    long.clone()
                } else {
                    "u".into()
                };
                let extra = if key == "id" {
                    StdString::new()
                } else {
                    format!(r#","{key}":"{long}""#)
                };
                format!(
                    r#"{{"access_token":"a","refresh_token":"r","expires_in":1,"user":{{"id":"{id}"{extra}}}}}"#
                )
            };
            let user_field = !matches!(key, "access_token" | "refresh_token");
            let result = if user_field {
                // Token replies drop a user they cannot hold (the tokens must
                // not be lost); the strict user decoder names the field.
                let tokens = decode_tokens(body.as_bytes()).unwrap();
                assert_eq!(tokens.user, None, "{key}");
                let start = body.find(r#""user":"#).unwrap() + 7;
                decode_user(&body.as_bytes()[start..body.len() - 1]).map(|_| ())
            } else {
                decode_tokens(body.as_bytes()).map(|_| ())
            };
            match result {
                Err(DecodeError::Capacity(c)) => {
                    assert_eq!(c.field, field, "{key}");
                    assert_eq!(c.len, 1000);
                }
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn missing_and_wrong_typed_fields() {
        let cases: &[(&str, DecodeError)] = &[
            (
                r#"{"refresh_token":"r"}"#,
                DecodeError::MissingField {
                    field: "access_token",
                },
            ),
            (
                r#"{"access_token":null,"refresh_token":"r"}"#,
                DecodeError::MissingField {
                    field: "access_token",
                },
            ),
            (
                r#"{"access_token":"a"}"#,
                DecodeError::MissingField {
                    field: "refresh_token",
                },
            ),
            (
                r#"{"access_token":"","refresh_token":"r"}"#,
                DecodeError::InvalidValue {
                    field: "access_token",
                },
            ),
            (
                r#"{"access_token":"a","refresh_token":""}"#,
                DecodeError::InvalidValue {
                    field: "refresh_token",
                },
            ),
            (
                r#"{"access_token":1,"refresh_token":"r"}"#,
                DecodeError::InvalidValue {
                    field: "access_token",
                },
            ),
            (
                r#"{"access_token":"a","refresh_token":["r"]}"#,
                DecodeError::InvalidValue {
                    field: "refresh_token",
                },
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","expires_in":"3600"}"#,
                DecodeError::InvalidValue {
                    field: "expires_in",
                },
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","expires_at":true}"#,
                DecodeError::InvalidValue {
                    field: "expires_at",
                },
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","user":"u"}"#,
                DecodeError::InvalidValue { field: "user" },
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","user":{}}"#,
                DecodeError::MissingField { field: "user.id" },
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","user":{"id":null}}"#,
                DecodeError::MissingField { field: "user.id" },
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","user":{"id":7}}"#,
                DecodeError::InvalidValue { field: "user.id" },
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","user":{"id":"u","email":false}}"#,
                DecodeError::InvalidValue {
                    field: "user.email",
                },
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","user":{"id":"u","is_anonymous":"yes"}}"#,
                DecodeError::InvalidValue {
                    field: "user.is_anonymous",
                },
            ),
        ];
        for (body, want) in cases {
            match body.find(r#""user":"#) {
                // A bad user never costs the tokens; the user decoder itself
                // reports what is wrong with it. (A `user` that is not even an
                // object is a malformed reply.)
                Some(at) if *want != (DecodeError::InvalidValue { field: "user" }) => {
                    let tokens = decode_tokens(body.as_bytes()).unwrap();
                    assert_eq!(tokens.user, None, "{body}");
                    let user = &body.as_bytes()[at + 7..body.len() - 1];
                    assert_eq!(decode_user(user).as_ref().err(), Some(want), "{body}");
                }
                _ => assert_eq!(
                    decode_tokens(body.as_bytes()).as_ref().err(),
                    Some(want),
                    "{body}"
                ),
            }
        }
    }

    #[test]
    fn user_null_or_absent_is_none_and_empty_email_is_none() {
        let t = decode_tokens(br#"{"access_token":"a","refresh_token":"r","user":null}"#).unwrap();
        assert_eq!(t.user, None);
        let t = decode_tokens(br#"{"access_token":"a","refresh_token":"r"}"#).unwrap();
        assert_eq!(t.user, None);
        let u = decode_user(
            br#"{"id":"","email":"","name":null,"avatar":"","country":null,"is_anonymous":null}"#,
        )
        .unwrap();
        assert_eq!(u, User::default());
    }

    #[test]
    fn malformed_bodies() {
        let bad: &[&[u8]] = &[
            b"",
            b"   ",
            b"null",
            b"[]",
            b"\"str\"",
            b"{",
            b"{\"access_token\":\"a\",}",
            b"{\"access_token\" \"a\"}",
            b"{\"access_token\":\"a\" \"refresh_token\":\"r\"}",
            b"{\"access_token\":\"a\",\"refresh_token\":\"r\"} x",
            b"{\"access_token\":\"a\",\"refresh_token\":\"r\"}{}",
            b"{\"access_token\":\"a\nb\",\"refresh_token\":\"r\"}",
            b"{\"access_token\":\"a\\xb\",\"refresh_token\":\"r\"}",
            b"{\"access_token\":\"a\\u12G4\",\"refresh_token\":\"r\"}",
            b"{\"access_token\":\"\xff\",\"refresh_token\":\"r\"}",
            b"{\"x\":01,\"access_token\":\"a\",\"refresh_token\":\"r\"}",
            b"{\"x\":+1,\"access_token\":\"a\",\"refresh_token\":\"r\"}",
            b"{\"x\":1.,\"access_token\":\"a\",\"refresh_token\":\"r\"}",
            b"{\"x\":1e,\"access_token\":\"a\",\"refresh_token\":\"r\"}",
            b"{\"x\":NaN,\"access_token\":\"a\",\"refresh_token\":\"r\"}",
            b"{\"x\":tru,\"access_token\":\"a\",\"refresh_token\":\"r\"}",
            b"{\"x\":[1,],\"access_token\":\"a\",\"refresh_token\":\"r\"}",
            b"{\"x\":[1 2],\"access_token\":\"a\",\"refresh_token\":\"r\"}",
            b"{'access_token':'a'}",
            b"{access_token:\"a\"}",
        ];
        for b in bad {
            assert_eq!(
                decode_tokens(b),
                Err(DecodeError::Malformed {
                    what: "token response"
                }),
                "{}",
                StdString::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn syntax_is_checked_before_capacity() {
        let tok = "x".repeat(5000);
        let body = format!(r#"{{"access_token":"{tok}","refresh_token":"r","expires_in":1"#);
        assert_eq!(
            decode_tokens(body.as_bytes()),
            Err(DecodeError::Malformed {
                what: "token response"
            })
        );
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflowing_the_stack() {
        let mut body = StdString::from(r#"{"access_token":"a","refresh_token":"r","x":"#);
        body.push_str(&"[".repeat(100_000));
        body.push_str(&"]".repeat(100_000));
        body.push('}');
        assert!(matches!(
            decode_tokens(body.as_bytes()),
            Err(DecodeError::Malformed { .. })
        ));
        // Within the limit it is fine.
        let mut body = StdString::from(r#"{"access_token":"a","refresh_token":"r","x":"#);
        body.push_str(&"[{\"a\":".repeat(15));
        body.push('1');
        body.push_str(&"}]".repeat(15));
        body.push('}');
        assert!(decode_tokens(body.as_bytes()).is_ok());
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        let t = decode_tokens(br#"{"access_token":"a","refresh_token":"r","access_token":"b"}"#)
            .unwrap();
        assert_eq!(t.access_token.expose(), "b");
    }

    // --- expiry -------------------------------------------------------------

    fn tr(expires_in: Option<f64>, expires_at: Option<f64>) -> TokenResponse {
        // Tests speak in floats; the decoder's fixed-point result is what a
        // float would floor to.
        let secs = |v: f64| {
            if v.is_finite() && v >= 0.0 && v * 1000.0 < 1.8e19 {
                Seconds::Millis((v * 1000.0) as u64)
            } else {
                Seconds::Unusable
            }
        };
        TokenResponse {
            access_token: Secret::new("a", Field::AccessToken).unwrap(),
            refresh_token: rt("r"),
            expires_in: expires_in.map(secs),
            expires_at: expires_at.map(secs),
            user: None,
        }
    }

    #[test]
    fn numbers_are_read_exactly_without_float_parsing() {
        assert_eq!(scaled_decimal("3600", 3), Some(3_600_000));
        assert_eq!(scaled_decimal("0.5", 3), Some(500));
        assert_eq!(scaled_decimal("1767225600.25", 3), Some(1_767_225_600_250));
        assert_eq!(scaled_decimal("1.7672256e9", 3), Some(1_767_225_600_000));
        assert_eq!(scaled_decimal("36E2", 0), Some(3600));
        assert_eq!(scaled_decimal("1e-3", 3), Some(1));
        assert_eq!(scaled_decimal("0.0009", 3), Some(0));
        assert_eq!(scaled_decimal("-0", 3), Some(0));
        assert_eq!(scaled_decimal("-1", 3), None);
        assert_eq!(scaled_decimal("18446744073709551615", 0), Some(u64::MAX));
        assert_eq!(scaled_decimal("18446744073709551616", 0), None);
        assert_eq!(scaled_decimal("1e300", 0), None);
        assert_eq!(scaled_decimal("1e-300", 0), Some(0));
        assert_eq!(scaled_decimal("", 0), None);
        assert_eq!(scaled_decimal("1.", 0), Some(1));
        assert_eq!(scaled_decimal("1e", 0), None);
        assert_eq!(scaled_decimal("12x", 0), None);
        assert_eq!(
            scaled_decimal("123456789012345678901234567890123456789", 0),
            None
        );
        assert_eq!(
            scaled_decimal("0.123456789012345678901234567890123456789", 3),
            Some(123)
        );
    }

    #[test]
    fn expiry_prefers_expires_in_on_the_local_clock() {
        // Device clock in 1970: expires_at would be decades away.
        let now = Instant(5_000);
        assert_eq!(
            tr(Some(3600.0), Some(1_767_225_600.0)).expiry(now),
            Ok(Instant(3_605_000))
        );
        assert_eq!(tr(Some(0.5), None).expiry(now), Ok(Instant(5_500)));
        assert_eq!(tr(Some(0.0), None).expiry(now), Ok(now));
    }

    #[test]
    fn expiry_falls_back_to_expires_at_seconds() {
        let now = Instant(1_767_225_000_000);
        assert_eq!(
            tr(None, Some(1_767_225_600.0)).expiry(now),
            Ok(Instant(1_767_225_600_000))
        );
        assert_eq!(
            tr(None, Some(1_767_225_600.25)).expiry(now),
            Ok(Instant(1_767_225_600_250))
        );
        // 0 is honoured as-is (an expired token; the machine refreshes).
        assert_eq!(tr(None, Some(0.0)).expiry(now), Ok(Instant(0)));
        // An unusable expires_in falls back too.
        assert_eq!(
            tr(Some(-1.0), Some(1_767_225_600.0)).expiry(now),
            Ok(Instant(1_767_225_600_000))
        );
    }

    #[test]
    fn expiry_errors() {
        let now = Instant(1_767_225_000_000);
        assert_eq!(
            tr(None, None).expiry(now),
            Err(DecodeError::MissingField {
                field: "expires_in"
            })
        );
        for bad in [f64::NAN, -1.0, f64::INFINITY, 1e300] {
            assert_eq!(
                tr(Some(bad), None).expiry(now),
                Err(DecodeError::InvalidValue {
                    field: "expires_in"
                })
            );
            assert_eq!(
                tr(Some(bad), Some(bad)).expiry(now),
                Err(DecodeError::InvalidValue {
                    field: "expires_in"
                })
            );
            assert_eq!(
                tr(None, Some(bad)).expiry(now),
                Err(DecodeError::InvalidValue {
                    field: "expires_at"
                })
            );
        }
        // A lifetime over ten years is absurd; as an absolute date it is
        // merely in the past (and the fallback is used).
        let eleven_years = 11.0 * 365.25 * 86_400.0;
        assert_eq!(
            tr(Some(eleven_years), None).expiry(now),
            Err(DecodeError::InvalidValue {
                field: "expires_in"
            })
        );
        assert_eq!(
            tr(Some(eleven_years), Some(eleven_years)).expiry(now),
            Ok(Instant(347_133_600_000))
        );
        // ms sent where seconds are expected: absurd.
        assert_eq!(
            tr(None, Some(1_767_225_600_000.0)).expiry(now),
            Err(DecodeError::InvalidValue {
                field: "expires_at"
            })
        );
    }

    #[test]
    fn expiry_from_decoded_response() {
        let t = decode_tokens(TOKENS.as_bytes()).unwrap();
        assert_eq!(t.expiry(Instant(1000)), Ok(Instant(3_601_000)));
    }

    // --- upgrade ------------------------------------------------------------

    #[test]
    fn upgrade_updated() {
        let r =
            decode_upgrade(br#"{"status":"updated","user":{"id":"u1","email":"a@b.c"}}"#).unwrap();
        let UpgradeResponse::Updated(u) = r else {
            panic!()
        };
        assert_eq!(u.id.as_str(), "u1");
        assert_eq!(u.email.as_deref(), Some("a@b.c"));
        assert!(!u.is_anonymous);
        // status after the user, extra keys.
        let r = decode_upgrade(br#"{"user":{"id":"u1","email":"a@b.c","is_anonymous":false,"x":[]},"ok":true,"status":"updated"}"#)
            .unwrap();
        assert!(matches!(r, UpgradeResponse::Updated(_)));
    }

    #[test]
    fn upgrade_confirmation_required() {
        let r = decode_upgrade(
            br#"{"status":"confirmation_required","email":"a\u0040b.c","user":"junk"}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            UpgradeResponse::ConfirmationRequired {
                email: bounded("a@b.c", Field::Email).unwrap()
            }
        );
    }

    #[test]
    fn upgrade_errors() {
        let cases: &[(&str, DecodeError)] = &[
            (
                r#"{"user":{"id":"u"}}"#,
                DecodeError::InvalidValue { field: "status" },
            ),
            (
                r#"{"status":null,"user":{"id":"u"}}"#,
                DecodeError::InvalidValue { field: "status" },
            ),
            (
                r#"{"status":"done","user":{"id":"u"}}"#,
                DecodeError::InvalidValue { field: "status" },
            ),
            (
                r#"{"status":1}"#,
                DecodeError::InvalidValue { field: "status" },
            ),
            (
                r#"{"status":"updated"}"#,
                DecodeError::MissingField { field: "user" },
            ),
            (
                r#"{"status":"updated","user":null}"#,
                DecodeError::MissingField { field: "user" },
            ),
            (
                r#"{"status":"updated","user":{"email":"a@b.c"}}"#,
                DecodeError::MissingField { field: "user.id" },
            ),
            (
                r#"{"status":"confirmation_required"}"#,
                DecodeError::MissingField { field: "email" },
            ),
            (
                r#"{"status":"confirmation_required","email":""}"#,
                DecodeError::MissingField { field: "email" },
            ),
            (
                r#"{"status":"confirmation_required","email":null}"#,
                DecodeError::MissingField { field: "email" },
            ),
            (
                r#"{"status":"updated""#,
                DecodeError::Malformed {
                    what: "upgrade response",
                },
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                decode_upgrade(body.as_bytes()).as_ref().err(),
                Some(want),
                "{body}"
            );
        }
        let long = "e".repeat(300);
        let body = format!(r#"{{"status":"confirmation_required","email":"{long}"}}"#);
        assert!(matches!(
            decode_upgrade(body.as_bytes()),
            Err(DecodeError::Capacity(CapacityError {
                field: Field::Email,
                len: 300,
                ..
            }))
        ));
    }

    // --- error envelope -----------------------------------------------------

    /// The status text an HTTP/1.1 server (or `fetch`) would report.
    fn status_text(status: u16) -> &'static str {
        match status {
            400 => "Bad Request",
            401 => "Unauthorized",
            422 => "Unprocessable Entity",
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            _ => "",
        }
    }

    fn err(status: u16, body: &str) -> (StdString, StdString) {
        let e = decode_api_error(status, status_text(status), true, body.as_bytes());
        assert_eq!(e.status, status);
        (e.code.as_str().into(), e.message.as_str().into())
    }

    fn pair(c: &str, m: &str) -> (StdString, StdString) {
        (c.into(), m.into())
    }

    #[test]
    fn api_error_examples_of_the_protocol() {
        assert_eq!(
            err(
                400,
                r#"{"code":"invalid_price","message":"Unknown price id"}"#
            ),
            pair("invalid_price", "Unknown price id")
        );
        assert_eq!(
            err(401, r#"{"error":"invalid_token"}"#),
            pair("invalid_token", "Unauthorized")
        );
        assert_eq!(
            err(400, r#"{"error":"Invalid successUrl format. Use https."}"#),
            pair("http_400", "Invalid successUrl format. Use https.")
        );
        assert_eq!(
            err(
                401,
                r#"{"error":"unauthorized","code":"invalid_refresh_token"}"#
            ),
            pair("invalid_refresh_token", "Unauthorized")
        );
        assert_eq!(err(503, ""), pair("http_503", "Service Unavailable"));
        assert_eq!(
            err(
                403,
                r#"{"code":"anonymous_disabled","message":"Anonymous sign-in is disabled"}"#
            )
            .0,
            "anonymous_disabled"
        );
    }

    #[test]
    fn api_error_code_rules() {
        assert_eq!(err(400, r#"{"code":42}"#).0, "42");
        assert_eq!(err(400, r#"{"code":-7}"#).0, "-7");
        assert_eq!(err(400, r#"{"code":007}"#).0, "http_400", "not JSON");
        // No float formatting in the core: such codes fall back.
        assert_eq!(err(400, r#"{"code":4.2e1}"#).0, "http_400");
        assert_eq!(err(400, r#"{"code":-1.5}"#).0, "http_400");
        assert_eq!(err(400, r#"{"code":true}"#).0, "true");
        assert_eq!(
            err(400, r#"{"code":null,"error":"rate_limited"}"#).0,
            "rate_limited"
        );
        assert_eq!(
            err(400, r#"{"code":"","error":"Rate.Limited-2"}"#).0,
            "Rate.Limited-2"
        );
        assert_eq!(err(400, r#"{"code":{"x":1},"error":"slug"}"#).0, "slug");
        assert_eq!(err(400, r#"{"code":["x"]}"#).0, "http_400");
        assert_eq!(
            err(429, r#"{"error":"has space"}"#),
            pair("http_429", "has space")
        );
        assert_eq!(
            err(429, r#"{"error":""}"#),
            pair("http_429", "Too Many Requests")
        );
        // Longer than ERROR_CODE_MAX (40): not cut, replaced.
        let long = "a".repeat(ERROR_CODE_MAX + 1);
        assert_eq!(err(400, &format!(r#"{{"code":"{long}"}}"#)).0, "http_400");
        assert_eq!(
            err(400, &format!(r#"{{"error":"{long}"}}"#)),
            pair("http_400", "Bad Request")
        );
        let fits = "a".repeat(ERROR_CODE_MAX);
        assert_eq!(err(400, &format!(r#"{{"code":"{fits}"}}"#)).0, fits);
        // 65 chars is not a slug: it is a message.
        let s65 = "b".repeat(65);
        assert_eq!(
            err(400, &format!(r#"{{"error":"{s65}"}}"#)),
            pair("http_400", &s65)
        );
        // Escaped code.
        assert_eq!(err(400, r#"{"code":"a\u005fb"}"#).0, "a_b");
    }

    #[test]
    fn api_error_message_rules() {
        assert_eq!(
            err(500, r#"{"message":"","error":"Boom happened"}"#).1,
            "Boom happened"
        );
        assert_eq!(
            err(500, r#"{"message":"m","error":"Boom happened"}"#).1,
            "m"
        );
        assert_eq!(err(500, r#"{"message":5}"#).1, "Internal Server Error");
        assert_eq!(err(500, r#"{"message":"caf\u00e9 \"x\""}"#).1, "café \"x\"");
        assert_eq!(err(599, "{}"), pair("http_599", "Request failed"));
        assert_eq!(err(418, "[1,2]"), pair("http_418", "Request failed"));
        assert_eq!(err(422, "\"just a string\"").1, "Unprocessable Entity");
    }

    #[test]
    fn api_error_long_message_is_cut_with_ellipsis() {
        let m = "é".repeat(100); // 200 bytes
        let (_, got) = err(400, &format!(r#"{{"message":"{m}"}}"#));
        assert!(got.len() <= ERROR_MESSAGE_MAX);
        assert!(got.ends_with('…'));
        assert_eq!(got, format!("{}…", "é".repeat((ERROR_MESSAGE_MAX - 3) / 2)));
        // Exactly fitting: untouched.
        let m = "x".repeat(ERROR_MESSAGE_MAX);
        assert_eq!(err(400, &format!(r#"{{"message":"{m}"}}"#)).1, m);
        let m = "x".repeat(ERROR_MESSAGE_MAX + 1);
        assert_eq!(
            err(400, &format!(r#"{{"message":"{m}"}}"#)).1,
            format!("{}…", "x".repeat(ERROR_MESSAGE_MAX - 3))
        );
    }

    #[test]
    fn api_error_message_falls_back_to_the_transports_status_text() {
        // The server's own reason phrase, verbatim (the reference's
        // `statusText`), not a table of standard ones.
        let e = decode_api_error(503, "Down For Maintenance", false, b"");
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("http_503", "Down For Maintenance")
        );
        // No status text (HTTP/2, or an HTTP/1.1 status line without one).
        let e = decode_api_error(503, "", false, b"");
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("http_503", "Request failed")
        );
        // A body message still wins over it.
        let e = decode_api_error(503, "Service Unavailable", true, br#"{"message":"later"}"#);
        assert_eq!(e.message.as_str(), "later");
    }

    #[test]
    fn api_error_ignores_body_unless_json() {
        let e = decode_api_error(
            401,
            "Unauthorized",
            false,
            br#"{"code":"invalid_refresh_token","message":"x"}"#,
        );
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("http_401", "Unauthorized")
        );
        // Not the backend's envelope (a proxy, a captive portal): says
        // nothing about the token (§13.5).
        assert!(!e.is_dead_token());
        let backend = decode_api_error(401, "", true, br#"{"error":"invalid_token"}"#);
        assert!(backend.is_dead_token());
        let portal = decode_api_error(401, "Unauthorized", true, br#"{"login":"required"}"#);
        assert!(!portal.is_dead_token(), "JSON, but no error envelope");
    }

    #[test]
    fn a_redirect_is_refused_with_a_message_that_says_so() {
        for status in [301, 302, 303, 307, 308] {
            let e = decode_api_error(status, "Moved", false, b"");
            assert_eq!(e.code.as_str(), "redirect_refused");
            assert!(e.message.contains("redirect"), "{}", e.message);
            assert!(e.is_redirect() && !e.is_dead_token());
        }
    }

    #[test]
    fn api_error_broken_json_counts_as_no_body() {
        // Fields before the syntax error are not used, as JSON.parse fails
        // as a whole.
        assert_eq!(
            err(400, r#"{"code":"invalid_grant","message":"x""#),
            pair("http_400", "Bad Request")
        );
        assert_eq!(
            err(502, "<html>Bad gateway</html>"),
            pair("http_502", "Bad Gateway")
        );
        let e = decode_api_error(400, "", true, br#"{"error":"invalid_grant"}"#);
        assert!(e.is_dead_token());
    }

    // --- no panic, ever -----------------------------------------------------

    fn json_ish() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(&b"{"[..]),
            Just(&b"}"[..]),
            Just(&b"["[..]),
            Just(&b"]"[..]),
            Just(&b","[..]),
            Just(&b":"[..]),
            Just(&b"\""[..]),
            Just(&b"\\"[..]),
            Just(&b"\\u"[..]),
            Just(&b"d83d"[..]),
            Just(&b"null"[..]),
            Just(&b"true"[..]),
            Just(&b"-1.5e3"[..]),
            Just(&b"\"access_token\""[..]),
            Just(&b"\"refresh_token\""[..]),
            Just(&b"\"user\""[..]),
            Just(&b"\"id\""[..]),
            Just(&b"\"status\""[..]),
            Just(&b"\"updated\""[..]),
            Just(&b"\"code\""[..]),
            Just(&b"\"message\""[..]),
            Just(&b"\"error\""[..]),
            Just(&b"\xc3\xa9"[..]),
            Just(&b"\xff"[..]),
            Just(&b" "[..]),
        ];
        proptest::collection::vec(piece, 0..60).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512), status in any::<u16>(), json in any::<bool>()) {
            let _ = decode_tokens(&bytes);
            let _ = decode_upgrade(&bytes);
            let _ = decode_user(&bytes);
            let e = decode_api_error(status, "Whatever", json, &bytes);
            prop_assert!(e.message.len() <= ERROR_MESSAGE_MAX);
            prop_assert!(!e.code.is_empty());
        }

        #[test]
        fn decoders_never_panic_on_json_ish_bytes(bytes in json_ish(), status in any::<u16>()) {
            let _ = decode_tokens(&bytes);
            let _ = decode_upgrade(&bytes);
            let _ = decode_user(&bytes);
            let _ = decode_api_error(status, "", true, &bytes);
        }

        #[test]
        fn any_string_round_trips_through_our_writer_and_reader(s in "\\PC{0,64}|[\\x00-\\x7f]{0,64}") {
            let t = rt(&s);
            let mut buf = [0u8; 1024];
            let n = encode_body(&Body::Refresh { refresh_token: &t }, &mut buf).unwrap();
            let mut p = Parser::new(&buf[..n], "t");
            let mut got = None;
            let mut m = p.members().unwrap();
            while let Some(k) = m.next(&mut p).unwrap() {
                assert!(k.is("refresh_token"));
                got = p.opt_str("refresh_token").unwrap();
            }
            p.finish().unwrap();
            let got: heapless::String<REFRESH_TOKEN_MAX> = got.unwrap().to_bounded(Field::RefreshToken).unwrap();
            prop_assert_eq!(got.as_str(), s.as_str());
        }

        #[test]
        fn message_cut_is_always_valid_and_bounded(s in "\\PC{0,200}") {
            let m = cut_message(s.chars());
            prop_assert!(m.len() <= ERROR_MESSAGE_MAX);
            if s.len() <= ERROR_MESSAGE_MAX {
                prop_assert_eq!(m.as_str(), s.as_str());
            } else {
                prop_assert!(m.ends_with('…'));
                prop_assert!(s.starts_with(m.trim_end_matches('…')));
            }
        }
    }
}
