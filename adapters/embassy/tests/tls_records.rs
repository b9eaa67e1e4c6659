//! How small the TLS record buffers can be: the client runs sign-in,
//! refresh and hard sign-out over TLS against the emulator's rustls
//! listener, with a connector that measures every TLS record on the wire,
//! and with a range of read and write buffer sizes. The table it prints
//! (`-- --nocapture`) is the one in docs/embassy-measurements.md; the
//! assertions pin the rule found: a read buffer works exactly when it holds
//! the largest record the server sends.

#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use embedded_io_adapters::tokio_1::FromTokio;
use paywall_auth::{SignInOptions, SignOutOptions};
use paywall_auth_embassy::{
    AuthClient, Connect, FULL_RECORD, MaxFragmentLength, TlsConnector, TlsFailure, Trust,
};
use paywall_auth_emulator::{Emulator, EmulatorConfig, TlsOptions};
use rand_core::OsRng;
use tokio::net::TcpStream;

const HOST: &str = "emulator.test";

/// Splits a byte stream into TLS records (5-byte header, 2-byte length).
#[derive(Debug, Default)]
struct RecordParser {
    header: [u8; 5],
    have: usize,
    remaining: usize,
}

impl RecordParser {
    fn feed(&mut self, mut bytes: &[u8], largest: &mut usize) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(bytes.len());
                self.remaining -= n;
                bytes = &bytes[n..];
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have == 5 {
                self.have = 0;
                self.remaining = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
                *largest = (*largest).max(5 + self.remaining);
            }
        }
    }
}

/// Largest record seen each way, over every connection.
#[derive(Debug, Default)]
struct Largest {
    from_server: usize,
    from_client: usize,
}

/// A TCP connector that measures the records passing through.
struct Sniffing {
    tcp: TokioConnector,
    largest: Rc<RefCell<Largest>>,
}

struct SniffStream {
    inner: FromTokio<TcpStream>,
    largest: Rc<RefCell<Largest>>,
    inbound: RecordParser,
    outbound: RecordParser,
}

impl embedded_io_async::ErrorType for SniffStream {
    type Error = std::io::Error;
}

impl embedded_io_async::Read for SniffStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, std::io::Error> {
        let n = self.inner.read(buf).await?;
        self.inbound
            .feed(&buf[..n], &mut self.largest.borrow_mut().from_server);
        Ok(n)
    }
}

impl embedded_io_async::Write for SniffStream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, std::io::Error> {
        let n = self.inner.write(buf).await?;
        self.outbound
            .feed(&buf[..n], &mut self.largest.borrow_mut().from_client);
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), std::io::Error> {
        self.inner.flush().await
    }
}

impl Connect for Sniffing {
    type Error = std::io::Error;
    type Connection<'a> = SniffStream;

    fn host(&self) -> &str {
        self.tcp.host()
    }

    async fn connect(&mut self) -> Result<SniffStream, std::io::Error> {
        Ok(SniffStream {
            inner: self.tcp.connect().await?,
            largest: self.largest.clone(),
            inbound: RecordParser::default(),
            outbound: RecordParser::default(),
        })
    }
}

/// What one run gave.
#[derive(Debug)]
struct Run {
    ok: bool,
    failure: Option<TlsFailure>,
    largest: Largest,
}

