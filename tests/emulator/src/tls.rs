//! HTTPS for the emulator: a throwaway CA and a leaf certificate generated
//! at start with rcgen (ECDSA P-256, the key type a no_std verifier
//! handles), served with rustls, TLS 1.3 only.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// How the emulator's certificate is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// Names of the leaf certificate (DNS names, or IP addresses): the
    /// first one is the host of [`Emulator::origin`](crate::Emulator::origin).
    pub host_names: Vec<String>,
    /// Start of the leaf's validity.
    pub not_before: SystemTime,
    /// End of the leaf's validity.
    pub not_after: SystemTime,
    /// Largest TLS record plaintext rustls sends (`None`: 16 KiB, the
    /// protocol maximum). For measuring how small a client's read buffer
    /// can be against a server configured to send small records.
    pub max_fragment_size: Option<usize>,
}

impl TlsOptions {
    /// A leaf for `host`, valid from an hour ago for 30 days.
    pub fn for_host(host: impl Into<String>) -> Self {
        let now = SystemTime::now();
        TlsOptions {
            host_names: vec![host.into()],
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(30 * 24 * 3600),
            max_fragment_size: None,
        }
    }

    /// The same with another validity window (e.g. one in the past).
    #[must_use]
    pub fn valid_between(mut self, not_before: SystemTime, not_after: SystemTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions::for_host("localhost")
    }
}

/// What a client needs to trust the emulator: the CA that issued its
/// certificate, the leaf itself and the pin of the leaf's public key.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    /// The leaf's names.
    pub host_names: Vec<String>,
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// The CA certificate, PEM (for `curl --cacert`).
    pub ca_pem: String,
    /// The leaf certificate the server presents, DER.
    pub leaf_der: Vec<u8>,
    /// The leaf certificate, PEM.
    pub leaf_pem: String,
    /// The leaf's private key, PKCS#8 PEM: a throwaway, so that a test can
    /// serve the same identity from another TLS server (e.g. OpenSSL).
    pub leaf_key_pem: String,
    /// SHA-256 of the leaf's DER `SubjectPublicKeyInfo` (an SPKI pin).
    pub leaf_spki_sha256: [u8; 32],
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("host_names", &self.host_names)
            .field("leaf_spki_sha256", &self.leaf_spki_sha256)
            .field("leaf_key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Generates the CA and the leaf and builds the acceptor.
pub(crate) fn build(options: &TlsOptions) -> std::io::Result<(TlsIdentity, TlsAcceptor)> {
    let invalid = |e: rcgen::Error| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    // The CA: valid for as long as the leaf is, and a bit around it.
    let ca_key = KeyPair::generate().map_err(invalid)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, "paywall-auth emulator test CA");
    ca_params.distinguished_name = ca_name;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = (options.not_before - Duration::from_secs(3600)).into();
    ca_params.not_after = (options.not_after + Duration::from_secs(3600)).into();
    let ca_cert = ca_params.self_signed(&ca_key).map_err(invalid)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let leaf_key = KeyPair::generate().map_err(invalid)?;
    let mut leaf_params = CertificateParams::new(options.host_names.clone()).map_err(invalid)?;
    let mut leaf_name = DistinguishedName::new();
    if let Some(host) = options.host_names.first() {
        leaf_name.push(DnType::CommonName, host.as_str());
    }
    leaf_params.distinguished_name = leaf_name;
    leaf_params.not_before = options.not_before.into();
    leaf_params.not_after = options.not_after.into();
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).map_err(invalid)?;

    let identity = TlsIdentity {
        host_names: options.host_names.clone(),
        ca_der: ca_cert.der().to_vec(),
        ca_pem: ca_cert.pem(),
        leaf_der: leaf_cert.der().to_vec(),
        leaf_pem: leaf_cert.pem(),
        leaf_key_pem: leaf_key.serialize_pem(),
        leaf_spki_sha256: Sha256::digest(leaf_key.subject_public_key_info()).into(),
    };

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(leaf_cert.der().to_vec())], key)
        .map_err(std::io::Error::other)?;
    config.max_fragment_size = options.max_fragment_size;
    Ok((identity, TlsAcceptor::from(Arc::new(config))))
}
