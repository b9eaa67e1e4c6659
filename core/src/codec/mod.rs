//! Byte formats shared by every adapter: JSON bodies, JWT claims, stored
//! records and HTTP/1.1 framing. Each decoder returns a typed error on any
//! input and never panics.

pub mod http1;
pub mod json;
pub mod jwt;
pub mod record;
