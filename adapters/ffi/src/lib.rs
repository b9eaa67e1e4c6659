//! C ABI of the paywall-auth core: the sans-IO [`Machine`] and the core's
//! HTTP/1.1 codec, over memory the caller provides. No allocator, no
//! clock, no I/O; `#![no_std]` unless the `std` feature (default, for host
//! builds) is on, which adds traces (record and replay, `trace.rs`), the
//! one part that allocates. The generated header is `include/paywall_auth.h`; the
//! README shows a complete host loop.
//!
//! # Safety model
//!
//! Every entry point checks its pointers for NULL and alignment, its
//! lengths, its enum values and its UTF-8 before use and answers a typed
//! [`paywall_auth_status`]; it never unwinds into C. What it cannot check
//! is the caller's promise that a non-NULL pointer really points to as many
//! bytes as claimed, and that a machine is not used from two threads at
//! once. A Rust panic (a bug) never unwinds into C: on host builds (`std`)
//! a panic cannot cross `extern "C"` and aborts the process; the firmware
//! build (`--no-default-features`) has the panic handler below, which halts
//! in a spin loop (a watchdog, if the firmware runs one, then resets).
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![allow(non_camel_case_types)]
// `Error` is large by design (see the core); it is handled once per output.
#![allow(clippy::result_large_err)]

mod http;
mod map;
#[cfg(feature = "std")]
mod trace;
mod types;

use core::mem::{align_of, size_of};
use core::ptr;

use paywall_auth::limits::{ACCESS_TOKEN_MAX, REFRESH_TOKEN_MAX};
use paywall_auth::{
    CommandId, Config, Duration, Input, Instant, Machine, RecordKey, RequestId, Response,
    StorageError, StoreFormat, StoreId,
};

pub use http::*;
#[cfg(feature = "std")]
pub use trace::*;
pub use types::*;

/// Bytes of each machine's encode buffer: the `Authorization` value, the
/// path, the JSON body of a request, or a stored record plus messages.
/// Part of [`paywall_auth_machine_size`].
pub const ENCODE_BUF: usize = ACCESS_TOKEN_MAX + REFRESH_TOKEN_MAX + 2048;

/// An upper bound of `paywall_auth_machine_size()` on every target with
/// the default capacities, for hosts that allocate the machine statically
/// (`static uint8_t mem[PAYWALL_AUTH_MACHINE_STORAGE]`). Checked at compile
/// time; raising a `PAYWALL_AUTH_*` capacity may need a larger buffer, so
/// still compare with `paywall_auth_machine_size()` at start.
pub const PAYWALL_AUTH_MACHINE_STORAGE: usize = 13312;

/// Alignment that satisfies `paywall_auth_machine_align()` and
/// `paywall_auth_http_response_align()` on every target.
pub const PAYWALL_AUTH_MAX_ALIGN: usize = 16;

const MACHINE_MAGIC: u64 = 0x7061_7977_616c_6c31; // "paywall1"

/// A machine in caller memory. Opaque: allocate
/// `paywall_auth_machine_size()` bytes aligned to
/// `paywall_auth_machine_align()`, then `paywall_auth_machine_init` it.
#[derive(Debug)]
pub struct paywall_auth_machine {
    magic: u64,
    machine: Machine,
    format: StoreFormat,
    paywall_id_len: usize,
    /// The record of the store operation handed out last (the core wants
    /// it in a failed acknowledgement).
    last_store_key: RecordKey,
    headers: [paywall_auth_header; PAYWALL_AUTH_HEADERS_MAX],
    encode: [u8; ENCODE_BUF],
    /// The trace being recorded (`paywall_auth_machine_record_trace`), on
    /// the heap: one pointer in the machine, host builds only.
    #[cfg(feature = "std")]
    trace: Option<std::boxed::Box<trace::Recording>>,
}

const _: () = assert!(size_of::<paywall_auth_machine>() <= PAYWALL_AUTH_MACHINE_STORAGE);
const _: () = assert!(align_of::<paywall_auth_machine>() <= PAYWALL_AUTH_MAX_ALIGN);

#[cfg(not(any(test, feature = "std")))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // Unreachable by design (no entry point panics on any input); if a bug
    // gets here, stop rather than unwind into C.
    loop {
        core::hint::spin_loop();
    }
}

