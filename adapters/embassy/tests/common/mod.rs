//! Test doubles shared by the integration tests: a RAM NOR flash that can
//! lose power at any step, a connector over tokio TCP (for the emulator), a
//! scripted connection (for bad bytes), and an event recorder.

#![allow(dead_code, clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use embedded_io_adapters::tokio_1::FromTokio;
use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashErrorKind, ReadNorFlash,
};
use paywall_auth::{Config, StoreFormat};
use paywall_auth_embassy::{AuthClient, Connect, Event, EventSink, FlashStore};
use paywall_auth_emulator::{Emulator, EmulatorConfig};
use tokio::net::TcpStream;
use tokio::sync::Notify;

// ---------------------------------------------------------------------------
// RAM NOR flash with simulated power loss
// ---------------------------------------------------------------------------

pub const PAGE: usize = 4096;
/// Four pages: the range the tests give the store.
pub const FLASH_SIZE: usize = 4 * PAGE;

/// How much of the operation that loses power gets applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Nothing: power went before the first word was touched.
    Before,
    /// The first half of the words, and the next word torn (some of its
    /// bits programmed); for an erase, the first half of the range erased.
    Half,
}

/// What the test controls and observes, shared with the flash.
#[derive(Debug, Default)]
pub struct Power {
    /// Write and erase operations started so far.
    pub ops: usize,
    /// Lose power at the start of operation number `n` (0-based), applying
    /// it according to `cut`.
    pub cut_at: Option<(usize, Cut)>,
    /// Power is gone: every later operation hangs (nothing runs after a
    /// power loss).
    pub dead: bool,
    /// Number of erases and writes started.
    pub erases: usize,
    pub writes: usize,
    /// Lose power at the start of the next erase, whenever it comes
    /// (page recycling happens at a point of the sweep no op count predicts).
    pub cut_next_erase: Option<Cut>,
    /// The operation that lost power was an erase.
    pub cut_erase: bool,
    /// Not a power cut: the driver fails every write and erase.
    pub fail_writes: bool,
    /// The driver fails every read.
    pub fail_reads: bool,
    /// The next write never completes (and applies nothing), as if the
    /// caller's future were dropped while the driver waited; later writes
    /// work again.
    pub stall_next_write: bool,
}

/// NOR flash in RAM: erase sets 0xFF, a write can only clear bits
/// (`&=`), WRITE_SIZE 4, ERASE_SIZE 4096, alignment checked. When the
/// shared [`Power`] says so, an operation is cut part-way, `lost` is
/// notified, and this and every later operation never completes.
pub struct RamFlash {
    pub bytes: Vec<u8>,
    pub power: Rc<RefCell<Power>>,
    pub lost: Arc<Notify>,
}

impl RamFlash {
    pub fn new(size: usize) -> Self {
        Self::from_bytes(vec![0xFF; size])
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        RamFlash {
            bytes,
            power: Rc::default(),
            lost: Arc::new(Notify::new()),
        }
    }

    /// Decides whether operation `ops` loses power; returns the cut if so.
    fn step(&self) -> Option<Cut> {
        let mut power = self.power.borrow_mut();
        if power.dead {
            return Some(Cut::Before);
        }
        let n = power.ops;
        power.ops += 1;
        match power.cut_at {
            Some((at, cut)) if at == n => {
                power.dead = true;
                Some(cut)
            }
            _ => None,
        }
    }

    async fn power_lost(&self) -> ! {
        self.lost.notify_one();
        loop {
            std::future::pending::<()>().await;
        }
    }

    fn check(&self, offset: u32, len: usize, align: usize) -> Result<usize, NorFlashErrorKind> {
        let offset = offset as usize;
        if !offset.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(NorFlashErrorKind::NotAligned);
        }
        if offset + len > self.bytes.len() {
            return Err(NorFlashErrorKind::OutOfBounds);
        }
        Ok(offset)
    }
}

