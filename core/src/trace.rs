//! Traces: what a driver fed the machine and what the machine answered, as
//! JSON lines, and their replay through a fresh machine (docs/protocol.md
//! §14).
//!
//! The machine is deterministic: the same inputs at the same times give the
//! same outputs. So a field report, a CI failure or a property-test case is
//! fully described by its inputs, and a trace that also holds the outputs
//! tells at once whether today's machine still behaves the same, and where
//! it first does not.
//!
//! A trace is a header line ([`TraceHeader`]: the format version and the
//! machine's [`Config`]) followed by one [`TraceLine`] per input: its time,
//! the input, every output the driver drained after it, and the deadline
//! [`Machine::poll_timeout`] gave then.
//!
//! Secrets (refresh tokens, the signature of access tokens, passwords,
//! captcha tokens) are replaced by placeholders of the same length unless
//! the recording keeps them ([`Secrets::Keep`]). The replacement is one
//! substitution applied to every input and output, so a redacted trace
//! still replays: the machine treats each placeholder as the token it
//! stands for, and the access tokens' claims, which the machine reads, are
//! kept. Postcard records keep their length prefixes, as placeholders have
//! the secret's length.
//!
//! ```
//! use paywall_auth::trace::{Recorder, Secrets, replay};
//! use paywall_auth::{Command, Config, Input, Instant, Machine, SignInOptions};
//!
//! let config = Config::new("pw_demo").unwrap();
//! let mut machine = Machine::new(config.clone());
//! let mut recorder = Recorder::new(&config, Secrets::Redact);
//! let mut trace = recorder.header();
//!
//! let inputs = [
//!     Input::Restored { session: None, anon_refresh_token: None, visitor_id: None },
//!     Input::Command(Command::SignInAnonymously(SignInOptions::default())),
//! ];
//! for input in inputs {
//!     recorder.input(Instant(1_000), &input);
//!     machine.handle_input(Instant(1_000), input).unwrap();
//!     while let Some(output) = machine.poll_output() {
//!         recorder.output(&output);
//!     }
//!     trace.push_str(&recorder.end(machine.poll_timeout()));
//! }
//! // The sign-in request went out; a fresh machine does the same.
//! assert!(trace.contains("/auth/anonymous/signin"));
//! assert_eq!(replay(&trace).unwrap().inputs, 2);
//! ```

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::codec::record::{decode_anon_token, decode_session};
use crate::command::{Command, SignInOptions, SignOutOptions, UpgradeRequest};
use crate::config::Config;
use crate::error::{StorageError, TransportError};
use crate::machine::{Input, Machine, Response};
use crate::output::{Outcome, Output, Revocation};
use crate::request::{RequestId, SDK_VERSION};
use crate::session::Session;
use crate::storage::{RecordKey, StoreFormat, StoreId};
use crate::time::{Duration, Instant};

/// The trace format this crate writes and reads.
pub const TRACE_VERSION: u32 = 1;

/// Whether a recording keeps secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Replace them with placeholders (the default: traces get attached to
    /// bug reports).
    Redact,
    /// Keep them (`record-secrets`): for a trace that must replay against
    /// a real backend's tokens. Treat the file as a credential.
    Keep,
}

/// The first line of a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceHeader {
    /// [`TRACE_VERSION`].
    pub paywall_auth_trace: u32,
    /// The core's version that recorded it.
    pub sdk_version: String,
    /// Whether secrets were kept.
    pub secrets: bool,
    /// The machine's configuration.
    pub config: TraceConfig,
}

/// A [`Config`], owned and serialisable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceConfig {
    /// [`Config::paywall_id`].
    pub paywall_id: String,
    /// [`Config::leeway`], ms.
    pub leeway_ms: u64,
    /// [`Config::proactive_refresh`], ms.
    pub proactive_refresh_ms: Option<u64>,
    /// [`Config::retry_base`], ms.
    pub retry_base_ms: u64,
    /// [`Config::retry_max`], ms.
    pub retry_max_ms: u64,
    /// [`Config::store_format`]: `reference_json` or `postcard`.
    pub store_format: TraceFormat,
    /// [`Config::request_timeout`], ms.
    pub request_timeout_ms: Option<u64>,
    /// [`Config::echoes_own_writes`].
    pub echoes_own_writes: bool,
    /// [`Config::verify_storage_before_rotation`].
    pub verify_storage_before_rotation: bool,
}

