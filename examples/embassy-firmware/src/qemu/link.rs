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
pub struct UartConnector {
    host: &'static str,
    /// Id of the last connection opened; frames of older ones are dropped.
    last: u8,
}

impl UartConnector {
    /// A connector sending `host` as the `Host` header. Call
    /// [`uart::init`] first.
    pub const fn new(host: &'static str) -> Self {
        UartConnector { host, last: 0 }
    }
}

/// An open connection.
pub struct UartConnection<'a> {
    _link: &'a mut UartConnector,
    conn: u8,
    /// Payload bytes of the current `Data` frame not read yet.
    remaining: usize,
    /// The bridge said `Closed`.
    eof: bool,
}

async fn send(header: Header, payload: &[u8]) {
    uart::write_all(&header.encode()).await;
    uart::write_all(payload).await;
}

async fn next_header() -> Result<Header, LinkError> {
    let mut bytes = [0; HEADER_LEN];
    uart::read_exact(&mut bytes).await;
    Ok(Header::decode(bytes)?)
}

async fn skip(mut len: usize) {
    let mut sink = [0; 32];
    while len > 0 {
        let n = sink.len().min(len);
        len -= uart::read_some(&mut sink[..n]).await;
    }
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
        send(Header::new(Kind::Open, conn, 0), &[]).await;
        loop {
            let header = next_header().await?;
            if header.kind == Kind::Opened && header.conn == conn {
                let mut status = [0];
                uart::read_exact(&mut status).await;
                if status[0] != OPENED_OK {
                    return Err(LinkError::Refused);
                }
                return Ok(UartConnection {
                    _link: self,
                    conn,
                    remaining: 0,
                    eof: false,
                });
            }
            // A late frame of a connection given up on.
            skip(usize::from(header.len)).await;
        }
    }

    async fn close<'a>(connection: &mut UartConnection<'a>)
    where
        Self: 'a,
    {
        send(Header::new(Kind::Close, connection.conn, 0), &[]).await;
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
            if self.remaining > 0 {
                let n = self.remaining.min(buf.len());
                let n = uart::read_some(&mut buf[..n]).await;
                self.remaining -= n;
                return Ok(n);
            }
            if self.eof {
                return Ok(0);
            }
            let header = next_header().await?;
            match header.kind {
                Kind::Data if header.conn == self.conn => {
                    self.remaining = usize::from(header.len);
                }
                Kind::Closed if header.conn == self.conn => self.eof = true,
                _ => skip(usize::from(header.len)).await,
            }
        }
    }
}

impl Write for UartConnection<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, LinkError> {
        let n = buf.len().min(MAX_PAYLOAD);
        if n > 0 {
            // n <= MAX_PAYLOAD, which fits a u16.
            send(Header::new(Kind::Data, self.conn, n as u16), &buf[..n]).await;
        }
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), LinkError> {
        // Every frame is handed to the UART whole; nothing is buffered here.
        Ok(())
    }
}