impl ErrorType for RamFlash {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for RamFlash {
    const READ_SIZE: usize = 4;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let start = self.check(offset, bytes.len(), Self::READ_SIZE)?;
        if self.power.borrow().fail_reads {
            return Err(NorFlashErrorKind::Other);
        }
        bytes.copy_from_slice(&self.bytes[start..start + bytes.len()]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.bytes.len()
    }
}

impl NorFlash for RamFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = PAGE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let len = (to as usize)
            .checked_sub(from as usize)
            .ok_or(NorFlashErrorKind::Other)?;
        let start = self.check(from, len, Self::ERASE_SIZE)?;
        if self.power.borrow().fail_writes {
            return Err(NorFlashErrorKind::Other);
        }
        let cut = self.step().or_else(|| {
            let mut power = self.power.borrow_mut();
            let cut = power.cut_next_erase.take();
            power.dead |= cut.is_some();
            cut
        });
        self.power.borrow_mut().cut_erase |= cut.is_some();
        let end = match cut {
            None => start + len,
            Some(Cut::Before) => start,
            Some(Cut::Half) => start + len / 2,
        };
        self.bytes[start..end].fill(0xFF);
        self.power.borrow_mut().erases += 1;
        if cut.is_some() {
            self.power_lost().await;
        }
        Ok(())
    }

    async fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), Self::Error> {
        let start = self.check(offset, data.len(), Self::WRITE_SIZE)?;
        if self.power.borrow().fail_writes {
            return Err(NorFlashErrorKind::Other);
        }
        if std::mem::take(&mut self.power.borrow_mut().stall_next_write) {
            self.lost.notify_one();
            loop {
                std::future::pending::<()>().await;
            }
        }
        let cut = self.step();
        let words = data.len() / 4;
        let full = match cut {
            None => words,
            Some(Cut::Before) => 0,
            Some(Cut::Half) => words / 2,
        };
        for (i, byte) in data[..full * 4].iter().enumerate() {
            self.bytes[start + i] &= byte;
        }
        if cut == Some(Cut::Half) && full < words {
            // A torn word: only some of its bits got programmed.
            let torn = full * 4..full * 4 + 4;
            for (cell, byte) in self.bytes[start + torn.start..start + torn.end]
                .iter_mut()
                .zip(&data[torn])
            {
                *cell &= byte | 0x0F;
            }
        }
        self.power.borrow_mut().writes += 1;
        if cut.is_some() {
            self.power_lost().await;
        }
        Ok(())
    }
}

impl MultiwriteNorFlash for RamFlash {}

// ---------------------------------------------------------------------------
// Connectors
// ---------------------------------------------------------------------------

/// Plain TCP to the emulator through tokio, as `embedded-io-async`.
pub struct TokioConnector {
    addr: SocketAddr,
    host: String,
    pub connects: usize,
}

impl TokioConnector {
    pub fn new(emulator: &Emulator) -> Self {
        Self::to(emulator.addr())
    }

    pub fn to(addr: SocketAddr) -> Self {
        TokioConnector {
            addr,
            host: addr.to_string(),
            connects: 0,
        }
    }
}

impl Connect for TokioConnector {
    type Error = std::io::Error;
    type Connection<'a> = FromTokio<TcpStream>;

    fn host(&self) -> &str {
        &self.host
    }

    async fn connect(&mut self) -> Result<FromTokio<TcpStream>, std::io::Error> {
        self.connects += 1;
        Ok(FromTokio::new(TcpStream::connect(self.addr).await?))
    }
}

/// How a scripted connection ends after its reply bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The peer closes (read returns 0).
    Eof,
    /// The read fails (connection reset).
    Reset,
    /// Nothing more ever arrives (the request timeout must fire).
    Hang,
}

/// One scripted exchange: what the "server" answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub end: End,
    /// Bytes handed out per read call (exercises incremental framing).
    pub chunk: usize,
    /// Refuse the connection instead.
    pub refuse: bool,
}

impl Reply {
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Reply {
            bytes: bytes.into(),
            end: End::Eof,
            chunk: 7,
            refuse: false,
        }
    }

    pub fn end(mut self, end: End) -> Self {
        self.end = end;
        self
    }

    pub fn refused() -> Self {
        Reply {
            refuse: true,
            ..Reply::bytes(Vec::new())
        }
    }
}

/// A connector whose connections play back [`Reply`]s in order and record
/// what was written to them.
#[derive(Default)]
pub struct Scripted {
    pub replies: VecDeque<Reply>,
    pub requests: Vec<Vec<u8>>,
}

impl Scripted {
    pub fn new(replies: impl IntoIterator<Item = Reply>) -> Self {
        Scripted {
            replies: replies.into_iter().collect(),
            requests: Vec::new(),
        }
    }