/// A [`StoreFormat`], serialisable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceFormat {
    /// [`StoreFormat::ReferenceJson`].
    ReferenceJson,
    /// [`StoreFormat::Postcard`].
    Postcard,
}

impl TraceConfig {
    /// The configuration as recorded.
    pub fn of(config: &Config) -> Self {
        TraceConfig {
            paywall_id: config.paywall_id().to_string(),
            leeway_ms: config.leeway.as_millis(),
            proactive_refresh_ms: config.proactive_refresh.map(Duration::as_millis),
            retry_base_ms: config.retry_base.as_millis(),
            retry_max_ms: config.retry_max.as_millis(),
            store_format: match config.store_format {
                StoreFormat::ReferenceJson => TraceFormat::ReferenceJson,
                StoreFormat::Postcard => TraceFormat::Postcard,
            },
            request_timeout_ms: config.request_timeout.map(Duration::as_millis),
            echoes_own_writes: config.echoes_own_writes,
            verify_storage_before_rotation: config.verify_storage_before_rotation,
        }
    }

    /// The configuration to replay with.
    pub fn to_config(&self) -> Result<Config, TraceError> {
        let mut config =
            Config::new(&self.paywall_id).map_err(|_| TraceError::Invalid("config.paywall_id"))?;
        config.leeway = Duration::from_millis(self.leeway_ms);
        config.proactive_refresh = self.proactive_refresh_ms.map(Duration::from_millis);
        config.retry_base = Duration::from_millis(self.retry_base_ms);
        config.retry_max = Duration::from_millis(self.retry_max_ms);
        config.store_format = match self.store_format {
            TraceFormat::ReferenceJson => StoreFormat::ReferenceJson,
            TraceFormat::Postcard => StoreFormat::Postcard,
        };
        config.request_timeout = self.request_timeout_ms.map(Duration::from_millis);
        config.echoes_own_writes = self.echoes_own_writes;
        config.verify_storage_before_rotation = self.verify_storage_before_rotation;
        Ok(config)
    }
}

/// One input with its time, the outputs drained after it, and the next
/// deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceLine {
    /// The `now` the input was fed with, ms.
    pub now: u64,
    /// What was fed.
    pub input: TraceInput,
    /// Every output polled after it, in order.
    pub outputs: Vec<TraceOutput>,
    /// [`Machine::poll_timeout`] after the outputs were drained, ms.
    pub timeout: Option<u64>,
}

/// Bytes as recorded: text when they are UTF-8 (JSON records, bodies),
/// hex otherwise (postcard records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bytes {
    /// UTF-8.
    Text(String),
    /// Anything else, as lowercase hex.
    Hex {
        /// The bytes.
        hex: String,
    },
}

impl Bytes {
    fn of(bytes: &[u8]) -> Self {
        match core::str::from_utf8(bytes) {
            Ok(text) => Bytes::Text(text.to_string()),
            Err(_) => {
                let mut hex = String::with_capacity(bytes.len() * 2);
                for b in bytes {
                    hex.push_str(&format!("{b:02x}"));
                }
                Bytes::Hex { hex }
            }
        }
    }

    /// The bytes.
    pub fn to_vec(&self) -> Result<Vec<u8>, TraceError> {
        match self {
            Bytes::Text(text) => Ok(text.as_bytes().to_vec()),
            Bytes::Hex { hex } => {
                let digits = hex.as_bytes();
                if digits.len() % 2 != 0 {
                    return Err(TraceError::Invalid("hex bytes"));
                }
                digits
                    .chunks(2)
                    .map(|pair| {
                        core::str::from_utf8(pair)
                            .ok()
                            .and_then(|p| u8::from_str_radix(p, 16).ok())
                            .ok_or(TraceError::Invalid("hex bytes"))
                    })
                    .collect()
            }
        }
    }
}

/// A record key, serialisable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceKey {
    /// [`RecordKey::Session`].
    Session,
    /// [`RecordKey::AnonRefreshToken`].
    AnonRefreshToken,
}

impl TraceKey {
    fn of(key: RecordKey) -> Self {
        match key {
            RecordKey::Session => TraceKey::Session,
            RecordKey::AnonRefreshToken => TraceKey::AnonRefreshToken,
        }
    }

