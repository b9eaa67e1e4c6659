//! Every decoder a response body reaches: token replies (and their expiry),
//! upgrade replies, the error envelope, a bare user, and the JWT claims of
//! an access token. None may panic; the ones that succeed must describe
//! values the machine can hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paywall_auth::Instant;
use paywall_auth::codec::json::{decode_api_error, decode_tokens, decode_upgrade, decode_user};
use paywall_auth::codec::jwt::decode_claims;

fuzz_target!(|data: &[u8]| {
    // First two bytes: the HTTP status and the Content-Type flag.
    let (status, json, body) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) % 1000, a & 1 == 1, rest),
        _ => (200, true, data),
    };

    if let Ok(tokens) = decode_tokens(body) {
        assert!(!tokens.access_token.is_empty() && !tokens.refresh_token.is_empty());
        for now in [0, 1_767_225_600_000, u64::MAX] {
            let _ = tokens.expiry(Instant(now));
        }
        let _ = decode_claims(tokens.access_token.expose());
    }
    let _ = decode_upgrade(body);
    let _ = decode_user(body);

    let error = decode_api_error(status, "Status Text", json, body);
    assert!(!error.code.is_empty(), "an error always has a code");
    assert_eq!(error.status, status);

    if let Ok(text) = core::str::from_utf8(body) {
        if let Ok(claims) = decode_claims(text) {
            assert!(!claims.sub.is_empty());
        }
    }
});
