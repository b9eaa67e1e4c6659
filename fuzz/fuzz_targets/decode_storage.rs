//! The stored-record decoders in both formats (what restore and external
//! changes feed the machine). No panic, and whatever decodes must survive
//! an encode/decode round trip unchanged: a record the machine accepts is a
//! record it can write back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paywall_auth::StoreFormat;
use paywall_auth::codec::record::{
    decode_anon_token, decode_session, encode_anon_token, encode_session,
};

fuzz_target!(|data: &[u8]| {
    let mut buf = vec![0u8; 64 * 1024];
    for format in [StoreFormat::ReferenceJson, StoreFormat::Postcard] {
        if let Ok(session) = decode_session(data, format) {
            let n =
                encode_session(&session, format, &mut buf).expect("a decoded session fits 64 KiB");
            let again = decode_session(&buf[..n], format).expect("an encoded session decodes");
            assert_eq!(again, session, "session round trip ({format:?})");
        }
        if let Ok(Some(token)) = decode_anon_token(data, format) {
            let n =
                encode_anon_token(&token, format, &mut buf).expect("a decoded token fits 64 KiB");
            let again = decode_anon_token(&buf[..n], format).expect("an encoded token decodes");
            assert_eq!(
                again,
                Some(token),
                "anonymous token round trip ({format:?})"
            );
        }
    }
});
