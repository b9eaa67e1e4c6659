//! Traces of a client: the driver's inputs and the core's outputs as JSON
//! lines (`paywall_auth::trace`, docs/protocol.md §14), written to a file
//! while the client runs, and their replay.
//!
//! Recording is for reproducing a field problem: the machine is
//! deterministic, so the trace of a run is the run. It is off unless
//! [`AuthClientBuilder::record_trace`](crate::AuthClientBuilder::record_trace)
//! names a file.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use paywall_auth::trace::{Recorder, Secrets};
use paywall_auth::{Config, Input, Instant, Output};

pub use paywall_auth::trace::{Divergence, ReplayError, Replayed, TraceError};

/// The trace file of a running client.
///
/// Each finished line is written with one `write` call on the unbuffered
/// file, so the file is flushed at every line end and a process killed at
/// any moment leaves whole lines only: a prefix of the run that still
/// replays. A line is small (a few KiB at most), so this costs one system
/// call per input, which is nothing next to the HTTP request or the store
/// write each input stands for.
pub(crate) struct TraceSink {
    recorder: Recorder,
    /// The header line, until it is written with the first line.
    header: Option<String>,
    file: File,
    path: PathBuf,
}

impl fmt::Debug for TraceSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceSink")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TraceSink {
    /// Creates (or truncates: a trace describes one machine from its
    /// start, so two runs in one file would not replay) the file at `path`
    /// with mode `0600`. The header goes out with the first line, so that
    /// a write failure, header included, is handled in one place (the
    /// driver's: warn, stop recording, carry on).
    pub(crate) fn create(path: &Path, config: &Config, secrets: Secrets) -> io::Result<Self> {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options.open(path)?;
        // `mode` applies to a file being created only; a trace recorded
        // over an older, wider file must not stay readable by others
        // (with record-secrets it holds the refresh token). Only a regular
        // file: the permissions of a device (`/dev/stdout`) are not ours
        // to change.
        #[cfg(unix)]
        if file.metadata()?.is_file() {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        let recorder = Recorder::new(config, secrets);
        Ok(TraceSink {
            header: Some(recorder.header()),
            recorder,
            file,
            path: path.to_owned(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Starts the line of `input`, about to be fed at `now`.
    pub(crate) fn input(&mut self, now: Instant, input: &Input<'_>) {
        self.recorder.input(now, input);
    }

    /// Adds an output just polled.
    pub(crate) fn output(&mut self, output: &Output<'_>) {
        self.recorder.output(output);
    }

    /// Ends the current line (the machine's queue is empty or stalled on
    /// a store acknowledgement) and writes it.
    pub(crate) fn end(&mut self, timeout: Option<Instant>) -> io::Result<()> {
        let mut line = self.recorder.end(timeout);
        if line.is_empty() {
            return Ok(());
        }
        if let Some(mut header) = self.header.take() {
            header.push_str(&line);
            line = header;
        }
        self.file.write_all(line.as_bytes())
    }
}

/// Why [`replay_trace_file`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplayFileError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    Io {
        /// The file.
        path: PathBuf,
        /// The OS's reason.
        source: io::Error,
    },
    /// The file is not a trace this build reads (no header, a line that
    /// is not JSON of the trace's shape, another format version).
    Trace(TraceError),
    /// Today's machine behaves differently from the recorded one: the
    /// first place it does.
    Diverged(Divergence),
}

impl fmt::Display for ReplayFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayFileError::Io { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ReplayFileError::Trace(e) => e.fmt(f),
            ReplayFileError::Diverged(d) => d.fmt(f),
        }
    }
}

impl std::error::Error for ReplayFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplayFileError::Io { source, .. } => Some(source),
            ReplayFileError::Trace(e) => Some(e),
            ReplayFileError::Diverged(_) => None,
        }
    }
}

impl From<ReplayError> for ReplayFileError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Trace(e) => ReplayFileError::Trace(e),
            ReplayError::Diverged(d) => ReplayFileError::Diverged(d),
        }
    }
}

/// Reads the trace at `path` (as written by
/// [`AuthClientBuilder::record_trace`](crate::AuthClientBuilder::record_trace))
/// and replays it through a fresh machine with
/// [`paywall_auth::trace::replay`]: `Ok` says how many inputs and outputs
/// today's core reproduced identically.
///
/// Blocking file I/O: call it from a CLI, a test or `spawn_blocking`, not
/// from the middle of an async task.
pub fn replay_trace_file(path: impl AsRef<Path>) -> Result<Replayed, ReplayFileError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ReplayFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(paywall_auth::trace::replay(&text)?)
}