    fn key(self) -> RecordKey {
        match self {
            TraceKey::Session => RecordKey::Session,
            TraceKey::AnonRefreshToken => RecordKey::AnonRefreshToken,
        }
    }
}

/// A [`TransportError`], serialisable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceTransportError {
    /// [`TransportError::Connect`].
    Connect,
    /// [`TransportError::Timeout`].
    Timeout,
    /// [`TransportError::ConnectionLost`].
    ConnectionLost,
    /// [`TransportError::BadFraming`].
    BadFraming,
    /// [`TransportError::TooLarge`].
    TooLarge,
}

impl TraceTransportError {
    fn of(e: TransportError) -> Self {
        match e {
            TransportError::Connect => Self::Connect,
            TransportError::Timeout => Self::Timeout,
            TransportError::ConnectionLost => Self::ConnectionLost,
            TransportError::BadFraming => Self::BadFraming,
            TransportError::TooLarge => Self::TooLarge,
        }
    }

    fn error(self) -> TransportError {
        match self {
            Self::Connect => TransportError::Connect,
            Self::Timeout => TransportError::Timeout,
            Self::ConnectionLost => TransportError::ConnectionLost,
            Self::BadFraming => TransportError::BadFraming,
            Self::TooLarge => TransportError::TooLarge,
        }
    }
}

/// An [`Input`], owned and serialisable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceInput {
    /// [`Input::Restored`].
    Restored {
        /// The session record.
        session: Option<Bytes>,
        /// The anonymous refresh-token record.
        anon_refresh_token: Option<Bytes>,
        /// The visitor id.
        visitor_id: Option<String>,
    },
    /// [`Input::Command`].
    Command {
        /// The command.
        command: TraceCommand,
    },
    /// [`Input::Response`].
    Response {
        /// The request answered.
        request: u32,
        /// HTTP status.
        status: u16,
        /// Whether the body was JSON.
        json: bool,
        /// The body.
        body: Bytes,
        /// The status text.
        reason: String,
    },
    /// [`Input::TransportFailed`].
    TransportFailed {
        /// The request.
        request: u32,
        /// What failed.
        error: TraceTransportError,
    },
    /// [`Input::Stored`].
    Stored {
        /// The store operation acknowledged.
        store: u32,
        /// `Some(key)` when the write failed.
        failed: Option<TraceKey>,
    },
    /// [`Input::ExternalChange`].
    External {
        /// The record.
        key: TraceKey,
        /// Its new bytes (`None`: removed).
        value: Option<Bytes>,
    },
    /// [`Input::Timeout`].
    Timeout,
}

/// A [`Command`], owned and serialisable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum TraceCommand {
    /// [`Command::SignInAnonymously`].
    SignIn {
        /// [`SignInOptions::force_new`].
        force_new: bool,
        /// [`SignInOptions::captcha_token`].
        captcha_token: Option<String>,
        /// [`SignInOptions::user_meta`].
        user_meta: Vec<(String, String)>,
    },
    /// [`Command::UpgradeToEmail`].
    Upgrade {
        /// The email.
        email: String,
        /// The password (a placeholder unless secrets were kept).
        password: String,
        /// Metadata.
        user_meta: Vec<(String, String)>,
        /// The idempotency key.
        idempotency_key: Option<String>,
    },
    /// [`Command::SignOut`].
    SignOut {
        /// [`SignOutOptions::forget_anonymous`].
        forget_anonymous: bool,
    },
    /// [`Command::Refresh`].
    Refresh,
    /// [`Command::AccessToken`].
    AccessToken,
}

impl TraceCommand {
    fn command(&self) -> Result<Command, TraceError> {
        let invalid = |_| TraceError::Invalid("command");
        Ok(match self {
            TraceCommand::SignIn {
                force_new,
                captcha_token,
                user_meta,
            } => {
                let mut options = SignInOptions {
                    force_new: *force_new,
                    ..SignInOptions::default()
                };
                if let Some(token) = captcha_token {
                    options = options.with_captcha(token).map_err(invalid)?;
                }
                for (k, v) in user_meta {
                    options.user_meta.insert(k, v).map_err(invalid)?;
                }
                Command::SignInAnonymously(options)
            }
            TraceCommand::Upgrade {
                email,
                password,
                user_meta,
                idempotency_key,
            } => {
                let mut request = UpgradeRequest::new(email, password, idempotency_key.as_deref())
                    .map_err(invalid)?;
                for (k, v) in user_meta {
                    request.user_meta.insert(k, v).map_err(invalid)?;
                }
                Command::UpgradeToEmail(request)
            }
            TraceCommand::SignOut { forget_anonymous } => Command::SignOut(SignOutOptions {
                forget_anonymous: *forget_anonymous,
            }),
            TraceCommand::Refresh => Command::Refresh,
            TraceCommand::AccessToken => Command::AccessToken,
        })
    }
}

