//! The API origin: which transport it needs, in one place.
//!
//! `https://` origins go through TLS ([`TlsConnector`](crate::TlsConnector),
//! feature `tls`). `http://` is refused unless the host is a loopback
//! address or the application opted in explicitly ([`PlainHttp::Allow`]):
//! tokens must not cross a network in clear text.

/// The scheme of an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Scheme {
    /// `http://`: plain TCP.
    Http,
    /// `https://`: TLS over TCP.
    Https,
}

/// Whether a plain `http://` origin may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PlainHttp {
    /// Only for a loopback host (`localhost`, `127.0.0.0/8`, `[::1]`): the
    /// default.
    #[default]
    LoopbackOnly,
    /// Also for other hosts: an explicit opt-in for closed networks and
    /// test benches. Tokens then travel in clear text.
    Allow,
}

/// Why an origin was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OriginError {
    /// Not `scheme://host[:port]` (a path, query, user info or an empty
    /// host is not an origin).
    Malformed,
    /// A scheme other than `http` and `https`.
    UnsupportedScheme,
    /// Port 0.
    BadPort,
    /// `http://` to a host that is not loopback, without [`PlainHttp::Allow`].
    PlainHttpRefused,
    /// A TLS connector was given an `http://` origin.
    NotHttps,
    /// `https://` to an IP literal: the certificate verifier matches DNS
    /// names only, so the origin needs a host name.
    TlsNeedsHostName,
    /// A host name longer than the TLS verifier checks (64 bytes).
    HostTooLong,
}

impl OriginError {
    /// A short description, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            OriginError::Malformed => "origin is not scheme://host[:port]",
            OriginError::UnsupportedScheme => "origin scheme is neither http nor https",
            OriginError::BadPort => "origin port 0 cannot be connected to",
            OriginError::PlainHttpRefused => {
                "http:// is only allowed for loopback hosts unless explicitly opted in"
            }
            OriginError::NotHttps => "a TLS connector needs an https:// origin",
            OriginError::TlsNeedsHostName => {
                "https:// needs a host name (certificates are matched on DNS names)"
            }
            OriginError::HostTooLong => "host name longer than 64 bytes",
        }
    }
}

impl core::fmt::Display for OriginError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed API origin, borrowing the string it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Origin<'a> {
    scheme: Scheme,
    host: &'a str,
    port: u16,
    authority: &'a str,
    loopback: bool,
}

