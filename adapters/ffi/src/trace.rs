//! Traces from C (docs/protocol.md §14): a machine's inputs and outputs
//! recorded as JSON lines handed to a C sink, and the replay of a trace
//! through a fresh machine. Host builds only (the `std` feature): the
//! recorder and the replay allocate.

use core::ffi::{c_char, c_int, c_void};
use core::mem::align_of;

use paywall_auth::trace::{Recorder, ReplayError, Secrets, TraceError, replay};
use paywall_auth::{Input, Instant, Output};

use crate::{machine, paywall_auth_machine, paywall_auth_status};

/// Receives one finished trace line: `len` bytes of UTF-8 JSON at `line`,
/// ending with `'\n'`, not NUL-terminated, valid only during the call.
/// `user` is the pointer given to `paywall_auth_machine_record_trace`.
/// Append the bytes as they are (to a file, a ring buffer, a socket): the
/// concatenation of the lines, header first, is the trace. The sink must
/// not call back into the machine that records.
pub type paywall_auth_trace_sink =
    Option<unsafe extern "C" fn(user: *mut c_void, line: *const u8, len: usize)>;

/// A recording in progress: the core's recorder and where its lines go.
#[derive(Debug)]
pub(crate) struct Recording {
    recorder: Recorder,
    sink: unsafe extern "C" fn(user: *mut c_void, line: *const u8, len: usize),
    user: *mut c_void,
}

impl Recording {
    /// Hands a finished line to the sink (nothing for an empty one).
    fn emit(&self, line: &str) {
        if line.is_empty() {
            return;
        }
        // SAFETY: the host registered `sink` for this machine and promised
        // it may be called with `user` and a line that is valid (and
        // unchanged) for the duration of the call, which `line` is.
        unsafe { (self.sink)(self.user, line.as_ptr(), line.len()) }
    }

    /// `input`, fed at `now`, was accepted by the machine. A line still
    /// open (the host fed this input without polling until `EMPTY`, as it
    /// does when it acknowledges a `STORE` inside its drain loop) ends
    /// first, with `timeout_before`, the machine's deadline before the
    /// input: the state a replay ends that line in, as it polls until
    /// `None`.
    pub(crate) fn fed(&mut self, timeout_before: Option<Instant>, now: Instant, input: &Input<'_>) {
        let open = self.recorder.end(timeout_before);
        self.emit(&open);
        self.recorder.input(now, input);
    }

    /// An output the host polled.
    pub(crate) fn output(&mut self, output: &Output<'_>) {
        self.recorder.output(output);
    }

    /// The host polled and got `EMPTY`: the line ends with the deadline
    /// the machine gives now.
    pub(crate) fn drained(&mut self, timeout: Option<Instant>) {
        let line = self.recorder.end(timeout);
        self.emit(&line);
    }
}

/// Records a trace of machine `m` (docs/protocol.md §14): from this call
/// on, every input accepted through this API and every output polled is
/// recorded, and each finished line is handed to `sink` with `user`. The
/// header line (format version, library version, the machine's config) is
/// handed over at once, during this call; each following line when the
/// host polls `EMPTY` after an input (or, if it did not, when it feeds the
/// next input). Inputs refused (`NOT_DRAINED`, invalid arguments) are not
/// recorded.
///
/// Start right after `paywall_auth_machine_init`, before
/// `handle_restored`: a trace replays from a fresh machine, so one started
/// later does not replay. `keep_secrets` 0 (recommended) replaces refresh
/// tokens, access-token signatures, passwords and captcha tokens by
/// placeholders of the same length (the trace still replays); non-zero
/// keeps them: treat such a trace as a credential.
///
/// A NULL `sink` stops the recording (a line not ended yet is dropped); a
/// new call replaces the current recording. `paywall_auth_machine_deinit`
/// frees it. The recorder lives on the heap (host builds only: the `std`
/// feature; the `no_std` firmware library has neither function); it holds
/// the secrets it redacts until it is freed.
///
/// # Safety
/// `m` a handle; a non-NULL `sink` must be callable with `user` until the
/// recording stops, is replaced or the machine is deinitialised, and must
/// not call into `m`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_machine_record_trace(
    m: *mut paywall_auth_machine,
    keep_secrets: c_int,
    sink: paywall_auth_trace_sink,
    user: *mut c_void,
) -> paywall_auth_status {
    // SAFETY: forwarded contract.
    let inner = match unsafe { machine(m) } {
        Ok(inner) => inner,
        Err(s) => return s,
    };
    inner.trace = None;
    let Some(sink) = sink else {
        return paywall_auth_status::Ok;
    };
    let secrets = if keep_secrets != 0 {
        Secrets::Keep
    } else {
        Secrets::Redact
    };
    let recording = Recording {
        recorder: Recorder::new(inner.machine.config(), secrets),
        sink,
        user,
    };
    recording.emit(&recording.recorder.header());
    inner.trace = Some(Box::new(recording));
    paywall_auth_status::Ok
}

