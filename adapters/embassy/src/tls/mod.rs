//! TLS 1.3 over any [`Connect`] (feature `tls`), with `embedded-tls`: no
//! std, no allocator.

mod cert;

use core::fmt;

use embassy_time::Instant as BootInstant;
use embedded_io_async::{ErrorType, Read, Write};
use embedded_tls::pki::CertVerifier;
use embedded_tls::{
    Aes128GcmSha256, Certificate, CertificateRef, CertificateVerifyRef, CryptoProvider, NoClock,
    TlsConfig, TlsConnection, TlsContext, TlsVerifier,
};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use embedded_tls::{MaxFragmentLength, TlsError};

use crate::connect::Connect;
use crate::origin::{Origin, OriginError};
use cert::{CertView, name_matches};

/// A read record buffer that holds any TLS record (16 KiB of plaintext plus
/// 256 bytes of record overhead): what a server that does not negotiate a
/// smaller maximum fragment length may send.
pub const FULL_RECORD: usize = 16_640;

/// Default write record buffer. Requests longer than it go out in several
/// records, so it only has to beat the 128-byte record overhead by enough
/// to keep the record count low: 1 KiB sends every request of the core in
/// one record (256 B was measured to work too). The ClientHello is built in
/// the larger of the two buffers.
pub const DEFAULT_WRITE_RECORD: usize = 1024;

/// Default room for the server's certificate chain, kept from the
/// `Certificate` message until `CertificateVerify` is checked: a leaf and
/// one intermediate of a public CA with embedded SCTs.
pub const DEFAULT_CHAIN: usize = 4096;

/// The only cipher suite offered: TLS_AES_128_GCM_SHA256, mandatory for
/// every TLS 1.3 server (RFC 8446 §9.1).
pub type CipherSuite = Aes128GcmSha256;

/// What the server's certificate must satisfy.
///
/// Built with [`Trust::pinned_cas`]; verification cannot be turned off
/// except through the feature `insecure-skip-verify`.
#[derive(Clone, Copy)]
pub struct Trust<'d> {
    mode: Mode<'d>,
    spki_sha256: Option<[u8; 32]>,
    unknown_time: UnknownTime,
}

#[derive(Clone, Copy)]
enum Mode<'d> {
    Verify(&'d [&'d [u8]]),
    #[cfg(feature = "insecure-skip-verify")]
    Insecure,
}

/// What to do when the wall clock was never set
/// ([`Connect::set_unix_time`], called by `AuthClient::set_unix_time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum UnknownTime {
    Refuse,
    SkipValidity,
}

impl fmt::Debug for Trust<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Trust");
        match self.mode {
            Mode::Verify(cas) => s.field("pinned_cas", &cas.len()),
            #[cfg(feature = "insecure-skip-verify")]
            Mode::Insecure => s.field("insecure_skip_verify", &true),
        };
        s.field("spki_pin", &self.spki_sha256.is_some())
            .field("unknown_time", &self.unknown_time)
            .finish()
    }
}

impl<'d> Trust<'d> {
    /// Trust servers whose chain ends at one of `cas` (DER certificates,
    /// e.g. `include_bytes!("isrg-root-x1.der")`), whose leaf names the
    /// origin's host (DNS `subjectAltName`, else CN) and whose certificates
    /// are valid now. ECDSA P-256 signatures (embedded-tls without its
    /// `p384`/`ed25519`/`rsa` features).
    pub const fn pinned_cas(cas: &'d [&'d [u8]]) -> Self {
        Trust {
            mode: Mode::Verify(cas),
            spki_sha256: None,
            unknown_time: UnknownTime::Refuse,
        }
    }

    /// Also require the leaf certificate's public key to be this one:
    /// SHA-256 of its DER `SubjectPublicKeyInfo` (the value of HPKP's
    /// `pin-sha256`, or `openssl x509 -pubkey | openssl pkey -pubin
    /// -outform der | sha256sum`). Compared in constant time.
    pub const fn with_spki_pin(mut self, sha256: [u8; 32]) -> Self {
        self.spki_sha256 = Some(sha256);
        self
    }

    /// Without a wall clock, connect anyway and skip the validity check
    /// (chain, name and pin are still checked). The default refuses with
    /// [`CertificateError::ClockNotSet`]: a device that has not learnt the
    /// time cannot tell an expired certificate from a valid one.
    pub const fn allow_unknown_time(mut self) -> Self {
        self.unknown_time = UnknownTime::SkipValidity;
        self
    }

    /// No verification at all: any server that completes a handshake is
    /// accepted, including an attacker in the middle. For test benches only.
    #[cfg(feature = "insecure-skip-verify")]
    pub const fn insecure_skip_verify() -> Self {
        Trust {
            mode: Mode::Insecure,
            spki_sha256: None,
            unknown_time: UnknownTime::SkipValidity,
        }
    }
}