/// The status of a `Result`.
fn status(r: Result<(), paywall_auth_status>) -> paywall_auth_status {
    match r {
        Ok(()) => paywall_auth_status::Ok,
        Err(s) => s,
    }
}

/// Borrows `len` bytes at `ptr` (`None` for `{NULL, 0}`).
///
/// # Safety
/// A non-NULL `ptr` must point to `len` readable bytes that are not
/// written during `'a`.
unsafe fn bytes<'a>(b: paywall_auth_bytes) -> Result<Option<&'a [u8]>, paywall_auth_status> {
    if b.ptr.is_null() {
        return if b.len == 0 {
            Ok(None)
        } else {
            Err(paywall_auth_status::NullPointer)
        };
    }
    if b.len > isize::MAX as usize {
        return Err(paywall_auth_status::InvalidArgument);
    }
    // SAFETY: non-NULL (checked), `len` within `isize` (checked); the caller
    // promises `len` readable bytes that stay unchanged for `'a`.
    Ok(Some(unsafe { core::slice::from_raw_parts(b.ptr, b.len) }))
}

/// [`bytes`] as UTF-8 text.
///
/// # Safety
/// As [`bytes`].
unsafe fn text<'a>(b: paywall_auth_bytes) -> Result<Option<&'a str>, paywall_auth_status> {
    // SAFETY: forwarded contract.
    match unsafe { bytes(b) }? {
        None => Ok(None),
        Some(s) => core::str::from_utf8(s)
            .map(Some)
            .map_err(|_| paywall_auth_status::InvalidUtf8),
    }
}

/// Checks a machine handle and borrows it.
///
/// # Safety
/// A non-NULL `m` must point to memory given to `paywall_auth_machine_init`
/// (or at least `paywall_auth_machine_size()` readable bytes), not used
/// elsewhere during `'a`.
unsafe fn machine<'a>(
    m: *mut paywall_auth_machine,
) -> Result<&'a mut paywall_auth_machine, paywall_auth_status> {
    if m.is_null() {
        return Err(paywall_auth_status::NullPointer);
    }
    if m.align_offset(align_of::<paywall_auth_machine>()) != 0 {
        return Err(paywall_auth_status::Misaligned);
    }
    // SAFETY: non-NULL and aligned (checked); the caller promises the memory
    // is at least a machine's size. Only the first field is read, and
    // `init` writes it last, `deinit` clears it, so a wrong value means
    // "not a live machine".
    let magic = unsafe { ptr::addr_of!((*m).magic).read() };
    if magic != MACHINE_MAGIC {
        return Err(paywall_auth_status::NotInitialized);
    }
    // SAFETY: the magic says `init` wrote a whole machine here; the caller
    // promises exclusive use for the call.
    Ok(unsafe { &mut *m })
}

// ----- lifecycle ----------------------------------------------------------

/// Bytes of memory a machine needs (a few KiB; see
/// `PAYWALL_AUTH_MACHINE_STORAGE` for a static bound).
#[unsafe(no_mangle)]
pub extern "C" fn paywall_auth_machine_size() -> usize {
    size_of::<paywall_auth_machine>()
}

/// Alignment the machine's memory needs.
#[unsafe(no_mangle)]
pub extern "C" fn paywall_auth_machine_align() -> usize {
    align_of::<paywall_auth_machine>()
}

/// Fills `cfg` with the reference client's defaults for `paywall_id`
/// (`len` bytes, not NUL-terminated; the pointer is stored in `cfg`, so it
/// must stay valid until `paywall_auth_machine_init`).
///
/// # Safety
/// `cfg` must be NULL or point to a writable `paywall_auth_config`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_config_default(
    cfg: *mut paywall_auth_config,
    paywall_id: *const u8,
    len: usize,
) -> paywall_auth_status {
    if cfg.is_null() {
        return paywall_auth_status::NullPointer;
    }
    if cfg.align_offset(align_of::<paywall_auth_config>()) != 0 {
        return paywall_auth_status::Misaligned;
    }
    let defaults = paywall_auth_config {
        paywall_id: paywall_auth_bytes {
            ptr: paywall_id,
            len,
        },
        store_format: paywall_auth_store_format::ReferenceJson as u32,
        leeway_ms: 60_000,
        proactive_refresh_ms: 120_000,
        retry_base_ms: 2_000,
        retry_max_ms: 300_000,
        request_timeout_ms: 0,
        echoes_own_writes: 0,
    };
    // SAFETY: non-NULL and aligned (checked); the caller promises it is
    // writable. `write` does not read the old (maybe uninitialised) value.
    unsafe { cfg.write(defaults) };
    paywall_auth_status::Ok
}

