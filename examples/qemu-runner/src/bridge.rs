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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn frame(kind: Kind, conn: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = Header::new(kind, conn, payload.len() as u16)
            .encode()
            .to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    fn next_frame(serial: &mut TcpStream) -> (Header, Vec<u8>) {
        let mut head = [0; HEADER_LEN];
        serial.read_exact(&mut head).expect("a frame header");
        let header = Header::decode(head).expect("a valid header");
        let mut payload = vec![0; usize::from(header.len)];
        serial.read_exact(&mut payload).expect("the payload");
        (header, payload)
    }

    /// A firmware end and the bridge serving it, towards `api`.
    fn link(api: SocketAddr) -> (TcpStream, thread::JoinHandle<io::Result<LinkStats>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let firmware = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (serial, _) = listener.accept().expect("accept");
        (firmware, thread::spawn(move || serve(serial, api)))
    }

    #[test]
    fn a_connection_carries_bytes_both_ways_and_ends_with_closed() {
        let api = TcpListener::bind("127.0.0.1:0").expect("bind");
        let api_addr = api.local_addr().expect("addr");
        let server = thread::spawn(move || {
            let (mut socket, _) = api.accept().expect("accept");
            let mut request = [0; 4];
            socket.read_exact(&mut request).expect("request");
            socket.write_all(b"pong").expect("reply");
            request
        });
        let (mut firmware, bridge) = link(api_addr);

        firmware
            .write_all(&frame(Kind::Open, 1, &[]))
            .expect("open");
        let (opened, status) = next_frame(&mut firmware);
        assert_eq!(opened, Header::new(Kind::Opened, 1, 1));
        assert_eq!(status, [OPENED_OK]);
        // A frame of another connection goes nowhere.
        firmware
            .write_all(&frame(Kind::Data, 9, b"stale"))
            .expect("stale");
        firmware
            .write_all(&frame(Kind::Data, 1, b"ping"))
            .expect("data");
        assert_eq!(server.join().expect("server"), *b"ping");
        let (data, reply) = next_frame(&mut firmware);
        assert_eq!(
            (data.kind, data.conn, reply.as_slice()),
            (Kind::Data, 1, &b"pong"[..])
        );
        assert_eq!(next_frame(&mut firmware).0, Header::new(Kind::Closed, 1, 0));

        firmware
            .write_all(&frame(Kind::Close, 1, &[]))
            .expect("close");
        drop(firmware);
        let stats = bridge.join().expect("bridge").expect("clean end");
        assert_eq!(
            stats,
            LinkStats {
                connections: 1,
                refused: 0,
                bytes_up: 4
            }
        );
    }

    #[test]
    fn an_unreachable_api_is_answered_refused() {
        // A port that was just free: nothing listens on it.
        let closed = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let (mut firmware, bridge) = link(closed);
        firmware
            .write_all(&frame(Kind::Open, 3, &[]))
            .expect("open");
        let (opened, status) = next_frame(&mut firmware);
        assert_eq!(opened, Header::new(Kind::Opened, 3, 1));
        assert_eq!(status, [OPENED_REFUSED]);
        drop(firmware);
        let stats = bridge.join().expect("bridge").expect("clean end");
        assert_eq!(stats.refused, 1);
    }

    #[test]
    fn a_malformed_frame_ends_the_link_with_an_error() {
        let closed = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        // An unknown kind; a frame only the bridge may send (with its payload).
        for garbage in [vec![0x55, 1, 0, 0], frame(Kind::Opened, 1, &[OPENED_OK])] {
            let (mut firmware, bridge) = link(closed);
            firmware.write_all(&garbage).expect("garbage");
            let error = bridge.join().expect("bridge").expect_err("rejected");
            assert_eq!(error.kind(), ErrorKind::InvalidData, "{garbage:?}: {error}");
        }
    }
}
