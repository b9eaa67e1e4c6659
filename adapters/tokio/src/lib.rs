//! Tokio adapter of [`paywall_auth`]: an async [`AuthClient`] for the
//! anonymous sign-in flow of the paywall backend.
//!
//! The client is a thin driver around the sans-IO core: it moves bytes
//! between the core's [`Machine`](paywall_auth::Machine), an HTTP
//! [`Transport`] (default: [`ReqwestTransport`], rustls with `ring`) and a
//! [`Store`] ([`MemoryStore`], or [`FileStore`] for kiosks). Every decision —
//! which request to send, what to persist, which callers share a request,
//! what a response means — is the core's.
//!
//! ```no_run
//! use paywall_auth_tokio::{AuthClient, FileStore, SignInOptions};
//!
//! # async fn demo() -> Result<(), paywall_auth_tokio::Error> {
//! let client = AuthClient::builder("https://pay.vendor.com", "pw_demo")
//!     .store(FileStore::open("/var/lib/kiosk/auth")?)
//!     .build()
//!     .await?;
//! let session = client.sign_in_anonymously(SignInOptions::default()).await?;
//! println!("guest {}", session.user.id);
//! if let Some(token) = client.access_token().await? {
//!     // Authorization: Bearer {token.expose()}
//!     # let _ = token;
//! }
//! client.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! [`AuthClientBuilder::record_trace`] records what the client fed the core
//! and what it answered; [`replay_trace_file`] replays such a trace through
//! today's core ([`trace`], docs/protocol.md §14).
//!
//! Logs go through [`tracing`] (request ids, routes, statuses, store keys;
//! never tokens: the core's secret types redact themselves and this crate
//! never prints a body).

// The snippets of this crate's README and of the project README (whose
// quick start uses this crate) are compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
mod project_readme {}

mod client;
mod driver;
mod error;
mod file_store;
mod store;
pub mod trace;
mod transport;

pub use client::{
    AuthClient, AuthClientBuilder, AuthEvent, AuthEvents, Notices, Revocation, UpgradeOutcome,
};
pub use error::Error;
pub use file_store::{FileStore, LOCK_FILE, MAX_RECORD_BYTES};
pub use paywall_auth;
pub use paywall_auth::{
    AccessToken, AuthChange, Notice, RecordKey, Session, SignInOptions, SignOutOptions,
    StoreFormat, UpgradeRequest, User, UserMeta,
};
pub use store::{MemoryStore, Store, StoreChange, StoreError, StoreWatch};
pub use trace::{ReplayFileError, replay_trace_file};
pub use transport::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_REQUEST_TIMEOUT, HttpRequest,
    HttpResponse, ReqwestTransport, Transport, TransportError, install_ring_provider,
    is_json_content_type, map_reqwest_error,
};