/// Builds the core's config from the C one.
///
/// # Safety
/// `cfg.paywall_id` as [`bytes`].
unsafe fn config(cfg: &paywall_auth_config) -> Result<Config, paywall_auth_status> {
    // SAFETY: forwarded contract.
    let pid = unsafe { text(cfg.paywall_id) }?.unwrap_or("");
    let format = map::store_format(cfg.store_format).ok_or(paywall_auth_status::InvalidConfig)?;
    let mut c = Config::new(pid)
        .map_err(|_| paywall_auth_status::InvalidConfig)?
        .with_store_format(format);
    c.leeway = Duration::from_millis(cfg.leeway_ms);
    c.proactive_refresh =
        (cfg.proactive_refresh_ms > 0).then(|| Duration::from_millis(cfg.proactive_refresh_ms));
    c.retry_base = Duration::from_millis(cfg.retry_base_ms);
    c.retry_max = Duration::from_millis(cfg.retry_max_ms);
    c.request_timeout =
        (cfg.request_timeout_ms > 0).then(|| Duration::from_millis(cfg.request_timeout_ms));
    c.echoes_own_writes = cfg.echoes_own_writes != 0;
    Ok(c)
}

/// Initialises a machine in `mem` (`mem_size` bytes, at least
/// `paywall_auth_machine_size()`, aligned to `paywall_auth_machine_align()`).
/// On success, use `(paywall_auth_machine *)mem` as the handle until
/// `paywall_auth_machine_deinit`. The memory must not move while an output
/// is in use. The config is copied.
///
/// Then feed `handle_restored` first, with the records found on storage.
/// Initialising a live machine again without `paywall_auth_machine_deinit`
/// forgets it as it is (nothing is dropped; on host builds, a trace
/// recorder it had is leaked).
///
/// # Safety
/// `mem` must be NULL or point to `mem_size` writable bytes owned by the
/// caller for the machine's lifetime; `cfg` NULL or a valid config whose
/// `paywall_id` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_machine_init(
    mem: *mut core::ffi::c_void,
    mem_size: usize,
    cfg: *const paywall_auth_config,
) -> paywall_auth_status {
    if mem.is_null() || cfg.is_null() {
        return paywall_auth_status::NullPointer;
    }
    let m = mem.cast::<paywall_auth_machine>();
    if m.align_offset(align_of::<paywall_auth_machine>()) != 0 {
        return paywall_auth_status::Misaligned;
    }
    if mem_size < size_of::<paywall_auth_machine>() {
        return paywall_auth_status::BufferTooSmall;
    }
    if cfg.align_offset(align_of::<paywall_auth_config>()) != 0 {
        return paywall_auth_status::Misaligned;
    }
    // SAFETY: non-NULL, aligned (checked); the caller promises a valid
    // config. It is copied out (plain data).
    let cfg = unsafe { cfg.read() };
    // SAFETY: forwarded contract on `cfg.paywall_id`.
    let config = match unsafe { config(&cfg) } {
        Ok(c) => c,
        Err(s) => return s,
    };
    let format = config.store_format;
    let paywall_id_len = config.paywall_id().len();
    // SAFETY: `m` is aligned and has room for a machine (checked); each
    // field is written through a raw place, so nothing reads the old
    // (uninitialised) bytes. The magic goes last: until it is written the
    // handle is refused.
    unsafe {
        ptr::addr_of_mut!((*m).magic).write(0);
        ptr::addr_of_mut!((*m).machine).write(Machine::new(config));
        ptr::addr_of_mut!((*m).format).write(format);
        ptr::addr_of_mut!((*m).paywall_id_len).write(paywall_id_len);
        ptr::addr_of_mut!((*m).last_store_key).write(RecordKey::Session);
        ptr::addr_of_mut!((*m).headers).write(
            [paywall_auth_header {
                name: paywall_auth_bytes::NONE,
                value: paywall_auth_bytes::NONE,
            }; PAYWALL_AUTH_HEADERS_MAX],
        );
        ptr::addr_of_mut!((*m).encode).write_bytes(0, 1);
        #[cfg(feature = "std")]
        ptr::addr_of_mut!((*m).trace).write(None);
        ptr::addr_of_mut!((*m).magic).write(MACHINE_MAGIC);
    }
    paywall_auth_status::Ok
}

