//! The two durable records (docs/protocol.md §6.2), in two formats.
//!
//! - [`StoreFormat::ReferenceJson`] is byte-compatible with the reference
//!   client, so an app that switches SDKs (or shares `chrome.storage` with a
//!   JS context) keeps its signed-in users: the session is the JSON
//!   AuthSession of §2.3 with `expires_at` in milliseconds, the anonymous
//!   refresh token is the raw token string.
//! - [`StoreFormat::Postcard`] is for flash: a version byte, then postcard.
//!   Roughly a third of the JSON's size, and versioned so a later layout can
//!   be told apart from this one instead of being misread.
//!
//! Decoders accept what the reference writes and reject everything else with
//! a typed [`DecodeError`]; they never panic and never allocate.

use serde::{Deserialize, Serialize};

use crate::error::{CapacityError, DecodeError, Field};
use crate::limits::USER_JSON_MAX;
use crate::secret::Secret;
use crate::session::{RefreshToken, Session, User};
use crate::storage::StoreFormat;
use crate::time::Instant;

use super::json::{Full, JsonStr, Parser, UserParts, Writer, number_to_u64, read_user_parts};

/// First byte of every postcard record written by this version.
pub const POSTCARD_VERSION: u8 = 1;

const WHAT_SESSION: &str = "session record";
const WHAT_ANON: &str = "anonymous refresh-token record";

fn buffer_full(capacity: usize) -> CapacityError {
    CapacityError {
        field: Field::Buffer,
        capacity,
        len: 0,
    }
}

// ---------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------

/// The postcard layout of a session, version 1. Borrowed strings: encoding
/// copies nothing, decoding copies each field once into its bounded home
/// (which names the field if it is too long).
#[derive(Serialize, Deserialize)]
struct SessionV1<'a> {
    access_token: &'a str,
    refresh_token: &'a str,
    expires_at: u64,
    #[serde(borrow)]
    user: UserV1<'a>,
}

#[derive(Serialize, Deserialize)]
struct UserV1<'a> {
    id: &'a str,
    #[serde(borrow)]
    email: Option<&'a str>,
    is_anonymous: bool,
    #[serde(borrow)]
    name: Option<&'a str>,
    #[serde(borrow)]
    avatar: Option<&'a str>,
    #[serde(borrow)]
    country: Option<&'a str>,
}

/// Encodes the session record into `buf` and returns its length.
///
/// `ReferenceJson` writes exactly the reference's layout:
/// `{"access_token":…,"refresh_token":…,"expires_at":<integer ms>,"user":{"id":…,"email":null|…,"is_anonymous":…}}`,
/// with `"name"`, `"avatar"`, `"country"` appended to the user only when
/// set (an empty email is written as `null`, as it decodes). `Postcard`
/// writes [`POSTCARD_VERSION`] then the postcard of the session.
///
/// A `buf` too small gives `CapacityError { field: Field::Buffer, capacity:
/// buf.len(), len: 0 }`.
pub fn encode_session(
    s: &Session,
    format: StoreFormat,
    buf: &mut [u8],
) -> Result<usize, CapacityError> {
    let capacity = buf.len();
    match format {
        StoreFormat::ReferenceJson => {
            let mut w = Writer::new(buf);
            write_session_json(s, &mut w).map_err(|Full| buffer_full(capacity))?;
            Ok(w.len())
        }
        StoreFormat::Postcard => {
            let u = &s.user;
            let mirror = SessionV1 {
                access_token: s.access_token.expose(),
                refresh_token: s.refresh_token.expose(),
                expires_at: s.expires_at.as_millis(),
                user: UserV1 {
                    id: u.id.as_str(),
                    email: u.email.as_deref(),
                    is_anonymous: u.is_anonymous,
                    name: u.name.as_deref(),
                    avatar: u.avatar.as_deref(),
                    country: u.country.as_deref(),
                },
            };
            postcard_with_version(&mirror, buf)
        }
    }
}

fn postcard_with_version<T: Serialize>(value: &T, buf: &mut [u8]) -> Result<usize, CapacityError> {
    let capacity = buf.len();
    let (version, rest) = buf.split_first_mut().ok_or(buffer_full(capacity))?;
    *version = POSTCARD_VERSION;
    let used = postcard::to_slice(value, rest)
        .map_err(|_| buffer_full(capacity))?
        .len();
    Ok(used + 1)
}

fn write_session_json(s: &Session, w: &mut Writer<'_>) -> Result<(), Full> {
    let mut o = w.object()?;
    o.key(w, "access_token")?;
    w.string(s.access_token.expose())?;
    o.key(w, "refresh_token")?;
    w.string(s.refresh_token.expose())?;
    o.key(w, "expires_at")?;
    w.u64(s.expires_at.as_millis())?;
    o.key(w, "user")?;
    write_user_json(&s.user, w)?;
    o.end(w)
}