/// Sign-in (a new guest), refresh and hard sign-out over TLS with `READ`
/// and `WRITE` byte record buffers.
async fn lifecycle<const READ: usize, const WRITE: usize>(
    emulator: &Emulator,
    fragment: Option<MaxFragmentLength>,
) -> Run {
    let identity = emulator.tls_identity().unwrap().clone();
    let cas = [identity.ca_der.as_slice()];
    let origin = emulator.origin();
    let largest = Rc::new(RefCell::new(Largest::default()));
    let sniffing = Sniffing {
        tcp: TokioConnector::new(emulator),
        largest: largest.clone(),
    };
    let mut tls =
        TlsConnector::<_, _, READ, WRITE>::new(sniffing, &origin, Trust::pinned_cas(&cas), OsRng)
            .unwrap();
    if let Some(length) = fragment {
        tls = tls.with_max_fragment_length(length);
    }
    let events = Recorder::default();
    let mut client = AuthClient::new(config(), tls, store(RamFlash::new(FLASH_SIZE)), &events);
    client.set_unix_time(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    let ok = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .is_ok()
        && client.refresh().await.is_ok()
        && client
            .sign_out(SignOutOptions {
                forget_anonymous: true,
            })
            .await
            .is_ok()
        && client.connector().last_failure().is_none();
    let failure = client.connector().last_failure();
    drop(client);
    Run {
        ok,
        failure,
        largest: Rc::try_unwrap(largest).unwrap().into_inner(),
    }
}

async fn https(max_fragment_size: Option<usize>) -> Emulator {
    let mut options = TlsOptions::for_host(HOST);
    options.max_fragment_size = max_fragment_size;
    Emulator::start_tls(EmulatorConfig::default(), options)
        .await
        .unwrap()
}

fn row(label: &str, read: usize, write: usize, run: &Run) {
    println!(
        "| {label} | {read} | {write} | {} | {} | {} |",
        if run.ok { "ok" } else { "fails" },
        run.largest.from_server,
        match run.failure {
            None => "-".to_owned(),
            Some(f) => format!("{f:?}"),
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smallest_record_buffers_against_rustls() {
    println!("| server | read buf | write buf | lifecycle | largest server record | failure |");
    println!("|---|---:|---:|---|---:|---|");

    // The reference run: full-size read buffer.
    let emulator = https(None).await;
    let full = Box::pin(lifecycle::<FULL_RECORD, 2048>(&emulator, None)).await;
    row("rustls, default", FULL_RECORD, 2048, &full);
    assert!(full.ok, "{full:?}");
    let largest = full.largest.from_server;
    println!(
        "largest record from the server: {largest} B; from the client: {} B",
        full.largest.from_client
    );

    // Read buffers around and below it (each size is a separate type).
    macro_rules! read_sizes {
        ($($read:literal),*) => {$({
            let run = Box::pin(lifecycle::<$read, 2048>(&emulator, None)).await;
            row("rustls, default", $read, 2048, &run);
            assert_eq!(run.ok, $read >= run.largest.from_server, "read buffer {}: {run:?}", $read);
        })*};
    }
    read_sizes!(
        8192, 4096, 3072, 2560, 2304, 2048, 1792, 1536, 1280, 1024, 768, 512
    );

    // Write buffers: the request records and the ClientHello.
    macro_rules! write_sizes {
        ($($write:literal),*) => {$({
            let run = Box::pin(lifecycle::<FULL_RECORD, $write>(&emulator, None)).await;
            row("rustls, default", FULL_RECORD, $write, &run);
        })*};
    }
    write_sizes!(1024, 768, 512, 384, 256);

    // Asking for 512-byte records (RFC 6066 max_fragment_length; 534 B
    // records on the wire): rustls does not implement the extension and
    // keeps sending its own record sizes.
    let asked = Box::pin(lifecycle::<FULL_RECORD, 2048>(
        &emulator,
        Some(MaxFragmentLength::Bits9),
    ))
    .await;
    row(
        "rustls, client asks 512 B fragments",
        FULL_RECORD,
        2048,
        &asked,
    );
    assert!(asked.ok, "{asked:?}");
    println!(
        "rustls with a 512 B fragment request: largest record {} B (534 B if honoured)",
        asked.largest.from_server
    );
    let small_asked = Box::pin(lifecycle::<640, 2048>(
        &emulator,
        Some(MaxFragmentLength::Bits9),
    ))
    .await;
    row(
        "rustls, client asks 512 B fragments",
        640,
        2048,
        &small_asked,
    );
    assert_eq!(
        small_asked.ok,
        640 >= small_asked.largest.from_server,
        "{small_asked:?}"
    );

    // A server configured to send small records (rustls
    // `max_fragment_size`): the client's buffer can follow it down.
    let small_server = https(Some(1024)).await;
    let run = Box::pin(lifecycle::<FULL_RECORD, 2048>(&small_server, None)).await;
    row("rustls, max_fragment_size 1024", FULL_RECORD, 2048, &run);
    assert!(run.ok);
    let small_largest = run.largest.from_server;
    let run = Box::pin(lifecycle::<1280, 2048>(&small_server, None)).await;
    row("rustls, max_fragment_size 1024", 1280, 2048, &run);
    assert_eq!(run.ok, 1280 >= small_largest, "{run:?}");
}

/// A TLS 1.3 server on OpenSSL (python3's `ssl`): answers every request on
/// a connection with one HTTP response carrying a `BODY`-byte JSON body,
/// written in one call (so OpenSSL packs it into as few records as it may).
const OPENSSL_SERVER: &str = r#"
import socket, ssl, sys
cert, key, body_len = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(cert, key)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
print(listener.getsockname()[1], flush=True)
body = b'{"pad":"' + b"x" * (body_len - 10) + b'"}'
while True:
    conn, _ = listener.accept()
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = tls.recv(4096)
            if not chunk:
                break
            request += chunk
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        tls.sendall(head + body)
        tls.close()
    except (ssl.SSLError, OSError):
        conn.close()
"#;

/// One GET over TLS to the OpenSSL server: whether the whole response
/// arrived, and the largest record the server sent.
async fn openssl_get<const READ: usize>(
    addr: std::net::SocketAddr,
    origin: &str,
    ca: &[u8],
    fragment: Option<MaxFragmentLength>,
    body_len: usize,
) -> (bool, usize) {
    let largest = Rc::new(RefCell::new(Largest::default()));
    let cas = [ca];
    let sniffing = Sniffing {
        tcp: TokioConnector::to(addr),
        largest: largest.clone(),
    };
    let mut tls =
        TlsConnector::<_, _, READ, 1024>::new(sniffing, origin, Trust::pinned_cas(&cas), OsRng)
            .unwrap();
    if let Some(length) = fragment {
        tls = tls.with_max_fragment_length(length);
    }
    tls.set_unix_time(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    let mut received = Vec::new();
    if let Ok(mut stream) = tls.connect().await {
        use embedded_io_async::{Read, Write};
        let request = b"GET / HTTP/1.1\r\nHost: emulator.test\r\nConnection: close\r\n\r\n";
        if stream.write_all(request).await.is_ok() && stream.flush().await.is_ok() {
            let mut buf = [0u8; 512];
            while let Ok(n @ 1..) = stream.read(&mut buf).await {
                received.extend_from_slice(&buf[..n]);
            }
        }
    }
    let complete = received.starts_with(b"HTTP/1.1 200 OK")
        && received.ends_with(b"\"}")
        && received.len() > body_len;
    let largest = largest.borrow().from_server;
    (complete, largest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smallest_record_buffers_against_openssl() {
    // The emulator's identity, served by OpenSSL instead of rustls.
    let emulator = https(None).await;
    let identity = emulator.tls_identity().unwrap().clone();
    let dir = std::env::temp_dir().join(format!("paywall-auth-openssl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("leaf.pem"), dir.join("leaf.key"));
    std::fs::write(&cert, &identity.leaf_pem).unwrap();
    std::fs::write(&key, &identity.leaf_key_pem).unwrap();
    // A token response of the default capacities is about 2.5 KiB.
    let body_len = 2500;
    let mut server = std::process::Command::new("python3")
        .args(["-c", OPENSSL_SERVER])
        .arg(&cert)
        .arg(&key)
        .arg(body_len.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.as_mut().unwrap()),
        &mut port,
    )
    .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", port.trim()).parse().unwrap();
    let origin = format!("https://{HOST}:{}", addr.port());
    let ca = identity.ca_der.as_slice();

    println!("| server | read buf | client asks | response | largest server record |");
    println!("|---|---:|---|---|---:|");
    let mut results = Vec::new();
    macro_rules! try_size {
        ($read:literal, $fragment:expr, $label:literal) => {{
            let (ok, largest) =
                Box::pin(openssl_get::<$read>(addr, &origin, ca, $fragment, body_len)).await;
            println!(
                "| OpenSSL (python3 ssl) | {} | {} | {} | {largest} |",
                $read,
                $label,
                if ok { "complete" } else { "fails" }
            );
            results.push(($read, $fragment, ok, largest));
        }};
    }
    try_size!(16640, None, "-");
    try_size!(4096, None, "-");
    try_size!(2048, None, "-");
    try_size!(16640, Some(MaxFragmentLength::Bits9), "512 B fragments");
    try_size!(1024, Some(MaxFragmentLength::Bits9), "512 B fragments");
    try_size!(768, Some(MaxFragmentLength::Bits9), "512 B fragments");
    try_size!(640, Some(MaxFragmentLength::Bits9), "512 B fragments");
    try_size!(512, Some(MaxFragmentLength::Bits9), "512 B fragments");
    try_size!(16640, Some(MaxFragmentLength::Bits10), "1 KiB fragments");
    try_size!(1536, Some(MaxFragmentLength::Bits10), "1 KiB fragments");
    server.kill().unwrap();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);

    // Whatever the server does, a buffer that holds its largest record
    // works and one that does not fails cleanly.
    for (read, fragment, ok, largest) in results {
        if largest > 0 {
            assert_eq!(
                ok,
                read >= largest,
                "read {read}, {fragment:?}: largest {largest}"
            );
        }
    }
}
