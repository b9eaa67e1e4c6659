//! The claims of an access token (a JWT), read without verifying it.
//!
//! Why read them at all: the reference client never learns who a resumed or
//! refreshed session belongs to (docs/protocol.md §12.1: a resumed anonymous
//! session gets the placeholder user id `""`; §12.2: `is_anonymous` never
//! flips after a confirmed upgrade because refresh copies the old user). The
//! access token the server just issued says who it was issued to, so when a
//! response carries no `user`, the machine takes `sub`, `email` and
//! `is_anonymous` from here.
//!
//! **The signature is not verified**: the client has no key, and it does not
//! need one. The claims are used only to describe the session to its own
//! user, never for an authorization decision; the server verifies the token
//! on every request, so a forged token gains nothing but a wrong label on
//! the caller's own screen.

use heapless::String;

use crate::error::{CapacityError, DecodeError, Field};
use crate::limits::{ACCESS_TOKEN_MAX, EMAIL_MAX, USER_ID_MAX};

use super::json::{Parser, number_to_u64};

/// Largest decoded payload: the payload segment is at most
/// [`ACCESS_TOKEN_MAX`] base64 characters, i.e. 3 bytes per 4 characters.
const PAYLOAD_MAX: usize = ACCESS_TOKEN_MAX.div_ceil(4) * 3;

const WHAT_TOKEN: &str = "access token";
const WHAT_CLAIMS: &str = "access token claims";

/// What an access token says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Claims {
    /// `sub`: the user id (never empty).
    pub sub: String<USER_ID_MAX>,
    /// `email`; `None` when absent, `null` or `""` (GoTrue puts `""` in
    /// anonymous users' tokens).
    pub email: Option<String<EMAIL_MAX>>,
    /// `is_anonymous`, when the issuer sets it (GoTrue does).
    pub is_anonymous: Option<bool>,
    /// `exp`, in Unix seconds (floored when fractional).
    pub exp: Option<u64>,
}

/// Decodes the payload of `token` (`header.payload.signature`) **without
/// verifying the signature** (see the module docs for why that is sound for
/// what the claims are used for).
///
/// The payload is base64url (padding tolerated) decoded into a stack buffer
/// sized from [`ACCESS_TOKEN_MAX`], then read as a JSON object; unknown
/// claims are ignored.
///
/// Errors: a token longer than [`ACCESS_TOKEN_MAX`] →
/// `Capacity(Field::AccessToken)`; not exactly three `.`-separated parts, an
/// empty header or payload, or bad base64 → `Malformed { what: "access
/// token" }`; bad JSON → `Malformed { what: "access token claims" }`; `sub`
/// absent or `null` → `MissingField { field: "sub" }`, empty →
/// `InvalidValue`; a claim of the wrong type or a negative `exp` →
/// `InvalidValue`; a `sub`/`email` longer than its capacity →
/// `Capacity(Field::UserId / Field::Email)`.
pub fn decode_claims(token: &str) -> Result<Claims, DecodeError> {
    if token.len() > ACCESS_TOKEN_MAX {
        return Err(CapacityError {
            field: Field::AccessToken,
            capacity: ACCESS_TOKEN_MAX,
            len: token.len(),
        }
        .into());
    }
    let malformed = DecodeError::Malformed { what: WHAT_TOKEN };
    let mut parts = token.as_bytes().split(|&b| b == b'.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed);
    };
    if header.is_empty() || payload.iter().all(|&b| b == b'=') {
        return Err(malformed);
    }
    let mut buf = [0u8; PAYLOAD_MAX];
    let n = base64url(payload, &mut buf).ok_or(malformed)?;
    let json = buf.get(..n).ok_or(malformed)?;
    read_claims(json)
}

/// Decodes base64url (RFC 4648 §5) into `out` and returns the length, or
/// `None` for bad input: a byte outside the alphabet, a length that leaves
/// one lone symbol, or `=` padding other than what completes the last
/// quad (none is fine too). Non-zero trailing bits are ignored, as
/// `atob`-based decoders do.
///
/// Written out (rather than the `base64` crate's engine) because a JWT
/// payload is decoded once per token and the engine's unrolled fast paths
/// cost firmware over a kilobyte of flash for that; the accepted inputs and
/// output are the same (a test checks them against the crate).
fn base64url(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let symbols = input.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let pad = input.len() - symbols;
    let tail = symbols % 4;
    if tail == 1 || (pad > 0 && (tail < 2 || tail + pad > 4)) {
        return None;
    }
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut n = 0;
    for &b in input.get(..symbols)? {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
        }
    }
    Some(n)
}

