//! One step of the auth lifecycle per boot, whatever the connector (plain
//! over the UART link, or TLS over it): what the `qemu` binaries run after
//! boot. It prints `fw: …` lines that `examples/qemu-runner` checks against
//! the emulator's records, and exits QEMU with status 0 when the step did
//! what it should.
//!
//! Steps:
//! - `fresh`: the flash file is new; sign in anonymously (a new guest);
//! - `resume`: a reboot; the session comes back from flash, and a refresh
//!   proves its refresh token still works on the server;
//! - `soft`: soft sign-out, then sign in: the same guest is resumed;
//! - `hard`: hard sign-out (revoked on the server), then sign in: a new
//!   guest;
//! - `refused`: nothing stored; the sign-in must fail because the server's
//!   certificate is refused (a TLS run given the wrong CA or host name).

use embassy_time::{Duration, Instant};
use paywall_auth_embassy::paywall_auth::{SignInOptions, SignOutOptions};
use paywall_auth_embassy::{AuthClient, Connect};

use super::flash::FileFlash;
use super::host;
use super::link::UartConnector;
use crate::{host_println, stack};

/// Why a connector refused the server, if it checks one.
pub trait Diagnose {
    /// The reason, printed as `fw: refused {:?}`.
    type Refusal: core::fmt::Debug;
    /// Whether the last connect failed because the server was refused.
    fn refusal(&self) -> Option<Self::Refusal>;
}

impl Diagnose for UartConnector {
    type Refusal = core::convert::Infallible;

    fn refusal(&self) -> Option<Self::Refusal> {
        None
    }
}

/// A connector that times its connects (the TCP open through the bridge,
/// plus the TLS handshake when it wraps a TLS connector).
pub struct Timed<C> {
    inner: C,
    connects: u32,
    slowest: Duration,
}

impl<C> Timed<C> {
    /// `inner`, timed.
    pub const fn new(inner: C) -> Self {
        Timed {
            inner,
            connects: 0,
            slowest: Duration::from_ticks(0),
        }
    }
}

impl<C: Diagnose> Diagnose for Timed<C> {
    type Refusal = C::Refusal;

    fn refusal(&self) -> Option<C::Refusal> {
        self.inner.refusal()
    }
}

impl<C: Connect> Connect for Timed<C> {
    type Error = C::Error;
    type Connection<'a>
        = C::Connection<'a>
    where
        Self: 'a;

    fn host(&self) -> &str {
        self.inner.host()
    }

    fn set_unix_time(&mut self, unix_ms: u64) {
        self.inner.set_unix_time(unix_ms);
    }

    async fn connect(&mut self) -> Result<C::Connection<'_>, C::Error> {
        let Timed {
            inner,
            connects,
            slowest,
        } = self;
        let started = Instant::now();
        let connection = inner.connect().await;
        *connects += 1;
        *slowest = (*slowest).max(started.elapsed());
        connection
    }

    async fn close<'a>(connection: &mut C::Connection<'a>)
    where
        Self: 'a,
    {
        C::close(connection).await;
    }
}

type Client<C> = AuthClient<'static, Timed<C>, FileFlash>;

/// Runs `step` (see the module) and exits QEMU: status 0 when it did what
/// it should. The wall clock is the host's (semihosting `SYS_TIME`), as a
/// device sets it from its RTC or SNTP.
pub async fn run<C: Connect + Diagnose>(client: &mut Client<C>, step: &str) -> ! {
    client.set_unix_time(host::unix_time_secs() * 1000);
    client.start().await;
    let restored = client.session().map(|s| s.user.id.clone());
    match &restored {
        Some(id) => host_println!("fw: restored {}", id.as_str()),
        None => host_println!("fw: restored none"),
    }

    let ok = match step {
        "fresh" => restored.is_none() && sign_in(client).await,
        "resume" => restored.is_some() && refresh(client).await,
        "soft" => {
            restored.is_some()
                && sign_out(client, false).await
                && client.has_resumable_anonymous()
                && sign_in(client).await
        }
        "hard" => {
            restored.is_some()
                && sign_out(client, true).await
                && !client.has_resumable_anonymous()
                && sign_in(client).await
        }
        "refused" => restored.is_none() && refused(client).await,
        _ => super::boot::fail("unknown step"),
    };

    let connector = client.connector();
    host_println!(
        "fw: connects {} slowest {} ms",
        connector.connects,
        connector.slowest.as_millis()
    );
    let (used, size) = stack::high_water();
    host_println!("fw: stack {} of {}", used, size);
    host_println!("fw: step {} {}", step, if ok { "ok" } else { "failed" });
    host::exit(ok)
}

fn print_user(session: &paywall_auth_embassy::paywall_auth::Session) {
    host_println!(
        "fw: user {} anonymous {}",
        session.user.id.as_str(),
        session.user.is_anonymous
    );
}

fn print_error<C: Diagnose>(what: &str, code: &str, connector: &C) {
    host_println!("fw: error {} {}", what, code);
    if let Some(reason) = connector.refusal() {
        host_println!("fw: refused {:?}", reason);
    }
}

async fn sign_in<C: Connect + Diagnose>(client: &mut Client<C>) -> bool {
    match client.sign_in_anonymously(SignInOptions::default()).await {
        Ok(session) => {
            print_user(session);
            true
        }
        Err(e) => {
            print_error("sign-in", e.code(), client.connector());
            false
        }
    }
}

/// A sign-in that must be refused by the connector before any request.
async fn refused<C: Connect + Diagnose>(client: &mut Client<C>) -> bool {
    !sign_in(client).await && client.connector().refusal().is_some()
}

async fn refresh<C: Connect + Diagnose>(client: &mut Client<C>) -> bool {
    match client.refresh().await {
        Ok(session) => {
            print_user(session);
            true
        }
        Err(e) => {
            print_error("refresh", e.code(), client.connector());
            false
        }
    }
}

async fn sign_out<C: Connect + Diagnose>(client: &mut Client<C>, hard: bool) -> bool {
    let options = SignOutOptions {
        forget_anonymous: hard,
    };
    match client.sign_out(options).await {
        Ok(revoked) => {
            let kind = if hard { "hard" } else { "soft" };
            // A hard sign-out of a guest must be confirmed by the server; a
            // soft one needs no revocation (docs/protocol.md §13.6).
            let revocation = match revoked {
                Some(true) => "revoked",
                Some(false) => "not revoked",
                None => "no revocation needed",
            };
            host_println!("fw: signed out ({}, {})", kind, revocation);
            client.session().is_none() && revoked == hard.then_some(true)
        }
        Err(e) => {
            print_error("sign-out", e.code(), client.connector());
            false
        }
    }
}
