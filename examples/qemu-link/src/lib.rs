//! The serial link between the QEMU firmware (`examples/embassy-firmware`,
//! binary `qemu`) and the host bridge (`examples/qemu-runner`).
//!
//! The emulated board has no network interface QEMU can bridge without root,
//! but it has a UART. The firmware's `Connect` sends frames over it, and the
//! bridge turns them into real TCP connections to the emulator:
//!
//! ```text
//! firmware                          bridge
//!   Open  { conn }          ->        connect TCP to the API
//!                           <-      Opened { conn, ok }
//!   Data  { conn, bytes }   ->        write to the socket
//!                           <-      Data { conn, bytes }   (what the socket read)
//!   Close { conn }          ->        shut the socket down
//!                           <-      Closed { conn }        (socket EOF or error)
//! ```
//!
//! Each frame is a 4-byte [`Header`] (kind, connection id, payload length in
//! little endian) followed by the payload. The connection id lets the
//! firmware drop frames of a connection it already gave up on (a request
//! timeout drops the connection without a `Close`), instead of reading them
//! as the answer to the next request. `#![no_std]`, no allocation: the same
//! code runs in the firmware and in the bridge.

#![no_std]

/// Largest payload of one frame. Small enough that the bridge never holds
/// more than one frame of a connection the firmware abandoned.
pub const MAX_PAYLOAD: usize = 1024;

/// Length of a [`Header`] on the wire.
pub const HEADER_LEN: usize = 4;

/// What a frame says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Firmware → bridge: open a TCP connection to the API (no payload).
    Open,
    /// Either way: bytes of the connection.
    Data,
    /// Firmware → bridge: the firmware is done with the connection.
    Close,
    /// Bridge → firmware: the answer to `Open`; payload one byte,
    /// [`OPENED_OK`] or [`OPENED_REFUSED`].
    Opened,
    /// Bridge → firmware: the server closed the connection, or it failed.
    Closed,
}

/// `Opened` payload: the TCP connection is up.
pub const OPENED_OK: u8 = 0;
/// `Opened` payload: the TCP connection could not be made.
pub const OPENED_REFUSED: u8 = 1;

impl Kind {
    /// The byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            Kind::Open => 0x01,
            Kind::Data => 0x02,
            Kind::Close => 0x03,
            Kind::Opened => 0x81,
            Kind::Closed => 0x83,
        }
    }

    /// The kind of a wire byte, if it is one.
    pub const fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            0x01 => Some(Kind::Open),
            0x02 => Some(Kind::Data),
            0x03 => Some(Kind::Close),
            0x81 => Some(Kind::Opened),
            0x83 => Some(Kind::Closed),
            _ => None,
        }
    }
}

/// The fixed part of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the frame says.
    pub kind: Kind,
    /// The connection it belongs to (the firmware numbers them, wrapping).
    pub conn: u8,
    /// Payload bytes that follow the header (at most [`MAX_PAYLOAD`]).
    pub len: u16,
}

/// Why four bytes are not a [`Header`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The kind byte is not one of [`Kind`]'s.
    UnknownKind(u8),
    /// The length is over [`MAX_PAYLOAD`].
    TooLong(u16),
    /// A kind that never carries a payload has one, or `Opened` has not
    /// exactly one byte.
    BadLength {
        /// The kind of the frame.
        kind: Kind,
        /// Its announced payload length.
        len: u16,
    },
}

impl core::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HeaderError::UnknownKind(byte) => write!(f, "unknown frame kind 0x{byte:02x}"),
            HeaderError::TooLong(len) => {
                write!(f, "frame payload of {len} bytes is over {MAX_PAYLOAD}")
            }
            HeaderError::BadLength { kind, len } => {
                write!(f, "{kind:?} frame with a payload of {len} bytes")
            }
        }
    }
}

impl Header {
    /// A header for `kind` on `conn` with `len` payload bytes.
    pub const fn new(kind: Kind, conn: u8, len: u16) -> Header {
        Header { kind, conn, len }
    }

    /// The header's bytes.
    pub const fn encode(self) -> [u8; HEADER_LEN] {
        let len = self.len.to_le_bytes();
        [self.kind.to_byte(), self.conn, len[0], len[1]]
    }

    /// Parses and checks a header: known kind, length within
    /// [`MAX_PAYLOAD`] and right for the kind.
    ///
    /// # Errors
    /// [`HeaderError`] says which check failed; the link is then out of
    /// step and must be dropped.
    pub const fn decode(bytes: [u8; HEADER_LEN]) -> Result<Header, HeaderError> {
        let Some(kind) = Kind::from_byte(bytes[0]) else {
            return Err(HeaderError::UnknownKind(bytes[0]));
        };
        let len = u16::from_le_bytes([bytes[2], bytes[3]]);
        if len as usize > MAX_PAYLOAD {
            return Err(HeaderError::TooLong(len));
        }
        let ok = match kind {
            Kind::Data => true,
            Kind::Opened => len == 1,
            Kind::Open | Kind::Close | Kind::Closed => len == 0,
        };
        if !ok {
            return Err(HeaderError::BadLength { kind, len });
        }
        Ok(Header {
            kind,
            conn: bytes[1],
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        for (kind, len) in [
            (Kind::Open, 0),
            (Kind::Data, 0),
            (Kind::Data, MAX_PAYLOAD as u16),
            (Kind::Close, 0),
            (Kind::Opened, 1),
            (Kind::Closed, 0),
        ] {
            let header = Header::new(kind, 7, len);
            assert_eq!(Header::decode(header.encode()), Ok(header));
        }
    }

    #[test]
    fn wire_layout_is_kind_conn_little_endian_length() {
        assert_eq!(
            Header::new(Kind::Data, 3, 0x0102).encode(),
            [0x02, 3, 0x02, 0x01]
        );
    }

    #[test]
    fn bad_headers_are_typed_errors() {
        assert_eq!(
            Header::decode([0x55, 1, 0, 0]),
            Err(HeaderError::UnknownKind(0x55))
        );
        assert_eq!(
            Header::decode([0x02, 1, 0x01, 0x04]),
            Err(HeaderError::TooLong(1025))
        );
        assert_eq!(
            Header::decode([0x01, 1, 1, 0]),
            Err(HeaderError::BadLength {
                kind: Kind::Open,
                len: 1
            })
        );
        assert_eq!(
            Header::decode([0x81, 1, 0, 0]),
            Err(HeaderError::BadLength {
                kind: Kind::Opened,
                len: 0
            })
        );
    }

    #[test]
    fn no_four_bytes_panic() {
        // Exhaustive over kind and length bytes (conn is opaque).
        for kind in 0..=255u8 {
            for hi in 0..=255u8 {
                for lo in [0u8, 1, 2, 255] {
                    let _ = Header::decode([kind, 0, lo, hi]);
                }
            }
        }
    }
}