fn read_claims(json: &[u8]) -> Result<Claims, DecodeError> {
    let mut p = Parser::new(json, WHAT_CLAIMS);
    let mut sub = None;
    let mut email = None;
    let mut is_anonymous = None;
    let mut exp = None;
    let mut m = p.members()?;
    while let Some(key) = m.next(&mut p)? {
        if key.is("sub") {
            sub = p.opt_str("sub")?;
        } else if key.is("email") {
            email = p.opt_str("email")?;
        } else if key.is("is_anonymous") {
            is_anonymous = p.opt_bool("is_anonymous")?;
        } else if key.is("exp") {
            exp = p.opt_num("exp")?;
        } else {
            p.skip()?;
        }
    }
    p.finish()?;

    let sub = sub.ok_or(DecodeError::MissingField { field: "sub" })?;
    if sub.is_empty() {
        return Err(DecodeError::InvalidValue { field: "sub" });
    }
    let exp = match exp {
        Some(text) => Some(number_to_u64(text).ok_or(DecodeError::InvalidValue { field: "exp" })?),
        None => None,
    };
    let email = match email {
        Some(e) if !e.is_empty() => Some(e.to_bounded(Field::Email)?),
        _ => None,
    };
    Ok(Claims {
        sub: sub.to_bounded(Field::UserId)?,
        email,
        is_anonymous,
        exp,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    extern crate std;

    use std::string::String as StdString;
    use std::{format, vec};

    use base64::Engine as _;
    use base64::alphabet;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use proptest::prelude::*;

    use super::*;

    fn b64(engine: &GeneralPurpose, bytes: &[u8]) -> StdString {
        let mut buf = vec![0u8; bytes.len() * 2 + 4];
        let n = engine.encode_slice(bytes, &mut buf).unwrap();
        StdString::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn jwt(payload: &str) -> StdString {
        format!(
            "{}.{}.sig",
            b64(&URL_SAFE_NO_PAD, br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(&URL_SAFE_NO_PAD, payload.as_bytes())
        )
    }

    #[test]
    fn decodes_a_gotrue_token() {
        let t = jwt(
            r#"{"aud":"authenticated","exp":1767225600,"iat":1767222000,"sub":"8c4e-uuid","email":"","phone":"","app_metadata":{"provider":"anonymous","providers":[]},"user_metadata":{},"role":"authenticated","aal":"aal1","amr":[{"method":"anonymous","timestamp":1}],"session_id":"s","is_anonymous":true}"#,
        );
        let c = decode_claims(&t).unwrap();
        assert_eq!(c.sub.as_str(), "8c4e-uuid");
        assert_eq!(c.email, None);
        assert_eq!(c.is_anonymous, Some(true));
        assert_eq!(c.exp, Some(1_767_225_600));
    }

    #[test]
    fn named_user_and_optional_claims() {
        let c = decode_claims(&jwt(
            r#"{"sub":"u","email":"jos\u00e9@x.io","is_anonymous":false}"#,
        ))
        .unwrap();
        assert_eq!(c.email.as_deref(), Some("josé@x.io"));
        assert_eq!(c.is_anonymous, Some(false));
        assert_eq!(c.exp, None);
        let c = decode_claims(&jwt(
            r#"{"sub":"u","email":null,"is_anonymous":null,"exp":null}"#,
        ))
        .unwrap();
        assert_eq!((c.email, c.is_anonymous, c.exp), (None, None, None));
        let c = decode_claims(&jwt(r#"{"sub":"u","exp":1767225600.9}"#)).unwrap();
        assert_eq!(c.exp, Some(1_767_225_600));
    }

    #[test]
    fn padding_and_bytes_needing_url_alphabet_are_tolerated() {
        // A payload whose base64 has padding and '-'/'_' characters.
        let payload = r#"{"sub":"u>>>???","x":"~~~"}"#;
        let padded = b64(&URL_SAFE, payload.as_bytes());
        assert!(padded.ends_with('=') || payload.len().is_multiple_of(3));
        let t = format!("h.{padded}.s");
        assert_eq!(decode_claims(&t).unwrap().sub.as_str(), "u>>>???");
        // Empty signature (unsigned token) is fine: we never verify.
        let t = format!("h.{}.", b64(&URL_SAFE_NO_PAD, payload.as_bytes()));
        assert!(decode_claims(&t).is_ok());
    }

    #[test]
    fn structural_errors() {
        let p = b64(&URL_SAFE_NO_PAD, br#"{"sub":"u"}"#);
        let m = Err(DecodeError::Malformed { what: WHAT_TOKEN });
        assert_eq!(decode_claims(""), m);
        assert_eq!(decode_claims("abc"), m);
        assert_eq!(decode_claims(&format!("h.{p}")), m);
        assert_eq!(decode_claims(&format!("h.{p}.s.x")), m);
        assert_eq!(decode_claims(&format!(".{p}.s")), m);
        assert_eq!(decode_claims("h..s"), m);
        assert_eq!(decode_claims("h.===.s"), m);
        assert_eq!(decode_claims("h.a*b.s"), m);
        assert_eq!(decode_claims("h.a.s"), m); // one char is not base64
        // Standard alphabet '+' '/' are not base64url.
        let std_b64 = b64(&STANDARD, &[0xfb, 0xff, 0xfe]);
        assert!(std_b64.contains('+') || std_b64.contains('/'));
        assert_eq!(decode_claims(&format!("h.{std_b64}.s")), m);
    }

    #[test]
    fn json_errors() {
        let bad = Err(DecodeError::Malformed { what: WHAT_CLAIMS });
        assert_eq!(decode_claims(&jwt("not json")), bad);
        assert_eq!(decode_claims(&jwt(r#"{"sub":"u""#)), bad);
        assert_eq!(decode_claims(&jwt(r#"["sub"]"#)), bad);
        assert_eq!(decode_claims(&jwt(r#"{"sub":"u"} x"#)), bad);
        assert_eq!(
            decode_claims(&jwt("{}")),
            Err(DecodeError::MissingField { field: "sub" })
        );
        assert_eq!(
            decode_claims(&jwt(r#"{"sub":null}"#)),
            Err(DecodeError::MissingField { field: "sub" })
        );
        assert_eq!(
            decode_claims(&jwt(r#"{"sub":""}"#)),
            Err(DecodeError::InvalidValue { field: "sub" })
        );
        assert_eq!(
            decode_claims(&jwt(r#"{"sub":1}"#)),
            Err(DecodeError::InvalidValue { field: "sub" })
        );
        assert_eq!(
            decode_claims(&jwt(r#"{"sub":"u","exp":-1}"#)),
            Err(DecodeError::InvalidValue { field: "exp" })
        );
        assert_eq!(
            decode_claims(&jwt(r#"{"sub":"u","exp":"1"}"#)),
            Err(DecodeError::InvalidValue { field: "exp" })
        );
        assert_eq!(
            decode_claims(&jwt(r#"{"sub":"u","is_anonymous":"true"}"#)),
            Err(DecodeError::InvalidValue {
                field: "is_anonymous"
            })
        );
        assert_eq!(
            decode_claims(&jwt(r#"{"sub":"u","email":[]}"#)),
            Err(DecodeError::InvalidValue { field: "email" })
        );
    }

    #[test]
    fn capacity_errors() {
        let long = "x".repeat(USER_ID_MAX + 1);
        assert!(matches!(
            decode_claims(&jwt(&format!(r#"{{"sub":"{long}"}}"#))),
            Err(DecodeError::Capacity(CapacityError {
                field: Field::UserId,
                ..
            }))
        ));
        let long = "x".repeat(EMAIL_MAX + 1);
        assert!(matches!(
            decode_claims(&jwt(&format!(r#"{{"sub":"u","email":"{long}"}}"#))),
            Err(DecodeError::Capacity(CapacityError {
                field: Field::Email,
                ..
            }))
        ));
        let huge = "a".repeat(ACCESS_TOKEN_MAX + 1);
        assert_eq!(
            decode_claims(&huge),
            Err(DecodeError::Capacity(CapacityError {
                field: Field::AccessToken,
                capacity: ACCESS_TOKEN_MAX,
                len: ACCESS_TOKEN_MAX + 1
            }))
        );
    }

    #[test]
    fn largest_payload_fits_the_buffer() {
        // Grow the payload until the token is exactly ACCESS_TOKEN_MAX bytes
        // (or one base64 step short of it): the decode buffer must hold it.
        let mut pad = 0;
        let mut best = None;
        loop {
            let payload = format!(r#"{{"sub":"u","pad":"{}"}}"#, "x".repeat(pad));
            let t = format!("h.{}.s", b64(&URL_SAFE_NO_PAD, payload.as_bytes()));
            if t.len() > ACCESS_TOKEN_MAX {
                break;
            }
            best = Some(t);
            pad += 1;
        }
        let t = best.unwrap();
        assert!(t.len() + 2 >= ACCESS_TOKEN_MAX);
        assert_eq!(decode_claims(&t).unwrap().sub.as_str(), "u");
    }

    /// What [`base64url`] must agree with: the `base64` crate's URL-safe
    /// engine, padding optional, trailing bits tolerated.
    const B64URL: GeneralPurpose = GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );

    fn agrees_with_the_crate(input: &[u8]) {
        let mut ours = [0u8; 64];
        let mut theirs = [0u8; 64];
        let got = base64url(input, &mut ours);
        let want = B64URL.decode_slice(input, &mut theirs).ok();
        assert_eq!(got, want, "{:?}", StdString::from_utf8_lossy(input));
        if let Some(n) = got {
            assert_eq!(ours[..n], theirs[..n]);
        }
    }

    #[test]
    fn base64url_agrees_with_the_crate_on_every_short_shape() {
        // Every string of up to 6 bytes over symbols of each class, `=`
        // and bytes outside the alphabet.
        let alphabet = b"Aa9-_=+/. ";
        let mut input = vec![];
        fn all(input: &mut std::vec::Vec<u8>, alphabet: &[u8], left: usize) {
            agrees_with_the_crate(input);
            if left == 0 {
                return;
            }
            for &b in alphabet {
                input.push(b);
                all(input, alphabet, left - 1);
                input.pop();
            }
        }
        all(&mut input, alphabet, 6);
    }

    proptest! {
        #[test]
        fn base64url_agrees_with_the_crate(s in "[A-Za-z0-9_=+/-]{0,60}") {
            agrees_with_the_crate(s.as_bytes());
        }

        #[test]
        fn base64url_decodes_what_the_crate_encodes(bytes in proptest::collection::vec(any::<u8>(), 0..45)) {
            agrees_with_the_crate(b64(&URL_SAFE_NO_PAD, &bytes).as_bytes());
            agrees_with_the_crate(b64(&URL_SAFE, &bytes).as_bytes());
        }

        #[test]
        fn never_panics_on_any_string(s in "\\PC{0,300}") {
            let _ = decode_claims(&s);
        }

        #[test]
        fn never_panics_on_jwt_shaped_input(h in "[A-Za-z0-9_=-]{0,20}", p in "[A-Za-z0-9_=+/-]{0,400}", s in "[A-Za-z0-9_.-]{0,20}") {
            let _ = decode_claims(&format!("{h}.{p}.{s}"));
        }

        #[test]
        fn never_panics_on_any_payload_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_claims(&format!("h.{}.s", b64(&URL_SAFE_NO_PAD, &bytes)));
        }

        #[test]
        fn sub_and_email_round_trip(sub in "[^\"\\\\\\x00-\\x1f]{1,16}", email in "[a-z]{1,10}@[a-z]{1,10}\\.io") {
            let c = decode_claims(&jwt(&format!(r#"{{"sub":"{sub}","email":"{email}"}}"#))).unwrap();
            prop_assert_eq!(c.sub.as_str(), sub.as_str());
            prop_assert_eq!(c.email.as_deref(), Some(email.as_str()));
        }
    }
}
