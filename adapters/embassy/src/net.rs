//! A [`Connect`] over `embassy-net` TCP (feature `embassy-net`).

use embassy_net::tcp::{ConnectError, TcpSocket};
use embassy_net::{IpEndpoint, Stack};
use embassy_time::Duration;

use crate::connect::Connect;

/// Where the API is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Remote<'d> {
    /// An IP address and port (no DNS needed).
    Ip(IpEndpoint),
    /// A host name resolved on every connect with the stack's DNS client
    /// (A record), and a port. Feature `dns`.
    #[cfg(feature = "dns")]
    Name {
        /// The host name.
        host: &'d str,
        /// The TCP port.
        port: u16,
    },
    #[doc(hidden)]
    #[cfg(not(feature = "dns"))]
    _Lifetime(core::marker::PhantomData<&'d ()>),
}

/// Why [`TcpConnector::connect`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TcpConnectError {
    /// The host name did not resolve.
    Dns,
    /// The TCP connection was refused, timed out or the stack had no route.
    Connect(ConnectError),
}

/// Plain TCP to the API through an `embassy-net` [`Stack`], with the socket
/// buffers inline (`RX` and `TX` bytes; 1 KiB each is plenty: the client
/// streams requests and responses through them).
///
/// For HTTPS, wrap the socket this returns in a TLS stream inside your own
/// [`Connect`] (see the crate docs).
pub struct TcpConnector<'d, const RX: usize = 1024, const TX: usize = 1024> {
    stack: Stack<'d>,
    remote: Remote<'d>,
    host: &'d str,
    socket_timeout: Option<Duration>,
    rx: [u8; RX],
    tx: [u8; TX],
}

impl<const RX: usize, const TX: usize> core::fmt::Debug for TcpConnector<'_, RX, TX> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TcpConnector")
            .field("remote", &self.remote)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl<'d, const RX: usize, const TX: usize> TcpConnector<'d, RX, TX> {
    /// Connects to `remote`, sending `host` as the `Host` header (the
    /// origin's authority, e.g. `api.example.com` or `192.0.2.1:8080`).
    pub fn new(stack: Stack<'d>, remote: Remote<'d>, host: &'d str) -> Self {
        TcpConnector {
            stack,
            remote,
            host,
            socket_timeout: Some(Duration::from_secs(10)),
            rx: [0; RX],
            tx: [0; TX],
        }
    }

    /// The idle timeout of each socket (default 10 s; the client's request
    /// timeout bounds the whole exchange anyway).
    pub fn set_socket_timeout(&mut self, timeout: Option<Duration>) {
        self.socket_timeout = timeout;
    }

    async fn endpoint(&self) -> Result<IpEndpoint, TcpConnectError> {
        match self.remote {
            Remote::Ip(endpoint) => Ok(endpoint),
            #[cfg(feature = "dns")]
            Remote::Name { host, port } => {
                let addresses = self
                    .stack
                    .dns_query(host, embassy_net::dns::DnsQueryType::A)
                    .await
                    .map_err(|_| TcpConnectError::Dns)?;
                let address = addresses.first().ok_or(TcpConnectError::Dns)?;
                Ok(IpEndpoint::new(*address, port))
            }
            #[cfg(not(feature = "dns"))]
            Remote::_Lifetime(_) => Err(TcpConnectError::Dns),
        }
    }
}

impl<'d, const RX: usize, const TX: usize> Connect for TcpConnector<'d, RX, TX> {
    type Error = TcpConnectError;
    type Connection<'a>
        = TcpSocket<'a>
    where
        Self: 'a;

    fn host(&self) -> &str {
        self.host
    }

    async fn connect(&mut self) -> Result<TcpSocket<'_>, TcpConnectError> {
        let endpoint = self.endpoint().await?;
        let mut socket = TcpSocket::new(self.stack, &mut self.rx, &mut self.tx);
        socket.set_timeout(self.socket_timeout);
        socket
            .connect(endpoint)
            .await
            .map_err(TcpConnectError::Connect)?;
        Ok(socket)
    }

    async fn close<'a>(connection: &mut Self::Connection<'a>)
    where
        Self: 'a,
    {
        // FIN, then wait until everything sent is acknowledged, so the
        // server is not left with a half-open connection.
        connection.close();
        let _ = connection.flush().await;
    }
}