/// Size of `paywall_auth_replay_report.what`, NUL included.
pub const PAYWALL_AUTH_REPLAY_WHAT_MAX: usize = 256;

/// Size of the `input`, `expected` and `actual` texts of
/// `paywall_auth_replay_report`, NUL included. Longer texts are cut at a
/// UTF-8 boundary and end with `...`.
pub const PAYWALL_AUTH_REPLAY_TEXT_MAX: usize = 1024;

/// What `paywall_auth_trace_replay` found. Every text is NUL-terminated
/// (empty when it does not apply).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct paywall_auth_replay_report {
    /// `OK`: inputs fed. Otherwise 0.
    pub inputs: usize,
    /// `OK`: outputs compared. Otherwise 0.
    pub outputs: usize,
    /// `TRACE_DIVERGED`: the trace line (1-based, the header is line 1)
    /// where the machine first differs. `TRACE_INVALID`: the line that
    /// could not be read, or 0 when the fault is not one line's.
    pub line: usize,
    /// `TRACE_DIVERGED`: what differs (`output 2`, `timeout`,
    /// `input refused`). `TRACE_INVALID`: why the trace was not read.
    pub what: [c_char; PAYWALL_AUTH_REPLAY_WHAT_MAX],
    /// `TRACE_DIVERGED`: the input of that line, as recorded (JSON).
    pub input: [c_char; PAYWALL_AUTH_REPLAY_TEXT_MAX],
    /// `TRACE_DIVERGED`: what the trace holds there (JSON, `-` if
    /// nothing).
    pub expected: [c_char; PAYWALL_AUTH_REPLAY_TEXT_MAX],
    /// `TRACE_DIVERGED`: what the machine gave (JSON, `-` if nothing).
    pub actual: [c_char; PAYWALL_AUTH_REPLAY_TEXT_MAX],
}

impl paywall_auth_replay_report {
    const EMPTY: Self = Self {
        inputs: 0,
        outputs: 0,
        line: 0,
        what: [0; PAYWALL_AUTH_REPLAY_WHAT_MAX],
        input: [0; PAYWALL_AUTH_REPLAY_TEXT_MAX],
        expected: [0; PAYWALL_AUTH_REPLAY_TEXT_MAX],
        actual: [0; PAYWALL_AUTH_REPLAY_TEXT_MAX],
    };
}

/// Copies `text` into `dst` NUL-terminated, cut at a UTF-8 boundary and
/// marked with `...` when it does not fit.
fn fill(dst: &mut [c_char], text: &str) {
    let Some(room) = dst.len().checked_sub(1) else {
        return;
    };
    let (body, mark) = if text.len() <= room {
        (text, "")
    } else {
        let mut end = room.saturating_sub(3);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        (text.get(..end).unwrap_or_default(), "...")
    };
    let bytes = body.bytes().chain(mark.bytes()).chain(core::iter::once(0));
    for (slot, byte) in dst.iter_mut().zip(bytes) {
        *slot = byte as c_char;
    }
}