/// The session's user: the server's own spelling when the machine kept it
/// (`USER_JSON_MAX` > 0) and it still says what the known fields say;
/// otherwise the known fields, followed by the keys of the server's object
/// the core does not know.
fn write_user_json(u: &User, w: &mut Writer<'_>) -> Result<(), Full> {
    let kept = if USER_JSON_MAX != 0 {
        server_user::parse(u)
    } else {
        None
    };
    if let Some((parts, true)) = &kept {
        return w.raw(parts.json.as_bytes());
    }
    let mut uo = w.object()?;
    uo.key(w, "id")?;
    w.string(u.id.as_str())?;
    uo.key(w, "email")?;
    match u.email.as_deref().filter(|e| !e.is_empty()) {
        Some(e) => w.string(e)?,
        None => w.raw(b"null")?,
    }
    uo.key(w, "is_anonymous")?;
    w.bool(u.is_anonymous)?;
    for (key, value) in [
        ("name", &u.name as &dyn OptStr),
        ("avatar", &u.avatar),
        ("country", &u.country),
    ] {
        if let Some(v) = value.get() {
            uo.key(w, key)?;
            w.string(v)?;
        }
    }
    if let Some((parts, false)) = &kept {
        server_user::write_unknown(parts.json, &mut uo, w)?;
    }
    uo.end(w)
}

/// The server's spelling of a user (`User::server_json`).
mod server_user {
    use super::{Full, JsonStr, Parser, User, UserParts, Writer, read_user_parts};
    use crate::codec::json::Obj;

    const WHAT: &str = "stored user";

    /// Keys the record writes from the known fields.
    const KNOWN: [&str; 6] = ["id", "email", "is_anonymous", "name", "avatar", "country"];

    /// The kept text's fields, and whether they equal `u`'s known fields
    /// (then the text is written as is). `None` when nothing was kept.
    pub(super) fn parse(u: &User) -> Option<(UserParts<'_>, bool)> {
        if u.server_json.is_empty() {
            return None;
        }
        let parts = read_user_parts(&mut Parser::new(u.server_json.as_bytes(), WHAT)).ok()?;
        let same = parts.id.is(&u.id)
            && same(parts.email, u.email.as_deref())
            && parts.is_anonymous == u.is_anonymous
            && same(parts.name, u.name.as_deref())
            && same(parts.avatar, u.avatar.as_deref())
            && same(parts.country, u.country.as_deref());
        Some((parts, same))
    }

    /// An optional field as a JSON record reads it back (`""` is `None`).
    fn same(text: Option<JsonStr<'_>>, field: Option<&str>) -> bool {
        match (
            text.filter(|t| !t.is_empty()),
            field.filter(|f| !f.is_empty()),
        ) {
            (None, None) => true,
            (Some(t), Some(f)) => t.is(f),
            _ => false,
        }
    }

    /// Copies the members of `json` (already validated by [`parse`]) whose
    /// keys are not [`KNOWN`], spelled as they came.
    pub(super) fn write_unknown(json: &str, uo: &mut Obj, w: &mut Writer<'_>) -> Result<(), Full> {
        let mut p = Parser::new(json.as_bytes(), WHAT);
        let Ok(mut m) = p.members() else {
            return Ok(());
        };
        while let Ok(Some(key)) = m.next(&mut p) {
            let start = p.value_start();
            if p.skip().is_err() {
                break;
            }
            if !KNOWN.iter().any(|k| key.is(k)) {
                uo.key_escaped(w, key.escaped_text())?;
                w.raw(p.text(start, p.pos()).as_bytes())?;
            }
        }
        Ok(())
    }
}

/// An optional bounded string of any capacity, seen as `Option<&str>`.
trait OptStr {
    fn get(&self) -> Option<&str>;
}

impl<const N: usize> OptStr for Option<heapless::String<N>> {
    fn get(&self) -> Option<&str> {
        self.as_deref()
    }
}

/// Decodes a session record written by [`encode_session`] or, for
/// `ReferenceJson`, by the reference client.
///
/// `ReferenceJson` applies the hydrate validation of §6.4: `access_token`
/// and `refresh_token` must be strings (empty ones are accepted, as the
/// reference does), `expires_at` a number (integers are exact; a float is
/// floored; negative → `InvalidValue`; `null`/absent → `MissingField`), and
/// `user` an object with a string `id` (an **empty** id is accepted: it is
/// what the reference stores for resumed anonymous sessions, §12.1). Other
/// user fields are optional (`email` `null`/`""` → `None`, `is_anonymous`
/// absent → `false`); extra keys anywhere are ignored.
///
/// `Postcard`: the first byte must be [`POSTCARD_VERSION`] (else
/// `InvalidValue { field: "format version" }`), and the postcard must fill
/// the rest exactly (truncated or trailing bytes → `Malformed`).
///
/// Oversize fields are `Capacity` naming the field in both formats.
pub fn decode_session(bytes: &[u8], format: StoreFormat) -> Result<Session, DecodeError> {
    let mut session = Session::blank();
    decode_session_into(bytes, format, &mut session)?;
    Ok(session)
}

