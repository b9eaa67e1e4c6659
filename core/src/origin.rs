//! The API origin an adapter sends requests to, checked before any network
//! use (docs/protocol.md §13.4).
//!
//! Every request of this client carries a secret: a refresh token, a
//! password or a bearer. Over plain `http://` those travel in clear text to
//! whoever is on the path (a café's access point, a kiosk's proxy), so an
//! `http://` origin is refused unless its host is this machine (loopback
//! never leaves it) or the application opts in explicitly. The rule lives
//! here, in the core, so the tokio, embassy, wasm and C adapters apply the
//! same one.

/// Whether plain `http://` is allowed for hosts that are not loopback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InsecureHttp {
    /// Refuse `http://` unless the host is loopback (the default).
    #[default]
    Refuse,
    /// Allow `http://` to any host: the application has said, by name, that
    /// secrets may travel in clear text (a lab network, a TLS-terminating
    /// sidecar on the same pod).
    Allow,
}

/// The scheme of a checked origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Scheme {
    /// `https://`.
    Https,
    /// `http://`, to a loopback host or with [`InsecureHttp::Allow`].
    Http,
}

/// An origin that passed [`check`]: the parts a transport needs, borrowed
/// from the string given, plus what the caller may want to warn about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The scheme.
    pub scheme: Scheme,
    /// The host as written (`[::1]` keeps its brackets), without port.
    pub host: &'a str,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// The host is loopback (`localhost`, `127.0.0.0/8`, `[::1]`).
    pub loopback: bool,
    /// Something followed the authority (a path other than `/`, a query or
    /// a fragment). Requests are resolved against the origin with URL
    /// semantics, so it is ignored (docs/protocol.md §1.1); worth a warning.
    pub ignored_suffix: bool,
}

impl Origin<'_> {
    /// The port requests go to: the explicit one, else the scheme's.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.scheme {
            Scheme::Https => 443,
            Scheme::Http => 80,
        })
    }
}

/// Why an origin was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OriginError {
    /// Not `scheme://host…`, or an empty or malformed host or port.
    Malformed,
    /// A scheme other than `https` or `http`.
    UnsupportedScheme,
    /// `user:password@` in the origin: credentials in a URL end up in logs
    /// and process listings, and this client never sends them.
    Credentials,
    /// `http://` to a host that is not loopback, without opting in.
    InsecureHttp,
}

impl OriginError {
    /// What is wrong and what to do about it.
    pub const fn message(self) -> &'static str {
        match self {
            OriginError::Malformed => {
                "invalid_config: the api origin must look like https://host[:port]"
            }
            OriginError::UnsupportedScheme => {
                "invalid_config: the api origin must start with https:// (or http:// for loopback)"
            }
            OriginError::Credentials => {
                "invalid_config: the api origin must not carry user:password@; remove the credentials"
            }
            OriginError::InsecureHttp => {
                "invalid_config: plain http:// would send tokens and passwords in clear text; \
                 use https://, a loopback host (localhost, 127.0.0.1, [::1]), \
                 or opt in explicitly to insecure http"
            }
        }
    }
}

impl core::fmt::Display for OriginError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message())
    }
}

impl core::error::Error for OriginError {}

