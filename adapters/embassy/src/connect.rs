//! How the client reaches the backend: one fresh connection per request.

use embedded_io_async::{Read, Write};

/// Opens connections to the paywall API, one per request.
///
/// The client writes one HTTP/1.1 request with `Connection: close` on each
/// connection, reads the response, calls [`Connect::close`] and drops the
/// connection; no connection is ever reused, so nothing about keep-alive,
/// pipelining or half-read bodies can leak from one request into the next.
///
/// The connection is any byte stream implementing
/// [`embedded_io_async::Read`] + [`embedded_io_async::Write`]: a bare TCP
/// socket for plain HTTP, or a TLS stream wrapping one (see the crate docs
/// for `embedded-tls`). With the `embassy-net` feature,
/// `TcpConnector` implements this trait over
/// `embassy_net::tcp::TcpSocket`.
///
/// Every step runs under the client's request timeout, so an implementation
/// does not need a timeout of its own.
// The client is single-task and never needs its futures to be `Send`, so the
// usual caveat about `async fn` in public traits does not apply.
#[allow(async_fn_in_trait)]
pub trait Connect {
    /// Why a connection could not be opened. Only logged: the core hears
    /// [`TransportError::Connect`](paywall_auth::TransportError::Connect).
    type Error: core::fmt::Debug;

    /// An open connection.
    type Connection<'a>: Read + Write
    where
        Self: 'a;

    /// The `Host` header of every request: the authority of the API origin,
    /// e.g. `api.example.com` or `192.0.2.1:8080`.
    fn host(&self) -> &str;

    /// Opens a connection to the API origin (TCP connect, plus the TLS
    /// handshake when the stream is encrypted).
    async fn connect(&mut self) -> Result<Self::Connection<'_>, Self::Error>;

    /// The wall clock (ms since the Unix epoch), forwarded by
    /// `AuthClient::set_unix_time`; a TLS connector checks certificate
    /// validity against it. The default ignores it.
    fn set_unix_time(&mut self, unix_ms: u64) {
        let _ = unix_ms;
    }

    /// Called once the whole response has been read, before the connection
    /// is dropped; the place for a graceful close (TCP FIN, TLS
    /// `close_notify`). The default does nothing.
    async fn close<'a>(connection: &mut Self::Connection<'a>)
    where
        Self: 'a,
    {
        let _ = connection;
    }
}
