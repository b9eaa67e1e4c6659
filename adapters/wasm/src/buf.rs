//! Small pure helpers, kept apart from the JS bindings so they run in host
//! unit tests too.

use alloc::vec::Vec;

use paywall_auth::CapacityError;

/// The first size tried for a request body or a stored record.
pub const INITIAL: usize = 4096;

/// No request or record of the core comes near this; past it an encoder's
/// capacity error is final.
pub const MAX: usize = 256 * 1024;

/// Runs `encode` into `scratch`, doubling the buffer on a capacity error up
/// to [`MAX`], and returns the encoded text.
///
/// Everything the core encodes (JSON bodies, JSON records) is UTF-8; a
/// non-UTF-8 result is reported as a capacity error on an empty buffer,
/// which callers treat like any other encoding failure.
pub fn encode_growing<F>(scratch: &mut Vec<u8>, mut encode: F) -> Result<&str, CapacityError>
where
    F: FnMut(&mut [u8]) -> Result<usize, CapacityError>,
{
    if scratch.len() < INITIAL {
        scratch.resize(INITIAL, 0);
    }
    let n = loop {
        match encode(scratch.as_mut_slice()) {
            Ok(n) => break n,
            Err(e) if scratch.len() >= MAX => return Err(e),
            Err(_) => {
                let bigger = scratch.len().saturating_mul(2).min(MAX);
                scratch.resize(bigger, 0);
            }
        }
    };
    let bytes = scratch.get(..n).unwrap_or_default();
    core::str::from_utf8(bytes).map_err(|_| CapacityError {
        field: paywall_auth::Field::Buffer,
        capacity: 0,
        len: n,
    })
}

/// docs/protocol.md §1.4: a body is JSON iff the response's `Content-Type`
/// contains `application/json`, case-insensitively.
pub fn is_json_content_type(content_type: Option<&str>) -> bool {
    const NEEDLE: &[u8] = b"application/json";
    content_type.is_some_and(|ct| {
        ct.as_bytes()
            .windows(NEEDLE.len())
            .any(|w| w.eq_ignore_ascii_case(NEEDLE))
    })
}

/// The core's error texts start with their code (`"network_error: …"`);
/// `PaywallError` carries the code separately, so the message drops it.
pub fn strip_code_prefix<'a>(text: &'a str, code: &str) -> &'a str {
    text.strip_prefix(code)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(text)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use paywall_auth::Field;

    fn needs(len: usize) -> impl FnMut(&mut [u8]) -> Result<usize, CapacityError> {
        move |b: &mut [u8]| {
            if b.len() < len {
                return Err(CapacityError {
                    field: Field::Buffer,
                    capacity: b.len(),
                    len: 0,
                });
            }
            for x in b.iter_mut().take(len) {
                *x = b'a';
            }
            Ok(len)
        }
    }

    #[test]
    fn grows_until_the_encoder_fits() {
        let mut scratch = Vec::new();
        assert_eq!(
            encode_growing(&mut scratch, needs(10)).map(str::len),
            Ok(10)
        );
        assert_eq!(scratch.len(), INITIAL);
        assert_eq!(
            encode_growing(&mut scratch, needs(3 * INITIAL)).map(str::len),
            Ok(3 * INITIAL)
        );
        assert_eq!(scratch.len(), 4 * INITIAL);
    }

    #[test]
    fn gives_up_at_the_ceiling() {
        let mut scratch = Vec::new();
        let err = encode_growing(&mut scratch, needs(MAX + 1)).map(str::len);
        assert!(matches!(
            err,
            Err(CapacityError {
                field: Field::Buffer,
                ..
            })
        ));
        assert_eq!(scratch.len(), MAX);
    }

    #[test]
    fn rejects_non_utf8_output() {
        let mut scratch = Vec::new();
        let bad = |b: &mut [u8]| {
            b[0] = 0xff;
            Ok(1)
        };
        assert!(encode_growing(&mut scratch, bad).is_err());
    }

    #[test]
    fn json_content_type_is_a_case_insensitive_substring() {
        assert!(is_json_content_type(Some("application/json")));
        assert!(is_json_content_type(Some(
            "Application/JSON; charset=utf-8"
        )));
        assert!(is_json_content_type(Some(
            "application/problem+json, application/json"
        )));
        assert!(!is_json_content_type(Some("application/problem+json")));
        assert!(!is_json_content_type(Some("text/plain")));
        assert!(!is_json_content_type(Some("")));
        assert!(!is_json_content_type(None));
    }

    #[test]
    fn code_prefix_is_dropped_only_when_present() {
        assert_eq!(
            strip_code_prefix("network_error: could not connect", "network_error"),
            "could not connect"
        );
        assert_eq!(strip_code_prefix("busy", "busy"), "busy");
        assert_eq!(
            strip_code_prefix("other text", "network_error"),
            "other text"
        );
    }
}