impl<'a> Origin<'a> {
    /// Parses `http://host[:port]` or `https://host[:port]` (one trailing
    /// `/` allowed; IPv6 literals in brackets).
    ///
    /// # Errors
    /// [`OriginError::Malformed`] (a bad port included),
    /// [`OriginError::UnsupportedScheme`] or [`OriginError::BadPort`]
    /// (port 0).
    pub fn parse(origin: &'a str) -> Result<Self, OriginError> {
        // The core's parser and loopback rule (docs/protocol.md §13.4), so
        // every adapter reads an origin the same way; this adapter is only
        // stricter (an origin, not a URL: no path, query or credentials).
        use paywall_auth::origin::{self as core_origin, InsecureHttp};
        let checked = core_origin::check(origin, InsecureHttp::Allow).map_err(|e| match e {
            core_origin::OriginError::UnsupportedScheme => OriginError::UnsupportedScheme,
            _ => OriginError::Malformed,
        })?;
        if checked.ignored_suffix {
            return Err(OriginError::Malformed);
        }
        let scheme = match checked.scheme {
            core_origin::Scheme::Https => Scheme::Https,
            core_origin::Scheme::Http => Scheme::Http,
        };
        if checked.port == Some(0) {
            return Err(OriginError::BadPort);
        }
        let rest = origin.split_once("://").map_or("", |(_, rest)| rest);
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        Ok(Origin {
            scheme,
            host: checked.host,
            port: checked.effective_port(),
            authority,
            loopback: checked.loopback,
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host (IPv6 literals keep their brackets).
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// The port (explicit, or 80/443).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host[:port]` as written: the `Host` header.
    pub fn authority(&self) -> &'a str {
        self.authority
    }

    /// Whether the host is loopback: `localhost`, `127.0.0.0/8` or `[::1]`
    /// (the core's rule).
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    /// Whether the host is an IP literal rather than a name.
    pub fn is_ip_literal(&self) -> bool {
        self.host.starts_with('[') || (self.host.split('.').count() == 4 && is_ipv4_tail(self.host))
    }

    /// The rule for plain HTTP: `https://` needs TLS, `http://` is refused
    /// unless loopback or allowed by `plain`.
    ///
    /// # Errors
    /// [`OriginError::PlainHttpRefused`].
    pub fn check_plain_http(&self, plain: PlainHttp) -> Result<Scheme, OriginError> {
        match (self.scheme, plain) {
            (Scheme::Https, _) | (Scheme::Http, PlainHttp::Allow) => Ok(self.scheme),
            (Scheme::Http, PlainHttp::LoopbackOnly) if self.is_loopback() => Ok(Scheme::Http),
            (Scheme::Http, PlainHttp::LoopbackOnly) => Err(OriginError::PlainHttpRefused),
        }
    }

    /// The rule for a TLS connector: `https://` to a host name.
    ///
    /// # Errors
    /// [`OriginError::NotHttps`], [`OriginError::TlsNeedsHostName`],
    /// [`OriginError::HostTooLong`].
    pub fn check_tls(&self) -> Result<(), OriginError> {
        if self.scheme != Scheme::Https {
            return Err(OriginError::NotHttps);
        }
        if self.is_ip_literal() {
            return Err(OriginError::TlsNeedsHostName);
        }
        // embedded-tls keeps the name it verifies in 64 bytes.
        if self.host.len() > 64 {
            return Err(OriginError::HostTooLong);
        }
        Ok(())
    }
}

/// `a.b.c` (or `a.b.c.d`) where every part is a decimal byte.
fn is_ipv4_tail(s: &str) -> bool {
    s.split('.')
        .all(|part| !part.is_empty() && part.len() <= 3 && part.parse::<u8>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_origins() {
        let o = Origin::parse("https://api.example.com").unwrap();
        assert_eq!(
            (o.scheme(), o.host(), o.port(), o.authority()),
            (Scheme::Https, "api.example.com", 443, "api.example.com")
        );
        let o = Origin::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (o.host(), o.port(), o.authority()),
            ("127.0.0.1", 8080, "127.0.0.1:8080")
        );
        let o = Origin::parse("http://[::1]:9").unwrap();
        assert_eq!((o.host(), o.port()), ("[::1]", 9));
        assert!(o.is_loopback() && o.is_ip_literal());
    }

    #[test]
    fn refuses_bad_origins() {
        for (s, e) in [
            ("api.example.com", OriginError::Malformed),
            ("https://", OriginError::Malformed),
            ("https://a.b/path", OriginError::Malformed),
            ("https://user@a.b", OriginError::Malformed),
            ("https://a.b?x", OriginError::Malformed),
            ("ftp://a.b", OriginError::UnsupportedScheme),
            ("https://a.b:0", OriginError::BadPort),
            ("https://a.b:+1", OriginError::Malformed),
            ("https://a.b:70000", OriginError::Malformed),
            ("https://[::1", OriginError::Malformed),
        ] {
            assert_eq!(Origin::parse(s), Err(e), "{s}");
        }
    }

    #[test]
    fn plain_http_only_for_loopback_or_opt_in() {
        let check = |s: &str, p| Origin::parse(s).unwrap().check_plain_http(p);
        assert_eq!(
            check("http://localhost:1", PlainHttp::LoopbackOnly),
            Ok(Scheme::Http)
        );
        assert_eq!(
            check("http://127.3.2.1", PlainHttp::LoopbackOnly),
            Ok(Scheme::Http)
        );
        assert_eq!(
            check("http://192.0.2.1", PlainHttp::LoopbackOnly),
            Err(OriginError::PlainHttpRefused)
        );
        assert_eq!(
            check("http://127.example.com", PlainHttp::LoopbackOnly),
            Err(OriginError::PlainHttpRefused)
        );
        assert_eq!(
            check("http://192.0.2.1", PlainHttp::Allow),
            Ok(Scheme::Http)
        );
        assert_eq!(
            check("https://a.b", PlainHttp::LoopbackOnly),
            Ok(Scheme::Https)
        );
    }

    #[test]
    fn tls_needs_https_and_a_name() {
        let check = |s: &str| Origin::parse(s).unwrap().check_tls();
        assert_eq!(check("https://api.example.com:8443"), Ok(()));
        assert_eq!(check("http://api.example.com"), Err(OriginError::NotHttps));
        assert_eq!(
            check("https://192.0.2.1"),
            Err(OriginError::TlsNeedsHostName)
        );
        assert_eq!(
            check("https://[2001:db8::1]"),
            Err(OriginError::TlsNeedsHostName)
        );
        let long = ["https://", &"a".repeat(61), ".com"].concat();
        assert_eq!(check(&long), Err(OriginError::HostTooLong));
    }
}
