//! Compile-time capacities of every bounded buffer in the core.
//!
//! Each constant has a default sized for production values and can be changed
//! at build time with the environment variable named in its doc, the way
//! smoltcp sizes its tables. Overflow of any of them is reported as
//! [`CapacityError`](crate::CapacityError) naming the field, never a panic and
//! never a silent truncation (the only exception, documented on
//! [`ERROR_MESSAGE_MAX`], is the human-readable text of a server error).

include!(concat!(env!("OUT_DIR"), "/limits.rs"));