/// Why the server's certificate was refused. Every one of these stops the
/// handshake before a single request byte is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CertificateError {
    /// The wall clock was never set, so validity cannot be checked (see
    /// [`Trust::allow_unknown_time`]).
    ClockNotSet,
    /// A certificate of the chain is past its `notAfter`.
    Expired,
    /// A certificate of the chain is before its `notBefore` (or the
    /// device's clock is behind).
    NotYetValid,
    /// The leaf's public key does not match the SPKI pin.
    PinMismatch,
    /// The leaf's names do not include the origin's host.
    HostnameMismatch,
    /// The chain does not end at a pinned CA, or a signature in it is wrong.
    UntrustedChain,
    /// The server's `CertificateVerify` signature does not verify with the
    /// leaf's key (the server does not hold the certificate's private key).
    BadHandshakeSignature,
    /// The server sent no certificate, or one that does not parse.
    Malformed,
    /// The chain is larger than the connector's `CHAIN` capacity.
    ChainTooLarge,
}

impl CertificateError {
    /// A short description, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateError::ClockNotSet => "wall clock not set; certificate validity unknown",
            CertificateError::Expired => "certificate expired",
            CertificateError::NotYetValid => "certificate not yet valid (or the clock is behind)",
            CertificateError::PinMismatch => "server public key does not match the pin",
            CertificateError::HostnameMismatch => "certificate does not name the host",
            CertificateError::UntrustedChain => "certificate not issued by a pinned CA",
            CertificateError::BadHandshakeSignature => "server's handshake signature is wrong",
            CertificateError::Malformed => "certificate missing or malformed",
            CertificateError::ChainTooLarge => "certificate chain larger than the CHAIN capacity",
        }
    }
}

/// Why [`TlsConnector::connect`] failed.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TlsConnectError<E> {
    /// The underlying connector failed (DNS, TCP).
    Connect(E),
    /// The server's certificate was refused.
    Certificate(CertificateError),
    /// The handshake failed otherwise (alert from the server, I/O,
    /// protocol error, a record larger than the read buffer).
    Handshake(TlsError),
}

/// [`TlsConnectError`] without the inner connector's error, as kept by
/// [`TlsConnector::last_failure`].
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TlsFailure {
    /// The underlying connector failed.
    Connect,
    /// The server's certificate was refused.
    Certificate(CertificateError),
    /// The handshake failed otherwise.
    Handshake(TlsError),
}

/// HTTPS to the API: wraps any [`Connect`] (e.g.
/// [`TcpConnector`](crate::TcpConnector)) in TLS 1.3 with SNI and
/// certificate verification.
///
/// Capacities, all inline (RAM of the connector):
/// - `READ`: the read record buffer. It must hold the largest record the
///   server sends; [`FULL_RECORD`] is always enough. A smaller one works
///   only with a server that sends small records (see
///   `docs/embassy-measurements.md` for what was measured) or that honours
///   [`with_max_fragment_length`](Self::with_max_fragment_length).
/// - `WRITE`: the write record buffer ([`DEFAULT_WRITE_RECORD`]).
/// - `CHAIN`: room for the server's certificate chain ([`DEFAULT_CHAIN`]).
///
/// `rng` is the chip's random number generator (`rand_core` 0.6
/// `CryptoRng + RngCore`): it makes the handshake's ephemeral key.
pub struct TlsConnector<
    'd,
    C: Connect,
    R,
    const READ: usize = FULL_RECORD,
    const WRITE: usize = DEFAULT_WRITE_RECORD,
    const CHAIN: usize = DEFAULT_CHAIN,