/// An [`Output`], owned and serialisable (compared, never fed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceOutput {
    /// [`Output::Send`].
    Send {
        /// The request id.
        request: u32,
        /// Its path.
        path: String,
        /// Its headers, as sent.
        headers: Vec<(String, String)>,
        /// Its body.
        body: String,
    },
    /// [`Output::Store`].
    Store {
        /// The store operation id.
        store: u32,
        /// The record.
        key: TraceKey,
        /// The bytes to write (`None`: remove).
        value: Option<Bytes>,
        /// [`StoreOp::verify_only`](crate::StoreOp::verify_only).
        verify_only: bool,
    },
    /// [`Output::AuthChange`].
    Change {
        /// The event, as named in the protocol.
        change: String,
        /// The session it announces.
        session: Option<TraceSession>,
    },
    /// [`Output::Complete`].
    Complete {
        /// The command.
        command: u32,
        /// Its outcome, rendered (`session <user id>`, `signed_out revoked`…).
        ok: Option<String>,
        /// Its error: code, message, status.
        error: Option<TraceFailure>,
    },
    /// [`Output::Notice`], as its debug rendering.
    Notice {
        /// The notice.
        notice: String,
    },
}

/// A session as an event announces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceSession {
    /// The user id.
    pub user_id: String,
    /// The email.
    pub email: Option<String>,
    /// Whether the user is a guest.
    pub anonymous: bool,
    /// Expiry, ms.
    pub expires_at: u64,
    /// The access token.
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: String,
}

/// An error a command completed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceFailure {
    /// The protocol's code.
    pub code: String,
    /// The message.
    pub message: String,
    /// The HTTP status, when there was one.
    pub status: Option<u16>,
}

/// Why a trace could not be read or replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceError {
    /// Line `.0` is not JSON of the expected shape; `.1` says what.
    Syntax(usize, String),
    /// A field holds a value the machine does not accept.
    Invalid(&'static str),
    /// A trace of another format version.
    Version(u32),
    /// The trace has no header line.
    Empty,
}

impl core::fmt::Display for TraceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TraceError::Syntax(line, what) => write!(f, "trace line {line}: {what}"),
            TraceError::Invalid(what) => write!(f, "trace holds an invalid {what}"),
            TraceError::Version(v) => write!(
                f,
                "trace format version {v}; this build reads version {TRACE_VERSION}"
            ),
            TraceError::Empty => f.write_str("trace is empty (no header line)"),
        }
    }
}

impl core::error::Error for TraceError {}

// ---------------------------------------------------------------------------
// Redaction
// ---------------------------------------------------------------------------

/// Secrets shorter than this are not substituted in the text around them:
/// a short string would match inside unrelated text (JSON keys) and change
/// the structure the machine parses. Real tokens are far longer.
const TOKEN_MIN: usize = 8;
/// Passwords and captcha tokens are substituted from this length on.
const CREDENTIAL_MIN: usize = 4;

/// The substitution of secrets by placeholders of the same length.
#[derive(Debug, Clone)]
struct Redactor {
    keep: bool,
    /// (secret, placeholder), longest secret first.
    known: Vec<(String, String)>,
}

impl Redactor {
    fn new(secrets: Secrets) -> Self {
        Redactor {
            keep: secrets == Secrets::Keep,
            known: Vec::new(),
        }
    }

    fn learn(&mut self, kind: char, secret: &str, min: usize) {
        if self.keep || secret.len() < min || self.known.iter().any(|(s, _)| s == secret) {
            return;
        }
        let id = self.known.len() + 1;
        let mut placeholder = format!("{kind}{id}");
        if placeholder.len() > secret.len() {
            placeholder = "x".repeat(secret.len());
        }
        while placeholder.len() < secret.len() {
            placeholder.push('x');
        }
        self.known.push((secret.to_string(), placeholder));
        self.known
            .sort_by_key(|(secret, _)| core::cmp::Reverse(secret.len()));
    }