/// Drops the machine in place (its tokens are overwritten) and marks the
/// memory as no longer a machine; the caller may then free or reuse it.
/// A trace being recorded stops, and its recorder is freed (a line not
/// ended yet is dropped).
///
/// # Safety
/// `m` must be NULL or a handle from `paywall_auth_machine_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_machine_deinit(
    m: *mut paywall_auth_machine,
) -> paywall_auth_status {
    // SAFETY: forwarded contract.
    let inner = match unsafe { machine(m) } {
        Ok(inner) => inner,
        Err(s) => return s,
    };
    inner.magic = 0;
    // Tokens live in the machine and the encode buffer: wipe both after the
    // drop (the core's types hold no resources, so drop is just memory).
    let p: *mut paywall_auth_machine = inner;
    // SAFETY: `p` is a live, initialised machine (checked above) that is
    // not used again as one: the magic is cleared first, so every later
    // call refuses it. After `drop_in_place` (of the recorder too: its box
    // is freed) its bytes are plain memory, zeroed through the raw pointer
    // (volatile, so it is not elided).
    unsafe {
        ptr::drop_in_place(ptr::addr_of_mut!((*p).machine));
        #[cfg(feature = "std")]
        ptr::drop_in_place(ptr::addr_of_mut!((*p).trace));
        let base = p.cast::<u8>();
        for i in size_of::<u64>()..size_of::<paywall_auth_machine>() {
            base.add(i).write_volatile(0);
        }
    }
    paywall_auth_status::Ok
}

// ----- inputs -------------------------------------------------------------

/// Feeds one input; when a trace is being recorded and the machine
/// accepts the input, records it with the same `now`.
fn feed(
    inner: &mut paywall_auth_machine,
    now_ms: u64,
    input: Input<'_>,
) -> Result<Option<CommandId>, paywall_auth_status> {
    let now = Instant(now_ms);
    #[cfg(feature = "std")]
    if let Some(recording) = inner.trace.as_deref_mut() {
        let before = inner.machine.poll_timeout();
        let id = inner
            .machine
            .handle_input(now, input.clone())
            .map_err(|_| paywall_auth_status::NotDrained)?;
        recording.fed(before, now, &input);
        return Ok(id);
    }
    inner
        .machine
        .handle_input(now, input)
        .map_err(|_| paywall_auth_status::NotDrained)
}

/// Storage was read at start: the session record, the anonymous
/// refresh-token record and the global `pw-visitor-id`, each `{NULL, 0}`
/// when absent. The bytes are only read during the call.
///
/// # Safety
/// `m` a handle; each non-NULL pointer points to its `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_machine_handle_restored(
    m: *mut paywall_auth_machine,
    now_ms: u64,
    session: paywall_auth_bytes,
    anon_refresh_token: paywall_auth_bytes,
    visitor_id: paywall_auth_bytes,
) -> paywall_auth_status {
    status((|| {
        // SAFETY: forwarded contract.
        let inner = unsafe { machine(m) }?;
        // SAFETY: forwarded contract.
        let (session, anon, visitor) = unsafe {
            (
                bytes(session)?,
                bytes(anon_refresh_token)?,
                text(visitor_id)?,
            )
        };
        feed(
            inner,
            now_ms,
            Input::Restored {
                session,
                anon_refresh_token: anon,
                visitor_id: visitor,
            },
        )
        .map(drop)
    })())
}

