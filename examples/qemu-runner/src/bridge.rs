//! The host end of the firmware's serial link: each `Open` frame becomes a
//! TCP connection to the API, bytes flow both ways in `Data` frames, and
//! `Close`/`Closed` end it. One connection at a time, like the firmware.

use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use paywall_auth_qemu_link::{HEADER_LEN, Header, Kind, MAX_PAYLOAD, OPENED_OK, OPENED_REFUSED};

/// What one boot did on the link.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkStats {
    /// TCP connections opened to the API.
    pub connections: u32,
    /// `Open` frames the API refused.
    pub refused: u32,
    /// Payload bytes firmware → API.
    pub bytes_up: u64,
}

type Serial = Arc<Mutex<TcpStream>>;

fn send(serial: &Serial, header: Header, payload: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&header.encode());
    frame.extend_from_slice(payload);
    serial
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .write_all(&frame)
}

/// Copies what the API sends into `Data` frames, then says `Closed`.
fn pump(mut socket: TcpStream, conn: u8, serial: Serial) {
    let mut buf = [0; MAX_PAYLOAD];
    loop {
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // n <= MAX_PAYLOAD, which fits a u16.
                if send(&serial, Header::new(Kind::Data, conn, n as u16), &buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = send(&serial, Header::new(Kind::Closed, conn, 0), &[]);
}

/// Serves the link on `serial` until the firmware side goes away (QEMU
/// exited), connecting to `api` for each `Open`.
///
/// # Errors
/// The serial stream failed, or the firmware sent a frame that does not
/// parse or that only the bridge may send.
pub fn serve(serial: TcpStream, api: SocketAddr) -> io::Result<LinkStats> {
    serial.set_nodelay(true)?;
    let writer: Serial = Arc::new(Mutex::new(serial.try_clone()?));
    let mut reader = BufReader::new(serial);
    let mut current: Option<(u8, TcpStream)> = None;
    let mut stats = LinkStats::default();
    let mut payload = vec![0; MAX_PAYLOAD];
    let result = loop {
        let mut head = [0; HEADER_LEN];
        match reader.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => break Ok(stats),
            Err(e) => break Err(e),
        }
        let header = match Header::decode(head) {
            Ok(header) => header,
            Err(e) => break Err(io::Error::new(ErrorKind::InvalidData, e.to_string())),
        };
        let payload = &mut payload[..usize::from(header.len)];
        if let Err(e) = reader.read_exact(payload) {
            break Err(e);
        }
        match header.kind {
            Kind::Open => {
                if let Some((_, old)) = current.take() {
                    let _ = old.shutdown(Shutdown::Both);
                }
                match TcpStream::connect_timeout(&api, Duration::from_secs(5)) {
                    Ok(socket) => {
                        stats.connections += 1;
                        socket.set_nodelay(true)?;
                        let status = Header::new(Kind::Opened, header.conn, 1);
                        send(&writer, status, &[OPENED_OK])?;
                        let (conn, serial) = (header.conn, writer.clone());
                        let reading = socket.try_clone()?;
                        thread::spawn(move || pump(reading, conn, serial));
                        current = Some((header.conn, socket));
                    }
                    Err(_) => {
                        stats.refused += 1;
                        let status = Header::new(Kind::Opened, header.conn, 1);
                        send(&writer, status, &[OPENED_REFUSED])?;
                    }
                }
            }
            Kind::Data => match &mut current {
                Some((conn, socket)) if *conn == header.conn => {
                    stats.bytes_up += payload.len() as u64;
                    // A failed write shows up as EOF in the pump.
                    let _ = socket.write_all(payload);
                }
                _ => {}
            },
            Kind::Close => {
                if matches!(&current, Some((conn, _)) if *conn == header.conn)
                    && let Some((_, socket)) = current.take()
                {
                    let _ = socket.shutdown(Shutdown::Both);
                }
            }
            Kind::Opened | Kind::Closed => {
                break Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("the firmware sent a {:?} frame", header.kind),
                ));
            }
        }
    };
    if let Some((_, socket)) = current {
        let _ = socket.shutdown(Shutdown::Both);
    }
    result
}
