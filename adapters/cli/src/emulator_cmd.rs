//! `paywall-auth emulator`: the local backend in the foreground.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use paywall_auth_emulator::{Emulator, EmulatorConfig, LoggedRequest, TlsOptions};
use serde_json::json;

use crate::cli::EmulatorArgs;
use crate::fail::Failure;
use crate::out;

/// How often the request log is checked for lines to print.
const LOG_POLL: Duration = Duration::from_millis(100);
/// How many polls a request still being handled may hold back the lines
/// after it (a latency fault), before it is printed without a status.
const HOLD_POLLS: u32 = 50;

pub async fn run(args: &EmulatorArgs, paywall_id: &str, json_mode: bool) -> Result<(), Failure> {
    let config = EmulatorConfig {
        paywall_id: paywall_id.to_owned(),
        allow_anonymous: !args.no_anonymous,
        confirm_email: args.confirm_email,
        ..EmulatorConfig::default()
    };
    let mut stop = crate::StopSignal::install();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let started = if args.tls {
        Emulator::start_tls_on(addr, config, TlsOptions::default()).await
    } else {
        Emulator::start_on(addr, config).await
    };
    let emulator = started.map_err(|e| {
        Failure::new(
            "emulator_failed",
            format!("emulator_failed: could not listen on {addr}: {e}"),
        )
    })?;
    let origin = emulator.origin();
    let tls = match emulator.tls_identity() {
        Some(identity) => Some(write_ca(identity, emulator.addr().port())?),
        None => None,
    };
    if json_mode {
        out::json_line(&json!({
            "emulator": {
                "origin": origin,
                "paywall_id": paywall_id,
                "allow_anonymous": !args.no_anonymous,
                "confirm_email": args.confirm_email,
                "tls": tls.as_ref().map(|(ca, pin)| json!({"ca_pem_path": ca, "spki_sha256": pin})),
            }
        }));
    } else {
        if let Some((ca, pin)) = &tls {
            out::line(&format!(
                "HTTPS (TLS 1.3): CA certificate in {ca} (curl --cacert {ca}), server key pin sha256/{pin}"
            ));
        }
        let on_off = |b: bool| if b { "on" } else { "off" };
        out::line(&format!(
            "paywall-auth emulator listening on {origin}\n\
             \x20 paywall {paywall_id}, anonymous sign-in {}, email confirmation {}\n\
             \x20 point the CLI at it:  export PAYWALL_AUTH_API_ORIGIN={origin} PAYWALL_AUTH_PAYWALL_ID={paywall_id}\n\
             \x20 confirm an upgrade:   curl -X POST {origin}/__emulator/confirm -d '{{\"email\":\"you@example.com\"}}'\n\
             \x20 inspect:              curl {origin}/__emulator/requests\n\
             Ctrl-C to stop.",
            on_off(!args.no_anonymous),
            on_off(args.confirm_email),
        ));
    }

    let mut printed = 0u64;
    let mut held = 0u32;
    let mut tick = tokio::time::interval(LOG_POLL);
    loop {
        tokio::select! {
            () = stop.recv() => break,
            _ = tick.tick() => {}
        }
        if args.quiet {
            continue;
        }
        for request in emulator.requests() {
            if request.seq <= printed {
                continue;
            }
            let pending = request.status.is_none() && request.fault.is_none();
            if pending && held < HOLD_POLLS {
                held += 1;
                break;
            }
            held = 0;
            printed = request.seq;
            let alive = if json_mode {
                out::json_line(&request_json(&request))
            } else {
                out::line(&request_text(&request))
            };
            if !alive {
                emulator.shutdown().await;
                return Ok(());
            }
        }
    }
    if !json_mode {
        let _ = out::line("emulator stopped");
    }
    emulator.shutdown().await;
    Ok(())
}

/// Writes the HTTPS emulator's CA (PEM) to the temp directory; returns its
/// path and the leaf's SPKI pin in hex.
fn write_ca(
    identity: &paywall_auth_emulator::TlsIdentity,
    port: u16,
) -> Result<(String, String), Failure> {
    let path = std::env::temp_dir().join(format!("paywall-auth-emulator-{port}-ca.pem"));
    std::fs::write(&path, &identity.ca_pem).map_err(|e| {
        Failure::new(
            "emulator_failed",
            format!("emulator_failed: could not write {}: {e}", path.display()),
        )
    })?;
    let pin = identity
        .leaf_spki_sha256
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((path.display().to_string(), pin))
}

/// The request's path below the paywall, e.g. `/auth/refresh` for
/// `/api/v1/paywall/pw_demo/auth/refresh`; other paths as they are.
pub fn short_path(request: &LoggedRequest) -> &str {
    request
        .path
        .strip_prefix("/api/v1/paywall/")
        .and_then(|rest| rest.find('/').map(|slash| &rest[slash..]))
        .unwrap_or(&request.path)
}

fn request_json(request: &LoggedRequest) -> serde_json::Value {
    json!({
        "request": {
            "seq": request.seq,
            "method": request.method,
            "path": request.path,
            "route": request.route,
            "status": request.status,
            "fault": request.fault,
            "idempotent_replay": request.idempotent_replay,
        }
    })
}

fn request_text(request: &LoggedRequest) -> String {
    let status = request
        .status
        .map_or_else(|| "no response".to_owned(), |s| s.to_string());
    let mut line = format!(
        "#{:<4} {} {:<24} -> {status}",
        request.seq,
        request.method,
        short_path(request)
    );
    if request.idempotent_replay {
        line.push_str(" (idempotent replay)");
    }
    if let Some(fault) = &request.fault {
        line.push_str(&format!(" (fault {fault:?})"));
    }
    line
}