    /// An access token: its signature is the secret; header and claims are
    /// kept, as the machine reads the claims.
    fn learn_access(&mut self, token: &str) {
        let secret = match token.rsplit_once('.') {
            Some((_, signature)) if token.matches('.').count() == 2 => signature,
            _ => token,
        };
        self.learn('A', secret, TOKEN_MIN);
    }

    fn learn_session(&mut self, session: &Session) {
        self.learn_access(session.access_token.expose());
        self.learn('R', session.refresh_token.expose(), TOKEN_MIN);
    }

    /// Tokens in a token reply (any JSON body: a string value of
    /// `access_token` or `refresh_token`).
    fn learn_body(&mut self, body: &[u8]) {
        let Ok(text) = core::str::from_utf8(body) else {
            return;
        };
        for (key, access) in [("\"access_token\"", true), ("\"refresh_token\"", false)] {
            let mut rest = text;
            while let Some(at) = rest.find(key) {
                rest = &rest[at + key.len()..];
                let value = rest.trim_start().strip_prefix(':').map(str::trim_start);
                if let Some(end) = value
                    .and_then(|v| v.strip_prefix('"'))
                    .and_then(|v| v.find('"').map(|e| &v[..e]))
                {
                    if access {
                        self.learn_access(end);
                    } else {
                        self.learn('R', end, TOKEN_MIN);
                    }
                }
            }
        }
    }

    fn learn_record(&mut self, key: RecordKey, bytes: &[u8], format: StoreFormat) {
        match key {
            RecordKey::Session => {
                if let Ok(session) = decode_session(bytes, format) {
                    self.learn_session(&session);
                }
            }
            RecordKey::AnonRefreshToken => {
                if let Ok(Some(token)) = decode_anon_token(bytes, format) {
                    self.learn('R', token.expose(), TOKEN_MIN);
                }
            }
        }
    }

    fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (secret, placeholder) in &self.known {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), placeholder);
            }
        }
        out
    }

    fn bytes(&self, bytes: &[u8]) -> Bytes {
        let mut out = bytes.to_vec();
        for (secret, placeholder) in &self.known {
            let needle = secret.as_bytes();
            let mut i = 0;
            while i + needle.len() <= out.len() {
                if out.get(i..i + needle.len()) == Some(needle) {
                    if let Some(slot) = out.get_mut(i..i + needle.len()) {
                        slot.copy_from_slice(placeholder.as_bytes());
                    }
                    i += needle.len();
                } else {
                    i += 1;
                }
            }
        }
        Bytes::of(&out)
    }
}

// ---------------------------------------------------------------------------
// Recording
// ---------------------------------------------------------------------------

/// Records a driver's inputs and outputs as trace lines.
///
/// Call [`Recorder::input`] with every input right before feeding it,
/// [`Recorder::output`] with every output polled after it, and
/// [`Recorder::end`] once [`Machine::poll_output`] returned `None`; `end`
/// gives the finished line (with its newline) to append to the trace.
#[derive(Debug, Clone)]
pub struct Recorder {
    config: TraceConfig,
    format: StoreFormat,
    redactor: Redactor,
    line: Option<TraceLine>,
}

impl Recorder {
    /// A recorder for a machine built with `config`.
    pub fn new(config: &Config, secrets: Secrets) -> Self {
        Recorder {
            config: TraceConfig::of(config),
            format: config.store_format,
            redactor: Redactor::new(secrets),
            line: None,
        }
    }

    /// The header line (with its newline): the first line of the trace.
    pub fn header(&self) -> String {
        let header = TraceHeader {
            paywall_auth_trace: TRACE_VERSION,
            sdk_version: SDK_VERSION.to_string(),
            secrets: self.redactor.keep,
            config: self.config.clone(),
        };
        json_line(&header)
    }

