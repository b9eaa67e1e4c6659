//! The few fields of an X.509 certificate the connector reads itself, found
//! by walking the DER with the `der` crate (already in the tree through
//! embedded-tls's `rustpki`), borrowing from the handshake buffer.
//!
//! Why not a certificate crate: `x509-cert` needs an allocator, and
//! embedded-tls keeps its parser private. The signatures (chain and
//! `CertificateVerify`) and the final host-name check stay embedded-tls's;
//! this only reads what it cannot do for us: validity against the
//! adapter's clock (its clock hook is a static function), the SPKI for
//! pinning, issuer/subject to pick one of several pinned CAs, and the DNS
//! names, to tell a wrong host name from an untrusted chain.

use der::asn1::{GeneralizedTime, UtcTime};
use der::{Decode, Header, Reader, SliceReader, Tag, TagNumber};

/// DER of the `subjectAltName` extension id (2.5.29.17), as a whole TLV.
const SAN_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x11];

/// Borrowed views of one certificate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CertView<'a> {
    /// The issuer `Name`, whole TLV.
    pub issuer: &'a [u8],
    /// The subject `Name`, whole TLV.
    pub subject: &'a [u8],
    /// `notBefore`, Unix seconds.
    pub not_before: u64,
    /// `notAfter`, Unix seconds.
    pub not_after: u64,
    /// The `SubjectPublicKeyInfo`, whole TLV (what SPKI pins hash).
    pub spki: &'a [u8],
    /// The `extensions` field (`[3]`), whole TLV, if present.
    extensions: Option<&'a [u8]>,
}

impl<'a> CertView<'a> {
    /// Reads a DER certificate.
    pub fn parse(der_bytes: &'a [u8]) -> Result<Self, der::Error> {
        let mut reader = SliceReader::new(der_bytes)?;
        let view = reader.sequence(|cert| {
            let view = cert.sequence(|tbs| {
                // version [0] EXPLICIT, optional
                if matches!(Tag::peek(tbs)?, Tag::ContextSpecific { number, .. } if number == TagNumber(0))
                {
                    tbs.tlv_bytes()?;
                }
                tbs.tlv_bytes()?; // serialNumber
                tbs.tlv_bytes()?; // signature AlgorithmIdentifier
                let issuer = tbs.tlv_bytes()?;
                let (not_before, not_after) =
                    tbs.sequence(|validity| Ok::<_, der::Error>((time(validity)?, time(validity)?)))?;
                let subject = tbs.tlv_bytes()?;
                let spki = tbs.tlv_bytes()?;
                let mut extensions = None;
                // issuerUniqueID [1], subjectUniqueID [2], extensions [3]
                while !tbs.is_finished() {
                    let tag = Tag::peek(tbs)?;
                    let tlv = tbs.tlv_bytes()?;
                    if matches!(tag, Tag::ContextSpecific { number, .. } if number == TagNumber(3)) {
                        extensions = Some(tlv);
                    }
                }
                Ok::<_, der::Error>(CertView {
                    issuer,
                    subject,
                    not_before,
                    not_after,
                    spki,
                    extensions,
                })
            })?;
            cert.tlv_bytes()?; // signatureAlgorithm
            cert.tlv_bytes()?; // signatureValue
            Ok::<_, der::Error>(view)
        })?;
        reader.finish()?;
        Ok(view)
    }

    /// Calls `f` with each `dNSName` of the `subjectAltName` extension;
    /// stops early when `f` returns true, and returns whether it did.
    /// `Ok(None)` when the certificate has no `subjectAltName`.
    pub fn any_dns_name(
        &self,
        mut f: impl FnMut(&[u8]) -> bool,
    ) -> Result<Option<bool>, der::Error> {
        let Some(extensions) = self.extensions else {
            return Ok(None);
        };
        // [3] EXPLICIT around the SEQUENCE OF Extension.
        let (_, inner) = value(&mut SliceReader::new(extensions)?)?;
        let mut reader = SliceReader::new(inner)?;
        let mut found = None;
        reader.sequence(|list| {
            while !list.is_finished() {
                list.sequence(|extension| {
                    let oid = extension.tlv_bytes()?;
                    if Tag::peek(extension)? == Tag::Boolean {
                        extension.tlv_bytes()?; // critical
                    }
                    let (tag, contents) = value(extension)?;
                    tag.assert_eq(Tag::OctetString)?;
                    if oid == SAN_OID {
                        found = Some(san_has(contents, &mut f)?);
                    }
                    Ok::<_, der::Error>(())
                })?;
            }
            Ok::<_, der::Error>(())
        })?;
        Ok(found)
    }
}

/// Walks `GeneralNames` for `dNSName` (`[2]` IA5String).
fn san_has(general_names: &[u8], f: &mut impl FnMut(&[u8]) -> bool) -> Result<bool, der::Error> {
    let mut reader = SliceReader::new(general_names)?;
    reader.sequence(|names| {
        let mut hit = false;
        while !names.is_finished() {
            let (tag, name) = value(names)?;
            let is_dns = matches!(tag, Tag::ContextSpecific { constructed: false, number } if number == TagNumber(2));
            if is_dns && !hit {
                hit = f(name);
            }
        }
        Ok(hit)
    })
}

/// Reads one TLV: its tag and its contents.
fn value<'a>(reader: &mut SliceReader<'a>) -> Result<(Tag, &'a [u8]), der::Error> {
    let header = Header::decode(reader)?;
    Ok((header.tag(), reader.read_slice(header.length())?))
}

/// Reads a `Time` (UTCTime or GeneralizedTime) as Unix seconds.
fn time(reader: &mut SliceReader<'_>) -> Result<u64, der::Error> {
    Ok(match Tag::peek(reader)? {
        Tag::UtcTime => reader.decode::<UtcTime>()?.to_unix_duration().as_secs(),
        _ => reader
            .decode::<GeneralizedTime>()?
            .to_unix_duration()
            .as_secs(),
    })
}

/// RFC 6125 name matching as embedded-tls does it (exact, ASCII
/// case-insensitive; a `*` only as the whole left-most label of a name with
/// at least three labels, standing for exactly one label). Used only to
/// tell a wrong host name from an untrusted chain in the error; the check
/// that decides is embedded-tls's own.
pub(crate) fn name_matches(pattern: &[u8], host: &[u8]) -> bool {
    match pattern.strip_prefix(b"*.") {
        None => pattern.eq_ignore_ascii_case(host),
        Some(suffix) => {
            if suffix.contains(&b'*') || suffix.iter().filter(|&&b| b == b'.').count() < 1 {
                return false;
            }
            match host.iter().position(|&b| b == b'.') {
                Some(dot) if dot > 0 => host[dot + 1..].eq_ignore_ascii_case(suffix),
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn names() {
        assert!(name_matches(b"api.example.com", b"API.example.com"));
        assert!(!name_matches(b"api.example.com", b"example.com"));
        assert!(name_matches(b"*.example.com", b"api.example.com"));
        assert!(!name_matches(b"*.example.com", b"a.b.example.com"));
        assert!(!name_matches(b"*.example.com", b"example.com"));
        assert!(!name_matches(b"*.com", b"example.com"));
    }
}