/// [`decode_session`] in place: `out` is overwritten (and half-written on
/// error, so it must be scratch or a slot the caller empties on failure).
/// Restore decodes straight into the machine's session slot this way.
pub(crate) fn decode_session_into(
    bytes: &[u8],
    format: StoreFormat,
    out: &mut Session,
) -> Result<(), DecodeError> {
    let json = format == StoreFormat::ReferenceJson;
    let (access, refresh, expires_at, user) = if json {
        scan_session_json(bytes)?
    } else {
        let body = postcard_body(bytes, WHAT_SESSION)?;
        let (m, rest) = postcard::take_from_bytes::<SessionV1<'_>>(body)
            .map_err(|_| DecodeError::Malformed { what: WHAT_SESSION })?;
        if !rest.is_empty() {
            return Err(DecodeError::Malformed { what: WHAT_SESSION });
        }
        let u = m.user;
        (
            JsonStr::plain(m.access_token),
            JsonStr::plain(m.refresh_token),
            m.expires_at,
            UserParts {
                id: JsonStr::plain(u.id),
                email: opt_plain(u.email),
                is_anonymous: u.is_anonymous,
                name: opt_plain(u.name),
                avatar: opt_plain(u.avatar),
                country: opt_plain(u.country),
                json: "",
            },
        )
    };
    // Which oversize field is reported first differs by format, as it
    // always has: JSON copies the user before the tokens.
    if json {
        user.build_into(&mut out.user, true)?;
    }
    access.unescape_to_secret(&mut out.access_token, Field::AccessToken)?;
    refresh.unescape_to_secret(&mut out.refresh_token, Field::RefreshToken)?;
    if !json {
        user.build_into(&mut out.user, false)?;
    }
    out.expires_at = Instant(expires_at);
    Ok(())
}

/// An optional postcard string, to be copied like a JSON one.
fn opt_plain(v: Option<&str>) -> Option<JsonStr<'_>> {
    v.map(JsonStr::plain)
}

/// Checks the version byte and returns what follows it.
fn postcard_body<'a>(bytes: &'a [u8], what: &'static str) -> Result<&'a [u8], DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Malformed { what }),
        Some((&POSTCARD_VERSION, rest)) => Ok(rest),
        Some(_) => Err(DecodeError::InvalidValue {
            field: "format version",
        }),
    }
}

fn required_str<'a>(
    s: Option<JsonStr<'a>>,
    field: &'static str,
) -> Result<JsonStr<'a>, DecodeError> {
    s.ok_or(DecodeError::MissingField { field })
}

/// The syntax half of a `ReferenceJson` session: every field located and
/// checked, nothing copied yet.
fn scan_session_json(
    bytes: &[u8],
) -> Result<(JsonStr<'_>, JsonStr<'_>, u64, UserParts<'_>), DecodeError> {
    let mut p = Parser::new(bytes, WHAT_SESSION);
    let mut access = None;
    let mut refresh = None;
    let mut expires_at = None;
    let mut user_at = None;
    let mut m = p.members()?;
    while let Some(key) = m.next(&mut p)? {
        if key.is("access_token") {
            access = p.opt_str("access_token")?;
        } else if key.is("refresh_token") {
            refresh = p.opt_str("refresh_token")?;
        } else if key.is("expires_at") {
            expires_at = p.opt_num("expires_at")?;
        } else if key.is("user") {
            user_at = p.object_offset("user")?;
        } else {
            p.skip()?;
        }
    }
    p.finish()?;

    let access = required_str(access, "access_token")?;
    let refresh = required_str(refresh, "refresh_token")?;
    let expires_at = expires_at.ok_or(DecodeError::MissingField {
        field: "expires_at",
    })?;
    let expires_at = number_to_u64(expires_at).ok_or(DecodeError::InvalidValue {
        field: "expires_at",
    })?;
    let user_at = user_at.ok_or(DecodeError::MissingField { field: "user" })?;
    let user = read_user_parts(&mut Parser::at(bytes, user_at, WHAT_SESSION))?;
    Ok((access, refresh, expires_at, user))
}

// ---------------------------------------------------------------------------
// Anonymous refresh token
// ---------------------------------------------------------------------------

/// Encodes the anonymous refresh-token record into `buf`.
///
/// `ReferenceJson` writes the raw token (not JSON: that is the reference's
/// format, §6.2). `Postcard` writes [`POSTCARD_VERSION`] then the postcard
/// string. A `buf` too small gives a [`Field::Buffer`] capacity error.
pub fn encode_anon_token(
    t: &RefreshToken,
    format: StoreFormat,
    buf: &mut [u8],
) -> Result<usize, CapacityError> {
    match format {
        StoreFormat::ReferenceJson => {
            let capacity = buf.len();
            let mut w = Writer::new(buf);
            w.raw(t.expose().as_bytes())
                .map_err(|Full| buffer_full(capacity))?;
            Ok(w.len())
        }
        StoreFormat::Postcard => postcard_with_version(&t.expose(), buf),
    }
}