/// A user command. On success `*command_id` (if not NULL) receives the id
/// its completion will carry; commands that collapse into one operation
/// (parallel sign-ins) get the same id.
///
/// # Safety
/// `m` a handle; `cmd` NULL or a valid command whose byte strings and
/// `user_meta` array are readable for their lengths; `command_id` NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_machine_handle_command(
    m: *mut paywall_auth_machine,
    now_ms: u64,
    cmd: *const paywall_auth_command,
    command_id: *mut u32,
) -> paywall_auth_status {
    status((|| {
        // SAFETY: forwarded contract.
        let inner = unsafe { machine(m) }?;
        if cmd.is_null() {
            return Err(paywall_auth_status::NullPointer);
        }
        if cmd.align_offset(align_of::<paywall_auth_command>()) != 0
            || command_id.align_offset(align_of::<u32>()) != 0
        {
            return Err(paywall_auth_status::Misaligned);
        }
        // SAFETY: non-NULL, aligned (checked); plain data copied out.
        let c = unsafe { cmd.read() };
        if c.user_meta.is_null() && c.user_meta_len > 0 {
            return Err(paywall_auth_status::NullPointer);
        }
        if c.user_meta_len > paywall_auth::limits::META_ENTRIES {
            return Err(paywall_auth_status::Capacity);
        }
        let meta: &[paywall_auth_meta_entry] = if c.user_meta_len == 0 {
            &[]
        } else {
            if c.user_meta
                .align_offset(align_of::<paywall_auth_meta_entry>())
                != 0
            {
                return Err(paywall_auth_status::Misaligned);
            }
            // SAFETY: non-NULL, aligned, a small count (checked); the caller
            // promises `user_meta_len` readable entries.
            unsafe { core::slice::from_raw_parts(c.user_meta, c.user_meta_len) }
        };
        // Validate every entry first, so the iterator below cannot fail.
        for e in meta {
            // SAFETY: forwarded contract on each entry.
            unsafe {
                text(e.key)?;
                text(e.value)?;
            }
        }
        let entries = meta.iter().map(|e| {
            // SAFETY: as above; validated in the loop before.
            let (k, v) = unsafe { (text(e.key), text(e.value)) };
            (
                k.ok().flatten().unwrap_or(""),
                v.ok().flatten().unwrap_or(""),
            )
        });
        // SAFETY: forwarded contract on the command's byte strings.
        let (captcha, email, password, key) = unsafe {
            (
                text(c.captcha_token)?,
                text(c.email)?,
                text(c.password)?,
                text(c.idempotency_key)?,
            )
        };
        let command = map::command(map::CommandArgs {
            kind: c.kind,
            force_new: c.force_new != 0,
            hard: c.hard != 0,
            captcha,
            email: email.unwrap_or(""),
            password: password.unwrap_or(""),
            idempotency_key: key,
            meta: entries,
        })
        .map_err(|e| match e {
            map::CommandError::UnknownKind => paywall_auth_status::InvalidArgument,
            map::CommandError::Capacity(_) => paywall_auth_status::Capacity,
        })?;
        let CommandId(id) = feed(inner, now_ms, Input::Command(command))?.unwrap_or(CommandId(0));
        if !command_id.is_null() {
            // SAFETY: non-NULL and aligned (checked); the caller promises
            // it is writable.
            unsafe { command_id.write(id) };
        }
        Ok(())
    })())
}

/// The HTTP response to request `request_id`: status, whether
/// `Content-Type` contained `application/json` (non-zero), the complete
/// de-chunked body and the reason phrase (`{NULL, 0}` if none). The bytes
/// are only read during the call.
///
/// # Safety
/// `m` a handle; `body` NULL or `body_len` readable bytes; `reason` as a
/// byte string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_machine_handle_response(
    m: *mut paywall_auth_machine,
    now_ms: u64,
    request_id: u32,
    http_status: u16,
    content_type_json: u8,
    body: *const u8,
    body_len: usize,
    reason: paywall_auth_bytes,
) -> paywall_auth_status {
    status((|| {
        // SAFETY: forwarded contract.
        let inner = unsafe { machine(m) }?;
        // SAFETY: forwarded contract.
        let (body, reason) = unsafe {
            (
                bytes(paywall_auth_bytes {
                    ptr: body,
                    len: body_len,
                })?,
                text(reason)?,
            )
        };
        let response = Response {
            status: http_status,
            content_type_json: content_type_json != 0,
            body: body.unwrap_or_default(),
            reason: reason.unwrap_or_default(),
        };
        feed(
            inner,
            now_ms,
            Input::Response(RequestId(request_id), response),
        )
        .map(drop)
    })())
}