> {
    inner: C,
    origin: Origin<'d>,
    trust: Trust<'d>,
    rng: R,
    max_fragment_length: Option<MaxFragmentLength>,
    unix_offset_ms: Option<u64>,
    last_failure: Option<TlsFailure>,
    verifier: Verifier<'d, CHAIN>,
    read: [u8; READ],
    write: [u8; WRITE],
}

impl<C: Connect, R, const READ: usize, const WRITE: usize, const CHAIN: usize> fmt::Debug
    for TlsConnector<'_, C, R, READ, WRITE, CHAIN>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector")
            .field("origin", &self.origin)
            .field("trust", &self.trust)
            .field("last_failure", &self.last_failure)
            .finish_non_exhaustive()
    }
}

impl<'d, C: Connect, R: CryptoRngCore, const READ: usize, const WRITE: usize, const CHAIN: usize>
    TlsConnector<'d, C, R, READ, WRITE, CHAIN>
{
    /// HTTPS to `origin` (`https://host[:port]`, a host name) through
    /// `inner`, which must reach that host and port. The `Host` header is
    /// the origin's authority and the SNI its host.
    ///
    /// # Errors
    /// The origin is malformed, not `https://`, or an IP literal.
    pub fn new(inner: C, origin: &'d str, trust: Trust<'d>, rng: R) -> Result<Self, OriginError> {
        let origin = Origin::parse(origin)?;
        origin.check_tls()?;
        Ok(TlsConnector {
            inner,
            origin,
            trust,
            rng,
            max_fragment_length: None,
            unix_offset_ms: None,
            last_failure: None,
            verifier: Verifier {
                trust,
                host: origin.host(),
                now: None,
                accepted: None,
                failure: None,
            },
            read: [0; READ],
            write: [0; WRITE],
        })
    }

    /// Asks the server for records of at most 512..=4096 bytes of
    /// plaintext (RFC 6066), so that a smaller `READ` suffices. Servers may
    /// ignore it (rustls does; see the measurements), so only use a `READ`
    /// below [`FULL_RECORD`] against a server known to honour it.
    #[must_use]
    pub fn with_max_fragment_length(mut self, length: MaxFragmentLength) -> Self {
        self.max_fragment_length = Some(length);
        self
    }

    /// The last connect failure, if the last connect failed. The client
    /// reports every connect failure to the core as a plain
    /// `TransportError::Connect`; this tells the application why (a wrong
    /// clock shows as [`CertificateError::NotYetValid`] or `Expired`).
    pub fn last_failure(&self) -> Option<TlsFailure> {
        self.last_failure
    }

    /// The wrapped connector.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// The wrapped connector, mutably.
    pub fn inner_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// The wall clock the certificates' validity is checked against.
    fn now_secs(&self) -> Option<u64> {
        self.unix_offset_ms
            .map(|offset| BootInstant::now().as_millis().saturating_add(offset) / 1000)
    }
}