    /// Starts the line of `input`, fed at `now`. A line still open (no
    /// [`Recorder::end`] since the last input) is dropped.
    pub fn input(&mut self, now: Instant, input: &Input<'_>) {
        self.learn(input);
        let r = &self.redactor;
        let input = match input {
            Input::Restored {
                session,
                anon_refresh_token,
                visitor_id,
            } => TraceInput::Restored {
                session: session.map(|b| r.bytes(b)),
                anon_refresh_token: anon_refresh_token.map(|b| r.bytes(b)),
                visitor_id: visitor_id.map(ToString::to_string),
            },
            Input::Command(command) => TraceInput::Command {
                command: self.command(command),
            },
            Input::Response(id, resp) => TraceInput::Response {
                request: id.0,
                status: resp.status,
                json: resp.content_type_json,
                body: r.bytes(resp.body),
                reason: resp.reason.to_string(),
            },
            Input::TransportFailed(id, e) => TraceInput::TransportFailed {
                request: id.0,
                error: TraceTransportError::of(*e),
            },
            Input::Stored(id, result) => TraceInput::Stored {
                store: id.0,
                failed: result.err().map(|e| TraceKey::of(e.key)),
            },
            Input::ExternalChange(key, value) => TraceInput::External {
                key: TraceKey::of(*key),
                value: value.map(|b| r.bytes(b)),
            },
            Input::Timeout => TraceInput::Timeout,
        };
        self.line = Some(TraceLine {
            now: now.as_millis(),
            input,
            outputs: Vec::new(),
            timeout: None,
        });
    }

    /// Adds an output polled after the current input.
    pub fn output(&mut self, output: &Output<'_>) {
        let rendered = render_output(output, &self.redactor, self.format);
        if let Some(line) = self.line.as_mut() {
            line.outputs.push(rendered);
        }
    }

    /// Ends the current line with the deadline the machine gave after its
    /// outputs were drained; returns it as JSON with a newline (empty if no
    /// input was recorded).
    pub fn end(&mut self, timeout: Option<Instant>) -> String {
        match self.line.take() {
            Some(mut line) => {
                line.timeout = timeout.map(Instant::as_millis);
                json_line(&line)
            }
            None => String::new(),
        }
    }

    fn learn(&mut self, input: &Input<'_>) {
        let format = self.format;
        let r = &mut self.redactor;
        match input {
            Input::Restored {
                session,
                anon_refresh_token,
                ..
            } => {
                if let Some(b) = session {
                    r.learn_record(RecordKey::Session, b, format);
                }
                if let Some(b) = anon_refresh_token {
                    r.learn_record(RecordKey::AnonRefreshToken, b, format);
                }
            }
            Input::ExternalChange(key, Some(b)) => r.learn_record(*key, b, format),
            Input::Response(_, resp) => r.learn_body(resp.body),
            Input::Command(Command::SignInAnonymously(options)) => {
                if let Some(t) = &options.captcha_token {
                    r.learn('C', t.expose(), CREDENTIAL_MIN);
                }
            }
            Input::Command(Command::UpgradeToEmail(request)) => {
                r.learn('P', request.password.expose(), CREDENTIAL_MIN);
            }
            _ => {}
        }
    }

