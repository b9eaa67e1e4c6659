//! The QEMU board over HTTPS (features `qemu` and `tls`): the UART link
//! wrapped in the adapter's `TlsConnector`, verification on, with what a
//! real board has built in delivered by the host at run time instead:
//!
//! - the CA to pin: a DER file the runner writes for this run (the emulator
//!   generates a fresh CA each time), read through semihosting;
//! - entropy: [`HostEntropy`], the host's `/dev/urandom` read through
//!   semihosting, because the emulated board has no TRNG. TEST ONLY.
//!
//! The wall clock is the host's (semihosting `SYS_TIME`), set by
//! [`lifecycle::run`](super::lifecycle::run).

use paywall_auth_embassy::{Connect, TlsConnector, TlsFailure, Trust};
use static_cell::StaticCell;

use super::boot::fail;
use super::host::HostFile;
use super::lifecycle::Diagnose;
use super::link::UartConnector;

/// The TLS connector of the QEMU board: default buffers (16 640 B read,
/// 1 KiB write, 4 KiB chain), as `bin/tls.rs` on the measured board.
pub type HostTls = TlsConnector<'static, UartConnector, HostEntropy>;

/// Room for the pinned CA certificate (DER). The emulator's (ECDSA P-256)
/// is about 400 B.
const CA_MAX: usize = 2048;

static CA: StaticCell<[u8; CA_MAX]> = StaticCell::new();
static CAS: StaticCell<[&'static [u8]; 1]> = StaticCell::new();

impl<C: Connect, R: rand_core::CryptoRngCore> Diagnose for TlsConnector<'_, C, R> {
    type Refusal = paywall_auth_embassy::CertificateError;

    fn refusal(&self) -> Option<Self::Refusal> {
        match self.last_failure() {
            Some(TlsFailure::Certificate(reason)) => Some(reason),
            _ => None,
        }
    }
}

/// HTTPS to `origin` (`https://host:port`; the host is what the server's
/// certificate must name) through the UART link, trusting only the CA in
/// the host file `ca_path`, with entropy from the host file
/// `entropy_path`. Fails the boot when either file cannot be read.
pub fn connector(origin: &'static str, ca_path: &str, entropy_path: &str) -> HostTls {
    let ca = read_ca(ca_path);
    let cas: &'static [&'static [u8]] = CAS.init([ca]);
    let Some(entropy) = HostEntropy::open(entropy_path) else {
        fail("entropy source cannot be opened")
    };
    match TlsConnector::new(
        UartConnector::new(""),
        origin,
        Trust::pinned_cas(cas),
        entropy,
    ) {
        Ok(tls) => tls,
        Err(e) => fail(e.as_str()),
    }
}

fn read_ca(path: &str) -> &'static [u8] {
    let buf = CA.init([0; CA_MAX]);
    let Some(mut file) = HostFile::open_read_only(path) else {
        fail("CA file cannot be opened")
    };
    match file.size() {
        Some(len) if len > 0 && len <= CA_MAX && file.read_at(0, &mut buf[..len]) => &buf[..len],
        _ => fail("CA file is empty, too large or unreadable"),
    }
}

/// TEST ONLY: the emulated board's stand-in for a TRNG. Every byte comes
/// from the host's entropy source (`/dev/urandom`, read through
/// semihosting at each request), so every boot and every handshake gets
/// fresh randomness and nothing is derived from a constant. Semihosting
/// only exists under a debugger or QEMU: a real board uses its TRNG here
/// (e.g. `embassy_stm32::rng::Rng`).
pub struct HostEntropy {
    file: HostFile,
}

impl HostEntropy {
    /// Opens the host's entropy source at `path` (`/dev/urandom`).
    pub fn open(path: &str) -> Option<HostEntropy> {
        HostFile::open_read_only(path).map(|file| HostEntropy { file })
    }
}

impl rand_core::RngCore for HostEntropy {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // No randomness, no handshake: fail the step rather than go on.
        if !self.file.read(dest) {
            fail("entropy source read failed")
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for HostEntropy {}
