//! Error texts for `PaywallError.message`, built by appending `&'static str`
//! pieces and decimal digits instead of through the core's `Display`
//! impls: those go through `core::fmt` (`write!`, `Formatter`, integer
//! padding), which this adapter otherwise does not need. The texts are the
//! core's own, minus the leading `code: ` (the host tests below compare
//! every variant with the core's `Display`, so the two cannot drift apart
//! unnoticed).

use alloc::string::String;
use core::num::NonZeroUsize;

use paywall_auth::{CapacityError, ConfigError, DecodeError, Error};

/// `n` in decimal, appended to `out`. No indexing and no division by a
/// possibly-zero number, so no panic path.
pub fn push_decimal(out: &mut String, n: usize) {
    const TEN: NonZeroUsize = NonZeroUsize::new(10).expect("10 is not 0");
    let mut div = NonZeroUsize::MIN;
    while n / div >= 10 {
        div = div.saturating_mul(TEN);
    }
    loop {
        // A digit, < 10, so the cast is exact.
        out.push(char::from(b'0' + (n / div % 10) as u8));
        match NonZeroUsize::new(div.get() / 10) {
            Some(next) => div = next,
            None => break,
        }
    }
}

/// The core's `CapacityError` text.
pub fn capacity(out: &mut String, c: &CapacityError) {
    out.push_str(c.field.name());
    out.push_str(" too long: ");
    push_decimal(out, c.len);
    out.push_str(" > capacity ");
    push_decimal(out, c.capacity);
    out.push_str(" (raise PAYWALL_AUTH_* at build time)");
}

/// The core's `DecodeError` text.
fn decode(out: &mut String, d: &DecodeError) {
    let (lead, what, tail) = match d {
        DecodeError::NotJson => ("response is not application/json", "", ""),
        DecodeError::Malformed { what } => ("malformed ", *what, ""),
        DecodeError::MissingField { field } => ("missing field `", *field, "`"),
        DecodeError::InvalidValue { field } => ("invalid value for `", *field, "`"),
        DecodeError::Capacity(c) => return capacity(out, c),
        // A variant newer than this adapter: its code still says what.
        _ => ("the response could not be used", "", ""),
    };
    out.push_str(lead);
    out.push_str(what);
    out.push_str(tail);
}

/// The message of a failed command that is not a server answer (those
/// carry the server's own message): the core's text after `code: `.
pub fn error(e: &Error) -> String {
    let mut out = String::new();
    let fixed = match e {
        Error::Network(t) => t.describe(),
        Error::InvalidResponse(d) => {
            decode(&mut out, d);
            return out;
        }
        Error::Capacity(c) => {
            capacity(&mut out, c);
            return out;
        }
        Error::NotAuthenticated => "no session",
        Error::NotAnonymous => "the current session belongs to a named account",
        Error::UpgradeInProgress => "another upgrade with a different idempotency key is in flight",
        Error::Superseded => {
            "the session changed while the request was in flight; its result was not applied"
        }
        Error::Storage(s) => {
            out.push_str("could not persist ");
            s.key.name()
        }
        Error::Busy => "too many requests in flight",
        // `Api` is answered with the server's message by the caller; a
        // variant newer than this adapter is named by its code.
        _ => e.code(),
    };
    out.push_str(fixed);
    out
}

/// The core's `ConfigError` text after `invalid_config: `.
pub fn config(e: &ConfigError) -> String {
    let mut out = String::new();
    match e {
        ConfigError::EmptyPaywallId => out.push_str("paywall id is empty"),
        ConfigError::InvalidPaywallId => out
            .push_str("paywall id may only contain A-Z a-z 0-9 . _ ~ - and must not be only dots"),
        ConfigError::Capacity(c) => capacity(&mut out, c),
    }
    out
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use paywall_auth::{Field, RecordKey, StorageError, TransportError};

    /// The core's `Display` text without its `code: ` prefix.
    fn core_text(display: &dyn core::fmt::Display, code: &str) -> String {
        let text = display.to_string();
        crate::buf::strip_code_prefix(&text, code).into()
    }

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 99, 100, 4096, 65_535, usize::MAX] {
            let mut s = String::new();
            push_decimal(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn error_texts_match_the_core() {
        let cap = CapacityError {
            field: Field::UserMetaValue,
            capacity: 256,
            len: 1000,
        };
        let mut errors = vec![
            Error::NotAuthenticated,
            Error::NotAnonymous,
            Error::UpgradeInProgress,
            Error::Superseded,
            Error::Busy,
            Error::Capacity(cap),
            Error::InvalidResponse(DecodeError::NotJson),
            Error::InvalidResponse(DecodeError::Malformed {
                what: "token response",
            }),
            Error::InvalidResponse(DecodeError::MissingField { field: "user" }),
            Error::InvalidResponse(DecodeError::InvalidValue {
                field: "expires_in",
            }),
            Error::InvalidResponse(DecodeError::Capacity(cap)),
        ];
        for t in [
            TransportError::Connect,
            TransportError::Timeout,
            TransportError::ConnectionLost,
            TransportError::BadFraming,
            TransportError::TooLarge,
        ] {
            errors.push(Error::Network(t));
        }
        for key in [RecordKey::Session, RecordKey::AnonRefreshToken] {
            errors.push(Error::Storage(StorageError { key }));
        }
        for e in &errors {
            assert_eq!(error(e), core_text(e, e.code()), "{e:?}");
        }
    }

    #[test]
    fn config_texts_match_the_core() {
        let cap = CapacityError {
            field: Field::PaywallId,
            capacity: 64,
            len: 65,
        };
        for e in [
            ConfigError::EmptyPaywallId,
            ConfigError::InvalidPaywallId,
            ConfigError::Capacity(cap),
        ] {
            assert_eq!(config(&e), core_text(&e, "invalid_config"), "{e:?}");
        }
    }
}