/// Replays a whole trace (`len` bytes at `trace`: the header line and the
/// lines after it, as a recording's sink received them) through a fresh
/// machine built from the header's config, and compares every output and
/// deadline with the recorded ones (docs/protocol.md §14).
///
/// Returns `OK` when the machine behaves identically (`report->inputs`
/// and `->outputs` say how much was replayed), `TRACE_DIVERGED` at the
/// first difference (`report->line`, `->what`, `->input`, `->expected`,
/// `->actual`), `TRACE_INVALID` when the bytes are not a trace this build
/// reads (not UTF-8, bad JSON, another format version, empty;
/// `report->what` says why and `->line` where). `report` may be NULL when
/// only the code matters. The trace is only read during the call. Host
/// builds only (the `std` feature).
///
/// # Safety
/// `trace` NULL with `len` 0, or `len` readable bytes; `report` NULL or a
/// writable `paywall_auth_replay_report`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_trace_replay(
    trace: *const u8,
    len: usize,
    report: *mut paywall_auth_replay_report,
) -> paywall_auth_status {
    if !report.is_null() && report.align_offset(align_of::<paywall_auth_replay_report>()) != 0 {
        return paywall_auth_status::Misaligned;
    }
    // SAFETY: forwarded contract.
    let bytes = match unsafe { crate::bytes(crate::paywall_auth_bytes { ptr: trace, len }) } {
        Ok(b) => b.unwrap_or_default(),
        Err(s) => return s,
    };
    let mut r = Box::new(paywall_auth_replay_report::EMPTY);
    let status = match core::str::from_utf8(bytes) {
        Err(e) => {
            let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
            r.line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            fill(
                &mut r.what,
                &format!("trace is not UTF-8 (byte {})", e.valid_up_to()),
            );
            paywall_auth_status::TraceInvalid
        }
        Ok(text) => match replay(text) {
            Ok(done) => {
                r.inputs = done.inputs;
                r.outputs = done.outputs;
                paywall_auth_status::Ok
            }
            Err(ReplayError::Trace(e)) => {
                if let TraceError::Syntax(line, _) = &e {
                    r.line = *line;
                }
                fill(&mut r.what, &e.to_string());
                paywall_auth_status::TraceInvalid
            }
            Err(ReplayError::Diverged(d)) => {
                r.line = d.line;
                fill(&mut r.what, &d.what);
                fill(&mut r.input, &d.input);
                fill(&mut r.expected, &d.expected);
                fill(&mut r.actual, &d.actual);
                paywall_auth_status::TraceDiverged
            }
        },
    };
    if !report.is_null() {
        // SAFETY: non-NULL and aligned (checked); the caller promises it is
        // writable. `write` does not read the old value.
        unsafe { report.write(*r) };
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(buf: &[c_char]) -> std::string::String {
        let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
        let bytes: std::vec::Vec<u8> = buf.iter().take(end).map(|&c| c as u8).collect();
        std::string::String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn texts_are_nul_terminated_and_cut_at_a_char_boundary() {
        let mut buf = [1 as c_char; 8];
        fill(&mut buf, "1234567");
        assert_eq!(read(&buf), "1234567", "exactly fits with its NUL");
        let mut buf = [1 as c_char; 8];
        fill(&mut buf, "12345678");
        assert_eq!(read(&buf), "1234...");
        // "é" is two bytes: a cut inside it moves back to its start.
        let mut buf = [1 as c_char; 8];
        fill(&mut buf, "123éééé");
        assert_eq!(read(&buf), "123...");
        let mut buf = [1 as c_char; 8];
        fill(&mut buf, "");
        assert_eq!(buf.first(), Some(&0));
        fill(&mut [], "nothing to write into");
    }
}