    fn command(&self, command: &Command) -> TraceCommand {
        let r = &self.redactor;
        let meta = |m: &crate::session::UserMeta| {
            m.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        match command {
            Command::SignInAnonymously(o) => TraceCommand::SignIn {
                force_new: o.force_new,
                captcha_token: o.captcha_token.as_ref().map(|t| r.text(t.expose())),
                user_meta: meta(&o.user_meta),
            },
            Command::UpgradeToEmail(u) => TraceCommand::Upgrade {
                email: u.email.to_string(),
                password: r.text(u.password.expose()),
                user_meta: meta(&u.user_meta),
                idempotency_key: u.idempotency_key.as_ref().map(ToString::to_string),
            },
            Command::SignOut(o) => TraceCommand::SignOut {
                forget_anonymous: o.forget_anonymous,
            },
            Command::Refresh => TraceCommand::Refresh,
            Command::AccessToken => TraceCommand::AccessToken,
        }
    }
}

fn json_line<T: Serialize>(value: &T) -> String {
    // Serialising these types cannot fail: every map key is a string.
    let mut line = serde_json::to_string(value).unwrap_or_default();
    line.push('\n');
    line
}

fn render_output(output: &Output<'_>, r: &Redactor, format: StoreFormat) -> TraceOutput {
    let session = |s: &Session| TraceSession {
        user_id: s.user.id.to_string(),
        email: s.user.email.as_ref().map(ToString::to_string),
        anonymous: s.user.is_anonymous,
        expires_at: s.expires_at.as_millis(),
        access_token: r.text(s.access_token.expose()),
        refresh_token: r.text(s.refresh_token.expose()),
    };
    match output {
        Output::Send(req) => {
            let mut body = alloc::vec![0u8; 16 * 1024];
            let n = req.write_body(&mut body).unwrap_or(0);
            body.truncate(n);
            TraceOutput::Send {
                request: req.id.0,
                path: req.path().map(|p| p.to_string()).unwrap_or_default(),
                headers: req
                    .headers()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            r.text(&format!("{}{}", h.prefix, h.value)),
                        )
                    })
                    .collect(),
                body: r.text(&String::from_utf8_lossy(&body)),
            }
        }
        Output::Store(op) => {
            let mut buf = alloc::vec![0u8; 8 * 1024];
            let value = op
                .value
                .and_then(|v| v.encode(format, &mut buf).ok())
                .map(|b| r.bytes(b));
            TraceOutput::Store {
                store: op.id.0,
                key: TraceKey::of(op.key),
                value,
                verify_only: op.verify_only,
            }
        }
        Output::AuthChange { change, session: s } => TraceOutput::Change {
            change: change.as_str().to_string(),
            session: s.map(session),
        },
        Output::Complete { id, result } => match result {
            Ok(outcome) => TraceOutput::Complete {
                command: id.0,
                ok: Some(render_outcome(outcome, r)),
                error: None,
            },
            Err(e) => TraceOutput::Complete {
                command: id.0,
                ok: None,
                error: Some(TraceFailure {
                    code: e.code().to_string(),
                    message: r.text(&e.to_string()),
                    status: e.status(),
                }),
            },
        },
        Output::Notice(n) => TraceOutput::Notice {
            notice: format!("{n:?}"),
        },
    }
}

fn render_outcome(outcome: &Outcome<'_>, r: &Redactor) -> String {
    match outcome {
        Outcome::Session(s) => format!("session {}", s.user.id),
        Outcome::Upgraded(s) => format!("upgraded {}", s.user.id),
        Outcome::ConfirmationRequired { email } => format!("confirmation_required {email}"),
        Outcome::SignedOut(Revocation::NotNeeded) => "signed_out not_needed".to_string(),
        Outcome::SignedOut(Revocation::Revoked) => "signed_out revoked".to_string(),
        Outcome::SignedOut(Revocation::Failed {
            code,
            message,
            status,
        }) => format!("signed_out failed {code} {status:?} {}", r.text(message)),
        Outcome::AccessToken(Some(t)) => format!("access_token {}", r.text(t.expose())),
        Outcome::AccessToken(None) => "access_token none".to_string(),
    }
}

// ---------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------

/// What a successful replay went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Inputs fed.
    pub inputs: usize,
    /// Outputs compared.
    pub outputs: usize,
}

/// The first place a replay differs from its trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The trace line (1-based; the header is line 1).
    pub line: usize,
    /// The input of that line, as recorded.
    pub input: String,
    /// What differs: `output 2`, `timeout`, `input refused`.
    pub what: String,
    /// What the trace holds there (`-` if nothing).
    pub expected: String,
    /// What the machine gave (`-` if nothing).
    pub actual: String,
}

impl core::fmt::Display for Divergence {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "trace line {}: {} differs\n  input:    {}\n  expected: {}\n  actual:   {}",
            self.line, self.what, self.input, self.expected, self.actual
        )
    }
}

/// Why a replay failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    /// The trace could not be read.
    Trace(TraceError),
    /// The machine behaved differently.
    Diverged(Divergence),
}

impl core::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReplayError::Trace(e) => e.fmt(f),
            ReplayError::Diverged(d) => d.fmt(f),
        }
    }
}

impl core::error::Error for ReplayError {}

impl From<TraceError> for ReplayError {
    fn from(e: TraceError) -> Self {
        ReplayError::Trace(e)
    }
}

/// Reads the header line of a trace.
pub fn read_header(line: &str) -> Result<TraceHeader, TraceError> {
    let header: TraceHeader =
        serde_json::from_str(line).map_err(|e| TraceError::Syntax(1, e.to_string()))?;
    if header.paywall_auth_trace != TRACE_VERSION {
        return Err(TraceError::Version(header.paywall_auth_trace));
    }
    Ok(header)
}