/// Request `request_id` failed below HTTP; `kind` is a
/// `paywall_auth_transport_error`.
///
/// # Safety
/// `m` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_machine_handle_transport_error(
    m: *mut paywall_auth_machine,
    now_ms: u64,
    request_id: u32,
    kind: u32,
) -> paywall_auth_status {
    status((|| {
        // SAFETY: forwarded contract.
        let inner = unsafe { machine(m) }?;
        let error = map::transport_error(kind).ok_or(paywall_auth_status::InvalidArgument)?;
        feed(
            inner,
            now_ms,
            Input::TransportFailed(RequestId(request_id), error),
        )
        .map(drop)
    })())
}

/// Store operation `store_id` finished: `ok` non-zero when the write or
/// removal is durable. The only input accepted while it is pending.
///
/// # Safety
/// `m` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_machine_handle_stored(
    m: *mut paywall_auth_machine,
    now_ms: u64,
    store_id: u32,
    ok: u8,
) -> paywall_auth_status {
    status((|| {
        // SAFETY: forwarded contract.
        let inner = unsafe { machine(m) }?;
        // The core needs the key of a failure only for the error it reports;
        // the pending operation's key is the one that failed.
        let key = inner.last_store_key;
        let result = if ok != 0 {
            Ok(())
        } else {
            Err(StorageError { key })
        };
        feed(inner, now_ms, Input::Stored(StoreId(store_id), result)).map(drop)
    })())
}

/// Another process changed record `key_tag` (1 session, 2 anonymous
/// token): its new bytes, or `{NULL, 0}` when it was removed.
///
/// # Safety
/// `m` a handle; `value` as a byte string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_machine_handle_external_change(
    m: *mut paywall_auth_machine,
    now_ms: u64,
    key_tag: u8,
    value: paywall_auth_bytes,
) -> paywall_auth_status {
    status((|| {
        // SAFETY: forwarded contract.
        let inner = unsafe { machine(m) }?;
        let key = map::record_key(key_tag).ok_or(paywall_auth_status::InvalidArgument)?;
        // SAFETY: forwarded contract.
        let value = unsafe { bytes(value) }?;
        feed(inner, now_ms, Input::ExternalChange(key, value)).map(drop)
    })())
}

/// The deadline of `paywall_auth_machine_poll_timeout` passed.
///
/// # Safety
/// `m` a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_machine_handle_timeout(
    m: *mut paywall_auth_machine,
    now_ms: u64,
) -> paywall_auth_status {
    status((|| {
        // SAFETY: forwarded contract.
        let inner = unsafe { machine(m) }?;
        feed(inner, now_ms, Input::Timeout).map(drop)
    })())
}

// ----- outputs ------------------------------------------------------------

