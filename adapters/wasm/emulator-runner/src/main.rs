//! Runs the emulator for a test process that cannot link Rust: starts it on
//! `127.0.0.1` (an OS-chosen port), prints `{"origin":…,"paywallId":…}` on
//! one line of stdout, and serves until stdin reaches end-of-file — so the
//! emulator dies with the test that spawned it, whatever way that ends. The
//! test steers the backend through the emulator's `/__emulator/` routes.
//! `PAYWALL_EMULATOR_CORS` (comma-separated page origins, or `*`) turns on
//! CORS answers for a browser test.

use paywall_auth_emulator::{Emulator, EmulatorConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    // Browser tests name the page origins that may call it (CORS).
    let cors_allowed_origins = std::env::var("PAYWALL_EMULATOR_CORS")
        .map(|v| {
            v.split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let emulator = Emulator::start(EmulatorConfig {
        cors_allowed_origins,
        ..EmulatorConfig::default()
    })
    .await?;
    let line = format!(
        "{{\"origin\":\"{}\",\"paywallId\":\"{}\"}}\n",
        emulator.origin(),
        emulator.paywall_id()
    );
    let mut stdout = tokio::io::stdout();
    stdout.write_all(line.as_bytes()).await?;
    stdout.flush().await?;

    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 256];
    while stdin.read(&mut sink).await? > 0 {}

    emulator.shutdown().await;
    Ok(())
}