/// Checks an API origin before any network use.
///
/// ```
/// use paywall_auth::origin::{check, InsecureHttp, OriginError, Scheme};
///
/// let o = check("https://pay.vendor.com", InsecureHttp::Refuse).unwrap();
/// assert_eq!((o.scheme, o.host, o.effective_port()), (Scheme::Https, "pay.vendor.com", 443));
/// assert!(check("http://127.0.0.1:8787", InsecureHttp::Refuse).unwrap().loopback);
/// assert_eq!(check("http://pay.vendor.com", InsecureHttp::Refuse), Err(OriginError::InsecureHttp));
/// assert!(check("http://pay.vendor.com", InsecureHttp::Allow).is_ok());
/// assert_eq!(check("https://u:p@pay.vendor.com", InsecureHttp::Refuse), Err(OriginError::Credentials));
/// ```
pub fn check(origin: &str, insecure: InsecureHttp) -> Result<Origin<'_>, OriginError> {
    // Byte positions of ASCII delimiters, and `get` for the slices: every
    // cut falls on a char boundary by construction, and no substring
    // searcher or char-boundary panic path is linked (the wasm package
    // measures its size in kilobytes).
    let b = origin.as_bytes();
    let sep = b
        .windows(3)
        .position(|w| w == b"://")
        .ok_or(OriginError::Malformed)?;
    let scheme = b.get(..sep).unwrap_or_default();
    let scheme = if scheme.eq_ignore_ascii_case(b"https") {
        Scheme::Https
    } else if scheme.eq_ignore_ascii_case(b"http") {
        Scheme::Http
    } else {
        return Err(OriginError::UnsupportedScheme);
    };
    let rest = origin.get(sep + 3..).unwrap_or_default();
    let end = rest
        .bytes()
        .position(|c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or_default();
    let suffix = rest.get(end..).unwrap_or_default();
    if authority.bytes().any(|c| c == b'@') {
        return Err(OriginError::Credentials);
    }
    let (host, port) = split_host_port(authority)?;
    let loopback = is_loopback(host);
    if scheme == Scheme::Http && !loopback && insecure == InsecureHttp::Refuse {
        return Err(OriginError::InsecureHttp);
    }
    Ok(Origin {
        scheme,
        host,
        port,
        loopback,
        ignored_suffix: !(suffix.is_empty() || suffix == "/"),
    })
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), OriginError> {
    let b = authority.as_bytes();
    let colon = if b.first() == Some(&b'[') {
        let close = b
            .iter()
            .position(|&c| c == b']')
            .ok_or(OriginError::Malformed)?;
        match b.get(close + 1) {
            None => None,
            Some(b':') => Some(close + 1),
            Some(_) => return Err(OriginError::Malformed),
        }
    } else {
        b.iter().position(|&c| c == b':')
    };
    let (host, port) = match colon {
        Some(at) => (
            authority.get(..at).unwrap_or_default(),
            Some(b.get(at + 1..).unwrap_or_default()),
        ),
        None => (authority, None),
    };
    let valid_host = host.len() > 2 && host.starts_with('[')
        || !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !valid_host {
        return Err(OriginError::Malformed);
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            decimal(p, 5)
                .and_then(|v| u16::try_from(v).ok())
                .ok_or(OriginError::Malformed)?,
        ),
    };
    Ok((host, port))
}

/// `1..=max_digits` ASCII digits as a number.
fn decimal(digits: &[u8], max_digits: usize) -> Option<u32> {
    if digits.is_empty() || digits.len() > max_digits {
        return None;
    }
    digits.iter().try_fold(0u32, |v, &d| {
        d.is_ascii_digit().then(|| v * 10 + u32::from(d - b'0'))
    })
}

