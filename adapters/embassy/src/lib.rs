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
mod store;

pub use client::{AuthClient, DEFAULT_BUF, DEFAULT_REQUEST_TIMEOUT, MIN_BUF, Upgrade};
pub use connect::Connect;
pub use events::{Event, EventChannel, EventSink, NoEvents, UserInfo};
#[cfg(feature = "embassy-net")]
pub use net::{Remote, TcpConnectError, TcpConnector};
pub use store::{FlashStore, StorageFault};

/// The core crate, re-exported so applications name one dependency.
pub use paywall_auth;