impl<'d, C: Connect, R: CryptoRngCore, const READ: usize, const WRITE: usize, const CHAIN: usize>
    Connect for TlsConnector<'d, C, R, READ, WRITE, CHAIN>
{
    type Error = TlsConnectError<C::Error>;
    type Connection<'a>
        = TlsStream<'a, C::Connection<'a>>
    where
        Self: 'a;

    fn host(&self) -> &str {
        self.origin.authority()
    }

    fn set_unix_time(&mut self, unix_ms: u64) {
        self.unix_offset_ms = Some(unix_ms.saturating_sub(BootInstant::now().as_millis()));
        self.inner.set_unix_time(unix_ms);
    }

    async fn connect(&mut self) -> Result<Self::Connection<'_>, Self::Error> {
        let now = self.now_secs();
        let Self {
            inner,
            origin,
            rng,
            max_fragment_length,
            last_failure,
            verifier,
            read,
            write,
            ..
        } = self;
        *last_failure = None;
        let socket = match inner.connect().await {
            Ok(socket) => socket,
            Err(e) => {
                *last_failure = Some(TlsFailure::Connect);
                return Err(TlsConnectError::Connect(e));
            }
        };
        let mut config = TlsConfig::new().with_server_name(origin.host());
        if let Some(length) = *max_fragment_length {
            config = config.with_max_fragment_length(length);
        }
        verifier.reset(now);
        let mut tls = TlsConnection::new(socket, read, write);
        let opened = tls
            .open(TlsContext::new(
                &config,
                Provider {
                    rng,
                    verifier: &mut *verifier,
                },
            ))
            .await;
        verifier.accepted = None;
        match opened {
            Ok(()) => Ok(TlsStream { tls: Some(tls) }),
            Err(e) => {
                let error = match verifier.failure.take() {
                    Some(certificate) => TlsConnectError::Certificate(certificate),
                    None => TlsConnectError::Handshake(e),
                };
                *last_failure = Some(match error {
                    TlsConnectError::Certificate(c) => TlsFailure::Certificate(c),
                    _ => TlsFailure::Handshake(e),
                });
                Err(error)
            }
        }
    }

    async fn close<'a>(connection: &mut Self::Connection<'a>)
    where
        Self: 'a,
    {
        // close_notify, then the inner connector's own close (TCP FIN).
        if let Some(tls) = connection.tls.take()
            && let Ok(mut socket) = tls.close().await
        {
            C::close(&mut socket).await;
        }
    }
}

/// An open TLS connection (the connector's `Connection`).
pub struct TlsStream<'a, S: Read + Write> {
    /// `None` once closed.
    tls: Option<TlsConnection<'a, S, CipherSuite>>,
}

impl<'a, S: Read + Write + 'a> fmt::Debug for TlsStream<'a, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("open", &self.tls.is_some())
            .finish()
    }
}

impl<'a, S: Read + Write + 'a> ErrorType for TlsStream<'a, S> {
    type Error = TlsError;
}

impl<'a, S: Read + Write + 'a> Read for TlsStream<'a, S> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TlsError> {
        match self.tls.as_mut() {
            Some(tls) => tls.read(buf).await,
            None => Err(TlsError::ConnectionClosed),
        }
    }
}

impl<'a, S: Read + Write + 'a> Write for TlsStream<'a, S> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, TlsError> {
        match self.tls.as_mut() {
            Some(tls) => tls.write(buf).await,
            None => Err(TlsError::ConnectionClosed),
        }
    }

    async fn flush(&mut self) -> Result<(), TlsError> {
        match self.tls.as_mut() {
            Some(tls) => tls.flush().await,
            None => Err(TlsError::ConnectionClosed),
        }
    }
}

/// The crypto provider of one handshake: the connector's RNG and verifier.
struct Provider<'v, 'd, R, const CHAIN: usize> {
    rng: &'v mut R,
    verifier: &'v mut Verifier<'d, CHAIN>,
}

impl<R: CryptoRngCore, const CHAIN: usize> CryptoProvider for Provider<'_, '_, R, CHAIN> {
    type CipherSuite = CipherSuite;
    type Signature = [u8; 0];

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut *self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<CipherSuite>, TlsError> {
        Ok(&mut *self.verifier)
    }
}

/// The certificate checks of one handshake. The chain's signatures, the
/// `CertificateVerify` signature and the final host-name match are
/// embedded-tls's `CertVerifier`; around it this checks validity against
/// the adapter's clock, the SPKI pin, picks the pinned CA that issued the
/// chain, and records a typed reason for a refusal.
struct Verifier<'d, const CHAIN: usize> {
    trust: Trust<'d>,
    host: &'d str,
    now: Option<u64>,
    accepted: Option<CertVerifier<'d, CipherSuite, NoClock, CHAIN>>,
    failure: Option<CertificateError>,
}

impl<'d, const CHAIN: usize> Verifier<'d, CHAIN> {
    fn reset(&mut self, now: Option<u64>) {
        self.now = now;
        self.accepted = None;
        self.failure = None;
    }

    fn refuse(&mut self, error: CertificateError) -> TlsError {
        warn!("server certificate refused: {}", error.as_str());
        self.failure = Some(error);
        TlsError::InvalidCertificate
    }