/// `localhost` (and `*.localhost`, which RFC 6761 reserves for loopback),
/// `127.0.0.0/8` in dotted-quad form, and `[::1]`.
fn is_loopback(host: &str) -> bool {
    let h = host.as_bytes();
    const SUFFIX: &[u8] = b".localhost";
    if h.eq_ignore_ascii_case(b"localhost")
        || h.len() >= SUFFIX.len()
            && h.get(h.len() - SUFFIX.len()..)
                .is_some_and(|end| end.eq_ignore_ascii_case(SUFFIX))
    {
        return true;
    }
    if h == b"[::1]" || h.eq_ignore_ascii_case(b"[0:0:0:0:0:0:0:1]") {
        return true;
    }
    // Exactly four dot-separated octets, the first `127`, each 0..=255.
    let mut octets = h.split(|&c| c == b'.');
    octets.next() == Some(b"127".as_slice())
        && (0..3).all(|_| {
            octets
                .next()
                .and_then(|o| decimal(o, 3))
                .is_some_and(|v| v <= 255)
        })
        && octets.next().is_none()
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn https_any_host_is_accepted() {
        let o = check("https://pay.vendor.com:8443/", InsecureHttp::Refuse).unwrap();
        assert_eq!(o.scheme, Scheme::Https);
        assert_eq!(o.host, "pay.vendor.com");
        assert_eq!(o.port, Some(8443));
        assert!(!o.loopback && !o.ignored_suffix);
        assert_eq!(
            check("HTTPS://X.Y", InsecureHttp::Refuse)
                .unwrap()
                .effective_port(),
            443
        );
    }

    #[test]
    fn plain_http_only_to_loopback_unless_opted_in() {
        for ok in [
            "http://localhost",
            "http://LOCALHOST:8787",
            "http://app.localhost:1",
            "http://127.0.0.1:8787",
            "http://127.255.0.9",
            "http://[::1]:8080",
        ] {
            let o = check(ok, InsecureHttp::Refuse).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(o.loopback, "{ok}");
        }
        for refused in [
            "http://pay.vendor.com",
            "http://10.0.0.1:8787",
            "http://128.0.0.1",
            "http://127.0.0.1.evil.com",
            "http://127.0.0",
            "http://127.0.0.256",
            "http://localhost.evil.com",
            "http://[::2]",
            "http://0.0.0.0",
        ] {
            assert_eq!(
                check(refused, InsecureHttp::Refuse),
                Err(OriginError::InsecureHttp),
                "{refused}"
            );
            assert!(check(refused, InsecureHttp::Allow).is_ok(), "{refused}");
        }
    }

    #[test]
    fn malformed_and_foreign_origins_are_typed_errors() {
        assert_eq!(check("", InsecureHttp::Allow), Err(OriginError::Malformed));
        assert_eq!(
            check("pay.vendor.com", InsecureHttp::Allow),
            Err(OriginError::Malformed)
        );
        assert_eq!(
            check("https://", InsecureHttp::Allow),
            Err(OriginError::Malformed)
        );
        assert_eq!(
            check("https://a:b:c", InsecureHttp::Allow),
            Err(OriginError::Malformed)
        );
        assert_eq!(
            check("https://a:99999", InsecureHttp::Allow),
            Err(OriginError::Malformed)
        );
        assert_eq!(
            check("https://a:", InsecureHttp::Allow),
            Err(OriginError::Malformed)
        );
        assert_eq!(
            check("https://[::1", InsecureHttp::Allow),
            Err(OriginError::Malformed)
        );
        assert_eq!(
            check("https://a b", InsecureHttp::Allow),
            Err(OriginError::Malformed)
        );
        assert_eq!(
            check("ftp://a", InsecureHttp::Allow),
            Err(OriginError::UnsupportedScheme)
        );
        assert_eq!(
            check("https://user:pw@pay.vendor.com", InsecureHttp::Allow),
            Err(OriginError::Credentials)
        );
    }

    #[test]
    fn a_path_query_or_fragment_is_reported_as_ignored() {
        for o in [
            "https://a.b/api",
            "https://a.b?x=1",
            "https://a.b#f",
            "https://a.b//",
        ] {
            assert!(
                check(o, InsecureHttp::Refuse).unwrap().ignored_suffix,
                "{o}"
            );
        }
        // `@` after the authority is part of the (ignored) path, not credentials.
        assert!(
            check("https://a.b/x@y", InsecureHttp::Refuse)
                .unwrap()
                .ignored_suffix
        );
    }

    /// The string-searching version this module had before it was written
    /// over bytes (kept as the oracle of the differential test below).
    mod oracle {
        use super::super::{InsecureHttp, OriginError, Scheme};

        pub fn check(
            origin: &str,
            insecure: InsecureHttp,
        ) -> Result<(Scheme, &str, Option<u16>, bool, bool), OriginError> {
            let (scheme, rest) = origin.split_once("://").ok_or(OriginError::Malformed)?;
            let scheme = if scheme.eq_ignore_ascii_case("https") {
                Scheme::Https
            } else if scheme.eq_ignore_ascii_case("http") {
                Scheme::Http
            } else {
                return Err(OriginError::UnsupportedScheme);
            };
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, suffix) = rest.split_at(end);
            if authority.contains('@') {
                return Err(OriginError::Credentials);
            }
            let (host, port) = if authority.starts_with('[') {
                let close = authority.find(']').ok_or(OriginError::Malformed)?;
                let (host, after) = authority.split_at(close + 1);
                match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None if after.is_empty() => (host, None),
                    None => return Err(OriginError::Malformed),
                }
            } else {
                match authority.split_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (authority, None),
                }
            };
            let valid_host = host.len() > 2 && host.starts_with('[')
                || !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
            if !valid_host {
                return Err(OriginError::Malformed);
            }
            let port = match port {
                None => None,
                Some(p)
                    if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    Some(p.parse::<u16>().map_err(|_| OriginError::Malformed)?)
                }
                Some(_) => return Err(OriginError::Malformed),
            };
            let loopback = {
                let lower = host.to_ascii_lowercase();
                if lower == "localhost"
                    || lower.ends_with(".localhost")
                    || host == "[::1]"
                    || lower == "[0:0:0:0:0:0:0:1]"
                {
                    true
                } else {
                    let mut octets = host.split('.');
                    let first = octets.next();
                    let rest: [Option<&str>; 3] = [octets.next(), octets.next(), octets.next()];
                    octets.next().is_none()
                        && first == Some("127")
                        && rest.iter().all(|o| {
                            o.is_some_and(|o| {
                                !o.is_empty()
                                    && o.len() <= 3
                                    && o.bytes().all(|b| b.is_ascii_digit())
                                    && o.parse::<u8>().is_ok()
                            })
                        })
                }
            };
            if scheme == Scheme::Http && !loopback && insecure == InsecureHttp::Refuse {
                return Err(OriginError::InsecureHttp);
            }
            Ok((
                scheme,
                host,
                port,
                loopback,
                !(suffix.is_empty() || suffix == "/"),
            ))
        }
    }

    proptest::proptest! {
        /// The byte-wise parser agrees with the string-searching one on
        /// origin-like input. (The oracle's octets are held to three
        /// digits: the old `parse::<u8>` also took `0001`, which the byte
        /// version refuses as loopback, on purpose.)
        #[test]
        fn agrees_with_the_string_version(
            scheme in "(https?|HTTP|ftp|)(://|:/|)",
            rest in "[a-z0-9:/?#@\\[\\]._-]{0,24}",
            allow in proptest::bool::ANY,
        ) {
            let origin = std::format!("{scheme}{rest}");
            let insecure = if allow { InsecureHttp::Allow } else { InsecureHttp::Refuse };
            let new = check(&origin, insecure).map(|o| (o.scheme, o.host, o.port, o.loopback, o.ignored_suffix));
            proptest::prop_assert_eq!(new, oracle::check(&origin, insecure), "{}", origin);
        }

        /// The same over hosts near the loopback forms.
        #[test]
        fn agrees_near_loopback(
            scheme in "(http|https)://",
            host in "(127|128|localhost|LocalHost|[a-z]{1,3}\\.localhost|\\[::1\\]|\\[::2\\])(\\.[0-9]{0,4}){0,4}",
            port in "(:[0-9]{0,6})?",
            suffix in "(/|/x|\\?q|#f|)",
            allow in proptest::bool::ANY,
        ) {
            let origin = std::format!("{scheme}{host}{port}{suffix}");
            let insecure = if allow { InsecureHttp::Allow } else { InsecureHttp::Refuse };
            let new = check(&origin, insecure).map(|o| (o.scheme, o.host, o.port, o.loopback, o.ignored_suffix));
            proptest::prop_assert_eq!(new, oracle::check(&origin, insecure), "{}", origin);
        }
    }

    #[test]
    fn messages_say_how_to_opt_in() {
        assert!(OriginError::InsecureHttp.message().contains("opt in"));
        assert!(OriginError::InsecureHttp.message().contains("loopback"));
    }
}
