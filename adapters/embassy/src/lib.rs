#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc = include_str!("../README.md")]
#![cfg_attr(feature = "document-features", doc = "\n## Cargo features\n")]
#![cfg_attr(feature = "document-features", doc = document_features::document_features!())]

#[macro_use]
mod fmt;

mod client;
mod connect;
mod events;
#[cfg(feature = "embassy-net")]
mod net;
mod origin;
mod store;
#[cfg(feature = "tls")]
mod tls;

pub use client::{AuthClient, DEFAULT_BUF, DEFAULT_REQUEST_TIMEOUT, MIN_BUF, Upgrade};
pub use connect::Connect;
pub use events::{Event, EventChannel, EventSink, NoEvents, UserInfo};
#[cfg(feature = "embassy-net")]
pub use net::{Remote, TcpConnectError, TcpConnector};
pub use origin::{Origin, OriginError, PlainHttp, Scheme};
pub use store::{FlashStore, StorageFault};
#[cfg(feature = "tls")]
pub use tls::{
    CertificateError, CipherSuite, DEFAULT_CHAIN, DEFAULT_WRITE_RECORD, FULL_RECORD,
    MaxFragmentLength, TlsConnectError, TlsConnector, TlsError, TlsFailure, TlsStream, Trust,
};

/// The core crate, re-exported so applications name one dependency.
pub use paywall_auth;
