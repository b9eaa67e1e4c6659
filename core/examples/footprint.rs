//! How much RAM the core's types take, with the capacities this build was
//! configured with (`PAYWALL_AUTH_*` variables, see `paywall_auth::limits`).
//!
//! `cargo run -p paywall-auth --example footprint --release`
//! (add e.g. `PAYWALL_AUTH_ACCESS_TOKEN_MAX=1024` to see a tighter build).

use core::mem::size_of;

use paywall_auth::limits::*;
use paywall_auth::{
    AccessToken, Command, Config, Error, Input, Machine, Output, RefreshToken, Request, Session,
    User,
};

fn main() {
    let row = |name: &str, bytes: usize| {
        println!(
            "{name:<28} {bytes:>6} B  ({:.2} KiB)",
            bytes as f64 / 1024.0
        )
    };
    println!(
        "size_of on {} ({}-bit):",
        std::env::consts::ARCH,
        usize::BITS
    );
    row("Machine", size_of::<Machine>());
    row("Session", size_of::<Session>());
    row("User", size_of::<User>());
    row("AccessToken", size_of::<AccessToken>());
    row("RefreshToken", size_of::<RefreshToken>());
    row("Config", size_of::<Config>());
    row("Command", size_of::<Command>());
    row("Input<'_>", size_of::<Input<'_>>());
    row("Output<'_>", size_of::<Output<'_>>());
    row("Request<'_>", size_of::<Request<'_>>());
    row("Error", size_of::<Error>());
    println!();
    println!(
        "capacities: ACCESS_TOKEN_MAX={ACCESS_TOKEN_MAX} REFRESH_TOKEN_MAX={REFRESH_TOKEN_MAX} USER_ID_MAX={USER_ID_MAX} EMAIL_MAX={EMAIL_MAX}"
    );
    println!(
        "            OUTPUT_QUEUE={OUTPUT_QUEUE} REQUESTS_IN_FLIGHT={REQUESTS_IN_FLIGHT} META_ENTRIES={META_ENTRIES}"
    );
    let budget = 8 * 1024;
    let machine = size_of::<Machine>();
    println!();
    println!(
        "machine state budget {budget} B: {} ({machine} B, {} B headroom)",
        if machine < budget {
            "within"
        } else {
            "EXCEEDED"
        },
        budget as i64 - machine as i64
    );
}
