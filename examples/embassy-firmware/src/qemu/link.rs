//! The auth client's [`Connect`] over the UART: one connection at a time,
//! framed by `paywall-auth-qemu-link` and turned into TCP by the host
//! bridge.

use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use paywall_auth_embassy::Connect;
use paywall_auth_qemu_link::{HEADER_LEN, Header, HeaderError, Kind, MAX_PAYLOAD, OPENED_OK};

use super::uart;

/// Why the link failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum LinkError {
    /// The bridge could not open the TCP connection.
    Refused,
    /// A frame from the bridge did not parse: the link is out of step.
    Protocol,
}

impl From<HeaderError> for LinkError {
    fn from(_: HeaderError) -> Self {
        LinkError::Protocol
    }
}

impl core::fmt::Display for LinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            LinkError::Refused => "the bridge could not connect to the API",
            LinkError::Protocol => "malformed frame from the bridge",
        })
    }
}

impl core::error::Error for LinkError {}

impl embedded_io_async::Error for LinkError {
    fn kind(&self) -> ErrorKind {
        match self {
            LinkError::Refused => ErrorKind::ConnectionRefused,
            LinkError::Protocol => ErrorKind::InvalidData,
        }
    }
}

/// Connects through the host bridge; `host` is the `Host` header.
///
/// Cancel-safe: the client drops a connection future when its request
/// times out, possibly in the middle of a frame. Where the receiver is in
/// the byte stream (a half-read header, payload bytes still to come) is
/// kept here, across connections, so the next connection skips the rest
/// of the frame instead of reading it as a header; and frames are sent
/// whole (`uart::write_all` never yields).
pub struct UartConnector {
    host: &'static str,
    /// Id of the last connection opened; frames of older ones are dropped.
    last: u8,
    rx: Receiver,
}

/// The receiving side of the link: which frame the next byte belongs to.
struct Receiver {
    /// Header bytes read so far (`have` of them).
    head: [u8; HEADER_LEN],
    have: usize,
    /// The frame whose payload is being received, and how much is left.
    frame: Option<Header>,
    remaining: usize,
}

impl Receiver {
    /// Skips what is left of the current frame, then reads the next header.
    async fn header(&mut self) -> Result<Header, LinkError> {
        let mut sink = [0; 32];
        while self.remaining > 0 {
            let n = sink.len().min(self.remaining);
            self.remaining -= uart::read_some(&mut sink[..n]).await;
        }
        self.frame = None;
        while self.have < HEADER_LEN {
            self.have += uart::read_some(&mut self.head[self.have..]).await;
        }
        self.have = 0;
        let header = Header::decode(self.head)?;
        self.frame = Some(header);
        self.remaining = usize::from(header.len);
        Ok(header)
    }

    /// Reads payload bytes of the current frame (0 when none are left).
    async fn payload(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.remaining);
        if n == 0 {
            return 0;
        }
        let n = uart::read_some(&mut buf[..n]).await;
        self.remaining -= n;
        n
    }

    /// Whether payload of a `Data` frame of `conn` is waiting.
    fn data_of(&self, conn: u8) -> bool {
        self.remaining > 0
            && matches!(self.frame, Some(Header { kind: Kind::Data, conn: c, .. }) if c == conn)
    }
}

impl UartConnector {
    /// A connector sending `host` as the `Host` header. Call
    /// [`uart::init`] first.
    pub const fn new(host: &'static str) -> Self {
        UartConnector {
            host,
            last: 0,
            rx: Receiver {
                head: [0; HEADER_LEN],
                have: 0,
                frame: None,
                remaining: 0,
            },
        }
    }
}

/// An open connection.
pub struct UartConnection<'a> {
    link: &'a mut UartConnector,
    conn: u8,
    /// The bridge said `Closed`.
    eof: bool,
}

fn send(header: Header, payload: &[u8]) {
    uart::write_all(&header.encode());
    uart::write_all(payload);
}

impl Connect for UartConnector {
    type Error = LinkError;
    type Connection<'a> = UartConnection<'a>;

    fn host(&self) -> &str {
        self.host
    }

    async fn connect(&mut self) -> Result<UartConnection<'_>, LinkError> {
        self.last = self.last.wrapping_add(1);
        let conn = self.last;
        send(Header::new(Kind::Open, conn, 0), &[]);
        loop {
            // Anything else is a late frame of a connection given up on.
            let header = self.rx.header().await?;
            if header.kind == Kind::Opened && header.conn == conn {
                // `Header::decode` made sure the status byte is there.
                let mut status = [0];
                let got = self.rx.payload(&mut status).await;
                if got != 1 || status[0] != OPENED_OK {
                    return Err(LinkError::Refused);
                }
                return Ok(UartConnection {
                    link: self,
                    conn,
                    eof: false,
                });
            }
        }
    }

    async fn close<'a>(connection: &mut UartConnection<'a>)
    where
        Self: 'a,
    {
        send(Header::new(Kind::Close, connection.conn, 0), &[]);
    }
}

impl ErrorType for UartConnection<'_> {
    type Error = LinkError;
}

impl Read for UartConnection<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.link.rx.data_of(self.conn) {
                return Ok(self.link.rx.payload(buf).await);
            }
            if self.eof {
                return Ok(0);
            }
            let header = self.link.rx.header().await?;
            if header.kind == Kind::Closed && header.conn == self.conn {
                self.eof = true;
            }
        }
    }
}

impl Write for UartConnection<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, LinkError> {
        let n = buf.len().min(MAX_PAYLOAD);
        if n > 0 {
            // n <= MAX_PAYLOAD, which fits a u16.
            send(Header::new(Kind::Data, self.conn, n as u16), &buf[..n]);
        }
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), LinkError> {
        // Every frame is handed to the UART whole; nothing is buffered here.
        Ok(())
    }
}