/// The next output: `OK` with `*out` filled, `EMPTY` when drained. After
/// every input, call it until `EMPTY` before the next input. Pointers in
/// `*out` are valid until the next call on this machine.
///
/// `CAPACITY` means an output did not fit the encode buffer (a token or
/// record larger than `ENCODE_BUF`): `out->kind` and its id are still set;
/// once drained, answer a `SEND` with `handle_transport_error(CONNECT)` and
/// a `STORE` with `handle_stored(id, 0)` (the machine fails the command
/// cleanly instead of waiting forever).
///
/// # Safety
/// `m` a handle; `out` NULL or a writable `paywall_auth_output`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_machine_poll_output(
    m: *mut paywall_auth_machine,
    out: *mut paywall_auth_output,
) -> paywall_auth_status {
    // SAFETY: forwarded contract.
    let inner = match unsafe { machine(m) } {
        Ok(inner) => inner,
        Err(s) => return s,
    };
    if out.is_null() {
        return paywall_auth_status::NullPointer;
    }
    if out.align_offset(align_of::<paywall_auth_output>()) != 0 {
        return paywall_auth_status::Misaligned;
    }
    let paywall_auth_machine {
        machine,
        format,
        paywall_id_len,
        headers,
        encode,
        last_store_key,
        #[cfg(feature = "std")]
        trace,
        ..
    } = inner;
    // The paywall id lives in the machine's config; the store key needs it
    // while the output borrows the machine, so copy it to the stack.
    let mut pid = [0u8; paywall_auth::limits::PAYWALL_ID_MAX];
    let pid_len = (*paywall_id_len).min(pid.len());
    if let (Some(dst), Some(src)) = (
        pid.get_mut(..pid_len),
        machine.config().paywall_id().as_bytes().get(..pid_len),
    ) {
        dst.copy_from_slice(src);
    }
    let pid = core::str::from_utf8(pid.get(..pid_len).unwrap_or_default()).unwrap_or_default();
    let Some(o) = machine.poll_output() else {
        // Drained: a trace line ends here, with the deadline of this moment.
        #[cfg(feature = "std")]
        if let Some(recording) = trace.as_deref_mut() {
            recording.drained(machine.poll_timeout());
        }
        return paywall_auth_status::Empty;
    };
    #[cfg(feature = "std")]
    if let Some(recording) = trace.as_deref_mut() {
        recording.output(&o);
    }
    if let paywall_auth::Output::Store(op) = &o {
        *last_store_key = op.key;
    }
    let mut arena = map::Arena::new(encode);
    let mut rendered = paywall_auth_output::empty(paywall_auth_output_kind::Notice);
    let r = map::output(o, *format, pid, headers, &mut arena, &mut rendered);
    // SAFETY: non-NULL and aligned (checked); the caller promises it is
    // writable. `write` does not read the old value.
    unsafe { out.write(rendered) };
    match r {
        Ok(()) => paywall_auth_status::Ok,
        Err(map::Unrendered) => paywall_auth_status::Capacity,
    }
}

/// When `handle_timeout` is next due: `OK` with `*deadline_ms` set (on the
/// caller's clock, the one of `now_ms`), or `EMPTY` when nothing is
/// scheduled.
///
/// # Safety
/// `m` a handle; `deadline_ms` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_machine_poll_timeout(
    m: *mut paywall_auth_machine,
    deadline_ms: *mut u64,
) -> paywall_auth_status {
    // SAFETY: forwarded contract.
    let inner = match unsafe { machine(m) } {
        Ok(inner) => inner,
        Err(s) => return s,
    };
    if deadline_ms.is_null() {
        return paywall_auth_status::NullPointer;
    }
    if deadline_ms.align_offset(align_of::<u64>()) != 0 {
        return paywall_auth_status::Misaligned;
    }
    match inner.machine.poll_timeout() {
        None => paywall_auth_status::Empty,
        Some(at) => {
            // SAFETY: non-NULL, aligned (checked), caller promises writable.
            unsafe { deadline_ms.write(at.as_millis()) };
            paywall_auth_status::Ok
        }
    }
}

/// The current session (no tokens), valid until the next call on `m`.
///
/// # Safety
/// `m` a handle; `view` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn paywall_auth_machine_session(
    m: *mut paywall_auth_machine,
    view: *mut paywall_auth_session_view,
) -> paywall_auth_status {
    // SAFETY: forwarded contract.
    let inner = match unsafe { machine(m) } {
        Ok(inner) => inner,
        Err(s) => return s,
    };
    if view.is_null() {
        return paywall_auth_status::NullPointer;
    }
    if view.align_offset(align_of::<paywall_auth_session_view>()) != 0 {
        return paywall_auth_status::Misaligned;
    }
    let v = map::session_view(inner.machine.session());
    // SAFETY: non-NULL, aligned (checked), caller promises writable.
    unsafe { view.write(v) };
    paywall_auth_status::Ok
}

// ----- error codes ----------------------------------------------------------

/// The protocol's string code of a `paywall_auth_error_kind`
/// (`network_error`, `not_authenticated`...), NUL-terminated, static;
/// `api_error` for `API` (whose real code is in `paywall_auth_error.code`)
/// and `unknown` for values outside the enum.
#[unsafe(no_mangle)]
pub extern "C" fn paywall_auth_error_code_str(kind: u32) -> *const core::ffi::c_char {
    map::error_code_str(kind).as_ptr()
}

/// A short English description of a `paywall_auth_status`, NUL-terminated,
/// static.
#[unsafe(no_mangle)]
pub extern "C" fn paywall_auth_status_str(status: i32) -> *const core::ffi::c_char {
    http::status_str(status).as_ptr()
}
