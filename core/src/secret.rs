//! Strings that must never reach a log.

use core::fmt;

use heapless::String;
use heapless::string::StringView;

use crate::error::{CapacityError, Field};

/// A bounded string whose `Debug` and `defmt::Format` print only its length.
///
/// Tokens and passwords live in this type from the moment they are decoded
/// until they are written to the wire or to storage, so a `{:?}` of any core
/// type cannot leak them. Read the value with [`Secret::expose`], a name that
/// makes every use visible in review.
///
/// ```
/// use paywall_auth::Secret;
/// let s: Secret<16> = Secret::new("hunter2", paywall_auth::Field::Password).unwrap();
/// assert_eq!(format!("{s:?}"), "Secret(7 bytes)");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<const N: usize>(String<N>);

impl<const N: usize> Secret<N> {
    /// Copies `value`; fails with a [`CapacityError`] naming `field` if it is
    /// longer than `N` bytes.
    pub fn new(value: &str, field: Field) -> Result<Self, CapacityError> {
        bounded(value, field).map(Secret)
    }

    /// Empties the secret and lends its buffer, so decoders write a token
    /// where it will live instead of returning 2 KiB values through several
    /// stack frames (which costs tens of KiB of stack on a microcontroller).
    pub(crate) fn refill(&mut self) -> &mut StringView {
        self.0.clear();
        self.0.as_mut_view()
    }

    /// The secret itself. Call it only to put the value on the wire or on
    /// storage.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Length in bytes (safe to log).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A 64-bit fingerprint, used to recognise a token again (for
    /// example an echo of a write we already superseded) without keeping it.
    pub fn fingerprint(&self) -> u64 {
        fingerprint(self.0.as_bytes())
    }
}

/// A 64-bit fingerprint of `bytes`: cheap, deterministic and good enough to
/// tell tokens apart (they are random); it is not used for anything
/// security-relevant, and never stored.
pub(crate) fn fingerprint(bytes: &[u8]) -> u64 {
    fingerprint_more(0xcbf2_9ce4_8422_2325, bytes)
}

/// Continues a fingerprint `h` over `bytes` (to cover several fields in one
/// value). Eight bytes per step (multiply, then rotate so that high bits
/// feed the low ones), the tail byte by byte: a host's access token is a
/// few hundred bytes and is fingerprinted on every session change.
pub(crate) fn fingerprint_more(mut h: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        // A reference cast, then one 8-byte load (no per-byte loop, no
        // call: a size-optimised build does not inline those).
        let word = <&[u8; 8]>::try_from(w).map_or(0, |w| u64::from_le_bytes(*w));
        h = (h ^ word).wrapping_mul(K).rotate_left(31);
    }
    for b in words.remainder() {
        h = (h ^ u64::from(*b)).wrapping_mul(K).rotate_left(31);
    }
    h
}

impl<const N: usize> fmt::Debug for Secret<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl<const N: usize> fmt::Display for Secret<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(feature = "defmt")]
impl<const N: usize> defmt::Format for Secret<N> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Secret({=usize} bytes)", self.0.len())
    }
}

impl<const N: usize> serde::Serialize for Secret<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de, const N: usize> serde::Deserialize<'de> for Secret<N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::<N>::deserialize(d).map(Secret)
    }
}

/// Copies `value` into a `String<N>`, or names `field` in the error.
pub fn bounded<const N: usize>(value: &str, field: Field) -> Result<String<N>, CapacityError> {
    let mut s = String::new();
    fill(s.as_mut_view(), value, field)?;
    Ok(s)
}

/// Appends `value` whole to `dst`, or names `field` (with `dst`'s capacity)
/// in the error. It works on the capacity-erased view so that one copy of
/// the code serves every `String<N>` of the crate; the generic callers are
/// thin shells around it.
pub(crate) fn fill(dst: &mut StringView, value: &str, field: Field) -> Result<(), CapacityError> {
    dst.push_str(value).map_err(|_| CapacityError {
        field,
        capacity: dst.capacity(),
        len: value.len(),
    })
}

/// Joins `parts` into a `String<N>`, or `None` when they do not fit. Used
/// for paths and storage keys instead of `write!`, so firmware that formats
/// nothing else does not link `core::fmt`.
pub(crate) fn concat<const N: usize, const K: usize>(parts: [&str; K]) -> Option<String<N>> {
    let mut s = String::new();
    concat_into(s.as_mut_view(), &parts).then_some(s)
}

/// The non-generic body of [`concat`].
fn concat_into(dst: &mut StringView, parts: &[&str]) -> bool {
    parts.iter().all(|part| dst.push_str(part).is_ok())
}
