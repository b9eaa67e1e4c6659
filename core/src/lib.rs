#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// `Error` carries the server's code and message inline (no allocator to box
// them); it is returned once per command, never in a hot loop.
#![allow(clippy::result_large_err)]
#![doc = include_str!("../README.md")]
#![cfg_attr(feature = "document-features", doc = "\n## Cargo features\n")]
#![cfg_attr(feature = "document-features", doc = document_features::document_features!())]

#[cfg(feature = "trace")]
extern crate alloc;

#[macro_use]
mod fmt;

pub mod codec;
mod command;
mod config;
mod error;
pub mod limits;
mod machine;
pub mod origin;
mod output;
mod request;
mod secret;
mod session;
mod storage;
mod time;
#[cfg(feature = "trace")]
#[cfg_attr(docsrs, doc(cfg(feature = "trace")))]
pub mod trace;

pub use command::{Command, CommandId, SignInOptions, SignOutOptions, UpgradeRequest};
pub use config::{Config, ConfigError};
pub use error::{ApiError, CapacityError, DecodeError, Error, Field, StorageError, TransportError};
pub use machine::{Input, Machine, NotDrained, Response};
pub use output::{AuthChange, Notice, Outcome, OutcomeKind, Output, Revocation};
pub use request::{Body, Header, PATH_MAX, Request, RequestId, Route, SDK_VERSION};
pub use secret::{Secret, bounded};
pub use session::{AccessToken, Password, RefreshToken, Session, User, UserMeta};
pub use storage::{KEY_MAX, RecordKey, RecordValue, StoreFormat, StoreId, StoreOp};
pub use time::{Duration, Instant};