    fn check(
        &mut self,
        transcript: &<CipherSuite as embedded_tls::TlsCipherSuite>::Hash,
        chain: CertificateRef<'_>,
    ) -> Result<(), CertificateError> {
        #[allow(clippy::infallible_destructuring_match)] // not without insecure-skip-verify
        let cas = match self.trust.mode {
            Mode::Verify(cas) => cas,
            #[cfg(feature = "insecure-skip-verify")]
            Mode::Insecure => return Ok(()),
        };
        // The leaf, then the rest of the chain in the server's order.
        let mut views = chain.entries.iter().map(|entry| match entry {
            embedded_tls::CertificateEntryRef::X509(der) => {
                CertView::parse(der).map_err(|_| CertificateError::Malformed)
            }
            embedded_tls::CertificateEntryRef::RawPublicKey(_) => Err(CertificateError::Malformed),
        });
        let leaf = views.next().ok_or(CertificateError::Malformed)??;
        let mut last = leaf;
        // Validity of every certificate the server sent.
        let check_time = |view: &CertView<'_>| -> Result<(), CertificateError> {
            match self.now {
                Some(now) if now < view.not_before => Err(CertificateError::NotYetValid),
                Some(now) if now > view.not_after => Err(CertificateError::Expired),
                Some(_) => Ok(()),
                None => match self.trust.unknown_time {
                    UnknownTime::Refuse => Err(CertificateError::ClockNotSet),
                    UnknownTime::SkipValidity => Ok(()),
                },
            }
        };
        check_time(&leaf)?;
        for view in views {
            let view = view?;
            check_time(&view)?;
            last = view;
        }
        // The pin, before any signature is checked (cheap, and the most
        // specific answer when the key is wrong).
        if let Some(pin) = self.trust.spki_sha256 {
            let hash: [u8; 32] = Sha256::digest(leaf.spki).into();
            if !bool::from(hash.ct_eq(&pin)) {
                return Err(CertificateError::PinMismatch);
            }
        }
        // The pinned CA that issued the last certificate of the chain (by
        // name), or, for a server that sends the CA itself, that CA.
        let ca = cas
            .iter()
            .copied()
            .find(|ca| {
                CertView::parse(ca)
                    .is_ok_and(|ca| ca.subject == last.issuer || ca.spki == last.spki)
            })
            .ok_or(CertificateError::UntrustedChain)?;
        // Whether the leaf names the host, to tell that from a bad chain.
        let named = leaf
            .any_dns_name(|name| name_matches(name, self.host.as_bytes()))
            .map_err(|_| CertificateError::Malformed)?;
        let mut verifier =
            CertVerifier::<'d, CipherSuite, NoClock, CHAIN>::new(Certificate::X509(ca));
        verifier
            .set_hostname_verification(self.host)
            .map_err(|_| CertificateError::HostnameMismatch)?;
        match verifier.verify_certificate(transcript, chain) {
            Ok(()) => {
                self.accepted = Some(verifier);
                Ok(())
            }
            Err(TlsError::OutOfMemory) => Err(CertificateError::ChainTooLarge),
            Err(_) if named == Some(false) => Err(CertificateError::HostnameMismatch),
            Err(_) => Err(CertificateError::UntrustedChain),
        }
    }
}

impl<const CHAIN: usize> TlsVerifier<CipherSuite> for Verifier<'_, CHAIN> {
    fn set_hostname_verification(&mut self, _hostname: &str) -> Result<(), TlsError> {
        // The host is the origin's, set at construction.
        Ok(())
    }

    fn verify_certificate(
        &mut self,
        transcript: &<CipherSuite as embedded_tls::TlsCipherSuite>::Hash,
        chain: CertificateRef<'_>,
    ) -> Result<(), TlsError> {
        self.check(transcript, chain).map_err(|e| self.refuse(e))
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef<'_>) -> Result<(), TlsError> {
        #[cfg(feature = "insecure-skip-verify")]
        if matches!(self.trust.mode, Mode::Insecure) {
            return Ok(());
        }
        let Some(accepted) = self.accepted.as_mut() else {
            return Err(self.refuse(CertificateError::Malformed));
        };
        accepted
            .verify_signature(verify)
            .map_err(|_| self.refuse(CertificateError::BadHandshakeSignature))
    }
}