/// Decodes the anonymous refresh-token record.
///
/// An empty record (or an empty token) is `Ok(None)`: there is no account
/// to resume, which is not an error. `ReferenceJson`: the bytes are the
/// token; non-UTF-8 → `InvalidValue { field: "refresh_token" }`, longer than
/// [`REFRESH_TOKEN_MAX`](crate::limits::REFRESH_TOKEN_MAX) →
/// `Capacity(Field::RefreshToken)`. `Postcard`: version byte (else
/// `InvalidValue { field: "format version" }`) then exactly one postcard
/// string (else `Malformed`).
pub fn decode_anon_token(
    bytes: &[u8],
    format: StoreFormat,
) -> Result<Option<RefreshToken>, DecodeError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let token = match format {
        StoreFormat::ReferenceJson => {
            core::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidValue {
                field: "refresh_token",
            })?
        }
        StoreFormat::Postcard => {
            let body = postcard_body(bytes, WHAT_ANON)?;
            let (s, rest) = postcard::take_from_bytes::<&str>(body)
                .map_err(|_| DecodeError::Malformed { what: WHAT_ANON })?;
            if !rest.is_empty() {
                return Err(DecodeError::Malformed { what: WHAT_ANON });
            }
            s
        }
    };
    if token.is_empty() {
        return Ok(None);
    }
    Ok(Some(Secret::new(token, Field::RefreshToken)?))
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
    use crate::limits::{
        ACCESS_TOKEN_MAX, AVATAR_MAX, COUNTRY_MAX, EMAIL_MAX, NAME_MAX, REFRESH_TOKEN_MAX,
        USER_ID_MAX,
    };
    use crate::secret::bounded;
    use crate::session::User;

    const BOTH: [StoreFormat; 2] = [StoreFormat::ReferenceJson, StoreFormat::Postcard];

    fn session() -> Session {
        Session {
            access_token: Secret::new(
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.sig",
                Field::AccessToken,
            )
            .unwrap(),
            refresh_token: Secret::new("r1", Field::RefreshToken).unwrap(),
            expires_at: Instant(1_767_225_600_000),
            user: User::anonymous("u1").unwrap(),
        }
    }

    fn named() -> Session {
        let mut s = session();
        s.user = User {
            id: bounded("u2", Field::UserId).unwrap(),
            email: Some(bounded("jo\"sé@x.io", Field::Email).unwrap()),
            is_anonymous: false,
            name: Some(bounded("Jo\\\n", Field::Name).unwrap()),
            avatar: Some(bounded("https://x.io/a.png", Field::Avatar).unwrap()),
            country: Some(bounded("FR", Field::Country).unwrap()),
            ..User::default()
        };
        s
    }

    fn enc(s: &Session, f: StoreFormat) -> Vec<u8> {
        let mut buf = vec![0u8; 8192];
        let n = encode_session(s, f, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn json(s: &Session) -> StdString {
        StdString::from_utf8(enc(s, StoreFormat::ReferenceJson)).unwrap()
    }

    #[test]
    fn reference_json_is_byte_exact() {
        assert_eq!(
            json(&session()),
            r#"{"access_token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.sig","refresh_token":"r1","expires_at":1767225600000,"user":{"id":"u1","email":null,"is_anonymous":true}}"#
        );
        assert_eq!(
            json(&named()),
            r#"{"access_token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.sig","refresh_token":"r1","expires_at":1767225600000,"user":{"id":"u2","email":"jo\"sé@x.io","is_anonymous":false,"name":"Jo\\\n","avatar":"https://x.io/a.png","country":"FR"}}"#
        );
    }

    #[test]
    fn round_trips_in_both_formats() {
        for f in BOTH {
            for s in [session(), named()] {
                assert_eq!(decode_session(&enc(&s, f), f).unwrap(), s, "{f:?}");
            }
        }
    }

    #[test]
    fn postcard_is_versioned_and_compact() {
        let b = enc(&named(), StoreFormat::Postcard);
        assert_eq!(b[0], POSTCARD_VERSION);
        assert!(b.len() < json(&named()).len());
    }

    #[test]
    fn decodes_what_the_js_sdk_writes() {
        let js = br#"{"access_token":"eyJ.x.y","refresh_token":"r1","expires_at":1767225600000,"user":{"id":"","email":null,"is_anonymous":true}}"#;
        let s = decode_session(js, StoreFormat::ReferenceJson).unwrap();
        assert_eq!(s.access_token.expose(), "eyJ.x.y");
        assert_eq!(s.refresh_token.expose(), "r1");
        assert_eq!(s.expires_at, Instant(1_767_225_600_000));
        assert_eq!(s.user.id.as_str(), "");
        assert!(s.user.is_anonymous);
        assert_eq!(s.user.email, None);
    }

    #[test]
    fn decodes_a_server_user_stored_verbatim() {
        // The reference stores the server's user object with all its keys,
        // in the server's order, pretty or not.
        let js = br#"{ "user": {"app_metadata":{"provider":"email","providers":["email"]},"aud":"authenticated","avatar":null,"country":"DE","email":"a@b.c","id":"8c4e","identities":[],"name":"Ann"},
            "expires_at": 1767225600123.7, "refresh_token":"r", "access_token":"a", "extra":{"nested":[1,{"x":null}]} }"#;
        let s = decode_session(js, StoreFormat::ReferenceJson).unwrap();
        assert_eq!(s.expires_at, Instant(1_767_225_600_123));
        assert_eq!(s.user.id.as_str(), "8c4e");
        assert_eq!(s.user.email.as_deref(), Some("a@b.c"));
        assert!(!s.user.is_anonymous);
        assert_eq!(s.user.name.as_deref(), Some("Ann"));
        assert_eq!(s.user.avatar, None);
        assert_eq!(s.user.country.as_deref(), Some("DE"));
    }

    #[test]
    fn expires_at_forms() {
        let with = |e: &str| {
            let b = format!(
                r#"{{"access_token":"a","refresh_token":"r","expires_at":{e},"user":{{"id":"u"}}}}"#
            );
            decode_session(b.as_bytes(), StoreFormat::ReferenceJson).map(|s| s.expires_at)
        };
        assert_eq!(with("0"), Ok(Instant(0)));
        assert_eq!(with("-0"), Ok(Instant(0)));
        assert_eq!(with("1.5e3"), Ok(Instant(1500)));
        assert_eq!(with("18446744073709551615"), Ok(Instant(u64::MAX)));
        assert_eq!(
            with("-1"),
            Err(DecodeError::InvalidValue {
                field: "expires_at"
            })
        );
        assert_eq!(
            with("1e400"),
            Err(DecodeError::InvalidValue {
                field: "expires_at"
            })
        );
        assert_eq!(
            with("18446744073709551616"),
            Err(DecodeError::InvalidValue {
                field: "expires_at"
            })
        );
        assert_eq!(
            with("null"),
            Err(DecodeError::MissingField {
                field: "expires_at"
            })
        );
        assert_eq!(
            with("\"1\""),
            Err(DecodeError::InvalidValue {
                field: "expires_at"
            })
        );
        assert_eq!(
            with("NaN"),
            Err(DecodeError::Malformed { what: WHAT_SESSION })
        );
    }

    #[test]
    fn reference_json_rejections() {
        let cases: &[(&str, DecodeError)] = &[
            (
                r#"{"refresh_token":"r","expires_at":1,"user":{"id":"u"}}"#,
                DecodeError::MissingField {
                    field: "access_token",
                },
            ),
            (
                r#"{"access_token":1,"refresh_token":"r","expires_at":1,"user":{"id":"u"}}"#,
                DecodeError::InvalidValue {
                    field: "access_token",
                },
            ),
            (
                r#"{"access_token":"a","refresh_token":null,"expires_at":1,"user":{"id":"u"}}"#,
                DecodeError::MissingField {
                    field: "refresh_token",
                },
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","user":{"id":"u"}}"#,
                DecodeError::MissingField {
                    field: "expires_at",
                },
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","expires_at":1}"#,
                DecodeError::MissingField { field: "user" },
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","expires_at":1,"user":null}"#,
                DecodeError::MissingField { field: "user" },
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","expires_at":1,"user":true}"#,
                DecodeError::InvalidValue { field: "user" },
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","expires_at":1,"user":{}}"#,
                DecodeError::MissingField { field: "user.id" },
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","expires_at":1,"user":{"id":1}}"#,
                DecodeError::InvalidValue { field: "user.id" },
            ),
            (
                r#"{"access_token":"a","refresh_token":"r","expires_at":1,"user":{"id":"u"}"#,
                DecodeError::Malformed { what: WHAT_SESSION },
            ),
            (r#"[]"#, DecodeError::Malformed { what: WHAT_SESSION }),
            (r#""#, DecodeError::Malformed { what: WHAT_SESSION }),
            (r#"null"#, DecodeError::Malformed { what: WHAT_SESSION }),
        ];
        for (b, want) in cases {
            assert_eq!(
                decode_session(b.as_bytes(), StoreFormat::ReferenceJson)
                    .as_ref()
                    .err(),
                Some(want),
                "{b}"
            );
        }
    }

    #[test]
    fn reference_json_accepts_empty_tokens_as_the_reference_does() {
        let b = br#"{"access_token":"","refresh_token":"","expires_at":1,"user":{"id":""}}"#;
        let s = decode_session(b, StoreFormat::ReferenceJson).unwrap();
        assert!(s.access_token.is_empty() && s.refresh_token.is_empty());
    }

    #[test]
    fn every_truncation_is_an_error() {
        for f in BOTH {
            let full = enc(&named(), f);
            for n in 0..full.len() {
                assert!(decode_session(&full[..n], f).is_err(), "{f:?} {n}");
            }
        }
    }

    #[test]
    fn postcard_rejects_bad_version_and_trailing_bytes() {
        let mut b = enc(&session(), StoreFormat::Postcard);
        b.push(0);
        assert_eq!(
            decode_session(&b, StoreFormat::Postcard),
            Err(DecodeError::Malformed { what: WHAT_SESSION })
        );
        b.pop();
        for v in [0u8, 2, b'{', 0xff] {
            b[0] = v;
            assert_eq!(
                decode_session(&b, StoreFormat::Postcard),
                Err(DecodeError::InvalidValue {
                    field: "format version"
                })
            );
        }
    }

    #[test]
    fn formats_are_not_confused() {
        // A JSON record read as postcard (first byte '{') and vice versa.
        assert!(
            decode_session(
                &enc(&session(), StoreFormat::ReferenceJson),
                StoreFormat::Postcard
            )
            .is_err()
        );
        assert!(
            decode_session(
                &enc(&session(), StoreFormat::Postcard),
                StoreFormat::ReferenceJson
            )
            .is_err()
        );
    }

    #[test]
    fn postcard_wrong_types_are_malformed() {
        // Invalid UTF-8 in the access token string.
        let mut b = vec![POSTCARD_VERSION, 2, 0xff, 0xfe];
        b.extend_from_slice(&[1, b'r', 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            decode_session(&b, StoreFormat::Postcard),
            Err(DecodeError::Malformed { what: WHAT_SESSION })
        );
        // bool byte out of range (is_anonymous = 2).
        let mut b = vec![
            POSTCARD_VERSION,
            1,
            b'a',
            1,
            b'r',
            5,
            1,
            b'u',
            0,
            2,
            0,
            0,
            0,
        ];
        assert_eq!(
            decode_session(&b, StoreFormat::Postcard),
            Err(DecodeError::Malformed { what: WHAT_SESSION })
        );
        b[9] = 1;
        let s = decode_session(&b, StoreFormat::Postcard).unwrap();
        assert_eq!(
            (s.expires_at, s.user.id.as_str(), s.user.is_anonymous),
            (Instant(5), "u", true)
        );
    }

    #[test]
    fn oversize_fields_name_their_field_in_both_formats() {
        let long = "z".repeat(3000);
        // JSON: one field at a time.
        let base = |at: &str, rt: &str, user: &str| {
            format!(
                r#"{{"access_token":"{at}","refresh_token":"{rt}","expires_at":1,"user":{user}}}"#
            )
        };
        let cases = [
            (
                base(&long, "r", r#"{"id":"u"}"#),
                Field::AccessToken,
                ACCESS_TOKEN_MAX,
            ),
            (
                base("a", &long, r#"{"id":"u"}"#),
                Field::RefreshToken,
                REFRESH_TOKEN_MAX,
            ),
            (
                base("a", "r", &format!(r#"{{"id":"{long}"}}"#)),
                Field::UserId,
                USER_ID_MAX,
            ),
            (
                base("a", "r", &format!(r#"{{"id":"u","email":"{long}"}}"#)),
                Field::Email,
                EMAIL_MAX,
            ),
            (
                base("a", "r", &format!(r#"{{"id":"u","name":"{long}"}}"#)),
                Field::Name,
                NAME_MAX,
            ),
            (
                base("a", "r", &format!(r#"{{"id":"u","avatar":"{long}"}}"#)),
                Field::Avatar,
                AVATAR_MAX,
            ),
            (
                base("a", "r", &format!(r#"{{"id":"u","country":"{long}"}}"#)),
                Field::Country,
                COUNTRY_MAX,
            ),
        ];
        for (b, field, capacity) in cases {
            assert_eq!(
                decode_session(b.as_bytes(), StoreFormat::ReferenceJson),
                Err(DecodeError::Capacity(CapacityError {
                    field,
                    capacity,
                    len: 3000
                }))
            );
        }
        // Two oversize fields: JSON names the user's (it is copied before
        // the tokens), postcard the token's (below).
        assert_eq!(
            decode_session(
                base(&long, "r", &format!(r#"{{"id":"{long}"}}"#)).as_bytes(),
                StoreFormat::ReferenceJson
            ),
            Err(DecodeError::Capacity(CapacityError {
                field: Field::UserId,
                capacity: USER_ID_MAX,
                len: 3000
            }))
        );
        // Postcard: hand-build a record whose access token is too long.
        let m = SessionV1 {
            access_token: &long,
            refresh_token: "r",
            expires_at: 1,
            user: UserV1 {
                id: "u",
                email: None,
                is_anonymous: true,
                name: None,
                avatar: None,
                country: Some(&long),
            },
        };
        let mut buf = vec![0u8; 8000];
        let n = postcard_with_version(&m, &mut buf).unwrap();
        assert_eq!(
            decode_session(&buf[..n], StoreFormat::Postcard),
            Err(DecodeError::Capacity(CapacityError {
                field: Field::AccessToken,
                capacity: ACCESS_TOKEN_MAX,
                len: 3000
            }))
        );
    }

    #[test]
    fn postcard_keeps_an_empty_optional_string_json_drops_it() {
        let m = SessionV1 {
            access_token: "a",
            refresh_token: "r",
            expires_at: 1,
            user: UserV1 {
                id: "",
                email: Some(""),
                is_anonymous: false,
                name: Some(""),
                avatar: None,
                country: Some(""),
            },
        };
        let mut buf = vec![0u8; 64];
        let n = postcard_with_version(&m, &mut buf).unwrap();
        let u = decode_session(&buf[..n], StoreFormat::Postcard)
            .unwrap()
            .user;
        assert_eq!(u.id.as_str(), "");
        assert_eq!(u.email.as_deref(), Some(""));
        assert_eq!(u.name.as_deref(), Some(""));
        assert_eq!(u.avatar, None);
        assert_eq!(u.country.as_deref(), Some(""));
        let json = br#"{"access_token":"a","refresh_token":"r","expires_at":1,"user":{"id":"","email":"","name":"","country":""}}"#;
        let u = decode_session(json, StoreFormat::ReferenceJson)
            .unwrap()
            .user;
        assert_eq!((u.email, u.name, u.country), (None, None, None));
    }

    #[test]
    fn small_buffers_are_buffer_errors() {
        for f in BOTH {
            let full = enc(&named(), f).len();
            for cap in 0..full {
                let mut buf = vec![0u8; cap];
                assert_eq!(
                    encode_session(&named(), f, &mut buf),
                    Err(CapacityError {
                        field: Field::Buffer,
                        capacity: cap,
                        len: 0
                    }),
                    "{f:?} {cap}"
                );
            }
            let mut buf = vec![0u8; full];
            assert_eq!(encode_session(&named(), f, &mut buf), Ok(full));
        }
    }

    #[test]
    fn record_value_encode_uses_these_codecs() {
        let s = session();
        let mut buf = [0u8; 512];
        let bytes = crate::storage::RecordValue::Session(&s)
            .encode(StoreFormat::ReferenceJson, &mut buf)
            .unwrap();
        assert_eq!(
            decode_session(bytes, StoreFormat::ReferenceJson).unwrap(),
            s
        );
    }

    // --- anon token ---------------------------------------------------------

    fn token(s: &str) -> RefreshToken {
        Secret::new(s, Field::RefreshToken).unwrap()
    }

    #[test]
    fn anon_token_reference_is_the_raw_string() {
        let mut buf = [0u8; 64];
        let n =
            encode_anon_token(&token("v1.r-tok_EN"), StoreFormat::ReferenceJson, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"v1.r-tok_EN");
        assert_eq!(
            decode_anon_token(b"v1.r-tok_EN", StoreFormat::ReferenceJson).unwrap(),
            Some(token("v1.r-tok_EN"))
        );
        // Not JSON: quotes are part of the token.
        assert_eq!(
            decode_anon_token(b"\"q\"", StoreFormat::ReferenceJson)
                .unwrap()
                .unwrap()
                .expose(),
            "\"q\""
        );
    }

    #[test]
    fn anon_token_round_trips_and_empties() {
        for f in BOTH {
            let mut buf = [0u8; 300];
            let n = encode_anon_token(&token("r1"), f, &mut buf).unwrap();
            assert_eq!(decode_anon_token(&buf[..n], f).unwrap(), Some(token("r1")));
            assert_eq!(decode_anon_token(&[], f), Ok(None));
            let n = encode_anon_token(&token(""), f, &mut buf).unwrap();
            assert_eq!(decode_anon_token(&buf[..n], f), Ok(None));
        }
    }

    #[test]
    fn anon_token_errors() {
        assert_eq!(
            decode_anon_token(b"r\xff", StoreFormat::ReferenceJson),
            Err(DecodeError::InvalidValue {
                field: "refresh_token"
            })
        );
        let long = "t".repeat(REFRESH_TOKEN_MAX + 1);
        let cap = Err(DecodeError::Capacity(CapacityError {
            field: Field::RefreshToken,
            capacity: REFRESH_TOKEN_MAX,
            len: REFRESH_TOKEN_MAX + 1,
        }));
        assert_eq!(
            decode_anon_token(long.as_bytes(), StoreFormat::ReferenceJson),
            cap
        );
        let mut buf = [0u8; 400];
        let n = postcard_with_version(&long.as_str(), &mut buf).unwrap();
        assert_eq!(decode_anon_token(&buf[..n], StoreFormat::Postcard), cap);
        // Postcard: version, truncation, trailing bytes, bad UTF-8.
        let p = StoreFormat::Postcard;
        assert_eq!(
            decode_anon_token(&[2, 1, b'r'], p),
            Err(DecodeError::InvalidValue {
                field: "format version"
            })
        );
        assert_eq!(
            decode_anon_token(&[1], p),
            Err(DecodeError::Malformed { what: WHAT_ANON })
        );
        assert_eq!(
            decode_anon_token(&[1, 2, b'r'], p),
            Err(DecodeError::Malformed { what: WHAT_ANON })
        );
        assert_eq!(
            decode_anon_token(&[1, 1, b'r', 0], p),
            Err(DecodeError::Malformed { what: WHAT_ANON })
        );
        assert_eq!(
            decode_anon_token(&[1, 1, 0xff], p),
            Err(DecodeError::Malformed { what: WHAT_ANON })
        );
        // Buffer too small.
        let mut small = [0u8; 2];
        for f in BOTH {
            assert_eq!(
                encode_anon_token(&token("r12"), f, &mut small),
                Err(CapacityError {
                    field: Field::Buffer,
                    capacity: 2,
                    len: 0
                })
            );
        }
    }

    // --- properties ---------------------------------------------------------

    fn text(max: usize) -> impl Strategy<Value = StdString> {
        proptest::string::string_regex(&format!("(\\PC|[\\x00-\\x1f\"\\\\]){{0,{}}}", max.min(40)))
            .unwrap()
            .prop_filter("fits", move |s| s.len() <= max)
    }

    fn opt_text(max: usize) -> impl Strategy<Value = Option<StdString>> {
        proptest::option::of(text(max).prop_filter("non-empty", |s| !s.is_empty()))
    }

    prop_compose! {
        fn arb_session()(
            at in text(ACCESS_TOKEN_MAX),
            rt in text(REFRESH_TOKEN_MAX),
            exp in any::<u64>(),
            id in text(USER_ID_MAX),
            email in opt_text(EMAIL_MAX),
            anon in any::<bool>(),
            name in opt_text(NAME_MAX),
            avatar in opt_text(AVATAR_MAX),
            country in opt_text(COUNTRY_MAX),
        ) -> Session {
            fn o<const N: usize>(v: Option<StdString>, f: Field) -> Option<heapless::String<N>> {
                v.map(|v| bounded(&v, f).unwrap())
            }
            Session {
                access_token: Secret::new(&at, Field::AccessToken).unwrap(),
                refresh_token: Secret::new(&rt, Field::RefreshToken).unwrap(),
                expires_at: Instant(exp),
                user: User {
                    id: bounded(&id, Field::UserId).unwrap(),
                    email: o(email, Field::Email),
                    is_anonymous: anon,
                    name: o(name, Field::Name),
                    avatar: o(avatar, Field::Avatar),
                    country: o(country, Field::Country),
                    ..User::default()
                },
            }
        }
    }

    proptest! {
        #[test]
        fn any_session_round_trips(s in arb_session()) {
            for f in BOTH {
                prop_assert_eq!(&decode_session(&enc(&s, f), f).unwrap(), &s);
            }
        }

        #[test]
        fn any_anon_token_round_trips(t in text(REFRESH_TOKEN_MAX).prop_filter("non-empty", |t| !t.is_empty())) {
            for f in BOTH {
                let mut buf = [0u8; 1024];
                let n = encode_anon_token(&token(&t), f, &mut buf).unwrap();
                prop_assert_eq!(decode_anon_token(&buf[..n], f).unwrap(), Some(token(&t)));
            }
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for f in BOTH {
                let _ = decode_session(&bytes, f);
                let _ = decode_anon_token(&bytes, f);
            }
        }

        #[test]
        fn corrupted_records_never_panic(s in arb_session(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
            for f in BOTH {
                let mut b = enc(&s, f);
                for (i, v) in &flips {
                    let len = b.len();
                    b[i % len] = *v;
                }
                let _ = decode_session(&b, f);
            }
        }
    }

    /// The user object travels as the server spelled it (builds that keep
    /// it: `PAYWALL_AUTH_USER_JSON_MAX` > 0, as CI's wasm step sets).
    #[cfg(paywall_auth_user_json)]
    mod server_user {
        use super::*;
        use crate::codec::json::decode_tokens_into;
        use crate::limits::USER_JSON_MAX;

        /// A named user as a backend may send it: keys the core does not
        /// know (nested, `null`, numbers, an escaped key), `name: null`,
        /// spacing, and no `is_anonymous`.
        const SERVER_USER: &str = r#"{ "id":"u9", "email":"a@b.io", "name":null,
            "app_metadata":{"provider":"email","roles":["a",1,true]},
            "created_at":"2026-01-01T00:00:00Z", "score":1.5e3, "phone":null, "k\u00e9y":"v" }"#;

        fn from_reply(user: &str) -> Session {
            let body = format!(r#"{{"access_token":"a.b.c","refresh_token":"r9","user":{user}}}"#);
            let mut s = Session::blank();
            let meta = decode_tokens_into(body.as_bytes(), &mut s).unwrap();
            assert!(meta.user);
            s.expires_at = Instant(5);
            s
        }

        fn user_text(record: &str) -> &str {
            let at = record.find(r#""user":"#).unwrap() + 7;
            &record[at..record.len() - 1]
        }

        #[test]
        fn the_servers_user_is_stored_verbatim_and_reads_back_the_same() {
            let s = from_reply(SERVER_USER);
            assert_eq!(s.user.server_json.as_str(), SERVER_USER);
            assert!(!s.user.is_anonymous, "absent is_anonymous is false");
            let record = json(&s);
            assert_eq!(user_text(&record), SERVER_USER, "no key added or dropped");
            assert!(
                !record.contains("is_anonymous"),
                "no is_anonymous: false invented"
            );

            let back = decode_session(record.as_bytes(), StoreFormat::ReferenceJson).unwrap();
            assert_eq!(back, s);
            assert_eq!(back.user.server_json, s.user.server_json);
            assert_eq!(
                json(&back),
                record,
                "a restored record is rewritten byte for byte"
            );
        }

        #[test]
        fn a_corrected_user_is_written_from_its_fields_and_keeps_the_other_keys() {
            // The anonymous route's reply did not mark its guest: the
            // machine does (§12), so the kept text no longer says it.
            let mut s = from_reply(
                r#"{"id":"g1","email":null,"avatar":null,"plan":{"tier":null},"k\"q":[1, 2]}"#,
            );
            s.user.is_anonymous = true;
            let record = json(&s);
            assert_eq!(
                user_text(&record),
                r#"{"id":"g1","email":null,"is_anonymous":true,"plan":{"tier":null},"k\"q":[1, 2]}"#
            );
            let back = decode_session(record.as_bytes(), StoreFormat::ReferenceJson).unwrap();
            assert_eq!(back, s);
            // Read back, the text now agrees with the fields: kept as is.
            assert_eq!(json(&back), record);
        }

        #[test]
        fn an_oversize_server_user_is_not_kept_and_the_session_still_is() {
            let pad = "x".repeat(USER_JSON_MAX);
            let s = from_reply(&format!(
                r#"{{"id":"u3","is_anonymous":true,"bio":"{pad}"}}"#
            ));
            assert!(s.user.server_json.is_empty());
            assert_eq!(s.user.id.as_str(), "u3");
            assert_eq!(
                user_text(&json(&s)),
                r#"{"id":"u3","email":null,"is_anonymous":true}"#
            );
        }

        #[test]
        fn postcard_records_do_not_carry_the_servers_spelling() {
            let s = from_reply(SERVER_USER);
            let back =
                decode_session(&enc(&s, StoreFormat::Postcard), StoreFormat::Postcard).unwrap();
            assert_eq!(back, s);
            assert!(back.user.server_json.is_empty());
        }

        #[test]
        fn a_standalone_user_keeps_its_spelling() {
            let u = crate::codec::json::decode_user(SERVER_USER.as_bytes()).unwrap();
            assert_eq!(u.server_json.as_str(), SERVER_USER);
        }
    }
}