    /// The request lines (`POST /path HTTP/1.1`) sent so far.
    pub fn request_lines(&self) -> Vec<String> {
        self.requests
            .iter()
            .map(|r| {
                String::from_utf8_lossy(r)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    }
}

pub struct ScriptedConnection<'a> {
    reply: Reply,
    pos: usize,
    written: &'a mut Vec<u8>,
}

#[derive(Debug)]
pub struct ScriptError;

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset (scripted)")
    }
}

impl std::error::Error for ScriptError {}

impl embedded_io_async::Error for ScriptError {
    fn kind(&self) -> embedded_io_async::ErrorKind {
        embedded_io_async::ErrorKind::ConnectionReset
    }
}

impl embedded_io_async::ErrorType for ScriptedConnection<'_> {
    type Error = ScriptError;
}

impl embedded_io_async::Read for ScriptedConnection<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ScriptError> {
        let left = &self.reply.bytes[self.pos..];
        if left.is_empty() {
            return match self.reply.end {
                End::Eof => Ok(0),
                End::Reset => Err(ScriptError),
                End::Hang => std::future::pending().await,
            };
        }
        let n = left.len().min(buf.len()).min(self.reply.chunk.max(1));
        buf[..n].copy_from_slice(&left[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl embedded_io_async::Write for ScriptedConnection<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ScriptError> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), ScriptError> {
        Ok(())
    }
}

impl Connect for Scripted {
    type Error = &'static str;
    type Connection<'a> = ScriptedConnection<'a>;

    fn host(&self) -> &str {
        "api.test"
    }

    async fn connect(&mut self) -> Result<ScriptedConnection<'_>, &'static str> {
        let reply = self.replies.pop_front().ok_or("no scripted reply left")?;
        if reply.refuse {
            return Err("refused");
        }
        self.requests.push(Vec::new());
        let written = self.requests.last_mut().unwrap();
        Ok(ScriptedConnection {
            reply,
            pos: 0,
            written,
        })
    }
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

/// Records every event.
#[derive(Default)]
pub struct Recorder(pub RefCell<Vec<Event>>);

impl EventSink for Recorder {
    fn publish(&self, event: Event) {
        self.0.borrow_mut().push(event);
    }
}

impl Recorder {
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut self.0.borrow_mut())
    }

    /// The auth-change names, in order, forgetting them.
    pub fn take_changes(&self) -> Vec<&'static str> {
        self.take()
            .into_iter()
            .filter_map(|e| match e {
                Event::Auth { change, .. } => Some(change.as_str()),
                _ => None,
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------

pub const PID: &str = "pw_demo";

pub fn config() -> Config {
    Config::new(PID)
        .unwrap()
        .with_store_format(StoreFormat::Postcard)
}

pub fn store(flash: RamFlash) -> FlashStore<RamFlash> {
    FlashStore::new(flash, 0..FLASH_SIZE as u32).unwrap()
}

pub type Client<'e, C> = AuthClient<'e, C, RamFlash>;

pub fn client<'e, C: Connect>(
    connector: C,
    flash: RamFlash,
    events: &'e Recorder,
) -> Client<'e, C> {
    AuthClient::new(config(), connector, store(flash), events)
}

/// A client of `emulator` on an empty flash.
pub fn emulator_client<'e>(
    emulator: &Emulator,
    events: &'e Recorder,
) -> Client<'e, TokioConnector> {
    client(
        TokioConnector::new(emulator),
        RamFlash::new(FLASH_SIZE),
        events,
    )
}

/// [`emulator_client`] signed in as a new guest; returns the guest's id.
pub async fn fresh_guest<'e>(
    emulator: &Emulator,
    events: &'e Recorder,
) -> (Client<'e, TokioConnector>, String) {
    let mut client = emulator_client(emulator, events);
    let id = client
        .sign_in_anonymously(paywall_auth::SignInOptions::default())
        .await
        .unwrap()
        .user
        .id
        .to_string();
    (client, id)
}

/// An emulator with its default settings (a 10 s refresh-token reuse window).
pub async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default()).await.unwrap()
}

/// Route names of the emulator's request log, in order, e.g. `["anonymous/signin"]`.
pub fn routes(emulator: &Emulator) -> Vec<String> {
    let prefix = format!("/api/v1/paywall/{PID}/auth/");
    emulator
        .requests()
        .iter()
        .map(|r| r.path.strip_prefix(&prefix).unwrap_or(&r.path).to_owned())
        .collect()
}