/// Runs `trace` (the whole text) through a fresh machine built from its
/// header's configuration and checks, line by line, that every output and
/// deadline is the one recorded. Stops at the first divergence.
pub fn replay(trace: &str) -> Result<Replayed, ReplayError> {
    let mut lines = trace
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines.next().ok_or(TraceError::Empty)?;
    let header = read_header(first)?;
    let config = header.config.to_config()?;
    let format = config.store_format;
    let mut machine = Machine::new(config);
    // The trace's secrets are placeholders already (or kept on purpose):
    // the machine's outputs are compared as they are.
    let plain = Redactor::new(Secrets::Keep);
    let mut done = Replayed {
        inputs: 0,
        outputs: 0,
    };
    for (number, text) in lines {
        let line: TraceLine =
            serde_json::from_str(text).map_err(|e| TraceError::Syntax(number, e.to_string()))?;
        let input_json = serde_json::to_string(&line.input).unwrap_or_default();
        let diverged = |what: String, expected: String, actual: String| {
            ReplayError::Diverged(Divergence {
                line: number,
                input: input_json.clone(),
                what,
                expected,
                actual,
            })
        };
        if feed(&mut machine, &line)?.is_err() {
            return Err(diverged(
                "input refused".to_string(),
                "accepted".to_string(),
                "not drained: outputs were still queued".to_string(),
            ));
        }
        done.inputs += 1;
        let mut actual = Vec::new();
        while let Some(output) = machine.poll_output() {
            actual.push(render_output(&output, &plain, format));
        }
        let count = actual.len().max(line.outputs.len());
        for i in 0..count {
            let expected = line.outputs.get(i);
            let got = actual.get(i);
            if expected != got {
                let show = |o: Option<&TraceOutput>| {
                    o.map_or("-".to_string(), |o| {
                        serde_json::to_string(o).unwrap_or_default()
                    })
                };
                return Err(diverged(
                    format!("output {}", i + 1),
                    show(expected),
                    show(got),
                ));
            }
        }
        done.outputs += count;
        let timeout = machine.poll_timeout().map(Instant::as_millis);
        if timeout != line.timeout {
            let show = |t: Option<u64>| t.map_or("none".to_string(), |t| t.to_string());
            return Err(diverged(
                "timeout".to_string(),
                show(line.timeout),
                show(timeout),
            ));
        }
    }
    Ok(done)
}

/// Feeds the line's input; the inner result is the machine's.
fn feed(
    machine: &mut Machine,
    line: &TraceLine,
) -> Result<Result<(), crate::machine::NotDrained>, TraceError> {
    let now = Instant(line.now);
    let bytes = |b: &Option<Bytes>| b.as_ref().map(Bytes::to_vec).transpose();
    let fed = match &line.input {
        TraceInput::Restored {
            session,
            anon_refresh_token,
            visitor_id,
        } => {
            let session = bytes(session)?;
            let anon = bytes(anon_refresh_token)?;
            machine.handle_input(
                now,
                Input::Restored {
                    session: session.as_deref(),
                    anon_refresh_token: anon.as_deref(),
                    visitor_id: visitor_id.as_deref(),
                },
            )
        }
        TraceInput::Command { command } => {
            machine.handle_input(now, Input::Command(command.command()?))
        }
        TraceInput::Response {
            request,
            status,
            json,
            body,
            reason,
        } => {
            let body = body.to_vec()?;
            machine.handle_input(
                now,
                Input::Response(
                    RequestId(*request),
                    Response {
                        status: *status,
                        content_type_json: *json,
                        body: &body,
                        reason,
                    },
                ),
            )
        }
        TraceInput::TransportFailed { request, error } => machine.handle_input(
            now,
            Input::TransportFailed(RequestId(*request), error.error()),
        ),
        TraceInput::Stored { store, failed } => machine.handle_input(
            now,
            Input::Stored(
                StoreId(*store),
                match failed {
                    None => Ok(()),
                    Some(key) => Err(StorageError { key: key.key() }),
                },
            ),
        ),
        TraceInput::External { key, value } => {
            let value = bytes(value)?;
            machine.handle_input(now, Input::ExternalChange(key.key(), value.as_deref()))
        }
        TraceInput::Timeout => machine.handle_input(now, Input::Timeout),
    };
    Ok(fed.map(drop))
}

#[cfg(test)]
mod tests;
